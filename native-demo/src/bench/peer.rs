//! `native-demo bench-peer`: the native end of the "miaou native ↔ Chromium tab" pair
//! (tests/bench/browser.bench.mjs). The workloads run in the tab, which has the only clock that
//! sees both directions; this process only obeys it, one command at a time, per peer:
//!
//! | the peer sends (text)   | we do                                                           |
//! |-------------------------|-----------------------------------------------------------------|
//! | `sink N [CAP_MS]`       | count the next N binary messages, then answer                    |
//! |                         | `sunk BYTES GAP_MS ELAPSED_MS`; with CAP_MS, if they are not all |
//! |                         | in CAP_MS after the command, answer `dnf BYTES GAP_MS ELAPSED_MS` |
//! | `stream N SIZE`         | send N binary messages of SIZE bytes (0x5a), with backpressure   |
//! | any binary message      | (when not sinking) send it back unchanged: RTT echo              |
//!
//! GAP_MS is the longest time between two messages (the first counted from the command),
//! ELAPSED_MS the time from the command to the last message (to the cap for `dnf`): the
//! receiver's clock, for the loss matrix (tests/bench/browser.bench.mjs). Prints `ready PEER_ID`
//! on stdout once in the room; stops when stdin closes. The script reads
//! this process's CPU time and `VmHWM` from /proc itself, so nothing else is reported here.

use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use miaou_transport::{PeerId, Transport, TransportConfig};
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct BenchPeerArgs {
    /// Signaling server WebSocket URL, e.g. ws://127.0.0.1:8080/ws.
    #[arg(long)]
    signal: String,
    /// Room name.
    #[arg(long)]
    room: String,
}

/// Messages still to count and bytes counted so far, for a peer in `sink` mode.
struct Sink {
    left: u64,
    bytes: u64,
    /// When the command arrived, the last message arrived, the longest gap so far.
    started: Instant,
    last: Instant,
    gap: Duration,
    /// When to give up and answer `dnf`, if a cap was given.
    deadline: Option<Instant>,
}

impl Sink {
    /// `VERB BYTES GAP_MS ELAPSED_MS`, the time measured up to `end`.
    fn answer(&self, verb: &str, end: Instant) -> String {
        let gap = self.gap.max(end - self.last);
        format!(
            "{verb} {} {:.1} {:.1}",
            self.bytes,
            gap.as_secs_f64() * 1e3,
            (end - self.started).as_secs_f64() * 1e3
        )
    }
}

pub async fn run(args: BenchPeerArgs) -> anyhow::Result<()> {
    let config = TransportConfig::builder(&args.signal, &args.room).build()?;
    let transport = Transport::connect(config)
        .await
        .context("joining the room")?;
    println!("ready {}", transport.peer_id());
    std::io::stdout().flush()?;
    let mut stdin_closed = tokio::spawn(async {
        let _ = tokio::io::copy(&mut tokio::io::stdin(), &mut tokio::io::sink()).await;
    });
    let mut sinks: HashMap<PeerId, Sink> = HashMap::new();
    // Peers whose sink gave up (`dnf`): the rest of that transfer is dropped, not echoed.
    let mut discarding: HashSet<PeerId> = HashSet::new();
    loop {
        let deadline = sinks.values().filter_map(|s| s.deadline).min();
        let message = tokio::select! {
            message = transport.recv() => message,
            _ = &mut stdin_closed => break,
            _ = sleep_until(deadline) => {
                give_up(&transport, &mut sinks, &mut discarding).await;
                continue;
            }
        };
        let Some(message) = message else { break };
        let peer = message.from.clone();
        if message.text {
            let command = message.as_text().unwrap_or_default().to_owned();
            discarding.remove(&peer);
            // A failed command (peer gone mid-stream) only ends that command.
            if let Err(e) = obey(&transport, &peer, &command, &mut sinks).await {
                tracing::warn!(%peer, command, "bench command failed: {e:#}");
            }
        } else if let Some(sink) = sinks.get_mut(&peer) {
            let now = Instant::now();
            sink.gap = sink.gap.max(now - sink.last);
            sink.last = now;
            sink.bytes += message.data.len() as u64;
            sink.left -= 1;
            if sink.left == 0 {
                let answer = sink.answer("sunk", now);
                sinks.remove(&peer);
                transport.send_text(&peer, &answer).await?;
            }
        } else if discarding.contains(&peer) {
            continue;
        } else if let Err(e) = transport.send(&peer, message.data).await {
            tracing::warn!(%peer, "echo failed: {e}");
        }
    }
    let _ = transport.close().await;
    Ok(())
}

/// Waits until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Answers `dnf` for every sink past its cap and stops counting for it.
async fn give_up(
    transport: &Transport,
    sinks: &mut HashMap<PeerId, Sink>,
    discarding: &mut HashSet<PeerId>,
) {
    let now = Instant::now();
    let expired: Vec<PeerId> = sinks
        .iter()
        .filter(|(_, s)| s.deadline.is_some_and(|d| d <= now))
        .map(|(peer, _)| peer.clone())
        .collect();
    for peer in expired {
        if let Some(sink) = sinks.remove(&peer) {
            discarding.insert(peer.clone());
            let end = sink.deadline.unwrap_or(now);
            if let Err(e) = transport.send_text(&peer, &sink.answer("dnf", end)).await {
                tracing::warn!(%peer, "dnf answer failed: {e}");
            }
        }
    }
}

async fn obey(
    transport: &Transport,
    peer: &PeerId,
    command: &str,
    sinks: &mut HashMap<PeerId, Sink>,
) -> anyhow::Result<()> {
    let words: Vec<&str> = command.split_whitespace().collect();
    match words.as_slice() {
        ["sink", n, cap @ ..] if cap.len() <= 1 => {
            let left: u64 = n.parse()?;
            let now = Instant::now();
            let deadline = match cap.first() {
                Some(ms) => Some(now + Duration::from_millis(ms.parse()?)),
                None => None,
            };
            if left == 0 {
                transport.send_text(peer, "sunk 0 0 0").await?;
            } else {
                let sink = Sink {
                    left,
                    bytes: 0,
                    started: now,
                    last: now,
                    gap: Duration::ZERO,
                    deadline,
                };
                sinks.insert(peer.clone(), sink);
            }
        }
        ["stream", n, size] => {
            let (n, size): (u64, usize) = (n.parse()?, size.parse()?);
            // One buffer, cloned by reference count: we measure the transport, not memcpy.
            let payload = Bytes::from(vec![0x5a; size]);
            for _ in 0..n {
                transport.send(peer, payload.clone()).await?;
            }
        }
        _ => anyhow::bail!("unknown command"),
    }
    Ok(())
}
