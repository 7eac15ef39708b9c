//! `native-demo send`: sends files to every peer of a room with the protocol of
//! `docs/file-transfer.md`. Streams: reads 64 KiB at a time and awaits each `send`
//! (backpressure), so memory stays flat whatever the file size. Closes losslessly at the end.

use crate::file_protocol::{encode_end, encode_start, CHUNK_SIZE};
use anyhow::{bail, Context};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use miaou_transport::{Bytes, PeerId, Transport, TransportConfig};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tokio::io::AsyncReadExt;

#[derive(Args)]
pub struct SendArgs {
    #[command(flatten)]
    signaling: crate::lan::SignalArgs,
    /// Room name.
    #[arg(long)]
    room: String,
    /// Wait until this many peers have an open channel before sending.
    #[arg(long, default_value_t = 1)]
    wait_peers: usize,
    /// Give up waiting for peers after this many seconds.
    #[arg(long, default_value_t = 60)]
    wait_timeout: u64,
    /// Files to send, in order, each to every connected peer.
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
    crate::file_protocol::base_name(name)
        .with_context(|| format!("cannot send {}", path.display()))?;
    std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    Ok(Source {
        path: path.to_owned(),
        name: name.to_owned(),
    })
}

pub async fn run(args: SendArgs) -> anyhow::Result<()> {
    let sources = args
        .files
        .iter()
        .map(|p| check(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut lan = args.signaling.resolve(&args.room).await?;
    let connect_timeout_ms = lan.connect_timeout_ms();
    let mut joined = lan
        .connect(|url| {
            let builder =
                TransportConfig::builder(url, &args.room).connect_timeout_ms(connect_timeout_ms);
            let config = args.ice.apply(builder).and_then(|b| Ok(b.build()?));
            async move { crate::room::join(config?).await }
        })
        .await?;
    let transport = Arc::clone(&joined.transport);
    // Nothing is expected back, but keep the receive queue drained so the peers never stall.
    let incoming = Arc::clone(&transport);
    tokio::spawn(async move {
        while let Some(message) = incoming.recv().await {
            match message.as_text().filter(|_| message.text) {
                Some(text) => tracing::info!(from = %message.from, "chat: {text}"),
                None => {
                    tracing::warn!(from = %message.from, bytes = message.data.len(), "ignored binary message")
                }
            }
        }
    });

    joined
        .wait_for_peers(args.wait_peers.max(1), args.wait_timeout)
        .await?;

    let mut result = Ok(());
    for (index, source) in sources.iter().enumerate() {
        let id = index as u32 + 1;
        if let Err(e) = send_file(&transport, id, source).await {
            result = Err(e);
            break;
        }
    }
    let closed = transport
        .close()
        .await
        .context("closing (delivering everything sent)");
    lan.close().await;
    result?;
    closed?;
    Ok(())
}

/// Sends one file to the peers connected now, chunk by chunk.
async fn send_file(transport: &Transport, id: u32, source: &Source) -> anyhow::Result<()> {
    let path = &source.path;
    let mut file = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("cannot open {}", path.display()))?;
    let size = file
        .metadata()
        .await
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    let peers = transport.peers();
    if peers.is_empty() {
        bail!("no connected peer to send {} to", path.display());
    }
    let started = Instant::now();
    tracing::info!(id, name = %source.name, size, peers = peers.len(), "sending");
    to_all(
        transport,
        &peers,
        encode_start(id, &source.name, size).into(),
        true,
    )
    .await?;

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
        to_all(transport, &peers, Bytes::from(chunk), false).await?;
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
    to_all(transport, &peers, encode_end(id, &digest).into(), true).await?;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    tracing::info!(
        id,
        name = %source.name,
        size,
        sha256 = %hex::encode(digest),
        "sent in {secs:.2} s ({:.1} MiB/s)",
        size as f64 / 1048576.0 / secs.max(1e-9)
    );
    Ok(())
}

/// Sends one message to each of `peers`; fails on the first peer that cannot take it.
async fn to_all(
    transport: &Transport,
    peers: &[PeerId],
    data: Bytes,
    text: bool,
) -> anyhow::Result<()> {
    for peer in peers {
        let sent = if text {
            transport
                .send_text(
                    peer,
                    std::str::from_utf8(&data).expect("protocol text is UTF-8"),
                )
                .await
        } else {
            transport.send(peer, data.clone()).await
        };
        sent.with_context(|| format!("sending to {peer}"))?;
    }
    Ok(())
}
