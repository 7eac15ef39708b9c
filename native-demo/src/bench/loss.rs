//! The loss matrix of `npm run bench` for the native pairs (`native-demo bench --pair P --loss
//! 0,10,20,50`): for each level, a fresh connection opened with no loss, then UDP drop set with
//! the loss harness (tests/scripts/netem.sh, docs/testing-under-loss.md), then one capped
//! transfer a → b. Only the public API (through [`Link`]) is used, so whatever recovers from
//! loss inside the library is what gets measured.
//!
//! Each level's result is one [`LossCell`], printed and appended as a JSON line
//! (`"kind": "loss"`) that tests/bench/report.mjs turns into the loss table, beside the
//! node-datachannel and browser cells written in the same shape by tests/bench/netem.mjs.

use super::workloads::Link;
use bytes::Bytes;
use serde::Serialize;
use std::cell::Cell;
use std::path::Path;
use std::time::{Duration, Instant};

/// Message size of every loss cell, bytes: fits every pair's limit (raw webrtc-rs: 65 535).
pub const MESSAGE_BYTES: usize = 16 * 1024;

/// One (pair, loss) measurement; the JSON shape shared with tests/bench/netem.mjs.
#[derive(Debug, Serialize)]
pub struct LossCell {
    /// Always "loss": tells these lines from the `{pair, metric, value, unit}` figures.
    pub kind: &'static str,
    pub pair: String,
    /// UDP datagrams dropped on input, per mille (each direction).
    pub loss_permille: u32,
    pub message_bytes: usize,
    /// Bytes the transfer was to move.
    pub target_bytes: usize,
    /// Bytes received (all of `target_bytes` when finished).
    pub bytes: usize,
    /// From the first send to the last message received, or the cap when not finished.
    pub seconds: f64,
    pub finished: bool,
    /// Why the transfer ended early, when the link failed (not merely slow).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Longest time without a message at the receiver, from the first send to the last message
    /// (to the cap when not finished), ms.
    pub longest_gap_ms: f64,
    pub cap_s: f64,
    /// The machine's 1-minute load average when the cell started (other sessions share it).
    pub load1: f64,
}

