//! The file-transfer protocol of `docs/file-transfer.md`: encoding and parsing of its messages
//! (the sender's `file-start` / `file-end`, the receiver's `file-received` / `file-error` /
//! `file-declined` acknowledgements), and [`FileReceiver`], the per-sender receiver state machine that writes a
//! file to disk as its chunks arrive, checks size and SHA-256 at the end and moves it into
//! place without ever replacing an existing file.
//!
//! Pure protocol logic plus plain file I/O: no transport, no async, so every rule is unit-tested
//! here without a network.

use serde::Serialize;
use sha2::{Digest, Sha256};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use tempfile::NamedTempFile;

/// Chunk size, bytes: every binary message of a transfer carries this many bytes, except the
/// last.
pub const CHUNK_SIZE: usize = 64 * 1024;

/// Room for one control message (`file-start`, `file-end`, `file-received`, `file-error`, a
/// short chat line), bytes. The longest the protocol produces is a `file-start` with a 255-byte
/// name whose every byte JSON doubles (`"` or `\`): under 600 bytes; a `file-error` reason is
/// cut to [`MAX_REASON_BYTES`].
pub const MAX_CONTROL_BYTES: usize = 4 * 1024;

/// Largest message a file-transfer endpoint accepts, bytes (`max_message_size` of `send` and
/// `receive`): one chunk or one control message, with room to spare.
pub const MAX_MESSAGE_BYTES: usize = CHUNK_SIZE + MAX_CONTROL_BYTES;

/// Largest `size` a `file-start` may declare: 2^53 - 1, the largest integer a JavaScript number
/// holds exactly.
pub const MAX_FILE_SIZE: u64 = (1 << 53) - 1;

/// Longest accepted file name, bytes (the usual file-system limit on one path component).
pub const MAX_NAME_BYTES: usize = 255;

/// Longest `reason` a `file-error` carries, bytes; longer ones are cut (at a character
/// boundary) and end in `…`.
pub const MAX_REASON_BYTES: usize = 1024;

/// How many names a receiver tries for one file: `name`, then `name (1)` … `name (999)`; when
/// all exist the transfer fails with [`FileError::NameTaken`].
pub const MAX_NAME_TRIES: u32 = 1000;

/// A file-protocol text message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Control {
    /// Sender → receiver: opens a transfer. `name` is as received: the receiver reduces it with
    /// [`base_name`].
    Start { id: u32, name: String, size: u64 },
    /// Sender → receiver: closes the transfer `id`; `sha256` is 64 lowercase hex digits.
    End { id: u32, sha256: String },
    /// Receiver → sender: how a transfer ended.
    Ack(Ack),
}

/// A receiver's end-to-end acknowledgement of a transfer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ack {
    /// `file-received`: transfer `id` was verified (size and SHA-256) and is in place;
    /// `sha256` (lowercase hex) is the hash of the data the receiver got.
    Received { id: u32, sha256: String },
    /// `file-error`: the receiver rejected transfer `id` (`None`: a fault that belongs to no
    /// transfer, e.g. a chunk with no transfer open). `reason` is the receiver's error text.
    Failed { id: Option<u32>, reason: String },
    /// `file-declined`: the peer takes no files at all (it is itself a sender); the sender
    /// stops sending to it and does not wait for its acknowledgements.
    Declined { id: u32 },
    /// `file-accepted`: the receiver opened transfer `id` (answer to its `file-start`); its
    /// `file-received` or `file-error` follows. Tells a sender that a peer takes files.
    Accepted { id: u32 },
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
struct DigestJson<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: u32,
    sha256: &'a str,
}

#[derive(Serialize)]
struct IdJson {
    #[serde(rename = "type")]
    kind: &'static str,
    id: u32,
}

#[derive(Serialize)]
struct ErrorJson<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<u32>,
    reason: &'a str,
}

fn json(value: &impl Serialize) -> String {
    serde_json::to_string(value).expect("plain struct serializes")
}

/// `{"type":"file-start","id":…,"name":"…","size":…}`
pub fn encode_start(id: u32, name: &str, size: u64) -> String {
    json(&StartJson {
        kind: "file-start",
        id,
        name,
        size,
    })
}

