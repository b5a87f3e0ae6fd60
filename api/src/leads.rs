//! Leads: the `lead` job that extracts a lead from a conversation after each customer
//! message (an AI provider with structured output when the tenant's policy allows it,
//! the rule-based extractor otherwise and as the fallback), and the owner's lead API:
//! list and filter, read, correct, change stage, export as CSV.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use smartchat_assistant::leads::{
    Extractor, FallbackReason, LeadRequest, LeadSignals, ProviderExtractor,
};
use smartchat_assistant::{ConversationTurn, Pseudonym, RequestFlags, Role as TurnRole};
use smartchat_core::CoreError;
use smartchat_core::ids::{ConversationId, LeadId, MessageId, TenantId};
use smartchat_core::jobs::Job;
use smartchat_core::leads::{Extracted, LeadView, STAGES};
use smartchat_core::members::Role;
use smartchat_ledger::{Actor, EntryDraft, EventKind, Purpose, RefKind, Reference};
use smartchat_policies::{Category, ProcessorId, SubjectState};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

use crate::app::AppState;
use crate::auth::error::AuthError;
use crate::auth::extract::CurrentMember;
use crate::error::{JsonBody, QueryParams};
use crate::pipeline::{self, Pipeline};

/// Messages of context the extractor sees.
const HISTORY: i64 = 12;

/// Runs one `lead` job: extracts from the conversation up to the message, and records the
/// lead with its ledger entries in one transaction (which also completes the job).
pub async fn run_lead(p: &Pipeline, job: &Job) -> Result<(), CoreError> {
    let store = &p.store;
    let payload = job.payload()?;
    let mid: MessageId = payload["message"].as_str().unwrap_or_default().parse()?;
    let mut turn = p.db_turn().await;
    let mut c = store.db.conn().await?;
    let inbound = store.message_row(&mut c, mid).await?;
    let tenant: TenantId = inbound.tenant_id.parse()?;
    let conv_id: ConversationId = inbound.conversation_id.parse()?;
    let conv = store.conversation(&mut c, conv_id).await?;
    let key = store.tenant_key(tenant).await?;
    let flags = store.subject_flags(&mut c, conv.subject_id).await?;
    let history = store
        .recent_messages(&mut c, tenant, &conv, &key, HISTORY)
        .await?;
    let contact = store
        .subject_contact_in(&mut c, tenant, conv.subject_id, &key)
        .await?;
    drop(c);
    let view = store.tenant(tenant).await?;
    let profile = pipeline::business_profile(&view.profile.0);
    let effective = store.policy.effective(tenant).await?;
    let own_number = contact.wa_id.clone();
    let redact = |t: &str| effective.redactor().redact(t, own_number.as_deref()).text;
    let sid = conv.subject_id.to_string();
    let pseudonym_bytes = key.pseudonym(&sid);
    let subject_state = SubjectState {
        objected_to_ai: flags.objected,
        opted_out_of_follow_ups: flags.opted_out,
        ..SubjectState::default()
    };
    // Providers the policy allows for lead data, in the tenant's order; none for a subject
    // who objected to AI processing (the rules still run: no AI is involved).
    let mut chain = Vec::new();
    if !flags.objected {
        let tenant_chain = store.provider_chain(tenant).await?;
        let available = p.providers_for(tenant).await?;
        for prov in pipeline::tenant_providers(&available, tenant_chain.as_deref()) {
            let name = pipeline::provider_name(prov);
            let pid =
                ProcessorId::new(name).map_err(|_| CoreError::Internal("processor id".into()))?;
            if effective
                .may(
                    &pid,
                    &[Category::Conversations, Category::LeadData],
                    smartchat_policies::Purpose::RespondToEnquiries,
                    &subject_state,
                )
                .is_allow()
            {
                chain.push(prov.clone());
            }
        }
    }
    let turns: Vec<ConversationTurn> = history
        .iter()
        .filter(|m| m.row.created_at <= inbound.created_at)
        .filter_map(|m| {
            let body = m.body.as_deref()?;
            let role = match m.row.author.as_str() {
                "customer" => TurnRole::Customer,
                "human" => TurnRole::Human,
                _ => TurnRole::Assistant,
            };
            Some(ConversationTurn {
                role,
                text: redact(body),
                at: OffsetDateTime::from_unix_timestamp_nanos(i128::from(m.row.created_at) * 1000)
                    .unwrap_or(OffsetDateTime::UNIX_EPOCH),
            })
        })
        .collect();
    let pseudonym = Pseudonym::parse(&hex::encode(pseudonym_bytes))
        .map_err(|e| CoreError::Internal(e.to_string()))?;
    let req = LeadRequest::new(profile, turns, pseudonym, OffsetDateTime::now_utc())
        .map_err(|e| CoreError::Invalid {
            field: "lead request",
            reason: e.to_string(),
        })?
        .with_flags(RequestFlags {
            allow_providers: !chain.is_empty(),
            ..RequestFlags::default()
        })
        .with_signals(LeadSignals {
            profile_name: contact.profile_name.clone(),
            ..LeadSignals::default()
        });
    let extraction = turn
        .outside(ProviderExtractor::new(chain).extract(&req))
        .await;
    let version = effective.version();
    let base = EntryDraft::new(EventKind::AI_PROVIDER_CALL, Actor::System)
        .tenant(tenant.bytes())
        .subject(pseudonym_bytes)
        .policy_version(version.0)
        .purpose(Purpose::LEAD_MANAGEMENT)
        .reference(Reference::id(RefKind::MESSAGE, mid.bytes()));
    let calls: Vec<EntryDraft> = extraction
        .attempts
        .iter()
        .map(|a| pipeline::provider_call(base.clone(), a))
        .collect();
    let fields = match serde_json::to_value(&extraction.fields) {
        Ok(serde_json::Value::Object(m)) => m
            .into_iter()
            .filter(|(k, v)| !v.is_null() && k != "stage_hint")
            .collect(),
        _ => serde_json::Map::new(),
    };
    let found = Extracted {
        stage_hint: extraction.fields.stage_hint.map(|h| h.as_str().to_owned()),
        provider: match &extraction.extractor {
            Extractor::Provider { provider, .. } => Some(pipeline::kind_code(provider).0),
            Extractor::Rules => None,
        },
        fell_back: matches!(
            extraction.fallback,
            Some(FallbackReason::ProviderFailed | FallbackReason::InvalidOutput)
        ),
        fields,
    };
    let (_, created) = store.record_lead(&conv, &found, &calls, job.id).await?;
    // Counted after the commit: a failure here loses a count, never a lead. One lead per
    // customer, so each count is a distinct customer in its hour and day.
    if let (true, Some(a)) = (created, p.analytics()) {
        let ev = smartchat_core::analytics::Event {
            tenant,
            at: OffsetDateTime::now_utc(),
            metric: smartchat_core::analytics::metric::LEADS,
            dimension: "",
            value: 1,
            new_in_hour: true,
            new_in_day: true,
        };
        if let Err(e) = a.record(&ev).await {
            tracing::warn!(error = %e, "analytics not recorded");
        }
    }
    Ok(())
}

