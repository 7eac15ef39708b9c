#![cfg(not(target_arch = "wasm32"))]
//! Hostile frames must not make the decoder allocate more than its caps say: a counting global
//! allocator measures the real heap (peak, and what stays held) while every class of malformed
//! or abusive input is decoded, and checks it against `max_reassembly_bytes`.

use bytes::Bytes;
use miaou_transport::codec::{
    Body, CodecError, CodecLimits, Control, Delivery, Fragment, Frame, FrameDecoder,
    REASSEMBLY_PARTIAL_OVERHEAD, REASSEMBLY_RUN_OVERHEAD,
};
use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
/// Tests in this file measure one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

// SAFETY: forwards to the system allocator unchanged; only counts bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = CURRENT.fetch_add(layout.size(), Ordering::SeqCst) + layout.size();
        PEAK.fetch_max(now, Ordering::SeqCst);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        CURRENT.fetch_sub(layout.size(), Ordering::SeqCst);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Heap growth (bytes above the level at the start) at its highest while `f` ran.
fn peak_growth(f: impl FnOnce()) -> usize {
    let base = CURRENT.load(Ordering::SeqCst);
    PEAK.store(base, Ordering::SeqCst);
    f();
    PEAK.load(Ordering::SeqCst).saturating_sub(base)
}

fn fragment(seq: u64, msg_id: u64, offset: u64, total: u64, payload: &[u8]) -> Bytes {
    Frame {
        seq,
        body: Body::Data {
            text: false,
            fragment: Some(Fragment {
                msg_id,
                offset,
                total,
            }),
            payload,
        },
    }
    .encode()
}

#[test]
fn a_huge_declared_total_allocates_only_what_arrived() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let limits = CodecLimits::default(); // 64 MiB messages
    let mut decoder = FrameDecoder::new(limits);
    let frames: Vec<Bytes> = (0..4)
        .map(|i| fragment(i, 7, i * 1000, 60 << 20, &[0xAB; 1000]))
        .collect();
    let grown = peak_growth(|| {
        for frame in &frames {
            assert_eq!(decoder.decode(frame), Ok(None));
        }
    });
    // 4 000 bytes arrived of a claimed 60 MiB: doubling growth stays within a few KiB.
    assert!(
        grown < 64 * 1024,
        "decoder grew the heap by {grown} bytes for 4000 received"
    );
    // One run whose capacity doubled from 1000 up to 4000, plus the bookkeeping charges.
    assert_eq!(
        decoder.buffered_bytes(),
        4000 + REASSEMBLY_RUN_OVERHEAD + REASSEMBLY_PARTIAL_OVERHEAD
    );
}

#[test]
fn totals_over_the_cap_are_refused_before_any_allocation() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let limits = CodecLimits {
        max_message_size: 1 << 20,
        max_reassembly_bytes: 2 << 20,
        ..CodecLimits::default()
    };
    let mut decoder = FrameDecoder::new(limits);
    let frame = fragment(0, 1, 0, u64::MAX / 2, &[1; 100]);
    let mut result = Ok(None);
    let grown = peak_growth(|| result = decoder.decode(&frame));
    assert_eq!(
        result,
        Err(CodecError::MessageTooLarge {
            len: u64::MAX / 2,
            max: 1 << 20
        })
    );
    assert!(grown < 4096, "refusing grew the heap by {grown} bytes");
}

#[test]
fn many_partial_messages_stop_at_the_reassembly_cap() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cap = 256 * 1024;
    let limits = CodecLimits {
        max_message_size: 1 << 20,
        max_reassembly_bytes: cap,
        ..CodecLimits::default()
    };
    let mut decoder = FrameDecoder::new(limits);
    // 1 000 interleaved messages, each claiming 1 MiB, 8 KiB of each sent: 8 MB offered.
    let frames: Vec<Bytes> = (0..1000u64)
        .map(|id| fragment(id, id, 0, 1 << 20, &[9; 8192]))
        .collect();
    let mut refused = 0;
    let grown = peak_growth(|| {
        for frame in &frames {
            if let Err(CodecError::ReassemblyCapExceeded { .. }) = decoder.decode(frame) {
                refused += 1;
            }
        }
    });
    assert!(decoder.buffered_bytes() <= cap);
    assert!(refused > 900, "only {refused} messages refused");
    // Run capacities are charged, so the heap stays within the cap, far below the 8 MB offered.
    assert!(
        grown <= cap + SLACK,
        "heap grew by {grown} bytes with a {cap}-byte cap"
    );
}

