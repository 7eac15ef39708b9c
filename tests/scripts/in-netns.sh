#!/usr/bin/env bash
# Runs a command inside a fresh, private network namespace: loopback plus one veth pair
# (198.18.0.1/24, the benchmarking range) with a default route, so WebRTC stacks gather a
# host candidate and headless Chromium gathers at all. Nothing can leave the namespace.
# Usage: tests/scripts/in-netns.sh CMD [ARGS...]   (needs root, or unprivileged user namespaces)
set -euo pipefail
if [ "${MIAOU_IN_NETNS:-}" = 1 ]; then exec "$@"; fi
prefix=()
if [ "$(id -u)" != 0 ]; then prefix=(unshare -r); fi
exec "${prefix[@]}" unshare -n env MIAOU_IN_NETNS=1 bash -c '
  set -e
  ip link set lo up
  ip link add va type veth peer name vb
  ip addr add 198.18.0.1/24 dev va
  ip link set va up
  ip link set vb up
  ip route add default dev va
  exec "$@"' in-netns "$@"
