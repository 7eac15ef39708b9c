#!/usr/bin/env bash
# The loss matrix of docs/native-backend.md ("With the ARQ layer"): throughput and longest
# receive gap of 16 KiB messages for webrtc 0.17.2 and 0.21.1, each on its ordered reliable
# channel and with miaou's ARQ layer over an unordered, maxRetransmits 0, negotiated channel,
# at 0, 1 and 5 % UDP loss; then the time to open of both channel kinds, and of 0.21 with a
# 20 ms ICE check interval. Every cell runs in its own fresh network namespace
# (tests/scripts/in-netns.sh); the loss is an nftables rule on the namespace's input hook that
# drops that share of all UDP packets at random (both directions, loopback).
# On 0.17.2 the negotiated channel stays reliable (webrtc-data applies maxRetransmits only in the
# DCEP exchange), so both + ARQ binaries also run on an in-band channel (ARQ_CHANNEL=inband).
# Knobs (env): RUNS (3), OPENS (3 connections per throughput cell, 10 in the open runs),
# CAP (60 s per throughput cell, DNF over it), LOSSES ("0 10 50", per mille), MIB (16; 8 at
# 5 % and above), ONLY (a bash regex: run only the stacks whose label matches it). JSON lines: target/loss-<UTC time>.jsonl; summary: summarize-loss.mjs.
# Usage (from anywhere): tests/bench/webrtc-backends/loss.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
export CARGO_TARGET_DIR="$here/target"
runs="${RUNS:-3}" opens="${OPENS:-3}" cap="${CAP:-60}" losses="${LOSSES:-0 10 50}"
command -v nft >/dev/null || { echo "needs nft (apt-get install -y nftables)" >&2; exit 1; }

(cd "$here" && cargo build --release --locked -j "${CARGO_BUILD_JOBS:-2}")
bin="$CARGO_TARGET_DIR/release"
out="$CARGO_TARGET_DIR/loss-$(date -u +%Y%m%dT%H%M%SZ).jsonl"
: >"$out"

# In the namespace: install the drop rule (per mille $1), then run the rest.
netns_with_loss='
  p=$1; shift
  if [ "$p" -gt 0 ]; then
    nft add table inet t
    nft add chain inet t in "{ type filter hook input priority 0; }"
    nft add rule inet t in meta l4proto udp numgen random mod 1000 "<" "$p" drop
  fi
  exec "$@"'

cell() { # PERMILLE TAG LABEL ARGS -- ENV... BINARY
  local permille=$1 tag=$2 label=$3 args=$4
  shift 4
  if [ -n "${ONLY:-}" ] && ! [[ "$label" =~ $ONLY ]]; then return 0; fi
  local load
  load="$(cut -d' ' -f1 /proc/loadavg)"
  printf '\n-- %s: %s, %s (load average %s) %s\n' "$(date -u +%H:%M:%S)" "$label" "$tag" "$load" >&2
  printf '{"stack":"%s","metric":"load average (1 min) at start","value":%s,"unit":"","tag":"%s"}\n' \
    "$label" "$load" "$tag" >>"$out"
  # A hard limit well above the cell's cap, for a run that hangs outside the capped parts.
  # shellcheck disable=SC2086
  if ! timeout -k 5 $((cap * 2 + 120)) "$root/tests/scripts/in-netns.sh" \
    bash -c "$netns_with_loss" cell "$permille" env "$@" $args --tag "$tag" --json "$out" >/dev/null; then
    printf '{"stack":"%s","metric":"process failed or killed","value":1,"unit":"count","tag":"%s"}\n' \
      "$label" "$tag" >>"$out"
  fi
}

for run in $(seq 1 "$runs"); do
  for permille in $losses; do
    mib="${MIB:-16}"
    if [ "$permille" -ge 50 ] && [ -z "${MIB:-}" ]; then mib=8; fi
    tag="loss $(awk "BEGIN { print $permille / 10 }") %"
    args="--opens $opens --mib $mib --sizes 16384 --no-small --cap $cap"
    cell "$permille" "$tag" "webrtc 0.17.2" "$args" "$bin/webrtc017"
    cell "$permille" "$tag" "webrtc 0.17.2 + ARQ" "$args" "$bin/webrtc017-arq"
    cell "$permille" "$tag" "webrtc 0.17.2 + ARQ (in-band channel)" "$args" ARQ_CHANNEL=inband "$bin/webrtc017-arq"
    cell "$permille" "$tag" "webrtc 0.21.1" "$args" "$bin/webrtc021"
    cell "$permille" "$tag" "webrtc 0.21.1 + ARQ" "$args" "$bin/webrtc021-arq"
    cell "$permille" "$tag" "webrtc 0.21.1 + ARQ (in-band channel)" "$args" ARQ_CHANNEL=inband "$bin/webrtc021-arq"
  done
  # Time to open, no loss: in-band reliable channel vs negotiated channel (the + ARQ binaries),
  # and 0.21 with the ICE check interval at 20 ms instead of 200 ms.
  args="--opens 10 --sizes none --no-small"
  cell 0 "open" "webrtc 0.17.2" "$args" "$bin/webrtc017"
  cell 0 "open" "webrtc 0.17.2 + ARQ" "$args" "$bin/webrtc017-arq"
  cell 0 "open" "webrtc 0.17.2 + ARQ (in-band channel)" "$args" ARQ_CHANNEL=inband "$bin/webrtc017-arq"
  cell 0 "open" "webrtc 0.21.1" "$args" "$bin/webrtc021"
  cell 0 "open" "webrtc 0.21.1 + ARQ" "$args" "$bin/webrtc021-arq"
  cell 0 "open" "webrtc 0.21.1 + ARQ (in-band channel)" "$args" ARQ_CHANNEL=inband "$bin/webrtc021-arq"
  cell 0 "open, ICE check 20 ms" "webrtc 0.21.1" "$args" ICE_CHECK_MS=20 "$bin/webrtc021"
  cell 0 "open, ICE check 20 ms" "webrtc 0.21.1 + ARQ" "$args" ICE_CHECK_MS=20 "$bin/webrtc021-arq"
done
printf '\n' >&2
node "$here/summarize-loss.mjs" "$out"
echo "(JSON lines: $out)" >&2
