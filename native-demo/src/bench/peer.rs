//! `native-demo bench-peer`: the native end of the "miaou native ↔ Chromium tab" pair
//! (tests/bench/browser.bench.mjs). The workloads run in the tab, which has the only clock that
//! sees both directions; this process only obeys it, one command at a time, per peer:
//!
//! | the peer sends (text)   | we do                                                           |
//! |-------------------------|-----------------------------------------------------------------|
//! | `sink N`                | count the next N binary messages, then answer `sunk BYTES`       |
//! | `stream N SIZE`         | send N binary messages of SIZE bytes (0x5a), with backpressure   |
//! | any binary message      | (when not sinking) send it back unchanged: RTT echo              |
//!
//! Prints `ready PEER_ID` on stdout once in the room; stops when stdin closes. The script reads
//! this process's CPU time and `VmHWM` from /proc itself, so nothing else is reported here.

use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use miaou_transport::{PeerId, Transport, TransportConfig};
use std::collections::HashMap;
use std::io::Write;

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
    loop {
        let message = tokio::select! {
            message = transport.recv() => message,
            _ = &mut stdin_closed => break,
        };
        let Some(message) = message else { break };
        let peer = message.from.clone();
        if message.text {
            let command = message.as_text().unwrap_or_default().to_owned();
            // A failed command (peer gone mid-stream) only ends that command.
            if let Err(e) = obey(&transport, &peer, &command, &mut sinks).await {
                tracing::warn!(%peer, command, "bench command failed: {e:#}");
            }
        } else if let Some(sink) = sinks.get_mut(&peer) {
            sink.bytes += message.data.len() as u64;
            sink.left -= 1;
            if sink.left == 0 {
                let bytes = sink.bytes;
                sinks.remove(&peer);
                transport.send_text(&peer, &format!("sunk {bytes}")).await?;
            }
        } else if let Err(e) = transport.send(&peer, message.data).await {
            tracing::warn!(%peer, "echo failed: {e}");
        }
    }
    let _ = transport.close().await;
    Ok(())
}

async fn obey(
    transport: &Transport,
    peer: &PeerId,
    command: &str,
    sinks: &mut HashMap<PeerId, Sink>,
) -> anyhow::Result<()> {
    let words: Vec<&str> = command.split_whitespace().collect();
    match words.as_slice() {
        ["sink", n] => {
            let left: u64 = n.parse()?;
            if left == 0 {
                transport.send_text(peer, "sunk 0").await?;
            } else {
                sinks.insert(peer.clone(), Sink { left, bytes: 0 });
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
