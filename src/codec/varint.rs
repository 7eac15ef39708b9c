//! LEB128 varints (unsigned, little-endian groups of 7 bits, high bit = "more"), as used by
//! protobuf and QUIC-less wire formats alike. A u64 takes 1..=10 bytes.

use super::CodecError;
use bytes::{BufMut, BytesMut};

/// Longest varint of a u64, in bytes (ceil(64 / 7)).
pub(crate) const MAX_VARINT_LEN: usize = 10;

/// Appends the minimal LEB128 encoding of `v` to `out`.
pub(crate) fn put_varint(out: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        out.put_u8(v as u8 | 0x80); // low 7 bits, truncation intended
        v >>= 7;
    }
    out.put_u8(v as u8);
}

/// A cursor over untrusted bytes: every read is bounds-checked and fails with
/// [`CodecError::Truncated`] instead of panicking.
pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl<'a> Reader<'a> {
    pub(crate) fn byte(&mut self) -> Result<u8, CodecError> {
        let (&b, rest) = self.0.split_first().ok_or(CodecError::Truncated)?;
        self.0 = rest;
        Ok(b)
    }

    /// Reads a minimal LEB128 u64. Rejecting overlong forms keeps one encoding per value, so
    /// `encode(parse(frame)) == frame` holds for every accepted frame (the fuzz target checks it).
    pub(crate) fn varint(&mut self) -> Result<u64, CodecError> {
        let mut value = 0u64;
        for i in 0..MAX_VARINT_LEN {
            let b = self.byte()?;
            // The 10th byte holds only bit 63: anything above 1 (incl. a "more" bit) overflows.
            if i == MAX_VARINT_LEN - 1 && b > 1 {
                return Err(CodecError::VarintOverflow);
            }
            // i < 10, so the shift is at most 63: nothing wraps.
            value |= u64::from(b & 0x7f).wrapping_shl(7u32.saturating_mul(i as u32));
            if b & 0x80 == 0 {
                return if b == 0 && i > 0 {
                    Err(CodecError::NonMinimalVarint)
                } else {
                    Ok(value)
                };
            }
        }
        Err(CodecError::VarintOverflow) // not reached: the 10th byte always returns above
    }

    /// The unread bytes; used for payloads, which run to the end of the frame.
    pub(crate) fn rest(self) -> &'a [u8] {
        self.0
    }
}
