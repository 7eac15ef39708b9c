//! The Rust API end to end on native: two or three `Transport`s in one process, a real bridge,
//! real webrtc-rs data channels. Needs a non-loopback interface for ICE host candidates: the
//! test command runs it inside tests/scripts/in-netns.sh.
#![cfg(not(target_arch = "wasm32"))]

use miaou_transport::signaling::bridge::Bridge;
use miaou_transport::{
    ChannelKind, Error, Event, Message, PeerId, Transport, TransportConfig, TransportConfigBuilder,
};
use std::time::Duration;
use tokio::time::timeout;

#[path = "common/live.rs"]
mod live;
use live::{bridge, WAIT};

fn config(bridge: &Bridge, room: &str) -> TransportConfigBuilder {
    TransportConfig::builder(bridge.ws_url(), room)
}

/// Waits for the `PeerConnected` event about some peer and returns it.
async fn connected(t: &Transport) -> PeerId {
    let wait = async {
        loop {
            match t.next_event().await.expect("events open") {
                Event::PeerConnected(peer) => return peer,
                _ => continue,
            }
        }
    };
    timeout(WAIT, wait).await.expect("a channel opens in time")
}

async fn pair(
    bridge: &Bridge,
    room: &str,
    tweak: impl Fn(TransportConfigBuilder) -> TransportConfigBuilder,
) -> (Transport, Transport, PeerId, PeerId) {
    let a = Transport::connect(tweak(config(bridge, room)).build().unwrap())
        .await
        .unwrap();
    let b = Transport::connect(tweak(config(bridge, room)).build().unwrap())
        .await
        .unwrap();
    let (b_id, a_id) = tokio::join!(connected(&a), connected(&b));
    assert_eq!(&a_id, a.peer_id());
    assert_eq!(&b_id, b.peer_id());
    (a, b, a_id, b_id)
}

async fn recv(t: &Transport) -> Message {
    timeout(WAIT, t.recv())
        .await
        .expect("a message in time")
        .expect("transport open")
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[tokio::test]
async fn large_single_messages_cross_in_one_piece_both_ways() {
    let bridge = bridge().await;
    let (a, b, a_id, b_id) = pair(&bridge, "large", |c| c).await;
    for (len, seed) in [(300 * 1024, 1u8), (8 * 1024 * 1024, 2)] {
        let data = pattern(len, seed);
        a.send(&b_id, data.clone()).await.unwrap();
        let got = recv(&b).await;
        assert_eq!(
            (got.from.clone(), got.text, got.data.len()),
            (a_id.clone(), false, len)
        );
        assert!(got.data == data, "{len}-byte message corrupted a->b");
        b.send(&a_id, data.clone()).await.unwrap();
        let got = recv(&a).await;
        assert!(
            got.data == data && got.from == b_id,
            "{len}-byte message corrupted b->a"
        );
    }
    a.close().await.unwrap();
    b.close().await.unwrap();
}

#[tokio::test]
async fn close_right_after_a_10_mib_burst_delivers_the_last_message() {
    let bridge = bridge().await;
    let (a, b, _a_id, b_id) = pair(&bridge, "burst", |c| c).await;
    let count = 160; // 160 x 64 KiB = 10 MiB
    for i in 0..count {
        let mut data = pattern(64 * 1024, i as u8);
        data[..4].copy_from_slice(&(i as u32).to_be_bytes());
        a.send(&b_id, data).await.unwrap();
    }
    a.close().await.expect("close delivers and is acknowledged");
    for i in 0..count {
        let got = recv(&b).await;
        assert_eq!(
            &got.data[..4],
            &(i as u32).to_be_bytes(),
            "message {i} in order"
        );
    }
    // b learns that a left, and sending to it now fails with a typed error.
    let wait_gone = async {
        loop {
            if let Some(Event::PeerDisconnected { .. }) = b.next_event().await {
                return;
            }
        }
    };
    timeout(WAIT, wait_gone)
        .await
        .expect("b sees the disconnect");
    assert!(matches!(
        b.send(&_a_id, vec![1]).await,
        Err(Error::PeerNotConnected(_))
    ));
}

/// The peer closes first (the FIN exchange completes and our link ends); our own `close`
/// afterwards is still `Ok`: everything we sent was read. Our link's end and the driver's
/// removal of it race (CI once saw `PeerNotConnected` there), so the test sweeps the delay
/// between the peer's close and ours across that window.
#[tokio::test]
async fn close_after_the_peer_closed_first_is_ok() {
    let bridge = bridge().await;
    for delay_ms in 0..25u64 {
        let room = format!("close-second-{delay_ms}");
        let (a, b, a_id, b_id) = pair(&bridge, &room, |c| c).await;
        b.send(&a_id, b"last words".to_vec()).await.unwrap();
        a.send(&b_id, b"bye".to_vec()).await.unwrap();
        a.close().await.expect("a's close completes the handshake");
        assert_eq!(recv(&b).await.data.as_ref(), b"bye");
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        if let Err(e) = b.close().await {
            panic!("b closing {delay_ms} ms after a: {e}");
        }
        b.close().await.expect("closing twice is harmless");
    }
}

#[tokio::test]
async fn small_message_overtakes_a_large_transfer() {
    let bridge = bridge().await;
    let (a, b, _a_id, b_id) = pair(&bridge, "interleave", |c| c).await;
    let big = a.send(&b_id, pattern(16 * 1024 * 1024, 9));
    let small = async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        a.send_text(&b_id, "urgent").await
    };
    let (big, small) = tokio::join!(big, small);
    big.unwrap();
    small.unwrap();
    let first = recv(&b).await;
    assert_eq!(
        first.as_text(),
        Some("urgent"),
        "the small message arrives before the 16 MiB one completes"
    );
    assert!(first.text);
    assert_eq!(recv(&b).await.data.len(), 16 * 1024 * 1024);
}