/// `{"type":"file-end","id":…,"sha256":"<64 lowercase hex digits>"}`
pub fn encode_end(id: u32, sha256: &[u8]) -> String {
    json(&DigestJson {
        kind: "file-end",
        id,
        sha256: &hex::encode(sha256),
    })
}

/// `{"type":"file-received","id":…,"sha256":"<64 lowercase hex digits>"}`; `sha256_hex` as in
/// [`CompletedFile::sha256`].
pub fn encode_received(id: u32, sha256_hex: &str) -> String {
    json(&DigestJson {
        kind: "file-received",
        id,
        sha256: sha256_hex,
    })
}

/// `{"type":"file-error","id":…,"reason":"…"}`, without `"id"` when `id` is `None`; `reason`
/// is cut to [`MAX_REASON_BYTES`].
pub fn encode_error(id: Option<u32>, reason: &str) -> String {
    json(&ErrorJson {
        kind: "file-error",
        id,
        reason: &truncate(reason, MAX_REASON_BYTES),
    })
}

/// `{"type":"file-accepted","id":…}`
pub fn encode_accepted(id: u32) -> String {
    json(&IdJson {
        kind: "file-accepted",
        id,
    })
}

/// `{"type":"file-declined","id":…}`
pub fn encode_declined(id: u32) -> String {
    json(&IdJson {
        kind: "file-declined",
        id,
    })
}

/// `text` cut to at most `max` bytes at a character boundary, ending in `…` when cut.
fn truncate(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return text.into();
    }
    let mut end = max - '…'.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end]).into()
}

/// `text` with control characters escaped (`\u{1b}`), for printing what a remote peer sent on
/// a terminal.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// The `"type"`s of file messages; any other text message is chat.
const FILE_TYPES: [&str; 6] = [
    "file-start",
    "file-end",
    "file-received",
    "file-error",
    "file-declined",
    "file-accepted",
];

/// Classifies a text message: `Ok(None)` for chat (anything that is not a JSON object whose
/// `"type"` is one of `"file-start"`, `"file-end"`, `"file-received"`, `"file-error"`,
/// `"file-declined"`, `"file-accepted"`),
/// `Ok(Some(_))` for a well-formed file message, [`FileError::Malformed`] (with `open: None`)
/// for a file message with missing or wrong fields.
pub fn parse_text(text: &str) -> Result<Option<Control>, FileError> {
    let Ok(serde_json::Value::Object(object)) = serde_json::from_str::<serde_json::Value>(text)
    else {
        return Ok(None);
    };
    let Some(kind) = object
        .get("type")
        .and_then(|t| t.as_str())
        .filter(|kind| FILE_TYPES.contains(kind))
    else {
        return Ok(None);
    };
    let malformed = |what: &str| FileError::Malformed {
        what: format!("{kind}: {what}"),
        open: None,
    };
    let id_field = object.get("id");
    let id = id_field
        .and_then(|v| v.as_u64())
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| malformed("\"id\" must be an integer 0..=4294967295"));
    let sha256 = || {
        object
            .get("sha256")
            .and_then(|v| v.as_str())
            .filter(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(|s| s.to_ascii_lowercase())
            .ok_or_else(|| malformed("\"sha256\" must be 64 hex digits"))
    };
    match kind {
        "file-start" => {
            let id = id?;
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
        }
        "file-end" => Ok(Some(Control::End {
            id: id?,
            sha256: sha256()?,
        })),
        "file-received" => Ok(Some(Control::Ack(Ack::Received {
            id: id?,
            sha256: sha256()?,
        }))),
        "file-declined" => Ok(Some(Control::Ack(Ack::Declined { id: id? }))),
        "file-accepted" => Ok(Some(Control::Ack(Ack::Accepted { id: id? }))),
        _ => {
            // file-error: "id" is optional, but when present it must be valid.
            let id = match id_field {
                None => None,
                Some(_) => Some(id?),
            };
            let reason = object
                .get("reason")
                .and_then(|v| v.as_str())
                .ok_or_else(|| malformed("\"reason\" must be a string"))?;
            Ok(Some(Control::Ack(Ack::Failed {
                id,
                reason: reason.to_owned(),
            })))
        }
    }
}

