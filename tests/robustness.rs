//! A connected peer that misbehaves on the signaling channel must not break the connection it
//! already has with us. The misbehaving peer here is written by hand — a raw WebSocket client
//! on the real bridge plus a raw webrtc-rs `RTCPeerConnection` framing its messages with our
//! public codec — so it can send what a `Transport` never would: stray answers, offers in the
//! wrong direction, unusable offers and ICE candidates. Needs a non-loopback interface: the
//! test command runs it inside tests/scripts/in-netns.sh.
#![cfg(not(target_arch = "wasm32"))]

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use miaou_transport::codec::{CodecLimits, FrameDecoder, FrameEncoder};
use miaou_transport::sdp::advertise_max_message_size;
use miaou_transport::signaling::bridge::Bridge;
use miaou_transport::{ChannelKind, Error, Event, PeerId, Transport, TransportConfig};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use webrtc::api::APIBuilder;
use webrtc::data_channel::data_channel_init::RTCDataChannelInit;
use webrtc::data_channel::RTCDataChannel;
use webrtc::ice_transport::ice_candidate::RTCIceCandidateInit;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::peer_connection::RTCPeerConnection;

#[path = "common/live.rs"]
mod live;
use live::{bridge, WAIT};

/// The hand-written peer: its signaling socket, its peer connection, and its data channel once
/// open.
struct RawPeer {
    id: PeerId,
    to_bridge: mpsc::UnboundedSender<Value>,
    from_bridge: mpsc::UnboundedReceiver<Value>,
    pc: Arc<RTCPeerConnection>,
    channel: mpsc::UnboundedReceiver<Arc<RTCDataChannel>>,
    channel_tx: mpsc::UnboundedSender<Arc<RTCDataChannel>>,
    frames: tokio::sync::Mutex<mpsc::UnboundedReceiver<Bytes>>,
    frames_tx: mpsc::UnboundedSender<Bytes>,
    /// The `a=max-message-size` put in our answer, if any (webrtc-rs writes none).
    advertise: Option<usize>,
}

impl RawPeer {
    /// Joins `room` on `bridge` and prepares a peer connection (see [`Self::trickle_to`] for
    /// its ICE candidates).
    async fn join(bridge: &Bridge, room: &str) -> RawPeer {
        let (ws, _) = tokio_tungstenite::connect_async(bridge.ws_url())
            .await
            .expect("bridge reachable");
        let (mut sink, mut stream) = ws.split();
        let (to_bridge, mut outgoing) = mpsc::unbounded_channel::<Value>();
        tokio::spawn(async move {
            while let Some(value) = outgoing.recv().await {
                if sink
                    .send(WsMessage::Text(value.to_string().into()))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        let (incoming, mut from_bridge) = mpsc::unbounded_channel::<Value>();
        tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                if let WsMessage::Text(text) = message {
                    let _ = incoming.send(serde_json::from_str(text.as_str()).unwrap());
                }
            }
        });
        to_bridge
            .send(json!({"type": "join", "v": 1, "room": room}))
            .unwrap();
        let welcome = from_bridge.recv().await.expect("welcome");
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        let id = PeerId::from(welcome["peerId"].as_str().unwrap());

        let api = APIBuilder::new().build();
        let pc = Arc::new(
            api.new_peer_connection(RTCConfiguration::default())
                .await
                .unwrap(),
        );
        let (channel_tx, channel) = mpsc::unbounded_channel();
        let (frames_tx, frames) = mpsc::unbounded_channel();
        let (open_tx, frames_for_remote) = (channel_tx.clone(), frames_tx.clone());
        pc.on_data_channel(Box::new(move |dc| {
            let (open_tx, frames_tx) = (open_tx.clone(), frames_for_remote.clone());
            Box::pin(async move { wire(dc, open_tx, frames_tx) })
        }));
        RawPeer {
            id,
            to_bridge,
            from_bridge,
            pc,
            channel,
            channel_tx,
            frames: tokio::sync::Mutex::new(frames),
            frames_tx,
            advertise: None,
        }
    }

