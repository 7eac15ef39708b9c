// Turns the JSON lines of run.sh ({"stack", "metric", "value", "unit"}, one object per figure,
// several runs per stack) into one markdown table: per metric and stack the median of the runs
// and their range [min–max], and the ratio of the medians of the second stack to the first.
// Usage: node summarize.mjs RESULTS.jsonl
import { readFileSync } from "node:fs";

const file = process.argv[2];
if (!file) {
  console.error("usage: node summarize.mjs RESULTS.jsonl");
  process.exit(2);
}
const figures = readFileSync(file, "utf8")
  .split("\n")
  .filter((l) => l.trim())
  .map((l) => JSON.parse(l));

const stacks = [...new Set(figures.map((f) => f.stack))];
const metrics = [];
for (const f of figures) {
  if (!metrics.some((m) => m.metric === f.metric)) metrics.push({ metric: f.metric, unit: f.unit });
}
const values = (stack, metric) =>
  figures.filter((f) => f.stack === stack && f.metric === metric).map((f) => f.value).sort((a, b) => a - b);
const median = (v) => (v.length === 0 ? NaN : v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2);
const fmt = (v) => {
  if (!Number.isFinite(v)) return "n/a";
  const a = Math.abs(v);
  const s = a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : v.toFixed(2);
  return s.replace(/\B(?=(\d{3})+(?!\d))/g, " ");
};

const runs = Math.max(...stacks.map((s) => values(s, metrics[0].metric).length));
const first = stacks[0];
const last = stacks[1] ?? stacks[0];
let out = `Median of ${runs} runs per stack, [min–max] of the runs.\n\n`;
out += `| metric | unit | ${stacks.join(" | ")} | ${last} ÷ ${first} |\n`;
out += `|---|---|${"---:|".repeat(stacks.length)}---:|\n`;
for (const { metric, unit } of metrics) {
  const cells = stacks.map((s) => {
    const v = values(s, metric);
    if (v.length === 0) return "–";
    return v.length === 1 ? fmt(v[0]) : `${fmt(median(v))} [${fmt(v[0])}–${fmt(v[v.length - 1])}]`;
  });
  const a = median(values(first, metric));
  const b = median(values(last, metric));
  const ratio = a !== 0 && Number.isFinite(a) && Number.isFinite(b) ? `${fmt(b / a)}×` : "–";
  out += `| ${metric} | ${unit} | ${cells.join(" | ")} | ${ratio} |\n`;
}
process.stdout.write(out);
