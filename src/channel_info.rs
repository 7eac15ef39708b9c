//! [`ChannelInfo`]: what the data channel to one peer really is, as negotiated.

use crate::config::ChannelKind;

/// The parameters of the open data channel to one peer, read from the WebRTC stack (not from
/// our configuration), from [`crate::Transport::channel_info`].
///
/// On the answering side `ordered`, `max_retransmits` and `max_packet_life_time_ms` are what
/// the offerer put in its DATA_CHANNEL_OPEN message (RFC 8832 §5.1), so both ends report the
/// same values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelInfo {
    /// The channel's label (`miaou-reliable` or `miaou-unreliable`).
    pub label: String,
    /// The kind the session uses on it: the offerer's choice, which the answerer follows.
    pub kind: ChannelKind,
    /// Whether messages are delivered in the order sent (RFC 8831 §6.1; W3C
    /// `RTCDataChannel.ordered`).
    pub ordered: bool,
    /// Retransmissions per message before it is given up (W3C `maxRetransmits`); `None` for
    /// a reliable channel (unlimited).
    pub max_retransmits: Option<u16>,
    /// Time window for (re)transmissions of a message, ms (W3C `maxPacketLifeTime`); `None`
    /// when not limited by time.
    pub max_packet_life_time_ms: Option<u16>,
    /// Largest frame we send on it, bytes: the smaller of our `max_frame_size` and
    /// `remote_max_message_size`.
    pub max_frame_size: usize,
    /// The peer's `a=max-message-size`, bytes (65 536 when its SDP has none, RFC 8841 §6.1).
    pub remote_max_message_size: usize,
    /// Frames travel over the ARQ layer (docs/frame.md, "ARQ layer"): both peers announced
    /// it, so this channel only marks the link's lifetime and the frames go as datagrams on a
    /// second, in-band, unordered, `maxRetransmits: 0` channel (`miaou-arq`) with our own loss
    /// recovery and congestion control. False: v1 frames on this channel, SCTP retransmits.
    pub arq: bool,
}

/// What a backend reads off its data channel object for [`ChannelInfo`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ChannelParameters {
    pub(crate) label: String,
    pub(crate) ordered: bool,
    pub(crate) max_retransmits: Option<u16>,
    pub(crate) max_packet_life_time_ms: Option<u16>,
}