    fn trickle_to(&self, remote: &PeerId) {
        let (to_bridge, remote) = (self.to_bridge.clone(), remote.clone());
        self.pc.on_ice_candidate(Box::new(move |candidate| {
            let (to_bridge, remote) = (to_bridge.clone(), remote.clone());
            Box::pin(async move {
                if let Some(candidate) = candidate {
                    let init = candidate.to_json().unwrap();
                    let signal = json!({"kind": "candidate", "candidate": init.candidate,
                        "sdpMid": init.sdp_mid, "sdpMLineIndex": init.sdp_mline_index});
                    let _ = to_bridge
                        .send(json!({"type": "signal", "to": remote.as_str(), "signal": signal}));
                }
            })
        }));
    }

    fn signal(&self, to: &PeerId, signal: Value) {
        self.to_bridge
            .send(json!({"type": "signal", "to": to.as_str(), "signal": signal}))
            .unwrap();
    }

    /// Applies relayed signals until the data channel is open: answers an offer from
    /// `remote`, or applies its answer to ours, and adds its candidates.
    async fn negotiate_until_open(&mut self, remote: &PeerId) -> Arc<RTCDataChannel> {
        loop {
            let signal = tokio::select! {
                dc = self.channel.recv() => return dc.expect("channel open"),
                signal = next_signal(&mut self.from_bridge) => signal,
            };
            self.apply(remote, signal).await;
        }
    }

    async fn apply(&self, remote: &PeerId, signal: Value) {
        match signal["kind"].as_str() {
            Some("description") => {
                let sdp = signal["sdp"].as_str().unwrap().to_owned();
                if signal["sdpType"] == "offer" {
                    let offer = RTCSessionDescription::offer(sdp).unwrap();
                    self.pc.set_remote_description(offer).await.unwrap();
                    let answer = self.pc.create_answer(None).await.unwrap();
                    self.pc.set_local_description(answer.clone()).await.unwrap();
                    let sdp = match self.advertise {
                        Some(bytes) => advertise_max_message_size(&answer.sdp, bytes),
                        None => answer.sdp,
                    };
                    self.signal(
                        remote,
                        json!({"kind": "description", "sdpType": "answer", "sdp": sdp}),
                    );
                } else {
                    let answer = RTCSessionDescription::answer(sdp).unwrap();
                    self.pc.set_remote_description(answer).await.unwrap();
                }
            }
            Some("candidate") => {
                let init = RTCIceCandidateInit {
                    candidate: signal["candidate"].as_str().unwrap().to_owned(),
                    sdp_mid: signal["sdpMid"].as_str().map(str::to_owned),
                    sdp_mline_index: signal["sdpMLineIndex"].as_u64().map(|i| i as u16),
                    username_fragment: None,
                };
                let _ = self.pc.add_ice_candidate(init).await;
            }
            other => panic!("unexpected signal kind {other:?}"),
        }
    }

    /// Offers a reliable channel to `remote` (as a newcomer does).
    async fn offer_channel(&self, remote: &PeerId) {
        let init = RTCDataChannelInit {
            ordered: Some(true),
            ..Default::default()
        };
        let dc = self
            .pc
            .create_data_channel(ChannelKind::Reliable.label(), Some(init))
            .await
            .unwrap();
        let (open_tx, frames_tx) = (self.channel_tx.clone(), self.frames_tx.clone());
        wire(dc, open_tx, frames_tx);
        let offer = self.pc.create_offer(None).await.unwrap();
        self.pc.set_local_description(offer.clone()).await.unwrap();
        self.signal(
            remote,
            json!({"kind": "description", "sdpType": "offer", "sdp": offer.sdp}),
        );
    }

