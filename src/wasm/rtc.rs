//! One browser `RTCPeerConnection` per remote peer, with one data channel.

use super::js_text;
use crate::channel_info::ChannelParameters;
use crate::config::{ChannelKind, IceTransportPolicy, TransportConfig};
use crate::error::{Error, Result};
use crate::ice::{CandidateInfo, CandidatePair, CandidateType, Gathered};
use crate::session::ConnId;
use crate::session::RtcEvent;
use crate::session::{ArqChannel, ARQ_CHANNEL_LABEL, ARQ_DATAGRAM_QUEUE};
use crate::signaling::protocol::Signal;
use bytes::Bytes;
use std::cell::RefCell;
use std::rc::Rc;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    Event, MessageEvent, RtcConfiguration, RtcDataChannel, RtcDataChannelEvent, RtcDataChannelInit,
    RtcDataChannelState, RtcDataChannelType, RtcIceCandidateInit, RtcIceServer,
    RtcIceTransportPolicy, RtcPeerConnection, RtcPeerConnectionIceErrorEvent,
    RtcPeerConnectionIceEvent, RtcPeerConnectionState, RtcSdpType, RtcSessionDescriptionInit,
};

/// Callbacks registered on browser objects; kept alive here and detached on close.
#[derive(Default)]
struct Callbacks {
    channels: Vec<RtcDataChannel>,
    closures: Vec<Box<dyn std::any::Any>>,
    /// Listeners added with `addEventListener` (events without an `on…` setter in web-sys).
    listeners: Vec<(&'static str, js_sys::Function)>,
}

/// A peer connection to one remote peer.
pub(crate) struct RtcPeer {
    pc: RtcPeerConnection,
    peer: ConnId,
    kind: ChannelKind,
    /// Our offers announce the ARQ layer, so they also open its channel.
    announce_arq: bool,
    /// Received frames buffered per channel (`receive_queue_frames`).
    frame_queue: usize,
    events: async_channel::Sender<RtcEvent>,
    callbacks: Rc<RefCell<Callbacks>>,
    /// Relay candidates gathered so far.
    relays: Rc<std::cell::Cell<usize>>,
}

/// Delivers an event without ever dropping it: a full queue defers it to a task.
fn post(events: &async_channel::Sender<RtcEvent>, event: RtcEvent) {
    if let Err(async_channel::TrySendError::Full(event)) = events.try_send(event) {
        let events = events.clone();
        wasm_bindgen_futures::spawn_local(async move {
            let _ = events.send(event).await;
        });
    }
}

impl RtcPeer {
    /// Creates the peer connection with the configured ICE servers (default none).
    pub(crate) async fn new(
        config: &TransportConfig,
        peer: ConnId,
        events: async_channel::Sender<RtcEvent>,
    ) -> Result<Self> {
        let rtc_config = RtcConfiguration::new();
        let servers = js_sys::Array::new();
        for server in &config.ice_servers {
            let ice = RtcIceServer::new();
            let urls: js_sys::Array = server.urls.iter().map(|u| JsValue::from_str(u)).collect();
            ice.set_urls(&urls);
            if !server.username.is_empty() {
                ice.set_username(&server.username);
                ice.set_credential(&server.credential);
            }
            servers.push(&ice);
        }
        rtc_config.set_ice_servers(&servers);
        rtc_config.set_ice_transport_policy(match config.ice_transport_policy {
            IceTransportPolicy::All => RtcIceTransportPolicy::All,
            IceTransportPolicy::Relay => RtcIceTransportPolicy::Relay,
        });
        let pc =
            RtcPeerConnection::new_with_configuration(&rtc_config).map_err(|e| Error::Rtc {
                peer: peer.peer.clone(),
                reason: js_text(&e),
            })?;
        let this = RtcPeer {
            pc,
            peer,
            kind: config.channel,
            announce_arq: config.announces_arq(),
            frame_queue: config.receive_queue_frames,
            events,
            callbacks: Rc::default(),
            relays: Rc::default(),
        };
        this.forward_candidates();
        this.watch_connection_state();
        this.accept_remote_channels();
        Ok(this)
    }

    fn keep(&self, closure: impl std::any::Any) {
        self.callbacks.borrow_mut().closures.push(Box::new(closure));
    }

