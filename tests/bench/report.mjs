// Turns the JSON lines of one benchmark run ({"pair", "metric", "value", "unit"} per line) into
// the markdown of BENCHMARKS.md: one column per pair, then miaou's ratios against raw webrtc-rs
// and node-datachannel from the same run, then the targets of issue 4 with their ratios, then
// the loss matrix (lines with "kind": "loss", tests/bench/netem.mjs): one row per pair, one
// column per loss level.
// Usage: node tests/bench/report.mjs RUN.jsonl [--update BENCHMARKS.md]
//   --update rewrites the part of the file between <!-- bench:start --> and <!-- bench:end -->.
import fs from "node:fs";
import path from "node:path";
import { describe } from "./netem.mjs";

const [file] = process.argv.slice(2);
const updateAt = process.argv.indexOf("--update");
const target = updateAt > 0 ? process.argv[updateAt + 1] : null;
if (!file) {
  console.error("usage: node tests/bench/report.mjs RUN.jsonl [--update BENCHMARKS.md]");
  process.exit(2);
}

const records = fs
  .readFileSync(file, "utf8")
  .split("\n")
  .filter((l) => l.trim())
  .map((l) => JSON.parse(l));
const figures = records.filter((l) => l.kind !== "loss");
const lossCells = records.filter((l) => l.kind === "loss");

const MIAOU = "miaou native ↔ miaou native";
const RAW = "raw webrtc-rs ↔ raw webrtc-rs";
const NDC = "node-datachannel ↔ node-datachannel";
const TAB = "miaou native ↔ Chromium tab";
const BACK = "miaou Chromium tab → native";
const CHROMIUM = "Chromium ↔ Chromium";
const BRIDGE = "bridge (signaling)";

// Pairs in a fixed order (those present), metrics in first-seen order.
const order = [MIAOU, RAW, NDC, TAB, CHROMIUM];
const pairs = order.filter((p) => figures.some((f) => f.pair === p));
pairs.push(...[...new Set(figures.map((f) => f.pair))].filter((p) => !order.includes(p) && p !== BRIDGE));
const metrics = [];
for (const f of figures) {
  if (f.pair !== BRIDGE && !metrics.some((m) => m.metric === f.metric)) metrics.push(f);
}
const value = (pair, metric) => figures.find((f) => f.pair === pair && f.metric === metric)?.value;

function fmt(v) {
  if (v === undefined || v === null || Number.isNaN(v)) return "n/a";
  if (Math.abs(v) >= 1000) return Math.round(v).toLocaleString("en-US").replace(/,/g, " ");
  if (Math.abs(v) >= 100) return v.toFixed(0);
  if (Math.abs(v) >= 10) return v.toFixed(1);
  return v.toFixed(2);
}
// For time, memory and CPU smaller is better: ratios are written so that > 1 means miaou wins.
const lowerIsBetter = (unit) => ["µs", "ms", "MiB", "s/GB", "s", "KiB"].includes(unit);
function ratio(ours, theirs, unit) {
  if (ours === undefined || theirs === undefined || !ours || !theirs) return "n/a";
  if (Number.isNaN(ours) || Number.isNaN(theirs)) return "n/a";
  const r = lowerIsBetter(unit) ? theirs / ours : ours / theirs;
  return `${r.toFixed(2)}×`;
}

