//! Receiving side: checks sequence numbers and reassembles fragmented messages.

use super::frame::{Body, Control, Fragment, Frame};
use super::{CodecError, CodecLimits};
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet};

/// How many discarded message ids a decoder remembers (see [`FrameDecoder::decode`]).
const DISCARDED_IDS_REMEMBERED: usize = 64;

/// Bytes charged per stored run of contiguous fragment bytes, on top of the payload, in
/// [`FrameDecoder::buffered_bytes`]. Approximates the map entry and allocation header, so a
/// peer sending many tiny fragments cannot hold far more memory than the cap says.
pub const REASSEMBLY_RUN_OVERHEAD: usize = 64;

/// What one decoded frame yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// A complete application message (unfragmented, or the last missing fragment arrived).
    Message {
        /// The message bytes.
        data: Bytes,
        /// The sender passed a string; `data` is valid UTF-8 (checked).
        text: bool,
    },
    /// Several whole messages from one BATCH frame, in send order (never empty).
    Batch(Vec<Payload>),
    /// A control frame.
    Control(Control),
}

impl Delivery {
    /// The application messages this delivery carries, in send order: one for `Message`,
    /// every entry of a `Batch`, none for `Control`.
    pub fn into_messages(self) -> Vec<Payload> {
        match self {
            Delivery::Message { data, text } => vec![Payload { data, text }],
            Delivery::Batch(messages) => messages,
            Delivery::Control(_) => Vec::new(),
        }
    }
}

/// One whole message taken out of a BATCH frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// The message bytes.
    pub data: Bytes,
    /// The sender passed a string; `data` is valid UTF-8 (checked).
    pub text: bool,
}

/// Per-channel receiving state: expected sequence number and partial messages.
///
/// Every error leaves the decoder usable. Ordered mode ([`CodecLimits::ordered`]): sequence
/// numbers must be consecutive and each message's fragments must arrive in offset order.
/// Unordered mode: sequence numbers are ignored, fragments may arrive in any order, and when
/// the reassembly cap is reached the oldest other partial messages are silently evicted (they
/// may have lost a fragment) before a message is refused.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    limits: CodecLimits,
    next_seq: u64,
    partials: BTreeMap<u64, Partial>,
    buffered: usize,
    /// Fragmented messages dropped after an error whose later fragments may still arrive.
    discarded: BTreeSet<u64>,
    /// The message the latest error dropped, until [`FrameDecoder::take_dropped`].
    dropped: Option<u64>,
}

/// A message being reassembled. `runs` maps a start offset to contiguous received bytes;
/// runs never overlap or touch on the left (a fragment continuing a run is appended to it).
#[derive(Debug, Clone)]
struct Partial {
    total: u64,
    text: bool,
    bytes: u64,
    runs: BTreeMap<u64, Vec<u8>>,
}

impl Partial {
    fn cost(&self) -> usize {
        (self.bytes as usize)
            .saturating_add(self.runs.len().saturating_mul(REASSEMBLY_RUN_OVERHEAD))
    }
}

impl FrameDecoder {
    /// A fresh decoder expecting seq 0 and holding nothing.
    pub fn new(limits: CodecLimits) -> Self {
        FrameDecoder {
            limits,
            next_seq: 0,
            partials: BTreeMap::new(),
            buffered: 0,
            discarded: BTreeSet::new(),
            dropped: None,
        }
    }

    /// The limits this decoder enforces.
    pub fn limits(&self) -> &CodecLimits {
        &self.limits
    }

    /// Bytes held by partial messages: payload plus [`REASSEMBLY_RUN_OVERHEAD`] per run; never
    /// above [`CodecLimits::max_reassembly_bytes`].
    pub fn buffered_bytes(&self) -> usize {
        self.buffered
    }

    /// Decodes one frame (one data-channel message).
    ///
    /// Returns `Some(Message)` for a whole message or the fragment completing one,
    /// `Some(Batch)` for the messages of a BATCH frame, `None` for a
    /// buffered fragment, `Some(Control)` for a control frame. Errors: everything
    /// [`Frame::parse`] returns; `SequenceGap` (ordered mode; the frame and every partial
    /// message are dropped, and the expected seq moves past the frame, so one loss gives one
    /// gap error and the dropped messages' later fragments are skipped); `MessageTooLarge`,
    /// `InvalidUtf8` (for a BATCH: the whole frame is dropped); and for fragments `EmptyFragment`, `FragmentPastEnd`, `LengthMismatch`,
    /// `FragmentOutOfOrder`, `DuplicateFragment`, `ReassemblyCapExceeded`, each of which
    /// discards the partial message it names ([`take_dropped`](Self::take_dropped) gives its
    /// id); the later fragments of a discarded message are then skipped silently (`Ok(None)`),
    /// since the error was already reported once and the sender is told with a RESET.
    pub fn decode(&mut self, frame: &[u8]) -> Result<Option<Delivery>, CodecError> {
        self.decode_frame(frame, None)
    }

