//! Retry schedule: bounded attempts, exponential backoff with full jitter, and the
//! server's `Retry-After` / `retry-after-ms` honoured.

use std::time::{Duration, SystemTime};

use rand::Rng;
use reqwest::header::HeaderMap;

/// How one provider is retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per provider, including the first (at least 1).
    pub max_attempts: u32,
    /// Backoff base: the cap of the first retry's jitter.
    pub base_delay: Duration,
    /// Largest backoff cap.
    pub max_delay: Duration,
    /// A server asking to wait longer than this is not waited for: the chain fails over.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// No retries: one attempt.
    pub fn no_retry() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// The jitter cap before retry number `retry` (0 for the first retry):
    /// `min(max_delay, base_delay * 2^retry)`.
    pub fn backoff_cap(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.min(30)).unwrap_or(u32::MAX);
        self.base_delay
            .checked_mul(factor)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }

    /// Full-jitter backoff: uniform in `[0, backoff_cap(retry)]`.
    pub fn backoff<R: Rng + ?Sized>(&self, retry: u32, rng: &mut R) -> Duration {
        let cap = self.backoff_cap(retry);
        let cap_ms = u64::try_from(cap.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rng.gen_range(0..=cap_ms))
    }
}

/// Largest server-requested wait we parse; anything larger is clamped.
const RETRY_AFTER_CLAMP: Duration = Duration::from_secs(3_600);

fn seconds(v: f64) -> Option<Duration> {
    if v.is_finite() && v >= 0.0 {
        Some(Duration::from_secs_f64(
            v.min(RETRY_AFTER_CLAMP.as_secs_f64()),
        ))
    } else {
        None
    }
}

/// Parses the wait a server asked for: `retry-after-ms` (milliseconds, OpenAI) first, then
/// `Retry-After` as delta-seconds or an HTTP date (relative to `now`; a past date is zero).
/// Values are clamped to one hour; garbage is ignored.
pub fn parse_retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    if let Some(ms) = headers
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .and_then(|ms| seconds(ms / 1_000.0))
    {
        return Some(ms);
    }
    let raw = headers.get("retry-after")?.to_str().ok()?.trim();
    parse_retry_after_value(raw, now)
}

/// Parses one `Retry-After` value (delta-seconds or HTTP date).
pub fn parse_retry_after_value(raw: &str, now: SystemTime) -> Option<Duration> {
    let raw = raw.trim();
    if raw.is_empty() {
        return None;
    }
    if raw.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return raw.parse::<f64>().ok().and_then(seconds);
    }
    let at = jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(raw)
        .ok()?;
    let now = jiff::Timestamp::try_from(now).ok()?;
    let delta = at.as_millisecond().saturating_sub(now.as_millisecond());
    let ms = u64::try_from(delta.max(0)).unwrap_or(0);
    Some(Duration::from_millis(ms).min(RETRY_AFTER_CLAMP))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use proptest::prelude::*;
    use reqwest::header::HeaderValue;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn delta_seconds() {
        assert_eq!(
            parse_retry_after_value("2", at(0)),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            parse_retry_after_value(" 1.5 ", at(0)),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            parse_retry_after_value("999999", at(0)),
            Some(RETRY_AFTER_CLAMP)
        );
        assert_eq!(parse_retry_after_value("soon", at(0)), None);
        assert_eq!(parse_retry_after_value("", at(0)), None);
    }

    #[test]
    fn http_date() {
        // Sun, 06 Nov 1994 08:49:37 GMT = 784111777
        let now = at(784_111_777 - 5);
        assert_eq!(
            parse_retry_after_value("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(Duration::from_secs(5))
        );
        // A date in the past means "now".
        assert_eq!(
            parse_retry_after_value("Sun, 06 Nov 1994 08:49:37 GMT", at(784_111_777 + 60)),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn ms_header_wins() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("20"));
        h.insert("retry-after-ms", HeaderValue::from_static("1500"));
        assert_eq!(
            parse_retry_after(&h, at(0)),
            Some(Duration::from_millis(1500))
        );
        h.remove("retry-after-ms");
        assert_eq!(parse_retry_after(&h, at(0)), Some(Duration::from_secs(20)));
        h.insert("retry-after-ms", HeaderValue::from_static("-3"));
        assert_eq!(parse_retry_after(&h, at(0)), Some(Duration::from_secs(20)));
    }

    #[test]
    fn backoff_caps_grow_then_saturate() {
        let p = RetryPolicy::default();
        assert_eq!(p.backoff_cap(0), Duration::from_millis(250));
        assert_eq!(p.backoff_cap(1), Duration::from_millis(500));
        assert_eq!(p.backoff_cap(5), Duration::from_secs(8));
        assert_eq!(p.backoff_cap(200), Duration::from_secs(8));
    }

    proptest! {
        #[test]
        fn backoff_within_cap(retry in 0u32..100, seed in any::<u64>()) {
            use rand::SeedableRng;
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let p = RetryPolicy::default();
            prop_assert!(p.backoff(retry, &mut rng) <= p.backoff_cap(retry));
        }

        #[test]
        fn retry_after_never_panics(s in "\\PC{0,40}", now in 0u64..4_000_000_000) {
            if let Some(d) = parse_retry_after_value(&s, at(now)) {
                prop_assert!(d <= RETRY_AFTER_CLAMP);
            }
        }
    }
}
