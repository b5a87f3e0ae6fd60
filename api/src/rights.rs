//! Data-subject rights over HTTP and in the chat (privacy policy s.8).
//!
//! - **Owner API** (`/api/v1/rights…`, owners write, auditors read): a member opens a request
//!   on a customer's behalf (their identity is the business's to establish), sees the queue
//!   with due dates, extends (GDPR only, once, with reasons), rejects with a reason,
//!   downloads access reports and portability zips; legal holds (`/api/v1/legal-holds`).
//! - **Public** (`/rights/…`, no login): a subject names the business (its handle) and their
//!   WhatsApp number; a 6-digit code goes to that number through the business's WhatsApp
//!   sender (the sandbox without Meta credentials); the request proceeds once the code is
//!   confirmed (10 minutes, 5 attempts, 3 codes per number per hour, 10 per client address
//!   per hour, constant-time comparison). The answer to the first step is the same whether
//!   or not the number is a customer's; only someone who proved control of the number
//!   learns that nothing is held.
//! - **Chat**: "delete my data" and "export my data" (English, Hindi, romanized Hindi; the
//!   assistant's intent detection) open a verified request: the chat proves control of the
//!   number.
//!
//! Carrying out ([`carry_out`]): access and portability count what the report holds (the
//! report itself is built when it is downloaded, never stored); correction re-seals the
//! contact and lead fields; deletion crypto-shreds the subject key at once (constant time)
//! and queues the physical clean-up (`purge_subject` job, batches with progress), unless a
//! legal hold keeps the request `on_hold`; objection sets (or withdraws) the flag that stops
//! AI processing and follow-ups.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{Extensions, HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rand::Rng;
use serde::Deserialize;
use serde_json::json;
use smartchat_core::CoreError;
use smartchat_core::crypto::BlindKind;
use smartchat_core::db::now_micros;
use smartchat_core::ids::{PhoneNumber, SubjectId, TenantId};
use smartchat_core::jobs::{self, Job, NewJob};
use smartchat_core::members::Role;
use smartchat_core::rights::{
    Challenge, Channel, DsrRequest, Finish, NewChallenge, NewRequest, parse_right,
};
use smartchat_core::rights_export::{portability_zip, to_markdown};
use smartchat_core::store::{Store, SubjectFlags};
use smartchat_ledger::{Actor, AttrKey, AttrValue, EntryDraft, EventKind, Purpose};
use smartchat_policies::Right;
use smartchat_policies::deadlines::Regime;
use time::OffsetDateTime;

use crate::app::AppState;
use crate::auth::error::AuthError;
use crate::auth::extract::CurrentMember;
use crate::error::{JsonBody, Problem, QueryParams, problem, problem_with};
use crate::pipeline::{self, Pipeline, QUEUE};

/// Minutes a code is valid.
pub const CODE_MINUTES: i64 = 10;
/// Attempts allowed per code.
pub const MAX_ATTEMPTS: i32 = 5;
/// Codes per number per hour.
pub const CODES_PER_NUMBER_PER_HOUR: i64 = 3;
/// Public requests per client address per hour (per process).
pub const REQUESTS_PER_ADDRESS_PER_HOUR: usize = 10;
/// Hours a download link stays valid.
pub const DOWNLOAD_HOURS: i64 = 24;
/// How long a deletion asked in the chat waits, so its confirmation is sent first.
pub const CHAT_DELETION_DELAY_MICROS: i64 = 60_000_000;
/// Rows deleted per batch by the physical clean-up.
pub const PURGE_BATCH: i64 = 1000;

/// Sliding-window limiter of public requests per client address.
#[derive(Debug, Clone, Default)]
pub struct IpLimiter(Arc<Mutex<HashMap<IpAddr, VecDeque<Instant>>>>);

impl IpLimiter {
    /// Records a request from `ip`; `false` when it is over the limit.
    pub fn allow(&self, ip: IpAddr) -> bool {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let hour = Duration::from_secs(3600);
        let q = map.entry(ip).or_default();
        while q.front().is_some_and(|t| now.duration_since(*t) > hour) {
            q.pop_front();
        }
        if q.len() >= REQUESTS_PER_ADDRESS_PER_HOUR {
            return false;
        }
        q.push_back(now);
        true
    }
}

/// Carries out a verified request once; a closed one is returned as it is.
pub async fn carry_out(
    p: &Pipeline,
    tenant: TenantId,
    id: &str,
    actor: Actor,
) -> Result<DsrRequest, CoreError> {
    let store = &p.store;
    let now = OffsetDateTime::now_utc();
    let req = store.dsr_request(tenant, id, now).await?;
    if req.status != "verified" && req.status != "on_hold" {
        return Ok(req);
    }
    let Some(subject) = req.subject_id.as_deref() else {
        // Nothing is held for this number: an honest, empty answer.
        return store
            .finish_request(tenant, id, Finish::Completed { records: 0 }, actor)
            .await;
    };
    let subject: SubjectId = subject.parse()?;
    let right = parse_right(&req.right).ok_or(CoreError::Internal("right".into()))?;
    // A subject already deleted has nothing left to give, correct or delete.
    let alive = match store.subject_contact(tenant, subject).await {
        Ok(_) => true,
        Err(CoreError::Shredded { .. } | CoreError::NotFound { .. }) => false,
        Err(e) => return Err(e),
    };
    if !alive {
        if right == Right::Deletion {
            // An earlier attempt shredded the key but may not have queued the clean-up.
            queue_purge(p, tenant, subject).await?;
        }
        return store
            .finish_request(tenant, id, Finish::Completed { records: 0 }, actor)
            .await;
    }
    let finish = match right {
        Right::Access | Right::Portability => Finish::Completed {
            records: store.subject_record_count(tenant, subject).await?,
        },
        Right::Correction => {
            let details = store.dsr_details(tenant, id).await?.unwrap_or(json!({}));
            let mut n = 0u64;
            if let Some(contact) = details.get("contact").and_then(|v| v.as_object()) {
                n += store
                    .correct_contact(tenant, subject, contact, actor)
                    .await?
                    .len() as u64;
            }
            if let Some(lead) = details.get("lead").and_then(|v| v.as_object()) {
                if let Some(lid) = store.lead_of_subject(tenant, subject).await? {
                    store.correct_lead(tenant, lid, lead, actor).await?;
                    n += lead.len() as u64;
                }
            }
            Finish::Completed { records: n }
        }
        Right::Deletion => {
            if store.is_held(tenant, Some(subject)).await? {
                Finish::OnHold
            } else {
                let records = store.subject_record_count(tenant, subject).await?;
                erase(p, tenant, subject, actor).await?;
                Finish::Completed { records }
            }
        }
        Right::Objection => {
            let withdraw = store
                .dsr_details(tenant, id)
                .await?
                .and_then(|d| d.get("withdraw").and_then(|w| w.as_bool()))
                .unwrap_or(false);
            let mut c = store.db.conn().await?;
            let flags = store.subject_flags(&mut c, subject).await?;
            drop(c);
            let mut tx = store.db.begin().await?;
            store
                .set_subject_flags(
                    &mut tx,
                    subject,
                    SubjectFlags {
                        objected: !withdraw,
                        ..flags
                    },
                )
                .await?;
            tx.commit().await?;
            Finish::Completed { records: 1 }
        }
    };
    store.finish_request(tenant, id, finish, actor).await
}

