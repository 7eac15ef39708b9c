#!/usr/bin/env bash
# The whole benchmark suite, one command (`npm run bench`): every pair side by side in one run,
# inside one private network namespace (tests/scripts/in-netns.sh), on the same machine:
#   miaou native ↔ miaou native, raw webrtc-rs ↔ raw webrtc-rs   (native-demo bench)
#   node-datachannel ↔ node-datachannel                          (tests/bench/ndc.bench.mjs)
#   miaou native ↔ Chromium tab, Chromium ↔ Chromium             (tests/bench/browser.bench.mjs)
#   the bridge with 10 000 WebSocket clients                     (native-demo bench-bridge)
# Each pair runs in its own process(es), one after another, so peak RSS and CPU time are its own.
# Prints one markdown table (tests/bench/report.mjs) and keeps the JSON lines
# ({"pair", "metric", "value", "unit"}) in target/bench/. Knobs (env): MIAOU_BENCH_MIB (64 MiB
# per throughput run), MIAOU_BENCH_OPENS (20), MIAOU_BENCH_CLIENTS (10000),
# MIAOU_BENCH_UPDATE=1 also rewrites the table in BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
mib="${MIAOU_BENCH_MIB:-64}"
opens="${MIAOU_BENCH_OPENS:-20}"
clients="${MIAOU_BENCH_CLIENTS:-10000}"

step() { printf '\n== %s\n' "$*" >&2; }

# Same prerequisites as the tests (Chromium, wasm-bindgen, npm packages), installed if missing.
bash tests/scripts/setup.sh
[ -d node_modules/node-datachannel ] && [ -d node_modules/playwright-core ] || npm ci --no-audit --no-fund
step "building native-demo (release)"
cargo build --release -p native-demo

mkdir -p target/bench
out="$(pwd)/target/bench/run-$(date -u +%Y%m%dT%H%M%SZ).jsonl"
: >"$out"
demo="$(pwd)/target/release/native-demo"

step "running every pair in one network namespace (results: $out)"
tests/scripts/in-netns.sh bash -c '
  set -euo pipefail
  demo=$1 out=$2 mib=$3 opens=$4 clients=$5
  run() { printf "\n-- %s\n" "$1" >&2; shift; "$@"; }
  run "raw webrtc-rs" "$demo" bench --pair raw --mib "$mib" --opens "$opens" --json "$out"
  run "miaou native" "$demo" bench --pair miaou --mib "$mib" --opens "$opens" --json "$out"
  run "node-datachannel" node tests/bench/ndc.bench.mjs --mib "$mib" --opens "$opens" --json "$out"
  run "Chromium pairs" node tests/bench/browser.bench.mjs --mib "$mib" --opens "$opens" --json "$out"
  run "bridge scale" "$demo" bench-bridge --clients "$clients" --json "$out"
' bench "$demo" "$out" "$mib" "$opens" "$clients"

step "report"
update=()
if [ "${MIAOU_BENCH_UPDATE:-}" = 1 ]; then update=(--update BENCHMARKS.md); fi
node tests/bench/report.mjs "$out" "${update[@]}"
