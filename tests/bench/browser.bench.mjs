// The browser pairs of the benchmark suite, with the workloads and metric names of
// `native-demo bench` (native-demo/src/bench/workloads.rs) and tests/bench/ndc.bench.mjs:
//
//   "miaou native ↔ Chromium tab"   `native-demo bench-peer` (release) <-> our npm package (pkg/)
//                                   in a headless Chromium tab, through a real bridge. Throughput
//                                   and message rate are native → tab; RTT is tab → native → tab.
//   "miaou Chromium tab → native"   the same two ends, the other direction: throughput, message
//                                   rate and CPU per GB only (one column, no RSS/open/RTT rows).
//   "Chromium ↔ Chromium"           raw RTCPeerConnection data channels (no miaou) in two tabs of
//                                   one browser, signaling relayed by this script; one reliable
//                                   ordered channel, bufferedAmount backpressure as in the other
//                                   raw pairs (wait above 1 MiB, resume at 256 KiB). 1 MiB
//                                   messages only if `pc.sctp.maxMessageSize` allows, else n/a.
//
// How each figure is taken (docs: native-demo/src/bench/peer.rs for the native end's commands):
// - Clocks: the tab's `performance.now()`. The page is served with COOP/COEP headers so it is
//   cross-origin isolated: 5 µs timer resolution instead of 100 µs (matters for RTT).
// - Throughput / rate: the driving tab starts its clock, the receiver counts; the time ends when
//   the receiving tab has the last message, or when the sink answers `sunk` (one extra one-way
//   trip, ~0.1 ms, on runs of seconds).
// - Time to open: mixed pair, from `Transport.connect` in the tab to its `connected` event, the
//   native peer already in the room; Chromium pair, from this script asking both tabs to
//   connect to both channels open (SDP and candidates relayed through this script, as a
//   signaling server would).
// - "peak RSS (both ends, one process)" keeps the native metric name so rows line up, but a
//   browser is many processes and VmHWM does not add up across them: here it is the peak of
//   the summed Pss (proportional set size: a page shared by n processes counts 1/n in each, so
//   the sum counts it once) of the Chromium process tree, sampled every 100 ms, plus the native
//   peer's VmHWM for the mixed pair. Summed VmRSS, which counts shared pages once per process
//   and roughly doubles the figure, is logged beside it. The bridge process and this Node
//   process are not counted.
// - CPU per GB: utime+stime (/proc/PID/stat) of the whole Chromium process tree plus the native
//   peer, over each throughput run; the best size is reported.
//
// Usage (inside the namespace; release native-demo and `bash tests/scripts/build-wasm.sh` first):
//   tests/scripts/in-netns.sh node tests/bench/browser.bench.mjs \
//     [--mib 64] [--opens 20] [--pair all|native-tab|chromium] [--json FILE]
// MIAOU_BENCH_MIB and MIAOU_BENCH_JSON do the same as --mib and --json. JSON lines are appended.
//
// Loss matrix (docs/testing-under-loss.md): with `--loss 0,10,20,50` (per mille; `--loss-mib 16`,
// `--loss-cap-s 60`) it runs that instead of the workloads: per pair, direction and level, a
// fresh connection (a fresh bench-peer and tab for the mixed pair) opened and warmed up (8 MiB)
// with no loss, then UDP
// drop set in the namespace (tests/bench/netem.mjs), one transfer of 16 KiB messages stopped at
// the cap. Timed by the receiver: the tab for native → tab; for tab → native and Chromium ↔
// Chromium, the receiving end answers `sunk|dnf BYTES GAP_MS ELAPSED_MS` itself, at the end or
// at the cap (bench-peer's `sink N CAP_MS`).
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { MESSAGE_BYTES, appendCells, describe, load1, lossCell, lossOptions, record, setLoss, targetBytes } from "./netem.mjs";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
// Release binary by default (figures from a debug build mean nothing); set before the harness
// reads it.
process.env.MIAOU_NATIVE_DEMO ||= path.join(root, "target/release/native-demo");
const { startBridge, launchChromium, waitFor, nativeDemo } = await import("../e2e/harness.mjs");