#[tokio::test]
async fn message_over_the_receivers_reassembly_cap_fails_at_the_sender_and_the_link_survives() {
    let bridge = bridge().await;
    let a = Transport::connect(config(&bridge, "cap").build().unwrap())
        .await
        .unwrap();
    // b holds at most 1 MiB of partial messages.
    let b = Transport::connect(
        config(&bridge, "cap")
            .max_reassembly_bytes(1024 * 1024)
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    let (b_id, a_id) = tokio::join!(connected(&a), connected(&b));
    let refused = a.send(&b_id, pattern(4 * 1024 * 1024, 3)).await;
    let refused = match refused {
        Err(e) => e,
        // All frames were already handed over: the refusal then arrives as an event.
        Ok(()) => loop {
            match timeout(WAIT, a.next_event()).await.unwrap().unwrap() {
                Event::Error(e) => break e,
                _ => continue,
            }
        },
    };
    assert_eq!(refused, Error::MessageRefused { peer: b_id.clone() });
    // The receiver reported its side too, and both keep working.
    a.send_text(&b_id, "still here").await.unwrap();
    assert_eq!(recv(&b).await.as_text(), Some("still here"));
    b.send_text(&a_id, "me too").await.unwrap();
    assert_eq!(recv(&a).await.as_text(), Some("me too"));
}

#[tokio::test]
async fn message_over_max_message_size_is_a_typed_error() {
    let bridge = bridge().await;
    let (a, b, _a_id, b_id) = pair(&bridge, "too-big", |c| c.max_message_size(1000)).await;
    let err = a.send(&b_id, vec![0; 1001]).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Codec(miaou_transport::codec::CodecError::MessageTooLarge {
                len: 1001,
                max: 1000
            })
        ),
        "{err}"
    );
    a.send(&b_id, vec![7; 1000]).await.unwrap();
    assert_eq!(recv(&b).await.data.len(), 1000);
}

