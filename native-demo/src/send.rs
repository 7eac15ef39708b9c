//! `native-demo send`: sends files to every peer of a room with the protocol of
//! `docs/file-transfer.md`. Streams: reads 64 KiB at a time and awaits each `send`
//! (backpressure), so memory stays flat whatever the file size. Delivery is end to end: after
//! each file's `file-end` it waits for every peer's `file-received` (with the SHA-256 it sent),
//! so exit status 0 means every peer verified and stored every file.

use crate::file_protocol::{
    encode_declined, encode_end, encode_start, parse_text, printable, Ack, Control, CHUNK_SIZE,
    MAX_MESSAGE_BYTES,
};
use anyhow::{bail, Context};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use miaou_transport::{Bytes, Error, Event, PeerId, Transport, TransportConfig};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

/// After a peer disconnects or leaves, how long its acknowledgements already on their way may
/// still arrive (a receiver acknowledges, then closes at once; the two reach us on separate
/// queues).
const GONE_GRACE: Duration = Duration::from_secs(2);

/// After a failure nothing of ours is left to deliver: `send` waits this long for the
/// transport's close (itself bounded by the 10 s close timeout per peer) before leaving.
const CLOSE_BOUND_AFTER_FAILURE: Duration = Duration::from_secs(2);

#[derive(Args)]
pub struct SendArgs {
    #[command(flatten)]
    signaling: crate::lan::SignalArgs,
    /// Room name.
    #[arg(long)]
    room: String,
    /// Wait until this many peers that take files have an open channel before sending (at
    /// least 1). Peers that declined a file (other senders) do not count; a first file that
    /// every peer declined is sent again once a peer that takes files is there.
    #[arg(long, default_value_t = 1, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    wait_peers: usize,
    /// Give up waiting for peers after this many seconds.
    #[arg(long, default_value_t = 60)]
    wait_timeout: u64,
    /// After a file's last message is sent, wait at most this many seconds for every peer to
    /// acknowledge it (file-received); no acknowledgement in time is a failure.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    ack_timeout: u64,
    /// Files to send, in order, each to every peer connected when sending starts.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    #[command(flatten)]
    ice: crate::room::IceArgs,
}

/// A progress bar on stderr (bytes, rate, ETA), drawn only when stderr is a terminal.
pub fn progress_bar(len: u64, label: String) -> ProgressBar {
    let target = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(len), target);
    let style = ProgressStyle::with_template(
        "{msg:20!} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
    )
    .expect("valid template")
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(label);
    bar
}

/// A file checked before connecting: readable, a regular file, with a UTF-8 base name.
struct Source {
    path: PathBuf,
    name: String,
}

fn check(path: &Path) -> anyhow::Result<Source> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if !meta.is_file() {
        bail!("{} is not a regular file", path.display());
    }
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{} has no UTF-8 file name", path.display()))?;
    std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    Ok(Source {
        path: path.to_owned(),
        name: name.to_owned(),
    })
}

/// What the target peers said about the file being sent, and what happened to them: filled by
/// the message task (acknowledgements) and the event task (peers gone, undelivered or refused
/// messages), read by the sending loop. Holds entries for the target peers only, and
/// acknowledgements of the current transfer only, so a peer cannot make it grow.
#[derive(Default)]
struct Ledger {
    /// The peers the files go to: those connected when sending starts, less those that
    /// declined (`file-declined`: they are senders themselves).
    targets: Vec<PeerId>,
    /// The peers that declined, for the error when nobody is left.
    declined: Vec<PeerId>,
    /// The transfer being sent or awaiting acknowledgements.
    current: Option<u32>,
    /// Acknowledgements of `current`, per target.
    acks: HashMap<PeerId, Ack>,
    /// Peers that accepted a transfer (`file-accepted`): receivers. One that leaves before
    /// acknowledging fails the transfer; a target that leaves without ever accepting one (a
    /// sender done before it could decline) is only dropped.
    receivers: Vec<PeerId>,
    /// An event that makes waiting for peers pointless (a TURN server that gives us no relay
    /// with relay-only ICE, see [`crate::room::fatal`]).
    fatal: Option<String>,
    /// Faults that end the transfer to a target.
    faults: HashMap<PeerId, Fault>,
}

