//! The `+ ARQ` modes: each stack carries the bench traffic over one unordered,
//! `maxRetransmits: 0`, negotiated (id 0) data channel, and miaou's ARQ layer
//! (`miaou_transport::arq`, sans-I/O) on top makes it a reliable, ordered stream of frames.
//!
//! One small async loop per side drives the [`ArqConnection`]: datagrams from the channel go
//! into `handle_datagram`, whatever `poll_transmit` yields goes to the channel's `send`, a tokio
//! sleep until `poll_timeout` runs `handle_timeout`, and `poll_frame` feeds the side's frame
//! inbox. A bench "message" is one ARQ frame. The same backpressure as the reliable modes: a
//! sender waits while the connection's `buffered_bytes` (written, not yet acknowledged) is above
//! `HIGH_WATER`, woken when the loop sees it at or below `LOW_WATER`, or by the 50 ms backstop.

use crate::workloads::{inbox, Link, OpenTimes, HIGH_WATER, LOW_WATER};
use anyhow::{anyhow, Context};
use bytes::Bytes;
use miaou_transport::arq::{ArqConfig, ArqConnection, ArqError};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Mutex, Notify};
use tokio::task::JoinHandle;

/// Sends one datagram on a side's unreliable channel.
#[async_trait::async_trait]
pub trait DatagramSender: Send + Sync + 'static {
    async fn send(&self, datagram: Bytes) -> anyhow::Result<()>;
}

/// Closes both peer connections of a datagram pair.
#[async_trait::async_trait]
pub trait Closer: Send + Sync + 'static {
    async fn close(&self);
}

/// One side of a connected datagram pair: its channel's sender and the datagrams it received.
pub struct End {
    pub tx: Arc<dyn DatagramSender>,
    pub rx: mpsc::Receiver<Bytes>,
}

/// Both sides, open, and how long that took.
pub struct DatagramPair {
    pub a: End,
    pub b: End,
    pub closer: Box<dyn Closer>,
    pub times: OpenTimes,
}

/// A stack that can open one unordered, `maxRetransmits: 0`, negotiated channel.
#[allow(async_fn_in_trait)]
pub trait DatagramStack {
    /// Creates both peer connections, the negotiated channel (id 0) on each, exchanges complete
    /// SDPs and waits until the channel is open on both sides.
    async fn connect_datagrams() -> anyhow::Result<DatagramPair>;
}

/// The ARQ settings of the bench: the library's defaults (1163-byte datagrams, one SCTP DATA
/// chunk at either stack's 1191-byte SCTP MTU; 4 MiB receive window), frames up to 64 KiB.
fn config() -> ArqConfig {
    ArqConfig {
        max_frame: 64 * 1024,
        ..ArqConfig::default()
    }
}

/// Where a stall sits, per side (diagnostics reported with the figures): the longest silence
/// between two datagrams arriving at this side, how many datagrams the peer handed to its
/// channel during that silence, the longest single `send` call on this side's channel (a slow
/// `send` blocks this loop), and with `DIAG_TRANSIT=1` the longest time one datagram spent
/// between the peer's `send` call and this loop taking it in (each datagram's hash and send
/// time are kept in a map: diagnostics only, off in the matrix).
#[derive(Default)]
struct Probe {
    /// Datagrams this side handed to its channel.
    sent: AtomicU64,
    longest_rx_silence_us: AtomicU64,
    peer_sent_in_silence: AtomicU64,
    longest_send_us: AtomicU64,
    /// `DIAG_TRANSIT=1`: datagrams this side sent, by hash, with their send time.
    in_transit: Option<std::sync::Mutex<std::collections::HashMap<u64, Instant>>>,
    longest_transit_us: AtomicU64,
}

impl Probe {
    fn new() -> Arc<Self> {
        let on = std::env::var_os("DIAG_TRANSIT").is_some();
        Arc::new(Probe {
            in_transit: on.then(Default::default),
            ..Default::default()
        })
    }
}

fn hash(datagram: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    datagram.hash(&mut h);
    h.finish()
}

/// One side: the connection (shared by the app's `send` and the driver loop), the loop's wake-up,
/// the "buffer drained" signal and the frame inbox.
struct Side {
    conn: Arc<std::sync::Mutex<ArqConnection>>,
    wake: Arc<Notify>,
    space: Arc<Notify>,
    frames: Mutex<mpsc::Receiver<Bytes>>,
    driver: JoinHandle<()>,
    probe: Arc<Probe>,
}