/// How long a `verified` request may stay so before the retention pass counts it stranded:
/// longer than a code is valid and a chat deletion waits, so a request being carried out
/// (or whose chat job is due) is left to that.
pub const STRANDED_AFTER_MICROS: i64 = 30 * 60_000_000;

/// Queues a `dsr` job for every request left open by a carrying-out that failed half-way
/// ([`smartchat_core::store::Store::stranded_requests`]), unless a job for it is ready or
/// running: the subject's key may be shredded already, and [`carry_out`] finishes from
/// wherever the earlier attempt stopped (queueing the clean-up a deletion still lacks).
/// Returns how many were queued. Run by the hourly retention pass; a job per request and
/// hour at most, whichever processes run the pass.
pub async fn resume_stranded(p: &Pipeline, now: OffsetDateTime) -> Result<u64, CoreError> {
    let now = smartchat_core::db::micros_of(now);
    let hour = now / 3_600_000_000;
    let mut queued = 0;
    for (tenant, id) in p
        .store
        .stranded_requests(now - STRANDED_AFTER_MICROS)
        .await?
    {
        let chat_key = format!("dsr:{id}");
        let prefix = format!("dsr-resume:{id}:");
        if jobs::any_active(&p.store.db, &chat_key, &prefix).await? {
            continue;
        }
        let mut job = NewJob::now(
            QUEUE,
            "dsr",
            json!({ "tenant": tenant.to_string(), "request": id }),
        );
        job.tenant_id = Some(tenant.to_string());
        job.dedupe_key = Some(format!("{prefix}{hour}"));
        let mut tx = p.store.db.begin().await?;
        let id = jobs::enqueue(&mut tx, &job).await?;
        tx.commit().await?;
        if id.is_some() {
            tracing::warn!(tenant.id = %tenant, "a data-subject request left open half-way is resumed");
            queued += 1;
        }
    }
    Ok(queued)
}

/// Shreds the subject's key now (their data is unreadable everywhere, backups included)
/// and queues the physical clean-up of their rows.
pub async fn erase(
    p: &Pipeline,
    tenant: TenantId,
    subject: SubjectId,
    actor: Actor,
) -> Result<(), CoreError> {
    p.store.shred_subject(tenant, subject, actor).await?;
    queue_purge(p, tenant, subject).await
}

/// Queues the physical clean-up of a shredded subject (once: deduplicated by subject).
async fn queue_purge(p: &Pipeline, tenant: TenantId, subject: SubjectId) -> Result<(), CoreError> {
    let mut tx = p.store.db.begin().await?;
    let mut job = NewJob::now(
        QUEUE,
        "purge_subject",
        json!({ "tenant": tenant.to_string(), "subject": subject.to_string() }),
    );
    job.tenant_id = Some(tenant.to_string());
    job.dedupe_key = Some(format!("purge:{subject}"));
    jobs::enqueue(&mut tx, &job).await?;
    tx.commit().await
}

/// The `purge_subject` job: deletes the rows crypto-shredding left, in batches, logging
/// its progress (counts only).
pub async fn run_purge(p: &Pipeline, job: &Job) -> Result<(), CoreError> {
    let payload = job.payload()?;
    let tenant: TenantId = payload["tenant"].as_str().unwrap_or_default().parse()?;
    let subject: SubjectId = payload["subject"].as_str().unwrap_or_default().parse()?;
    let total = p
        .store
        .purge_subject_rows(tenant, subject, PURGE_BATCH, |n| {
            tracing::info!(rows = n, "subject purge progress");
        })
        .await?;
    tracing::info!(rows = total, "subject purge done");
    let mut tx = p.store.db.begin().await?;
    jobs::complete(&mut tx, job.id).await?;
    tx.commit().await
}

/// The `dsr` job: carries out a request opened in the chat, and answers there.
pub async fn run_dsr(p: &Pipeline, job: &Job) -> Result<(), CoreError> {
    let payload = job.payload()?;
    let tenant: TenantId = payload["tenant"].as_str().unwrap_or_default().parse()?;
    let id = payload["request"].as_str().unwrap_or_default().to_owned();
    let conversation = payload["conversation"].as_str().map(str::to_owned);
    let req = carry_out(p, tenant, &id, Actor::DataSubject).await?;
    let store = &p.store;
    let reply = match (req.right.as_str(), req.status.as_str()) {
        // A request resumed by the retention pass has no conversation to answer in (the
        // owner downloads its report for the subject).
        ("access" | "portability", "completed")
            if req.record_count.unwrap_or(0) > 0 && conversation.is_some() =>
        {
            let token = grant_download(p, tenant, &req).await?;
            Some(format!(
                "Your copy of the data we hold is ready for {DOWNLOAD_HOURS} hours: {}/rights/downloads/{token}",
                p.public_url()
            ))
        }
        _ => None,
    };
    let target = match (reply, conversation) {
        (Some(text), Some(cid)) => {
            let key = store.tenant_key(tenant).await?;
            let mut c = store.db.conn().await?;
            let conv = store.conversation(&mut c, cid.parse()?).await?;
            Some((text, key, conv))
        }
        _ => None,
    };
    let mut tx = store.db.begin().await?;
    if let Some((text, key, conv)) = target {
        pipeline::queue_outbound(&mut tx, store, &key, &conv, &text, "system").await?;
    }
    jobs::complete(&mut tx, job.id).await?;
    tx.commit().await
}