/// The base name a receiver uses for `name`: what follows the last `/` or `\`. Rejects an empty
/// result, `.`, `..`, control characters and names over [`MAX_NAME_BYTES`]; the error's `id`
/// is 0 (the caller sets the transfer's).
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
            id: 0,
            name: name.to_owned(),
            reason,
        }),
        None => Ok(base),
    }
}

/// The `attempt`-th name to try for `name`: `name` itself for 0, else `stem (N).ext` (the
/// extension is what follows the last `.`, none for a dotfile like `.bashrc`: `.bashrc (1)`),
/// the stem shortened when needed to stay within [`MAX_NAME_BYTES`].
pub fn numbered_name(name: &str, attempt: u32) -> String {
    if attempt == 0 {
        return name.to_owned();
    }
    let (stem, ext) = match name.rfind('.') {
        Some(dot) if dot > 0 => name.split_at(dot),
        _ => (name, ""),
    };
    let suffix = format!(" ({attempt}){ext}");
    let mut keep = stem.len().min(MAX_NAME_BYTES.saturating_sub(suffix.len()));
    while !stem.is_char_boundary(keep) {
        keep -= 1;
    }
    format!("{}{suffix}", &stem[..keep])
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
    /// The `file-start` of transfer `id` has an unusable name (see [`base_name`]).
    BadName {
        id: u32,
        name: String,
        reason: &'static str,
    },
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
    /// A file message with missing or wrong fields; `open` is the transfer it aborted, if one
    /// was open.
    Malformed { what: String, open: Option<u32> },
    /// The sender went away with the transfer open.
    PeerDisconnected {
        id: u32,
        name: String,
        received: u64,
        size: u64,
    },
    /// `name` and all its numbered variants (`name (1)` … see [`MAX_NAME_TRIES`]) already exist.
    NameTaken { id: u32, name: String },
    /// Writing the file of transfer `id` failed.
    Io {
        id: u32,
        path: PathBuf,
        error: String,
    },
}

impl FileError {
    /// The transfers this error ended, for the `file-error` acknowledgements the receiver owes
    /// (empty for a fault that belongs to no transfer).
    pub fn transfer_ids(&self) -> Vec<u32> {
        match self {
            FileError::ChunkWithoutStart { .. } => vec![],
            FileError::StartBeforeEnd { open, new } => vec![*open, *new],
            FileError::IdMismatch { open, end } => vec![*open, *end],
            FileError::Malformed { open, .. } => open.iter().copied().collect(),
            FileError::BadName { id, .. }
            | FileError::OversizedChunk { id, .. }
            | FileError::SizeMismatch { id, .. }
            | FileError::HashMismatch { id, .. }
            | FileError::EndWithoutStart { id }
            | FileError::PeerDisconnected { id, .. }
            | FileError::NameTaken { id, .. }
            | FileError::Io { id, .. } => vec![*id],
        }
    }

    /// The `file-error` messages that tell the sender about this error: one per transfer it
    /// ended, or one without `id`.
    pub fn acks(&self) -> Vec<String> {
        let reason = self.to_string();
        match self.transfer_ids().as_slice() {
            [] => vec![encode_error(None, &reason)],
            ids => ids
                .iter()
                .map(|id| encode_error(Some(*id), &reason))
                .collect(),
        }
    }
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileError::ChunkWithoutStart { len } => write!(
                f,
                "chunk without start: {len}-byte binary message with no file-start"
            ),
            FileError::BadName { name, reason, .. } => write!(f, "bad name {name:?}: {reason}"),
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
            FileError::Malformed { what, .. } => write!(f, "malformed file message: {what}"),
            FileError::PeerDisconnected {
                id,
                name,
                received,
                size,
            } => {
                if received == size {
                    write!(f, "peer disconnected mid-file: transfer {id} ({name}) sent all {size} bytes but no file-end (it gave up before verifying them)")
                } else {
                    write!(f, "peer disconnected mid-file: transfer {id} ({name}) stopped at {received} of {size} bytes")
                }
            }
            FileError::NameTaken { id, name } => write!(
                f,
                "name taken in transfer {id}: {name:?} and {} numbered variants exist",
                MAX_NAME_TRIES - 1
            ),
            FileError::Io { id, path, error } => {
                write!(f, "transfer {id}: writing {}: {error}", path.display())
            }
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
    /// The transfer completed and verified; the file is in place. Answer with
    /// [`CompletedFile::ack`].
    Completed(CompletedFile),
    /// A leftover of a failed transfer, dropped.
    Dropped,
    /// An acknowledgement (meant for a sender, not for this receiver).
    Ack(Ack),
}

