#![cfg(not(target_arch = "wasm32"))]
//! Checks every hex vector in tests/vectors/ both ways (encode → same hex, decode → same fields,
//! invalid → the named error); tests/wasm_codec.rs runs the same checks in the browser. Also runs
//! the fuzz target's logic over the vector corpus, mutations of it, and fuzz/corpus if present.

#[path = "common/fuzz.rs"]
mod fuzz;
#[path = "common/vectors.rs"]
mod vectors;

#[test]
fn valid_vectors() {
    let (valid, invalid) = vectors::check(vectors::VALID);
    assert!(
        valid >= 15 && invalid == 0,
        "{valid} valid, {invalid} invalid"
    );
}

#[test]
fn invalid_vectors() {
    let (valid, invalid) = vectors::check(vectors::INVALID);
    assert!(
        valid == 0 && invalid >= 10,
        "{valid} valid, {invalid} invalid"
    );
}

#[test]
fn every_error_variant_has_an_invalid_vector() {
    let named: Vec<&str> = vectors::parse(vectors::INVALID)
        .iter()
        .filter_map(|v| v.get("expect"))
        .collect();
    for variant in [
        "Truncated",
        "UnsupportedVersion",
        "UnknownFlags",
        "VarintOverflow",
        "NonMinimalVarint",
        "TrailingBytes",
        "SequenceGap",
        "MessageTooLarge",
        "ReassemblyCapExceeded",
        "TooManyPartialMessages",
        "FragmentOutOfOrder",
        "DuplicateFragment",
        "FragmentPastEnd",
        "LengthMismatch",
        "EmptyFragment",
        "EmptyBatch",
        "InvalidUtf8",
        "FrameSizeTooSmall",
    ] {
        assert!(named.contains(&variant), "no vector for {variant}");
    }
}

/// Fails to compile when `CodecError` gains a variant, as a reminder to list it above and
/// give it an invalid vector.
#[allow(dead_code)]
fn every_variant_is_listed(e: &miaou_transport::codec::CodecError) {
    use miaou_transport::codec::CodecError::*;
    match e {
        Truncated
        | UnsupportedVersion { .. }
        | UnknownFlags { .. }
        | VarintOverflow
        | NonMinimalVarint
        | TrailingBytes { .. }
        | SequenceGap { .. }
        | MessageTooLarge { .. }
        | ReassemblyCapExceeded { .. }
        | TooManyPartialMessages { .. }
        | FragmentOutOfOrder { .. }
        | DuplicateFragment { .. }
        | FragmentPastEnd { .. }
        | LengthMismatch { .. }
        | EmptyFragment { .. }
        | EmptyBatch
        | InvalidUtf8
        | FrameSizeTooSmall { .. } => {}
    }
}

#[test]
fn fuzz_smoke_over_vector_corpus() {
    let corpus: Vec<Vec<u8>> = [vectors::VALID, vectors::INVALID]
        .iter()
        .flat_map(|s| vectors::corpus(s))
        .collect();
    for mode in 0..8 {
        fuzz::decode_frames(&fuzz::pack(mode, &corpus));
    }
    // Deterministic mutations: flip bits, cut and splice frames.
    vectors::mutations(&corpus, 20_000, 4, 8, |mode, frames| {
        fuzz::decode_frames(&fuzz::pack(mode, frames))
    });
    // Whatever cargo-fuzz found and kept (fuzz/corpus is not committed).
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/frame_decoder");
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        fuzz::decode_frames(&std::fs::read(entry.path()).unwrap_or_default());
    }
}