#[derive(Clone, Debug)]
enum Fault {
    /// A `file-error` without id, an undelivered or refused message: fails at once.
    Now(String),
    /// The peer disconnected or left at `since`: fails after [`GONE_GRACE`] unless its
    /// acknowledgement arrives.
    Gone { reason: String, since: Instant },
}

impl Ledger {
    fn record_ack(&mut self, peer: &PeerId, ack: Ack) {
        if !self.targets.contains(peer) {
            tracing::info!(%peer, "acknowledgement from a peer we send nothing to: {ack:?}");
            return;
        }
        match &ack {
            Ack::Declined { id } => {
                tracing::info!(%peer, id, "declined by {peer}: it takes no files (a sender)");
                self.targets.retain(|p| p != peer);
                self.acks.remove(peer);
                self.faults.remove(peer);
                self.declined.push(peer.clone());
            }
            Ack::Failed { id: None, reason } => {
                let reason = format!("reported an error: {}", printable(reason));
                self.faults.insert(peer.clone(), Fault::Now(reason));
            }
            Ack::Accepted { id } if Some(*id) == self.current => {
                if !self.receivers.contains(peer) {
                    self.receivers.push(peer.clone());
                }
            }
            Ack::Received { id, .. } | Ack::Failed { id: Some(id), .. }
                if Some(*id) == self.current =>
            {
                self.acks.insert(peer.clone(), ack);
            }
            _ => tracing::warn!(%peer, "acknowledgement of another transfer: {ack:?}"),
        }
    }

    fn record_event(&mut self, event: &Event) {
        if let Some(error) = crate::room::fatal(event) {
            self.fatal.get_or_insert(format!("{error:#}"));
        }
        let (peer, fault) = match event {
            Event::PeerDisconnected { peer, reason } => {
                let reason = match reason {
                    Some(error) => format!("disconnected ({error})"),
                    None => "disconnected".to_owned(),
                };
                let since = Instant::now();
                (peer, Fault::Gone { reason, since })
            }
            Event::PeerLeft(peer) => {
                let since = Instant::now();
                let reason = "left the room".to_owned();
                (peer, Fault::Gone { reason, since })
            }
            Event::Error(
                error @ (Error::Undelivered { peer, .. } | Error::MessageRefused { peer }),
            ) => (peer, Fault::Now(error.to_string())),
            _ => return,
        };
        if self.targets.contains(peer) && !matches!(self.faults.get(peer), Some(Fault::Now(_))) {
            self.faults.insert(peer.clone(), fault);
        }
    }
}

/// How the wait for the current transfer's acknowledgements stands.
enum Verdict {
    /// Every target acknowledged with the right hash.
    Verified,
    /// A target failed: the message names it.
    Failed(String),
    /// Still waiting; check again at the latest at this instant (a gone peer's grace end).
    Pending(Option<Instant>),
}

/// Judges the acknowledgements of transfer `id` (`name`, SHA-256 `sha256`; `None` while still
/// sending, when only failures count).
fn verdict(ledger: &Ledger, id: u32, name: &str, sha256: Option<&str>) -> Verdict {
    if reached_nobody(ledger) {
        let declined: Vec<String> = ledger.declined.iter().map(|p| p.to_string()).collect();
        return Verdict::Failed(format!(
            "no peer takes files ({} declined: senders; others left without accepting a file); \
             {name} (transfer {id}) reached nobody",
            declined.join(", ")
        ));
    }
    let mut next = None;
    let mut all = true;
    for peer in ledger.targets.iter().filter(|p| still_counts(ledger, p)) {
        match ledger.acks.get(peer) {
            Some(Ack::Failed { reason, .. }) => {
                let reason = printable(reason);
                return Verdict::Failed(format!(
                    "{peer} rejected {name} (transfer {id}): {reason}"
                ));
            }
            Some(Ack::Received { sha256: theirs, .. }) => match sha256 {
                Some(ours) if theirs != ours => {
                    return Verdict::Failed(format!(
                        "{peer} acknowledged {name} (transfer {id}) with sha256 {theirs}, we sent {ours}"
                    ))
                }
                _ => continue,
            },
            // Never stored: a declining peer leaves the targets, acceptance has its own list.
            Some(Ack::Declined { .. } | Ack::Accepted { .. }) | None => all = false,
        }
        match ledger.faults.get(peer) {
            Some(Fault::Now(reason)) => {
                return Verdict::Failed(format!("{peer}: {reason} ({name}, transfer {id})"))
            }
            Some(Fault::Gone { reason, since }) => {
                let deadline = *since + GONE_GRACE;
                if Instant::now() >= deadline {
                    return Verdict::Failed(format!(
                        "{peer} {reason} before acknowledging {name} (transfer {id})"
                    ));
                }
                next = Some(next.map_or(deadline, |n: Instant| n.min(deadline)));
            }
            None => {}
        }
    }
    if all && sha256.is_some() {
        Verdict::Verified
    } else {
        Verdict::Pending(next)
    }
}