/// Heap the decoder may use beyond `max_reassembly_bytes`, bytes: its discarded-id set and
/// pending replies (a few KiB), the decoder itself, and a delivered message being built.
const SLACK: usize = 64 * 1024;

/// What one hostile stream did to a fresh decoder.
struct Outcome {
    /// Highest heap growth while decoding, bytes.
    peak: usize,
    /// Heap still held by the decoder after the stream, bytes.
    held: usize,
    /// How often each error variant was returned (from `Err` and `MixedBatch`).
    errors: BTreeMap<&'static str, usize>,
    /// Control frames owed to the sender, as `take_replies` handed them out after each frame.
    resets: usize,
    refused: u64,
}

fn variant(e: &CodecError) -> &'static str {
    use CodecError::*;
    match e {
        Truncated => "Truncated",
        UnsupportedVersion { .. } => "UnsupportedVersion",
        UnknownFlags { .. } => "UnknownFlags",
        VarintOverflow => "VarintOverflow",
        NonMinimalVarint => "NonMinimalVarint",
        TrailingBytes { .. } => "TrailingBytes",
        SequenceGap { .. } => "SequenceGap",
        MessageTooLarge { .. } => "MessageTooLarge",
        ReassemblyCapExceeded { .. } => "ReassemblyCapExceeded",
        TooManyPartialMessages { .. } => "TooManyPartialMessages",
        FragmentOutOfOrder { .. } => "FragmentOutOfOrder",
        DuplicateFragment { .. } => "DuplicateFragment",
        FragmentPastEnd { .. } => "FragmentPastEnd",
        LengthMismatch { .. } => "LengthMismatch",
        EmptyFragment { .. } => "EmptyFragment",
        EmptyBatch => "EmptyBatch",
        InvalidUtf8 => "InvalidUtf8",
        FrameSizeTooSmall { .. } => "FrameSizeTooSmall",
    }
}

/// Feeds `frames` to a fresh decoder the way the link's reader does (decode, then take the
/// replies), checking `buffered_bytes` after each. Frames built beforehand are not counted;
/// frames built by the iterator are, one at a time (within [`SLACK`]). The caller holds
/// [`SERIAL`] for its whole test, so no other test allocates meanwhile.
fn attack<F: AsRef<[u8]>>(limits: CodecLimits, frames: impl IntoIterator<Item = F>) -> Outcome {
    // Error names are counted in a map allocated here, before the measurement starts.
    let mut errors: BTreeMap<&'static str, usize> = BTreeMap::new();
    let (mut resets, mut refused) = (0, 0);
    let mut held = 0;
    let peak = peak_growth(|| {
        let base = CURRENT.load(Ordering::SeqCst);
        let mut dec = FrameDecoder::new(limits);
        for frame in frames {
            let error = match dec.decode(frame.as_ref()) {
                Err(e) => Some(e),
                Ok(Some(Delivery::MixedBatch { error, .. })) => Some(error),
                Ok(_) => None,
            };
            if let Some(e) = error {
                // Only the first of each variant allocates a map node.
                *errors.entry(variant(&e)).or_default() += 1;
            }
            for reply in dec.take_replies() {
                match reply {
                    Control::Reset(_) => resets += 1,
                    Control::Refused(n) => refused += n,
                    other => panic!("unexpected reply {other:?}"),
                }
            }
            assert!(dec.buffered_bytes() <= limits.max_reassembly_bytes);
            assert!(dec.partial_messages() <= limits.max_partial_messages);
        }
        held = CURRENT.load(Ordering::SeqCst).saturating_sub(base);
    });
    Outcome {
        peak,
        held,
        errors,
        resets,
        refused,
    }
}

fn frame(seq: u64, body: Body<'_>) -> Bytes {
    Frame { seq, body }.encode()
}

fn data(seq: u64, text: bool, payload: &[u8]) -> Bytes {
    let fragment = None;
    frame(
        seq,
        Body::Data {
            text,
            fragment,
            payload,
        },
    )
}

/// A small cap, so every attack below offers far more than it.
fn small(ordered: bool) -> CodecLimits {
    CodecLimits {
        max_message_size: 1 << 20,
        max_reassembly_bytes: 256 * 1024,
        max_partial_messages: usize::MAX, // the byte cap alone must bound the heap
        ordered,
    }
}

