//! File transfer end to end through real processes: `native-demo serve`, `native-demo send` and
//! `native-demo receive` over real WebRTC data channels (docs/file-transfer.md). A few tests
//! play one side with the library itself, to send what the CLI never would (a wrong hash, a
//! path in the name, a transfer cut short) or to check the exact messages the CLI sends.
//! Needs a non-loopback interface for ICE host candidates: run inside tests/scripts/in-netns.sh.
//!
//! `MIAOU_BIG_FILE_MIB` (default 64) sets the size of the streaming test's file; from 256 MiB on
//! it also asserts that both processes peaked below 100 MiB of resident memory.

mod common;

use miaou_transport::{Bytes, Event, Transport, TransportConfig};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_native-demo");
const CHUNK: usize = 64 * 1024;

/// A child process killed on drop; stdout lines arrive on a channel, stderr is collected.
struct Proc {
    name: String,
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: Arc<Mutex<String>>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn next_line(&self, timeout: Duration) -> String {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => line,
            Err(e) => panic!(
                "no stdout line from {} within {timeout:?} ({e}); stderr:\n{}",
                self.name,
                self.stderr()
            ),
        }
    }

    fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // Let the reader threads drain the pipes.
                thread::sleep(Duration::from_millis(100));
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {timeout:?}; stderr:\n{}",
                self.name,
                self.stderr()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The `peak RSS <n> KiB` the command logs on exit.
    fn peak_rss_kib(&self) -> u64 {
        let stderr = self.stderr();
        stderr
            .lines()
            .find_map(|l| {
                l.split("peak RSS ")
                    .nth(1)?
                    .split(" KiB")
                    .next()?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no `peak RSS` line from {}:\n{stderr}", self.name))
    }
}

fn spawn(name: &str, args: &[&str]) -> Proc {
    let mut child = Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "info,webrtc=error,webrtc_ice=error,webrtc_sctp=error,webrtc_dtls=error,webrtc_mdns=error")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("native-demo starts");
    let lines = common::stdout_lines(child.stdout.take().expect("stdout piped"));
    let stderr = common::collect_stderr(child.stderr.take().expect("stderr piped"));
    Proc {
        name: name.to_owned(),
        child,
        lines,
        stderr,
    }
}

/// Starts the bridge on a free port and returns it with its WebSocket URL.
fn bridge() -> (Proc, String) {
    let serve = spawn("serve", &["serve", "--addr", "127.0.0.1:0"]);
    loop {
        let line = serve.next_line(Duration::from_secs(30));
        if let Some(url) = line.strip_prefix("signaling: ") {
            let url = url.to_owned();
            return (serve, url);
        }
    }
}

fn receive(ws: &str, room: &str, out: &Path, count: usize) -> Proc {
    let out = out.to_str().expect("UTF-8 temp path");
    spawn(
        "receive",
        &[
            "receive",
            "--signal",
            ws,
            "--room",
            room,
            "--out",
            out,
            "--count",
            &count.to_string(),
        ],
    )
}

fn send(ws: &str, room: &str, files: &[PathBuf]) -> Proc {
    let mut args = vec!["send", "--signal", ws, "--room", room, "--wait-peers", "1"];
    args.extend(files.iter().map(|f| f.to_str().expect("UTF-8 temp path")));
    spawn("send", &args)
}

/// Deterministic pseudo-random bytes (SplitMix64), so a failure can be reproduced from the seed.
struct Noise(u64);

impl Noise {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
        }
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut buf = vec![0; len];
        self.fill(&mut buf);
        buf
    }
}

