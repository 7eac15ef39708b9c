//! Sending side: splits messages into frames and numbers them.

use super::frame::{
    batch_entry_len, begin_batch, put_batch_entry, Body, Control, Fragment, Frame, MAX_DATA_HEADER,
    MAX_FRAGMENT_HEADER,
};
use super::{CodecError, CodecLimits, MIN_FRAME_SIZE};
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;

/// Per-channel sending state: the next frame sequence number and the next message id.
///
/// One encoder per data channel; frames must be sent in the order of their sequence numbers
/// (the receiver's ordered mode checks them).
#[derive(Debug, Clone)]
pub struct FrameEncoder {
    limits: CodecLimits,
    next_seq: u64,
    next_msg_id: u64,
}

impl FrameEncoder {
    /// A fresh encoder: first frame gets seq 0, first fragmented message gets id 0.
    pub fn new(limits: CodecLimits) -> Self {
        FrameEncoder {
            limits,
            next_seq: 0,
            next_msg_id: 0,
        }
    }

    /// The limits this encoder enforces.
    pub fn limits(&self) -> &CodecLimits {
        &self.limits
    }

    /// Sequence number the next frame will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Splits `data` into frames of at most `max_frame_size` bytes (the remote's
    /// `a=max-message-size`, RFC 8841 §6 / RFC 8831 §6.6; see [`DEFAULT_MAX_FRAME_SIZE`](super::DEFAULT_MAX_FRAME_SIZE)).
    ///
    /// A message of up to `max_frame_size − 12` bytes is one unfragmented frame; a longer one
    /// gets a new message id and is cut into fragments of exactly `max_frame_size − 42` payload
    /// bytes (the last one shorter). The returned iterator reserves all its sequence numbers now:
    /// send every frame it yields before any other frame of this encoder, or the receiver sees a
    /// gap. Errors: `MessageTooLarge` (over `max_message_size`), `FrameSizeTooSmall` (under
    /// [`MIN_FRAME_SIZE`]), `InvalidUtf8` (`text` with non-UTF-8 bytes).
    pub fn encode_message(
        &mut self,
        data: Bytes,
        text: bool,
        max_frame_size: usize,
    ) -> Result<Fragments, CodecError> {
        let plan = Plan::new(self, data, text, max_frame_size)?;
        let seq = self.next_seq;
        self.next_seq = seq.wrapping_add(plan.frames_left as u64);
        Ok(Fragments { plan, seq })
    }

    /// Encodes one control frame (at most 22 bytes, below [`MIN_FRAME_SIZE`]), taking the next
    /// sequence number.
    pub fn encode_control(&mut self, control: Control) -> Bytes {
        let seq = self.take_seq();
        Frame {
            seq,
            body: Body::Control(control),
        }
        .encode()
    }

    fn take_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq = seq.wrapping_add(1);
        seq
    }
}

/// Whether a message of `len` bytes goes out whole (one DATA frame, or an entry of a BATCH)
/// at `max_frame_size`: `len + 12 ≤ max_frame_size` (12 = worst-case DATA header). Longer
/// messages are fragmented.
pub fn fits_one_frame(len: usize, max_frame_size: usize) -> bool {
    len.saturating_add(MAX_DATA_HEADER) <= max_frame_size
}

/// How one message is cut into frames; shared by [`Fragments`] (seqs reserved up front) and
/// [`OutboundQueue`] (seqs taken at pop time).
#[derive(Debug, Clone)]
struct Plan {
    data: Bytes,
    text: bool,
    msg_id: Option<u64>,
    chunk: usize,
    offset: usize,
    frames_left: usize,
    /// The `max_frame_size` it was cut for; a BATCH holding it must fit it too.
    frame_size: usize,
}

