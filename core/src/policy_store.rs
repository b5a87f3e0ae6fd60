//! Policies as code, stored: each tenant's overrides, the platform policy versions the
//! server has run with, and sub-processor registry changes with their notices and the
//! tenants' objections. Decisions come from `smartchat-policies`; this module gives them the
//! tenant's context and ledgers every change.
//!
//! A registry change (a new processor, a new category sent to one) is detected at start-up
//! by comparing the platform policy with the last recorded version. Each change is stored,
//! every affected tenant is notified (a notice row and a ledger entry), and the change takes
//! effect only after the policy's notice period; a tenant that objects keeps it denied
//! (GDPR Art. 28(2)).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use smartchat_ledger::{Actor, AttrKey, AttrValue, EntryDraft, EventKind, RefKind, Reference};
use smartchat_policies::{
    ChangeId, EffectivePolicy, Policy, PolicyVersion, ProcessingUsage, RegistryChange,
    TenantContext, TenantOverrides, diff_registries,
};
use time::OffsetDateTime;

use crate::audit;
use crate::db::schema::{
    policy_versions, registry_changes, registry_notices, registry_objections, tenants,
};
use crate::db::{DbPool, micros_of, now_micros};
use crate::db_run;
use crate::error::CoreError;
use crate::ids::TenantId;

/// What [`PolicyService::record_platform`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformRecord {
    /// The running version.
    pub version: PolicyVersion,
    /// The version recorded before, if different.
    pub previous: Option<String>,
    /// Registry changes announced now.
    pub changes: Vec<RegistryChange>,
    /// Notices written (change, tenant).
    pub notices: usize,
}

/// A registry change as a tenant sees it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Notice {
    /// The change.
    pub change: RegistryChange,
    /// When the tenant was notified (unix micros).
    pub notified_at: i64,
    /// When the tenant objected, if it did.
    pub objected_at: Option<i64>,
}

/// Policy decisions in a tenant's context. Cheap to clone.
#[derive(Clone)]
pub struct PolicyService {
    db: DbPool,
    platform: Arc<Policy>,
    cache: Arc<Mutex<HashMap<String, Arc<EffectivePolicy>>>>,
}

impl std::fmt::Debug for PolicyService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PolicyService({})", self.platform.version())
    }
}

fn digest(s: &str) -> [u8; 32] {
    *blake3::hash(s.as_bytes()).as_bytes()
}

fn json_err(e: serde_json::Error) -> CoreError {
    CoreError::Internal(format!("policy json: {e}"))
}

