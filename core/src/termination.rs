//! The end of an account and retention (privacy policy s.9): terminating a tenant opens the
//! export window (`termination.delete_after_days`, 30 by default); when it closes, the
//! retention pass crypto-shreds the tenant key (constant time: every copy, backups included,
//! becomes unreadable at once) and then deletes the rows in batches. A tenant-wide legal hold
//! makes the purge wait. The ledger keeps its pseudonymous entries and still verifies; the
//! anonymized analytics store is not touched.
//!
//! While the account is active, categories with a `while_active_days` retention lose the
//! messages older than that, in batches.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::Serialize;
use smartchat_ledger::{Actor, AttrKey, AttrValue, EntryDraft, EventKind, Purpose};
use time::OffsetDateTime;

use crate::audit;
use crate::db::micros_of;
use crate::db::schema::{
    booking_links, conversations, dsr_challenges, dsr_requests, follow_up_rules, follow_ups, jobs,
    leads, legal_holds, members, message_templates, messages, phone_numbers, search_feed,
    subject_keys, subjects, tenants,
};
use crate::db_run;
use crate::error::CoreError;
use crate::ids::TenantId;
use crate::store::Store;

/// Where an account stands.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct AccountState {
    /// `active`, `terminated` or `purged`.
    pub status: String,
    /// When it was terminated (unix micros).
    pub terminated_at: Option<i64>,
    /// When its data is deleted (unix micros): the end of the export window.
    pub purge_after: Option<i64>,
    /// Whether a tenant-wide legal hold makes the deletion wait.
    pub held: bool,
}

/// Which messages a batched purge takes.
pub(crate) struct MessageBatch<'a> {
    /// The tenant.
    pub tenant: &'a str,
    /// Only this subject's, when set.
    pub subject: Option<&'a str>,
    /// Only those created before this (unix micros), when set.
    pub before: Option<i64>,
    /// Rows per batch.
    pub size: i64,
}

/// Deletes the next batch of `which`, oldest first from `*cursor` on, in `tx`, and moves the
/// cursor past it; returns the ids deleted (empty when none are left). Walking a
/// `created_at` cursor (on the tenant's or the subject's index) means each batch starts
/// where the last ended instead of re-reading the dead index entries of every row deleted
/// before it (1,000,000 rows on PostgreSQL: 4 s instead of 107 s).
pub(crate) async fn delete_message_batch(
    tx: &mut crate::db::Tx,
    which: &MessageBatch<'_>,
    cursor: &mut i64,
) -> Result<Vec<String>, CoreError> {
    let from = *cursor;
    let rows: Vec<(String, i64)> = db_run!(tx, |c| {
        let mut q = messages::table
            .filter(messages::tenant_id.eq(which.tenant))
            .filter(messages::created_at.ge(from))
            .into_boxed();
        if let Some(s) = which.subject {
            q = q.filter(messages::subject_id.eq(s));
        }
        if let Some(b) = which.before {
            q = q.filter(messages::created_at.lt(b));
        }
        q.order(messages::created_at)
            .select((messages::id, messages::created_at))
            .limit(which.size.max(1))
            .load(c)
            .await
    })?;
    *cursor = rows.iter().map(|r| r.1).max().unwrap_or(from);
    let ids: Vec<String> = rows.into_iter().map(|r| r.0).collect();
    if !ids.is_empty() {
        db_run!(tx, |c| diesel::delete(
            messages::table.filter(messages::id.eq_any(&ids))
        )
        .execute(c)
        .await)?;
    }
    Ok(ids)
}

impl Store {
    /// Terminates the tenant: status `terminated`, its numbers disconnected and its queued
    /// jobs dropped, deletion scheduled after the policy's export window; ledgered once
    /// (terminating twice changes nothing).
    pub async fn terminate_tenant(
        &self,
        tenant: TenantId,
        actor: Actor,
        now: OffsetDateTime,
    ) -> Result<AccountState, CoreError> {
        let policy = self.policy.effective(tenant).await?;
        let days = *policy.doc().termination.delete_after_days.get_ref();
        let purge_after = now + time::Duration::days(i64::from(days));
        let tid = tenant.to_string();
        let mut tx = self.db.begin().await?;
        let n = db_run!(tx, |c| diesel::update(
            tenants::table
                .find(&tid)
                .filter(tenants::status.eq("active"))
        )
        .set((
            tenants::status.eq("terminated"),
            tenants::terminated_at.eq(micros_of(now)),
            tenants::purge_after.eq(micros_of(purge_after)),
        ))
        .execute(c)
        .await)?;
        if n == 1 {
            // Processing stops now: its numbers are disconnected (a webhook for them is
            // an unknown number: 200, nothing stored) and its queued work is dropped.
            db_run!(tx, |c| diesel::delete(
                phone_numbers::table.filter(phone_numbers::tenant_id.eq(&tid))
            )
            .execute(c)
            .await)?;
            db_run!(tx, |c| diesel::delete(
                jobs::table
                    .filter(jobs::tenant_id.eq(&tid))
                    .filter(jobs::status.eq("ready"))
            )
            .execute(c)
            .await)?;
            audit::enqueue(
                &mut tx,
                &EntryDraft::new(EventKind::TENANT_TERMINATED, actor)
                    .tenant(tenant.bytes())
                    .purpose(Purpose::ADMINISTRATION)
                    .attr(
                        AttrKey::SCHEDULED_FOR_MICROS,
                        AttrValue::I64(micros_of(purge_after)),
                    ),
            )
            .await?;
        }
        tx.commit().await?;
        self.account(tenant).await
    }

