//! The audit ledger on PostgreSQL and SQLite: [`LedgerStore`] for a connection inside a
//! transaction, and the [`Ledger`] service that sequences pending drafts, signs
//! checkpoints, proves and exports.
//!
//! Sequencing (see docs/ARCHITECTURE.md, "The ledger"): data transactions only insert
//! drafts into `ledger_pending`, so they never contend on the chain's head. One sequencer at
//! a time (PostgreSQL: `SELECT … FOR UPDATE` on the single `ledger_head` row; SQLite:
//! `BEGIN IMMEDIATE`) takes up to [`BATCH`] pending drafts in id order, chains them, adds
//! their Merkle hashes, advances the head and deletes them, in one transaction. Any number
//! of server processes may run sequencers; the head lock gives one total order with no gaps
//! and no forks.

use std::collections::HashMap;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use ed25519_dalek::SigningKey;
use smartchat_ledger as lstore;
use smartchat_ledger::{
    CheckpointSigner, EntryDraft, Hash, Head, LedgerError, LedgerStore, StoredCheckpoint,
    StoredEntry,
};

use crate::crypto::keyring::Keyring;
use crate::db::prepared::{column, stmt};
use crate::db::schema::{
    ledger_checkpoints, ledger_entries, ledger_head, ledger_pending, ledger_tree,
};
use crate::db::{Conn, DbPool, Raw, now_micros};
use crate::db_run;
use crate::error::CoreError;

/// Drafts sequenced per transaction (bounded by SQLite's bind-variable limit).
pub const BATCH: i64 = 500;

/// Name of the checkpoint signing key in the key store.
pub const SIGNING_KEY_NAME: &str = "ledger-checkpoint-ed25519";

/// A connection (inside the caller's transaction) seen as a ledger store.
pub struct SqlLedger<'a> {
    conn: &'a mut Conn,
}

impl<'a> SqlLedger<'a> {
    /// Wraps a connection.
    pub fn new(conn: &'a mut Conn) -> Self {
        Self { conn }
    }
}

fn to_hash(v: &[u8]) -> Result<Hash, CoreError> {
    v.try_into()
        .map_err(|_| CoreError::Ledger(format!("stored hash of {} bytes", v.len())))
}

fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Sequenced entries, one row per element of the arrays.
const INSERT_ENTRIES_PG: &str = "INSERT INTO ledger_entries \
     (seq, tenant_id, kind, time_micros, entry, hash) \
     SELECT * FROM unnest($1::bigint[], $2::bytea[], $3::int4[], $4::bigint[], $5::bytea[], \
     $6::bytea[])";

/// Merkle tree nodes.
const INSERT_TREE_PG: &str =
    "INSERT INTO ledger_tree (id, hash) SELECT * FROM unnest($1::bigint[], $2::bytea[])";