const lines = [];
if (figures.length) {
  lines.push(`| metric | unit | ${pairs.join(" | ")} | miaou ÷ raw | miaou ÷ ndc |`);
  lines.push(`|---|---|${pairs.map(() => "---:").join("|")}|---:|---:|`);
  for (const { metric, unit } of metrics) {
    const cells = pairs.map((p) => fmt(value(p, metric)));
    const ours = value(MIAOU, metric);
    lines.push(
      `| ${metric} | ${unit} | ${cells.join(" | ")} | ${ratio(ours, value(RAW, metric), unit)} | ${ratio(ours, value(NDC, metric), unit)} |`,
    );
  }
  lines.push("");
  lines.push("Ratios: > 1× means miaou is better (faster, or less time / memory / CPU).");

  const bridge = figures.filter((f) => f.pair === BRIDGE);
  if (bridge.length) {
    lines.push("", "Bridge scale:", "", "| metric | value | unit |", "|---|---:|---|");
    for (const f of bridge) lines.push(`| ${f.metric} | ${fmt(f.value)} | ${f.unit} |`);
  }

  // The targets of issue 4, each as a measured ratio (≥ the goal = met).
  const t = (label, goal, measured) => {
    const ok = measured !== undefined && !Number.isNaN(measured) && measured >= goal;
    const shown = measured === undefined || Number.isNaN(measured) ? "n/a" : `${measured.toFixed(2)}×`;
    return `| ${label} | ≥ ${goal}× | ${shown} | ${ok ? "met" : "missed"} |`;
  };
  const v = (p, m) => value(p, m);
  const div = (a, b) => (a === undefined || b === undefined || !b ? undefined : a / b);
  const TPUT = (size) => `throughput, ${size} messages`;
  lines.push("", "Targets (issue 4), from this run:", "", "| target | goal | measured | |", "|---|---:|---:|---|");
  lines.push(t("native↔native 64 KiB throughput ÷ node-datachannel", 1.5, div(v(MIAOU, TPUT("64 KiB")), v(NDC, TPUT("64 KiB")))));
  lines.push(t("native↔native 1 MiB throughput ÷ node-datachannel", 1.5, div(v(MIAOU, TPUT("1 MiB")), v(NDC, TPUT("1 MiB")))));
  // Codec overhead ≤ 3 %: miaou keeps ≥ 0.97 of raw webrtc-rs throughput with the same settings.
  lines.push(t("16 KiB throughput ÷ raw webrtc-rs (codec overhead ≤ 3 %)", 0.97, div(v(MIAOU, TPUT("16 KiB")), v(RAW, TPUT("16 KiB")))));
  lines.push(t("1 KiB throughput ÷ raw webrtc-rs (codec overhead ≤ 3 %)", 0.97, div(v(MIAOU, TPUT("1 KiB")), v(RAW, TPUT("1 KiB")))));
  lines.push(t("64-byte message rate ÷ raw webrtc-rs", 10, div(v(MIAOU, "64-byte message rate"), v(RAW, "64-byte message rate"))));
  lines.push(t("RTT median: node-datachannel ÷ miaou", 1, div(v(NDC, "RTT 32 B, median"), v(MIAOU, "RTT 32 B, median"))));
  lines.push(t("time to open via bridge: 50 ms ÷ miaou", 1, div(50, v(MIAOU, "time to open channel, median"))));
  for (const size of ["16 KiB", "64 KiB"]) {
    lines.push(t(`native↔Chromium ${size} throughput ÷ Chromium↔Chromium`, 1, div(v(TAB, TPUT(size)), v(CHROMIUM, TPUT(size)))));
  }
}

// The loss matrix: MB/s and the longest receive gap per (pair, level), or DNF with what arrived.
if (lossCells.length) {
  const levels = [...new Set(lossCells.map((c) => c.loss_permille))].sort((x, y) => x - y);
  const lossOrder = [MIAOU, RAW, NDC, TAB, BACK, CHROMIUM];
  const lossPairs = [...lossOrder, ...new Set(lossCells.map((c) => c.pair))].filter((p, i, all) => all.indexOf(p) === i && lossCells.some((c) => c.pair === p));
  const pct = (permille) => `${(permille / 10).toString()} %`;
  const mib = (bytes) => `${+(bytes / 1048576).toFixed(1)} MiB`;
  const sizes = [...new Set(lossCells.map((c) => `${pct(c.loss_permille)}: ${mib(c.target_bytes)}`))];
  const caps = [...new Set(lossCells.map((c) => c.cap_s))];
  if (lines.length) lines.push("");
  lines.push(
    "Under packet loss (UDP datagrams dropped at random on the namespace's input, each direction; connection opened first, with no loss):",
    "",
    `| pair | ${levels.map(pct).join(" | ")} | load avg (1 min) |`,
    `|---|${levels.map(() => "---:").join("|")}|---:|`,
  );
  for (const pair of lossPairs) {
    const mine = lossCells.filter((c) => c.pair === pair);
    const cells = levels.map((l) => { const c = mine.find((x) => x.loss_permille === l); return c ? describe(c) : "–"; });
    const loads = mine.map((c) => c.load1).filter(Number.isFinite);
    const load = loads.length ? `${Math.min(...loads).toFixed(2)}–${Math.max(...loads).toFixed(2)}` : "n/a";
    lines.push(`| ${pair} | ${cells.join(" | ")} | ${load} |`);
  }
  lines.push(
    "",
    `One transfer per cell, a fresh connection each, 16 KiB messages (${sizes.join(", ")}); MB/s = 10⁶ B/s from the first send to the last message; "gap": the longest time without a message at the receiver; DNF: not done after ${caps.join("/")} s (what had arrived by then). Load average: the machine's, when each cell started (2 vCPU shared with other work).`,
  );
}

const markdown = lines.join("\n");
console.log(markdown);
if (target) {
  const doc = fs.readFileSync(target, "utf8");
  const start = "<!-- bench:start -->";
  const end = "<!-- bench:end -->";
  const a = doc.indexOf(start);
  const b = doc.indexOf(end);
  if (a < 0 || b < a) {
    console.error(`${target}: markers ${start} / ${end} not found`);
    process.exit(1);
  }
  // The JSON lines stay in target/bench/ (not committed): name the file, not a local path.
  const stamp = `Run of ${new Date().toISOString().slice(0, 16).replace("T", " ")} UTC (JSON lines: \`target/bench/${path.basename(file)}\`, not committed).`;
  fs.writeFileSync(target, `${doc.slice(0, a + start.length)}\n${stamp}\n\n${markdown}\n${doc.slice(b)}`);
  console.error(`updated ${target}`);
}
