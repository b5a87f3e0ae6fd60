//! Usage data of the portal (privacy policy §2): page views and feature use, counted in
//! the anonymized analytics store like customer activity, with members in place of
//! customers. The store needs to know whether this member already counted in a cell this
//! hour and this day (for its distinct counts, hence its suppression of small cells)
//! without holding who: this process remembers keyed digests of (member, cell) for the
//! current hour and day only, and forgets them when the hour or the day turns. Two server
//! processes may each count a member once in the same cell, which can only make a small
//! cell look larger by one member per extra process; it never records an identity.

use std::collections::HashSet;
use std::sync::Mutex;

use smartchat_core::analytics::{Event, day_of};
use time::OffsetDateTime;

use super::Viewer;
use crate::app::AppState;

/// Metric of a page view.
pub const PAGE_VIEW: &str = smartchat_core::analytics::metric::PAGE_VIEW;
/// Metric of a feature used.
pub const FEATURE_USE: &str = smartchat_core::analytics::metric::FEATURE_USE;

/// Which (member, cell) pairs already counted this hour and this day.
#[derive(Debug)]
pub struct Usage {
    key: [u8; 32],
    seen: Mutex<Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    hour: (String, u8),
    in_hour: HashSet<[u8; 32]>,
    in_day: HashSet<[u8; 32]>,
}

impl Default for Usage {
    fn default() -> Self {
        Self {
            // A fresh key per process: the digests mean nothing outside it.
            key: crate::auth::session::random_secret(),
            seen: Mutex::new(Seen::default()),
        }
    }
}

impl Usage {
    /// Whether this member is new in the cell's hour and day (and remembers it).
    fn first(
        &self,
        viewer: &Viewer,
        metric: &str,
        dimension: &str,
        at: OffsetDateTime,
    ) -> (bool, bool) {
        let day = day_of(at);
        let hour = at.to_offset(time::UtcOffset::UTC).hour();
        let digest = |scope: &str| {
            let mut h = blake3::Hasher::new_keyed(&self.key);
            for part in [
                viewer.me.member_id.to_string().as_str(),
                metric,
                dimension,
                scope,
            ] {
                h.update(&(part.len() as u64).to_le_bytes());
                h.update(part.as_bytes());
            }
            *h.finalize().as_bytes()
        };
        let Ok(mut seen) = self.seen.lock() else {
            return (false, false);
        };
        if seen.hour.0 != day {
            seen.in_day.clear();
            seen.in_hour.clear();
        } else if seen.hour.1 != hour {
            seen.in_hour.clear();
        }
        seen.hour = (day.clone(), hour);
        let h = seen.in_hour.insert(digest(&format!("{day}T{hour}")));
        let d = seen.in_day.insert(digest(&day));
        (h, d)
    }

    /// Counts one use in the background (a failure loses a count, never a page).
    pub fn count(&self, state: &AppState, viewer: &Viewer, metric: &'static str, dimension: &str) {
        let Some(analytics) = state.pipeline().analytics().cloned() else {
            return;
        };
        let at = OffsetDateTime::now_utc();
        let (new_in_hour, new_in_day) = self.first(viewer, metric, dimension, at);
        let tenant = viewer.me.tenant_id;
        let dimension = dimension.to_owned();
        tokio::spawn(async move {
            let ev = Event {
                tenant,
                at,
                metric,
                dimension: &dimension,
                value: 1,
                new_in_hour,
                new_in_day,
            };
            if let Err(e) = analytics.record(&ev).await {
                tracing::warn!(error = %e, "usage not recorded");
            }
        });
    }
}
