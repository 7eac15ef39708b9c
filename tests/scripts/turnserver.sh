#!/usr/bin/env bash
# Starts coturn (`turnserver`, Debian package coturn) for the tests, in the foreground, with a
# generated configuration: no CLI, no TLS, UDP+TCP on the given addresses only, relay ports
# restricted to MIN..MAX, logs on stdout. Credentials either with the TURN REST API scheme
# (use-auth-secret, what `native-demo serve --turn-secret` hands out) or one long-term user.
# Usage: tests/scripts/turnserver.sh DIR PORT MIN_PORT MAX_PORT (secret:SECRET | user:NAME:PASS) IP...
#   The first IP is also the relay address. Run it inside the test's network namespace.
set -euo pipefail
if ! command -v turnserver >/dev/null; then
  echo "turnserver not found: install coturn (apt-get install -y coturn; tests/scripts/test-all.sh does)" >&2
  exit 127
fi
dir=$1 port=$2 min=$3 max=$4 auth=$5
shift 5
[ $# -ge 1 ] || { echo "usage: $0 DIR PORT MIN_PORT MAX_PORT AUTH IP..." >&2; exit 2; }
mkdir -p "$dir"
conf="$dir/turnserver.conf"
{
  echo "listening-port=$port"
  for ip in "$@"; do echo "listening-ip=$ip"; done
  echo "relay-ip=$1"
  echo "min-port=$min"
  echo "max-port=$max"
  echo "realm=miaou.test"
  echo "fingerprint"
  case "$auth" in
    secret:*) echo "use-auth-secret"; echo "static-auth-secret=${auth#secret:}" ;;
    user:*) echo "lt-cred-mech"; echo "user=${auth#user:}" ;;
    *) echo "AUTH must be secret:SECRET or user:NAME:PASS" >&2; exit 2 ;;
  esac
  echo "no-cli"
  echo "no-tls"
  echo "no-dtls"
  echo "no-multicast-peers"
  echo "no-software-attribute"
  echo "pidfile=$dir/turnserver.pid"
  echo "userdb=$dir/turndb"
  echo "log-file=stdout"
  echo "simple-log"
} >"$conf"
exec turnserver -c "$conf"
