//! webrtc-rs 0.21.x (the Sans-I/O `rtc` core under an async driver, event-handler + `poll()`
//! API), set up exactly like [`crate::v017`]: no STUN/TURN, one UDP socket on 127.0.0.1, mDNS
//! query-only, peer-reflexive pairs nominated without the 1 s wait, no media engine or
//! interceptors, the same backpressure and receive inbox. Written from the crate's docs and its
//! `data-channels-flow-control` example.

use crate::arq_link::{Closer, DatagramPair, DatagramSender, DatagramStack, End};
use crate::workloads::{inbox, Link, OpenTimes, HIGH_WATER, LOW_WATER};
use anyhow::{anyhow, Context};
use bytes::{Bytes, BytesMut};
use rtc::ice::mdns::MulticastDnsMode;
use rtc::ice::network_type::NetworkType;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Mutex, Notify};
use webrtc021::data_channel::{DataChannel, DataChannelEvent, RTCDataChannelInit};
use webrtc021::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceConnectionState, RTCIceGatheringState, RTCPeerConnectionState, RTCSessionDescription,
    SettingEngineBuilder,
};

/// Which send backpressure the 0.21 pair uses (`BACKPRESSURE` environment variable).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Backpressure {
    /// `bufferedamountlow`, the same loop as 0.17 (default): wait while `outstanding_bytes()`
    /// > 1 MiB, woken at 256 KiB or after 50 ms.
    LowWater,
    /// 0.21's own awaitable send: `with_data_channel_send_buffer_limit(1 MiB)`, so `send`
    /// itself waits while 1 MiB is outstanding (`BACKPRESSURE=builtin`).
    Builtin,
}

impl Backpressure {
    pub fn from_env() -> anyhow::Result<Self> {
        match std::env::var("BACKPRESSURE").as_deref() {
            Err(_) | Ok("") | Ok("lowwater") => Ok(Backpressure::LowWater),
            Ok("builtin") => Ok(Backpressure::Builtin),
            Ok(other) => Err(anyhow!(
                "BACKPRESSURE={other}: expected lowwater or builtin"
            )),
        }
    }
}

/// Peer-connection events this benchmark needs: gathering complete, and (answerer) the
/// announced channel. Each handler returns at once: the driver waits for it.
struct Handler {
    name: &'static str,
    gathered: Arc<Notify>,
    channels: mpsc::Sender<Arc<dyn DataChannel>>,
}

/// Diagnostics only (`TRACE_OPEN=1`): prints a state change with the time since the process
/// started, to show where the time to open goes.
fn trace(what: std::fmt::Arguments<'_>) {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if *ON.get_or_init(|| std::env::var_os("TRACE_OPEN").is_some()) {
        let t = START.get_or_init(Instant::now).elapsed();
        eprintln!("{:10.3} ms  {what}", t.as_secs_f64() * 1e3);
    }
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_connection_state_change(&self, state: RTCIceConnectionState) {
        trace(format_args!("{} ice {state}", self.name));
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        trace(format_args!("{} peer connection {state}", self.name));
    }

    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        trace(format_args!("{} gathering {state}", self.name));
        if state == RTCIceGatheringState::Complete {
            self.gathered.notify_one();
        }
    }

    async fn on_data_channel(&self, data_channel: Arc<dyn DataChannel>) {
        trace(format_args!("{} on_data_channel", self.name));
        let _ = self.channels.try_send(data_channel);
    }
}

/// A peer connection with its handler's signals.
struct Peer {
    pc: Arc<dyn PeerConnection>,
    gathered: Arc<Notify>,
    channels: mpsc::Receiver<Arc<dyn DataChannel>>,
}

async fn new_peer(name: &'static str, backpressure: Backpressure) -> anyhow::Result<Peer> {
    let mut settings = SettingEngineBuilder::new()
        .with_multicast_dns_mode(MulticastDnsMode::QueryOnly)
        .with_prflx_acceptance_min_wait(Some(Duration::ZERO))
        .with_include_loopback_candidate(true)
        .with_network_types(vec![NetworkType::Udp4]);
    // Diagnostics only: `ICE_CHECK_MS=N` shortens the ICE check interval (default 200 ms),
    // to show what the time to open waits for.
    if let Some(ms) = std::env::var("ICE_CHECK_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        settings = settings.with_ice_connection_attempts(Some(Duration::from_millis(ms)), None);
    }
    // Diagnostics only: `SCTP_RWND=N` sets the SCTP receive window (default 1 MiB) in bytes.
    if let Some(bytes) = std::env::var("SCTP_RWND").ok().and_then(|v| v.parse().ok()) {
        settings = settings.with_sctp_max_receive_buffer_size(bytes);
    }
    let settings = settings.build();
    let gathered = Arc::new(Notify::new());
    let (tx, channels) = mpsc::channel(4);
    let mut builder = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_setting_engine(settings)
        .with_handler(Arc::new(Handler {
            name,
            gathered: Arc::clone(&gathered),
            channels: tx,
        }))
        .with_udp_addrs(vec!["127.0.0.1:0"]);
    if backpressure == Backpressure::Builtin {
        builder = builder.with_data_channel_send_buffer_limit(HIGH_WATER);
    }
    let pc = builder.build().await?;
    Ok(Peer {
        pc: Arc::new(pc),
        gathered,
        channels,
    })
}

