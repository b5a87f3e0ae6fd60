//! Reading a ledger straight from the application's database, read-only:
//! `sqlite://<path>` (opened with `mode=ro` and `query_only`) or
//! `postgres://...` (a read-only, repeatable-read transaction). Tables:
//! `ledger_entries`, `ledger_checkpoints`, `ledger_tree` (see
//! `docs/ledger-format.md` section 6).

use std::cell::RefCell;
use std::rc::Rc;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Binary, Integer, Nullable, Text};

use crate::bundle::{BatchItem, DbColumns, EntryBatch};
use crate::checkpoint::VerifierKey;
use crate::merkle;
use crate::verify::{CheckpointInput, EntrySource, Inputs, Report, VerifyOptions, run};
use crate::{Hash, LedgerError};

/// Rows read per query.
const PAGE: i64 = 50_000;

struct EntryRow {
    seq: i64,
    tenant_id: Option<Vec<u8>>,
    kind: i32,
    time_micros: i64,
    entry: Vec<u8>,
    hash: Vec<u8>,
}

#[derive(QueryableByName)]
struct SqliteEntryRow {
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = Nullable<Binary>)]
    tenant_id: Option<Vec<u8>>,
    #[diesel(sql_type = Integer)]
    kind: i32,
    #[diesel(sql_type = BigInt)]
    time_micros: i64,
    #[diesel(sql_type = Binary)]
    entry: Vec<u8>,
    #[diesel(sql_type = Binary)]
    hash: Vec<u8>,
}

#[derive(QueryableByName)]
struct SqliteCheckpointRow {
    #[diesel(sql_type = BigInt)]
    size: i64,
    #[diesel(sql_type = Binary)]
    root: Vec<u8>,
    #[diesel(sql_type = Text)]
    note: String,
}

#[derive(QueryableByName)]
struct SqliteTreeRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Binary)]
    hash: Vec<u8>,
}

#[derive(QueryableByName)]
struct SqliteCount {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

enum Conn {
    Sqlite(SqliteConnection),
    Postgres(Box<postgres::Client>),
}

fn db_err(e: impl std::fmt::Display) -> LedgerError {
    LedgerError::Io(std::io::Error::other(format!("database: {e}")))
}

impl Conn {
    fn open(url: &str) -> Result<Self, LedgerError> {
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            if !std::path::Path::new(path).is_file() {
                return Err(db_err("SQLite file not found"));
            }
            let mut c =
                SqliteConnection::establish(&format!("file:{path}?mode=ro")).map_err(db_err)?;
            diesel::sql_query("PRAGMA query_only = ON")
                .execute(&mut c)
                .map_err(db_err)?;
            diesel::sql_query("BEGIN").execute(&mut c).map_err(db_err)?;
            Ok(Self::Sqlite(c))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let mut c = postgres::Client::connect(url, postgres::NoTls).map_err(db_err)?;
            c.batch_execute(
                "SET default_transaction_read_only = on; \
                 BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
            )
            .map_err(db_err)?;
            Ok(Self::Postgres(Box::new(c)))
        } else {
            Err(LedgerError::Invalid(
                "database URL must start with sqlite:// or postgres://".into(),
            ))
        }
    }

    fn count(&mut self) -> Result<u64, LedgerError> {
        let n = match self {
            Self::Sqlite(c) => {
                let r: SqliteCount = diesel::sql_query("SELECT COUNT(*) AS n FROM ledger_entries")
                    .get_result(c)
                    .map_err(db_err)?;
                r.n
            }
            Self::Postgres(c) => c
                .query_one("SELECT COUNT(*) FROM ledger_entries", &[])
                .map_err(db_err)?
                .get::<_, i64>(0),
        };
        Ok(u64::try_from(n).unwrap_or(0))
    }

    fn entries(&mut self, from_seq: i64) -> Result<Vec<EntryRow>, LedgerError> {
        const Q: &str = "SELECT seq, tenant_id, kind, time_micros, entry, hash FROM ledger_entries";
        match self {
            Self::Sqlite(c) => {
                let rows: Vec<SqliteEntryRow> =
                    diesel::sql_query(format!("{Q} WHERE seq >= ? ORDER BY seq LIMIT ?"))
                        .bind::<BigInt, _>(from_seq)
                        .bind::<BigInt, _>(PAGE)
                        .load(c)
                        .map_err(db_err)?;
                Ok(rows
                    .into_iter()
                    .map(|r| EntryRow {
                        seq: r.seq,
                        tenant_id: r.tenant_id,
                        kind: r.kind,
                        time_micros: r.time_micros,
                        entry: r.entry,
                        hash: r.hash,
                    })
                    .collect())
            }
            Self::Postgres(c) => {
                let rows = c
                    .query(
                        &format!("{Q} WHERE seq >= $1 ORDER BY seq LIMIT $2"),
                        &[&from_seq, &PAGE],
                    )
                    .map_err(db_err)?;
                rows.into_iter()
                    .map(|r| {
                        Ok(EntryRow {
                            seq: r.try_get(0).map_err(db_err)?,
                            tenant_id: r.try_get(1).map_err(db_err)?,
                            kind: r.try_get(2).map_err(db_err)?,
                            time_micros: r.try_get(3).map_err(db_err)?,
                            entry: r.try_get(4).map_err(db_err)?,
                            hash: r.try_get(5).map_err(db_err)?,
                        })
                    })
                    .collect()
            }
        }
    }

