//! Loader and checker for the hex test vectors in tests/vectors/, shared by the native test
//! (tests/codec_vectors.rs), the browser test (tests/wasm_codec.rs) and the fuzz smoke test.
//! Only std + bytes + hex, so it compiles for wasm32 without serde.
//!
//! Format: one vector per line, `tag key=value... flag...`; `#` lines are descriptions; hex may
//! hold '.' between fields; `frames=` is a comma-separated list where `-` is an empty frame;
//! `replies=` lists the control frames a decoder owes the sender (`reset:ID`, `refused:N`).
#![allow(dead_code)]

use bytes::Bytes;
use miaou_transport::codec::{
    Batch, Body, CodecError, CodecLimits, Control, Delivery, Fragment, Frame, FrameDecoder,
    FrameEncoder, OutboundQueue,
};

/// tests/vectors/valid.txt: frames and messages that must encode to exactly these bytes.
pub const VALID: &str = include_str!("../vectors/valid.txt");
/// tests/vectors/invalid.txt: inputs that must fail with the named `CodecError` variant.
pub const INVALID: &str = include_str!("../vectors/invalid.txt");

/// One parsed vector line.
pub struct Vector<'a> {
    pub tag: &'a str,
    pub line: usize,
    fields: Vec<(&'a str, &'a str)>,
}

impl<'a> Vector<'a> {
    pub fn name(&self) -> &'a str {
        self.get("name").unwrap_or("?")
    }
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.fields.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }
    pub fn has(&self, flag: &str) -> bool {
        self.get(flag).is_some()
    }
    pub fn num(&self, key: &str) -> Option<u64> {
        self.get(key).map(|v| {
            v.parse()
                .unwrap_or_else(|e| panic!("line {}: {key}={v}: {e}", self.line))
        })
    }
    pub fn bytes(&self, key: &str) -> Vec<u8> {
        self.get(key).map(unhex).unwrap_or_default()
    }
    pub fn frames(&self) -> Vec<Vec<u8>> {
        self.get("frames")
            .unwrap_or("")
            .split(',')
            .map(unhex)
            .collect()
    }
    fn limits(&self) -> CodecLimits {
        let d = CodecLimits::default();
        CodecLimits {
            max_message_size: self
                .num("max_message")
                .map_or(d.max_message_size, |n| n as usize),
            max_reassembly_bytes: self
                .num("max_reassembly")
                .map_or(d.max_reassembly_bytes, |n| n as usize),
            max_partial_messages: self
                .num("max_partials")
                .map_or(d.max_partial_messages, |n| n as usize),
            ordered: !self.has("unordered"),
        }
    }
}

/// Hex with optional '.' separators; "-" is empty.
pub fn unhex(s: &str) -> Vec<u8> {
    let clean: String = s.chars().filter(|c| *c != '.' && *c != '-').collect();
    hex::decode(&clean).unwrap_or_else(|e| panic!("bad hex {s:?}: {e}"))
}

/// Parses every non-comment line of a vector file.
pub fn parse(src: &str) -> Vec<Vector<'_>> {
    let lines = src
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'));
    lines
        .map(|(i, l)| {
            let mut words = l.split_whitespace();
            let tag = words.next().unwrap_or("");
            let fields = words
                .map(|w| w.split_once('=').unwrap_or((w, "")))
                .collect();
            Vector {
                tag,
                line: i + 1,
                fields,
            }
        })
        .collect()
}

/// The variant name of an error, as written in the vectors ("UnknownFlags", ...).
pub fn error_name(e: &CodecError) -> String {
    let debug = format!("{e:?}");
    debug
        .split([' ', '{', '('])
        .next()
        .unwrap_or_default()
        .to_string()
}