/// Opens a request from the chat (the chat proves control of the number), before the
/// reply's transaction: [`queue_chat_request`] then queues its `dsr` job inside it.
pub async fn open_from_chat(
    p: &Pipeline,
    conv: &smartchat_core::store::ConversationRow,
    right: Right,
) -> Result<DsrRequest, CoreError> {
    let (req, _) = p
        .store
        .open_request(NewRequest {
            tenant: conv.tenant_id,
            subject: Some(conv.subject_id),
            right,
            channel: Channel::Chat,
            regime: Regime::Gdpr,
            details: None,
            verified: true,
            actor: Actor::DataSubject,
            now: OffsetDateTime::now_utc(),
        })
        .await?;
    Ok(req)
}

/// Queues the `dsr` job of a request opened in the chat (once per request, whichever
/// attempt of the reply commits).
pub async fn queue_chat_request(
    tx: &mut smartchat_core::db::Tx,
    conv: &smartchat_core::store::ConversationRow,
    req: &DsrRequest,
) -> Result<(), CoreError> {
    if req.status != "verified" {
        return Ok(());
    }
    let mut job = NewJob::now(
        QUEUE,
        "dsr",
        json!({
            "tenant": conv.tenant_id.to_string(),
            "request": req.id,
            "conversation": conv.id.to_string(),
        }),
    );
    job.tenant_id = Some(conv.tenant_id.to_string());
    job.dedupe_key = Some(format!("dsr:{}", req.id));
    if req.right == "deletion" {
        // The confirmation in the chat goes out first: once the key is gone, nothing
        // can be sent to this customer.
        job.run_at = now_micros() + CHAT_DELETION_DELAY_MICROS;
    }
    jobs::enqueue(tx, &job).await?;
    Ok(())
}

/// A one-use download link for a completed access or portability request, valid
/// [`DOWNLOAD_HOURS`]; returns the token (only its digest is stored).
async fn grant_download(
    p: &Pipeline,
    tenant: TenantId,
    req: &DsrRequest,
) -> Result<String, CoreError> {
    let token: [u8; 32] = rand::thread_rng().r#gen();
    let token = hex::encode(token);
    let digest = blake3::hash(token.as_bytes());
    let id = uuid::Uuid::now_v7().to_string();
    p.store
        .create_challenge(&NewChallenge {
            id: &id,
            tenant,
            right: parse_right(&req.right).unwrap_or(Right::Access),
            regime: Regime::parse(&req.regime).unwrap_or(Regime::Gdpr),
            number_blind: &[],
            code_digest: &[],
            expires_at: now_micros() + DOWNLOAD_HOURS * 3_600_000_000,
            request_id: Some(&req.id),
            used_at: Some(now_micros()),
            download_digest: Some(digest.as_bytes()),
        })
        .await?;
    Ok(token)
}

// ---------------------------------------------------------------- owner API

/// Body of `POST /api/v1/rights`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenBody {
    /// `access`, `correction`, `deletion`, `objection` or `portability`.
    #[schema(pattern = "^(access|correction|deletion|objection|portability)$")]
    right: String,
    /// The customer's WhatsApp number (digits, with country code).
    #[serde(default)]
    #[schema(pattern = "^\\+?[1-9][0-9]{7,14}$")]
    wa_id: Option<String>,
    /// Or the subject id shown in the conversation API.
    #[serde(default)]
    subject_id: Option<String>,
    /// `gdpr` (default) or `dpdp`.
    #[serde(default)]
    #[schema(pattern = "^(gdpr|dpdp)$")]
    regime: Option<String>,
    /// Correction: `{"contact": {...}, "lead": {...}}`; objection: `{"withdraw": true}`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    details: Option<serde_json::Value>,
}

fn bad(field: &'static str, reason: impl Into<String>) -> AuthError {
    CoreError::Invalid {
        field,
        reason: reason.into(),
    }
    .into()
}

/// Checks a correction's fields before anything is stored: contact `profile_name` and
/// `phone`; lead `name`, `service`, `preferred_date`, `preferred_time`, `budget`, `notes`;
/// each a text of 1 to 200 characters (or null to clear a contact field).
fn check_correction(d: &serde_json::Value) -> Result<(), AuthError> {
    const CONTACT: &[&str] = &["profile_name", "phone"];
    const LEAD: &[&str] = &[
        "name",
        "service",
        "preferred_date",
        "preferred_time",
        "budget",
        "notes",
    ];
    if let Some(o) = d.as_object() {
        if let Some(k) = o.keys().find(|k| *k != "contact" && *k != "lead") {
            return Err(bad("details", format!("unknown part {k:?}: contact, lead")));
        }
    }
    for (part, allowed) in [("contact", CONTACT), ("lead", LEAD)] {
        let Some(fields) = d.get(part).and_then(|v| v.as_object()) else {
            continue;
        };
        for (k, v) in fields {
            if !allowed.contains(&k.as_str()) {
                return Err(bad(
                    "details",
                    format!(
                        "{part}.{k} cannot be corrected; {part} fields: {}",
                        allowed.join(", ")
                    ),
                ));
            }
            let ok = match v {
                serde_json::Value::String(s) => (1..=200).contains(&s.trim().chars().count()),
                serde_json::Value::Null => part == "contact",
                _ => false,
            };
            if !ok {
                return Err(bad(
                    "details",
                    format!("{part}.{k}: a text of 1 to 200 characters"),
                ));
            }
        }
    }
    Ok(())
}

