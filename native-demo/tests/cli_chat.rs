//! End-to-end through real processes: `native-demo serve` and two `native-demo join` exchange
//! messages over real WebRTC data channels. Needs a non-loopback interface for ICE host
//! candidates: run inside tests/scripts/in-netns.sh (the test command does).

mod common;

use std::io::Write;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_native-demo");
const COUNT: usize = 1000;

/// A child process killed on drop, so a failing test leaves nothing running.
struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(args: &[&str]) -> Proc {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("native-demo starts");
    let lines = common::stdout_lines(child.stdout.take().expect("stdout piped"));
    Proc { child, lines }
}

fn next_line(proc: &Proc, timeout: Duration) -> String {
    proc.lines
        .recv_timeout(timeout)
        .expect("a stdout line in time")
}

fn wait_exit(proc: &mut Proc, timeout: Duration) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = proc.child.try_wait().expect("try_wait") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "process did not exit within {timeout:?}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// Starts the bridge on a free port and returns it with its WebSocket URL.
fn bridge() -> (Proc, String) {
    let serve = spawn(&["serve", "--addr", "127.0.0.1:0"]);
    loop {
        let line = next_line(&serve, Duration::from_secs(30));
        if let Some(url) = line.strip_prefix("signaling: ") {
            let url = url.to_owned();
            return (serve, url);
        }
    }
}

#[test]
fn two_processes_exchange_1000_messages_each_way_in_order() {
    let (_bridge, ws) = bridge();
    let mut a = spawn(&[
        "join",
        "--signal",
        &ws,
        "--room",
        "cli-chat",
        "--wait-peers",
        "1",
    ]);
    let mut b = spawn(&[
        "join",
        "--signal",
        &ws,
        "--room",
        "cli-chat",
        "--wait-peers",
        "1",
    ]);

    let lines_from = |who: &str| {
        (0..COUNT)
            .map(|i| format!("{who}-{i} {}", "z".repeat(i % 97)))
            .collect::<Vec<_>>()
    };
    let (sent_by_a, sent_by_b) = (lines_from("a"), lines_from("b"));
    let mut stdin_a = a.child.stdin.take().expect("stdin");
    let mut stdin_b = b.child.stdin.take().expect("stdin");
    for line in &sent_by_a {
        writeln!(stdin_a, "{line}").expect("write to a");
    }
    for line in &sent_by_b {
        writeln!(stdin_b, "{line}").expect("write to b");
    }

    // Each prints `<peer-id> <text>`; all from the one other peer, in send order.
    let received = |proc: &Proc| {
        (0..COUNT)
            .map(|_| next_line(proc, Duration::from_secs(60)))
            .collect::<Vec<_>>()
    };
    let (got_a, got_b) = (received(&a), received(&b));
    let strip = |lines: &[String]| {
        let sender = lines[0]
            .split_once(' ')
            .expect("peer id and text")
            .0
            .to_owned();
        let texts: Vec<String> = lines
            .iter()
            .map(|l| {
                let (peer, text) = l.split_once(' ').expect("peer id and text");
                assert_eq!(peer, sender, "one sender only");
                text.to_owned()
            })
            .collect();
        (sender, texts)
    };
    let (a_heard, texts_at_a) = strip(&got_a);
    let (b_heard, texts_at_b) = strip(&got_b);
    assert_ne!(a_heard, b_heard);
    assert_eq!(texts_at_a, sent_by_b);
    assert_eq!(texts_at_b, sent_by_a);

    drop(stdin_a);
    drop(stdin_b);
    assert!(
        wait_exit(&mut a, Duration::from_secs(30)).success(),
        "a exits 0 after stdin EOF"
    );
    assert!(
        wait_exit(&mut b, Duration::from_secs(30)).success(),
        "b exits 0 after stdin EOF"
    );
}

#[test]
fn lines_sent_right_before_eof_are_delivered() {
    // The sender closes stdin immediately after writing: close() must still deliver all.
    let (_bridge, ws) = bridge();
    let receiver = spawn(&[
        "join",
        "--signal",
        &ws,
        "--room",
        "eof",
        "--wait-peers",
        "1",
    ]);
    let mut sender = spawn(&[
        "join",
        "--signal",
        &ws,
        "--room",
        "eof",
        "--wait-peers",
        "1",
    ]);
    {
        let mut stdin = sender.child.stdin.take().expect("stdin");
        for i in 0..COUNT {
            writeln!(stdin, "last-burst-{i}").expect("write");
        }
    } // EOF here
    assert!(
        wait_exit(&mut sender, Duration::from_secs(30)).success(),
        "sender exits 0"
    );
    for i in 0..COUNT {
        let line = next_line(&receiver, Duration::from_secs(30));
        assert!(
            line.ends_with(&format!(" last-burst-{i}")),
            "line {i}: {line}"
        );
    }
}

