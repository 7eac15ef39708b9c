//! One v1 frame: the header layout of docs/frame.md and its parse/encode.

use super::varint::{put_varint, Reader, MAX_VARINT_LEN};
use super::CodecError;
use bytes::{BufMut, Bytes, BytesMut};

/// The only wire version this codec reads or writes (byte 0 of every frame).
pub const VERSION: u8 = 1;

// Flags byte (byte 1): bits 0-2 = kind, bit 3 = TEXT, bit 4 = FRAGMENT, bits 5-7 reserved.
// A kind field instead of one bit per kind leaves 3 reserved bits and makes "two kinds at once"
// unrepresentable. All 8 kinds are assigned; a later kind needs a reserved bit (docs/frame.md).
const KIND_MASK: u8 = 0x07;
const KIND_DATA: u8 = 0;
const KIND_PING: u8 = 1;
const KIND_PONG: u8 = 2;
const KIND_FIN: u8 = 3;
const KIND_FIN_ACK: u8 = 4;
const KIND_RESET: u8 = 5;
const KIND_BATCH: u8 = 6;
const KIND_REFUSED: u8 = 7;
const FLAG_TEXT: u8 = 0x08;
const FLAG_FRAGMENT: u8 = 0x10;
const RESERVED: u8 = 0xe0;

/// Largest header of an unfragmented DATA frame in bytes: version + flags + seq varint.
pub(crate) const MAX_DATA_HEADER: usize = 2 + MAX_VARINT_LEN;
/// Largest header of a fragment in bytes: version + flags + seq, msg_id, offset, total varints.
/// The fragmenter budgets this much per frame so the split never depends on varint sizes.
pub(crate) const MAX_FRAGMENT_HEADER: usize = 2 + 4 * MAX_VARINT_LEN;

/// A control message (frame kinds 1..=5 and 7); it never carries application data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Control {
    /// Liveness probe carrying an opaque nonce (e.g. a send timestamp chosen by the caller).
    Ping(u64),
    /// Answer to a [`Control::Ping`], echoing its nonce.
    Pong(u64),
    /// The sender will send no more messages on this channel (graceful close).
    Fin,
    /// Acknowledges a [`Control::Fin`]; the channel can now be closed.
    FinAck,
    /// Sent back by a receiver that dropped the fragmented message `msg_id` (reassembly cap
    /// exceeded, malformed fragment, sequence gap): the sender stops sending that message and
    /// reports a typed error to its application. The varint is the [`Fragment::msg_id`].
    Reset(u64),
    /// Sent back by a receiver that dropped this many whole messages (unfragmented DATA frames
    /// and BATCH entries: over its `max_message_size`, TEXT not UTF-8, lost in a sequence gap;
    /// a frame it could not parse counts as one). Decoders never ask for 0. The sender's `send`
    /// already returned, so it reports a typed error event to its application.
    Refused(u64),
}

/// Fragment fields of a DATA frame with the FRAGMENT flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fragment {
    /// Per-encoder id of the message this fragment belongs to (ids of fragmented messages).
    pub msg_id: u64,
    /// Position of this fragment's first payload byte in the message, in bytes.
    pub offset: u64,
    /// Length of the whole message in bytes; repeated in every fragment so that fragments
    /// arriving in any order (unordered channels) can be bounds-checked on arrival.
    pub total: u64,
}

/// The entries of a BATCH frame: several whole messages coalesced into one frame, in send
/// order. Each entry is `varint(len << 1 | text)` then `len` bytes (docs/frame.md). A `Batch`
/// from [`Frame::parse`] is validated: at least one entry, none running past the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Batch<'a> {
    entries: &'a [u8],
}

impl<'a> Batch<'a> {
    /// Checks the entry layout of `entries` (the bytes after a BATCH frame's seq). Errors:
    /// `EmptyBatch` (no entry), `Truncated` (an entry runs past the end), varint errors.
    pub fn parse(entries: &'a [u8]) -> Result<Self, CodecError> {
        if entries.is_empty() {
            return Err(CodecError::EmptyBatch);
        }
        let mut r = Reader(entries);
        while !r.0.is_empty() {
            let (len, _) = split_entry_header(r.varint()?);
            let len = usize::try_from(len).map_err(|_| CodecError::Truncated)?;
            r.0 = r.0.get(len..).ok_or(CodecError::Truncated)?;
        }
        Ok(Batch { entries })
    }

    /// The raw entry bytes, as on the wire.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.entries
    }

    /// The messages in send order: `(payload, text)`.
    pub fn iter(&self) -> impl Iterator<Item = (&'a [u8], bool)> + 'a {
        let mut r = Reader(self.entries);
        std::iter::from_fn(move || {
            // Validated by `parse`, so the error arms only end the iteration early.
            let (len, text) = split_entry_header(r.varint().ok()?);
            let len = usize::try_from(len).ok()?;
            let payload = r.0.get(..len)?;
            r.0 = r.0.get(len..)?;
            Some((payload, text))
        })
    }
}

/// Bytes one message takes inside a BATCH frame: its entry header plus its payload.
pub(crate) fn batch_entry_len(len: usize) -> usize {
    varint_len(entry_header(len, false)).saturating_add(len)
}

/// Appends one BATCH entry to `out`.
pub(crate) fn put_batch_entry(out: &mut BytesMut, payload: &[u8], text: bool) {
    put_varint(out, entry_header(payload.len(), text));
    out.put_slice(payload);
}

/// Starts a BATCH frame with sequence number `seq`; entries follow via [`put_batch_entry`].
pub(crate) fn begin_batch(out: &mut BytesMut, seq: u64) {
    out.put_u8(VERSION);
    out.put_u8(KIND_BATCH);
    put_varint(out, seq);
}