impl LedgerStore for SqlLedger<'_> {
    type Error = CoreError;

    async fn head(&mut self) -> Result<Option<Head>, CoreError> {
        let row: (i64, Vec<u8>, i64) = db_run!(self.conn, |c| ledger_head::table
            .find(1)
            .select((
                ledger_head::size,
                ledger_head::last_hash,
                ledger_head::last_time_micros
            ))
            .first(c)
            .await)?;
        if row.0 == 0 {
            return Ok(None);
        }
        Ok(Some(Head {
            size: u(row.0),
            last_hash: to_hash(&row.1)?,
            last_time_micros: row.2,
        }))
    }

    async fn read_tree_hashes(&mut self, ids: &[u64]) -> Result<Vec<Hash>, CoreError> {
        let want: Vec<i64> = ids.iter().map(|&x| i(x)).collect();
        let rows: Vec<(i64, Vec<u8>)> = db_run!(self.conn, |c| ledger_tree::table
            .filter(ledger_tree::id.eq_any(&want))
            .select((ledger_tree::id, ledger_tree::hash))
            .load(c)
            .await)?;
        let map: HashMap<i64, Vec<u8>> = rows.into_iter().collect();
        want.iter()
            .map(|id| {
                map.get(id)
                    .ok_or_else(|| CoreError::Ledger(format!("tree hash {id} missing")))
                    .and_then(|h| to_hash(h))
            })
            .collect()
    }

    async fn write_batch(
        &mut self,
        entries: &[StoredEntry],
        tree: &[(u64, Hash)],
        new_head: &Head,
    ) -> Result<(), CoreError> {
        let rows: Vec<EntryRow> = entries
            .iter()
            .map(|e| EntryRow {
                seq: i(e.entry.seq),
                tenant_id: e.entry.draft.tenant.map(|t| t.0.to_vec()),
                kind: i32::from(e.entry.draft.kind.0),
                time_micros: e.entry.time_micros,
                entry: e.bytes.clone(),
                hash: e.hash.to_vec(),
            })
            .collect();
        // SQLite through the async wrapper has no multi-row INSERT in diesel; one statement
        // per row inside the transaction is what SQLite does best anyway.
        db_run!(
            self.conn,
            pg | c | {
                // One prepared statement whatever the entry count.
                use diesel::sql_types::{Array, BigInt, Binary, Integer, Nullable};
                if !rows.is_empty() {
                    stmt(INSERT_ENTRIES_PG)
                        .bind::<Array<BigInt>, _>(column(&rows, |r| r.seq))
                        .bind::<Array<Nullable<Binary>>, _>(column(&rows, |r| &r.tenant_id))
                        .bind::<Array<Integer>, _>(column(&rows, |r| r.kind))
                        .bind::<Array<BigInt>, _>(column(&rows, |r| r.time_micros))
                        .bind::<Array<Binary>, _>(column(&rows, |r| &r.entry))
                        .bind::<Array<Binary>, _>(column(&rows, |r| &r.hash))
                        .execute(c)
                        .await?;
                }
            },
            sqlite | c | {
                for row in &rows {
                    diesel::insert_into(ledger_entries::table)
                        .values(row)
                        .execute(c)
                        .await?;
                }
            }
        );
        let trows: Vec<TreeRow> = tree
            .iter()
            .map(|(id, h)| TreeRow {
                id: i(*id),
                hash: h.to_vec(),
            })
            .collect();
        db_run!(
            self.conn,
            pg | c | {
                use diesel::sql_types::{Array, BigInt, Binary};
                if !trows.is_empty() {
                    stmt(INSERT_TREE_PG)
                        .bind::<Array<BigInt>, _>(column(&trows, |r| r.id))
                        .bind::<Array<Binary>, _>(column(&trows, |r| &r.hash))
                        .execute(c)
                        .await?;
                }
            },
            sqlite | c | {
                for row in &trows {
                    diesel::insert_into(ledger_tree::table)
                        .values(row)
                        .execute(c)
                        .await?;
                }
            }
        );
        let (size, hash, time) = (
            i(new_head.size),
            new_head.last_hash.to_vec(),
            new_head.last_time_micros,
        );
        db_run!(self.conn, |c| diesel::update(ledger_head::table.find(1))
            .set((
                ledger_head::size.eq(size),
                ledger_head::last_hash.eq(&hash),
                ledger_head::last_time_micros.eq(time),
            ))
            .execute(c)
            .await)?;
        Ok(())
    }

    async fn read_entries(
        &mut self,
        from_seq: u64,
        to_seq_exclusive: u64,
    ) -> Result<Vec<StoredEntry>, CoreError> {
        let (from, to) = (i(from_seq), i(to_seq_exclusive));
        let rows: Vec<(Vec<u8>, Vec<u8>)> = db_run!(self.conn, |c| ledger_entries::table
            .filter(ledger_entries::seq.ge(from))
            .filter(ledger_entries::seq.lt(to))
            .order(ledger_entries::seq)
            .select((ledger_entries::entry, ledger_entries::hash))
            .load(c)
            .await)?;
        decode_rows(rows)
    }

    async fn latest_checkpoint(&mut self) -> Result<Option<StoredCheckpoint>, CoreError> {
        let row: Option<(i64, Vec<u8>, String, i64)> =
            db_run!(self.conn, |c| ledger_checkpoints::table
                .order(ledger_checkpoints::size.desc())
                .select((
                    ledger_checkpoints::size,
                    ledger_checkpoints::root,
                    ledger_checkpoints::note,
                    ledger_checkpoints::created_micros,
                ))
                .first(c)
                .await
                .optional())?;
        row.map(checkpoint_row).transpose()
    }

    async fn read_checkpoints(
        &mut self,
        max_size: u64,
    ) -> Result<Vec<StoredCheckpoint>, CoreError> {
        let max = i(max_size);
        let rows: Vec<(i64, Vec<u8>, String, i64)> =
            db_run!(self.conn, |c| ledger_checkpoints::table
                .filter(ledger_checkpoints::size.le(max))
                .order(ledger_checkpoints::size)
                .select((
                    ledger_checkpoints::size,
                    ledger_checkpoints::root,
                    ledger_checkpoints::note,
                    ledger_checkpoints::created_micros,
                ))
                .load(c)
                .await)?;
        rows.into_iter().map(checkpoint_row).collect()
    }

    async fn write_checkpoint(&mut self, cp: &StoredCheckpoint) -> Result<(), CoreError> {
        let (size, root, note, at) = (
            i(cp.size),
            cp.root.to_vec(),
            cp.note.clone(),
            cp.created_micros,
        );
        db_run!(self.conn, |c| diesel::insert_into(
            ledger_checkpoints::table
        )
        .values((
            ledger_checkpoints::size.eq(size),
            ledger_checkpoints::root.eq(&root),
            ledger_checkpoints::note.eq(&note),
            ledger_checkpoints::created_micros.eq(at),
        ))
        .execute(c)
        .await)?;
        Ok(())
    }
}

