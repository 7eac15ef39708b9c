//! `native-demo receive`: receives files sent with the protocol of `docs/file-transfer.md`
//! into a directory, verifies size and SHA-256, and prints one `<sha256-hex>  <name>` line per
//! completed file (the `sha256sum` format; `name` is the name actually written, `name (N).ext`
//! when the sender's name was taken — an existing file is never replaced). Every transfer is
//! acknowledged to its sender (`file-received`, or `file-error` with the reason). Exits 0 after
//! `--count` files; any transfer error (hash or size mismatch, protocol violation, sender gone
//! mid-file) exits non-zero.

use crate::file_protocol::{
    encode_accepted, encode_error, printable, FileReceiver, Received, MAX_MESSAGE_BYTES,
};
use crate::send::progress_bar;
use anyhow::{bail, Context};
use clap::Args;
use indicatif::ProgressBar;
use miaou_transport::{Event, Message, PeerId, Transport, TransportConfig};
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Messages held between the transport and us. Small, so that a slow disk pushes back on the
/// sender instead of piling up chunks here: with messages capped at [`MAX_MESSAGE_BYTES`]
/// (68 KiB), 64 × 68 KiB = 4.25 MiB at most.
const RECEIVE_QUEUE_MESSAGES: usize = 64;

/// After a sender disconnects with a file open, how long its already-received messages may
/// still complete it. A lossless close delivers everything before the channel closes, so this
/// only matters for a sender that vanished.
const DISCONNECT_GRACE: Duration = Duration::from_secs(2);

#[derive(Args)]
pub struct ReceiveArgs {
    #[command(flatten)]
    signaling: crate::lan::SignalArgs,
    /// Room name.
    #[arg(long)]
    room: String,
    /// Directory the files are written to (created if missing). Existing files are never
    /// replaced: a taken name becomes `name (1).ext`, `name (2).ext`, …
    #[arg(long)]
    out: PathBuf,
    /// Exit 0 after this many files arrived (at least 1: receiving nothing is not a job).
    #[arg(long, default_value_t = 1, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    count: usize,
    #[command(flatten)]
    ice: crate::room::IceArgs,
}

/// One sender's state: its protocol receiver and the progress bar of its open transfer.
struct Sender {
    files: FileReceiver,
    bar: Option<ProgressBar>,
    started: Instant,
}

