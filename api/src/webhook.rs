//! Meta's WhatsApp webhook: `GET` for the subscription handshake, `POST` for deliveries.
//! The signature is checked on the raw body before anything is parsed; a delivery is
//! answered 200 only after the transaction that stored it committed (deliveries that arrive
//! together are stored together: [`crate::ingest::GroupCommit`]).

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use smartchat_ledger::{Actor, EntryDraft, EventKind, Outcome};
use smartchat_whatsapp::{SignatureError, parse_payload, verify_signature, verify_subscription};

use crate::app::AppState;
use crate::error::problem;

/// `GET /webhooks/whatsapp`: echoes `hub.challenge` when the verify token matches.
pub async fn get_webhook(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(configured) = state.meta_verify_token() else {
        return problem(
            StatusCode::FORBIDDEN,
            "webhook_not_configured",
            "SMARTCHAT_META_VERIFY_TOKEN is not set",
        );
    };
    match verify_subscription(
        q.get("hub.mode").map(String::as_str),
        q.get("hub.verify_token").map(String::as_str),
        q.get("hub.challenge").map(String::as_str),
        configured,
    ) {
        Ok(challenge) => (StatusCode::OK, challenge).into_response(),
        Err(e) => problem(
            StatusCode::FORBIDDEN,
            "subscription_refused",
            &e.to_string(),
        ),
    }
}

/// `POST /webhooks/whatsapp`: verify, parse, store in one transaction, then 200.
pub async fn post_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(secret) = state.meta_app_secret() else {
        return problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "webhook_not_configured",
            "SMARTCHAT_META_APP_SECRET is not set, so no delivery can be verified",
        );
    };
    let header = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok());
    if let Err(e) = verify_signature(secret.as_bytes(), &body, header) {
        let detail = match e {
            SignatureError::Missing => "X-Hub-Signature-256 header is missing",
            SignatureError::Malformed(_) => "X-Hub-Signature-256 is not sha256=<64 hex digits>",
            _ => "X-Hub-Signature-256 does not match the body",
        };
        rejected(&state).await;
        return problem(StatusCode::UNAUTHORIZED, "bad_signature", detail);
    }
    let payload = match parse_payload(&body) {
        Ok(p) => p,
        Err(e) => return problem(StatusCode::BAD_REQUEST, "malformed_payload", &e.to_string()),
    };
    match state.group_commit().ingest(payload).await {
        Ok(done) => {
            tracing::info!(
                webhook.messages = done.messages,
                webhook.duplicates = done.duplicates,
                webhook.statuses = done.statuses,
                webhook.unknown_numbers = done.unknown_numbers,
                "webhook stored"
            );
            (
                StatusCode::OK,
                axum::Json(serde_json::json!({ "status": "ok" })),
            )
                .into_response()
        }
        Err(e) => crate::error::AppError::Core(e).into_response(),
    }
}

/// A rejected delivery is ledgered (no body, no personal data: only that it happened).
async fn rejected(state: &AppState) {
    let store = &state.store();
    let res = async {
        let mut tx = store.db.begin().await?;
        smartchat_core::audit::enqueue(
            &mut tx,
            &EntryDraft::new(EventKind::WEBHOOK_REJECTED, Actor::Meta).outcome(Outcome::REJECTED),
        )
        .await?;
        tx.commit().await
    }
    .await;
    if let Err(e) = res {
        tracing::warn!(error = %e, "could not ledger a rejected webhook");
    }
}
