//! Arbitrary bytes as datagrams, clock ticks, writes and reads into one `ArqConnection`
//! (format and checked invariants: tests/common/arq_fuzz.rs, shared with the normal test
//! suite, tests/arq_vectors.rs, so CI replays the same logic).
#![no_main]

#[path = "../../tests/common/arq_fuzz.rs"]
mod arq_fuzz;

libfuzzer_sys::fuzz_target!(|data: &[u8]| arq_fuzz::run(data));
