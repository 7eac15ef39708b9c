//! [`TransportConfig`] and its builder: where to signal, which room, which ICE servers, which
//! kind of data channel, and every limit (with its unit).

use crate::error::{Error, Result};
use crate::signaling::protocol::validate_room;

/// One ICE server (STUN or TURN), as in `RTCIceServer` (W3C webrtc-pc §4.2.1).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct IceServer {
    /// URLs such as `stun:198.18.0.1:3478` or `turn:198.18.0.1:3478?transport=udp`.
    pub urls: Vec<String>,
    /// TURN username (empty for STUN).
    pub username: String,
    /// TURN credential (empty for STUN).
    pub credential: String,
}

impl IceServer {
    /// A server reached without credentials (STUN).
    pub fn new(url: impl Into<String>) -> Self {
        IceServer {
            urls: vec![url.into()],
            ..Default::default()
        }
    }

    /// A TURN server with its long-term credentials (RFC 8489 §9.2), e.g.
    /// `IceServer::turn("turn:198.18.0.1:3478", "alice", "secret")`.
    pub fn turn(
        url: impl Into<String>,
        username: impl Into<String>,
        credential: impl Into<String>,
    ) -> Self {
        IceServer {
            urls: vec![url.into()],
            username: username.into(),
            credential: credential.into(),
        }
    }

    /// The TURN server of a bridge's `welcome` (`turn_credentials_from_bridge`), keeping only
    /// the URLs `support` can use — a bridge may also hand out `turns:` URLs for browsers —
    /// unless none is left, in which case all are kept so that validation names the problem.
    /// Returns the server and the refusal of each URL left out.
    pub(crate) fn from_bridge(
        urls: Vec<String>,
        username: String,
        credential: String,
        support: IceUrlSupport,
    ) -> (IceServer, Vec<String>) {
        let (usable, unusable): (Vec<String>, Vec<String>) = urls
            .iter()
            .cloned()
            .partition(|url| support.refusal(url).is_none());
        let (urls, skipped) = if usable.is_empty() {
            (urls, Vec::new())
        } else {
            let why = unusable.iter().filter_map(|url| support.refusal(url));
            (usable, why.collect())
        };
        let server = IceServer {
            urls,
            username,
            credential,
        };
        (server, skipped)
    }

    /// The `turn:` / `turns:` URLs among `urls`.
    pub fn turn_urls(&self) -> impl Iterator<Item = &str> {
        self.urls
            .iter()
            .map(String::as_str)
            .filter(|url| url.starts_with("turn:") || url.starts_with("turns:"))
    }
}

/// Which local candidates ICE may use, as `RTCConfiguration.iceTransportPolicy` (W3C
/// webrtc-pc §4.2.1, `RTCIceTransportPolicy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum IceTransportPolicy {
    /// Every candidate: host, server-reflexive, peer-reflexive and relay. The default.
    #[default]
    All,
    /// Relay candidates only: all traffic goes through a TURN server, and the peer never
    /// learns our addresses. Needs at least one `turn:` server (or
    /// [`TransportConfig::turn_credentials_from_bridge`]).
    Relay,
}

impl IceTransportPolicy {
    /// The W3C name: `"all"` or `"relay"`.
    pub fn as_str(self) -> &'static str {
        match self {
            IceTransportPolicy::All => "all",
            IceTransportPolicy::Relay => "relay",
        }
    }

    /// Parses the W3C name (`"all"` or `"relay"`).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "all" => Some(IceTransportPolicy::All),
            "relay" => Some(IceTransportPolicy::Relay),
            _ => None,
        }
    }
}

/// Delivery guarantees of the data channel (RFC 8831 §6.1, `ordered` / `maxRetransmits`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ChannelKind {
    /// Ordered and reliable: every message arrives, in order (like TCP). The default.
    #[default]
    Reliable,
    /// Unordered with `maxRetransmits: 0`: lowest latency, messages may be lost or reordered
    /// (like UDP). A message fragmented into several frames is lost entirely if one frame is.
    Unreliable,
}

impl ChannelKind {
    /// Data channel label used for this kind; the answering side recognises the kind by it.
    pub fn label(self) -> &'static str {
        match self {
            ChannelKind::Reliable => "miaou-reliable",
            ChannelKind::Unreliable => "miaou-unreliable",
        }
    }

    /// The JS API's name for this kind: `"reliable"` or `"unreliable"`.
    pub fn name(self) -> &'static str {
        match self {
            ChannelKind::Reliable => "reliable",
            ChannelKind::Unreliable => "unreliable",
        }
    }

    /// Parses [`name`](Self::name)'s output.
    pub fn from_name(name: &str) -> Option<Self> {
        [ChannelKind::Reliable, ChannelKind::Unreliable]
            .into_iter()
            .find(|k| k.name() == name)
    }

    /// The kind a remote-created channel with `label` has, if it is one of ours.
    pub fn from_label(label: &str) -> Option<Self> {
        [ChannelKind::Reliable, ChannelKind::Unreliable]
            .into_iter()
            .find(|k| k.label() == label)
    }
}

/// Default cap on one application message: 64 MiB. Larger messages are refused by `send` with
/// [`CodecError::MessageTooLarge`](crate::codec::CodecError::MessageTooLarge).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = crate::codec::DEFAULT_MAX_MESSAGE_SIZE;

/// Default largest frame we send, bytes: 16 KiB, the size every browser accepts
/// (RFC 8831 §6.6). Never more than the remote's `a=max-message-size`.
pub const DEFAULT_MAX_FRAME_SIZE: usize = crate::codec::DEFAULT_MAX_FRAME_SIZE;