const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const MIB = Number(arg("mib", process.env.MIAOU_BENCH_MIB || 64));
const OPENS = Number(arg("opens", 20));
const JSON_OUT = arg("json", process.env.MIAOU_BENCH_JSON || null);
const WHICH = arg("pair", "all");
if (!["all", "native-tab", "chromium"].includes(WHICH)) throw new Error("--pair must be all, native-tab or chromium");
const SIZES = [["1 KiB", 1024], ["16 KiB", 16384], ["64 KiB", 65536], ["1 MiB", 1048576]];
const RSS_METRIC = "peak RSS (both ends, one process)";
const CPU_METRIC = "CPU per GB moved (best size, both ends)";

// ---------------------------------------------------------------------------------------------
// Page side. These functions are serialized into the pages (addInitScript / evaluate), so they
// use nothing from this module.

/** window.benchLib: the workloads, written once against a channel
 *  `{ send(data): Promise, onmessage(handler(string | ArrayBuffer | Uint8Array)) }`. */
function benchLib() {
  window.benchLib = {
    /** The measuring end: drives the other end with the text commands of bench-peer. */
    driver(ch) {
      let onText = null;
      let onBinary = null;
      ch.onmessage((data) => (typeof data === "string" ? onText?.(data) : onBinary?.(data)));
      const nextText = () => new Promise((resolve) => { onText = (s) => { onText = null; resolve(s); }; });
      return {
        /** We send `count` messages of `size` bytes; the other end counts them and answers. */
        async sink(count, size) {
          const payload = new Uint8Array(size).fill(0x5a);
          const answer = nextText();
          const started = performance.now();
          await ch.send(`sink ${count}`);
          for (let i = 0; i < count; i++) await ch.send(payload);
          const bytes = Number((await answer).split(" ")[1]);
          return { bytes, seconds: (performance.now() - started) / 1000 };
        },
        /** The other end sends `count` messages of `size` bytes; we count them. */
        async stream(count, size) {
          let left = count;
          let bytes = 0;
          const all = new Promise((resolve) => {
            onBinary = (d) => { bytes += d.byteLength; if (--left === 0) resolve(); };
          });
          const started = performance.now();
          await ch.send(`stream ${count} ${size}`);
          await all;
          onBinary = null;
          return { bytes, seconds: (performance.now() - started) / 1000 };
        },
        /** Loss matrix, other end sends: `count` messages of `size` bytes, stopped at `capMs`.
         *  Timed here, from the command to the last message (or the cap). */
        async cappedStream(count, size, capMs) {
          let left = count;
          let bytes = 0;
          let gap = 0;
          const started = performance.now();
          let last = started;
          const all = new Promise((resolve) => {
            onBinary = (d) => {
              const now = performance.now();
              gap = Math.max(gap, now - last);
              last = now;
              bytes += d.byteLength;
              if (--left === 0) resolve(true);
            };
          });
          const cap = new Promise((resolve) => setTimeout(() => resolve(false), capMs));
          await ch.send(`stream ${count} ${size}`);
          const finished = await Promise.race([all, cap]);
          onBinary = null;
          if (finished) return { bytes, seconds: (last - started) / 1000, finished, gapMs: gap };
          return { bytes, seconds: capMs / 1000, finished, gapMs: Math.max(gap, performance.now() - last) };
        },
        /** Loss matrix, we send: the other end counts and answers `sunk|dnf BYTES GAP_MS
         *  ELAPSED_MS` by itself, at the end or at `capMs` (its clock). */
        async cappedSink(count, size, capMs) {
          const payload = new Uint8Array(size).fill(0x5a);
          let answered = null;
          const answer = nextText().then((text) => { answered = text; return text; });
          await ch.send(`sink ${count} ${capMs}`);
          // Not awaited: under a stall a send can wait for room until the connection goes.
          (async () => { for (let i = 0; i < count && answered === null; i++) await ch.send(payload); })().catch(() => {});
          // The answer crosses the lossy link too: some grace past the cap.
          const text = await Promise.race([answer, new Promise((resolve) => setTimeout(() => resolve(null), capMs + 30_000))]);
          if (!text) return { bytes: NaN, seconds: capMs / 1000, finished: false, gapMs: NaN, error: "no answer from the receiver" };
          const [verb, bytes, gapMs, elapsedMs] = text.split(" ");
          return { bytes: Number(bytes), seconds: Number(elapsedMs) / 1000, finished: verb === "sunk", gapMs: Number(gapMs) };
        },
        /** 32-byte round trips through the other end's echo; samples in µs after `warmup`. */
        async rtt(warmup, rounds) {
          const payload = new Uint8Array(32).fill(0x20);
          const samples = [];
          for (let i = 0; i < warmup + rounds; i++) {
            const back = new Promise((resolve) => { onBinary = resolve; });
            const started = performance.now();
            await ch.send(payload);
            await back;
            if (i >= warmup) samples.push((performance.now() - started) * 1000);
          }
          onBinary = null;
          return samples;
        },
      };
    },
    /** The other end, for the Chromium pair: bench-peer's `sink [CAP_MS]` (answering `sunk|dnf
     *  BYTES GAP_MS ELAPSED_MS`) and echo, in JavaScript. */
    respond(ch) {
      let sink = null;
      let discard = false; // after a dnf, the rest of that transfer is not echoed back
      const answer = (verb, s, end) =>
        `${verb} ${s.bytes} ${Math.max(s.gap, end - s.last).toFixed(1)} ${(end - s.started).toFixed(1)}`;
      ch.onmessage((data) => {
        if (typeof data === "string") {
          const [command, n, cap] = data.split(" ");
          if (command === "sink") {
            const now = performance.now();
            const s = { left: Number(n), bytes: 0, started: now, last: now, gap: 0 };
            sink = s;
            discard = false;
            if (cap) {
              s.timer = setTimeout(() => {
                if (sink !== s) return;
                sink = null;
                discard = true;
                ch.send(answer("dnf", s, s.started + Number(cap)));
              }, Number(cap));
            }
          }
        } else if (sink) {
          const now = performance.now();
          sink.gap = Math.max(sink.gap, now - sink.last);
          sink.last = now;
          sink.bytes += data.byteLength;
          if (--sink.left === 0) {
            clearTimeout(sink.timer);
            ch.send(answer("sunk", sink, now));
            sink = null;
          }
        } else if (!discard) {
          ch.send(data);
        }
      });
    },
  };
}