/// `POST /api/v1/rights`: an owner opens a request for a customer; it is carried out at
/// once (deletion's physical clean-up follows in the background). The same open request
/// twice is answered with the first (200 instead of 201).
#[utoipa::path(
    post,
    path = "/api/v1/rights",
    operation_id = "open_rights_request",
    tag = "rights",
    request_body = OpenBody,
    responses(
        (status = 201, description = "Opened and carried out", body = DsrRequest),
        (status = 200, description = "The same request was already open", body = DsrRequest),
    )
)]
pub async fn open(
    State(state): State<AppState>,
    me: CurrentMember,
    JsonBody(body): JsonBody<OpenBody>,
) -> Result<Response, AuthError> {
    me.require(&[Role::Owner])?;
    let store = state.store();
    let right = parse_right(&body.right).ok_or_else(|| {
        bad(
            "right",
            "one of access, correction, deletion, objection, portability",
        )
    })?;
    let regime = match body.regime.as_deref() {
        None => Regime::Gdpr,
        Some(r) => Regime::parse(r).ok_or_else(|| bad("regime", "gdpr or dpdp"))?,
    };
    match (&right, &body.details) {
        (Right::Correction, Some(d))
            if d.get("contact").is_some_and(|v| v.is_object())
                || d.get("lead").is_some_and(|v| v.is_object()) =>
        {
            check_correction(d)?;
        }
        (Right::Correction, _) => {
            return Err(bad(
                "details",
                "a correction needs {\"contact\": {...}} and/or {\"lead\": {...}}",
            ));
        }
        (Right::Objection, None) => {}
        (Right::Objection, Some(d)) if d.get("withdraw").is_some_and(|v| v.is_boolean()) => {}
        (Right::Objection, Some(_)) => {
            return Err(bad(
                "details",
                "an objection takes {\"withdraw\": true|false}",
            ));
        }
        (_, Some(_)) => {
            return Err(bad(
                "details",
                "only corrections and objections take details",
            ));
        }
        (_, None) => {}
    }
    let subject = match (&body.wa_id, &body.subject_id) {
        (Some(w), None) => {
            let n: PhoneNumber = w
                .parse()
                .map_err(|_| bad("wa_id", "a phone number with its country code"))?;
            store
                .find_subject(me.tenant_id, BlindKind::WaId, n.digits())
                .await?
        }
        (None, Some(s)) => {
            let sid: SubjectId = s.parse()?;
            // Only a subject of this tenant.
            match store.subject_contact(me.tenant_id, sid).await {
                Ok(_) | Err(CoreError::Shredded { .. }) => Some(sid),
                Err(CoreError::NotFound { .. }) => None,
                Err(e) => return Err(e.into()),
            }
        }
        _ => return Err(bad("subject", "give wa_id or subject_id")),
    };
    let actor = Actor::Member(me.member_id.bytes());
    let (req, created) = store
        .open_request(NewRequest {
            tenant: me.tenant_id,
            subject,
            right,
            channel: Channel::Owner,
            regime,
            details: body.details.as_ref(),
            verified: true,
            actor,
            now: OffsetDateTime::now_utc(),
        })
        .await?;
    let req = carry_out(state.pipeline(), me.tenant_id, &req.id, actor).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(req)).into_response())
}

/// The rights requests of the tenant.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct RequestList {
    /// Open requests by due date, then the rest.
    pub requests: Vec<DsrRequest>,
}

/// The path parameter of a rights request.
const REQUEST_ID: &str = "The request's id";

/// `GET /api/v1/rights`: the queue: open requests by due date (with urgency), then the rest.
#[utoipa::path(
    get,
    path = "/api/v1/rights",
    operation_id = "list_rights_requests",
    tag = "rights",
    responses((status = 200, description = "The requests", body = RequestList))
)]
pub async fn list(
    State(state): State<AppState>,
    me: CurrentMember,
) -> Result<Json<RequestList>, AuthError> {
    me.require(&[Role::Owner, Role::Auditor])?;
    let requests = state
        .store()
        .dsr_requests(me.tenant_id, OffsetDateTime::now_utc())
        .await?;
    Ok(Json(RequestList { requests }))
}

/// `GET /api/v1/rights/{id}`.
#[utoipa::path(
    get,
    path = "/api/v1/rights/{id}",
    operation_id = "get_rights_request",
    tag = "rights",
    params(("id" = String, Path, description = REQUEST_ID)),
    responses((status = 200, description = "The request", body = DsrRequest))
)]
pub async fn get_one(
    State(state): State<AppState>,
    me: CurrentMember,
    Path(id): Path<String>,
) -> Result<Json<DsrRequest>, AuthError> {
    me.require(&[Role::Owner, Role::Auditor])?;
    Ok(Json(
        state
            .store()
            .dsr_request(me.tenant_id, &id, OffsetDateTime::now_utc())
            .await?,
    ))
}

/// Body with reasons.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    /// The reasons (an extension), or `manifestly_unfounded` / `identity_not_confirmed`
    /// (a rejection).
    reason: String,
}

/// `POST /api/v1/rights/{id}/extend`: GDPR only, once, within the first month, with the
/// reasons the subject is told.
#[utoipa::path(
    post,
    path = "/api/v1/rights/{id}/extend",
    operation_id = "extend_rights_request",
    tag = "rights",
    params(("id" = String, Path, description = REQUEST_ID)),
    request_body = ReasonBody,
    responses((status = 200, description = "Extended", body = DsrRequest))
)]
pub async fn extend(
    State(state): State<AppState>,
    me: CurrentMember,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ReasonBody>,
) -> Result<Json<DsrRequest>, AuthError> {
    me.require(&[Role::Owner])?;
    Ok(Json(
        state
            .store()
            .extend_request(me.tenant_id, &id, &body.reason, OffsetDateTime::now_utc())
            .await?,
    ))
}

