#!/usr/bin/env bash
# Runs test suites: `run-suites.sh [SUITE...]`, by default native, wasm and e2e (test-all.sh runs
# those inside the network namespace, and `lint` before it, outside). A failing suite does not
# stop the others; the exit status is non-zero if any failed.
set -uo pipefail
cd "$(dirname "$0")/../.."
failed=()
suite() {
  local name=$1; shift
  printf '\n== suite: %s\n' "$name" >&2
  local started=$SECONDS
  "$@" || failed+=("$name")
  printf '== suite %s: %s s\n' "$name" "$((SECONDS - started))" >&2
}
features=(--features miaou-transport/bridge,miaou-transport/discovery)

# Static checks: formatting, clippy with warnings as errors on both targets (the wasm backend is
# only compiled for wasm32), and rustdoc warnings (broken intra-doc links, missing docs) on both.
# Every check runs even after one fails, so one run reports them all.
lint() {
  local status=0
  cargo fmt --all --check || status=1
  cargo clippy --locked --workspace --all-targets "${features[@]}" -- -D warnings || status=1
  cargo clippy --locked --target wasm32-unknown-unknown -p miaou-transport --all-targets -- -D warnings || status=1
  RUSTDOCFLAGS="-D warnings" cargo doc --locked --no-deps -p miaou-transport "${features[@]}" || status=1
  RUSTDOCFLAGS="-D warnings" cargo doc --locked --no-deps -p miaou-transport --target wasm32-unknown-unknown || status=1
  return "$status"
}

run() {
  case $1 in
    lint) suite lint lint ;;
    # Native: unit tests, doc tests (README's Rust example too), codec vectors + proptests,
    # bridge with real WebSocket clients, native-demo processes talking over real WebRTC, mDNS
    # discovery in namespaces the tests create.
    native) suite native cargo test --locked --workspace "${features[@]}" ;;
    # Browser: the same codec vectors checked by wasm-bindgen-test inside headless Chromium.
    wasm) suite wasm env CHROMEDRIVER=/usr/bin/chromedriver WASM_BINDGEN_TEST_TIMEOUT=120 \
      cargo test --locked --target wasm32-unknown-unknown --test wasm_codec ;;
    # End to end: headless Chromium with the npm package <-> native-demo, tab <-> tab, the
    # README's page, and the package's TypeScript types through tsc.
    e2e) suite e2e node --test --test-concurrency=1 tests/e2e/ ;;
    *) echo "unknown suite: $1 (lint, native, wasm, e2e)" >&2; failed+=("$1") ;;
  esac
}

[ $# -gt 0 ] || set -- native wasm e2e
for name in "$@"; do run "$name"; done

if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED suites: ${failed[*]}" >&2
  exit 1
fi
echo "suites passed: $*" >&2