/** window.rawPeer: one raw RTCPeerConnection + data channel, signaling through
 *  window.signalOut (exposed by this script) and rawPeer.signalIn. */
function rawPeerPage() {
  const HIGH_WATER = 1024 * 1024;
  const LOW_WATER = 256 * 1024;
  let pc = null;
  let generation = -1;
  let queue = Promise.resolve(); // signalIn handled in order: a description before candidates
  const channel = (dc) => {
    dc.binaryType = "arraybuffer";
    dc.bufferedAmountLowThreshold = LOW_WATER;
    return {
      async send(data) {
        while (dc.bufferedAmount > HIGH_WATER) {
          await new Promise((resolve) => { dc.onbufferedamountlow = resolve; });
        }
        dc.send(data);
      },
      onmessage(handler) { dc.onmessage = (e) => handler(e.data); },
    };
  };
  const fresh = (gen) => {
    pc?.close();
    generation = gen;
    queue = Promise.resolve();
    pc = new RTCPeerConnection(); // no ICE servers: host candidates only
    pc.onicecandidate = (e) => e.candidate && window.signalOut({ gen, candidate: e.candidate.toJSON() });
  };
  window.rawPeer = {
    /** The offering side; resolves once its channel is open. */
    async offer(gen) {
      fresh(gen);
      const dc = pc.createDataChannel("bench"); // reliable and ordered by default
      const open = new Promise((resolve) => { dc.onopen = resolve; });
      await pc.setLocalDescription();
      window.signalOut({ gen, description: pc.localDescription.toJSON() });
      await open;
      window.channel = channel(dc);
    },
    /** The answering side; resolves once the offerer's channel is announced and open. */
    async answer(gen) {
      fresh(gen);
      const dc = await new Promise((resolve) => { pc.ondatachannel = (e) => resolve(e.channel); });
      if (dc.readyState !== "open") await new Promise((resolve) => { dc.onopen = resolve; });
      window.channel = channel(dc);
    },
    maxMessageSize: () => pc.sctp.maxMessageSize,
    state: () => `${pc.signalingState}/${pc.iceGatheringState}/${pc.iceConnectionState}/${pc.connectionState}`,
    signalIn(m) {
      queue = queue.then(async () => {
        if (m.gen !== generation) return; // late candidate of a closed connection
        // Not awaited: adding an mDNS (.local) candidate settles only once the name resolves,
        // and never if the connection closes first, which would stall this queue for good.
        if (m.candidate) return void pc.addIceCandidate(m.candidate).catch(() => {});
        await pc.setRemoteDescription(m.description);
        if (m.description.type === "offer") {
          await pc.setLocalDescription();
          window.signalOut({ gen: m.gen, description: pc.localDescription.toJSON() });
        }
      }).catch((e) => console.error(`signalIn: ${e}`));
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Node side.

/** Rejects with `what` if `promise` takes longer than `ms`, so a stuck run fails, not hangs. */
function within(promise, what, ms = 600_000) {
  let timer;
  const timeout = new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms); });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** /proc/PID/stat fields after the command name (which may contain spaces). */
function statFields(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  } catch { return null; } // exited meanwhile
}
/** utime + stime of `pid`, seconds (USER_HZ = 100 on mainstream Linux, as in stats.rs). */
const cpuSeconds = (pid) => { const f = statFields(pid); return f ? (Number(f[11]) + Number(f[12])) / 100 : 0; };
/** A `Vm…:` line of /proc/PID/status, MiB. */
function statusMib(pid, key) {
  try {
    const line = fs.readFileSync(`/proc/${pid}/status`, "utf8").split("\n").find((l) => l.startsWith(`${key}:`));
    return line ? Number(line.split(/\s+/)[1]) / 1024 : 0;
  } catch { return 0; }
}

