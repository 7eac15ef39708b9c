//! Per-connection message rate limiting for the signaling bridge: a token bucket for the
//! messages a client may send, and a second bucket bounding how many over-limit messages it may
//! send before it is disconnected.
//!
//! Pure: no I/O, no async, no clock. Time is passed in as a [`Duration`] since an origin the
//! caller picks (the bridge uses the moment the connection opened); it only has to be
//! monotonic, and a time earlier than one already seen is treated as no time passing.
//! Arithmetic is exact integer arithmetic in nano-tokens, so results do not drift however long
//! a connection lives.

use std::time::Duration;

/// Default [`RateLimit::burst`], messages: enough for the largest join a default room allows.
///
/// The heaviest moment for one connection is joining a full room: the newcomer sends an offer,
/// about 20 trickled candidates and an end-of-candidates marker to every peer already there,
/// within a second or so. In a room of 50 that is 49 × 22 = 1 078 messages (plus the `join`);
/// in a room of the default 64 peers, 63 × 22 = 1 386. 2 048 covers both with margin.
pub const DEFAULT_BURST: u32 = 2048;

/// Default [`RateLimit::per_second`], messages per second sustained.
pub const DEFAULT_PER_SECOND: u32 = 100;

/// Default [`RateLimit::max_dropped`], messages: ten times [`DEFAULT_BURST`].
pub const DEFAULT_MAX_DROPPED: u32 = 10 * DEFAULT_BURST;

/// Nano-tokens per token: the bucket counts in 10⁻⁹ tokens, so that refilling at `r` tokens
/// per second adds exactly `r` nano-tokens per nanosecond.
const NANO: u128 = 1_000_000_000;

/// Limits on the messages one client may send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Messages a client may send at once after a quiet period (the bucket's capacity).
    /// Values below 1 count as 1. Default [`DEFAULT_BURST`].
    pub burst: u32,
    /// Messages per second a client may send sustained (the refill rate of the bucket).
    /// 0 means the bucket never refills: `burst` messages per connection in all. Default
    /// [`DEFAULT_PER_SECOND`].
    pub per_second: u32,
    /// Over-limit (dropped) messages tolerated before the client is disconnected. Dropped
    /// messages are forgiven at `per_second` per second, so a client sending at less than twice
    /// the sustained rate is only ever refused messages, while a client far over it is
    /// disconnected: the first over-limit message that finds this allowance used up
    /// disconnects. 0 disconnects at the first over-limit message. Default
    /// [`DEFAULT_MAX_DROPPED`].
    pub max_dropped: u32,
}

impl Default for RateLimit {
    /// [`DEFAULT_BURST`] messages, [`DEFAULT_PER_SECOND`] messages/s, [`DEFAULT_MAX_DROPPED`]
    /// dropped messages.
    fn default() -> Self {
        RateLimit {
            burst: DEFAULT_BURST,
            per_second: DEFAULT_PER_SECOND,
            max_dropped: DEFAULT_MAX_DROPPED,
        }
    }
}

/// A token bucket: holds up to `capacity` tokens, gains `per_second` tokens per second, and
/// each admitted event takes one token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenBucket {
    /// Capacity, nano-tokens.
    capacity: u128,
    /// Refill rate, tokens per second (equivalently nano-tokens per nanosecond).
    per_second: u128,
    /// Current level, nano-tokens; never above `capacity`.
    level: u128,
    /// Time of the last refill, since the caller's origin.
    last: Duration,
}

impl TokenBucket {
    /// A full bucket of `capacity` tokens refilled at `per_second` tokens per second, as of
    /// time `now` (since the caller's origin).
    pub fn new(capacity: u32, per_second: u32, now: Duration) -> Self {
        let capacity = u128::from(capacity) * NANO;
        TokenBucket {
            capacity,
            per_second: u128::from(per_second),
            level: capacity,
            last: now,
        }
    }

    /// Whole tokens available at `now`.
    pub fn available(&mut self, now: Duration) -> u32 {
        self.refill(now);
        u32::try_from(self.level / NANO).unwrap_or(u32::MAX)
    }

    /// Takes one token at `now`; `false` (and no change) if less than one token is available.
    pub fn try_take(&mut self, now: Duration) -> bool {
        self.refill(now);
        if self.level >= NANO {
            self.level -= NANO;
            true
        } else {
            false
        }
    }

    fn refill(&mut self, now: Duration) {
        // A time before the last one seen counts as no time passing.
        let Some(elapsed) = now.checked_sub(self.last) else {
            return;
        };
        self.last = now;
        let gained = elapsed.as_nanos().saturating_mul(self.per_second);
        self.level = self.level.saturating_add(gained).min(self.capacity);
    }
}

/// What to do with one message a client sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Within the limit: handle the message.
    Allow,
    /// Over the limit: drop the message and tell the client (`rate-limited`).
    Drop,
    /// Far over the limit for too long: drop the message and disconnect the client.
    Disconnect,
}

