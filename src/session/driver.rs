//! The signaling driver: one task per transport that reacts to the bridge's messages, to the
//! backend's peer-connection events and to the handle's commands, strictly one at a time.
//! Sequential handling is deliberate: a candidate relayed after an offer is applied only once
//! that offer is, without any extra queueing.

use super::link::{self, LinkHandle, Sinks};
use super::{ArqChannel, ConnId, RtcEvent};
use crate::backend::RtcPeer;
use crate::config::{ChannelKind, TransportConfig};
use crate::error::Error;
use crate::event::Event;
use crate::ice::{self, CandidatePair, Gathered};
use crate::sdp;
use crate::signaling::negotiation::{check_description, role_for, Introduction, Role};
use crate::signaling::protocol::{ClientMessage, PeerId, SdpType, ServerMessage, Signal};
use futures::channel::oneshot;
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Open links by peer, shared between the driver (writes) and the `Transport` handle (reads).
pub(crate) type LinkTable = Arc<Mutex<HashMap<PeerId, LinkHandle>>>;

/// Requests from the `Transport` handle.
pub(crate) enum Command {
    /// Leave the room, close every peer connection, stop.
    Shutdown { done: oneshot::Sender<()> },
    /// The selected ICE candidate pair of the current connection to `peer`.
    SelectedPair {
        peer: PeerId,
        reply: oneshot::Sender<Result<CandidatePair, Error>>,
    },
}

struct PeerState {
    role: Role,
    rtc: Option<RtcPeer>,
    /// Generation of `rtc`: events from older connection attempts are ignored.
    generation: u64,
    /// Remote `a=max-message-size`, bytes; known once its SDP arrived.
    remote_max_message_size: usize,
    connected: bool,
    /// Our offer of the current generation is waiting for its answer.
    awaiting_answer: bool,
    /// A failure of the current generation was already reported.
    failure_reported: bool,
    /// Reconnection attempts since the channel was last open.
    attempts: u32,
    /// The ARQ layer's channel of the current generation, once both sides announced the
    /// layer; taken by the link when the channel opens.
    arq: Option<ArqChannel>,
    /// Both sides announced the ARQ layer for the current generation.
    arq_agreed: bool,
    /// The main channel opened before the ARQ channel: the link starts when that one does.
    pending_open: Option<PendingOpen>,
    /// Open deadline of the current attempt, ms after it started (0 before the first).
    open_deadline_ms: u64,
}

/// A main channel that opened before its link could start (see `PeerState::pending_open`).
struct PendingOpen {
    kind: ChannelKind,
    channel: crate::backend::RtcChannel,
    frames: async_channel::Receiver<bytes::Bytes>,
}

impl PeerState {
    fn new(role: Role) -> Self {
        PeerState {
            role,
            rtc: None,
            generation: 0,
            remote_max_message_size: sdp::DEFAULT_REMOTE_MAX_MESSAGE_SIZE,
            connected: false,
            awaiting_answer: false,
            failure_reported: false,
            attempts: 0,
            arq: None,
            arq_agreed: false,
            pending_open: None,
            open_deadline_ms: 0,
        }
    }
}

pub(crate) struct Driver {
    pub(crate) config: TransportConfig,
    pub(crate) signal_tx: async_channel::Sender<String>,
    pub(crate) rtc_events: async_channel::Sender<RtcEvent>,
    pub(crate) links: LinkTable,
    pub(crate) sinks: Sinks,
    peers: HashMap<PeerId, PeerState>,
    next_generation: u64,
    /// Timers fire into this: (what, peer, generation it was set for).
    timer_tx: async_channel::Sender<(Timer, PeerId, u64)>,
    timer_rx: async_channel::Receiver<(Timer, PeerId, u64)>,
}

/// Extra time the answerer gives an attempt beyond the offerer's longest open deadline, ms:
/// the answerer only reaps attempts the offerer has given up on, never one it still waits for.
const ANSWERER_OPEN_GRACE_MS: u64 = 2_000;

/// How the offerer paces the retry after a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pace {
    /// `reconnect_backoff_ms` doubled per attempt: the failure may repeat at once.
    Backoff,
    /// Now: the attempt used up its open deadline, which itself doubles per retry.
    Now,
}

