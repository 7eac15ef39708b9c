//! webrtc-rs 0.17.2 (callback API), the version miaou-transport's native backend uses. The
//! logic is native-demo's raw pair (native-demo/src/bench/raw.rs) with loopback-only ICE, so
//! that it matches [`crate::v021`] setting for setting.

use crate::arq_link::{Closer, DatagramPair, DatagramSender, DatagramStack, End};
use crate::workloads::{inbox, Link, OpenTimes, HIGH_WATER, LOW_WATER};
use anyhow::{anyhow, Context};
use bytes::Bytes;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Mutex, Notify};
use webrtc017::api::setting_engine::SettingEngine;
use webrtc017::api::APIBuilder;
use webrtc017::data_channel::data_channel_init::RTCDataChannelInit;
use webrtc017::data_channel::data_channel_state::RTCDataChannelState;
use webrtc017::data_channel::RTCDataChannel;
use webrtc017::ice::mdns::MulticastDnsMode;
use webrtc017::ice::network_type::NetworkType;
use webrtc017::peer_connection::configuration::RTCConfiguration;
use webrtc017::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc017::peer_connection::RTCPeerConnection;

/// One side: its connection, its open channel and what it received.
struct Side {
    pc: Arc<RTCPeerConnection>,
    dc: Arc<RTCDataChannel>,
    low: Arc<Notify>,
    inbox: Mutex<mpsc::Receiver<Bytes>>,
}

/// A connected webrtc 0.17.2 pair.
pub struct Link017 {
    a: Side,
    b: Side,
    backstops: AtomicU64,
}

