//! Random UDP packet loss for live-network tests: one nftables rule in the test's own network
//! namespace (tests/scripts/in-netns.sh), `meta l4proto udp numgen random mod 1000 < N drop`
//! on the input hook. On loopback and the namespace's veth every datagram crosses that hook
//! once, so N per mille of all WebRTC datagrams (ICE, DTLS, SCTP) are lost; the bridge's
//! WebSocket (TCP) is untouched. `tc netem` is not available in this kernel; nftables is
//! (`apt-get install nftables`).
//!
//! The rule is namespace-wide: every test of one binary shares it, so holding a [`UdpLoss`]
//! also holds a process-wide lock and tests that use it run one at a time.
#![allow(dead_code)]

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};

/// Our nftables table; deleting it removes the rule and its counter.
const TABLE: &str = "miaou_loss";

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// While alive, a share of UDP datagrams is dropped in this namespace.
pub struct UdpLoss {
    _exclusive: MutexGuard<'static, ()>,
}

impl UdpLoss {
    /// Drops `per_mille` ‰ of UDP datagrams (0 = none, 1000 = all) until dropped.
    ///
    /// Panics outside the test namespace: this must never change the host's firewall.
    pub fn install(per_mille: u32) -> UdpLoss {
        assert_eq!(
            std::env::var("MIAOU_IN_NETNS").as_deref(),
            Ok("1"),
            "packet-loss tests change nftables rules: run them in their own network namespace \
             (tests/scripts/in-netns.sh cargo test …)"
        );
        let exclusive = ONE_AT_A_TIME
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let loss = UdpLoss {
            _exclusive: exclusive,
        };
        loss.set(per_mille);
        loss
    }

    /// Changes the drop rate to `per_mille` ‰ (the drop counter restarts at 0).
    pub fn set(&self, per_mille: u32) {
        assert!(per_mille <= 1000, "a share of 1000 (per mille)");
        delete_table();
        // `numgen random mod 1000` yields 0..=999, and nft refuses `< 1000`: all is a plain drop.
        let select = match per_mille {
            1000 => String::new(),
            n => format!("numgen random mod 1000 < {n} "),
        };
        let script = format!(
            "table inet {TABLE} {{\n  chain input {{\n    type filter hook input priority 0; \
             policy accept;\n    meta l4proto udp {select}counter drop\n  }}\n}}\n"
        );
        nft_script(&script);
    }

    /// UDP datagrams dropped since the rate was last set.
    pub fn dropped(&self) -> u64 {
        let out = Command::new("nft")
            .args(["list", "table", "inet", TABLE])
            .output()
            .expect("nft runs");
        let text = String::from_utf8_lossy(&out.stdout);
        // "… counter packets 123 bytes 4567 drop"
        text.split_whitespace()
            .skip_while(|w| *w != "packets")
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for UdpLoss {
    fn drop(&mut self) {
        delete_table();
    }
}

fn delete_table() {
    // Fails harmlessly when the table does not exist.
    let _ = Command::new("nft")
        .args(["delete", "table", "inet", TABLE])
        .stderr(Stdio::null())
        .status();
}

fn nft_script(script: &str) {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("nft is installed (apt-get install nftables)");
    child
        .stdin
        .take()
        .expect("stdin piped")
        .write_all(script.as_bytes())
        .expect("script written to nft");
    let status = child.wait().expect("nft ran");
    assert!(status.success(), "nft refused the rule:\n{script}");
}
