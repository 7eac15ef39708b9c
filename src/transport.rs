//! [`Transport`]: the public handle. Same type and methods on native and in the browser.

use crate::backend;
use crate::channel_info::ChannelInfo;
use crate::config::{IceServer, TransportConfig};
use crate::error::{Error, Result};
use crate::event::{Event, Message};
use crate::ice::CandidatePair;
use crate::session::driver::{lock, Command, Driver, LinkTable};
use crate::session::link::{LinkHandle, Sinks};
use crate::session::receive_budget::ReceiveBudget;
use crate::signaling::protocol::{
    ClientMessage, PeerId, ServerMessage, TurnCredentials, PROTOCOL_VERSION,
};
use bytes::Bytes;
use futures::channel::oneshot;
use futures::future::{self, Either};
use std::sync::Arc;

/// Lifecycle events kept for [`Transport::next_event`]; the oldest are dropped past this.
const EVENT_QUEUE: usize = 1024;

/// A member of one room: WebRTC data channels to every other member, negotiated through the
/// signaling server.
///
/// ```no_run
/// # async fn demo() -> Result<(), miaou_transport::Error> {
/// use miaou_transport::{Event, Transport, TransportConfig};
/// let config = TransportConfig::builder("ws://127.0.0.1:8080/ws", "lobby").build()?;
/// let transport = Transport::connect(config).await?;
/// while let Some(event) = transport.next_event().await {
///     if let Event::PeerConnected(peer) = event {
///         transport.send_text(&peer, "hello").await?;
///         let reply = transport.recv().await.expect("open transport");
///         println!("{} says {:?}", reply.from, reply.as_text());
///         break;
///     }
/// }
/// transport.close().await?;
/// # Ok(()) }
/// ```
pub struct Transport {
    peer_id: PeerId,
    room: String,
    close_timeout_ms: u64,
    links: LinkTable,
    messages: async_channel::Receiver<Message>,
    /// Bytes of `messages` (`receive_queue_bytes`), released as `recv` hands them out.
    budget: Arc<ReceiveBudget>,
    events: async_channel::Receiver<Event>,
    commands: async_channel::Sender<Command>,
}

impl Transport {
    /// Connects to the signaling server, joins the room and starts negotiating with every peer
    /// in it. Returns once the server has welcomed us; channels open afterwards
    /// ([`Event::PeerConnected`]).
    ///
    /// Native: call it inside a tokio runtime (multi- or current-thread); the transport's tasks
    /// are spawned on it. Browser: the page's event loop.
    ///
    /// Errors: [`Error::Config`], [`Error::Signaling`] (server unreachable or closed),
    /// [`Error::Rejected`] (e.g. room full), [`Error::Timeout`] after
    /// `config.connect_timeout_ms` without a welcome (handshake and join included).
    pub async fn connect(mut config: TransportConfig) -> Result<Transport> {
        config.validate()?;
        // One deadline for the WebSocket handshake, the join and the welcome: a server that
        // accepts TCP and then says nothing must not hang us.
        let joining = join_room(&config);
        let timeout = backend::sleep_ms(config.connect_timeout_ms);
        let (signal_tx, from_bridge, peer_id, peers, turn) =
            match future::select(Box::pin(joining), Box::pin(timeout)).await {
                Either::Left((result, _)) => result?,
                Either::Right(_) => {
                    return Err(Error::Timeout {
                        what: format!("joining through {}", config.signaling_url),
                        ms: config.connect_timeout_ms,
                    })
                }
            };
        if config.turn_credentials_from_bridge {
            let Some(turn) = turn else {
                // Leaving politely is best effort: the error is what matters.
                let _ = signal_tx.send(ClientMessage::Leave.to_json()).await;
                return Err(Error::Config(format!(
                    "turn_credentials_from_bridge is set but the bridge at {} hands out no TURN \
                     credentials (start it with a TURN secret: docs/turn.md)",
                    config.signaling_url
                )));
            };
            let (server, skipped) = IceServer::from_bridge(
                turn.urls,
                turn.username,
                turn.credential,
                backend::ICE_URL_SUPPORT,
            );
            for why in skipped {
                tracing::info!("TURN URL from the bridge skipped: {why}");
            }
            config.ice_servers.push(server);
            config.validate()?;
        }
        let (message_tx, messages) = async_channel::bounded(config.receive_queue_messages);
        let (event_tx, events) = async_channel::bounded(EVENT_QUEUE);
        let (rtc_tx, rtc_rx) = async_channel::bounded(256);
        let (commands, command_rx) = async_channel::bounded(16);
        let links = LinkTable::default();
        let room = config.room.clone();
        let close_timeout_ms = config.close_timeout_ms;
        let budget = Arc::new(ReceiveBudget::new(config.receive_queue_bytes));
        let sinks = Sinks {
            messages: message_tx,
            events: event_tx,
            budget: Arc::clone(&budget),
        };
        let driver = Driver::new(config, signal_tx, rtc_tx, links.clone(), sinks);
        backend::spawn(driver.run(peers, from_bridge, rtc_rx, command_rx));
        Ok(Transport {
            peer_id,
            room,
            close_timeout_ms,
            links,
            messages,
            budget,
            events,
            commands,
        })
    }