    /// Trickles local candidates, counting relay ones and collecting TURN errors
    /// (`icecandidateerror`); at the end of gathering (a `null` candidate) reports both, so a
    /// TURN server that gave nothing is noticed at once.
    fn forward_candidates(&self) {
        let (events, peer) = (self.events.clone(), self.peer.clone());
        let gathered = Rc::new(RefCell::new(Gathered::default()));
        let errors = Rc::clone(&gathered);
        let relays = Rc::clone(&self.relays);
        let on_error = Closure::<dyn FnMut(RtcPeerConnectionIceErrorEvent)>::new(
            move |event: RtcPeerConnectionIceErrorEvent| {
                let url = event.url();
                // Only TURN errors explain a missing relay candidate (STUN ones are noise).
                if url.starts_with("turn") {
                    let text = format!("{url}: {} {}", event.error_code(), event.error_text());
                    errors.borrow_mut().turn_errors.push(text);
                }
            },
        );
        let listener: &js_sys::Function = on_error.as_ref().unchecked_ref();
        let _ = self
            .pc
            .add_event_listener_with_callback("icecandidateerror", listener);
        self.callbacks
            .borrow_mut()
            .listeners
            .push(("icecandidateerror", listener.clone()));
        self.keep(on_error);
        let closure = Closure::<dyn FnMut(RtcPeerConnectionIceEvent)>::new(
            move |event: RtcPeerConnectionIceEvent| {
                let Some(candidate) = event.candidate() else {
                    let gathered = std::mem::take(&mut *gathered.borrow_mut());
                    let peer = peer.clone();
                    post(&events, RtcEvent::GatheringDone { peer, gathered });
                    return;
                };
                if candidate.candidate().is_empty() {
                    return; // end-of-candidates marker
                }
                if candidate.candidate().contains(" typ relay") {
                    gathered.borrow_mut().relay_candidates += 1;
                    relays.set(relays.get() + 1);
                }
                let signal = Signal::Candidate {
                    candidate: candidate.candidate(),
                    sdp_mid: candidate.sdp_mid(),
                    sdp_m_line_index: candidate.sdp_m_line_index(),
                };
                post(
                    &events,
                    RtcEvent::LocalCandidate {
                        peer: peer.clone(),
                        signal,
                    },
                );
            },
        );
        self.pc
            .set_onicecandidate(Some(closure.as_ref().unchecked_ref()));
        self.keep(closure);
    }

    fn watch_connection_state(&self) {
        let (events, peer, pc) = (self.events.clone(), self.peer.clone(), self.pc.clone());
        let closure = Closure::<dyn FnMut(Event)>::new(move |_: Event| {
            if pc.connection_state() == RtcPeerConnectionState::Failed {
                let reason = Some("ICE/DTLS connection failed".to_owned());
                post(
                    &events,
                    RtcEvent::Closed {
                        peer: peer.clone(),
                        reason,
                    },
                );
            }
        });
        self.pc
            .set_onconnectionstatechange(Some(closure.as_ref().unchecked_ref()));
        self.keep(closure);
    }

    fn accept_remote_channels(&self) {
        let (events, peer, callbacks, frame_queue) = (
            self.events.clone(),
            self.peer.clone(),
            Rc::clone(&self.callbacks),
            self.frame_queue,
        );
        let closure = Closure::<dyn FnMut(RtcDataChannelEvent)>::new(
            move |event: RtcDataChannelEvent| {
                let dc = event.channel();
                if let Some(kind) = ChannelKind::from_label(&dc.label()) {
                    wire_channel(
                        dc,
                        peer.clone(),
                        kind,
                        events.clone(),
                        frame_queue,
                        &callbacks,
                    );
                } else if dc.label() == ARQ_CHANNEL_LABEL {
                    wire_arq_channel(dc, peer.clone(), events.clone(), &callbacks);
                } else {
                    tracing::warn!(%peer, label = %dc.label(), "ignoring data channel with unknown label");
                }
            },
        );
        self.pc
            .set_ondatachannel(Some(closure.as_ref().unchecked_ref()));
        self.keep(closure);
    }

    fn rtc_error(&self, e: JsValue) -> Error {
        Error::Rtc {
            peer: self.peer.peer.clone(),
            reason: js_text(&e),
        }
    }

    /// Creates our data channel and an offer; returns the SDP to send.
    pub(crate) async fn create_offer(&self) -> Result<String> {
        let init = RtcDataChannelInit::new();
        match self.kind {
            ChannelKind::Reliable => init.set_ordered(true),
            ChannelKind::Unreliable => {
                init.set_ordered(false);
                init.set_max_retransmits(0);
            }
        }
        let dc = self
            .pc
            .create_data_channel_with_data_channel_dict(self.kind.label(), &init);
        wire_channel(
            dc,
            self.peer.clone(),
            self.kind,
            self.events.clone(),
            self.frame_queue,
            &self.callbacks,
        );
        if self.announce_arq {
            // In-band like the native backend's (webrtc-rs 0.17 keeps a negotiated channel
            // reliable); a peer that does not run the layer ignores the unknown label.
            let init = RtcDataChannelInit::new();
            init.set_ordered(false);
            init.set_max_retransmits(0);
            let dc = self
                .pc
                .create_data_channel_with_data_channel_dict(ARQ_CHANNEL_LABEL, &init);
            wire_arq_channel(dc, self.peer.clone(), self.events.clone(), &self.callbacks);
        }
        let offer = JsFuture::from(self.pc.create_offer())
            .await
            .map_err(|e| self.rtc_error(e))?;
        self.set_local(offer.unchecked_into()).await
    }

