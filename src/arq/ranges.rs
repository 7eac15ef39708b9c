//! A set of disjoint half-open `u64` ranges `[start, end)`, merged when they touch: the
//! sender's acknowledged and lost stream bytes. Pure bookkeeping, no panics.

use std::collections::BTreeMap;

/// Disjoint, non-adjacent ranges keyed by start (value = exclusive end).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RangeSet {
    map: BTreeMap<u64, u64>,
}

impl RangeSet {
    /// Adds `[start, end)`, merging with every range it overlaps or touches.
    pub(crate) fn insert(&mut self, mut start: u64, mut end: u64) {
        if start >= end {
            return;
        }
        if let Some((&ps, &pe)) = self.map.range(..=start).next_back() {
            if pe >= start {
                if pe >= end {
                    return;
                }
                start = ps;
                self.map.remove(&ps);
            }
        }
        while let Some((&ns, &ne)) = self.map.range(start..=end).next() {
            self.map.remove(&ns);
            end = end.max(ne);
        }
        self.map.insert(start, end);
    }

    /// Removes `[start, end)`, splitting ranges that straddle its edges.
    pub(crate) fn remove(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        if let Some((&ps, &pe)) = self.map.range(..start).next_back() {
            if pe > start {
                self.map.insert(ps, start);
                if pe > end {
                    self.map.insert(end, pe);
                    return;
                }
            }
        }
        while let Some((&ns, &ne)) = self.map.range(start..end).next() {
            self.map.remove(&ns);
            if ne > end {
                self.map.insert(end, ne);
                break;
            }
        }
    }

    /// The parts of `[start, end)` not in the set, in order.
    pub(crate) fn uncovered(&self, start: u64, end: u64) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        if start >= end {
            return out; // also keeps `range(start..end)` below from panicking
        }
        let mut cur = start;
        if let Some((_, &pe)) = self.map.range(..=start).next_back() {
            cur = cur.max(pe);
        }
        for (&ns, &ne) in self.map.range(start..end) {
            if ns > cur {
                out.push((cur, ns));
            }
            cur = cur.max(ne);
        }
        if cur < end {
            out.push((cur, end));
        }
        out
    }

    /// The lowest range.
    pub(crate) fn first(&self) -> Option<(u64, u64)> {
        self.map.iter().next().map(|(&s, &e)| (s, e))
    }

    /// True when the set holds nothing.
    pub(crate) fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Number of disjoint ranges.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Total bytes covered.
    #[cfg(test)]
    pub(crate) fn covered(&self) -> u64 {
        self.map
            .iter()
            .fold(0u64, |acc, (s, e)| acc.saturating_add(e.saturating_sub(*s)))
    }
}

#[cfg(test)]
mod tests {
    use super::RangeSet;

    #[test]
    fn insert_merges_and_remove_splits() {
        let mut r = RangeSet::default();
        r.insert(10, 20);
        r.insert(30, 40);
        r.insert(20, 30); // touches both: one range
        assert_eq!(r.first(), Some((10, 40)));
        assert_eq!(r.len(), 1);
        r.remove(15, 25);
        assert_eq!(r.uncovered(0, 50), vec![(0, 10), (15, 25), (40, 50)]);
        r.insert(12, 13); // inside: no change
        assert_eq!(r.len(), 2);
        assert_eq!(r.uncovered(30, 20), vec![]);
        r.remove(0, 100);
        assert!(r.is_empty());
        r.insert(5, 5); // empty: ignored
        assert!(r.is_empty());
        r.insert(u64::MAX - 1, u64::MAX);
        assert_eq!(r.covered(), 1);
    }
}