    /// Our peer id, assigned by the signaling server.
    pub fn peer_id(&self) -> &PeerId {
        &self.peer_id
    }

    /// The room we joined.
    pub fn room(&self) -> &str {
        &self.room
    }

    /// Peers with an open data channel, sorted.
    pub fn peers(&self) -> Vec<PeerId> {
        let mut peers: Vec<PeerId> = lock(&self.links).keys().cloned().collect();
        peers.sort();
        peers
    }

    /// The next lifecycle event; `None` once the transport is closed.
    pub async fn next_event(&self) -> Option<Event> {
        self.events.recv().await.ok()
    }

    /// The next message from any peer, in arrival order (per peer: send order on a reliable
    /// channel); `None` once the transport is closed.
    pub async fn recv(&self) -> Option<Message> {
        let message = self.messages.recv().await.ok()?;
        self.budget.release(message.data.len());
        Some(message)
    }

    /// Sends `data` to `peer` as one message (binary).
    ///
    /// A message that fits one frame (≤ `max_frame_size` − 12 bytes, 16 372 by default) returns
    /// once queued, like `RTCDataChannel.send`; small messages queued together are coalesced
    /// into one frame (docs/frame.md, BATCH). A larger message returns once its last frame is
    /// handed to the data channel. Either way `send` waits while `send_queue_messages` are
    /// queued or the channel's `bufferedAmount` is over the high-water mark (backpressure), and
    /// a task's messages arrive in the order it sent them; a message sent concurrently by
    /// another task overtakes a large transfer after at most one frame.
    ///
    /// Errors: [`Error::Closed`] (after [`close`](Self::close)), [`Error::PeerNotConnected`]
    /// (no link, or it is closing), [`Error::Codec`]
    /// (message larger than `max_message_size`), and for multi-frame messages
    /// [`Error::MessageRefused`] (the peer's reassembly cap) or [`Error::Rtc`] (the channel
    /// failed). Nothing accepted is lost silently: [`close`](Self::close) delivers every queued
    /// message or fails, and single-frame messages stranded by a broken channel are reported
    /// as `Event::Error(Error::Undelivered)`.
    pub async fn send(&self, peer: &PeerId, data: impl Into<Bytes>) -> Result<()> {
        self.send_payload(peer, data.into(), false).await
    }

    /// Sends `text` to `peer` as a text message (a string in the browser API).
    pub async fn send_text(&self, peer: &PeerId, text: &str) -> Result<()> {
        self.send_payload(peer, Bytes::copy_from_slice(text.as_bytes()), true)
            .await
    }

    /// Sends `data`, marked as text when `text` (the payload must then be UTF-8).
    pub(crate) async fn send_payload(&self, peer: &PeerId, data: Bytes, text: bool) -> Result<()> {
        if self.messages.is_closed() {
            return Err(Error::Closed); // closed by `close`
        }
        self.link(peer)?.send(peer, data, text).await
    }

    /// Sends `data` to every connected peer; the first error is returned after trying all.
    /// With no peer connected it does nothing and returns `Ok`; after [`close`](Self::close)
    /// it fails with [`Error::Closed`].
    pub async fn broadcast(&self, data: impl Into<Bytes>) -> Result<()> {
        self.broadcast_payload(data.into(), false).await
    }

    /// Sends `text` to every connected peer as a text message.
    pub async fn broadcast_text(&self, text: &str) -> Result<()> {
        self.broadcast_payload(Bytes::copy_from_slice(text.as_bytes()), true)
            .await
    }

    pub(crate) async fn broadcast_payload(&self, data: Bytes, text: bool) -> Result<()> {
        if self.messages.is_closed() {
            return Err(Error::Closed); // closed by `close`
        }
        let links: Vec<(PeerId, LinkHandle)> = lock(&self.links)
            .iter()
            .map(|(p, l)| (p.clone(), l.clone()))
            .collect();
        let sends = links
            .iter()
            .map(|(peer, link)| link.send(peer, data.clone(), text));
        future::join_all(sends).await.into_iter().collect()
    }

    /// The parameters of the open data channel to `peer` as the WebRTC stack negotiated them:
    /// label, kind, `ordered`, `maxRetransmits`, `maxPacketLifeTime` (ms), the frame size we
    /// use on it and the peer's `a=max-message-size` (bytes).
    ///
    /// Errors: [`Error::PeerNotConnected`] (no open channel to `peer`).
    pub fn channel_info(&self, peer: &PeerId) -> Result<ChannelInfo> {
        Ok(self.link(peer)?.info())
    }

