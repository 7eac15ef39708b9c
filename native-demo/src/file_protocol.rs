//! The file-transfer protocol of `docs/file-transfer.md`: encoding and parsing of its messages,
//! and [`FileReceiver`], the per-sender receiver state machine that writes a file to disk as its
//! chunks arrive and checks size and SHA-256 at the end.
//!
//! Pure protocol logic plus plain file I/O: no transport, no async, so every rule is unit-tested
//! here without a network.

use serde::Serialize;
use sha2::{Digest, Sha256};
use std::fmt;
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;

/// Chunk size: every binary message of a transfer carries this many bytes, except the last.
pub const CHUNK_SIZE: usize = 64 * 1024;

/// Largest `size` a `file-start` may declare: 2^53 - 1, the largest integer a JavaScript number
/// holds exactly.
pub const MAX_FILE_SIZE: u64 = (1 << 53) - 1;

/// Longest accepted file name, bytes (the usual file-system limit on one path component).
pub const MAX_NAME_BYTES: usize = 255;

/// A file-protocol text message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Control {
    /// Opens a transfer. `name` is as received: the receiver reduces it with [`base_name`].
    Start { id: u32, name: String, size: u64 },
    /// Closes the transfer `id`; `sha256` is 64 hex digits.
    End { id: u32, sha256: String },
}

#[derive(Serialize)]
struct StartJson<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: u32,
    name: &'a str,
    size: u64,
}

#[derive(Serialize)]
struct EndJson<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: u32,
    sha256: &'a str,
}

/// `{"type":"file-start","id":…,"name":"…","size":…}`
pub fn encode_start(id: u32, name: &str, size: u64) -> String {
    serde_json::to_string(&StartJson {
        kind: "file-start",
        id,
        name,
        size,
    })
    .expect("plain struct serializes")
}

/// `{"type":"file-end","id":…,"sha256":"<64 lowercase hex digits>"}`
pub fn encode_end(id: u32, sha256: &[u8]) -> String {
    let hex = hex::encode(sha256);
    serde_json::to_string(&EndJson {
        kind: "file-end",
        id,
        sha256: &hex,
    })
    .expect("plain struct serializes")
}

/// Classifies a text message: `Ok(None)` for chat (anything that is not a JSON object whose
/// `"type"` is `"file-start"` or `"file-end"`), `Ok(Some(_))` for a well-formed file message,
/// [`FileError::Malformed`] for a file message with missing or wrong fields.
pub fn parse_text(text: &str) -> Result<Option<Control>, FileError> {
    let Ok(serde_json::Value::Object(object)) = serde_json::from_str::<serde_json::Value>(text)
    else {
        return Ok(None);
    };
    let kind = match object.get("type").and_then(|t| t.as_str()) {
        Some(kind @ ("file-start" | "file-end")) => kind,
        _ => return Ok(None),
    };
    let malformed = |what: &str| FileError::Malformed(format!("{kind}: {what}"));
    let id = object
        .get("id")
        .and_then(|v| v.as_u64())
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| malformed("\"id\" must be an integer 0..=4294967295"))?;
    if kind == "file-start" {
        let name = object
            .get("name")
            .and_then(|v| v.as_str())
            .ok_or_else(|| malformed("\"name\" must be a string"))?;
        let size = object
            .get("size")
            .and_then(|v| v.as_u64())
            .filter(|size| *size <= MAX_FILE_SIZE)
            .ok_or_else(|| malformed("\"size\" must be an integer 0..=2^53-1"))?;
        Ok(Some(Control::Start {
            id,
            name: name.to_owned(),
            size,
        }))
    } else {
        let sha256 = object
            .get("sha256")
            .and_then(|v| v.as_str())
            .filter(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| malformed("\"sha256\" must be 64 hex digits"))?;
        Ok(Some(Control::End {
            id,
            sha256: sha256.to_ascii_lowercase(),
        }))
    }
}

