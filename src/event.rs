//! What a [`crate::Transport`] reports: peer lifecycle [`Event`]s and received [`Message`]s.

use crate::error::Error;
use crate::signaling::protocol::PeerId;
use bytes::Bytes;

/// A change in the room or in a peer connection, in the order it happened.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A peer is in the room (already there when we joined, or arrived later); negotiation with
    /// it starts now.
    PeerJoined(PeerId),
    /// The data channel to this peer is open: `send` to it works from now on.
    PeerConnected(PeerId),
    /// The data channel to this peer closed or its connection failed; `reason` is `None` for an
    /// orderly close.
    PeerDisconnected {
        /// The peer.
        peer: PeerId,
        /// Why, when it was not an orderly close.
        reason: Option<Error>,
    },
    /// The peer left the room.
    PeerLeft(PeerId),
    /// A non-fatal problem: a malformed frame from a peer, a signaling error reply.
    Error(Error),
}

/// One application message received from a peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Who sent it.
    pub from: PeerId,
    /// The payload, exactly as passed to `send`.
    pub data: Bytes,
    /// `true` when it was sent as text (`send_text`, or a JS string); `data` is then UTF-8.
    pub text: bool,
}

impl Message {
    /// The payload as text, if it is valid UTF-8.
    pub fn as_text(&self) -> Option<&str> {
        std::str::from_utf8(&self.data).ok()
    }
}
