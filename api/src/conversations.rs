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
use smartchat_core::conversations::{ConversationSummary, Mode};
use smartchat_core::ids::{ConversationId, MessageId, PhoneNumber};
use smartchat_core::members::Role;
use smartchat_core::settings::ProviderKeyChange;
use smartchat_core::store::PlainMessage;
use smartchat_ledger::Actor;
use utoipa::{IntoParams, ToSchema};

use crate::app::AppState;
use crate::auth::error::AuthError;
use crate::auth::extract::CurrentMember;
use crate::error::{JsonBody, Problem, QueryParams, problem};
use crate::pipeline::{self, ReplyRefused};

/// Who may read and answer conversations.
const ANSWERING: &[Role] = &[Role::Owner, Role::Staff];

fn parse_conversation(text: &str) -> Result<ConversationId, AuthError> {
    text.parse()
        .map_err(|_| AuthError::NotFound("conversation"))
}

/// `?limit=`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// How many (default 50 conversations, 100 messages).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

/// The path parameter of a conversation.
const CONVERSATION_ID: &str = "The conversation's id (a UUID)";

/// The tenant's conversations.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationList {
    /// Most recent first.
    pub conversations: Vec<ConversationSummary>,
}

/// `GET /api/v1/conversations`: the tenant's conversations, most recent first.
#[utoipa::path(
    get,
    path = "/api/v1/conversations",
    operation_id = "list_conversations",
    tag = "conversations",
    params(Page),
    responses((status = 200, description = "The conversations", body = ConversationList))
)]
pub async fn list(
    State(state): State<AppState>,
    me: CurrentMember,
    QueryParams(page): QueryParams<Page>,
) -> Result<Json<ConversationList>, AuthError> {
    me.require(ANSWERING)?;
    let conversations: Vec<ConversationSummary> = state
        .store()
        .list_conversations(me.tenant_id, page.limit.unwrap_or(50))
        .await?;
    Ok(Json(ConversationList { conversations }))
}

/// One message as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
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

/// A conversation's header.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationHeader {
    /// Id.
    pub id: ConversationId,
    /// `assistant` or `human`.
    pub mode: String,
    /// The business number it runs on.
    pub phone_number_id: String,
    /// Last inbound message (unix micros): the 24-hour window.
    pub last_inbound_at: Option<i64>,
}

/// A conversation and its last messages.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationMessages {
    /// The conversation.
    pub conversation: ConversationHeader,
    /// Oldest first.
    pub messages: Vec<MessageView>,
}

/// `GET /api/v1/conversations/{id}/messages`: the last messages, oldest first.
#[utoipa::path(
    get,
    path = "/api/v1/conversations/{id}/messages",
    operation_id = "list_messages",
    tag = "conversations",
    params(("id" = String, Path, description = CONVERSATION_ID), Page),
    responses((status = 200, description = "The conversation and its messages", body = ConversationMessages))
)]
pub async fn messages(
    State(state): State<AppState>,
    me: CurrentMember,
    Path(id): Path<String>,
    QueryParams(page): QueryParams<Page>,
) -> Result<Json<ConversationMessages>, AuthError> {
    me.require(ANSWERING)?;
    let id = parse_conversation(&id)?;
    let (conv, msgs) = state
        .store()
        .conversation_messages(me.tenant_id, id, page.limit.unwrap_or(100))
        .await?;
    let messages: Vec<MessageView> = msgs.into_iter().map(MessageView::from).collect();
    Ok(Json(ConversationMessages {
        conversation: ConversationHeader {
            id: conv.id,
            mode: conv.mode,
            phone_number_id: conv.phone_number_id.as_str().to_owned(),
            last_inbound_at: conv.last_inbound_at,
        },
        messages,
    }))
}

/// Body of a hand-written reply.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ReplyBody {
    /// The text (1 to 4096 characters).
    #[schema(min_length = 1, max_length = 4096)]
    text: String,
}

/// A reply queued for sending.
#[derive(Debug, Serialize, ToSchema)]
pub struct Queued {
    /// The message.
    pub id: MessageId,
    /// `queued`.
    #[schema(value_type = String, example = "queued")]
    pub status: &'static str,
}

