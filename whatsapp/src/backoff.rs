//! Retry delays: exponential backoff with full jitter, honouring `Retry-After`.

use std::time::Duration;

use rand::Rng;

/// Exponential backoff with full jitter: attempt `n` (0-based) waits a uniform random time in
/// `[0, min(max, base * 2^n)]`. A server-given `Retry-After` overrides it (capped at
/// `max_retry_after`), because the server knows when capacity returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay scale of the first retry.
    pub base: Duration,
    /// Largest computed delay.
    pub max: Duration,
    /// Largest honoured `Retry-After`.
    pub max_retry_after: Duration,
}

impl Default for Backoff {
    /// 1 s base, 5 min cap, `Retry-After` honoured up to 1 hour.
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            max: Duration::from_secs(300),
            max_retry_after: Duration::from_secs(3600),
        }
    }
}

impl Backoff {
    /// The ceiling of the jitter range for attempt `attempt`: `min(max, base * 2^attempt)`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// The delay before retry number `attempt` (0-based), using `rng` for the jitter.
    pub fn delay_with<R: Rng + ?Sized>(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        rng: &mut R,
    ) -> Duration {
        if let Some(ra) = retry_after {
            return ra.min(self.max_retry_after);
        }
        let ceiling = self.ceiling(attempt);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rng.gen_range(0..=nanos))
    }

    /// The delay before retry number `attempt` (0-based), with thread-local randomness.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        self.delay_with(attempt, retry_after, &mut rand::thread_rng())
    }
}

/// Parses a `Retry-After` header: delta-seconds, or an HTTP date (RFC 7231 IMF-fixdate)
/// relative to `now`. Dates in the past give zero; anything else gives `None`.
pub fn parse_retry_after(value: &str, now: time::OffsetDateTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let fmt = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let at = time::PrimitiveDateTime::parse(v, &fmt).ok()?.assume_utc();
    let d = at - now;
    Some(if d.is_negative() {
        Duration::ZERO
    } else {
        d.unsigned_abs()
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn full_jitter_stays_under_ceiling() {
        let b = Backoff::default();
        let mut rng = StdRng::seed_from_u64(7);
        for attempt in 0..40 {
            let c = b.ceiling(attempt);
            assert!(c <= b.max);
            for _ in 0..50 {
                assert!(b.delay_with(attempt, None, &mut rng) <= c);
            }
        }
        assert_eq!(b.ceiling(0), Duration::from_secs(1));
        assert_eq!(b.ceiling(3), Duration::from_secs(8));
        assert_eq!(b.ceiling(30), Duration::from_secs(300));
        // Jitter actually varies.
        let samples: std::collections::HashSet<_> =
            (0..20).map(|_| b.delay_with(5, None, &mut rng)).collect();
        assert!(samples.len() > 1);
    }

    #[test]
    fn retry_after_wins_and_is_capped() {
        let b = Backoff::default();
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(
            b.delay_with(0, Some(Duration::from_secs(42)), &mut rng),
            Duration::from_secs(42)
        );
        assert_eq!(
            b.delay_with(0, Some(Duration::from_secs(99_999)), &mut rng),
            Duration::from_secs(3600)
        );
    }

    #[test]
    fn parse_header() {
        let now = time::macros::datetime!(2015-10-21 07:28:00 UTC);
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:30:00 GMT", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
