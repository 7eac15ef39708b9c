//! The ARQ layer ("frame layer v2"): a reliable, ordered stream of codec frames carried in
//! small datagrams over an unordered, `maxRetransmits: 0` data channel (docs/frame.md, "ARQ
//! layer").
//!
//! Why it exists: webrtc-rs's SCTP retransmission stalls for ≥ 1 s per lost retransmission
//! (RFC 9260 §7.2.4 strikes not applied during fast recovery, RTO.min fixed at 1 s; see
//! docs/upstream/webrtc-sctp-loss.md), while on an unordered channel with no retransmissions a
//! lost chunk is skipped by FORWARD-TSN at once. This layer brings its own loss recovery and
//! congestion control of a published design: RFC 9002 packet numbers (never reused), ACK
//! ranges, packet- and time-threshold loss detection, probe timeout, NewReno congestion control
//! (RFC 9002 §7), pacing, and a receive window for flow control.
//!
//! Pure, deterministic code like the codec: no I/O, no async, no clocks (time is passed in, in
//! microseconds on any monotonic scale), no target-specific code, no panics on any input. One
//! [`ArqConnection`] per peer link, owned by the link's pipe task, which moves its datagrams to
//! and from the data channel.
//!
//! Each datagram fits one SCTP DATA chunk ([`DEFAULT_MAX_DATAGRAM`]), so a lost packet never
//! drops a whole message.
#![forbid(unsafe_code)]
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::arithmetic_side_effects,
    clippy::todo,
    clippy::unimplemented,
    clippy::string_slice
)]

use bytes::Bytes;

/// Version of the ARQ layer this code speaks, announced in the SDP offer/answer signal
/// (`Signal::Description::arq`); both sides use the layer only when both announce it.
pub const ARQ_VERSION: u8 = 1;

/// Largest datagram in bytes: 1163, the user-data capacity of one SCTP DATA chunk at
/// webrtc-rs's fixed SCTP MTU of 1191 bytes (1191 − 12 common header − 16 DATA chunk header),
/// so the SCTP layer never fragments a datagram.
pub const DEFAULT_MAX_DATAGRAM: usize = 1163;

/// Default receive window in bytes (4 MiB): stream bytes a receiver buffers out of order or
/// undelivered; the sender never sends past the window the receiver last advertised.
pub const DEFAULT_RECEIVE_WINDOW: u64 = 4 * 1024 * 1024;

/// Settings of one [`ArqConnection`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArqConfig {
    /// Largest datagram produced, bytes (default [`DEFAULT_MAX_DATAGRAM`]; at least 64).
    pub max_datagram: usize,
    /// Receive window, bytes (default [`DEFAULT_RECEIVE_WINDOW`]).
    pub receive_window: u64,
    /// Largest frame accepted from the stream, bytes; a longer length prefix is
    /// [`ArqError::FrameTooLarge`] (default 16 MiB; set it above the link's max frame size).
    pub max_frame: usize,
}

impl Default for ArqConfig {
    fn default() -> Self {
        ArqConfig {
            max_datagram: DEFAULT_MAX_DATAGRAM,
            receive_window: DEFAULT_RECEIVE_WINDOW,
            max_frame: 16 * 1024 * 1024,
        }
    }
}

/// What can go wrong in the ARQ layer. The connection is unusable after any of them except
/// [`ArqError::Malformed`], which only drops the offending datagram.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ArqError {
    /// A datagram that does not parse (reason given); it is dropped, the connection goes on.
    #[error("malformed ARQ datagram: {0}")]
    Malformed(&'static str),
    /// The peer sent stream bytes past the receive window we advertised.
    #[error("peer sent past the receive window ({offset} > {limit} bytes)")]
    WindowExceeded {
        /// Stream offset reached, bytes.
        offset: u64,
        /// The limit we had advertised, bytes.
        limit: u64,
    },
    /// A frame's length prefix is over [`ArqConfig::max_frame`].
    #[error("frame of {len} bytes over the ARQ limit of {max} bytes")]
    FrameTooLarge {
        /// Announced frame length, bytes.
        len: u64,
        /// The limit, bytes.
        max: usize,
    },
    /// The peer acknowledged a packet number we never sent.
    #[error("peer acknowledged packet {0}, which was never sent")]
    InvalidAck(u64),
}

/// Counters and estimates for benchmarks and `channel_info`-style reporting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArqStats {
    /// Smoothed RTT, microseconds (RFC 9002 §5.3; 0 before the first sample).
    pub smoothed_rtt_us: u64,
    /// Congestion window, bytes.
    pub cwnd: u64,
    /// Datagrams sent (data and ACK-only).
    pub datagrams_sent: u64,
    /// Packets declared lost.
    pub packets_lost: u64,
    /// Probe timeouts fired.
    pub ptos: u64,
}

/// One end of an ARQ connection (sans-I/O). Drive it like quinn-proto: feed datagrams with
/// [`handle_datagram`](Self::handle_datagram), send what [`poll_transmit`](Self::poll_transmit)
/// returns, call [`handle_timeout`](Self::handle_timeout) at [`poll_timeout`](Self::poll_timeout),
/// read frames with [`poll_frame`](Self::poll_frame).
#[derive(Debug)]
pub struct ArqConnection {
    _todo: (),
}

impl ArqConnection {
    /// A fresh connection; `now_us` starts its clock.
    pub fn new(config: ArqConfig, now_us: u64) -> Self {
        let _ = (config, now_us);
        ArqConnection { _todo: () }
    }

    /// Appends one frame (opaque bytes, 1..=`max_frame`) to the outgoing stream. Always
    /// accepted: the caller bounds memory by watching [`buffered_bytes`](Self::buffered_bytes)
    /// (the `bufferedAmount` analogue). Errors: `FrameTooLarge`.
    pub fn write_frame(&mut self, frame: &[u8]) -> Result<(), ArqError> {
        let _ = frame;
        Ok(())
    }

    /// Stream bytes written and not yet acknowledged by the peer (queued + in flight), bytes.
    pub fn buffered_bytes(&self) -> u64 {
        0
    }

    /// Handles one datagram from the peer. `Malformed` drops it; other errors are fatal.
    pub fn handle_datagram(&mut self, now_us: u64, datagram: &[u8]) -> Result<(), ArqError> {
        let _ = (now_us, datagram);
        Ok(())
    }

    /// The next datagram to send now (ACK, retransmission or new data), or `None` when
    /// congestion control, pacing, the peer's window or an empty queue say wait. Call in a loop
    /// until `None`, then sleep until [`poll_timeout`](Self::poll_timeout) or new input.
    pub fn poll_transmit(&mut self, now_us: u64) -> Option<Bytes> {
        let _ = now_us;
        None
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called (loss timer, PTO,
    /// delayed ACK, pacing), microseconds on the caller's clock; `None` when idle.
    pub fn poll_timeout(&self) -> Option<u64> {
        None
    }

    /// Runs the timers due at `now_us`.
    pub fn handle_timeout(&mut self, now_us: u64) {
        let _ = now_us;
    }

    /// The next whole frame received in stream order, or `None` if none is complete. Reading
    /// frames reopens the receive window. Errors: `FrameTooLarge` (fatal).
    pub fn poll_frame(&mut self) -> Option<Result<Bytes, ArqError>> {
        None
    }

    /// True once every written byte is acknowledged.
    pub fn is_idle(&self) -> bool {
        true
    }

    /// Current counters.
    pub fn stats(&self) -> ArqStats {
        ArqStats::default()
    }
}
