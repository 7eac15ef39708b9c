//! ARQ datagram encoding and parsing (docs/frame.md, "ARQ layer (v2)"). Stateless: a datagram
//! is parsed whole before anything acts on it, so a malformed one changes nothing.
//!
//! ```text
//! byte 0   type   = 0x02 (ARQ v1 datagram; codec v1 frames start with 0x01)
//! byte 1   flags  ACK 0x01 | STREAM 0x02 | PING 0x04; 0xf8 reserved, must be 0
//! varint   packet number
//! [ACK]    varint largest acked, varint ack delay (µs), varint extra range count,
//!          varint first range, {varint gap, varint range length} × count,
//!          varint max stream offset (receive-window limit)
//! [STREAM] varint stream offset, then ≥ 1 stream bytes to the end of the datagram
//! ```

use super::ArqError;
use crate::codec::varint::{put_varint, Reader};
use crate::codec::CodecError;
use bytes::{BufMut, BytesMut};

/// First byte of every ARQ datagram (ARQ v1); codec v1 frames start with 0x01.
pub const DATAGRAM_TYPE: u8 = 0x02;
/// Flag: an ACK block follows the packet number.
pub(crate) const FLAG_ACK: u8 = 0x01;
/// Flag: a STREAM segment ends the datagram.
pub(crate) const FLAG_STREAM: u8 = 0x02;
/// Flag: ack-eliciting with no data (probe when there is nothing to retransmit).
pub(crate) const FLAG_PING: u8 = 0x04;
const RESERVED_FLAGS: u8 = !(FLAG_ACK | FLAG_STREAM | FLAG_PING);

/// An ACK block (RFC 9000 §19.3 ranges, with LEB128 varints).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AckBlock {
    /// Acknowledged packet-number ranges, inclusive `(smallest, largest)`, newest first and
    /// strictly descending with at least one packet number between two ranges.
    pub ranges: Vec<(u64, u64)>,
    /// Time between receiving the largest acknowledged packet and sending this ACK, µs.
    pub ack_delay_us: u64,
    /// The receive-window limit: the sender may send stream bytes below this offset.
    pub max_stream: u64,
}

impl AckBlock {
    /// The largest acknowledged packet number (0 when there is no range, which parse never
    /// yields).
    pub fn largest(&self) -> u64 {
        self.ranges.first().map_or(0, |r| r.1)
    }
}

/// One parsed datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram<'a> {
    /// Packet number (never reused by a sender).
    pub pn: u64,
    /// ACK block, if present.
    pub ack: Option<AckBlock>,
    /// PING flag.
    pub ping: bool,
    /// STREAM segment: offset and bytes (non-empty).
    pub stream: Option<(u64, &'a [u8])>,
}

impl Datagram<'_> {
    /// Ack-eliciting: carries STREAM or PING (an ACK-only datagram is not acknowledged).
    pub fn ack_eliciting(&self) -> bool {
        self.ping || self.stream.is_some()
    }
}

/// Bytes of the minimal LEB128 encoding of `v` (1..=10).
pub(crate) fn varint_len(v: u64) -> usize {
    let bits = 64u32.saturating_sub(v.leading_zeros()).max(1);
    bits.div_ceil(7) as usize
}

fn malformed(e: CodecError) -> ArqError {
    match e {
        CodecError::Truncated => ArqError::Malformed("truncated"),
        CodecError::NonMinimalVarint => ArqError::Malformed("non-minimal varint"),
        _ => ArqError::Malformed("varint overflows u64"),
    }
}

/// Parses one datagram. Errors: `Malformed` (wrong type byte, reserved flags, truncated or
/// overlong varints, ACK ranges below packet number 0, an empty or overflowing STREAM segment).
pub fn parse(buf: &[u8]) -> Result<Datagram<'_>, ArqError> {
    let mut r = Reader(buf);
    let ty = r
        .byte()
        .map_err(|_| ArqError::Malformed("empty datagram"))?;
    if ty != DATAGRAM_TYPE {
        return Err(ArqError::Malformed("not an ARQ v1 datagram (type byte)"));
    }
    let flags = r.byte().map_err(malformed)?;
    if flags & RESERVED_FLAGS != 0 {
        return Err(ArqError::Malformed("reserved flag bits set"));
    }
    let pn = r.varint().map_err(malformed)?;
    let ack = if flags & FLAG_ACK != 0 {
        Some(parse_ack(&mut r)?)
    } else {
        None
    };
    let stream = if flags & FLAG_STREAM != 0 {
        let offset = r.varint().map_err(malformed)?;
        let data = r.rest();
        if data.is_empty() {
            return Err(ArqError::Malformed("empty stream segment"));
        }
        let len = u64::try_from(data.len()).map_err(|_| ArqError::Malformed("segment length"))?;
        if offset.checked_add(len).is_none() {
            return Err(ArqError::Malformed("stream segment past 2^64"));
        }
        Some((offset, data))
    } else {
        if !r.rest().is_empty() {
            return Err(ArqError::Malformed("trailing bytes"));
        }
        None
    };
    Ok(Datagram {
        pn,
        ack,
        ping: flags & FLAG_PING != 0,
        stream,
    })
}

