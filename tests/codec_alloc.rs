#![cfg(not(target_arch = "wasm32"))]
//! Lying frames must not make the decoder allocate what they claim: a counting global
//! allocator measures the peak heap while hostile fragments are decoded.

use bytes::Bytes;
use miaou_transport::codec::{Body, CodecError, CodecLimits, Fragment, Frame, FrameDecoder};
use std::alloc::{GlobalAlloc, Layout, System};
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
    assert_eq!(decoder.buffered_bytes(), 4000 + 64);
}

#[test]
fn totals_over_the_cap_are_refused_before_any_allocation() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let limits = CodecLimits {
        max_message_size: 1 << 20,
        max_reassembly_bytes: 2 << 20,
        ordered: true,
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
        ordered: true,
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
    // What is held stays near the cap (allocator slack included), far below the 8 MB offered.
    assert!(
        grown < 2 * cap + 64 * 1024,
        "heap grew by {grown} bytes with a {cap}-byte cap"
    );
}
