//! The owner's API for message templates: list them, sync them from Meta's Graph API
//! (setting the number's WhatsApp Business Account id on the way), or register them by hand
//! for a tenant that has no Meta credentials (the sandbox has no review to wait for).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use smartchat_core::CoreError;
use smartchat_core::ids::PhoneNumberId;
use smartchat_core::members::Role;
use smartchat_core::templates::{NewTemplate, TemplateSource};
use smartchat_ledger::Actor;
use smartchat_whatsapp::{AccessToken, SendError};

use crate::app::AppState;
use crate::auth::error::AuthError;
use crate::auth::extract::CurrentMember;
use crate::error::{JsonBody, problem, problem_with};

/// `GET /api/v1/templates`: the tenant's templates with their review status.
pub async fn list(
    State(state): State<AppState>,
    me: CurrentMember,
) -> Result<Json<serde_json::Value>, AuthError> {
    me.require(&[Role::Owner, Role::Staff])?;
    let templates = state.store().templates(me.tenant_id).await?;
    Ok(Json(json!({ "templates": templates })))
}

/// Body of `PUT /api/v1/templates`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutTemplates {
    templates: Vec<NewTemplate>,
}

/// The tenant's numbers with a real access token (connected to Meta).
async fn connected_numbers(
    state: &AppState,
    tenant: smartchat_core::ids::TenantId,
) -> Result<Vec<(PhoneNumberId, String)>, CoreError> {
    let store = state.store();
    let view = store.tenant(tenant).await?;
    let mut out = Vec::new();
    for raw in &view.summary.phone_number_ids {
        let pnid: PhoneNumberId = raw.parse()?;
        let token = store.access_token(tenant, &pnid).await?;
        if !token.expose().is_empty() {
            out.push((pnid, token.expose().to_owned()));
        }
    }
    Ok(out)
}

/// `PUT /api/v1/templates`: owners of a sandbox tenant (no number connected to Meta)
/// register templates by hand; a connected tenant's templates come from Meta (409).
pub async fn put(
    State(state): State<AppState>,
    me: CurrentMember,
    JsonBody(body): JsonBody<PutTemplates>,
) -> Result<Response, AuthError> {
    me.require(&[Role::Owner])?;
    if !connected_numbers(&state, me.tenant_id).await?.is_empty() {
        return Ok(problem(
            StatusCode::CONFLICT,
            "templates_from_meta",
            "this tenant's number is connected to Meta: its templates are reviewed by Meta and synced with POST /api/v1/templates/sync",
        ));
    }
    if body.templates.is_empty() || body.templates.len() > 250 {
        return Ok(problem(
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            "templates: 1 to 250",
        ));
    }
    let n = state
        .store()
        .put_templates(
            me.tenant_id,
            &body.templates,
            TemplateSource::Sandbox,
            Actor::Member(me.member_id.bytes()),
        )
        .await?;
    let templates = state.store().templates(me.tenant_id).await?;
    Ok(Json(json!({ "written": n, "templates": templates })).into_response())
}

/// Body of `POST /api/v1/templates/sync`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncRequest {
    /// The number whose account to record (with `waba_id`).
    #[serde(default)]
    phone_number_id: Option<String>,
    /// Its WhatsApp Business Account id.
    #[serde(default)]
    waba_id: Option<String>,
}

/// `POST /api/v1/templates/sync`: reads every template of the tenant's WhatsApp Business
/// Accounts from the Graph API and stores them with Meta's status. With
/// `{phone_number_id, waba_id}` it first records that number's account; `{}` syncs the
/// accounts already recorded.
pub async fn sync(
    State(state): State<AppState>,
    me: CurrentMember,
    JsonBody(body): JsonBody<SyncRequest>,
) -> Result<Response, AuthError> {
    me.require(&[Role::Owner])?;
    let store = state.store();
    match (&body.phone_number_id, &body.waba_id) {
        (Some(p), Some(w)) => {
            let pnid: PhoneNumberId = p.parse()?;
            store.set_waba_id(me.tenant_id, &pnid, w).await?;
        }
        (None, None) => {}
        _ => {
            return Ok(problem(
                StatusCode::BAD_REQUEST,
                "invalid_parameter",
                "phone_number_id and waba_id go together",
            ));
        }
    }
    let connected = connected_numbers(&state, me.tenant_id).await?;
    let accounts = store.wabas(me.tenant_id).await?;
    let mut fetched: Vec<NewTemplate> = Vec::new();
    let mut skipped = 0usize;
    let mut synced_accounts = 0usize;
    for (pnid, waba) in &accounts {
        let Some((_, token)) = connected.iter().find(|(p, _)| p.as_str() == pnid) else {
            continue;
        };
        let token =
            AccessToken::new(token.clone()).map_err(|e| CoreError::Internal(e.to_string()))?;
        let remote = match state.pipeline().graph().list_templates(waba, &token).await {
            Ok(r) => r,
            Err(e) => return Ok(graph_problem(&e)),
        };
        synced_accounts += 1;
        for t in remote {
            let candidate = NewTemplate {
                name: t.name,
                language: t.language,
                category: t.category.to_ascii_lowercase(),
                body: t.body.unwrap_or_default(),
                status: t.status.to_ascii_lowercase(),
            };
            // A template we cannot use (no body text, an unknown category) is left out.
            if candidate.validate().is_ok() && !fetched.contains(&candidate) {
                fetched.push(candidate);
            } else {
                skipped += 1;
            }
        }
    }
    if synced_accounts == 0 {
        return Ok(problem(
            StatusCode::CONFLICT,
            "no_business_account",
            "no number of this tenant is connected to Meta with a WhatsApp Business Account id; send {phone_number_id, waba_id}",
        ));
    }
    let written = if fetched.is_empty() {
        0
    } else {
        store
            .put_templates(
                me.tenant_id,
                &fetched,
                TemplateSource::Meta,
                Actor::Member(me.member_id.bytes()),
            )
            .await?
    };
    let templates = store.templates(me.tenant_id).await?;
    Ok(Json(json!({
        "written": written,
        "skipped": skipped,
        "templates": templates,
    }))
    .into_response())
}

fn graph_problem(e: &SendError) -> Response {
    let detail = match e {
        SendError::Graph { error, .. } => format!(
            "Meta refused the template listing: Graph API error {}{}",
            error.code,
            error
                .fbtrace_id
                .as_deref()
                .map(|t| format!(" (fbtrace_id {t})"))
                .unwrap_or_default()
        ),
        other => format!("Meta's Graph API could not be reached: {other}"),
    };
    let mut ext = serde_json::Map::new();
    if let SendError::Graph { error, .. } = e {
        ext.insert("graph_code".into(), json!(error.code));
    }
    problem_with(StatusCode::BAD_GATEWAY, "meta_error", &detail, ext)
}
