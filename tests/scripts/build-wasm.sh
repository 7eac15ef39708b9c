#!/usr/bin/env bash
# Builds the npm package's wasm module and JS/TypeScript bindings into pkg/.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
cargo build --lib --release --target wasm32-unknown-unknown -p miaou-transport
wasm-bindgen --target web --out-dir pkg --out-name miaou_transport \
  "${CARGO_TARGET_DIR:-target}/wasm32-unknown-unknown/release/miaou_transport.wasm"
ls -l pkg/miaou_transport_bg.wasm >&2
