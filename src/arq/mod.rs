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
//!
//! Layout: [`wire`] (datagram encode/parse), `send_stream` / `recv_stream` (the byte stream:
//! retransmission queue, reassembly, frame cutting), `ack_tracker` (ACK ranges and timing),
//! `rtt` (§5), `congestion` (NewReno, pacer); this file ties them together (sent-packet map,
//! loss detection §6.1, PTO §6.2). docs/frame.md, "ARQ layer (v2)", has the byte layout.
//!
//! Limits, measured in tests/arq_sim.rs: NewReno halves its window on every loss episode, so
//! under *random* loss throughput is bounded by about max_datagram / RTT × 1.22 / √p
//! (Mathis et al.) whatever the bandwidth: ~0.7 MB/s at 20 ms RTT and 1 % loss, ~5 MB/s at
//! 2 ms RTT. Not implemented: persistent congestion (§7.6), undoing spurious loss (reordering
//! beyond 3 packets costs a window halving), ECN.
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

mod ack_tracker;
mod congestion;
mod ranges;
mod recv_stream;
mod rtt;
mod send_stream;
#[cfg(test)]
mod tests;
pub mod wire;

use ack_tracker::{AckTracker, MAX_ACK_DELAY_US, MAX_ACK_RANGES};
use bytes::{BufMut, Bytes, BytesMut};
use congestion::{NewReno, Pacer};
use recv_stream::{Accept, RecvStream};
use rtt::RttEstimator;
use send_stream::SendStream;
use std::collections::BTreeMap;

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

/// Smallest receive window used, bytes (16 KiB): also the credit a sender assumes before the
/// peer's first ACK tells it the real window, so the two ends need not share a configuration.
pub const MIN_RECEIVE_WINDOW: u64 = 16 * 1024;

/// Smallest [`ArqConfig::max_datagram`] honoured, bytes; smaller values are raised to it.
pub const MIN_DATAGRAM: usize = 64;

/// ACK ranges piggybacked on a data packet (ACK-only packets carry up to 32).
const PIGGYBACK_ACK_RANGES: usize = 8;
/// Longest probe timeout, µs (60 s), whatever the backoff.
const MAX_PTO_US: u64 = 60_000_000;
/// Longest wait between two PINGs while the peer's window blocks us with nothing in flight,
/// µs (1 s): bounds the stall when a window update is lost.
const MAX_BLOCKED_PROBE_US: u64 = 1_000_000;

/// An ack-eliciting packet in flight (RFC 9002 §A.1.1).
#[derive(Clone, Copy, Debug)]
struct SentPacket {
    /// Send time, µs.
    time: u64,
    /// Datagram size, bytes.
    size: u64,
    /// Stream range `[start, end)` it carried.
    stream: Option<(u64, u64)>,
}

/// What [`ArqConnection::build`] is asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// PTO probe: ack-eliciting, ignores cwnd and pacing.
    Probe,
    /// Data allowed by cwnd, pacing and the peer's window.
    Data,
    /// ACK only: not ack-eliciting, not congestion controlled.
    AckOnly,
}

/// One end of an ARQ connection (sans-I/O). Drive it like quinn-proto: feed datagrams with
/// [`handle_datagram`](Self::handle_datagram), send what [`poll_transmit`](Self::poll_transmit)
/// returns, call [`handle_timeout`](Self::handle_timeout) at [`poll_timeout`](Self::poll_timeout),
/// read frames with [`poll_frame`](Self::poll_frame) (then call `poll_transmit` again: reading
/// may owe the peer a window update).
///
/// Both ends assume a max_ack_delay of 5 ms and the RFC 9002 initial RTT of 333 ms.
#[derive(Debug)]
pub struct ArqConnection {
    max_datagram: usize,
    max_frame: usize,
    /// Latest time seen, µs (never goes backwards).
    now: u64,
    /// The fatal error, once one happened.
    fatal: Option<ArqError>,
    // --- sending (RFC 9002) ---
    send: SendStream,
    next_pn: u64,
    sent: BTreeMap<u64, SentPacket>,
    bytes_in_flight: u64,
    last_ack_eliciting_sent: Option<u64>,
    largest_acked: Option<u64>,
    loss_time: Option<u64>,
    pto_count: u32,
    probes_pending: u8,
    rtt: RttEstimator,
    cc: NewReno,
    pacer: Pacer,
    /// The window was not fully used lately (§7.8): acks do not grow it.
    app_limited: bool,
    /// The peer's receive-window limit: we send stream bytes below it only.
    peer_limit: u64,
    // --- receiving ---
    recv: RecvStream,
    acks: AckTracker,
    stats: ArqStats,
}

