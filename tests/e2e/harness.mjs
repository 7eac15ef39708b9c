// Test harness for end-to-end tests: starts real `native-demo` processes and a real headless
// Chromium (Debian's /usr/bin/chromium through playwright-core). Run inside the network
// namespace made by tests/scripts/in-netns.sh so Chromium gathers ICE candidates.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, connect } from "node:net";
import { tmpdir } from "node:os";
import { once } from "node:events";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { chromium } from "playwright-core";
import { before, after } from "node:test";

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const nativeDemo = process.env.MIAOU_NATIVE_DEMO
  || path.join(process.env.CARGO_TARGET_DIR ? path.resolve(repoRoot, process.env.CARGO_TARGET_DIR) : path.join(repoRoot, "target"), "debug/native-demo");

/** Resolves when `predicate()` is truthy; rejects with `what` after `ms`. */
export async function waitFor(predicate, what, ms = 30_000, stepMs = 20) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await predicate();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

/** A child process whose stdout lines are collected; stderr is kept for failure reports.
 *  With `netns`, it runs inside that network namespace (`ip netns exec`); `env` adds variables. */
export function run(args, { name, netns, env }) {
  const [command, argv] = netns ? ["ip", ["netns", "exec", netns, nativeDemo, ...args]] : [nativeDemo, args];
  const proc = spawn(command, argv, { cwd: repoRoot, stdio: ["pipe", "pipe", "pipe"], env: { ...process.env, ...env } });
  const lines = [];
  let stderr = "";
  createInterface({ input: proc.stdout }).on("line", (line) => lines.push(line));
  proc.stderr.on("data", (chunk) => { stderr += chunk; });
  const exited = once(proc, "exit").then(([code, signal]) => ({ code, signal }));
  return {
    proc, lines, exited, name,
    get stderr() { return stderr; },
    /** Writes lines to stdin, respecting pipe backpressure. */
    async writeLines(items) {
      for (const item of items) {
        if (!proc.stdin.write(`${item}\n`)) await once(proc.stdin, "drain");
      }
    },
    endInput() { proc.stdin.end(); },
    kill() { if (proc.exitCode === null) proc.kill("SIGKILL"); },
  };
}

/** `native-demo serve` on a free port (plus `extra` arguments); resolves with its page and
 *  WebSocket URLs. */
export async function startBridge(extra = []) {
  const bridge = run(["serve", "--addr", "127.0.0.1:0", ...extra], { name: "serve" });
  await waitFor(() => bridge.lines.some((l) => l.startsWith("signaling: ")), "bridge start", 30_000)
    .catch((e) => { throw new Error(`${e.message}\n${bridge.stderr}`); });
  const ws = bridge.lines.find((l) => l.startsWith("signaling: ")).slice("signaling: ".length);
  const http = ws.replace(/^ws:/, "http:").replace(/\/ws$/, "/");
  return { ...bridge, ws, http, stop: () => bridge.kill() };
}

/** `native-demo join` in `room`. */
export function startJoin(ws, room, extra = []) {
  return run(["join", "--signal", ws, "--room", room, ...extra], { name: `join ${room}` });
}

/** `native-demo echo` in `room` (sends every message back to its sender); resolves once it
 *  has joined. `stop()` closes its stdin (it then exits). */
export async function startEcho(ws, room) {
  const echo = run(["echo", "--signal", ws, "--room", room], { name: `echo ${room}` });
  await waitFor(() => /echoing/.test(echo.stderr), "echo to join")
    .catch((e) => { echo.kill(); throw new Error(`${e.message}\n${echo.stderr}`); });
  return { ...echo, get stderr() { return echo.stderr; }, stop: () => echo.endInput() };
}

/** One bridge and one Chromium shared by every test of the calling file: registers its
 *  `before` (start both) and `after` (stop both) hooks and returns the object whose `bridge`
 *  (see `startBridge`) and `browser` are set once `before` has run. */
export function bridgeAndChromiumPerFile() {
  const rig = { bridge: undefined, browser: undefined };
  before(async () => {
    rig.bridge = await startBridge();
    rig.browser = await launchChromium();
  });
  after(async () => {
    await rig.browser?.close();
    rig.bridge?.stop();
  });
  return rig;
}

/** Chromium flags that work headless as root with no outside network. mDNS hiding of host
 *  candidates stays at Chromium's default (on). */
export async function launchChromium(executablePath = process.env.CHROMIUM || "/usr/bin/chromium") {
  return chromium.launch({
    executablePath,
    headless: true,
    args: [
      "--no-sandbox", "--disable-gpu", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
    ],
  });
}

/** Runs in the page before its scripts (addInitScript): records what Chromium really did, for
 *  the tests to check — `localCandidates` (ICE candidates it offered), `peerConnections`,
 *  `dataChannels` (created or received) and `largestSend` (bytes of the largest message handed
 *  to any RTCDataChannel.send). */