fn parse_ack(r: &mut Reader<'_>) -> Result<AckBlock, ArqError> {
    let largest = r.varint().map_err(malformed)?;
    let ack_delay_us = r.varint().map_err(malformed)?;
    let count = r.varint().map_err(malformed)?;
    let first = r.varint().map_err(malformed)?;
    let mut smallest = largest
        .checked_sub(first)
        .ok_or(ArqError::Malformed("ACK range below packet 0"))?;
    let mut ranges = vec![(smallest, largest)];
    // Each range takes ≥ 2 bytes, so the loop ends on `Truncated` long before a huge count.
    for _ in 0..count {
        let gap = r.varint().map_err(malformed)?;
        let len = r.varint().map_err(malformed)?;
        let hi = smallest
            .checked_sub(gap)
            .and_then(|v| v.checked_sub(2))
            .ok_or(ArqError::Malformed("ACK gap below packet 0"))?;
        let lo = hi
            .checked_sub(len)
            .ok_or(ArqError::Malformed("ACK range below packet 0"))?;
        ranges.push((lo, hi));
        smallest = lo;
    }
    let max_stream = r.varint().map_err(malformed)?;
    Ok(AckBlock {
        ranges,
        ack_delay_us,
        max_stream,
    })
}

/// Writes type, flags and packet number.
pub(crate) fn put_header(out: &mut BytesMut, flags: u8, pn: u64) {
    out.put_u8(DATAGRAM_TYPE);
    out.put_u8(flags);
    put_varint(out, pn);
}

/// Encoded size of an ACK block.
pub(crate) fn ack_len(ack: &AckBlock) -> usize {
    let mut n = 0usize;
    let mut prev_lo = None;
    for &(lo, hi) in &ack.ranges {
        n = n.saturating_add(match prev_lo {
            None => varint_len(hi)
                .saturating_add(varint_len(ack.ack_delay_us))
                .saturating_add(varint_len(ack.ranges.len().saturating_sub(1) as u64))
                .saturating_add(varint_len(hi.saturating_sub(lo))),
            Some(p) => varint_len(gap(p, hi)).saturating_add(varint_len(hi.saturating_sub(lo))),
        });
        prev_lo = Some(lo);
    }
    n.saturating_add(varint_len(ack.max_stream))
}

fn gap(prev_lo: u64, hi: u64) -> u64 {
    prev_lo.saturating_sub(hi).saturating_sub(2)
}

/// Writes an ACK block (ranges as documented on [`AckBlock`]; at least one).
pub(crate) fn put_ack(out: &mut BytesMut, ack: &AckBlock) {
    let mut prev_lo = None;
    for &(lo, hi) in &ack.ranges {
        match prev_lo {
            None => {
                put_varint(out, hi);
                put_varint(out, ack.ack_delay_us);
                put_varint(out, ack.ranges.len().saturating_sub(1) as u64);
            }
            Some(p) => put_varint(out, gap(p, hi)),
        }
        put_varint(out, hi.saturating_sub(lo));
        prev_lo = Some(lo);
    }
    put_varint(out, ack.max_stream);
}

/// Encodes a whole datagram (for tests, vectors and tools; the connection builds datagrams
/// in place with the same functions).
pub fn encode(d: &Datagram<'_>) -> BytesMut {
    let mut flags = 0u8;
    if d.ack.is_some() {
        flags |= FLAG_ACK;
    }
    if d.stream.is_some() {
        flags |= FLAG_STREAM;
    }
    if d.ping {
        flags |= FLAG_PING;
    }
    let mut out = BytesMut::new();
    put_header(&mut out, flags, d.pn);
    if let Some(ack) = &d.ack {
        put_ack(&mut out, ack);
    }
    if let Some((offset, data)) = d.stream {
        put_varint(&mut out, offset);
        out.put_slice(data);
    }
    out
}
