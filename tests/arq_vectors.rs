#![cfg(not(target_arch = "wasm32"))]
//! Checks tests/vectors/arq.txt (ARQ datagram wire format) both ways; tests/wasm_codec.rs runs
//! the same checks in the browser. Also runs the `arq_datagram` fuzz target's logic over the
//! vectors, deterministic mutations of them, and fuzz/corpus/arq_datagram if present.

#[path = "common/arq_fuzz.rs"]
mod arq_fuzz;
#[path = "common/arq_vectors.rs"]
mod arq_vectors;
#[path = "common/vectors.rs"]
mod vectors;

#[test]
fn arq_datagram_vectors() {
    let (valid, invalid) = arq_vectors::check();
    assert!(
        valid >= 10 && invalid >= 15,
        "{valid} valid, {invalid} invalid"
    );
}

#[test]
fn arq_fuzz_smoke_over_vector_corpus() {
    let corpus = arq_vectors::corpus();
    for cfg in 0..4 {
        arq_fuzz::run(&arq_fuzz::pack(cfg, &corpus));
    }
    vectors::mutations(&corpus, 20_000, 6, 4, |cfg, datagrams| {
        arq_fuzz::run(&arq_fuzz::pack(cfg, datagrams))
    });
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/arq_datagram");
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        arq_fuzz::run(&std::fs::read(entry.path()).unwrap_or_default());
    }
}
