//! LAN discovery with real parts: `native-demo` processes in two network namespaces that the
//! test creates (`ip netns add`), joined by a veth pair with 198.18.1.1/24 and 198.18.1.2/24,
//! a multicast route (224.0.0.0/4) and a default route; nothing leaves them, and they are
//! always deleted. Needs root (CI and `npm test` run as root); skipped with a message
//! otherwise.

mod common;

use std::io::Write;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The binary under test; `MIAOU_NATIVE_DEMO` overrides it (as in tests/e2e/harness.mjs).
fn bin() -> String {
    std::env::var("MIAOU_NATIVE_DEMO")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_native-demo").to_owned())
}
const COUNT: usize = 1000;
const LINE_WAIT: Duration = Duration::from_secs(60);

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().expect("id runs");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// Skips the calling test (with a message) unless we can create namespaces.
macro_rules! require_root {
    () => {
        if !is_root() {
            eprintln!("SKIPPED: needs root to create network namespaces");
            return;
        }
    };
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip runs");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// How the namespaces of a [`Netns`] are connected.
#[derive(PartialEq)]
enum Link {
    /// Not at all.
    None,
    /// The first two by one veth pair.
    Veth,
    /// All of them to a Linux bridge `br0` in one more namespace (a switch).
    Switch,
}

/// Namespaces `<name>-1`, `<name>-2`, …, each with lo up and, when linked, `v<i>` with
/// 198.18.1.<i>/24, a multicast route and a default route. Deleted on drop.
struct Netns {
    names: Vec<String>,
}

impl Netns {
    fn new(count: usize, link: Link) -> Netns {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        remove_stale();
        let base = format!(
            "mt-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut netns = Netns { names: Vec::new() };
        for i in 1..=count {
            let name = format!("{base}-{i}");
            ip(&["netns", "add", &name]);
            netns.names.push(name.clone());
            ip(&["-n", &name, "link", "set", "lo", "up"]);
        }
        match link {
            Link::None => {}
            Link::Veth => {
                let (a, b) = (&netns.names[0], &netns.names[1]);
                ip(&[
                    "link", "add", "v1", "netns", a, "type", "veth", "peer", "name", "v2", "netns",
                    b,
                ]);
            }
            Link::Switch => {
                let switch = format!("{base}-sw");
                ip(&["netns", "add", &switch]);
                netns.names.push(switch.clone());
                ip(&["-n", &switch, "link", "add", "br0", "type", "bridge"]);
                ip(&["-n", &switch, "link", "set", "br0", "up"]);
                for i in 1..=count {
                    let (dev, port) = (format!("v{i}"), format!("p{i}"));
                    let ns = &netns.names[i - 1];
                    ip(&[
                        "link", "add", &dev, "netns", ns, "type", "veth", "peer", "name", &port,
                        "netns", &switch,
                    ]);
                    ip(&["-n", &switch, "link", "set", &port, "master", "br0"]);
                    ip(&["-n", &switch, "link", "set", &port, "up"]);
                }
            }
        }
        if link != Link::None {
            let linked = if link == Link::Veth { 2 } else { count };
            for i in 1..=linked {
                let (ns, dev, addr) = (
                    netns.names[i - 1].clone(),
                    format!("v{i}"),
                    format!("198.18.1.{i}/24"),
                );
                ip(&["-n", &ns, "addr", "add", &addr, "dev", &dev]);
                ip(&["-n", &ns, "link", "set", &dev, "up"]);
                ip(&["-n", &ns, "route", "add", "224.0.0.0/4", "dev", &dev]);
                ip(&["-n", &ns, "route", "add", "default", "dev", &dev]);
            }
        }
        netns
    }

    fn name(&self, i: usize) -> &str {
        &self.names[i]
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

/// Deletes namespaces left by earlier runs of this test binary that were killed.
fn remove_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(pid) = name.strip_prefix("mt-").and_then(|r| r.split('-').next()) else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

/// A `native-demo` process in a namespace: stdout lines on a channel, stderr kept for
/// failure messages. Killed on drop.
struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    stderr: Arc<Mutex<String>>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_in(ns: &str, args: &[&str]) -> Proc {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, &bin()])
        .args(args)
        .env("RUST_LOG", "info,webrtc=error,webrtc_ice=error,webrtc_sctp=error,webrtc_dtls=error,webrtc_mdns=error,webrtc_srtp=error")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ip netns exec native-demo starts");
    let lines = common::stdout_lines(child.stdout.take().expect("stdout piped"));
    let stderr = common::collect_stderr(child.stderr.take().expect("stderr piped"));
    let stdin = child.stdin.take();
    Proc {
        child,
        stdin,
        lines,
        stderr,
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
                "no stdout line within {timeout:?} ({e}); stderr:\n{}",
                self.stderr()
            ),
        }
    }

    /// The first stdout line `accept` maps to `Some`, skipping others.
    fn wait_line<T>(&self, timeout: Duration, mut accept: impl FnMut(&str) -> Option<T>) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if let Some(found) = accept(&self.next_line(left)) {
                return found;
            }
        }
    }

    /// Waits until `needle` shows up on stderr (bounded).
    fn wait_stderr(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.stderr().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "{needle:?} not logged within {timeout:?}; stderr:\n{}",
                self.stderr()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn close_stdin(&mut self) {
        self.stdin = None;
    }

    fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "process did not exit within {timeout:?}; stderr:\n{}",
                self.stderr()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Sends `COUNT` lines each way between two `join` processes and checks that each received
/// exactly the other's lines, in order, from one peer.
fn exchange(a: &mut Proc, b: &mut Proc) {
    let lines_from = |who: &str| {
        (0..COUNT)
            .map(|i| format!("{who}-{i} {}", "m".repeat(i % 89)))
            .collect::<Vec<_>>()
    };
    let (sent_by_a, sent_by_b) = (lines_from("a"), lines_from("b"));
    for (proc, lines) in [(&mut *a, &sent_by_a), (&mut *b, &sent_by_b)] {
        let stdin = proc.stdin.as_mut().expect("stdin open");
        for line in lines {
            writeln!(stdin, "{line}").expect("write to join");
        }
        stdin.flush().expect("flush");
    }
    let received = |proc: &Proc| -> Vec<(String, String)> {
        (0..COUNT)
            .map(|_| {
                let line = proc.next_line(LINE_WAIT);
                let (peer, text) = line.split_once(' ').expect("`<peer-id> <text>`");
                (peer.to_owned(), text.to_owned())
            })
            .collect()
    };
    let (at_a, at_b) = (received(a), received(b));
    let texts = |got: &[(String, String)]| got.iter().map(|(_, t)| t.clone()).collect::<Vec<_>>();
    assert_eq!(texts(&at_a), sent_by_b);
    assert_eq!(texts(&at_b), sent_by_a);
    for got in [&at_a, &at_b] {
        assert!(
            got.iter().all(|(peer, _)| *peer == got[0].0),
            "one sender only"
        );
    }
    assert_ne!(at_a[0].0, at_b[0].0);
}

/// `peers` output line → (kind, id, room).
fn listed(line: &str) -> (String, String, String) {
    let mut words = line.split_whitespace();
    let kind = words.next().unwrap_or_default().to_owned();
    let id = words.next().unwrap_or_default().to_owned();
    let room = words
        .next()
        .unwrap_or_default()
        .trim_matches('"')
        .to_owned();
    (kind, id, room)
}

/// The node whose endpoint `proc` elected.
fn leader(proc: &Proc) -> String {
    proc.wait_stderr("leader=", LINE_WAIT);
    let log = proc.stderr();
    let at = log.find("leader=").expect("election logged") + "leader=".len();
    log[at..].split_whitespace().next().unwrap().to_owned()
}

fn node_id_of(proc: &Proc) -> String {
    proc.wait_stderr("embedded signaling endpoint advertised", LINE_WAIT);
    let log = proc.stderr();
    let at = log.find("node_id=").expect("node_id logged") + "node_id=".len();
    log[at..].split_whitespace().next().unwrap().to_owned()
}

#[test]
fn nodes_in_two_namespaces_discover_each_other_and_exchange_1000_messages_without_a_bridge() {
    require_root!();
    let ns = Netns::new(2, Link::Veth);
    let room = "lan-chat";
    let join = ["join", "--room", room, "--discover", "--wait-peers", "1"];
    let mut a = spawn_in(ns.name(0), &join);
    let mut b = spawn_in(ns.name(1), &join);
    let (id_a, id_b) = (node_id_of(&a), node_id_of(&b));

    // Both elected the same endpoint: the oldest node's.
    for proc in [&a, &b] {
        proc.wait_stderr("peers ready", LINE_WAIT);
    }
    assert_eq!(
        leader(&a),
        leader(&b),
        "a:\n{}\nb:\n{}",
        a.stderr(),
        b.stderr()
    );

    exchange(&mut a, &mut b);

    // `peers` in each namespace lists both nodes of the room, with their endpoints.
    for ns_name in [ns.name(0), ns.name(1)] {
        let mut peers = spawn_in(ns_name, &["peers", "--timeout", "2", "--room", room]);
        assert!(peers.wait_exit(Duration::from_secs(20)).success());
        let found: Vec<(String, String, String)> =
            peers.lines.try_iter().map(|l| listed(&l)).collect();
        for id in [&id_a, &id_b] {
            assert!(
                found
                    .iter()
                    .any(|(k, i, r)| k == "node" && i == id && r == room),
                "{id} not listed in {ns_name}: {found:?}"
            );
        }
    }

    for proc in [&mut a, &mut b] {
        proc.close_stdin();
    }
    for proc in [&mut a, &mut b] {
        let status = proc.wait_exit(Duration::from_secs(30));
        assert!(status.success(), "join failed; stderr:\n{}", proc.stderr());
        assert!(
            proc.stderr().contains("mDNS: goodbye sent"),
            "{}",
            proc.stderr()
        );
    }
}

#[test]
fn node_finds_a_bridge_in_another_namespace_by_mdns_alone() {
    require_root!();
    let ns = Netns::new(2, Link::Veth);
    let serve = spawn_in(ns.name(0), &["serve", "--addr", "198.18.1.1:0"]);
    let ws = serve.wait_line(LINE_WAIT, |l| {
        l.strip_prefix("signaling: ").map(str::to_owned)
    });
    serve.wait_line(LINE_WAIT, |l| l.strip_prefix("mdns: ").map(|_| ()));
    // Neither node is told where the bridge is.
    let join = ["join", "--room", "via-bridge", "--wait-peers", "1"];
    let mut b = spawn_in(ns.name(1), &join);
    let mut c = spawn_in(ns.name(1), &join);
    for proc in [&b, &c] {
        proc.wait_stderr("found a signaling bridge by mDNS", LINE_WAIT);
        proc.wait_stderr(&format!("signaling through url={ws}"), LINE_WAIT);
        proc.wait_stderr("peers ready", LINE_WAIT);
    }
    for (proc, text) in [(&mut b, "hello from b"), (&mut c, "hello from c")] {
        writeln!(proc.stdin.as_mut().unwrap(), "{text}").unwrap();
    }
    assert!(b.next_line(LINE_WAIT).ends_with(" hello from c"));
    assert!(c.next_line(LINE_WAIT).ends_with(" hello from b"));

    // The bridge is listed as one, and the nodes as joined to it.
    let mut peers = spawn_in(ns.name(1), &["peers", "--timeout", "2"]);
    assert!(peers.wait_exit(Duration::from_secs(20)).success());
    let lines: Vec<String> = peers.lines.try_iter().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("bridge ") && l.contains(&ws)),
        "{lines:?}"
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("node ") && l.contains("\"via-bridge\"") && l.contains(&ws))
            .count(),
        2,
        "{lines:?}"
    );
    for proc in [&mut b, &mut c] {
        proc.close_stdin();
        assert!(
            proc.wait_exit(Duration::from_secs(30)).success(),
            "{}",
            proc.stderr()
        );
    }
}