#[tokio::test]
async fn unreliable_channel_carries_messages() {
    let bridge = bridge().await;
    let (a, b, a_id, b_id) = pair(&bridge, "unreliable", |c| {
        c.channel(ChannelKind::Unreliable)
    })
    .await;
    // Loopback does not drop packets, so everything arrives; order is not promised.
    let mut sent: Vec<String> = (0..200).map(|i| format!("u{i}")).collect();
    for text in &sent {
        a.send_text(&b_id, text).await.unwrap();
    }
    let mut got = Vec::new();
    for _ in 0..200 {
        got.push(recv(&b).await.as_text().unwrap().to_owned());
    }
    sent.sort();
    got.sort();
    assert_eq!(got, sent);
    b.send(&a_id, pattern(100_000, 5)).await.unwrap();
    assert!(
        recv(&a).await.data == pattern(100_000, 5),
        "fragmented message over an unordered channel"
    );
}

#[tokio::test]
async fn broadcast_reaches_every_peer_and_peers_lists_them() {
    let bridge = bridge().await;
    let a = Transport::connect(config(&bridge, "three").build().unwrap())
        .await
        .unwrap();
    let b = Transport::connect(config(&bridge, "three").build().unwrap())
        .await
        .unwrap();
    let c = Transport::connect(config(&bridge, "three").build().unwrap())
        .await
        .unwrap();
    for t in [&a, &b, &c] {
        connected(t).await;
        connected(t).await;
    }
    let mut expected = vec![b.peer_id().clone(), c.peer_id().clone()];
    expected.sort();
    assert_eq!(a.peers(), expected);
    a.broadcast_text("to all").await.unwrap();
    for t in [&b, &c] {
        let m = recv(t).await;
        assert_eq!(
            (m.from.clone(), m.as_text().map(str::to_owned)),
            (a.peer_id().clone(), Some("to all".into()))
        );
    }
}

#[tokio::test]
async fn send_to_an_unknown_peer_is_peer_not_connected() {
    let bridge = bridge().await;
    let a = Transport::connect(config(&bridge, "alone").build().unwrap())
        .await
        .unwrap();
    let ghost = PeerId::from("no-such-peer");
    assert_eq!(
        a.send(&ghost, vec![1]).await,
        Err(Error::PeerNotConnected(ghost.clone()))
    );
    assert!(a.peers().is_empty());
    assert_eq!(a.broadcast(vec![1]).await, Ok(()), "no peer: nothing to do");
    a.close().await.unwrap();
    assert_eq!(a.broadcast(vec![1]).await, Err(Error::Closed));
    assert_eq!(a.send(&ghost, vec![1]).await, Err(Error::Closed));
}

#[tokio::test]
async fn unreachable_and_silent_signaling_servers_are_typed_errors() {
    let refused = Transport::connect(
        TransportConfig::builder("ws://127.0.0.1:9/ws", "r")
            .build()
            .unwrap(),
    )
    .await;
    assert!(
        matches!(refused, Err(Error::Signaling { .. })),
        "{refused:?}"
    );

    // A TCP server that accepts and never answers the WebSocket handshake... nor the join.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let silent = TransportConfig::builder(format!("ws://{addr}/ws"), "r")
        .connect_timeout_ms(300)
        .build()
        .unwrap();
    let result = timeout(WAIT, Transport::connect(silent))
        .await
        .expect("connect gives up by itself");
    assert!(
        matches!(result, Err(Error::Timeout { ms: 300, .. })),
        "{result:?}"
    );
}