/// The frame a `frame` vector describes.
fn described_frame<'a>(v: &Vector<'a>, payload: &'a [u8]) -> Frame<'a> {
    let nonce = v.num("nonce").unwrap_or(0);
    let body = match v.get("kind").unwrap_or("data") {
        "data" => {
            let fragment = v.get("frag").map(|f| {
                let n: Vec<u64> = f
                    .split('/')
                    .map(|x| x.parse().expect("frag=ID/OFFSET/TOTAL"))
                    .collect();
                Fragment {
                    msg_id: n[0],
                    offset: n[1],
                    total: n[2],
                }
            });
            Body::Data {
                text: v.has("text"),
                fragment,
                payload,
            }
        }
        "batch" => Body::Batch(
            Batch::parse(payload).unwrap_or_else(|e| panic!("line {}: batch: {e}", v.line)),
        ),
        "ping" => Body::Control(Control::Ping(nonce)),
        "pong" => Body::Control(Control::Pong(nonce)),
        "reset" => Body::Control(Control::Reset(nonce)),
        "refused" => Body::Control(Control::Refused(nonce)),
        "fin" => Body::Control(Control::Fin),
        "fin_ack" => Body::Control(Control::FinAck),
        k => panic!("line {}: unknown kind {k}", v.line),
    };
    Frame {
        seq: v.num("seq").unwrap_or(0),
        body,
    }
}

fn check_frame(v: &Vector, ctx: &str) {
    let (payload, hex) = (v.bytes("payload"), v.bytes("hex"));
    let frame = described_frame(v, &payload);
    assert_eq!(
        hex::encode(frame.encode()),
        hex::encode(&hex),
        "{ctx}: encode"
    );
    assert_eq!(Frame::parse(&hex), Ok(frame), "{ctx}: parse");
    // The same bytes through the stateful API when the vector is a channel's first frame.
    if frame.seq == 0 {
        let mut enc = FrameEncoder::new(CodecLimits::default());
        let expected = match frame.body {
            Body::Control(c) => Some((enc.encode_control(c), Delivery::Control(c))),
            Body::Data {
                text,
                fragment: None,
                ..
            } => {
                let data = Bytes::from(payload.clone());
                let mut frames = enc
                    .encode_message(data.clone(), text, 1024)
                    .unwrap_or_else(|e| panic!("{ctx}: encode_message: {e}"));
                assert_eq!(frames.len(), 1);
                Some((
                    frames.next().expect("one frame"),
                    Delivery::Message { data, text },
                ))
            }
            Body::Data { .. } | Body::Batch(_) => None,
        };
        if let Some((bytes, delivery)) = expected {
            assert_eq!(
                hex::encode(&bytes),
                hex::encode(&hex),
                "{ctx}: FrameEncoder"
            );
            let got = FrameDecoder::new(CodecLimits::default()).decode(&hex);
            assert_eq!(got, Ok(Some(delivery)), "{ctx}: FrameDecoder");
        }
    }
}

fn check_message(v: &Vector, ctx: &str) {
    let (data, text) = (Bytes::from(v.bytes("payload")), v.has("text"));
    let max_frame = v.num("max_frame").expect("max_frame") as usize;
    let expected: Vec<String> = v.frames().iter().map(hex::encode).collect();
    let mut enc = FrameEncoder::new(CodecLimits::default());
    let frames = enc
        .encode_message(data.clone(), text, max_frame)
        .unwrap_or_else(|e| panic!("{ctx}: encode_message: {e}"));
    assert_eq!(frames.len(), expected.len(), "{ctx}: Fragments::len");
    let frames: Vec<Bytes> = frames.collect();
    assert_eq!(
        frames.iter().map(hex::encode).collect::<Vec<_>>(),
        expected,
        "{ctx}: encode_message"
    );
    assert!(
        frames.iter().all(|f| f.len() <= max_frame),
        "{ctx}: frame over max_frame"
    );
    // The queue path must cut the message identically.
    let (mut enc, mut q) = (
        FrameEncoder::new(CodecLimits::default()),
        OutboundQueue::new(),
    );
    q.push(&mut enc, data.clone(), text, max_frame)
        .expect("push");
    let queued: Vec<Bytes> = std::iter::from_fn(|| q.pop_frame(&mut enc)).collect();
    assert_eq!(queued, frames, "{ctx}: OutboundQueue");
    // Decode in order (ordered) and in reverse (unordered): one message at the end.
    let want = Delivery::Message { data, text };
    for (ordered, order) in [
        (true, frames.clone()),
        (false, frames.iter().rev().cloned().collect()),
    ] {
        let mut dec = FrameDecoder::new(CodecLimits {
            ordered,
            ..CodecLimits::default()
        });
        let got: Vec<_> = order
            .iter()
            .map(|f| {
                dec.decode(f)
                    .unwrap_or_else(|e| panic!("{ctx}: decode: {e}"))
            })
            .collect();
        let (last, rest) = got.split_last().expect("at least one frame");
        assert!(rest.iter().all(Option::is_none), "{ctx}: early delivery");
        assert_eq!(
            last.as_ref(),
            Some(&want),
            "{ctx}: delivered (ordered = {ordered})"
        );
        assert_eq!(dec.buffered_bytes(), 0);
    }
}