    /// Applies a remote offer and returns our answer's SDP.
    pub(crate) async fn accept_offer(&self, sdp: String) -> Result<String> {
        self.set_remote(RtcSdpType::Offer, &sdp).await?;
        let answer = JsFuture::from(self.pc.create_answer())
            .await
            .map_err(|e| self.rtc_error(e))?;
        self.set_local(answer.unchecked_into()).await
    }

    /// Applies the remote answer to our offer.
    pub(crate) async fn accept_answer(&self, sdp: String) -> Result<()> {
        self.set_remote(RtcSdpType::Answer, &sdp).await
    }

    async fn set_remote(&self, kind: RtcSdpType, sdp: &str) -> Result<()> {
        let description = RtcSessionDescriptionInit::new(kind);
        description.set_sdp(sdp);
        JsFuture::from(self.pc.set_remote_description(&description))
            .await
            .map_err(|e| self.rtc_error(e))?;
        Ok(())
    }

    async fn set_local(&self, description: RtcSessionDescriptionInit) -> Result<String> {
        let sdp = description.get_sdp().unwrap_or_default();
        JsFuture::from(self.pc.set_local_description(&description))
            .await
            .map_err(|e| self.rtc_error(e))?;
        Ok(sdp)
    }

    /// Adds a trickled remote ICE candidate.
    pub(crate) async fn add_candidate(
        &self,
        candidate: String,
        sdp_mid: Option<String>,
        sdp_m_line_index: Option<u16>,
    ) -> Result<()> {
        let init = RtcIceCandidateInit::new(&candidate);
        init.set_sdp_mid(sdp_mid.as_deref());
        init.set_sdp_m_line_index(sdp_m_line_index);
        let added = self
            .pc
            .add_ice_candidate_with_opt_rtc_ice_candidate_init(Some(&init));
        JsFuture::from(added).await.map_err(|e| self.rtc_error(e))?;
        Ok(())
    }

    /// Relay candidates gathered so far.
    pub(crate) fn relay_candidates(&self) -> usize {
        self.relays.get()
    }

    /// The selected candidate pair from `getStats()`: the `transport` report's
    /// `selectedCandidatePairId` (or, failing that, the nominated pair that succeeded), then its
    /// `local-candidate` and `remote-candidate` reports.
    pub(crate) async fn selected_candidate_pair(&self) -> Result<CandidatePair> {
        let report = JsFuture::from(self.pc.get_stats())
            .await
            .map_err(|e| self.rtc_error(e))?;
        let mut stats = std::collections::HashMap::new();
        let values = js_sys::Reflect::get(&report, &JsValue::from_str("values"))
            .and_then(|f| f.dyn_into::<js_sys::Function>())
            .and_then(|f| f.call0(&report))
            .map_err(|e| self.rtc_error(e))?;
        let iter = js_sys::try_iter(&values)
            .map_err(|e| self.rtc_error(e))?
            .ok_or_else(|| self.rtc_error(JsValue::from_str("getStats() is not iterable")))?;
        for value in iter {
            let value = value.map_err(|e| self.rtc_error(e))?;
            if let Some(id) = field(&value, "id").as_string() {
                stats.insert(id, value);
            }
        }
        let is = |v: &JsValue, kind: &str| field(v, "type").as_string().as_deref() == Some(kind);
        let selected_id = stats
            .values()
            .filter(|v| is(v, "transport"))
            .find_map(|t| field(t, "selectedCandidatePairId").as_string())
            .or_else(|| {
                stats
                    .values()
                    .filter(|v| is(v, "candidate-pair"))
                    .find(|p| {
                        field(p, "nominated").as_bool() == Some(true)
                            && field(p, "state").as_string().as_deref() == Some("succeeded")
                    })
                    .and_then(|p| field(p, "id").as_string())
            });
        let missing = || self.rtc_error(JsValue::from_str("no selected ICE candidate pair"));
        let pair = selected_id
            .and_then(|id| stats.get(&id))
            .ok_or_else(missing)?;
        let candidate = |key: &str| {
            field(pair, key)
                .as_string()
                .and_then(|id| stats.get(&id))
                .and_then(candidate_info)
                .ok_or_else(missing)
        };
        Ok(CandidatePair {
            local: candidate("localCandidateId")?,
            remote: candidate("remoteCandidateId")?,
        })
    }

