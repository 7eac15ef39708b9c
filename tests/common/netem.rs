//! The loss harness from Rust tests (docs/testing-under-loss.md): a private network namespace
//! per test, and [tests/scripts/netem.sh](../scripts/netem.sh) to degrade it. A test that
//! changes the network runs in a namespace of its own, made here, so a rule it leaves behind
//! (a panic, an abort) can never reach another test or the machine.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, MutexGuard};

/// Set in the namespaces we make: the test's re-run knows it is the one to do the work.
const CHILD: &str = "MIAOU_NETEM_CHILD";

/// The harness script, from this crate's root.
pub fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/scripts/netem.sh")
}

/// This process's effective user id, from /proc/self/status (no libc, no unsafe).
fn euid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uids = status.lines().find(|l| l.starts_with("Uid:"))?;
    uids.split_whitespace().nth(2)?.parse().ok()
}

/// Makes the test named `test` (its full name in this test binary) run in a fresh network
/// namespace with only loopback, up: returns `true` when the caller is that run (it does the
/// work), `false` in the caller's own process, after the run inside passed. Panics (fails the
/// test) when the namespace cannot be made — `unshare -n` needs root, or `unshare -r` for
/// unprivileged user namespaces — or when the run inside fails or runs no test.
pub fn run_in_own_netns(test: &str) -> bool {
    if std::env::var_os(CHILD).is_some() {
        return true;
    }
    let exe = std::env::current_exe().expect("path of the test binary");
    let mut command = Command::new("unshare");
    if euid() != Some(0) {
        command.arg("-r");
    }
    command
        .args(["-n", "sh", "-c", "ip link set lo up && exec \"$0\" \"$@\""])
        .arg(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        // What netem.sh checks before changing anything: this namespace is private.
        .env("MIAOU_IN_NETNS", "1");
    let out = command
        .output()
        .expect("cannot run `unshare` (util-linux) to make a network namespace");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    print!("{stdout}");
    eprint!("{stderr}");
    assert!(
        out.status.success(),
        "the run of {test} in its own network namespace failed ({})",
        out.status
    );
    assert!(
        stdout.contains("1 passed"),
        "the run in its own network namespace did not run {test}"
    );
    false
}

/// Runs `netem.sh ARGS`; returns its stdout. Panics with its stderr when it fails.
pub fn netem(args: &[&str]) -> String {
    let out = Command::new("bash")
        .arg(script())
        .args(args)
        .output()
        .expect("cannot run bash");
    assert!(
        out.status.success(),
        "netem.sh {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Random drop of UDP datagrams received in this namespace, per mille, while this value lives
/// (dropping it removes the rule). The rule is namespace-wide, so a value also holds a
/// process-wide lock: the tests of one binary that change the loss run one at a time.
pub struct UdpLoss {
    _exclusive: MutexGuard<'static, ()>,
}

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

impl UdpLoss {
    /// Drops `permille` / 1000 of the UDP datagrams this namespace receives, each direction
    /// of a loopback exchange alike. Panics outside a private namespace (netem.sh refuses).
    pub fn set(permille: u32) -> UdpLoss {
        let exclusive = ONE_AT_A_TIME
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        netem(&["loss", &permille.to_string()]);
        UdpLoss {
            _exclusive: exclusive,
        }
    }

    /// Changes the drop rate to `permille` / 1000 (the drop counter restarts at 0).
    pub fn change(&self, permille: u32) {
        netem(&["loss", &permille.to_string()]);
    }

    /// Datagrams the rule has dropped since the rate was last set.
    pub fn dropped(&self) -> u64 {
        netem(&["dropped"])
            .trim()
            .parse()
            .expect("netem.sh dropped prints a count")
    }
}

impl Drop for UdpLoss {
    fn drop(&mut self) {
        // Not netem(): a failure must not panic while a panic unwinds.
        let _ = Command::new("bash")
            .arg(script())
            .args(["loss", "0"])
            .status();
    }
}
