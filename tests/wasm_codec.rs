#![cfg(target_arch = "wasm32")]
//! The hex vectors of tests/vectors/, checked inside the browser (wasm-bindgen-test) with the
//! same loader as the native test, so both targets provably speak one wire format.
//! Run: `cargo test --target wasm32-unknown-unknown --test wasm_codec` (see .cargo/config.toml).

wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

#[path = "common/arq_fuzz.rs"]
mod arq_fuzz;
#[path = "common/arq_vectors.rs"]
mod arq_vectors;
#[path = "common/fuzz.rs"]
mod fuzz;
#[path = "common/vectors.rs"]
mod vectors;

use wasm_bindgen_test::wasm_bindgen_test;

#[wasm_bindgen_test]
fn valid_vectors_in_browser() {
    let (valid, invalid) = vectors::check(vectors::VALID);
    assert!(
        valid >= 15 && invalid == 0,
        "{valid} valid, {invalid} invalid"
    );
}

#[wasm_bindgen_test]
fn invalid_vectors_in_browser() {
    let (valid, invalid) = vectors::check(vectors::INVALID);
    assert!(
        valid == 0 && invalid >= 10,
        "{valid} valid, {invalid} invalid"
    );
}

/// 32-bit usize: the decoder must not panic on lengths near u32/u64 limits here either.
#[wasm_bindgen_test]
fn fuzz_logic_over_vector_corpus_in_browser() {
    let corpus: Vec<Vec<u8>> = [vectors::VALID, vectors::INVALID]
        .iter()
        .flat_map(|s| vectors::corpus(s))
        .collect();
    for mode in 0..8 {
        fuzz::decode_frames(&fuzz::pack(mode, &corpus));
    }
}

/// The ARQ datagram vectors (tests/vectors/arq.txt), same checks as tests/arq_vectors.rs.
#[wasm_bindgen_test]
fn arq_vectors_in_browser() {
    let (valid, invalid) = arq_vectors::check();
    assert!(
        valid >= 10 && invalid >= 15,
        "{valid} valid, {invalid} invalid"
    );
}

/// The ARQ fuzz logic over the vector corpus, with 32-bit usize.
#[wasm_bindgen_test]
fn arq_fuzz_logic_over_vector_corpus_in_browser() {
    let corpus = arq_vectors::corpus();
    for cfg in 0..4 {
        arq_fuzz::run(&arq_fuzz::pack(cfg, &corpus));
    }
}