/// `batch` vectors: `messages` (hex, `:t` for text, `-` empty) queued at once on a fresh
/// OutboundQueue pop as exactly `frames`, and decode back to the same messages in order.
fn check_batch(v: &Vector, ctx: &str) {
    let max_frame = v.num("max_frame").expect("max_frame") as usize;
    let messages: Vec<(Bytes, bool)> = v
        .get("messages")
        .expect("messages=")
        .split(',')
        .map(|m| {
            let (hex, text) = m.strip_suffix(":t").map_or((m, false), |h| (h, true));
            (Bytes::from(unhex(hex)), text)
        })
        .collect();
    let (mut enc, mut q) = (
        FrameEncoder::new(CodecLimits::default()),
        OutboundQueue::new(),
    );
    for (data, text) in &messages {
        q.push(&mut enc, data.clone(), *text, max_frame)
            .unwrap_or_else(|e| panic!("{ctx}: push: {e}"));
    }
    let frames: Vec<Bytes> = std::iter::from_fn(|| q.pop_frame(&mut enc)).collect();
    let expected: Vec<String> = v.frames().iter().map(hex::encode).collect();
    assert_eq!(
        frames.iter().map(hex::encode).collect::<Vec<_>>(),
        expected,
        "{ctx}: OutboundQueue frames"
    );
    assert!(
        frames.iter().all(|f| f.len() <= max_frame),
        "{ctx}: frame over max_frame"
    );
    let mut dec = FrameDecoder::new(CodecLimits::default());
    let got: Vec<(Bytes, bool)> = frames
        .iter()
        .flat_map(|f| {
            dec.decode(f)
                .unwrap_or_else(|e| panic!("{ctx}: decode: {e}"))
                .map(Delivery::into_messages)
                .unwrap_or_default()
        })
        .map(|m| (m.data, m.text))
        .collect();
    assert_eq!(got, messages, "{ctx}: decoded messages, in order");
}

/// A control frame owed to the sender, as written in `replies=`: `reset:ID` or `refused:N`.
fn reply_name(c: &Control) -> String {
    match c {
        Control::Reset(id) => format!("reset:{id}"),
        Control::Refused(n) => format!("refused:{n}"),
        other => format!("{other:?}"),
    }
}

/// The `replies=` list (`-` or absent = none).
fn expected_replies(v: &Vector) -> Vec<String> {
    match v.get("replies") {
        None | Some("-") => Vec::new(),
        Some(list) => list.split(',').map(str::to_string).collect(),
    }
}

fn check_error(v: &Vector, ctx: &str) {
    let expect = v.get("expect").expect("expect=");
    let mut dec = FrameDecoder::new(v.limits());
    let frames = v.frames();
    let (last, rest) = frames.split_last().expect("frames=");
    let mut replies = Vec::new();
    for f in rest {
        dec.decode(f)
            .unwrap_or_else(|e| panic!("{ctx}: frame {} failed early: {e}", hex::encode(f)));
        replies.extend(dec.take_replies().iter().map(reply_name));
    }
    let err = dec
        .decode(last)
        .err()
        .unwrap_or_else(|| panic!("{ctx}: last frame must fail"));
    assert_eq!(error_name(&err), expect, "{ctx}: {err}");
    assert!(dec.buffered_bytes() <= v.limits().max_reassembly_bytes);
    replies.extend(dec.take_replies().iter().map(reply_name));
    assert_eq!(
        replies,
        expected_replies(v),
        "{ctx}: replies owed to the sender"
    );
}

