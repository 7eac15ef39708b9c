//! NewReno congestion control (RFC 9002 §7, Appendix B) and a token-bucket pacer (§7.7).
//! Sizes in bytes, times in microseconds. Persistent congestion (§7.6) is not implemented.

/// NewReno state.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NewReno {
    pub(crate) cwnd: u64,
    ssthresh: u64,
    /// Bytes acked in congestion avoidance since the last one-datagram increase.
    ca_acked: u64,
    /// §7.3.2: packets sent before this time belong to the current recovery period.
    recovery_start: Option<u64>,
    max_datagram: u64,
}

impl NewReno {
    /// §7.2: initial window 10 × max_datagram (RFC 9002 also caps it at 14 720 B; with
    /// datagrams ≤ 1 163 B that cap never binds).
    pub(crate) fn new(max_datagram: u64) -> Self {
        NewReno {
            cwnd: max_datagram.saturating_mul(10),
            ssthresh: u64::MAX,
            ca_acked: 0,
            recovery_start: None,
            max_datagram,
        }
    }

    fn min_window(&self) -> u64 {
        self.max_datagram.saturating_mul(2)
    }

    fn in_recovery(&self, sent_time: u64) -> bool {
        self.recovery_start.is_some_and(|r| sent_time <= r)
    }

    /// §B.5: a packet of `bytes` sent at `sent_time` was acknowledged. `app_limited`: the
    /// window was not fully used (§7.8), so it does not grow.
    pub(crate) fn on_ack(&mut self, sent_time: u64, bytes: u64, app_limited: bool) {
        if self.in_recovery(sent_time) || app_limited {
            return;
        }
        if self.cwnd < self.ssthresh {
            self.cwnd = self.cwnd.saturating_add(bytes); // slow start
        } else {
            self.ca_acked = self.ca_acked.saturating_add(bytes);
            if self.ca_acked >= self.cwnd {
                self.ca_acked = self.ca_acked.saturating_sub(self.cwnd);
                self.cwnd = self.cwnd.saturating_add(self.max_datagram);
            }
        }
    }

    /// §B.6: loss of a packet sent at `sent_time`, detected at `now`. At most one reduction
    /// per recovery period (packets sent before the previous reduction do not reduce again).
    /// Returns true when the window was reduced.
    pub(crate) fn on_congestion_event(&mut self, sent_time: u64, now: u64) -> bool {
        if self.in_recovery(sent_time) {
            return false;
        }
        self.recovery_start = Some(now);
        self.ssthresh = (self.cwnd / 2).max(self.min_window());
        self.cwnd = self.ssthresh;
        self.ca_acked = 0;
        true
    }
}

/// Token bucket: refills at 1.25 × cwnd / smoothed_rtt (§7.7), holds at most a burst of
/// cwnd × 2 ms / smoothed_rtt clamped to 10..=64 datagrams (and to cwnd). The 10-datagram
/// floor lets the initial window out at once and covers a timer granularity of ~1 ms.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pacer {
    tokens: u64,
    last: u64,
    max_datagram: u64,
}

impl Pacer {
    pub(crate) fn new(max_datagram: u64, now: u64) -> Self {
        Pacer {
            tokens: max_datagram.saturating_mul(10),
            last: now,
            max_datagram,
        }
    }

    fn capacity(&self, cwnd: u64, srtt: u64) -> u64 {
        let burst = u128::from(cwnd)
            .saturating_mul(2_000)
            .checked_div(u128::from(srtt.max(1)))
            .unwrap_or(u128::MAX);
        let burst = u64::try_from(burst).unwrap_or(u64::MAX);
        burst
            .clamp(
                self.max_datagram.saturating_mul(10),
                self.max_datagram.saturating_mul(64),
            )
            .min(cwnd.max(self.max_datagram))
    }

    /// Bytes per second × 10^-6 scaled: tokens earned in `dt` µs.
    fn earned(dt: u64, cwnd: u64, srtt: u64) -> u64 {
        let num = u128::from(dt)
            .saturating_mul(u128::from(cwnd))
            .saturating_mul(5);
        let den = u128::from(srtt.max(1)).saturating_mul(4);
        u64::try_from(num.checked_div(den).unwrap_or(u128::MAX)).unwrap_or(u64::MAX)
    }

    fn refill(&mut self, now: u64, cwnd: u64, srtt: u64) {
        if now <= self.last {
            return;
        }
        let earned = Self::earned(now.saturating_sub(self.last), cwnd, srtt);
        self.tokens = self
            .tokens
            .saturating_add(earned)
            .min(self.capacity(cwnd, srtt));
        self.last = now;
    }

    /// None if a datagram may leave now, else the time it may (always > `now`).
    pub(crate) fn delay(&mut self, now: u64, cwnd: u64, srtt: u64) -> Option<u64> {
        self.refill(now, cwnd, srtt);
        if self.tokens >= self.max_datagram {
            return None;
        }
        let need = u128::from(self.max_datagram.saturating_sub(self.tokens));
        // dt = need × 4 × srtt / (5 × cwnd), rounded up, at least 1 µs.
        let num = need
            .saturating_mul(4)
            .saturating_mul(u128::from(srtt.max(1)));
        let den = u128::from(cwnd.max(1)).saturating_mul(5);
        let dt = u64::try_from(num.div_ceil(den)).unwrap_or(u64::MAX).max(1);
        Some(self.last.max(now).saturating_add(dt))
    }

    /// Like [`delay`](Self::delay) without refilling (for `&self` callers).
    pub(crate) fn peek_delay(&self, now: u64, cwnd: u64, srtt: u64) -> Option<u64> {
        let mut copy = *self;
        copy.delay(now, cwnd, srtt)
    }

    /// A paced datagram of `bytes` left at `now`.
    pub(crate) fn on_sent(&mut self, now: u64, cwnd: u64, srtt: u64, bytes: u64) {
        self.refill(now, cwnd, srtt);
        self.tokens = self.tokens.saturating_sub(bytes);
    }
}