impl Plan {
    fn new(
        enc: &mut FrameEncoder,
        data: Bytes,
        text: bool,
        max_frame_size: usize,
    ) -> Result<Self, CodecError> {
        let (len, max) = (data.len(), enc.limits.max_message_size);
        if max_frame_size < MIN_FRAME_SIZE {
            return Err(CodecError::FrameSizeTooSmall {
                size: max_frame_size,
                min: MIN_FRAME_SIZE,
            });
        }
        if len > max {
            return Err(CodecError::MessageTooLarge {
                len: len as u64,
                max,
            });
        }
        if text && std::str::from_utf8(&data).is_err() {
            return Err(CodecError::InvalidUtf8);
        }
        // Worst-case header sizes make the split independent of the seq a frame will get, so both
        // sending paths cut a message identically.
        let (msg_id, chunk, frames_left) = if fits_one_frame(len, max_frame_size) {
            (None, len, 1)
        } else {
            // > 0: MIN_FRAME_SIZE > 42 was checked above (max(1) keeps div_ceil from panicking).
            let chunk = max_frame_size.saturating_sub(MAX_FRAGMENT_HEADER).max(1);
            let id = enc.next_msg_id;
            enc.next_msg_id = id.wrapping_add(1);
            (Some(id), chunk, len.div_ceil(chunk))
        };
        Ok(Plan {
            data,
            text,
            msg_id,
            chunk,
            offset: 0,
            frames_left,
            frame_size: max_frame_size,
        })
    }

    /// A whole message not yet sent: the only kind a BATCH frame may carry.
    fn is_whole(&self) -> bool {
        self.msg_id.is_none() && self.frames_left == 1
    }

    fn remaining_bytes(&self) -> usize {
        self.data.len().saturating_sub(self.offset)
    }

    /// Builds the next frame with sequence number `*seq`, then increments `*seq`.
    fn next_frame(&mut self, seq: &mut u64) -> Option<Bytes> {
        self.frames_left = self.frames_left.checked_sub(1)?;
        let start = self.offset;
        self.offset = start.saturating_add(self.chunk).min(self.data.len());
        let fragment = self.msg_id.map(|msg_id| Fragment {
            msg_id,
            offset: start as u64,
            total: self.data.len() as u64,
        });
        let payload = self.data.get(start..self.offset).unwrap_or_default();
        let frame = Frame {
            seq: *seq,
            body: Body::Data {
                text: self.text,
                fragment,
                payload,
            },
        }
        .encode();
        *seq = seq.wrapping_add(1);
        Some(frame)
    }
}

/// The frames of one message, built lazily (each frame copies only its own slice of the
/// message). Owns the message and its reserved sequence numbers; does not borrow the encoder.
/// `len()` (from [`ExactSizeIterator`]) is the number of frames still to come.
#[derive(Debug, Clone)]
pub struct Fragments {
    plan: Plan,
    seq: u64,
}

impl Iterator for Fragments {
    type Item = Bytes;
    fn next(&mut self) -> Option<Bytes> {
        self.plan.next_frame(&mut self.seq)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.plan.frames_left, Some(self.plan.frames_left))
    }
}

impl ExactSizeIterator for Fragments {}

/// Round-robin scheduler: interleaves the frames of queued messages so a small message waits
/// at most one frame per message queued ahead of it, never for a whole large transfer.
///
/// Each message carries a caller's tag `T` (e.g. a completion channel), handed back by
/// [`pop`](Self::pop) with the message's last frame, by [`abort`](Self::abort) when the peer
/// refused it (RESET), or by [`drain`](Self::drain).
///
/// Small messages are coalesced: when two or more whole (unfragmented) messages are queued at
/// the head of the rotation, [`pop`](Self::pop) packs as many as fit in one frame into a BATCH
/// frame. Only messages already queued are coalesced (no timer), so batching adds no latency:
/// it happens exactly when the sender is ahead of the channel.
///
/// Sequence numbers are taken from the encoder at pop time, so control frames from
/// [`FrameEncoder::encode_control`] may be sent between any two pops. Message ids are assigned
/// at push time.
#[derive(Debug, Clone)]
pub struct OutboundQueue<T = ()> {
    queue: VecDeque<(Plan, T)>,
    queued_bytes: usize,
}

/// One frame taken from an [`OutboundQueue`].
#[derive(Debug)]
pub struct Popped<T> {
    /// The frame to send.
    pub frame: Bytes,
    /// The tags of the messages this frame completes (their last frame, or a BATCH holding
    /// them), in send order; empty for a fragment that is not a message's last.
    pub finished: Vec<T>,
}

impl<T> Default for OutboundQueue<T> {
    fn default() -> Self {
        OutboundQueue {
            queue: VecDeque::new(),
            queued_bytes: 0,
        }
    }
}