/// Who may work with leads.
const LEAD_ROLES: &[Role] = &[Role::Owner, Role::Staff];

fn parse_lead(text: &str) -> Result<LeadId, AuthError> {
    text.parse().map_err(|_| AuthError::NotFound("lead"))
}

/// `?stage=&limit=`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LeadFilter {
    /// Only leads in this stage (`new`, `engaged`, `booked`, `lost`).
    #[param(pattern = "^(new|engaged|booked|lost)?$")]
    stage: Option<String>,
    /// At most this many (1 to 10,000; default 100).
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<i64>,
}

/// The path parameter of a lead.
const LEAD_ID: &str = "The lead's id (a UUID)";

/// The tenant's leads.
#[derive(Debug, Serialize, ToSchema)]
pub struct LeadList {
    /// Most recent first.
    pub leads: Vec<LeadView>,
}

async fn filtered(
    state: &AppState,
    me: &CurrentMember,
    f: &LeadFilter,
) -> Result<Vec<LeadView>, AuthError> {
    me.require(LEAD_ROLES)?;
    let stage = f.stage.as_deref().filter(|s| !s.is_empty());
    if let Some(s) = stage {
        if !STAGES.contains(&s) {
            return Err(CoreError::Invalid {
                field: "stage",
                reason: format!("expected one of {}", STAGES.join(", ")),
            }
            .into());
        }
    }
    Ok(state
        .store()
        .list_leads(me.tenant_id, stage, f.limit.unwrap_or(100).clamp(1, 10_000))
        .await?)
}

/// `GET /api/v1/leads?stage=&limit=`: the tenant's leads, most recent first.
#[utoipa::path(
    get,
    path = "/api/v1/leads",
    operation_id = "list_leads",
    tag = "leads",
    params(LeadFilter),
    responses((status = 200, description = "The leads", body = LeadList))
)]
pub async fn list(
    State(state): State<AppState>,
    me: CurrentMember,
    QueryParams(f): QueryParams<LeadFilter>,
) -> Result<Json<LeadList>, AuthError> {
    let leads = filtered(&state, &me, &f).await?;
    Ok(Json(LeadList { leads }))
}