/// Timers the driver sets on a (peer, generation).
#[derive(Clone, Copy, Debug)]
enum Timer {
    /// Reconnect now.
    Retry,
    /// Check that the connection opened.
    OpenDeadline,
}

enum Input {
    FromBridge(String),
    BridgeClosed,
    Rtc(RtcEvent),
    Timer(Timer, PeerId, u64),
    Command(Command),
}

impl Driver {
    pub(crate) fn new(
        config: TransportConfig,
        signal_tx: async_channel::Sender<String>,
        rtc_events: async_channel::Sender<RtcEvent>,
        links: LinkTable,
        sinks: Sinks,
    ) -> Self {
        // At most two timers per connection attempt; a bounded few are ever pending.
        let (timer_tx, timer_rx) = async_channel::bounded(64);
        Driver {
            config,
            signal_tx,
            rtc_events,
            links,
            sinks,
            peers: HashMap::new(),
            next_generation: 1,
            timer_tx,
            timer_rx,
        }
    }

    /// Runs until `Command::Shutdown`. `welcome_peers` are the peers listed in our welcome.
    pub(crate) async fn run(
        mut self,
        welcome_peers: Vec<PeerId>,
        from_bridge: async_channel::Receiver<String>,
        rtc_events: async_channel::Receiver<RtcEvent>,
        commands: async_channel::Receiver<Command>,
    ) {
        for peer in welcome_peers {
            self.introduce(peer, Introduction::InWelcome).await;
        }
        let bridge = from_bridge
            .map(Input::FromBridge)
            .chain(futures::stream::once(async { Input::BridgeClosed }));
        let timers = self
            .timer_rx
            .clone()
            .map(|(timer, peer, generation)| Input::Timer(timer, peer, generation));
        let others = futures::stream::select(
            rtc_events.map(Input::Rtc),
            futures::stream::select(timers, commands.map(Input::Command)),
        );
        let inputs = futures::stream::select(bridge, others);
        let mut inputs = std::pin::pin!(inputs);
        while let Some(input) = inputs.next().await {
            match input {
                Input::FromBridge(text) => self.on_bridge_text(&text).await,
                Input::BridgeClosed => {
                    // Open data channels do not need the bridge; only new peers are affected.
                    self.emit(Event::Error(Error::Signaling {
                        url: self.config.signaling_url.clone(),
                        reason: "connection closed by the signaling server".into(),
                    }));
                }
                Input::Rtc(event) => self.on_rtc_event(event).await,
                Input::Timer(Timer::Retry, peer, generation) => self.retry(peer, generation).await,
                Input::Timer(Timer::OpenDeadline, peer, generation) => {
                    self.check_opened(peer, generation).await
                }
                Input::Command(Command::SelectedPair { peer, reply }) => {
                    let pair = match self.peers.get(&peer) {
                        Some(PeerState {
                            rtc: Some(rtc),
                            connected: true,
                            ..
                        }) => rtc.selected_candidate_pair().await,
                        _ => Err(Error::PeerNotConnected(peer)),
                    };
                    let _ = reply.send(pair);
                }
                Input::Command(Command::Shutdown { done }) => {
                    self.shutdown().await;
                    let _ = done.send(());
                    return;
                }
            }
        }
    }

    fn emit(&self, event: Event) {
        // Events are rare; if the application never reads them the oldest are dropped rather
        // than stalling the driver.
        let _ = self.sinks.events.force_send(event);
    }

    async fn send_to_bridge(&self, message: ClientMessage) {
        if self.signal_tx.send(message.to_json()).await.is_err() {
            tracing::debug!("signaling socket closed; message dropped");
        }
    }

