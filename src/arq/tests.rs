//! Unit tests of the ARQ layer: wire round trips, malformed input, fatal errors and the
//! connection's basic exchanges. The lossy-link simulation is tests/arq_sim.rs.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::panic,
    clippy::expect_used
)]

use super::wire::{self, AckBlock, Datagram};
use super::*;

fn dg(hex: &str) -> Vec<u8> {
    hex::decode(hex.replace('.', "")).unwrap()
}

#[test]
fn wire_round_trips() {
    let payload = [0xaau8; 40];
    let cases = [
        Datagram {
            pn: 0,
            ack: None,
            ping: true,
            stream: None,
        },
        Datagram {
            pn: 300,
            ack: None,
            ping: false,
            stream: Some((1 << 40, &payload[..])),
        },
        Datagram {
            pn: u64::MAX,
            ack: Some(AckBlock {
                ranges: vec![(90, 100), (50, 60), (0, 0)],
                ack_delay_us: 1234,
                max_stream: 4 << 20,
            }),
            ping: false,
            stream: Some((7, &payload[..1])),
        },
        Datagram {
            pn: 5,
            ack: Some(AckBlock {
                ranges: vec![(3, 3)],
                ack_delay_us: 0,
                max_stream: 0,
            }),
            ping: false,
            stream: None,
        },
    ];
    for d in cases {
        let bytes = wire::encode(&d);
        assert_eq!(bytes.first(), Some(&wire::DATAGRAM_TYPE));
        assert_eq!(wire::parse(&bytes).unwrap(), d);
        if let Some(ack) = &d.ack {
            assert!(bytes.len() >= wire::ack_len(ack));
        }
    }
}

#[test]
fn ack_range_encoding_follows_rfc9000() {
    // largest 100, first range 10 (90..=100), gap 28 → next largest 60 (= 90 - 28 - 2),
    // len 10 (50..=60), gap 48 → 0, len 0.
    let d = Datagram {
        pn: 1,
        ack: Some(AckBlock {
            ranges: vec![(90, 100), (50, 60), (0, 0)],
            ack_delay_us: 5,
            max_stream: 1,
        }),
        ping: false,
        stream: None,
    };
    assert_eq!(hex::encode(wire::encode(&d)), "0201016405020a1c0a300001");
}

#[test]
fn malformed_datagrams_are_rejected() {
    let cases: &[(&str, &str)] = &[
        ("", "empty"),
        ("01.00.00", "codec v1 frame"),
        ("02", "flags missing"),
        ("02.08.00", "reserved flag"),
        ("02.00", "pn missing"),
        ("02.00.80", "pn truncated"),
        ("02.00.80.00", "non-minimal varint"),
        ("02.00.ffffffffffffffffff02", "varint overflow"),
        ("02.00.ffffffffffffffffffff01", "11-byte varint"),
        ("02.01.00.05.00.00", "ACK truncated"),
        ("02.01.00.05.00.00.06.00", "first range below 0"),
        ("02.01.00.01.00.01.00.00.00.00", "gap below 0"),
        ("02.01.00.0a.00.01.00.05.05.00", "range below 0"),
        ("02.02.00.00", "empty segment"),
        ("02.02.00.ffffffffffffffffff01.61", "segment past 2^64"),
        ("02.04.00.00", "trailing bytes"),
    ];
    for (hex, why) in cases {
        let bytes = dg(hex);
        let r = wire::parse(&bytes);
        assert!(
            matches!(r, Err(ArqError::Malformed(_))),
            "{why}: {hex} → {r:?}"
        );
        // And a connection drops it without any effect.
        let mut c = ArqConnection::new(ArqConfig::default(), 0);
        assert!(matches!(
            c.handle_datagram(0, &dg(hex)),
            Err(ArqError::Malformed(_))
        ));
        assert!(c.poll_transmit(0).is_none(), "{why}: nothing owed");
        assert!(
            c.handle_datagram(0, &dg("02.04.00")).is_ok(),
            "{why}: still usable"
        );
    }
}

