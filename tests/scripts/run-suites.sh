#!/usr/bin/env bash
# Runs every test suite (called by test-all.sh inside the network namespace). A failing suite
# does not stop the others; the exit status is non-zero if any failed.
set -uo pipefail
cd "$(dirname "$0")/../.."
failed=()
suite() {
  local name=$1; shift
  printf '\n== suite: %s\n' "$name" >&2
  "$@" || failed+=("$name")
}

# Native: unit tests, doc tests, codec vectors + proptests, bridge with real WebSocket clients,
# native-demo processes talking over real WebRTC, mDNS discovery in namespaces the tests create.
suite native cargo test --locked --workspace --features miaou-transport/bridge,miaou-transport/discovery
# Browser: the same codec vectors checked by wasm-bindgen-test inside headless Chromium.
suite wasm env CHROMEDRIVER=/usr/bin/chromedriver WASM_BINDGEN_TEST_TIMEOUT=120 \
  cargo test --locked --target wasm32-unknown-unknown --test wasm_codec
# End to end: headless Chromium with the npm package <-> native-demo, tab <-> tab.
suite e2e node --test --test-concurrency=1 tests/e2e/

if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED suites: ${failed[*]}" >&2
  exit 1
fi
echo "all suites passed" >&2
