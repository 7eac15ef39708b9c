// The loss harness from Node (docs/testing-under-loss.md): sets UDP drop in the current private
// namespace through tests/scripts/netem.sh, and the shape of one loss-matrix cell, shared with
// native-demo/src/bench/loss.rs so tests/bench/report.mjs reads every pair's cells alike:
//   {"kind": "loss", "pair", "loss_permille", "message_bytes", "target_bytes", "bytes",
//    "seconds", "finished", "error"?, "longest_gap_ms", "cap_s", "load1"}
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const netemScript = path.join(root, "tests/scripts/netem.sh");

/** Runs `netem.sh ARGS...` (throws with its stderr on failure); returns its stdout. */
export function netem(...args) {
  return execFileSync("bash", [netemScript, ...args.map(String)], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

/** Drops `permille` / 1000 of the UDP datagrams this namespace receives (0: none). */
export const setLoss = (permille) => netem("loss", permille);

/** The machine's 1-minute load average (/proc/loadavg). */
export const load1 = () => Number(fs.readFileSync("/proc/loadavg", "utf8").split(" ")[0]);

/** Message size of every loss cell, bytes (as loss.rs MESSAGE_BYTES). */
export const MESSAGE_BYTES = 16384;

/** Bytes to move at `permille`: `mib` MiB, half of it from 5 % up (as loss.rs target_bytes). */
export const targetBytes = (mib, permille) => (permille >= 50 ? (mib * 1048576) / 2 : mib * 1048576);

/** The loss-matrix options of a bench script: `--loss 0,10,20,50` (per mille; absent: no
 *  matrix), `--loss-mib 16`, `--loss-cap-s 60`. */
export function lossOptions(argv = process.argv) {
  const arg = (name) => { const i = argv.indexOf(`--${name}`); return i > 0 ? argv[i + 1] : undefined; };
  const list = arg("loss");
  return {
    levels: list === undefined ? [] : list.split(",").filter((s) => s !== "").map(Number),
    mib: Number(arg("loss-mib") ?? 16),
    capS: Number(arg("loss-cap-s") ?? 60),
  };
}

/** One cell from a transfer's result `{ bytes, seconds, finished, gapMs, error? }`. */
export function lossCell({ pair, permille, target, capS, load }, r) {
  const c = {
    kind: "loss", pair, loss_permille: permille, message_bytes: MESSAGE_BYTES, target_bytes: target,
    bytes: r.bytes, seconds: r.seconds, finished: r.finished, longest_gap_ms: r.gapMs, cap_s: capS, load1: load,
  };
  if (r.error) c.error = r.error;
  return c;
}

/** "27.6 MB/s, gap 12 ms", "DNF (3.1 MB in 60 s), gap 8100 ms" or "failed …" (as loss.rs). */
export function describe(c) {
  const gap = Number.isFinite(c.longest_gap_ms) ? `gap ${c.longest_gap_ms.toFixed(0)} ms` : "gap ?";
  const mb = Number.isFinite(c.bytes) ? (c.bytes / 1e6).toFixed(1) : "?";
  if (c.error) return `failed after ${mb} MB in ${Number(c.seconds).toFixed(1)} s (${c.error})`;
  // Two decimals below 10 MB/s: the stalled stacks move 0.1-1 MB/s.
  const mbps = c.bytes / 1e6 / Math.max(c.seconds, 1e-9);
  if (c.finished) return `${mbps.toFixed(mbps < 10 ? 2 : 1)} MB/s, ${gap}`;
  return `DNF (${mb} MB in ${c.cap_s.toFixed(0)} s), ${gap}`;
}

/** Prints a cell as it is done (stderr) and keeps it. */
export function record(cells, c) {
  cells.push(c);
  console.error(`${c.pair}, ${(c.loss_permille / 10).toFixed(1)} % loss: ${describe(c)} (load ${c.load1})`);
}

/** Appends cells as JSON lines to `file` (if given). */
export function appendCells(file, cells) {
  if (file && cells.length) fs.appendFileSync(file, cells.map((c) => JSON.stringify(c)).join("\n") + "\n");
}