    /// The account's state.
    pub async fn account(&self, tenant: TenantId) -> Result<AccountState, CoreError> {
        let tid = tenant.to_string();
        let mut c = self.db.conn().await?;
        let row: Option<(String, Option<i64>, Option<i64>)> = db_run!(c, |c| tenants::table
            .find(&tid)
            .select((
                tenants::status,
                tenants::terminated_at,
                tenants::purge_after
            ))
            .first(c)
            .await
            .optional())?;
        drop(c);
        let (status, terminated_at, purge_after) =
            row.ok_or(CoreError::NotFound { what: "tenant" })?;
        Ok(AccountState {
            status,
            terminated_at,
            purge_after,
            held: self.is_held(tenant, None).await?,
        })
    }

    /// Terminated tenants whose export window has closed at `now`.
    pub async fn tenants_due_for_purge(
        &self,
        now: OffsetDateTime,
    ) -> Result<Vec<TenantId>, CoreError> {
        let mut c = self.db.conn().await?;
        let ids: Vec<String> = db_run!(c, |c| tenants::table
            .filter(tenants::status.eq_any(["terminated", "shredded"]))
            .filter(tenants::purge_after.le(micros_of(now)))
            .select(tenants::id)
            .load(c)
            .await)?;
        ids.iter().map(|s| s.parse()).collect()
    }

    /// Deletes every row of a tenant whose key is already shredded, `batch` messages at a
    /// time (`progress` gets the running total of rows), then marks it `purged` (the row
    /// stays, without its profile, so ledger references keep a name). Returns the rows
    /// deleted; ledgered `tenant_purged` with the count.
    pub async fn purge_tenant_rows(
        &self,
        tenant: TenantId,
        batch: i64,
        mut progress: impl FnMut(u64) + Send,
    ) -> Result<u64, CoreError> {
        let tid = tenant.to_string();
        match self.tenant_key(tenant).await {
            Err(CoreError::Shredded { .. }) => {}
            Ok(_) => {
                return Err(CoreError::Conflict {
                    what: "tenant (shred its key first)",
                });
            }
            Err(e) => return Err(e),
        }
        let mut total: u64 = 0;
        let which = MessageBatch {
            tenant: &tid,
            subject: None,
            before: None,
            size: batch,
        };
        let mut cursor = i64::MIN;
        loop {
            let mut tx = self.db.begin().await?;
            let ids = delete_message_batch(&mut tx, &which, &mut cursor).await?;
            if ids.is_empty() {
                break;
            }
            tx.commit().await?;
            total += ids.len() as u64;
            progress(total);
        }
        let mut tx = self.db.begin().await?;
        let mut n = 0usize;
        n += db_run!(tx, |c| diesel::delete(
            follow_ups::table.filter(follow_ups::tenant_id.eq(&tid))
        )
        .execute(c)
        .await)?;
        n += db_run!(tx, |c| diesel::delete(
            booking_links::table.filter(booking_links::tenant_id.eq(&tid))
        )
        .execute(c)
        .await)?;
        n += db_run!(tx, |c| diesel::delete(
            conversations::table.filter(conversations::tenant_id.eq(&tid))
        )
        .execute(c)
        .await)?;
        n += db_run!(tx, |c| diesel::delete(
            leads::table.filter(leads::tenant_id.eq(&tid))
        )
        .execute(c)
        .await)?;
        n += db_run!(tx, |c| diesel::delete(
            subject_keys::table.filter(subject_keys::tenant_id.eq(&tid))
        )
        .execute(c)
        .await)?;
        n += db_run!(tx, |c| diesel::delete(
            subjects::table.filter(subjects::tenant_id.eq(&tid))
        )
        .execute(c)
        .await)?;
        n += db_run!(tx, |c| diesel::delete(
            follow_up_rules::table.filter(follow_up_rules::tenant_id.eq(&tid))
        )
        .execute(c)
        .await)?;
        n += db_run!(tx, |c| diesel::delete(
            message_templates::table.filter(message_templates::tenant_id.eq(&tid))
        )
        .execute(c)
        .await)?;
        n += db_run!(tx, |c| diesel::delete(
            dsr_challenges::table.filter(dsr_challenges::tenant_id.eq(&tid))
        )
        .execute(c)
        .await)?;
        n += db_run!(tx, |c| diesel::delete(
            dsr_requests::table.filter(dsr_requests::tenant_id.eq(&tid))
        )
        .execute(c)
        .await)?;
        n += db_run!(tx, |c| diesel::delete(
            legal_holds::table.filter(legal_holds::tenant_id.eq(&tid))
        )
        .execute(c)
        .await)?;
        n += db_run!(tx, |c| diesel::delete(
            jobs::table
                .filter(jobs::tenant_id.eq(&tid))
                .filter(jobs::status.ne("running"))
        )
        .execute(c)
        .await)?;
        n += db_run!(tx, |c| diesel::delete(
            search_feed::table
                .filter(search_feed::tenant_id.eq(&tid))
                .filter(search_feed::op.ne("drop_tenant"))
        )
        .execute(c)
        .await)?;
        n += db_run!(tx, |c| diesel::delete(
            members::table.filter(members::tenant_id.eq(&tid))
        )
        .execute(c)
        .await)?;
        n += db_run!(tx, |c| diesel::delete(
            phone_numbers::table.filter(phone_numbers::tenant_id.eq(&tid))
        )
        .execute(c)
        .await)?;
        // The tenant's own AI provider keys (unreadable since the shred) go with it.
        n += db_run!(tx, |c| diesel::delete(
            crate::db::schema::provider_keys::table
                .filter(crate::db::schema::provider_keys::tenant_id.eq(&tid))
        )
        .execute(c)
        .await)?;
        db_run!(tx, |c| diesel::update(tenants::table.find(&tid))
            .set((
                tenants::status.eq("purged"),
                tenants::profile_ct.eq(Vec::<u8>::new()),
                tenants::policy_overrides.eq(None::<String>),
                tenants::provider_chain.eq(None::<String>),
            ))
            .execute(c)
            .await)?;
        total += n as u64;
        audit::enqueue(
            &mut tx,
            &EntryDraft::new(EventKind::TENANT_PURGED, Actor::System)
                .tenant(tenant.bytes())
                .purpose(Purpose::LEGAL_OBLIGATION)
                .attr(AttrKey::RECORD_COUNT, AttrValue::U64(total)),
        )
        .await?;
        tx.commit().await?;
        progress(total);
        Ok(total)
    }

