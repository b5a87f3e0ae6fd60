//! The account's end and retention (privacy policy s.9): `GET /api/v1/account`,
//! `POST /api/v1/account/terminate` (owners; the handle typed again as confirmation),
//! `GET /api/v1/account/export` (owners, during the export window too: every customer's
//! data as in an access report, the business profile, a manifest of SHA-256 checksums),
//! and the retention pass ([`run_retention`]) every server process runs each hour and
//! `smartchat retention run` runs once.

use std::io::Write;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use sha2::Digest;
use smartchat_core::CoreError;
use smartchat_core::ids::TenantId;
use smartchat_core::members::Role;
use smartchat_core::termination::AccountState;
use smartchat_ledger::{Actor, AttrKey, AttrValue, EntryDraft, EventKind, Purpose};
use smartchat_policies::Category;
use time::OffsetDateTime;

use crate::app::AppState;
use crate::auth::error::AuthError;
use crate::auth::extract::CurrentMember;
use crate::error::{JsonBody, Problem, problem};
use crate::pipeline::Pipeline;

/// Messages deleted per batch by retention and purges.
pub const BATCH: i64 = 1000;

/// `GET /api/v1/account`.
#[utoipa::path(
    get,
    path = "/api/v1/account",
    operation_id = "get_account",
    tag = "account",
    responses((status = 200, description = "Where the account stands", body = AccountState))
)]
pub async fn get_account(
    State(state): State<AppState>,
    me: CurrentMember,
) -> Result<Json<AccountState>, AuthError> {
    me.require(&[Role::Owner, Role::Auditor])?;
    Ok(Json(state.store().account(me.tenant_id).await?))
}

/// Body of `POST /api/v1/account/terminate`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TerminateBody {
    /// The tenant's handle, typed again.
    confirm: String,
}

/// `POST /api/v1/account/terminate`: ends the contract; the data can be exported until
/// `purge_after`, then it is deleted.
#[utoipa::path(
    post,
    path = "/api/v1/account/terminate",
    operation_id = "terminate_account",
    tag = "account",
    request_body = TerminateBody,
    responses(
        (status = 200, description = "Terminated", body = AccountState),
        (status = 422, description = "The handle does not match (`confirmation_mismatch`), or another rule", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn terminate(
    State(state): State<AppState>,
    me: CurrentMember,
    JsonBody(body): JsonBody<TerminateBody>,
) -> Result<Response, AuthError> {
    me.require(&[Role::Owner])?;
    let store = state.store();
    let view = store.tenant(me.tenant_id).await?;
    if body.confirm != view.summary.handle {
        return Ok(problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "confirmation_mismatch",
            "confirm: type the business's handle to terminate the account",
        ));
    }
    let account = store
        .terminate_tenant(
            me.tenant_id,
            Actor::Member(me.member_id.bytes()),
            OffsetDateTime::now_utc(),
        )
        .await?;
    Ok(Json(account).into_response())
}

/// The whole tenant's data as a zip: `business.json`, `customers/<subject id>.json` (each
/// as an access report), `manifest.json` with every file's size and SHA-256.
pub async fn export_zip(state: &AppState, tenant: TenantId) -> Result<(Vec<u8>, u64), CoreError> {
    let store = state.store();
    let view = store.tenant(tenant).await?;
    let internal = |e: &dyn std::fmt::Display| CoreError::Internal(e.to_string());
    let mut files: Vec<(String, Vec<u8>)> = vec![(
        "business.json".into(),
        serde_json::to_vec_pretty(&json!({
            "handle": view.summary.handle,
            "status": view.summary.status,
            "profile": view.profile.0,
            "rules": store.rules(tenant).await?,
            "templates": store.templates(tenant).await?,
        }))
        .map_err(|e| internal(&e))?,
    )];
    let mut records = 0u64;
    for subject in store.live_subjects(tenant).await? {
        let report = match store.access_report(state.ledger(), tenant, subject).await {
            Ok(r) => r,
            Err(CoreError::Shredded { .. } | CoreError::NotFound { .. }) => continue,
            Err(e) => return Err(e),
        };
        records += report.record_count();
        files.push((
            format!("customers/{subject}.json"),
            serde_json::to_vec_pretty(&report).map_err(|e| internal(&e))?,
        ));
    }
    let manifest = json!({
        "format": "smartchat-tenant-export/1",
        "generated_at": OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        "files": files.iter().map(|(name, bytes)| json!({
            "name": name, "bytes": bytes.len(),
            "sha256": hex::encode(sha2::Sha256::digest(bytes)),
        })).collect::<Vec<_>>(),
    });
    files.push((
        "manifest.json".into(),
        serde_json::to_vec_pretty(&manifest).map_err(|e| internal(&e))?,
    ));
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in &files {
        zip.start_file(name.as_str(), options)
            .map_err(|e| internal(&e))?;
        zip.write_all(bytes).map_err(|e| internal(&e))?;
    }
    let bytes = zip.finish().map_err(|e| internal(&e))?.into_inner();
    Ok((bytes, records))
}

/// `GET /api/v1/account/export`: the full export (owners), ledgered.
#[utoipa::path(
    get,
    path = "/api/v1/account/export",
    operation_id = "export_account",
    tag = "account",
    responses((status = 200, description = "Every customer's data, the business profile and a manifest, as a zip", body = crate::openapi::File, content_type = "application/zip"))
)]
pub async fn export(
    State(state): State<AppState>,
    me: CurrentMember,
) -> Result<Response, AuthError> {
    me.require(&[Role::Owner])?;
    let (bytes, records) = export_zip(&state, me.tenant_id).await?;
    let store = state.store();
    let mut tx = store.db.begin().await?;
    smartchat_core::audit::enqueue(
        &mut tx,
        &EntryDraft::new(EventKind::EXPORT_MADE, Actor::Member(me.member_id.bytes()))
            .tenant(me.tenant_id.bytes())
            .purpose(Purpose::ADMINISTRATION)
            .attr(
                AttrKey::EXPORT_DIGEST,
                AttrValue::Digest(*blake3::hash(&bytes).as_bytes()),
            )
            .attr(AttrKey::RECORD_COUNT, AttrValue::U64(records)),
    )
    .await?;
    tx.commit().await?;
    let mut r = (StatusCode::OK, bytes).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/zip"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r.headers_mut().insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"smartchat-export.zip\""),
    );
    Ok(r)
}

