//! `native-demo join`: chat in a room. Every stdin line is broadcast as a text message; every
//! text message received is printed as one line `<peer-id> <text>`, control characters escaped
//! ([`escape_line`]) so that a message can neither span lines nor forge another peer's line.
//! On stdin EOF, everything already sent is delivered (lossless close) before the process
//! exits 0.

use anyhow::Context;
use clap::Args;
use miaou_transport::{ChannelKind, TransportConfig};
use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::Write;
use std::sync::Arc;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};

/// Longest stdin line sent, bytes, without its line ending: the transport's message limit
/// (`join` keeps the default [`miaou_transport::DEFAULT_MAX_MESSAGE_SIZE`], 64 MiB). A longer
/// line is skipped with a warning; at most this much of it is held in memory.
const MAX_LINE_BYTES: usize = miaou_transport::DEFAULT_MAX_MESSAGE_SIZE;

/// How much of an over-long line is read at a time while skipping it, bytes.
const SKIP_CHUNK_BYTES: u64 = 64 * 1024;

/// `text` as it is printed: `\` as `\\`, newline as `\n`, carriage return as `\r`, tab as
/// `\t`, and every other control character (C0, DEL, C1) and the Unicode line and paragraph
/// separators (U+2028, U+2029) as `\u{XX}` (Rust's escape syntax, lowercase hex). Everything
/// else is unchanged, so ordinary text prints as sent and the output decodes unambiguously.
pub fn escape_line(text: &str) -> Cow<'_, str> {
    let special = |c: char| c == '\\' || c.is_control() || matches!(c, '\u{2028}' | '\u{2029}');
    if !text.contains(special) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if special(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// One line of stdin.
#[derive(Debug, PartialEq, Eq)]
enum StdinLine {
    /// End of input.
    Eof,
    /// A line, in the buffer given, without its `\n` or `\r\n`.
    Line,
    /// A line longer than the limit, skipped; its length in bytes (line ending included).
    TooLong(usize),
}

/// Reads the next line into `buffer` (cleared first), holding at most `max` bytes of it plus
/// its line ending: a longer line is read to its end and dropped.
async fn read_line(
    input: &mut (impl AsyncBufRead + Unpin),
    max: usize,
    buffer: &mut Vec<u8>,
) -> std::io::Result<StdinLine> {
    buffer.clear();
    // `\r\n` is not part of the line.
    let limit = max.saturating_add(2);
    let n = (&mut *input)
        .take(limit as u64)
        .read_until(b'\n', buffer)
        .await?;
    if n == 0 {
        return Ok(StdinLine::Eof);
    }
    let complete = buffer.ends_with(b"\n");
    if !complete && n == limit {
        // Over the limit: drop the rest of the line a chunk at a time.
        let mut skipped = n;
        loop {
            buffer.clear();
            let m = (&mut *input)
                .take(SKIP_CHUNK_BYTES)
                .read_until(b'\n', buffer)
                .await?;
            skipped += m;
            if m == 0 || buffer.ends_with(b"\n") {
                buffer.clear();
                return Ok(StdinLine::TooLong(skipped));
            }
        }
    }
    if complete {
        buffer.pop();
        if buffer.ends_with(b"\r") {
            buffer.pop();
        }
    }
    if buffer.len() > max {
        let len = n;
        buffer.clear();
        return Ok(StdinLine::TooLong(len));
    }
    Ok(StdinLine::Line)
}

#[derive(Args)]
pub struct JoinArgs {
    #[command(flatten)]
    signaling: crate::lan::SignalArgs,
    /// Room name.
    #[arg(long)]
    room: String,
    /// Wait until this many peers have an open channel before reading stdin.
    #[arg(long, default_value_t = 0)]
    wait_peers: usize,
    /// Give up waiting for peers after this many seconds.
    #[arg(long, default_value_t = 60)]
    wait_timeout: u64,
    /// Use an unordered channel with maxRetransmits 0 instead of ordered + reliable.
    #[arg(long)]
    unreliable: bool,
    /// ICE: milliseconds without traffic before a peer counts as disconnected.
    #[arg(long, default_value_t = miaou_transport::DEFAULT_ICE_DISCONNECTED_TIMEOUT_MS)]
    ice_disconnected_ms: u64,
    /// ICE: milliseconds without traffic before the connection fails and reconnection starts.
    #[arg(long, default_value_t = miaou_transport::DEFAULT_ICE_FAILED_TIMEOUT_MS)]
    ice_failed_ms: u64,
    #[command(flatten)]
    ice: crate::room::IceArgs,
}

pub async fn run(args: JoinArgs) -> anyhow::Result<()> {
    let kind = if args.unreliable {
        ChannelKind::Unreliable
    } else {
        ChannelKind::Reliable
    };
    let mut lan = args.signaling.resolve(&args.room).await?;
    let connect_timeout_ms = lan.connect_timeout_ms();
    let mut joined = lan
        .connect(|url| {
            let builder = TransportConfig::builder(url, &args.room)
                .channel(kind)
                .ice_timeouts_ms(args.ice_disconnected_ms, args.ice_failed_ms)
                .connect_timeout_ms(connect_timeout_ms);
            let config = args.ice.apply(builder).and_then(|b| Ok(b.build()?));
            async move { crate::room::join(config?).await }
        })
        .await?;
    let transport = Arc::clone(&joined.transport);
    let receiver = Arc::clone(&transport);
    let printer = tokio::spawn(async move {
        let stdout = std::io::stdout();
        while let Some(message) = receiver.recv().await {
            match message.as_text().filter(|_| message.text) {
                Some(text) => {
                    let mut out = stdout.lock();
                    // The peer id comes from the bridge: escaped too, as it is just as foreign.
                    let from = escape_line(message.from.as_str());
                    let _ = writeln!(out, "{from} {}", escape_line(text));
                    let _ = out.flush();
                }
                None => {
                    tracing::info!(from = %message.from, bytes = message.data.len(), "binary message")
                }
            }
        }
    });

    if args.wait_peers > 0 {
        joined
            .wait_for_peers(args.wait_peers, args.wait_timeout)
            .await?;
    }

    // Lines are read as bytes: a line that is not UTF-8 is sent with U+FFFD replacements (and
    // a warning), and a line over the message limit is skipped (with a warning), rather than
    // ending the session and losing what is still queued.
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin());
    let mut buffer = Vec::new();
    let mut outcome = Ok(());
    loop {
        match read_line(&mut stdin, MAX_LINE_BYTES, &mut buffer).await {
            Ok(StdinLine::Eof) => break,
            Ok(StdinLine::Line) => {}
            Ok(StdinLine::TooLong(bytes)) => {
                tracing::warn!(
                    bytes,
                    max_bytes = MAX_LINE_BYTES,
                    "stdin line longer than the message limit; skipped"
                );
                continue;
            }
            Err(e) => {
                outcome = Err(anyhow::Error::new(e).context("reading stdin"));
                break;
            }
        }
        let line = String::from_utf8_lossy(&buffer);
        if let Cow::Owned(_) = line {
            tracing::warn!("stdin line is not valid UTF-8; invalid bytes replaced with U+FFFD");
        }
        // Each U+FFFD takes 3 bytes where the invalid byte took 1.
        if line.len() > MAX_LINE_BYTES {
            tracing::warn!(
                bytes = line.len(),
                max_bytes = MAX_LINE_BYTES,
                "stdin line longer than the message limit once made valid UTF-8; skipped"
            );
            continue;
        }
        if transport.peers().is_empty() {
            tracing::warn!("no connected peer; line not sent");
            continue;
        }
        if let Err(e) = transport.broadcast_text(&line).await {
            outcome = Err(anyhow::Error::new(e).context("sending"));
            break;
        }
    }
    // Whatever happened, deliver what was already sent before exiting.
    let closed = transport.close().await.context("closing");
    // Messages received before the close are still queued: print them all before exiting.
    printer.await.context("printing received messages")?;
    lan.close().await;
    outcome.and(closed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_and_backslashes_are_escaped_and_the_rest_is_not() {
        assert!(matches!(escape_line("plain text, é ✓"), Cow::Borrowed(_)));
        for (text, printed) in [
            ("a\nb", "a\\nb"),
            ("x\r<fake-id> forged", "x\\r<fake-id> forged"),
            ("back\\slash \\n", "back\\\\slash \\\\n"),
            ("tab\there", "tab\\there"),
            ("\u{1b}[31mred\u{0}", "\\u{1b}[31mred\\u{0}"),
            ("del\u{7f} nel\u{85}", "del\\u{7f} nel\\u{85}"),
            ("ls\u{2028}ps\u{2029}", "ls\\u{2028}ps\\u{2029}"),
        ] {
            let escaped = escape_line(text);
            assert_eq!(escaped, printed, "{text:?}");
            assert!(!escaped.chars().any(char::is_control), "{escaped:?}");
        }
    }

    async fn lines(input: &[u8], max: usize) -> Vec<(StdinLine, Vec<u8>)> {
        // A tiny buffer so lines span many reads.
        let mut reader = tokio::io::BufReader::with_capacity(3, input);
        let mut buffer = Vec::new();
        let mut out = Vec::new();
        loop {
            let line = read_line(&mut reader, max, &mut buffer).await.unwrap();
            if line == StdinLine::Eof {
                return out;
            }
            out.push((line, buffer.clone()));
        }
    }

    #[tokio::test]
    async fn lines_over_the_limit_are_skipped_and_reading_goes_on() {
        let got = lines(
            b"12345\n123456\r\n1234567\nok\r\n12345678901234567890\nlast",
            6,
        )
        .await;
        assert_eq!(
            got,
            vec![
                (StdinLine::Line, b"12345".to_vec()),
                (StdinLine::Line, b"123456".to_vec()),
                (StdinLine::TooLong(8), vec![]),
                (StdinLine::Line, b"ok".to_vec()),
                (StdinLine::TooLong(21), vec![]),
                (StdinLine::Line, b"last".to_vec()),
            ]
        );
        // An over-long last line without a newline.
        assert_eq!(
            lines(b"a\n0123456789", 6).await,
            vec![
                (StdinLine::Line, b"a".to_vec()),
                (StdinLine::TooLong(10), vec![])
            ]
        );
    }
}
