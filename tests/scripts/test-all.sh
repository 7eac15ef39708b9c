#!/usr/bin/env bash
# The one test command (README; .ci/run calls it). On a fresh machine it first installs what is
# missing — Chromium + ChromeDriver + coturn (apt-get), the wasm32 target, wasm-bindgen-cli at the
# Cargo.lock version, npm dev dependencies — builds everything, then runs every suite inside a
# private network namespace (tests/scripts/in-netns.sh): nothing leaves the machine.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
step() { printf '\n== %s\n' "$*" >&2; }
started=$(date +%s)

need_apt=()
command -v chromium >/dev/null || need_apt+=(chromium)
command -v chromedriver >/dev/null || need_apt+=(chromium-driver)
command -v ip >/dev/null || need_apt+=(iproute2)
command -v turnserver >/dev/null || need_apt+=(coturn) # TURN tests (docs/turn.md)
if [ ${#need_apt[@]} -gt 0 ]; then
  step "installing ${need_apt[*]} (apt-get)"
  sudo=(); [ "$(id -u)" = 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

bash tests/scripts/setup.sh

if [ ! -d node_modules/playwright-core ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  step "installing npm dev dependencies"
  npm ci --no-audit --no-fund
fi

# Everything is compiled before entering the namespace, which has no route to crates.io.
step "building native tests and the browser test binary"
features=(--features miaou-transport/bridge,miaou-transport/discovery)
cargo test --locked --workspace "${features[@]}" --no-run
cargo test --locked --target wasm32-unknown-unknown --test wasm_codec --no-run

step "running every suite in a private network namespace"
status=0
tests/scripts/in-netns.sh bash tests/scripts/run-suites.sh || status=$?
echo "test command wall time: $(( $(date +%s) - started )) s" >&2
exit "$status"
