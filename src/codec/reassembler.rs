//! Receiving side: checks sequence numbers, reassembles fragmented messages, and keeps account
//! of what it dropped so the sender can be told (RESET / REFUSED).

use super::frame::{Body, Control, Fragment, Frame};
use super::{CodecError, CodecLimits};
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet};

/// Bounds on the message ids a decoder remembers as discarded (see [`FrameDecoder::decode`])
/// and on the RESETs it keeps until [`FrameDecoder::take_replies`]: `max_partial_messages`
/// (every partial one gap can drop), but at least 64 and at most 4096 (about 80 KiB), so a
/// large configured limit does not make this bookkeeping unbounded.
const IDS_REMEMBERED_MIN: usize = 64;
const IDS_REMEMBERED_MAX: usize = 4096;

/// Bytes charged per partial message in [`FrameDecoder::buffered_bytes`], on top of its runs:
/// its slot in the decoder's map of partial messages and the first node of its own map of runs
/// (a B-tree leaf of 11 slots, allocated whole for the first fragment). Measured with a counting
/// allocator on 64-bit targets (tests/codec_alloc.rs checks it): a partial message holding one
/// 1-byte fragment costs 470–490 bytes in all, this included.
pub const REASSEMBLY_PARTIAL_OVERHEAD: usize = 512;

/// Bytes charged per stored run of contiguous fragment bytes in
/// [`FrameDecoder::buffered_bytes`], on top of the run's allocated capacity: its B-tree slot
/// (50–65 bytes measured as above) and the allocator's header and rounding of the run's own
/// allocation. So a peer sending many tiny fragments cannot hold more memory than the cap says.
pub const REASSEMBLY_RUN_OVERHEAD: usize = 96;

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
    /// A BATCH frame some of whose entries were refused (`MessageTooLarge`, `InvalidUtf8`): the
    /// good entries in send order (never empty; a BATCH with no good entry is an `Err`), how
    /// many were refused, and why the first one was. The refused entries are counted in the
    /// REFUSED owed to the sender ([`FrameDecoder::take_replies`]).
    MixedBatch {
        /// The entries that passed, in send order.
        messages: Vec<Payload>,
        /// How many entries were dropped (at least 1).
        refused: usize,
        /// Why the first dropped entry was refused.
        error: CodecError,
    },
    /// A control frame.
    Control(Control),
}

impl Delivery {
    /// The application messages this delivery carries, in send order: one for `Message`,
    /// every (good) entry of a `Batch` / `MixedBatch`, none for `Control`.
    pub fn into_messages(self) -> Vec<Payload> {
        match self {
            Delivery::Message { data, text } => vec![Payload { data, text }],
            Delivery::Batch(messages) | Delivery::MixedBatch { messages, .. } => messages,
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

/// Per-channel receiving state: expected sequence number, partial messages, and the replies
/// owed to the sender for what was dropped.
///
/// Every error leaves the decoder usable. Ordered mode ([`CodecLimits::ordered`]): sequence
/// numbers must be consecutive and each message's fragments must arrive in offset order.
/// Unordered mode: sequence numbers are ignored, fragments may arrive in any order, and when
/// a cap is reached the oldest other partial messages are evicted (they may have lost a
/// fragment; each is owed a RESET) before a message is refused.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    limits: CodecLimits,
    next_seq: u64,
    partials: BTreeMap<u64, Partial>,
    buffered: usize,
    /// Fragmented messages dropped after an error whose later fragments may still arrive.
    discarded: BTreeSet<u64>,
    /// Fragmented messages dropped and not yet handed out by `take_replies` (RESET each).
    resets: Vec<u64>,
    /// Whole messages dropped and not yet handed out by `take_replies` (one REFUSED).
    refused: u64,
}

/// A message being reassembled. `runs` maps a start offset to contiguous received bytes;
/// runs never overlap or touch on the left (a fragment continuing a run is appended to it).
#[derive(Debug, Clone)]
struct Partial {
    total: u64,
    text: bool,
    /// Payload bytes received.
    bytes: u64,
    /// What this partial adds to [`FrameDecoder::buffered_bytes`]: run capacities plus
    /// overheads, kept so that dropping it gives back exactly what was charged.
    charged: usize,
    runs: BTreeMap<u64, Vec<u8>>,
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
            resets: Vec::new(),
            refused: 0,
        }
    }

    /// The limits this decoder enforces.
    pub fn limits(&self) -> &CodecLimits {
        &self.limits
    }

