//! The measurements, written once against [`Link`] so both webrtc-rs versions run exactly the
//! same code with the same sizes, counts and backpressure thresholds.

use crate::stats::{cpu_time, peak_rss_mib, quantile, udp_rcvbuf_errors, Figure};
use bytes::Bytes;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Backpressure, identical on both stacks: a sender waits while more than `HIGH_WATER` bytes
/// are buffered on its channel, woken by `bufferedamountlow` (threshold `LOW_WATER`) or a 50 ms
/// backstop — the browser-style pattern BENCHMARKS.md's raw pair uses.
pub const HIGH_WATER: usize = 1024 * 1024;
/// `bufferedamountlow` threshold, bytes.
pub const LOW_WATER: usize = 256 * 1024;
/// Receive side: each channel's messages go into a bounded inbox of this many messages; a full
/// inbox holds up the stack's delivery (awaited, nothing dropped).
pub const INBOX: usize = 1024;

/// The inbox size: [`INBOX`], or `INBOX=N` from the environment (diagnostics only).
pub fn inbox() -> usize {
    std::env::var("INBOX")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(INBOX)
}

/// Where the time to open went, measured from just before the first peer connection is
/// created.
#[derive(Clone, Copy, Debug)]
pub struct OpenTimes {
    /// Offer and answer both complete with their candidates (non-trickle), i.e. signaling done.
    pub signaled: Duration,
    /// The data channel is open on both sides: `open` fired at the offerer and the answerer has
    /// an open channel. This is the "time to open".
    pub open: Duration,
}

/// One connected pair, `a` (offerer, created the channel) and `b` (answerer), in this process.
#[allow(async_fn_in_trait)]
pub trait Link: Sized {
    /// Creates both peer connections, one ordered reliable channel, exchanges complete SDPs
    /// directly and waits until the channel is open on both sides.
    async fn connect() -> anyhow::Result<(Self, OpenTimes)>;
    /// Closes both peer connections.
    async fn close(self);
    /// Sends one message a→b, first waiting while the sender's buffer is above `HIGH_WATER`.
    async fn send_ab(&self, data: &Bytes) -> anyhow::Result<()>;
    /// Sends one message b→a, with the same backpressure.
    async fn send_ba(&self, data: &Bytes) -> anyhow::Result<()>;
    /// The next message b received.
    async fn recv_b(&self) -> anyhow::Result<Bytes>;
    /// The next message a received.
    async fn recv_a(&self) -> anyhow::Result<Bytes>;
    /// How often a sender's backpressure wait ended by the 50 ms backstop rather than by
    /// `bufferedamountlow` (both sides, since connect): a sanity check that the wake-up works.
    fn backstop_wakeups(&self) -> u64;
    /// Stack-specific counters reported at the end of a run: (metric, value, unit).
    fn extra_figures(&self) -> Vec<(String, f64, &'static str)> {
        Vec::new()
    }
}

/// What one run measures; the same for both stacks.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Connections opened (and closed) to measure time to open; the median is reported.
    pub opens: usize,
    /// Bytes per throughput run.
    pub total: usize,
    /// Message sizes for the throughput runs, bytes (empty: no throughput runs).
    pub sizes: Vec<usize>,
    /// 64-byte messages for the message rate.
    pub rate_messages: usize,
    /// Ping-pong rounds for the RTT, after `rtt_warmup` unmeasured ones.
    pub rtt_rounds: usize,
    pub rtt_warmup: usize,
    /// Whether to run the 64-byte message rate and the RTT.
    pub small: bool,
    /// Longest a throughput, message-rate or RTT cell may take; over it the cell is reported as
    /// DNF and the run ends there (the link is left as it is).
    pub cap: Option<Duration>,
}

/// What one stream a→b delivered.
struct Streamed {
    bytes: usize,
    /// Longest time between two consecutive messages at b: a stall shows up here.
    longest_gap: Duration,
}

