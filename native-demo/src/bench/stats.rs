//! Figures the benchmarks report: one [`Figure`] per (pair, metric), printed as a markdown
//! table and as JSON lines `{"pair": …, "metric": …, "value": …, "unit": …}`.

use serde::Serialize;
use std::time::Duration;

/// One measured value.
#[derive(Clone, Debug, Serialize)]
pub struct Figure {
    pub pair: String,
    pub metric: String,
    pub value: f64,
    pub unit: String,
}

impl Figure {
    pub fn new(pair: &str, metric: &str, value: f64, unit: &str) -> Self {
        Figure {
            pair: pair.into(),
            metric: metric.into(),
            value,
            unit: unit.into(),
        }
    }
}

/// Median and 99th percentile of `samples` (sorted in place); `None` when empty.
pub fn median_p99(samples: &mut [Duration]) -> Option<(Duration, Duration)> {
    if samples.is_empty() {
        return None;
    }
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    Some((at(0.5), at(0.99)))
}

/// Throughput in MB/s (10^6 bytes per second).
pub fn mb_per_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / 1e6 / elapsed.as_secs_f64().max(1e-9)
}

/// This process's user + system CPU time so far, from /proc/self/stat (Linux; clock ticks of
/// 1/100 s, the kernel's USER_HZ on every mainstream architecture).
pub fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

/// Peak resident set size of this process (`VmHWM`), MiB.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Renders figures as a markdown table: one row per metric, one column per pair.
pub fn markdown(figures: &[Figure]) -> String {
    let mut pairs: Vec<&str> = Vec::new();
    let mut metrics: Vec<(&str, &str)> = Vec::new();
    for f in figures {
        if !pairs.contains(&f.pair.as_str()) {
            pairs.push(&f.pair);
        }
        if !metrics.iter().any(|(m, _)| *m == f.metric) {
            metrics.push((&f.metric, &f.unit));
        }
    }
    let mut out = format!("| metric | unit | {} |\n", pairs.join(" | "));
    out.push_str(&format!("|---|---|{}\n", "---:|".repeat(pairs.len())));
    for (metric, unit) in metrics {
        let cells: Vec<String> = pairs
            .iter()
            .map(|pair| {
                figures
                    .iter()
                    .find(|f| f.pair == *pair && f.metric == metric)
                    .map(|f| format_value(f.value))
                    .unwrap_or_else(|| "–".into())
            })
            .collect();
        out.push_str(&format!("| {metric} | {unit} | {} |\n", cells.join(" | ")));
    }
    out
}

fn format_value(v: f64) -> String {
    if v.is_nan() {
        "n/a".into()
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_known_samples() {
        let mut s: Vec<Duration> = (1..=100).rev().map(Duration::from_micros).collect();
        let (median, p99) = median_p99(&mut s).unwrap();
        assert_eq!(median, Duration::from_micros(51));
        assert_eq!(p99, Duration::from_micros(99));
        assert!(median_p99(&mut []).is_none());
    }

    #[test]
    fn table_has_a_column_per_pair_and_dashes_for_gaps() {
        let figures = vec![
            Figure::new("a", "rtt", 60.0, "µs"),
            Figure::new("b", "rtt", 85.25, "µs"),
            Figure::new("b", "open", 3.5, "ms"),
        ];
        let table = markdown(&figures);
        assert!(table.contains("| metric | unit | a | b |"), "{table}");
        assert!(table.contains("| rtt | µs | 60.0 | 85.2 |"), "{table}");
        assert!(table.contains("| open | ms | – | 3.50 |"), "{table}");
    }

    #[test]
    fn cpu_and_rss_are_readable_here() {
        assert!(cpu_time().is_some());
        assert!(peak_rss_mib().unwrap() > 0.0);
    }
}
