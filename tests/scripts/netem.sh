#!/usr/bin/env bash
# The loss harness (docs/testing-under-loss.md): degrades the network of the namespace it runs
# in, for tests and benchmarks. `tc netem` is not in this kernel, so loss is an nftables rule and
# the rate limit a token bucket (tbf).
#
#   netem.sh loss N          drop N per mille (0-1000) of the UDP datagrams this namespace
#                            receives (nftables input hook; N = 0 removes the rule)
#   netem.sh rate DEV RATE   limit DEV's egress to RATE (tc units: 20mbit, 512kbit), queue 50 ms
#   netem.sh rate DEV off    remove the limit
#   netem.sh down DEV | up DEV   cut / restore a link (ip link set DEV down/up)
#   netem.sh clear           remove the loss rule and every rate limit set by this script
#   netem.sh host-b          "two hosts": make a second namespace joined to this one by a veth
#                            pair (here ha 10.99.0.1/24, there hb 10.99.0.2/24); prints the PID
#                            of the process that holds it. Run commands there with
#                            `netem.sh in PID CMD...` (nsenter -t PID -n); `kill PID` removes it.
#   netem.sh in PID CMD...   run CMD in host B's namespace (e.g. `netem.sh in PID netem.sh loss 20`)
#
# What N means: the rule sees every datagram once, when it is delivered to a socket of this
# namespace. Two peers in one namespace talk over loopback (198.18.0.1 is local too), so each
# direction loses N per mille: a request and its reply (a round trip) are lost with probability
# 1 - (1 - N/1000)^2, about 2N per mille (10 % drop: 19 % of round trips). With two namespaces,
# a rule in host B drops only what B receives: loss on one direction of the link.
# Only UDP is dropped (WebRTC's ICE, DTLS and SCTP); TCP (signaling) is untouched.
#
# Safety: it changes nothing unless MIAOU_IN_NETNS=1, which tests/scripts/in-netns.sh (and the
# Rust helper tests/common/netem.rs) set in the private namespaces they make: run on the host by
# mistake, it would drop the machine's own UDP. (PID 1's namespace cannot be compared with ours
# in a container, where /proc/1/ns/net is unreadable even to root.)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
usage() { sed -n '5,17p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
die() { echo "netem.sh: $*" >&2; exit 1; }

if [ "${MIAOU_IN_NETNS:-}" != 1 ]; then
  die "refusing to run outside a private network namespace (MIAOU_IN_NETNS=1 unset): run it inside tests/scripts/in-netns.sh"
fi
if host_ns=$(readlink /proc/1/ns/net 2>/dev/null) && [ "$host_ns" = "$(readlink /proc/self/ns/net)" ]; then
  die "refusing to change the machine's own network namespace"
fi

TABLE=miaou_netem
[ $# -ge 1 ] || usage
cmd=$1
shift
case $cmd in
  loss)
    # At most 4 digits before comparing: a longer number would overflow `[ -le ]`.
    [ $# = 1 ] && [[ $1 =~ ^[0-9]{1,4}$ ]] && [ "$1" -le 1000 ] || die "loss N: N per mille, 0-1000"
    command -v nft >/dev/null || die "nft not found: apt-get install -y nftables"
    nft delete table inet "$TABLE" 2>/dev/null || true
    if [ "$1" -gt 0 ]; then
      # numgen random mod 1000 yields 0-999: "< N" drops N in 1000 (1000: every datagram).
      match="numgen random mod 1000 < $1"
      [ "$1" -lt 1000 ] || match=""
      # One transaction: the table, its input-hook chain and the random-drop rule.
      nft -f - <<EOF
table inet $TABLE {
  chain input {
    type filter hook input priority 0; policy accept;
    meta l4proto udp $match counter drop
  }
}
EOF
    fi
    ;;
  rate)
    [ $# = 2 ] || die "rate DEV RATE|off"
    tc qdisc del dev "$1" root 2>/dev/null || true
    if [ "$2" != off ]; then
      tc qdisc add dev "$1" root tbf rate "$2" burst 32kbit latency 50ms
    fi
    ;;
  down | up)
    [ $# = 1 ] || die "$cmd DEV"
    ip link set "$1" "$cmd"
    ;;
  clear)
    nft delete table inet "$TABLE" 2>/dev/null || true
    # (ip, not /sys/class/net: /sys still shows the host's devices after unshare -n.)
    for dev in $(ip -o link show | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }'); do
      if tc qdisc show dev "$dev" root | grep -q '^qdisc tbf'; then tc qdisc del dev "$dev" root; fi
    done
    ;;
  dropped)
    # Datagrams the loss rule has dropped so far (0 when there is no rule).
    # `|| true`: with no rule `nft list` fails, and pipefail would make that our exit status.
    { nft list table inet "$TABLE" 2>/dev/null || true; } | awk '/counter packets/ { for (i = 1; i < NF; i++) if ($i == "packets") print $(i + 1); found = 1 } END { if (!found) print 0 }'
    ;;
  host-b)
    [ $# = 0 ] || die "host-b takes no argument"
    # The holder: a process in a fresh network namespace; it lives until killed.
    unshare -n sleep infinity </dev/null >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 50); do
      [ "$(readlink /proc/$pid/ns/net 2>/dev/null)" != "$(readlink /proc/self/ns/net)" ] && break
      sleep 0.02
    done
    ip link add ha type veth peer name hb
    ip link set hb netns "$pid"
    ip addr add 10.99.0.1/24 dev ha
    ip link set ha up
    nsenter -t "$pid" -n sh -c 'ip link set lo up && ip addr add 10.99.0.2/24 dev hb && ip link set hb up'
    echo "$pid"
    ;;
  in)
    [ $# -ge 2 ] || die "in PID CMD..."
    pid=$1
    shift
    # Our own scripts by name, so `netem.sh in PID netem.sh loss 20` works from anywhere.
    if [ "$1" = netem.sh ]; then shift; set -- "$here/netem.sh" "$@"; fi
    exec nsenter -t "$pid" -n "$@"
    ;;
  *) usage ;;
esac