fn entry_header(len: usize, text: bool) -> u64 {
    ((len as u64) << 1) | u64::from(text)
}

fn split_entry_header(header: u64) -> (u64, bool) {
    (header >> 1, header & 1 == 1)
}

fn varint_len(v: u64) -> usize {
    (u64::BITS.saturating_sub((v | 1).leading_zeros()) as usize).div_ceil(7)
}

/// What a frame carries after its sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Body<'a> {
    /// Application data: a whole message, or one fragment of it.
    Data {
        /// The message was a string (JS) / `&str`; its bytes are UTF-8.
        text: bool,
        /// `Some` for a fragment of a larger message.
        fragment: Option<Fragment>,
        /// Payload bytes: the rest of the frame.
        payload: &'a [u8],
    },
    /// Several whole messages coalesced into one frame (kind BATCH), to raise the message rate
    /// of small messages without a timer: only messages already queued are coalesced.
    Batch(Batch<'a>),
    /// A control message.
    Control(Control),
}

/// One decoded (or to-be-encoded) v1 frame; the low-level layer under
/// [`FrameEncoder`](super::FrameEncoder) and [`FrameDecoder`](super::FrameDecoder), public for
/// test vectors, tracing and tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Frame<'a> {
    /// Channel-local frame sequence number: 0 for the first frame, +1 per frame sent.
    pub seq: u64,
    /// Kind-specific content.
    pub body: Body<'a>,
}

impl<'a> Frame<'a> {
    /// Parses one frame (a whole data-channel message), borrowing the payload from `bytes`.
    ///
    /// Stateless: sequence and fragment checks are the decoder's job. Errors: `Truncated`,
    /// `UnsupportedVersion` (checked first, so a future version is reported as such whatever its
    /// layout), `UnknownFlags`, `VarintOverflow`, `NonMinimalVarint`, `TrailingBytes`.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, CodecError> {
        let mut r = Reader(bytes);
        let version = r.byte()?;
        if version != VERSION {
            return Err(CodecError::UnsupportedVersion { got: version });
        }
        let flags = r.byte()?;
        let kind = flags & KIND_MASK;
        let data_only = FLAG_TEXT | FLAG_FRAGMENT;
        // Every kind value is assigned, so only the reserved bits and misplaced flags are bad.
        if flags & RESERVED != 0 || (kind != KIND_DATA && flags & data_only != 0) {
            return Err(CodecError::UnknownFlags { flags });
        }
        let seq = r.varint()?;
        let control = match kind {
            KIND_DATA => {
                let fragment = if flags & FLAG_FRAGMENT != 0 {
                    Some(Fragment {
                        msg_id: r.varint()?,
                        offset: r.varint()?,
                        total: r.varint()?,
                    })
                } else {
                    None
                };
                let text = flags & FLAG_TEXT != 0;
                return Ok(Frame {
                    seq,
                    body: Body::Data {
                        text,
                        fragment,
                        payload: r.rest(),
                    },
                });
            }
            KIND_BATCH => {
                return Ok(Frame {
                    seq,
                    body: Body::Batch(Batch::parse(r.rest())?),
                });
            }
            KIND_PING => Control::Ping(r.varint()?),
            KIND_PONG => Control::Pong(r.varint()?),
            KIND_FIN => Control::Fin,
            KIND_FIN_ACK => Control::FinAck,
            KIND_RESET => Control::Reset(r.varint()?),
            // KIND_REFUSED, the last of the 8 values of the 3-bit kind field.
            _ => Control::Refused(r.varint()?),
        };
        match r.rest().len() {
            0 => Ok(Frame {
                seq,
                body: Body::Control(control),
            }),
            len => Err(CodecError::TrailingBytes { len }),
        }
    }

    /// Encodes the frame: header (version, flags, varints) then payload. Length in bytes is at
    /// most 2 + 4 × 10 + payload length. Never fails: every `Frame` value is encodable.
    pub fn encode(&self) -> Bytes {
        let payload_len = match self.body {
            Body::Data { payload, .. } => payload.len(),
            Body::Batch(batch) => batch.entries.len(),
            Body::Control(_) => MAX_VARINT_LEN,
        };
        let mut out = BytesMut::with_capacity(MAX_FRAGMENT_HEADER.saturating_add(payload_len));
        out.put_u8(VERSION);
        let (flags, nonce) = match self.body {
            Body::Data { text, fragment, .. } => {
                let f = if text { FLAG_TEXT } else { 0 }
                    | if fragment.is_some() { FLAG_FRAGMENT } else { 0 };
                (KIND_DATA | f, None)
            }
            Body::Batch(_) => (KIND_BATCH, None),
            Body::Control(Control::Ping(n)) => (KIND_PING, Some(n)),
            Body::Control(Control::Pong(n)) => (KIND_PONG, Some(n)),
            Body::Control(Control::Fin) => (KIND_FIN, None),
            Body::Control(Control::FinAck) => (KIND_FIN_ACK, None),
            Body::Control(Control::Reset(msg_id)) => (KIND_RESET, Some(msg_id)),
            Body::Control(Control::Refused(count)) => (KIND_REFUSED, Some(count)),
        };
        out.put_u8(flags);
        put_varint(&mut out, self.seq);
        if let Some(n) = nonce {
            put_varint(&mut out, n);
        }
        if let Body::Data {
            fragment, payload, ..
        } = self.body
        {
            if let Some(f) = fragment {
                put_varint(&mut out, f.msg_id);
                put_varint(&mut out, f.offset);
                put_varint(&mut out, f.total);
            }
            out.put_slice(payload);
        }
        if let Body::Batch(batch) = self.body {
            out.put_slice(batch.entries);
        }
        out.freeze()
    }
}