#[test]
fn without_a_bridge_on_the_lan_join_fails_with_a_clear_error() {
    require_root!();
    let ns = Netns::new(1, Link::None);
    let mut node = spawn_in(
        ns.name(0),
        &["join", "--room", "nobody", "--mdns-timeout", "1"],
    );
    let status = node.wait_exit(Duration::from_secs(30));
    assert!(!status.success());
    assert!(
        node.stderr()
            .contains("error: no signaling bridge found on the LAN by mDNS within 1 s"),
        "{}",
        node.stderr()
    );
}

/// Discovery time, first announcement → listed by a browser already running in the other
/// namespace, five times: each node's TXT carries its start time (taken just before it
/// registers, and it announces without probing), and `peers --watch` prints the age at which
/// it resolved it. Also checks the goodbye: each node is listed as removed after it exits.
#[test]
fn discovery_time_median_of_5() {
    require_root!();
    let ns = Netns::new(2, Link::Veth);
    let watch = spawn_in(ns.name(1), &["peers", "--watch", "--timeout", "0"]);
    watch.wait_line(LINE_WAIT, |l| l.starts_with("# browsing").then_some(()));
    let mut times = Vec::new();
    for i in 0..5 {
        let room = format!("timing-{i}");
        let mut node = spawn_in(ns.name(0), &["join", "--room", &room, "--discover"]);
        let id = node_id_of(&node);
        let age_ms: u64 = watch.wait_line(Duration::from_secs(10), |l| {
            let rest = l.strip_prefix("+ ")?;
            let (_, found, _) = listed(rest);
            (found == id).then(|| {
                let age = l.rsplit(' ').next().unwrap();
                age.trim_end_matches("ms").parse().expect("age in ms")
            })
        });
        times.push(age_ms);
        node.close_stdin();
        assert!(
            node.wait_exit(Duration::from_secs(30)).success(),
            "{}",
            node.stderr()
        );
        // Goodbye: removed well before any TTL (120 s) could expire.
        watch.wait_line(Duration::from_secs(5), |l| {
            (l.starts_with("- ") && listed(&l[2..]).1 == id).then_some(())
        });
    }
    let mut sorted = times.clone();
    sorted.sort_unstable();
    eprintln!(
        "discovery time (first announce -> listed, other namespace): median {} ms of 5 {times:?}",
        sorted[2]
    );
    assert!(sorted[2] < 2_000, "median discovery time {} ms", sorted[2]);
}

