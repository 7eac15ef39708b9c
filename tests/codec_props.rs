#![cfg(not(target_arch = "wasm32"))]
//! Property tests of the frame codec: encoder/queue → decoder round trips over random sizes,
//! frame limits, interleavings and streams; malformed input gives typed errors, never a panic.

#[path = "common/fuzz.rs"]
mod fuzz;

use bytes::Bytes;
use miaou_transport::codec::*;
use proptest::prelude::*;

const FRAG_HEADER: usize = 42; // worst-case fragment header, docs/frame.md

/// `len` bytes of binary, or of UTF-8 text mixing 1- to 4-byte characters (so fragment
/// boundaries cut characters).
fn payload(len: usize, text: bool, seed: u8) -> Bytes {
    if !text {
        return (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect::<Vec<u8>>()
            .into();
    }
    let mut s = String::new();
    for c in ['a', 'é', '€', '😀'].iter().cycle().skip(seed as usize % 4) {
        if s.len() + c.len_utf8() > len {
            break;
        }
        s.push(*c);
    }
    s.push_str(&"z".repeat(len - s.len()));
    Bytes::from(s)
}

fn leb128(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
    out
}

fn max_frame() -> impl Strategy<Value = usize> {
    prop_oneof![MIN_FRAME_SIZE..=512usize, 512..=256 * 1024usize]
}

fn unordered() -> CodecLimits {
    CodecLimits {
        ordered: false,
        ..CodecLimits::default()
    }
}

/// Feeds frames; returns delivered messages and checks nothing is held at the end.
fn decode_all(dec: &mut FrameDecoder, frames: &[Bytes]) -> Result<Vec<(Bytes, bool)>, CodecError> {
    let mut out = Vec::new();
    for f in frames {
        for m in dec
            .decode(f)?
            .map(Delivery::into_messages)
            .unwrap_or_default()
        {
            out.push((m.data, m.text));
        }
    }
    assert_eq!(dec.buffered_bytes(), 0);
    Ok(out)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn one_message_round_trips(len in 0usize..300 * 1024, max_frame in max_frame(), text: bool, seed: u8) {
        let data = payload(len, text, seed);
        let mut enc = FrameEncoder::new(CodecLimits::default());
        let frames = enc.encode_message(data.clone(), text, max_frame).unwrap();
        let n = frames.len();
        let frames: Vec<Bytes> = frames.collect();
        prop_assert_eq!(frames.len(), n);
        prop_assert_eq!(enc.next_seq(), n as u64);
        let expected_n = if len + 12 <= max_frame { 1 } else { len.div_ceil(max_frame - FRAG_HEADER) };
        prop_assert_eq!(n, expected_n);
        prop_assert!(frames.iter().all(|f| f.len() <= max_frame));
        let mut dec = FrameDecoder::new(CodecLimits::default());
        prop_assert_eq!(decode_all(&mut dec, &frames).unwrap(), vec![(data, text)]);
    }

    #[test]
    fn small_messages_coalesce_in_order_and_within_the_frame_size(
        msgs in prop::collection::vec((0usize..200, any::<bool>()), 1..400),
        max_frame in MIN_FRAME_SIZE..4096usize,
    ) {
        let mut enc = FrameEncoder::new(CodecLimits::default());
        let mut q = OutboundQueue::new();
        let sent: Vec<(Bytes, bool)> = msgs.iter().enumerate().map(|(i, &(len, text))| (payload(len, text, i as u8), text)).collect();
        for (data, text) in &sent {
            q.push(&mut enc, data.clone(), *text, max_frame).unwrap();
        }
        let frames: Vec<Bytes> = std::iter::from_fn(|| q.pop_frame(&mut enc)).collect();
        prop_assert!(frames.iter().all(|f| f.len() <= max_frame));
        // Whole messages only: one frame each at most, and fewer when several fit together.
        let whole = msgs.iter().all(|&(len, _)| len + 12 <= max_frame);
        if whole {
            prop_assert!(frames.len() <= sent.len());
            if sent.len() >= 2 && msgs.iter().all(|&(len, _)| 2 * (len + 12) <= max_frame) {
                prop_assert!(frames.len() < sent.len(), "nothing was coalesced");
            }
        }
        let mut dec = FrameDecoder::new(CodecLimits::default());
        let got = decode_all(&mut dec, &frames).unwrap();
        if whole {
            prop_assert_eq!(got, sent);
        } else {
            let (mut got, mut sent) = (got, sent);
            got.sort();
            sent.sort();
            prop_assert_eq!(got, sent);
        }
    }

    #[test]
    fn unordered_reassembles_any_arrival_order(
        (len, max_frame, order) in (1usize..20_000, MIN_FRAME_SIZE..2048usize).prop_flat_map(|(len, mf)| {
            let n = if len + 12 <= mf { 1 } else { len.div_ceil(mf - FRAG_HEADER) };
            (Just(len), Just(mf), Just((0..n).collect::<Vec<_>>()).prop_shuffle())
        }),
        text: bool,
    ) {
        let data = payload(len, text, 7);
        let frames: Vec<Bytes> = FrameEncoder::new(unordered()).encode_message(data.clone(), text, max_frame).unwrap().collect();
        let shuffled: Vec<Bytes> = order.iter().map(|&i| frames[i].clone()).collect();
        prop_assert_eq!(decode_all(&mut FrameDecoder::new(unordered()), &shuffled).unwrap(), vec![(data, text)]);
    }

    #[test]
    fn queued_messages_interleave_and_round_trip(
        lens in prop::collection::vec(0usize..40_000, 1..8), max_frame in MIN_FRAME_SIZE..4096usize, text: bool,
    ) {
        let mut enc = FrameEncoder::new(CodecLimits::default());
        let mut q = OutboundQueue::new();
        let msgs: Vec<Bytes> = lens.iter().enumerate().map(|(i, &l)| payload(l, text, i as u8)).collect();
        for m in &msgs {
            q.push(&mut enc, m.clone(), text, max_frame).unwrap();
        }
        prop_assert_eq!(q.queued_bytes(), lens.iter().sum::<usize>());
        // A one-frame message pushed last is out within one frame per message ahead of it.
        q.push(&mut enc, Bytes::from_static(b"urgent"), false, max_frame).unwrap();
        let ahead = q.len() - 1;
        let mut dec = FrameDecoder::new(CodecLimits::default());
        let mut got = Vec::new();
        let mut pops = 0;
        while let Some(f) = q.pop_frame(&mut enc) {
            pops += 1;
            prop_assert!(f.len() <= max_frame);
            for m in dec.decode(&f).unwrap().map(Delivery::into_messages).unwrap_or_default() {
                if &m.data[..] == b"urgent" {
                    prop_assert!(pops <= ahead + 1, "urgent message waited {} pops", pops);
                } else {
                    got.push(m.data);
                }
            }
        }
        prop_assert_eq!(q.queued_bytes(), 0);
        prop_assert_eq!(dec.buffered_bytes(), 0);
        let mut want = msgs.clone();
        want.sort();
        got.sort();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn independent_streams_with_control_frames(
        streams in prop::collection::vec(prop::collection::vec(0usize..5_000, 0..5), 2..5),
        schedule in prop::collection::vec(any::<prop::sample::Index>(), 0..2_000),
        max_frame in MIN_FRAME_SIZE..1024usize,
    ) {
        // One encoder/queue/decoder per channel; channels' frames interleave arbitrarily on the
        // "wire" and PINGs are encoded between pops (seqs are taken at pop time).
        let mut chans: Vec<_> = streams.iter().map(|lens| {
            let mut enc = FrameEncoder::new(CodecLimits::default());
            let mut q = OutboundQueue::new();
            for (i, &l) in lens.iter().enumerate() {
                q.push(&mut enc, payload(l, false, i as u8), false, max_frame).unwrap();
            }
            (enc, q, FrameDecoder::new(CodecLimits::default()), Vec::new())
        }).collect();
        let n = chans.len();
        let picks = schedule.iter().map(|ix| ix.index(n)).chain((0..n).cycle().take(n * 100_000));
        for (step, c) in picks.enumerate() {
            if chans.iter().all(|(_, q, ..)| q.is_empty()) {
                break;
            }
            let (enc, q, dec, got) = &mut chans[c];
            let frame = if step % 7 == 0 { Some(enc.encode_control(Control::Ping(step as u64))) } else { q.pop_frame(enc) };
            match frame.map(|f| dec.decode(&f).unwrap()) {
                Some(Some(Delivery::Control(c))) => prop_assert_eq!(c, Control::Ping(step as u64)),
                Some(Some(delivery)) => got.extend(delivery.into_messages().into_iter().map(|m| m.data)),
                _ => {}
            }
        }
        for ((_, _, dec, got), lens) in chans.iter().zip(&streams) {
            let want: Vec<Bytes> = lens.iter().enumerate().map(|(i, &l)| payload(l, false, i as u8)).collect();
            let (mut got, mut want) = (got.clone(), want);
            got.sort();
            want.sort();
            prop_assert_eq!(got, want);
            prop_assert_eq!(dec.buffered_bytes(), 0);
        }
    }

    #[test]
    fn decoder_never_panics_on_random_bytes(
        mode: u8,
        raw in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..32),
        // Frames with a valid version and a plausible flags byte reach deeper code paths.
        shaped in prop::collection::vec((0u8..0x20, prop::collection::vec(any::<u8>(), 0..48)), 0..32),
    ) {
        fuzz::decode_frames(&fuzz::pack(mode, &raw));
        let shaped: Vec<Vec<u8>> = shaped.into_iter().map(|(flags, rest)| [vec![1, flags], rest].concat()).collect();
        fuzz::decode_frames(&fuzz::pack(mode, &shaped));
    }

    #[test]
    fn lost_fragment_is_a_gap_and_frees_the_partial(len in 200usize..5_000, lost in any::<prop::sample::Index>()) {
        let frames: Vec<Bytes> = FrameEncoder::new(CodecLimits::default()).encode_message(payload(len, false, 1), false, 64).unwrap().collect();
        let lost = 1 + lost.index(frames.len() - 2); // neither first nor last
        let mut dec = FrameDecoder::new(CodecLimits::default());
        let results: Vec<_> = frames.iter().enumerate().filter(|(i, _)| *i != lost).map(|(_, f)| dec.decode(f)).collect();
        prop_assert!(results[..lost].iter().all(|r| r == &Ok(None)));
        prop_assert_eq!(&results[lost], &Err(CodecError::SequenceGap { expected: lost as u64, got: lost as u64 + 1 }));
        // One error per loss: the rest of the broken message is skipped silently.
        prop_assert!(results[lost + 1..].iter().all(|r| r == &Ok(None)), "{:?}", results);
        prop_assert_eq!(dec.buffered_bytes(), 0);
        // The sender is told once: its message 0 was dropped.
        prop_assert_eq!(dec.take_replies(), vec![Control::Reset(0)]);
    }

    #[test]
    fn a_batch_delivers_its_good_entries_in_order_and_owes_the_bad_ones(
        entries in prop::collection::vec((0usize..40, any::<bool>(), any::<bool>()), 1..30),
    ) {
        // Each entry: length, text, bad (text with a 0xff byte, or one byte over the 30-byte cap).
        let limits = CodecLimits { max_message_size: 30, ..CodecLimits::default() };
        let mut raw = Vec::new();
        let mut good = Vec::new();
        for (i, &(len, text, bad)) in entries.iter().enumerate() {
            let len = if bad && !text { 31 + len } else { len.min(30) };
            let mut data = vec![b'a' + (i % 26) as u8; len];
            if bad && text {
                data.push(0xff);
                data.truncate(30);
                *data.last_mut().unwrap_or(&mut 0) = 0xff;
            }
            let header = ((data.len() as u64) << 1) | u64::from(text);
            raw.extend(leb128(header));
            raw.extend_from_slice(&data);
            if !bad {
                good.push((Bytes::from(data), text));
            }
        }
        let bad = entries.len() - good.len();
        let frame = Frame { seq: 0, body: Body::Batch(Batch::parse(&raw).unwrap()) }.encode();
        let mut dec = FrameDecoder::new(limits);
        let result = dec.decode(&frame);
        let delivered: Vec<(Bytes, bool)> = match result.clone() {
            Ok(Some(Delivery::MixedBatch { messages, refused, .. })) => {
                prop_assert_eq!(refused, bad);
                messages.into_iter().map(|m| (m.data, m.text)).collect()
            }
            Ok(Some(Delivery::Batch(messages))) => {
                prop_assert_eq!(bad, 0);
                messages.into_iter().map(|m| (m.data, m.text)).collect()
            }
            Err(_) => {
                prop_assert!(good.is_empty(), "{:?}", result);
                Vec::new()
            }
            other => return Err(TestCaseError::fail(format!("{other:?}"))),
        };
        prop_assert_eq!(delivered, good);
        let owed: Vec<Control> = (bad > 0).then_some(Control::Refused(bad as u64)).into_iter().collect();
        prop_assert_eq!(dec.take_replies(), owed);
    }

    #[test]
    fn duplicated_fragment_is_typed(len in 100usize..3_000, dup in any::<prop::sample::Index>()) {
        let frames: Vec<Bytes> = FrameEncoder::new(unordered()).encode_message(payload(len, false, 2), false, 64).unwrap().collect();
        let dup = dup.index(frames.len() - 1); // not the last: it would complete the message
        let mut dec = FrameDecoder::new(unordered());
        for f in &frames[..=dup] {
            prop_assert_eq!(dec.decode(f), Ok(None));
        }
        let again = dec.decode(&frames[dup]);
        prop_assert!(matches!(again, Err(CodecError::DuplicateFragment { .. })), "{:?}", again);
        prop_assert_eq!(dec.buffered_bytes(), 0);
    }

    #[test]
    fn truncated_fragment_header_is_truncated(len in 100usize..100_000, cut in any::<prop::sample::Index>(), max_frame in max_frame()) {
        let data = payload(len, false, 3);
        let frames: Vec<Bytes> = FrameEncoder::new(CodecLimits::default()).encode_message(data, false, max_frame.min(len)).unwrap().collect();
        let f = &frames[frames.len() - 1];
        let Ok(Frame { body: Body::Data { payload, fragment: Some(_), .. }, .. }) = Frame::parse(f) else {
            return Err(TestCaseError::fail("expected a fragment"));
        };
        let header_len = f.len() - payload.len();
        prop_assert_eq!(Frame::parse(&f[..cut.index(header_len)]), Err(CodecError::Truncated));
    }

    #[test]
    fn reassembly_cap_is_enforced_and_decoder_recovers(len in prop_oneof![1usize..80, 80usize..10_000], cap in 0usize..12_000, ordered: bool) {
        let limits = CodecLimits { max_reassembly_bytes: cap, ordered, ..CodecLimits::default() };
        let mut enc = FrameEncoder::new(limits);
        let mut dec = FrameDecoder::new(limits);
        let data = payload(len, false, 4);
        let mut outcome = None;
        for f in enc.encode_message(data.clone(), false, 64).unwrap() {
            match dec.decode(&f) {
                Ok(None) => prop_assert!(dec.buffered_bytes() <= cap),
                other => { outcome = Some(other); break; }
            }
        }
        // Unfragmented messages are never buffered; a fragmented one arriving in order is one
        // run whose capacity ends at its length, plus one run and one partial-message overhead
        // (the completing fragment counts too).
        if len + 12 <= 64 || len + REASSEMBLY_RUN_OVERHEAD + REASSEMBLY_PARTIAL_OVERHEAD <= cap {
            prop_assert_eq!(outcome, Some(Ok(Some(Delivery::Message { data, text: false }))));
        } else {
            prop_assert!(matches!(outcome, Some(Err(CodecError::ReassemblyCapExceeded { .. }))), "{:?}", outcome);
            // Still usable: a fresh decoder state is not needed; a one-frame message goes through.
            let mut dec2 = FrameDecoder::new(CodecLimits { ordered: false, ..limits });
            let small = enc.encode_message(Bytes::from_static(b"ok"), false, 64).unwrap().next().unwrap();
            let r = dec.decode(&small);
            prop_assert!(matches!(r, Ok(Some(_)) | Err(CodecError::SequenceGap { .. })), "{:?}", r);
            prop_assert!(matches!(dec2.decode(&small), Ok(Some(_))), "fresh decoder");
        }
        prop_assert_eq!(dec.buffered_bytes(), 0);
    }

    #[test]
    fn oversized_messages_are_rejected_both_ways(max in 0usize..1_000, extra in 1usize..100) {
        let limits = CodecLimits { max_message_size: max, ..CodecLimits::default() };
        let data = payload(max + extra, false, 5);
        let err = FrameEncoder::new(limits).encode_message(data.clone(), false, 64).err();
        prop_assert_eq!(err, Some(CodecError::MessageTooLarge { len: (max + extra) as u64, max }));
        let frames: Vec<Bytes> = FrameEncoder::new(CodecLimits::default()).encode_message(data, false, 64).unwrap().collect();
        let r = FrameDecoder::new(limits).decode(&frames[0]);
        prop_assert!(matches!(r, Err(CodecError::MessageTooLarge { .. })), "{:?}", r);
    }
}