    /// Bytes queued in the data channel to `peer` and not yet sent (W3C
    /// `RTCDataChannel.bufferedAmount`). `send` keeps it near `send_high_water_bytes`: it
    /// pauses above that mark and resumes at `send_low_water_bytes`. Native: webrtc-rs answers
    /// only between two frames, so this may wait while its own 128 KiB pending queue is full
    /// (high-water marks above that let `send` run into it).
    ///
    /// Errors: [`Error::PeerNotConnected`] (no open channel to `peer`).
    pub async fn buffered_amount(&self, peer: &PeerId) -> Result<usize> {
        Ok(self.link(peer)?.buffered_amount().await)
    }

    fn link(&self, peer: &PeerId) -> Result<LinkHandle> {
        lock(&self.links)
            .get(peer)
            .cloned()
            .ok_or_else(|| Error::PeerNotConnected(peer.clone()))
    }

    /// The ICE candidate pair the connection to `peer` uses now: candidate types (host,
    /// srflx, prflx, relay), addresses, ports and protocol of both ends. `local` is a relay
    /// candidate when our traffic goes through TURN ([`CandidatePair::is_relayed`]). Native:
    /// webrtc-rs's ICE agent; browser: `getStats()` (the transport's selected pair).
    ///
    /// Errors: [`Error::PeerNotConnected`] (no open channel to `peer`), [`Error::Rtc`] (the
    /// stack has no selected pair, e.g. the connection just failed), [`Error::Closed`].
    pub async fn selected_candidate_pair(&self, peer: &PeerId) -> Result<CandidatePair> {
        let (reply, answer) = oneshot::channel();
        let command = Command::SelectedPair {
            peer: peer.clone(),
            reply,
        };
        self.commands
            .send(command)
            .await
            .map_err(|_| Error::Closed)?;
        answer.await.map_err(|_| Error::Closed)?
    }

    /// Closes without losing data: every message accepted by `send` is delivered and
    /// acknowledged (FIN / FIN_ACK, see `docs/frame.md`) before the channels close; then leaves
    /// the room. Waits at most `close_timeout_ms` per peer. The peer acknowledges once all we
    /// sent is in its receive queue, so it must keep reading while we close (its queue is
    /// bounded: `receive_queue_messages`, `receive_queue_bytes`). Afterwards `recv` and
    /// `next_event` return `None` (messages not read by then are dropped) and `send` and
    /// `broadcast` fail with [`Error::Closed`]; closing twice is harmless.
    ///
    /// Errors: [`Error::Timeout`] if a peer did not acknowledge in time, [`Error::Rtc`] if a
    /// channel failed while draining. The transport is closed in every case.
    pub async fn close(&self) -> Result<()> {
        let links: Vec<(PeerId, LinkHandle)> = lock(&self.links).drain().collect();
        let closes = links
            .iter()
            .map(|(peer, link)| link.close(peer, self.close_timeout_ms));
        let result: Result<()> = future::join_all(closes).await.into_iter().collect();
        let (done, wait) = oneshot::channel();
        if self.commands.send(Command::Shutdown { done }).await.is_ok() {
            let _ = wait.await;
        }
        self.messages.close();
        self.events.close();
        result
    }
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("peer_id", &self.peer_id)
            .field("room", &self.room)
            .field("peers", &self.peers())
            .finish()
    }
}

fn closed_early(config: &TransportConfig) -> Error {
    Error::Signaling {
        url: config.signaling_url.clone(),
        reason: "connection closed before welcome".into(),
    }
}

/// Opens the signaling socket, sends `join` and waits for the welcome.
async fn join_room(
    config: &TransportConfig,
) -> Result<(
    async_channel::Sender<String>,
    async_channel::Receiver<String>,
    PeerId,
    Vec<PeerId>,
    Option<TurnCredentials>,
)> {
    let (signal_tx, from_bridge) = backend::connect_signaling(&config.signaling_url).await?;
    let join = ClientMessage::Join {
        v: PROTOCOL_VERSION,
        room: config.room.clone(),
    };
    signal_tx
        .send(join.to_json())
        .await
        .map_err(|_| closed_early(config))?;
    let (peer_id, peers, turn) = wait_for_welcome(&from_bridge, config).await?;
    Ok((signal_tx, from_bridge, peer_id, peers, turn))
}

async fn wait_for_welcome(
    from_bridge: &async_channel::Receiver<String>,
    config: &TransportConfig,
) -> Result<(PeerId, Vec<PeerId>, Option<TurnCredentials>)> {
    loop {
        let text = from_bridge.recv().await.map_err(|_| closed_early(config))?;
        match ServerMessage::parse(&text)? {
            ServerMessage::Welcome {
                peer_id,
                peers,
                turn,
                ..
            } => return Ok((peer_id, peers, turn)),
            ServerMessage::Error { code, message } => {
                return Err(Error::Rejected { code, message })
            }
            other => tracing::debug!("ignored before welcome: {other:?}"),
        }
    }
}