/// Three namespaces on one Linux bridge (a switch). The first node elects itself; the two
/// others join its endpoint; when it leaves, the channels between the two others stay up.
#[test]
fn three_nodes_on_a_switch_keep_their_channels_when_the_elected_node_leaves() {
    require_root!();
    let ns = Netns::new(3, Link::Switch);
    let join = [
        "join",
        "--room",
        "switch",
        "--discover",
        "--wait-peers",
        "2",
    ];
    let mut a = spawn_in(ns.name(0), &join);
    let id_a = node_id_of(&a);
    a.wait_stderr("signaling through url=ws://127.0.0.1:", LINE_WAIT);
    let mut b = spawn_in(ns.name(1), &join);
    let mut c = spawn_in(ns.name(2), &join);
    for proc in [&a, &b, &c] {
        proc.wait_stderr("peers ready", LINE_WAIT);
        assert_eq!(leader(proc), id_a, "{}", proc.stderr());
    }

    a.close_stdin();
    assert!(
        a.wait_exit(Duration::from_secs(30)).success(),
        "{}",
        a.stderr()
    );
    for proc in [&b, &c] {
        proc.wait_stderr("connection closed by the signaling server", LINE_WAIT);
    }
    for (proc, text) in [
        (&mut b, "after the leader left, b"),
        (&mut c, "after the leader left, c"),
    ] {
        writeln!(proc.stdin.as_mut().unwrap(), "{text}").unwrap();
    }
    assert!(b
        .next_line(LINE_WAIT)
        .ends_with(" after the leader left, c"));
    assert!(c
        .next_line(LINE_WAIT)
        .ends_with(" after the leader left, b"));
    for proc in [&mut b, &mut c] {
        proc.close_stdin();
        assert!(
            proc.wait_exit(Duration::from_secs(30)).success(),
            "{}",
            proc.stderr()
        );
    }
}

