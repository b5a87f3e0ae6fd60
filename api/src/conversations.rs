//! The owner's conversation API: list conversations, read one, reply by hand, take a
//! conversation over from the assistant and hand it back; the tenant's assistant settings;
//! and the sandbox, where a member plays the customer on a number not connected to Meta.
//!
//! Owners and staff may use it; auditors may not (they see the ledger, not conversations).
//! A conversation of another tenant is 404. State-changing requests from the portal carry
//! the CSRF header (see [`crate::auth`]).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use smartchat_core::conversations::{ConversationSummary, Mode};
use smartchat_core::ids::{ConversationId, PhoneNumber};
use smartchat_core::members::Role;
use smartchat_core::store::PlainMessage;
use smartchat_ledger::Actor;

use crate::app::AppState;
use crate::auth::error::AuthError;
use crate::auth::extract::CurrentMember;
use crate::error::{JsonBody, QueryParams, problem};
use crate::pipeline::{self, ReplyRefused};

/// Who may read and answer conversations.
const ANSWERING: &[Role] = &[Role::Owner, Role::Staff];

fn parse_conversation(text: &str) -> Result<ConversationId, AuthError> {
    text.parse()
        .map_err(|_| AuthError::NotFound("conversation"))
}

/// `?limit=`.
#[derive(Debug, Deserialize)]
pub struct Page {
    limit: Option<i64>,
}

/// `GET /api/v1/conversations`: the tenant's conversations, most recent first.
pub async fn list(
    State(state): State<AppState>,
    me: CurrentMember,
    QueryParams(page): QueryParams<Page>,
) -> Result<Json<serde_json::Value>, AuthError> {
    me.require(ANSWERING)?;
    let list: Vec<ConversationSummary> = state
        .store()
        .list_conversations(me.tenant_id, page.limit.unwrap_or(50))
        .await?;
    Ok(Json(json!({ "conversations": list })))
}

/// One message as the API shows it.
#[derive(Debug, Serialize)]
pub struct MessageView {
    id: String,
    direction: String,
    author: String,
    kind: String,
    status: String,
    body: Option<String>,
    error_code: Option<i32>,
    created_at: i64,
    status_at: i64,
}

impl From<PlainMessage> for MessageView {
    fn from(m: PlainMessage) -> Self {
        Self {
            id: m.row.id,
            direction: m.row.direction,
            author: m.row.author,
            kind: m.row.kind,
            status: m.row.status,
            body: m.body,
            error_code: m.row.error_code,
            created_at: m.row.created_at,
            status_at: m.row.status_at,
        }
    }
}

/// `GET /api/v1/conversations/{id}/messages`: the last messages, oldest first.
pub async fn messages(
    State(state): State<AppState>,
    me: CurrentMember,
    Path(id): Path<String>,
    QueryParams(page): QueryParams<Page>,
) -> Result<Json<serde_json::Value>, AuthError> {
    me.require(ANSWERING)?;
    let id = parse_conversation(&id)?;
    let (conv, msgs) = state
        .store()
        .conversation_messages(me.tenant_id, id, page.limit.unwrap_or(100))
        .await?;
    let msgs: Vec<MessageView> = msgs.into_iter().map(MessageView::from).collect();
    Ok(Json(json!({
        "conversation": {
            "id": conv.id,
            "mode": conv.mode,
            "phone_number_id": conv.phone_number_id.as_str(),
            "last_inbound_at": conv.last_inbound_at,
        },
        "messages": msgs,
    })))
}

/// Body of a hand-written reply.
#[derive(Debug, Deserialize)]
pub struct ReplyBody {
    text: String,
}

/// `POST /api/v1/conversations/{id}/messages`: a reply written by a member; 202 once it is
/// stored and queued; 422 outside the 24-hour window or for an empty or too long text
/// (nothing stored).
pub async fn reply(
    State(state): State<AppState>,
    me: CurrentMember,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ReplyBody>,
) -> Result<Response, AuthError> {
    me.require(ANSWERING)?;
    let id = parse_conversation(&id)?;
    match pipeline::queue_human_reply(
        state.pipeline(),
        me.tenant_id,
        id,
        me.member_id.bytes(),
        &body.text,
    )
    .await?
    {
        Ok(mid) => Ok((
            StatusCode::ACCEPTED,
            Json(json!({ "id": mid, "status": "queued" })),
        )
            .into_response()),
        Err(why @ ReplyRefused::OutsideWindow) => Ok(problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "outside_window",
            &why.to_string(),
        )),
        Err(why @ ReplyRefused::Text(_)) => Ok(problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            &why.to_string(),
        )),
    }
}

