//! Outbound rate limiting: per business number throughput and per (number, recipient) pair.
//!
//! Both limits use GCRA (a token bucket expressed as a "theoretical arrival time"): a key with
//! rate `1/T` and burst `b` accepts a send at time `t` if `tat <= t + (b-1)T`, then moves `tat`
//! to `max(tat, t) + T`. A burst therefore borrows from later quota, which is how Meta
//! describes the pair limit (about one message per 6 s, bursts up to 45 that are paid back).
//! Defaults: 80 messages/s per number (Meta's default tier), pair 1 per 6 s with burst 45.
//!
//! Recipients are stored only as keyed 64-bit hashes, so the limiter holds no phone numbers.
//! Time comes from a [`Clock`]: [`TokioClock`] follows `tokio::time` (and so
//! `tokio::time::pause` in tests), [`ManualClock`] is advanced by hand.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::ids::{PhoneNumberId, Recipient};

/// A monotonic clock: time elapsed since an arbitrary fixed origin.
pub trait Clock: Send + Sync {
    /// Now, as time since the clock's origin.
    fn now(&self) -> Duration;
}

/// A clock on `tokio::time::Instant`, so paused tokio time in tests drives it.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    origin: tokio::time::Instant,
}

impl TokioClock {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        Self {
            origin: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

/// A clock that only moves when told to; clones share the same time.
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    nanos: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock at its origin.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let n = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_add(n, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::SeqCst))
    }
}

/// The per-(number, recipient) limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PairLimit {
    /// Sustained spacing between messages to one user.
    pub interval: Duration,
    /// Messages that may go at once (paid back at `interval` each).
    pub burst: u32,
}

impl Default for PairLimit {
    /// One message per 6 s, bursts of up to 45 (Meta's pair rate limit, error 131056).
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(6),
            burst: 45,
        }
    }
}

/// Limits applied by a [`RateLimiter`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimiterConfig {
    /// Messages per second per business number (Meta: 80 default, 1,000 upgraded, 20 for
    /// coexistence numbers).
    pub per_number_per_second: u32,
    /// Messages a number may send at once; defaults to one second's worth.
    pub per_number_burst: u32,
    /// Per-overrides for individual numbers (messages per second; burst = rate).
    pub per_number_overrides: HashMap<PhoneNumberId, u32>,
    /// The pair limit.
    pub pair: PairLimit,
}

impl Default for RateLimiterConfig {
    fn default() -> Self {
        Self {
            per_number_per_second: 80,
            per_number_burst: 80,
            per_number_overrides: HashMap::new(),
            pair: PairLimit::default(),
        }
    }
}

/// Refusal from [`RateLimiter::check`]: try again after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("rate limited locally; retry after {} ms", .0.as_millis())]
pub struct RetryAfter(pub Duration);

/// GCRA state of one key.
#[derive(Debug, Clone, Copy)]
struct Gcra {
    tat: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Rate {
    interval: Duration,
    tolerance: Duration,
}

impl Rate {
    fn new(interval: Duration, burst: u32) -> Self {
        Self {
            interval,
            tolerance: interval.saturating_mul(burst.max(1) - 1),
        }
    }

    fn per_second(rate: u32, burst: u32) -> Self {
        let interval = Duration::from_secs(1) / rate.max(1);
        Self::new(interval, burst)
    }

    /// Earliest time at or after `now` at which a send conforms.
    fn conform_at(&self, state: Option<Gcra>, now: Duration) -> Duration {
        match state {
            None => now,
            Some(g) => g.tat.saturating_sub(self.tolerance).max(now),
        }
    }

    fn commit(&self, state: Option<Gcra>, at: Duration) -> Gcra {
        let tat = state.map_or(at, |g| g.tat.max(at));
        Gcra {
            tat: tat.saturating_add(self.interval),
        }
    }
}

#[derive(Debug)]
struct State {
    numbers: HashMap<PhoneNumberId, Gcra>,
    pairs: HashMap<u64, Gcra>,
    next_prune: usize,
}

/// Per-number throughput plus per-pair rate limiter. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct RateLimiter<C: Clock = TokioClock> {
    config: RateLimiterConfig,
    clock: C,
    hasher: RandomState,
    state: Mutex<State>,
}

const MIN_PRUNE: usize = 1024;

