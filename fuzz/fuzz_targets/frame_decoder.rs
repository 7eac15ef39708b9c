//! Arbitrary bytes as a sequence of frames into `FrameDecoder` (format and checked invariants:
//! tests/common/fuzz.rs, shared with the normal test suite so CI replays the same logic).
#![no_main]

#[path = "../../tests/common/fuzz.rs"]
mod fuzz;

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz::decode_frames(data));
