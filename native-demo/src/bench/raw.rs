//! The baseline: raw webrtc-rs (the same crate version and ICE settings as miaou's native
//! backend), two peer connections in one process, complete SDPs handed over directly,
//! one ordered reliable data channel, no codec. Backpressure as a careful user would write it:
//! wait on `bufferedamountlow` above 1 MiB buffered.

use super::workloads::Link;
use anyhow::{anyhow, Context};
use bytes::Bytes;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Mutex, Notify};
use webrtc::api::setting_engine::SettingEngine;
use webrtc::api::APIBuilder;
use webrtc::data_channel::RTCDataChannel;
use webrtc::ice::mdns::MulticastDnsMode;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::peer_connection::RTCPeerConnection;

const HIGH_WATER: usize = 1024 * 1024;
const LOW_WATER: usize = 256 * 1024;

/// One side: its connection, its open channel and what it received.
struct Side {
    pc: Arc<RTCPeerConnection>,
    dc: Arc<RTCDataChannel>,
    low: Arc<Notify>,
    inbox: Mutex<mpsc::Receiver<Bytes>>,
}

pub struct RawLink {
    a: Side,
    b: Side,
}

async fn new_pc() -> anyhow::Result<Arc<RTCPeerConnection>> {
    let mut settings = SettingEngine::default();
    settings.set_ice_multicast_dns_mode(MulticastDnsMode::QueryOnly);
    settings.set_prflx_acceptance_min_wait(Some(Duration::ZERO));
    let api = APIBuilder::new().with_setting_engine(settings).build();
    Ok(Arc::new(
        api.new_peer_connection(RTCConfiguration::default()).await?,
    ))
}

/// Sets `description` as local and waits for ICE gathering to finish, returning the
/// description with every candidate in it (no trickle: in one process there is nothing to win).
async fn gathered(
    pc: &RTCPeerConnection,
    description: RTCSessionDescription,
) -> anyhow::Result<RTCSessionDescription> {
    let mut done = pc.gathering_complete_promise().await;
    pc.set_local_description(description).await?;
    let _ = done.recv().await;
    pc.local_description().await.context("no local description")
}

/// Hooks `dc`: messages into a bounded inbox (awaited: receive backpressure like miaou's),
/// `bufferedamountlow` into a notify, `open` into `opened`.
async fn wire(
    dc: &Arc<RTCDataChannel>,
    opened: Arc<Notify>,
) -> (Arc<Notify>, mpsc::Receiver<Bytes>) {
    let (tx, rx) = mpsc::channel(1024);
    dc.on_message(Box::new(move |m| {
        let tx = tx.clone();
        Box::pin(async move {
            let _ = tx.send(m.data).await;
        })
    }));
    dc.on_open(Box::new(move || {
        opened.notify_one();
        Box::pin(async {})
    }));
    let low = Arc::new(Notify::new());
    dc.set_buffered_amount_low_threshold(LOW_WATER).await;
    let notify = Arc::clone(&low);
    dc.on_buffered_amount_low(Box::new(move || {
        notify.notify_one();
        Box::pin(async {})
    }))
    .await;
    (low, rx)
}

impl RawLink {
    /// Connects a (offerer) and b; returns the link and the time to both channels open.
    pub async fn connect() -> anyhow::Result<(RawLink, Duration)> {
        let started = Instant::now();
        let (pa, pb) = (new_pc().await?, new_pc().await?);
        let a_open = Arc::new(Notify::new());
        let dc_a = pa.create_data_channel("bench", None).await?;
        let (a_low, a_rx) = wire(&dc_a, Arc::clone(&a_open)).await;
        let (b_dc_tx, mut b_dc_rx) = mpsc::channel(1);
        pb.on_data_channel(Box::new(move |dc| {
            let tx = b_dc_tx.clone();
            Box::pin(async move {
                let _ = tx.send(dc).await;
            })
        }));
        let offer = gathered(&pa, pa.create_offer(None).await?).await?;
        pb.set_remote_description(offer).await?;
        let answer = gathered(&pb, pb.create_answer(None).await?).await?;
        pa.set_remote_description(answer).await?;
        let dc_b = tokio::time::timeout(Duration::from_secs(20), b_dc_rx.recv())
            .await?
            .context("no data channel at b")?;
        let b_open = Arc::new(Notify::new());
        let (b_low, b_rx) = wire(&dc_b, Arc::clone(&b_open)).await;
        tokio::time::timeout(Duration::from_secs(20), a_open.notified())
            .await
            .context("a's channel did not open")?;
        // b's channel is open once announced (on_data_channel fires for an open channel).
        let elapsed = started.elapsed();
        let side = |pc, dc, low, rx| Side {
            pc,
            dc,
            low,
            inbox: Mutex::new(rx),
        };
        Ok((
            RawLink {
                a: side(pa, dc_a, a_low, a_rx),
                b: side(pb, dc_b, b_low, b_rx),
            },
            elapsed,
        ))
    }

    pub async fn close(self) {
        let _ = self.a.pc.close().await;
        let _ = self.b.pc.close().await;
    }
}

async fn send(side: &Side, data: Bytes) -> anyhow::Result<()> {
    while side.dc.buffered_amount().await > HIGH_WATER {
        let _ = tokio::time::timeout(Duration::from_millis(50), side.low.notified()).await;
    }
    side.dc
        .send(&data)
        .await
        .map_err(|e| anyhow!("raw send: {e}"))?;
    Ok(())
}

async fn recv(side: &Side) -> anyhow::Result<Bytes> {
    side.inbox
        .lock()
        .await
        .recv()
        .await
        .context("raw channel closed")
}

impl Link for RawLink {
    async fn send_ab(&self, data: Bytes) -> anyhow::Result<()> {
        send(&self.a, data).await
    }
    async fn send_ba(&self, data: Bytes) -> anyhow::Result<()> {
        send(&self.b, data).await
    }
    async fn recv_b(&self) -> anyhow::Result<Bytes> {
        recv(&self.b).await
    }
    async fn recv_a(&self) -> anyhow::Result<Bytes> {
        recv(&self.a).await
    }
    fn max_message(&self) -> Option<usize> {
        // webrtc-rs 0.17 reads each message into a 65 535-byte buffer.
        Some(65_535)
    }
}