impl ArqConnection {
    /// A fresh connection; `now_us` starts its clock. The effective receive window is
    /// max(`receive_window`, `max_frame` + 10, [`MIN_RECEIVE_WINDOW`]) so a whole frame always
    /// fits (see [`receive_window`](Self::receive_window)).
    pub fn new(config: ArqConfig, now_us: u64) -> Self {
        let max_datagram = config.max_datagram.max(MIN_DATAGRAM);
        let window = config
            .receive_window
            .max((config.max_frame as u64).saturating_add(10))
            .max(MIN_RECEIVE_WINDOW);
        let md = max_datagram as u64;
        ArqConnection {
            max_datagram,
            max_frame: config.max_frame,
            now: now_us,
            fatal: None,
            send: SendStream::default(),
            next_pn: 0,
            sent: BTreeMap::new(),
            bytes_in_flight: 0,
            last_ack_eliciting_sent: None,
            largest_acked: None,
            loss_time: None,
            pto_count: 0,
            probes_pending: 0,
            rtt: RttEstimator::default(),
            cc: NewReno::new(md),
            pacer: Pacer::new(md, now_us),
            app_limited: false,
            peer_limit: MIN_RECEIVE_WINDOW,
            recv: RecvStream::new(window, config.max_frame, max_datagram),
            acks: AckTracker::default(),
            stats: ArqStats::default(),
        }
    }

    /// Appends one frame (opaque bytes, 0..=`max_frame`) to the outgoing stream. Always
    /// accepted: the caller bounds memory by watching [`buffered_bytes`](Self::buffered_bytes)
    /// (the `bufferedAmount` analogue). Errors: `FrameTooLarge`.
    pub fn write_frame(&mut self, frame: &[u8]) -> Result<(), ArqError> {
        if frame.len() > self.max_frame {
            return Err(ArqError::FrameTooLarge {
                len: frame.len() as u64,
                max: self.max_frame,
            });
        }
        self.send.write_frame(frame);
        Ok(())
    }

    /// Stream bytes written and not yet acknowledged by the peer (queued + in flight), bytes.
    pub fn buffered_bytes(&self) -> u64 {
        self.send.unacked()
    }

    /// Stream bytes received and not yet read as frames (contiguous and out of order), bytes;
    /// never above [`receive_window`](Self::receive_window).
    pub fn receive_buffered_bytes(&self) -> u64 {
        self.recv.buffered()
    }

    /// The effective receive window, bytes (see [`new`](Self::new)).
    pub fn receive_window(&self) -> u64 {
        self.recv.window()
    }

    /// Handles one datagram from the peer. `Malformed` drops it; other errors are fatal
    /// (`InvalidAck`, `WindowExceeded`; after one, every call returns it again).
    pub fn handle_datagram(&mut self, now_us: u64, datagram: &[u8]) -> Result<(), ArqError> {
        if let Some(e) = &self.fatal {
            return Err(e.clone());
        }
        let now = self.tick(now_us);
        let d = wire::parse(datagram)?;
        if self.acks.is_duplicate(d.pn) {
            return Ok(());
        }
        if let Some(ack) = &d.ack {
            if let Err(e) = self.on_ack(now, ack) {
                self.fatal = Some(e.clone());
                return Err(e);
            }
        }
        let accepted = match d.stream {
            Some((offset, data)) => match self.recv.on_segment(offset, data) {
                Ok(a) => a == Accept::Yes,
                Err(e) => {
                    self.fatal = Some(e.clone());
                    return Err(e);
                }
            },
            None => true,
        };
        if accepted {
            self.acks.on_packet(d.pn, now, d.ack_eliciting());
        }
        Ok(())
    }