/// `POST /api/v1/rights/{id}/reject`: `manifestly_unfounded` or `identity_not_confirmed`
/// (GDPR Art. 12(5)-(6)).
#[utoipa::path(
    post,
    path = "/api/v1/rights/{id}/reject",
    operation_id = "reject_rights_request",
    tag = "rights",
    params(("id" = String, Path, description = REQUEST_ID)),
    request_body = ReasonBody,
    responses(
        (status = 200, description = "Rejected", body = DsrRequest),
        (status = 409, description = "Already completed or rejected (`request_closed`)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn reject(
    State(state): State<AppState>,
    me: CurrentMember,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ReasonBody>,
) -> Result<Response, AuthError> {
    me.require(&[Role::Owner])?;
    if !["manifestly_unfounded", "identity_not_confirmed"].contains(&body.reason.as_str()) {
        return Err(bad(
            "reason",
            "manifestly_unfounded or identity_not_confirmed",
        ));
    }
    let store = state.store();
    let before = store
        .dsr_request(me.tenant_id, &id, OffsetDateTime::now_utc())
        .await?;
    if !smartchat_core::rights::OPEN_STATUSES.contains(&before.status.as_str()) {
        return Ok(problem(
            StatusCode::CONFLICT,
            "request_closed",
            "the request is already completed or rejected",
        ));
    }
    let req = store
        .finish_request(
            me.tenant_id,
            &id,
            Finish::Rejected {
                reason: &body.reason,
            },
            Actor::Member(me.member_id.bytes()),
        )
        .await?;
    Ok(Json(req).into_response())
}

/// `?format=json|markdown|zip`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FormatQuery {
    /// `json` (default for access), `markdown` or `zip` (default for portability).
    #[serde(default)]
    #[param(pattern = "^(json|markdown|md|zip)$")]
    format: Option<String>,
}

/// Builds the answer of a completed access or portability request, ledgers the export.
async fn answer(
    state: &AppState,
    tenant: TenantId,
    req: &DsrRequest,
    format: Option<&str>,
    actor: Actor,
) -> Result<Response, AuthError> {
    if !(req.right == "access" || req.right == "portability") || req.status != "completed" {
        return Ok(problem(
            StatusCode::CONFLICT,
            "no_report",
            "only completed access and portability requests have a report",
        ));
    }
    let store = state.store();
    let Some(subject) = req.subject_id.as_deref() else {
        return Ok(Json(json!({
            "format": "smartchat-access/1",
            "held": false,
            "message": "No personal data is held for this number.",
        }))
        .into_response());
    };
    let subject: SubjectId = subject.parse()?;
    let report = match store.access_report(state.ledger(), tenant, subject).await {
        Ok(r) => r,
        Err(CoreError::Shredded { .. } | CoreError::NotFound { .. }) => {
            return Ok(problem(
                StatusCode::GONE,
                "subject_deleted",
                "this customer's data has been deleted since the request",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let default = if req.right == "portability" {
        "zip"
    } else {
        "json"
    };
    let (bytes, content_type, name) = match format.unwrap_or(default) {
        "json" => (
            serde_json::to_vec_pretty(&report).map_err(|e| CoreError::Internal(e.to_string()))?,
            "application/json",
            "access.json",
        ),
        "markdown" | "md" => (
            to_markdown(&report).into_bytes(),
            "text/markdown; charset=utf-8",
            "access.md",
        ),
        "zip" => (
            portability_zip(&report)?,
            "application/zip",
            "portability.zip",
        ),
        _ => return Err(bad("format", "json, markdown or zip")),
    };
    let key = store.tenant_key(tenant).await?;
    let mut tx = store.db.begin().await?;
    smartchat_core::audit::enqueue(
        &mut tx,
        &EntryDraft::new(EventKind::EXPORT_MADE, actor)
            .tenant(tenant.bytes())
            .subject(key.pseudonym(&subject.to_string()))
            .purpose(Purpose::DSR_FULFILMENT)
            .attr(
                AttrKey::EXPORT_DIGEST,
                AttrValue::Digest(*blake3::hash(&bytes).as_bytes()),
            )
            .attr(AttrKey::RECORD_COUNT, AttrValue::U64(report.record_count())),
    )
    .await?;
    tx.commit().await?;
    let mut r = (StatusCode::OK, bytes).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(r)
}

/// `GET /api/v1/rights/{id}/report`: the access report (JSON, Markdown) or the
/// portability zip of a completed request; owners only, ledgered as an export.
#[utoipa::path(
    get,
    path = "/api/v1/rights/{id}/report",
    operation_id = "get_rights_report",
    tag = "rights",
    params(("id" = String, Path, description = REQUEST_ID), FormatQuery),
    responses(
        (status = 200, description = "The report", content(
            (Object = "application/json"),
            (crate::openapi::File = "text/markdown"),
            (crate::openapi::File = "application/zip"),
        )),
        (status = 409, description = "Only completed access and portability requests have a report (`no_report`)", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "The customer's data was deleted since (`subject_deleted`)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn report(
    State(state): State<AppState>,
    me: CurrentMember,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<FormatQuery>,
) -> Result<Response, AuthError> {
    me.require(&[Role::Owner])?;
    let req = state
        .store()
        .dsr_request(me.tenant_id, &id, OffsetDateTime::now_utc())
        .await?;
    answer(
        &state,
        me.tenant_id,
        &req,
        q.format.as_deref(),
        Actor::Member(me.member_id.bytes()),
    )
    .await
}

/// Body of `POST /api/v1/legal-holds`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HoldBody {
    /// Why (e.g. a case reference; never personal data).
    #[schema(min_length = 1, max_length = 200)]
    reason: String,
    /// The customer (their number); absent for the whole tenant.
    #[serde(default)]
    #[schema(pattern = "^\\+?[1-9][0-9]{7,14}$")]
    wa_id: Option<String>,
}

/// The tenant's legal holds.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct HoldList {
    /// The holds, released ones too.
    pub holds: Vec<smartchat_core::rights::LegalHold>,
}

/// `GET /api/v1/legal-holds`.
#[utoipa::path(
    get,
    path = "/api/v1/legal-holds",
    operation_id = "list_legal_holds",
    tag = "legal-holds",
    responses((status = 200, description = "The holds", body = HoldList))
)]
pub async fn list_holds(
    State(state): State<AppState>,
    me: CurrentMember,
) -> Result<Json<HoldList>, AuthError> {
    me.require(&[Role::Owner, Role::Auditor])?;
    Ok(Json(HoldList {
        holds: state.store().legal_holds(me.tenant_id).await?,
    }))
}

/// A hold placed.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct HoldPlaced {
    /// Its id.
    pub id: String,
}

/// A hold released.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct HoldReleased {
    /// Its id.
    pub released: String,
    /// The requests it held, carried out now.
    pub resumed: Vec<DsrRequest>,
}