#[test]
fn ack_of_never_sent_packet_is_fatal() {
    let mut c = ArqConnection::new(ArqConfig::default(), 0);
    // ACK of pn 0 when nothing was sent.
    let ack = dg("02.01.00.00.00.00.00.80.80.01");
    assert_eq!(c.handle_datagram(0, &ack), Err(ArqError::InvalidAck(0)));
    assert_eq!(
        c.handle_datagram(1, &dg("02.04.01")),
        Err(ArqError::InvalidAck(0))
    );
    assert!(c.poll_transmit(1).is_none());
    assert!(matches!(c.poll_frame(), Some(Err(ArqError::InvalidAck(0)))));

    // After sending pn 0, acking pn 1 is still invalid.
    let mut c = ArqConnection::new(ArqConfig::default(), 0);
    c.write_frame(b"x").unwrap();
    assert!(c.poll_transmit(0).is_some());
    let ack1 = dg("02.01.00.01.00.00.00.80.80.01");
    assert_eq!(c.handle_datagram(0, &ack1), Err(ArqError::InvalidAck(1)));
}

#[test]
fn segment_past_window_is_fatal() {
    let cfg = ArqConfig {
        receive_window: MIN_RECEIVE_WINDOW,
        max_frame: 1000,
        ..ArqConfig::default()
    };
    let mut c = ArqConnection::new(cfg, 0);
    // Last byte at offset 16383: inside. One more: outside.
    let mut ok = dg("02.02.00.ff7f");
    ok.push(0);
    assert!(c.handle_datagram(0, &ok).is_ok());
    let mut bad = dg("02.02.01.ff7f");
    bad.extend([0, 0]);
    assert_eq!(
        c.handle_datagram(0, &bad),
        Err(ArqError::WindowExceeded {
            offset: 16385,
            limit: 16384
        })
    );
}

#[test]
fn oversized_frames_are_refused_both_ways() {
    let cfg = ArqConfig {
        max_frame: 100,
        ..ArqConfig::default()
    };
    let mut c = ArqConnection::new(cfg, 0);
    assert_eq!(
        c.write_frame(&[0; 101]),
        Err(ArqError::FrameTooLarge { len: 101, max: 100 })
    );
    // The peer announces a 200-byte frame (length prefix c8 01).
    c.handle_datagram(0, &dg("02.02.00.00.c801.00")).unwrap();
    assert_eq!(
        c.poll_frame(),
        Some(Err(ArqError::FrameTooLarge { len: 200, max: 100 }))
    );
}

/// Moves every datagram between two connections without loss until both are quiet.
fn exchange(a: &mut ArqConnection, b: &mut ArqConnection, now: &mut u64) {
    for _ in 0..10_000 {
        let mut moved = false;
        while let Some(d) = a.poll_transmit(*now) {
            b.handle_datagram(*now, &d).unwrap();
            moved = true;
        }
        while let Some(d) = b.poll_transmit(*now) {
            a.handle_datagram(*now, &d).unwrap();
            moved = true;
        }
        if !moved {
            match min_opt(a.poll_timeout(), b.poll_timeout()) {
                Some(t) => {
                    *now = (*now).max(t);
                    a.handle_timeout(*now);
                    b.handle_timeout(*now);
                }
                None => return,
            }
        }
        *now += 100;
    }
    panic!("no quiescence");
}

#[test]
fn frames_cross_and_everything_is_acked() {
    let mut a = ArqConnection::new(ArqConfig::default(), 0);
    let mut b = ArqConnection::new(ArqConfig::default(), 0);
    let frames: Vec<Vec<u8>> = (0..200u32)
        .map(|i| vec![i as u8; (i * 37 % 3000) as usize])
        .collect();
    for f in &frames {
        a.write_frame(f).unwrap();
    }
    let mut now = 0;
    let mut got = Vec::new();
    for _ in 0..1000 {
        exchange(&mut a, &mut b, &mut now);
        while let Some(f) = b.poll_frame() {
            got.push(f.unwrap().to_vec());
        }
        if got.len() == frames.len() && a.is_idle() {
            break;
        }
    }
    assert_eq!(got, frames);
    assert!(a.is_idle() && a.buffered_bytes() == 0);
    assert_eq!(a.stats().packets_lost, 0);
    assert!(a.poll_timeout().is_none(), "idle: no timer");
}

#[test]
fn pto_retransmits_when_every_packet_is_lost() {
    let mut a = ArqConnection::new(ArqConfig::default(), 0);
    let mut b = ArqConnection::new(ArqConfig::default(), 0);
    a.write_frame(b"hello").unwrap();
    let lost = a.poll_transmit(0).unwrap();
    drop(lost);
    assert!(a.poll_transmit(0).is_none());
    let t = a.poll_timeout().unwrap();
    assert!(t >= 333_000, "PTO from the initial RTT: {t}");
    a.handle_timeout(t);
    assert_eq!(a.stats().ptos, 1);
    let probe = a.poll_transmit(t).unwrap();
    b.handle_datagram(t, &probe).unwrap();
    assert_eq!(b.poll_frame().unwrap().unwrap().as_ref(), b"hello");
}

