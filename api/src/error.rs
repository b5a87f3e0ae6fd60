//! The one error type of the API and its one JSON shape (RFC 9457 problem details).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use smartchat_core::CoreError;

/// An error on its way to becoming an HTTP response.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// From the core.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// Not ready to serve (database unreachable, migrations pending).
    #[error("not ready: {0}")]
    NotReady(String),
}

/// RFC 9457 problem details.
#[derive(Debug, Serialize)]
pub struct Problem {
    /// A URI naming the problem type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary.
    pub title: String,
    /// HTTP status.
    pub status: u16,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// Human explanation (never personal data; generic for 5xx).
    pub detail: String,
}

impl AppError {
    fn parts(&self) -> (StatusCode, &'static str, String) {
        match self {
            Self::NotReady(d) => (StatusCode::SERVICE_UNAVAILABLE, "not_ready", d.clone()),
            Self::Core(e) => match e {
                CoreError::NotFound { what } => (
                    StatusCode::NOT_FOUND,
                    "not_found",
                    format!("{what} not found"),
                ),
                CoreError::Conflict { what } => (
                    StatusCode::CONFLICT,
                    "conflict",
                    format!("{what} already exists"),
                ),
                CoreError::Invalid { .. } => {
                    (StatusCode::UNPROCESSABLE_ENTITY, "invalid", e.to_string())
                }
                CoreError::Shredded { .. } => (StatusCode::GONE, "shredded", e.to_string()),
                CoreError::Database(_) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "database_unavailable",
                    "the database is unavailable; try again later".into(),
                ),
                _ => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error".into(),
                ),
            },
        }
    }
}

/// A problem-details response for errors that are not [`AppError`]s.
pub fn problem(status: StatusCode, code: &'static str, detail: &str) -> Response {
    let body = Problem {
        kind: format!("https://smartchat.invalid/problems/{code}"),
        title: status.canonical_reason().unwrap_or("error").to_owned(),
        status: status.as_u16(),
        code,
        detail: detail.to_owned(),
    };
    let mut res = (status, axum::Json(body)).into_response();
    res.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/problem+json"),
    );
    res
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, code, detail) = self.parts();
        if status.is_server_error() {
            // Logged once, here; the body stays generic.
            tracing::error!(error = %self, code, "request failed");
        }
        problem(status, code, &detail)
    }
}
