//! One webrtc-rs `RTCPeerConnection` per remote peer, with one data channel.

use crate::channel_info::ChannelParameters;
use crate::config::{ChannelKind, IceTransportPolicy, TransportConfig};
use crate::error::{Error, Result};
use crate::ice::{CandidateInfo, CandidatePair, CandidateType, Gathered};
use crate::sdp;
use crate::session::ConnId;
use crate::session::RtcEvent;
use crate::session::{ArqChannel, ARQ_CHANNEL_LABEL, ARQ_DATAGRAM_QUEUE};
use crate::signaling::protocol::Signal;
use bytes::Bytes;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use webrtc::api::setting_engine::SettingEngine;
use webrtc::api::APIBuilder;
use webrtc::data_channel::data_channel_init::RTCDataChannelInit;
use webrtc::data_channel::data_channel_state::RTCDataChannelState;
use webrtc::data_channel::RTCDataChannel;
use webrtc::ice::mdns::MulticastDnsMode;
use webrtc::ice_transport::ice_candidate::{RTCIceCandidate, RTCIceCandidateInit};
use webrtc::ice_transport::ice_candidate_type::RTCIceCandidateType;
use webrtc::ice_transport::ice_server::RTCIceServer;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::peer_connection::policy::ice_transport_policy::RTCIceTransportPolicy;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::peer_connection::RTCPeerConnection;

/// What we advertise as `a=max-message-size`: webrtc-rs 0.17 reads each message into a
/// 65 535-byte buffer, and a larger message silently closes the channel.
const RECEIVE_LIMIT_BYTES: usize = 65_535;

/// A peer connection to one remote peer.
pub(crate) struct RtcPeer {
    pc: Arc<RTCPeerConnection>,
    peer: ConnId,
    kind: ChannelKind,
    /// Our offers announce the ARQ layer, so they also open its channel.
    announce_arq: bool,
    /// Received frames buffered per channel (`receive_queue_frames`).
    frame_queue: usize,
    events: async_channel::Sender<RtcEvent>,
    /// Relay candidates gathered so far.
    relays: Arc<AtomicUsize>,
}

impl RtcPeer {
    /// Creates the peer connection. Browsers' `<uuid>.local` host candidates are resolved by
    /// webrtc-rs's mDNS client (query only: we never publish our own `.local` names).
    pub(crate) async fn new(
        config: &TransportConfig,
        peer: ConnId,
        events: async_channel::Sender<RtcEvent>,
    ) -> Result<Self> {
        let mut settings = SettingEngine::default();
        settings.set_ice_multicast_dns_mode(MulticastDnsMode::QueryOnly);
        // A peer-reflexive pair here is a host address we learned from the peer's first check
        // before its trickled candidate arrived (always so for a browser's `.local` names):
        // as direct as a host pair, so do not hold nomination back the default 1 s for it.
        settings.set_prflx_acceptance_min_wait(Some(std::time::Duration::ZERO));
        let ms = std::time::Duration::from_millis;
        settings.set_ice_timeouts(
            Some(ms(config.ice_disconnected_timeout_ms)),
            Some(ms(config.ice_failed_timeout_ms)),
            // Keepalives must come well within the disconnected timeout (default 2 s).
            Some(ms(
                (config.ice_disconnected_timeout_ms / 3).clamp(100, 2_000)
            )),
        );
        let policy = match config.ice_transport_policy {
            IceTransportPolicy::All => RTCIceTransportPolicy::All,
            IceTransportPolicy::Relay => {
                // Every pair is a relay pair: waiting (2 s by default) for a better one to
                // show up before nominating only delays the open.
                settings.set_relay_acceptance_min_wait(Some(std::time::Duration::ZERO));
                RTCIceTransportPolicy::Relay
            }
        };
        let api = APIBuilder::new().with_setting_engine(settings).build();
        let ice_servers = config
            .ice_servers
            .iter()
            .map(|s| RTCIceServer {
                urls: s.urls.clone(),
                username: s.username.clone(),
                credential: s.credential.clone(),
            })
            .collect();
        let pc = api
            .new_peer_connection(RTCConfiguration {
                ice_servers,
                ice_transport_policy: policy,
                ..Default::default()
            })
            .await
            .map_err(|e| rtc_error(&peer, e))?;
        let this = RtcPeer {
            pc: Arc::new(pc),
            peer,
            kind: config.channel,
            announce_arq: config.announces_arq(),
            frame_queue: config.receive_queue_frames,
            events,
            relays: Arc::default(),
        };
        this.forward_candidates();
        this.watch_connection_state();
        this.accept_remote_channels();
        Ok(this)
    }