/// Sends `count` copies of `payload` a→b while b reads them.
/// `received` counts the bytes b got so far, so a capped run can say how far it came.
async fn stream(
    link: &impl Link,
    payload: &Bytes,
    count: usize,
    received: &AtomicUsize,
) -> anyhow::Result<Streamed> {
    let sender = async {
        for _ in 0..count {
            link.send_ab(payload).await?;
        }
        anyhow::Ok(())
    };
    let receiver = async {
        let mut bytes = 0usize;
        let mut longest_gap = Duration::ZERO;
        let mut last: Option<Instant> = None;
        for _ in 0..count {
            let len = link.recv_b().await?.len();
            bytes += len;
            received.fetch_add(len, Ordering::Relaxed);
            let now = Instant::now();
            if let Some(last) = last {
                longest_gap = longest_gap.max(now - last);
            }
            last = Some(now);
        }
        anyhow::Ok(Streamed { bytes, longest_gap })
    };
    let (sent, received) = tokio::join!(sender, receiver);
    sent?;
    let streamed = received?;
    anyhow::ensure!(
        streamed.bytes == payload.len() * count,
        "received {} bytes, sent {}",
        streamed.bytes,
        payload.len() * count
    );
    Ok(streamed)
}

/// Every workload on fresh connections of `L`, as figures for `stack`.
pub async fn run<L: Link>(stack: &str, plan: Plan) -> anyhow::Result<Vec<Figure>> {
    let mut figures = Vec::new();
    let fig = |metric: &str, value: f64, unit: &str| Figure::new(stack, metric, value, unit);

    // Time to open: `plan.opens` connections, each closed before the next.
    let mut opens = Vec::new();
    let mut signaled = Vec::new();
    for _ in 0..plan.opens {
        let (link, took) = match L::connect().await {
            Ok(connected) => connected,
            Err(e) => {
                // Counted, not measured: under loss an open can fail (each wait is 20 s).
                eprintln!("[{stack}] open failed: {e:#}");
                figures.push(fig("open failed", 1.0, "count"));
                continue;
            }
        };
        eprintln!(
            "[{stack}] open: signaled {:.2} ms, open on both sides {:.2} ms",
            ms(took.signaled),
            ms(took.open)
        );
        opens.push(took.open);
        signaled.push(took.signaled);
        link.close().await;
    }
    if !opens.is_empty() {
        opens.sort();
        let median = |v: &mut Vec<Duration>| quantile(v, 0.5).map_or(f64::NAN, ms);
        figures.push(fig("time to open, median", median(&mut opens), "ms"));
        figures.push(fig(
            "time to open, min",
            opens.first().copied().map_or(f64::NAN, ms),
            "ms",
        ));
        figures.push(fig(
            "time to open, max",
            opens.last().copied().map_or(f64::NAN, ms),
            "ms",
        ));
        figures.push(fig(
            "of which signaling (complete SDPs), median",
            median(&mut signaled),
            "ms",
        ));
    }

    if let Some(rss) = peak_rss_mib() {
        figures.push(fig("peak RSS after the opens", rss, "MiB"));
    }
    if plan.sizes.is_empty() && !plan.small {
        return Ok(figures);
    }

    // Up to 3 attempts, each failure counted (as "open failed", like the opens above).
    let mut connected = None;
    for _ in 0..3 {
        match L::connect().await {
            Ok((link, _)) => {
                connected = Some(link);
                break;
            }
            Err(e) => {
                eprintln!("[{stack}] open failed: {e:#}");
                figures.push(fig("open failed", 1.0, "count"));
            }
        }
    }
    let Some(link) = connected else {
        return Ok(figures);
    };
    let cap = plan.cap.unwrap_or(Duration::MAX);
    let dnf = |figures: &mut Vec<Figure>, cell: &str| {
        eprintln!(
            "[{stack}] {cell}: DNF (over the {:.0} s cap)",
            cap.as_secs_f64()
        );
        figures.push(fig(&format!("DNF, {cell}"), 1.0, "count"));
    };
    for &size in &plan.sizes {
        let payload = Bytes::from(vec![0x5a; size]);
        let count = plan.total.div_ceil(size);
        let cpu_before = cpu_time();
        let drops_before = udp_rcvbuf_errors();
        let started = Instant::now();
        let received = AtomicUsize::new(0);
        let Ok(streamed) =
            tokio::time::timeout(cap, stream(&link, &payload, count, &received)).await
        else {
            dnf(&mut figures, &format!("throughput, {size} B messages"));
            figures.push(fig(
                &format!("received by the cap, {size} B messages"),
                received.load(Ordering::Relaxed) as f64 / 1e6,
                "MB",
            ));
            push_extra(&mut figures, stack, &link);
            return Ok(figures);
        };
        let streamed = streamed?;
        let elapsed = started.elapsed();
        push_drops(
            &mut figures,
            stack,
            &format!("{size} B messages"),
            drops_before,
        );
        let bytes = streamed.bytes;
        let mbps = bytes as f64 / 1e6 / elapsed.as_secs_f64();
        eprintln!(
            "[{stack}] throughput {size} B messages: {mbps:.1} MB/s (longest receive gap {:.1} ms)",
            ms(streamed.longest_gap)
        );
        figures.push(fig(&format!("throughput, {size} B messages"), mbps, "MB/s"));
        figures.push(fig(
            &format!("longest receive gap, {size} B messages"),
            ms(streamed.longest_gap),
            "ms",
        ));
        if let (Some(before), Some(after)) = (cpu_before, cpu_time()) {
            let per_gb = (after - before).as_secs_f64() / (bytes as f64 / 1e9);
            figures.push(fig(
                &format!("CPU per GB, {size} B messages (both ends)"),
                per_gb,
                "s/GB",
            ));
        }
    }

    if !plan.small {
        push_extra(&mut figures, stack, &link);
        link.close().await;
        return Ok(figures);
    }
    let small = Bytes::from(vec![0x64; 64]);
    let drops_before = udp_rcvbuf_errors();
    let started = Instant::now();
    let received = AtomicUsize::new(0);
    let Ok(streamed) =
        tokio::time::timeout(cap, stream(&link, &small, plan.rate_messages, &received)).await
    else {
        dnf(&mut figures, "64-byte message rate");
        return Ok(figures);
    };
    let streamed = streamed?;
    let rate = plan.rate_messages as f64 / started.elapsed().as_secs_f64();
    push_drops(&mut figures, stack, "64 B message rate", drops_before);
    eprintln!(
        "[{stack}] 64-byte message rate: {rate:.0} msg/s (longest receive gap {:.1} ms)",
        ms(streamed.longest_gap)
    );
    figures.push(fig("64-byte message rate", rate, "msg/s"));
    figures.push(fig(
        "longest receive gap, 64 B messages",
        ms(streamed.longest_gap),
        "ms",
    ));

    let ping_pong = async {
        let mut rtts = Vec::with_capacity(plan.rtt_rounds);
        for i in 0..plan.rtt_warmup + plan.rtt_rounds {
            let started = Instant::now();
            link.send_ab(&small).await?;
            let ping = link.recv_b().await?;
            link.send_ba(&ping).await?;
            let pong = link.recv_a().await?;
            anyhow::ensure!(pong.len() == small.len(), "pong of {} bytes", pong.len());
            if i >= plan.rtt_warmup {
                rtts.push(started.elapsed());
            }
        }
        anyhow::Ok(rtts)
    };
    let Ok(rtts) = tokio::time::timeout(cap, ping_pong).await else {
        dnf(&mut figures, "RTT 64 B");
        return Ok(figures);
    };
    let mut rtts = rtts?;
    let us = |d: Option<Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64() * 1e6);
    figures.push(fig("RTT 64 B, median", us(quantile(&mut rtts, 0.5)), "µs"));
    figures.push(fig("RTT 64 B, p99", us(quantile(&mut rtts, 0.99)), "µs"));
    eprintln!(
        "[{stack}] RTT 64 B: median {:.0} µs",
        us(quantile(&mut rtts, 0.5))
    );
    figures.push(fig(
        "backpressure waits ended by the 50 ms backstop",
        link.backstop_wakeups() as f64,
        "count",
    ));
    push_extra(&mut figures, stack, &link);
    link.close().await;

    if let Some(rss) = peak_rss_mib() {
        figures.push(fig("peak RSS (both ends, one process)", rss, "MiB"));
    }
    if let Some(drops) = udp_rcvbuf_errors() {
        figures.push(fig(
            "UDP datagrams dropped, receive buffer full (whole run)",
            drops,
            "count",
        ));
    }
    Ok(figures)
}

/// The link's own counters (`Link::extra_figures`).
fn push_extra(figures: &mut Vec<Figure>, stack: &str, link: &impl Link) {
    for (metric, value, unit) in link.extra_figures() {
        figures.push(Figure::new(stack, &metric, value, unit));
    }
}

/// The UDP receive-buffer drops since `before`, as a figure for `workload`.
fn push_drops(figures: &mut Vec<Figure>, stack: &str, workload: &str, before: Option<f64>) {
    if let (Some(before), Some(after)) = (before, udp_rcvbuf_errors()) {
        figures.push(Figure::new(
            stack,
            &format!("UDP datagrams dropped during {workload}"),
            after - before,
            "count",
        ));
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
