//! Figures and the process counters they come from (Linux /proc).

use serde::Serialize;
use std::time::Duration;

/// One measured value: `{"stack", "metric", "value", "unit"}` as a JSON line.
#[derive(Clone, Debug, Serialize)]
pub struct Figure {
    pub stack: String,
    pub metric: String,
    pub value: f64,
    pub unit: String,
    /// Free text from `--tag` (the run's loss rate in the loss matrix), absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

impl Figure {
    pub fn new(stack: &str, metric: &str, value: f64, unit: &str) -> Self {
        Figure {
            stack: stack.into(),
            metric: metric.into(),
            value,
            unit: unit.into(),
            tag: None,
        }
    }
}

/// The `q` quantile (0..=1, nearest rank) of `samples`, sorted in place; `None` when empty.
pub fn quantile(samples: &mut [Duration], q: f64) -> Option<Duration> {
    if samples.is_empty() {
        return None;
    }
    samples.sort();
    Some(samples[((samples.len() - 1) as f64 * q).round() as usize])
}

/// This process's user + system CPU time so far, from /proc/self/stat (clock ticks of 1/100 s,
/// USER_HZ on every mainstream Linux architecture).
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

/// UDP datagrams the kernel dropped because a socket's receive buffer was full
/// (`RcvbufErrors` in /proc/net/snmp). Counts the whole network namespace: run inside a private
/// one (tests/scripts/in-netns.sh) and it counts this process's sockets alone.
pub fn udp_rcvbuf_errors() -> Option<f64> {
    let snmp = std::fs::read_to_string("/proc/net/snmp").ok()?;
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (names, values) = (udp.next()?, udp.next()?);
    let at = names.split_whitespace().position(|n| n == "RcvbufErrors")?;
    values.split_whitespace().nth(at)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_of_known_samples() {
        let mut s: Vec<Duration> = (1..=100).rev().map(Duration::from_micros).collect();
        assert_eq!(quantile(&mut s, 0.5), Some(Duration::from_micros(51)));
        assert_eq!(quantile(&mut s, 0.99), Some(Duration::from_micros(99)));
        assert_eq!(quantile(&mut [], 0.5), None);
    }

    #[test]
    fn counters_are_readable_here() {
        assert!(cpu_time().is_some());
        assert!(peak_rss_mib().unwrap() > 0.0);
        assert!(udp_rcvbuf_errors().is_some());
    }
}
