#![cfg(not(target_arch = "wasm32"))]
//! The glare rule (docs/signaling.md, "Who offers: the newcomer") under real simultaneous
//! joins: several `Transport`s connect to the same room at the same instant, over and over, on
//! a real bridge with real webrtc-rs data channels. Every pair must open exactly one channel
//! with no refused description (an `Event::Error`) and carry a message each way. Needs a
//! non-loopback interface for ICE host candidates: run inside tests/scripts/in-netns.sh.

use std::collections::BTreeSet;
use std::sync::Arc;

use miaou_transport::{Event, PeerId, Transport, TransportConfig};
use tokio::sync::Barrier;
use tokio::time::timeout;

const ROUNDS: usize = 10;
const PEERS: usize = 3;
#[path = "common/live.rs"]
mod live;
use live::{bridge, WAIT};

/// Waits until `t` has an open channel to every peer of `others`, each reported once, with no
/// error or disconnection on the way.
async fn all_connected(t: &Transport, others: BTreeSet<PeerId>) {
    let mut connected = BTreeSet::new();
    while connected != others {
        let event = timeout(WAIT, t.next_event())
            .await
            .unwrap_or_else(|_| panic!("{}: only {connected:?} of {others:?} open", t.peer_id()))
            .expect("events open");
        match event {
            Event::PeerJoined(_) => {}
            Event::PeerConnected(peer) => {
                assert!(
                    others.contains(&peer),
                    "{}: unknown peer {peer}",
                    t.peer_id()
                );
                assert!(
                    connected.insert(peer.clone()),
                    "{}: {peer} connected twice",
                    t.peer_id()
                );
            }
            other => panic!("{}: unexpected {other:?}", t.peer_id()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_joining_at_the_same_instant_open_every_pair_once() {
    let bridge = bridge().await;
    for round in 0..ROUNDS {
        let room = format!("glare-{round}");
        // Every connect starts when the last task reaches the barrier, on both worker threads.
        let start = Arc::new(Barrier::new(PEERS));
        let tasks: Vec<_> = (0..PEERS)
            .map(|_| {
                let start = Arc::clone(&start);
                let config = TransportConfig::builder(bridge.ws_url(), &room)
                    .build()
                    .expect("config");
                tokio::spawn(async move {
                    start.wait().await;
                    Transport::connect(config).await
                })
            })
            .collect();
        let mut transports = Vec::new();
        for task in tasks {
            transports.push(task.await.expect("task").expect("joins"));
        }
        let ids: BTreeSet<PeerId> = transports.iter().map(|t| t.peer_id().clone()).collect();
        assert_eq!(ids.len(), PEERS, "round {round}: distinct peer ids");

        let others = |t: &Transport| {
            let mut set = ids.clone();
            set.remove(t.peer_id());
            set
        };
        futures::future::join_all(transports.iter().map(|t| all_connected(t, others(t)))).await;

        // Every pair carries a message each way.
        for t in &transports {
            for peer in others(t) {
                let text = format!("{round}: {} -> {peer}", t.peer_id());
                t.send_text(&peer, &text).await.expect("send");
            }
        }
        for t in &transports {
            let mut heard = BTreeSet::new();
            for _ in 1..PEERS {
                let m = timeout(WAIT, t.recv())
                    .await
                    .expect("a message in time")
                    .expect("transport open");
                let expected = format!("{round}: {} -> {}", m.from, t.peer_id());
                assert_eq!(m.as_text(), Some(expected.as_str()));
                assert!(heard.insert(m.from.clone()), "{} twice", m.from);
            }
            assert_eq!(heard, others(t), "round {round}");
        }
        for t in &transports {
            t.close().await.expect("close");
        }
    }
    bridge.shutdown().await;
}
