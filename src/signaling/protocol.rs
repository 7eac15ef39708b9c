//! Signaling messages exchanged over the WebSocket between a client (native or browser) and the
//! bridge. JSON text frames, one message per frame, tagged by `"type"`, field names in camelCase.
//!
//! The bridge relays [`Signal`]s between peers of one room and never parses SDP beyond a size
//! check. See `docs/signaling.md` for the sequence diagrams.
//!
//! Pure: no I/O. [`ClientMessage::parse`] and [`ServerMessage::parse`] enforce the size limit
//! before parsing, so an oversized frame never reaches the JSON parser.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Version of this signaling protocol, carried in [`ClientMessage::Join`] and
/// [`ServerMessage::Welcome`]. A bridge rejects other versions with [`ErrorCode::BadVersion`].
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest signaling message, in bytes of JSON text, that either side accepts (64 KiB).
/// An SDP offer for one data channel is about 1 KiB; the margin covers many m-sections.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Largest room name, in bytes of UTF-8.
pub const MAX_ROOM_NAME_BYTES: usize = 64;

/// Identifier the bridge assigns to each connected client; unique per bridge process.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PeerId(pub String);

impl PeerId {
    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for PeerId {
    fn from(s: &str) -> Self {
        PeerId(s.to_owned())
    }
}

impl From<String> for PeerId {
    fn from(s: String) -> Self {
        PeerId(s)
    }
}

/// Which half of an offer/answer exchange an SDP is (RFC 8829 §5.2, §5.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SdpType {
    /// An SDP offer.
    Offer,
    /// An SDP answer.
    Answer,
}

/// Payload relayed from one peer to another: a session description or a trickled ICE candidate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "kebab-case",
    rename_all_fields = "camelCase"
)]
pub enum Signal {
    /// An SDP offer or answer.
    Description {
        /// Offer or answer.
        sdp_type: SdpType,
        /// The SDP text (RFC 8866).
        sdp: String,
        /// The ARQ layer version the sender can run on this connection (docs/frame.md, "ARQ
        /// layer"); absent from peers that cannot (older versions, clients written from the
        /// docs), which then get v1 frames on the reliable channel. An offer announces it, an
        /// answer confirms it; the layer is used only when both did.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        arq: Option<u8>,
    },
    /// One trickled ICE candidate (RFC 8838), as in `RTCIceCandidateInit`.
    Candidate {
        /// The `candidate:` attribute line, without the `a=` prefix.
        candidate: String,
        /// Media stream id the candidate belongs to.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sdp_mid: Option<String>,
        /// Index of the m-section the candidate belongs to.
        #[serde(
            default,
            rename = "sdpMLineIndex",
            skip_serializing_if = "Option::is_none"
        )]
        sdp_m_line_index: Option<u16>,
    },
}

/// TURN credentials handed out by the bridge (the TURN REST API scheme,
/// draft-uberti-behave-turn-rest-00, as coturn's `use-auth-secret` checks them):
/// `username` is `"<expiry, Unix seconds>:<peer id>"` and `credential` is
/// `base64(HMAC-SHA1(shared secret, username))`. The shape of a W3C `RTCIceServer`, plus `ttl`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TurnCredentials {
    /// `turn:` / `turns:` URLs the credentials are good for.
    pub urls: Vec<String>,
    /// `"<expiry-unix-seconds>:<peer id>"`.
    pub username: String,
    /// Base64 of HMAC-SHA1(secret, username).
    pub credential: String,
    /// Seconds the credentials stay valid from when they were issued.
    pub ttl: u64,
}