fn seed() -> u64 {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("noise seed: {seed}");
    seed
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn sha256_of_file(path: &Path) -> String {
    let mut file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).unwrap();
        if n == 0 {
            return hex::encode(hasher.finalize());
        }
        hasher.update(&buf[..n]);
    }
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn files_of_boundary_sizes_arrive_with_matching_sha256() {
    let (_bridge, ws) = bridge();
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let mut noise = Noise(seed());
    let sizes = [
        ("empty.bin", 0),
        ("one.bin", 1),
        ("chunk.bin", CHUNK),
        ("chunk-plus-one.bin", CHUNK + 1),
        ("random.bin", 3 * 1024 * 1024 + 4321),
    ];
    let mut files = Vec::new();
    let mut expected = Vec::new();
    for (name, len) in sizes {
        let data = noise.bytes(len);
        let path = src.path().join(name);
        std::fs::write(&path, &data).unwrap();
        expected.push((format!("{}  {name}", sha256_hex(&data)), data));
        files.push(path);
    }

    let mut receiver = receive(&ws, "files", dst.path(), sizes.len());
    let mut sender = send(&ws, "files", &files);
    let started = Instant::now();
    let lines: Vec<String> = (0..sizes.len())
        .map(|_| receiver.next_line(Duration::from_secs(120)))
        .collect();
    eprintln!(
        "{} files ({} bytes) in {:?}",
        sizes.len(),
        sizes.iter().map(|s| s.1).sum::<usize>(),
        started.elapsed()
    );

    assert_eq!(
        lines,
        expected
            .iter()
            .map(|(line, _)| line.clone())
            .collect::<Vec<_>>(),
        "sha256sum lines, in send order"
    );
    for ((name, _), (_, data)) in sizes.iter().zip(&expected) {
        let got = std::fs::read(dst.path().join(name)).unwrap();
        assert!(
            got == *data,
            "{name}: received bytes differ from the source"
        );
    }
    let sent = sender.wait_exit(Duration::from_secs(60));
    assert!(sent.success(), "send exits 0; stderr:\n{}", sender.stderr());
    let received = receiver.wait_exit(Duration::from_secs(60));
    assert!(
        received.success(),
        "receive exits 0 after --count files; stderr:\n{}",
        receiver.stderr()
    );
    let mut names: Vec<String> = sizes.iter().map(|s| s.0.to_owned()).collect();
    names.sort();
    assert_eq!(
        names_in(dst.path()),
        names,
        "exactly the files, no temporary file left"
    );
}

