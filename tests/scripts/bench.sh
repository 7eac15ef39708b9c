#!/usr/bin/env bash
# The whole benchmark suite, one command (`npm run bench`): every pair side by side in one run,
# inside one private network namespace (tests/scripts/in-netns.sh), on the same machine:
#   miaou native ↔ miaou native, raw webrtc-rs ↔ raw webrtc-rs   (native-demo bench)
#   node-datachannel ↔ node-datachannel                          (tests/bench/ndc.bench.mjs)
#   miaou native ↔ Chromium tab, Chromium ↔ Chromium             (tests/bench/browser.bench.mjs)
#   the bridge with 10 000 WebSocket clients                     (native-demo bench-bridge)
# then the loss matrix (docs/testing-under-loss.md): every pair above but the bridge, both
# browser directions, at 0, 1, 2 and 5 % UDP loss (tests/scripts/netem.sh), one capped transfer
# of 16 KiB messages per cell: MB/s and the longest receive gap, or "DNF (x MB in 60 s)".
# Each pair runs in its own process(es), one after another, so peak RSS and CPU time are its own.
# Prints one markdown table (tests/bench/report.mjs) and keeps the JSON lines
# ({"pair", "metric", "value", "unit"}) in target/bench/. Knobs (env): MIAOU_BENCH_MIB (64 MiB
# per throughput run), MIAOU_BENCH_OPENS (20), MIAOU_BENCH_CLIENTS (10000),
# MIAOU_BENCH_UPDATE=1 also rewrites the table in BENCHMARKS.md. Loss matrix: MIAOU_BENCH_LOSS
# (levels per mille, "0,10,20,50"; empty: no matrix), MIAOU_BENCH_LOSS_MIB (16 MiB per cell,
# half from 5 % up), MIAOU_BENCH_LOSS_CAP_S (60). MIAOU_BENCH_ONLY=loss runs only the matrix.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
mib="${MIAOU_BENCH_MIB:-64}"
opens="${MIAOU_BENCH_OPENS:-20}"
clients="${MIAOU_BENCH_CLIENTS:-10000}"
loss="${MIAOU_BENCH_LOSS-0,10,20,50}"
loss_mib="${MIAOU_BENCH_LOSS_MIB:-16}"
loss_cap="${MIAOU_BENCH_LOSS_CAP_S:-60}"
only="${MIAOU_BENCH_ONLY:-}"
case $only in "" | loss) ;; *) echo "MIAOU_BENCH_ONLY: only 'loss' is known" >&2; exit 2 ;; esac

step() { printf '\n== %s\n' "$*" >&2; }

# Same prerequisites as the tests (Chromium, nftables for the loss harness, wasm-bindgen, npm
# packages), installed if missing.
need_apt=()
command -v chromium >/dev/null || need_apt+=(chromium)
command -v ip >/dev/null || need_apt+=(iproute2)
if [ -n "$loss" ]; then command -v nft >/dev/null || need_apt+=(nftables); fi
if [ ${#need_apt[@]} -gt 0 ]; then
  step "installing ${need_apt[*]} (apt-get)"
  sudo=(); [ "$(id -u)" = 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
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
  demo=$1 out=$2 mib=$3 opens=$4 clients=$5 loss=$6 loss_mib=$7 loss_cap=$8 only=$9
  run() { printf "\n-- %s\n" "$1" >&2; shift; "$@"; }
  if [ "$only" != loss ]; then
    run "raw webrtc-rs" "$demo" bench --pair raw --mib "$mib" --opens "$opens" --json "$out"
    run "miaou native" "$demo" bench --pair miaou --mib "$mib" --opens "$opens" --json "$out"
    run "node-datachannel" node tests/bench/ndc.bench.mjs --mib "$mib" --opens "$opens" --json "$out"
    run "Chromium pairs" node tests/bench/browser.bench.mjs --mib "$mib" --opens "$opens" --json "$out"
    run "bridge scale" "$demo" bench-bridge --clients "$clients" --json "$out"
  fi
  if [ -n "$loss" ]; then
    # Whatever happens, no loss rule outlives the matrix (the namespace goes with us anyway).
    trap "bash tests/scripts/netem.sh clear" EXIT
    l=(--loss "$loss" --loss-mib "$loss_mib" --loss-cap-s "$loss_cap" --json "$out")
    run "loss matrix: miaou native" "$demo" bench --pair miaou "${l[@]}"
    run "loss matrix: raw webrtc-rs" "$demo" bench --pair raw "${l[@]}"
    run "loss matrix: node-datachannel" node tests/bench/ndc.bench.mjs "${l[@]}"
    run "loss matrix: Chromium pairs" node tests/bench/browser.bench.mjs "${l[@]}"
  fi
' bench "$demo" "$out" "$mib" "$opens" "$clients" "$loss" "$loss_mib" "$loss_cap" "$only"

step "report"
update=()
if [ "${MIAOU_BENCH_UPDATE:-}" = 1 ]; then update=(--update BENCHMARKS.md); fi
node tests/bench/report.mjs "$out" "${update[@]}"