    /// Trickles local candidates, counting relay ones; `None` (gathering complete) reports
    /// the count, so a TURN server that gave nothing is noticed at once.
    fn forward_candidates(&self) {
        let (events, peer) = (self.events.clone(), self.peer.clone());
        let relays = Arc::clone(&self.relays);
        self.pc.on_ice_candidate(Box::new(move |candidate| {
            let (events, peer, relays) = (events.clone(), peer.clone(), Arc::clone(&relays));
            Box::pin(async move {
                let Some(candidate) = candidate else {
                    let gathered = Gathered {
                        relay_candidates: relays.load(Ordering::Relaxed),
                        turn_errors: Vec::new(),
                    };
                    let _ = events
                        .send(RtcEvent::GatheringDone { peer, gathered })
                        .await;
                    return;
                };
                if candidate.typ == RTCIceCandidateType::Relay {
                    relays.fetch_add(1, Ordering::Relaxed);
                }
                let Ok(init) = candidate.to_json() else {
                    return;
                };
                let signal = Signal::Candidate {
                    candidate: init.candidate,
                    sdp_mid: init.sdp_mid,
                    sdp_m_line_index: init.sdp_mline_index,
                };
                let _ = events.send(RtcEvent::LocalCandidate { peer, signal }).await;
            })
        }));
    }

    fn watch_connection_state(&self) {
        let (events, peer) = (self.events.clone(), self.peer.clone());
        self.pc
            .on_peer_connection_state_change(Box::new(move |state| {
                let (events, peer) = (events.clone(), peer.clone());
                Box::pin(async move {
                    if state == RTCPeerConnectionState::Failed {
                        let reason = Some("ICE/DTLS connection failed".to_owned());
                        let _ = events.send(RtcEvent::Closed { peer, reason }).await;
                    }
                })
            }));
    }

    fn accept_remote_channels(&self) {
        let (events, peer, frame_queue) =
            (self.events.clone(), self.peer.clone(), self.frame_queue);
        self.pc.on_data_channel(Box::new(move |dc| {
            let (events, peer) = (events.clone(), peer.clone());
            Box::pin(async move {
                if let Some(kind) = ChannelKind::from_label(dc.label()) {
                    wire_channel(dc, peer, kind, events, frame_queue).await;
                } else if dc.label() == ARQ_CHANNEL_LABEL {
                    wire_arq_channel(dc, peer, events).await;
                } else {
                    tracing::warn!(%peer, label = dc.label(), "ignoring data channel with unknown label");
                }
            })
        }));
    }

    /// Creates our data channel and an offer; returns the SDP to send.
    pub(crate) async fn create_offer(&self) -> Result<String> {
        let init = match self.kind {
            ChannelKind::Reliable => RTCDataChannelInit {
                ordered: Some(true),
                ..Default::default()
            },
            ChannelKind::Unreliable => RTCDataChannelInit {
                ordered: Some(false),
                max_retransmits: Some(0),
                ..Default::default()
            },
        };
        let dc = self
            .pc
            .create_data_channel(self.kind.label(), Some(init))
            .await
            .map_err(|e| rtc_error(&self.peer, e))?;
        wire_channel(
            dc,
            self.peer.clone(),
            self.kind,
            self.events.clone(),
            self.frame_queue,
        )
        .await;
        if self.announce_arq {
            // In-band (DATA_CHANNEL_OPEN, RFC 8832), not negotiated: webrtc-data 0.17.2 applies
            // `ordered` / `maxRetransmits` to the SCTP stream only in that handshake, so a
            // negotiated channel would stay ordered and reliable. A peer that does not run the
            // layer ignores the unknown label.
            let init = RTCDataChannelInit {
                ordered: Some(false),
                max_retransmits: Some(0),
                ..Default::default()
            };
            let dc = self
                .pc
                .create_data_channel(ARQ_CHANNEL_LABEL, Some(init))
                .await
                .map_err(|e| rtc_error(&self.peer, e))?;
            wire_arq_channel(dc, self.peer.clone(), self.events.clone()).await;
        }
        let offer = self
            .pc
            .create_offer(None)
            .await
            .map_err(|e| rtc_error(&self.peer, e))?;
        self.set_local(offer).await
    }