impl fmt::Debug for TurnCredentials {
    /// Leaves the credential out, so logs never hold it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TurnCredentials")
            .field("urls", &self.urls)
            .field("username", &self.username)
            .field("credential", &"<redacted>")
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// Messages a client sends to the bridge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "kebab-case",
    rename_all_fields = "camelCase"
)]
pub enum ClientMessage {
    /// First message on a connection: enter `room`. Answered by [`ServerMessage::Welcome`].
    Join {
        /// Must equal [`PROTOCOL_VERSION`].
        v: u32,
        /// Room name: 1..=[`MAX_ROOM_NAME_BYTES`] bytes, no control characters.
        room: String,
    },
    /// Relay `signal` to peer `to` in the same room.
    Signal {
        /// Destination peer.
        to: PeerId,
        /// What to relay.
        signal: Signal,
    },
    /// Leave the room; the bridge then closes the connection.
    Leave,
}

/// Messages the bridge sends to a client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "kebab-case",
    rename_all_fields = "camelCase"
)]
pub enum ServerMessage {
    /// Answer to `join`: the id assigned to this client and the peers already in the room.
    /// By the negotiation rule ([`crate::signaling::negotiation`]) the newcomer offers to each
    /// of `peers`.
    Welcome {
        /// The bridge's [`PROTOCOL_VERSION`].
        v: u32,
        /// Id assigned to the client.
        peer_id: PeerId,
        /// The room joined.
        room: String,
        /// Peers already in the room, in join order.
        peers: Vec<PeerId>,
        /// Short-lived TURN credentials for this client, when the bridge was given a TURN
        /// secret (`docs/turn.md`); absent otherwise.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        turn: Option<TurnCredentials>,
    },
    /// Another peer entered the room; it will send an offer.
    PeerJoined {
        /// The newcomer.
        peer_id: PeerId,
    },
    /// A peer left the room or its connection dropped.
    PeerLeft {
        /// The peer that left.
        peer_id: PeerId,
    },
    /// A signal relayed from `from`.
    Signal {
        /// Sending peer.
        from: PeerId,
        /// What it sent.
        signal: Signal,
    },
    /// The bridge rejected a message; the connection stays open unless stated in `message`.
    Error {
        /// Machine-readable reason.
        code: ErrorCode,
        /// Human-readable detail.
        message: String,
    },
}

/// Reasons the bridge rejects a client message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorCode {
    /// Not valid JSON or not a known message shape.
    BadJson,
    /// Larger than [`MAX_MESSAGE_BYTES`].
    TooLarge,
    /// `join` with a version other than [`PROTOCOL_VERSION`].
    BadVersion,
    /// Room name empty, too long or with control characters.
    BadRoom,
    /// `signal` or `leave` before `join`.
    NotJoined,
    /// A second `join` on the same connection.
    AlreadyJoined,
    /// `signal` to a peer that is not in the sender's room.
    UnknownPeer,
    /// Binary WebSocket frame; the protocol is JSON text only.
    BinaryFrame,
    /// The room has reached the bridge's per-room peer limit.
    RoomFull,
    /// The client sent more messages than the bridge's per-connection rate limit allows; the
    /// message was dropped. Far over the limit, the bridge then closes the connection
    /// (code 1008).
    RateLimited,
    /// The bridge has its maximum number of connections; it closes this one (code 1013, try
    /// again later) right after this error.
    ServerFull,
    /// No valid `join` arrived within the bridge's join timeout; it closes the connection
    /// (code 1008) right after this error.
    JoinTimeout,
    /// A code this version does not know (sent by a newer bridge); kept so that an old client
    /// still reports the error instead of failing to parse it.
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// The wire name, as in the `code` field: `"bad-json"`, `"too-large"`, … (`"unknown"` for
    /// [`ErrorCode::Unknown`]). The bridge's log lines name codes this way.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "bad-json",
            ErrorCode::TooLarge => "too-large",
            ErrorCode::BadVersion => "bad-version",
            ErrorCode::BadRoom => "bad-room",
            ErrorCode::NotJoined => "not-joined",
            ErrorCode::AlreadyJoined => "already-joined",
            ErrorCode::UnknownPeer => "unknown-peer",
            ErrorCode::BinaryFrame => "binary-frame",
            ErrorCode::RoomFull => "room-full",
            ErrorCode::RateLimited => "rate-limited",
            ErrorCode::ServerFull => "server-full",
            ErrorCode::JoinTimeout => "join-timeout",
            ErrorCode::Unknown => "unknown",
        }
    }
}