/// Default number of received messages held for [`crate::Transport::recv`] before the
/// receiving side applies backpressure.
pub const DEFAULT_RECEIVE_QUEUE_MESSAGES: usize = 1024;

/// Default bytes of received messages queued for [`crate::Transport::recv`]: 16 MiB. Past it
/// the peers' channels are no longer read until the application catches up; one message
/// larger than this still passes when nothing else is queued.
pub const DEFAULT_RECEIVE_QUEUE_BYTES: usize = 16 * 1024 * 1024;

/// Default `bufferedAmount` above which sending pauses, bytes (1 MiB).
pub const DEFAULT_SEND_HIGH_WATER_BYTES: usize = 1024 * 1024;

/// Default `bufferedAmount` at which sending resumes, bytes (256 KiB).
pub const DEFAULT_SEND_LOW_WATER_BYTES: usize = 256 * 1024;

/// Default number of messages queued per peer before `send` waits. Many, so that small
/// messages pile up while the channel is busy and are coalesced into BATCH frames; at most one
/// frame each (16 KiB by default) — larger messages hold their sender until they are sent.
pub const DEFAULT_SEND_QUEUE_MESSAGES: usize = 1024;

/// Default number of received frames buffered per peer before the data channel is no longer
/// read (native) or is reset with `Error::ReceiveOverflow` (browser, which cannot pause it).
pub const DEFAULT_RECEIVE_QUEUE_FRAMES: usize = 1024;

/// Default number of reconnection attempts after a peer connection fails.
pub const DEFAULT_RECONNECT_ATTEMPTS: u32 = 6;

/// Default first reconnection delay, ms (doubled per attempt, at most 8 s).
pub const DEFAULT_RECONNECT_BACKOFF_MS: u64 = 250;

/// Default open deadline of a first connection attempt, ms (see
/// [`TransportConfig::open_timeout_ms`]).
pub const DEFAULT_OPEN_TIMEOUT_MS: u64 = 2_500;

/// The open deadline grows per retry up to this, ms (or up to `open_timeout_ms` when that is
/// larger): the 15 s every attempt had before the deadline was configurable, which slow
/// TURN-relayed paths and a TURN server that never answers are measured against
/// (docs/turn.md).
pub const OPEN_TIMEOUT_CAP_MS: u64 = 15_000;

/// Default time without ICE traffic before a native connection counts as disconnected, ms.
pub const DEFAULT_ICE_DISCONNECTED_TIMEOUT_MS: u64 = 5_000;

/// Default time without ICE traffic before a native connection fails, ms.
pub const DEFAULT_ICE_FAILED_TIMEOUT_MS: u64 = 25_000;

/// Default time `Transport::close` waits for peers to acknowledge delivery, ms.
pub const DEFAULT_CLOSE_TIMEOUT_MS: u64 = 10_000;

/// Default time `Transport::connect` waits for the bridge's welcome, ms.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 10_000;