/// `POST /api/v1/legal-holds`: deletion of the subject's (or the tenant's) data waits.
#[utoipa::path(
    post,
    path = "/api/v1/legal-holds",
    operation_id = "place_legal_hold",
    tag = "legal-holds",
    request_body = HoldBody,
    responses((status = 201, description = "Placed", body = HoldPlaced))
)]
pub async fn place_hold(
    State(state): State<AppState>,
    me: CurrentMember,
    JsonBody(body): JsonBody<HoldBody>,
) -> Result<Response, AuthError> {
    me.require(&[Role::Owner])?;
    let store = state.store();
    let subject = match &body.wa_id {
        Some(w) => {
            let n: PhoneNumber = w
                .parse()
                .map_err(|_| bad("wa_id", "a phone number with its country code"))?;
            Some(
                store
                    .find_subject(me.tenant_id, BlindKind::WaId, n.digits())
                    .await?
                    .ok_or(CoreError::NotFound { what: "customer" })?,
            )
        }
        None => None,
    };
    let id = store
        .place_hold(
            me.tenant_id,
            subject,
            &body.reason,
            Actor::Member(me.member_id.bytes()),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(HoldPlaced { id })).into_response())
}

/// `DELETE /api/v1/legal-holds/{id}`: releases it, then carries out the requests it held.
#[utoipa::path(
    delete,
    path = "/api/v1/legal-holds/{id}",
    operation_id = "release_legal_hold",
    tag = "legal-holds",
    params(("id" = String, Path, description = "The hold's id")),
    responses((status = 200, description = "Released", body = HoldReleased))
)]
pub async fn release_hold(
    State(state): State<AppState>,
    me: CurrentMember,
    Path(id): Path<String>,
) -> Result<Response, AuthError> {
    me.require(&[Role::Owner])?;
    let store = state.store();
    let actor = Actor::Member(me.member_id.bytes());
    store.release_hold(me.tenant_id, &id, actor).await?;
    let mut resumed = Vec::new();
    for r in store
        .dsr_requests(me.tenant_id, OffsetDateTime::now_utc())
        .await?
        .into_iter()
        .filter(|r| r.status == "on_hold")
    {
        resumed.push(carry_out(state.pipeline(), me.tenant_id, &r.id, actor).await?);
    }
    Ok(Json(HoldReleased {
        released: id,
        resumed,
    })
    .into_response())
}

// ---------------------------------------------------------------- public

/// Body of `POST /rights/{handle}/requests`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicRequest {
    /// The WhatsApp number, with its country code.
    number: String,
    /// The right.
    right: String,
    /// `gdpr` (default) or `dpdp`.
    #[serde(default)]
    regime: Option<String>,
}

/// The client's address: the connection's peer, or, when the peer is a trusted proxy
/// (`SMARTCHAT_TRUSTED_PROXIES`), what its `X-Forwarded-For` says.
fn client_ip(state: &AppState, ext: &Extensions, headers: &HeaderMap) -> Option<IpAddr> {
    let peer = ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())?;
    let forwarded: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    Some(client_address(peer, &forwarded, state.trusted_proxies()))
}