/// The base name a receiver uses for `name`: what follows the last `/` or `\`. Rejects an empty
/// result, `.`, `..`, control characters and names over [`MAX_NAME_BYTES`].
pub fn base_name(name: &str) -> Result<&str, FileError> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let reason = if base.is_empty() {
        Some("empty base name")
    } else if base == "." || base == ".." {
        Some("base name is . or ..")
    } else if base.chars().any(|c| c.is_ascii_control()) {
        Some("control character in name")
    } else if base.len() > MAX_NAME_BYTES {
        Some("name longer than 255 bytes")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(FileError::BadName {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(base),
    }
}

/// Lowercase hex SHA-256 of `data`.
#[cfg(test)]
fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Why a transfer failed. Each protocol rule of `docs/file-transfer.md` has its own variant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileError {
    /// A binary message arrived with no transfer open.
    ChunkWithoutStart { len: usize },
    /// The `file-start` name is unusable (see [`base_name`]).
    BadName { name: String, reason: &'static str },
    /// A `file-start` arrived while transfer `open` was not finished.
    StartBeforeEnd { open: u32, new: u32 },
    /// A chunk longer than [`CHUNK_SIZE`].
    OversizedChunk { id: u32, len: usize },
    /// Received bytes do not add up to the declared size: `received` is more than `size` (seen at
    /// the chunk that overflows) or less (seen at `file-end`).
    SizeMismatch {
        id: u32,
        name: String,
        size: u64,
        received: u64,
    },
    /// The data's SHA-256 is not the one in `file-end`.
    HashMismatch {
        id: u32,
        name: String,
        expected: String,
        actual: String,
    },
    /// A `file-end` with no transfer open.
    EndWithoutStart { id: u32 },
    /// A `file-end` for another transfer than the open one.
    IdMismatch { open: u32, end: u32 },
    /// A `file-start` / `file-end` with missing or wrong fields.
    Malformed(String),
    /// The sender went away with the transfer open.
    PeerDisconnected {
        id: u32,
        name: String,
        received: u64,
        size: u64,
    },
    /// Writing the file failed.
    Io { path: PathBuf, error: String },
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileError::ChunkWithoutStart { len } => write!(
                f,
                "chunk without start: {len}-byte binary message with no file-start"
            ),
            FileError::BadName { name, reason } => write!(f, "bad name {name:?}: {reason}"),
            FileError::StartBeforeEnd { open, new } => {
                write!(f, "start before end: file-start {new} while transfer {open} is still open (both dropped)")
            }
            FileError::OversizedChunk { id, len } => {
                write!(
                    f,
                    "oversized chunk in transfer {id}: {len} bytes, at most {CHUNK_SIZE}"
                )
            }
            FileError::SizeMismatch {
                id,
                name,
                size,
                received,
            } if received > size => {
                write!(f, "size mismatch in transfer {id} ({name}): declared {size} bytes, received more ({received})")
            }
            FileError::SizeMismatch {
                id,
                name,
                size,
                received,
            } => {
                write!(f, "size mismatch in transfer {id} ({name}): declared {size} bytes, file-end after {received}")
            }
            FileError::HashMismatch {
                id,
                name,
                expected,
                actual,
            } => {
                write!(f, "hash mismatch in transfer {id} ({name}): file-end says sha256 {expected}, data has {actual}")
            }
            FileError::EndWithoutStart { id } => {
                write!(f, "end without start: file-end {id} with no transfer open")
            }
            FileError::IdMismatch { open, end } => write!(
                f,
                "id mismatch: file-end {end} while transfer {open} is open"
            ),
            FileError::Malformed(what) => write!(f, "malformed file message: {what}"),
            FileError::PeerDisconnected {
                id,
                name,
                received,
                size,
            } => {
                write!(f, "peer disconnected mid-file: transfer {id} ({name}) stopped at {received} of {size} bytes")
            }
            FileError::Io { path, error } => write!(f, "writing {}: {error}", path.display()),
        }
    }
}

impl std::error::Error for FileError {}

/// What a message did to a [`FileReceiver`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Received {
    /// A chat line (text that is not a file message).
    Chat(String),
    /// A transfer opened.
    Started { id: u32, name: String, size: u64 },
    /// A chunk was written; `received` bytes of `size` so far.
    Chunk { id: u32, received: u64, size: u64 },
    /// The transfer completed and verified; the file is in place.
    Completed(CompletedFile),
    /// A leftover of a failed transfer, dropped.
    Dropped,
}

/// A verified file, renamed into its final place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompletedFile {
    pub id: u32,
    pub name: String,
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
    pub path: PathBuf,
}

/// An open transfer. Dropping it unfinished deletes the partial file.
struct Transfer {
    id: u32,
    name: String,
    size: u64,
    received: u64,
    hasher: Sha256,
    file: Option<File>,
    temp: PathBuf,
}