/// A node killed without a goodbye is not found by nodes that start afterwards (nothing
/// answers for it), so they elect among the living; Ctrl-C (SIGINT) says goodbye.
#[test]
fn killed_node_is_not_elected_and_interrupt_says_goodbye() {
    require_root!();
    let ns = Netns::new(2, Link::Veth);
    let join = ["join", "--room", "gone", "--discover", "--wait-peers", "1"];
    let mut a = spawn_in(ns.name(0), &join);
    let id_a = node_id_of(&a);
    a.wait_stderr("signaling through", LINE_WAIT);
    a.child.kill().expect("SIGKILL");
    a.child.wait().expect("reaped");

    let watch = spawn_in(
        ns.name(1),
        &["peers", "--watch", "--timeout", "0", "--room", "gone"],
    );
    watch.wait_line(LINE_WAIT, |l| l.starts_with("# browsing").then_some(()));
    let b = spawn_in(ns.name(1), &join);
    let id_b = node_id_of(&b);
    let c = spawn_in(ns.name(0), &join);
    for proc in [&b, &c] {
        proc.wait_stderr("peers ready", LINE_WAIT);
        assert_eq!(leader(proc), id_b, "{}", proc.stderr());
    }

    // SIGINT: the process is `native-demo` itself (`ip netns exec` execs it).
    let mut b = b;
    let pid = b.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let status = b.wait_exit(Duration::from_secs(30));
    assert!(!status.success(), "interrupted exits non-zero");
    assert!(b.stderr().contains("mDNS: goodbye sent"), "{}", b.stderr());
    watch.wait_line(Duration::from_secs(5), |l| {
        (l.starts_with("- ") && listed(&l[2..]).1 == id_b).then_some(())
    });
    let mut seen = Vec::new();
    while let Ok(line) = watch.lines.try_recv() {
        seen.push(line);
    }
    assert!(!seen.iter().any(|l| l.contains(&id_a)), "{seen:?}");
}