/// `decode_error` vectors: `frames` fed to a fresh decoder deliver exactly `messages` (hex,
/// `:t` for text, `-` for none), report exactly `errors` (variant names from `Err` and
/// `MixedBatch`, in order), and owe the sender exactly `replies`.
fn check_decode(v: &Vector, ctx: &str) {
    let mut dec = FrameDecoder::new(v.limits());
    let (mut messages, mut errors, mut replies) = (Vec::new(), Vec::new(), Vec::new());
    for f in v.frames() {
        match dec.decode(&f) {
            Ok(Some(Delivery::MixedBatch {
                messages: good,
                refused,
                error,
            })) => {
                assert!(refused >= 1 && !good.is_empty(), "{ctx}: MixedBatch shape");
                errors.push(error_name(&error));
                messages.extend(good);
            }
            Ok(Some(d)) => messages.extend(d.into_messages()),
            Ok(None) => {}
            Err(e) => errors.push(error_name(&e)),
        }
        replies.extend(dec.take_replies().iter().map(reply_name));
        assert!(dec.buffered_bytes() <= v.limits().max_reassembly_bytes);
    }
    let got: Vec<String> = messages
        .iter()
        .map(|m| hex::encode(&m.data) + if m.text { ":t" } else { "" })
        .collect();
    let want: Vec<String> = match v.get("messages") {
        None | Some("-") => Vec::new(),
        Some(list) => list.split(',').map(|m| m.replace('.', "")).collect(),
    };
    assert_eq!(got, want, "{ctx}: delivered messages");
    let want_errors: Vec<&str> = match v.get("errors") {
        None | Some("-") => Vec::new(),
        Some(list) => list.split(',').collect(),
    };
    assert_eq!(errors, want_errors, "{ctx}: errors");
    assert_eq!(
        replies,
        expected_replies(v),
        "{ctx}: replies owed to the sender"
    );
}

fn check_encode_error(v: &Vector, ctx: &str) {
    let mut enc = FrameEncoder::new(v.limits());
    let data = Bytes::from(v.bytes("payload"));
    let err = enc
        .encode_message(
            data,
            v.has("text"),
            v.num("max_frame").expect("max_frame") as usize,
        )
        .err()
        .unwrap_or_else(|| panic!("{ctx}: must fail"));
    assert_eq!(
        error_name(&err),
        v.get("expect").expect("expect="),
        "{ctx}: {err}"
    );
    assert_eq!(enc.next_seq(), 0, "{ctx}: a failed encode reserves no seq");
}

/// Checks every vector of `src`; panics naming the line and vector on the first failure.
/// Returns (valid vectors, invalid vectors) checked.
pub fn check(src: &str) -> (usize, usize) {
    let mut counts = (0, 0);
    for v in parse(src) {
        let ctx = format!("line {} name={}", v.line, v.name());
        match v.tag {
            "frame" => check_frame(&v, &ctx),
            "message" => check_message(&v, &ctx),
            "batch" => check_batch(&v, &ctx),
            "error" => check_error(&v, &ctx),
            "decode_error" => check_decode(&v, &ctx),
            "encode_error" => check_encode_error(&v, &ctx),
            t => panic!("{ctx}: unknown tag {t}"),
        }
        if v.tag.contains("error") {
            counts.1 += 1
        } else {
            counts.0 += 1
        }
    }
    counts
}

/// Every frame in `src` (all `hex=` and `frames=` values): a seed corpus for fuzzing.
pub fn corpus(src: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for v in parse(src) {
        out.extend(v.get("hex").map(unhex));
        if v.has("frames") {
            out.extend(v.frames());
        }
    }
    out
}

/// Deterministic mutations of `corpus` for the fuzz smoke tests (xorshift64, fixed seed):
/// `rounds` times, takes 1 to `max_pick` entries, flips a bit in, truncates or inserts a byte
/// into each non-empty one, and hands them to `each` with a selector below `selectors` (the
/// fuzz input's mode byte).
pub fn mutations(
    corpus: &[Vec<u8>],
    rounds: usize,
    max_pick: usize,
    selectors: usize,
    mut each: impl FnMut(u8, &[Vec<u8>]),
) {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut rand = move |n: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % n.max(1) as u64) as usize
    };
    for _ in 0..rounds {
        let mut picked: Vec<Vec<u8>> = (0..1 + rand(max_pick))
            .map(|_| corpus[rand(corpus.len())].clone())
            .collect();
        for f in picked.iter_mut().filter(|f| !f.is_empty()) {
            let at = rand(f.len());
            match rand(3) {
                0 => f[at] ^= 1 << rand(8),
                1 => f.truncate(at),
                _ => f.insert(at, rand(256) as u8),
            }
        }
        each(rand(selectors) as u8, &picked);
    }
}