    /// [`decode`](Self::decode) for a frame the caller holds as [`Bytes`]: whole messages
    /// (unfragmented, and every message of a BATCH) share the frame's buffer instead of being
    /// copied. Same results and errors.
    pub fn decode_bytes(&mut self, frame: &Bytes) -> Result<Option<Delivery>, CodecError> {
        self.decode_frame(frame, Some(frame))
    }

    fn decode_frame(
        &mut self,
        bytes: &[u8],
        shared: Option<&Bytes>,
    ) -> Result<Option<Delivery>, CodecError> {
        // `slice_ref` needs a subslice of `shared`, which every payload of `bytes` is.
        let take = |payload: &[u8]| match shared {
            Some(buf) if !payload.is_empty() => buf.slice_ref(payload),
            _ => Bytes::copy_from_slice(payload),
        };
        let frame = Frame::parse(bytes)?;
        if self.limits.ordered {
            let expected = self.next_seq;
            // max(): a late duplicate must not move the expectation backwards.
            self.next_seq = expected.max(frame.seq.wrapping_add(1));
            if frame.seq != expected {
                // A reliable ordered channel skipped or repeated a frame: any partial message may
                // miss a fragment and would otherwise be held until the cap, so drop them all.
                // Their later fragments are skipped silently: the gap is reported once.
                let dropped: Vec<u64> = std::mem::take(&mut self.partials).into_keys().collect();
                dropped.into_iter().for_each(|id| self.discard(id));
                if let Body::Data {
                    fragment: Some(f),
                    payload,
                    ..
                } = frame.body
                {
                    if f.offset.saturating_add(payload.len() as u64) < f.total {
                        self.discard(f.msg_id);
                    }
                }
                self.buffered = 0;
                return Err(CodecError::SequenceGap {
                    expected,
                    got: frame.seq,
                });
            }
        }
        match frame.body {
            Body::Control(c) => Ok(Some(Delivery::Control(c))),
            Body::Data {
                text,
                fragment: None,
                payload,
            } => {
                let max = self.limits.max_message_size;
                if payload.len() > max {
                    return Err(CodecError::MessageTooLarge {
                        len: payload.len() as u64,
                        max,
                    });
                }
                message(take(payload), text).map(Some)
            }
            Body::Batch(batch) => {
                let mut messages = Vec::new();
                for (payload, text) in batch.iter() {
                    let max = self.limits.max_message_size;
                    if payload.len() > max {
                        return Err(CodecError::MessageTooLarge {
                            len: payload.len() as u64,
                            max,
                        });
                    }
                    if text && std::str::from_utf8(payload).is_err() {
                        return Err(CodecError::InvalidUtf8);
                    }
                    messages.push(Payload {
                        data: take(payload),
                        text,
                    });
                }
                Ok(Some(Delivery::Batch(messages)))
            }
            Body::Data {
                text,
                fragment: Some(f),
                payload,
            } => {
                let result = self.fragment(f, text, payload);
                if result.is_err() {
                    if let Some(p) = self.partials.remove(&f.msg_id) {
                        self.buffered = self.buffered.saturating_sub(p.cost());
                    }
                    self.dropped = Some(f.msg_id);
                    let last = f.offset.saturating_add(payload.len() as u64) >= f.total;
                    if !last {
                        self.discard(f.msg_id);
                    }
                }
                result
            }
        }
    }

