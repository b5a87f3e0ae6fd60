//! Authentication and authorization failures as RFC 9457 problem details (the same shape
//! as [`crate::error::AppError`]). Details never carry a token, a login or a claim value.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use smartchat_core::CoreError;

use crate::error::Problem;

/// Why a request was not let in.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No credentials at all (401, `WWW-Authenticate: Bearer`).
    #[error("authentication required")]
    Unauthenticated,
    /// A bearer token that does not verify (401, `error="invalid_token"`). The reason is
    /// for the log only.
    #[error("invalid token: {0}")]
    InvalidToken(String),
    /// A session cookie that names no live session (401).
    #[error("session expired or ended")]
    InvalidSession,
    /// Authenticated, but no member of any (or the named) tenant (403).
    #[error("not a member")]
    NotAMember,
    /// The member's role does not allow this (403).
    #[error("role not allowed")]
    Forbidden,
    /// A state-changing portal request without its CSRF token (403).
    #[error("CSRF token missing or wrong")]
    Csrf,
    /// A callback whose login attempt is unknown, used, expired or bound to another
    /// browser (400).
    #[error("invalid login attempt: {0}")]
    InvalidLoginAttempt(&'static str),
    /// The provider refused the code, or its ID token failed a check (401).
    #[error("login failed: {0}")]
    LoginFailed(String),
    /// OIDC is not configured on this server (404 for its routes).
    #[error("OIDC is not configured")]
    OidcDisabled,
    /// The provider could not be reached or answered nonsense (502).
    #[error("identity provider: {0}")]
    Provider(String),
    /// A resource that does not exist or belongs to another tenant (404).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// From the core.
    #[error(transparent)]
    Core(#[from] CoreError),
}

impl AuthError {
    /// Status, stable code and detail (the problem document's parts).
    pub(crate) fn parts(&self) -> (StatusCode, &'static str, String) {
        match self {
            Self::Unauthenticated => (
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "log in or present a bearer token".into(),
            ),
            Self::InvalidToken(_) => (
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "the access token is invalid or expired".into(),
            ),
            Self::InvalidSession => (
                StatusCode::UNAUTHORIZED,
                "invalid_session",
                "the session has expired or ended; log in again".into(),
            ),
            Self::NotAMember => (
                StatusCode::FORBIDDEN,
                "not_a_member",
                "this identity is not a member of the tenant".into(),
            ),
            Self::Forbidden => (
                StatusCode::FORBIDDEN,
                "forbidden",
                "your role does not allow this".into(),
            ),
            Self::Csrf => (
                StatusCode::FORBIDDEN,
                "csrf",
                "the form's CSRF token is missing or wrong; reload the page".into(),
            ),
            Self::InvalidLoginAttempt(why) => (
                StatusCode::BAD_REQUEST,
                "invalid_login_attempt",
                format!("{why}; start the login again"),
            ),
            Self::LoginFailed(_) => (
                StatusCode::UNAUTHORIZED,
                "login_failed",
                "the identity provider's answer did not verify".into(),
            ),
            Self::OidcDisabled => (
                StatusCode::NOT_FOUND,
                "oidc_disabled",
                "no identity provider is configured".into(),
            ),
            Self::NotFound(what) => (
                StatusCode::NOT_FOUND,
                "not_found",
                format!("{what} not found"),
            ),
            Self::Provider(_) => (
                StatusCode::BAD_GATEWAY,
                "provider_unavailable",
                "internal error".into(),
            ),
            Self::Core(e) => crate::error::core_parts(e),
        }
    }
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let (status, code, detail) = self.parts();
        if status.is_server_error() {
            tracing::error!(error = %self, code, "request failed");
        } else {
            // Every refused authentication is worth a line (ASVS V16.3.1); no values.
            tracing::info!(reason = %self, code, "authentication refused");
        }
        let body = Problem {
            kind: format!("https://smartchat.invalid/problems/{code}"),
            title: status.canonical_reason().unwrap_or("error").to_owned(),
            status: status.as_u16(),
            code,
            detail,
        };
        let mut res = (status, axum::Json(body)).into_response();
        let headers = res.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        match self {
            Self::Unauthenticated => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"smartchat\""),
                );
            }
            Self::InvalidToken(_) | Self::InvalidSession => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"smartchat\", error=\"invalid_token\""),
                );
            }
            _ => {}
        }
        res
    }
}