impl Transfer {
    fn io_error(&self, error: std::io::Error) -> FileError {
        FileError::Io {
            path: self.temp.clone(),
            error: error.to_string(),
        }
    }
}

impl Drop for Transfer {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

enum State {
    Idle,
    Receiving(Transfer),
    /// The last transfer failed: drop its chunks until the next `file-start` or `file-end`.
    Skipping,
}

/// Receives files from **one** sender (keep one per peer): feed it every message from that peer
/// in order with [`FileReceiver::on_message`]. Files go to `DIR/.miaou-<tag>-<id>.part` while
/// they arrive and are renamed to `DIR/<name>` once size and SHA-256 match.
pub struct FileReceiver {
    dir: PathBuf,
    tag: String,
    state: State,
}

impl FileReceiver {
    /// A receiver writing into `dir`. `tag` (e.g. the sender's peer id) keeps the temporary
    /// names of concurrent senders apart; characters other than ASCII letters, digits and `-`
    /// are left out of it.
    pub fn new(dir: impl Into<PathBuf>, tag: &str) -> Self {
        let tag: String = tag
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .take(64)
            .collect();
        FileReceiver {
            dir: dir.into(),
            tag,
            state: State::Idle,
        }
    }

    /// The open transfer, if any: (id, name, bytes received, size).
    pub fn open_transfer(&self) -> Option<(u32, &str, u64, u64)> {
        match &self.state {
            State::Receiving(t) => Some((t.id, t.name.as_str(), t.received, t.size)),
            _ => None,
        }
    }

    /// Handles one message from the sender: `text` as in [`miaou_transport::Message::text`].
    pub fn on_message(&mut self, text: bool, data: &[u8]) -> Result<Received, FileError> {
        if !text {
            return self.on_chunk(data);
        }
        let Ok(text) = std::str::from_utf8(data) else {
            return Ok(Received::Chat(String::from_utf8_lossy(data).into_owned()));
        };
        match parse_text(text) {
            Ok(None) => Ok(Received::Chat(text.to_owned())),
            Ok(Some(Control::Start { id, name, size })) => self.on_start(id, &name, size),
            Ok(Some(Control::End { id, sha256 })) => self.on_end(id, &sha256),
            Err(error) => {
                self.state = State::Skipping; // drops (and deletes) an open transfer
                Err(error)
            }
        }
    }

    /// The sender disconnected: an open transfer is aborted with
    /// [`FileError::PeerDisconnected`].
    pub fn on_disconnect(&mut self) -> Result<(), FileError> {
        match std::mem::replace(&mut self.state, State::Idle) {
            State::Receiving(t) => Err(FileError::PeerDisconnected {
                id: t.id,
                name: t.name.clone(),
                received: t.received,
                size: t.size,
            }),
            _ => Ok(()),
        }
    }

    fn on_start(&mut self, id: u32, name: &str, size: u64) -> Result<Received, FileError> {
        if let State::Receiving(open) = &self.state {
            let error = FileError::StartBeforeEnd {
                open: open.id,
                new: id,
            };
            self.state = State::Skipping;
            return Err(error);
        }
        let name = match base_name(name) {
            Ok(name) => name.to_owned(),
            Err(error) => {
                self.state = State::Skipping;
                return Err(error);
            }
        };
        let temp = self.dir.join(format!(".miaou-{}-{id}.part", self.tag));
        let file = match File::create(&temp) {
            Ok(file) => file,
            Err(error) => {
                self.state = State::Skipping;
                return Err(FileError::Io {
                    path: temp,
                    error: error.to_string(),
                });
            }
        };
        let transfer = Transfer {
            id,
            name: name.clone(),
            size,
            received: 0,
            hasher: Sha256::new(),
            file: Some(file),
            temp,
        };
        self.state = State::Receiving(transfer);
        Ok(Received::Started { id, name, size })
    }

