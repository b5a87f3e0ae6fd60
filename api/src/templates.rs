//! The owner's API for message templates: list them, sync them from Meta's Graph API
//! (setting the number's WhatsApp Business Account id on the way), or register them by hand
//! for a tenant that has no Meta credentials (the sandbox has no review to wait for).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use smartchat_core::CoreError;
use smartchat_core::ids::PhoneNumberId;
use smartchat_core::members::Role;
use smartchat_core::templates::{NewTemplate, Template, TemplateSource};
use smartchat_ledger::Actor;
use smartchat_whatsapp::{AccessToken, SendError};
use utoipa::ToSchema;

use crate::app::AppState;
use crate::auth::error::AuthError;
use crate::auth::extract::CurrentMember;
use crate::error::{JsonBody, Problem, problem, problem_with};

/// The tenant's templates.
#[derive(Debug, Serialize, ToSchema)]
pub struct TemplateList {
    /// With their review status.
    pub templates: Vec<Template>,
}

/// `GET /api/v1/templates`: the tenant's templates with their review status.
#[utoipa::path(
    get,
    path = "/api/v1/templates",
    operation_id = "list_templates",
    tag = "templates",
    responses((status = 200, description = "The templates", body = TemplateList))
)]
pub async fn list(
    State(state): State<AppState>,
    me: CurrentMember,
) -> Result<Json<TemplateList>, AuthError> {
    me.require(&[Role::Owner, Role::Staff])?;
    let templates = state.store().templates(me.tenant_id).await?;
    Ok(Json(TemplateList { templates }))
}

/// Body of `PUT /api/v1/templates`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutTemplates {
    /// 1 to 250 templates.
    templates: Vec<NewTemplate>,
}

/// Templates written.
#[derive(Debug, Serialize, ToSchema)]
pub struct TemplatesWritten {
    /// How many were written.
    pub written: usize,
    /// The tenant's templates now.
    pub templates: Vec<Template>,
}

/// Templates synced from Meta.
#[derive(Debug, Serialize, ToSchema)]
pub struct TemplatesSynced {
    /// How many were written.
    pub written: usize,
    /// How many Meta listed that cannot be used (no body text, an unknown category).
    pub skipped: usize,
    /// The tenant's templates now.
    pub templates: Vec<Template>,
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
#[utoipa::path(
    put,
    path = "/api/v1/templates",
    operation_id = "put_templates",
    tag = "templates",
    request_body = PutTemplates,
    responses(
        (status = 200, description = "Written", body = TemplatesWritten),
        (status = 409, description = "The tenant's number is connected to Meta (`templates_from_meta`)", body = Problem, content_type = "application/problem+json"),
    )
)]
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
    Ok(Json(TemplatesWritten {
        written: n,
        templates,
    })
    .into_response())
}

/// Body of `POST /api/v1/templates/sync`.
#[derive(Debug, Deserialize, ToSchema)]
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
#[utoipa::path(
    post,
    path = "/api/v1/templates/sync",
    operation_id = "sync_templates",
    tag = "templates",
    request_body = SyncRequest,
    responses(
        (status = 200, description = "Synced", body = TemplatesSynced),
        (status = 409, description = "No number is connected to Meta with a WhatsApp Business Account id (`no_business_account`)", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "Meta's Graph API refused or could not be reached (`meta_error`, with `graph_code`)", body = Problem, content_type = "application/problem+json"),
    )
)]
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
    Ok(Json(TemplatesSynced {
        written,
        skipped,
        templates,
    })
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