#[tokio::test]
async fn peers_configured_with_different_channel_kinds_still_connect() {
    let bridge = bridge().await;
    // The newcomer (b) offers, so its kind (unreliable) is the one both use.
    let a = Transport::connect(config(&bridge, "kinds").build().unwrap())
        .await
        .unwrap();
    let b = Transport::connect(
        config(&bridge, "kinds")
            .channel(ChannelKind::Unreliable)
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    let (b_id, a_id) = tokio::join!(connected(&a), connected(&b));
    let info = a.channel_info(&b_id).unwrap();
    assert_eq!(
        (info.kind, info.ordered, info.max_retransmits),
        (ChannelKind::Unreliable, false, Some(0)),
        "a follows the offerer's kind"
    );
    a.send_text(&b_id, "hi b").await.unwrap();
    b.send_text(&a_id, "hi a").await.unwrap();
    assert_eq!(recv(&b).await.as_text(), Some("hi b"));
    assert_eq!(recv(&a).await.as_text(), Some("hi a"));
}

/// `channel_info` reads the channel's reliability off the WebRTC stack; on the answering side
/// that is what the offerer's DATA_CHANNEL_OPEN said (RFC 8832), so both sides must agree.
#[tokio::test]
async fn channel_info_reports_the_negotiated_reliability_on_both_sides() {
    let bridge = bridge().await;
    for (room, kind) in [
        ("info-reliable", ChannelKind::Reliable),
        ("info-unreliable", ChannelKind::Unreliable),
    ] {
        let (a, b, a_id, b_id) = pair(&bridge, room, |c| c.channel(kind)).await;
        for info in [
            a.channel_info(&b_id).unwrap(),
            b.channel_info(&a_id).unwrap(),
        ] {
            assert_eq!((info.kind, info.label.as_str()), (kind, kind.label()));
            match kind {
                ChannelKind::Reliable => {
                    assert!(info.ordered, "{info:?}");
                    assert_eq!(info.max_retransmits, None, "{info:?}");
                }
                ChannelKind::Unreliable => {
                    assert!(!info.ordered, "{info:?}");
                    assert_eq!(info.max_retransmits, Some(0), "{info:?}");
                }
            }
            assert_eq!(info.max_packet_life_time_ms, None);
            assert_eq!(info.max_frame_size, 16 * 1024, "default frame size");
            assert_eq!(info.remote_max_message_size, 65_535, "what we advertise");
            // Both announce the ARQ layer by default; only a reliable channel runs it.
            assert_eq!(info.arq, kind == ChannelKind::Reliable, "{info:?}");
        }
        a.close().await.unwrap();
        b.close().await.unwrap();
    }
    let alone = Transport::connect(config(&bridge, "info-alone").build().unwrap())
        .await
        .unwrap();
    let ghost = PeerId::from("ghost");
    assert_eq!(
        alone.channel_info(&ghost),
        Err(Error::PeerNotConnected(ghost))
    );
}

/// webrtc-rs 0.17 reads each SCTP message into a 65 535-byte buffer: a larger frame would
/// silently close the channel. We advertise `a=max-message-size:65535`, and our own frames
/// never exceed the remote's value, whatever `max_frame_size` asks for.
#[tokio::test]
async fn frames_never_exceed_the_peers_max_message_size() {
    let bridge = bridge().await;
    let (a, b, a_id, b_id) = pair(&bridge, "frame-cap", |c| c.max_frame_size(1 << 20)).await;
    assert_eq!(a.channel_info(&b_id).unwrap().max_frame_size, 65_535);
    assert_eq!(b.channel_info(&a_id).unwrap().max_frame_size, 65_535);
    for round in 0..3u8 {
        let data = pattern(1024 * 1024, round);
        a.send(&b_id, data.clone()).await.unwrap();
        assert!(recv(&b).await.data == data, "a->b round {round}");
        b.send(&a_id, data.clone()).await.unwrap();
        assert!(recv(&a).await.data == data, "b->a round {round}");
    }
    assert_eq!(a.peers(), vec![b_id.clone()], "the channel is still open");
}

/// Single-frame messages return from `send` once queued (many are still queued when
/// `close` starts, and are coalesced into BATCH frames): close must deliver every one. The
/// receiver reads meanwhile: 10 240 messages are more than its receive queue holds, and the
/// FIN that completes the close comes after all of them.
#[tokio::test]
async fn close_right_after_a_burst_of_small_messages_delivers_them_all() {
    let bridge = bridge().await;
    let (a, b, _a_id, b_id) = pair(&bridge, "small-burst", |c| c).await;
    let count = 10 * 1024u32; // 10 240 x 1 KiB = 10 MiB
    let message = |i: u32| {
        let mut data = pattern(1024, i as u8);
        data[..4].copy_from_slice(&i.to_be_bytes());
        data
    };
    let reading = async {
        for i in 0..count {
            assert!(
                recv(&b).await.data == message(i),
                "message {i} intact and in order"
            );
        }
    };
    let sending = async {
        for i in 0..count {
            a.send(&b_id, message(i)).await.unwrap();
        }
        a.close().await.expect("close delivers and is acknowledged");
    };
    tokio::join!(reading, sending);
}

/// What one side sees of a peer that joins, connects, then closes: in this order.
#[tokio::test]
async fn peer_events_follow_the_lifecycle_in_order() {
    let bridge = bridge().await;
    let a = Transport::connect(config(&bridge, "lifecycle").build().unwrap())
        .await
        .unwrap();
    let b = Transport::connect(config(&bridge, "lifecycle").build().unwrap())
        .await
        .unwrap();
    let b_id = b.peer_id().clone();
    connected(&b).await;
    let mut seen = Vec::new();
    let collect = async {
        while let Some(event) = a.next_event().await {
            let done = matches!(event, Event::PeerLeft(_));
            seen.push(event);
            if done {
                return;
            }
            if matches!(seen.last(), Some(Event::PeerConnected(_))) {
                b.close().await.unwrap();
            }
        }
    };
    timeout(WAIT, collect).await.expect("b's whole lifecycle");
    assert_eq!(
        seen,
        vec![
            Event::PeerJoined(b_id.clone()),
            Event::PeerConnected(b_id.clone()),
            Event::PeerDisconnected {
                peer: b_id.clone(),
                reason: None
            },
            Event::PeerLeft(b_id),
        ]
    );
}

/// Sends `message` to `peer` in a loop in the background; returns how many `send` accepted
/// within `window`, then stops.
async fn accepted_within(
    t: &Transport,
    peer: &PeerId,
    message: Vec<u8>,
    window: Duration,
) -> usize {
    let message = miaou_transport::Bytes::from(message);
    let mut accepted = 0;
    let sending = async {
        loop {
            t.send(peer, message.clone()).await.unwrap();
            accepted += 1;
        }
    };
    let _ = timeout(window, sending).await;
    accepted
}

/// A receiver that does not read stops the sender: `send` waits (send queue, then
/// `bufferedAmount`, then the receiver's bounded queues and SCTP window) instead of piling
/// data up anywhere. Then the receiver catches up and every message arrives in order.
#[tokio::test]
async fn a_receiver_that_does_not_read_holds_the_sender_back() {
    let bridge = bridge().await;
    let a = Transport::connect(
        config(&bridge, "slow-reader")
            .send_queue_messages(8)
            .send_buffer_watermarks(16 * 1024, 64 * 1024)
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    let b = Transport::connect(
        config(&bridge, "slow-reader")
            .receive_queue_messages(8)
            .receive_queue_frames(8)
            // The ARQ layer's window is what the peer may send beyond what we read: the
            // smallest allowed, like webrtc-rs's ~1 MiB SCTP window on a v1 link.
            .arq_receive_window(64 * 1024)
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    let (b_id, _a_id) = tokio::join!(connected(&a), connected(&b));
    // 1 KiB messages: without backpressure, 3 s at tens of MB/s would accept tens of
    // thousands. What can be in flight: a's queue (8) and 64 KiB buffered, b's ARQ receive
    // window (64 KiB; on a v1 link the SCTP window, ~1 MiB in webrtc-rs), b's 8 frames of up
    // to 16 KiB and 8 queued messages.
    let (most_buffered, done) = (std::cell::Cell::new(0), std::cell::Cell::new(false));
    let sampling = async {
        while !done.get() {
            let now = a.buffered_amount(&b_id).await.unwrap();
            most_buffered.set(most_buffered.get().max(now));
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    let sending = async {
        let accepted = accepted_within(&a, &b_id, vec![7; 1024], Duration::from_secs(3)).await;
        done.set(true);
        accepted
    };
    // (A bufferedAmount read on native waits while webrtc-rs blocks in a send: its own pending
    // queue is full, which only happens above our 64 KiB mark — so a hang here is a failure.)
    let ((), accepted) = timeout(WAIT, async { tokio::join!(sampling, sending) })
        .await
        .expect("bufferedAmount stays readable: sends never reach webrtc-rs's own limit");
    assert!(
        accepted < 4 * 1024,
        "{accepted} KiB accepted while the receiver read nothing"
    );
    // Frames go out only at or below the 64 KiB high-water mark: at most one frame more.
    let most_buffered = most_buffered.get();
    assert!(
        most_buffered <= (64 + 16) * 1024,
        "bufferedAmount {most_buffered}"
    );
    for _ in 0..accepted {
        assert_eq!(recv(&b).await.data.len(), 1024);
    }
}

/// The receive queue is bounded in bytes too: large messages stop being read from the
/// channel once `receive_queue_bytes` of them wait for `recv`, however many would fit the
/// message count.
#[tokio::test]
async fn the_receive_queue_is_bounded_in_bytes() {
    let bridge = bridge().await;
    let a = Transport::connect(config(&bridge, "recv-bytes").build().unwrap())
        .await
        .unwrap();
    let b = Transport::connect(
        config(&bridge, "recv-bytes")
            .receive_queue_bytes(1024 * 1024)
            .receive_queue_frames(16)
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    let (b_id, _a_id) = tokio::join!(connected(&a), connected(&b));
    // 256 KiB messages; b's queue would take 1024 of them (256 MiB) by count alone. Bytes in
    // flight otherwise: 1 MiB queued + one partial message + 16 frames + the SCTP window +
    // a's 1 MiB high-water mark.
    let message = pattern(256 * 1024, 4);
    let accepted = accepted_within(&a, &b_id, message.clone(), Duration::from_secs(3)).await;
    assert!(
        accepted * 256 < 16 * 1024,
        "{} KiB accepted while the receiver read nothing",
        accepted * 256
    );
    for _ in 0..accepted {
        assert!(recv(&b).await.data == message);
    }
}

/// The next `Event::Error` of `t`, skipping other events.
async fn next_error(t: &Transport) -> Error {
    let wait = async {
        loop {
            if let Event::Error(e) = t.next_event().await.expect("events open") {
                return e;
            }
        }
    };
    timeout(WAIT, wait).await.expect("an error event in time")
}

#[tokio::test]
async fn a_single_frame_message_the_receiver_refuses_is_reported_to_the_sender() {
    let bridge = bridge().await;
    let a = Transport::connect(config(&bridge, "refused").build().unwrap())
        .await
        .unwrap();
    // b accepts messages of at most 1000 bytes; a does not know, and 2000 bytes fit one frame,
    // so a's `send` returns once queued.
    let b = Transport::connect(
        config(&bridge, "refused")
            .max_message_size(1000)
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    let (b_id, _a_id) = tokio::join!(connected(&a), connected(&b));
    a.send_text(&b_id, "before").await.unwrap();
    a.send(&b_id, pattern(2000, 9)).await.unwrap();
    a.send_text(&b_id, "after").await.unwrap();
    // b drops only the oversized message (also when the three shared a BATCH frame)...
    assert_eq!(recv(&b).await.as_text(), Some("before"));
    assert_eq!(recv(&b).await.as_text(), Some("after"));
    assert!(
        matches!(
            next_error(&b).await,
            Error::Codec(miaou_transport::codec::CodecError::MessageTooLarge {
                len: 2000,
                max: 1000
            })
        ),
        "b reports what it dropped"
    );
    // ...and tells a (REFUSED), whose application hears it although its `send` returned Ok.
    assert_eq!(
        next_error(&a).await,
        Error::MessageRefused { peer: b_id.clone() }
    );
    a.send_text(&b_id, "still here").await.unwrap();
    assert_eq!(recv(&b).await.as_text(), Some("still here"));
}