    fn on_chunk(&mut self, data: &[u8]) -> Result<Received, FileError> {
        let transfer = match &mut self.state {
            State::Idle => return Err(FileError::ChunkWithoutStart { len: data.len() }),
            State::Skipping => return Ok(Received::Dropped),
            State::Receiving(transfer) => transfer,
        };
        let received = transfer.received + data.len() as u64;
        let error = if data.len() > CHUNK_SIZE {
            Some(FileError::OversizedChunk {
                id: transfer.id,
                len: data.len(),
            })
        } else if received > transfer.size {
            Some(FileError::SizeMismatch {
                id: transfer.id,
                name: transfer.name.clone(),
                size: transfer.size,
                received,
            })
        } else {
            let file = transfer.file.as_mut().expect("open transfer has its file");
            file.write_all(data).err().map(|e| transfer.io_error(e))
        };
        if let Some(error) = error {
            self.state = State::Skipping;
            return Err(error);
        }
        transfer.hasher.update(data);
        transfer.received = received;
        Ok(Received::Chunk {
            id: transfer.id,
            received,
            size: transfer.size,
        })
    }

    fn on_end(&mut self, id: u32, sha256: &str) -> Result<Received, FileError> {
        let mut transfer = match std::mem::replace(&mut self.state, State::Idle) {
            State::Idle => return Err(FileError::EndWithoutStart { id }),
            State::Skipping => return Ok(Received::Dropped),
            State::Receiving(transfer) => transfer,
        };
        if id != transfer.id {
            return Err(FileError::IdMismatch {
                open: transfer.id,
                end: id,
            });
        }
        if transfer.received != transfer.size {
            let (name, size, received) = (transfer.name.clone(), transfer.size, transfer.received);
            return Err(FileError::SizeMismatch {
                id,
                name,
                size,
                received,
            });
        }
        let actual = hex::encode(std::mem::take(&mut transfer.hasher).finalize());
        if actual != sha256 {
            return Err(FileError::HashMismatch {
                id,
                name: transfer.name.clone(),
                expected: sha256.to_owned(),
                actual,
            });
        }
        let file = transfer.file.as_mut().expect("open transfer has its file");
        if let Err(e) = file.flush() {
            return Err(transfer.io_error(e));
        }
        let path = self.dir.join(&transfer.name);
        if let Err(e) = std::fs::rename(&transfer.temp, &path) {
            return Err(FileError::Io {
                path,
                error: e.to_string(),
            });
        }
        transfer.file = None; // renamed: nothing to delete on drop
        Ok(Received::Completed(CompletedFile {
            id,
            name: transfer.name.clone(),
            size: transfer.size,
            sha256: actual,
            path,
        }))
    }
}

/// Peak resident set size of this process, KiB (`VmHWM` in /proc/self/status; Linux only).
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|line| {
        line.strip_prefix("VmHWM:")?
            .trim()
            .strip_suffix("kB")?
            .trim()
            .parse()
            .ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// The names in `dir`, sorted.
    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn receiver() -> (tempfile::TempDir, FileReceiver) {
        let dir = tempfile::tempdir().unwrap();
        let rx = FileReceiver::new(dir.path(), "peer-1");
        (dir, rx)
    }

    fn start(rx: &mut FileReceiver, id: u32, name: &str, size: u64) -> Result<Received, FileError> {
        rx.on_message(true, encode_start(id, name, size).as_bytes())
    }

    fn end(rx: &mut FileReceiver, id: u32, data: &[u8]) -> Result<Received, FileError> {
        rx.on_message(true, encode_end(id, &Sha256::digest(data)).as_bytes())
    }

    fn chunk(rx: &mut FileReceiver, data: &[u8]) -> Result<Received, FileError> {
        rx.on_message(false, data)
    }

    /// Sends `data` as a whole transfer (64 KiB chunks) and returns the last result.
    fn transfer(
        rx: &mut FileReceiver,
        id: u32,
        name: &str,
        data: &[u8],
    ) -> Result<Received, FileError> {
        start(rx, id, name, data.len() as u64)?;
        for piece in data.chunks(CHUNK_SIZE) {
            chunk(rx, piece)?;
        }
        end(rx, id, data)
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn messages_have_the_documented_json() {
        assert_eq!(
            encode_start(7, "photo.jpg", 3145728),
            r#"{"type":"file-start","id":7,"name":"photo.jpg","size":3145728}"#
        );
        let digest = Sha256::digest(b"test");
        assert_eq!(
            encode_end(7, &digest),
            r#"{"type":"file-end","id":7,"sha256":"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}"#
        );
        assert_eq!(
            encode_start(1, "a \"q\" é", 0),
            r#"{"type":"file-start","id":1,"name":"a \"q\" é","size":0}"#
        );
    }

    #[test]
    fn parse_round_trips_and_ignores_unknown_fields() {
        let start = encode_start(u32::MAX, "x.bin", MAX_FILE_SIZE);
        assert_eq!(
            parse_text(&start),
            Ok(Some(Control::Start {
                id: u32::MAX,
                name: "x.bin".into(),
                size: MAX_FILE_SIZE
            }))
        );
        let end = encode_end(3, &[0xab; 32]);
        assert_eq!(
            parse_text(&end),
            Ok(Some(Control::End {
                id: 3,
                sha256: "ab".repeat(32)
            }))
        );
        let extra = r#"{"type":"file-start","id":1,"name":"a","size":2,"mime":"text/plain"}"#;
        assert_eq!(
            parse_text(extra),
            Ok(Some(Control::Start {
                id: 1,
                name: "a".into(),
                size: 2
            }))
        );
        let upper = format!(
            r#"{{"type":"file-end","id":1,"sha256":"{}"}}"#,
            "AB".repeat(32)
        );
        assert_eq!(
            parse_text(&upper),
            Ok(Some(Control::End {
                id: 1,
                sha256: "ab".repeat(32)
            }))
        );
    }

    #[test]
    fn text_that_is_not_a_file_message_is_chat() {
        for chat in [
            "hello",
            "",
            "{",
            "[1,2]",
            "42",
            r#"{"type":"chat","text":"hi"}"#,
            r#"{"id":1}"#,
            r#"{"type":7}"#,
            r#""file-start""#,
        ] {
            assert_eq!(parse_text(chat), Ok(None), "{chat}");
        }
        let (_dir, mut rx) = receiver();
        assert_eq!(
            rx.on_message(true, b"hi there"),
            Ok(Received::Chat("hi there".into()))
        );
        // Chat between chunks does not disturb an open transfer.
        start(&mut rx, 1, "a", 4).unwrap();
        chunk(&mut rx, b"ab").unwrap();
        assert_eq!(
            rx.on_message(true, b"{\"type\":\"other\"}"),
            Ok(Received::Chat("{\"type\":\"other\"}".into()))
        );
        chunk(&mut rx, b"cd").unwrap();
        assert!(matches!(
            end(&mut rx, 1, b"abcd"),
            Ok(Received::Completed(_))
        ));
    }

    #[test]
    fn malformed_file_messages_are_errors() {
        for bad in [
            r#"{"type":"file-start","name":"a","size":1}"#,
            r#"{"type":"file-start","id":-1,"name":"a","size":1}"#,
            r#"{"type":"file-start","id":4294967296,"name":"a","size":1}"#,
            r#"{"type":"file-start","id":1.5,"name":"a","size":1}"#,
            r#"{"type":"file-start","id":1,"size":1}"#,
            r#"{"type":"file-start","id":1,"name":5,"size":1}"#,
            r#"{"type":"file-start","id":1,"name":"a"}"#,
            r#"{"type":"file-start","id":1,"name":"a","size":9007199254740992}"#,
            r#"{"type":"file-start","id":1,"name":"a","size":"1"}"#,
            r#"{"type":"file-end","id":1}"#,
            r#"{"type":"file-end","id":1,"sha256":"abc"}"#,
            r#"{"type":"file-end","id":1,"sha256":"zz00000000000000000000000000000000000000000000000000000000000000"}"#,
        ] {
            assert!(
                matches!(parse_text(bad), Err(FileError::Malformed(_))),
                "{bad}"
            );
        }
        // A malformed message aborts an open transfer and deletes its partial file.
        let (dir, mut rx) = receiver();
        start(&mut rx, 1, "a", 4).unwrap();
        chunk(&mut rx, b"ab").unwrap();
        assert_eq!(names_in(dir.path()).len(), 1, "the partial file exists");
        let error = rx
            .on_message(true, br#"{"type":"file-end","id":1,"sha256":"nope"}"#)
            .unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("malformed file message: file-end:"),
            "{error}"
        );
        assert!(names_in(dir.path()).is_empty(), "partial file deleted");
        assert_eq!(chunk(&mut rx, b"cd"), Ok(Received::Dropped));
    }

    #[test]
    fn names_are_reduced_to_their_base_name() {
        assert_eq!(base_name("photo.jpg"), Ok("photo.jpg"));
        assert_eq!(base_name("../../etc/passwd"), Ok("passwd"));
        assert_eq!(base_name("/abs/path/x.txt"), Ok("x.txt"));
        assert_eq!(base_name("C:\\tmp\\a.txt"), Ok("a.txt"));
        assert_eq!(base_name("..\\..\\boot.ini"), Ok("boot.ini"));
        assert_eq!(base_name(".hidden"), Ok(".hidden"));
        assert_eq!(base_name("..."), Ok("..."));
        assert_eq!(base_name("név ✓.txt"), Ok("név ✓.txt"));
        for bad in [
            "",
            ".",
            "..",
            "dir/",
            "a/..",
            "a/.",
            "\\",
            "a\\..",
            "nul\0byte",
            "line\nbreak",
        ] {
            assert!(
                matches!(base_name(bad), Err(FileError::BadName { .. })),
                "{bad:?}"
            );
        }
        assert!(base_name(&"n".repeat(255)).is_ok());
        assert!(matches!(
            base_name(&"n".repeat(256)),
            Err(FileError::BadName { .. })
        ));
    }

    #[test]
    fn path_in_name_lands_inside_the_directory_under_its_base_name() {
        let (dir, mut rx) = receiver();
        let Ok(Received::Completed(file)) = transfer(&mut rx, 1, "../../escape.txt", b"data")
        else {
            panic!()
        };
        assert_eq!(file.name, "escape.txt");
        assert_eq!(file.path, dir.path().join("escape.txt"));
        assert_eq!(std::fs::read(&file.path).unwrap(), b"data");
        assert!(!dir.path().parent().unwrap().join("escape.txt").exists());
    }

    #[test]
    fn bad_names_are_rejected_and_the_transfer_skipped() {
        for bad in ["", ".", "..", "x/..", "up/"] {
            let (dir, mut rx) = receiver();
            let error = start(&mut rx, 1, bad, 3).unwrap_err();
            assert!(
                matches!(error, FileError::BadName { .. }),
                "{bad:?}: {error}"
            );
            assert!(error.to_string().starts_with("bad name"), "{error}");
            assert_eq!(chunk(&mut rx, b"abc"), Ok(Received::Dropped));
            assert_eq!(end(&mut rx, 1, b"abc"), Ok(Received::Dropped));
            assert!(names_in(dir.path()).is_empty());
            // Back to normal afterwards.
            assert!(matches!(
                transfer(&mut rx, 2, "ok", b"fine"),
                Ok(Received::Completed(_))
            ));
        }
    }

    #[test]
    fn files_of_every_boundary_size_arrive_verified() {
        let (dir, mut rx) = receiver();
        for (id, len) in [
            0,
            1,
            CHUNK_SIZE - 1,
            CHUNK_SIZE,
            CHUNK_SIZE + 1,
            3 * CHUNK_SIZE + 17,
        ]
        .into_iter()
        .enumerate()
        {
            let data = pattern(len);
            let name = format!("f{len}");
            let done = transfer(&mut rx, id as u32, &name, &data).unwrap();
            let Received::Completed(file) = done else {
                panic!("{done:?}")
            };
            assert_eq!(file.size, len as u64);
            assert_eq!(file.sha256, sha256_hex(&data));
            assert_eq!(std::fs::read(dir.path().join(&name)).unwrap(), data);
        }
        assert!(
            !names_in(dir.path()).iter().any(|n| n.ends_with(".part")),
            "no temp file left"
        );
        assert!(rx.open_transfer().is_none());
    }

    #[test]
    fn progress_is_reported_and_the_file_is_written_incrementally() {
        let (dir, mut rx) = receiver();
        assert_eq!(
            start(&mut rx, 5, "p", 10),
            Ok(Received::Started {
                id: 5,
                name: "p".into(),
                size: 10
            })
        );
        assert_eq!(
            chunk(&mut rx, &[1; 6]),
            Ok(Received::Chunk {
                id: 5,
                received: 6,
                size: 10
            })
        );
        assert_eq!(rx.open_transfer(), Some((5, "p", 6, 10)));
        // Already on disk under the temporary name, not yet under the final one.
        assert_eq!(
            names_in(dir.path()),
            vec![".miaou-peer-1-5.part".to_owned()]
        );
        assert_eq!(
            std::fs::metadata(dir.path().join(".miaou-peer-1-5.part"))
                .unwrap()
                .len(),
            6
        );
        chunk(&mut rx, &[2; 4]).unwrap();
        assert!(matches!(
            end(&mut rx, 5, &[1, 1, 1, 1, 1, 1, 2, 2, 2, 2]),
            Ok(Received::Completed(_))
        ));
        assert_eq!(names_in(dir.path()), vec!["p".to_owned()]);
    }

    #[test]
    fn chunk_without_start_is_an_error() {
        let (dir, mut rx) = receiver();
        assert_eq!(
            chunk(&mut rx, b"stray"),
            Err(FileError::ChunkWithoutStart { len: 5 })
        );
        assert!(chunk(&mut rx, b"x")
            .unwrap_err()
            .to_string()
            .starts_with("chunk without start"));
        // Also after a completed transfer.
        transfer(&mut rx, 1, "a", b"a").unwrap();
        assert_eq!(
            chunk(&mut rx, b"late"),
            Err(FileError::ChunkWithoutStart { len: 4 })
        );
        assert_eq!(names_in(dir.path()), vec!["a".to_owned()]);
    }

    #[test]
    fn end_without_start_and_id_mismatch_are_errors() {
        let (dir, mut rx) = receiver();
        assert_eq!(
            end(&mut rx, 9, b""),
            Err(FileError::EndWithoutStart { id: 9 })
        );
        start(&mut rx, 1, "a", 1).unwrap();
        chunk(&mut rx, b"a").unwrap();
        assert_eq!(
            end(&mut rx, 2, b"a"),
            Err(FileError::IdMismatch { open: 1, end: 2 })
        );
        assert!(names_in(dir.path()).is_empty());
        assert!(rx.open_transfer().is_none());
    }

    #[test]
    fn too_much_data_is_a_size_mismatch_at_the_overflowing_chunk() {
        let (dir, mut rx) = receiver();
        start(&mut rx, 1, "a", 5).unwrap();
        chunk(&mut rx, b"abc").unwrap();
        let error = chunk(&mut rx, b"def").unwrap_err();
        assert_eq!(
            error,
            FileError::SizeMismatch {
                id: 1,
                name: "a".into(),
                size: 5,
                received: 6
            }
        );
        assert!(
            error
                .to_string()
                .contains("declared 5 bytes, received more (6)"),
            "{error}"
        );
        assert!(names_in(dir.path()).is_empty(), "partial file deleted");
        assert_eq!(chunk(&mut rx, b"g"), Ok(Received::Dropped));
        assert_eq!(end(&mut rx, 1, b"abcdefg"), Ok(Received::Dropped));
        // Data for an empty file.
        start(&mut rx, 2, "empty", 0).unwrap();
        assert!(matches!(
            chunk(&mut rx, b"x"),
            Err(FileError::SizeMismatch {
                received: 1,
                size: 0,
                ..
            })
        ));
    }

    #[test]
    fn too_little_data_is_a_size_mismatch_at_the_end() {
        let (dir, mut rx) = receiver();
        start(&mut rx, 1, "a", 5).unwrap();
        chunk(&mut rx, b"abc").unwrap();
        let error = end(&mut rx, 1, b"abc").unwrap_err();
        assert_eq!(
            error,
            FileError::SizeMismatch {
                id: 1,
                name: "a".into(),
                size: 5,
                received: 3
            }
        );
        assert!(error.to_string().contains("file-end after 3"), "{error}");
        assert!(names_in(dir.path()).is_empty());
        assert!(matches!(
            transfer(&mut rx, 2, "b", b"ok"),
            Ok(Received::Completed(_))
        ));
    }

    #[test]
    fn hash_mismatch_is_an_error_and_nothing_is_kept() {
        let (dir, mut rx) = receiver();
        std::fs::write(dir.path().join("a"), b"old").unwrap();
        start(&mut rx, 1, "a", 3).unwrap();
        chunk(&mut rx, b"abc").unwrap();
        let error = end(&mut rx, 1, b"abd").unwrap_err();
        let FileError::HashMismatch {
            expected, actual, ..
        } = &error
        else {
            panic!("{error}")
        };
        assert_eq!(expected, &sha256_hex(b"abd"));
        assert_eq!(actual, &sha256_hex(b"abc"));
        assert!(error.to_string().starts_with("hash mismatch"));
        // The existing file of that name is untouched, the partial one gone.
        assert_eq!(names_in(dir.path()), vec!["a".to_owned()]);
        assert_eq!(std::fs::read(dir.path().join("a")).unwrap(), b"old");
    }

    #[test]
    fn second_start_before_end_aborts_both() {
        let (dir, mut rx) = receiver();
        start(&mut rx, 1, "first", 4).unwrap();
        chunk(&mut rx, b"ab").unwrap();
        let error = start(&mut rx, 2, "second", 2).unwrap_err();
        assert_eq!(error, FileError::StartBeforeEnd { open: 1, new: 2 });
        assert!(error.to_string().starts_with("start before end"));
        assert!(
            names_in(dir.path()).is_empty(),
            "first partial file deleted"
        );
        assert_eq!(
            chunk(&mut rx, b"xy"),
            Ok(Received::Dropped),
            "second refused too"
        );
        assert_eq!(end(&mut rx, 2, b"xy"), Ok(Received::Dropped));
        assert!(matches!(
            transfer(&mut rx, 3, "third", b"fine"),
            Ok(Received::Completed(_))
        ));
    }

    #[test]
    fn oversized_chunk_is_an_error() {
        let (dir, mut rx) = receiver();
        start(&mut rx, 1, "big", 10 * CHUNK_SIZE as u64).unwrap();
        assert!(
            chunk(&mut rx, &pattern(CHUNK_SIZE)).is_ok(),
            "exactly 64 KiB is fine"
        );
        let error = chunk(&mut rx, &pattern(CHUNK_SIZE + 1)).unwrap_err();
        assert_eq!(
            error,
            FileError::OversizedChunk {
                id: 1,
                len: CHUNK_SIZE + 1
            }
        );
        assert!(error.to_string().starts_with("oversized chunk"));
        assert!(names_in(dir.path()).is_empty());
        assert_eq!(chunk(&mut rx, b"more"), Ok(Received::Dropped));
    }

    #[test]
    fn disconnect_mid_file_is_an_error_and_deletes_the_partial_file() {
        let (dir, mut rx) = receiver();
        assert_eq!(rx.on_disconnect(), Ok(()), "idle: nothing lost");
        start(&mut rx, 4, "half", 10).unwrap();
        chunk(&mut rx, b"12345").unwrap();
        let error = rx.on_disconnect().unwrap_err();
        assert_eq!(
            error,
            FileError::PeerDisconnected {
                id: 4,
                name: "half".into(),
                received: 5,
                size: 10
            }
        );
        assert!(error.to_string().starts_with("peer disconnected mid-file"));
        assert!(names_in(dir.path()).is_empty());
    }

    #[test]
    fn dropping_the_receiver_mid_file_deletes_the_partial_file() {
        let (dir, mut rx) = receiver();
        start(&mut rx, 1, "a", 10).unwrap();
        chunk(&mut rx, b"123").unwrap();
        drop(rx);
        assert!(names_in(dir.path()).is_empty());
    }

    #[test]
    fn an_existing_file_is_replaced_only_when_the_new_one_verifies() {
        let (dir, mut rx) = receiver();
        std::fs::write(dir.path().join("a"), b"old").unwrap();
        transfer(&mut rx, 1, "a", b"new contents").unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("a")).unwrap(),
            b"new contents"
        );
    }

