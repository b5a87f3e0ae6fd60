//! Leads: one per customer of a tenant, created and updated from the conversation by the
//! lead extractor, listed, corrected and moved between stages by the business. The
//! details (name, service asked about, preferred date and time, budget, notes) are sealed
//! under the subject's key, so deleting the subject deletes the lead with everything else;
//! the stage and the source are plain (no personal data).

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::Serialize;
use smartchat_ledger::{
    Actor, AttrKey, AttrValue, EntryDraft, EventKind, Purpose, RefKind, Reference,
};

use crate::audit;
use crate::db::now_micros;
use crate::db::schema::leads;
use crate::db_run;
use crate::error::CoreError;
use crate::ids::{LeadId, TenantId};
use crate::store::{ConversationRow, Store};

/// The stages of a lead.
pub const STAGES: &[&str] = &["new", "engaged", "booked", "lost"];

/// The detail fields a lead holds, in ledger code order (`field` 1..=7).
pub const FIELDS: &[&str] = &[
    "name",
    "service",
    "preferred_date",
    "preferred_time",
    "budget",
    "stage_hint",
    "notes",
];

/// The ledger code of a detail field (0 when unknown).
pub fn field_code(name: &str) -> u32 {
    FIELDS
        .iter()
        .position(|f| *f == name)
        .and_then(|i| u32::try_from(i + 1).ok())
        .unwrap_or(0)
}

/// The ledger code of a stage (0 when unknown).
pub fn stage_code(stage: &str) -> u32 {
    STAGES
        .iter()
        .position(|s| *s == stage)
        .and_then(|i| u32::try_from(i + 1).ok())
        .unwrap_or(0)
}

/// A lead as owners see it, details opened.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct LeadView {
    /// Id.
    pub id: LeadId,
    /// The conversation it came from.
    pub conversation_id: Option<String>,
    /// `new`, `engaged`, `booked` or `lost`.
    pub stage: String,
    /// `whatsapp` (extracted from a conversation) or `manual`.
    pub source: String,
    /// The customer's WhatsApp number (`wa_id`), when known.
    pub customer_wa_id: Option<String>,
    /// Name, service, preferred date and time, budget, notes.
    pub details: serde_json::Map<String, serde_json::Value>,
    /// Created, unix micros.
    pub created_at: i64,
    /// Last change, unix micros.
    pub updated_at: i64,
}

/// What an extraction found, for [`Store::record_lead`].
#[derive(Debug, Clone)]
pub struct Extracted {
    /// The fields found (only those; JSON values as the extractor gives them).
    pub fields: serde_json::Map<String, serde_json::Value>,
    /// The stage the conversation suggests.
    pub stage_hint: Option<String>,
    /// The provider that extracted them (ledger provider code), or `None` for the rules.
    pub provider: Option<u16>,
    /// A provider was allowed but the rules answered (all failed, or invalid output).
    pub fell_back: bool,
}

fn details_context(tenant: &str, lead: &str) -> String {
    format!("leads.details_ct|{tenant}|{lead}")
}

/// The stage an automatic hint moves a lead to: forward only (new → engaged → booked),
/// `lost` when the customer says so; a stage set by a member is changed only by a clear
/// booked or lost signal.
fn next_stage(current: &str, hint: Option<&str>) -> String {
    match hint {
        Some("booked") => "booked".into(),
        Some("lost") => "lost".into(),
        Some("engaged") if current == "new" => "engaged".into(),
        _ => current.into(),
    }
}

/// The subject a lead belongs to, read in the caller's transaction.
async fn lead_subject(tx: &mut crate::db::Tx, lid: &str) -> Result<String, CoreError> {
    Ok(db_run!(tx, |c| leads::table
        .find(lid)
        .select(leads::subject_id)
        .first(c)
        .await)?)
}

type LeadRow = (
    String,
    String,
    Option<String>,
    String,
    String,
    Vec<u8>,
    i64,
    i64,
);