/// `GET /api/v1/leads/{id}`.
#[utoipa::path(
    get,
    path = "/api/v1/leads/{id}",
    operation_id = "get_lead",
    tag = "leads",
    params(("id" = String, Path, description = LEAD_ID)),
    responses((status = 200, description = "The lead", body = LeadView))
)]
pub async fn get_one(
    State(state): State<AppState>,
    me: CurrentMember,
    Path(id): Path<String>,
) -> Result<Json<LeadView>, AuthError> {
    me.require(LEAD_ROLES)?;
    Ok(Json(
        state.store().lead(me.tenant_id, parse_lead(&id)?).await?,
    ))
}

/// Body of `PATCH /api/v1/leads/{id}`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct LeadPatch {
    /// Detail fields to replace (`null` removes one).
    #[serde(default)]
    details: serde_json::Map<String, serde_json::Value>,
    /// A new stage.
    stage: Option<String>,
}

/// `PATCH /api/v1/leads/{id}`: a correction of detail fields and/or a stage change, in one
/// transaction, each ledgered with the member (field names, never values).
#[utoipa::path(
    patch,
    path = "/api/v1/leads/{id}",
    operation_id = "update_lead",
    tag = "leads",
    params(("id" = String, Path, description = LEAD_ID)),
    request_body = LeadPatch,
    responses((status = 200, description = "The lead after the change", body = LeadView))
)]
pub async fn patch(
    State(state): State<AppState>,
    me: CurrentMember,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<LeadPatch>,
) -> Result<Json<LeadView>, AuthError> {
    me.require(LEAD_ROLES)?;
    let id = parse_lead(&id)?;
    let actor = Actor::Member(me.member_id.bytes());
    let view = state
        .store()
        .update_lead(
            me.tenant_id,
            id,
            &body.details,
            body.stage.as_deref(),
            actor,
        )
        .await?;
    Ok(Json(view))
}

/// A CSV field, quoted when needed (RFC 4180), with spreadsheet formula triggers defused.
fn csv_field(v: &str) -> String {
    let v = if v.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{v}")
    } else {
        v.to_owned()
    };
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v
    }
}

fn detail(l: &LeadView, k: &str) -> String {
    match l.details.get(k) {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// `GET /api/v1/leads.csv?stage=`: the leads as CSV (UTF-8, RFC 4180), ledgered as an
/// export with its digest and row count.
#[utoipa::path(
    get,
    path = "/api/v1/leads.csv",
    operation_id = "export_leads",
    tag = "leads",
    params(LeadFilter),
    responses((status = 200, description = "The leads as CSV (RFC 4180)", body = crate::openapi::File, content_type = "text/csv"))
)]
pub async fn export_csv(
    State(state): State<AppState>,
    me: CurrentMember,
    QueryParams(f): QueryParams<LeadFilter>,
) -> Result<Response, AuthError> {
    let leads = filtered(&state, &me, &f).await?;
    let mut out = String::from(
        "id,stage,source,whatsapp_number,name,service,preferred_date,preferred_time,budget,notes,created_at,updated_at\r\n",
    );
    let time = |micros: i64| {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default()
    };
    for l in &leads {
        let row = [
            l.id.to_string(),
            l.stage.clone(),
            l.source.clone(),
            l.customer_wa_id.clone().unwrap_or_default(),
            detail(l, "name"),
            detail(l, "service"),
            detail(l, "preferred_date"),
            detail(l, "preferred_time"),
            detail(l, "budget"),
            detail(l, "notes"),
            time(l.created_at),
            time(l.updated_at),
        ];
        let fields: Vec<String> = row.iter().map(|v| csv_field(v)).collect();
        out.push_str(&fields.join(","));
        out.push_str("\r\n");
    }
    let draft = EntryDraft::new(EventKind::EXPORT_MADE, Actor::Member(me.member_id.bytes()))
        .tenant(me.tenant_id.bytes())
        .purpose(Purpose::LEAD_MANAGEMENT)
        .attr(
            smartchat_ledger::AttrKey::EXPORT_DIGEST,
            smartchat_ledger::AttrValue::Digest(*blake3::hash(out.as_bytes()).as_bytes()),
        )
        .attr(
            smartchat_ledger::AttrKey::RECORD_COUNT,
            smartchat_ledger::AttrValue::U64(u64::try_from(leads.len()).unwrap_or(0)),
        );
    let mut tx = state.store().db.begin().await?;
    smartchat_core::audit::enqueue(&mut tx, &draft).await?;
    tx.commit().await?;
    let mut res = (StatusCode::OK, out).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"leads.csv\""),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}