/// Everything a [`crate::Transport`] needs. Build it with [`TransportConfig::builder`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransportConfig {
    /// Signaling server WebSocket URL, e.g. `ws://127.0.0.1:8080/ws`.
    pub signaling_url: String,
    /// Room to join: 1..=64 bytes of UTF-8, no control characters.
    pub room: String,
    /// ICE servers; default none (host candidates only: LAN and loopback).
    pub ice_servers: Vec<IceServer>,
    /// Which local candidates ICE may use (default [`IceTransportPolicy::All`]).
    pub ice_transport_policy: IceTransportPolicy,
    /// Use the short-lived TURN credentials the bridge hands out in its welcome (bridge
    /// started with a TURN secret, `docs/turn.md`), in addition to `ice_servers`. `connect`
    /// fails with [`Error::Config`] if the bridge offers none. Default `false`.
    pub turn_credentials_from_bridge: bool,
    /// Kind of data channel we open to peers we offer to; towards a peer that offered, we use
    /// the kind it chose (so two differently configured peers still connect).
    pub channel: ChannelKind,
    /// Announce the ARQ layer (docs/frame.md, "ARQ layer") on reliable channels (default
    /// true natively, false in browsers: see docs/frame.md for the webrtc-sctp bug that keeps
    /// it off there): towards a peer that announces it too, frames travel as datagrams on an
    /// unordered, `maxRetransmits: 0` channel with our own loss recovery and congestion
    /// control, because webrtc-rs's SCTP retransmission stalls ≥ 1 s per loss
    /// (docs/upstream/webrtc-sctp-loss.md). False, or a peer that does not announce it: v1
    /// frames on the reliable channel, as before.
    pub arq: bool,
    /// The ARQ layer's receive window, bytes (default 4 MiB, `arq::DEFAULT_RECEIVE_WINDOW`):
    /// what a peer may send us beyond what our application has read, so the most one peer's
    /// unread data can hold here besides the receive queues. It also caps throughput at
    /// window / RTT (4 MiB at 40 ms: 100 MB/s). At least 64 KiB.
    pub arq_receive_window_bytes: u64,
    /// Largest application message accepted by `send`, bytes (default 64 MiB).
    pub max_message_size: usize,
    /// Largest frame we put on the data channel, bytes (default 16 KiB); the effective size is
    /// the smaller of this and the remote's `a=max-message-size` (RFC 8841 §6).
    pub max_frame_size: usize,
    /// Bytes of partially received messages held per peer before the reassembler refuses more
    /// (default: `max_message_size` + 1 MiB = 65 MiB, `codec::default_max_reassembly_bytes`).
    pub max_reassembly_bytes: usize,
    /// Received messages queued for `recv` (default 1024); past it the peers' channels are
    /// no longer read until the application catches up.
    pub receive_queue_messages: usize,
    /// Bytes of received messages queued for `recv` (default 16 MiB), the byte bound beside
    /// `receive_queue_messages`; a single larger message passes when nothing else is queued.
    pub receive_queue_bytes: usize,
    /// Received frames buffered per peer (default 1024; see [`DEFAULT_RECEIVE_QUEUE_FRAMES`]).
    pub receive_queue_frames: usize,
    /// Messages queued per peer before `send` waits (default 1024).
    pub send_queue_messages: usize,
    /// `bufferedAmount` above which sending pauses, bytes (default 1 MiB).
    pub send_high_water_bytes: usize,
    /// `bufferedAmount` at which sending resumes (`bufferedamountlow`), bytes (default 256 KiB).
    pub send_low_water_bytes: usize,
    /// How long `connect` waits for the bridge's welcome, ms.
    pub connect_timeout_ms: u64,
    /// Reconnection attempts after a peer connection fails while the peer is still in the
    /// room (default 6; 0 disables). The pair's offerer re-offers; see `reconnect_backoff_ms`.
    pub reconnect_attempts: u32,
    /// First reconnection delay, ms (default 250), doubled per attempt up to 8 s.
    pub reconnect_backoff_ms: u64,
    /// Open deadline of a connection attempt, ms (default 2 500): the offerer drops an attempt
    /// whose data channel is not open by then and retries at once with a fresh peer connection
    /// (new ICE agent, new DTLS handshake). The deadline doubles per retry up to
    /// [`OPEN_TIMEOUT_CAP_MS`] (15 s) — or stays at this value if it is larger — and the last
    /// attempt `reconnect_attempts` allows always gets the full cap, so slow TURN-relayed paths
    /// still open. Why short: under packet loss webrtc-rs 0.17 can lose the last DTLS flight
    /// and never open, and a lost SCTP INIT costs 3 s
    /// (docs/upstream/webrtc-dtls-last-flight.md), while a lossless open through the bridge
    /// takes ~10 ms (BENCHMARKS.md, "Opening under packet loss"). Each
    /// timeout counts as one of `reconnect_attempts` and is reported as `PeerDisconnected`
    /// with the reason. Relay-only attempts still gathering are given the full cap before their
    /// TURN server is blamed ([`crate::Error::Turn`]). The answerer drops an attempt that never
    /// opened after its own cap plus 2 s, by which time the offerer has re-offered or given up
    /// — unless the offerer was configured with a deadline longer than that.
    pub open_timeout_ms: u64,
    /// Native only: time without ICE traffic before the connection is "disconnected", ms
    /// (default 5 000). Browsers use their own timers.
    pub ice_disconnected_timeout_ms: u64,
    /// Native only: time without ICE traffic before the connection fails and reconnection
    /// starts, ms (default 25 000).
    pub ice_failed_timeout_ms: u64,
    /// How long `close` waits for peers to acknowledge everything sent, ms.
    pub close_timeout_ms: u64,
}

impl TransportConfig {
    /// Starts a builder for `signaling_url` and `room`; every other field has its default.
    ///
    /// ```
    /// use miaou_transport::{ChannelKind, TransportConfig};
    /// let config = TransportConfig::builder("ws://127.0.0.1:8080/ws", "lobby")
    ///     .channel(ChannelKind::Reliable)
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(config.room, "lobby");
    /// assert!(config.ice_servers.is_empty());
    /// ```
    pub fn builder(
        signaling_url: impl Into<String>,
        room: impl Into<String>,
    ) -> TransportConfigBuilder {
        TransportConfigBuilder {
            config: TransportConfig {
                signaling_url: signaling_url.into(),
                room: room.into(),
                ice_servers: Vec::new(),
                ice_transport_policy: IceTransportPolicy::All,
                turn_credentials_from_bridge: false,
                channel: ChannelKind::default(),
                arq: crate::backend::ARQ_BY_DEFAULT,
                arq_receive_window_bytes: crate::arq::DEFAULT_RECEIVE_WINDOW,
                max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
                max_frame_size: DEFAULT_MAX_FRAME_SIZE,
                max_reassembly_bytes: crate::codec::DEFAULT_MAX_REASSEMBLY_BYTES,
                receive_queue_messages: DEFAULT_RECEIVE_QUEUE_MESSAGES,
                receive_queue_bytes: DEFAULT_RECEIVE_QUEUE_BYTES,
                receive_queue_frames: DEFAULT_RECEIVE_QUEUE_FRAMES,
                send_queue_messages: DEFAULT_SEND_QUEUE_MESSAGES,
                send_high_water_bytes: DEFAULT_SEND_HIGH_WATER_BYTES,
                send_low_water_bytes: DEFAULT_SEND_LOW_WATER_BYTES,
                connect_timeout_ms: DEFAULT_CONNECT_TIMEOUT_MS,
                reconnect_attempts: DEFAULT_RECONNECT_ATTEMPTS,
                reconnect_backoff_ms: DEFAULT_RECONNECT_BACKOFF_MS,
                open_timeout_ms: DEFAULT_OPEN_TIMEOUT_MS,
                ice_disconnected_timeout_ms: DEFAULT_ICE_DISCONNECTED_TIMEOUT_MS,
                ice_failed_timeout_ms: DEFAULT_ICE_FAILED_TIMEOUT_MS,
                close_timeout_ms: DEFAULT_CLOSE_TIMEOUT_MS,
            },
            reassembly_set: false,
        }
    }