#[test]
fn datagrams_never_exceed_max_datagram() {
    for max in [64usize, 100, 1163] {
        let cfg = ArqConfig {
            max_datagram: max,
            ..ArqConfig::default()
        };
        let mut a = ArqConnection::new(cfg, 0);
        let mut b = ArqConnection::new(cfg, 0);
        a.write_frame(&[7; 20_000]).unwrap();
        b.write_frame(&[8; 20_000]).unwrap();
        let mut now = 0;
        for _ in 0..2_000 {
            let mut any = false;
            while let Some(d) = a.poll_transmit(now) {
                assert!(d.len() <= max, "{} > {max}", d.len());
                b.handle_datagram(now, &d).unwrap();
                any = true;
            }
            while let Some(d) = b.poll_transmit(now) {
                assert!(d.len() <= max, "{} > {max}", d.len());
                a.handle_datagram(now, &d).unwrap();
                any = true;
            }
            while let Some(f) = a.poll_frame() {
                assert_eq!(f.unwrap().len(), 20_000);
            }
            while let Some(f) = b.poll_frame() {
                assert_eq!(f.unwrap().len(), 20_000);
            }
            now += if any { 100 } else { 1_000 };
            a.handle_timeout(now);
            b.handle_timeout(now);
            if a.is_idle() && b.is_idle() {
                break;
            }
        }
        assert!(a.is_idle() && b.is_idle(), "max {max}");
    }
}

/// The receiver's window stops the sender; reading reopens it; when that window update is
/// lost, the blocked sender's PING (PTO) fetches it, so the transfer still finishes.
#[test]
fn lost_window_update_is_recovered_by_a_ping() {
    let cfg = ArqConfig {
        receive_window: MIN_RECEIVE_WINDOW,
        max_frame: 1000,
        ..ArqConfig::default()
    };
    let mut a = ArqConnection::new(cfg, 0);
    let mut b = ArqConnection::new(cfg, 0);
    let frame = [0x5au8; 1000];
    for _ in 0..100 {
        a.write_frame(&frame).unwrap();
    }
    // Deliver everything, but b's application does not read: a stops at the window.
    let mut now = 0u64;
    for _ in 0..200 {
        while let Some(d) = a.poll_transmit(now) {
            b.handle_datagram(now, &d).unwrap();
        }
        while let Some(d) = b.poll_transmit(now) {
            a.handle_datagram(now, &d).unwrap();
        }
        now += 1_000;
        a.handle_timeout(now);
        b.handle_timeout(now);
    }
    assert_eq!(b.receive_buffered_bytes(), MIN_RECEIVE_WINDOW);
    assert!(a.buffered_bytes() > 80_000, "a is blocked by the window");
    assert!(a.poll_transmit(now).is_none());
    // b reads everything: a window update is owed at once...
    let mut read = 0;
    while let Some(f) = b.poll_frame() {
        assert_eq!(f.unwrap().len(), 1000);
        read += 1;
    }
    assert_eq!(read, 16);
    assert_eq!(b.poll_timeout(), Some(now));
    // ... and is lost.
    let update = b.poll_transmit(now).unwrap();
    assert!(wire::parse(&update).unwrap().ack.is_some());
    assert!(b.poll_transmit(now).is_none());
    // a's PTO sends a PING; b's ACK of it carries the window again.
    let t = a
        .poll_timeout()
        .expect("blocked sender keeps a probe timer");
    a.handle_timeout(t);
    let ping = a.poll_transmit(t).unwrap();
    let parsed = wire::parse(&ping).unwrap();
    assert!(parsed.ping && parsed.stream.is_none());
    b.handle_datagram(t, &ping).unwrap();
    let t2 = b.poll_timeout().unwrap();
    b.handle_timeout(t2);
    let ack = b.poll_transmit(t2).unwrap();
    a.handle_datagram(t2, &ack).unwrap();
    let more = a.poll_transmit(t2).expect("window reopened");
    assert!(wire::parse(&more).unwrap().stream.is_some());
}