    fn fragment(
        &mut self,
        f: Fragment,
        text: bool,
        payload: &[u8],
    ) -> Result<Option<Delivery>, CodecError> {
        let Fragment {
            msg_id,
            offset,
            total,
        } = f;
        if self.discarded.contains(&msg_id) {
            if offset.saturating_add(payload.len() as u64) >= total {
                self.discarded.remove(&msg_id);
            }
            return Ok(None);
        }
        let max = self.limits.max_message_size;
        if total > max as u64 {
            return Err(CodecError::MessageTooLarge { len: total, max });
        }
        if payload.is_empty() {
            return Err(CodecError::EmptyFragment { msg_id });
        }
        let end = offset.saturating_add(payload.len() as u64);
        if end > total {
            return Err(CodecError::FragmentPastEnd { msg_id, end, total });
        }

        // Lazy: a new partial holds nothing until its bytes are accepted below.
        let p = self.partials.entry(msg_id).or_insert_with(|| Partial {
            total,
            text,
            bytes: 0,
            runs: BTreeMap::new(),
        });
        if p.total != total {
            return Err(CodecError::LengthMismatch {
                msg_id,
                expected: p.total,
                got: total,
            });
        }
        if self.limits.ordered && offset != p.bytes {
            return Err(if offset < p.bytes {
                CodecError::DuplicateFragment { msg_id, offset }
            } else {
                CodecError::FragmentOutOfOrder {
                    msg_id,
                    expected: p.bytes,
                    got: offset,
                }
            });
        }
        let prev = p
            .runs
            .range(..=offset)
            .next_back()
            .map(|(&s, v)| (s, s.saturating_add(v.len() as u64)));
        let next_start = p.runs.range(offset..).next().map(|(&s, _)| s);
        if prev.is_some_and(|(_, prev_end)| prev_end > offset)
            || next_start.is_some_and(|s| s < end)
        {
            return Err(CodecError::DuplicateFragment { msg_id, offset });
        }
        let append_to = prev
            .filter(|&(_, prev_end)| prev_end == offset)
            .map(|(s, _)| s);
        let grow = payload.len().saturating_add(if append_to.is_none() {
            REASSEMBLY_RUN_OVERHEAD
        } else {
            0
        });
        let max = self.limits.max_reassembly_bytes;
        // Unordered channels may be lossy: a partial that lost a fragment would hold memory until
        // the decoder is dropped, so make room by evicting the oldest other partials (lowest id;
        // an encoder's ids only grow). Ordered channels report every loss as a SequenceGap instead.
        while !self.limits.ordered && self.buffered.saturating_add(grow) > max {
            let Some(old) = self.partials.keys().copied().find(|&id| id != msg_id) else {
                break;
            };
            if let Some(stale) = self.partials.remove(&old) {
                self.buffered = self.buffered.saturating_sub(stale.cost());
            }
        }
        let needed = self.buffered.saturating_add(grow);
        if needed > max {
            return Err(CodecError::ReassemblyCapExceeded {
                msg_id,
                needed,
                max,
            });
        }
        let Some(p) = self.partials.get_mut(&msg_id) else {
            return Ok(None);
        }; // inserted above
        match append_to.and_then(|s| p.runs.get_mut(&s).map(|run| (s, run))) {
            Some((start, run)) => append(run, payload, total.saturating_sub(start)),
            None => {
                p.runs.insert(offset, payload.to_vec());
            }
        }
        p.bytes = p.bytes.saturating_add(payload.len() as u64);
        if offset == 0 {
            p.text = text; // the offset-0 fragment is authoritative for TEXT
        }
        self.buffered = needed;
        if p.bytes < p.total {
            return Ok(None);
        }
        // Complete: runs cover [0, total) exactly (no overlaps, all inside the total).
        let Some(p) = self.partials.remove(&msg_id) else {
            return Ok(None);
        };
        self.buffered = self.buffered.saturating_sub(p.cost());
        let mut runs = p.runs.into_values();
        let mut data = runs.next().unwrap_or_default();
        data.reserve_exact((p.total as usize).saturating_sub(data.len()));
        runs.for_each(|run| data.extend_from_slice(&run));
        message(Bytes::from(data), p.text).map(Some)
    }
}

impl FrameDecoder {
    /// The id of the fragmented message the latest error dropped, once: the receiver sends
    /// `Control::Reset(id)` so the sender stops sending it and reports a typed error.
    pub fn take_dropped(&mut self) -> Option<u64> {
        self.dropped.take()
    }

    /// Remembers that `msg_id` was dropped, forgetting the oldest ids past a bound so a peer
    /// cannot grow this set without limit.
    fn discard(&mut self, msg_id: u64) {
        self.discarded.insert(msg_id);
        while self.discarded.len() > DISCARDED_IDS_REMEMBERED {
            self.discarded.pop_first();
        }
    }
}

/// Appends with doubling growth capped at `limit` (bytes the run can still reach), so a run's
/// allocation never exceeds its message's validated total.
fn append(run: &mut Vec<u8>, data: &[u8], limit: u64) {
    let need = run.len().saturating_add(data.len());
    if need > run.capacity() {
        let limit = usize::try_from(limit).unwrap_or(need);
        let want = run.len().saturating_mul(2).min(limit).max(need);
        run.reserve_exact(want - run.len());
    }
    run.extend_from_slice(data);
}

fn message(data: Bytes, text: bool) -> Result<Delivery, CodecError> {
    if text && std::str::from_utf8(&data).is_err() {
        return Err(CodecError::InvalidUtf8);
    }
    Ok(Delivery::Message { data, text })
}
