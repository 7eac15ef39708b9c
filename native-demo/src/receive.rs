//! `native-demo receive`: receives files sent with the protocol of `docs/file-transfer.md`
//! into a directory, verifies size and SHA-256, and prints one `<sha256-hex>  <name>` line per
//! completed file (the `sha256sum` format). Exits 0 after `--count` files; any transfer error
//! (hash or size mismatch, protocol violation, sender gone mid-file) exits non-zero.

use crate::file_protocol::{FileReceiver, Received};
use crate::send::progress_bar;
use anyhow::{bail, Context};
use clap::Args;
use indicatif::ProgressBar;
use miaou_transport::{Event, Message, PeerId, TransportConfig};
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Messages held between the transport and us. Small, so that a slow disk pushes back on the
/// sender instead of piling up chunks here (64 × 64 KiB = 4 MiB at most).
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
    /// Directory the files are written to (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Exit 0 after this many files arrived.
    #[arg(long, default_value_t = 1)]
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
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let mut lan = args.signaling.resolve(&args.room).await?;
    let connect_timeout_ms = lan.connect_timeout_ms();
    let transport = lan
        .connect(|url| {
            let builder = TransportConfig::builder(url, &args.room)
                .receive_queue_messages(RECEIVE_QUEUE_MESSAGES)
                .connect_timeout_ms(connect_timeout_ms);
            let config = args.ice.apply(builder).and_then(|b| Ok(b.build()?));
            crate::room::connect(config)
        })
        .await?;
    tracing::info!(peer_id = %transport.peer_id(), room = %transport.room(), out = %args.out.display(), "joined; waiting for files");

    let mut senders: HashMap<PeerId, Sender> = HashMap::new();
    let mut gone: Vec<(PeerId, Instant)> = Vec::new();
    let mut done = 0usize;
    let mut events_open = true;
    while done < args.count {
        let grace_end = gone.iter().map(|(_, at)| *at).min();
        tokio::select! {
            // Messages first: those a departed sender had sent still count.
            biased;
            message = transport.recv() => {
                let Some(message) = message else { bail!("the transport closed") };
                if on_message(&args, &mut senders, message)? {
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
                            gone.push((peer, Instant::now() + DISCONNECT_GRACE));
                        }
                    }
                    Some(Event::PeerConnected(peer)) => match transport.selected_candidate_pair(&peer).await {
                        Ok(pair) => tracing::info!(%peer, %pair, "channel open"),
                        Err(_) => tracing::info!(%peer, "channel open"),
                    },
                    Some(other) => tracing::info!("{other:?}"),
                    None => events_open = false,
                }
            }
            _ = tokio::time::sleep_until(grace_end.unwrap_or_else(Instant::now).into()), if grace_end.is_some() => {
                let now = Instant::now();
                for (peer, _) in gone.iter().filter(|(_, at)| *at <= now) {
                    if let Some(sender) = senders.get_mut(peer) {
                        sender.files.on_disconnect().with_context(|| format!("from {peer}"))?;
                    }
                }
                gone.retain(|(_, at)| *at > now);
            }
            _ = tokio::signal::ctrl_c() => bail!("interrupted"),
        }
    }
    let closed = transport.close().await.context("closing");
    lan.close().await;
    closed
}

/// Handles one message; `Ok(true)` when it completed a file.
fn on_message(
    args: &ReceiveArgs,
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
            bail!("from {peer}: {error}");
        }
    };
    match received {
        Received::Chat(text) => tracing::info!(from = %peer, "chat: {text}"),
        Received::Started { id, name, size } => {
            tracing::info!(from = %peer, id, %name, size, "receiving");
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
            tracing::info!(from = %peer, id = file.id, size = file.size, path = %file.path.display(), "received in {secs:.2} s ({rate:.1} MiB/s)");
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}  {}", file.sha256, file.name).context("writing stdout")?;
            out.flush().context("writing stdout")?;
            return Ok(true);
        }
        Received::Dropped => {}
    }
    Ok(false)
}