/// `POST /api/v1/conversations/{id}/messages`: a reply written by a member; 202 once it is
/// stored and queued; 422 outside the 24-hour window or for an empty or too long text
/// (nothing stored).
#[utoipa::path(
    post,
    path = "/api/v1/conversations/{id}/messages",
    operation_id = "reply_conversation",
    tag = "conversations",
    params(("id" = String, Path, description = CONVERSATION_ID)),
    request_body = ReplyBody,
    responses(
        (status = 202, description = "Stored and queued", body = Queued),
        (status = 422, description = "Outside the 24-hour window (`outside_window`) or an empty or too long text (`invalid`)", body = Problem, content_type = "application/problem+json"),
    )
)]
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
            Json(Queued {
                id: mid,
                status: "queued",
            }),
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

/// A conversation's mode after a take-over or hand-back.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModeChange {
    /// The conversation.
    pub id: ConversationId,
    /// `human` or `assistant`.
    #[schema(value_type = String, example = "human")]
    pub mode: &'static str,
    /// Whether it was in the other mode before.
    pub changed: bool,
}

async fn switch(
    state: &AppState,
    me: &CurrentMember,
    id: &str,
    mode: Mode,
) -> Result<Json<ModeChange>, AuthError> {
    me.require(ANSWERING)?;
    let id = parse_conversation(id)?;
    let changed = state
        .store()
        .set_mode(me.tenant_id, id, mode, Actor::Member(me.member_id.bytes()))
        .await?;
    Ok(Json(ModeChange {
        id,
        mode: mode.as_str(),
        changed,
    }))
}

/// `POST /api/v1/conversations/{id}/takeover`: the assistant stops answering; members
/// reply by hand. Ledgered.
#[utoipa::path(
    post,
    path = "/api/v1/conversations/{id}/takeover",
    operation_id = "take_over_conversation",
    tag = "conversations",
    params(("id" = String, Path, description = CONVERSATION_ID)),
    responses((status = 200, description = "Members answer now", body = ModeChange))
)]
pub async fn take_over(
    State(state): State<AppState>,
    me: CurrentMember,
    Path(id): Path<String>,
) -> Result<Json<ModeChange>, AuthError> {
    switch(&state, &me, &id, Mode::Human).await
}

/// `POST /api/v1/conversations/{id}/handback`: the assistant answers again. Ledgered.
#[utoipa::path(
    post,
    path = "/api/v1/conversations/{id}/handback",
    operation_id = "hand_back_conversation",
    tag = "conversations",
    params(("id" = String, Path, description = CONVERSATION_ID)),
    responses((status = 200, description = "The assistant answers now", body = ModeChange))
)]
pub async fn hand_back(
    State(state): State<AppState>,
    me: CurrentMember,
    Path(id): Path<String>,
) -> Result<Json<ModeChange>, AuthError> {
    switch(&state, &me, &id, Mode::Assistant).await
}

/// The tenant's assistant settings.
#[derive(Debug, Serialize, ToSchema)]
pub struct AssistantSettings {
    /// The tenant's chain of AI providers; `null` for the platform's default.
    pub providers: Option<Vec<String>>,
    /// The providers available to this tenant: the platform's and those it set its own
    /// key for.
    #[schema(value_type = Vec<String>)]
    pub configured: Vec<&'static str>,
    /// The providers that answer, in order.
    pub effective: Vec<String>,
    /// The providers the tenant has its own API key for (never the key).
    pub keys: Vec<String>,
    /// What answers when none can: `offline`.
    #[schema(value_type = String, example = "offline")]
    pub fallback: &'static str,
}

/// `GET /api/v1/settings/assistant`: the tenant's provider chain, the providers available
/// to it (the platform's and those it set its own key for) and which providers have a key
/// of the tenant's (never the key).
#[utoipa::path(
    get,
    path = "/api/v1/settings/assistant",
    operation_id = "get_assistant_settings",
    tag = "settings",
    responses((status = 200, description = "The assistant settings", body = AssistantSettings))
)]
pub async fn get_assistant(
    State(state): State<AppState>,
    me: CurrentMember,
) -> Result<Json<AssistantSettings>, AuthError> {
    me.require(&[Role::Owner, Role::Staff])?;
    Ok(Json(assistant_settings(&state, me.tenant_id).await?))
}