/// A connected pair of stack `S` with the ARQ layer on top.
pub struct ArqLink<S> {
    a: Side,
    b: Side,
    closer: Box<dyn Closer>,
    backstops: AtomicU64,
    _stack: PhantomData<S>,
}

/// µs since `epoch`: the connection's clock.
fn now_us(epoch: Instant) -> u64 {
    epoch.elapsed().as_micros() as u64
}

fn side(end: End, name: &'static str, probe: Arc<Probe>, peer: Arc<Probe>) -> Side {
    let epoch = Instant::now();
    let conn = Arc::new(std::sync::Mutex::new(ArqConnection::new(config(), 0)));
    let wake = Arc::new(Notify::new());
    let space = Arc::new(Notify::new());
    let (frames_tx, frames_rx) = mpsc::channel(inbox());
    let driver = tokio::spawn({
        let (conn, wake, space) = (Arc::clone(&conn), Arc::clone(&wake), Arc::clone(&space));
        let probes = (Arc::clone(&probe), peer);
        async move {
            if let Err(e) = drive(epoch, conn, end, wake, space, frames_tx, probes).await {
                eprintln!("[ARQ {name}] driver stopped: {e:#}");
            }
        }
    });
    Side {
        conn,
        wake,
        space,
        frames: Mutex::new(frames_rx),
        driver,
        probe,
    }
}

/// A fatal ARQ error ends the loop; a malformed datagram is only dropped.
fn check(result: Result<(), ArqError>) -> anyhow::Result<()> {
    match result {
        Ok(()) | Err(ArqError::Malformed(_)) => Ok(()),
        Err(e) => Err(anyhow!("ARQ: {e}")),
    }
}

/// Updates the diagnostics for datagram `d` arriving now; `last_rx` is (arrival time, the
/// peer's sent count then) of the previous one.
fn note_arrival(probe: &Probe, peer: &Probe, last_rx: &mut Option<(Instant, u64)>, d: &[u8]) {
    let (arrived, peer_sent) = (Instant::now(), peer.sent.load(Ordering::Relaxed));
    if let Some((at, sent_then)) = *last_rx {
        let silence = (arrived - at).as_micros() as u64;
        if silence > probe.longest_rx_silence_us.load(Ordering::Relaxed) {
            probe
                .longest_rx_silence_us
                .store(silence, Ordering::Relaxed);
            probe
                .peer_sent_in_silence
                .store(peer_sent.saturating_sub(sent_then), Ordering::Relaxed);
        }
    }
    *last_rx = Some((arrived, peer_sent));
    if let Some(map) = &peer.in_transit {
        let sent_at = map.lock().ok().and_then(|mut m| m.remove(&hash(d)));
        if let Some(at) = sent_at {
            let transit = (arrived - at).as_micros() as u64;
            probe
                .longest_transit_us
                .fetch_max(transit, Ordering::Relaxed);
        }
    }
}

