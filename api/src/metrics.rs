//! What an operator watches: the durable backlogs of this deployment (the job queue, the
//! ledger's drafts, the search feed), for `smartchat status` and, in Prometheus' text format,
//! `GET /metrics` behind a bearer token (`SMARTCHAT_METRICS_TOKEN`).
//!
//! Counts and ages only, summed over every tenant: no tenant, subject or message is named.

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use subtle::ConstantTimeEq as _;

use smartchat_core::CoreError;
use smartchat_core::jobs::QueueState;

use crate::app::AppState;
use crate::error::{AppError, problem};

/// The backlogs at one moment.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The pipeline's job queue ([`crate::pipeline::QUEUE`]).
    pub jobs: QueueState,
    /// Ledger entries written but not yet given a sequence number.
    pub ledger_pending: u64,
    /// Sequenced ledger entries.
    pub ledger_entries: u64,
    /// The newest signed checkpoint's age in seconds, if one was signed.
    pub checkpoint_age_secs: Option<f64>,
    /// Search feed rows the indexer has not taken yet.
    pub search_backlog: i64,
}

impl Snapshot {
    /// Reads every backlog (each a count over an index range; see
    /// [`smartchat_core::jobs::queue_state`]).
    pub async fn gather(
        store: &smartchat_core::store::Store,
        ledger: &smartchat_core::ledger_store::Ledger,
    ) -> Result<Self, CoreError> {
        let now = smartchat_core::db::now_micros();
        let jobs =
            smartchat_core::jobs::queue_state(&store.db, crate::pipeline::QUEUE, now).await?;
        let checkpoint_age_secs = ledger
            .latest_checkpoint()
            .await?
            .map(|cp| now.saturating_sub(cp.created_micros).max(0) as f64 / 1e6);
        Ok(Self {
            jobs,
            ledger_pending: ledger.pending().await?,
            ledger_entries: ledger.size().await?,
            checkpoint_age_secs,
            search_backlog: smartchat_core::search_feed::backlog(&store.db).await?,
        })
    }

    /// The snapshot in Prometheus' text exposition format (version 0.0.4).
    pub fn to_prometheus(&self) -> String {
        let mut out = String::new();
        let mut gauge = |name: &str, help: &str, samples: &[(&str, f64)]| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} gauge");
            for (labels, v) in samples {
                let _ = writeln!(out, "{name}{labels} {v}");
            }
        };
        let j = &self.jobs;
        gauge(
            "smartchat_jobs",
            "Jobs of the pipeline queue by state (due: ready and due now; later: ready, due later).",
            &[
                ("{state=\"due\"}", j.due as f64),
                ("{state=\"later\"}", j.later as f64),
                ("{state=\"running\"}", j.running as f64),
                ("{state=\"dead\"}", j.dead as f64),
                ("{state=\"done\"}", j.done as f64),
            ],
        );
        gauge(
            "smartchat_jobs_oldest_due_seconds",
            "How long the oldest due job has waited (0 when none is due).",
            &[("", j.oldest_due_micros.unwrap_or(0) as f64 / 1e6)],
        );
        gauge(
            "smartchat_ledger_pending_entries",
            "Ledger entries written and not yet sequenced.",
            &[("", self.ledger_pending as f64)],
        );
        gauge(
            "smartchat_ledger_entries",
            "Sequenced ledger entries.",
            &[("", self.ledger_entries as f64)],
        );
        if let Some(age) = self.checkpoint_age_secs {
            gauge(
                "smartchat_ledger_checkpoint_age_seconds",
                "Age of the newest signed ledger checkpoint.",
                &[("", age)],
            );
        }
        gauge(
            "smartchat_search_feed_backlog",
            "Search feed rows not yet indexed.",
            &[("", self.search_backlog as f64)],
        );
        out
    }
}

/// `GET /metrics`: [`Snapshot::to_prometheus`] for a caller presenting
/// `Authorization: Bearer <SMARTCHAT_METRICS_TOKEN>`; 404 while no token is configured, 401
/// (with `WWW-Authenticate: Bearer`) for a missing or wrong one.
pub async fn get_metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(expected) = state.metrics_token() else {
        return problem(
            StatusCode::NOT_FOUND,
            "metrics_off",
            "metrics are off: set SMARTCHAT_METRICS_TOKEN to serve them",
        );
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // Digests first: equal lengths, so the comparison's time says nothing of the token.
    let ok = presented.is_some_and(|p| {
        bool::from(
            blake3::hash(p.as_bytes())
                .as_bytes()
                .ct_eq(blake3::hash(expected.as_bytes()).as_bytes()),
        )
    });
    if !ok {
        let mut res = problem(
            StatusCode::UNAUTHORIZED,
            "metrics_token_required",
            "present the metrics token as Authorization: Bearer <SMARTCHAT_METRICS_TOKEN>",
        );
        res.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"metrics\""),
        );
        return res;
    }
    match Snapshot::gather(state.store(), state.ledger()).await {
        Ok(s) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            s.to_prometheus(),
        )
            .into_response(),
        Err(e) => AppError::from(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_gauge_with_help_and_type() {
        let s = Snapshot {
            jobs: QueueState {
                due: 3,
                later: 1,
                running: 2,
                dead: 4,
                done: 50,
                oldest_due_micros: Some(1_500_000),
            },
            ledger_pending: 7,
            ledger_entries: 120,
            checkpoint_age_secs: None,
            search_backlog: 9,
        };
        let text = s.to_prometheus();
        for line in [
            "smartchat_jobs{state=\"due\"} 3",
            "smartchat_jobs{state=\"dead\"} 4",
            "smartchat_jobs{state=\"done\"} 50",
            "smartchat_jobs_oldest_due_seconds 1.5",
            "smartchat_ledger_pending_entries 7",
            "smartchat_ledger_entries 120",
            "smartchat_search_feed_backlog 9",
            "# TYPE smartchat_jobs gauge",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} missing:\n{text}");
        }
        assert!(!text.contains("checkpoint_age"), "no checkpoint, no gauge");
        let with = Snapshot {
            checkpoint_age_secs: Some(2.25),
            ..s
        };
        assert!(
            with.to_prometheus()
                .lines()
                .any(|l| l == "smartchat_ledger_checkpoint_age_seconds 2.25")
        );
    }
}