    /// Deletes the tenant's messages older than `max_age_days` (per-category retention
    /// while active), `batch` at a time, each batch with its search-feed removals; returns
    /// how many were deleted.
    pub async fn expire_messages(
        &self,
        tenant: TenantId,
        max_age_days: u32,
        now: OffsetDateTime,
        batch: i64,
    ) -> Result<u64, CoreError> {
        let tid = tenant.to_string();
        let cutoff = micros_of(now - time::Duration::days(i64::from(max_age_days)));
        let mut total = 0u64;
        let which = MessageBatch {
            tenant: &tid,
            subject: None,
            before: Some(cutoff),
            size: batch,
        };
        let mut cursor = i64::MIN;
        loop {
            let mut tx = self.db.begin().await?;
            let ids = delete_message_batch(&mut tx, &which, &mut cursor).await?;
            if ids.is_empty() {
                break;
            }
            let n = ids.len();
            for id in &ids {
                crate::search_feed::enqueue(
                    &mut tx,
                    &tid,
                    &crate::search_feed::FeedOp::DeleteMessage { id: id.clone() },
                )
                .await?;
            }
            audit::enqueue(
                &mut tx,
                &EntryDraft::new(EventKind::RETENTION_EXPIRED, Actor::System)
                    .tenant(tenant.bytes())
                    .purpose(Purpose::LEGAL_OBLIGATION)
                    .attr(AttrKey::RECORD_COUNT, AttrValue::U64(n as u64)),
            )
            .await?;
            tx.commit().await?;
            total += n as u64;
        }
        Ok(total)
    }

    /// The ids of the tenant's subjects whose key still exists.
    pub async fn live_subjects(
        &self,
        tenant: TenantId,
    ) -> Result<Vec<crate::ids::SubjectId>, CoreError> {
        let tid = tenant.to_string();
        let mut c = self.db.conn().await?;
        let ids: Vec<String> = db_run!(c, |c| subject_keys::table
            .filter(subject_keys::tenant_id.eq(&tid))
            .order(subject_keys::created_at)
            .select(subject_keys::subject_id)
            .load(c)
            .await)?;
        ids.iter().map(|s| s.parse()).collect()
    }
}
