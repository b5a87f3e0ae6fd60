//! `GET /api/v1/analytics?from=YYYY-MM-DD&to=YYYY-MM-DD`: the tenant's anonymized counts,
//! read only from the analytics store (never from raw data), cells from fewer than five
//! customers suppressed (`value: null`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use smartchat_core::analytics::{MIN_SUBJECTS, day_of};
use smartchat_core::members::Role;
use time::OffsetDateTime;

use crate::app::AppState;
use crate::auth::error::AuthError;
use crate::auth::extract::CurrentMember;
use crate::error::{QueryParams, problem};

/// `?from=&to=` (UTC days, inclusive; the last 30 days by default).
#[derive(Debug, Deserialize)]
pub struct Range {
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
}

fn day(s: &str) -> Option<String> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(s, &fmt).ok().map(|_| s.to_owned())
}

/// `GET /api/v1/analytics`.
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
    Ok(Json(json!({
        "from": from, "to": to, "min_subjects": MIN_SUBJECTS, "cells": cells,
    }))
    .into_response())
}