    /// Checks every field; [`Error::Config`] names the first bad one. ICE server URLs must
    /// also be usable by this build's backend: natively (webrtc-rs 0.17) `stun:` and `turn:`
    /// over UDP only, so `stuns:`, `turns:` and `?transport=tcp` are refused; browsers take all
    /// four schemes and both transports.
    pub fn validate(&self) -> Result<()> {
        self.validate_for(crate::backend::ICE_URL_SUPPORT)
    }

    /// [`TransportConfig::validate`] with the ICE URL rule of a given backend.
    pub(crate) fn validate_for(&self, ice_urls: IceUrlSupport) -> Result<()> {
        let url = &self.signaling_url;
        if !(url.starts_with("ws://") || url.starts_with("wss://")) {
            return Err(Error::Config(format!(
                "signaling URL must start with ws:// or wss://, got {url:?}"
            )));
        }
        validate_room(&self.room).map_err(Error::Config)?;
        if self.max_frame_size < crate::codec::MIN_FRAME_SIZE {
            return Err(Error::Config(format!(
                "max_frame_size {} bytes is below the minimum {} bytes",
                self.max_frame_size,
                crate::codec::MIN_FRAME_SIZE
            )));
        }
        for (name, value) in [
            ("receive_queue_messages", self.receive_queue_messages),
            ("receive_queue_bytes", self.receive_queue_bytes),
            ("receive_queue_frames", self.receive_queue_frames),
            ("send_queue_messages", self.send_queue_messages),
            // 0 ms would drop every attempt before it could open.
            ("open_timeout_ms", usize::from(self.open_timeout_ms != 0)),
            // 0 ms would declare every ICE check failed at once: connections never open.
            // (Compared as 0 / not 0: `as usize` would wrap on wasm32 for huge values.)
            (
                "ice_disconnected_timeout_ms",
                usize::from(self.ice_disconnected_timeout_ms != 0),
            ),
            (
                "ice_failed_timeout_ms",
                usize::from(self.ice_failed_timeout_ms != 0),
            ),
        ] {
            if value == 0 {
                return Err(Error::Config(format!("{name} must be at least 1")));
            }
        }
        if self.max_message_size == 0 {
            // Every message would be refused, by both sides.
            return Err(Error::Config(
                "max_message_size must be at least 1 byte".into(),
            ));
        }
        if self.ice_failed_timeout_ms < self.ice_disconnected_timeout_ms {
            // ICE fails only after it was disconnected (W3C RTCIceConnectionState).
            return Err(Error::Config(format!(
                "ice_failed_timeout_ms ({}) must not be below ice_disconnected_timeout_ms ({})",
                self.ice_failed_timeout_ms, self.ice_disconnected_timeout_ms
            )));
        }
        if self.send_low_water_bytes > self.send_high_water_bytes {
            return Err(Error::Config(format!(
                "send_low_water_bytes ({}) must not exceed send_high_water_bytes ({})",
                self.send_low_water_bytes, self.send_high_water_bytes
            )));
        }
        if self.arq_receive_window_bytes < 64 * 1024 {
            return Err(Error::Config(format!(
                "arq_receive_window_bytes ({}) must be at least 65536: a smaller window \
                 starves the ARQ layer's sender",
                self.arq_receive_window_bytes
            )));
        }
        for server in &self.ice_servers {
            if server.urls.is_empty() {
                return Err(Error::Config("an ICE server has no URL".into()));
            }
            for url in &server.urls {
                validate_ice_url(url, ice_urls).map_err(Error::Config)?;
            }
            if server.turn_urls().next().is_some()
                && (server.username.is_empty() || server.credential.is_empty())
            {
                // Browsers throw InvalidAccessError here; webrtc-rs would only log and skip it.
                return Err(Error::Config(format!(
                    "TURN server {:?} needs a username and a credential",
                    server.urls.join(" ")
                )));
            }
        }
        if self.ice_transport_policy == IceTransportPolicy::Relay
            && !self.turn_credentials_from_bridge
            && !self
                .ice_servers
                .iter()
                .any(|s| s.turn_urls().next().is_some())
        {
            return Err(Error::Config(
                "ice_transport_policy Relay needs a turn: or turns: ICE server (or TURN \
                 credentials from the bridge)"
                    .into(),
            ));
        }
        Ok(())
    }

    /// The open deadline of the attempt made after `retries` reconnection attempts since the
    /// channel was last open (0 for the first), ms: `open_timeout_ms` doubled per retry up to
    /// [`Self::open_deadline_cap_ms`]; the last attempt `reconnect_attempts` allows gets the
    /// cap, so giving up never happens on a short deadline.
    pub(crate) fn open_deadline_ms(&self, retries: u32) -> u64 {
        let cap = self.open_deadline_cap_ms();
        if retries >= self.reconnect_attempts {
            return cap;
        }
        self.open_timeout_ms
            .saturating_mul(1u64 << retries.min(32))
            .min(cap)
    }

    /// The longest open deadline, ms: [`OPEN_TIMEOUT_CAP_MS`], or `open_timeout_ms` if larger.
    pub(crate) fn open_deadline_cap_ms(&self) -> u64 {
        self.open_timeout_ms.max(OPEN_TIMEOUT_CAP_MS)
    }

    /// Whether our offers announce the ARQ layer (and open its channel): only for a reliable
    /// channel, when enabled.
    pub(crate) fn announces_arq(&self) -> bool {
        self.arq && self.channel == ChannelKind::Reliable
    }