/** Proportional set size of `pid` (/proc/PID/smaps_rollup), MiB. */
function pssMib(pid) {
  try {
    return Number(fs.readFileSync(`/proc/${pid}/smaps_rollup`, "utf8").match(/^Pss:\s+(\d+)/m)[1]) / 1024;
  } catch { return 0; }
}

/** Every descendant of this Node process except the native-demo processes: Chromium's tree. */
function chromiumTree(exclude) {
  const children = new Map();
  for (const name of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const f = statFields(name);
    if (!f) continue;
    const ppid = Number(f[1]);
    if (!children.has(ppid)) children.set(ppid, []);
    children.get(ppid).push(Number(name));
  }
  const tree = [];
  const walk = (pid) => (children.get(pid) || []).forEach((c) => { if (!exclude.includes(c)) { tree.push(c); walk(c); } });
  walk(process.pid);
  return tree;
}

/** Samples the Chromium tree's summed Pss (and VmRSS) every 100 ms; reads CPU of tree + native peer. */
function resources(exclude, nativePid) {
  let peak = 0;
  let peakPss = 0; // reported: summed Pss shares pages fairly; summed RSS (logged) counts them per process
  const sample = () => {
    const tree = chromiumTree(exclude);
    peak = Math.max(peak, tree.reduce((s, p) => s + statusMib(p, "VmRSS"), 0));
    peakPss = Math.max(peakPss, tree.reduce((s, p) => s + pssMib(p), 0));
  };
  const timer = setInterval(sample, 100);
  return {
    cpu: () => chromiumTree(exclude).reduce((s, p) => s + cpuSeconds(p), 0) + (nativePid ? cpuSeconds(nativePid) : 0),
    /** Peak summed Pss of the tree plus the native peer's VmHWM, MiB. */
    stop() {
      sample();
      clearInterval(timer);
      const native = nativePid ? statusMib(nativePid, "VmHWM") : 0;
      console.error(`  peak RSS: Chromium tree ${peak.toFixed(0)} MiB summed VmRSS (${peakPss.toFixed(0)} MiB summed Pss)`
        + (nativePid ? ` + native peer VmHWM ${native.toFixed(1)} MiB` : ""));
      return peakPss + native;
    },
  };
}

