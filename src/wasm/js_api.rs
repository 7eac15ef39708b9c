//! The JavaScript API: a thin `#[wasm_bindgen]` wrapper over [`crate::Transport`].
//!
//! ```js
//! import init, { Transport } from "miaou-transport";
//! await init();
//! const t = await Transport.connect({ signal: "ws://127.0.0.1:8080/ws", room: "lobby" });
//! t.onPeer((e) => console.log(e.type, e.peerId));
//! t.onMessage((peerId, data) => console.log(peerId, data)); // string or Uint8Array
//! await t.send(peerId, "hello");
//! await t.close();
//! ```

use crate::channel_info::ChannelInfo;
use crate::config::{ChannelKind, IceServer, IceTransportPolicy, TransportConfig};
use crate::error::Error;
use crate::event::Event;
use crate::ice::{CandidateInfo, CandidatePair};
use crate::signaling::protocol::PeerId;
use crate::transport::Transport;
use bytes::Bytes;
use serde::Deserialize;
use std::cell::RefCell;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &'static str = r#"
/** Options of `Transport.connect`. Sizes in bytes, times in milliseconds. */
export interface TransportOptions {
  /** Signaling server WebSocket URL, e.g. "ws://127.0.0.1:8080/ws". */
  signal: string;
  /** Room to join (1..64 bytes). */
  room: string;
  /** ICE servers, as in RTCConfiguration.iceServers. Default: none. TURN servers need
   *  username and credential. */
  iceServers?: { urls: string | string[]; username?: string; credential?: string }[];
  /** As RTCConfiguration.iceTransportPolicy: "all" (default) or "relay" (TURN only; needs a
   *  TURN server in iceServers, or turnFromBridge). */
  iceTransportPolicy?: "all" | "relay";
  /** Use the short-lived TURN credentials the bridge hands out in its welcome (bridge started
   *  with a TURN secret, docs/turn.md), so the page never holds a TURN secret. connect()
   *  rejects if the bridge offers none. Default false. */
  turnFromBridge?: boolean;
  /** "reliable" (ordered, default) or "unreliable" (unordered, maxRetransmits 0). */
  channel?: "reliable" | "unreliable";
  /** Announce the ARQ layer on reliable channels (default false in browsers for now: a native
   *  peer's webrtc-sctp 0.17.2 can stall on a tab's unordered traffic, docs/frame.md): towards a peer that announces
   *  it too, frames go as datagrams on an unordered, maxRetransmits 0 channel with their own
   *  loss recovery and congestion control (docs/frame.md). false: v1 frames on SCTP. */
  arq?: boolean;
  /** Largest message accepted by send, bytes (default 64 MiB). */
  maxMessageSize?: number;
  /** Largest frame put on the data channel, bytes (default 16 KiB). */
  maxFrameSize?: number;
  /** How long connect waits for the signaling server, ms (default 10000). */
  connectTimeoutMs?: number;
  /** How long close waits for peers to acknowledge delivery, ms (default 10000). */
  closeTimeoutMs?: number;
  /** Open deadline of a connection attempt, ms (default 2500): an attempt whose channel is
   *  not open by then is made again with a fresh peer connection; doubled per retry up to
   *  15000, and the last allowed retry always gets 15000. */
  openTimeoutMs?: number;
}
/** One end of a selected ICE candidate pair (W3C RTCIceCandidateStats). */
export interface CandidateInfo {
  candidateType: "host" | "srflx" | "prflx" | "relay";
  /** IP address; may be empty for a hidden host address. */
  address: string;
  port: number;
  protocol: "udp" | "tcp" | string;
}
/** The ICE candidate pair a peer connection uses now. */
export interface CandidatePair {
  local: CandidateInfo;
  remote: CandidateInfo;
}
/** The open data channel to one peer as the browser negotiated it (from `channelInfo`).
 *  Sizes in bytes, times in milliseconds. */