/// Whether target `peer` still counts for the current transfer: unless it left (past the grace
/// for messages on their way) without having accepted any transfer — then it was no receiver,
/// but a sender that finished before it could decline.
fn still_counts(ledger: &Ledger, peer: &PeerId) -> bool {
    let left_silent = match ledger.faults.get(peer) {
        Some(Fault::Gone { since, .. }) => Instant::now() >= *since + GONE_GRACE,
        _ => false,
    };
    !left_silent || ledger.receivers.contains(peer) || ledger.acks.contains_key(peer)
}

/// Whether the current transfer reached no peer that takes files: every target declined
/// (declining removes it from the targets) or left without accepting one.
fn reached_nobody(ledger: &Ledger) -> bool {
    !ledger.targets.iter().any(|p| still_counts(ledger, p))
}

pub async fn run(args: SendArgs) -> anyhow::Result<()> {
    let sources = args
        .files
        .iter()
        .map(|p| check(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (ledger, _) = watch::channel(Ledger::default());
    let ledger = Arc::new(ledger);
    let mut lan = args.signaling.resolve(&args.room).await?;
    let connect_timeout_ms = lan.connect_timeout_ms();
    let mut joined = lan
        .connect(|url| {
            let builder = TransportConfig::builder(url, &args.room)
                .max_message_size(MAX_MESSAGE_BYTES)
                .connect_timeout_ms(connect_timeout_ms);
            let config = args.ice.apply(builder).and_then(|b| Ok(b.build()?));
            let ledger = Arc::clone(&ledger);
            let observer = move |event: &Event| ledger.send_modify(|l| l.record_event(event));
            async move { crate::room::join_observed(config?, observer).await }
        })
        .await?;
    let transport = Arc::clone(&joined.transport);
    // Acknowledgements come back as messages; keep the queue drained so the peers never stall.
    let incoming = Arc::clone(&transport);
    let acks = Arc::clone(&ledger);
    tokio::spawn(async move {
        while let Some(message) = incoming.recv().await {
            let from = &message.from;
            // Binary messages: chunks from another sender until it read our file-declined.
            let Some(text) = message.as_text().filter(|_| message.text) else {
                continue;
            };
            match parse_text(text) {
                Ok(Some(Control::Ack(ack))) => acks.send_modify(|l| l.record_ack(from, ack)),
                // Another sender in the room: we take no files, so it need not wait for us.
                Ok(Some(Control::Start { id, .. })) => {
                    if let Err(error) = incoming.send_text(from, &encode_declined(id)).await {
                        tracing::warn!(%from, "file-declined not sent: {error}");
                    }
                }
                Ok(Some(Control::End { .. })) => {}
                Ok(None) => tracing::info!(%from, "chat: {}", printable(text)),
                Err(error) => tracing::warn!(%from, "{error}"),
            }
        }
    });

    let result = async {
        let wanted = args.wait_peers;
        joined.wait_for_peers(wanted, args.wait_timeout).await?;
        let takers_deadline = Instant::now() + Duration::from_secs(args.wait_timeout);
        let ack_timeout = Duration::from_secs(args.ack_timeout);
        let mut next_id = 1u32;
        for (index, source) in sources.iter().enumerate() {
            loop {
                if index == 0 {
                    // Other senders count as connected peers but decline files: the first
                    // file goes out again once enough peers that take files are there.
                    let wait = (takers_deadline, args.wait_timeout);
                    let takers = wait_for_takers(&transport, &ledger, wanted, wait).await?;
                    ledger.send_modify(|l| {
                        l.faults.retain(|peer, _| takers.contains(peer));
                        l.targets = takers;
                    });
                }
                let id = next_id;
                next_id += 1;
                match send_file(&transport, &ledger, id, source, ack_timeout).await {
                    Err(_) if index == 0 && reached_nobody(&ledger.borrow()) => {
                        tracing::info!(id, "no target took the file (other senders); waiting for a peer that takes files");
                    }
                    sent => break sent?,
                }
            }
        }
        Ok(())
    }
    .await;
    // Every file is acknowledged end to end (or we failed anyway): a close that cannot complete
    // (a receiver that already left) changes nothing, so it is only logged.
    let closing = transport.close();
    let closed = match result {
        Ok(()) => Ok(closing.await),
        Err(_) => tokio::time::timeout(CLOSE_BOUND_AFTER_FAILURE, closing).await,
    };
    match closed {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!("closing: {error}"),
        Err(_) => tracing::warn!("closing: leaving without waiting for it after the failure"),
    }
    lan.close().await;
    result
}

/// Waits until at least `wanted` connected peers have not declined files, at most until
/// `deadline` (`timeout_s` after the start, for the message); returns them. Every event and acknowledgement updates the ledger, which wakes
/// this.
async fn wait_for_takers(
    transport: &Transport,
    ledger: &watch::Sender<Ledger>,
    wanted: usize,
    (deadline, timeout_s): (Instant, u64),
) -> anyhow::Result<Vec<PeerId>> {
    let mut changes = ledger.subscribe();
    loop {
        let takers: Vec<PeerId> = {
            let ledger = changes.borrow_and_update();
            if let Some(error) = &ledger.fatal {
                bail!("{error}");
            }
            let peers = transport.peers();
            peers
                .into_iter()
                .filter(|p| !ledger.declined.contains(p))
                .collect()
        };
        if takers.len() >= wanted {
            return Ok(takers);
        }
        let wait = tokio::time::timeout_at(deadline.into(), changes.changed());
        if !matches!(wait.await, Ok(Ok(()))) {
            let declined = ledger.borrow().declined.len();
            bail!(
                "fewer than {wanted} peers that take files connected within {timeout_s} s ({} \
                 connected, {declined} senders declined)",
                transport.peers().len()
            );
        }
    }
}

/// Sends one file to the ledger's targets, chunk by chunk, then waits for their
/// acknowledgements.
async fn send_file(
    transport: &Transport,
    ledger: &watch::Sender<Ledger>,
    id: u32,
    source: &Source,
    ack_timeout: Duration,
) -> anyhow::Result<()> {
    let path = &source.path;
    // For messages: a name may hold control characters (the receiver refuses those).
    let name = printable(&source.name);
    let name = name.as_str();
    let mut file = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("cannot open {}", path.display()))?;
    let size = file
        .metadata()
        .await
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    ledger.send_modify(|l| {
        l.current = Some(id);
        l.acks.clear();
    });
    let started = Instant::now();
    let peers = ledger.borrow().targets.len();
    tracing::info!(id, name, size, peers, "sending");
    let start = Bytes::from(encode_start(id, &source.name, size));
    to_all(transport, ledger, id, name, start, true).await?;

    let bar = progress_bar(size, source.name.clone());
    let mut hasher = Sha256::new();
    let mut sent = 0u64;
    while sent < size {
        let len = (size - sent).min(CHUNK_SIZE as u64) as usize;
        let mut chunk = vec![0u8; len];
        file.read_exact(&mut chunk).await.with_context(|| {
            format!(
                "reading {} (did it shrink while being sent?)",
                path.display()
            )
        })?;
        hasher.update(&chunk);
        to_all(transport, ledger, id, name, chunk.into(), false).await?;
        sent += len as u64;
        bar.set_position(sent);
    }
    let mut probe = [0u8; 1];
    if file
        .read(&mut probe)
        .await
        .with_context(|| format!("reading {}", path.display()))?
        != 0
    {
        bail!(
            "{} grew while being sent (expected {size} bytes)",
            path.display()
        );
    }
    let digest = hasher.finalize();
    let end = Bytes::from(encode_end(id, &digest));
    to_all(transport, ledger, id, name, end, true).await?;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    let sha256 = hex::encode(digest);
    tracing::info!(
        id,
        name,
        size,
        sha256 = %sha256,
        "sent in {secs:.2} s ({:.1} MiB/s); waiting for acknowledgements",
        size as f64 / 1048576.0 / secs.max(1e-9)
    );
    await_acks(ledger, id, name, &sha256, ack_timeout).await?;
    for peer in &ledger.borrow().targets {
        tracing::info!(id, name, sha256 = %sha256, "verified by {peer}");
    }
    Ok(())
}

/// Waits until every target acknowledged transfer `id` with `sha256`, one failed, or
/// `timeout` passed.
async fn await_acks(
    ledger: &watch::Sender<Ledger>,
    id: u32,
    name: &str,
    sha256: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    match tokio::time::timeout(timeout, settled(ledger, id, name, Some(sha256))).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(message)) => bail!(message),
        Err(_) => {
            let ledger = ledger.borrow();
            let silent: Vec<String> = ledger
                .targets
                .iter()
                .filter(|peer| !ledger.acks.contains_key(*peer))
                .map(|peer| peer.to_string())
                .collect();
            bail!(
                "no acknowledgement of {name} (transfer {id}) from {} within {} s (--ack-timeout)",
                silent.join(", "),
                timeout.as_secs()
            );
        }
    }
}

