//! The outgoing byte stream: frames written as `varint(len) ‖ frame`, kept until
//! acknowledged; which ranges are acknowledged, which were lost (to retransmit first), and
//! where new data starts. Retransmission is of data, never of packets: a lost range goes out
//! again in whatever new packet has room. Offsets in bytes from the stream's start.

use super::ranges::RangeSet;
use bytes::{BufMut, Bytes, BytesMut};
use std::collections::VecDeque;

#[derive(Debug, Default)]
pub(crate) struct SendStream {
    /// Written, not yet fully acknowledged data; `starts[i]` is `chunks[i]`'s offset.
    chunks: VecDeque<Bytes>,
    starts: VecDeque<u64>,
    /// End of the written stream.
    write_offset: u64,
    /// First byte never sent.
    next_new: u64,
    /// Every byte below is acknowledged.
    una: u64,
    /// Acknowledged ranges above `una`.
    acked: RangeSet,
    /// Lost ranges (above `una`, never acked), retransmitted before new data.
    lost: RangeSet,
}

impl SendStream {
    /// Appends `varint(frame.len()) ‖ frame`.
    pub(crate) fn write_frame(&mut self, frame: &[u8]) {
        let mut buf = BytesMut::with_capacity(frame.len().saturating_add(10));
        crate::codec::varint::put_varint(&mut buf, frame.len() as u64);
        buf.put_slice(frame);
        let len = buf.len() as u64;
        self.chunks.push_back(buf.freeze());
        self.starts.push_back(self.write_offset);
        self.write_offset = self.write_offset.saturating_add(len);
    }

    /// Written and not yet acknowledged, bytes.
    pub(crate) fn unacked(&self) -> u64 {
        self.write_offset.saturating_sub(self.una)
    }

    pub(crate) fn write_offset(&self) -> u64 {
        self.write_offset
    }

    /// Something can be sent now under the peer's limit `flow_limit`.
    pub(crate) fn has_sendable(&self, flow_limit: u64) -> bool {
        !self.lost.is_empty() || self.next_new < self.write_offset.min(flow_limit)
    }

    /// New data waits but the peer's window forbids it (and nothing is to be retransmitted).
    pub(crate) fn flow_blocked(&self, flow_limit: u64) -> bool {
        self.lost.is_empty() && self.next_new < self.write_offset && self.next_new >= flow_limit
    }

    /// The next segment to send, at most `max_len` bytes: lost data first, then new data
    /// below `flow_limit`. Returns its offset and bytes.
    pub(crate) fn next_segment(&mut self, max_len: usize, flow_limit: u64) -> Option<(u64, Bytes)> {
        let max_len = max_len as u64;
        if max_len == 0 {
            return None;
        }
        let (start, end) = if let Some((s, e)) = self.lost.first() {
            let end = e.min(s.saturating_add(max_len));
            self.lost.remove(s, end);
            (s, end)
        } else {
            let end = self
                .write_offset
                .min(flow_limit)
                .min(self.next_new.saturating_add(max_len));
            if end <= self.next_new {
                return None;
            }
            let start = self.next_new;
            self.next_new = end;
            (start, end)
        };
        let data = self.read(start, end);
        if data.is_empty() {
            return None;
        }
        Some((start, data))
    }

    /// Bytes `[start, end)` of the buffer (empty if not held: never for ranges we track).
    fn read(&self, start: u64, end: u64) -> Bytes {
        let idx = self
            .starts
            .partition_point(|&s| s <= start)
            .saturating_sub(1);
        let mut out: Option<BytesMut> = None;
        let mut pos = start;
        for (chunk, &cs) in self.chunks.iter().zip(self.starts.iter()).skip(idx) {
            if pos >= end {
                break;
            }
            let (Ok(a), Ok(b)) = (
                usize::try_from(pos.saturating_sub(cs)),
                usize::try_from(end.saturating_sub(cs)),
            ) else {
                break;
            };
            let b = b.min(chunk.len());
            let Some(piece) = chunk.get(a..b) else { break };
            if out.is_none() && b.saturating_sub(a) as u64 == end.saturating_sub(start) {
                // The whole range lies in one chunk: share it, no copy.
                return chunk.slice(a..b);
            }
            out.get_or_insert_with(BytesMut::new).put_slice(piece);
            pos = cs.saturating_add(b as u64);
        }
        out.map(BytesMut::freeze).unwrap_or_default()
    }

    /// `[start, end)` was acknowledged.
    pub(crate) fn on_acked(&mut self, start: u64, end: u64) {
        let start = start.max(self.una);
        if start >= end {
            return;
        }
        self.acked.insert(start, end);
        self.lost.remove(start, end);
        while let Some((s, e)) = self.acked.first() {
            if s > self.una {
                break;
            }
            self.una = self.una.max(e);
            self.acked.remove(s, e);
        }
        while let (Some(chunk), Some(&cs)) = (self.chunks.front(), self.starts.front()) {
            if cs.saturating_add(chunk.len() as u64) > self.una {
                break;
            }
            self.chunks.pop_front();
            self.starts.pop_front();
        }
    }

    /// `[start, end)` was in a lost packet: its unacknowledged parts are queued again.
    pub(crate) fn on_lost(&mut self, start: u64, end: u64) {
        let start = start.max(self.una);
        for (s, e) in self.acked.uncovered(start, end) {
            self.lost.insert(s, e);
        }
    }

    /// True once every written byte is acknowledged.
    pub(crate) fn all_acked(&self) -> bool {
        self.una >= self.write_offset
    }
}
