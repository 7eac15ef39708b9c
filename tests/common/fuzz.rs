//! The fuzz target's logic as a plain function, so the cargo-fuzz target
//! (fuzz/fuzz_targets/frame_decoder.rs) and normal tests (tests/codec_vectors.rs smoke test,
//! tests/wasm_codec.rs, tests/codec_props.rs) run the same checks.
#![allow(dead_code)]

use miaou_transport::codec::{
    Batch, Body, CodecLimits, Control, Delivery, Fragment, Frame, FrameDecoder,
};

/// Feeds `data` to one decoder as a sequence of frames and checks the decoder's invariants.
///
/// Byte 0 picks the limits, small ones so the caps are really hit: bit 0 unordered; bits 1-2
/// the message cap (300 B, 5 000 B, 64 KiB, default); bits 3-4 the reassembly cap (1 000 B,
/// 4 000 B, 100 000 B, default); bits 5-6 the partial-message cap (1, 3, 16, default). Then
/// ops until the input ends, each a tag byte and its arguments (little-endian u16s):
///
/// - `tag % 4 == 0`: a raw frame, `len: u16` then `len` bytes (fewer if the input ends);
/// - `1`: a fragment built from `msg_id: u8, offset: u16, total: u16, len: u16` (payload
///   `len` copies of the tag byte, so a few input bytes make a frame of up to 64 KiB);
/// - `2`: a DATA frame (`(tag >> 2) & 7 == 0`) or a BATCH of that many entries, each
///   `len: u8, byte: u8` (`len` copies of `byte`; TEXT from tag bit 5, so bytes ≥ 0x80 are bad
///   UTF-8);
/// - `3`: a control frame, kind from `(tag >> 2) % 6`, its varint a `u8`.
///
/// Built frames carry the decoder's expected seq, skewed by one when tag bit 6 is set, so they
/// reach the reassembler in order and out of it. Panics only if the codec breaks an invariant:
/// a frame that parses re-encodes to the same bytes; delivered messages respect the caps and
/// TEXT means UTF-8; a valid whole message at the expected seq is delivered; the held bytes and
/// partial messages never exceed their caps; the replies owed are RESETs and nonzero REFUSEDs
/// only. Errors are expected and the decoder must keep going after them.
pub fn decode_frames(data: &[u8]) {
    let Some((&mode, mut rest)) = data.split_first() else {
        return;
    };
    let d = CodecLimits::default();
    let pick = |bits: u8, small: [usize; 3], default: usize| {
        small.get(usize::from(bits & 3)).copied().unwrap_or(default)
    };
    let limits = CodecLimits {
        ordered: mode & 1 == 0,
        max_message_size: pick(mode >> 1, [300, 5_000, 1 << 16], d.max_message_size),
        max_reassembly_bytes: pick(mode >> 3, [1_000, 4_000, 100_000], d.max_reassembly_bytes),
        max_partial_messages: pick(mode >> 5, [1, 3, 16], d.max_partial_messages),
    };
    let mut dec = FrameDecoder::new(limits);
    let mut input = Input(&mut rest);
    while let Some(tag) = input.byte() {
        let seq = dec.next_seq().wrapping_add(u64::from(tag >> 6 & 1));
        let (frame, whole) = match tag % 4 {
            0 => {
                let len = usize::from(input.u16());
                (input.take(len).to_vec(), None)
            }
            1 => {
                let (msg_id, offset) = (u64::from(input.byte().unwrap_or(0)), input.u16());
                let (total, len) = (input.u16(), input.u16());
                let payload = vec![tag; usize::from(len)];
                let fragment = Some(Fragment {
                    msg_id,
                    offset: u64::from(offset),
                    total: u64::from(total),
                });
                let text = tag & 0x20 != 0;
                let body = Body::Data {
                    text,
                    fragment,
                    payload: &payload,
                };
                (Frame { seq, body }.encode().to_vec(), None)
            }
            2 => {
                let text = tag & 0x20 != 0;
                let count = (tag >> 2) & 7;
                let mut entries = Vec::new();
                let mut first = Vec::new();
                for _ in 0..count.max(1) {
                    let (len, byte) = (input.byte().unwrap_or(0), input.byte().unwrap_or(0));
                    first = vec![byte; usize::from(len)];
                    put_entry(&mut entries, &first, text);
                }
                let body = if count == 0 {
                    Body::Data {
                        text,
                        fragment: None,
                        payload: &first,
                    }
                } else {
                    match Batch::parse(&entries) {
                        Ok(batch) => Body::Batch(batch),
                        Err(e) => panic!("built BATCH does not parse: {e}"),
                    }
                };
                let whole = (count == 0).then(|| first.clone());
                (Frame { seq, body }.encode().to_vec(), whole)
            }
            _ => {
                let n = u64::from(input.byte().unwrap_or(0));
                let control = match (tag >> 2) % 6 {
                    0 => Control::Ping(n),
                    1 => Control::Pong(n),
                    2 => Control::Fin,
                    3 => Control::FinAck,
                    4 => Control::Reset(n),
                    _ => Control::Refused(n),
                };
                let body = Body::Control(control);
                (Frame { seq, body }.encode().to_vec(), None)
            }
        };
        check_one(&mut dec, &frame, whole.filter(|_| tag >> 6 & 1 == 0));
    }
}