/// Who sent a request that reached us from `peer` with `forwarded` (the values of its
/// `X-Forwarded-For` headers, in order): `peer` itself unless it is one of `trusted`; else
/// the nearest address in the chain that is not a trusted proxy (each proxy appends the
/// address it received from, so the addresses left of the last untrusted one could be
/// made up by the client). A chain that does not parse, or holds only trusted proxies,
/// gives its left-most address if it parsed, else `peer`.
pub fn client_address(peer: IpAddr, forwarded: &[&str], trusted: &[ipnet::IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let chain: Option<Vec<IpAddr>> = forwarded
        .iter()
        .flat_map(|v| v.split(','))
        .map(|a| a.trim().parse().ok())
        .collect();
    let Some(chain) = chain else {
        return peer;
    };
    chain
        .iter()
        .rev()
        .find(|ip| !is_trusted(ip))
        .or(chain.first())
        .copied()
        .unwrap_or(peer)
}

fn too_many(detail: &str, retry_after_secs: u64) -> Response {
    let mut r = problem(StatusCode::TOO_MANY_REQUESTS, "rate_limited", detail);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
    r
}

/// `POST /rights/{handle}/requests`: sends a code to the number if it is a customer of
/// the business; the answer is the same either way (202).
pub async fn public_request(
    State(state): State<AppState>,
    Path(handle): Path<String>,
    ext: Extensions,
    headers: HeaderMap,
    JsonBody(body): JsonBody<PublicRequest>,
) -> Result<Response, AuthError> {
    // Every answer takes at least this long, so its timing does not tell a customer's
    // number (a code is queued) from a stranger's (nothing is).
    let floor = tokio::time::Instant::now() + PUBLIC_ANSWER_FLOOR;
    let client = client_ip(&state, &ext, &headers);
    let answer = public_request_inner(&state, &handle, client, body).await;
    tokio::time::sleep_until(floor).await;
    answer
}

/// The least time a public request takes to answer.
pub const PUBLIC_ANSWER_FLOOR: Duration = Duration::from_millis(300);

async fn public_request_inner(
    state: &AppState,
    handle: &str,
    client: Option<IpAddr>,
    body: PublicRequest,
) -> Result<Response, AuthError> {
    let store = state.store();
    let tenant = match handle.parse() {
        Ok(h) => match store.tenant_by_handle(&h).await {
            Ok(t) => t,
            Err(CoreError::NotFound { .. }) => {
                return Ok(problem(
                    StatusCode::NOT_FOUND,
                    "unknown_business",
                    "no business has this name here",
                ));
            }
            Err(e) => return Err(e.into()),
        },
        Err(_) => {
            return Ok(problem(
                StatusCode::NOT_FOUND,
                "unknown_business",
                "no business has this name here",
            ));
        }
    };
    let Ok(number) = body.number.parse::<PhoneNumber>() else {
        return Ok(problem(
            StatusCode::BAD_REQUEST,
            "invalid_number",
            "number: a WhatsApp number with its country code, e.g. +91 98765 43210",
        ));
    };
    let Some(right) = parse_right(&body.right) else {
        return Err(bad(
            "right",
            "one of access, correction, deletion, objection, portability",
        ));
    };
    let regime = match body.regime.as_deref() {
        None => Regime::Gdpr,
        Some(r) => Regime::parse(r).ok_or_else(|| bad("regime", "gdpr or dpdp"))?,
    };
    if right == Right::Correction {
        return Err(bad(
            "right",
            "corrections need the new values: ask in the chat or ask the business",
        ));
    }
    let policy = store.policy.effective(tenant).await?;
    if !policy.grants(right) {
        return Err(bad(
            "right",
            format!("this business's policy does not grant {}", right.as_str()),
        ));
    }
    if let Some(ip) = client {
        if !state.ip_limiter().allow(ip) {
            return Ok(too_many(
                "too many requests from this address; try again later",
                3600,
            ));
        }
    }
    let key = store.tenant_key(tenant).await?;
    let blind = key.blind(BlindKind::WaId, number.digits()).to_vec();
    let hour_ago = now_micros() - 3_600_000_000;
    if store.challenges_since(tenant, &blind, hour_ago).await? >= CODES_PER_NUMBER_PER_HOUR {
        return Ok(too_many(
            "too many codes were sent to this number; try again in an hour",
            3600,
        ));
    }
    let id = uuid::Uuid::now_v7().to_string();
    let code = format!("{:06}", rand::thread_rng().gen_range(0..1_000_000));
    let digest = key.keyed_digest("dsr-code", format!("{id}|{code}").as_bytes());
    let expires_at = now_micros() + CODE_MINUTES * 60_000_000;
    let challenge = NewChallenge {
        id: &id,
        tenant,
        right,
        regime,
        number_blind: &blind,
        code_digest: &digest,
        expires_at,
        request_id: None,
        used_at: None,
        download_digest: None,
    };
    // Only a customer gets a message; nobody learns from this answer whether they are one.
    let mut message = None;
    if let Some(subject) = store
        .find_subject(tenant, BlindKind::WaId, number.digits())
        .await?
    {
        if let Some(conv) = store.latest_conversation(tenant, subject).await? {
            let window_open = conv.last_inbound_at.is_some_and(|t| {
                t.saturating_add(smartchat_core::follow_ups::WINDOW_MINUTES * 60_000_000)
                    > now_micros()
            });
            // Outside the 24-hour window only a template reaches the customer: the
            // tenant's approved authentication template with one variable, the code.
            let template =
                if window_open {
                    None
                } else {
                    store.templates(tenant).await?.into_iter().find(|t| {
                        t.category == "authentication" && t.params == 1 && t.is_approved()
                    })
                };
            let name = store.tenant(tenant).await?.summary.name.unwrap_or_default();
            let text = format!(
                "Your code to confirm your {} request to {name} is {code}. It expires in {CODE_MINUTES} minutes. If you did not ask for this, ignore this message.",
                right.as_str()
            );
            message = Some((conv, template, window_open, text));
        }
    }
    // The challenge and its code's message in one transaction: a message that cannot be
    // queued leaves no challenge counting against the number's codes an hour.
    let mut tx = store.db.begin().await?;
    // Counted again under the tenant's lock: concurrent requests for one number cannot
    // each pass the count above.
    if smartchat_core::rights::challenges_since_locked(&mut tx, tenant, &blind, hour_ago).await?
        >= CODES_PER_NUMBER_PER_HOUR
    {
        tx.rollback().await?;
        return Ok(too_many(
            "too many codes were sent to this number; try again in an hour",
            3600,
        ));
    }
    smartchat_core::rights::insert_challenge(&mut tx, &challenge).await?;
    if let Some((conv, template, window_open, text)) = &message {
        match (template, window_open) {
            (Some(t), _) => {
                pipeline::queue_template(
                    &mut tx,
                    store,
                    &key,
                    conv,
                    t,
                    vec![code.clone()],
                    "system",
                )
                .await?;
            }
            (None, true) => {
                pipeline::queue_outbound(&mut tx, store, &key, conv, text, "system").await?;
            }
            (None, false) => {
                tracing::warn!(
                    tenant.id = %tenant,
                    "rights code not sent: the window is closed and no approved authentication template with one variable exists"
                );
            }
        }
    }
    tx.commit().await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "challenge": id,
            "expires_in_seconds": CODE_MINUTES * 60,
            "message": format!("If this number has written to the business on WhatsApp, a code is on its way there. Confirm it with POST /rights/challenges/{id} {{\"code\": \"…\"}} within {CODE_MINUTES} minutes."),
        })),
    )
        .into_response())
}

/// Body of `POST /rights/challenges/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfirmBody {
    code: String,
}