/// Runs `native-demo ARGS` with no stdin and asserts it fails with `expected` on stderr.
fn fails_with(args: &[&str], expected: &str) {
    let output = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(expected), "{stderr}");
}

#[test]
fn unreachable_signaling_server_is_a_clear_error() {
    // Port 9 (discard) on loopback: nothing listens there in the test namespace.
    fails_with(
        &["join", "--signal", "ws://127.0.0.1:9/ws", "--room", "x"],
        "signaling connection to ws://127.0.0.1:9/ws failed",
    );
}

#[test]
fn a_line_that_is_not_utf8_is_sent_with_replacements_and_nothing_is_lost() {
    let (_bridge, ws) = bridge();
    let receiver = spawn(&[
        "join",
        "--signal",
        &ws,
        "--room",
        "bytes",
        "--wait-peers",
        "1",
    ]);
    let mut sender = spawn(&[
        "join",
        "--signal",
        &ws,
        "--room",
        "bytes",
        "--wait-peers",
        "1",
    ]);
    {
        let mut stdin = sender.child.stdin.take().expect("stdin");
        stdin
            .write_all(b"first\n\xff\xfebroken\nlast\n")
            .expect("write");
    }
    assert!(
        wait_exit(&mut sender, Duration::from_secs(30)).success(),
        "sender exits 0"
    );
    let got: Vec<String> = (0..3)
        .map(|_| next_line(&receiver, Duration::from_secs(30)))
        .collect();
    assert!(got[0].ends_with(" first"), "{got:?}");
    assert!(got[1].ends_with(" \u{FFFD}\u{FFFD}broken"), "{got:?}");
    assert!(got[2].ends_with(" last"), "{got:?}");
}

#[test]
fn a_web_page_url_instead_of_the_signaling_endpoint_is_explained() {
    let (_bridge, ws) = bridge();
    let page_url = ws.trim_end_matches("ws"); // ws://ADDR/ : the demo page, not /ws
    fails_with(
        &["join", "--signal", page_url, "--room", "x"],
        "instead of a WebSocket upgrade; is this the signaling endpoint",
    );
}

#[test]
fn bad_room_name_is_rejected_before_connecting() {
    fails_with(
        &["join", "--signal", "ws://127.0.0.1:9/ws", "--room", ""],
        "room name is empty",
    );
}

/// Sends `line` to `stdin` every 200 ms until `proc` prints a line ending with it.
fn send_until_heard(stdin: &mut std::process::ChildStdin, line: &str, proc: &Proc) -> bool {
    let deadline = Instant::now() + Duration::from_secs(45);
    while Instant::now() < deadline {
        writeln!(stdin, "{line}").expect("write");
        if let Ok(got) = proc.lines.recv_timeout(Duration::from_millis(200)) {
            if got.ends_with(&format!(" {line}")) {
                return true;
            }
        }
    }
    false
}

#[test]
fn a_failed_connection_is_re_established_while_both_stay_in_the_room() {
    let (_bridge, ws) = bridge();
    // Short ICE timers so the failure shows within seconds.
    let fast = ["--ice-disconnected-ms", "800", "--ice-failed-ms", "1600"];
    let join = |extra: &[&str]| {
        let mut args = vec![
            "join",
            "--signal",
            ws.as_str(),
            "--room",
            "reconnect",
            "--wait-peers",
            "1",
        ];
        args.extend_from_slice(extra);
        spawn(&args)
    };
    let mut a = join(&fast);
    let mut b = join(&fast);
    let mut stdin_a = a.child.stdin.take().expect("stdin");
    let mut stdin_b = b.child.stdin.take().expect("stdin");
    assert!(
        send_until_heard(&mut stdin_a, "before", &b),
        "first connection works"
    );

    // Freeze a: its WebSocket stays up (the bridge keeps it in the room) but ICE consent
    // checks stop, so b's connection fails; b (the offerer) retries with backoff.
    let pid = a.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap()
        .success());
    thread::sleep(Duration::from_secs(5));
    assert!(Command::new("kill")
        .args(["-CONT", &pid])
        .status()
        .unwrap()
        .success());

    assert!(
        send_until_heard(&mut stdin_b, "after b->a", &a),
        "b reaches a again"
    );
    assert!(
        send_until_heard(&mut stdin_a, "after a->b", &b),
        "a reaches b again"
    );
    drop(stdin_a);
    drop(stdin_b);
    assert!(wait_exit(&mut a, Duration::from_secs(30)).success());
    assert!(wait_exit(&mut b, Duration::from_secs(30)).success());
}
