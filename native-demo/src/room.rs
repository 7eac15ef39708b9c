//! What `join`, `send`, `receive` and `echo` share: the ICE options, joining a room with events
//! logged, and waiting until enough peers have an open channel.

use anyhow::{bail, Context};
use clap::Args;
use miaou_transport::{
    Error, Event, IceServer, IceTransportPolicy, Transport, TransportConfig, TransportConfigBuilder,
};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// ICE options (docs/turn.md) and the ARQ layer switch.
#[derive(Args, Clone, Debug, Default)]
pub struct IceArgs {
    /// ICE server, repeatable: stun:HOST[:PORT] or turn:HOST[:PORT][?transport=udp]
    /// (webrtc-rs relays over UDP only). Default: none (direct paths only).
    #[arg(long = "ice-server", value_name = "URL")]
    ice_servers: Vec<String>,
    /// Username for the turn: servers of --ice-server.
    #[arg(long, value_name = "NAME")]
    turn_username: Option<String>,
    /// Credential (password) for the turn: servers of --ice-server.
    #[arg(long, value_name = "SECRET")]
    turn_credential: Option<String>,
    /// Also use the short-lived TURN credentials the bridge hands out (`serve --turn-secret`).
    #[arg(long)]
    turn_from_bridge: bool,
    /// Relay-only ICE (iceTransportPolicy "relay"): all traffic goes through TURN.
    #[arg(long)]
    relay_only: bool,
    /// Do not announce the ARQ layer (docs/frame.md): v1 frames over SCTP's own
    /// retransmission, as older versions send them. For comparisons and interop tests.
    #[arg(long)]
    no_arq: bool,
}

impl IceArgs {
    /// Adds the ICE servers and policy to `builder`: each stun: URL on its own, the turn: URLs
    /// as one server with the TURN username and credential.
    pub fn apply(
        &self,
        mut builder: TransportConfigBuilder,
    ) -> anyhow::Result<TransportConfigBuilder> {
        let is_turn = |url: &&String| url.starts_with("turn:") || url.starts_with("turns:");
        let turn: Vec<String> = self.ice_servers.iter().filter(is_turn).cloned().collect();
        let has_credentials = self.turn_username.is_some() || self.turn_credential.is_some();
        if turn.is_empty() && has_credentials {
            bail!("--turn-username and --turn-credential are for turn: URLs, and no --ice-server turn:… was given");
        }
        for url in self.ice_servers.iter().filter(|url| !is_turn(url)) {
            builder = builder.ice_server(IceServer::new(url));
        }
        if !turn.is_empty() {
            let (Some(username), Some(credential)) = (&self.turn_username, &self.turn_credential)
            else {
                bail!(
                    "--ice-server {} needs --turn-username and --turn-credential",
                    turn[0]
                );
            };
            builder = builder.ice_server(IceServer {
                urls: turn,
                username: username.clone(),
                credential: credential.clone(),
            });
        }
        if self.relay_only {
            builder = builder.ice_transport_policy(IceTransportPolicy::Relay);
        }
        Ok(builder
            .turn_credentials_from_bridge(self.turn_from_bridge)
            .arq(!self.no_arq))
    }
}

/// The error that ends a command: a connection attempt abandoned because relay-only ICE got
/// no relay candidate (bad TURN credentials, TURN unreachable). Retrying cannot fix it.
pub fn fatal(event: &Event) -> Option<anyhow::Error> {
    match event {
        Event::PeerDisconnected {
            reason: Some(error @ Error::Turn { fatal: true, .. }),
            ..
        } => Some(anyhow::Error::new(error.clone())),
        _ => None,
    }
}

/// A joined transport whose peer events are logged to stderr.
pub struct Joined {
    pub transport: Arc<Transport>,
    started: Instant,
    /// Peers with an open channel, or the error that makes waiting pointless.
    connected: watch::Receiver<Result<usize, String>>,
}

/// Connects with `config` (or reports why the configuration could not be built).
pub async fn connect(config: anyhow::Result<TransportConfig>) -> anyhow::Result<Transport> {
    Transport::connect(config?)
        .await
        .context("joining the room")
}

/// Connects with `config` and logs every peer event (with the time since the call for
/// channel opens).
pub async fn join(config: TransportConfig) -> anyhow::Result<Joined> {
    join_observed(config, |_| {}).await
}

/// [`join`], also showing every event to `observer` (called on the event task, in order; it
/// must not block).
pub async fn join_observed(
    config: TransportConfig,
    observer: impl Fn(&Event) + Send + 'static,
) -> anyhow::Result<Joined> {
    let started = Instant::now();
    let transport = Arc::new(connect(Ok(config)).await?);
    tracing::info!(peer_id = %transport.peer_id(), room = %transport.room(), "joined");
    let (connected_tx, connected) = watch::channel(Ok(0usize));
    let events = Arc::clone(&transport);
    tokio::spawn(async move {
        while let Some(event) = events.next_event().await {
            observer(&event);
            match &event {
                Event::PeerConnected(peer) => {
                    let elapsed_ms = started.elapsed().as_millis() as u64;
                    // Whether the link runs the ARQ layer (docs/frame.md); before the pair,
                    // which tests read to the end of the line.
                    let arq = events.channel_info(peer).is_ok_and(|info| info.arq);
                    match events.selected_candidate_pair(peer).await {
                        Ok(pair) => tracing::info!(%peer, elapsed_ms, arq, %pair, "channel open"),
                        Err(_) => tracing::info!(%peer, elapsed_ms, arq, "channel open"),
                    }
                }
                other => tracing::info!("{other:?}"),
            }
            // A fatal error sticks: later events (the peer leaving) must not hide it.
            let fatal = fatal(&event).map(|error| format!("{error:#}"));
            connected_tx.send_modify(|state| match fatal {
                Some(error) => *state = Err(error),
                None if state.is_ok() => *state = Ok(events.peers().len()),
                None => {}
            });
        }
    });
    Ok(Joined {
        transport,
        started,
        connected,
    })
}

impl Joined {
    /// Waits until at least `wanted` peers have an open channel, at most `timeout_s` seconds;
    /// fails at once on a [`fatal`] event.
    pub async fn wait_for_peers(&mut self, wanted: usize, timeout_s: u64) -> anyhow::Result<()> {
        let wait = self
            .connected
            .wait_for(|state| state.as_ref().map_or(true, |n| *n >= wanted));
        match tokio::time::timeout(Duration::from_secs(timeout_s), wait).await {
            Ok(Ok(state)) => {
                if let Err(error) = &*state {
                    bail!("{error}");
                }
                let elapsed_ms = self.started.elapsed().as_millis() as u64;
                tracing::info!(peers = wanted, elapsed_ms, "peers ready");
                Ok(())
            }
            _ => bail!("fewer than {wanted} peers connected within {timeout_s} s"),
        }
    }
}
