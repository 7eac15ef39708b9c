// node-datachannel (libdatachannel) <-> node-datachannel, two peer connections in one Node
// process, measured with the same workloads as `native-demo bench` (native-demo/src/bench/):
// throughput by message size, 64-byte message rate, 32-byte RTT, time to open, peak RSS, CPU
// per GB. Prints a markdown table; `--json FILE` appends JSON lines. Run inside the namespace:
//   tests/scripts/in-netns.sh node tests/bench/ndc.bench.mjs [--mib 64] [--opens 20] [--json F]
// With `--loss 0,10,20,50` (per mille; `--loss-mib 16`, `--loss-cap-s 60`) it runs the loss
// matrix instead (docs/testing-under-loss.md): per level a fresh connection opened with no loss,
// then UDP drop set (tests/bench/netem.mjs), one capped 16 KiB-message transfer a → b.
import nodeDataChannel from "node-datachannel";
import fs from "node:fs";
import { MESSAGE_BYTES, appendCells, load1, lossCell, lossOptions, record, setLoss, targetBytes } from "./netem.mjs";

const { PeerConnection } = nodeDataChannel;
const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const MIB = Number(arg("mib", 64));
const OPENS = Number(arg("opens", 20));
const JSON_OUT = arg("json", null);
const PAIR = "node-datachannel ↔ node-datachannel";
const HIGH_WATER = 1024 * 1024;
const LOW_WATER = 256 * 1024;

/** A FIFO of received messages with an awaitable `next()`. */
function inbox() {
  const items = [];
  let waiter = null;
  return {
    push(m) { if (waiter) { const w = waiter; waiter = null; w(m); } else items.push(m); },
    next() { return items.length ? Promise.resolve(items.shift()) : new Promise((r) => { waiter = r; }); },
  };
}

/** One side's channel with send backpressure on bufferedAmount, like the Rust pairs. */
function side(dc) {
  const received = inbox();
  let lowWaiter = null;
  dc.setBufferedAmountLowThreshold(LOW_WATER);
  dc.onBufferedAmountLow(() => { if (lowWaiter) { const w = lowWaiter; lowWaiter = null; w(); } });
  dc.onMessage((m) => received.push(m));
  return {
    async send(buf) {
      while (dc.bufferedAmount() > HIGH_WATER) {
        await new Promise((r) => { lowWaiter = r; setTimeout(r, 50); });
      }
      dc.sendMessageBinary(buf);
    },
    recv: () => received.next(),
  };
}

/** Connects a (offerer) and b in this process; resolves with the link and the time taken. */
async function connect(index) {
  const started = performance.now();
  const options = { iceServers: [], maxMessageSize: 2 * 1024 * 1024 };
  const a = new PeerConnection(`a${index}`, options);
  const b = new PeerConnection(`b${index}`, options);
  // Candidates can be gathered before the other side has our description: hold them until then.
  const relay = (from, to) => {
    let described = false;
    const held = [];
    from.onLocalDescription((sdp, type) => {
      to.setRemoteDescription(sdp, type);
      described = true;
      held.splice(0).forEach(([c, mid]) => to.addRemoteCandidate(c, mid));
    });
    from.onLocalCandidate((c, mid) => (described ? to.addRemoteCandidate(c, mid) : held.push([c, mid])));
  };
  relay(a, b);
  relay(b, a);
  const bChannel = new Promise((resolve) => b.onDataChannel(resolve));
  const dcA = a.createDataChannel("bench");
  await new Promise((resolve) => dcA.onOpen(resolve));
  const dcB = await bChannel;
  const elapsed = performance.now() - started;
  const link = { a: side(dcA), b: side(dcB), close() { dcA.close(); dcB.close(); a.close(); b.close(); } };
  return { link, elapsed };
}

async function throughput(link, size, total) {
  const count = Math.ceil(total / size);
  const payload = Buffer.alloc(size, 0x5a);
  const cpu = process.cpuUsage();
  const started = performance.now();
  const receiver = (async () => { let bytes = 0; while (bytes < count * size) bytes += (await link.b.recv()).length; return bytes; })();
  for (let i = 0; i < count; i++) await link.a.send(payload);
  const bytes = await receiver;
  const seconds = (performance.now() - started) / 1000;
  const used = process.cpuUsage(cpu);
  return { mbps: bytes / 1e6 / seconds, cpuPerGb: (used.user + used.system) / 1e6 / (bytes / 1e9) };
}

