//! Writing to the audit ledger from inside a data transaction.
//!
//! A data change enqueues its ledger drafts in `ledger_pending` in the same transaction as
//! the change, so neither commits without the other. The sequencer ([`crate::ledger_store`])
//! later moves pending drafts into the hash chain in one total order.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use smartchat_ledger::EntryDraft;

use crate::db::schema::ledger_pending;
use crate::db::{Conn, now_micros};
use crate::db_run;
use crate::error::CoreError;

/// Queues one ledger draft in the caller's transaction.
pub async fn enqueue(c: &mut Conn, draft: &EntryDraft) -> Result<(), CoreError> {
    let bytes = draft
        .encode()
        .map_err(|e| CoreError::Ledger(e.to_string()))?;
    let now = now_micros();
    db_run!(c, |c| diesel::insert_into(ledger_pending::table)
        .values((
            ledger_pending::draft.eq(&bytes),
            ledger_pending::created_micros.eq(now)
        ))
        .execute(c)
        .await)?;
    Ok(())
}