export interface ChannelInfo {
  /** "miaou-reliable" or "miaou-unreliable". */
  label: string;
  /** The kind in use: the offerer's choice, which the answerer follows. */
  kind: "reliable" | "unreliable";
  /** RTCDataChannel.ordered. */
  ordered: boolean;
  /** RTCDataChannel.maxRetransmits; null for a reliable channel. */
  maxRetransmits: number | null;
  /** RTCDataChannel.maxPacketLifeTime, ms; null when not limited by time. */
  maxPacketLifeTime: number | null;
  /** Largest frame we send on it: min(maxFrameSize, remoteMaxMessageSize). */
  maxFrameSize: number;
  /** The peer's a=max-message-size (65536 when its SDP has none, RFC 8841). */
  remoteMaxMessageSize: number;
  /** Frames travel over the ARQ layer (both peers announced it; docs/frame.md). */
  arq: boolean;
}
/** A peer lifecycle event passed to `onPeer`. */
export interface PeerEvent {
  type: "joined" | "connected" | "disconnected" | "left" | "error";
  peerId?: string;
  reason?: string;
}
"#;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Options {
    signal: String,
    room: String,
    #[serde(default)]
    ice_servers: Vec<JsIceServer>,
    #[serde(default)]
    ice_transport_policy: Option<String>,
    #[serde(default)]
    turn_from_bridge: bool,
    #[serde(default)]
    channel: Option<String>,
    arq: Option<bool>,
    max_message_size: Option<usize>,
    max_frame_size: Option<usize>,
    connect_timeout_ms: Option<u64>,
    close_timeout_ms: Option<u64>,
    open_timeout_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Urls {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct JsIceServer {
    urls: Urls,
    #[serde(default)]
    username: String,
    #[serde(default)]
    credential: String,
}

impl Options {
    fn into_config(self) -> Result<TransportConfig, Error> {
        let mut builder = TransportConfig::builder(self.signal, self.room);
        for server in self.ice_servers {
            let urls = match server.urls {
                Urls::One(url) => vec![url],
                Urls::Many(urls) => urls,
            };
            builder = builder.ice_server(IceServer {
                urls,
                username: server.username,
                credential: server.credential,
            });
        }
        if let Some(name) = self.ice_transport_policy {
            let policy = IceTransportPolicy::from_name(&name).ok_or_else(|| {
                Error::Config(format!(
                    "iceTransportPolicy must be \"all\" or \"relay\", got {name:?}"
                ))
            })?;
            builder = builder.ice_transport_policy(policy);
        }
        builder = builder.turn_credentials_from_bridge(self.turn_from_bridge);
        builder = builder.channel(match self.channel.as_deref() {
            None => ChannelKind::Reliable,
            Some(name) => ChannelKind::from_name(name).ok_or_else(|| {
                Error::Config(format!(
                    "channel must be \"reliable\" or \"unreliable\", got {name:?}"
                ))
            })?,
        });
        if let Some(enabled) = self.arq {
            builder = builder.arq(enabled);
        }
        if let Some(bytes) = self.max_message_size {
            builder = builder.max_message_size(bytes);
        }
        if let Some(bytes) = self.max_frame_size {
            builder = builder.max_frame_size(bytes);
        }
        if let Some(ms) = self.connect_timeout_ms {
            builder = builder.connect_timeout_ms(ms);
        }
        if let Some(ms) = self.close_timeout_ms {
            builder = builder.close_timeout_ms(ms);
        }
        if let Some(ms) = self.open_timeout_ms {
            builder = builder.open_timeout_ms(ms);
        }
        builder.build()
    }
}

/// Reads `Transport.connect` options, with messages that name the offending option.
fn parse_options(options: JsValue) -> Result<Options, Error> {
    if !options.is_object() {
        return Err(Error::Config(
            "options must be an object like { signal, room }".into(),
        ));
    }
    // serde's deny_unknown_fields does not apply through serde_wasm_bindgen: check by hand, so
    // a misspelt option (say `icetransportPolicy`) is an error, not a silent default.
    const KNOWN: [&str; 12] = [
        "signal",
        "room",
        "iceServers",
        "iceTransportPolicy",
        "turnFromBridge",
        "channel",
        "arq",
        "maxMessageSize",
        "maxFrameSize",
        "connectTimeoutMs",
        "closeTimeoutMs",
        "openTimeoutMs",
    ];
    let keys = js_sys::Object::keys(options.unchecked_ref::<js_sys::Object>());
    for key in keys.iter().filter_map(|k| k.as_string()) {
        if !KNOWN.contains(&key.as_str()) {
            return Err(Error::Config(format!(
                "unknown option {key:?}; known: {}",
                KNOWN.join(", ")
            )));
        }
    }
    let ice = js_sys::Reflect::get(&options, &JsValue::from_str("iceServers"))
        .unwrap_or(JsValue::UNDEFINED);
    if !ice.is_undefined() && !js_sys::Array::is_array(&ice) {
        return Err(Error::Config(
            "iceServers must be an array of { urls, username?, credential? }".into(),
        ));
    }
    serde_wasm_bindgen::from_value(options).map_err(|e| Error::Config(format!("bad options: {e}")))
}

/// A JavaScript `Error` named `MiaouError` carrying the Rust error's message.
/// A `peerId` argument: must be a string (a number or undefined would otherwise trap in wasm).
fn peer_arg(value: &JsValue) -> Result<PeerId, JsValue> {
    value
        .as_string()
        .map(PeerId)
        .ok_or_else(|| js_error(Error::InvalidInput("peerId must be a string".into())))
}

/// A callback argument: must be a function, or every later event would be dropped.
fn function_arg(value: JsValue, method: &str) -> Result<js_sys::Function, JsValue> {
    value
        .dyn_into::<js_sys::Function>()
        .map_err(|_| js_error(Error::InvalidInput(format!("{method} takes a function"))))
}

fn js_error(error: Error) -> JsValue {
    let js = js_sys::Error::new(&error.to_string());
    js.set_name("MiaouError");
    js.into()
}

/// Payload from JavaScript: a string is sent as text, bytes as binary.
fn payload(data: &JsValue) -> Result<(Bytes, bool), JsValue> {
    if let Some(text) = data.as_string() {
        return Ok((Bytes::from(text.into_bytes()), true));
    }
    if let Some(bytes) = data.dyn_ref::<js_sys::Uint8Array>() {
        return Ok((Bytes::from(bytes.to_vec()), false));
    }
    if let Some(buffer) = data.dyn_ref::<js_sys::ArrayBuffer>() {
        return Ok((Bytes::from(js_sys::Uint8Array::new(buffer).to_vec()), false));
    }
    Err(js_error(Error::InvalidInput(
        "data must be a string, Uint8Array or ArrayBuffer".into(),
    )))
}

/// A plain JS object with these own properties, in this order.
fn js_object(fields: &[(&str, JsValue)]) -> JsValue {
    let object = js_sys::Object::new();
    for (key, value) in fields {
        let _ = js_sys::Reflect::set(&object, &JsValue::from_str(key), value);
    }
    object.into()
}

fn peer_event(event: &Event) -> JsValue {
    let (kind, peer, reason) = match event {
        Event::PeerJoined(peer) => ("joined", Some(peer), None),
        Event::PeerConnected(peer) => ("connected", Some(peer), None),
        Event::PeerDisconnected { peer, reason } => (
            "disconnected",
            Some(peer),
            reason.as_ref().map(ToString::to_string),
        ),
        Event::PeerLeft(peer) => ("left", Some(peer), None),
        Event::Error(error) => ("error", None, Some(error.to_string())),
    };
    let mut fields = vec![("type", JsValue::from_str(kind))];
    if let Some(peer) = peer {
        fields.push(("peerId", JsValue::from_str(peer.as_str())));
    }
    if let Some(reason) = reason {
        fields.push(("reason", JsValue::from_str(&reason)));
    }
    js_object(&fields)
}

fn candidate_object(c: &CandidateInfo) -> JsValue {
    js_object(&[
        (
            "candidateType",
            JsValue::from_str(c.candidate_type.as_str()),
        ),
        ("address", JsValue::from_str(&c.address)),
        ("port", JsValue::from(c.port)),
        ("protocol", JsValue::from_str(&c.protocol)),
    ])
}

fn channel_object(info: &ChannelInfo) -> JsValue {
    let optional = |value: Option<u16>| value.map_or(JsValue::NULL, JsValue::from);
    js_object(&[
        ("label", JsValue::from_str(&info.label)),
        ("kind", JsValue::from_str(info.kind.name())),
        ("ordered", JsValue::from_bool(info.ordered)),
        ("maxRetransmits", optional(info.max_retransmits)),
        ("maxPacketLifeTime", optional(info.max_packet_life_time_ms)),
        ("maxFrameSize", JsValue::from(info.max_frame_size as f64)),
        (
            "remoteMaxMessageSize",
            JsValue::from(info.remote_max_message_size as f64),
        ),
        ("arq", JsValue::from_bool(info.arq)),
    ])
}

fn pair_object(pair: &CandidatePair) -> JsValue {
    js_object(&[
        ("local", candidate_object(&pair.local)),
        ("remote", candidate_object(&pair.remote)),
    ])
}

/// Calls `callback`, logging (not propagating) an exception thrown by application code.
fn call(callback: &js_sys::Function, args: &[JsValue]) {
    let array: js_sys::Array = args.iter().collect();
    if let Err(e) = callback.apply(&JsValue::NULL, &array) {
        web_sys::console::error_2(&JsValue::from_str("miaou-transport: callback threw"), &e);
    }
}

/// The application's current handler; replaced by each `onMessage` / `onPeer` call.
type Handler = Rc<RefCell<Option<js_sys::Function>>>;

/// A member of one room, with a WebRTC data channel to every other member.
#[wasm_bindgen(js_name = Transport)]
pub struct JsTransport {
    inner: Rc<Transport>,
    on_message: Handler,
    on_peer: Handler,
}

impl JsTransport {
    /// Sets `handler` to `callback`; the first time, starts the loop that feeds it from
    /// `next` (one loop per kind, so a second registration replaces rather than competes).
    fn set_handler<T: 'static, F>(
        handler: &Handler,
        callback: js_sys::Function,
        inner: &Rc<Transport>,
        next: F,
        dispatch: fn(&js_sys::Function, T),
    ) where
        F: Fn(Rc<Transport>) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<T>>>>
            + 'static,
    {
        let first = handler.borrow_mut().replace(callback).is_none();
        if !first {
            return;
        }
        let (handler, inner) = (Rc::clone(handler), Rc::clone(inner));
        wasm_bindgen_futures::spawn_local(async move {
            while let Some(item) = next(Rc::clone(&inner)).await {
                // Clone out of the cell: the callback may itself call onMessage/onPeer.
                let callback = handler.borrow().clone();
                if let Some(callback) = callback {
                    dispatch(&callback, item);
                }
            }
        });
    }
}

