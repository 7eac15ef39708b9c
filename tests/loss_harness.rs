//! The loss harness itself (tests/scripts/netem.sh, docs/testing-under-loss.md): a UDP echo
//! over loopback loses nothing without it and about the set share with it, so a harness that
//! silently does nothing fails here instead of making "under loss" figures meaningless.
//! Each test runs in a network namespace of its own (tests/common/netem.rs); it needs root or
//! unprivileged user namespaces, and `nft` (the test command installs nftables).
#![cfg(not(target_arch = "wasm32"))]

#[path = "common/netem.rs"]
mod netem;

use netem::{run_in_own_netns, UdpLoss};
use std::collections::HashSet;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// Datagrams per measurement: at 10 % loss the one-way share has a standard deviation of
/// 0.55 points, so the bands below are many deviations wide.
const COUNT: usize = 3000;
/// Datagrams in flight at once: well under a socket's default receive buffer, so the kernel
/// drops nothing for want of room (which would look like loss).
const BATCH: usize = 100;

/// What one echo run saw: datagrams the echo server received, replies the client received.
struct Echo {
    reached_server: usize,
    came_back: usize,
}

/// Sends `COUNT` numbered datagrams to an echo server on loopback, `BATCH` at a time.
fn echo_run() -> Echo {
    let server = UdpSocket::bind("127.0.0.1:0").expect("bind echo server");
    server
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let server_addr = server.local_addr().unwrap();
    let received = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let echo = {
        let (received, stop) = (Arc::clone(&received), Arc::clone(&stop));
        thread::spawn(move || {
            let mut buf = [0u8; 64];
            while !stop.load(Ordering::Relaxed) {
                if let Ok((n, from)) = server.recv_from(&mut buf) {
                    received.fetch_add(1, Ordering::Relaxed);
                    server.send_to(&buf[..n], from).expect("echo back");
                }
            }
        })
    };
    let client = UdpSocket::bind("127.0.0.1:0").expect("bind client");
    client
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut back = HashSet::new();
    let mut buf = [0u8; 64];
    let mut drain = |back: &mut HashSet<u32>| {
        // Until 50 ms pass with nothing: the replies of this batch that were not dropped.
        while let Ok(n) = client.recv(&mut buf) {
            assert_eq!(n, 4, "echo returns the datagram unchanged");
            back.insert(u32::from_be_bytes(buf[..4].try_into().unwrap()));
        }
    };
    for start in (0..COUNT).step_by(BATCH) {
        for seq in start..(start + BATCH).min(COUNT) {
            client
                .send_to(&(seq as u32).to_be_bytes(), server_addr)
                .expect("send");
        }
        drain(&mut back);
    }
    drain(&mut back);
    stop.store(true, Ordering::Relaxed);
    echo.join().expect("echo thread");
    Echo {
        reached_server: received.load(Ordering::Relaxed),
        came_back: back.len(),
    }
}

fn share(lost: usize) -> f64 {
    lost as f64 / COUNT as f64
}

#[test]
fn udp_drop_loses_the_set_share_each_way_and_nothing_once_removed() {
    if !run_in_own_netns("udp_drop_loses_the_set_share_each_way_and_nothing_once_removed") {
        return;
    }
    let clean = echo_run();
    assert_eq!(
        (clean.reached_server, clean.came_back),
        (COUNT, COUNT),
        "loopback UDP without the harness must lose nothing"
    );

    let loss = UdpLoss::set(100); // 10 %
    let lossy = echo_run();
    let dropped = loss.dropped();
    drop(loss);
    let one_way = share(COUNT - lossy.reached_server);
    let round_trip = share(COUNT - lossy.came_back);
    println!(
        "10 % drop: one way {:.1} %, round trip {:.1} % (expected 10 % and 19 %), {dropped} dropped",
        one_way * 100.0,
        round_trip * 100.0
    );
    // Each direction crosses the input hook once: ~10 % one way, 1 - 0.9² = 19 % round trip.
    assert!(
        (0.05..=0.15).contains(&one_way),
        "one-way loss {one_way} at 10 %"
    );
    assert!(
        (0.12..=0.27).contains(&round_trip),
        "round-trip loss {round_trip} at 10 %"
    );
    // Every datagram lost was lost to the rule, not to a full buffer or a timeout.
    assert_eq!(dropped as usize, COUNT - lossy.came_back);

    let after = echo_run();
    assert_eq!(
        (after.reached_server, after.came_back),
        (COUNT, COUNT),
        "removing the rule must restore a lossless loopback"
    );
}

#[test]
fn the_whole_link_can_be_dropped() {
    if !run_in_own_netns("the_whole_link_can_be_dropped") {
        return;
    }
    let _loss = UdpLoss::set(1000);
    let run = echo_run();
    assert_eq!((run.reached_server, run.came_back), (0, 0));
}