/// Sets `description` as local and waits for ICE gathering to finish, returning the
/// description with every candidate in it (no trickle, as for 0.17).
async fn gathered(
    peer: &Peer,
    description: RTCSessionDescription,
) -> anyhow::Result<RTCSessionDescription> {
    peer.pc.set_local_description(description).await?;
    tokio::time::timeout(DEADLINE, peer.gathered.notified())
        .await
        .context("ICE gathering did not complete")?;
    peer.pc
        .local_description()
        .await
        .context("no local description")
}

/// One side: its connection, its channel and what the channel's event pump delivered.
struct Side {
    pc: Arc<dyn PeerConnection>,
    dc: Arc<dyn DataChannel>,
    low: Arc<Notify>,
    inbox: Mutex<mpsc::Receiver<Bytes>>,
}

/// Sets the low-water threshold and spawns the channel's event pump: `open` into `opened`,
/// `bufferedamountlow` into the returned notify, messages into a bounded inbox (awaited, so a
/// full inbox holds up `poll()` and, through the driver, SCTP — as 0.17's awaited `on_message`
/// does).
async fn wire(
    dc: &Arc<dyn DataChannel>,
    opened: Arc<Notify>,
) -> anyhow::Result<(Arc<Notify>, mpsc::Receiver<Bytes>)> {
    dc.set_buffered_amount_low_threshold(LOW_WATER as u32)
        .await?;
    let (tx, rx) = mpsc::channel(inbox());
    let low = Arc::new(Notify::new());
    let (dc, notify) = (Arc::clone(dc), Arc::clone(&low));
    tokio::spawn(async move {
        while let Some(event) = dc.poll().await {
            match event {
                DataChannelEvent::OnOpen => opened.notify_one(),
                DataChannelEvent::OnBufferedAmountLow => notify.notify_one(),
                DataChannelEvent::OnMessage(m) => {
                    let Ok(()) = tx.send(m.data.freeze()).await else {
                        break; // the link is gone
                    };
                }
                DataChannelEvent::OnClose => break,
                _ => {}
            }
        }
    });
    Ok((low, rx))
}

const DEADLINE: Duration = Duration::from_secs(20);

/// A connected webrtc 0.21 pair.
pub struct Link021 {
    a: Side,
    b: Side,
    backpressure: Backpressure,
    backstops: AtomicU64,
}