    async fn on_bridge_text(&mut self, text: &str) {
        let message = match ServerMessage::parse(text) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!("bad message from signaling server: {e}");
                self.emit(Event::Error(e.into()));
                return;
            }
        };
        match message {
            ServerMessage::PeerJoined { peer_id } => {
                self.introduce(peer_id, Introduction::Joined).await
            }
            ServerMessage::PeerLeft { peer_id } => {
                if let Some(rtc) = self.forget(peer_id, true) {
                    close_in_background(rtc);
                }
            }
            ServerMessage::Signal { from, signal } => self.on_signal(from, signal).await,
            ServerMessage::Error { code, message } => {
                tracing::warn!(?code, "signaling server: {message}");
                self.emit(Event::Error(Error::Rejected { code, message }));
            }
            ServerMessage::Welcome { .. } => {
                tracing::warn!("unexpected second welcome ignored");
            }
        }
    }

    async fn introduce(&mut self, peer: PeerId, how: Introduction) {
        let role = role_for(how);
        self.peers.insert(peer.clone(), PeerState::new(role));
        self.emit(Event::PeerJoined(peer.clone()));
        if role == Role::Offerer {
            if let Err(e) = self.offer(&peer).await {
                self.fail(peer, e).await;
            }
        }
    }

    /// A new connection attempt to `peer`, not yet installed (see [`Self::replace_rtc`]).
    async fn create_rtc(&mut self, peer: &PeerId) -> Result<(u64, RtcPeer), Error> {
        let generation = self.next_generation;
        self.next_generation += 1;
        let conn = ConnId {
            peer: peer.clone(),
            generation,
        };
        let rtc = RtcPeer::new(&self.config, conn, self.rtc_events.clone()).await?;
        Ok((generation, rtc))
    }

    /// Makes `rtc` (of `generation`) the current attempt with `peer`, closing the previous
    /// one. If the previous one had an open channel, that link ends here: `PeerDisconnected`
    /// now, `PeerConnected` again once the new channel opens.
    async fn replace_rtc(&mut self, peer: &PeerId, generation: u64, rtc: RtcPeer) {
        let Some(state) = self.peers.get_mut(peer) else {
            close_in_background(rtc);
            return;
        };
        state.generation = generation;
        state.failure_reported = false;
        state.awaiting_answer = false;
        state.arq = None;
        state.arq_agreed = false;
        state.pending_open = None;
        let old = state.rtc.replace(rtc);
        if std::mem::replace(&mut state.connected, false) {
            lock(&self.links).remove(peer);
            self.emit(Event::PeerDisconnected {
                peer: peer.clone(),
                reason: Some(Error::Rtc {
                    peer: peer.clone(),
                    reason: "the peer renegotiated (new offer); reconnecting".into(),
                }),
            });
        }
        if let Some(old) = old {
            close_in_background(old);
        }
    }

    fn rtc(&self, peer: &PeerId) -> Result<&RtcPeer, Error> {
        self.peers
            .get(peer)
            .and_then(|s| s.rtc.as_ref())
            .ok_or_else(|| Error::PeerNotConnected(peer.clone()))
    }

    async fn offer(&mut self, peer: &PeerId) -> Result<(), Error> {
        let (generation, rtc) = self.create_rtc(peer).await?;
        self.replace_rtc(peer, generation, rtc).await;
        let sdp = self.rtc(peer)?.create_offer().await?;
        // An attempt that never opens (the answer, every ICE check or the last DTLS flight
        // lost) counts as failed; its deadline grows with the retries.
        let retries = self.peers.get(peer).map_or(0, |s| s.attempts);
        let deadline_ms = self.config.open_deadline_ms(retries);
        if let Some(state) = self.peers.get_mut(peer) {
            state.awaiting_answer = true;
            state.open_deadline_ms = deadline_ms;
        }
        self.after(deadline_ms, peer.clone(), generation, Timer::OpenDeadline);
        let signal = Signal::Description {
            sdp_type: SdpType::Offer,
            sdp,
            arq: self
                .config
                .announces_arq()
                .then_some(crate::arq::ARQ_VERSION),
        };
        self.send_to_bridge(ClientMessage::Signal {
            to: peer.clone(),
            signal,
        })
        .await;
        Ok(())
    }

    async fn on_signal(&mut self, from: PeerId, signal: Signal) {
        match signal {
            Signal::Description { sdp_type, sdp, arq } => {
                self.on_description(from, sdp_type, sdp, arq).await
            }
            Signal::Candidate {
                candidate,
                sdp_mid,
                sdp_m_line_index,
            } => {
                self.on_candidate(from, candidate, sdp_mid, sdp_m_line_index)
                    .await
            }
        }
    }

    /// Reports a signal from `peer` that we ignore; the connection with it goes on.
    fn refuse_signal(&self, peer: &PeerId, error: Error) {
        tracing::warn!(%peer, "signal ignored: {error}");
        self.emit(Event::Error(error));
    }

    /// A trickled remote candidate. One the stack refuses does not end anything: other
    /// candidates may still work, and an attempt that never opens fails at its open deadline.
    async fn on_candidate(
        &mut self,
        from: PeerId,
        candidate: String,
        sdp_mid: Option<String>,
        sdp_m_line_index: Option<u16>,
    ) {
        let Some(rtc) = self.peers.get(&from).and_then(|s| s.rtc.as_ref()) else {
            tracing::debug!(peer = %from, "candidate before description ignored");
            return;
        };
        if let Err(e) = rtc
            .add_candidate(candidate, sdp_mid, sdp_m_line_index)
            .await
        {
            self.refuse_signal(&from, e);
        }
    }

    async fn on_description(
        &mut self,
        from: PeerId,
        sdp_type: SdpType,
        sdp: String,
        arq: Option<u8>,
    ) {
        // A peer we have not heard of yet: the bridge announces joins before relaying their
        // signals, so this only happens after that peer left; treat it as a newcomer.
        let (role, awaiting_answer) = self
            .peers
            .get(&from)
            .map_or((Role::Answerer, false), |s| (s.role, s.awaiting_answer));
        if let Err(e) = check_description(&from, role, sdp_type, awaiting_answer) {
            let reason = e.to_string();
            return self.refuse_signal(&from.clone(), Error::Rtc { peer: from, reason });
        }
        match sdp_type {
            SdpType::Offer => self.on_offer(from, role, sdp, arq).await,
            SdpType::Answer => self.on_answer(from, sdp, arq).await,
        }
    }

    /// A new offer: the first from a newcomer, or a reconnection from a known peer. The new
    /// attempt is negotiated beside the current one and replaces it only once the offer was
    /// applied, so an unusable offer cannot tear down a working connection.
    async fn on_offer(&mut self, from: PeerId, role: Role, sdp: String, arq: Option<u8>) {
        self.peers
            .entry(from.clone())
            .or_insert_with(|| PeerState::new(role));
        let (generation, rtc) = match self.create_rtc(&from).await {
            Ok(created) => created,
            Err(e) => return self.fail(from, e).await,
        };
        let answer = match rtc.accept_offer(sdp.clone()).await {
            Ok(answer) => answer,
            Err(e) => {
                close_in_background(rtc);
                return match self.peers.get(&from).is_some_and(|s| s.connected) {
                    true => self.refuse_signal(&from, e),
                    false => self.fail(from, e).await,
                };
            }
        };
        // The offerer announced the layer (only on a reliable channel, whose offer also opens
        // the layer's channel in-band) and we run it too.
        let confirmed = self.config.arq && arq.is_some_and(|v| v >= crate::arq::ARQ_VERSION);
        self.replace_rtc(&from, generation, rtc).await;
        // The offerer retries an attempt that does not open with a new offer, which replaces
        // this one; if none comes (the offerer gave up), drop it after the offerer's longest
        // deadline rather than keep a dead peer connection.
        let deadline_ms = self
            .config
            .open_deadline_cap_ms()
            .saturating_add(ANSWERER_OPEN_GRACE_MS);
        if let Some(state) = self.peers.get_mut(&from) {
            state.remote_max_message_size = sdp::max_message_size(&sdp);
            state.arq_agreed = confirmed;
            state.open_deadline_ms = deadline_ms;
        }
        self.after(deadline_ms, from.clone(), generation, Timer::OpenDeadline);
        let signal = Signal::Description {
            sdp_type: SdpType::Answer,
            sdp: answer,
            arq: confirmed.then_some(crate::arq::ARQ_VERSION),
        };
        self.send_to_bridge(ClientMessage::Signal { to: from, signal })
            .await;
    }

    /// The answer to our pending offer (checked by `check_description`).
    async fn on_answer(&mut self, from: PeerId, sdp: String, arq: Option<u8>) {
        let Some(state) = self.peers.get_mut(&from) else {
            return;
        };
        let Some(rtc) = &state.rtc else {
            // The attempt was abandoned (and reported) before its answer came.
            tracing::debug!(peer = %from, "answer for an abandoned attempt ignored");
            return;
        };
        state.awaiting_answer = false;
        state.remote_max_message_size = sdp::max_message_size(&sdp);
        if let Err(e) = rtc.accept_answer(sdp).await {
            // Our offer can never complete now: the attempt failed (and is retried).
            return self.fail(from, e).await;
        }
        // The answerer confirmed the layer we announced (our offer opened its channel).
        if let Some(state) = self.peers.get_mut(&from) {
            state.arq_agreed = self.config.announces_arq() && arq.is_some();
        }
    }

    async fn on_rtc_event(&mut self, event: RtcEvent) {
        let conn = event.conn();
        if self.peers.get(&conn.peer).map(|s| s.generation) != Some(conn.generation) {
            tracing::debug!(%conn, "event from a replaced connection ignored");
            return;
        }
        match event {
            RtcEvent::LocalCandidate { peer, signal } => {
                self.send_to_bridge(ClientMessage::Signal {
                    to: peer.peer,
                    signal,
                })
                .await;
            }
            RtcEvent::ChannelOpen {
                peer: conn,
                kind,
                channel,
                frames,
            } => {
                let Some(state) = self.peers.get_mut(&conn.peer) else {
                    return;
                };
                let open = PendingOpen {
                    kind,
                    channel,
                    frames,
                };
                if state.arq_agreed && kind == ChannelKind::Reliable && state.arq.is_none() {
                    // The ARQ channel's DATA_CHANNEL_OPEN is still on its way.
                    state.pending_open = Some(open);
                    return;
                }
                let arq = state.arq.take().filter(|_| kind == ChannelKind::Reliable);
                self.open_link(conn, open, arq).await;
            }
            RtcEvent::ArqChannelOpen { peer: conn, arq } => {
                let Some(state) = self.peers.get_mut(&conn.peer) else {
                    return;
                };
                if !state.arq_agreed {
                    // The offerer opened it, but one side does not run the layer: v1 frames.
                    crate::backend::spawn(async move { arq.channel.close().await });
                    return;
                }
                match state.pending_open.take() {
                    Some(open) => self.open_link(conn, open, Some(arq)).await,
                    None => state.arq = Some(arq),
                }
            }
            RtcEvent::Closed {
                peer: ConnId { peer, generation },
                reason,
            } => {
                lock(&self.links).remove(&peer);
                let Some(state) = self.peers.get_mut(&peer) else {
                    return;
                };
                let was_connected = std::mem::replace(&mut state.connected, false);
                let new_failure =
                    reason.is_some() && !std::mem::replace(&mut state.failure_reported, true);
                if was_connected || new_failure {
                    let reason = reason.map(|reason| Error::Rtc {
                        peer: peer.clone(),
                        reason,
                    });
                    self.emit(Event::PeerDisconnected {
                        peer: peer.clone(),
                        reason,
                    });
                }
                if new_failure {
                    self.schedule_retry(peer, generation, Pace::Backoff);
                }
            }
            RtcEvent::GatheringDone {
                peer: conn,
                gathered,
            } => {
                let Some(error) = ice::turn_failure(&self.config, &conn.peer, &gathered) else {
                    return;
                };
                tracing::warn!(peer = %conn.peer, "{error}");
                if !matches!(error, Error::Turn { fatal: true, .. }) {
                    self.emit(Event::Error(error));
                    return;
                }
                // Relay-only with no relay candidate can never connect: fail now rather than
                // at the open deadline, with the error that says why.
                self.abandon(conn, error).await;
            }
        }
    }

    /// Starts the link over an open main channel (with the ARQ channel when both run the
    /// layer) and reports the peer connected.
    async fn open_link(&mut self, conn: ConnId, open: PendingOpen, arq: Option<ArqChannel>) {
        let PendingOpen {
            kind,
            channel,
            frames,
        } = open;
        let peer = conn.peer.clone();
        let Some(state) = self.peers.get_mut(&peer) else {
            return;
        };
        let settings = self
            .config
            .link_settings(kind, state.remote_max_message_size);
        if settings.max_frame_size < crate::codec::MIN_FRAME_SIZE {
            // No frame fits the peer's a=max-message-size: this link can never carry
            // a message, and reconnecting would not change the peer's limit.
            let reason = format!(
                "the peer's a=max-message-size ({} bytes) is below the {} bytes a \
                 frame needs",
                state.remote_max_message_size,
                crate::codec::MIN_FRAME_SIZE
            );
            state.attempts = u32::MAX;
            return self.abandon(conn, Error::Rtc { peer, reason }).await;
        }
        state.connected = true;
        state.attempts = 0;
        if kind != self.config.channel {
            tracing::info!(%peer, ?kind, "using the offerer's channel kind");
        }
        let handle = link::start(
            peer.clone(),
            channel,
            frames,
            arq,
            settings,
            self.sinks.clone(),
        );
        lock(&self.links).insert(peer.clone(), handle);
        self.emit(Event::PeerConnected(peer));
    }

    /// Drops the attempt `conn` (still the current one) as failed with `error`: reported once
    /// as the reason of `PeerDisconnected`, then retried like any failure.
    async fn abandon(&mut self, conn: ConnId, error: Error) {
        self.abandon_paced(conn, error, Pace::Backoff).await
    }

    /// [`Self::abandon`], with the retry paced by `pace`.
    async fn abandon_paced(&mut self, conn: ConnId, error: Error, pace: Pace) {
        let Some(state) = self.peers.get_mut(&conn.peer) else {
            return;
        };
        if let Some(rtc) = state.rtc.take() {
            close_in_background(rtc);
        }
        lock(&self.links).remove(&conn.peer);
        state.connected = false;
        if !std::mem::replace(&mut state.failure_reported, true) {
            self.emit(Event::PeerDisconnected {
                peer: conn.peer.clone(),
                reason: Some(error),
            });
            self.schedule_retry(conn.peer, conn.generation, pace);
        }
    }

    /// After a connection failure with a peer still in the room, the offerer of the pair tries
    /// again with a fresh connection, up to `reconnect_attempts` times: after a failure backing
    /// off (`reconnect_backoff_ms` doubled per attempt, at most 8 s), after an open timeout at
    /// once (the next deadline is twice as long). The answerer waits for the new offer.
    fn schedule_retry(&mut self, peer: PeerId, generation: u64, pace: Pace) {
        let Some(state) = self.peers.get_mut(&peer) else {
            return;
        };
        if state.role != Role::Offerer || state.attempts >= self.config.reconnect_attempts {
            return;
        }
        let delay_ms = match pace {
            Pace::Now => 0,
            Pace::Backoff => self
                .config
                .reconnect_backoff_ms
                .saturating_mul(1 << state.attempts.min(16))
                .min(8_000),
        };
        state.attempts += 1;
        tracing::info!(%peer, attempt = state.attempts, delay_ms, "reconnecting");
        self.after(delay_ms, peer, generation, Timer::Retry);
    }

    /// Fires `timer` for (`peer`, `generation`) in `ms` milliseconds.
    fn after(&self, ms: u64, peer: PeerId, generation: u64, timer: Timer) {
        let timer_tx = self.timer_tx.clone();
        crate::backend::spawn(async move {
            crate::backend::sleep_ms(ms).await;
            let _ = timer_tx.send((timer, peer, generation)).await;
        });
    }

    /// The open deadline of an attempt passed: if it is still the current one and not open,
    /// drop it and treat it as a failure (on the offerer's side retried at once).
    async fn check_opened(&mut self, peer: PeerId, generation: u64) {
        let Some(state) = self.peers.get_mut(&peer) else {
            return;
        };
        if state.generation != generation || state.connected {
            return;
        }
        let deadline_ms = state.open_deadline_ms;
        let cap_ms = self.config.open_deadline_cap_ms();
        if (state.pending_open.is_some() || state.arq.is_some()) && deadline_ms < cap_ms {
            // One of the two channels (main, ARQ) is open, so SCTP is up and the other's
            // DATA_CHANNEL_OPEN is being retransmitted by SCTP (≥ 1 s per loss in webrtc-rs):
            // a fresh connection would only start over. Give it the full cap.
            state.open_deadline_ms = cap_ms;
            self.after(cap_ms - deadline_ms, peer, generation, Timer::OpenDeadline);
            return;
        }
        // Relay-only and still no relay candidate: the TURN server is the reason (a browser
        // gives up on an unreachable one only after ~40 s, webrtc-rs after ~8 s).
        let gathered = Gathered {
            relay_candidates: state.rtc.as_ref().map_or(0, |rtc| rtc.relay_candidates()),
            turn_errors: vec![format!("no relay candidate within {deadline_ms} ms")],
        };
        if let Some(error @ Error::Turn { fatal: true, .. }) =
            ice::turn_failure(&self.config, &peer, &gathered)
        {
            if deadline_ms < cap_ms {
                // A slow TURN allocation is still under way: starting over would restart it.
                // Give it the full cap before blaming the server, as before retries grew.
                state.open_deadline_ms = cap_ms;
                self.after(cap_ms - deadline_ms, peer, generation, Timer::OpenDeadline);
                return;
            }
            tracing::warn!(%peer, "{error}");
            return self.abandon(ConnId { peer, generation }, error).await;
        }
        tracing::info!(%peer, deadline_ms, "no open data channel in time; dropping the attempt");
        let reason = format!("no open data channel after {deadline_ms} ms");
        let error = Error::Rtc {
            peer: peer.clone(),
            reason,
        };
        self.abandon_paced(ConnId { peer, generation }, error, Pace::Now)
            .await;
    }

    async fn retry(&mut self, peer: PeerId, failed_generation: u64) {
        let current = self.peers.get(&peer).map(|s| (s.generation, s.connected));
        if current != Some((failed_generation, false)) {
            return; // the peer left, or a newer connection exists
        }
        if let Err(e) = self.offer(&peer).await {
            self.fail(peer, e).await;
        }
    }

    /// Negotiating the current attempt with `peer` failed: drop it like any failed attempt
    /// (reported once, then retried by the offerer, see [`Self::abandon`]).
    async fn fail(&mut self, peer: PeerId, error: Error) {
        tracing::warn!(%peer, "negotiation failed: {error}");
        let Some(generation) = self.peers.get(&peer).map(|s| s.generation) else {
            return;
        };
        self.abandon(ConnId { peer, generation }, error).await;
    }

    /// Drops everything about `peer`; returns its connection, still to be closed.
    fn forget(&mut self, peer: PeerId, announce: bool) -> Option<RtcPeer> {
        lock(&self.links).remove(&peer);
        let mut rtc = None;
        if let Some(state) = self.peers.remove(&peer) {
            rtc = state.rtc;
            if state.connected {
                self.emit(Event::PeerDisconnected {
                    peer: peer.clone(),
                    reason: None,
                });
            }
        }
        if announce {
            self.emit(Event::PeerLeft(peer));
        }
        rtc
    }

    /// Leaves the room and closes every peer connection, waiting for those closes at most
    /// [`SHUTDOWN_CLOSE_MS`] (the FIN exchange already delivered everything; this only tells
    /// the peers' stacks at once instead of by their ICE timeouts).
    async fn shutdown(&mut self) {
        self.send_to_bridge(ClientMessage::Leave).await;
        let peers: Vec<PeerId> = self.peers.keys().cloned().collect();
        let rtcs: Vec<RtcPeer> = peers
            .into_iter()
            .filter_map(|peer| self.forget(peer, false))
            .collect();
        let closing = futures::future::join_all(rtcs.iter().map(RtcPeer::close));
        let bound = crate::backend::sleep_ms(SHUTDOWN_CLOSE_MS);
        if let futures::future::Either::Right(_) =
            futures::future::select(Box::pin(closing), Box::pin(bound)).await
        {
            tracing::debug!("peer connections still closing after {SHUTDOWN_CLOSE_MS} ms");
        }
        self.signal_tx.close();
    }
}

/// How long `shutdown` waits for the peer connections to close, ms.
const SHUTDOWN_CLOSE_MS: u64 = 2_000;

/// Closes `rtc` without holding up the driver: webrtc-rs's close of a connection whose peer
/// vanished can take long, and was seen to hang, which would stall every later event.
fn close_in_background(rtc: RtcPeer) {
    crate::backend::spawn(async move { rtc.close().await });
}

/// Locks the link table; a poisoned lock (a panic elsewhere) still holds a usable table.
pub(crate) fn lock(links: &LinkTable) -> std::sync::MutexGuard<'_, HashMap<PeerId, LinkHandle>> {
    links
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
