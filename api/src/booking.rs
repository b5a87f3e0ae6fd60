//! `GET /b/{token}`: a customer opens a tracked booking link. It redirects to the
//! business's booking URL; the first opening moves the conversation's lead to `booked`
//! and is ledgered. Public (customers have no login); an unknown token is 404 and
//! reveals nothing.

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use smartchat_core::CoreError;
use smartchat_ledger::{Actor, EntryDraft, EventKind, Purpose, RefKind, Reference};

use crate::app::AppState;
use crate::error::problem;

/// `GET /b/{token}`.
pub async fn open(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    match open_inner(&state, &token).await {
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

async fn open_inner(state: &AppState, token: &str) -> Result<Option<String>, CoreError> {
    let store = state.store();
    let Some(click) = store.click(token).await? else {
        return Ok(None);
    };
    // Only web addresses are followed, whatever a profile once held.
    if !(click.url.starts_with("https://") || click.url.starts_with("http://")) {
        return Ok(None);
    }
    if click.first {
        let key = match store.tenant_key(click.tenant).await {
            Ok(k) => Some(k),
            // A shredded tenant: the redirect still works, nothing is recorded.
            Err(CoreError::Shredded { .. }) => None,
            Err(e) => return Err(e),
        };
        let lead = store
            .lead_of_conversation(click.tenant, click.conversation)
            .await?;
        if let (Some(key), Some((lead, stage))) = (key, lead) {
            if stage != "booked" {
                store
                    .set_lead_stage(click.tenant, lead, "booked", Actor::DataSubject)
                    .await?;
            }
            let mut c = store.db.conn().await?;
            let conv = store.conversation(&mut c, click.conversation).await?;
            drop(c);
            let mut tx = store.db.begin().await?;
            let d = EntryDraft::new(EventKind::BOOKING_LINK_CLICKED, Actor::DataSubject)
                .tenant(click.tenant.bytes())
                .subject(key.pseudonym(&conv.subject_id.to_string()))
                .purpose(Purpose::LEAD_MANAGEMENT)
                .reference(Reference::id(RefKind::LEAD, lead.bytes()))
                .reference(Reference::id(
                    RefKind::CONVERSATION,
                    click.conversation.bytes(),
                ));
            smartchat_core::audit::enqueue(&mut tx, &d).await?;
            tx.commit().await?;
        }
    }
    Ok(Some(click.url))
}
