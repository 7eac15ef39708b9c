#!/usr/bin/env python3
"""Writes valid.txt and invalid.txt from an independent Python model of docs/frame.md.

The Rust codec is checked against these files (tests/codec_vectors.rs natively, tests/wasm_codec.rs
in the browser), so two implementations agree on every byte. Run: python3 gen_vectors.py
Line format (parsed by tests/common/vectors.rs): `tag key=value... flag...`; hex may contain '.'
between header fields for readability; `#` lines describe the vector below them.
"""
import os

KINDS = dict(data=0, ping=1, pong=2, fin=3, fin_ack=4, reset=5, batch=6, refused=7)
TEXT, FRAGMENT, MIN_FRAME = 0x08, 0x10, 64
# Reassembly charges (docs/frame.md, Limits): per partial message, per run, on top of the runs'
# allocated capacity.
PARTIAL_OVERHEAD, RUN_OVERHEAD = 512, 96


def varint(v):
    out = bytearray()
    while v >= 0x80:
        out.append(v & 0x7F | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def frame(seq, kind="data", text=False, frag=None, payload=b"", nonce=None):
    """Hex of one frame, '.' between fields."""
    flags = KINDS[kind] | (TEXT if text else 0) | (FRAGMENT if frag else 0)
    parts = [bytes([1]), bytes([flags]), varint(seq)]
    parts += [varint(nonce)] if nonce is not None else []
    parts += [varint(x) for x in frag] if frag else []
    parts += [payload] if payload else []
    return ".".join(p.hex() for p in parts)


def split(data, max_frame, text=False, seq=0, msg_id=0):
    """The fragmentation rule: one frame if len + 12 <= max_frame, else chunks of max_frame - 42."""
    if len(data) + 12 <= max_frame:
        return [frame(seq, text=text, payload=data)]
    chunk = max_frame - 42
    return [frame(seq + i, text=text, frag=(msg_id, off, len(data)), payload=data[off:off + chunk])
            for i, off in enumerate(range(0, len(data), chunk))]


def entries(msgs):
    """BATCH entries: varint(len << 1 | text) then the bytes, per message."""
    return b"".join(varint(len(d) << 1 | int(t)) + d for d, t in msgs)


def coalesce(msgs, max_frame):
    """The queue's rule for whole messages: from the head, as many as fit one frame
    (12-byte worst-case header + entries); two or more make a BATCH, one goes alone."""
    frames, seq, i = [], 0, 0
    while i < len(msgs):
        size, j = 12, i
        while j < len(msgs) and size + len(entries([msgs[j]])) <= max_frame:
            size += len(entries([msgs[j]]))
            j += 1
        if j - i >= 2:
            frames.append(frame(seq, "batch", payload=entries(msgs[i:j])))
            i = j
        else:
            data, text = msgs[i]
            frames.append(frame(seq, text=text, payload=data))
            i += 1
        seq += 1
    return frames


def iota(n):
    return bytes(i % 256 for i in range(n))


valid, invalid = [], []


def v(desc, line):
    valid.append(f"# {desc}\n{line}")


def bad(desc, line):
    invalid.append(f"# {desc}\n{line}")


def frame_vec(name, desc, seq, kind="data", text=False, frag=None, payload=b"", nonce=None):
    fields = [f"name={name}", f"seq={seq}", f"kind={kind}"]
    fields += ["text"] if text else []
    fields += [f"frag={frag[0]}/{frag[1]}/{frag[2]}"] if frag else []
    fields += [f"payload={payload.hex()}"] if payload else []
    fields += [f"nonce={nonce}"] if nonce is not None else []
    v(desc, "frame " + " ".join(fields) + " hex=" + frame(seq, kind, text, frag, payload, nonce))


# --- valid single frames -------------------------------------------------------------------------
frame_vec("data_empty", "empty binary message, first frame of the channel", 0)
frame_vec("data_small", "binary message 'hello'", 0, payload=b"hello")
frame_vec("data_binary", "binary payload with 0x00 and 0xff bytes, seq 1", 1, payload=bytes([0, 0xFF, 0x80, 0x7F]))
frame_vec("text_small", "text message 'héllo' (UTF-8): TEXT flag 0x08", 0, text=True, payload="héllo".encode())
frame_vec("text_empty", "empty text message", 3, text=True)
frame_vec("seq_127", "seq 127: largest 1-byte varint", 127, payload=b"a")
frame_vec("seq_128", "seq 128: smallest 2-byte varint (80 01)", 128, payload=b"a")
frame_vec("seq_300", "seq 300: varint ac 02", 300, payload=b"a")
frame_vec("seq_2pow32", "seq 2^32: 5-byte varint", 2**32, payload=b"a")
frame_vec("seq_max", "seq u64::MAX: 10-byte varint ending in 01", 2**64 - 1, payload=b"a")
frame_vec("frag_first", "first fragment (offset 0) of a 50-byte message id 0, 22 payload bytes", 5,
          frag=(0, 0, 50), payload=iota(22))
frame_vec("frag_middle", "middle fragment (offset 22)", 6, frag=(0, 22, 50), payload=iota(44)[22:])
frame_vec("frag_last", "last fragment (offset 44, 6 bytes)", 7, frag=(0, 44, 50), payload=iota(50)[44:])
frame_vec("frag_text", "first fragment of a text message: TEXT | FRAGMENT = 0x18", 0, text=True,
          frag=(1, 0, 40), payload=b"x" * 22)
frame_vec("frag_large_varints", "fragment with large varints: msg id 2^35, offset 2^21, total 64 MiB", 2**14,
          frag=(2**35, 2**21, 64 << 20), payload=b"z")
frame_vec("ping_0", "PING (kind 1) with nonce 0", 0, kind="ping", nonce=0)
frame_vec("ping_large", "PING with nonce 2^63 (10-byte varint)", 9, kind="ping", nonce=2**63)
frame_vec("pong_42", "PONG (kind 2) echoing nonce 42", 1, kind="pong", nonce=42)
frame_vec("fin", "FIN (kind 3): no more messages", 0, kind="fin")
frame_vec("fin_ack", "FIN_ACK (kind 4)", 0, kind="fin_ack")
frame_vec("reset", "RESET (kind 5) of message id 0", 0, kind="reset", nonce=0)
frame_vec("reset_300", "RESET of message id 300 (varint ac 02)", 4, kind="reset", nonce=300)
frame_vec("fin_seq_200", "FIN as frame 200 (seq 2-byte varint c8 01)", 200, kind="fin")
frame_vec("refused_1", "REFUSED (kind 7): the receiver dropped 1 whole message", 0, kind="refused", nonce=1)
frame_vec("refused_300", "REFUSED of 300 whole messages (varint ac 02), seq 9", 9, kind="refused", nonce=300)
frame_vec("batch_two", "BATCH (kind 6) of 'hi' (binary) and 'yo' (text): entries 04 'hi', 05 'yo'", 0,
          kind="batch", payload=entries([(b"hi", False), (b"yo", True)]))
frame_vec("batch_empty_entry", "BATCH whose first message is empty (entry 00) and second 1 byte", 2,
          kind="batch", payload=entries([(b"", False), (b"a", False)]))
frame_vec("batch_long_entry", "BATCH entry of 200 bytes: header varint 400 = 90 03", 1,
          kind="batch", payload=entries([(iota(200), False), (b"z", False)]))

# --- valid whole messages through FrameEncoder::encode_message (fresh encoder) -------------------
def message_vec(name, desc, data, max_frame, text=False):
    flags = " text" if text else ""
    frames = ",".join(split(data, max_frame, text))
    v(desc, f"message name={name} max_frame={max_frame}{flags} payload={data.hex()} frames={frames}")


message_vec("msg_empty", "empty message: one frame even at the minimum frame size", b"", MIN_FRAME)
message_vec("msg_fits", "52 bytes at max_frame 64: 52 + 12 <= 64, one 55-byte frame", iota(52), MIN_FRAME)
message_vec("msg_split3", "53 bytes at max_frame 64: fragments of 64 - 42 = 22 bytes: 22, 22, 9", iota(53), MIN_FRAME)
message_vec("msg_exact_chunks", "66 bytes at max_frame 64: exactly three 22-byte fragments", iota(66), MIN_FRAME)
message_vec("msg_text_utf8_split", "text '€' x 20 (60 bytes): fragment boundaries cut characters; "
            "reassembly restores valid UTF-8", "€".encode() * 20, MIN_FRAME, text=True)
message_vec("msg_200_at_100", "200 bytes at max_frame 100: 58-byte fragments, 4 frames", iota(200), 100)
message_vec("msg_default_frame", "100 bytes fit one 16 KiB frame", iota(100), 16 * 1024)

# --- whole messages queued together through OutboundQueue: coalesced into BATCH frames ----------
def batch_vec(name, desc, msgs, max_frame):
    listed = ",".join((d.hex() or "-") + (":t" if t else "") for d, t in msgs)
    frames = ",".join(coalesce(msgs, max_frame))
    v(desc, f"batch name={name} max_frame={max_frame} messages={listed} frames={frames}")


batch_vec("queue_three_small", "three small messages queued at once: one BATCH frame",
          [(b"a", False), (b"bc", True), (b"", False)], 1024)
batch_vec("queue_lone", "a single queued message stays an ordinary DATA frame", [(b"solo", False)], 1024)
batch_vec("queue_split_at_frame_size", "ten 10-byte messages at max_frame 64: 12 + 4 x 11 = 56 fits, "
          "a 5th would make 67: BATCH of 4, BATCH of 4, BATCH of 2",
          [(iota(10), False)] * 10, MIN_FRAME)
batch_vec("queue_big_then_small", "a 52-byte message fills a 64-byte frame alone; the next two share one",
          [(iota(52), False), (b"x", False), (b"y", True)], MIN_FRAME)

# --- invalid frames / frame sequences: FrameDecoder errors ---------------------------------------
# `replies` is what the decoder owes the sender afterwards (docs/frame.md, "Telling the sender"):
# a frame it cannot parse or a whole message it drops -> REFUSED count; a fragmented message it
# drops -> RESET msg_id.
REFUSED_1 = "refused:1"


def err(name, desc, expect, frames, opts="", replies="-"):
    opts = f" {opts}" if opts else ""
    bad(desc, f"error name={name} expect={expect}{opts} replies={replies} frames={','.join(frames)}")


def decode_err(name, desc, frames, messages, errors, replies, opts=""):
    """A sequence whose good messages are still delivered while others are refused."""
    listed = ",".join(d.hex() + (":t" if t else "") for d, t in messages) or "-"
    opts = f" {opts}" if opts else ""
    bad(desc, f"decode_error name={name}{opts} messages={listed} errors={','.join(errors) or '-'} "
              f"replies={replies} frames={','.join(frames)}")


err("empty_frame", "zero-length frame", "Truncated", ["-"], replies=REFUSED_1)
err("version_only", "only the version byte", "Truncated", ["01"], replies=REFUSED_1)
err("seq_truncated", "seq varint with its continuation bit set at the end", "Truncated", ["01.00.80"],
    replies=REFUSED_1)
err("frag_header_truncated", "FRAGMENT flag but msg id/offset/total missing", "Truncated", ["01.10.00.00"],
    replies=REFUSED_1)
err("ping_no_nonce", "PING without its nonce varint", "Truncated", ["01.01.00"], replies=REFUSED_1)
err("version_2", "newer version 2: rejected, never guessed at", "UnsupportedVersion", ["02.00.00"],
    replies=REFUSED_1)
err("version_0", "version 0", "UnsupportedVersion", ["00"], replies=REFUSED_1)
err("reserved_flag", "reserved flag bit 0x20 set", "UnknownFlags", ["01.20.00"], replies=REFUSED_1)
err("reserved_flag_40", "reserved flag bit 0x40 set", "UnknownFlags", ["01.40.00"], replies=REFUSED_1)
err("reserved_flag_80", "reserved flag bit 0x80 set on a REFUSED", "UnknownFlags", ["01.87.00.01"],
    replies=REFUSED_1)
err("batch_empty", "BATCH with no entry", "EmptyBatch", ["01.06.00"], replies=REFUSED_1)
err("batch_entry_past_end", "BATCH entry declaring 5 bytes with 1 left", "Truncated", ["01.06.00.0a.61"],
    replies=REFUSED_1)
err("batch_entry_header_truncated", "BATCH entry header varint cut by the end", "Truncated",
    ["01.06.00.02.61.80"], replies=REFUSED_1)
err("batch_text_flag", "TEXT flag on a BATCH (text is per entry)", "UnknownFlags", ["01.0e.00.02.61"],
    replies=REFUSED_1)
err("batch_fragment_flag", "FRAGMENT flag on a BATCH", "UnknownFlags", ["01.16.00.02.61"], replies=REFUSED_1)
err("batch_text_not_utf8", "BATCH whose only entry is text with byte ff: no good entry, so an error",
    "InvalidUtf8", ["01.06.00.03.ff"], replies=REFUSED_1)
err("batch_entry_over_cap", "BATCH entry of 5 bytes, cap 4", "MessageTooLarge", ["01.06.00.0a.68656c6c6f"],
    "max_message=4", replies=REFUSED_1)
err("batch_all_bad", "BATCH of two entries over the 4-byte cap: both refused", "MessageTooLarge",
    ["01.06.00.0a.68656c6c6f.0a.776f726c64"], "max_message=4", replies="refused:2")
err("batch_seq_gap", "BATCH frames are numbered like any frame: seq 1 first is a gap; both its "
    "messages are owed", "SequenceGap", ["01.06.01.02.61.02.62"], replies="refused:2")
err("text_on_control", "TEXT flag on a PING", "UnknownFlags", ["01.09.00.00"], replies=REFUSED_1)
err("fragment_on_refused", "FRAGMENT flag on a REFUSED", "UnknownFlags", ["01.17.00.01"], replies=REFUSED_1)
err("varint_11_bytes", "seq varint of 11 bytes", "VarintOverflow", ["01.00." + "ff" * 10 + "01"],
    replies=REFUSED_1)
err("varint_over_u64", "seq varint whose 10th byte is 02 (value 2^64)", "VarintOverflow",
    ["01.00." + "80" * 9 + "02"], replies=REFUSED_1)
err("varint_non_minimal", "seq 0 encoded as 80 00", "NonMinimalVarint", ["01.00.80.00"], replies=REFUSED_1)
err("ping_trailing", "PING with a byte after its nonce", "TrailingBytes", ["01.01.00.07.00"], replies=REFUSED_1)
err("fin_payload", "FIN with a payload", "TrailingBytes", ["01.03.00.ff"], replies=REFUSED_1)
err("reset_without_id", "RESET without its message id varint", "Truncated", ["01.05.00"], replies=REFUSED_1)
err("reset_trailing", "RESET with a byte after its message id", "TrailingBytes", ["01.05.00.01.00"],
    replies=REFUSED_1)
err("refused_without_count", "REFUSED without its count varint", "Truncated", ["01.07.00"], replies=REFUSED_1)
err("refused_trailing", "REFUSED with a byte after its count", "TrailingBytes", ["01.07.00.01.00"],
    replies=REFUSED_1)
err("seq_gap", "frame 0 then frame 2 on an ordered channel: frame 2's message is owed", "SequenceGap",
    [frame(0), frame(2)], replies=REFUSED_1)
err("seq_duplicate", "frame 0 twice on an ordered channel: a late duplicate is owed nothing", "SequenceGap",
    [frame(0), frame(0)])
err("seq_first_not_zero", "first frame with seq 1", "SequenceGap", [frame(1)], replies=REFUSED_1)
err("seq_gap_drops_partials", "a gap drops every partial message (RESET each) and the frame's own "
    "fragmented message", "SequenceGap",
    [frame(0, frag=(0, 0, 50), payload=iota(22)), frame(1, frag=(1, 0, 50), payload=iota(22)),
     frame(3, frag=(2, 0, 50), payload=iota(22))], replies="reset:0,reset:1,reset:2")
err("total_over_cap", "fragment declaring 101 bytes, cap 100", "MessageTooLarge",
    [frame(0, frag=(0, 0, 101), payload=b"a")], "max_message=100", replies="reset:0")
err("whole_over_cap", "unfragmented 5-byte message, cap 4", "MessageTooLarge", [frame(0, payload=b"hello")],
    "max_message=4", replies=REFUSED_1)
err("total_huge", "fragment declaring total u64::MAX: rejected before any allocation", "MessageTooLarge",
    [frame(0, frag=(7, 0, 2**64 - 1), payload=b"a")], replies="reset:7")
err("fragment_past_end", "22 bytes at offset 40 of a 50-byte message", "FragmentPastEnd",
    [frame(0, frag=(0, 40, 50), payload=iota(22))], "unordered", replies="reset:0")
err("fragment_total_zero", "fragment of a 0-byte message", "FragmentPastEnd",
    [frame(0, frag=(0, 0, 0), payload=b"a")], replies="reset:0")
err("offset_huge", "offset u64::MAX: end saturates, past the total", "FragmentPastEnd",
    [frame(0, frag=(0, 2**64 - 1, 50), payload=b"a")], "unordered", replies="reset:0")
err("total_changes", "second fragment declares another total", "LengthMismatch",
    [frame(0, frag=(0, 0, 50), payload=iota(22)), frame(1, frag=(0, 22, 60), payload=iota(22))],
    replies="reset:0")
err("offset_gap", "ordered: fragment at 30 after 22 bytes", "FragmentOutOfOrder",
    [frame(0, frag=(0, 0, 50), payload=iota(22)), frame(1, frag=(0, 30, 50), payload=iota(20))],
    replies="reset:0")
err("starts_mid_message", "ordered: a message whose first fragment is at offset 22", "FragmentOutOfOrder",
    [frame(0, frag=(0, 22, 50), payload=iota(22))], replies="reset:0")
err("duplicate_ordered", "ordered: offset 0 again (fresh seq)", "DuplicateFragment",
    [frame(0, frag=(0, 0, 50), payload=iota(22)), frame(1, frag=(0, 0, 50), payload=iota(22))],
    replies="reset:0")
err("duplicate_unordered", "unordered: the same fragment twice", "DuplicateFragment",
    [frame(0, frag=(0, 22, 50), payload=iota(22)), frame(0, frag=(0, 22, 50), payload=iota(22))], "unordered",
    replies="reset:0")
err("overlap_unordered", "unordered: [10, 32) overlaps [0, 22)", "DuplicateFragment",
    [frame(0, frag=(0, 0, 50), payload=iota(22)), frame(1, frag=(0, 10, 50), payload=iota(22))], "unordered",
    replies="reset:0")
one = 22 + RUN_OVERHEAD + PARTIAL_OVERHEAD  # a partial message holding one 22-byte fragment
err("reassembly_cap", f"cap {one + 10}: a first fragment holds 22 + {RUN_OVERHEAD} + {PARTIAL_OVERHEAD} "
    f"= {one}; appending 22 more grows the run's capacity to 44, {one + 22} in all",
    "ReassemblyCapExceeded",
    [frame(0, frag=(0, 0, 50), payload=iota(22)), frame(1, frag=(0, 22, 50), payload=iota(22))],
    f"max_reassembly={one + 10}", replies="reset:0")
err("reassembly_cap_many", f"cap {2 * one + 100}: three partial messages of 22 bytes each cost 3 x {one}",
    "ReassemblyCapExceeded", [frame(i, frag=(i, 0, 50), payload=iota(22)) for i in range(3)],
    f"max_reassembly={2 * one + 100}", replies="reset:2")
err("too_many_partials", "max_partials 2: a third message starting is refused", "TooManyPartialMessages",
    [frame(i, frag=(i, 0, 50), payload=iota(22)) for i in range(3)], "max_partials=2", replies="reset:2")
err("empty_fragment", "fragment with no payload", "EmptyFragment", [frame(0, frag=(0, 0, 50))],
    replies="reset:0")
err("text_not_utf8", "TEXT frame with byte ff", "InvalidUtf8", [frame(0, text=True, payload=b"\xff")],
    replies=REFUSED_1)
err("text_not_utf8_fragments", "fragmented text ending inside a 3-byte character", "InvalidUtf8",
    split("€".encode() * 19 + b"\xe2\x82", MIN_FRAME, text=True), replies="reset:0")

# --- sequences where good messages get through and dropped ones are owed to the sender ----------
decode_err("batch_one_bad_entry", "BATCH of 'a' and a text entry with byte ff: 'a' is delivered, "
           "the bad entry refused", ["01.06.00.02.61.03.ff"], [(b"a", False)], ["InvalidUtf8"], REFUSED_1)
decode_err("batch_over_cap_middle", "BATCH 'ok', 'hello', 'yo' (text) with cap 4: the 5-byte entry "
           "is refused, the others delivered in order",
           [frame(0, "batch", payload=entries([(b"ok", False), (b"hello", False), (b"yo", True)]))],
           [(b"ok", False), (b"yo", True)], ["MessageTooLarge"], REFUSED_1, "max_message=4")
decode_err("gap_then_recovery", "messages 0 and 1 partial, frame 2 lost, frame 3 a whole message: "
           "all three owed; message 0's last fragment is skipped, frame 5 delivered",
           [frame(0, frag=(0, 0, 50), payload=iota(22)), frame(1, frag=(1, 0, 50), payload=iota(22)),
            frame(3, payload=b"z"), frame(4, frag=(0, 22, 50), payload=iota(50)[22:]),
            frame(5, payload=b"after")],
           [(b"after", False)], ["SequenceGap"], "reset:0,reset:1,refused:1")
decode_err("unparsable_then_gap", "frame 1 cannot be parsed (reserved flag): owed as one message; "
           "frame 2 then arrives after a gap and is owed too", [frame(0, payload=b"a"), "01.20.01.62",
           frame(2, payload=b"c")], [(b"a", False)], ["UnknownFlags", "SequenceGap"], "refused:1,refused:1")
decode_err("unordered_evicts_oldest", "unordered, max_partials 1: message 1 starting evicts message 0 "
           "(RESET), whose last fragment is then skipped; message 1 completes",
           [frame(0, frag=(0, 0, 30), payload=iota(22)), frame(1, frag=(1, 0, 30), payload=iota(22)),
            frame(2, frag=(0, 22, 30), payload=iota(30)[22:]), frame(3, frag=(1, 22, 30), payload=iota(30)[22:])],
           [(iota(30), False)], [], "reset:0", "unordered max_partials=1")

# --- encoder errors -------------------------------------------------------------------------------
bad("max frame size 63 is below MIN_FRAME_SIZE", "encode_error name=frame_too_small expect=FrameSizeTooSmall max_frame=63 payload=61")
bad("11-byte message, cap 10", "encode_error name=message_over_cap expect=MessageTooLarge max_frame=64 max_message=10 payload=" + iota(11).hex())
bad("text flag on non-UTF-8 bytes", "encode_error name=text_not_utf8 expect=InvalidUtf8 max_frame=64 text payload=c328")

here = os.path.dirname(os.path.abspath(__file__))
header = "# Generated by gen_vectors.py from docs/frame.md; do not edit by hand.\n"
for name, items in (("valid.txt", valid), ("invalid.txt", invalid)):
    with open(os.path.join(here, name), "w") as f:
        f.write(header + "\n".join(items) + "\n")
print(len(valid), "valid,", len(invalid), "invalid")
