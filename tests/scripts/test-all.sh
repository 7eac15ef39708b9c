#!/usr/bin/env bash
# The one test command (README; .ci/run calls it). On a fresh machine it first installs what is
# missing — Chromium + ChromeDriver + coturn + nftables (apt-get), the wasm32 target,
# wasm-bindgen-cli at the Cargo.lock version, npm dev dependencies — builds everything, then runs
# every suite inside a private network namespace (tests/scripts/in-netns.sh): nothing leaves the
# machine. The static checks (suite "lint": rustfmt, clippy and rustdoc on both targets) run
# before, outside it.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
step() { printf '\n== %s\n' "$*" >&2; }
started=$(date +%s)
# The CI budget of the issue: the whole command, set-up included, within 30 minutes.
BUDGET_S=1800
report_time() {
  local elapsed=$(( $(date +%s) - started ))
  echo "test command wall time: ${elapsed} s ($((elapsed / 60)) min $((elapsed % 60)) s)" >&2
  if [ "$elapsed" -gt "$BUDGET_S" ]; then
    echo "WARNING: the test command took more than $((BUDGET_S / 60)) minutes, over the CI budget" >&2
  fi
}
trap report_time EXIT

need_apt=()
command -v chromium >/dev/null || need_apt+=(chromium)
command -v chromedriver >/dev/null || need_apt+=(chromium-driver)
command -v ip >/dev/null || need_apt+=(iproute2)
command -v turnserver >/dev/null || need_apt+=(coturn) # TURN tests (docs/turn.md)
command -v nft >/dev/null || need_apt+=(nftables) # the loss harness (docs/testing-under-loss.md, tests/open_under_loss.rs)
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

# Static checks need no network: outside the namespace, after the build (they reuse it).
status=0
bash tests/scripts/run-suites.sh lint || status=1

step "running every suite in a private network namespace"
tests/scripts/in-netns.sh bash tests/scripts/run-suites.sh native wasm e2e || status=1
[ "$status" = 0 ] || echo "the test command FAILED (see FAILED suites above)" >&2
exit "$status"