/** A tiny local web server for the bench pages: `bench.html` (the demo page's import map, no
 *  app) and the built package under /pkg/, all with COOP/COEP so the page is cross-origin
 *  isolated (5 µs timers instead of 100 µs). Not the bridge, which sets no such headers; not
 *  page.route either: a page fulfilled by interception has no local address, and Chromium's
 *  Local Network Access checks then block its WebSocket to the bridge on 127.0.0.1. */
async function startPageServer() {
  const isolated = { "Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp" };
  const html = `<!doctype html><meta charset="utf-8"><title>bench</title><link rel="icon" href="data:,">
<script type="importmap">{ "imports": { "miaou-transport": "/pkg/miaou_transport.js" } }</script>`;
  const types = { ".js": "text/javascript", ".wasm": "application/wasm" };
  const server = http.createServer((req, res) => {
    const { pathname } = new URL(req.url, "http://localhost");
    const file = pathname.match(/^\/pkg\/([\w.-]+)$/)?.[1];
    if (pathname === "/bench.html") {
      res.writeHead(200, { ...isolated, "Content-Type": "text/html" }).end(html);
    } else if (file && fs.existsSync(path.join(root, "pkg", file))) {
      const type = types[path.extname(file)] || "application/octet-stream";
      res.writeHead(200, { ...isolated, "Content-Type": type }).end(fs.readFileSync(path.join(root, "pkg", file)));
    } else {
      res.writeHead(404).end();
    }
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return { http: `http://127.0.0.1:${server.address().port}/`, close: () => server.close() };
}

/** A bench page (cross-origin isolated) with the page-side functions installed. */
async function benchPage(browser, http, scripts) {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  page.errors = errors;
  for (const script of scripts) await page.addInitScript(script);
  await page.goto(`${http}bench.html`);
  if (!(await page.evaluate(() => crossOriginIsolated))) throw new Error("bench page is not cross-origin isolated");
  return page;
}

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.round((s.length - 1) * 0.5)]; };
const p99 = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.round((s.length - 1) * 0.99)]; };
const best = (xs) => { const finite = xs.filter(Number.isFinite); return finite.length ? Math.min(...finite) : NaN; };

/** The workloads of workloads.rs run_all through the page's `window.driver`, in the direction
 *  `run` ("stream": the other end sends, "sink": the page sends); `maxMessage` skips larger
 *  sizes (NaN, printed n/a); `cpu()` is read around each throughput run. */
async function workloads(figure, page, run, { cpu, maxMessage = Infinity, rtt = true }) {
  // Untimed warm-up, 8 MiB in 16 KiB messages: the first bulk transfer on a fresh Chromium
  // connection stalls for seconds here (3-13 s seen, with no UDP drops in the kernel: inside
  // Chromium's SCTP), which would otherwise land on whichever size runs first.
  await within(page.evaluate(([r]) => window.driver[r](512, 16384), [run]), "warm-up");
  const perGb = [];
  for (const [label, size] of SIZES) {
    const metric = `throughput, ${label} messages`;
    if (size > maxMessage) { figure(metric, NaN, "MB/s"); continue; }
    const count = Math.max(1, Math.ceil((MIB * 1024 * 1024) / size));
    const before = cpu();
    const { bytes, seconds } = await within(page.evaluate(([r, c, s]) => window.driver[r](c, s), [run, count, size]), metric);
    perGb.push((cpu() - before) / (bytes / 1e9));
    figure(metric, bytes / 1e6 / seconds, "MB/s");
    console.error(`  ${metric}: ${(bytes / 1e6 / seconds).toFixed(1)} MB/s`);
  }
  const { seconds } = await within(page.evaluate(([r]) => window.driver[r](50_000, 64), [run]), "message rate");
  figure("64-byte message rate", 50_000 / seconds, "msg/s");
  if (rtt) {
    const samples = await within(page.evaluate(() => window.driver.rtt(100, 1000)), "RTT");
    figure("RTT 32 B, median", median(samples), "µs");
    figure("RTT 32 B, p99", p99(samples), "µs");
  }
  figure(CPU_METRIC, best(perGb), "s/GB");
}

