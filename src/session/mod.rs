//! Shared session logic above the backend seam: the signaling driver (who offers, which peer is
//! where) and the per-peer links (frame codec, backpressure, lossless close). Written once,
//! run on both targets through the functions and types of `crate::backend`.

pub(crate) mod driver;
pub(crate) mod link;
pub(crate) mod receive_budget;

use crate::backend::RtcChannel;
use crate::config::ChannelKind;
use crate::ice::Gathered;
use crate::signaling::protocol::{PeerId, Signal};
use bytes::Bytes;

/// Label of the ARQ layer's data channel (docs/frame.md, "ARQ layer").
pub(crate) const ARQ_CHANNEL_LABEL: &str = "miaou-arq";

/// Datagrams of the ARQ channel buffered between the data channel and the pipe task; past it
/// they are dropped, which the ARQ layer recovers from like any loss (and its congestion
/// control slows the sender), instead of stalling the SCTP read loop.
pub(crate) const ARQ_DATAGRAM_QUEUE: usize = 8192;

/// The ARQ layer's data channel (unordered, `maxRetransmits: 0`) and the datagrams received on
/// it; the queue ends when the channel closes.
pub(crate) struct ArqChannel {
    pub(crate) channel: RtcChannel,
    pub(crate) datagrams: async_channel::Receiver<Bytes>,
}

/// One connection attempt to a peer: after a failure the driver reconnects with a new
/// generation, and events still arriving from the replaced connection are recognised and
/// ignored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ConnId {
    pub(crate) peer: PeerId,
    pub(crate) generation: u64,
}

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}#{}", self.peer, self.generation)
    }
}

/// What a backend reports about one peer connection to the driver.
pub(crate) enum RtcEvent {
    /// A local ICE candidate to trickle to the peer.
    /// (Every variant names the connection attempt it comes from.)
    LocalCandidate { peer: ConnId, signal: Signal },
    /// The data channel opened; `frames` yields every frame received on it, in order. `kind`
    /// is the channel's real kind: the offerer's choice, which the answerer follows.
    ChannelOpen {
        peer: ConnId,
        kind: ChannelKind,
        channel: RtcChannel,
        frames: async_channel::Receiver<Bytes>,
    },
    /// The ARQ layer's data channel opened (created in-band by the offerer beside the main
    /// one when it announces the layer); `datagrams` yields what arrives on it.
    ArqChannelOpen { peer: ConnId, arq: ArqChannel },
    /// The data channel or the whole connection closed; `reason` is set for a failure.
    Closed {
        peer: ConnId,
        reason: Option<String>,
    },
    /// Local ICE gathering completed: what it yielded, to spot a TURN server that gave
    /// nothing (see [`crate::ice::turn_failure`]).
    GatheringDone { peer: ConnId, gathered: Gathered },
}

impl RtcEvent {
    /// The connection attempt this event comes from.
    pub(crate) fn conn(&self) -> &ConnId {
        match self {
            RtcEvent::LocalCandidate { peer, .. }
            | RtcEvent::ChannelOpen { peer, .. }
            | RtcEvent::ArqChannelOpen { peer, .. }
            | RtcEvent::Closed { peer, .. }
            | RtcEvent::GatheringDone { peer, .. } => peer,
        }
    }
}