    /// Settings of a `kind` link to a peer whose SDP advertised `remote_max_message_size` bytes.
    pub(crate) fn link_settings(
        &self,
        kind: ChannelKind,
        remote_max_message_size: usize,
    ) -> crate::session::link::LinkSettings {
        crate::session::link::LinkSettings {
            limits: crate::codec::CodecLimits {
                max_message_size: self.max_message_size,
                max_reassembly_bytes: self.max_reassembly_bytes,
                ordered: kind == ChannelKind::Reliable,
                ..crate::codec::CodecLimits::default()
            },
            max_frame_size: self.max_frame_size.min(remote_max_message_size),
            high_water_bytes: self.send_high_water_bytes,
            low_water_bytes: self.send_low_water_bytes,
            send_queue_messages: self.send_queue_messages,
            kind,
            remote_max_message_size,
            arq_receive_window: self.arq_receive_window_bytes,
        }
    }
}

/// Which ICE server URLs a backend can use beyond the syntax of RFC 7064 / 7065. Each backend
/// module gives its own as `ICE_URL_SUPPORT` (the seam in `lib.rs`); the check itself is shared
/// ([`TransportConfig::validate`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
// Each build constructs only its own backend's variant.
#[allow(dead_code)]
pub(crate) enum IceUrlSupport {
    /// Every scheme and transport (browsers).
    All,
    /// `stun:` and `turn:` over UDP only: `stuns:`, `turns:` (TLS, DTLS) and `?transport=tcp`
    /// are refused. `why` says which backend and why, for the error.
    UdpOnly {
        /// E.g. "the native backend (webrtc-rs 0.17) reaches STUN and TURN servers over
        /// plain UDP only".
        why: &'static str,
    },
}

impl IceUrlSupport {
    /// Why this backend cannot use `url`, already checked for syntax; `None` if it can.
    pub(crate) fn refusal(self, url: &str) -> Option<String> {
        let IceUrlSupport::UdpOnly { why } = self else {
            return None;
        };
        let what = if url.starts_with("turns:") || url.starts_with("stuns:") {
            "is over TLS (turns: / stuns:)"
        } else if url.ends_with("?transport=tcp") {
            "asks for TCP (?transport=tcp)"
        } else {
            return None;
        };
        Some(format!(
            "ICE server URL {url:?} {what}, but {why}: use stun:HOST[:PORT] or turn:HOST[:PORT] \
             (optionally ?transport=udp)"
        ))
    }
}

/// Checks an ICE server URL against RFC 7064 (`stun:`, `stuns:`) and RFC 7065 (`turn:`,
/// `turns:`): `scheme:host[:port][?transport=udp|tcp]`, `transport` only for TURN; then
/// against what the backend can use (`support`).
fn validate_ice_url(url: &str, support: IceUrlSupport) -> std::result::Result<(), String> {
    let bad = |why: &str| Err(format!("ICE server URL {url:?} {why}"));
    let Some((scheme, rest)) = url.split_once(':') else {
        return bad("must start with stun:, stuns:, turn: or turns:");
    };
    if !matches!(scheme, "stun" | "stuns" | "turn" | "turns") {
        return bad("must start with stun:, stuns:, turn: or turns:");
    }
    let (hostport, query) = match rest.split_once('?') {
        Some((hostport, query)) => (hostport, Some(query)),
        None => (rest, None),
    };
    if let Some(query) = query {
        if !scheme.starts_with("turn") {
            return bad("has a query, which only turn: and turns: URLs may have");
        }
        if !matches!(query, "transport=udp" | "transport=tcp") {
            return bad("may only end with ?transport=udp or ?transport=tcp");
        }
    }
    // An IPv6 literal is bracketed (`[2001:db8::1]:3478`); anything else splits at its ':'.
    let (host, port) = if let Some(inner) = hostport.strip_prefix('[') {
        match inner.split_once(']') {
            Some((host, "")) => (host, None),
            Some((host, port)) => match port.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return bad("has text after its IPv6 address"),
            },
            None => return bad("has an unclosed '['"),
        }
    } else {
        match hostport.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (hostport, None),
        }
    };
    if host.is_empty() || host.starts_with("//") || host.contains(['/', '@', ' ']) {
        return bad("needs a host name or address right after the scheme (scheme:host:port)");
    }
    if let Some(port) = port {
        if port.parse::<u16>().map_or(true, |p| p == 0) {
            return bad("has a port that is not a number from 1 to 65535");
        }
    }
    support.refusal(url).map_or(Ok(()), Err)
}

/// Builder for [`TransportConfig`].
#[derive(Clone, Debug)]
pub struct TransportConfigBuilder {
    config: TransportConfig,
    reassembly_set: bool,
}

impl TransportConfigBuilder {
    /// Adds an ICE server (repeatable).
    pub fn ice_server(mut self, server: IceServer) -> Self {
        self.config.ice_servers.push(server);
        self
    }

    /// Which local candidates ICE may use (default [`IceTransportPolicy::All`]);
    /// [`IceTransportPolicy::Relay`] sends everything through TURN.
    pub fn ice_transport_policy(mut self, policy: IceTransportPolicy) -> Self {
        self.config.ice_transport_policy = policy;
        self
    }

    /// Also use the TURN credentials the bridge hands out (default off); see
    /// [`TransportConfig::turn_credentials_from_bridge`].
    pub fn turn_credentials_from_bridge(mut self, enabled: bool) -> Self {
        self.config.turn_credentials_from_bridge = enabled;
        self
    }

    /// Chooses the data channel kind (default [`ChannelKind::Reliable`]).
    pub fn channel(mut self, kind: ChannelKind) -> Self {
        self.config.channel = kind;
        self
    }