/** native-demo bench-peer in `room`; resolves once it is in the room. */
async function startBenchPeer(ws, room) {
  const proc = spawn(nativeDemo, ["bench-peer", "--signal", ws, "--room", room], { cwd: root, stdio: ["pipe", "pipe", "pipe"] });
  let stderr = "";
  proc.stderr.on("data", (c) => { stderr += c; });
  const lines = [];
  createInterface({ input: proc.stdout }).on("line", (l) => lines.push(l));
  await waitFor(() => lines.some((l) => l.startsWith("ready ")) || proc.exitCode !== null, "bench-peer to join")
    .catch((e) => { throw new Error(`${e.message}\n${stderr}`); });
  if (proc.exitCode !== null) throw new Error(`bench-peer exited: ${stderr}`);
  return { proc, stop: async () => { proc.stdin.end(); await within(once(proc, "exit"), "bench-peer exit", 20_000).catch(() => proc.kill("SIGKILL")); } };
}

async function nativeTab(figures, bridge, pages) {
  const PAIR = "miaou native ↔ Chromium tab";
  const BACK = "miaou Chromium tab → native";
  const peer = await startBenchPeer(bridge.ws, "bench-native-tab");
  const browser = await launchChromium();
  const usage = resources([bridge.proc.pid, peer.proc.pid], peer.proc.pid);
  try {
    const page = await benchPage(browser, pages.http, [benchLib]);
    await page.evaluate(async () => {
      const { default: init, Transport } = await import("miaou-transport");
      await init();
      window.Transport = Transport;
      /** Joins `room`, resolves with the transport and the first connected peer's id. */
      window.join = async (signal, room) => {
        const t = await Transport.connect({ signal, room });
        const peerId = await new Promise((resolve) => t.onPeer((e) => e.type === "connected" && resolve(e.peerId)));
        return { t, peerId };
      };
    });
    const opens = await within(page.evaluate(async ([signal, room, n]) => {
      const took = [];
      for (let i = 0; i < n; i++) {
        const started = performance.now();
        const { t } = await window.join(signal, room);
        took.push(performance.now() - started);
        await t.close();
      }
      return took;
    }, [bridge.ws, "bench-native-tab", OPENS]), "opens");
    await page.evaluate(async ([signal, room]) => {
      const { t, peerId } = await window.join(signal, room);
      window.transport = t;
      window.driver = window.benchLib.driver({
        send: (data) => t.send(peerId, data),
        onmessage: (handler) => t.onMessage((_, data) => handler(data)),
      });
    }, [bridge.ws, "bench-native-tab"]);
    console.error(`${PAIR} (native → tab):`);
    await workloads((m, v, u) => figures.push({ pair: PAIR, metric: m, value: v, unit: u }), page, "stream", usage);
    figures.push({ pair: PAIR, metric: "time to open channel, median", value: median(opens), unit: "ms" });
    console.error(`${BACK}:`);
    await workloads((m, v, u) => figures.push({ pair: BACK, metric: m, value: v, unit: u }), page, "sink", { ...usage, rtt: false });
    await page.evaluate(() => window.transport.close());
    if (page.errors.length) console.error(`page errors: ${page.errors.join("; ")}`);
  } finally {
    // Read before the processes go: VmHWM of the native peer, the tree's peak.
    figures.push({ pair: PAIR, metric: RSS_METRIC, value: usage.stop(), unit: "MiB" });
    await browser.close();
    await peer.stop();
  }
}