/// Why a signaling message could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The text is larger than [`MAX_MESSAGE_BYTES`].
    #[error("signaling message of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Length of the rejected text, bytes.
        len: usize,
        /// The limit, bytes.
        max: usize,
    },
    /// Not JSON, or not one of the known message shapes.
    #[error("malformed signaling message: {0}")]
    BadJson(String),
}

impl ProtocolError {
    /// The [`ErrorCode`] a bridge replies with for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            ProtocolError::TooLarge { .. } => ErrorCode::TooLarge,
            ProtocolError::BadJson(_) => ErrorCode::BadJson,
        }
    }
}

fn parse_limited<T: for<'de> Deserialize<'de>>(text: &str) -> Result<T, ProtocolError> {
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(ProtocolError::TooLarge {
            len: text.len(),
            max: MAX_MESSAGE_BYTES,
        });
    }
    serde_json::from_str(text).map_err(|e| ProtocolError::BadJson(e.to_string()))
}

fn to_json<T: Serialize>(value: &T) -> String {
    // Serializing these plain enums of strings and integers cannot fail.
    serde_json::to_string(value).unwrap_or_else(|_| String::from("{}"))
}

impl ClientMessage {
    /// Decodes one client message. Errors: [`ProtocolError::TooLarge`] past
    /// [`MAX_MESSAGE_BYTES`], [`ProtocolError::BadJson`] for anything else malformed.
    pub fn parse(text: &str) -> Result<Self, ProtocolError> {
        parse_limited(text)
    }

    /// Encodes this message as JSON text.
    pub fn to_json(&self) -> String {
        to_json(self)
    }
}

impl ServerMessage {
    /// Decodes one bridge message; same errors as [`ClientMessage::parse`].
    pub fn parse(text: &str) -> Result<Self, ProtocolError> {
        parse_limited(text)
    }

    /// Encodes this message as JSON text.
    pub fn to_json(&self) -> String {
        to_json(self)
    }

    /// Shorthand for an [`ServerMessage::Error`].
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        ServerMessage::Error {
            code,
            message: message.into(),
        }
    }
}

