//! miaou native ↔ miaou native: two `Transport`s in one process through an in-process bridge,
//! with default settings (our codec, our defaults).

use super::workloads::Link;
use anyhow::Context;
use bytes::Bytes;
use miaou_transport::signaling::bridge::{self, Bridge, BridgeConfig};
use miaou_transport::{Event, PeerId, Transport, TransportConfig};
use std::time::{Duration, Instant};

pub struct MiaouLink {
    a: Transport,
    b: Transport,
    a_id: PeerId,
    b_id: PeerId,
}

/// Starts a bridge on a free loopback port.
pub async fn start_bridge() -> anyhow::Result<Bridge> {
    let config = BridgeConfig {
        addr: "127.0.0.1:0".parse()?,
        ..BridgeConfig::default()
    };
    Ok(bridge::serve(config).await?)
}

async fn wait_connected(t: &Transport) -> anyhow::Result<PeerId> {
    let wait = async {
        while let Some(event) = t.next_event().await {
            if let Event::PeerConnected(peer) = event {
                return Some(peer);
            }
        }
        None
    };
    tokio::time::timeout(Duration::from_secs(20), wait)
        .await?
        .context("transport closed before open")
}

impl MiaouLink {
    /// Connects two transports in `room`; returns the link and the time from the first
    /// `connect` call to both channels open (WebSocket joins included).
    pub async fn connect(
        bridge: &Bridge,
        room: &str,
        max_frame_size: usize,
    ) -> anyhow::Result<(MiaouLink, Duration)> {
        let config = || {
            TransportConfig::builder(bridge.ws_url(), room)
                .max_frame_size(max_frame_size)
                .build()
        };
        let started = Instant::now();
        let a = Transport::connect(config()?).await?;
        let b = Transport::connect(config()?).await?;
        let (b_id, a_id) = tokio::join!(wait_connected(&a), wait_connected(&b));
        let elapsed = started.elapsed();
        Ok((
            MiaouLink {
                a,
                b,
                a_id: a_id?,
                b_id: b_id?,
            },
            elapsed,
        ))
    }

    pub async fn close(self) {
        let _ = tokio::join!(self.a.close(), self.b.close());
    }
}

impl Link for MiaouLink {
    async fn send_ab(&self, data: Bytes) -> anyhow::Result<()> {
        Ok(self.a.send(&self.b_id, data).await?)
    }
    async fn send_ba(&self, data: Bytes) -> anyhow::Result<()> {
        Ok(self.b.send(&self.a_id, data).await?)
    }
    async fn recv_b(&self) -> anyhow::Result<Bytes> {
        Ok(self.b.recv().await.context("b closed")?.data)
    }
    async fn recv_a(&self) -> anyhow::Result<Bytes> {
        Ok(self.a.recv().await.context("a closed")?.data)
    }
    fn max_message(&self) -> Option<usize> {
        None
    }
}
