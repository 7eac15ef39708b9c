// TURN between headless Chromium and native-demo, with a real coturn (use-auth-secret) started
// here in the test namespace and the bridge handing out short-lived credentials
// (`serve --turn-secret`): the page never holds the secret. Relay-only on both sides; 10 MiB
// each way with SHA-256 verified; the tab's selected candidate pair is a relay pair. A wrong
// credential gives a clear error in the tab, quickly. See docs/turn.md.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { once } from "node:events";
import { tmpdir } from "node:os";
import path from "node:path";
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { startBridge, startTurn, launchChromium, openChat, pagePeers, waitFor, nativeDemo, repoRoot, HOST } from "./harness.mjs";

const SECRET = "e2e-turn-secret";
const SIZE = 10 * 1024 * 1024;
const LOG = "info,webrtc=error,webrtc_ice=error,webrtc_sctp=error,webrtc_dtls=error,webrtc_mdns=error";

let turn;
let bridge;
let browser;
let work;

before(async () => {
  work = mkdtempSync(path.join(tmpdir(), "miaou-turn-e2e-"));
  turn = await startTurn(`secret:${SECRET}`);
  bridge = await startBridge(["--turn-secret", SECRET, "--turn-url", turn.url, "--turn-ttl", "600"]);
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  bridge?.stop();
  turn?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

/** A `native-demo` command; stdout lines collected, stdout+stderr kept for reports. */
function native(args) {
  // stdin stays open: `echo` ends when its stdin closes.
  const proc = spawn(nativeDemo, args, { cwd: repoRoot, stdio: ["pipe", "pipe", "pipe"], env: { ...process.env, RUST_LOG: LOG } });
  const lines = [];
  let output = "";
  createInterface({ input: proc.stdout }).on("line", (line) => { lines.push(line); output += `${line}\n`; });
  proc.stderr.on("data", (chunk) => { output += chunk; });
  const exited = once(proc, "exit").then(([code]) => code);
  return {
    lines, exited,
    get output() { return output.replace(/\x1b\[[0-9;]*m/g, ""); },
    kill() { if (proc.exitCode === null) proc.kill("SIGKILL"); },
  };
}

const relayFromBridge = ["--turn-from-bridge", "--relay-only"];

/** The tab's selected pair to its only peer, after checking it is a relay pair. */
async function assertRelayedInTab(page) {
  const pair = await page.evaluate(async () => {
    const [peer] = window.miaouChat.transport.peers();
    return window.miaouChat.transport.selectedCandidatePair(peer);
  });
  assert.equal(pair.local.candidateType, "relay", JSON.stringify(pair));
  assert.equal(pair.local.address, HOST, `relayed by our coturn: ${JSON.stringify(pair)}`);
  assert.ok(["relay", "prflx"].includes(pair.remote.candidateType), JSON.stringify(pair));
  // Relay-only: Chromium offered nothing but relay candidates (no host address, not even mDNS).
  const candidates = await page.evaluate(() => window.localCandidates);
  assert.ok(candidates.length > 0 && candidates.every((c) => / typ relay /.test(c)), candidates.join("\n"));
  return pair;
}

function nativePair(output) {
  const open = output.split("\n").find((l) => l.includes("channel open")) || "";
  assert.match(open, new RegExp(`pair=local relay ${HOST.replaceAll(".", "\\.")}:`), output);
  return open.replace(/^.*pair=/, "");
}

test("relay-only with bridge credentials: native send -> browser, 10 MiB, SHA-256, relay pair in the tab", async () => {
  const file = path.join(work, "to-tab.bin");
  const bytes = randomBytes(SIZE);
  writeFileSync(file, bytes);
  const expected = createHash("sha256").update(bytes).digest("hex");
  const started = Date.now();
  const page = await openChat(browser, bridge.http, "e2e-turn-n2b", "turn=bridge&relay=1");
  const sender = native(["send", "--signal", bridge.ws, "--room", "e2e-turn-n2b", ...relayFromBridge, file]);
  try {
    await waitFor(async () => (await pagePeers(page)) === 1, "the tab's relayed channel to the sender", 30_000)
      .catch((e) => { throw new Error(`${e.message}\nsend:\n${sender.output}`); });
    const openMs = Date.now() - started;
    const pair = await assertRelayedInTab(page);
    await waitFor(() => page.evaluate(() => window.miaouChat.files.length === 1), "the tab to verify the file", 120_000, 100)
      .catch((e) => { throw new Error(`${e.message}\nsend:\n${sender.output}`); });
    const received = await page.evaluate(() => window.miaouChat.files[0]);
    assert.equal(received.sha256, expected);
    assert.equal(received.size, SIZE);
    assert.equal(await sender.exited, 0, sender.output);
    const sentIn = sender.output.match(/sent in ([\d.]+ s \([\d.]+ MiB\/s\))/)?.[1];
    console.log(`native -> browser over TURN: tab pair ${pair.local.candidateType}/${pair.remote.candidateType}, native pair ${nativePair(sender.output)}; page load -> open ${openMs} ms; 10 MiB sent in ${sentIn}`);
    assert.deepEqual(page.miaouErrors, []);
  } finally {
    sender.kill();
    await page.close();
  }
});

test("relay-only with bridge credentials: browser -> native receive, 10 MiB, SHA-256, relay pair in the tab", async () => {
  const out = path.join(work, "inbox");
  const page = await openChat(browser, bridge.http, "e2e-turn-b2n", "turn=bridge&relay=1");
  const receiver = native(["receive", "--signal", bridge.ws, "--room", "e2e-turn-b2n", "--out", out, ...relayFromBridge]);
  try {
    await waitFor(async () => (await pagePeers(page)) === 1, "the tab's relayed channel to the receiver", 30_000)
      .catch((e) => { throw new Error(`${e.message}\nreceive:\n${receiver.output}`); });
    const pair = await assertRelayedInTab(page);
    const sent = await page.evaluate(async (size) => {
      const parts = [];
      for (let left = size; left > 0;) {
        const part = new Uint8Array(Math.min(left, 65536));
        crypto.getRandomValues(part);
        parts.push(part);
        left -= part.length;
      }
      const started = performance.now();
      const result = await window.miaouChat.sendFile(new File(parts, "from-tab.bin"));
      return { result, ms: performance.now() - started };
    }, SIZE);
    await waitFor(() => receiver.lines.length === 1, "receive to verify the file", 120_000, 100)
      .catch((e) => { throw new Error(`${e.message}\nreceive:\n${receiver.output}`); });
    assert.equal(receiver.lines[0], `${sent.result.sha256}  from-tab.bin`);
    assert.equal(createHash("sha256").update(readFileSync(path.join(out, "from-tab.bin"))).digest("hex"), sent.result.sha256);
    assert.equal(await receiver.exited, 0, receiver.output);
    console.log(`browser -> native over TURN: tab pair ${pair.local.candidateType}/${pair.remote.candidateType}, native pair ${nativePair(receiver.output)}; 10 MiB in ${(sent.ms / 1000).toFixed(1)} s (page's sendFile)`);
    assert.deepEqual(page.miaouErrors, []);
  } finally {
    receiver.kill();
    await page.close();
  }
});

test("a wrong TURN credential in the tab is a clear error naming the server, within 10 s", async () => {
  const room = "e2e-turn-bad";
  const peer = native(["echo", "--signal", bridge.ws, "--room", room, ...relayFromBridge]);
  const page = await openChat(browser, bridge.http, "e2e-turn-bad-page");
  try {
    await waitFor(() => /echoing/.test(peer.output), "the native peer to join", 30_000);
    const outcome = await page.evaluate(async ([signal, room, url]) => {
      const { Transport } = await import("miaou-transport");
      const t = await Transport.connect({
        signal, room, iceTransportPolicy: "relay",
        iceServers: [{ urls: url, username: `${Math.floor(Date.now() / 1000) + 600}:intruder`, credential: "not-the-hmac" }],
      });
      const started = performance.now();
      const reason = await Promise.race([
        new Promise((resolve) => t.onPeer((e) => e.type === "disconnected" && resolve(e.reason))),
        new Promise((resolve) => setTimeout(() => resolve("no disconnected event within 20 s"), 20_000)),
      ]);
      const ms = performance.now() - started;
      const closed = await Promise.race([t.close().then(() => "closed", (e) => `close failed: ${e}`),
        new Promise((resolve) => setTimeout(() => resolve("close hung"), 15_000))]);
      return { reason, ms, closed };
    }, [bridge.ws, room, turn.url]);
    console.log(`wrong TURN credential in the tab -> ${outcome.ms.toFixed(0)} ms: ${outcome.reason}`);
    assert.equal(outcome.closed, "closed");
    assert.ok(outcome.ms < 10_000, `${outcome.ms} ms`);
    assert.match(outcome.reason, new RegExp(`no relay candidate from TURN server ${turn.url.replaceAll(".", "\\.")}`));
    assert.match(outcome.reason, /allocation failed \(check username\/credential\)/);
    // Chromium says why: icecandidateerror 401 from coturn.
    assert.match(outcome.reason, /: 401 /);
  } finally {
    peer.kill();
    await page.close();
  }
});

test("an unreachable TURN server in the tab is a TURN error at the 15 s open deadline, not a generic one", async () => {
  // Chromium retries a silent TURN server for ~40 s before its icecandidateerror (701); the
  // open deadline comes first and names the server.
  const room = "e2e-turn-unreachable";
  const peer = native(["echo", "--signal", bridge.ws, "--room", room, ...relayFromBridge]);
  const page = await openChat(browser, bridge.http, "e2e-turn-unreachable-page");
  try {
    await waitFor(() => /echoing/.test(peer.output), "the native peer to join", 30_000);
    const nowhere = `turn:${HOST}:9`;
    const outcome = await page.evaluate(async ([signal, room, url]) => {
      const { Transport } = await import("miaou-transport");
      const t = await Transport.connect({ signal, room, iceTransportPolicy: "relay", iceServers: [{ urls: url, username: "u", credential: "c" }] });
      const started = performance.now();
      const reason = await Promise.race([
        new Promise((resolve) => t.onPeer((e) => e.type === "disconnected" && resolve(e.reason))),
        new Promise((resolve) => setTimeout(() => resolve("no disconnected event within 25 s"), 25_000)),
      ]);
      const ms = performance.now() - started;
      await t.close();
      return { reason, ms };
    }, [bridge.ws, room, nowhere]);
    console.log(`unreachable TURN server in the tab -> ${outcome.ms.toFixed(0)} ms: ${outcome.reason}`);
    assert.match(outcome.reason, new RegExp(`no relay candidate from TURN server ${nowhere.replaceAll(".", "\\.")}`));
    assert.match(outcome.reason, /no relay candidate within 15000 ms/);
  } finally {
    peer.kill();
    await page.close();
  }
});

test("turnFromBridge against a bridge without a TURN secret rejects connect with a clear error", async () => {
  const plain = await startBridge();
  const page = await openChat(browser, bridge.http, "e2e-turn-plain");
  try {
    const message = await page.evaluate(async (signal) => {
      const { Transport } = await import("miaou-transport");
      try { await Transport.connect({ signal, room: "r", turnFromBridge: true }); return "connected"; } catch (e) { return `${e.name}: ${e.message}`; }
    }, plain.ws);
    assert.match(message, /^MiaouError: .*hands out no TURN credentials/);
    const noPair = await page.evaluate(() => window.miaouChat.transport.selectedCandidatePair("nobody").then(() => "resolved", (e) => `${e.name}: ${e.message}`));
    assert.equal(noPair, "MiaouError: peer nobody is not connected");
    const bad = await page.evaluate(async (signal) => {
      const { Transport } = await import("miaou-transport");
      const attempts = [
        { iceTransportPolicy: "relayed" },
        { iceTransportPolicy: "relay" },
        { iceServers: [{ urls: "turn:198.18.0.1:3478" }] },
        { iceServers: [{ urls: "turn://nope" , username: "u", credential: "c" }] },
      ];
      const out = [];
      for (const extra of attempts) {
        try { await Transport.connect({ signal, room: "r", ...extra }); out.push("connected"); } catch (e) { out.push(e.message); }
      }
      return out;
    }, plain.ws);
    assert.match(bad[0], /iceTransportPolicy must be "all" or "relay"/);
    assert.match(bad[1], /needs a turn: or turns: ICE server/);
    assert.match(bad[2], /needs a username and a credential/);
    assert.match(bad[3], /needs a host name/);
  } finally {
    plain.stop();
    await page.close();
  }
});