    /// One application message, decoded with our public codec.
    async fn recv_message(&self, decoder: &mut FrameDecoder) -> Bytes {
        let mut frames = self.frames.lock().await;
        loop {
            let frame = timeout(WAIT, frames.recv())
                .await
                .expect("a frame in time")
                .expect("channel open");
            let delivered = decoder.decode(&frame).expect("a valid frame");
            if let Some(first) = delivered.and_then(|d| d.into_messages().into_iter().next()) {
                return first.data;
            }
        }
    }
}

/// The next relayed signal from the bridge (other messages skipped).
async fn next_signal(from_bridge: &mut mpsc::UnboundedReceiver<Value>) -> Value {
    loop {
        let message = timeout(WAIT, from_bridge.recv())
            .await
            .expect("a signal in time")
            .expect("bridge open");
        if message["type"] == "signal" {
            return message["signal"].clone();
        }
    }
}

/// Hooks a data channel: frames to `frames`, the channel itself to `open` once open.
fn wire(
    dc: Arc<RTCDataChannel>,
    open: mpsc::UnboundedSender<Arc<RTCDataChannel>>,
    frames: mpsc::UnboundedSender<Bytes>,
) {
    dc.on_message(Box::new(move |message| {
        let _ = frames.send(message.data);
        Box::pin(async {})
    }));
    let opened = Arc::clone(&dc);
    dc.on_open(Box::new(move || {
        let _ = open.send(opened);
        Box::pin(async {})
    }));
}

/// Waits for `PeerConnected(peer)`.
async fn connected_to(t: &Transport, peer: &PeerId) {
    let wait = async {
        loop {
            if let Event::PeerConnected(p) = t.next_event().await.expect("events open") {
                if &p == peer {
                    return;
                }
            }
        }
    };
    timeout(WAIT, wait).await.expect("connected in time");
}

/// Collects `t`'s events for `ms`: the errors reported, and whether `peer` disconnected.
async fn events_for(t: &Transport, peer: &PeerId, ms: u64) -> (Vec<Error>, bool) {
    let (mut errors, mut disconnected) = (Vec::new(), false);
    let deadline = tokio::time::Instant::now() + Duration::from_millis(ms);
    while let Ok(Some(event)) = tokio::time::timeout_at(deadline, t.next_event()).await {
        match event {
            Event::Error(e) => errors.push(e),
            Event::PeerDisconnected { peer: p, .. } | Event::PeerLeft(p) if &p == peer => {
                disconnected = true
            }
            _ => {}
        }
    }
    (errors, disconnected)
}

/// Sends `junk` signals from `raw` to `t`, then checks that each was reported as an error,
/// that `t` kept the connection, and that it still carries messages both ways.
async fn survives(t: &Transport, raw: &RawPeer, dc: &RTCDataChannel, junk: &[Value]) {
    for signal in junk {
        raw.signal(t.peer_id(), signal.clone());
    }
    let (errors, disconnected) = events_for(t, &raw.id, 1_500).await;
    assert!(!disconnected, "the connection survived the junk");
    assert_eq!(
        errors.len(),
        junk.len(),
        "each refused signal is reported: {errors:?}"
    );
    still_works(t, raw, dc).await;
}

/// A `Transport` in `room`, with defaults.
async fn transport(bridge: &Bridge, room: &str) -> Transport {
    let config = TransportConfig::builder(bridge.ws_url(), room).build();
    Transport::connect(config.unwrap()).await.unwrap()
}

fn description(sdp_type: &str, sdp: &str) -> Value {
    json!({"kind": "description", "sdpType": sdp_type, "sdp": sdp})
}

/// After the junk, the original connection still carries messages both ways.
async fn still_works(t: &Transport, raw: &RawPeer, dc: &RTCDataChannel) {
    assert!(t.peers().contains(&raw.id), "peer still listed");
    t.send_text(&raw.id, "still there?").await.unwrap();
    let mut decoder = FrameDecoder::new(CodecLimits::default());
    assert_eq!(
        raw.recv_message(&mut decoder).await.as_ref(),
        b"still there?"
    );
    let mut encoder = FrameEncoder::new(CodecLimits::default());
    let frames = encoder
        .encode_message(Bytes::from_static(b"yes"), false, 16 * 1024)
        .unwrap();
    for frame in frames {
        dc.send(&frame).await.unwrap();
    }
    let got = timeout(WAIT, t.recv()).await.unwrap().unwrap();
    assert_eq!((got.from, got.data.as_ref()), (raw.id.clone(), &b"yes"[..]));
}