/// `POST /rights/challenges/{id}`: confirms the code; the request is then carried out.
pub async fn confirm(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ConfirmBody>,
) -> Result<Response, AuthError> {
    let store = state.store();
    let ch = match store.challenge(&id).await {
        Ok(c) if !c.number_blind.is_empty() => c,
        Ok(_) | Err(CoreError::NotFound { .. }) => {
            return Ok(problem(
                StatusCode::NOT_FOUND,
                "unknown_challenge",
                "no such code request",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    // A code already confirmed answers 409, unless its access or portability request was
    // carried out but the download could not be granted after it (a failed write): then the
    // same code, checked as below, gets the download it should have had.
    let ungranted = if ch.used_at.is_some() {
        let Some(req) = ungranted_download(store, &ch).await? else {
            return Ok(problem(
                StatusCode::CONFLICT,
                "code_used",
                "this code was already confirmed",
            ));
        };
        Some(req)
    } else {
        None
    };
    if ch.attempts >= MAX_ATTEMPTS {
        return Ok(too_many(
            "too many wrong codes; ask for a new one",
            u64::try_from(CODE_MINUTES * 60).unwrap_or(600),
        ));
    }
    if now_micros() > ch.expires_at {
        return Ok(problem(
            StatusCode::GONE,
            "code_expired",
            "the code has expired; ask for a new one",
        ));
    }
    let attempts = store.count_attempt(&id).await?;
    let key = store.tenant_key(ch.tenant).await?;
    let given = key.keyed_digest("dsr-code", format!("{id}|{}", body.code.trim()).as_bytes());
    let expected: [u8; 32] = ch.code_digest.as_slice().try_into().unwrap_or([0; 32]);
    // blake3::Hash compares in constant time.
    if blake3::Hash::from(given) != blake3::Hash::from(expected) {
        let left = MAX_ATTEMPTS - attempts;
        if left <= 0 {
            return Ok(too_many("too many wrong codes; ask for a new one", 600));
        }
        let mut ext = serde_json::Map::new();
        ext.insert("attempts_left".into(), json!(left));
        return Ok(problem_with(
            StatusCode::BAD_REQUEST,
            "wrong_code",
            "the code is not right",
            ext,
        ));
    }
    if let Some(req) = ungranted {
        return Ok(
            Json(confirmed_answer(state.pipeline(), ch.tenant, &req).await?).into_response(),
        );
    }
    let subject = store.subject_by_blind(ch.tenant, &ch.number_blind).await?;
    let right = parse_right(&ch.right).ok_or(CoreError::Internal("right".into()))?;
    let (req, _) = store
        .open_request(NewRequest {
            tenant: ch.tenant,
            subject,
            right,
            channel: Channel::Public,
            regime: Regime::parse(&ch.regime).unwrap_or(Regime::Gdpr),
            details: None,
            verified: true,
            actor: Actor::DataSubject,
            now: OffsetDateTime::now_utc(),
        })
        .await?;
    if !store.use_challenge(&id, Some(&req.id), None).await? {
        return Ok(problem(
            StatusCode::CONFLICT,
            "code_used",
            "this code was already confirmed",
        ));
    }
    let req = carry_out(state.pipeline(), ch.tenant, &req.id, Actor::DataSubject).await?;
    Ok(Json(confirmed_answer(state.pipeline(), ch.tenant, &req).await?).into_response())
}

/// The answer to a confirmed code: the request, and either that nothing is held or, for a
/// completed access or portability request, a newly granted download.
async fn confirmed_answer(
    p: &Pipeline,
    tenant: TenantId,
    req: &DsrRequest,
) -> Result<serde_json::Value, CoreError> {
    let mut out = json!({
        "request": {
            "id": req.id, "right": req.right, "status": req.status,
            "due_at": req.due_at, "record_count": req.record_count,
        },
    });
    if !holds_data(req) {
        out["message"] = json!("No personal data is held for this number.");
    } else if is_answered_by_download(req) {
        let token = grant_download(p, tenant, req).await?;
        out["download"] = json!(format!("/rights/downloads/{token}"));
    }
    Ok(out)
}

fn holds_data(req: &DsrRequest) -> bool {
    req.record_count.unwrap_or(0) > 0 || req.status == "on_hold"
}

/// A completed access or portability request: answered with a download.
fn is_answered_by_download(req: &DsrRequest) -> bool {
    (req.right == "access" || req.right == "portability") && req.status == "completed"
}

/// The request of the used challenge `ch` when it should have been answered with a download
/// and none was granted.
async fn ungranted_download(
    store: &Store,
    ch: &Challenge,
) -> Result<Option<DsrRequest>, CoreError> {
    let Some(id) = ch.request_id.as_deref() else {
        return Ok(None);
    };
    let req = match store
        .dsr_request(ch.tenant, id, OffsetDateTime::now_utc())
        .await
    {
        Ok(r) => r,
        Err(CoreError::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    if !(holds_data(&req) && is_answered_by_download(&req)) || store.download_granted(id).await? {
        return Ok(None);
    }
    Ok(Some(req))
}

/// `GET /rights/downloads/{token}`: the answer to an access or portability request,
/// for [`DOWNLOAD_HOURS`] after it was granted.
pub async fn download(
    State(state): State<AppState>,
    Path(token): Path<String>,
    Query(q): Query<FormatQuery>,
) -> Result<Response, AuthError> {
    let store = state.store();
    let gone = || {
        problem(
            StatusCode::NOT_FOUND,
            "unknown_download",
            "no such download",
        )
    };
    if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(gone());
    }
    let digest = blake3::hash(token.as_bytes());
    let Some(ch) = store.challenge_by_download(digest.as_bytes()).await? else {
        return Ok(gone());
    };
    if now_micros() > ch.expires_at {
        return Ok(problem(
            StatusCode::GONE,
            "download_expired",
            "this download has expired",
        ));
    }
    let Some(req_id) = ch.request_id.as_deref() else {
        return Ok(gone());
    };
    let req = store
        .dsr_request(ch.tenant, req_id, OffsetDateTime::now_utc())
        .await?;
    answer(
        &state,
        ch.tenant,
        &req,
        q.format.as_deref(),
        Actor::DataSubject,
    )
    .await
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn the_client_is_the_nearest_untrusted_address() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let proxies: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        // No trusted proxy: the peer, whatever the header says.
        assert_eq!(
            client_address(ip("198.51.100.7"), &["203.0.113.5"], &[]),
            ip("198.51.100.7")
        );
        // A peer that is not a trusted proxy: the header is the client's own words.
        assert_eq!(
            client_address(ip("198.51.100.7"), &["203.0.113.5"], &proxies),
            ip("198.51.100.7")
        );
        // Through a trusted proxy: what it says it received from.
        assert_eq!(
            client_address(ip("10.0.0.2"), &["203.0.113.5"], &proxies),
            ip("203.0.113.5")
        );
        // A made-up address prepended by the client does not win; trusted hops are
        // skipped, across several headers.
        assert_eq!(
            client_address(
                ip("10.0.0.2"),
                &["1.2.3.4, 203.0.113.5", "10.0.0.9"],
                &proxies
            ),
            ip("203.0.113.5")
        );
        // Only proxies in the chain: its left-most; garbage or no header: the peer.
        assert_eq!(
            client_address(ip("10.0.0.2"), &["10.1.1.1, 10.0.0.9"], &proxies),
            ip("10.1.1.1")
        );
        assert_eq!(
            client_address(ip("10.0.0.2"), &["unknown, 203.0.113.5"], &proxies),
            ip("10.0.0.2")
        );
        assert_eq!(
            client_address(ip("10.0.0.2"), &[], &proxies),
            ip("10.0.0.2")
        );
    }
}
