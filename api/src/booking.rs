//! `GET /b/{token}`: a customer opens a tracked booking link. It redirects to the
//! business's booking URL; the first opening moves the conversation's lead to `booked`
//! and is ledgered. Public (customers have no login); an unknown token is 404 and
//! reveals nothing.

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::error::problem;

/// `GET /b/{token}`.
pub async fn open(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    match state.store().open_link(&token).await {
        Ok(Some(url)) => (
            StatusCode::FOUND,
            [
                (header::LOCATION, url),
                (header::CACHE_CONTROL, "no-store".to_owned()),
            ],
        )
            .into_response(),
        Ok(None) => problem(
            StatusCode::NOT_FOUND,
            "unknown_link",
            "this link is not known here",
        ),
        Err(e) => {
            let (status, code, detail) = crate::error::core_parts(&e);
            problem(status, code, &detail)
        }
    }
}