    /// Closes the connection and detaches every callback, so none fires after this.
    pub(crate) async fn close(&self) {
        let mut callbacks = self.callbacks.borrow_mut();
        for dc in callbacks.channels.drain(..) {
            detach_channel(&dc);
            dc.close();
        }
        self.pc.set_onicecandidate(None);
        self.pc.set_onconnectionstatechange(None);
        for (event, listener) in callbacks.listeners.drain(..) {
            let _ = self
                .pc
                .remove_event_listener_with_callback(event, &listener);
        }
        self.pc.set_ondatachannel(None);
        self.pc.close();
        callbacks.closures.clear();
    }
}

/// `object[key]`, or `undefined`.
fn field(object: &JsValue, key: &str) -> JsValue {
    js_sys::Reflect::get(object, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

/// An `RTCIceCandidateStats` report as [`CandidateInfo`]; `None` without a known type.
fn candidate_info(stats: &JsValue) -> Option<CandidateInfo> {
    let candidate_type = CandidateType::from_name(&field(stats, "candidateType").as_string()?)?;
    // `address` is the current name; older Chromium only had `ip`. A hidden host address
    // may be absent.
    let address = field(stats, "address")
        .as_string()
        .or_else(|| field(stats, "ip").as_string())
        .unwrap_or_default();
    let port = field(stats, "port")
        .as_f64()
        .and_then(|p| u16::try_from(p as i64).ok())
        .unwrap_or(0);
    Some(CandidateInfo {
        candidate_type,
        address,
        port,
        protocol: field(stats, "protocol").as_string().unwrap_or_default(),
    })
}

fn detach_channel(dc: &RtcDataChannel) {
    dc.set_onopen(None);
    dc.set_onmessage(None);
    dc.set_onclose(None);
    dc.set_onbufferedamountlow(None);
}

/// Hooks a data channel to the session: frames into a bounded queue, open and close as events.
fn wire_channel(
    dc: RtcDataChannel,
    peer: ConnId,
    kind: ChannelKind,
    events: async_channel::Sender<RtcEvent>,
    frame_queue: usize,
    callbacks: &Rc<RefCell<Callbacks>>,
) {
    dc.set_binary_type(RtcDataChannelType::Arraybuffer);
    let (frames_tx, frames_rx) = async_channel::bounded::<Bytes>(frame_queue);
    let frames_end = frames_tx.clone();
    let (overflow_dc, overflow_events, overflow_peer) = (dc.clone(), events.clone(), peer.clone());
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
        let data = event.data();
        let Some(buffer) = data.dyn_ref::<js_sys::ArrayBuffer>() else {
            tracing::warn!(peer = %overflow_peer, "ignoring a text data-channel message: frames are binary");
            return;
        };
        let frame = Bytes::from(js_sys::Uint8Array::new(buffer).to_vec());
        if frames_tx.try_send(frame).is_err() && !frames_tx.is_closed() {
            frames_tx.close();
            overflow_dc.close();
            let reason = Some(Error::ReceiveOverflow(overflow_peer.peer.clone()).to_string());
            post(
                &overflow_events,
                RtcEvent::Closed {
                    peer: overflow_peer.clone(),
                    reason,
                },
            );
        }
    });
    let (low_tx, low_rx) = async_channel::bounded::<()>(1);
    let on_low = Closure::<dyn FnMut(Event)>::new(move |_: Event| {
        let _ = low_tx.try_send(());
    });
    let channel = RtcChannel {
        dc: dc.clone(),
        low: low_rx,
    };
    let open_state = Rc::new(RefCell::new(Some((channel, frames_rx))));
    let (open_events, open_peer) = (events.clone(), peer.clone());
    let on_open = Closure::<dyn FnMut(Event)>::new(move |_: Event| {
        if let Some((channel, frames)) = open_state.borrow_mut().take() {
            post(
                &open_events,
                RtcEvent::ChannelOpen {
                    peer: open_peer.clone(),
                    kind,
                    channel,
                    frames,
                },
            );
        }
    });
    let on_close = Closure::<dyn FnMut(Event)>::new(move |_: Event| {
        // The browser fires `close` after every `message` event of the channel: closing the
        // queue lets the reader finish what is in it and then see the end, in order.
        frames_end.close();
        post(
            &events,
            RtcEvent::Closed {
                peer: peer.clone(),
                reason: None,
            },
        );
    });
    dc.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    dc.set_onbufferedamountlow(Some(on_low.as_ref().unchecked_ref()));
    dc.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    dc.set_onclose(Some(on_close.as_ref().unchecked_ref()));
    let mut callbacks = callbacks.borrow_mut();
    callbacks.channels.push(dc);
    callbacks
        .closures
        .push(Box::new((on_message, on_low, on_open, on_close)));
}

/// Hooks the ARQ layer's channel: datagrams into a bounded queue that drops when full (the
/// layer recovers them), its open as an event.
fn wire_arq_channel(
    dc: RtcDataChannel,
    peer: ConnId,
    events: async_channel::Sender<RtcEvent>,
    callbacks: &Rc<RefCell<Callbacks>>,
) {
    dc.set_binary_type(RtcDataChannelType::Arraybuffer);
    let (datagrams_tx, datagrams) = async_channel::bounded::<Bytes>(ARQ_DATAGRAM_QUEUE);
    let ended = datagrams_tx.clone();
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
        if let Some(buffer) = event.data().dyn_ref::<js_sys::ArrayBuffer>() {
            let datagram = Bytes::from(js_sys::Uint8Array::new(buffer).to_vec());
            let _ = datagrams_tx.try_send(datagram);
        }
    });
    let on_close = Closure::<dyn FnMut(Event)>::new(move |_: Event| {
        ended.close();
    });
    let (low_tx, low) = async_channel::bounded::<()>(1);
    let on_low = Closure::<dyn FnMut(Event)>::new(move |_: Event| {
        let _ = low_tx.try_send(());
    });
    let channel = RtcChannel {
        dc: dc.clone(),
        low,
    };
    let open_state = Rc::new(RefCell::new(Some(ArqChannel { channel, datagrams })));
    let on_open = Closure::<dyn FnMut(Event)>::new(move |_: Event| {
        if let Some(arq) = open_state.borrow_mut().take() {
            let peer = peer.clone();
            post(&events, RtcEvent::ArqChannelOpen { peer, arq });
        }
    });
    dc.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    dc.set_onclose(Some(on_close.as_ref().unchecked_ref()));
    dc.set_onbufferedamountlow(Some(on_low.as_ref().unchecked_ref()));
    dc.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    let mut callbacks = callbacks.borrow_mut();
    callbacks.channels.push(dc);
    callbacks
        .closures
        .push(Box::new((on_message, on_close, on_low, on_open)));
}

