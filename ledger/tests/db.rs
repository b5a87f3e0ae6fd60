//! Verifying straight from SQLite and PostgreSQL (read-only), with the table layout of
//! `docs/ledger-format.md` section 6, including tampered rows.
#![cfg(feature = "db")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Binary, Integer, Nullable, Text};
use smartchat_ledger::*;

const SQLITE_DDL: &str = "
CREATE TABLE ledger_entries(seq BIGINT PRIMARY KEY, tenant_id BLOB NULL, kind INTEGER NOT NULL,
  time_micros BIGINT NOT NULL, entry BLOB NOT NULL, hash BLOB NOT NULL);
CREATE TABLE ledger_checkpoints(size BIGINT PRIMARY KEY, root BLOB NOT NULL, note TEXT NOT NULL,
  created_micros BIGINT NOT NULL);
CREATE TABLE ledger_tree(id BIGINT PRIMARY KEY, hash BLOB NOT NULL);";

fn opts() -> VerifyOptions {
    VerifyOptions {
        trusted_key: Some(signer().vkey()),
        prove_seq: Some(123),
        progress: None,
        trusted_checkpoints: Vec::new(),
    }
}

fn sqlite_with(store: &MemStore) -> (tempfile::TempDir, String, SqliteConnection) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let mut c = SqliteConnection::establish(path.to_str().unwrap()).unwrap();
    c.batch_execute(SQLITE_DDL).unwrap();
    c.batch_execute("BEGIN").unwrap();
    for e in store.entries() {
        diesel::sql_query("INSERT INTO ledger_entries VALUES (?, ?, ?, ?, ?, ?)")
            .bind::<BigInt, _>(e.entry.seq as i64)
            .bind::<Nullable<Binary>, _>(e.entry.draft.tenant.map(|t| t.0.to_vec()))
            .bind::<Integer, _>(i32::from(e.entry.draft.kind.0))
            .bind::<BigInt, _>(e.entry.time_micros)
            .bind::<Binary, _>(&e.bytes)
            .bind::<Binary, _>(e.hash.to_vec())
            .execute(&mut c)
            .unwrap();
    }
    for cp in store.checkpoints() {
        diesel::sql_query("INSERT INTO ledger_checkpoints VALUES (?, ?, ?, ?)")
            .bind::<BigInt, _>(cp.size as i64)
            .bind::<Binary, _>(cp.root.to_vec())
            .bind::<Text, _>(&cp.note)
            .bind::<BigInt, _>(cp.created_micros)
            .execute(&mut c)
            .unwrap();
    }
    for (id, h) in store.tree().iter().enumerate() {
        diesel::sql_query("INSERT INTO ledger_tree VALUES (?, ?)")
            .bind::<BigInt, _>(id as i64)
            .bind::<Binary, _>(h.unwrap().to_vec())
            .execute(&mut c)
            .unwrap();
    }
    c.batch_execute("COMMIT").unwrap();
    let url = format!("sqlite://{}", path.display());
    (dir, url, c)
}