impl Store {
    /// Creates or updates the lead of the conversation's customer from an extraction, in
    /// one transaction with its ledger entries (`lead_captured` with the names of the
    /// fields found and who found them; `lead_stage_changed` when the stage moves) and
    /// `extra` drafts (the provider calls the extraction made), completing the `lead` job
    /// `job`. Fields found overwrite stored ones; fields not found are kept. Returns the
    /// lead and whether it is new (a customer's first lead).
    pub async fn record_lead(
        &self,
        conv: &ConversationRow,
        found: &Extracted,
        extra: &[EntryDraft],
        job: i64,
    ) -> Result<(LeadId, bool), CoreError> {
        let tenant = conv.tenant_id;
        let tid = tenant.to_string();
        let sid = conv.subject_id.to_string();
        let key = self.tenant_key(tenant).await?;
        let mut tx = self.db.begin().await?;
        let skey = self.subject_key_in(&mut tx, &tid, &sid, &key).await?;
        let existing: Option<(String, String, Vec<u8>)> = db_run!(tx, |c| leads::table
            .filter(leads::tenant_id.eq(&tid))
            .filter(leads::subject_id.eq(&sid))
            .order(leads::created_at.desc())
            .select((leads::id, leads::stage, leads::details_ct))
            .first(c)
            .await
            .optional())?;
        let now = now_micros();
        let (id, old_stage, mut details) = match existing {
            Some((id, stage, ct)) => {
                let plain = skey.open(&details_context(&tid, &id), &ct)?;
                let map: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_slice(&plain)
                        .map_err(|_| CoreError::Crypto("lead details do not parse".into()))?;
                (id.parse::<LeadId>()?, Some(stage), map)
            }
            None => (LeadId::new(), None, serde_json::Map::new()),
        };
        for (k, v) in &found.fields {
            if !v.is_null() && k != "stage_hint" {
                details.insert(k.clone(), v.clone());
            }
        }
        let lid = id.to_string();
        let ct = skey.seal(
            &details_context(&tid, &lid),
            &serde_json::to_vec(&details).map_err(|e| CoreError::Internal(e.to_string()))?,
        )?;
        let current = old_stage.clone().unwrap_or_else(|| "new".into());
        let stage = next_stage(&current, found.stage_hint.as_deref());
        let cid = conv.id.to_string();
        if old_stage.is_some() {
            db_run!(tx, |c| diesel::update(leads::table.find(&lid))
                .set((
                    leads::details_ct.eq(&ct),
                    leads::stage.eq(&stage),
                    leads::updated_at.eq(now)
                ))
                .execute(c)
                .await)?;
        } else {
            db_run!(tx, |c| diesel::insert_into(leads::table)
                .values((
                    leads::id.eq(&lid),
                    leads::tenant_id.eq(&tid),
                    leads::subject_id.eq(&sid),
                    leads::conversation_id.eq(Some(&cid)),
                    leads::stage.eq(&stage),
                    leads::source.eq("whatsapp"),
                    leads::details_ct.eq(&ct),
                    leads::created_at.eq(now),
                    leads::updated_at.eq(now),
                ))
                .execute(c)
                .await)?;
        }
        let base = |kind| {
            EntryDraft::new(kind, Actor::System)
                .tenant(tenant.bytes())
                .subject(key.pseudonym(&sid))
                .purpose(Purpose::LEAD_MANAGEMENT)
                .reference(Reference::id(RefKind::LEAD, id.bytes()))
        };
        let mut captured = base(EventKind::LEAD_CAPTURED);
        for k in found.fields.keys() {
            captured = captured.attr(AttrKey::FIELD, AttrValue::Code(field_code(k)));
        }
        if let Some(p) = found.provider {
            captured = captured.attr(AttrKey::PROVIDER, AttrValue::Code(u32::from(p)));
        }
        if found.fell_back {
            captured = captured.attr(AttrKey::REASON, AttrValue::Code(1));
        }
        audit::enqueue(&mut tx, &captured).await?;
        if old_stage.as_deref() != Some(stage.as_str()) {
            audit::enqueue(
                &mut tx,
                &base(EventKind::LEAD_STAGE_CHANGED)
                    .attr(AttrKey::STAGE, AttrValue::Code(stage_code(&stage))),
            )
            .await?;
        }
        for d in extra {
            audit::enqueue(&mut tx, d).await?;
        }
        crate::jobs::complete(&mut tx, job).await?;
        tx.commit().await?;
        Ok((id, old_stage.is_none()))
    }