/// Sending half of an open data channel.
#[derive(Clone)]
pub(crate) struct RtcChannel {
    dc: RtcDataChannel,
    low: async_channel::Receiver<()>,
}

impl RtcChannel {
    /// Hands one frame to the browser. Errors carry the browser's exception text.
    pub(crate) async fn send(&self, frame: Bytes) -> std::result::Result<(), String> {
        self.dc.send_with_u8_array(&frame).map_err(|e| js_text(&e))
    }

    /// The channel's label and reliability, as the browser negotiated them. web-sys has no
    /// getter for `ordered`, so it is read as a property.
    pub(crate) fn parameters(&self) -> ChannelParameters {
        let ordered = js_sys::Reflect::get(&self.dc, &JsValue::from_str("ordered"))
            .ok()
            .and_then(|v| v.as_bool())
            .unwrap_or(true);
        ChannelParameters {
            label: self.dc.label(),
            ordered,
            max_retransmits: self.dc.max_retransmits(),
            max_packet_life_time_ms: self.dc.max_packet_life_time(),
        }
    }

    /// Bytes queued by the browser and not yet sent (`bufferedAmount`).
    pub(crate) async fn buffered_amount(&self) -> usize {
        self.dc.buffered_amount() as usize
    }

    /// Waits until `bufferedAmount` is at most `bytes` or the channel is no longer open.
    pub(crate) async fn wait_buffered_amount_low(&self, bytes: usize) {
        self.dc
            .set_buffered_amount_low_threshold(u32::try_from(bytes).unwrap_or(u32::MAX));
        while self.dc.buffered_amount() as usize > bytes
            && self.dc.ready_state() == RtcDataChannelState::Open
        {
            // The event is the fast path; the timer only guards against a missed event.
            let woke =
                futures::future::select(Box::pin(self.low.recv()), Box::pin(super::sleep_ms(50)));
            woke.await;
        }
    }

    /// Closes the data channel.
    pub(crate) async fn close(&self) {
        self.dc.close();
    }
}