    #[test]
    fn unwritable_directory_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut rx = FileReceiver::new(dir.path().join("missing"), "p");
        let error = start(&mut rx, 1, "a", 1).unwrap_err();
        assert!(matches!(error, FileError::Io { .. }), "{error}");
        assert_eq!(chunk(&mut rx, b"a"), Ok(Received::Dropped));
    }

    #[test]
    fn tags_keep_concurrent_senders_apart() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = FileReceiver::new(dir.path(), "peer/a");
        let mut b = FileReceiver::new(dir.path(), "peer-b");
        start(&mut a, 1, "from-a", 2).unwrap();
        start(&mut b, 1, "from-b", 2).unwrap();
        chunk(&mut a, b"a").unwrap();
        chunk(&mut b, b"b").unwrap();
        chunk(&mut a, b"A").unwrap();
        chunk(&mut b, b"B").unwrap();
        end(&mut a, 1, b"aA").unwrap();
        end(&mut b, 1, b"bB").unwrap();
        assert_eq!(std::fs::read(dir.path().join("from-a")).unwrap(), b"aA");
        assert_eq!(std::fs::read(dir.path().join("from-b")).unwrap(), b"bB");
    }

    #[test]
    fn peak_rss_is_read_from_proc() {
        let kib = peak_rss_kib().expect("Linux /proc");
        assert!(kib > 100, "{kib}");
    }
}
