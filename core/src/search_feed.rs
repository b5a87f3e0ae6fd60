//! The search feed: a durable queue, in the main database, of what the search indexer still
//! has to apply. Each row is written in the same transaction as the change it mirrors (a
//! message stored, a subject shredded, a tenant shredded), so the index can never miss one;
//! the indexer deletes a row only after the index commit that applied it is durable, so a
//! crash re-applies (adding a message is idempotent: it replaces the document with that id).
//! Rows carry ids and pseudonyms only, never text.

use std::collections::HashMap;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::db::schema::{messages, search_feed};
use crate::db::{DbPool, Tx, now_micros};
use crate::db_run;
use crate::error::CoreError;
use crate::ids::TenantId;
use crate::store::{MessageRow, Store, open_messages};

/// What a feed row asks of the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedOp {
    /// Index (or re-index) a message.
    Add {
        /// Message id.
        message_id: String,
    },
    /// Remove every document of a subject and purge them from disk.
    DeleteSubject {
        /// The subject's pseudonym (hex), as stored in the index.
        pseudonym: String,
    },
    /// Remove the tenant's whole index.
    DropTenant,
    /// Remove one message (retention expiry).
    DeleteMessage {
        /// Message id.
        id: String,
    },
}

/// One row of the feed.
#[derive(Debug, Clone)]
pub struct FeedRow {
    /// Order of application.
    pub seq: i64,
    /// Tenant.
    pub tenant_id: String,
    /// What to do.
    pub op: FeedOp,
}

/// Queues `op` for `tenant` in the caller's transaction.
pub async fn enqueue(tx: &mut Tx, tenant: &str, op: &FeedOp) -> Result<(), CoreError> {
    let (name, ref_id) = match op {
        FeedOp::Add { message_id } => ("add", message_id.as_str()),
        FeedOp::DeleteSubject { pseudonym } => ("delete_subject", pseudonym.as_str()),
        FeedOp::DropTenant => ("drop_tenant", tenant),
        FeedOp::DeleteMessage { id } => ("delete_message", id.as_str()),
    };
    let now = now_micros();
    db_run!(tx, |c| diesel::insert_into(search_feed::table)
        .values((
            search_feed::tenant_id.eq(tenant),
            search_feed::op.eq(name),
            search_feed::ref_id.eq(ref_id),
            search_feed::created_at.eq(now),
        ))
        .execute(c)
        .await)?;
    Ok(())
}

/// The oldest `limit` rows, in order.
pub async fn pending(db: &DbPool, limit: i64) -> Result<Vec<FeedRow>, CoreError> {
    let mut c = db.conn().await?;
    let rows: Vec<(i64, String, String, String)> = db_run!(c, |c| search_feed::table
        .order(search_feed::seq)
        .limit(limit)
        .select((
            search_feed::seq,
            search_feed::tenant_id,
            search_feed::op,
            search_feed::ref_id
        ))
        .load(c)
        .await)?;
    rows.into_iter()
        .map(|(seq, tenant_id, op, ref_id)| {
            let op = match op.as_str() {
                "add" => FeedOp::Add { message_id: ref_id },
                "delete_subject" => FeedOp::DeleteSubject { pseudonym: ref_id },
                "drop_tenant" => FeedOp::DropTenant,
                "delete_message" => FeedOp::DeleteMessage { id: ref_id },
                other => {
                    return Err(CoreError::Internal(format!(
                        "unknown search feed op {other}"
                    )));
                }
            };
            Ok(FeedRow { seq, tenant_id, op })
        })
        .collect()
}

/// Deletes applied rows.
pub async fn remove(db: &DbPool, seqs: &[i64]) -> Result<(), CoreError> {
    let mut c = db.conn().await?;
    for chunk in seqs.chunks(500) {
        db_run!(c, |c| diesel::delete(
            search_feed::table.filter(search_feed::seq.eq_any(chunk))
        )
        .execute(c)
        .await)?;
    }
    Ok(())
}

/// How many rows the indexer has still to apply: `smartchat status` prints it for
/// operators, and the webhook benchmark after each step, to show whether the indexer keeps up.
pub async fn backlog(db: &DbPool) -> Result<i64, CoreError> {
    let mut c = db.conn().await?;
    Ok(db_run!(c, |c| search_feed::table
        .count()
        .get_result(c)
        .await)?)
}

/// The highest sequence number queued so far for `tenant` (0 when none): the watermark a
/// rebuild from the database covers.
pub async fn max_seq(db: &DbPool, tenant: &str) -> Result<i64, CoreError> {
    let mut c = db.conn().await?;
    let max: Option<i64> = db_run!(c, |c| search_feed::table
        .filter(search_feed::tenant_id.eq(tenant))
        .select(diesel::dsl::max(search_feed::seq))
        .first(c)
        .await)?;
    Ok(max.unwrap_or(0))
}