impl PolicyService {
    /// Wraps the platform policy.
    pub fn new(db: DbPool, platform: Arc<Policy>) -> Self {
        Self {
            db,
            platform,
            cache: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The same service (and cache, so a change made through either is seen by both)
    /// reading through another pool ([`crate::store::Store::twin`]).
    pub fn on_pool(&self, db: DbPool) -> Self {
        Self {
            db,
            platform: self.platform.clone(),
            cache: self.cache.clone(),
        }
    }

    /// The platform policy (the floor every tenant stands on).
    pub fn platform(&self) -> &Policy {
        &self.platform
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<EffectivePolicy>>> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records the running platform policy. When it differs from the last recorded one, the
    /// registry changes are stored, affected tenants notified, and both ledgered, in one
    /// transaction.
    pub async fn record_platform(&self, now: OffsetDateTime) -> Result<PlatformRecord, CoreError> {
        let version = self.platform.version();
        let vs = version.to_string();
        let mut tx = self.db.begin().await?;
        let last: Option<(String, String)> = db_run!(tx, |c| policy_versions::table
            .order(policy_versions::recorded_at.desc())
            .select((policy_versions::version, policy_versions::policy))
            .first(c)
            .await
            .optional())?;
        if last.as_ref().is_some_and(|(v, _)| *v == vs) {
            tx.rollback().await?;
            return Ok(PlatformRecord {
                version,
                previous: None,
                changes: Vec::new(),
                notices: 0,
            });
        }
        let text = self
            .platform
            .to_toml_string()
            .map_err(|e| CoreError::Internal(e.to_string()))?;
        let at = micros_of(now).max(now_micros());
        // A version may come back after another one ran: record it again as the newest.
        db_run!(tx, |c| diesel::delete(policy_versions::table.find(&vs))
            .execute(c)
            .await)?;
        db_run!(tx, |c| diesel::insert_into(policy_versions::table)
            .values((
                policy_versions::version.eq(&vs),
                policy_versions::policy.eq(&text),
                policy_versions::recorded_at.eq(at),
            ))
            .execute(c)
            .await)?;
        let mut draft = EntryDraft::new(EventKind::POLICY_VERSION_CHANGED, Actor::System)
            .policy_version(version.0);
        let mut changes = Vec::new();
        let mut notices = 0;
        let previous = last.as_ref().map(|(v, _)| v.clone());
        if let Some((old_v, old_text)) = &last {
            if let Ok(old_bytes) = old_v.parse::<PolicyVersion>() {
                draft = draft.attr(AttrKey::OLD_POLICY_VERSION, AttrValue::Digest(old_bytes.0));
            }
            let old = Policy::from_toml_str(old_text, "recorded policy").map_err(|e| {
                CoreError::Internal(format!("recorded policy {old_v} no longer loads: {e}"))
            })?;
            changes = diff_registries(&old, &self.platform, now);
            let tenants: Vec<(String, Option<String>)> = db_run!(tx, |c| tenants::table
                .filter(tenants::status.eq("active"))
                .select((tenants::id, tenants::policy_overrides))
                .load(c)
                .await)?;
            for ch in &changes {
                let body = serde_json::to_string(ch).map_err(json_err)?;
                let id = ch.id.0.clone();
                let exists: i64 = db_run!(tx, |c| registry_changes::table
                    .filter(registry_changes::id.eq(&id))
                    .count()
                    .get_result(c)
                    .await)?;
                if exists > 0 {
                    continue;
                }
                db_run!(tx, |c| diesel::insert_into(registry_changes::table)
                    .values((
                        registry_changes::id.eq(&id),
                        registry_changes::processor.eq(ch.processor.as_str()),
                        registry_changes::body.eq(&body),
                        registry_changes::announced_at.eq(micros_of(ch.announced_at)),
                        registry_changes::effective_at.eq(micros_of(ch.effective_at)),
                    ))
                    .execute(c)
                    .await)?;
                for (tid, ov) in &tenants {
                    let overrides = parse_overrides(ov.as_deref())?;
                    if !ch.affects(&overrides) {
                        continue;
                    }
                    db_run!(tx, |c| diesel::insert_into(registry_notices::table)
                        .values((
                            registry_notices::change_id.eq(&id),
                            registry_notices::tenant_id.eq(tid),
                            registry_notices::notified_at.eq(at),
                        ))
                        .execute(c)
                        .await)?;
                    let t: TenantId = tid.parse()?;
                    audit::enqueue(
                        &mut tx,
                        &EntryDraft::new(EventKind::SUB_PROCESSOR_CHANGE_NOTIFIED, Actor::System)
                            .tenant(t.bytes())
                            .policy_version(version.0)
                            .reference(Reference::digest(RefKind::RECORD_DIGEST, digest(&id)))
                            .attr(
                                AttrKey::SCHEDULED_FOR_MICROS,
                                AttrValue::I64(micros_of(ch.effective_at)),
                            ),
                    )
                    .await?;
                    notices += 1;
                }
            }
        }
        audit::enqueue(&mut tx, &draft).await?;
        tx.commit().await?;
        self.lock().clear();
        Ok(PlatformRecord {
            version,
            previous,
            changes,
            notices,
        })
    }

    async fn context(
        &self,
        tenant: TenantId,
        now: OffsetDateTime,
    ) -> Result<TenantContext, CoreError> {
        let tid = tenant.to_string();
        let mut c = self.db.conn().await?;
        let ov: Option<Option<String>> = db_run!(c, |c| tenants::table
            .find(&tid)
            .select(tenants::policy_overrides)
            .first(c)
            .await
            .optional())?;
        let ov = ov.ok_or(CoreError::NotFound { what: "tenant" })?;
        let bodies: Vec<String> = db_run!(c, |c| registry_changes::table
            .order(registry_changes::announced_at)
            .select(registry_changes::body)
            .load(c)
            .await)?;
        let changes = bodies
            .iter()
            .map(|b| serde_json::from_str::<RegistryChange>(b).map_err(json_err))
            .collect::<Result<Vec<_>, _>>()?;
        let objections: Vec<String> = db_run!(c, |c| registry_objections::table
            .filter(registry_objections::tenant_id.eq(&tid))
            .select(registry_objections::change_id)
            .load(c)
            .await)?;
        Ok(TenantContext {
            overrides: parse_overrides(ov.as_deref())?,
            changes,
            objections: objections
                .into_iter()
                .map(ChangeId)
                .collect::<BTreeSet<_>>(),
            now,
        })
    }

    /// The tenant's effective policy now (cached until it changes or expires).
    pub async fn effective(&self, tenant: TenantId) -> Result<Arc<EffectivePolicy>, CoreError> {
        self.effective_at(tenant, OffsetDateTime::now_utc()).await
    }

    /// The tenant's effective policy at `now` (cached for the current time only).
    pub async fn effective_at(
        &self,
        tenant: TenantId,
        now: OffsetDateTime,
    ) -> Result<Arc<EffectivePolicy>, CoreError> {
        let tid = tenant.to_string();
        if let Some(e) = self.lock().get(&tid) {
            if e.valid_until().is_none_or(|u| now < u)
                && now <= OffsetDateTime::now_utc() + time::Duration::seconds(1)
            {
                return Ok(e.clone());
            }
        }
        let ctx = self.context(tenant, now).await?;
        let eff = Arc::new(
            self.platform
                .effective_in(&ctx)
                .map_err(|e| CoreError::Invalid {
                    field: "policy overrides",
                    reason: e.to_string(),
                })?,
        );
        let live = (now - OffsetDateTime::now_utc()).abs() < time::Duration::seconds(1);
        if live {
            self.lock().insert(tid, eff.clone());
        }
        Ok(eff)
    }

    /// Sets a tenant's overrides: refused, with every rule that would be loosened, unless
    /// they only tighten the platform floor. Ledgered with the old and new versions.
    pub async fn set_overrides(
        &self,
        tenant: TenantId,
        overrides: &TenantOverrides,
        actor: Actor,
    ) -> Result<PolicyVersion, CoreError> {
        let old = self.effective(tenant).await?.version();
        let eff = self
            .platform
            .effective_for(overrides)
            .map_err(|e| CoreError::Invalid {
                field: "policy overrides",
                reason: e.to_string(),
            })?;
        let tid = tenant.to_string();
        let json = serde_json::to_string(overrides).map_err(json_err)?;
        let mut tx = self.db.begin().await?;
        let n = db_run!(tx, |c| diesel::update(tenants::table.find(&tid))
            .set(tenants::policy_overrides.eq(Some(&json)))
            .execute(c)
            .await)?;
        if n == 0 {
            return Err(CoreError::NotFound { what: "tenant" });
        }
        self.lock().remove(&tid);
        audit::enqueue(
            &mut tx,
            &EntryDraft::new(EventKind::POLICY_VERSION_CHANGED, actor)
                .tenant(tenant.bytes())
                .policy_version(eff.version().0)
                .attr(AttrKey::OLD_POLICY_VERSION, AttrValue::Digest(old.0)),
        )
        .await?;
        tx.commit().await?;
        self.lock().remove(&tid);
        Ok(self.effective(tenant).await?.version())
    }

    /// The tenant's overrides as stored.
    pub async fn overrides(&self, tenant: TenantId) -> Result<TenantOverrides, CoreError> {
        Ok(self
            .context(tenant, OffsetDateTime::now_utc())
            .await?
            .overrides)
    }

    /// Records a tenant's objection to a registry change (idempotent), ledgered.
    pub async fn object(
        &self,
        tenant: TenantId,
        change: &str,
        actor: Actor,
    ) -> Result<(), CoreError> {
        let tid = tenant.to_string();
        let mut tx = self.db.begin().await?;
        let exists: i64 = db_run!(tx, |c| registry_changes::table
            .filter(registry_changes::id.eq(change))
            .count()
            .get_result(c)
            .await)?;
        if exists == 0 {
            return Err(CoreError::NotFound {
                what: "registry change",
            });
        }
        let already: i64 = db_run!(tx, |c| registry_objections::table
            .filter(registry_objections::change_id.eq(change))
            .filter(registry_objections::tenant_id.eq(&tid))
            .count()
            .get_result(c)
            .await)?;
        if already > 0 {
            tx.rollback().await?;
            return Ok(());
        }
        let now = now_micros();
        db_run!(tx, |c| diesel::insert_into(registry_objections::table)
            .values((
                registry_objections::change_id.eq(change),
                registry_objections::tenant_id.eq(&tid),
                registry_objections::objected_at.eq(now),
            ))
            .execute(c)
            .await)?;
        audit::enqueue(
            &mut tx,
            &EntryDraft::new(EventKind::SUB_PROCESSOR_CHANGE_OBJECTED, actor)
                .tenant(tenant.bytes())
                .reference(Reference::digest(RefKind::RECORD_DIGEST, digest(change))),
        )
        .await?;
        tx.commit().await?;
        self.lock().remove(&tid);
        Ok(())
    }

    /// The registry changes a tenant was notified of, with its objections.
    pub async fn notices(&self, tenant: TenantId) -> Result<Vec<Notice>, CoreError> {
        let tid = tenant.to_string();
        let mut c = self.db.conn().await?;
        let rows: Vec<(String, i64)> = db_run!(c, |c| registry_notices::table
            .filter(registry_notices::tenant_id.eq(&tid))
            .select((registry_notices::change_id, registry_notices::notified_at))
            .order(registry_notices::notified_at)
            .load(c)
            .await)?;
        let mut out = Vec::new();
        for (id, notified_at) in rows {
            let body: String = db_run!(c, |c| registry_changes::table
                .find(&id)
                .select(registry_changes::body)
                .first(c)
                .await)?;
            let objected_at: Option<i64> = db_run!(c, |c| registry_objections::table
                .filter(registry_objections::change_id.eq(&id))
                .filter(registry_objections::tenant_id.eq(&tid))
                .select(registry_objections::objected_at)
                .first(c)
                .await
                .optional())?;
            out.push(Notice {
                change: serde_json::from_str(&body).map_err(json_err)?,
                notified_at,
                objected_at,
            });
        }
        Ok(out)
    }

    /// The policy version governing a tenant's processing now, for ledger entries.
    pub async fn version_for(&self, tenant: TenantId) -> Result<PolicyVersion, CoreError> {
        Ok(self.effective(tenant).await?.version())
    }
}

fn parse_overrides(text: Option<&str>) -> Result<TenantOverrides, CoreError> {
    match text {
        None => Ok(TenantOverrides::default()),
        Some(t) => serde_json::from_str(t).map_err(json_err),
    }
}

/// Processing facts for the records of processing, from the ledger: provider calls per
/// processor (issue 5 writes them), counted without reading any personal data.
pub fn usage_from_entries(entries: &[smartchat_ledger::StoredEntry]) -> ProcessingUsage {
    let mut usage = ProcessingUsage::default();
    for e in entries {
        let d = &e.entry.draft;
        if d.kind != EventKind::AI_PROVIDER_CALL {
            continue;
        }
        let provider = d.attrs.iter().find_map(|(k, v)| match (*k, v) {
            (AttrKey::PROVIDER, AttrValue::Code(c)) => Some(*c),
            _ => None,
        });
        let name = match provider {
            Some(c) => provider_name(c),
            None => continue,
        };
        let Ok(pid) = smartchat_policies::ProcessorId::new(name) else {
            continue;
        };
        let u = usage.processors.entry(pid).or_default();
        let at =
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(e.entry.time_micros) * 1000).ok();
        if d.outcome == smartchat_ledger::Outcome::SUCCESS {
            u.calls += 1;
        } else {
            u.denied += 1;
        }
        u.first_at = u.first_at.or(at);
        u.last_at = at.or(u.last_at);
    }
    usage
}

/// The policy's processor id for a ledger provider code.
pub fn provider_name(code: u32) -> &'static str {
    match code {
        1 => "openai",
        7 => "deepseek",
        _ => "other",
    }
}
