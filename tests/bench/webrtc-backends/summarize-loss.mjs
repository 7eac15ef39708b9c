// Turns the JSON lines of loss.sh ({"stack", "metric", "value", "unit", "tag"}) into two
// markdown tables: per loss rate and stack, the throughput and longest receive gap of the
// 16 KiB transfers (median [min–max] of the runs that finished; DNF counts the others), and
// the time to open per stack and setting (median [min–max] of the runs' medians).
// Usage: node summarize-loss.mjs LOSS.jsonl
import { readFileSync } from "node:fs";

const file = process.argv[2];
if (!file) {
  console.error("usage: node summarize-loss.mjs LOSS.jsonl");
  process.exit(2);
}
const figures = readFileSync(file, "utf8")
  .split("\n")
  .filter((l) => l.trim())
  .map((l) => JSON.parse(l));

const fmt = (v) => {
  if (!Number.isFinite(v)) return "n/a";
  const a = Math.abs(v);
  const s = a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : v.toFixed(2);
  return s.replace(/\B(?=(\d{3})+(?!\d))/g, " ");
};
const median = (v) => (v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2);
const cell = (v) => {
  if (v.length === 0) return "–";
  v = [...v].sort((a, b) => a - b);
  return v.length === 1 ? fmt(v[0]) : `${fmt(median(v))} [${fmt(v[0])}–${fmt(v[v.length - 1])}]`;
};
const values = (stack, tag, metric) =>
  figures.filter((f) => f.stack === stack && f.tag === tag && f.metric === metric && f.value !== null).map((f) => f.value);
const count = (stack, tag, metric) => values(stack, tag, metric).reduce((a, b) => a + b, 0);
const stacks = [...new Set(figures.map((f) => f.stack))];
const tags = [...new Set(figures.map((f) => f.tag))];
const lossTags = tags.filter((t) => t.startsWith("loss"));
const openTags = tags.filter((t) => t.startsWith("open"));

let out = "";
out += "| loss | stack | MB/s, 16 KiB messages | longest receive gap, ms | finished | DNF (60 s cap) | MB received by the cap (DNF runs) | failed opens | ARQ packets lost | load average |\n";
out += "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n";
for (const tag of lossTags) {
  for (const stack of stacks) {
    const load = values(stack, tag, "load average (1 min) at start");
    if (load.length === 0) continue;
    const mbps = values(stack, tag, "throughput, 16384 B messages");
    const dnf = count(stack, tag, "DNF, throughput, 16384 B messages");
    const failedOpens = count(stack, tag, "open failed");
    out += `| ${tag.replace("loss ", "")} | ${stack} | ${cell(mbps)} | ${cell(
      values(stack, tag, "longest receive gap, 16384 B messages"),
    )} | ${mbps.length} of ${load.length} | ${dnf} | ${cell(values(stack, tag, "received by the cap, 16384 B messages"))} | ${failedOpens} | ${cell(
      values(stack, tag, "ARQ packets declared lost (both sides)"),
    )} | ${cell(load)} |\n`;
  }
}
out += "\n| time to open (no loss) | setting | median of 10, ms | min, ms | max, ms | of which signaling, ms | failed |\n";
out += "|---|---|---:|---:|---:|---:|---:|\n";
for (const tag of openTags) {
  for (const stack of stacks) {
    const load = values(stack, tag, "load average (1 min) at start");
    if (load.length === 0) continue;
    const failed = count(stack, tag, "open failed") + count(stack, tag, "process failed or killed");
    out += `| ${stack} | ${tag} | ${cell(values(stack, tag, "time to open, median"))} | ${cell(values(stack, tag, "time to open, min"))} | ${cell(
      values(stack, tag, "time to open, max"),
    )} | ${cell(values(stack, tag, "of which signaling (complete SDPs), median"))} | ${failed} of ${load.length} |\n`;
  }
}
process.stdout.write(out);