impl Link for Link021 {
    async fn connect() -> anyhow::Result<(Self, OpenTimes)> {
        let backpressure = Backpressure::from_env()?;
        let started = Instant::now();
        trace(format_args!("connect"));
        let (pa, mut pb) = (
            new_peer("a", backpressure).await?,
            new_peer("b", backpressure).await?,
        );
        let a_open = Arc::new(Notify::new());
        let dc_a = pa.pc.create_data_channel("bench", None).await?;
        let (a_low, a_rx) = wire(&dc_a, Arc::clone(&a_open)).await?;
        let offer = gathered(&pa, pa.pc.create_offer(None).await?).await?;
        pb.pc.set_remote_description(offer).await?;
        let answer = gathered(&pb, pb.pc.create_answer(None).await?).await?;
        pa.pc.set_remote_description(answer).await?;
        let signaled = started.elapsed();
        trace(format_args!("signaled"));
        let dc_b = tokio::time::timeout(DEADLINE, pb.channels.recv())
            .await?
            .context("no data channel at b")?;
        // The announced channel's first event is its `OnOpen`.
        let b_open = Arc::new(Notify::new());
        let (b_low, b_rx) = wire(&dc_b, Arc::clone(&b_open)).await?;
        tokio::time::timeout(DEADLINE, b_open.notified())
            .await
            .context("b's channel did not open")?;
        tokio::time::timeout(DEADLINE, a_open.notified())
            .await
            .context("a's channel did not open")?;
        let open = started.elapsed();
        trace(format_args!("open on both sides"));
        let side = |pc, dc, low, rx| Side {
            pc,
            dc,
            low,
            inbox: Mutex::new(rx),
        };
        Ok((
            Link021 {
                a: side(pa.pc, dc_a, a_low, a_rx),
                b: side(pb.pc, dc_b, b_low, b_rx),
                backpressure,
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

impl Link021 {
    async fn send(&self, side: &Side, data: &Bytes) -> anyhow::Result<()> {
        if self.backpressure == Backpressure::LowWater {
            while side.dc.outstanding_bytes().await? > HIGH_WATER {
                if tokio::time::timeout(Duration::from_millis(50), side.low.notified())
                    .await
                    .is_err()
                {
                    self.backstops.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        // `send` takes an owned BytesMut: one copy per message, which the API requires.
        side.dc
            .send(BytesMut::from(&data[..]))
            .await
            .map_err(|e| anyhow!("0.21 send: {e}"))?;
        Ok(())
    }
}

async fn recv(side: &Side) -> anyhow::Result<Bytes> {
    side.inbox
        .lock()
        .await
        .recv()
        .await
        .context("0.21 channel closed")
}

/// The `+ ARQ` mode's channel on 0.21: unordered, `maxRetransmits: 0`, negotiated id 0,
/// created on both sides before the offer (no DCEP handshake); the default backpressure setting
/// (no send-buffer limit: the ARQ layer bounds what is in flight).
pub struct Datagrams021;

struct Tx021(Arc<dyn DataChannel>);

#[async_trait::async_trait]
impl DatagramSender for Tx021 {
    async fn send(&self, datagram: Bytes) -> anyhow::Result<()> {
        // `send` takes an owned BytesMut: one copy per datagram, which the API requires.
        self.0
            .send(BytesMut::from(&datagram[..]))
            .await
            .map_err(|e| anyhow!("0.21 send: {e}"))?;
        Ok(())
    }
}

struct Close021(Arc<dyn PeerConnection>, Arc<dyn PeerConnection>);

#[async_trait::async_trait]
impl Closer for Close021 {
    async fn close(&self) {
        let _ = self.0.close().await;
        let _ = self.1.close().await;
    }
}

/// Whether the 0.21 `+ ARQ` channel is announced in-band (`ARQ_CHANNEL=inband`) instead of
/// negotiated, as for 0.17 (see `v017::inband`).
pub fn inband() -> bool {
    std::env::var("ARQ_CHANNEL").as_deref() == Ok("inband")
}

impl DatagramStack for Datagrams021 {
    async fn connect_datagrams() -> anyhow::Result<DatagramPair> {
        let started = Instant::now();
        let inband = inband();
        trace(format_args!("connect (in-band: {inband})"));
        let (pa, mut pb) = (
            new_peer("a", Backpressure::LowWater).await?,
            new_peer("b", Backpressure::LowWater).await?,
        );
        let init = || RTCDataChannelInit {
            ordered: false,
            max_retransmits: Some(0),
            negotiated: (!inband).then_some(0),
            ..Default::default()
        };
        let dc_a = pa.pc.create_data_channel("bench-arq", Some(init())).await?;
        let (a_open, b_open) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let (_, a_rx) = wire(&dc_a, Arc::clone(&a_open)).await?;
        let mut b_side = None;
        if !inband {
            let dc_b = pb.pc.create_data_channel("bench-arq", Some(init())).await?;
            let (_, b_rx) = wire(&dc_b, Arc::clone(&b_open)).await?;
            b_side = Some((dc_b, b_rx));
        }
        let offer = gathered(&pa, pa.pc.create_offer(None).await?).await?;
        pb.pc.set_remote_description(offer).await?;
        let answer = gathered(&pb, pb.pc.create_answer(None).await?).await?;
        pa.pc.set_remote_description(answer).await?;
        let signaled = started.elapsed();
        trace(format_args!("signaled"));
        let (dc_b, b_rx) = match b_side {
            Some(side) => side,
            None => {
                // The announced channel's first event is its `OnOpen`.
                let dc_b = tokio::time::timeout(DEADLINE, pb.channels.recv())
                    .await?
                    .context("no data channel at b")?;
                let (_, b_rx) = wire(&dc_b, Arc::clone(&b_open)).await?;
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
        trace(format_args!("open on both sides"));
        Ok(DatagramPair {
            a: End {
                tx: Arc::new(Tx021(dc_a)),
                rx: a_rx,
            },
            b: End {
                tx: Arc::new(Tx021(dc_b)),
                rx: b_rx,
            },
            closer: Box::new(Close021(pa.pc, pb.pc)),
            times: OpenTimes { signaled, open },
        })
    }
}