    /// Applies a remote offer and returns our answer's SDP.
    pub(crate) async fn accept_offer(&self, sdp: String) -> Result<String> {
        let offer = RTCSessionDescription::offer(sdp).map_err(|e| rtc_error(&self.peer, e))?;
        self.pc
            .set_remote_description(offer)
            .await
            .map_err(|e| rtc_error(&self.peer, e))?;
        let answer = self
            .pc
            .create_answer(None)
            .await
            .map_err(|e| rtc_error(&self.peer, e))?;
        self.set_local(answer).await
    }

    /// Applies the remote answer to our offer.
    pub(crate) async fn accept_answer(&self, sdp: String) -> Result<()> {
        let answer = RTCSessionDescription::answer(sdp).map_err(|e| rtc_error(&self.peer, e))?;
        self.pc
            .set_remote_description(answer)
            .await
            .map_err(|e| rtc_error(&self.peer, e))
    }

    async fn set_local(&self, description: RTCSessionDescription) -> Result<String> {
        let sdp = description.sdp.clone();
        self.pc
            .set_local_description(description)
            .await
            .map_err(|e| rtc_error(&self.peer, e))?;
        Ok(sdp::advertise_max_message_size(&sdp, RECEIVE_LIMIT_BYTES))
    }

    /// Adds a trickled remote ICE candidate.
    pub(crate) async fn add_candidate(
        &self,
        candidate: String,
        sdp_mid: Option<String>,
        sdp_m_line_index: Option<u16>,
    ) -> Result<()> {
        let init = RTCIceCandidateInit {
            candidate,
            sdp_mid,
            sdp_mline_index: sdp_m_line_index,
            username_fragment: None,
        };
        self.pc
            .add_ice_candidate(init)
            .await
            .map_err(|e| rtc_error(&self.peer, e))
    }

    /// Relay candidates gathered so far.
    pub(crate) fn relay_candidates(&self) -> usize {
        self.relays.load(Ordering::Relaxed)
    }

    /// The candidate pair the ICE agent selected (through SCTP → DTLS → ICE transport).
    pub(crate) async fn selected_candidate_pair(&self) -> Result<CandidatePair> {
        let pair = self
            .pc
            .sctp()
            .transport()
            .ice_transport()
            .get_selected_candidate_pair()
            .await
            .ok_or_else(|| Error::Rtc {
                peer: self.peer.peer.clone(),
                reason: "no selected ICE candidate pair".into(),
            })?;
        Ok(CandidatePair {
            local: candidate_info(&pair.local),
            remote: candidate_info(&pair.remote),
        })
    }

    /// Closes the connection and its channels.
    pub(crate) async fn close(&self) {
        if let Err(e) = self.pc.close().await {
            tracing::debug!(peer = %self.peer, "close: {e}");
        }
    }
}

/// Hooks a data channel's callbacks to the session: frames into a bounded queue (awaited, so a
/// slow reader slows webrtc-rs's SCTP reads instead of growing memory), open and close as events.
async fn wire_channel(
    dc: Arc<RTCDataChannel>,
    peer: ConnId,
    kind: ChannelKind,
    events: async_channel::Sender<RtcEvent>,
    frame_queue: usize,
) {
    let (frames_tx, frames_rx) = async_channel::bounded::<Bytes>(frame_queue);
    let frames_end = frames_tx.clone();
    dc.on_message(Box::new(move |message| {
        let frames_tx = frames_tx.clone();
        Box::pin(async move {
            let _ = frames_tx.send(message.data).await;
        })
    }));
    let channel = RtcChannel::new(Arc::clone(&dc)).await;
    let (close_events, close_peer) = (events.clone(), peer.clone());
    dc.on_close(Box::new(move || {
        // webrtc-rs calls on_close after the last on_message of its read loop: closing the
        // queue lets the reader finish what is in it and then see the end, in order.
        frames_end.close();
        let (events, peer) = (close_events.clone(), close_peer.clone());
        Box::pin(async move {
            let _ = events.send(RtcEvent::Closed { peer, reason: None }).await;
        })
    }));
    dc.on_open(Box::new(move || {
        Box::pin(async move {
            let _ = events
                .send(RtcEvent::ChannelOpen {
                    peer,
                    kind,
                    channel,
                    frames: frames_rx,
                })
                .await;
        })
    }));
}