pub async fn run(args: ReceiveArgs) -> anyhow::Result<()> {
    if args.out.exists() && !args.out.is_dir() {
        bail!("--out {} exists and is not a directory", args.out.display());
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let mut lan = args.signaling.resolve(&args.room).await?;
    let connect_timeout_ms = lan.connect_timeout_ms();
    let transport = lan
        .connect(|url| {
            let builder = TransportConfig::builder(url, &args.room)
                .max_message_size(MAX_MESSAGE_BYTES)
                .receive_queue_messages(RECEIVE_QUEUE_MESSAGES)
                .connect_timeout_ms(connect_timeout_ms);
            let config = args.ice.apply(builder).and_then(|b| Ok(b.build()?));
            crate::room::connect(config)
        })
        .await?;
    tracing::info!(peer_id = %transport.peer_id(), room = %transport.room(), out = %args.out.display(), "joined; waiting for files");

    let mut senders: HashMap<PeerId, Sender> = HashMap::new();
    let result = receive_files(&args, &transport, &mut senders).await;
    if let Err(error) = &result {
        // Whoever still has a transfer open hears why it will not complete.
        let reason = format!("receiver stopped: {error:#}");
        for (peer, sender) in &senders {
            if let Some((id, ..)) = sender.files.open_transfer() {
                acknowledge(&transport, peer, &encode_error(Some(id), &reason)).await;
            }
        }
    }
    let closed = close_draining(&transport).await.context("closing");
    lan.close().await;
    result?;
    closed
}

/// Receives until `--count` files completed; the first error ends it (its `file-error` already
/// sent to the peer concerned).
async fn receive_files(
    args: &ReceiveArgs,
    transport: &Transport,
    senders: &mut HashMap<PeerId, Sender>,
) -> anyhow::Result<()> {
    let mut gone: Vec<(PeerId, Instant)> = Vec::new();
    let mut done = 0usize;
    let mut events_open = true;
    let stop = crate::stop::requested();
    tokio::pin!(stop);
    while done < args.count {
        let grace_end = gone.iter().map(|(_, at)| *at).min();
        tokio::select! {
            // A stop request first (a busy transfer must not starve it), then messages: those
            // a departed sender had sent still count.
            biased;
            signal = &mut stop => bail!("{signal}"),
            message = transport.recv() => {
                let Some(message) = message else { bail!("the transport closed") };
                if on_message(args, transport, senders, message).await? {
                    done += 1;
                }
            }
            event = transport.next_event(), if events_open => {
                if let Some(error) = event.as_ref().and_then(crate::room::fatal) {
                    return Err(error);
                }
                match event {
                    Some(Event::PeerDisconnected { peer, .. } | Event::PeerLeft(peer)) => {
                        tracing::info!(%peer, "peer gone");
                        if senders.get(&peer).is_some_and(|s| s.files.open_transfer().is_some()) {
                            if !gone.iter().any(|(p, _)| *p == peer) {
                                gone.push((peer, Instant::now() + DISCONNECT_GRACE));
                            }
                        } else {
                            senders.remove(&peer);
                        }
                    }
                    Some(Event::PeerConnected(peer)) => {
                        let arq = transport.channel_info(&peer).is_ok_and(|info| info.arq);
                        match transport.selected_candidate_pair(&peer).await {
                            Ok(pair) => tracing::info!(%peer, arq, %pair, "channel open"),
                            Err(_) => tracing::info!(%peer, arq, "channel open"),
                        }
                    }
                    Some(other) => tracing::info!("{other:?}"),
                    None => events_open = false,
                }
            }
            _ = tokio::time::sleep_until(grace_end.unwrap_or_else(Instant::now).into()), if grace_end.is_some() => {
                let now = Instant::now();
                for (peer, _) in gone.iter().filter(|(_, at)| *at <= now) {
                    if let Some(mut sender) = senders.remove(peer) {
                        sender.files.on_disconnect().with_context(|| format!("from {peer}"))?;
                    }
                }
                gone.retain(|(_, at)| *at > now);
            }
        }
    }
    Ok(())
}

/// Sends one acknowledgement; a peer that cannot take it any more is only logged (its sender
/// learns from the channel closing).
async fn acknowledge(transport: &Transport, peer: &PeerId, ack: &str) {
    if let Err(error) = transport.send_text(peer, ack).await {
        tracing::warn!(%peer, "acknowledgement not sent: {error}");
    }
}

/// Closes losslessly (our acknowledgements reach their senders) while still reading: a sender
/// still streaming must not find our receive queue full, or our close could not complete.
/// (The transport bounds it: `close_timeout_ms` per peer.)
async fn close_draining(transport: &Transport) -> anyhow::Result<()> {
    let close = transport.close();
    tokio::pin!(close);
    let mut reading = true;
    loop {
        tokio::select! {
            result = &mut close => return Ok(result?),
            message = transport.recv(), if reading => reading = message.is_some(),
        }
    }
}

/// Handles one message; `Ok(true)` when it completed a file.
async fn on_message(
    args: &ReceiveArgs,
    transport: &Transport,
    senders: &mut HashMap<PeerId, Sender>,
    message: Message,
) -> anyhow::Result<bool> {
    let peer = message.from;
    let sender = senders.entry(peer.clone()).or_insert_with(|| Sender {
        files: FileReceiver::new(&args.out, peer.as_str()),
        bar: None,
        started: Instant::now(),
    });
    let received = match sender.files.on_message(message.text, &message.data) {
        Ok(received) => received,
        Err(error) => {
            if let Some(bar) = sender.bar.take() {
                bar.abandon();
            }
            for ack in error.acks() {
                acknowledge(transport, &peer, &ack).await;
            }
            bail!("from {peer}: {error}");
        }
    };
    match received {
        Received::Chat(text) => tracing::info!(from = %peer, "chat: {}", printable(&text)),
        Received::Started { id, name, size } => {
            tracing::info!(from = %peer, id, %name, size, "receiving");
            // Tells the sender we take it (it counts us as a receiver).
            acknowledge(transport, &peer, &encode_accepted(id)).await;
            sender.bar = Some(progress_bar(size, name));
            sender.started = Instant::now();
        }
        Received::Chunk { received, .. } => {
            if let Some(bar) = &sender.bar {
                bar.set_position(received);
            }
        }
        Received::Completed(file) => {
            if let Some(bar) = sender.bar.take() {
                bar.finish_and_clear();
            }
            let secs = sender.started.elapsed().as_secs_f64();
            let rate = file.size as f64 / 1048576.0 / secs.max(1e-9);
            if file.name != file.requested {
                tracing::info!(from = %peer, id = file.id, requested = %file.requested, name = %file.name, "name taken: saved under a numbered name");
            }
            tracing::info!(from = %peer, id = file.id, size = file.size, path = %file.path.display(), "received in {secs:.2} s ({rate:.1} MiB/s)");
            acknowledge(transport, &peer, &file.ack()).await;
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}  {}", file.sha256, file.name).context("writing stdout")?;
            out.flush().context("writing stdout")?;
            return Ok(true);
        }
        Received::Ack(ack) => {
            tracing::warn!(from = %peer, "ignored acknowledgement (we send nothing): {ack:?}")
        }
        Received::Dropped => {}
    }
    Ok(false)
}