async function chromiumChromium(figures, bridge, pages) {
  const PAIR = "Chromium ↔ Chromium";
  const browser = await launchChromium();
  const usage = resources([bridge.proc.pid], null);
  try {
    const [a, b] = await relayedRawTabs(browser, pages.http);
    const connect = (gen) => within(Promise.all([
      b.evaluate((g) => window.rawPeer.answer(g), gen),
      a.evaluate((g) => window.rawPeer.offer(g), gen),
    ]), "raw connect", 30_000).catch(async (e) => {
      const states = await Promise.all([a, b].map((p) => p.evaluate(() => window.rawPeer.state())));
      throw new Error(`${e.message} (a ${states[0]}, b ${states[1]}; ${[...a.errors, ...b.errors].join("; ")})`);
    });
    const opens = [];
    for (let i = 0; i < OPENS; i++) {
      const started = performance.now();
      await connect(i);
      opens.push(performance.now() - started);
    }
    await connect(OPENS); // the connection measured; the previous one is closed by fresh()
    await b.evaluate(() => window.benchLib.respond(window.channel));
    await a.evaluate(() => { window.driver = window.benchLib.driver(window.channel); });
    const maxMessage = await a.evaluate(() => window.rawPeer.maxMessageSize());
    console.error(`${PAIR} (maxMessageSize ${maxMessage}):`);
    await workloads((m, v, u) => figures.push({ pair: PAIR, metric: m, value: v, unit: u }), a, "sink", { ...usage, maxMessage });
    figures.push({ pair: PAIR, metric: "time to open channel, median", value: median(opens), unit: "ms" });
    for (const page of [a, b]) if (page.errors.length) console.error(`page errors: ${page.errors.join("; ")}`);
  } finally {
    figures.push({ pair: PAIR, metric: RSS_METRIC, value: usage.stop(), unit: "MiB" });
    await browser.close();
  }
}

/** The markdown table of stats.rs: one row per metric, one column per pair, n/a for NaN. */
function markdown(figures) {
  const pairs = [...new Set(figures.map((f) => f.pair))];
  const metrics = [...new Map(figures.map((f) => [f.metric, f.unit])).entries()];
  const fmt = (v) => (Number.isNaN(v) ? "n/a" : v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2));
  const rows = metrics.map(([metric, unit]) => {
    const cells = pairs.map((p) => { const f = figures.find((x) => x.pair === p && x.metric === metric); return f ? fmt(f.value) : "–"; });
    return `| ${metric} | ${unit} | ${cells.join(" | ")} |`;
  });
  return [`| metric | unit | ${pairs.join(" | ")} |`, `|---|---|${"---:|".repeat(pairs.length)}`, ...rows].join("\n");
}

// ---------------------------------------------------------------------------------------------
// Loss matrix.

const LOSS = lossOptions();
const TAB_PAIR = "miaou native ↔ Chromium tab";
const BACK_PAIR = "miaou Chromium tab → native";
const CHROMIUM_PAIR = "Chromium ↔ Chromium";

/** One cell: `open()` connects (no loss yet) and returns the page to drive; then the loss is
 *  set, `method` runs in that page, and the loss is removed whatever happens. */
async function lossCellRun(cells, pair, permille, open, method, cleanup) {
  setLoss(0);
  const load = load1();
  const target = targetBytes(LOSS.mib, permille);
  const capMs = LOSS.capS * 1000;
  const base = { pair, permille, target, capS: LOSS.capS, load };
  try {
    const page = await within(open(), `${pair}: connect`, 60_000);
    // Untimed warm-up with no loss, 8 MiB the same way (as in workloads()): the first bulk
    // transfer on a fresh Chromium connection stalls for seconds, which is not loss.
    const warm = method === "cappedStream" ? "stream" : "sink";
    await within(page.evaluate(([w]) => window.driver[w](512, 16384), [warm]), `${pair}: warm-up`, 120_000);
    setLoss(permille);
    const r = await within(
      page.evaluate(([m, c, s, cap]) => window.driver[m](c, s, cap), [method, Math.ceil(target / MESSAGE_BYTES), MESSAGE_BYTES, capMs]),
      `${pair} at ${permille} per mille`, capMs + 90_000);
    record(cells, lossCell(base, r));
  } catch (e) {
    record(cells, lossCell(base, { bytes: NaN, seconds: NaN, finished: false, gapMs: NaN, error: e.message.split("\n")[0] }));
  } finally {
    setLoss(0);
    await cleanup();
  }
}