    /// Bytes held by partial messages: the allocated capacity of every run, plus
    /// [`REASSEMBLY_RUN_OVERHEAD`] per run and
    /// [`REASSEMBLY_PARTIAL_OVERHEAD`](super::REASSEMBLY_PARTIAL_OVERHEAD) per partial message;
    /// never above [`CodecLimits::max_reassembly_bytes`].
    pub fn buffered_bytes(&self) -> usize {
        self.buffered
    }

    /// Sequence number the next frame must carry in ordered mode (0 for a fresh decoder).
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Number of messages being reassembled; never above [`CodecLimits::max_partial_messages`].
    pub fn partial_messages(&self) -> usize {
        self.partials.len()
    }

    /// Decodes one frame (one data-channel message).
    ///
    /// Returns `Some(Message)` for a whole message or the fragment completing one,
    /// `Some(Batch)` / `Some(MixedBatch)` for the messages of a BATCH frame, `None` for a
    /// buffered fragment, `Some(Control)` for a control frame. Errors: everything
    /// [`Frame::parse`] returns; `SequenceGap` (ordered mode; the frame and every partial
    /// message are dropped, and the expected seq moves past the frame, so one loss gives one
    /// gap error and the dropped messages' later fragments are skipped); `MessageTooLarge`,
    /// `InvalidUtf8` (for a BATCH: only when no entry passes, else `MixedBatch`); and for
    /// fragments `EmptyFragment`, `FragmentPastEnd`, `LengthMismatch`, `FragmentOutOfOrder`,
    /// `DuplicateFragment`, `TooManyPartialMessages`, `ReassemblyCapExceeded`, each of which
    /// discards the partial message it names; the later fragments of a discarded message are
    /// then skipped silently (`Ok(None)`), since the error was already reported once.
    ///
    /// Whatever is dropped is owed to the sender: call [`take_replies`](Self::take_replies)
    /// after every `decode`, whatever it returned.
    pub fn decode(&mut self, frame: &[u8]) -> Result<Option<Delivery>, CodecError> {
        self.decode_frame(frame, None)
    }

    /// [`decode`](Self::decode) for a frame the caller holds as [`Bytes`]: whole messages
    /// (unfragmented, and every message of a BATCH) share the frame's buffer instead of being
    /// copied. Same results and errors.
    pub fn decode_bytes(&mut self, frame: &Bytes) -> Result<Option<Delivery>, CodecError> {
        self.decode_frame(frame, Some(frame))
    }

    /// The control frames owed to the sender for what this decoder dropped since the last
    /// call, to send back on the channel: one `Control::Reset(msg_id)` per dropped fragmented
    /// message (oldest first; the sender aborts it and fails its `send`), then one
    /// `Control::Refused(n)` if `n` whole messages were dropped (unfragmented or BATCH entries,
    /// whose `send` already returned). Empty (and allocation-free) when nothing was dropped.
    /// At most `max_partial_messages + 1` RESETs are kept (at least 64, at most 4096); further
    /// dropped ids are counted in the REFUSED instead.
    pub fn take_replies(&mut self) -> Vec<Control> {
        let mut replies: Vec<Control> = std::mem::take(&mut self.resets)
            .into_iter()
            .map(Control::Reset)
            .collect();
        if self.refused > 0 {
            replies.push(Control::Refused(std::mem::take(&mut self.refused)));
        }
        replies
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
        let frame = match Frame::parse(bytes) {
            Ok(frame) => frame,
            Err(e) => {
                // What it held is unknown; most likely one message.
                self.refuse(1);
                return Err(e);
            }
        };
        if self.limits.ordered && frame.seq != self.next_seq {
            return Err(self.sequence_gap(&frame));
        }
        self.next_seq = frame.seq.wrapping_add(1);
        let max = self.limits.max_message_size;
        match frame.body {
            Body::Control(c) => Ok(Some(Delivery::Control(c))),
            Body::Data {
                text,
                fragment: None,
                payload,
            } => match check_whole(payload, text, max) {
                Ok(()) => Ok(Some(Delivery::Message {
                    data: take(payload),
                    text,
                })),
                Err(e) => {
                    self.refuse(1);
                    Err(e)
                }
            },
            Body::Batch(batch) => {
                let (mut messages, mut refused, mut first_error) = (Vec::new(), 0usize, None);
                for (payload, text) in batch.iter() {
                    match check_whole(payload, text, max) {
                        Ok(()) => messages.push(Payload {
                            data: take(payload),
                            text,
                        }),
                        Err(e) => {
                            refused = refused.saturating_add(1);
                            first_error.get_or_insert(e);
                        }
                    }
                }
                self.refuse(refused as u64);
                match first_error {
                    None => Ok(Some(Delivery::Batch(messages))),
                    Some(error) if messages.is_empty() => Err(error),
                    Some(error) => Ok(Some(Delivery::MixedBatch {
                        messages,
                        refused,
                        error,
                    })),
                }
            }
            Body::Data {
                text,
                fragment: Some(f),
                payload,
            } => {
                let result = self.fragment(f, text, payload);
                if result.is_err() {
                    if let Some(p) = self.partials.remove(&f.msg_id) {
                        self.buffered = self.buffered.saturating_sub(p.charged);
                    }
                    self.owe_reset(f.msg_id);
                    if !is_last(f, payload) {
                        self.discard(f.msg_id);
                    }
                }
                result
            }
        }
    }

