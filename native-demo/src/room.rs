//! What `join` and `send` share: joining a room with events logged, and waiting until enough
//! peers have an open channel.

use anyhow::{bail, Context};
use miaou_transport::{Event, Transport, TransportConfig};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// A joined transport whose peer events are logged to stderr.
pub struct Joined {
    pub transport: Arc<Transport>,
    started: Instant,
    connected: watch::Receiver<usize>,
}

/// Connects with `config` and logs every peer event (with the time since the call for
/// channel opens).
pub async fn join(config: TransportConfig) -> anyhow::Result<Joined> {
    let started = Instant::now();
    let transport = Arc::new(
        Transport::connect(config)
            .await
            .context("joining the room")?,
    );
    tracing::info!(peer_id = %transport.peer_id(), room = %transport.room(), "joined");
    let (connected_tx, connected) = watch::channel(0usize);
    let events = Arc::clone(&transport);
    tokio::spawn(async move {
        while let Some(event) = events.next_event().await {
            match &event {
                Event::PeerConnected(peer) => {
                    tracing::info!(%peer, elapsed_ms = started.elapsed().as_millis() as u64, "channel open");
                }
                other => tracing::info!("{other:?}"),
            }
            let _ = connected_tx.send(events.peers().len());
        }
    });
    Ok(Joined {
        transport,
        started,
        connected,
    })
}

impl Joined {
    /// Waits until at least `wanted` peers have an open channel, at most `timeout_s` seconds.
    pub async fn wait_for_peers(&mut self, wanted: usize, timeout_s: u64) -> anyhow::Result<()> {
        let wait = self.connected.wait_for(|n| *n >= wanted);
        match tokio::time::timeout(Duration::from_secs(timeout_s), wait).await {
            Ok(Ok(_)) => {
                let elapsed_ms = self.started.elapsed().as_millis() as u64;
                tracing::info!(peers = wanted, elapsed_ms, "peers ready");
                Ok(())
            }
            _ => bail!("fewer than {wanted} peers connected within {timeout_s} s"),
        }
    }
}
