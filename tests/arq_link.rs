//! The ARQ layer on real connections (docs/frame.md, "ARQ layer"): two `Transport`s through a
//! real bridge and real webrtc-rs data channels. It is negotiated per pair, so a peer that does
//! not announce it (an older version, or `arq(false)`) still gets v1 frames on the reliable
//! channel, whichever side offers. Runs inside tests/scripts/in-netns.sh like tests/transport.rs.
#![cfg(not(target_arch = "wasm32"))]

use miaou_transport::signaling::bridge::Bridge;
use miaou_transport::{Event, PeerId, Transport, TransportConfig};
use tokio::time::timeout;

#[path = "common/live.rs"]
mod live;
use live::{bridge, WAIT};

#[path = "common/netem.rs"]
mod netem;

async fn connected(t: &Transport) -> PeerId {
    let wait = async {
        loop {
            if let Event::PeerConnected(peer) = t.next_event().await.expect("events open") {
                return peer;
            }
        }
    };
    timeout(WAIT, wait).await.expect("a channel opens in time")
}

/// `first` joins first, so `second` (the newcomer, told of `first` in its welcome) offers.
async fn pair(bridge: &Bridge, room: &str, first_arq: bool, second_arq: bool) -> [Transport; 2] {
    let connect = |arq: bool| {
        let config = TransportConfig::builder(bridge.ws_url(), room)
            .arq(arq)
            .build()
            .unwrap();
        Transport::connect(config)
    };
    let first = connect(first_arq).await.unwrap();
    let second = connect(second_arq).await.unwrap();
    tokio::join!(connected(&first), connected(&second));
    [first, second]
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u8)
                .wrapping_mul(31)
                .wrapping_add(seed ^ (i >> 16) as u8)
        })
        .collect()
}

async fn send_all(from: &Transport, to: &PeerId, count: usize, size: usize, seed: u8) {
    for i in 0..count {
        let data = pattern(size, seed.wrapping_add(i as u8));
        from.send(to, data).await.expect("send accepted");
    }
}

async fn recv_all(at: &Transport, count: usize, size: usize, seed: u8) {
    for i in 0..count {
        let message = timeout(WAIT, at.recv()).await.expect("in time").unwrap();
        assert!(
            message.data[..] == pattern(size, seed.wrapping_add(i as u8))[..],
            "message {i} of {count} arrived changed or out of order"
        );
    }
}

/// Sends `count` messages of `size` bytes each way at once and checks every byte, in order.
async fn exchange(a: &Transport, b: &Transport, count: usize, size: usize) {
    tokio::join!(
        send_all(a, b.peer_id(), count, size, 1),
        send_all(b, a.peer_id(), count, size, 2),
        recv_all(b, count, size, 1),
        recv_all(a, count, size, 2),
    );
}

#[tokio::test]
async fn both_announce_it_so_both_run_it_and_16_mib_cross_each_way_in_order() {
    let bridge = bridge().await;
    let [a, b] = pair(&bridge, "arq-both", true, true).await;
    assert!(a.channel_info(b.peer_id()).unwrap().arq);
    assert!(b.channel_info(a.peer_id()).unwrap().arq);
    exchange(&a, &b, 64, 256 * 1024).await;
    // Small messages too (BATCH frames split over datagrams).
    exchange(&a, &b, 2_000, 100).await;
    a.close().await.unwrap();
    b.close().await.unwrap();
}

#[tokio::test]
async fn a_peer_without_it_gets_v1_frames_whichever_side_offers() {
    let bridge = bridge().await;
    for (room, first_arq, second_arq) in [
        ("arq-old-answerer", false, true),
        ("arq-old-offerer", true, false),
    ] {
        let [a, b] = pair(&bridge, room, first_arq, second_arq).await;
        assert!(!a.channel_info(b.peer_id()).unwrap().arq, "{room}");
        assert!(!b.channel_info(a.peer_id()).unwrap().arq, "{room}");
        exchange(&a, &b, 16, 256 * 1024).await;
        a.close().await.unwrap();
        b.close().await.unwrap();
    }
}

/// 1 % of every UDP datagram dropped in the namespace (each direction), after the channel
/// opened: 8 MiB each way still arrive whole and in order over the ARQ layer, with no
/// SCTP retransmission stall to wait out (figures: `npm run bench`, BENCHMARKS.md).
#[tokio::test]
async fn under_1_percent_loss_8_mib_cross_each_way_intact_and_in_order() {
    let bridge = bridge().await;
    let [a, b] = pair(&bridge, "arq-loss", true, true).await;
    assert!(a.channel_info(b.peer_id()).unwrap().arq);
    let loss = netem::UdpLoss::set(10);
    let started = std::time::Instant::now();
    exchange(&a, &b, 32, 256 * 1024).await;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "16 MiB (8 MiB each way at once) under 1 % loss in {seconds:.1} s ({:.1} MB/s)",
        16.0 * 1.048_576 / seconds
    );
    drop(loss);
    a.close().await.unwrap();
    b.close().await.unwrap();
}
