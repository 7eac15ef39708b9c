//! The one public error type. Backend errors (webrtc-rs, browser exceptions, WebSocket) are
//! mapped into it with their message kept as text, so the type is the same on both targets.

use crate::codec::CodecError;
use crate::signaling::protocol::{ErrorCode, PeerId, ProtocolError};

/// Everything that can go wrong in `miaou-transport`.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is unusable (empty room, bad URL, limits out of range).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// An argument is unusable (e.g. a JS payload that is neither a string nor bytes).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The signaling WebSocket could not be opened or broke.
    #[error("signaling connection to {url} failed: {reason}")]
    Signaling {
        /// Signaling server URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The signaling server refused a message (see `docs/signaling.md` for codes).
    #[error("signaling server replied {code:?}: {message}")]
    Rejected {
        /// The server's error code.
        code: ErrorCode,
        /// The server's explanation.
        message: String,
    },
    /// A signaling message could not be decoded.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// A frame could not be encoded or decoded (malformed frame, oversized message, cap hit).
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The WebRTC stack failed (SDP, ICE, DTLS, SCTP).
    #[error("WebRTC error with {peer}: {reason}")]
    Rtc {
        /// The remote peer concerned.
        peer: PeerId,
        /// The underlying error text.
        reason: String,
    },
    /// ICE gathering completed without a single relay candidate although TURN servers are
    /// configured: every allocation failed (wrong username/credential, server unreachable, or
    /// a URL the backend cannot use — webrtc-rs only does `turn:` over UDP). Reported soon
    /// after the connection attempt starts, not after a connect timeout.
    #[error(
        "no relay candidate from TURN server {} for peer {peer}: allocation failed \
         (check username/credential) or server unreachable{}{}",
        servers.join(", "),
        if details.is_empty() { "" } else { "; " },
        details.join("; ")
    )]
    Turn {
        /// The remote peer whose connection needed the relay.
        peer: PeerId,
        /// The configured `turn:` / `turns:` URLs.
        servers: Vec<String>,
        /// What the ICE agent reported per failed server, when it says (the browser's
        /// `icecandidateerror`: `"<url>: <errorCode> <errorText>"`, e.g. 401 Unauthorized).
        details: Vec<String>,
        /// `true` with `IceTransportPolicy::Relay`: the attempt was abandoned (reported as
        /// the reason of `Event::PeerDisconnected`). `false` with `All`: only reported
        /// (`Event::Error`), as a direct path may still work.
        fatal: bool,
    },
    /// The peer dropped a message we sent and said so (RESET or REFUSED, docs/frame.md): over
    /// its `max_message_size`, reassembly caps (`max_reassembly_bytes`, partial messages), not
    /// UTF-8, a malformed fragment, or lost in a sequence gap. The failing `send` returns it
    /// when still waiting (multi-frame messages), else it arrives as `Event::Error` (one per
    /// RESET or REFUSED frame). The channel stays up.
    #[error("peer {peer} refused a message we sent (over its limits, malformed, or lost)")]
    MessageRefused {
        /// The peer that sent RESET or REFUSED.
        peer: PeerId,
    },
    /// Messages accepted by `send` could not be delivered: the data channel closed or broke
    /// before they were sent (reported once per link, as an `Event::Error`).
    #[error(
        "{messages} message(s) ({bytes} bytes) to {peer} were not delivered: the channel closed"
    )]
    Undelivered {
        /// The peer they were for.
        peer: PeerId,
        /// How many messages.
        messages: usize,
        /// Their payload, bytes.
        bytes: usize,
    },
    /// No open data channel to this peer (never connected, or disconnected).
    #[error("peer {0} is not connected")]
    PeerNotConnected(PeerId),
    /// The receive queue for this peer overflowed and its channel was reset (browser only: a
    /// browser's data channel cannot be paused, so the alternative would be losing data).
    #[error("receive queue for {0} overflowed; channel reset")]
    ReceiveOverflow(PeerId),
    /// The transport was closed.
    #[error("transport closed")]
    Closed,
    /// An operation did not finish in time.
    #[error("timed out after {ms} ms: {what}")]
    Timeout {
        /// What was being waited for.
        what: String,
        /// How long, milliseconds.
        ms: u64,
    },
}

/// Result alias with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