/// Hooks the ARQ layer's channel: datagrams into a bounded queue that drops when full (the
/// layer recovers them; awaiting would stall SCTP's reads), its open as an event.
async fn wire_arq_channel(
    dc: Arc<RTCDataChannel>,
    peer: ConnId,
    events: async_channel::Sender<RtcEvent>,
) {
    let (datagrams_tx, datagrams) = async_channel::bounded::<Bytes>(ARQ_DATAGRAM_QUEUE);
    let ended = datagrams_tx.clone();
    dc.on_message(Box::new(move |message| {
        let _ = datagrams_tx.try_send(message.data);
        Box::pin(async {})
    }));
    dc.on_close(Box::new(move || {
        ended.close();
        Box::pin(async {})
    }));
    let channel = RtcChannel::new(Arc::clone(&dc)).await;
    let arq = ArqChannel { channel, datagrams };
    dc.on_open(Box::new(move || {
        Box::pin(async move {
            let _ = events.send(RtcEvent::ArqChannelOpen { peer, arq }).await;
        })
    }));
}

/// Sending half of an open data channel.
#[derive(Clone)]
pub(crate) struct RtcChannel {
    dc: Arc<RTCDataChannel>,
    low: async_channel::Receiver<()>,
}

impl RtcChannel {
    async fn new(dc: Arc<RTCDataChannel>) -> Self {
        // One pending wake-up is enough: the waiter re-reads bufferedAmount after each.
        let (low_tx, low) = async_channel::bounded(1);
        dc.on_buffered_amount_low(Box::new(move || {
            let _ = low_tx.try_send(());
            Box::pin(async {})
        }))
        .await;
        RtcChannel { dc, low }
    }

    /// Hands one frame to SCTP. Errors carry webrtc-rs's message.
    pub(crate) async fn send(&self, frame: Bytes) -> std::result::Result<(), String> {
        self.dc
            .send(&frame)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// The channel's label and reliability, as webrtc-rs negotiated them.
    pub(crate) fn parameters(&self) -> ChannelParameters {
        ChannelParameters {
            label: self.dc.label().to_owned(),
            ordered: self.dc.ordered(),
            max_retransmits: self.dc.max_retransmits(),
            max_packet_life_time_ms: self.dc.max_packet_lifetime(),
        }
    }

    /// Bytes queued in SCTP and not yet sent (`bufferedAmount`).
    pub(crate) async fn buffered_amount(&self) -> usize {
        self.dc.buffered_amount().await
    }

    /// Waits until `bufferedAmount` is at most `bytes` (set as the `bufferedamountlow`
    /// threshold) or the channel is no longer open.
    pub(crate) async fn wait_buffered_amount_low(&self, bytes: usize) {
        self.dc.set_buffered_amount_low_threshold(bytes).await;
        while self.dc.buffered_amount().await > bytes
            && self.dc.ready_state() == RTCDataChannelState::Open
        {
            // The event is the fast path; the timeout only guards against a missed event.
            let _ =
                tokio::time::timeout(std::time::Duration::from_millis(50), self.low.recv()).await;
        }
    }

    /// Closes the data channel.
    pub(crate) async fn close(&self) {
        let _ = self.dc.close().await;
    }
}

fn candidate_info(c: &RTCIceCandidate) -> CandidateInfo {
    let candidate_type = match c.typ {
        RTCIceCandidateType::Srflx => CandidateType::Srflx,
        RTCIceCandidateType::Prflx => CandidateType::Prflx,
        RTCIceCandidateType::Relay => CandidateType::Relay,
        RTCIceCandidateType::Host | RTCIceCandidateType::Unspecified => CandidateType::Host,
    };
    CandidateInfo {
        candidate_type,
        address: c.address.clone(),
        port: c.port,
        protocol: c.protocol.to_string(),
    }
}

fn rtc_error(conn: &ConnId, e: webrtc::Error) -> Error {
    Error::Rtc {
        peer: conn.peer.clone(),
        reason: e.to_string(),
    }
}