#[test]
fn sqlite_ledger_verifies_and_tampering_is_named() {
    let store = build(300, 64, &[100, 256, 300]);
    let (_dir, url, mut c) = sqlite_with(&store);
    let r = verify_database(&url, &opts()).unwrap();
    assert!(r.ok(), "{r:?}");
    assert_eq!(r.entries, 300);
    assert_eq!(r.roots_checked, 3);
    assert_eq!(r.consistency_checked, 2, "proofs from ledger_tree");
    assert_eq!(r.inclusion_proven_in, Some(300));

    // A tenant column swapped.
    c.batch_execute(
        "UPDATE ledger_entries SET tenant_id = X'EEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEE' WHERE seq = 77",
    )
    .unwrap();
    let f = verify_database(&url, &opts())
        .unwrap()
        .first_failure
        .unwrap();
    assert_eq!(f.seq, Some(77), "{f:?}");

    // A row deleted: a gap.
    let (_dir1, url1, mut c1) = sqlite_with(&store);
    c1.batch_execute("DELETE FROM ledger_entries WHERE seq = 150")
        .unwrap();
    let f = verify_database(&url1, &opts())
        .unwrap()
        .first_failure
        .unwrap();
    assert_eq!(f.seq, Some(150), "{f:?}");

    // A stored tree hash rewritten: the consistency proof from the table fails.
    let (_dir2, url2, mut c2) = sqlite_with(&store);
    // The subtree of leaves 0..64 is part of the consistency proof from 100 to 256.
    let id = merkle::stored_hash_index(6, 0);
    c2.batch_execute(&format!(
        "UPDATE ledger_tree SET hash = zeroblob(32) WHERE id = {id}"
    ))
    .unwrap();
    let f = verify_database(&url2, &opts())
        .unwrap()
        .first_failure
        .unwrap();
    assert!(f.what.contains("consisten"), "{f:?}");

    // Read-only: the verifier cannot write even if it tried, and it needs a key.
    assert!(verify_database(&url, &VerifyOptions::default()).is_err());
    assert!(verify_database("sqlite:///nonexistent/file.db", &opts()).is_err());
}

#[test]
fn postgres_ledger_verifies_and_tampering_is_named() {
    let admin_url = "postgres://postgres@127.0.0.1:5432/postgres";
    let mut admin = postgres::Client::connect(admin_url, postgres::NoTls)
        .expect("PostgreSQL at 127.0.0.1:5432 (started by .ci/run)");
    let name = format!("sc_test_ledger_{:016x}", rand::random::<u64>());
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
    let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
    let result = std::panic::catch_unwind(|| {
        let store = build(200, 50, &[100, 200]);
        let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        c.batch_execute(
            "CREATE TABLE ledger_entries(seq BIGINT PRIMARY KEY, tenant_id BYTEA NULL, kind INTEGER NOT NULL,
               time_micros BIGINT NOT NULL, entry BYTEA NOT NULL, hash BYTEA NOT NULL);
             CREATE TABLE ledger_checkpoints(size BIGINT PRIMARY KEY, root BYTEA NOT NULL, note TEXT NOT NULL,
               created_micros BIGINT NOT NULL);
             CREATE TABLE ledger_tree(id BIGINT PRIMARY KEY, hash BYTEA NOT NULL);",
        )
        .unwrap();
        for e in store.entries() {
            c.execute(
                "INSERT INTO ledger_entries VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &(e.entry.seq as i64),
                    &e.entry.draft.tenant.map(|t| t.0.to_vec()),
                    &i32::from(e.entry.draft.kind.0),
                    &e.entry.time_micros,
                    &e.bytes,
                    &e.hash.to_vec(),
                ],
            )
            .unwrap();
        }
        for cp in store.checkpoints() {
            c.execute(
                "INSERT INTO ledger_checkpoints VALUES ($1, $2, $3, $4)",
                &[
                    &(cp.size as i64),
                    &cp.root.to_vec(),
                    &cp.note,
                    &cp.created_micros,
                ],
            )
            .unwrap();
        }
        for (id, h) in store.tree().iter().enumerate() {
            c.execute(
                "INSERT INTO ledger_tree VALUES ($1, $2)",
                &[&(id as i64), &h.unwrap().to_vec()],
            )
            .unwrap();
        }
        let r = verify_database(&url, &opts()).unwrap();
        assert!(r.ok(), "{r:?}");
        assert_eq!(r.entries, 200);
        assert_eq!(r.consistency_checked, 1);
        // An entry's time rewritten in both the column and the entry (hash not recomputed).
        let e = &store.entries()[60];
        let mut x = e.entry.clone();
        x.time_micros -= 1;
        c.execute(
            "UPDATE ledger_entries SET entry = $1, time_micros = $2 WHERE seq = 60",
            &[&x.encode().unwrap(), &x.time_micros],
        )
        .unwrap();
        let f = verify_database(&url, &opts())
            .unwrap()
            .first_failure
            .unwrap();
        assert_eq!(f.seq, Some(60), "{f:?}");
    });
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .unwrap();
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}