/** miaou native ↔ Chromium tab, both directions: a fresh bench-peer and tab per cell. */
async function nativeTabLoss(cells, bridge, pages) {
  const browser = await launchChromium();
  try {
    for (const [pair, method] of [[TAB_PAIR, "cappedStream"], [BACK_PAIR, "cappedSink"]]) {
      for (const permille of LOSS.levels) {
        const room = `loss-${method}-${permille}`;
        let peer = null;
        let page = null;
        const open = async () => {
          peer = await startBenchPeer(bridge.ws, room);
          page = await benchPage(browser, pages.http, [benchLib]);
          await page.evaluate(async ([signal, r]) => {
            const { default: init, Transport } = await import("miaou-transport");
            await init();
            const t = await Transport.connect({ signal, room: r });
            const peerId = await new Promise((resolve) => t.onPeer((e) => e.type === "connected" && resolve(e.peerId)));
            window.driver = window.benchLib.driver({
              send: (data) => t.send(peerId, data),
              onmessage: (handler) => t.onMessage((_, data) => handler(data)),
            });
          }, [bridge.ws, room]);
          return page;
        };
        // The peer may still be streaming into a stalled link: no graceful close, just end it.
        const cleanup = async () => { await page?.close().catch(() => {}); peer?.proc.kill("SIGKILL"); };
        await lossCellRun(cells, pair, permille, open, method, cleanup);
      }
    }
  } finally {
    await browser.close();
  }
}

/** Chromium ↔ Chromium: two tabs, a fresh connection per cell (the previous one closed). */
/** Two raw-RTCPeerConnection tabs; each one's signalOut is relayed to the other's signalIn. */
async function relayedRawTabs(browser, http) {
  const a = await benchPage(browser, http, [benchLib, rawPeerPage]);
  const b = await benchPage(browser, http, [benchLib, rawPeerPage]);
  const relay = (to) => (m) => { to.evaluate((msg) => window.rawPeer.signalIn(msg), m).catch(() => {}); };
  await a.exposeFunction("signalOut", relay(b));
  await b.exposeFunction("signalOut", relay(a));
  return [a, b];
}

async function chromiumLoss(cells, pages) {
  const browser = await launchChromium();
  try {
    const [a, b] = await relayedRawTabs(browser, pages.http);
    let gen = 0;
    for (const permille of LOSS.levels) {
      const open = async () => {
        gen += 1;
        await Promise.all([b.evaluate((g) => window.rawPeer.answer(g), gen), a.evaluate((g) => window.rawPeer.offer(g), gen)]);
        await b.evaluate(() => window.benchLib.respond(window.channel));
        await a.evaluate(() => { window.driver = window.benchLib.driver(window.channel); });
        return a;
      };
      await lossCellRun(cells, CHROMIUM_PAIR, permille, open, "cappedSink", async () => {});
    }
  } finally {
    await browser.close();
  }
}

if (LOSS.levels.length) {
  const cells = [];
  const bridge = await startBridge();
  const pages = await startPageServer();
  try {
    if (WHICH === "all" || WHICH === "native-tab") await nativeTabLoss(cells, bridge, pages);
    if (WHICH === "all" || WHICH === "chromium") await chromiumLoss(cells, pages);
  } finally {
    setLoss(0);
    bridge.stop();
    pages.close();
  }
  for (const c of cells) console.log(`| ${c.pair} | ${(c.loss_permille / 10).toFixed(1)} % | ${describe(c)} | ${c.load1} |`);
  appendCells(JSON_OUT, cells);
  process.exit(0);
}

const figures = [];
const bridge = await startBridge();
const pages = await startPageServer();
try {
  if (WHICH === "all" || WHICH === "native-tab") await nativeTab(figures, bridge, pages);
  if (WHICH === "all" || WHICH === "chromium") await chromiumChromium(figures, bridge, pages);
} finally {
  bridge.stop();
  pages.close();
}
console.log(markdown(figures));
console.log(`\n${MIB} MiB per throughput run. Browser pairs' "peak RSS": peak of the summed Pss of the Chromium`
  + ` process tree (+ the native peer's VmHWM); "miaou native ↔ Chromium tab" throughput is native → tab.`);
if (JSON_OUT) fs.appendFileSync(JSON_OUT, figures.map((f) => JSON.stringify(f)).join("\n") + "\n");
