//! Receiver side of packet numbers: which were received (for ACK ranges and duplicate
//! detection) and when an ACK is owed (RFC 9000 §13.2.1-2: at least every 2nd ack-eliciting
//! packet, within max_ack_delay, at once on a gap). Times in microseconds.

use std::collections::VecDeque;

/// Most ACK ranges kept (and sent); older ones are forgotten, so a very old packet number
/// may be processed twice (its data is then a duplicate and ignored).
pub(crate) const MAX_ACK_RANGES: usize = 32;
/// Our max_ack_delay (RFC 9000 §18.2), assumed for the peer too: 5 ms.
pub(crate) const MAX_ACK_DELAY_US: u64 = 5_000;

#[derive(Debug, Default)]
pub(crate) struct AckTracker {
    /// Inclusive `(smallest, largest)` ranges, newest first, disjoint and non-adjacent.
    ranges: VecDeque<(u64, u64)>,
    /// When the largest packet number was received.
    largest_time: u64,
    /// Ack-eliciting packets since the last ACK sent.
    unacked: u32,
    /// An ACK is owed by this time.
    deadline: Option<u64>,
    /// An ACK is owed now.
    immediate: bool,
}

impl AckTracker {
    /// True if `pn` is known to have been received already.
    pub(crate) fn is_duplicate(&self, pn: u64) -> bool {
        self.ranges.iter().any(|&(lo, hi)| lo <= pn && pn <= hi)
    }

    /// Records a received packet (not a duplicate).
    pub(crate) fn on_packet(&mut self, pn: u64, now: u64, ack_eliciting: bool) {
        let largest = self.ranges.front().map(|r| r.1);
        let in_order = largest.is_none_or(|l| pn == l.saturating_add(1));
        if largest.is_none_or(|l| pn > l) {
            self.largest_time = now;
        }
        self.insert(pn);
        if !ack_eliciting {
            return;
        }
        self.unacked = self.unacked.saturating_add(1);
        if !in_order || self.unacked >= 2 {
            self.immediate = true;
        } else if self.deadline.is_none() {
            self.deadline = Some(now.saturating_add(MAX_ACK_DELAY_US));
        }
    }

    fn insert(&mut self, pn: u64) {
        // Find the first range (newest first) whose smallest is ≤ pn.
        let i = self.ranges.iter().position(|&(lo, _)| lo <= pn);
        match i {
            Some(i) => {
                let Some(&(lo, hi)) = self.ranges.get(i) else {
                    return;
                };
                if pn <= hi {
                    return;
                }
                // pn > hi: extend this range upwards or start a new one above it.
                let newer = i.checked_sub(1).and_then(|j| self.ranges.get(j).copied());
                let touches_newer = newer.is_some_and(|(nlo, _)| pn.saturating_add(1) == nlo);
                if pn == hi.saturating_add(1) {
                    if let (true, Some((_, nhi)), Some(j)) =
                        (touches_newer, newer, i.checked_sub(1))
                    {
                        self.ranges.remove(j);
                        if let Some(r) = self.ranges.get_mut(j) {
                            *r = (lo, nhi);
                        }
                    } else if let Some(r) = self.ranges.get_mut(i) {
                        *r = (lo, pn);
                    }
                } else if let (true, Some(j)) = (touches_newer, i.checked_sub(1)) {
                    if let Some(r) = self.ranges.get_mut(j) {
                        r.0 = pn;
                    }
                } else {
                    self.ranges.insert(i, (pn, pn));
                }
            }
            None => {
                // Older than every range: extend the oldest downwards or add a range.
                match self.ranges.back_mut() {
                    Some(r) if pn.saturating_add(1) == r.0 => r.0 = pn,
                    _ => self.ranges.push_back((pn, pn)),
                }
            }
        }
        while self.ranges.len() > MAX_ACK_RANGES {
            self.ranges.pop_back();
        }
    }

    /// Something received can be acknowledged.
    pub(crate) fn has_ranges(&self) -> bool {
        !self.ranges.is_empty()
    }

    /// Ack-eliciting packets wait for an ACK (worth piggybacking).
    pub(crate) fn pending(&self) -> bool {
        self.unacked > 0 || self.immediate
    }

    /// An ACK must be sent at `now`.
    pub(crate) fn due(&self, now: u64) -> bool {
        self.has_ranges() && (self.immediate || self.deadline.is_some_and(|d| d <= now))
    }

    /// Asks for an ACK at once (window update).
    pub(crate) fn request_immediate(&mut self) {
        self.immediate = true;
    }

    pub(crate) fn immediate(&self) -> bool {
        self.immediate && self.has_ranges()
    }

    pub(crate) fn deadline(&self) -> Option<u64> {
        self.deadline.filter(|_| self.has_ranges())
    }

    /// Fires the delayed-ACK timer if due.
    pub(crate) fn on_timeout(&mut self, now: u64) {
        if self.deadline.is_some_and(|d| d <= now) {
            self.immediate = true;
        }
    }

    /// The ranges for an ACK sent at `now` (newest first; at most `max` of them), and its ack
    /// delay; resets the "owed" state.
    pub(crate) fn take(&mut self, now: u64, max: usize) -> (Vec<(u64, u64)>, u64) {
        self.unacked = 0;
        self.deadline = None;
        self.immediate = false;
        let ranges = self.ranges.iter().take(max.max(1)).copied().collect();
        (ranges, now.saturating_sub(self.largest_time))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_and_stay_bounded() {
        let mut t = AckTracker::default();
        for pn in [0, 1, 2, 5, 4, 10, 3] {
            t.on_packet(pn, 0, true);
        }
        assert_eq!(t.take(0, 64).0, vec![(10, 10), (0, 5)]);
        for pn in (12..200).step_by(2) {
            t.on_packet(pn, 0, true);
        }
        assert_eq!(t.ranges.len(), MAX_ACK_RANGES);
        assert!(t.is_duplicate(198) && !t.is_duplicate(199));
        assert!(!t.is_duplicate(12), "the oldest ranges were forgotten");
        t.on_packet(197, 0, true); // joins 196 and 198
        assert_eq!(t.ranges.len(), MAX_ACK_RANGES - 1);
        assert_eq!(t.ranges.front(), Some(&(196, 198)));
        t.on_packet(199, 0, true); // extends the newest range upwards
        assert_eq!(t.ranges.front(), Some(&(196, 199)));
    }

    #[test]
    fn ack_every_second_packet_or_on_gap() {
        let mut t = AckTracker::default();
        t.on_packet(0, 100, true);
        assert!(!t.due(100) && t.deadline() == Some(100 + MAX_ACK_DELAY_US));
        t.on_packet(1, 200, true);
        assert!(t.due(200));
        t.take(200, 32);
        t.on_packet(3, 300, true); // gap: immediate
        assert!(t.due(300));
        t.take(300, 32);
        t.on_packet(4, 400, false); // not ack-eliciting: nothing owed
        assert!(!t.due(10_000));
    }
}
