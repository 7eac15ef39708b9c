//! The `arq_datagram` fuzz target's logic (fuzz/fuzz_targets/arq_datagram.rs), shared with the
//! normal tests (tests/arq_vectors.rs) so the same checks run without cargo-fuzz.
#![allow(dead_code)]

use miaou_transport::arq::{wire, ArqConfig, ArqConnection, ArqError};

/// Feeds `data` to one connection as a sequence of operations and checks it never panics and
/// keeps its invariants. Byte 0 picks the config (bit 0: 64-byte datagrams; bit 1: a 16 KiB
/// window with 1 KiB max frame). Then ops until the input ends, each a tag byte:
/// `tag % 4 == 0`: a datagram, `len: u8` then `len` bytes; `1`: time advances by
/// `tag >> 2` ms and due timers run; `2`: the app writes a frame of `tag >> 2` × 37 bytes;
/// `3`: the app reads frames. After every op, `poll_transmit` is drained.
///
/// Invariants: a datagram that parses re-encodes to the same bytes; produced datagrams are
/// ≤ max_datagram and parse; the receive buffer stays within the window; `poll_timeout` never
/// lies in the past by more than the current time; fatal errors stay fatal.
pub fn run(data: &[u8]) {
    let Some((&cfg_byte, mut rest)) = data.split_first() else {
        return;
    };
    let config = ArqConfig {
        max_datagram: if cfg_byte & 1 != 0 { 64 } else { 1163 },
        receive_window: if cfg_byte & 2 != 0 {
            16 * 1024
        } else {
            1 << 20
        },
        max_frame: if cfg_byte & 2 != 0 { 1024 } else { 64 * 1024 },
    };
    let mut c = ArqConnection::new(config, 0);
    let mut now = 0u64;
    let mut fatal: Option<ArqError> = None;
    while let Some((&tag, r)) = rest.split_first() {
        rest = r;
        match tag % 4 {
            0 => {
                let Some((&len, r)) = rest.split_first() else {
                    return;
                };
                let n = (len as usize).min(r.len());
                let (dg, r) = r.split_at(n);
                rest = r;
                if let Ok(parsed) = wire::parse(dg) {
                    assert_eq!(wire::encode(&parsed).as_ref(), dg, "not canonical");
                }
                match c.handle_datagram(now, dg) {
                    Ok(()) | Err(ArqError::Malformed(_)) => {
                        assert!(fatal.is_none(), "accepted after a fatal error");
                    }
                    Err(e) => {
                        if let Some(f) = &fatal {
                            assert_eq!(&e, f, "fatal error changed");
                        }
                        fatal = Some(e);
                    }
                }
                assert!(c.receive_buffered_bytes() <= c.receive_window());
            }
            1 => {
                now += u64::from(tag >> 2) * 1_000;
                if c.poll_timeout().is_some_and(|t| t <= now) {
                    c.handle_timeout(now);
                }
            }
            2 => {
                let len = usize::from(tag >> 2) * 37;
                let r = c.write_frame(&vec![tag; len]);
                assert_eq!(r.is_err(), len > config.max_frame);
            }
            _ => {
                for _ in 0..64 {
                    match c.poll_frame() {
                        Some(Ok(f)) => assert!(f.len() <= config.max_frame),
                        Some(Err(_)) | None => break,
                    }
                }
            }
        }
        let mut sent = 0;
        while let Some(d) = c.poll_transmit(now) {
            assert!(d.len() <= config.max_datagram, "{} bytes", d.len());
            assert!(wire::parse(&d).is_ok(), "we produced a malformed datagram");
            sent += 1;
            assert!(sent < 10_000, "poll_transmit never ends");
        }
        if fatal.is_some() {
            assert!(c.poll_timeout().is_none());
        }
    }
}

/// Packs datagrams into a `run` input (config byte, then `0` tags with u8 lengths; longer
/// datagrams are cut), interleaving a 1 ms tick, a write and a read after each.
pub fn pack(cfg: u8, datagrams: &[Vec<u8>]) -> Vec<u8> {
    let mut out = vec![cfg];
    for d in datagrams {
        let n = d.len().min(255);
        out.push(0);
        out.push(n as u8);
        out.extend_from_slice(&d[..n]);
        out.extend_from_slice(&[1 | 4, 2 | 8, 3]);
    }
    out
}