    fn checkpoints(&mut self) -> Result<Vec<(i64, Vec<u8>, String)>, LedgerError> {
        const Q: &str = "SELECT size, root, note FROM ledger_checkpoints ORDER BY size";
        match self {
            Self::Sqlite(c) => {
                let rows: Vec<SqliteCheckpointRow> =
                    diesel::sql_query(Q).load(c).map_err(db_err)?;
                Ok(rows.into_iter().map(|r| (r.size, r.root, r.note)).collect())
            }
            Self::Postgres(c) => c
                .query(Q, &[])
                .map_err(db_err)?
                .into_iter()
                .map(|r| {
                    Ok((
                        r.try_get(0).map_err(db_err)?,
                        r.try_get(1).map_err(db_err)?,
                        r.try_get(2).map_err(db_err)?,
                    ))
                })
                .collect(),
        }
    }

    fn tree(&mut self, ids: &[u64]) -> Result<Vec<Hash>, LedgerError> {
        let ids_i: Vec<i64> = ids
            .iter()
            .map(|&i| i64::try_from(i).map_err(|_| LedgerError::OutOfRange("tree id".into())))
            .collect::<Result<_, _>>()?;
        let rows: Vec<(i64, Vec<u8>)> = match self {
            Self::Sqlite(c) => {
                // Integers formatted by us: no injection possible.
                let list = ids_i
                    .iter()
                    .map(i64::to_string)
                    .collect::<Vec<_>>()
                    .join(",");
                let rows: Vec<SqliteTreeRow> = diesel::sql_query(format!(
                    "SELECT id, hash FROM ledger_tree WHERE id IN ({list})"
                ))
                .load(c)
                .map_err(db_err)?;
                rows.into_iter().map(|r| (r.id, r.hash)).collect()
            }
            Self::Postgres(c) => c
                .query(
                    "SELECT id, hash FROM ledger_tree WHERE id = ANY($1)",
                    &[&ids_i],
                )
                .map_err(db_err)?
                .into_iter()
                .map(|r| Ok((r.try_get(0).map_err(db_err)?, r.try_get(1).map_err(db_err)?)))
                .collect::<Result<_, LedgerError>>()?,
        };
        let map: std::collections::HashMap<i64, Vec<u8>> = rows.into_iter().collect();
        ids_i
            .iter()
            .map(|id| {
                map.get(id)
                    .and_then(|h| Hash::try_from(h.as_slice()).ok())
                    .ok_or_else(|| {
                        LedgerError::Inconsistent(format!(
                            "ledger_tree row {id} missing or malformed"
                        ))
                    })
            })
            .collect()
    }
}

struct DbSource {
    conn: Rc<RefCell<Conn>>,
    next_seq: i64,
    done: bool,
}

impl EntrySource for DbSource {
    fn next(&mut self, batch: &mut EntryBatch) -> Result<bool, LedgerError> {
        batch.clear();
        if self.done {
            return Ok(false);
        }
        let rows = self.conn.borrow_mut().entries(self.next_seq)?;
        if (rows.len() as i64) < PAGE {
            self.done = true;
        }
        for r in rows {
            let off = batch.data.len();
            batch.data.extend_from_slice(&r.entry);
            let tenant = match r.tenant_id.as_deref().map(<[u8; 16]>::try_from) {
                None => Some(None),
                Some(Ok(t)) => Some(Some(t)),
                Some(Err(_)) => None,
            };
            let seq = u64::try_from(r.seq).ok();
            let kind = u16::try_from(r.kind).ok();
            let cols = match (seq, tenant, kind) {
                (Some(seq), Some(tenant), Some(kind)) => DbColumns {
                    seq,
                    tenant,
                    kind,
                    time_micros: r.time_micros,
                },
                // A malformed column: force a column mismatch at this entry.
                _ => DbColumns {
                    seq: u64::MAX,
                    tenant: None,
                    kind: 0,
                    time_micros: r.time_micros,
                },
            };
            batch.items.push(BatchItem {
                off,
                len: r.entry.len(),
                hash: Hash::try_from(r.hash.as_slice()).unwrap_or([0; 32]),
                cols: Some(cols),
            });
            self.next_seq = r.seq.saturating_add(1);
        }
        Ok(!self.done)
    }
}

/// Verifies the ledger in a database (`sqlite://path` or `postgres://...`), read-only.
/// `opts.trusted_key` is required: the database holds no key.
///
/// # Errors
/// [`LedgerError::Invalid`] without a key or for a bad URL; [`LedgerError::Io`] for database
/// errors. Integrity problems are reported in [`Report::first_failure`].
pub fn verify_database(url: &str, opts: &VerifyOptions) -> Result<Report, LedgerError> {
    let key_text = opts.trusted_key.as_deref().ok_or_else(|| {
        LedgerError::Invalid("a trusted key (--key) is required to verify a database".into())
    })?;
    let key = VerifierKey::parse(key_text)?;
    let conn = Rc::new(RefCell::new(Conn::open(url)?));
    let total = conn.borrow_mut().count()?;
    let checkpoints = conn
        .borrow_mut()
        .checkpoints()?
        .into_iter()
        .map(|(_, root, note)| CheckpointInput {
            note,
            proof: None,
            stored_root: Some(Hash::try_from(root.as_slice()).unwrap_or([0; 32])),
        })
        .collect();
    let c1 = Rc::clone(&conn);
    let c2 = Rc::clone(&conn);
    let inputs = Inputs {
        key,
        from: 0,
        expected_to: Some(total),
        prefix: Vec::new(),
        checkpoints,
        prove_consistency: Some(Box::new(move |m, n| {
            merkle::consistency_proof(m, n, |ids| c1.borrow_mut().tree(ids))
        })),
        prove_inclusion: Some(Box::new(move |i, n| {
            merkle::inclusion_proof(i, n, |ids| c2.borrow_mut().tree(ids))
        })),
    };
    let mut source = DbSource {
        conn,
        next_seq: 0,
        done: false,
    };
    run(inputs, &mut source, opts, Report::default())
}