#[derive(Insertable)]
#[diesel(table_name = ledger_entries)]
struct EntryRow {
    seq: i64,
    tenant_id: Option<Vec<u8>>,
    kind: i32,
    time_micros: i64,
    entry: Vec<u8>,
    hash: Vec<u8>,
}

#[derive(Insertable)]
#[diesel(table_name = ledger_tree)]
struct TreeRow {
    id: i64,
    hash: Vec<u8>,
}

/// Decodes `(entry, hash)` rows of `ledger_entries`.
fn decode_rows(rows: Vec<(Vec<u8>, Vec<u8>)>) -> Result<Vec<StoredEntry>, CoreError> {
    rows.into_iter()
        .map(|(bytes, hash)| {
            StoredEntry::from_stored(bytes, to_hash(&hash)?)
                .map_err(|e| CoreError::Ledger(e.to_string()))
        })
        .collect()
}

fn checkpoint_row(
    (size, root, note, created_micros): (i64, Vec<u8>, String, i64),
) -> Result<StoredCheckpoint, CoreError> {
    Ok(StoredCheckpoint {
        size: u(size),
        root: to_hash(&root)?,
        note,
        created_micros,
    })
}

fn lerr(e: LedgerError<CoreError>) -> CoreError {
    match e {
        LedgerError::Store(inner) => inner,
        other => CoreError::Ledger(other.to_string()),
    }
}

/// Takes the head lock inside a transaction (a no-op on SQLite, where `BEGIN IMMEDIATE`
/// already holds the write lock).
async fn lock_head(conn: &mut Conn) -> Result<(), CoreError> {
    match conn.raw() {
        Raw::Pg(c) => {
            ledger_head::table
                .find(1)
                .select(ledger_head::size)
                .for_update()
                .first::<i64>(c)
                .await?;
        }
        Raw::Sqlite(_) => {}
    }
    Ok(())
}

/// The ledger service: sequencer, checkpoint signer, proofs and export.
#[derive(Clone)]
pub struct Ledger {
    db: DbPool,
    signer: std::sync::Arc<CheckpointSigner>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Ledger({})", self.signer.origin)
    }
}

impl Ledger {
    /// The same ledger (signing key) on another pool of the same database, for the
    /// background runtime's sequencer ([`crate::store::Store::twin`]).
    pub fn on_pool(&self, db: DbPool) -> Self {
        Self {
            db,
            signer: self.signer.clone(),
        }
    }

    /// Opens the ledger with its checkpoint signing key from the key store (created on
    /// first use, wrapped by the master key).
    pub async fn open(db: DbPool, keys: &Keyring, origin: &str) -> Result<Self, CoreError> {
        let origin_owned = origin.to_owned();
        let seed = keys
            .service_seed(SIGNING_KEY_NAME, |seed| {
                CheckpointSigner::new(origin_owned.clone(), SigningKey::from_bytes(seed))
                    .map(|s| s.vkey())
                    .unwrap_or_default()
            })
            .await?;
        let signer = CheckpointSigner::new(origin, SigningKey::from_bytes(&seed)).map_err(|e| {
            CoreError::Config {
                key: "SMARTCHAT_LEDGER_ORIGIN".into(),
                reason: e.to_string(),
            }
        })?;
        Ok(Self {
            db,
            signer: std::sync::Arc::new(signer),
        })
    }