/// Resolves once the [`verdict`] on transfer `id` is settled: `Ok` when every target verified
/// `sha256` (never while it is `None`, during sending), `Err` with the message of the first
/// failure (a rejection, a fault, a peer gone past its grace). Re-judges on every ledger change
/// and at each gone peer's grace end.
async fn settled(
    ledger: &watch::Sender<Ledger>,
    id: u32,
    name: &str,
    sha256: Option<&str>,
) -> Result<(), String> {
    let mut changes = ledger.subscribe();
    loop {
        let grace_end = match verdict(&changes.borrow_and_update(), id, name, sha256) {
            Verdict::Verified => return Ok(()),
            Verdict::Failed(message) => return Err(message),
            Verdict::Pending(grace_end) => grace_end,
        };
        let changed = async {
            if changes.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        match grace_end {
            Some(at) => tokio::select! {
                _ = changed => {}
                _ = tokio::time::sleep_until(at.into()) => {}
            },
            None => changed.await,
        }
    }
}

/// Sends one message of transfer `id` to each target; fails on the first target that cannot
/// take it or has already rejected the transfer (naming it, with its reason when it gave one).
async fn to_all(
    transport: &Transport,
    ledger: &watch::Sender<Ledger>,
    id: u32,
    name: &str,
    data: Bytes,
    text: bool,
) -> anyhow::Result<()> {
    if let Verdict::Failed(message) = verdict(&ledger.borrow(), id, name, None) {
        bail!(message);
    }
    let targets = ledger.borrow().targets.clone();
    for peer in &targets {
        let send = async {
            if text {
                let text = std::str::from_utf8(&data).expect("protocol text is UTF-8");
                transport.send_text(peer, text).await
            } else {
                transport.send(peer, data.clone()).await
            }
        };
        // A send waiting for buffer room to a peer that is gone would wait for good: the
        // first failure of any target ends it.
        let sent = tokio::select! {
            sent = send => sent,
            Err(message) = settled(ledger, id, name, None) => bail!(message),
        };
        if let Err(error) = sent {
            if !ledger.borrow().targets.contains(peer) {
                continue; // it declined meanwhile
            }
            // The peer may have said why before going away: that is the better message.
            if let Some(Ack::Failed { reason, .. }) = ledger.borrow().acks.get(peer) {
                let reason = printable(reason);
                bail!("{peer} rejected {name} (transfer {id}): {reason}");
            }
            if matches!(error, Error::PeerNotConnected(_)) {
                // Its channel is closing: it is going away (its events may come later).
                let since = Instant::now();
                let reason = "closed its channel".to_owned();
                ledger.send_modify(|l| {
                    l.faults
                        .entry(peer.clone())
                        .or_insert(Fault::Gone { reason, since });
                });
                if !ledger.borrow().receivers.contains(peer) {
                    // Maybe no receiver at all (a sender that finished): after the grace the
                    // verdict drops it, or fails if it accepted meanwhile.
                    continue;
                }
            }
            bail!("sending {name} (transfer {id}) to {peer}: {error}");
        }
    }
    Ok(())
}