    /// The tenant's leads, most recently changed first, optionally of one stage.
    pub async fn list_leads(
        &self,
        tenant: TenantId,
        stage: Option<&str>,
        limit: i64,
    ) -> Result<Vec<LeadView>, CoreError> {
        let tid = tenant.to_string();
        let mut c = self.db.conn().await?;
        let stage = stage.map(str::to_owned);
        let rows: Vec<LeadRow> = db_run!(c, |c| {
            let mut q = leads::table.filter(leads::tenant_id.eq(&tid)).into_boxed();
            if let Some(s) = &stage {
                q = q.filter(leads::stage.eq(s));
            }
            q.order((leads::updated_at.desc(), leads::id.desc()))
                .limit(limit)
                .select((
                    leads::id,
                    leads::subject_id,
                    leads::conversation_id,
                    leads::stage,
                    leads::source,
                    leads::details_ct,
                    leads::created_at,
                    leads::updated_at,
                ))
                .load(c)
                .await
        })?;
        drop(c);
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            if let Some(v) = self.open_lead(tenant, row).await? {
                out.push(v);
            }
        }
        Ok(out)
    }

    /// One lead of `tenant` (`NotFound` for another tenant's, or a shredded subject's).
    pub async fn lead(&self, tenant: TenantId, id: LeadId) -> Result<LeadView, CoreError> {
        let tid = tenant.to_string();
        let lid = id.to_string();
        let mut c = self.db.conn().await?;
        let row: Option<LeadRow> = db_run!(c, |c| leads::table
            .filter(leads::tenant_id.eq(&tid))
            .filter(leads::id.eq(&lid))
            .select((
                leads::id,
                leads::subject_id,
                leads::conversation_id,
                leads::stage,
                leads::source,
                leads::details_ct,
                leads::created_at,
                leads::updated_at
            ))
            .first(c)
            .await
            .optional())?;
        drop(c);
        match row {
            Some(r) => self
                .open_lead(tenant, r)
                .await?
                .ok_or(CoreError::NotFound { what: "lead" }),
            None => Err(CoreError::NotFound { what: "lead" }),
        }
    }

    async fn open_lead(
        &self,
        tenant: TenantId,
        row: LeadRow,
    ) -> Result<Option<LeadView>, CoreError> {
        let (id, sid, conversation_id, stage, source, ct, created_at, updated_at) = row;
        let tid = tenant.to_string();
        let key = self.tenant_key(tenant).await?;
        let mut c = self.db.conn().await?;
        let skey = match self.subject_key_in(&mut c, &tid, &sid, &key).await {
            Ok(k) => k,
            // The customer's data was deleted: so was their lead.
            Err(CoreError::Shredded { .. } | CoreError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let details: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&skey.open(&details_context(&tid, &id), &ct)?)
                .map_err(|_| CoreError::Crypto("lead details do not parse".into()))?;
        let contact = self
            .subject_contact_in(&mut c, tenant, sid.parse()?, &key)
            .await?;
        Ok(Some(LeadView {
            id: id.parse()?,
            conversation_id,
            stage,
            source,
            customer_wa_id: contact.wa_id,
            details,
            created_at,
            updated_at,
        }))
    }

    /// A correction by a member: the given detail fields are replaced (a `null` removes
    /// one), the details re-sealed, and a `correction` entry ledgered with the names of the
    /// fields, never their values. Unknown fields are refused.
    pub async fn correct_lead(
        &self,
        tenant: TenantId,
        id: LeadId,
        patch: &serde_json::Map<String, serde_json::Value>,
        actor: Actor,
    ) -> Result<LeadView, CoreError> {
        self.update_lead(tenant, id, patch, None, actor).await
    }

    /// A member's change of a lead: a correction of detail fields (as
    /// [`Store::correct_lead`]) and, when `stage` is given and differs, a move to it (as
    /// [`Store::set_lead_stage`]). Everything is checked first and written in one
    /// transaction: a failure keeps none of it.
    pub async fn update_lead(
        &self,
        tenant: TenantId,
        id: LeadId,
        patch: &serde_json::Map<String, serde_json::Value>,
        stage: Option<&str>,
        actor: Actor,
    ) -> Result<LeadView, CoreError> {
        if let Some(stage) = stage {
            if !STAGES.contains(&stage) {
                return Err(CoreError::Invalid {
                    field: "stage",
                    reason: format!("expected one of {}", STAGES.join(", ")),
                });
            }
        }
        for k in patch.keys() {
            if field_code(k) == 0 || k == "stage_hint" {
                return Err(CoreError::Invalid {
                    field: "lead",
                    reason: format!(
                        "unknown field {k:?}; fields: name, service, preferred_date, preferred_time, budget, notes"
                    ),
                });
            }
        }
        let view = self.lead(tenant, id).await?;
        let stage = stage.filter(|s| *s != view.stage);
        if patch.is_empty() && stage.is_none() {
            return Ok(view);
        }
        let mut details = view.details;
        for (k, v) in patch {
            if v.is_null() {
                details.remove(k);
            } else {
                details.insert(k.clone(), v.clone());
            }
        }
        let tid = tenant.to_string();
        let lid = id.to_string();
        let key = self.tenant_key(tenant).await?;
        let mut tx = self.db.begin().await?;
        let sid = lead_subject(&mut tx, &lid).await?;
        if !patch.is_empty() {
            let skey = self.subject_key_in(&mut tx, &tid, &sid, &key).await?;
            let ct = skey.seal(
                &details_context(&tid, &lid),
                &serde_json::to_vec(&details).map_err(|e| CoreError::Internal(e.to_string()))?,
            )?;
            let now = now_micros();
            db_run!(tx, |c| diesel::update(leads::table.find(&lid))
                .set((leads::details_ct.eq(&ct), leads::updated_at.eq(now)))
                .execute(c)
                .await)?;
            let mut draft = EntryDraft::new(EventKind::CORRECTION, actor)
                .tenant(tenant.bytes())
                .subject(key.pseudonym(&sid))
                .purpose(Purpose::LEAD_MANAGEMENT)
                .reference(Reference::id(RefKind::LEAD, id.bytes()));
            for k in patch.keys() {
                draft = draft.attr(AttrKey::FIELD, AttrValue::Code(field_code(k)));
            }
            audit::enqueue(&mut tx, &draft).await?;
        }
        if let Some(stage) = stage {
            set_stage_in(&mut tx, &key, tenant, id, &sid, stage, actor).await?;
        }
        tx.commit().await?;
        self.lead(tenant, id).await
    }

    /// Moves a lead to `stage` (any stage: a member decides), ledgered with the member.
    pub async fn set_lead_stage(
        &self,
        tenant: TenantId,
        id: LeadId,
        stage: &str,
        actor: Actor,
    ) -> Result<bool, CoreError> {
        if !STAGES.contains(&stage) {
            return Err(CoreError::Invalid {
                field: "stage",
                reason: format!("expected one of {}", STAGES.join(", ")),
            });
        }
        if self.lead(tenant, id).await?.stage == stage {
            return Ok(false);
        }
        self.update_lead(tenant, id, &serde_json::Map::new(), Some(stage), actor)
            .await?;
        Ok(true)
    }
}

/// Moves lead `id` (of subject `sid`) to `stage` and ledgers it, in `tx`.
pub(crate) async fn set_stage_in(
    tx: &mut crate::db::Tx,
    key: &crate::crypto::TenantKey,
    tenant: TenantId,
    id: LeadId,
    sid: &str,
    stage: &str,
    actor: Actor,
) -> Result<(), CoreError> {
    let lid = id.to_string();
    let now = now_micros();
    db_run!(tx, |c| diesel::update(leads::table.find(&lid))
        .set((leads::stage.eq(stage), leads::updated_at.eq(now)))
        .execute(c)
        .await)?;
    audit::enqueue(
        tx,
        &EntryDraft::new(EventKind::LEAD_STAGE_CHANGED, actor)
            .tenant(tenant.bytes())
            .subject(key.pseudonym(sid))
            .purpose(Purpose::LEAD_MANAGEMENT)
            .reference(Reference::id(RefKind::LEAD, id.bytes()))
            .attr(AttrKey::STAGE, AttrValue::Code(stage_code(stage))),
    )
    .await
}
