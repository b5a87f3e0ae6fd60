//! The owners' onboarding and settings API (issue 8): the business profile, the WhatsApp
//! numbers, the policy choices a tenant may tighten, and the records of processing.
//!
//! Owners change; staff read the profile; auditors read the policy and the records. Every
//! look-up is scoped by the caller's tenant (another tenant's number is 404). No route here
//! returns a token, a key or a word of any conversation.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use smartchat_assistant::BusinessProfile;
use smartchat_core::CoreError;
use smartchat_core::config::Secret;
use smartchat_core::ids::PhoneNumberId;
use smartchat_core::members::Role;
use smartchat_core::store::Profile;
use smartchat_ledger::Actor;
use smartchat_policies::TenantOverrides;

use crate::app::AppState;
use crate::auth::error::AuthError;
use crate::auth::extract::CurrentMember;
use crate::error::{JsonBody, QueryParams, problem, problem_with};

const OWNER: &[Role] = &[Role::Owner];

fn actor(me: &CurrentMember) -> Actor {
    Actor::Member(me.member_id.bytes())
}

/// `GET /api/v1/profile` (owners, staff): the business profile the assistant answers from.
#[utoipa::path(get, path = "/api/v1/profile", operation_id = "get_profile", tag = "settings",
    responses((status = 200, description = "The handle, status and business profile", body = Object)))]
pub async fn get_profile(
    State(state): State<AppState>,
    me: CurrentMember,
) -> Result<Json<serde_json::Value>, AuthError> {
    me.require(&[Role::Owner, Role::Staff])?;
    let view = state.store().tenant(me.tenant_id).await?;
    Ok(Json(json!({
        "handle": view.summary.handle,
        "status": view.summary.status,
        "profile": view.profile.0,
    })))
}

/// Checks a profile as the assistant will read it (a `BusinessProfile`); the error names
/// the field and the rule. The profile is stored as the assistant parsed it.
pub fn validate_profile(value: serde_json::Value) -> Result<Profile, String> {
    let p: BusinessProfile =
        serde_json::from_value(value).map_err(|e| format!("the profile does not parse: {e}"))?;
    p.validate().map_err(|e| e.to_string())?;
    serde_json::to_value(&p)
        .map(Profile)
        .map_err(|e| format!("the profile does not serialize: {e}"))
}

/// `PUT /api/v1/profile` (owners): replaces the profile (a `BusinessProfile` JSON). Invalid
/// input is 422 with the field and the rule, and nothing is written. Ledgered.
#[utoipa::path(put, path = "/api/v1/profile", operation_id = "put_profile", tag = "settings",
    request_body(content = Object, description = "A business profile (name, business_type, timezone, hours, services, staff, booking_links, greeting, handoff_message, languages, location, contact)"),
    responses((status = 200, description = "The profile now", body = Object)))]
pub async fn put_profile(
    State(state): State<AppState>,
    me: CurrentMember,
    JsonBody(body): JsonBody<serde_json::Value>,
) -> Result<Response, AuthError> {
    me.require(OWNER)?;
    let profile = match validate_profile(body) {
        Ok(p) => p,
        Err(detail) => {
            return Ok(problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_profile",
                &detail,
            ));
        }
    };
    state
        .store()
        .update_profile(me.tenant_id, &profile, actor(&me))
        .await?;
    Ok(Json(json!({ "profile": profile.0 })).into_response())
}

/// `GET /api/v1/numbers` (owners): the connected numbers; whether a token is set, never it.
#[utoipa::path(get, path = "/api/v1/numbers", operation_id = "list_numbers", tag = "settings",
    responses((status = 200, description = "The connected numbers (never a token)", body = Object)))]
pub async fn list_numbers(
    State(state): State<AppState>,
    me: CurrentMember,
) -> Result<Json<serde_json::Value>, AuthError> {
    me.require(OWNER)?;
    let numbers = state.store().numbers(me.tenant_id).await?;
    Ok(Json(json!({ "numbers": numbers })))
}

/// Body of `POST /api/v1/numbers`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::ToSchema)]
pub struct NumberBody {
    /// Meta's phone number id.
    #[schema(pattern = "^[0-9]{1,40}$")]
    phone_number_id: String,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    waba_id: Option<String>,
}

/// `POST /api/v1/numbers` (owners): connects a number; without an access token it is a
/// sandbox number (replies go to the local sandbox). 201; 409 when it is anyone's already.
#[utoipa::path(post, path = "/api/v1/numbers", operation_id = "connect_number", tag = "settings",
    request_body = NumberBody,
    responses((status = 201, description = "The number is connected", body = Object)))]
pub async fn connect_number(
    State(state): State<AppState>,
    me: CurrentMember,
    JsonBody(body): JsonBody<NumberBody>,
) -> Result<Response, AuthError> {
    me.require(OWNER)?;
    let pnid: PhoneNumberId = body.phone_number_id.trim().parse()?;
    let token = body.access_token.filter(|t| !t.is_empty()).map(Secret::new);
    let view = state
        .store()
        .connect_number(
            me.tenant_id,
            &pnid,
            token.as_ref(),
            body.waba_id.as_deref(),
            actor(&me),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// `POST /api/v1/numbers/sandbox` (owners): connects a fresh sandbox number (a generated
/// id no Meta number can have), so a new business can try its assistant at once. 201.
#[utoipa::path(post, path = "/api/v1/numbers/sandbox", operation_id = "connect_sandbox_number", tag = "settings",
    responses((status = 201, description = "A sandbox number is connected", body = Object)))]