/// Checks a room name: 1..=[`MAX_ROOM_NAME_BYTES`] bytes of UTF-8, not only white space (it
/// would display as nothing), without control characters. `Err` holds the reason, for a
/// `bad-room` error's message.
pub fn validate_room(room: &str) -> Result<(), String> {
    if room.is_empty() {
        return Err("room name is empty".into());
    }
    if room.trim().is_empty() {
        return Err("room name is only white space".into());
    }
    if room.len() > MAX_ROOM_NAME_BYTES {
        return Err(format!(
            "room name is {} bytes; the limit is {MAX_ROOM_NAME_BYTES}",
            room.len()
        ));
    }
    if room.chars().any(char::is_control) {
        return Err("room name contains control characters".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_json_shape_is_stable() {
        let m = ClientMessage::Join {
            v: 1,
            room: "lobby".into(),
        };
        assert_eq!(m.to_json(), r#"{"type":"join","v":1,"room":"lobby"}"#);
        assert_eq!(ClientMessage::parse(&m.to_json()).unwrap(), m);
    }

    #[test]
    fn candidate_uses_browser_field_names() {
        let m = ClientMessage::Signal {
            to: "p2".into(),
            signal: Signal::Candidate {
                candidate: "candidate:1 1 udp 1 198.18.0.1 5000 typ host".into(),
                sdp_mid: Some("0".into()),
                sdp_m_line_index: Some(0),
            },
        };
        let json = m.to_json();
        assert!(json.contains(r#""sdpMid":"0""#), "{json}");
        assert!(json.contains(r#""sdpMLineIndex":0"#), "{json}");
        assert!(json.contains(r#""kind":"candidate""#), "{json}");
        assert_eq!(ClientMessage::parse(&json).unwrap(), m);
    }

    #[test]
    fn welcome_round_trips_with_camel_case() {
        let m = ServerMessage::Welcome {
            v: 1,
            peer_id: "a".into(),
            room: "r".into(),
            peers: vec!["b".into()],
            turn: None,
        };
        let json = m.to_json();
        assert!(json.contains(r#""peerId":"a""#), "{json}");
        assert!(!json.contains("turn"), "no TURN field unless set: {json}");
        assert_eq!(ServerMessage::parse(&json).unwrap(), m);
    }

    #[test]
    fn welcome_with_turn_credentials_has_the_documented_shape() {
        // The example of docs/signaling.md and docs/turn.md.
        let json = r#"{"type":"welcome","v":1,"peerId":"c","room":"lobby","peers":[],"turn":{"urls":["turn:198.18.0.1:3478"],"username":"1767225600:c","credential":"oLrT4srfTsJXCmrr61Awnl3PlDg=","ttl":86400}}"#;
        let m = ServerMessage::parse(json).unwrap();
        let ServerMessage::Welcome {
            turn: Some(turn), ..
        } = &m
        else {
            panic!("{m:?}")
        };
        assert_eq!(turn.urls, ["turn:198.18.0.1:3478"]);
        assert_eq!(turn.username, "1767225600:c");
        assert_eq!(turn.ttl, 86400);
        assert_eq!(m.to_json(), json);
        assert!(
            !format!("{m:?}").contains("oLrT"),
            "credential kept out of Debug"
        );
    }

    #[test]
    fn malformed_and_oversized_are_typed_errors() {
        assert_eq!(
            ClientMessage::parse("{").unwrap_err().code(),
            ErrorCode::BadJson
        );
        assert_eq!(
            ClientMessage::parse(r#"{"type":"nope"}"#)
                .unwrap_err()
                .code(),
            ErrorCode::BadJson
        );
        assert_eq!(
            ClientMessage::parse(r#"{"type":"join","room":"x"}"#)
                .unwrap_err()
                .code(),
            ErrorCode::BadJson
        );
        let big = format!(
            r#"{{"type":"join","v":1,"room":"{}"}}"#,
            "x".repeat(MAX_MESSAGE_BYTES)
        );
        assert!(matches!(
            ClientMessage::parse(&big),
            Err(ProtocolError::TooLarge { .. })
        ));
    }

    #[test]
    fn every_message_has_the_documented_json_shape() {
        // These strings are the examples of docs/signaling.md.
        let offer = Signal::Description {
            sdp_type: SdpType::Offer,
            sdp: "v=0\r\n".into(),
            arq: None,
        };
        let client = [
            (ClientMessage::Leave, r#"{"type":"leave"}"#),
            (
                ClientMessage::Signal {
                    to: "b".into(),
                    signal: offer.clone(),
                },
                r#"{"type":"signal","to":"b","signal":{"kind":"description","sdpType":"offer","sdp":"v=0\r\n"}}"#,
            ),
            (
                ClientMessage::Signal {
                    to: "b".into(),
                    signal: Signal::Description {
                        sdp_type: SdpType::Answer,
                        sdp: "v=0\r\n".into(),
                        arq: Some(1),
                    },
                },
                r#"{"type":"signal","to":"b","signal":{"kind":"description","sdpType":"answer","sdp":"v=0\r\n","arq":1}}"#,
            ),
        ];
        for (m, json) in client {
            assert_eq!(m.to_json(), json);
            assert_eq!(ClientMessage::parse(json).unwrap(), m);
        }
        let server = [
            (
                ServerMessage::Welcome {
                    v: 1,
                    peer_id: "c".into(),
                    room: "lobby".into(),
                    peers: vec!["a".into(), "b".into()],
                    turn: None,
                },
                r#"{"type":"welcome","v":1,"peerId":"c","room":"lobby","peers":["a","b"]}"#,
            ),
            (
                ServerMessage::PeerJoined {
                    peer_id: "c".into(),
                },
                r#"{"type":"peer-joined","peerId":"c"}"#,
            ),
            (
                ServerMessage::PeerLeft {
                    peer_id: "c".into(),
                },
                r#"{"type":"peer-left","peerId":"c"}"#,
            ),
            (
                ServerMessage::Signal {
                    from: "c".into(),
                    signal: offer,
                },
                r#"{"type":"signal","from":"c","signal":{"kind":"description","sdpType":"offer","sdp":"v=0\r\n"}}"#,
            ),
            (
                ServerMessage::error(ErrorCode::UnknownPeer, "no such peer"),
                r#"{"type":"error","code":"unknown-peer","message":"no such peer"}"#,
            ),
        ];
        for (m, json) in server {
            assert_eq!(m.to_json(), json);
            assert_eq!(ServerMessage::parse(json).unwrap(), m);
        }
    }

    #[test]
    fn error_codes_are_kebab_case() {
        let codes = [
            (ErrorCode::BadJson, "bad-json"),
            (ErrorCode::TooLarge, "too-large"),
            (ErrorCode::BadVersion, "bad-version"),
            (ErrorCode::BadRoom, "bad-room"),
            (ErrorCode::NotJoined, "not-joined"),
            (ErrorCode::AlreadyJoined, "already-joined"),
            (ErrorCode::UnknownPeer, "unknown-peer"),
            (ErrorCode::BinaryFrame, "binary-frame"),
            (ErrorCode::RoomFull, "room-full"),
            (ErrorCode::RateLimited, "rate-limited"),
            (ErrorCode::ServerFull, "server-full"),
            (ErrorCode::JoinTimeout, "join-timeout"),
        ];
        for (code, name) in codes {
            assert_eq!(serde_json::to_string(&code).unwrap(), format!("\"{name}\""));
            assert_eq!(code.as_str(), name);
            let json = format!(r#"{{"type":"error","code":"{name}","message":"m"}}"#);
            assert_eq!(
                ServerMessage::parse(&json).unwrap(),
                ServerMessage::error(code, "m")
            );
        }
    }

    #[test]
    fn browser_candidate_json_is_accepted() {
        // RTCIceCandidate.toJSON() may carry nulls and a usernameFragment; both are tolerated.
        let json = r#"{"type":"signal","to":"a","signal":{"kind":"candidate","candidate":"candidate:1 1 udp 1 198.18.0.1 5000 typ host","sdpMid":null,"sdpMLineIndex":null,"usernameFragment":"abcd"}}"#;
        let m = ClientMessage::parse(json).unwrap();
        let ClientMessage::Signal {
            signal:
                Signal::Candidate {
                    sdp_mid,
                    sdp_m_line_index,
                    ..
                },
            ..
        } = m
        else {
            panic!("not a candidate: {m:?}");
        };
        assert_eq!((sdp_mid, sdp_m_line_index), (None, None));
    }

    #[test]
    fn unknown_error_codes_from_newer_bridges_still_parse() {
        let m = ServerMessage::parse(
            r#"{"type":"error","code":"from-the-future","message":"slow down"}"#,
        )
        .unwrap();
        assert_eq!(m, ServerMessage::error(ErrorCode::Unknown, "slow down"));
    }

    #[test]
    fn room_names_are_validated() {
        assert!(validate_room("lobby").is_ok());
        assert_eq!(validate_room(""), Err("room name is empty".into()));
        assert_eq!(
            validate_room(" \u{3000} "),
            Err("room name is only white space".into()),
            "a blank name displays as nothing"
        );
        assert_eq!(
            validate_room(&"x".repeat(65)),
            Err("room name is 65 bytes; the limit is 64".into())
        );
        assert_eq!(
            validate_room("a\nb"),
            Err("room name contains control characters".into())
        );
    }
}