function recordWebRtc() {
  window.localCandidates = [];
  window.peerConnections = [];
  window.dataChannels = [];
  window.largestSend = 0;
  const Native = window.RTCPeerConnection;
  window.RTCPeerConnection = class extends Native {
    constructor(...args) {
      super(...args);
      window.peerConnections.push(this);
      this.addEventListener("icecandidate", (e) => e.candidate && window.localCandidates.push(e.candidate.candidate));
      this.addEventListener("datachannel", (e) => window.dataChannels.push(e.channel));
    }

    createDataChannel(...args) {
      const channel = super.createDataChannel(...args);
      window.dataChannels.push(channel);
      return channel;
    }
  };
  const send = RTCDataChannel.prototype.send;
  RTCDataChannel.prototype.send = function (data) {
    const bytes = typeof data === "string" ? new TextEncoder().encode(data).length : (data.byteLength ?? data.size);
    if (bytes > window.largestSend) window.largestSend = bytes;
    return send.call(this, data);
  };
}

/** Opens `path` (e.g. "/hello.html?room=x") of the bridge at `http` with WebRTC recorded
 *  (`recordWebRtc`); `page.miaouErrors` collects console errors and uncaught exceptions. */
export async function openPage(browser, http, path) {
  const page = await browser.newPage({ viewport: { width: 1100, height: 700 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(e));
  page.on("console", (m) => { if (m.type() === "error") errors.push(new Error(m.text())); });
  await page.addInitScript(recordWebRtc);
  page.miaouErrors = errors;
  await page.goto(new URL(path, http).href);
  return page;
}

/** Opens the demo chat page in `room` (plus `query`, e.g. "turn=bridge&relay=1") and waits
 *  until it joined. */
export async function openChat(browser, http, room, query = "") {
  const page = await browser.newPage({ viewport: { width: 1100, height: 700 } });
  const errors = [];
  const uncaught = [];
  page.on("pageerror", (e) => { errors.push(e); uncaught.push(e); });
  page.on("console", (m) => { if (m.type() === "error") errors.push(new Error(m.text())); });
  await page.addInitScript(recordWebRtc);
  await page.goto(`${http}?room=${encodeURIComponent(room)}${query ? `&${query}` : ""}`);
  await waitFor(() => page.evaluate(() => Boolean(window.miaouChat)), "the page to join", 30_000)
    .catch((e) => { throw new Error(`${e.message}; page errors: ${errors.map(String).join("; ")}`); });
  page.miaouErrors = errors; // console errors and uncaught exceptions
  page.uncaught = uncaught; // uncaught exceptions only
  return page;
}

/** Number of peers with an open channel, as the page sees it. */
export function pagePeers(page) {
  return page.evaluate(() => window.miaouChat.transport.peers().length);
}

/** The namespace's veth address (tests/scripts/in-netns.sh). */
export const HOST = "198.18.0.1";
let turnRanges = 0;

/** coturn (`turnserver`) on a free port of HOST, started by tests/scripts/turnserver.sh with
 *  `auth` = "secret:SECRET" (TURN REST API, use-auth-secret) or "user:NAME:PASS"; relay ports
 *  62000+ (the Rust tests use 61000+). Resolves once it accepts TCP; fails clearly if
 *  turnserver is missing. */
export async function startTurn(auth) {
  const port = await new Promise((resolve, reject) => {
    const server = createServer().on("error", reject);
    server.listen(0, HOST, () => { const { port } = server.address(); server.close(() => resolve(port)); });
  });
  const min = 62_000 + 40 * turnRanges++;
  const dir = mkdtempSync(path.join(tmpdir(), "miaou-turn-"));
  const proc = spawn("bash", [path.join(repoRoot, "tests/scripts/turnserver.sh"), dir, String(port), String(min), String(min + 39), auth, HOST],
    { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  proc.stdout.on("data", (c) => { output += c; });
  proc.stderr.on("data", (c) => { output += c; });
  let exited = null;
  proc.on("exit", (code) => { exited = code; });
  const listening = () => new Promise((resolve) => {
    const socket = connect(port, HOST, () => { socket.destroy(); resolve(true); }).on("error", () => resolve(false));
  });
  await waitFor(async () => {
    if (exited !== null) throw new Error(`turnserver exited (${exited}) before listening:\n${output}`);
    return listening();
  }, `turnserver on ${HOST}:${port}`, 10_000, 50);
  return {
    port, url: `turn:${HOST}:${port}`,
    get output() { return output; },
    stop() { if (exited === null) proc.kill("SIGKILL"); rmSync(dir, { recursive: true, force: true }); },
  };
}