/// Decodes one frame and checks every invariant; `whole` is the payload of a DATA frame built
/// at the expected seq, which must be delivered if it is within the caps.
fn check_one(dec: &mut FrameDecoder, frame: &[u8], whole: Option<Vec<u8>>) {
    let limits = *dec.limits();
    if let Ok(parsed) = Frame::parse(frame) {
        assert_eq!(
            &parsed.encode()[..],
            frame,
            "accepted frames have one encoding"
        );
    }
    let result = dec.decode(frame);
    if let Some(payload) = whole {
        let text = frame.get(1).is_some_and(|f| f & 0x08 != 0);
        let valid = !text || std::str::from_utf8(&payload).is_ok();
        if payload.len() <= limits.max_message_size && valid {
            assert_eq!(
                result,
                Ok(Some(Delivery::Message {
                    data: payload.into(),
                    text
                })),
                "a valid message at the expected seq is delivered"
            );
        }
    }
    match result {
        Ok(Some(Delivery::MixedBatch {
            messages, refused, ..
        })) => {
            assert!(!messages.is_empty() && refused >= 1, "MixedBatch shape");
            check_messages(&limits, Delivery::Batch(messages));
        }
        Ok(Some(delivery)) => check_messages(&limits, delivery),
        Ok(None) | Err(_) => {}
    }
    assert!(dec.buffered_bytes() <= limits.max_reassembly_bytes);
    assert!(dec.partial_messages() <= limits.max_partial_messages);
    let replies = dec.take_replies();
    assert!(replies.len() <= 4096 + 1, "{} replies", replies.len());
    for reply in replies {
        assert!(
            matches!(reply, Control::Reset(_) | Control::Refused(1..)),
            "unexpected reply {reply:?}"
        );
    }
}

fn check_messages(limits: &CodecLimits, delivery: Delivery) {
    for m in delivery.into_messages() {
        assert!(m.data.len() <= limits.max_message_size);
        assert!(!m.text || std::str::from_utf8(&m.data).is_ok());
    }
}

/// Appends one BATCH entry: `varint(len << 1 | text)` then the bytes (docs/frame.md).
fn put_entry(out: &mut Vec<u8>, payload: &[u8], text: bool) {
    let mut v = (payload.len() as u64) << 1 | u64::from(text);
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
    out.extend_from_slice(payload);
}

/// The fuzz input, read front to back; reads past the end give zeros / fewer bytes.
struct Input<'a, 'b>(&'a mut &'b [u8]);

impl<'b> Input<'_, 'b> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        *self.0 = rest;
        Some(b)
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte().unwrap_or(0), self.byte().unwrap_or(0)])
    }
    fn take(&mut self, len: usize) -> &'b [u8] {
        let (head, rest) = self.0.split_at(len.min(self.0.len()));
        *self.0 = rest;
        head
    }
}

/// Packs frames into the [`decode_frames`] input format as raw frames (longer than 64 KiB − 1
/// bytes are cut).
pub fn pack(mode: u8, frames: &[Vec<u8>]) -> Vec<u8> {
    let mut out = vec![mode];
    for f in frames {
        let f = &f[..f.len().min(usize::from(u16::MAX))];
        out.push(0);
        out.extend_from_slice(&(f.len() as u16).to_le_bytes());
        out.extend_from_slice(f);
    }
    out
}