fn dispatch_message(callback: &js_sys::Function, message: crate::event::Message) {
    let data = match (message.text, std::str::from_utf8(&message.data)) {
        (true, Ok(text)) => JsValue::from_str(text),
        _ => js_sys::Uint8Array::from(&message.data[..]).into(),
    };
    call(callback, &[JsValue::from_str(message.from.as_str()), data]);
}

fn dispatch_event(callback: &js_sys::Function, event: Event) {
    call(callback, &[peer_event(&event)]);
}

#[wasm_bindgen(js_class = Transport)]
impl JsTransport {
    /// Not for use: throws a MiaouError pointing to `await Transport.connect(options)`, which
    /// joins the room before handing out a Transport (a bare `new Transport()` would be an
    /// object with nothing behind it).
    #[wasm_bindgen(constructor)]
    pub fn new() -> Result<JsTransport, JsValue> {
        Err(js_error(Error::InvalidInput(
            "use `await Transport.connect({ signal, room })`, not `new Transport()`".into(),
        )))
    }

    /// Joins `options.room` through the signaling server at `options.signal`. Resolves once
    /// the server welcomed us; rejects with a `MiaouError` on bad options or an unreachable
    /// server.
    #[wasm_bindgen(unchecked_return_type = "Promise<Transport>")]
    pub fn connect(
        #[wasm_bindgen(unchecked_param_type = "TransportOptions")] options: JsValue,
    ) -> js_sys::Promise {
        wasm_bindgen_futures::future_to_promise(async move {
            let options = parse_options(options).map_err(js_error)?;
            let config = options.into_config().map_err(js_error)?;
            let transport = Transport::connect(config).await.map_err(js_error)?;
            let inner = Rc::new(transport);
            Ok(JsTransport {
                inner,
                on_message: Handler::default(),
                on_peer: Handler::default(),
            }
            .into())
        })
    }

