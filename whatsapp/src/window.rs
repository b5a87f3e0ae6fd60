//! The 24-hour customer service window.
//!
//! Any inbound user message opens (or resets) a 24-hour window; inside it any message may be
//! sent. Outbound messages, delivery and read receipts never extend it. Outside it only
//! approved templates may be sent; Meta fails free-form sends with 131047 asynchronously, so we
//! refuse them locally first.

use time::{Duration, OffsetDateTime};

use crate::send::SendError;

/// Length of the customer service window.
pub const CUSTOMER_SERVICE_WINDOW: Duration = Duration::hours(24);

/// True if a window opened by the last inbound message at `last_inbound_at` is still open at
/// `now` (open while `now < last_inbound_at + 24h`; an inbound time slightly ahead of `now`
/// counts as open). `None` (the user never wrote) is closed.
pub fn window_open(last_inbound_at: Option<OffsetDateTime>, now: OffsetDateTime) -> bool {
    match last_inbound_at {
        None => false,
        Some(t) => now < t.saturating_add(CUSTOMER_SERVICE_WINDOW),
    }
}

/// What is about to be sent, for the window rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboundKind {
    /// Any non-template message (text, media, interactive, reaction, ...): window only.
    FreeForm,
    /// An approved template: allowed at any time.
    Template,
}

/// Proof that the window rule allowed a send. Only [`check_window`] makes one, and
/// [`crate::GraphClient::send_text`] demands one, so free-form text cannot be sent unchecked.
/// Check right before sending; a permit does not keep the window open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowPermit {
    kind: OutboundKind,
}

impl WindowPermit {
    /// The kind of send this permit allows.
    pub fn kind(&self) -> OutboundKind {
        self.kind
    }
}

/// Applies the window rule: templates always pass; free-form passes only while the window is
/// open, else [`SendError::OutsideWindow`].
pub fn check_window(
    kind: OutboundKind,
    last_inbound_at: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> Result<WindowPermit, SendError> {
    match kind {
        OutboundKind::Template => Ok(WindowPermit { kind }),
        OutboundKind::FreeForm if window_open(last_inbound_at, now) => Ok(WindowPermit { kind }),
        OutboundKind::FreeForm => Err(SendError::OutsideWindow { last_inbound_at }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use time::macros::datetime;

    #[test]
    fn window_edges() {
        let t = datetime!(2026-11-26 10:00 UTC);
        assert!(!window_open(None, t));
        assert!(window_open(Some(t), t));
        assert!(window_open(
            Some(t),
            t + Duration::hours(24) - Duration::seconds(1)
        ));
        assert!(!window_open(Some(t), t + Duration::hours(24)));
        assert!(!window_open(Some(t), t + Duration::days(3)));
        assert!(window_open(Some(t + Duration::seconds(5)), t));
    }

    #[test]
    fn guard() {
        let t = datetime!(2026-11-26 10:00 UTC);
        let late = t + Duration::hours(25);
        assert!(check_window(OutboundKind::FreeForm, Some(t), t + Duration::hours(1)).is_ok());
        let err = check_window(OutboundKind::FreeForm, Some(t), late).unwrap_err();
        assert!(matches!(err, SendError::OutsideWindow { .. }));
        assert!(err.to_string().contains("24-hour"));
        assert!(check_window(OutboundKind::FreeForm, None, t).is_err());
        let p = check_window(OutboundKind::Template, None, late).unwrap();
        assert_eq!(p.kind(), OutboundKind::Template);
    }
}
