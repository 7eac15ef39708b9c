#!/usr/bin/env bash
# Like-for-like measurement of raw webrtc-rs 0.17.2 and 0.21.1 (docs/native-backend.md): builds
# both pairs (release, -j 2), then runs them RUNS times, interleaved (0.17, 0.21, 0.17, …), each
# run in its own private network namespace (tests/scripts/in-netns.sh: loopback only, so the
# UDP drop counter belongs to that run), and prints the median and range of every figure.
# Knobs (env): RUNS (3), OPENS (10 connections for time to open), MIB (64 MiB per throughput
# run), WITH_BUILTIN=1 adds a third stack: 0.21 with its own awaitable send limit instead of
# the bufferedamountlow loop. JSON lines: target/results-<UTC time>.jsonl.
# Usage (from anywhere): tests/bench/webrtc-backends/run.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
export CARGO_TARGET_DIR="$here/target"
runs="${RUNS:-3}" opens="${OPENS:-10}" mib="${MIB:-64}"

(cd "$here" && cargo build --release --locked -j "${CARGO_BUILD_JOBS:-2}")
bin="$CARGO_TARGET_DIR/release"
out="$CARGO_TARGET_DIR/results-$(date -u +%Y%m%dT%H%M%SZ).jsonl"
: >"$out"

one() { # STACK-LABEL ENV... BINARY
  local label=$1
  shift
  local load
  load="$(cut -d' ' -f1 /proc/loadavg)"
  printf '\n-- run %s/%s: %s (load average %s)\n' "$run" "$runs" "$label" "$load" >&2
  # The machine's load when the run started: other processes share the cores.
  printf '{"stack":"%s","metric":"load average (1 min) at start","value":%s,"unit":""}\n' \
    "$label" "$load" >>"$out"
  "$root/tests/scripts/in-netns.sh" env "$@" --opens "$opens" --mib "$mib" --json "$out" >/dev/null
}
for run in $(seq 1 "$runs"); do
  one "webrtc 0.17.2" "$bin/webrtc017"
  one "webrtc 0.21.1" "$bin/webrtc021"
  if [ "${WITH_BUILTIN:-}" = 1 ]; then
    one "webrtc 0.21.1 (built-in send limit)" BACKPRESSURE=builtin "$bin/webrtc021"
  fi
done
printf '\n' >&2
node "$here/summarize.mjs" "$out"
echo "(JSON lines: $out)" >&2