async function messageRate(link, count) {
  const payload = Buffer.alloc(64, 0x64);
  const started = performance.now();
  const receiver = (async () => { for (let i = 0; i < count; i++) await link.b.recv(); })();
  for (let i = 0; i < count; i++) await link.a.send(payload);
  await receiver;
  return count / ((performance.now() - started) / 1000);
}

async function rtt(link, warmup, rounds) {
  const payload = Buffer.alloc(32, 0x20);
  const samples = [];
  for (let i = 0; i < warmup + rounds; i++) {
    const t = process.hrtime.bigint();
    await link.a.send(payload);
    await link.b.send(await link.b.recv());
    await link.a.recv();
    if (i >= warmup) samples.push(Number(process.hrtime.bigint() - t) / 1000);
  }
  samples.sort((x, y) => x - y);
  const at = (q) => samples[Math.round((samples.length - 1) * q)];
  return { median: at(0.5), p99: at(0.99) };
}

/** `total` bytes a → b in 16 KiB messages, stopped at `capMs`: bytes received, seconds (first
 *  send to last receive, or the cap), whether it finished, the longest receive gap (ms). */
async function cappedTransfer(link, total, capMs) {
  const count = Math.ceil(total / MESSAGE_BYTES);
  const payload = Buffer.alloc(MESSAGE_BYTES, 0x5a);
  const started = performance.now();
  let bytes = 0;
  let received = 0;
  let last = started;
  let gap = 0;
  let stop = false;
  const receiver = (async () => {
    while (received < count && !stop) {
      const m = await link.b.recv();
      const now = performance.now();
      gap = Math.max(gap, now - last);
      last = now;
      bytes += m.length;
      received += 1;
    }
  })();
  const sender = (async () => { for (let i = 0; i < count && !stop; i++) await link.a.send(payload); })();
  let timer;
  const cap = new Promise((resolve) => { timer = setTimeout(() => resolve("cap"), capMs); });
  const outcome = await Promise.race([Promise.all([sender, receiver]).then(() => "done"), cap]);
  clearTimeout(timer);
  stop = true;
  if (outcome === "done") return { bytes, seconds: (last - started) / 1000, finished: true, gapMs: gap };
  // Still silent at the cap: that silence counts as a gap too.
  return { bytes, seconds: capMs / 1000, finished: false, gapMs: Math.max(gap, performance.now() - last) };
}

const LOSS = lossOptions();
if (LOSS.levels.length) {
  const cells = [];
  for (const permille of LOSS.levels) {
    setLoss(0);
    const load = load1();
    const { link } = await connect(`loss-${permille}`);
    const target = targetBytes(LOSS.mib, permille);
    setLoss(permille);
    const r = await cappedTransfer(link, target, LOSS.capS * 1000);
    setLoss(0);
    link.close();
    record(cells, lossCell({ pair: PAIR, permille, target, capS: LOSS.capS, load }, r));
  }
  appendCells(JSON_OUT, cells);
  process.exit(0);
}

const figures = [];
const figure = (metric, value, unit) => figures.push({ pair: PAIR, metric, value, unit });
const opens = [];
for (let i = 0; i < OPENS; i++) {
  const { link, elapsed } = await connect(i);
  opens.push(elapsed);
  link.close();
}
const { link } = await connect("bench");
const cpu = [];
for (const [label, size] of [["1 KiB", 1024], ["16 KiB", 16384], ["64 KiB", 65536], ["1 MiB", 1048576]]) {
  const { mbps, cpuPerGb } = await throughput(link, size, MIB * 1024 * 1024);
  figure(`throughput, ${label} messages`, mbps, "MB/s");
  cpu.push(cpuPerGb);
}
figure("64-byte message rate", await messageRate(link, 50_000), "msg/s");
const { median, p99 } = await rtt(link, 100, 1000);
figure("RTT 32 B, median", median, "µs");
figure("RTT 32 B, p99", p99, "µs");
figure("CPU per GB moved (best size, both ends)", Math.min(...cpu), "s/GB");
opens.sort((x, y) => x - y);
figure("time to open channel, median", opens[Math.floor(opens.length / 2)], "ms");
figure("peak RSS (both ends, one process)", process.resourceUsage().maxRSS / 1024, "MiB");
link.close();

const fmt = (v) => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2));
console.log(`| metric | unit | ${PAIR} |\n|---|---|---:|`);
for (const f of figures) console.log(`| ${f.metric} | ${f.unit} | ${fmt(f.value)} |`);
if (JSON_OUT) fs.appendFileSync(JSON_OUT, figures.map((f) => JSON.stringify(f)).join("\n") + "\n");
// Exit directly: libdatachannel's global cleanup at exit can crash once everything is closed,
// and every figure is already written.
process.exit(0);
