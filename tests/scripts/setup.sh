#!/usr/bin/env bash
# One-time (idempotent) set-up for the demo: the wasm32 target, wasm-bindgen-cli at exactly the
# version in Cargo.lock, then the browser package in pkg/. Safe to run again: each step is
# skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"

step() { printf '\n== %s\n' "$*" >&2; }

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  step "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

# wasm-bindgen-cli must equal the wasm-bindgen crate in Cargo.lock, or its output won't load.
want=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
if [ "$have" != "$want" ]; then
  step "installing wasm-bindgen-cli $want (found: ${have:-none}; takes ~5 min)"
  # --locked first; if the registry lacks one of its locked versions, let cargo resolve.
  cargo install wasm-bindgen-cli --version "=$want" --locked \
    || cargo install wasm-bindgen-cli --version "=$want"
fi

step "building the browser package into pkg/"
bash tests/scripts/build-wasm.sh