    /// Our peer id, assigned by the signaling server.
    #[wasm_bindgen(getter, js_name = peerId)]
    pub fn peer_id(&self) -> String {
        self.inner.peer_id().to_string()
    }

    /// The room joined.
    #[wasm_bindgen(getter)]
    pub fn room(&self) -> String {
        self.inner.room().to_owned()
    }

    /// Ids of the peers with an open data channel.
    pub fn peers(&self) -> Vec<String> {
        self.inner.peers().into_iter().map(|p| p.0).collect()
    }

    /// Sets the message handler `(peerId: string, data: string | Uint8Array) => void`; text
    /// messages arrive as strings. Messages received before the first call wait (up to the
    /// receive queue) and go to it; a later call replaces the handler.
    #[wasm_bindgen(js_name = onMessage)]
    pub fn on_message(
        &self,
        #[wasm_bindgen(
            unchecked_param_type = "(peerId: string, data: string | Uint8Array) => void"
        )]
        callback: JsValue,
    ) -> Result<(), JsValue> {
        JsTransport::set_handler(
            &self.on_message,
            function_arg(callback, "onMessage")?,
            &self.inner,
            |t| Box::pin(async move { t.recv().await }),
            dispatch_message,
        );
        Ok(())
    }

    /// Sets the peer event handler `(event: PeerEvent) => void`; events from before the first
    /// call are kept for it; a later call replaces the handler.
    #[wasm_bindgen(js_name = onPeer)]
    pub fn on_peer(
        &self,
        #[wasm_bindgen(unchecked_param_type = "(event: PeerEvent) => void")] callback: JsValue,
    ) -> Result<(), JsValue> {
        JsTransport::set_handler(
            &self.on_peer,
            function_arg(callback, "onPeer")?,
            &self.inner,
            |t| Box::pin(async move { t.next_event().await }),
            dispatch_event,
        );
        Ok(())
    }

    /// Sends `data` (string → text, Uint8Array/ArrayBuffer → binary) to `peerId`. A message
    /// that fits one frame resolves once queued; a larger one once its last frame is handed to
    /// the data channel; either waits while 1024 messages are queued or `bufferedAmount` is
    /// over 1 MiB. Rejects with MiaouError for a peerId that is not a string, an unknown or
    /// closing peer, or an oversized message; later failures (peer refused it, channel broke)
    /// arrive through `onPeer` as `error` events.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn send(
        &self,
        #[wasm_bindgen(js_name = peerId, unchecked_param_type = "string")] peer_id: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string | Uint8Array | ArrayBuffer")] data: JsValue,
    ) -> js_sys::Promise {
        let inner = Rc::clone(&self.inner);
        let prepared = payload(&data);
        let peer = peer_arg(&peer_id);
        wasm_bindgen_futures::future_to_promise(async move {
            let (bytes, text) = prepared?;
            let peer = peer?;
            inner
                .send_payload(&peer, bytes, text)
                .await
                .map(|()| JsValue::UNDEFINED)
                .map_err(js_error)
        })
    }

    /// Sends `data` to every connected peer.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn broadcast(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string | Uint8Array | ArrayBuffer")] data: JsValue,
    ) -> js_sys::Promise {
        let inner = Rc::clone(&self.inner);
        let prepared = payload(&data);
        wasm_bindgen_futures::future_to_promise(async move {
            let (bytes, text) = prepared?;
            inner
                .broadcast_payload(bytes, text)
                .await
                .map(|()| JsValue::UNDEFINED)
                .map_err(js_error)
        })
    }

    /// The ICE candidate pair the connection to `peerId` uses now (from `getStats()`):
    /// `{ local, remote }`, each `{ candidateType, address, port, protocol }`. Over TURN,
    /// `local.candidateType` is `"relay"`. Rejects with a `MiaouError` if `peerId` has no open
    /// channel.
    #[wasm_bindgen(js_name = selectedCandidatePair, unchecked_return_type = "Promise<CandidatePair>")]
    pub fn selected_candidate_pair(
        &self,
        #[wasm_bindgen(js_name = peerId, unchecked_param_type = "string")] peer_id: JsValue,
    ) -> js_sys::Promise {
        let inner = Rc::clone(&self.inner);
        let peer = peer_arg(&peer_id);
        wasm_bindgen_futures::future_to_promise(async move {
            inner
                .selected_candidate_pair(&peer?)
                .await
                .map(|pair| pair_object(&pair))
                .map_err(js_error)
        })
    }

    /// The open data channel to `peerId` as the browser negotiated it: `{ label, kind,
    /// ordered, maxRetransmits, maxPacketLifeTime, maxFrameSize, remoteMaxMessageSize, arq }`.
    /// Throws a `MiaouError` if `peerId` is not a string or has no open channel.
    #[wasm_bindgen(js_name = channelInfo, unchecked_return_type = "ChannelInfo")]
    pub fn channel_info(
        &self,
        #[wasm_bindgen(js_name = peerId, unchecked_param_type = "string")] peer_id: JsValue,
    ) -> Result<JsValue, JsValue> {
        let peer = peer_arg(&peer_id)?;
        let info = self.inner.channel_info(&peer).map_err(js_error)?;
        Ok(channel_object(&info))
    }

    /// Bytes queued in the data channel to `peerId` and not yet sent
    /// (`RTCDataChannel.bufferedAmount`); `send` keeps it near its high-water mark (1 MiB).
    /// Throws a `MiaouError` if `peerId` is not a string or has no open channel.
    #[wasm_bindgen(js_name = bufferedAmount)]
    pub fn buffered_amount(
        &self,
        #[wasm_bindgen(js_name = peerId, unchecked_param_type = "string")] peer_id: JsValue,
    ) -> Result<f64, JsValue> {
        let peer = peer_arg(&peer_id)?;
        let amount = self.inner.buffered_amount(&peer);
        // The browser answers at once: the future is ready on its first poll.
        match futures::FutureExt::now_or_never(amount) {
            Some(amount) => Ok(amount.map_err(js_error)? as f64),
            None => Err(js_error(Error::InvalidInput(
                "bufferedAmount not ready".into(),
            ))),
        }
    }

    /// Delivers everything sent so far, then closes every channel and leaves the room.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn close(&self) -> js_sys::Promise {
        let inner = Rc::clone(&self.inner);
        wasm_bindgen_futures::future_to_promise(async move {
            inner
                .close()
                .await
                .map(|()| JsValue::UNDEFINED)
                .map_err(js_error)
        })
    }
}