impl<T> OutboundQueue<T> {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues a message with its tag; same splitting rules and errors as
    /// [`FrameEncoder::encode_message`]. On error the tag is handed back with it.
    pub fn push_tagged(
        &mut self,
        enc: &mut FrameEncoder,
        data: Bytes,
        text: bool,
        max_frame_size: usize,
        tag: T,
    ) -> Result<(), (CodecError, T)> {
        let plan = match Plan::new(enc, data, text, max_frame_size) {
            Ok(plan) => plan,
            Err(e) => return Err((e, tag)),
        };
        self.queued_bytes = self.queued_bytes.saturating_add(plan.data.len());
        self.queue.push_back((plan, tag));
        Ok(())
    }

    /// The next frame to send (from the message at the head of the rotation, or a BATCH of the
    /// whole messages there), numbered with `enc`'s next seq; `None` when the queue is empty.
    pub fn pop(&mut self, enc: &mut FrameEncoder) -> Option<Popped<T>> {
        if let Some(batch) = self.pop_batch(enc) {
            return Some(batch);
        }
        let (mut plan, tag) = self.queue.pop_front()?;
        let before = plan.remaining_bytes();
        let frame = plan.next_frame(&mut enc.next_seq);
        self.queued_bytes = self
            .queued_bytes
            .saturating_sub(before.saturating_sub(plan.remaining_bytes()));
        let finished = if plan.frames_left > 0 {
            self.queue.push_back((plan, tag));
            Vec::new()
        } else {
            vec![tag]
        };
        frame.map(|frame| Popped { frame, finished })
    }

    /// A BATCH of the whole messages at the head of the queue, if two or more fit one frame.
    fn pop_batch(&mut self, enc: &mut FrameEncoder) -> Option<Popped<T>> {
        let frame_size = self.queue.front()?.0.frame_size;
        let mut size = MAX_DATA_HEADER; // worst-case version + flags + seq
        let mut count = 0usize;
        for (plan, _) in &self.queue {
            let entry = batch_entry_len(plan.data.len());
            if !plan.is_whole() || size.saturating_add(entry) > frame_size {
                break;
            }
            size = size.saturating_add(entry);
            count = count.saturating_add(1);
        }
        if count < 2 {
            return None;
        }
        let mut out = BytesMut::with_capacity(size);
        begin_batch(&mut out, enc.take_seq());
        let mut finished = Vec::with_capacity(count);
        for (plan, tag) in self.queue.drain(..count) {
            put_batch_entry(&mut out, &plan.data, plan.text);
            self.queued_bytes = self.queued_bytes.saturating_sub(plan.data.len());
            finished.push(tag);
        }
        Some(Popped {
            frame: out.freeze(),
            finished,
        })
    }

    /// Removes the fragmented message `msg_id` (the peer sent RESET for it) and returns its
    /// tag; `None` if it is no longer queued (all its frames were already sent).
    pub fn abort(&mut self, msg_id: u64) -> Option<T> {
        let index = self
            .queue
            .iter()
            .position(|(plan, _)| plan.msg_id == Some(msg_id))?;
        let (plan, tag) = self.queue.remove(index)?;
        self.queued_bytes = self.queued_bytes.saturating_sub(plan.remaining_bytes());
        Some(tag)
    }

    /// Empties the queue, returning every tag (e.g. to fail them when the channel broke).
    pub fn drain(&mut self) -> impl Iterator<Item = T> + '_ {
        self.queued_bytes = 0;
        self.queue.drain(..).map(|(_, tag)| tag)
    }

    /// Payload bytes queued and not yet popped (headers excluded), for backpressure.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Number of messages with frames left to pop.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// True when no frame is left to pop.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

impl OutboundQueue<()> {
    /// [`push_tagged`](Self::push_tagged) without a tag.
    pub fn push(
        &mut self,
        enc: &mut FrameEncoder,
        data: Bytes,
        text: bool,
        max_frame_size: usize,
    ) -> Result<(), CodecError> {
        self.push_tagged(enc, data, text, max_frame_size, ())
            .map_err(|(e, ())| e)
    }

    /// [`pop`](Self::pop) without the tag: just the frame.
    pub fn pop_frame(&mut self, enc: &mut FrameEncoder) -> Option<Bytes> {
        self.pop(enc).map(|p| p.frame)
    }
}
