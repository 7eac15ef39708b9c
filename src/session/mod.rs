//! Shared session logic above the backend seam: the signaling driver (who offers, which peer is
//! where) and the per-peer links (frame codec, backpressure, lossless close). Written once,
//! run on both targets through the functions and types of `crate::backend`.

pub(crate) mod driver;
pub(crate) mod link;

use crate::backend::RtcChannel;
use crate::config::ChannelKind;
use crate::signaling::protocol::{PeerId, Signal};
use bytes::Bytes;

/// What a backend reports about one peer connection to the driver.
pub(crate) enum RtcEvent {
    /// A local ICE candidate to trickle to the peer.
    LocalCandidate { peer: PeerId, signal: Signal },
    /// The data channel opened; `frames` yields every frame received on it, in order. `kind`
    /// is the channel's real kind: the offerer's choice, which the answerer follows.
    ChannelOpen {
        peer: PeerId,
        kind: ChannelKind,
        channel: RtcChannel,
        frames: async_channel::Receiver<Bytes>,
    },
    /// The data channel or the whole connection closed.
    Closed {
        peer: PeerId,
        reason: Option<String>,
    },
}