fn garbage_candidate() -> Value {
    json!({"kind": "candidate", "candidate": "candidate:garbage", "sdpMid": "0", "sdpMLineIndex": 0})
}

#[tokio::test]
async fn stray_signals_from_the_answering_peer_do_not_break_our_connection() {
    let bridge = bridge().await;
    // The raw peer is there first, so the Transport offers and the raw peer answers.
    let mut raw = RawPeer::join(&bridge, "stray-answerer").await;
    let t = transport(&bridge, "stray-answerer").await;
    raw.trickle_to(t.peer_id());
    let dc = raw.negotiate_until_open(t.peer_id()).await;
    connected_to(&t, &raw.id).await;

    // A second answer (no offer of ours awaits one), an offer in the wrong direction (we are
    // the offerer), and an ICE candidate the stack cannot parse.
    let answer = raw.pc.local_description().await.unwrap().sdp;
    let junk = [
        description("answer", &answer),
        description("offer", &answer),
        garbage_candidate(),
    ];
    survives(&t, &raw, &dc, &junk).await;
    t.close().await.ok();
}

#[tokio::test]
async fn an_unusable_offer_from_a_connected_peer_keeps_the_connection_it_has() {
    let bridge = bridge().await;
    // The Transport is there first, so the raw peer (the newcomer) offers.
    let t = transport(&bridge, "stray-offerer").await;
    let mut raw = RawPeer::join(&bridge, "stray-offerer").await;
    raw.trickle_to(t.peer_id());
    raw.offer_channel(t.peer_id()).await;
    let dc = raw.negotiate_until_open(t.peer_id()).await;
    connected_to(&t, &raw.id).await;

    // A re-offer whose SDP no stack accepts, an answer in the wrong direction (we answer),
    // and an unusable candidate.
    let junk = [
        description("offer", "v=0\r\nthis is no SDP\r\n"),
        description("answer", "v=0\r\n"),
        garbage_candidate(),
    ];
    survives(&t, &raw, &dc, &junk).await;
    t.close().await.ok();
}

/// A peer whose `a=max-message-size` leaves no room for one frame (our smallest is 64 bytes)
/// gets one clear disconnect naming the reason, not a channel on which every `send` fails.
#[tokio::test]
async fn a_peer_whose_max_message_size_fits_no_frame_is_refused_once_with_the_reason() {
    let bridge = bridge().await;
    let mut raw = RawPeer::join(&bridge, "tiny-limit").await;
    raw.advertise = Some(32);
    let t = transport(&bridge, "tiny-limit").await;
    raw.trickle_to(t.peer_id());
    let wait = async {
        loop {
            match t.next_event().await.expect("events open") {
                Event::PeerConnected(p) => panic!("{p} reported connected"),
                Event::PeerDisconnected { peer, reason } => return (peer, reason),
                _ => continue,
            }
        }
    };
    // Our side gives up as soon as its channel opens; the raw peer's may or may not open.
    let mut wait = std::pin::pin!(timeout(WAIT, wait));
    let (peer, reason) = tokio::select! {
        outcome = &mut wait => outcome,
        _ = raw.negotiate_until_open(t.peer_id()) => (&mut wait).await,
    }
    .expect("a disconnect in time");
    assert_eq!(peer, raw.id);
    let reason = reason.expect("a reason").to_string();
    assert!(
        reason.contains("a=max-message-size (32 bytes) is below the 64 bytes a frame needs"),
        "{reason}"
    );
    assert!(t.peers().is_empty());
    // Not retried: nothing more about that peer.
    let (_, again) = events_for(&t, &raw.id, 1_500).await;
    assert!(!again, "no second attempt");
}