    /// The next datagram to send now (ACK, retransmission or new data), or `None` when
    /// congestion control, pacing, the peer's window or an empty queue say wait. Call in a loop
    /// until `None`, then sleep until [`poll_timeout`](Self::poll_timeout) or new input.
    /// Order: PTO probes, then data (lost ranges before new bytes) with any owed ACK
    /// piggybacked, then an ACK-only datagram if one is due.
    pub fn poll_transmit(&mut self, now_us: u64) -> Option<Bytes> {
        if self.fatal.is_some() {
            return None;
        }
        let now = self.tick(now_us);
        if self.probes_pending > 0 {
            self.probes_pending = self.probes_pending.saturating_sub(1);
            return Some(self.build(now, Kind::Probe));
        }
        if self.send.has_sendable(self.peer_limit) {
            let paced = || {
                self.pacer
                    .peek_delay(now, self.cc.cwnd, self.rtt.smoothed)
                    .is_some()
            };
            if self.cwnd_allows() && !paced() {
                return Some(self.build(now, Kind::Data));
            }
            // Blocked by cwnd or pacing: the window is in use (§7.8).
            self.app_limited = false;
        } else if self.cwnd_allows() {
            self.app_limited = true;
        }
        if self.acks.due(now) {
            return Some(self.build(now, Kind::AckOnly));
        }
        None
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called (loss timer, PTO,
    /// delayed ACK, pacing), microseconds on the caller's clock; `None` when idle. A time at or
    /// before the latest `now_us` given means "call `poll_transmit` now".
    pub fn poll_timeout(&self) -> Option<u64> {
        if self.fatal.is_some() {
            return None;
        }
        if self.probes_pending > 0 || self.acks.immediate() {
            return Some(self.now);
        }
        let mut t = min_opt(self.acks.deadline(), self.loss_timer());
        if self.send.has_sendable(self.peer_limit) && self.cwnd_allows() {
            match self
                .pacer
                .peek_delay(self.now, self.cc.cwnd, self.rtt.smoothed)
            {
                Some(at) => t = min_opt(t, Some(at)),
                None => return Some(self.now),
            }
        }
        t
    }

    /// Runs the timers due at `now_us`: delayed ACK, loss timer (RFC 9002 §6.1.2) or PTO
    /// (§6.2: queues 2 probes retransmitting the oldest unacknowledged data, or 1 PING when the
    /// peer's window blocks us with nothing in flight, so a lost window update is recovered).
    pub fn handle_timeout(&mut self, now_us: u64) {
        if self.fatal.is_some() {
            return;
        }
        let now = self.tick(now_us);
        self.acks.on_timeout(now);
        let Some(t) = self.loss_timer() else { return };
        if t > now {
            return;
        }
        if self.loss_time.is_some() {
            self.detect_lost(now);
            return;
        }
        self.pto_count = self.pto_count.saturating_add(1);
        self.stats.ptos = self.stats.ptos.saturating_add(1);
        let oldest: Vec<(u64, u64)> = self
            .sent
            .values()
            .filter_map(|p| p.stream)
            .take(2)
            .collect();
        for (s, e) in oldest {
            self.send.on_lost(s, e);
        }
        self.probes_pending = if self.sent.is_empty() { 1 } else { 2 };
    }

    /// The next whole frame received in stream order, or `None` if none is complete. Reading
    /// frames reopens the receive window. Errors (fatal, returned again on every later call):
    /// `FrameTooLarge`, `Malformed` for a bad length prefix, or the connection's earlier fatal
    /// error.
    pub fn poll_frame(&mut self) -> Option<Result<Bytes, ArqError>> {
        if let Some(e) = &self.fatal {
            return Some(Err(e.clone()));
        }
        match self.recv.poll_frame()? {
            Ok(frame) => {
                if self.recv.window_update_due() {
                    self.acks.request_immediate();
                }
                Some(Ok(frame))
            }
            Err(e) => {
                self.fatal = Some(e.clone());
                Some(Err(e))
            }
        }
    }

    /// True once every written byte is acknowledged.
    pub fn is_idle(&self) -> bool {
        self.send.all_acked()
    }

    /// Current counters.
    pub fn stats(&self) -> ArqStats {
        ArqStats {
            smoothed_rtt_us: if self.rtt.has_sample {
                self.rtt.smoothed
            } else {
                0
            },
            cwnd: self.cc.cwnd,
            ..self.stats
        }
    }

    fn tick(&mut self, now_us: u64) -> u64 {
        self.now = self.now.max(now_us);
        self.now
    }

    fn cwnd_allows(&self) -> bool {
        self.bytes_in_flight
            .saturating_add(self.max_datagram as u64)
            <= self.cc.cwnd
    }

    /// The loss-detection timer (§A.8): the time-threshold loss time if set, else the PTO
    /// when ack-eliciting packets are in flight or the peer's window blocks waiting data.
    fn loss_timer(&self) -> Option<u64> {
        if self.loss_time.is_some() {
            return self.loss_time;
        }
        let blocked_probe = self.sent.is_empty();
        if blocked_probe && !self.send.flow_blocked(self.peer_limit) {
            return None;
        }
        let backoff = 1u64.checked_shl(self.pto_count.min(20)).unwrap_or(1);
        let pto = self
            .rtt
            .pto_base(MAX_ACK_DELAY_US)
            .saturating_mul(backoff)
            .min(if blocked_probe {
                MAX_BLOCKED_PROBE_US
            } else {
                MAX_PTO_US
            });
        Some(
            self.last_ack_eliciting_sent
                .unwrap_or(self.now)
                .saturating_add(pto),
        )
    }

    /// RFC 9002 §A.7 OnAckReceived. Errors: `InvalidAck` (fatal).
    fn on_ack(&mut self, now: u64, ack: &wire::AckBlock) -> Result<(), ArqError> {
        let largest = ack.largest();
        if largest >= self.next_pn {
            return Err(ArqError::InvalidAck(largest));
        }
        let window_grew = ack.max_stream > self.peer_limit;
        self.peer_limit = self.peer_limit.max(ack.max_stream);
        if window_grew {
            self.pto_count = 0;
        }
        self.largest_acked = Some(self.largest_acked.map_or(largest, |l| l.max(largest)));
        let mut newly = Vec::new();
        for &(lo, hi) in ack.ranges.iter().filter(|r| r.0 <= r.1) {
            newly.extend(self.sent.range(lo..=hi).map(|(&pn, _)| pn));
        }
        if newly.is_empty() {
            return Ok(());
        }
        // §5.1: a sample when the largest acknowledged is newly acked (all we keep are
        // ack-eliciting).
        if let Some(p) = self.sent.get(&largest) {
            let delay = ack.ack_delay_us.min(MAX_ACK_DELAY_US);
            self.rtt.update(now.saturating_sub(p.time), delay);
        }
        let mut data_acked = false;
        for pn in newly {
            if let Some(p) = self.sent.remove(&pn) {
                self.bytes_in_flight = self.bytes_in_flight.saturating_sub(p.size);
                self.cc.on_ack(p.time, p.size, self.app_limited);
                if let Some((s, e)) = p.stream {
                    self.send.on_acked(s, e);
                    data_acked = true;
                }
            }
        }
        self.detect_lost(now);
        // §6.2.1 resets the backoff on any ACK; an ACK of PINGs alone (the window-blocked
        // probe) keeps it, so a blocked sender's PINGs thin out (up to 1 s apart).
        if data_acked {
            self.pto_count = 0;
        }
        Ok(())
    }

    /// §A.10 DetectAndRemoveLostPackets: lost if 3 later packets are acknowledged or it was
    /// sent 9/8 RTT before the newest acknowledgment; lost data is queued again.
    fn detect_lost(&mut self, now: u64) {
        let Some(largest) = self.largest_acked else {
            return;
        };
        self.loss_time = None;
        let delay = self.rtt.loss_delay();
        let mut lost = Vec::new();
        for (&pn, p) in self.sent.range(..=largest) {
            let deadline = p.time.saturating_add(delay);
            if deadline <= now || largest >= pn.saturating_add(3) {
                lost.push(pn);
            } else {
                self.loss_time = min_opt(self.loss_time, Some(deadline));
            }
        }
        let mut newest_lost_sent = None;
        for pn in lost {
            if let Some(p) = self.sent.remove(&pn) {
                self.bytes_in_flight = self.bytes_in_flight.saturating_sub(p.size);
                self.stats.packets_lost = self.stats.packets_lost.saturating_add(1);
                if let Some((s, e)) = p.stream {
                    self.send.on_lost(s, e);
                }
                newest_lost_sent = newest_lost_sent.max(Some(p.time));
            }
        }
        if let Some(t) = newest_lost_sent {
            self.cc.on_congestion_event(t, now);
        }
    }

    /// Builds and records one datagram of `kind` with packet number `next_pn`.
    fn build(&mut self, now: u64, kind: Kind) -> Bytes {
        let pn = self.next_pn;
        self.next_pn = self.next_pn.saturating_add(1);
        let header = 2usize.saturating_add(wire::varint_len(pn));
        let room = self.max_datagram.saturating_sub(header);
        let ack = if self.acks.has_ranges()
            && (kind == Kind::AckOnly || self.acks.pending() || self.recv.window_update_due())
        {
            let (max_ranges, budget) = if kind == Kind::AckOnly {
                (MAX_ACK_RANGES, room)
            } else {
                // Leave most of a data packet for data.
                (PIGGYBACK_ACK_RANGES, room.saturating_sub(32))
            };
            Some(self.make_ack(now, max_ranges, budget))
        } else {
            None
        };
        let ack_len = ack.as_ref().map_or(0, wire::ack_len);
        let segment = if kind == Kind::AckOnly {
            None
        } else {
            let room = room
                .saturating_sub(ack_len)
                .saturating_sub(wire::varint_len(self.send.write_offset()));
            self.send.next_segment(room, self.peer_limit)
        };
        let mut flags = 0u8;
        if ack.is_some() {
            flags |= wire::FLAG_ACK;
        }
        if segment.is_some() {
            flags |= wire::FLAG_STREAM;
        } else if kind != Kind::AckOnly {
            flags |= wire::FLAG_PING;
        }
        let mut out = BytesMut::with_capacity(self.max_datagram);
        wire::put_header(&mut out, flags, pn);
        if let Some(ack) = &ack {
            wire::put_ack(&mut out, ack);
        }
        let mut stream = None;
        if let Some((offset, data)) = &segment {
            crate::codec::varint::put_varint(&mut out, *offset);
            out.put_slice(data);
            stream = Some((*offset, offset.saturating_add(data.len() as u64)));
        }
        let size = out.len() as u64;
        if kind != Kind::AckOnly {
            self.sent.insert(
                pn,
                SentPacket {
                    time: now,
                    size,
                    stream,
                },
            );
            self.bytes_in_flight = self.bytes_in_flight.saturating_add(size);
            self.last_ack_eliciting_sent = Some(now);
            if kind == Kind::Data {
                self.pacer
                    .on_sent(now, self.cc.cwnd, self.rtt.smoothed, size);
            }
        }
        self.stats.datagrams_sent = self.stats.datagrams_sent.saturating_add(1);
        out.freeze()
    }

    /// An ACK block of the newest ranges that fit `budget` bytes, carrying our window limit.
    fn make_ack(&mut self, now: u64, max_ranges: usize, budget: usize) -> wire::AckBlock {
        let (ranges, delay) = self.acks.take(now, max_ranges);
        let mut ack = wire::AckBlock {
            ranges,
            ack_delay_us: delay,
            max_stream: self.recv.advertise(),
        };
        while ack.ranges.len() > 1 && wire::ack_len(&ack) > budget {
            ack.ranges.pop();
        }
        ack
    }
}

fn min_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}
