//! `native-demo echo`: joins a room and sends every message back to its sender unchanged
//! (text stays text, binary stays binary). A fixed peer for interop tests and round-trip
//! measurements.

use anyhow::Context;
use clap::Args;
use miaou_transport::{Event, TransportConfig};

#[derive(Args)]
pub struct EchoArgs {
    #[command(flatten)]
    signaling: crate::lan::SignalArgs,
    /// Room name.
    #[arg(long)]
    room: String,
    /// Largest message accepted and echoed, bytes.
    #[arg(long, default_value_t = miaou_transport::DEFAULT_MAX_MESSAGE_SIZE)]
    max_message_size: usize,
    #[command(flatten)]
    ice: crate::room::IceArgs,
}

pub async fn run(args: EchoArgs) -> anyhow::Result<()> {
    let mut lan = args.signaling.resolve(&args.room).await?;
    let connect_timeout_ms = lan.connect_timeout_ms();
    let transport = lan
        .connect(|url| {
            let builder = TransportConfig::builder(url, &args.room)
                .max_message_size(args.max_message_size)
                .connect_timeout_ms(connect_timeout_ms);
            let config = args.ice.apply(builder).and_then(|b| Ok(b.build()?));
            crate::room::connect(config)
        })
        .await?;
    tracing::info!(peer_id = %transport.peer_id(), room = %transport.room(), "echoing");
    // Stops on Ctrl-C, SIGTERM or when stdin closes, so a parent process can end it cleanly.
    let stop = crate::stop::requested();
    tokio::pin!(stop);
    let mut stopped_by = None;
    let mut stdin_closed = tokio::spawn(async {
        let mut sink = tokio::io::sink();
        let _ = tokio::io::copy(&mut tokio::io::stdin(), &mut sink).await;
    });
    loop {
        tokio::select! {
            message = transport.recv() => {
                let Some(message) = message else { break };
                let (peer, bytes) = (message.from.clone(), message.data.len());
                let sent = if message.text {
                    transport.send_text(&peer, message.as_text().unwrap_or_default()).await
                } else {
                    transport.send(&peer, message.data).await
                };
                match sent {
                    Ok(()) => tracing::debug!(%peer, bytes, "echoed"),
                    Err(e) => tracing::warn!(%peer, bytes, "echo failed: {e}"),
                }
            }
            Some(event) = transport.next_event() => {
                if let Some(error) = crate::room::fatal(&event) {
                    return Err(error);
                }
                match &event {
                    // What the stack negotiated (the offerer's choice when we answered).
                    Event::PeerConnected(peer) => match transport.channel_info(peer) {
                        Ok(info) => tracing::info!(%peer, kind = ?info.kind, ordered = info.ordered, max_retransmits = ?info.max_retransmits, max_frame_size = info.max_frame_size, arq = info.arq, "channel open"),
                        Err(e) => tracing::info!(%peer, "channel open ({e})"),
                    },
                    _ => tracing::info!("{event:?}"),
                }
            }
            _ = &mut stdin_closed => break,
            signal = &mut stop => {
                stopped_by = Some(signal);
                break;
            }
        }
    }
    let closed = transport.close().await.context("closing");
    lan.close().await;
    if let Some(signal) = stopped_by {
        // Closed politely (peers and the LAN were told); exit now like the other commands,
        // rather than wait for the stdin reader, a blocking thread the runtime would join.
        eprintln!("error: {signal}");
        std::process::exit(signal.exit_code());
    }
    closed
}