/// No STUN/TURN, one UDP socket on 127.0.0.1 (IPv4 loopback only), mDNS query-only (the
/// library's setting; 0.21's default), peer-reflexive pairs nominated without the 1 s wait.
async fn new_pc() -> anyhow::Result<Arc<RTCPeerConnection>> {
    let mut settings = SettingEngine::default();
    settings.set_ice_multicast_dns_mode(MulticastDnsMode::QueryOnly);
    settings.set_prflx_acceptance_min_wait(Some(Duration::ZERO));
    settings.set_include_loopback_candidate(true);
    settings.set_network_types(vec![NetworkType::Udp4]);
    settings.set_ip_filter(Box::new(|ip| ip.is_loopback()));
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

/// Hooks `dc`: messages into a bounded inbox (awaited), `bufferedamountlow` into a notify,
/// `open` into `opened`.
async fn wire(
    dc: &Arc<RTCDataChannel>,
    opened: Arc<Notify>,
) -> (Arc<Notify>, mpsc::Receiver<Bytes>) {
    let (tx, rx) = mpsc::channel(inbox());
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

const DEADLINE: Duration = Duration::from_secs(20);

impl Link for Link017 {
    async fn connect() -> anyhow::Result<(Self, OpenTimes)> {
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
        let signaled = started.elapsed();
        let dc_b = tokio::time::timeout(DEADLINE, b_dc_rx.recv())
            .await?
            .context("no data channel at b")?;
        let b_open = Arc::new(Notify::new());
        let (b_low, b_rx) = wire(&dc_b, Arc::clone(&b_open)).await;
        // 0.17 announces an incoming channel once it is open; wait for `open` if it was not.
        if dc_b.ready_state() != RTCDataChannelState::Open {
            tokio::time::timeout(DEADLINE, b_open.notified())
                .await
                .context("b's channel did not open")?;
        }
        tokio::time::timeout(DEADLINE, a_open.notified())
            .await
            .context("a's channel did not open")?;
        let open = started.elapsed();
        let side = |pc, dc, low, rx| Side {
            pc,
            dc,
            low,
            inbox: Mutex::new(rx),
        };
        Ok((
            Link017 {
                a: side(pa, dc_a, a_low, a_rx),
                b: side(pb, dc_b, b_low, b_rx),
                backstops: AtomicU64::new(0),
            },
            OpenTimes { signaled, open },
        ))
    }

    async fn close(self) {
        let _ = self.a.pc.close().await;
        let _ = self.b.pc.close().await;
    }

    async fn send_ab(&self, data: &Bytes) -> anyhow::Result<()> {
        self.send(&self.a, data).await
    }
    async fn send_ba(&self, data: &Bytes) -> anyhow::Result<()> {
        self.send(&self.b, data).await
    }
    async fn recv_b(&self) -> anyhow::Result<Bytes> {
        recv(&self.b).await
    }
    async fn recv_a(&self) -> anyhow::Result<Bytes> {
        recv(&self.a).await
    }
    fn backstop_wakeups(&self) -> u64 {
        self.backstops.load(Ordering::Relaxed)
    }
}

impl Link017 {
    async fn send(&self, side: &Side, data: &Bytes) -> anyhow::Result<()> {
        while side.dc.buffered_amount().await > HIGH_WATER {
            if tokio::time::timeout(Duration::from_millis(50), side.low.notified())
                .await
                .is_err()
            {
                self.backstops.fetch_add(1, Ordering::Relaxed);
            }
        }
        side.dc
            .send(data)
            .await
            .map_err(|e| anyhow!("0.17 send: {e}"))?;
        Ok(())
    }
}

async fn recv(side: &Side) -> anyhow::Result<Bytes> {
    side.inbox
        .lock()
        .await
        .recv()
        .await
        .context("0.17 channel closed")
}

/// The `+ ARQ` mode's channel on 0.17: unordered, `maxRetransmits: 0`, negotiated id 0,
/// created on both sides before the offer (no DCEP handshake).
pub struct Datagrams017;

struct Tx017(Arc<RTCDataChannel>);

#[async_trait::async_trait]
impl DatagramSender for Tx017 {
    async fn send(&self, datagram: Bytes) -> anyhow::Result<()> {
        self.0
            .send(&datagram)
            .await
            .map_err(|e| anyhow!("0.17 send: {e}"))?;
        Ok(())
    }
}

struct Close017(Arc<RTCPeerConnection>, Arc<RTCPeerConnection>);

#[async_trait::async_trait]
impl Closer for Close017 {
    async fn close(&self) {
        let _ = self.0.close().await;
        let _ = self.1.close().await;
    }
}

/// Whether the 0.17 `+ ARQ` channel is announced in-band (`ARQ_CHANNEL=inband`) instead of
/// negotiated. webrtc-data 0.17.2 applies a channel's `ordered`/`maxRetransmits` to its SCTP
/// stream only in the DCEP exchange (`commit_reliability_params`, called on DATA_CHANNEL_OPEN
/// at the acceptor and on DATA_CHANNEL_ACK at the opener), so a *negotiated* 0.17 channel stays
/// ordered and reliable whatever its init says; the in-band one gets PR-SCTP.
pub fn inband() -> bool {
    std::env::var("ARQ_CHANNEL").as_deref() == Ok("inband")
}

impl DatagramStack for Datagrams017 {
    async fn connect_datagrams() -> anyhow::Result<DatagramPair> {
        let started = Instant::now();
        let (pa, pb) = (new_pc().await?, new_pc().await?);
        let inband = inband();
        let init = || RTCDataChannelInit {
            ordered: Some(false),
            max_retransmits: Some(0),
            negotiated: (!inband).then_some(0),
            ..Default::default()
        };
        let dc_a = pa.create_data_channel("bench-arq", Some(init())).await?;
        let (a_open, b_open) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let (_, a_rx) = wire(&dc_a, Arc::clone(&a_open)).await;
        let (b_dc_tx, mut b_dc_rx) = mpsc::channel(1);
        let mut b_side = None;
        if inband {
            pb.on_data_channel(Box::new(move |dc| {
                let tx = b_dc_tx.clone();
                Box::pin(async move {
                    let _ = tx.send(dc).await;
                })
            }));
        } else {
            let dc_b = pb.create_data_channel("bench-arq", Some(init())).await?;
            let (_, b_rx) = wire(&dc_b, Arc::clone(&b_open)).await;
            b_side = Some((dc_b, b_rx));
        }
        let offer = gathered(&pa, pa.create_offer(None).await?).await?;
        pb.set_remote_description(offer).await?;
        let answer = gathered(&pb, pb.create_answer(None).await?).await?;
        pa.set_remote_description(answer).await?;
        let signaled = started.elapsed();
        let (dc_b, b_rx) = match b_side {
            Some(side) => side,
            None => {
                let dc_b = tokio::time::timeout(DEADLINE, b_dc_rx.recv())
                    .await?
                    .context("no data channel at b")?;
                let (_, b_rx) = wire(&dc_b, Arc::clone(&b_open)).await;
                // 0.17 announces an incoming channel once it is open.
                if dc_b.ready_state() == RTCDataChannelState::Open {
                    b_open.notify_one();
                }
                (dc_b, b_rx)
            }
        };
        tokio::time::timeout(DEADLINE, a_open.notified())
            .await
            .context("a's channel did not open")?;
        tokio::time::timeout(DEADLINE, b_open.notified())
            .await
            .context("b's channel did not open")?;
        let open = started.elapsed();
        Ok(DatagramPair {
            a: End {
                tx: Arc::new(Tx017(dc_a)),
                rx: a_rx,
            },
            b: End {
                tx: Arc::new(Tx017(dc_b)),
                rx: b_rx,
            },
            closer: Box::new(Close017(pa, pb)),
            times: OpenTimes { signaled, open },
        })
    }
}