impl<C: Clock> RateLimiter<C> {
    /// A limiter with `config`, reading time from `clock`.
    pub fn new(config: RateLimiterConfig, clock: C) -> Self {
        Self {
            config,
            clock,
            hasher: RandomState::new(),
            state: Mutex::new(State {
                numbers: HashMap::new(),
                pairs: HashMap::new(),
                next_prune: MIN_PRUNE,
            }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &RateLimiterConfig {
        &self.config
    }

    fn number_rate(&self, pn: &PhoneNumberId) -> Rate {
        match self.config.per_number_overrides.get(pn) {
            Some(r) => Rate::per_second(*r, *r),
            None => Rate::per_second(
                self.config.per_number_per_second,
                self.config.per_number_burst,
            ),
        }
    }

    fn pair_key(&self, pn: &PhoneNumberId, to: &Recipient) -> u64 {
        self.hasher.hash_one((pn.as_str(), to.as_str()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state stays consistent even if a holder panicked: every update is one insert.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a slot now if both limits allow it; otherwise takes nothing and says how long
    /// to wait.
    pub fn check(&self, pn: &PhoneNumberId, to: &Recipient) -> Result<(), RetryAfter> {
        let now = self.clock.now();
        let at = self.reserve(pn, to, now, false);
        match at {
            Some(_) => Ok(()),
            None => {
                let st = self.lock();
                let n = self
                    .number_rate(pn)
                    .conform_at(st.numbers.get(pn).copied(), now);
                let p = Rate::new(self.config.pair.interval, self.config.pair.burst)
                    .conform_at(st.pairs.get(&self.pair_key(pn, to)).copied(), now);
                Err(RetryAfter(n.max(p).saturating_sub(now)))
            }
        }
    }

    /// Reserves the earliest slot both limits allow and waits for it (with `tokio::time`).
    /// Returns the time waited. The slot is taken at once, so concurrent callers queue
    /// fairly; a caller dropped while waiting still consumes its slot.
    pub async fn acquire(&self, pn: &PhoneNumberId, to: &Recipient) -> Duration {
        let now = self.clock.now();
        let at = self.reserve(pn, to, now, true).unwrap_or(now);
        let wait = at.saturating_sub(now);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        wait
    }

    /// Finds the conforming time; commits it if it is `now` or `future_ok`.
    fn reserve(
        &self,
        pn: &PhoneNumberId,
        to: &Recipient,
        now: Duration,
        future_ok: bool,
    ) -> Option<Duration> {
        let nrate = self.number_rate(pn);
        let prate = Rate::new(self.config.pair.interval, self.config.pair.burst);
        let key = self.pair_key(pn, to);
        let mut st = self.lock();
        let ns = st.numbers.get(pn).copied();
        let ps = st.pairs.get(&key).copied();
        let at = nrate.conform_at(ns, now).max(prate.conform_at(ps, now));
        if at > now && !future_ok {
            return None;
        }
        st.numbers.insert(pn.clone(), nrate.commit(ns, at));
        st.pairs.insert(key, prate.commit(ps, at));
        if st.pairs.len() >= st.next_prune {
            // A pair whose tat has passed behaves exactly like a new one: forget it.
            st.pairs.retain(|_, g| g.tat > now);
            st.next_prune = (st.pairs.len() * 2).max(MIN_PRUNE);
        }
        Some(at)
    }

    /// Number of pair entries held (for tests and metrics).
    pub fn tracked_pairs(&self) -> usize {
        self.lock().pairs.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::ids::WaId;

    fn pn(s: &str) -> PhoneNumberId {
        PhoneNumberId::new(s).unwrap()
    }
    fn to(s: &str) -> Recipient {
        Recipient::WaId(WaId::new(s).unwrap())
    }

    #[test]
    fn throughput_bucket() {
        let clock = ManualClock::new();
        let cfg = RateLimiterConfig {
            pair: PairLimit {
                interval: Duration::ZERO,
                burst: 1,
            },
            ..RateLimiterConfig::default()
        };
        let rl = RateLimiter::new(cfg, clock.clone());
        let n = pn("1");
        for i in 0..80 {
            rl.check(&n, &to(&format!("{}", 1000 + i))).unwrap();
        }
        let err = rl.check(&n, &to("2000")).unwrap_err();
        assert_eq!(err.0, Duration::from_micros(12_500));
        clock.advance(Duration::from_micros(12_499));
        assert!(rl.check(&n, &to("2000")).is_err());
        clock.advance(Duration::from_micros(1));
        rl.check(&n, &to("2000")).unwrap();
        // Another number has its own bucket.
        rl.check(&pn("2"), &to("2000")).unwrap();
        // After a second at rest the full burst is back.
        clock.advance(Duration::from_secs(1));
        for i in 0..80 {
            rl.check(&n, &to(&format!("{}", 3000 + i))).unwrap();
        }
        assert!(rl.check(&n, &to("4000")).is_err());
    }

    #[test]
    fn pair_burst_then_spacing() {
        let clock = ManualClock::new();
        let rl = RateLimiter::new(RateLimiterConfig::default(), clock.clone());
        let n = pn("1");
        for _ in 0..45 {
            clock.advance(Duration::from_millis(20));
            rl.check(&n, &to("15550001")).unwrap();
        }
        let err = rl.check(&n, &to("15550001")).unwrap_err();
        // The burst is paid back: the next slot is 45 * 6 s after the first send, minus the
        // 44 * 6 s tolerance, i.e. 6 s after the first send.
        assert_eq!(
            err.0,
            Duration::from_secs(6) - Duration::from_millis(20 * 44)
        );
        // Other recipients are unaffected.
        rl.check(&n, &to("15550002")).unwrap();
        clock.advance(err.0);
        rl.check(&n, &to("15550001")).unwrap();
        assert!(rl.check(&n, &to("15550001")).is_err());
        clock.advance(Duration::from_secs(6));
        rl.check(&n, &to("15550001")).unwrap();
    }

    #[test]
    fn refusal_consumes_nothing() {
        let clock = ManualClock::new();
        let cfg = RateLimiterConfig {
            per_number_per_second: 1,
            per_number_burst: 1,
            pair: PairLimit {
                interval: Duration::from_secs(6),
                burst: 1,
            },
            ..RateLimiterConfig::default()
        };
        let rl = RateLimiter::new(cfg, clock.clone());
        let n = pn("1");
        rl.check(&n, &to("1")).unwrap();
        // Pair 2 is free but the number is not: refused, and pair 2 keeps its slot.
        assert_eq!(
            rl.check(&n, &to("2")).unwrap_err().0,
            Duration::from_secs(1)
        );
        clock.advance(Duration::from_secs(1));
        rl.check(&n, &to("2")).unwrap();
        // Pair 1 (6 s spacing) is now the tighter limit.
        assert_eq!(
            rl.check(&n, &to("1")).unwrap_err().0,
            Duration::from_secs(5)
        );
    }

    #[test]
    fn overrides_and_pruning() {
        let clock = ManualClock::new();
        let mut cfg = RateLimiterConfig::default();
        cfg.per_number_overrides.insert(pn("9"), 20);
        let rl = RateLimiter::new(cfg, clock.clone());
        for i in 0..20 {
            rl.check(&pn("9"), &to(&format!("{}", 100 + i))).unwrap();
        }
        assert!(rl.check(&pn("9"), &to("999")).is_err());
        for i in 0..2000 {
            clock.advance(Duration::from_millis(13));
            rl.check(&pn("1"), &to(&format!("{}", 10_000 + i))).unwrap();
        }
        clock.advance(Duration::from_secs(7));
        for i in 0..2000 {
            clock.advance(Duration::from_millis(13));
            rl.check(&pn("1"), &to(&format!("{}", 90_000 + i))).unwrap();
        }
        // Pairs idle for their interval are forgotten once the map reaches the prune mark.
        assert!(rl.tracked_pairs() <= MIN_PRUNE, "{}", rl.tracked_pairs());
    }

    #[tokio::test(start_paused = true)]
    async fn acquire_waits_with_paused_time() {
        let cfg = RateLimiterConfig {
            pair: PairLimit {
                interval: Duration::from_secs(6),
                burst: 1,
            },
            ..RateLimiterConfig::default()
        };
        let rl = RateLimiter::new(cfg, TokioClock::new());
        let n = pn("1");
        let start = tokio::time::Instant::now();
        assert_eq!(rl.acquire(&n, &to("1")).await, Duration::ZERO);
        assert_eq!(rl.acquire(&n, &to("1")).await, Duration::from_secs(6));
        assert_eq!(rl.acquire(&n, &to("1")).await, Duration::from_secs(6));
        assert_eq!(start.elapsed(), Duration::from_secs(12));
        assert_eq!(rl.acquire(&n, &to("2")).await, Duration::ZERO);
    }
}