/// A message as the index needs it, body opened.
#[derive(Clone)]
pub struct IndexMessage {
    /// The row.
    pub row: MessageRow,
    /// The subject's pseudonym (hex).
    pub pseudonym: String,
    /// The opened body.
    pub text: String,
}

impl std::fmt::Debug for IndexMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IndexMessage({}, <text redacted>)", self.row.id)
    }
}

impl Store {
    /// Opens the messages `ids` of `tenant` for indexing. Messages that are gone, have no
    /// text, or whose subject was shredded are left out.
    pub async fn messages_for_index(
        &self,
        tenant: TenantId,
        ids: &[String],
    ) -> Result<Vec<IndexMessage>, CoreError> {
        let tid = tenant.to_string();
        let mut c = self.db.conn().await?;
        let mut rows: Vec<MessageRow> = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let mut part: Vec<MessageRow> = db_run!(c, |c| messages::table
                .filter(messages::tenant_id.eq(&tid))
                .filter(messages::id.eq_any(chunk))
                .filter(messages::body_ct.is_not_null())
                .select(MessageRow::as_select())
                .load(c)
                .await)?;
            rows.append(&mut part);
        }
        drop(c);
        self.open_for_index(tenant, rows).await
    }

    /// One page of a tenant's messages with text, in id order after `after` (for a
    /// rebuild), opened for indexing.
    pub async fn message_page_for_index(
        &self,
        tenant: TenantId,
        after: Option<&str>,
        limit: i64,
    ) -> Result<(Vec<IndexMessage>, Option<String>), CoreError> {
        let tid = tenant.to_string();
        let after = after.unwrap_or("").to_owned();
        let mut c = self.db.conn().await?;
        let rows: Vec<MessageRow> = db_run!(c, |c| messages::table
            .filter(messages::tenant_id.eq(&tid))
            .filter(messages::id.gt(&after))
            .filter(messages::body_ct.is_not_null())
            .order(messages::id)
            .limit(limit)
            .select(MessageRow::as_select())
            .load(c)
            .await)?;
        drop(c);
        let last = rows.last().map(|r| r.id.clone());
        Ok((self.open_for_index(tenant, rows).await?, last))
    }

    /// Counts a tenant's messages with text (for a rebuild's progress).
    pub async fn indexable_count(&self, tenant: TenantId) -> Result<i64, CoreError> {
        let tid = tenant.to_string();
        let mut c = self.db.conn().await?;
        Ok(db_run!(c, |c| messages::table
            .filter(messages::tenant_id.eq(&tid))
            .filter(messages::body_ct.is_not_null())
            .count()
            .get_result(c)
            .await)?)
    }

    async fn open_for_index(
        &self,
        tenant: TenantId,
        rows: Vec<MessageRow>,
    ) -> Result<Vec<IndexMessage>, CoreError> {
        let tid = tenant.to_string();
        let key = self.tenant_key(tenant).await?;
        let mut by_subject: HashMap<String, Vec<MessageRow>> = HashMap::new();
        for r in rows {
            by_subject.entry(r.subject_id.clone()).or_default().push(r);
        }
        let mut out = Vec::new();
        let mut c = self.db.conn().await?;
        let sids: Vec<&str> = by_subject.keys().map(String::as_str).collect();
        let mut skeys = self.subject_keys_in(&mut c, &tid, &sids, &key).await?;
        for (sid, rows) in by_subject {
            // No key: shredded (or gone), so nothing of theirs is indexed again.
            let Some(skey) = skeys.remove(&sid) else {
                continue;
            };
            let pseudonym = hex::encode(key.pseudonym(&sid));
            for m in open_messages(&skey, &tid, rows)? {
                if let Some(text) = m.body.and_then(|b| searchable_text(&m.row.kind, b)) {
                    out.push(IndexMessage {
                        row: m.row,
                        pseudonym: pseudonym.clone(),
                        text,
                    });
                }
            }
        }
        Ok(out)
    }
}

/// The searchable text of a stored body: the text itself, or a media message's caption
/// (media bodies are a JSON summary: Meta's media id, type and caption).
fn searchable_text(kind: &str, body: String) -> Option<String> {
    match kind {
        "image" | "video" | "document" | "audio" | "sticker" => {
            serde_json::from_str::<serde_json::Value>(&body)
                .ok()?
                .get("caption")?
                .as_str()
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
        }
        _ => Some(body),
    }
}