/// Streams one big file (MIAOU_BIG_FILE_MIB, default 64) and reports both processes' peak RSS.
#[test]
fn big_file_streams_with_flat_memory() {
    let mib: u64 = std::env::var("MIAOU_BIG_FILE_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let size = mib * 1024 * 1024;
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let path = src.path().join("big.bin");
    let source_sha = {
        let mut noise = Noise(seed());
        let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        for _ in 0..mib {
            noise.fill(&mut buf);
            hasher.update(&buf);
            file.write_all(&buf).unwrap();
        }
        file.flush().unwrap();
        hex::encode(hasher.finalize())
    };

    let (_bridge, ws) = bridge();
    let mut receiver = receive(&ws, "big", dst.path(), 1);
    let mut sender = send(&ws, "big", &[path]);
    let started = Instant::now();
    // Generous: an unoptimised build moves a few MiB/s.
    let timeout = Duration::from_secs(120 + mib * 3);
    let line = receiver.next_line(timeout);
    let elapsed = started.elapsed();
    assert_eq!(line, format!("{source_sha}  big.bin"));
    assert!(
        sender.wait_exit(Duration::from_secs(60)).success(),
        "send exits 0; stderr:\n{}",
        sender.stderr()
    );
    assert!(
        receiver.wait_exit(Duration::from_secs(60)).success(),
        "receive exits 0; stderr:\n{}",
        receiver.stderr()
    );
    assert_eq!(
        std::fs::metadata(dst.path().join("big.bin")).unwrap().len(),
        size
    );
    assert_eq!(
        sha256_of_file(&dst.path().join("big.bin")),
        source_sha,
        "file on disk equals the source"
    );

    let (send_rss, receive_rss) = (sender.peak_rss_kib(), receiver.peak_rss_kib());
    eprintln!(
        "{mib} MiB in {:.1} s ({:.1} MiB/s); peak RSS: send {:.1} MiB, receive {:.1} MiB",
        elapsed.as_secs_f64(),
        mib as f64 / elapsed.as_secs_f64(),
        send_rss as f64 / 1024.0,
        receive_rss as f64 / 1024.0
    );
    if mib >= 256 {
        assert!(
            send_rss < 100 * 1024,
            "send peaked at {send_rss} KiB for a {mib} MiB file"
        );
        assert!(
            receive_rss < 100 * 1024,
            "receive peaked at {receive_rss} KiB for a {mib} MiB file"
        );
    }
}

// ---- one side played by the library ------------------------------------------------------------

enum Out {
    Text(String),
    Binary(Vec<u8>),
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Joins `room`, waits for one peer, sends `messages` to it, then closes (losslessly, when the
/// peer is still there).
async fn raw_send(ws: &str, room: &str, messages: Vec<Out>) {
    let transport = Transport::connect(TransportConfig::builder(ws, room).build().unwrap())
        .await
        .unwrap();
    let peer = loop {
        match tokio::time::timeout(Duration::from_secs(60), transport.next_event()).await {
            Ok(Some(Event::PeerConnected(peer))) => break peer,
            Ok(Some(_)) => {}
            other => panic!("no peer connected: {other:?}"),
        }
    };
    for message in messages {
        match message {
            Out::Text(text) => transport.send_text(&peer, &text).await.unwrap(),
            Out::Binary(data) => transport.send(&peer, Bytes::from(data)).await.unwrap(),
        }
    }
    // A receive that rejected the transfer exits at once and never acknowledges our close.
    if let Err(e) = transport.close().await {
        eprintln!("raw sender: close: {e}");
    }
}

fn start(id: u32, name: &str, size: usize) -> Out {
    Out::Text(format!(
        r#"{{"type":"file-start","id":{id},"name":{},"size":{size}}}"#,
        serde_json::to_string(name).unwrap()
    ))
}

fn end(id: u32, sha256: &str) -> Out {
    Out::Text(format!(
        r#"{{"type":"file-end","id":{id},"sha256":"{sha256}"}}"#
    ))
}

#[test]
fn a_path_in_the_name_is_reduced_to_its_base_name() {
    let (_bridge, ws) = bridge();
    let dst = tempfile::tempdir().unwrap();
    let inbox = dst.path().join("inbox");
    let mut receiver = receive(&ws, "names", &inbox, 2);
    let data = b"not where you think".to_vec();
    let sha = sha256_hex(&data);
    runtime().block_on(raw_send(
        &ws,
        "names",
        vec![
            Out::Text("plain chat is ignored by receive".into()),
            start(1, "../escaped.txt", data.len()),
            Out::Binary(data.clone()),
            end(1, &sha),
            start(2, "C:\\Windows\\win.ini", data.len()),
            Out::Binary(data.clone()),
            end(2, &sha),
        ],
    ));
    assert_eq!(
        receiver.next_line(Duration::from_secs(60)),
        format!("{sha}  escaped.txt")
    );
    assert_eq!(
        receiver.next_line(Duration::from_secs(60)),
        format!("{sha}  win.ini")
    );
    assert!(
        receiver.wait_exit(Duration::from_secs(60)).success(),
        "{}",
        receiver.stderr()
    );
    assert_eq!(
        names_in(&inbox),
        vec!["escaped.txt".to_owned(), "win.ini".to_owned()]
    );
    assert_eq!(
        names_in(dst.path()),
        vec!["inbox".to_owned()],
        "nothing written outside --out"
    );
    assert!(receiver
        .stderr()
        .contains("chat: plain chat is ignored by receive"));
}

#[test]
fn hash_mismatch_fails_receive_and_keeps_nothing() {
    let (_bridge, ws) = bridge();
    let dst = tempfile::tempdir().unwrap();
    let mut receiver = receive(&ws, "bad-hash", dst.path(), 1);
    let data = vec![7u8; CHUNK + 10];
    runtime().block_on(raw_send(
        &ws,
        "bad-hash",
        vec![
            start(1, "tampered.bin", data.len()),
            Out::Binary(data[..CHUNK].to_vec()),
            Out::Binary(data[CHUNK..].to_vec()),
            end(1, &sha256_hex(b"something else")),
        ],
    ));
    let status = receiver.wait_exit(Duration::from_secs(60));
    let stderr = receiver.stderr();
    assert!(
        !status.success(),
        "receive must fail on a hash mismatch; stderr:\n{stderr}"
    );
    assert!(
        stderr.contains("hash mismatch in transfer 1 (tampered.bin)"),
        "{stderr}"
    );
    assert!(
        receiver.lines.try_recv().is_err(),
        "no sha256sum line for a bad file"
    );
    assert!(
        names_in(dst.path()).is_empty(),
        "neither the file nor its temporary is kept: {:?}",
        names_in(dst.path())
    );
}

#[test]
fn sender_leaving_mid_file_fails_receive() {
    let (_bridge, ws) = bridge();
    let dst = tempfile::tempdir().unwrap();
    let mut receiver = receive(&ws, "cut", dst.path(), 1);
    runtime().block_on(raw_send(
        &ws,
        "cut",
        vec![
            start(3, "half.bin", 4 * CHUNK),
            Out::Binary(vec![1; CHUNK]),
            Out::Binary(vec![2; CHUNK]),
        ],
    ));
    let status = receiver.wait_exit(Duration::from_secs(60));
    let stderr = receiver.stderr();
    assert!(!status.success(), "receive must fail; stderr:\n{stderr}");
    assert!(
        stderr.contains(
            "peer disconnected mid-file: transfer 3 (half.bin) stopped at 131072 of 262144 bytes"
        ),
        "{stderr}"
    );
    assert!(
        names_in(dst.path()).is_empty(),
        "partial file deleted: {:?}",
        names_in(dst.path())
    );
}

#[test]
fn protocol_violation_fails_receive_with_a_clear_error() {
    let (_bridge, ws) = bridge();
    let dst = tempfile::tempdir().unwrap();
    let mut receiver = receive(&ws, "stray", dst.path(), 1);
    runtime().block_on(raw_send(&ws, "stray", vec![Out::Binary(vec![0; 100])]));
    let status = receiver.wait_exit(Duration::from_secs(60));
    let stderr = receiver.stderr();
    assert!(!status.success());
    assert!(
        stderr.contains("chunk without start: 100-byte binary message with no file-start"),
        "{stderr}"
    );
}

#[test]
fn send_emits_the_documented_messages_in_64_kib_chunks() {
    let (_bridge, ws) = bridge();
    let src = tempfile::tempdir().unwrap();
    let data = Noise(seed()).bytes(3 * CHUNK + 1234);
    let path = src.path().join("chunks.bin");
    std::fs::write(&path, &data).unwrap();
    let rt = runtime();
    let transport = rt
        .block_on(Transport::connect(
            TransportConfig::builder(&ws, "chunks").build().unwrap(),
        ))
        .unwrap();
    let mut sender = send(&ws, "chunks", &[path]);
    let mut messages = Vec::new();
    rt.block_on(async {
        while messages.len() < 6 {
            let message = tokio::time::timeout(Duration::from_secs(60), transport.recv())
                .await
                .expect("messages in time")
                .unwrap();
            messages.push(message);
        }
    });
    assert!(
        sender.wait_exit(Duration::from_secs(60)).success(),
        "{}",
        sender.stderr()
    );
    rt.block_on(transport.close()).unwrap();

    assert!(messages[0].text);
    let startmsg: serde_json::Value = serde_json::from_slice(&messages[0].data).unwrap();
    assert_eq!(
        startmsg,
        serde_json::json!({"type": "file-start", "id": 1, "name": "chunks.bin", "size": data.len()})
    );
    let chunks: Vec<&[u8]> = messages[1..5]
        .iter()
        .map(|m| {
            assert!(!m.text);
            &m.data[..]
        })
        .collect();
    assert_eq!(
        chunks.iter().map(|c| c.len()).collect::<Vec<_>>(),
        vec![CHUNK, CHUNK, CHUNK, 1234]
    );
    assert!(chunks.concat() == data);
    assert!(messages[5].text);
    let endmsg: serde_json::Value = serde_json::from_slice(&messages[5].data).unwrap();
    assert_eq!(
        endmsg,
        serde_json::json!({"type": "file-end", "id": 1, "sha256": sha256_hex(&data)})
    );
}

#[test]
fn send_errors_are_clear_and_non_zero() {
    let missing = Command::new(BIN)
        .args([
            "send",
            "--signal",
            "ws://127.0.0.1:9/ws",
            "--room",
            "x",
            "/nonexistent/file.bin",
        ])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        stderr.contains("cannot read /nonexistent/file.bin"),
        "{stderr}"
    );

    let dir = tempfile::tempdir().unwrap();
    let not_file = Command::new(BIN)
        .args(["send", "--signal", "ws://127.0.0.1:9/ws", "--room", "x"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!not_file.status.success());
    assert!(String::from_utf8_lossy(&not_file.stderr).contains("is not a regular file"));

    let (_bridge, ws) = bridge();
    let file = dir.path().join("lonely.txt");
    std::fs::write(&file, b"nobody listens").unwrap();
    let lonely = Command::new(BIN)
        .args([
            "send",
            "--signal",
            &ws,
            "--room",
            "empty-room",
            "--wait-timeout",
            "2",
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!lonely.status.success());
    let stderr = String::from_utf8_lossy(&lonely.stderr);
    assert!(
        stderr.contains("fewer than 1 peers connected within 2 s"),
        "{stderr}"
    );
}