/// A verified file, moved into its final place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompletedFile {
    pub id: u32,
    /// The name it was written under: the base name the sender gave, or `name (N).ext` when
    /// that was taken ([`numbered_name`]).
    pub name: String,
    /// The base name the sender gave.
    pub requested: String,
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
    /// `DIR/<name>`.
    pub path: PathBuf,
}

impl CompletedFile {
    /// The `file-received` message for the sender.
    pub fn ack(&self) -> String {
        encode_received(self.id, &self.sha256)
    }
}

/// An open transfer. Dropping it unfinished deletes the partial file (a [`NamedTempFile`]).
struct Transfer {
    id: u32,
    name: String,
    size: u64,
    received: u64,
    hasher: Sha256,
    temp: NamedTempFile,
}

impl Transfer {
    fn io_error(&self, error: std::io::Error) -> FileError {
        FileError::Io {
            id: self.id,
            path: self.temp.path().to_owned(),
            error: error.to_string(),
        }
    }

    /// Moves the verified temporary file to `dir/<name>`, or `dir/<name (N).ext>` when that
    /// exists: never replaces a file (no-replace rename, `renameat2(RENAME_NOREPLACE)` or
    /// link + unlink, through [`NamedTempFile::persist_noclobber`]).
    fn finalise(self, dir: &Path) -> Result<(String, PathBuf), FileError> {
        let Transfer { id, name, temp, .. } = self;
        let mut temp = temp;
        for attempt in 0..MAX_NAME_TRIES {
            let candidate = numbered_name(&name, attempt);
            let path = dir.join(&candidate);
            match temp.persist_noclobber(&path) {
                Ok(_) => return Ok((candidate, path)),
                Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => temp = e.file,
                Err(e) => {
                    return Err(FileError::Io {
                        id,
                        path,
                        error: e.error.to_string(),
                    })
                }
            }
        }
        Err(FileError::NameTaken { id, name })
    }
}

enum State {
    Idle,
    Receiving(Transfer),
    /// The last transfer failed: drop its chunks until the next `file-start` or `file-end`.
    Skipping,
}

/// Receives files from **one** sender (keep one per peer): feed it every message from that peer
/// in order with [`FileReceiver::on_message`]. Files go to a fresh `DIR/.miaou-<tag>-XXXXXX.part`
/// (created exclusively, so it never collides with a received file or another transfer's
/// temporary) while they arrive, and move to `DIR/<name>` — or `DIR/<name (N).ext>` when that
/// exists — once size and SHA-256 match. An existing file is never replaced.
pub struct FileReceiver {
    dir: PathBuf,
    tag: String,
    state: State,
}

