//! The frame codec shared by the native and wasm backends: every data-channel message is one
//! frame (byte layout in docs/frame.md).
//!
//! Pure, deterministic code: no I/O, no async, no clocks, no target-specific code, no `unsafe`,
//! and no panics on any input (all untrusted bytes go through bounds-checked readers, and
//! integer arithmetic saturates or wraps on purpose, since overflow panics in debug builds; the
//! clippy lints below keep it so: `cargo clippy` fails on any indexing, unwrap, panic or
//! unchecked arithmetic here). The transport driver uses:
//!
//! - [`FrameEncoder`] (one per channel): [`encode_message`](FrameEncoder::encode_message) →
//!   [`Fragments`], [`encode_control`](FrameEncoder::encode_control) → one frame;
//! - [`OutboundQueue`]: round-robin interleaving of several messages' frames;
//! - [`FrameDecoder`] (one per channel): [`decode`](FrameDecoder::decode) → [`Delivery`];
//! - [`Frame`]: the stateless wire layer, for tools and test vectors.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
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

mod encoder;
mod error;
mod frame;
mod reassembler;
#[cfg(test)]
mod tests;
pub(crate) mod varint;

pub use encoder::{fits_one_frame, Fragments, FrameEncoder, OutboundQueue, Popped};
pub use error::CodecError;
pub use frame::{Batch, Body, Control, Fragment, Frame, VERSION};
pub use reassembler::{
    Delivery, FrameDecoder, Payload, REASSEMBLY_PARTIAL_OVERHEAD, REASSEMBLY_RUN_OVERHEAD,
};

/// Smallest `max_frame_size` the encoder accepts, in bytes: room for the largest fragment
/// header (42 bytes) plus 22 payload bytes, so every fragment makes progress.
pub const MIN_FRAME_SIZE: usize = 64;

/// Recommended max frame size in bytes: 16 KiB, the message size all browsers interoperate
/// with. Never pass more than the remote's `a=max-message-size` (RFC 8831 §6.6).
pub const DEFAULT_MAX_FRAME_SIZE: usize = 16 * 1024;

/// Max frame size in bytes to assume when the remote SDP has no `a=max-message-size`
/// (RFC 8841 §6.1: 64 KiB). Note webrtc-rs receivers break at ≥ 64 KiB, so prefer
/// [`DEFAULT_MAX_FRAME_SIZE`] unless the remote is known to handle more.
pub const SDP_DEFAULT_MAX_MESSAGE_SIZE: usize = 64 * 1024;

/// Default [`CodecLimits::max_message_size`]: 64 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;

/// Reassembly room beyond one maximal message, in bytes: 1 MiB for the other messages
/// interleaved with it and the per-message bookkeeping ([`REASSEMBLY_PARTIAL_OVERHEAD`],
/// [`REASSEMBLY_RUN_OVERHEAD`]).
pub const REASSEMBLY_HEADROOM: usize = 1024 * 1024;

/// Default [`CodecLimits::max_reassembly_bytes`]: 65 MiB = [`DEFAULT_MAX_MESSAGE_SIZE`] +
/// [`REASSEMBLY_HEADROOM`], so a maximal message and smaller ones interleaved with it fit.
pub const DEFAULT_MAX_REASSEMBLY_BYTES: usize =
    default_max_reassembly_bytes(DEFAULT_MAX_MESSAGE_SIZE);

/// The reassembly cap that goes with a `max_message_size` (bytes): that size plus
/// [`REASSEMBLY_HEADROOM`] (saturating). The transport uses it unless told otherwise.
pub const fn default_max_reassembly_bytes(max_message_size: usize) -> usize {
    max_message_size.saturating_add(REASSEMBLY_HEADROOM)
}

/// Default [`CodecLimits::max_partial_messages`]: 1024, the default number of messages a
/// sender's link keeps in its interleaving rotation (`send_queue_messages`), so a sender with
/// default settings never has more fragmented messages in flight on one channel.
pub const DEFAULT_MAX_PARTIAL_MESSAGES: usize = 1024;

/// Size limits and checking mode shared by one channel's encoder and decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CodecLimits {
    /// Largest application message in bytes, sent or accepted (default 64 MiB). Longer
    /// messages give [`CodecError::MessageTooLarge`].
    pub max_message_size: usize,
    /// Most bytes one decoder (= one peer channel) holds in partial messages, counted by
    /// [`FrameDecoder::buffered_bytes`] as allocated payload plus bookkeeping (default
    /// [`DEFAULT_MAX_REASSEMBLY_BYTES`]). Past it the decoder returns
    /// [`CodecError::ReassemblyCapExceeded`] and drops that partial message. Keep it above
    /// `max_message_size` + [`REASSEMBLY_PARTIAL_OVERHEAD`] + [`REASSEMBLY_RUN_OVERHEAD`]
    /// (see [`default_max_reassembly_bytes`]).
    pub max_reassembly_bytes: usize,
    /// Most fragmented messages one decoder reassembles at once (default
    /// [`DEFAULT_MAX_PARTIAL_MESSAGES`]). A fragment starting one more gives
    /// [`CodecError::TooManyPartialMessages`] (ordered mode) or evicts the oldest partial
    /// message (unordered mode). Bounds the per-message bookkeeping and the RESETs one
    /// sequence gap can cause.
    pub max_partial_messages: usize,
    /// The channel is ordered and reliable: check sequence numbers strictly and require each
    /// message's fragments in offset order (default true). False for unordered channels: no
    /// sequence check, fragments reassembled in any order.
    pub ordered: bool,
}

impl Default for CodecLimits {
    fn default() -> Self {
        CodecLimits {
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_reassembly_bytes: DEFAULT_MAX_REASSEMBLY_BYTES,
            max_partial_messages: DEFAULT_MAX_PARTIAL_MESSAGES,
            ordered: true,
        }
    }
}