/// The per-side loop. Every turn: take what the connection has ready (frames, datagrams) under
/// the lock, hand it out without the lock, then wait for a datagram, a write (`wake`) or the
/// connection's next timer.
async fn drive(
    epoch: Instant,
    conn: Arc<std::sync::Mutex<ArqConnection>>,
    mut end: End,
    wake: Arc<Notify>,
    space: Arc<Notify>,
    frames_tx: mpsc::Sender<Bytes>,
    (probe, peer): (Arc<Probe>, Arc<Probe>),
) -> anyhow::Result<()> {
    // (arrival time, peer's sent count then) of the last datagram received.
    let mut last_rx: Option<(Instant, u64)> = None;
    loop {
        let mut frames = Vec::new();
        let mut datagrams = Vec::new();
        let deadline = {
            let mut c = conn.lock().map_err(|_| anyhow!("poisoned"))?;
            while let Some(frame) = c.poll_frame() {
                frames.push(frame.map_err(|e| anyhow!("ARQ: {e}"))?);
            }
            let now = now_us(epoch);
            while let Some(d) = c.poll_transmit(now) {
                datagrams.push(d);
            }
            if c.buffered_bytes() <= LOW_WATER as u64 {
                space.notify_one();
            }
            c.poll_timeout()
        };
        for d in datagrams {
            if let Some(map) = &probe.in_transit {
                if let Ok(mut map) = map.lock() {
                    map.insert(hash(&d), Instant::now());
                }
            }
            let started = Instant::now();
            end.tx.send(d).await?;
            probe.sent.fetch_add(1, Ordering::Relaxed);
            let took = started.elapsed().as_micros() as u64;
            probe.longest_send_us.fetch_max(took, Ordering::Relaxed);
        }
        for f in frames {
            if frames_tx.send(f).await.is_err() {
                return Ok(()); // the link is gone
            }
        }
        let sleep = async {
            match deadline {
                Some(t) => {
                    tokio::time::sleep_until((epoch + Duration::from_micros(t)).into()).await
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            d = end.rx.recv() => {
                let Some(d) = d else { break };
                note_arrival(&probe, &peer, &mut last_rx, &d);
                let mut c = conn.lock().map_err(|_| anyhow!("poisoned"))?;
                let now = now_us(epoch);
                check(c.handle_datagram(now, &d))?;
                // Take whatever else already arrived before transmitting: fewer ACK-only packets.
                while let Ok(d) = end.rx.try_recv() {
                    note_arrival(&probe, &peer, &mut last_rx, &d);
                    check(c.handle_datagram(now_us(epoch), &d))?;
                }
            }
            _ = wake.notified() => {}
            _ = sleep => {
                let mut c = conn.lock().map_err(|_| anyhow!("poisoned"))?;
                c.handle_timeout(now_us(epoch));
            }
        }
    }
    Ok(())
}

impl<S: DatagramStack> Link for ArqLink<S> {
    async fn connect() -> anyhow::Result<(Self, OpenTimes)> {
        let pair = S::connect_datagrams().await?;
        let (pa, pb) = (Probe::new(), Probe::new());
        Ok((
            ArqLink {
                a: side(pair.a, "a", Arc::clone(&pa), Arc::clone(&pb)),
                b: side(pair.b, "b", pb, pa),
                closer: pair.closer,
                backstops: AtomicU64::new(0),
                _stack: PhantomData,
            },
            pair.times,
        ))
    }

    async fn close(self) {
        for side in [&self.a, &self.b] {
            side.driver.abort();
        }
        self.closer.close().await;
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
    fn extra_figures(&self) -> Vec<(String, f64, &'static str)> {
        let mut lost = 0;
        let mut ptos = 0;
        let mut sent = 0;
        for side in [&self.a, &self.b] {
            if let Ok(c) = side.conn.lock() {
                let s = c.stats();
                lost += s.packets_lost;
                ptos += s.ptos;
                sent += s.datagrams_sent;
            }
        }
        let mut figures = vec![
            (
                "ARQ datagrams sent (both sides)".into(),
                sent as f64,
                "count",
            ),
            (
                "ARQ packets declared lost (both sides)".into(),
                lost as f64,
                "count",
            ),
            (
                "ARQ probe timeouts (both sides)".into(),
                ptos as f64,
                "count",
            ),
        ];
        for (name, side, peer) in [("a", &self.a, "b"), ("b", &self.b, "a")] {
            let p = &side.probe;
            let ms = |us: &AtomicU64| us.load(Ordering::Relaxed) as f64 / 1e3;
            figures.push((
                format!("longest silence between datagrams arriving at {name}"),
                ms(&p.longest_rx_silence_us),
                "ms",
            ));
            figures.push((
                format!("datagrams {peer} handed to its channel during that silence"),
                p.peer_sent_in_silence.load(Ordering::Relaxed) as f64,
                "count",
            ));
            figures.push((
                format!("longest channel send call at {name}"),
                ms(&p.longest_send_us),
                "ms",
            ));
            if p.in_transit.is_some() {
                figures.push((
                    format!("longest transit of one datagram, {peer}'s send call to {name}'s loop"),
                    ms(&p.longest_transit_us),
                    "ms",
                ));
            }
        }
        figures
    }
}

impl<S> ArqLink<S> {
    async fn send(&self, side: &Side, data: &Bytes) -> anyhow::Result<()> {
        loop {
            let buffered = side
                .conn
                .lock()
                .map_err(|_| anyhow!("poisoned"))?
                .buffered_bytes();
            if buffered <= HIGH_WATER as u64 {
                break;
            }
            if tokio::time::timeout(Duration::from_millis(50), side.space.notified())
                .await
                .is_err()
            {
                self.backstops.fetch_add(1, Ordering::Relaxed);
            }
        }
        side.conn
            .lock()
            .map_err(|_| anyhow!("poisoned"))?
            .write_frame(data)
            .map_err(|e| anyhow!("ARQ write: {e}"))?;
        side.wake.notify_one();
        Ok(())
    }
}

async fn recv(side: &Side) -> anyhow::Result<Bytes> {
    side.frames
        .lock()
        .await
        .recv()
        .await
        .context("ARQ link closed")
}