/// The rate limiter of one connection: [`RateLimit::burst`] and [`RateLimit::per_second`] bound
/// the messages handled, [`RateLimit::max_dropped`] the messages refused before disconnecting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimiter {
    limit: RateLimit,
    messages: TokenBucket,
    drops: TokenBucket,
    dropped: u64,
}

impl RateLimiter {
    /// A limiter with full buckets as of `now` (since the caller's origin).
    pub fn new(limit: RateLimit, now: Duration) -> Self {
        let limit = RateLimit {
            burst: limit.burst.max(1),
            ..limit
        };
        RateLimiter {
            limit,
            messages: TokenBucket::new(limit.burst, limit.per_second, now),
            drops: TokenBucket::new(limit.max_dropped, limit.per_second, now),
            dropped: 0,
        }
    }

    /// The limits in force (with `burst` raised to at least 1).
    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Accounts for one message received at `now` and says what to do with it.
    pub fn check(&mut self, now: Duration) -> Verdict {
        if self.messages.try_take(now) {
            return Verdict::Allow;
        }
        self.dropped = self.dropped.saturating_add(1);
        if self.drops.try_take(now) {
            Verdict::Drop
        } else {
            Verdict::Disconnect
        }
    }

    /// Messages refused so far on this connection (those answered [`Verdict::Drop`] or
    /// [`Verdict::Disconnect`]), in all.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn limit(burst: u32, per_second: u32, max_dropped: u32) -> RateLimit {
        RateLimit {
            burst,
            per_second,
            max_dropped,
        }
    }

    /// Counts the verdicts of `n` messages all at time `now`.
    fn burst_at(l: &mut RateLimiter, n: u32, now: Duration) -> (u32, u32, u32) {
        let (mut allow, mut drop, mut disconnect) = (0, 0, 0);
        for _ in 0..n {
            match l.check(now) {
                Verdict::Allow => allow += 1,
                Verdict::Drop => drop += 1,
                Verdict::Disconnect => disconnect += 1,
            }
        }
        (allow, drop, disconnect)
    }

    #[test]
    fn a_full_bucket_admits_exactly_the_burst() {
        let mut b = TokenBucket::new(3, 0, ms(0));
        assert_eq!(b.available(ms(0)), 3);
        assert!(b.try_take(ms(0)));
        assert!(b.try_take(ms(0)));
        assert!(b.try_take(ms(0)));
        assert!(!b.try_take(ms(0)));
        // Without refill it stays empty forever.
        assert!(!b.try_take(Duration::from_secs(3600)));
    }

    #[test]
    fn refill_is_exact_and_accumulates_fractions() {
        let mut b = TokenBucket::new(1, 100, ms(0));
        assert!(b.try_take(ms(0)));
        // 100/s is one token per 10 ms: 5 ms is half a token.
        assert!(!b.try_take(ms(5)));
        // The half tokens add up even when observed in small steps.
        assert!(b.try_take(ms(10)));
        for t in 11..20 {
            assert!(!b.try_take(ms(t)), "at {t} ms");
        }
        assert!(b.try_take(ms(20)));
        // One nanosecond short of a token is not a token.
        let t = ms(30) - Duration::from_nanos(1);
        assert!(!b.try_take(t));
        assert!(b.try_take(ms(30)));
    }

    #[test]
    fn refill_stops_at_capacity() {
        let mut b = TokenBucket::new(5, 100, ms(0));
        for _ in 0..5 {
            assert!(b.try_take(ms(0)));
        }
        assert_eq!(b.available(Duration::from_secs(3600)), 5);
    }

    #[test]
    fn time_going_backwards_neither_refills_nor_panics() {
        let mut b = TokenBucket::new(1, 1000, ms(100));
        assert!(b.try_take(ms(100)));
        assert!(!b.try_take(ms(50)));
        assert!(!b.try_take(Duration::ZERO));
        // Time resumes from the latest instant seen, not from the earlier one.
        assert!(!b.try_take(ms(100)));
        assert!(b.try_take(ms(101)));
    }

    #[test]
    fn extreme_values_do_not_overflow() {
        let mut b = TokenBucket::new(u32::MAX, u32::MAX, Duration::ZERO);
        assert_eq!(b.available(Duration::MAX), u32::MAX);
        assert!(b.try_take(Duration::MAX));
        let mut l = RateLimiter::new(limit(u32::MAX, u32::MAX, u32::MAX), Duration::ZERO);
        assert_eq!(l.check(Duration::MAX), Verdict::Allow);
        let mut z = RateLimiter::new(limit(0, 0, 0), Duration::MAX);
        assert_eq!(
            z.check(Duration::MAX),
            Verdict::Allow,
            "burst 0 counts as 1"
        );
        assert_eq!(z.check(Duration::MAX), Verdict::Disconnect);
    }

    #[test]
    fn over_the_burst_messages_are_dropped_then_the_client_disconnected() {
        let mut l = RateLimiter::new(limit(200, 0, 2000), ms(0));
        assert_eq!(burst_at(&mut l, 200, ms(0)), (200, 0, 0));
        assert_eq!(burst_at(&mut l, 2000, ms(1)), (0, 2000, 0));
        assert_eq!(l.check(ms(2)), Verdict::Disconnect);
        assert_eq!(l.dropped(), 2001);
    }

    #[test]
    fn zero_max_dropped_disconnects_at_the_first_over_limit_message() {
        let mut l = RateLimiter::new(limit(2, 0, 0), ms(0));
        assert_eq!(burst_at(&mut l, 2, ms(0)), (2, 0, 0));
        assert_eq!(l.check(ms(0)), Verdict::Disconnect);
    }

    #[test]
    fn sustained_rate_is_admitted_forever() {
        let mut l = RateLimiter::new(limit(200, 100, 2000), ms(0));
        // Use up the burst, then send exactly 100 messages/s for an hour.
        assert_eq!(burst_at(&mut l, 200, ms(0)), (200, 0, 0));
        for i in 1..=360_000u64 {
            assert_eq!(l.check(ms(10 * i)), Verdict::Allow, "message {i}");
        }
        assert_eq!(l.dropped(), 0);
    }

    #[test]
    fn a_client_somewhat_over_the_rate_is_refused_but_never_disconnected() {
        // 150 messages/s against 100/s: a third is dropped, and dropped messages are forgiven
        // faster than they come.
        let mut l = RateLimiter::new(limit(200, 100, 2000), ms(0));
        let (mut allow, mut drop) = (0u64, 0u64);
        for i in 0..150 * 600u64 {
            let now = Duration::from_micros(i * 1_000_000 / 150);
            match l.check(now) {
                Verdict::Allow => allow += 1,
                Verdict::Drop => drop += 1,
                Verdict::Disconnect => panic!("disconnected at message {i}"),
            }
        }
        // About 100/s admitted over 10 minutes, plus the burst.
        assert!((60_000..=60_000 + 201).contains(&allow), "{allow}");
        assert_eq!(allow + drop, 90_000);
    }

    #[test]
    fn a_client_far_over_the_rate_is_disconnected() {
        // 1000 messages/s against 100/s: 900/s dropped, 100/s forgiven, so the 2000 allowed
        // drops last 2000 / 800 = 2.5 s after the burst of 200 ran out (0.2 s).
        let mut l = RateLimiter::new(limit(200, 100, 2000), ms(0));
        let mut at = None;
        for i in 0..10_000u64 {
            if l.check(ms(i)) == Verdict::Disconnect {
                at = Some(i);
                break;
            }
        }
        let at = at.expect("disconnected within 10 s");
        assert!((2_500..=2_900).contains(&at), "disconnected at {at} ms");
    }

    /// The times quoted in docs/signaling.md ("Notes on the limits").
    #[test]
    fn defaults_disconnect_a_flood_within_the_documented_time() {
        for (per_second, low, high) in [(1_000u64, 27_500, 28_300), (10_000, 2_200, 2_400)] {
            let mut l = RateLimiter::new(RateLimit::default(), Duration::ZERO);
            let mut sent = 0u64;
            let at = loop {
                sent += 1;
                let now = Duration::from_micros(sent * 1_000_000 / per_second);
                if l.check(now) == Verdict::Disconnect {
                    break now;
                }
                assert!(sent < 10_000_000, "never disconnected at {per_second}/s");
            };
            let ms = at.as_millis();
            assert!(
                (low..=high).contains(&ms),
                "{per_second}/s: disconnected at {ms} ms"
            );
        }
    }

    #[test]
    fn recovers_after_backing_off() {
        let mut l = RateLimiter::new(limit(10, 100, 50), ms(0));
        assert_eq!(burst_at(&mut l, 10, ms(0)), (10, 0, 0));
        assert_eq!(burst_at(&mut l, 40, ms(0)), (0, 40, 0));
        // 1 s of silence refills both buckets.
        assert_eq!(burst_at(&mut l, 10, ms(1000)), (10, 0, 0));
        assert_eq!(burst_at(&mut l, 50, ms(1000)), (0, 50, 0));
        assert_eq!(l.check(ms(1000)), Verdict::Disconnect);
    }

    #[test]
    fn defaults_admit_a_full_room_joining_at_once() {
        // Worst case for one connection: join, then offer + 20 candidates + end-of-candidates
        // to each of 63 peers (a full room of the default 64), all in the same instant.
        let mut l = RateLimiter::new(RateLimit::default(), ms(0));
        assert_eq!(l.check(ms(0)), Verdict::Allow);
        assert_eq!(burst_at(&mut l, 63 * 22, ms(0)), (63 * 22, 0, 0));
        // A room of 50 all joining together: each client also answers the later joiners, but
        // sends the same 49 × 22 messages in all.
        let mut l = RateLimiter::new(RateLimit::default(), ms(0));
        assert_eq!(burst_at(&mut l, 1 + 49 * 22, ms(0)), (1 + 49 * 22, 0, 0));
        // The default limits are the documented ones.
        assert_eq!(
            l.limit(),
            RateLimit {
                burst: 2048,
                per_second: 100,
                max_dropped: 20_480
            }
        );
    }
}
