//! `GET /api/v1/analytics?from=YYYY-MM-DD&to=YYYY-MM-DD`: the tenant's anonymized counts,
//! read only from the analytics store (never from raw data), cells from fewer than five
//! customers suppressed (`value: null`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use smartchat_core::analytics::{Cell, MIN_SUBJECTS, day_of};
use smartchat_core::members::Role;
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

use crate::app::AppState;
use crate::auth::error::AuthError;
use crate::auth::extract::CurrentMember;
use crate::error::{QueryParams, problem};

/// `?from=&to=` (UTC days, inclusive; the last 30 days by default).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Range {
    /// First UTC day, `YYYY-MM-DD` (default 30 days ago).
    #[serde(default)]
    #[param(format = Date)]
    from: Option<String>,
    /// Last UTC day, `YYYY-MM-DD` (default today).
    #[serde(default)]
    #[param(format = Date)]
    to: Option<String>,
}

/// The tenant's anonymized counts.
#[derive(Debug, Serialize, ToSchema)]
pub struct AnalyticsReport {
    /// First day.
    pub from: String,
    /// Last day.
    pub to: String,
    /// Cells from fewer customers than this are suppressed.
    pub min_subjects: i64,
    /// The counts.
    pub cells: Vec<Cell>,
}

fn day(s: &str) -> Option<String> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(s, &fmt).ok().map(|_| s.to_owned())
}

/// `GET /api/v1/analytics`.
#[utoipa::path(
    get,
    path = "/api/v1/analytics",
    operation_id = "get_analytics",
    tag = "analytics",
    params(Range),
    responses((status = 200, description = "The counts", body = AnalyticsReport))
)]
pub async fn get_analytics(
    State(state): State<AppState>,
    me: CurrentMember,
    QueryParams(range): QueryParams<Range>,
) -> Result<Response, AuthError> {
    me.require(&[Role::Owner, Role::Staff])?;
    let Some(analytics) = state.pipeline().analytics() else {
        return Ok(problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "analytics_unavailable",
            "this server process has no analytics store",
        ));
    };
    let now = OffsetDateTime::now_utc();
    let parse = |v: &Option<String>, default: OffsetDateTime, name: &'static str| match v {
        None => Ok(day_of(default)),
        Some(s) => day(s).ok_or(name),
    };
    let (from, to) = match (
        parse(&range.from, now - time::Duration::days(30), "from"),
        parse(&range.to, now, "to"),
    ) {
        (Ok(f), Ok(t)) if f <= t => (f, t),
        (Err(name), _) | (_, Err(name)) => {
            return Ok(problem(
                StatusCode::BAD_REQUEST,
                "invalid_parameter",
                &format!("{name}: a day as YYYY-MM-DD"),
            ));
        }
        _ => {
            return Ok(problem(
                StatusCode::BAD_REQUEST,
                "invalid_parameter",
                "from must not be after to",
            ));
        }
    };
    let cells = analytics.cells(me.tenant_id, &from, &to).await?;
    Ok(Json(AnalyticsReport {
        from,
        to,
        min_subjects: MIN_SUBJECTS,
        cells,
    })
    .into_response())
}