async fn switch(
    state: &AppState,
    me: &CurrentMember,
    id: &str,
    mode: Mode,
) -> Result<Json<serde_json::Value>, AuthError> {
    me.require(ANSWERING)?;
    let id = parse_conversation(id)?;
    let changed = state
        .store()
        .set_mode(me.tenant_id, id, mode, Actor::Member(me.member_id.bytes()))
        .await?;
    Ok(Json(
        json!({ "id": id, "mode": mode.as_str(), "changed": changed }),
    ))
}

/// `POST /api/v1/conversations/{id}/takeover`: the assistant stops answering; members
/// reply by hand. Ledgered.
pub async fn take_over(
    State(state): State<AppState>,
    me: CurrentMember,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, AuthError> {
    switch(&state, &me, &id, Mode::Human).await
}

/// `POST /api/v1/conversations/{id}/handback`: the assistant answers again. Ledgered.
pub async fn hand_back(
    State(state): State<AppState>,
    me: CurrentMember,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, AuthError> {
    switch(&state, &me, &id, Mode::Assistant).await
}

/// `GET /api/v1/settings/assistant`: the tenant's provider chain and what the server has.
pub async fn get_assistant(
    State(state): State<AppState>,
    me: CurrentMember,
) -> Result<Json<serde_json::Value>, AuthError> {
    me.require(&[Role::Owner, Role::Staff])?;
    let chain = state.store().provider_chain(me.tenant_id).await?;
    let configured = state.pipeline().configured_providers();
    let effective: Vec<&str> = match &chain {
        None => configured.clone(),
        Some(names) => names
            .iter()
            .map(String::as_str)
            .filter(|n| configured.contains(n))
            .collect(),
    };
    Ok(Json(json!({
        "providers": chain,
        "configured": configured,
        "effective": effective,
        "fallback": "offline",
    })))
}

/// Body of `PUT /api/v1/settings/assistant`: `null` returns to the platform's default.
#[derive(Debug, Deserialize)]
pub struct AssistantBody {
    providers: Option<Vec<String>>,
}

/// `PUT /api/v1/settings/assistant`: owners set the failover chain (e.g.
/// `["deepseek","openai"]`, or `[]` for the offline assistant only). Ledgered.
pub async fn put_assistant(
    State(state): State<AppState>,
    me: CurrentMember,
    JsonBody(body): JsonBody<AssistantBody>,
) -> Result<Json<serde_json::Value>, AuthError> {
    me.require(&[Role::Owner])?;
    state
        .store()
        .set_provider_chain(
            me.tenant_id,
            body.providers.as_deref(),
            Actor::Member(me.member_id.bytes()),
        )
        .await?;
    Ok(Json(json!({ "providers": body.providers })))
}

/// Body of `POST /api/v1/sandbox/messages`.
#[derive(Debug, Deserialize)]
pub struct SandboxBody {
    /// The customer's number the member plays (digits, optional `+`).
    from: String,
    /// What the customer says.
    text: String,
}

/// `POST /api/v1/sandbox/messages`: a member plays the customer on the tenant's sandbox
/// number (one not connected to Meta). The message goes through the same pipeline as a
/// webhook delivery; the answer appears in the conversation's messages. 409 when every
/// number of the tenant is connected to Meta.
pub async fn sandbox(
    State(state): State<AppState>,
    me: CurrentMember,
    JsonBody(body): JsonBody<SandboxBody>,
) -> Result<Response, AuthError> {
    me.require(ANSWERING)?;
    let from: PhoneNumber = body.from.parse()?;
    let text = body.text.trim();
    if text.is_empty() || text.chars().count() > pipeline::MAX_TEXT_CHARS {
        return Ok(problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "the text must be 1 to 4096 characters",
        ));
    }
    let p = state.pipeline();
    let Some(pnid) = pipeline::sandbox_number(p, me.tenant_id).await? else {
        return Ok(problem(
            StatusCode::CONFLICT,
            "no_sandbox_number",
            "every WhatsApp number of this business is connected to Meta; the sandbox needs a number without an access token",
        ));
    };
    let payload = pipeline::sandbox_payload(&pnid, &from, text)?;
    pipeline::ingest(p, &payload).await?;
    let sid = state
        .store()
        .find_subject(
            me.tenant_id,
            smartchat_core::crypto::BlindKind::WaId,
            from.digits(),
        )
        .await?
        .ok_or(AuthError::NotFound("sandbox customer"))?;
    let conv = state
        .store()
        .conversation_of(me.tenant_id, sid, &pnid.parse()?)
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "conversation_id": conv, "status": "received" })),
    )
        .into_response())
}
