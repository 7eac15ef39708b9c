//! `native-demo join`: chat in a room. Every stdin line is broadcast as a text message; every
//! text message received is printed as `<peer-id> <text>`. On stdin EOF, everything already
//! sent is delivered (lossless close) before the process exits 0.

use anyhow::Context;
use clap::Args;
use miaou_transport::{ChannelKind, TransportConfig};
use std::io::Write;
use std::sync::Arc;
use tokio::io::AsyncBufReadExt;

#[derive(Args)]
pub struct JoinArgs {
    #[command(flatten)]
    signaling: crate::lan::SignalArgs,
    /// Room name.
    #[arg(long)]
    room: String,
    /// Wait until this many peers have an open channel before reading stdin.
    #[arg(long, default_value_t = 0)]
    wait_peers: usize,
    /// Give up waiting for peers after this many seconds.
    #[arg(long, default_value_t = 60)]
    wait_timeout: u64,
    /// Use an unordered channel with maxRetransmits 0 instead of ordered + reliable.
    #[arg(long)]
    unreliable: bool,
    /// ICE: milliseconds without traffic before a peer counts as disconnected.
    #[arg(long, default_value_t = miaou_transport::DEFAULT_ICE_DISCONNECTED_TIMEOUT_MS)]
    ice_disconnected_ms: u64,
    /// ICE: milliseconds without traffic before the connection fails and reconnection starts.
    #[arg(long, default_value_t = miaou_transport::DEFAULT_ICE_FAILED_TIMEOUT_MS)]
    ice_failed_ms: u64,
    #[command(flatten)]
    ice: crate::room::IceArgs,
}

pub async fn run(args: JoinArgs) -> anyhow::Result<()> {
    let kind = if args.unreliable {
        ChannelKind::Unreliable
    } else {
        ChannelKind::Reliable
    };
    let mut lan = args.signaling.resolve(&args.room).await?;
    let connect_timeout_ms = lan.connect_timeout_ms();
    let mut joined = lan
        .connect(|url| {
            let builder = TransportConfig::builder(url, &args.room)
                .channel(kind)
                .ice_timeouts_ms(args.ice_disconnected_ms, args.ice_failed_ms)
                .connect_timeout_ms(connect_timeout_ms);
            let config = args.ice.apply(builder).and_then(|b| Ok(b.build()?));
            async move { crate::room::join(config?).await }
        })
        .await?;
    let transport = Arc::clone(&joined.transport);
    let receiver = Arc::clone(&transport);
    let printer = tokio::spawn(async move {
        let stdout = std::io::stdout();
        while let Some(message) = receiver.recv().await {
            match message.as_text().filter(|_| message.text) {
                Some(text) => {
                    let mut out = stdout.lock();
                    let _ = writeln!(out, "{} {}", message.from, text);
                    let _ = out.flush();
                }
                None => {
                    tracing::info!(from = %message.from, bytes = message.data.len(), "binary message")
                }
            }
        }
    });

    if args.wait_peers > 0 {
        joined
            .wait_for_peers(args.wait_peers, args.wait_timeout)
            .await?;
    }

    // Lines are read as bytes: a line that is not UTF-8 is sent with U+FFFD replacements (and
    // a warning) rather than ending the session and losing what is still queued.
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin());
    let mut buffer = Vec::new();
    let mut outcome = Ok(());
    loop {
        buffer.clear();
        match stdin.read_until(b'\n', &mut buffer).await {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                outcome = Err(anyhow::Error::new(e).context("reading stdin"));
                break;
            }
        }
        let bytes = buffer.strip_suffix(b"\n").unwrap_or(&buffer);
        let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        let line = String::from_utf8_lossy(bytes);
        if let std::borrow::Cow::Owned(_) = line {
            tracing::warn!("stdin line is not valid UTF-8; invalid bytes replaced with U+FFFD");
        }
        if transport.peers().is_empty() {
            tracing::warn!("no connected peer; line not sent");
            continue;
        }
        if let Err(e) = transport.broadcast_text(&line).await {
            outcome = Err(anyhow::Error::new(e).context("sending"));
            break;
        }
    }
    // Whatever happened, deliver what was already sent before exiting.
    let closed = transport.close().await.context("closing");
    // Messages received before the close are still queued: print them all before exiting.
    printer.await.context("printing received messages")?;
    lan.close().await;
    outcome.and(closed)
}
