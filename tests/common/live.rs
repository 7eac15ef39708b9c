//! What the live-network tests (tests/transport.rs, tests/robustness.rs, tests/glare.rs) share:
//! a real bridge on a free loopback port and how long they wait for the network.
#![allow(dead_code)]

use miaou_transport::signaling::bridge::{self, Bridge, BridgeConfig};
use std::time::Duration;

/// The longest any one step (a channel opening, a message arriving) may take: generous, since
/// two cores run the whole suite.
pub const WAIT: Duration = Duration::from_secs(30);

/// A real bridge with default limits on `127.0.0.1`, on a port the OS picks.
pub async fn bridge() -> Bridge {
    let config = BridgeConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        ..BridgeConfig::default()
    };
    bridge::serve(config).await.expect("bridge starts")
}