    /// Announces the ARQ layer to peers (default true; see [`TransportConfig::arq`]). False
    /// keeps every link on v1 frames over SCTP's own retransmission.
    pub fn arq(mut self, enabled: bool) -> Self {
        self.config.arq = enabled;
        self
    }

    /// The ARQ layer's receive window, bytes (see [`TransportConfig::arq_receive_window_bytes`]).
    pub fn arq_receive_window(mut self, bytes: u64) -> Self {
        self.config.arq_receive_window_bytes = bytes;
        self
    }

    /// Largest application message accepted by `send`, bytes.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.config.max_message_size = bytes;
        self
    }

    /// Largest frame sent on the data channel, bytes (capped by the remote's limit).
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.config.max_frame_size = bytes;
        self
    }

    /// Bytes of partial messages held per peer while reassembling.
    pub fn max_reassembly_bytes(mut self, bytes: usize) -> Self {
        self.config.max_reassembly_bytes = bytes;
        self.reassembly_set = true;
        self
    }

    /// Received messages queued for `recv` before backpressure.
    pub fn receive_queue_messages(mut self, messages: usize) -> Self {
        self.config.receive_queue_messages = messages;
        self
    }

    /// Bytes of received messages queued for `recv` before backpressure (default 16 MiB).
    pub fn receive_queue_bytes(mut self, bytes: usize) -> Self {
        self.config.receive_queue_bytes = bytes;
        self
    }

    /// Received frames buffered per peer.
    pub fn receive_queue_frames(mut self, frames: usize) -> Self {
        self.config.receive_queue_frames = frames;
        self
    }

    /// Messages queued per peer before `send` waits.
    pub fn send_queue_messages(mut self, messages: usize) -> Self {
        self.config.send_queue_messages = messages;
        self
    }

    /// `bufferedAmount` marks for send backpressure: pause above `high`, resume at `low`, bytes.
    pub fn send_buffer_watermarks(mut self, low: usize, high: usize) -> Self {
        self.config.send_low_water_bytes = low;
        self.config.send_high_water_bytes = high;
        self
    }

    /// Reconnection after a failed peer connection: `attempts` tries, the first after
    /// `backoff_ms` (doubled each time, at most 8 s). `attempts` 0 disables it.
    pub fn reconnect(mut self, attempts: u32, backoff_ms: u64) -> Self {
        self.config.reconnect_attempts = attempts;
        self.config.reconnect_backoff_ms = backoff_ms;
        self
    }

    /// Open deadline of a first connection attempt, ms (default 2 500, at least 1), doubled
    /// per retry up to 15 s; see [`TransportConfig::open_timeout_ms`] for why and how.
    pub fn open_timeout_ms(mut self, ms: u64) -> Self {
        self.config.open_timeout_ms = ms;
        self
    }

    /// Native only: ICE consent timers, ms — "disconnected" after `disconnected_ms` without
    /// traffic, failed (and reconnecting) after `failed_ms`.
    pub fn ice_timeouts_ms(mut self, disconnected_ms: u64, failed_ms: u64) -> Self {
        self.config.ice_disconnected_timeout_ms = disconnected_ms;
        self.config.ice_failed_timeout_ms = failed_ms;
        self
    }

    /// How long `connect` waits for the bridge, ms.
    pub fn connect_timeout_ms(mut self, ms: u64) -> Self {
        self.config.connect_timeout_ms = ms;
        self
    }

    /// How long `close` waits for delivery acknowledgements, ms.
    pub fn close_timeout_ms(mut self, ms: u64) -> Self {
        self.config.close_timeout_ms = ms;
        self
    }

    /// Validates and returns the configuration. Errors: [`Error::Config`].
    pub fn build(mut self) -> Result<TransportConfig> {
        if !self.reassembly_set {
            self.config.max_reassembly_bytes =
                crate::codec::default_max_reassembly_bytes(self.config.max_message_size);
        }
        self.config.validate()?;
        Ok(self.config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_have_no_ice_servers_and_reliable_channel() {
        let c = TransportConfig::builder("ws://h/ws", "r").build().unwrap();
        assert!(c.ice_servers.is_empty());
        assert_eq!(c.channel, ChannelKind::Reliable);
        assert_eq!(c.max_message_size, 64 * 1024 * 1024);
    }

    #[test]
    fn open_deadline_doubles_per_retry_up_to_the_cap_and_the_last_attempt_gets_the_cap() {
        let c = TransportConfig::builder("ws://h/ws", "r").build().unwrap();
        assert_eq!(c.open_timeout_ms, DEFAULT_OPEN_TIMEOUT_MS);
        let schedule: Vec<u64> = (0..=7).map(|r| c.open_deadline_ms(r)).collect();
        assert_eq!(
            schedule,
            [2_500, 5_000, 10_000, 15_000, 15_000, 15_000, 15_000, 15_000]
        );
        // No retries allowed: the only attempt waits the full cap, as before.
        let once = TransportConfig::builder("ws://h/ws", "r")
            .reconnect(0, 0)
            .build()
            .unwrap();
        assert_eq!(once.open_deadline_ms(0), OPEN_TIMEOUT_CAP_MS);
        // Two retries: 1 s, 2 s, then the last attempt gets the cap.
        let short = TransportConfig::builder("ws://h/ws", "r")
            .reconnect(2, 100)
            .open_timeout_ms(1_000)
            .build()
            .unwrap();
        let schedule: Vec<u64> = (0..=2).map(|r| short.open_deadline_ms(r)).collect();
        assert_eq!(schedule, [1_000, 2_000, 15_000]);
        // A deadline above the cap is kept as it is; huge values do not overflow.
        let long = TransportConfig::builder("ws://h/ws", "r")
            .open_timeout_ms(u64::MAX / 2)
            .build()
            .unwrap();
        assert_eq!(long.open_deadline_ms(0), u64::MAX / 2);
        assert_eq!(long.open_deadline_ms(5), u64::MAX / 2);
        assert_eq!(long.open_deadline_cap_ms(), u64::MAX / 2);
    }

    #[test]
    fn zero_open_timeout_is_refused() {
        let err = TransportConfig::builder("ws://h/ws", "r")
            .open_timeout_ms(0)
            .build()
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("open_timeout_ms must be at least 1"),
            "{err}"
        );
    }

    #[test]
    fn default_reassembly_cap_holds_a_maximal_message_and_one_sent_during_it() {
        use crate::codec::{FrameDecoder, FrameEncoder, OutboundQueue, REASSEMBLY_HEADROOM};
        use bytes::Bytes;
        let c = TransportConfig::builder("ws://h/ws", "r").build().unwrap();
        assert_eq!(
            c.max_reassembly_bytes,
            crate::codec::DEFAULT_MAX_REASSEMBLY_BYTES
        );
        let smaller = TransportConfig::builder("ws://h/ws", "r")
            .max_message_size(1 << 20)
            .build()
            .unwrap();
        assert_eq!(
            smaller.max_reassembly_bytes,
            (1 << 20) + REASSEMBLY_HEADROOM
        );
        // What a link does with these settings: a 64 MiB message, and a 512 KiB one sent while
        // the first is nearly through, interleaved by the sender's queue.
        let link = c.link_settings(ChannelKind::Reliable, DEFAULT_MAX_FRAME_SIZE);
        let (mut enc, mut dec) = (
            FrameEncoder::new(link.limits),
            FrameDecoder::new(link.limits),
        );
        let mut queue = OutboundQueue::new();
        let frame = link.max_frame_size;
        queue
            .push(
                &mut enc,
                Bytes::from(vec![1; c.max_message_size]),
                false,
                frame,
            )
            .unwrap();
        let mut delivered = Vec::new();
        let mut decode = |f: Bytes, delivered: &mut Vec<usize>| {
            let got = dec.decode(&f).expect("accepted");
            delivered.extend(
                got.into_iter()
                    .flat_map(|d| d.into_messages())
                    .map(|m| m.data.len()),
            );
        };
        while queue.queued_bytes() > 4 << 20 {
            decode(queue.pop_frame(&mut enc).unwrap(), &mut delivered);
        }
        queue
            .push(&mut enc, Bytes::from(vec![2; 512 << 10]), false, frame)
            .unwrap();
        while let Some(f) = queue.pop_frame(&mut enc) {
            decode(f, &mut delivered);
        }
        assert_eq!(delivered, [512 << 10, c.max_message_size]);
    }

    #[test]
    fn bad_fields_are_config_errors() {
        assert!(matches!(
            TransportConfig::builder("http://h", "r").build(),
            Err(Error::Config(_))
        ));
        assert!(matches!(
            TransportConfig::builder("ws://h", "").build(),
            Err(Error::Config(_))
        ));
        assert!(matches!(
            TransportConfig::builder("ws://h", "r")
                .max_frame_size(1)
                .build(),
            Err(Error::Config(_))
        ));
    }

    #[test]
    fn a_zero_message_size_and_failing_before_disconnecting_are_refused() {
        let built = TransportConfig::builder("ws://h/ws", "r")
            .max_message_size(0)
            .build();
        assert!(
            matches!(&built, Err(Error::Config(m)) if m.contains("max_message_size")),
            "{built:?}"
        );
        let built = TransportConfig::builder("ws://h/ws", "r")
            .ice_timeouts_ms(9_000, 10)
            .build();
        assert!(
            matches!(&built, Err(Error::Config(m)) if m.contains("must not be below")),
            "{built:?}"
        );
        assert!(TransportConfig::builder("ws://h/ws", "r")
            .ice_timeouts_ms(5_000, 5_000)
            .build()
            .is_ok());
    }

    #[test]
    fn zero_ice_timeouts_are_refused() {
        for (disconnected, failed) in [(0, 1000), (1000, 0)] {
            let built = TransportConfig::builder("ws://h/ws", "r")
                .ice_timeouts_ms(disconnected, failed)
                .build();
            assert!(
                matches!(&built, Err(Error::Config(m)) if m.contains("timeout_ms must be at least 1")),
                "{built:?}"
            );
        }
    }

    /// A configuration with one ICE server at `url`, checked with the browser's rule (every
    /// scheme and transport), which leaves the syntax alone to decide.
    fn with_url(url: &str) -> Result<()> {
        let mut config = TransportConfig::builder("ws://h/ws", "r").config;
        config.ice_servers.push(IceServer::turn(url, "u", "c"));
        config.validate_for(IceUrlSupport::All)
    }

    #[test]
    fn udp_only_backends_refuse_tls_and_tcp_urls_naming_the_url_and_why() {
        let udp_only = IceUrlSupport::UdpOnly {
            why: "this backend speaks UDP only",
        };
        let check = |url: &str| {
            let mut config = TransportConfig::builder("ws://h/ws", "r").config;
            config.ice_servers.push(IceServer::turn(url, "u", "c"));
            config.validate_for(udp_only)
        };
        for url in [
            "turns:relay.example:5349",
            "turns:relay.example:5349?transport=tcp",
            "turns:relay.example?transport=udp",
            "stuns:stun.example:5349",
        ] {
            let err = check(url).unwrap_err();
            let Error::Config(text) = &err else {
                panic!("{url}: {err:?}")
            };
            assert!(text.contains(&format!("{url:?}")), "{text}");
            assert!(text.contains("is over TLS (turns: / stuns:)"), "{text}");
            assert!(text.contains("this backend speaks UDP only"), "{text}");
            assert!(with_url(url).is_ok(), "browsers take {url}");
        }
        let err = check("turn:198.18.0.1:3478?transport=tcp").unwrap_err();
        assert!(
            err.to_string().contains("asks for TCP (?transport=tcp)"),
            "{err}"
        );
        for url in [
            "stun:198.18.0.1:3478",
            "turn:198.18.0.1:3478",
            "turn:198.18.0.1:3478?transport=udp",
            "turn:[2001:db8::1]:3478",
        ] {
            assert!(check(url).is_ok(), "{url}");
        }
        // Syntax errors are reported as such, whatever the backend.
        let err = check("turns:").unwrap_err();
        assert!(err.to_string().contains("needs a host"), "{err}");
    }

    #[test]
    fn bridge_turn_urls_this_backend_cannot_use_are_skipped_unless_none_is_left() {
        let udp_only = IceUrlSupport::UdpOnly { why: "UDP only" };
        let urls = |list: &[&str]| list.iter().map(|u| u.to_string()).collect::<Vec<_>>();
        let both = urls(&["turn:198.18.0.1:3478", "turns:198.18.0.1:5349"]);
        let (server, skipped) =
            IceServer::from_bridge(both.clone(), "u".into(), "c".into(), udp_only);
        assert_eq!(server.urls, urls(&["turn:198.18.0.1:3478"]));
        assert_eq!(
            (server.username.as_str(), server.credential.as_str()),
            ("u", "c")
        );
        assert_eq!(skipped.len(), 1);
        assert!(
            skipped[0].contains("\"turns:198.18.0.1:5349\" is over TLS"),
            "{skipped:?}"
        );
        // Browsers keep both.
        let (server, skipped) =
            IceServer::from_bridge(both.clone(), "u".into(), "c".into(), IceUrlSupport::All);
        assert_eq!((server.urls, skipped), (both, vec![]));
        // Nothing usable: all kept, and validation says why.
        let tls = urls(&["turns:198.18.0.1:5349"]);
        let (server, skipped) =
            IceServer::from_bridge(tls.clone(), "u".into(), "c".into(), udp_only);
        assert_eq!((server.urls.clone(), skipped), (tls, vec![]));
        let mut config = TransportConfig::builder("ws://h/ws", "r").config;
        config.ice_servers.push(server);
        let err = config.validate_for(udp_only).unwrap_err();
        assert!(err.to_string().contains("is over TLS"), "{err}");
    }

    #[test]
    fn ice_server_urls_need_a_stun_or_turn_scheme() {
        let with = with_url;
        assert!(with("stun:198.18.0.1:3478").is_ok());
        assert!(with("stun:198.18.0.1").is_ok());
        assert!(with("turns:relay.example:5349?transport=tcp").is_ok());
        assert!(with("turn:[2001:db8::1]:3478?transport=udp").is_ok());
        let err = with("nonsense").unwrap_err();
        assert!(
            err.to_string()
                .contains("must start with stun:, stuns:, turn: or turns:"),
            "{err}"
        );
        for bad in [
            "http://x",
            "turn:",
            "turn://host:3478",
            "turn:host:0",
            "turn:host:port",
            "turn:host:70000",
            "turn:host:3478?transport=sctp",
            "stun:host:3478?transport=udp",
            "turn:[::1:3478",
            "turn:user@host",
        ] {
            assert!(matches!(with(bad), Err(Error::Config(_))), "{bad}");
        }
    }

    #[test]
    fn turn_needs_credentials_and_relay_needs_turn() {
        let err = TransportConfig::builder("ws://h/ws", "r")
            .ice_server(IceServer::new("turn:198.18.0.1:3478"))
            .build()
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("needs a username and a credential"),
            "{err}"
        );
        // STUN needs none.
        assert!(TransportConfig::builder("ws://h/ws", "r")
            .ice_server(IceServer::new("stun:198.18.0.1:3478"))
            .build()
            .is_ok());
        let relay = || {
            TransportConfig::builder("ws://h/ws", "r")
                .ice_transport_policy(IceTransportPolicy::Relay)
        };
        let err = relay()
            .ice_server(IceServer::new("stun:198.18.0.1:3478"))
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("needs a turn:"), "{err}");
        assert!(relay()
            .ice_server(IceServer::turn("turn:198.18.0.1:3478", "u", "c"))
            .build()
            .is_ok());
        assert!(relay().turn_credentials_from_bridge(true).build().is_ok());
    }

    #[test]
    fn policy_names_are_the_w3c_ones() {
        for p in [IceTransportPolicy::All, IceTransportPolicy::Relay] {
            assert_eq!(IceTransportPolicy::from_name(p.as_str()), Some(p));
        }
        assert_eq!(IceTransportPolicy::from_name("Relay"), None);
        assert_eq!(IceTransportPolicy::default(), IceTransportPolicy::All);
    }

    #[test]
    fn labels_and_names_round_trip() {
        for k in [ChannelKind::Reliable, ChannelKind::Unreliable] {
            assert_eq!(ChannelKind::from_label(k.label()), Some(k));
            assert_eq!(ChannelKind::from_name(k.name()), Some(k));
        }
        assert_eq!(ChannelKind::from_label("other"), None);
        assert_eq!(
            ChannelKind::from_name("miaou-reliable"),
            None,
            "a label is not a name"
        );
        assert_eq!(ChannelKind::name(ChannelKind::Unreliable), "unreliable");
    }
}
