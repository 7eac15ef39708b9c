//! End-to-end through real processes: `native-demo serve` and two `native-demo join` exchange
//! messages over real WebRTC data channels. Needs a non-loopback interface for ICE host
//! candidates: run inside tests/scripts/in-netns.sh (the test command does).

mod common;

use miaou_transport::{Event, Transport, TransportConfig};
use std::io::Write;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_native-demo");
const COUNT: usize = 1000;

/// A child process killed on drop, so a failing test leaves nothing running.
struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Its stderr, when started with [`spawn_logged`].
    stderr: Option<Arc<Mutex<String>>>,
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
    Proc {
        child,
        lines,
        stderr: None,
    }
}

/// Like [`spawn`], with stderr collected (see [`Proc::stderr`]) instead of inherited.
fn spawn_logged(args: &[&str]) -> Proc {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("native-demo starts");
    let lines = common::stdout_lines(child.stdout.take().expect("stdout piped"));
    let stderr = Some(common::collect_stderr(
        child.stderr.take().expect("stderr piped"),
    ));
    Proc {
        child,
        lines,
        stderr,
    }
}

impl Proc {
    /// What the process wrote to stderr so far (started with [`spawn_logged`]).
    fn stderr(&self) -> String {
        self.stderr
            .as_ref()
            .expect("started with spawn_logged")
            .lock()
            .unwrap()
            .clone()
    }