/// Asserts the heap bound of one attack and that it hit `expect` (so it really is that class).
fn assert_bounded<F: AsRef<[u8]>>(
    name: &str,
    limits: CodecLimits,
    frames: impl IntoIterator<Item = F>,
    expect: &[&str],
) -> Outcome {
    let out = attack(limits, frames);
    let cap = limits.max_reassembly_bytes;
    assert!(
        out.peak <= cap + SLACK,
        "{name}: heap peaked {} bytes above start with a {cap}-byte cap",
        out.peak
    );
    assert!(
        out.held <= cap + SLACK,
        "{name}: decoder still holds {} bytes",
        out.held
    );
    for e in expect {
        assert!(
            out.errors.contains_key(e),
            "{name}: no {e} in {:?}",
            out.errors
        );
    }
    out
}

#[test]
fn a_million_one_byte_partials_hold_no_more_than_the_cap() {
    // The attack of a peer with many distinct msg_ids and 1-byte first fragments: each costs
    // the decoder ~490 bytes of maps and vectors, which the cap must count.
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let frames = (0..1_000_000u64).map(|id| fragment(id, id, 0, 1 << 20, &[id as u8]));
    let limits = CodecLimits {
        max_reassembly_bytes: 1 << 20,
        ..small(true)
    };
    let out = assert_bounded(
        "1-byte partials",
        limits,
        frames,
        &["ReassemblyCapExceeded"],
    );
    let accepted = 1_000_000 - out.errors["ReassemblyCapExceeded"];
    let per_partial = REASSEMBLY_PARTIAL_OVERHEAD + REASSEMBLY_RUN_OVERHEAD + 1;
    assert_eq!(accepted, (1 << 20) / per_partial, "partials accepted");
    assert!(
        out.held >= accepted * 400,
        "the measurement sees the partials: {} bytes for {accepted}",
        out.held
    );
    // Every refused message is owed a RESET (the reader sends each one right away).
    assert_eq!(out.resets, 1_000_000 - accepted);
}

#[test]
fn partial_messages_are_capped_in_number() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let frames: Vec<Bytes> = (0..3000u64)
        .map(|id| fragment(id, id, 0, 1 << 20, &[1]))
        .collect();
    let limits = CodecLimits::default(); // 65 MiB, 1024 partial messages
    let out = attack(limits, &frames);
    assert_eq!(out.refused, 0);
    assert_eq!(
        out.errors.get("TooManyPartialMessages"),
        Some(&(3000 - 1024))
    );
    assert_eq!(out.resets, 3000 - 1024);
    let per_partial = REASSEMBLY_PARTIAL_OVERHEAD + REASSEMBLY_RUN_OVERHEAD + 1;
    assert!(out.peak <= 1024 * per_partial + SLACK, "peak {}", out.peak);
    // Unordered mode evicts the oldest instead: the newest 1024 are kept, every other one is
    // owed a RESET.
    let unordered = CodecLimits {
        ordered: false,
        ..limits
    };
    let out = attack(unordered, &frames);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(out.resets, 3000 - 1024);
}