/// What one retention pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RetentionReport {
    /// Tenants whose key was shredded and rows deleted.
    pub purged_tenants: usize,
    /// Tenants whose purge waits for a legal hold.
    pub held_tenants: usize,
    /// Rows deleted by purges.
    pub purged_rows: u64,
    /// Messages deleted for being older than their retention.
    pub expired_messages: u64,
    /// Done jobs deleted for being older than `SMARTCHAT_DONE_JOBS_KEPT_DAYS`.
    pub pruned_jobs: u64,
    /// Data-subject requests left open half-way, queued to be finished
    /// ([`crate::rights::resume_stranded`]).
    pub resumed_requests: u64,
}

/// One retention pass at `now`: terminated tenants past their export window are
/// crypto-shredded and purged (unless held); active tenants lose messages older than
/// their `conversations.while_active_days`; done jobs due longer before `now` than
/// [`Pipeline::done_jobs_kept`] (a week by default) are deleted (ids only; dead ones stay);
/// data-subject requests left open half-way are queued to be finished
/// ([`crate::rights::resume_stranded`]).
pub async fn run_retention(
    p: &Pipeline,
    now: OffsetDateTime,
) -> Result<RetentionReport, CoreError> {
    let store = &p.store;
    let mut out = RetentionReport::default();
    for tenant in store.tenants_due_for_purge(now).await? {
        if store.is_held(tenant, None).await? {
            tracing::info!(tenant.id = %tenant, "tenant purge waits for a legal hold");
            out.held_tenants += 1;
            continue;
        }
        match store.tenant_key(tenant).await {
            Ok(_) => store.shred_tenant(tenant, Actor::System).await?,
            // Shredded by an earlier pass, whose record in the main database may have been
            // lost (the key store is a database apart): written now if it was.
            Err(CoreError::Shredded { .. }) => {
                if store
                    .record_lost_tenant_shred(tenant, Actor::System)
                    .await?
                {
                    tracing::warn!(tenant.id = %tenant, "a tenant shred's lost record was written");
                }
            }
            Err(e) => return Err(e),
        }
        let rows = store
            .purge_tenant_rows(tenant, BATCH, |n| {
                tracing::info!(tenant.id = %tenant, rows = n, "tenant purge progress");
            })
            .await?;
        out.purged_tenants += 1;
        out.purged_rows += rows;
    }
    for t in store.list_tenants().await? {
        if t.status != "active" {
            continue;
        }
        let policy = store.policy.effective(t.id).await?;
        let Some(days) = policy
            .retention(Category::Conversations)
            .and_then(|r| r.while_active_days)
        else {
            continue;
        };
        out.expired_messages += store.expire_messages(t.id, days, now, BATCH).await?;
    }
    out.resumed_requests = crate::rights::resume_stranded(p, now).await?;
    let kept = i64::try_from(p.done_jobs_kept().as_micros()).unwrap_or(i64::MAX);
    let mut logged = 0u64;
    out.pruned_jobs = smartchat_core::jobs::prune_done(
        &store.db,
        crate::pipeline::QUEUE,
        smartchat_core::db::micros_of(now).saturating_sub(kept),
        BATCH,
        |n| {
            // An hour of traffic can be a million jobs: a line per 100,000, not per batch.
            if n / 100_000 > logged / 100_000 {
                tracing::info!(jobs = n, "done job prune progress");
            }
            logged = n;
        },
    )
    .await?;
    Ok(out)
}

/// Runs the retention pass every hour until `shutdown` changes.
pub async fn retention_loop(p: Pipeline, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    loop {
        match run_retention(&p, OffsetDateTime::now_utc()).await {
            Ok(r) if r != RetentionReport::default() => tracing::info!(
                purged_tenants = r.purged_tenants,
                held_tenants = r.held_tenants,
                purged_rows = r.purged_rows,
                expired_messages = r.expired_messages,
                pruned_jobs = r.pruned_jobs,
                resumed_requests = r.resumed_requests,
                "retention pass"
            ),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "retention pass failed"),
        }
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(std::time::Duration::from_secs(3600)) => {}
        }
    }
}
