//! Unit tests of the codec internals; wire-format vectors live in tests/vectors/.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use super::varint::{put_varint, Reader};
use super::*;
use bytes::{Bytes, BytesMut};

fn varint_bytes(v: u64) -> Vec<u8> {
    let mut out = BytesMut::new();
    put_varint(&mut out, v);
    out.to_vec()
}

#[test]
fn varint_round_trips_at_every_length_boundary() {
    for bits in 0..64 {
        for v in [(1u64 << bits) - 1, 1u64 << bits] {
            let b = varint_bytes(v);
            assert_eq!(
                b.len(),
                (64 - v.leading_zeros()).max(1).div_ceil(7) as usize
            );
            let mut r = Reader(&b);
            assert_eq!(r.varint(), Ok(v));
            assert!(r.rest().is_empty());
        }
    }
    assert_eq!(
        varint_bytes(u64::MAX),
        [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
    );
}

#[test]
fn varint_rejects_overflow_overlong_and_truncation() {
    let mut max_plus = vec![0xff; 9];
    max_plus.push(0x02);
    assert_eq!(Reader(&max_plus).varint(), Err(CodecError::VarintOverflow));
    assert_eq!(
        Reader(&[0xff; 11]).varint(),
        Err(CodecError::VarintOverflow)
    );
    assert_eq!(
        Reader(&[0x80, 0x00]).varint(),
        Err(CodecError::NonMinimalVarint)
    );
    assert_eq!(Reader(&[0x80]).varint(), Err(CodecError::Truncated));
    assert_eq!(Reader(&[]).varint(), Err(CodecError::Truncated));
}

#[test]
fn frame_sizes_respect_the_limit_at_the_single_frame_threshold() {
    let mut enc = FrameEncoder::new(CodecLimits::default());
    for len in [
        MIN_FRAME_SIZE - 13,
        MIN_FRAME_SIZE - 12,
        MIN_FRAME_SIZE - 11,
    ] {
        let frames: Vec<Bytes> = enc
            .encode_message(Bytes::from(vec![7; len]), false, MIN_FRAME_SIZE)
            .unwrap()
            .collect();
        assert_eq!(frames.len(), if len + 12 <= MIN_FRAME_SIZE { 1 } else { 3 });
        assert!(frames.iter().all(|f| f.len() <= MIN_FRAME_SIZE));
    }
}

#[test]
fn cap_error_frees_the_partial_and_decoder_stays_usable() {
    let cap = 100 + REASSEMBLY_RUN_OVERHEAD + REASSEMBLY_PARTIAL_OVERHEAD;
    let limits = CodecLimits {
        max_reassembly_bytes: cap,
        ..CodecLimits::default()
    };
    let mut enc = FrameEncoder::new(limits);
    let mut dec = FrameDecoder::new(limits);
    let big: Vec<Bytes> = enc
        .encode_message(Bytes::from(vec![1; 200]), false, 64)
        .unwrap()
        .collect();
    let mut err = None;
    for f in &big {
        match dec.decode(f) {
            Ok(None) => assert!(dec.buffered_bytes() <= limits.max_reassembly_bytes),
            Err(e) => {
                err = Some(e);
                break;
            }
            Ok(Some(d)) => panic!("unexpected {d:?}"),
        }
    }
    assert!(
        matches!(
            err,
            Some(CodecError::ReassemblyCapExceeded { msg_id: 0, max, .. }) if max == cap
        ),
        "{err:?}"
    );
    assert_eq!(dec.buffered_bytes(), 0);
    assert_eq!(dec.take_replies(), [Control::Reset(0)]);
    // Resynchronise past the frames we skipped, then a fresh message still works.
    let mut dec = FrameDecoder::new(CodecLimits {
        ordered: false,
        ..limits
    });
    let small: Vec<Bytes> = enc
        .encode_message(Bytes::from(vec![2; 90]), false, 64)
        .unwrap()
        .collect();
    let last = small.iter().map(|f| dec.decode(f).unwrap()).last().unwrap();
    assert_eq!(
        last,
        Some(Delivery::Message {
            data: Bytes::from(vec![2; 90]),
            text: false
        })
    );
    assert_eq!(dec.buffered_bytes(), 0);
}

#[test]
fn unordered_runs_are_charged_and_merged() {
    let limits = CodecLimits {
        ordered: false,
        ..CodecLimits::default()
    };
    let mut enc = FrameEncoder::new(limits);
    let frames: Vec<Bytes> = enc
        .encode_message(Bytes::from(vec![3; 66]), false, 64)
        .unwrap()
        .collect();
    assert_eq!(frames.len(), 3); // 22 + 22 + 22 bytes
    let mut dec = FrameDecoder::new(limits);
    assert_eq!(dec.decode(&frames[2]).unwrap(), None);
    assert_eq!(dec.decode(&frames[0]).unwrap(), None);
    assert_eq!(
        dec.buffered_bytes(),
        44 + 2 * REASSEMBLY_RUN_OVERHEAD + REASSEMBLY_PARTIAL_OVERHEAD
    );
    assert_eq!(
        dec.decode(&frames[0]),
        Err(CodecError::DuplicateFragment {
            msg_id: 0,
            offset: 0
        })
    );
    assert_eq!(dec.buffered_bytes(), 0);
    assert_eq!(
        dec.take_replies(),
        [Control::Reset(0)],
        "the receiver sends RESET for message 0"
    );
    // The rest of the dropped message is skipped silently, up to and including its last frame.
    for f in [&frames[1], &frames[2]] {
        assert_eq!(dec.decode(f).unwrap(), None);
    }
    assert_eq!(dec.buffered_bytes(), 0);
    assert_eq!(dec.take_replies(), []);
    // After its last frame the id is forgotten: a new message 0 reassembles normally.
    for f in [&frames[0], &frames[1]] {
        assert_eq!(dec.decode(f).unwrap(), None);
    }
    // [1] appended to [0]'s run, whose capacity grew from 22 to 44 bytes.
    assert_eq!(
        dec.buffered_bytes(),
        44 + REASSEMBLY_RUN_OVERHEAD + REASSEMBLY_PARTIAL_OVERHEAD
    );
    assert!(
        matches!(dec.decode(&frames[2]).unwrap(), Some(Delivery::Message { data, .. }) if data == vec![3; 66])
    );
}

#[test]
fn queue_lets_a_small_message_overtake_a_large_one() {
    let mut enc = FrameEncoder::new(CodecLimits::default());
    let mut q = OutboundQueue::new();
    q.push(&mut enc, Bytes::from(vec![0; 100_000]), false, 1024)
        .unwrap();
    assert!(q.pop_frame(&mut enc).is_some());
    q.push(&mut enc, Bytes::from_static(b"hi"), true, 1024)
        .unwrap();
    assert_eq!(q.queued_bytes(), 100_000 - (1024 - 42) + 2);
    let _large = q.pop_frame(&mut enc).unwrap();
    let small = q.pop_frame(&mut enc).unwrap();
    assert_eq!(&small[..], b"\x01\x08\x02hi"); // seq 2, TEXT, taken at pop time
    assert_eq!(enc.encode_control(Control::Fin)[2], 3); // control may go between pops
}

#[test]
fn unordered_mode_evicts_stale_partials_to_make_room() {
    // Room for one partial of 44 bytes + overhead; a message that lost its last fragment must not
    // block the next one forever on a lossy channel.
    let limits = CodecLimits {
        ordered: false,
        max_reassembly_bytes: 66 + REASSEMBLY_RUN_OVERHEAD + REASSEMBLY_PARTIAL_OVERHEAD,
        ..CodecLimits::default()
    };
    let mut enc = FrameEncoder::new(limits);
    let mut dec = FrameDecoder::new(limits);
    let lost: Vec<Bytes> = enc
        .encode_message(Bytes::from(vec![1; 66]), false, 64)
        .unwrap()
        .collect();
    for f in &lost[..2] {
        assert_eq!(dec.decode(f).unwrap(), None);
    }
    let next: Vec<Bytes> = enc
        .encode_message(Bytes::from(vec![2; 66]), false, 64)
        .unwrap()
        .collect();
    let got: Vec<_> = next.iter().map(|f| dec.decode(f).unwrap()).collect();
    assert_eq!(
        got[2],
        Some(Delivery::Message {
            data: Bytes::from(vec![2; 66]),
            text: false
        })
    );
    assert_eq!(dec.buffered_bytes(), 0);
    // The evicted message is owed a RESET: the sender learns it was dropped.
    assert_eq!(dec.take_replies(), [Control::Reset(0)]);
    // Ordered mode refuses instead of evicting (there a loss is already a SequenceGap).
    let ordered = CodecLimits {
        ordered: true,
        ..limits
    };
    let (mut enc, mut dec) = (FrameEncoder::new(ordered), FrameDecoder::new(ordered));
    let mut q = OutboundQueue::new();
    for byte in [1, 2] {
        q.push(&mut enc, Bytes::from(vec![byte; 66]), false, 64)
            .unwrap();
    }
    let results: Vec<_> = std::iter::from_fn(|| q.pop_frame(&mut enc))
        .map(|f| dec.decode(&f))
        .collect();
    // Round robin: a0 (one partial of 22 bytes held), b0 would make two; a still completes.
    let one = 22 + REASSEMBLY_RUN_OVERHEAD + REASSEMBLY_PARTIAL_OVERHEAD;
    assert_eq!(
        results[1],
        Err(CodecError::ReassemblyCapExceeded {
            msg_id: 1,
            needed: 2 * one,
            max: ordered.max_reassembly_bytes
        })
    );
    assert_eq!(
        results[4],
        Ok(Some(Delivery::Message {
            data: Bytes::from(vec![1; 66]),
            text: false
        }))
    );
}

#[test]
fn a_sequence_gap_owes_the_sender_what_it_dropped() {
    let limits = CodecLimits::default();
    let (mut enc, mut dec) = (FrameEncoder::new(limits), FrameDecoder::new(limits));
    let mut q = OutboundQueue::new();
    for byte in [1, 2] {
        q.push(&mut enc, Bytes::from(vec![byte; 100]), false, 64)
            .unwrap();
    }
    // Messages 0 and 1 each get a first fragment in; then a frame is lost.
    for _ in 0..2 {
        assert_eq!(dec.decode(&q.pop_frame(&mut enc).unwrap()), Ok(None));
    }
    let _lost = q.pop_frame(&mut enc).unwrap();
    // The frame after the loss is a BATCH of two whole messages: dropped with the partials.
    let mut q2 = OutboundQueue::new();
    for m in [&b"x"[..], b"y"] {
        q2.push(&mut enc, Bytes::copy_from_slice(m), false, 64)
            .unwrap();
    }
    let batch = q2.pop_frame(&mut enc).unwrap();
    assert!(matches!(
        dec.decode(&batch),
        Err(CodecError::SequenceGap {
            expected: 2,
            got: 3
        })
    ));
    assert_eq!(
        dec.take_replies(),
        [Control::Reset(0), Control::Reset(1), Control::Refused(2)]
    );
    assert_eq!(dec.buffered_bytes(), 0);
    // A late duplicate is dropped but owed nothing: its content was already received.
    assert!(matches!(
        dec.decode(&batch),
        Err(CodecError::SequenceGap { .. })
    ));
    assert_eq!(dec.take_replies(), []);
}

#[test]
fn a_batch_with_bad_entries_delivers_the_good_ones() {
    let limits = CodecLimits {
        max_message_size: 4,
        ..CodecLimits::default()
    };
    let mut entries = BytesMut::new();
    for (payload, text) in [
        (&b"ok"[..], false),
        (b"\xff", true),
        (b"hello", false),
        (b"yo", true),
    ] {
        frame::put_batch_entry(&mut entries, payload, text);
    }
    let bytes = Frame {
        seq: 0,
        body: Body::Batch(Batch::parse(&entries).unwrap()),
    }
    .encode();
    let mut dec = FrameDecoder::new(limits);
    let got = dec.decode(&bytes).unwrap().unwrap();
    let Delivery::MixedBatch {
        messages,
        refused,
        error,
    } = got
    else {
        panic!("{got:?}");
    };
    let data: Vec<&[u8]> = messages.iter().map(|m| &m.data[..]).collect();
    assert_eq!(data, [&b"ok"[..], b"yo"]);
    assert_eq!((refused, error), (2, CodecError::InvalidUtf8));
    assert_eq!(dec.take_replies(), [Control::Refused(2)]);
    // The BATCH consumed its sequence number: frame 1 is the next one expected.
    let next = Frame {
        seq: 1,
        body: Body::Control(Control::Fin),
    };
    assert_eq!(
        dec.decode(&next.encode()),
        Ok(Some(Delivery::Control(Control::Fin)))
    );
}
