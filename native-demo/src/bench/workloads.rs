//! The measurements, written once against [`Link`] so every pair runs exactly the same code.

use super::stats::{cpu_time, mb_per_s, median_p99, Figure};
use bytes::Bytes;
use std::time::{Duration, Instant};

/// Two connected endpoints, `a` and `b`, of one pair under test.
pub trait Link {
    /// Sends one message from a to b; waits while the sender's buffer is full.
    async fn send_ab(&self, data: Bytes) -> anyhow::Result<()>;
    /// Sends one message from b to a.
    async fn send_ba(&self, data: Bytes) -> anyhow::Result<()>;
    /// The next message b received.
    async fn recv_b(&self) -> anyhow::Result<Bytes>;
    /// The next message a received.
    async fn recv_a(&self) -> anyhow::Result<Bytes>;
    /// Largest message this pair can send in one piece, bytes (`None`: no limit).
    fn max_message(&self) -> Option<usize>;
}

/// Sends `count` copies of `payload` a→b while b reads them; returns the bytes b received.
async fn stream(link: &impl Link, payload: Bytes, count: usize) -> anyhow::Result<usize> {
    let sender = async {
        for _ in 0..count {
            link.send_ab(payload.clone()).await?;
        }
        anyhow::Ok(())
    };
    let receiver = async {
        let mut bytes = 0usize;
        for _ in 0..count {
            bytes += link.recv_b().await?.len();
        }
        anyhow::Ok(bytes)
    };
    let (sent, received) = tokio::join!(sender, receiver);
    sent?;
    received
}

/// Sends `total` bytes a→b as `size`-byte messages; returns MB/s and CPU seconds per GB.
pub async fn throughput(link: &impl Link, size: usize, total: usize) -> anyhow::Result<(f64, f64)> {
    let cpu_before = cpu_time();
    let started = Instant::now();
    let bytes = stream(link, Bytes::from(vec![0x5a; size]), total.div_ceil(size)).await?;
    let elapsed = started.elapsed();
    let cpu_per_gb = match (cpu_before, cpu_time()) {
        (Some(before), Some(after)) => (after - before).as_secs_f64() / (bytes as f64 / 1e9),
        _ => f64::NAN,
    };
    Ok((mb_per_s(bytes as u64, elapsed), cpu_per_gb))
}

/// Messages per second for `count` 64-byte messages a→b.
pub async fn message_rate(link: &impl Link, count: usize) -> anyhow::Result<f64> {
    let started = Instant::now();
    stream(link, Bytes::from(vec![0x64; 64]), count).await?;
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

/// Round trip of a 32-byte message a→b→a: median and p99 of `rounds` after `warmup`, µs.
pub async fn rtt(link: &impl Link, warmup: usize, rounds: usize) -> anyhow::Result<(f64, f64)> {
    let payload = Bytes::from(vec![0x20; 32]);
    let mut samples = Vec::with_capacity(rounds);
    for i in 0..warmup + rounds {
        let started = Instant::now();
        link.send_ab(payload.clone()).await?;
        let ping = link.recv_b().await?;
        link.send_ba(ping).await?;
        link.recv_a().await?;
        if i >= warmup {
            samples.push(started.elapsed());
        }
    }
    let (median, p99) = median_p99(&mut samples).unwrap_or_default();
    Ok((micros(median), micros(p99)))
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Every workload on one link, as figures for `pair`. `total` bytes per throughput run.
pub async fn run_all(pair: &str, link: &impl Link, total: usize) -> anyhow::Result<Vec<Figure>> {
    let mut figures = Vec::new();
    let mut cpu = Vec::new();
    for (label, size) in [
        ("1 KiB", 1024),
        ("16 KiB", 16 * 1024),
        ("64 KiB", 64 * 1024),
        ("1 MiB", 1024 * 1024),
    ] {
        let metric = format!("throughput, {label} messages");
        if link.max_message().is_some_and(|max| size > max) {
            figures.push(Figure::new(pair, &metric, f64::NAN, "MB/s"));
            continue;
        }
        let (mbps, cpu_per_gb) = throughput(link, size, total).await?;
        tracing::info!(pair, size, mbps, "throughput");
        figures.push(Figure::new(pair, &metric, mbps, "MB/s"));
        cpu.push(cpu_per_gb);
    }
    let rate = message_rate(link, 50_000).await?;
    figures.push(Figure::new(pair, "64-byte message rate", rate, "msg/s"));
    let (median, p99) = rtt(link, 100, 1000).await?;
    figures.push(Figure::new(pair, "RTT 32 B, median", median, "µs"));
    figures.push(Figure::new(pair, "RTT 32 B, p99", p99, "µs"));
    let cpu_per_gb = cpu
        .iter()
        .copied()
        .filter(|c| c.is_finite())
        .fold(
            f64::NAN,
            |best, c| if best.is_nan() { c } else { best.min(c) },
        );
    figures.push(Figure::new(
        pair,
        "CPU per GB moved (best size, both ends)",
        cpu_per_gb,
        "s/GB",
    ));
    Ok(figures)
}