    /// Ordered mode, `frame.seq` is not the expected one: a reliable ordered channel skipped or
    /// repeated a frame. Any partial message may miss a fragment and would otherwise be held
    /// until the cap, so all are dropped (each owed a RESET) and their later fragments skipped:
    /// the gap is reported once. The frame itself is dropped too; if it is new (ahead of the
    /// expectation) what it carried is owed to the sender, a late duplicate is owed nothing.
    fn sequence_gap(&mut self, frame: &Frame<'_>) -> CodecError {
        let expected = self.next_seq;
        // max(): a late duplicate must not move the expectation backwards.
        self.next_seq = expected.max(frame.seq.wrapping_add(1));
        let dropped = std::mem::take(&mut self.partials);
        self.buffered = 0;
        for id in dropped.into_keys() {
            self.discard(id);
            self.owe_reset(id);
        }
        if frame.seq > expected {
            match frame.body {
                // Unless an earlier drop of that message was already reported.
                Body::Data {
                    fragment: Some(f),
                    payload,
                    ..
                } if !self.discarded.contains(&f.msg_id) => {
                    self.owe_reset(f.msg_id);
                    if !is_last(f, payload) {
                        self.discard(f.msg_id);
                    }
                }
                Body::Data { fragment: None, .. } => self.refuse(1),
                Body::Batch(batch) => self.refuse(batch.iter().count() as u64),
                Body::Data { .. } | Body::Control(_) => {}
            }
        }
        CodecError::SequenceGap {
            expected,
            got: frame.seq,
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
            if is_last(f, payload) {
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
        // Everything is checked and costed before anything is stored.
        let (append_to, grow) = match self.partials.get(&msg_id) {
            Some(p) => self.place(p, f, payload)?,
            None if self.limits.ordered && offset != 0 => {
                return Err(CodecError::FragmentOutOfOrder {
                    msg_id,
                    expected: 0,
                    got: offset,
                });
            }
            None => (
                None,
                payload
                    .len()
                    .saturating_add(REASSEMBLY_RUN_OVERHEAD)
                    .saturating_add(REASSEMBLY_PARTIAL_OVERHEAD),
            ),
        };
        let is_new = !self.partials.contains_key(&msg_id);
        let (cap, max_partials) = (
            self.limits.max_reassembly_bytes,
            self.limits.max_partial_messages,
        );
        let over = |dec: &Self| {
            dec.buffered.saturating_add(grow) > cap
                || (is_new && dec.partials.len() >= max_partials)
        };
        // Unordered channels may be lossy: a partial that lost a fragment would hold memory until
        // the decoder is dropped, so make room by evicting the oldest other partials (lowest id;
        // an encoder's ids only grow). Ordered channels report every loss as a SequenceGap instead.
        while !self.limits.ordered && over(self) {
            let Some(old) = self.partials.keys().copied().find(|&id| id != msg_id) else {
                break;
            };
            self.drop_partial(old);
        }
        if is_new && self.partials.len() >= max_partials {
            return Err(CodecError::TooManyPartialMessages {
                msg_id,
                max: max_partials,
            });
        }
        let needed = self.buffered.saturating_add(grow);
        if needed > cap {
            return Err(CodecError::ReassemblyCapExceeded {
                msg_id,
                needed,
                max: cap,
            });
        }
        let p = self.partials.entry(msg_id).or_insert_with(|| Partial {
            total,
            text,
            bytes: 0,
            charged: 0,
            runs: BTreeMap::new(),
        });
        match append_to.and_then(|s| p.runs.get_mut(&s).map(|run| (s, run))) {
            Some((start, run)) => append(run, payload, total.saturating_sub(start)),
            None => {
                p.runs.insert(offset, payload.to_vec());
            }
        }
        p.bytes = p.bytes.saturating_add(payload.len() as u64);
        p.charged = p.charged.saturating_add(grow);
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
        self.buffered = self.buffered.saturating_sub(p.charged);
        let mut runs = p.runs.into_values();
        let mut data = runs.next().unwrap_or_default();
        data.reserve_exact((p.total as usize).saturating_sub(data.len()));
        runs.for_each(|run| data.extend_from_slice(&run));
        message(Bytes::from(data), p.text).map(Some)
    }

    /// Where fragment `f` goes in the existing partial `p` (the run it extends, if any) and how
    /// many bytes that adds to [`buffered_bytes`](Self::buffered_bytes); or why it does not fit.
    fn place(
        &self,
        p: &Partial,
        f: Fragment,
        payload: &[u8],
    ) -> Result<(Option<u64>, usize), CodecError> {
        let Fragment {
            msg_id,
            offset,
            total,
        } = f;
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
        let end = offset.saturating_add(payload.len() as u64);
        let prev = p.runs.range(..=offset).next_back();
        let prev_end = prev.map(|(&s, v)| (s, s.saturating_add(v.len() as u64)));
        let next_start = p.runs.range(offset..).next().map(|(&s, _)| s);
        if prev_end.is_some_and(|(_, prev_end)| prev_end > offset)
            || next_start.is_some_and(|s| s < end)
        {
            return Err(CodecError::DuplicateFragment { msg_id, offset });
        }
        Ok(
            match prev.filter(|(&s, v)| s.saturating_add(v.len() as u64) == offset) {
                Some((&start, run)) => {
                    let limit = total.saturating_sub(start);
                    let capacity = grown_capacity(run, payload.len(), limit);
                    (Some(start), capacity.saturating_sub(run.capacity()))
                }
                None => (None, payload.len().saturating_add(REASSEMBLY_RUN_OVERHEAD)),
            },
        )
    }

    /// Drops a partial message to make room (unordered mode): owed a RESET, later fragments
    /// skipped.
    fn drop_partial(&mut self, msg_id: u64) {
        if let Some(p) = self.partials.remove(&msg_id) {
            self.buffered = self.buffered.saturating_sub(p.charged);
            self.discard(msg_id);
            self.owe_reset(msg_id);
        }
    }

    /// Remembers that `msg_id` was dropped, forgetting the oldest ids past a bound so a peer
    /// cannot grow this set without limit.
    fn discard(&mut self, msg_id: u64) {
        self.discarded.insert(msg_id);
        while self.discarded.len() > self.ids_remembered() {
            self.discarded.pop_first();
        }
    }

    /// How many ids `discarded` and `resets` hold at most.
    fn ids_remembered(&self) -> usize {
        (self.limits.max_partial_messages.saturating_add(1))
            .clamp(IDS_REMEMBERED_MIN, IDS_REMEMBERED_MAX)
    }

    /// Owes the sender a RESET for `msg_id`; past the bound, a REFUSED count instead.
    fn owe_reset(&mut self, msg_id: u64) {
        if self.resets.len() < self.ids_remembered() {
            self.resets.push(msg_id);
        } else {
            self.refuse(1);
        }
    }

    /// Owes the sender a REFUSED for `count` more whole messages.
    fn refuse(&mut self, count: u64) {
        self.refused = self.refused.saturating_add(count);
    }
}

/// The fragment reaches its message's end (the sender sends nothing more for it).
fn is_last(f: Fragment, payload: &[u8]) -> bool {
    f.offset.saturating_add(payload.len() as u64) >= f.total
}

/// The checks an unfragmented message or BATCH entry must pass.
fn check_whole(payload: &[u8], text: bool, max: usize) -> Result<(), CodecError> {
    if payload.len() > max {
        return Err(CodecError::MessageTooLarge {
            len: payload.len() as u64,
            max,
        });
    }
    if text && std::str::from_utf8(payload).is_err() {
        return Err(CodecError::InvalidUtf8);
    }
    Ok(())
}

/// The capacity `run` has after [`append`]ing `add` bytes: unchanged if they fit, else
/// doubling (at least what is needed) but never past `limit`, the bytes the run can still
/// reach, so a run's allocation never exceeds its message's validated total.
fn grown_capacity(run: &Vec<u8>, add: usize, limit: u64) -> usize {
    let need = run.len().saturating_add(add);
    if need <= run.capacity() {
        return run.capacity();
    }
    let limit = usize::try_from(limit).unwrap_or(need);
    run.len().saturating_mul(2).min(limit).max(need)
}

/// Appends with the growth of [`grown_capacity`].
fn append(run: &mut Vec<u8>, data: &[u8], limit: u64) {
    let want = grown_capacity(run, data.len(), limit);
    if want > run.capacity() {
        run.reserve_exact(want.saturating_sub(run.len()));
    }
    run.extend_from_slice(data);
}

fn message(data: Bytes, text: bool) -> Result<Delivery, CodecError> {
    if text && std::str::from_utf8(&data).is_err() {
        return Err(CodecError::InvalidUtf8);
    }
    Ok(Delivery::Message { data, text })
}