async fn assistant_settings(
    state: &AppState,
    tenant: smartchat_core::ids::TenantId,
) -> Result<AssistantSettings, AuthError> {
    let chain = state.store().provider_chain(tenant).await?;
    let configured = state.pipeline().configured_providers_for(tenant).await?;
    let effective: Vec<String> = match &chain {
        None => configured.iter().map(|n| (*n).to_owned()).collect(),
        Some(names) => names
            .iter()
            .filter(|n| configured.contains(&n.as_str()))
            .cloned()
            .collect(),
    };
    let keys = state.store().provider_key_names(tenant).await?;
    Ok(AssistantSettings {
        providers: chain,
        configured,
        effective,
        keys,
        fallback: "offline",
    })
}

/// Body of `PUT /api/v1/settings/assistant`. `providers`: the chain, `null` returns to the
/// platform's default, absent leaves it. `keys`: per provider the tenant's own API key,
/// `null` removes it, a provider left out keeps its key.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssistantBody {
    /// Provider names in failover order (`openai`, `deepseek`); `[]` for the offline
    /// assistant only, `null` for the platform's default, absent to leave it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Vec<Provider>>)]
    providers: Option<Option<Vec<String>>>,
    /// The tenant's own API key per provider (`null` removes it); stored sealed under the
    /// tenant key and never returned.
    #[serde(default)]
    #[schema(value_type = Option<std::collections::BTreeMap<String, Option<String>>>)]
    keys: Option<std::collections::BTreeMap<String, Option<String>>>,
}

/// A field that is present (`Some`), possibly `null` (`Some(None)`); absent is `None`.
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// A provider a tenant's chain may name.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[expect(
    dead_code,
    reason = "only its schema is used: the body keeps the names as text"
)]
enum Provider {
    Openai,
    Deepseek,
}

/// `PUT /api/v1/settings/assistant`: owners set the failover chain (e.g.
/// `["deepseek","openai"]`, or `[]` for the offline assistant only) and their own provider
/// keys (sealed under the tenant key, never returned). Everything is validated before
/// anything is written, and written in one transaction; each change is ledgered (a key as a
/// key event, without its value).
#[utoipa::path(
    put,
    path = "/api/v1/settings/assistant",
    operation_id = "put_assistant_settings",
    tag = "settings",
    request_body = AssistantBody,
    responses((status = 200, description = "The settings now", body = AssistantSettings))
)]
pub async fn put_assistant(
    State(state): State<AppState>,
    me: CurrentMember,
    JsonBody(body): JsonBody<AssistantBody>,
) -> Result<Json<AssistantSettings>, AuthError> {
    me.require(&[Role::Owner])?;
    let actor = Actor::Member(me.member_id.bytes());
    let changes: Vec<ProviderKeyChange> = body
        .keys
        .iter()
        .flatten()
        .map(|(provider, key)| ProviderKeyChange {
            provider: provider.clone(),
            key: key.clone().map(smartchat_core::config::Secret::new),
        })
        .collect();
    state
        .store()
        .set_assistant(
            me.tenant_id,
            &changes,
            body.providers.as_ref().map(|c| c.as_deref()),
            actor,
        )
        .await?;
    Ok(Json(assistant_settings(&state, me.tenant_id).await?))
}

/// Body of `POST /api/v1/sandbox/messages`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SandboxBody {
    /// The customer's number the member plays (digits, optional `+`).
    #[schema(pattern = "^\\+?[1-9][0-9]{7,14}$")]
    from: String,
    /// What the customer says (1 to 4096 characters).
    #[schema(min_length = 1, max_length = 4096)]
    text: String,
}

/// `POST /api/v1/sandbox/messages`: a member plays the customer on the tenant's sandbox
/// number (one not connected to Meta). The message goes through the same pipeline as a
/// webhook delivery; the answer appears in the conversation's messages. 409 when every
/// number of the tenant is connected to Meta.
#[utoipa::path(
    post,
    path = "/api/v1/sandbox/messages",
    operation_id = "send_sandbox_message",
    tag = "sandbox",
    request_body = SandboxBody,
    responses(
        (status = 202, description = "Received; the answer follows in the conversation", body = SandboxReceived),
        (status = 409, description = "Every number of the tenant is connected to Meta (`no_sandbox_number`)", body = Problem, content_type = "application/problem+json"),
    )
)]
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
        Json(SandboxReceived {
            conversation_id: conv,
            status: "received",
        }),
    )
        .into_response())
}

/// A sandbox message taken in.
#[derive(Debug, Serialize, ToSchema)]
pub struct SandboxReceived {
    /// The customer's conversation.
    pub conversation_id: ConversationId,
    /// `received`.
    #[schema(value_type = String, example = "received")]
    pub status: &'static str,
}