    /// The C2SP verifier key (`name+hexid+base64`) auditors use.
    pub fn vkey(&self) -> String {
        self.signer.vkey()
    }

    /// The verifier key.
    pub fn verifier_key(&self) -> smartchat_ledger::VerifierKey {
        self.signer.verifier_key()
    }

    /// Sequences up to [`BATCH`] pending drafts; returns how many.
    pub async fn sequence_once(&self) -> Result<usize, CoreError> {
        let mut tx = self.db.begin().await?;
        lock_head(&mut tx).await?;
        let pending: Vec<(i64, Vec<u8>)> = db_run!(tx, |c| ledger_pending::table
            .order(ledger_pending::id)
            .limit(BATCH)
            .select((ledger_pending::id, ledger_pending::draft))
            .load(c)
            .await)?;
        if pending.is_empty() {
            tx.rollback().await?;
            return Ok(0);
        }
        let mut drafts = Vec::with_capacity(pending.len());
        for (id, bytes) in &pending {
            drafts.push(EntryDraft::decode(bytes).map_err(|e| {
                CoreError::Ledger(format!(
                    "pending draft {id} does not decode: {e}; sequencing stopped"
                ))
            })?);
        }
        let n = drafts.len();
        lstore::append_batch(&mut SqlLedger::new(&mut tx), now_micros(), drafts)
            .await
            .map_err(lerr)?;
        let ids: Vec<i64> = pending.iter().map(|(id, _)| *id).collect();
        db_run!(tx, |c| diesel::delete(
            ledger_pending::table.filter(ledger_pending::id.eq_any(&ids))
        )
        .execute(c)
        .await)?;
        tx.commit().await?;
        Ok(n)
    }

    /// Sequences until nothing is pending; returns how many.
    pub async fn sequence_all(&self) -> Result<usize, CoreError> {
        let mut total = 0;
        loop {
            let n = self.sequence_once().await?;
            total += n;
            if n == 0 {
                return Ok(total);
            }
        }
    }

    /// Signs a checkpoint of the current head (or returns the latest one if it covers it).
    /// Refuses if the stored tree is not an extension of the last signed one.
    pub async fn checkpoint(&self) -> Result<Option<StoredCheckpoint>, CoreError> {
        let mut tx = self.db.begin().await?;
        lock_head(&mut tx).await?;
        let mut store = SqlLedger::new(&mut tx);
        if store.head().await?.is_none() {
            return Ok(None);
        }
        let cp = lstore::sign_checkpoint(&mut store, &self.signer, now_micros())
            .await
            .map_err(lerr)?;
        tx.commit().await?;
        Ok(Some(cp))
    }

    /// Number of sequenced entries.
    pub async fn size(&self) -> Result<u64, CoreError> {
        let mut c = self.db.conn().await?;
        Ok(SqlLedger::new(&mut c).head().await?.map_or(0, |h| h.size))
    }

    /// The latest signed checkpoint.
    pub async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, CoreError> {
        let mut c = self.db.conn().await?;
        SqlLedger::new(&mut c).latest_checkpoint().await
    }

    /// Number of drafts waiting for the sequencer.
    pub async fn pending(&self) -> Result<u64, CoreError> {
        let mut c = self.db.conn().await?;
        let n: i64 = db_run!(c, |c| ledger_pending::table.count().get_result(c).await)?;
        Ok(u(n))
    }

    /// Entries `from..to`.
    pub async fn entries(&self, from: u64, to: u64) -> Result<Vec<StoredEntry>, CoreError> {
        let mut c = self.db.conn().await?;
        SqlLedger::new(&mut c).read_entries(from, to).await
    }

    /// Every sequenced entry of one tenant, in order.
    pub async fn tenant_entries(&self, tenant: [u8; 16]) -> Result<Vec<StoredEntry>, CoreError> {
        let mut c = self.db.conn().await?;
        let t = tenant.to_vec();
        let rows: Vec<(Vec<u8>, Vec<u8>)> = db_run!(c, |c| ledger_entries::table
            .filter(ledger_entries::tenant_id.eq(&t))
            .order(ledger_entries::seq)
            .select((ledger_entries::entry, ledger_entries::hash))
            .load(c)
            .await)?;
        decode_rows(rows)
    }

