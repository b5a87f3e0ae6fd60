//! The ledger for a tenant's auditors (issue 8): its own entries decoded as JSON, the latest
//! signed checkpoint with the verifier key, and a tenant bundle that `smartchat-verify
//! tenant-bundle` checks offline without any entry of another tenant
//! (`docs/ledger-format.md` §6.1). Owners and auditors only.
//!
//! Entries carry codes, pseudonyms, ids and digests, never personal data or text, so
//! nothing here can show an auditor a conversation.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use smartchat_ledger::{Actor, AttrValue, StoredEntry};

use crate::app::AppState;
use crate::auth::error::AuthError;
use crate::auth::extract::CurrentMember;
use smartchat_core::members::Role;

const READERS: &[Role] = &[Role::Owner, Role::Auditor];

/// `?after=&limit=`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EntriesQuery {
    /// Entries after this sequence number.
    after: Option<u64>,
    /// At most this many (default 100, at most 1,000).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

fn actor_json(a: Actor) -> serde_json::Value {
    match a {
        Actor::System => json!({ "kind": "system" }),
        Actor::Member(id) => json!({
            "kind": "member",
            "member_id": uuid::Uuid::from_bytes(id).to_string(),
        }),
        Actor::DataSubject => json!({ "kind": "data_subject" }),
        Actor::Meta => json!({ "kind": "meta" }),
        Actor::Provider(c) => json!({
            "kind": "provider",
            "provider": { "code": c, "name": smartchat_ledger::ProviderCode(c).name() },
        }),
    }
}

fn value_json(v: &AttrValue) -> serde_json::Value {
    match v {
        AttrValue::Code(c) => json!({ "type": "code", "value": c }),
        AttrValue::U64(n) => json!({ "type": "u64", "value": n }),
        AttrValue::I64(n) => json!({ "type": "i64", "value": n }),
        AttrValue::Digest(d) => json!({ "type": "digest", "value": hex::encode(d) }),
        AttrValue::Id(id) => json!({ "type": "id", "value": hex::encode(id) }),
        AttrValue::Bool(b) => json!({ "type": "bool", "value": b }),
    }
}

/// One entry as JSON: sequence, time, kind, actor, subject pseudonym, purpose, policy
/// version, outcome, references (hex) and typed attributes, with its hash.
pub fn entry_json(e: &StoredEntry) -> serde_json::Value {
    let d = &e.entry.draft;
    let time =
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(e.entry.time_micros) * 1000)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            });
    json!({
        "seq": e.entry.seq,
        "time_micros": e.entry.time_micros,
        "time": time,
        "kind": { "code": d.kind.0, "name": d.kind.name() },
        "actor": actor_json(d.actor),
        "subject": d.subject.map(hex::encode),
        "purpose": { "code": d.purpose.0, "name": d.purpose.name() },
        "policy_version": d.policy_version.map(hex::encode),
        "outcome": { "code": d.outcome.0, "name": d.outcome.name() },
        "refs": d.refs.iter().map(|r| json!({
            "kind": { "code": r.kind.0, "name": r.kind.name() },
            "id": hex::encode(&r.id),
        })).collect::<Vec<_>>(),
        "attrs": d.attrs.iter().map(|(k, v)| {
            let mut o = value_json(v);
            if let Some(m) = o.as_object_mut() {
                m.insert("key".into(), json!({ "code": k.0, "name": k.name() }));
            }
            o
        }).collect::<Vec<_>>(),
        "hash": hex::encode(e.hash),
    })
}

/// `GET /api/v1/ledger/entries?after=<seq>&limit=<n>` (owners, auditors): this tenant's
/// entries after `after`, at most `limit` (default 100, at most 1,000), oldest first;
/// `next_after` pages on.
#[utoipa::path(get, path = "/api/v1/ledger/entries", operation_id = "list_ledger_entries", tag = "ledger",
    params(EntriesQuery),
    responses((status = 200, description = "This tenant's ledger entries, oldest first", body = Object)))]
pub async fn list_entries(
    State(state): State<AppState>,
    me: CurrentMember,
    crate::error::QueryParams(q): crate::error::QueryParams<EntriesQuery>,
) -> Result<Json<serde_json::Value>, AuthError> {
    me.require(READERS)?;
    state.ledger().sequence_all().await?;
    let entries = state
        .ledger()
        .tenant_entries_page(me.tenant_id.bytes(), q.after, q.limit.unwrap_or(100))
        .await?;
    let next_after = entries.last().map(|e| e.entry.seq);
    Ok(Json(json!({
        "entries": entries.iter().map(entry_json).collect::<Vec<_>>(),
        "next_after": next_after,
    })))
}

/// `GET /api/v1/ledger/checkpoint` (owners, auditors): the latest signed checkpoint (a C2SP
/// signed note), its size and root, and the verifier key; 404 before the first one.
#[utoipa::path(get, path = "/api/v1/ledger/checkpoint", operation_id = "get_ledger_checkpoint", tag = "ledger",
    responses((status = 200, description = "The latest signed checkpoint and the verifier key", body = Object)))]
pub async fn get_checkpoint(
    State(state): State<AppState>,
    me: CurrentMember,
) -> Result<Json<serde_json::Value>, AuthError> {
    me.require(READERS)?;
    let cp = state
        .ledger()
        .latest_checkpoint()
        .await?
        .ok_or(AuthError::NotFound("checkpoint"))?;
    Ok(Json(json!({
        "checkpoint": cp.note,
        "size": cp.size,
        "root": hex::encode(cp.root),
        "vkey": state.ledger().vkey(),
    })))
}

/// `GET /api/v1/ledger/export` (owners, auditors): the tenant bundle, as a JSON download,
/// for `smartchat-verify tenant-bundle FILE --key VKEY`. Signs a checkpoint first if the log
/// grew; the export is ledgered (`ledger_exported`, with a digest of the file).
#[utoipa::path(get, path = "/api/v1/ledger/export", operation_id = "export_ledger", tag = "ledger",
    responses((status = 200, description = "The tenant bundle for smartchat-verify tenant-bundle", body = Object)))]
pub async fn export(
    State(state): State<AppState>,
    me: CurrentMember,
) -> Result<Response, AuthError> {
    me.require(READERS)?;
    let bundle = state.ledger().tenant_bundle(me.tenant_id.bytes()).await?;
    let bytes = serde_json::to_vec_pretty(&bundle)
        .map_err(|e| smartchat_core::CoreError::Internal(e.to_string()))?;
    state
        .ledger()
        .record_tenant_export(
            me.tenant_id.bytes(),
            Actor::Member(me.member_id.bytes()),
            &bundle,
            *blake3::hash(&bytes).as_bytes(),
        )
        .await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"ledger-{}.json\"", me.tenant_id),
            ),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        bytes,
    )
        .into_response())
}