impl FileReceiver {
    /// A receiver writing into `dir`. `tag` (e.g. the sender's peer id) goes into the temporary
    /// names so one can tell whose they are; characters other than ASCII letters, digits and
    /// `-` are left out of it.
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
    /// On `Err`, answer the sender with [`FileError::acks`].
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
            Ok(Some(Control::Ack(ack))) => Ok(Received::Ack(ack)),
            Err(FileError::Malformed { what, .. }) => {
                let open = self.open_transfer().map(|(id, ..)| id);
                self.state = State::Skipping; // drops (and deletes) an open transfer
                Err(FileError::Malformed { what, open })
            }
            Err(other) => {
                self.state = State::Skipping;
                Err(other)
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
            Err(mut error) => {
                if let FileError::BadName { id: transfer, .. } = &mut error {
                    *transfer = id; // base_name cannot know it
                }
                self.state = State::Skipping;
                return Err(error);
            }
        };
        // A fresh random name, created exclusively (O_EXCL): it cannot be a received file nor
        // another transfer's temporary, whoever sent them.
        let prefix = format!(".miaou-{}-", self.tag);
        let mut temp = tempfile::Builder::new();
        temp.prefix(&prefix).suffix(".part");
        // Mode 0o666 less the umask (open(2) applies it), like any file a program creates:
        // tempfile's own 0o600 would leave received files unreadable to the user's group.
        #[cfg(unix)]
        temp.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
        let temp = temp.tempfile_in(&self.dir);
        let temp = match temp {
            Ok(temp) => temp,
            Err(error) => {
                self.state = State::Skipping;
                return Err(FileError::Io {
                    id,
                    path: self.dir.clone(),
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
            let written = transfer.temp.as_file_mut().write_all(data);
            written.err().map(|e| transfer.io_error(e))
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
        if let Err(e) = transfer.temp.as_file_mut().flush() {
            return Err(transfer.io_error(e));
        }
        let (requested, size) = (transfer.name.clone(), transfer.size);
        let (name, path) = transfer.finalise(&self.dir)?;
        Ok(Received::Completed(CompletedFile {
            id,
            name,
            requested,
            size,
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
    fn acknowledgements_have_the_documented_json() {
        assert_eq!(
            encode_received(7, &"ab".repeat(32)),
            format!(
                r#"{{"type":"file-received","id":7,"sha256":"{}"}}"#,
                "ab".repeat(32)
            )
        );
        assert_eq!(
            encode_error(Some(7), "hash mismatch"),
            r#"{"type":"file-error","id":7,"reason":"hash mismatch"}"#
        );
        assert_eq!(
            encode_error(None, "chunk without start"),
            r#"{"type":"file-error","reason":"chunk without start"}"#
        );
        assert_eq!(encode_declined(7), r#"{"type":"file-declined","id":7}"#);
        assert_eq!(encode_accepted(7), r#"{"type":"file-accepted","id":7}"#);
        assert_eq!(
            parse_text(&encode_accepted(7)),
            Ok(Some(Control::Ack(Ack::Accepted { id: 7 })))
        );
        // A long reason is cut, so the message always fits MAX_CONTROL_BYTES.
        let long = encode_error(Some(u32::MAX), &"\"\\\u{1}é".repeat(5000));
        assert!(long.len() < MAX_CONTROL_BYTES, "{}", long.len());
        let Ok(Some(Control::Ack(Ack::Failed { reason, .. }))) = parse_text(&long) else {
            panic!("{long}")
        };
        assert!(reason.len() <= MAX_REASON_BYTES && reason.ends_with('…'));
        let longest = encode_start(u32::MAX, &"\"".repeat(MAX_NAME_BYTES), MAX_FILE_SIZE);
        assert!(longest.len() < MAX_CONTROL_BYTES, "{}", longest.len());
        assert_eq!(MAX_MESSAGE_BYTES, CHUNK_SIZE + MAX_CONTROL_BYTES);
        assert_eq!(printable("a\u{1b}[2Jb"), "a\\u{1b}[2Jb");
    }

    #[test]
    fn every_error_names_the_transfers_it_ended_in_its_acks() {
        let (_dir, mut rx) = receiver();
        // No transfer: one file-error without id.
        let error = chunk(&mut rx, b"x").unwrap_err();
        assert_eq!(
            error.acks(),
            [
                r#"{"type":"file-error","reason":"chunk without start: 1-byte binary message with no file-start"}"#
            ]
        );
        // Bad name: the id of its file-start.
        let error = start(&mut rx, 9, "bad\u{1}name", 1).unwrap_err();
        assert_eq!(error.transfer_ids(), [9]);
        let acks = error.acks();
        assert_eq!(
            parse_text(&acks[0]),
            Ok(Some(Control::Ack(Ack::Failed {
                id: Some(9),
                reason: "bad name \"bad\\u{1}name\": control character in name".into()
            })))
        );
        // Both transfers of a start-before-end.
        start(&mut rx, 1, "a", 2).unwrap();
        assert_eq!(
            start(&mut rx, 2, "b", 2).unwrap_err().transfer_ids(),
            [1, 2]
        );
        // A malformed message aborts the open transfer: its id.
        start(&mut rx, 3, "c", 2).unwrap();
        let error = rx
            .on_message(true, br#"{"type":"file-end","id":3}"#)
            .unwrap_err();
        assert_eq!(error.transfer_ids(), [3]);
        let error = rx
            .on_message(true, br#"{"type":"file-end","id":3}"#)
            .unwrap_err();
        assert_eq!(error.transfer_ids(), Vec::<u32>::new(), "nothing was open");
        // A completed transfer's ack.
        let Ok(Received::Completed(file)) = transfer(&mut rx, 4, "d", b"dd") else {
            panic!()
        };
        assert_eq!(file.ack(), encode_received(4, &sha256_hex(b"dd")));
        // Acks that reach a receiver are passed on, not taken for chat.
        assert_eq!(
            rx.on_message(true, file.ack().as_bytes()),
            Ok(Received::Ack(Ack::Received {
                id: 4,
                sha256: sha256_hex(b"dd")
            }))
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
        assert_eq!(
            parse_text(&encode_received(4, &"cd".repeat(32))),
            Ok(Some(Control::Ack(Ack::Received {
                id: 4,
                sha256: "cd".repeat(32)
            })))
        );
        assert_eq!(
            parse_text(&encode_error(Some(5), "hash mismatch")),
            Ok(Some(Control::Ack(Ack::Failed {
                id: Some(5),
                reason: "hash mismatch".into()
            })))
        );
        assert_eq!(
            parse_text(&encode_declined(6)),
            Ok(Some(Control::Ack(Ack::Declined { id: 6 })))
        );
        assert_eq!(
            parse_text(&encode_error(None, "chunk without start")),
            Ok(Some(Control::Ack(Ack::Failed {
                id: None,
                reason: "chunk without start".into()
            })))
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
            r#"{"type":"file-received","id":1}"#,
            r#"{"type":"file-received","sha256":"0000000000000000000000000000000000000000000000000000000000000000"}"#,
            r#"{"type":"file-error","id":1}"#,
            r#"{"type":"file-error","id":"1","reason":"x"}"#,
            r#"{"type":"file-error","reason":7}"#,
            r#"{"type":"file-declined"}"#,
        ] {
            assert!(
                matches!(
                    parse_text(bad),
                    Err(FileError::Malformed { open: None, .. })
                ),
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

    /// A received file gets the mode any program's new file gets (0o666 less the umask), not
    /// tempfile's private 0o600.
    #[cfg(unix)]
    #[test]
    fn received_files_get_the_usual_mode() {
        use std::os::unix::fs::PermissionsExt;
        let (dir, mut rx) = receiver();
        let Ok(Received::Completed(file)) = transfer(&mut rx, 1, "mode.txt", b"data") else {
            panic!()
        };
        let usual = dir.path().join("usual");
        std::fs::write(&usual, b"x").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&file.path), mode(&usual));
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
        // Already on disk under a fresh temporary name, not yet under the final one.
        let names = names_in(dir.path());
        assert_eq!(names.len(), 1, "{names:?}");
        let temp = &names[0];
        assert!(
            temp.starts_with(".miaou-peer-1-") && temp.ends_with(".part"),
            "{temp}"
        );
        assert_eq!(std::fs::metadata(dir.path().join(temp)).unwrap().len(), 6);
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
    fn an_existing_file_is_never_replaced_the_new_one_gets_a_numbered_name() {
        let (dir, mut rx) = receiver();
        std::fs::write(dir.path().join("a.txt"), b"old").unwrap();
        std::fs::write(dir.path().join(".bashrc"), b"# mine").unwrap();
        let Ok(Received::Completed(file)) = transfer(&mut rx, 1, "a.txt", b"new contents") else {
            panic!()
        };
        assert_eq!(
            (file.name.as_str(), file.requested.as_str()),
            ("a (1).txt", "a.txt")
        );
        assert_eq!(file.path, dir.path().join("a (1).txt"));
        let Ok(Received::Completed(dot)) = transfer(&mut rx, 2, "../.bashrc", b"evil") else {
            panic!()
        };
        assert_eq!(dot.name, ".bashrc (1)");
        assert_eq!(std::fs::read(dir.path().join("a.txt")).unwrap(), b"old");
        assert_eq!(
            std::fs::read(dir.path().join(".bashrc")).unwrap(),
            b"# mine"
        );
        assert_eq!(
            std::fs::read(dir.path().join("a (1).txt")).unwrap(),
            b"new contents"
        );
        assert_eq!(
            std::fs::read(dir.path().join(".bashrc (1)")).unwrap(),
            b"evil"
        );
    }

    #[test]
    fn the_same_name_twice_keeps_both_files() {
        let (dir, mut rx) = receiver();
        let mut written = Vec::new();
        for (id, data) in [b"first".as_slice(), b"second", b"third"]
            .into_iter()
            .enumerate()
        {
            let Ok(Received::Completed(file)) = transfer(&mut rx, id as u32, "x", data) else {
                panic!()
            };
            assert_eq!(std::fs::read(&file.path).unwrap(), data);
            written.push(file.name);
        }
        assert_eq!(written, ["x", "x (1)", "x (2)"]);
        assert_eq!(names_in(dir.path()), ["x", "x (1)", "x (2)"]);
    }

    #[test]
    fn when_every_numbered_name_is_taken_the_transfer_fails_and_nothing_is_touched() {
        let (dir, mut rx) = receiver();
        for attempt in 0..MAX_NAME_TRIES {
            std::fs::write(dir.path().join(numbered_name("f.bin", attempt)), b"").unwrap();
        }
        let error = transfer(&mut rx, 7, "f.bin", b"data").unwrap_err();
        assert_eq!(
            error,
            FileError::NameTaken {
                id: 7,
                name: "f.bin".into()
            }
        );
        assert!(
            error.to_string().starts_with("name taken in transfer 7"),
            "{error}"
        );
        let names = names_in(dir.path());
        assert_eq!(
            names.len(),
            MAX_NAME_TRIES as usize,
            "temporary file deleted"
        );
        assert!(names
            .iter()
            .all(|n| std::fs::read(dir.path().join(n)).unwrap().is_empty()));
    }

    #[test]
    fn numbered_names_keep_the_extension_and_the_length_limit() {
        assert_eq!(numbered_name("a.txt", 0), "a.txt");
        assert_eq!(numbered_name("a.txt", 1), "a (1).txt");
        assert_eq!(numbered_name("archive.tar.gz", 2), "archive.tar (2).gz");
        assert_eq!(numbered_name("noext", 3), "noext (3)");
        assert_eq!(numbered_name(".bashrc", 1), ".bashrc (1)");
        assert_eq!(numbered_name("...", 1), ".. (1).");
        let long = "é".repeat(127); // 254 bytes
        let numbered = numbered_name(&long, 999);
        assert!(numbered.len() <= MAX_NAME_BYTES, "{}", numbered.len());
        assert!(numbered.ends_with("é (999)"), "{numbered}");
        assert!(base_name(&numbered).is_ok());
    }

    #[test]
    fn a_received_name_that_looks_like_a_temporary_never_touches_a_live_one() {
        let (dir, mut rx) = receiver();
        let mut other = FileReceiver::new(dir.path(), "peer-1");
        start(&mut other, 1, "slow.bin", 4).unwrap();
        chunk(&mut other, b"sl").unwrap();
        let live = names_in(dir.path()).pop().unwrap();
        // Another sender sends a file named exactly like that temporary file.
        let Ok(Received::Completed(file)) = transfer(&mut rx, 1, &live, b"intruder") else {
            panic!()
        };
        assert_ne!(file.name, live, "the live temporary is not replaced");
        chunk(&mut other, b"ow").unwrap();
        let Ok(Received::Completed(slow)) = end(&mut other, 1, b"slow") else {
            panic!()
        };
        assert_eq!(std::fs::read(&slow.path).unwrap(), b"slow");
        assert_eq!(std::fs::read(&file.path).unwrap(), b"intruder");
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