    /// One page of a tenant's entries: those with `seq > after` (all when `None`), in
    /// order, at most `limit` (1 to 1,000).
    pub async fn tenant_entries_page(
        &self,
        tenant: [u8; 16],
        after: Option<u64>,
        limit: i64,
    ) -> Result<Vec<StoredEntry>, CoreError> {
        let mut c = self.db.conn().await?;
        let t = tenant.to_vec();
        let from = after.map_or(-1, i);
        let limit = limit.clamp(1, 1000);
        let rows: Vec<(Vec<u8>, Vec<u8>)> = db_run!(c, |c| ledger_entries::table
            .filter(ledger_entries::tenant_id.eq(&t))
            .filter(ledger_entries::seq.gt(from))
            .order(ledger_entries::seq)
            .limit(limit)
            .select((ledger_entries::entry, ledger_entries::hash))
            .load(c)
            .await)?;
        decode_rows(rows)
    }

    /// The tenant bundle (`docs/ledger-format.md` §6.1): every entry of `tenant` covered by
    /// the latest signed checkpoint (signed now if the log grew since), each with its
    /// inclusion proof against that one checkpoint, and the verifier key. `NotFound` while
    /// the log is empty.
    pub async fn tenant_bundle(
        &self,
        tenant: [u8; 16],
    ) -> Result<smartchat_ledger::TenantBundle, CoreError> {
        self.sequence_all().await?;
        let cp = self
            .checkpoint()
            .await?
            .ok_or(CoreError::NotFound { what: "checkpoint" })?;
        let entries = self.tenant_entries(tenant).await?;
        let mut c = self.db.conn().await?;
        lstore::tenant_bundle(
            &mut SqlLedger::new(&mut c),
            tenant,
            &cp,
            &entries,
            &self.verifier_key(),
        )
        .await
        .map_err(lerr)
    }

    /// Ledgers a tenant bundle handed out (`ledger_exported`: the tenant, who, the
    /// checkpoint size as `to_seq`, the entry count and a digest of the file).
    pub async fn record_tenant_export(
        &self,
        tenant: [u8; 16],
        actor: smartchat_ledger::Actor,
        bundle: &smartchat_ledger::TenantBundle,
        file_digest: Hash,
    ) -> Result<(), CoreError> {
        use smartchat_ledger::{AttrKey, AttrValue, EventKind, Purpose};
        let size = smartchat_ledger::open_note(&bundle.checkpoint, &self.verifier_key())
            .map_err(|e| CoreError::Ledger(e.to_string()))?
            .size;
        let mut tx = self.db.begin().await?;
        crate::audit::enqueue(
            &mut tx,
            &EntryDraft::new(EventKind::LEDGER_EXPORTED, actor)
                .tenant(tenant)
                .purpose(Purpose::AUDIT)
                .attr(AttrKey::TO_SEQ, AttrValue::U64(size))
                .attr(
                    AttrKey::RECORD_COUNT,
                    AttrValue::U64(bundle.entries.len() as u64),
                )
                .attr(AttrKey::EXPORT_DIGEST, AttrValue::Digest(file_digest)),
        )
        .await?;
        tx.commit().await
    }

    /// A c2sp.org/tlog-proof of entry `seq` against the latest checkpoint.
    pub async fn tlog_proof(&self, seq: u64) -> Result<smartchat_ledger::TlogProof, CoreError> {
        let mut c = self.db.conn().await?;
        lstore::tlog_proof(&mut SqlLedger::new(&mut c), seq)
            .await
            .map_err(lerr)
    }

    /// Writes an export bundle of entries `from..to` (`to` = `None`: up to the latest
    /// checkpoint) for `smartchat-verify`. Returns the range written.
    pub async fn export<W: std::io::Write>(
        &self,
        from: u64,
        to: Option<u64>,
        w: W,
    ) -> Result<(u64, u64, W), CoreError> {
        let mut c = self.db.conn().await?;
        let mut store = SqlLedger::new(&mut c);
        let to = match to {
            Some(t) => t,
            None => store.latest_checkpoint().await?.map_or(0, |cp| cp.size),
        };
        let w = lstore::export_bundle(&mut store, from, to, &self.verifier_key(), w)
            .await
            .map_err(lerr)?;
        Ok((from, to, w))
    }
}