/// Sets the namespace's UDP drop with the harness script: `netem.sh loss PERMILLE`.
pub fn set_loss(netem: &Path, permille: u32) -> anyhow::Result<()> {
    let out = std::process::Command::new("bash")
        .arg(netem)
        .args(["loss", &permille.to_string()])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "{} loss {permille}: {}",
        netem.display(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// The 1-minute load average (/proc/loadavg), NaN when unreadable.
pub fn load1() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Bytes to move at `permille` loss: `mib` MiB, half of it from 5 % up (keeps the run short
/// where the slow stacks crawl).
pub fn target_bytes(mib: usize, permille: u32) -> usize {
    let bytes = mib * 1024 * 1024;
    if permille >= 50 {
        bytes / 2
    } else {
        bytes
    }
}

/// What one capped transfer saw.
pub struct Transfer {
    pub bytes: usize,
    pub seconds: f64,
    pub finished: bool,
    pub error: Option<String>,
    pub longest_gap: Duration,
}

/// Sends `total` bytes a → b in [`MESSAGE_BYTES`] messages and stops at `cap` if not done.
/// A failure of the link (not a slow one) ends the transfer early, with its reason.
pub async fn capped_transfer(link: &impl Link, total: usize, cap: Duration) -> Transfer {
    let count = total.div_ceil(MESSAGE_BYTES);
    let payload = Bytes::from(vec![0x5a; MESSAGE_BYTES]);
    let started = Instant::now();
    // One task: plain cells, read after the timeout drops the transfer.
    let bytes = Cell::new(0usize);
    let last = Cell::new(started);
    let gap = Cell::new(Duration::ZERO);
    let sender = async {
        for _ in 0..count {
            link.send_ab(payload.clone()).await?;
        }
        anyhow::Ok(())
    };
    let receiver = async {
        for _ in 0..count {
            let message = link.recv_b().await?;
            let now = Instant::now();
            gap.set(gap.get().max(now - last.get()));
            last.set(now);
            bytes.set(bytes.get() + message.len());
        }
        anyhow::Ok(())
    };
    let both = async {
        let (sent, received) = tokio::join!(sender, receiver);
        sent.and(received)
    };
    let (finished, error) = match tokio::time::timeout(cap, both).await {
        Ok(Ok(())) => (true, None),
        Ok(Err(e)) => (false, Some(format!("{e:#}"))),
        Err(_) => {
            // Still silent at the cap: that silence counts as a gap too.
            gap.set(gap.get().max(Instant::now() - last.get()));
            (false, None)
        }
    };
    let end = match (finished, &error) {
        (true, _) => last.get(),
        (false, Some(_)) => Instant::now(),
        (false, None) => started + cap,
    };
    Transfer {
        bytes: bytes.get(),
        seconds: (end - started).as_secs_f64(),
        finished,
        error,
        longest_gap: gap.get(),
    }
}

/// "27.6 MB/s, gap 12 ms" or "DNF (3.1 MB in 60 s), gap 8 100 ms": one cell of the table.
pub fn describe(cell: &LossCell) -> String {
    let gap = format!("gap {:.0} ms", cell.longest_gap_ms);
    if let Some(error) = &cell.error {
        format!(
            "failed after {:.1} MB in {:.1} s ({error})",
            cell.bytes as f64 / 1e6,
            cell.seconds
        )
    } else if cell.finished {
        let mbps = cell.bytes as f64 / 1e6 / cell.seconds.max(1e-9);
        // Two decimals below 10 MB/s: the stalled stacks move 0.1-1 MB/s.
        let decimals = if mbps < 10.0 { 2 } else { 1 };
        format!("{mbps:.decimals$} MB/s, {gap}")
    } else {
        format!(
            "DNF ({:.1} MB in {:.0} s), {gap}",
            cell.bytes as f64 / 1e6,
            cell.cap_s
        )
    }
}

/// Measures every level in `permilles` on fresh links from `connect` (opened with no loss; the
/// loss is set once open and removed before closing), printing each cell as it is done.
pub async fn matrix<L: Link>(
    pair: &str,
    permilles: &[u32],
    netem: &Path,
    mib: usize,
    cap: Duration,
    mut connect: impl AsyncFnMut(u32) -> anyhow::Result<L>,
    close: impl AsyncFn(L),
) -> anyhow::Result<Vec<LossCell>> {
    let mut cells = Vec::new();
    for &permille in permilles {
        set_loss(netem, 0)?;
        let load1 = load1();
        let target = target_bytes(mib, permille);
        let link = connect(permille).await?;
        set_loss(netem, permille)?;
        let transfer = capped_transfer(&link, target, cap).await;
        // Before closing: a close under loss (the FIN waits behind the backlog) takes long.
        set_loss(netem, 0)?;
        if tokio::time::timeout(Duration::from_secs(15), close(link))
            .await
            .is_err()
        {
            tracing::warn!(pair, permille, "close took more than 15 s; dropped");
        }
        let cell = LossCell {
            kind: "loss",
            pair: pair.into(),
            loss_permille: permille,
            message_bytes: MESSAGE_BYTES,
            target_bytes: target,
            bytes: transfer.bytes,
            seconds: transfer.seconds,
            finished: transfer.finished,
            error: transfer.error,
            longest_gap_ms: transfer.longest_gap.as_secs_f64() * 1e3,
            cap_s: cap.as_secs_f64(),
            load1,
        };
        eprintln!(
            "{pair}, {:.1} % loss: {} (load {load1})",
            permille as f64 / 10.0,
            describe(&cell)
        );
        cells.push(cell);
    }
    Ok(cells)
}
