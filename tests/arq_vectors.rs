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
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut rand = move |n: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % n.max(1) as u64) as usize
    };
    for _ in 0..20_000 {
        let mut dgs: Vec<Vec<u8>> = (0..1 + rand(6))
            .map(|_| corpus[rand(corpus.len())].clone())
            .collect();
        for d in dgs.iter_mut().filter(|d| !d.is_empty()) {
            let at = rand(d.len());
            match rand(3) {
                0 => d[at] ^= 1 << rand(8),
                1 => d.truncate(at),
                _ => d.insert(at, rand(256) as u8),
            }
        }
        arq_fuzz::run(&arq_fuzz::pack(rand(4) as u8, &dgs));
    }
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/arq_datagram");
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        arq_fuzz::run(&std::fs::read(entry.path()).unwrap_or_default());
    }
}
