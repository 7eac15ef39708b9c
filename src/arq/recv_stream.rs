//! The incoming byte stream: out-of-order segments buffered up to the receive window,
//! duplicates and overlaps trimmed away, contiguous bytes cut into `varint(len) ‖ frame`
//! frames. Memory: at most `window` stream bytes (contiguous + out of order), plus a bounded
//! number of out-of-order segments.

use super::ArqError;
use crate::codec::varint::Reader;
use crate::codec::CodecError;
use bytes::{Buf, Bytes, BytesMut};
use std::collections::BTreeMap;

#[derive(Debug)]
pub(crate) struct RecvStream {
    window: u64,
    max_frame: usize,
    /// Contiguous bytes `[consumed, recv_next)`, starting at an undelivered frame's header.
    contig: BytesMut,
    /// Stream offset just past the last delivered frame.
    consumed: u64,
    /// End of the contiguous prefix of the stream.
    recv_next: u64,
    /// Disjoint segments above `recv_next`, by offset.
    ooo: BTreeMap<u64, Bytes>,
    ooo_bytes: u64,
    /// Most out-of-order segments held; past it a datagram is dropped unacknowledged (the
    /// peer resends), so tiny segments cannot make the map's overhead grow without bound.
    max_segments: usize,
    /// The limit last put in an ACK block.
    advertised: u64,
}

/// Result of offering a segment.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Accept {
    /// Stored, or already held (duplicate): acknowledge the packet.
    Yes,
    /// Not stored (segment cap): do not acknowledge, the peer will resend.
    Dropped,
}

impl RecvStream {
    pub(crate) fn new(window: u64, max_frame: usize, max_datagram: usize) -> Self {
        // An honest sender's segments are ~max_datagram bytes; allow 4× that count.
        let per = (max_datagram as u64).max(1);
        let max_segments = usize::try_from(window.checked_div(per).unwrap_or(0).saturating_mul(4))
            .unwrap_or(usize::MAX)
            .max(256);
        RecvStream {
            window,
            max_frame,
            contig: BytesMut::new(),
            consumed: 0,
            recv_next: 0,
            ooo: BTreeMap::new(),
            ooo_bytes: 0,
            max_segments,
            advertised: window,
        }
    }

    /// The receive-window limit: stream bytes below it may be sent.
    pub(crate) fn limit(&self) -> u64 {
        self.consumed.saturating_add(self.window)
    }

    /// Bytes held (contiguous undelivered + out of order).
    pub(crate) fn buffered(&self) -> u64 {
        (self.contig.len() as u64).saturating_add(self.ooo_bytes)
    }

    /// The limit is worth announcing: it moved by half a window since the last ACK carried it.
    pub(crate) fn window_update_due(&self) -> bool {
        self.limit() >= self.advertised.saturating_add(self.window / 2)
    }

    /// Records the limit as sent; returns it.
    pub(crate) fn advertise(&mut self) -> u64 {
        self.advertised = self.limit();
        self.advertised
    }

    /// Offers the segment at `offset`. Errors: `WindowExceeded` (fatal).
    pub(crate) fn on_segment(&mut self, offset: u64, data: &[u8]) -> Result<Accept, ArqError> {
        let end = offset.saturating_add(data.len() as u64);
        if end > self.limit() {
            return Err(ArqError::WindowExceeded {
                offset: end,
                limit: self.limit(),
            });
        }
        if end <= self.recv_next {
            return Ok(Accept::Yes); // already held or delivered
        }
        let skip = usize::try_from(self.recv_next.saturating_sub(offset)).unwrap_or(usize::MAX);
        let (offset, data) = match data.get(skip..) {
            Some(rest) if skip > 0 => (self.recv_next, rest),
            _ => (offset, data),
        };
        if offset == self.recv_next {
            self.contig.extend_from_slice(data);
            self.recv_next = end;
            self.drain_ooo();
            return Ok(Accept::Yes);
        }
        // Out of order: store only what no held segment covers.
        let mut pieces = Vec::new();
        let mut cur = offset;
        if let Some((&s, seg)) = self.ooo.range(..offset).next_back() {
            cur = cur.max(s.saturating_add(seg.len() as u64));
        }
        for (&s, seg) in self.ooo.range(offset..end) {
            if s > cur {
                pieces.push((cur, s));
            }
            cur = cur.max(s.saturating_add(seg.len() as u64));
        }
        if cur < end {
            pieces.push((cur, end));
        }
        if self.ooo.len().saturating_add(pieces.len()) > self.max_segments {
            return Ok(Accept::Dropped);
        }
        for (s, e) in pieces {
            let a = usize::try_from(s.saturating_sub(offset)).unwrap_or(usize::MAX);
            let b = usize::try_from(e.saturating_sub(offset)).unwrap_or(usize::MAX);
            if let Some(piece) = data.get(a..b) {
                self.ooo_bytes = self.ooo_bytes.saturating_add(piece.len() as u64);
                self.ooo.insert(s, Bytes::copy_from_slice(piece));
            }
        }
        Ok(Accept::Yes)
    }

    /// Moves out-of-order segments that now touch the contiguous prefix into it.
    fn drain_ooo(&mut self) {
        while let Some(entry) = self.ooo.first_entry() {
            let s = *entry.key();
            if s > self.recv_next {
                break;
            }
            let seg = entry.remove();
            self.ooo_bytes = self.ooo_bytes.saturating_sub(seg.len() as u64);
            let skip = usize::try_from(self.recv_next.saturating_sub(s)).unwrap_or(usize::MAX);
            if let Some(tail) = seg.get(skip..) {
                self.contig.extend_from_slice(tail);
                self.recv_next = self.recv_next.saturating_add(tail.len() as u64);
            }
        }
    }

    /// The next whole frame, `None` if incomplete. Errors (fatal): `FrameTooLarge`, and
    /// `Malformed` for a length prefix that is not a minimal varint ≤ 2^64 − 1.
    pub(crate) fn poll_frame(&mut self) -> Option<Result<Bytes, ArqError>> {
        let head = self.contig.get(..self.contig.len().min(10))?;
        let mut r = Reader(head);
        let len = match r.varint() {
            Ok(len) => len,
            Err(CodecError::Truncated) => return None,
            Err(_) => return Some(Err(ArqError::Malformed("frame length prefix"))),
        };
        let hdr = head.len().saturating_sub(r.rest().len());
        let max = self.max_frame;
        let Ok(body) = usize::try_from(len) else {
            return Some(Err(ArqError::FrameTooLarge { len, max }));
        };
        if body > max {
            return Some(Err(ArqError::FrameTooLarge { len, max }));
        }
        let total = hdr.saturating_add(body);
        if self.contig.len() < total {
            return None;
        }
        self.contig.advance(hdr);
        let frame = self.contig.split_to(body).freeze();
        self.consumed = self.consumed.saturating_add(total as u64);
        Some(Ok(frame))
    }
}

impl RecvStream {
    /// The (effective) window, bytes.
    pub(crate) fn window(&self) -> u64 {
        self.window
    }
}
