//! The fuzz target's logic as a plain function, so the cargo-fuzz target
//! (fuzz/fuzz_targets/frame_decoder.rs) and a normal test (tests/codec_vectors.rs smoke test)
//! run the same checks.
#![allow(dead_code)]

use miaou_transport::codec::{CodecLimits, Frame, FrameDecoder};

/// Feeds `data` to a decoder as a sequence of frames and checks the decoder's invariants.
///
/// Byte 0 picks the limits (bit 0: unordered; bit 1: 300-byte message cap; bit 2: 400-byte
/// reassembly cap); then each frame is one length byte followed by up to that many bytes.
/// Panics only if the codec breaks an invariant: a frame that parses re-encodes to the same
/// bytes, delivered messages respect the caps and TEXT means UTF-8, and the held bytes never
/// exceed the reassembly cap. Errors are expected and the decoder must keep going after them.
pub fn decode_frames(data: &[u8]) {
    let Some((&mode, mut rest)) = data.split_first() else {
        return;
    };
    let d = CodecLimits::default();
    let limits = CodecLimits {
        ordered: mode & 1 == 0,
        max_message_size: if mode & 2 != 0 {
            300
        } else {
            d.max_message_size
        },
        max_reassembly_bytes: if mode & 4 != 0 {
            400
        } else {
            d.max_reassembly_bytes
        },
    };
    let mut dec = FrameDecoder::new(limits);
    while let Some((&len, tail)) = rest.split_first() {
        let (frame, tail) = tail.split_at(usize::from(len).min(tail.len()));
        rest = tail;
        if let Ok(parsed) = Frame::parse(frame) {
            assert_eq!(
                &parsed.encode()[..],
                frame,
                "accepted frames have one encoding"
            );
        }
        if let Ok(Some(delivery)) = dec.decode(frame) {
            for m in delivery.into_messages() {
                assert!(m.data.len() <= limits.max_message_size);
                assert!(!m.text || std::str::from_utf8(&m.data).is_ok());
            }
        }
        assert!(dec.buffered_bytes() <= limits.max_reassembly_bytes);
    }
}

/// Packs frames into the [`decode_frames`] input format (frames longer than 255 bytes are cut).
pub fn pack(mode: u8, frames: &[Vec<u8>]) -> Vec<u8> {
    let mut out = vec![mode];
    for f in frames {
        let f = &f[..f.len().min(255)];
        out.push(f.len() as u8);
        out.extend_from_slice(f);
    }
    out
}
