//! The codec's one error type.

/// Why a frame could not be encoded or decoded.
///
/// One variant per failure so callers (and the hex test vectors, which name variants) can match
/// on the cause. Sizes are in bytes; `seq`, `msg_id` and offsets are the wire values. Every
/// decode error leaves the [`FrameDecoder`](super::FrameDecoder) usable: a failing fragment
/// discards only the partial message it names, and what was dropped is owed to the sender as
/// RESET / REFUSED ([`FrameDecoder::take_replies`](super::FrameDecoder::take_replies)).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The frame ended inside its header, a varint or a control payload.
    #[error("frame truncated: it ends inside its header or control payload")]
    Truncated,
    /// Byte 0 is not 1, the only version this codec speaks; a newer version is never guessed at.
    #[error("unsupported frame version {got} (this codec speaks version 1)")]
    UnsupportedVersion {
        /// The version byte received.
        got: u8,
    },
    /// Byte 1 has a reserved bit, an unassigned kind, or TEXT/FRAGMENT on a control frame.
    #[error("unknown or invalid frame flags {flags:#04x}")]
    UnknownFlags {
        /// The flags byte received.
        flags: u8,
    },
    /// A varint is longer than 10 bytes or its value does not fit in a u64.
    #[error("varint overflows u64")]
    VarintOverflow,
    /// A varint has a redundant trailing zero group; v1 accepts only the shortest encoding, so
    /// every frame has exactly one byte representation.
    #[error("varint is not minimally encoded")]
    NonMinimalVarint,
    /// A control frame carries bytes after its payload (PING/PONG: one varint; others: none).
    #[error("control frame has {len} unexpected trailing bytes")]
    TrailingBytes {
        /// Number of extra bytes.
        len: usize,
    },
    /// Ordered mode: the frame's sequence number is not the next one expected (`got > expected`
    /// is a gap, i.e. lost frames; `got < expected` a duplicate or replay).
    #[error("sequence gap: expected frame {expected}, got {got}")]
    SequenceGap {
        /// The sequence number the decoder expected.
        expected: u64,
        /// The sequence number received.
        got: u64,
    },
    /// A message (or a fragment's declared total) is longer than `CodecLimits::max_message_size`.
    #[error("message of {len} bytes exceeds the {max}-byte message cap")]
    MessageTooLarge {
        /// The message length in bytes (declared total for fragments).
        len: u64,
        /// The cap in bytes.
        max: usize,
    },
    /// Holding this fragment would push the decoder's partial messages past
    /// `CodecLimits::max_reassembly_bytes`; the partial message was discarded.
    #[error("reassembly of message {msg_id} would hold {needed} bytes, over the {max}-byte cap")]
    ReassemblyCapExceeded {
        /// The message whose partial state was dropped.
        msg_id: u64,
        /// Bytes the decoder would have held (payload plus per-run bookkeeping).
        needed: usize,
        /// The cap in bytes.
        max: usize,
    },
    /// Ordered mode: a fragment would start one more partial message than
    /// `CodecLimits::max_partial_messages`; that message is refused (RESET).
    #[error("message {msg_id} would be partial message {max} + 1, over the {max}-message cap")]
    TooManyPartialMessages {
        /// The message refused.
        msg_id: u64,
        /// The cap, in partial messages.
        max: usize,
    },
    /// Ordered mode: a fragment starts after the bytes received so far for its message.
    #[error("fragment of message {msg_id} at byte {got}, expected byte {expected}")]
    FragmentOutOfOrder {
        /// The message id.
        msg_id: u64,
        /// The byte offset expected next.
        expected: u64,
        /// The byte offset received.
        got: u64,
    },
    /// A fragment overlaps bytes already received for its message.
    #[error("fragment of message {msg_id} at byte {offset} overlaps bytes already received")]
    DuplicateFragment {
        /// The message id.
        msg_id: u64,
        /// The fragment's byte offset.
        offset: u64,
    },
    /// A fragment ends past its message's declared total length.
    #[error("fragment of message {msg_id} ends at byte {end}, past the {total}-byte total")]
    FragmentPastEnd {
        /// The message id.
        msg_id: u64,
        /// Offset of the fragment's last byte + 1.
        end: u64,
        /// The declared total length in bytes.
        total: u64,
    },
    /// Fragments of one message declare different total lengths.
    #[error("message {msg_id} declared {expected} bytes, then {got} bytes")]
    LengthMismatch {
        /// The message id.
        msg_id: u64,
        /// Total length (bytes) declared by the first fragment seen.
        expected: u64,
        /// Total length (bytes) declared by this fragment.
        got: u64,
    },
    /// A fragment carries no payload (encoders never send one; it could not be deduplicated).
    #[error("fragment of message {msg_id} is empty")]
    EmptyFragment {
        /// The message id.
        msg_id: u64,
    },
    /// A BATCH frame carries no entry (encoders batch two or more messages).
    #[error("batch frame has no message")]
    EmptyBatch,
    /// A message flagged TEXT is not valid UTF-8 (JS strings always arrive as UTF-8).
    #[error("text message is not valid UTF-8")]
    InvalidUtf8,
    /// The caller's max frame size is below [`MIN_FRAME_SIZE`](super::MIN_FRAME_SIZE).
    #[error("max frame size {size} bytes is below the {min}-byte minimum")]
    FrameSizeTooSmall {
        /// The requested max frame size in bytes.
        size: usize,
        /// The minimum in bytes.
        min: usize,
    },
}
