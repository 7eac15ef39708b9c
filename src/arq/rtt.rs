//! RTT estimation, RFC 9002 §5: min_rtt, smoothed_rtt, rttvar, with the peer's ack delay
//! subtracted when it does not take a sample below min_rtt. All times in microseconds.

/// RFC 9002 §6.2.2: the RTT assumed before the first sample (333 ms).
pub(crate) const INITIAL_RTT_US: u64 = 333_000;
/// RFC 9002 §6.1.2 kGranularity: 1 ms.
pub(crate) const GRANULARITY_US: u64 = 1_000;

#[derive(Clone, Copy, Debug)]
pub(crate) struct RttEstimator {
    pub(crate) latest: u64,
    pub(crate) smoothed: u64,
    pub(crate) var: u64,
    pub(crate) min: u64,
    pub(crate) has_sample: bool,
}

impl Default for RttEstimator {
    fn default() -> Self {
        RttEstimator {
            latest: 0,
            smoothed: INITIAL_RTT_US,
            var: INITIAL_RTT_US / 2,
            min: 0,
            has_sample: false,
        }
    }
}

impl RttEstimator {
    /// One sample (§5.3): `latest` = ack time − send time of the largest newly acked packet,
    /// `ack_delay` already capped at the peer's max_ack_delay.
    pub(crate) fn update(&mut self, latest: u64, ack_delay: u64) {
        self.latest = latest;
        if !self.has_sample {
            self.has_sample = true;
            self.min = latest;
            self.smoothed = latest;
            self.var = latest / 2;
            return;
        }
        self.min = self.min.min(latest);
        let adjusted = if latest >= self.min.saturating_add(ack_delay) {
            latest.saturating_sub(ack_delay)
        } else {
            latest
        };
        let dev = self.smoothed.abs_diff(adjusted);
        // rttvar = 3/4 rttvar + 1/4 |smoothed − adjusted|; smoothed = 7/8 smoothed + 1/8 adjusted
        self.var = (self.var.saturating_mul(3) / 4).saturating_add(dev / 4);
        self.smoothed = (self.smoothed.saturating_mul(7) / 8).saturating_add(adjusted / 8);
    }

    /// §6.2.1: smoothed_rtt + max(4 × rttvar, kGranularity) + max_ack_delay, before backoff.
    pub(crate) fn pto_base(&self, max_ack_delay: u64) -> u64 {
        self.smoothed
            .saturating_add(self.var.saturating_mul(4).max(GRANULARITY_US))
            .saturating_add(max_ack_delay)
    }

    /// §6.1.2: 9/8 × max(smoothed_rtt, latest_rtt), at least kGranularity.
    pub(crate) fn loss_delay(&self) -> u64 {
        let base = self.smoothed.max(self.latest);
        (base.saturating_mul(9) / 8).max(GRANULARITY_US)
    }
}