pub async fn connect_sandbox_number(
    State(state): State<AppState>,
    me: CurrentMember,
) -> Result<Response, AuthError> {
    me.require(OWNER)?;
    let view = state
        .store()
        .connect_sandbox_number(me.tenant_id, actor(&me))
        .await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// `DELETE /api/v1/numbers/{phone_number_id}` (owners): disconnects; 404 for a number of
/// another tenant. 204.
#[utoipa::path(delete, path = "/api/v1/numbers/{phone_number_id}", operation_id = "disconnect_number", tag = "settings",
    params(("phone_number_id" = String, Path, description = "The number's Meta phone number id (or sandbox id)")),
    responses((status = 204, description = "Disconnected")))]
pub async fn disconnect_number(
    State(state): State<AppState>,
    me: CurrentMember,
    Path(pnid): Path<String>,
) -> Result<StatusCode, AuthError> {
    me.require(OWNER)?;
    let pnid: PhoneNumberId = pnid
        .parse()
        .map_err(|_| AuthError::NotFound("phone number"))?;
    state
        .store()
        .disconnect_number(me.tenant_id, &pnid, actor(&me))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn policy_view(
    state: &AppState,
    tenant: smartchat_core::ids::TenantId,
) -> Result<serde_json::Value, AuthError> {
    let pol = &state.store().policy;
    let eff = pol.effective(tenant).await?;
    let overrides = pol.overrides(tenant).await?;
    Ok(json!({
        "version": eff.version(),
        "platform_version": eff.platform_version(),
        "effective": eff.doc(),
        "restrictions": eff.restrictions(),
        "overrides": overrides,
    }))
}

/// `GET /api/v1/policy` (owners, auditors): the tenant's effective policy and its overrides.
#[utoipa::path(get, path = "/api/v1/policy", operation_id = "get_policy", tag = "settings",
    responses((status = 200, description = "The effective policy and the tenant's overrides", body = Object)))]
pub async fn get_policy(
    State(state): State<AppState>,
    me: CurrentMember,
) -> Result<Json<serde_json::Value>, AuthError> {
    me.require(&[Role::Owner, Role::Auditor])?;
    Ok(Json(policy_view(&state, me.tenant_id).await?))
}

/// `PUT /api/v1/policy` (owners): the tenant's overrides (`TenantOverrides` JSON). Refused
/// with 422 and every rule it would loosen, as `smartchat policy set` refuses; ledgered as
/// the CLI ledgers it (`policy_version_changed`), with the member as actor.
#[utoipa::path(put, path = "/api/v1/policy", operation_id = "put_policy", tag = "settings",
    request_body(content = Object, description = "The tenant's overrides (TenantOverrides): forbid_processors, processors, retention, termination, redaction, rights; only tightenings"),
    responses((status = 200, description = "The policy now", body = Object)))]
pub async fn put_policy(
    State(state): State<AppState>,
    me: CurrentMember,
    JsonBody(overrides): JsonBody<TenantOverrides>,
) -> Result<Response, AuthError> {
    me.require(OWNER)?;
    let pol = &state.store().policy;
    if let Err(e) = pol.platform().effective_for(&overrides) {
        let mut ext = serde_json::Map::new();
        ext.insert("violations".into(), json!(e.violations));
        return Ok(problem_with(
            StatusCode::UNPROCESSABLE_ENTITY,
            "policy_loosens",
            &e.to_string(),
            ext,
        ));
    }
    pol.set_overrides(me.tenant_id, &overrides, actor(&me))
        .await?;
    Ok(Json(policy_view(&state, me.tenant_id).await?).into_response())
}

/// `?format=`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RecordsQuery {
    /// `json` (default) or `markdown`.
    #[param(pattern = "^(json|markdown|md)$")]
    format: Option<String>,
}

/// `GET /api/v1/records` (owners, auditors): the records of processing activities (GDPR
/// Art. 30(2)), the same content as `smartchat policy records`: JSON, or Markdown with
/// `?format=markdown`.
#[utoipa::path(get, path = "/api/v1/records", operation_id = "get_records", tag = "settings",
    params(RecordsQuery),
    responses((status = 200, description = "The records of processing activities (GDPR Art. 30(2))", content(
        (Object = "application/json"),
        (String = "text/markdown"),
    ))))]
pub async fn get_records(
    State(state): State<AppState>,
    me: CurrentMember,
    QueryParams(q): QueryParams<RecordsQuery>,
) -> Result<Response, AuthError> {
    me.require(&[Role::Owner, Role::Auditor])?;
    let markdown = match q.format.as_deref() {
        None | Some("json") => false,
        Some("markdown" | "md") => true,
        Some(_) => {
            return Ok(problem(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "format must be json or markdown",
            ));
        }
    };
    let records = records_of(state.store(), state.ledger(), me.tenant_id).await?;
    if markdown {
        Ok((
            [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
            records.to_markdown(),
        )
            .into_response())
    } else {
        let v = serde_json::to_value(&records)
            .map_err(|e| AuthError::Core(CoreError::Internal(e.to_string())))?;
        Ok(Json(v).into_response())
    }
}

/// A tenant's records of processing activities (GDPR Art. 30(2)) from its effective policy
/// and its ledger entries (pending entries are sequenced first), for the API and the CLI.
pub async fn records_of(
    store: &smartchat_core::store::Store,
    ledger: &smartchat_core::ledger_store::Ledger,
    tenant: smartchat_core::ids::TenantId,
) -> Result<smartchat_policies::Records, CoreError> {
    let view = store.tenant(tenant).await?;
    let eff = store.policy.effective(tenant).await?;
    ledger.sequence_all().await?;
    let entries = ledger.tenant_entries(tenant.bytes()).await?;
    let usage = smartchat_core::policy_store::usage_from_entries(&entries);
    let name = view
        .summary
        .name
        .unwrap_or_else(|| view.summary.handle.clone());
    Ok(smartchat_policies::records_of_processing(
        &eff, &name, &usage,
    ))
}