    /// Waits until its stderr contains `text`.
    fn wait_stderr(&self, text: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.stderr().contains(text) {
            assert!(
                Instant::now() < deadline,
                "no {text:?} on stderr within {timeout:?}:\n{}",
                self.stderr()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Asserts that no stdout line arrives within `quiet`.
    fn expect_no_line(&self, quiet: Duration) {
        if let Ok(line) = self.lines.recv_timeout(quiet) {
            panic!("unexpected stdout line {line:?}");
        }
    }
}

/// `join` in `room` with `extra` arguments, stderr collected.
fn join_logged(ws: &str, room: &str, extra: &[&str]) -> Proc {
    let mut args = vec!["join", "--signal", ws, "--room", room];
    args.extend_from_slice(extra);
    spawn_logged(&args)
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

#[test]
fn each_received_message_is_one_escaped_line_so_a_peer_cannot_forge_lines() {
    let (_bridge, ws) = bridge();
    let mut receiver = join_logged(&ws, "escape", &["--wait-peers", "1"]);
    // The other peer is a Transport in this process, so it can send what no stdin line can hold.
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let config = TransportConfig::builder(ws.as_str(), "escape")
        .build()
        .expect("config");
    let sender = runtime.block_on(Transport::connect(config)).expect("joins");
    let peer = runtime.block_on(async {
        let wait = async {
            loop {
                if let Some(Event::PeerConnected(peer)) = sender.next_event().await {
                    return peer;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(30), wait)
            .await
            .expect("the channel to join opens")
    });
    let texts = [
        ("a\nb", "a\\nb"),
        ("x\r<fake-id> forged", "x\\r<fake-id> forged"),
        ("two\n\nblank lines\r\n", "two\\n\\nblank lines\\r\\n"),
        ("back\\slash\\n", "back\\\\slash\\\\n"),
        (
            "\u{1b}[2Jtab\there\u{85}\u{2028}",
            "\\u{1b}[2Jtab\\there\\u{85}\\u{2028}",
        ),
        ("plain é", "plain é"),
    ];
    for (text, _) in texts {
        runtime
            .block_on(sender.send_text(&peer, text))
            .expect("sent");
    }
    let me = sender.peer_id().to_string();
    for (text, printed) in texts {
        assert_eq!(
            next_line(&receiver, Duration::from_secs(30)),
            format!("{me} {printed}"),
            "{text:?}"
        );
    }
    // Exactly one line per message: nothing else follows.
    receiver.expect_no_line(Duration::from_millis(500));
    runtime.block_on(sender.close()).expect("close");
    drop(receiver.child.stdin.take());
    assert!(
        wait_exit(&mut receiver, Duration::from_secs(30)).success(),
        "{}",
        receiver.stderr()
    );
}

#[test]
fn a_line_over_the_message_limit_is_skipped_with_a_warning_and_the_session_goes_on() {
    let (_bridge, ws) = bridge();
    let receiver = join_logged(&ws, "long-line", &["--wait-peers", "1"]);
    let mut sender = join_logged(&ws, "long-line", &["--wait-peers", "1"]);
    {
        let mut stdin = sender.child.stdin.take().expect("stdin");
        stdin.write_all(b"before\n").expect("write");
        // One byte over the 64 MiB message limit (miaou_transport::DEFAULT_MAX_MESSAGE_SIZE).
        let long = vec![b'x'; miaou_transport::DEFAULT_MAX_MESSAGE_SIZE + 1];
        stdin.write_all(&long).expect("write the long line");
        stdin.write_all(b"\nafter\n").expect("write");
    } // EOF
    assert!(
        wait_exit(&mut sender, Duration::from_secs(60)).success(),
        "sender exits 0 after skipping the line:\n{}",
        sender.stderr()
    );
    let stderr = sender.stderr();
    assert!(
        stderr.contains("stdin line longer than the message limit; skipped")
            && stderr.contains(&format!(
                "bytes={}",
                miaou_transport::DEFAULT_MAX_MESSAGE_SIZE + 2
            )),
        "{stderr}"
    );
    let got: Vec<String> = (0..2)
        .map(|_| next_line(&receiver, Duration::from_secs(30)))
        .collect();
    assert!(got[0].ends_with(" before"), "{got:?}");
    assert!(got[1].ends_with(" after"), "{got:?}");
    receiver.expect_no_line(Duration::from_millis(500));
}

#[test]
fn wait_peers_2_waits_for_two_open_channels_before_sending() {
    let (_bridge, ws) = bridge();
    let wait2 = ["--wait-peers", "2"];
    let mut a = join_logged(&ws, "three", &wait2);
    let mut b = join_logged(&ws, "three", &wait2);
    let mut stdins: Vec<_> = [&mut a, &mut b]
        .into_iter()
        .map(|p| p.child.stdin.take().expect("stdin"))
        .collect();
    writeln!(stdins[0], "from-a").expect("write");
    writeln!(stdins[1], "from-b").expect("write");
    // a and b have their channel open, and still do not send: one peer is not enough.
    a.wait_stderr("channel open", Duration::from_secs(30));
    b.wait_stderr("channel open", Duration::from_secs(30));
    thread::sleep(Duration::from_secs(1));
    a.expect_no_line(Duration::from_millis(100));
    b.expect_no_line(Duration::from_millis(100));
    assert!(!a.stderr().contains("peers ready"), "{}", a.stderr());

    let mut c = join_logged(&ws, "three", &wait2);
    let mut stdin_c = c.child.stdin.take().expect("stdin");
    writeln!(stdin_c, "from-c").expect("write");
    stdins.push(stdin_c);
    // Now each has two peers and sends its line; each prints the lines of the two others.
    for (proc, expected) in [
        (&a, ["from-b", "from-c"]),
        (&b, ["from-a", "from-c"]),
        (&c, ["from-a", "from-b"]),
    ] {
        let mut got: Vec<(String, String)> = (0..2)
            .map(|_| {
                let line = next_line(proc, Duration::from_secs(30));
                let (peer, text) = line.split_once(' ').expect("peer id and text");
                (text.to_owned(), peer.to_owned())
            })
            .collect();
        got.sort();
        assert_eq!([got[0].0.as_str(), got[1].0.as_str()], expected);
        assert_ne!(got[0].1, got[1].1, "two different senders");
        proc.wait_stderr("peers ready", Duration::from_secs(5));
        proc.expect_no_line(Duration::from_millis(300));
    }
    drop(stdins);
    for proc in [&mut a, &mut b, &mut c] {
        assert!(
            wait_exit(proc, Duration::from_secs(30)).success(),
            "{}",
            proc.stderr()
        );
    }
}

#[test]
fn wait_timeout_expiring_is_a_clear_error_and_a_non_zero_exit() {
    let (_bridge, ws) = bridge();
    let started = Instant::now();
    let mut alone = join_logged(
        &ws,
        "nobody-else",
        &["--wait-peers", "1", "--wait-timeout", "1"],
    );
    let status = wait_exit(&mut alone, Duration::from_secs(15));
    let elapsed = started.elapsed();
    assert!(!status.success(), "exits non-zero");
    assert!(
        elapsed >= Duration::from_secs(1),
        "gave up after {elapsed:?}"
    );
    let stderr = alone.stderr();
    assert!(
        stderr.contains("fewer than 1 peers connected within 1 s"),
        "{stderr}"
    );
}

/// Ctrl-C and SIGTERM end `join` and `echo` at once with status 130 / 143 (128 + the signal),
/// even while their stdin stays open (a blocking stdin read must not hold the process).
#[test]
fn ctrl_c_and_sigterm_end_join_and_echo_at_once() {
    let (_bridge, ws) = bridge();
    for (signal, code, says) in [
        ("-INT", 130, "error: interrupted"),
        ("-TERM", 143, "error: terminated (SIGTERM)"),
    ] {
        for command in ["join", "echo"] {
            let mut proc = spawn_logged(&[command, "--signal", &ws, "--room", "stop", "--no-mdns"]);
            let ready = if command == "join" {
                "joined"
            } else {
                "echoing"
            };
            proc.wait_stderr(ready, Duration::from_secs(30));
            let pid = proc.child.id().to_string();
            assert!(Command::new("kill")
                .args([signal, &pid])
                .status()
                .unwrap()
                .success());
            let status = wait_exit(&mut proc, Duration::from_secs(5));
            assert_eq!(
                status.code(),
                Some(code),
                "{command} {signal}: {}",
                proc.stderr()
            );
            assert!(proc.stderr().contains(says), "{}", proc.stderr());
        }
    }
}

/// `serve` shuts down the same way on Ctrl-C and on SIGTERM (`kill`, systemd, `docker stop`):
/// its WebSocket clients get close code 1001 "bridge shutting down" (RFC 6455 §7.4.1, going
/// away), not a dropped connection (1006), and it exits 0.
#[test]
fn serve_shuts_down_politely_on_ctrl_c_and_sigterm() {
    use futures::{SinkExt, StreamExt};
    use miaou_transport::signaling::protocol::{ClientMessage, PROTOCOL_VERSION};
    use tokio_tungstenite::tungstenite::Message as WsMessage;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for signal in ["-INT", "-TERM"] {
        let (mut serve, ws) = bridge();
        let close = runtime.block_on(async {
            let (mut socket, _) = tokio_tungstenite::connect_async(ws.as_str())
                .await
                .expect("the bridge accepts a WebSocket");
            let join = ClientMessage::Join {
                v: PROTOCOL_VERSION,
                room: "shutdown".into(),
            };
            socket.send(WsMessage::text(join.to_json())).await.unwrap();
            // The welcome: joined, so the bridge holds this client in a room.
            let welcome = tokio::time::timeout(Duration::from_secs(10), socket.next())
                .await
                .expect("a welcome in time");
            assert!(
                matches!(&welcome, Some(Ok(WsMessage::Text(t))) if t.contains("welcome")),
                "{welcome:?}"
            );
            let pid = serve.child.id().to_string();
            assert!(Command::new("kill")
                .args([signal, &pid])
                .status()
                .unwrap()
                .success());
            tokio::time::timeout(Duration::from_secs(10), socket.next())
                .await
                .expect("the bridge closes the socket in time")
        });
        match close {
            Some(Ok(WsMessage::Close(Some(frame)))) => {
                assert_eq!(u16::from(frame.code), 1001, "{signal}: {frame:?}");
                assert_eq!(frame.reason.as_str(), "bridge shutting down");
            }
            other => panic!("{signal}: expected close 1001, got {other:?}"),
        }
        let status = wait_exit(&mut serve, Duration::from_secs(10));
        assert!(status.success(), "{signal}: serve exits 0, got {status}");
    }
}