/// `send` and `receive` take `--discover` too: a file crosses the namespaces with no bridge.
#[test]
fn send_and_receive_with_discover_move_a_file_without_a_bridge() {
    use sha2::{Digest, Sha256};
    require_root!();
    let ns = Netns::new(2, Link::Veth);
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..3 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let src = dir.path().join("payload.bin");
    std::fs::write(&src, &data).unwrap();
    let inbox = dir.path().join("inbox");
    let (src, inbox) = (src.to_str().unwrap(), inbox.to_str().unwrap());
    let mut receiver = spawn_in(
        ns.name(0),
        &[
            "receive",
            "--room",
            "lan-files",
            "--discover",
            "--out",
            inbox,
            "--count",
            "1",
        ],
    );
    receiver.wait_stderr("signaling through", LINE_WAIT);
    let mut sender = spawn_in(
        ns.name(1),
        &["send", "--room", "lan-files", "--discover", src],
    );
    let sha = hex::encode(Sha256::digest(&data));
    assert_eq!(receiver.next_line(LINE_WAIT), format!("{sha}  payload.bin"));
    for proc in [&mut receiver, &mut sender] {
        assert!(
            proc.wait_exit(Duration::from_secs(60)).success(),
            "{}",
            proc.stderr()
        );
    }
    assert_eq!(std::fs::read(format!("{inbox}/payload.bin")).unwrap(), data);
}