#[test]
fn every_malformed_frame_class_stays_within_the_cap() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let big = vec![0xAB; 8 * 1024];
    let mut classes: Vec<(&str, CodecLimits, Vec<Bytes>, Vec<&str>)> = Vec::new();

    // Truncated: a valid fragment cut at every length of its header, many times over.
    let whole = fragment(0, 1, 0, 1 << 20, &big);
    let cuts = (0..20_000).map(|i| whole.slice(..i % 12)).collect();
    classes.push(("truncated", small(true), cuts, vec!["Truncated"]));

    // Wrong version / unknown flags: big frames rejected by their first two bytes.
    let bad_header = (0..2_000u32)
        .map(|i| {
            let mut f = whole.to_vec();
            match i % 2 {
                0 => f[0] = 2 + (i % 250) as u8,
                _ => f[1] |= 0x20 << (i % 3),
            }
            Bytes::from(f)
        })
        .collect();
    classes.push((
        "wrong version, unknown flags",
        small(true),
        bad_header,
        vec!["UnsupportedVersion", "UnknownFlags"],
    ));

    // Lying lengths: totals far over the message cap, BATCH entries longer than the frame,
    // fragments running past their total, varints that overflow.
    let lying = (0..10_000u64)
        .map(|i| match i % 4 {
            0 => fragment(0, i, 0, u64::MAX / 2, &big),
            1 => Bytes::from([&[1u8, 6, 0][..], &[0xff, 0xff, 0x03], &big[..100]].concat()),
            2 => fragment(0, i, 8000, 8100, &big[..1000]),
            _ => Bytes::from([&[1u8, 0][..], &[0xff; 11]].concat()),
        })
        .collect();
    classes.push((
        "lying lengths",
        small(false),
        lying,
        vec![
            "MessageTooLarge",
            "Truncated",
            "FragmentPastEnd",
            "VarintOverflow",
        ],
    ));

    // Totals over the cap, fragments of messages just under the message cap.
    let over = (0..1_000u64)
        .map(|i| fragment(i, i, 0, (1 << 20) + 1 - (i % 2) * 2, &big))
        .collect();
    classes.push((
        "totals over the caps",
        small(true),
        over,
        vec!["MessageTooLarge", "ReassemblyCapExceeded"],
    ));

    // Out of order: ordered, messages starting mid-way; unordered, 1-byte fragments at
    // scattered offsets of a few messages (one run each).
    let mid = (0..10_000u64)
        .map(|i| fragment(i, i, 1 + i, 1 << 20, &big[..100]))
        .collect();
    classes.push((
        "out of order (ordered)",
        small(true),
        mid,
        vec!["FragmentOutOfOrder"],
    ));
    let scattered = (0..200_000u64)
        .map(|i| {
            let offset = (i.reverse_bits() >> 44) * 2; // distinct, never adjacent
            fragment(0, i % 4, offset, 1 << 21, &[7])
        })
        .collect();
    let limits = CodecLimits {
        max_message_size: 4 << 20,
        ..small(false)
    };
    classes.push((
        "out of order (unordered, 1-byte runs)",
        limits,
        scattered,
        vec!["ReassemblyCapExceeded"],
    ));

    // Duplicated and overlapping fragments, and totals that change between fragments.
    let dups = (0..20_000u64)
        .map(|i| {
            let id = i / 4;
            match i % 4 {
                0 => fragment(0, id, 0, 1 << 20, &big),
                1 => fragment(0, id, 0, 1 << 20, &big),
                2 => fragment(0, id + 1, 100, 1 << 20, &big),
                _ => fragment(0, id + 1, 50, 1 << 20, &big[..100]),
            }
        })
        .collect();
    classes.push((
        "duplicated fragments",
        small(false),
        dups,
        vec!["DuplicateFragment"],
    ));
    let mismatched = (0..10_000u64)
        .map(|i| fragment(i, i / 2, (i % 2) * 8192, (1 << 20) - i % 2, &big))
        .collect();
    classes.push((
        "length mismatch",
        small(true),
        mismatched,
        vec!["LengthMismatch"],
    ));

    // Fragments appended in order to many messages: runs grow by doubling, and the capacity
    // (up to twice the bytes received) is what must be charged.
    let mut seq = 0;
    let mut growing = Vec::new();
    for round in 0..3u64 {
        for id in 0..200u64 {
            growing.push(fragment(seq, id, round * 8192, 1 << 20, &big));
            seq += 1;
        }
    }
    classes.push((
        "growing runs",
        small(true),
        growing,
        vec!["ReassemblyCapExceeded"],
    ));

    // Sequence gaps that drop many partial messages at once.
    let gaps = (0..10_000u64)
        .map(|i| fragment(i + i / 100, i, 0, 1 << 20, &big[..1000]))
        .collect();
    classes.push(("sequence gaps", small(true), gaps, vec!["SequenceGap"]));

    // Whole messages refused: over the message cap, bad UTF-8, BATCHes with bad entries.
    let mut entries = Vec::new();
    for _ in 0..100 {
        entries.extend_from_slice(&[0x03, 0xff, 0x02, b'a']); // bad text entry, good entry
    }
    let whole_bad = (0..3_000u64)
        .map(|i| match i % 3 {
            0 => data(i, false, &vec![1; (1 << 20) + 1]),
            1 => data(i, true, &[0xff; 8192]),
            _ => frame(
                i,
                Body::Batch(miaou_transport::codec::Batch::parse(&entries).unwrap()),
            ),
        })
        .collect();
    classes.push((
        "refused whole messages",
        small(true),
        whole_bad,
        vec!["MessageTooLarge", "InvalidUtf8"],
    ));

    for (name, limits, frames, expect) in &classes {
        assert_bounded(name, *limits, frames, expect);
    }
}
