//! Storage benchmarks on PostgreSQL and SQLite (a bench binary, not a timed test):
//!
//! 1. blind-index lookup of a subject among N subjects (default 1,000,000; `BENCH_SUBJECTS`),
//! 2. opening one subject's 10,000-message history through `Store::subject_messages`,
//! 3. ledger append throughput with 1, 4 and 16 concurrent writers (each writer commits
//!    transactions that enqueue one ledger draft; one sequencer runs alongside), reported as
//!    committed appends/s and sequenced entries/s.
//!
//! Run: `cargo bench -p smartchat-tests --bench storage` (`BENCH_BACKENDS=sqlite` or
//! `postgres` to run one).

use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use rand::Rng;
use smartchat_core::audit;
use smartchat_core::crypto::BlindKind;
use smartchat_core::db::schema::subjects;
use smartchat_core::db_run;
use smartchat_core::ids::{Handle, PhoneNumberId, SubjectId};
use smartchat_core::ledger_store::Ledger;
use smartchat_core::store::{NewMessage, NewTenant, Profile, SubjectContact};
use smartchat_ledger::{Actor, EntryDraft, EventKind};
use smartchat_tests::{Backend, TestEnv};

#[derive(Insertable)]
#[diesel(table_name = subjects)]
struct SubjectRow {
    id: String,
    tenant_id: String,
    wa_id_blind: Option<Vec<u8>>,
    bsuid_blind: Option<Vec<u8>>,
    phone_blind: Option<Vec<u8>>,
    contact_ct: Vec<u8>,
    objected: bool,
    opted_out: bool,
    created_at: i64,
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::var("BENCH_SUBJECTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let which = std::env::var("BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let name = if backend == Backend::Sqlite {
            "sqlite"
        } else {
            "postgres"
        };
        if !which.contains(name) {
            continue;
        }
        println!("== {name} ==");
        let env = TestEnv::new(backend).await;
        blind_index(&env, n).await;
        history(&env).await;
        for writers in [1usize, 4, 16] {
            ledger_append(&env, writers).await;
        }
    }
}

async fn blind_index(env: &TestEnv, n: usize) {
    let s = &env.store;
    let t = s
        .create_tenant(NewTenant {
            handle: "bench-blind".parse::<Handle>().unwrap(),
            profile: Profile(serde_json::json!({"name": "Bench"})),
            phone_number_id: None,
            access_token: None,
        })
        .await
        .unwrap();
    let key = s.tenant_key(t).await.unwrap();
    let tid = t.to_string();
    let started = Instant::now();
    let batch = 5_000;
    let mut done = 0;
    while done < n {
        let rows: Vec<SubjectRow> = (done..(done + batch).min(n))
            .map(|i| {
                let wa = format!("91{:010}", 7_000_000_000u64 + i as u64);
                SubjectRow {
                    id: SubjectId::new().to_string(),
                    tenant_id: tid.clone(),
                    wa_id_blind: Some(key.blind(BlindKind::WaId, &wa).to_vec()),
                    bsuid_blind: None,
                    phone_blind: Some(key.blind(BlindKind::Phone, &wa).to_vec()),
                    contact_ct: vec![0u8; 96],
                    objected: false,
                    opted_out: false,
                    created_at: 0,
                }
            })
            .collect();
        let mut tx = s.db.begin().await.unwrap();
        db_run!(
            tx,
            pg | c | {
                for chunk in rows.chunks(1000) {
                    diesel::insert_into(subjects::table)
                        .values(chunk)
                        .execute(c)
                        .await
                        .unwrap();
                }
            },
            sqlite | c | {
                for r in &rows {
                    diesel::insert_into(subjects::table)
                        .values(r)
                        .execute(c)
                        .await
                        .unwrap();
                }
            }
        );
        tx.commit().await.unwrap();
        done += rows.len();
    }
    println!(
        "  loaded {n} subjects in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let mut rng = rand::thread_rng();
    let lookups = 10_000;
    let mut lat = Vec::with_capacity(lookups);
    let started = Instant::now();
    for _ in 0..lookups {
        let i = rng.gen_range(0..n);
        let wa = format!("91{:010}", 7_000_000_000u64 + i as u64);
        let t0 = Instant::now();
        let found = s.find_subject(t, BlindKind::WaId, &wa).await.unwrap();
        lat.push(t0.elapsed());
        assert!(found.is_some());
    }
    let total = started.elapsed();
    lat.sort_unstable();
    println!(
        "  blind-index lookup among {n}: {:.0} lookups/s, p50 {:?}, p99 {:?} (includes the tenant-key check in the key store)",
        lookups as f64 / total.as_secs_f64(),
        pct(&lat, 0.5),
        pct(&lat, 0.99)
    );
}

async fn history(env: &TestEnv) {
    let s = &env.store;
    let t = s
        .create_tenant(NewTenant {
            handle: "bench-history".parse::<Handle>().unwrap(),
            profile: Profile(serde_json::json!({"name": "Bench"})),
            phone_number_id: None,
            access_token: None,
        })
        .await
        .unwrap();
    let key = s.tenant_key(t).await.unwrap();
    let pnid: PhoneNumberId = "3000001".parse().unwrap();
    let body: String = "Namaste! kal shaam 5 baje haircut ka slot milega? Also what is the price of the gold facial. "
        .chars()
        .cycle()
        .take(300)
        .collect();
    let mut tx = s.db.begin().await.unwrap();
    let contact = SubjectContact {
        wa_id: Some("919900000001".into()),
        ..SubjectContact::default()
    };
    let (sid, _) = s.upsert_subject(&mut tx, t, &key, &contact).await.unwrap();
    let conv = s.conversation_for(&mut tx, t, sid, &pnid).await.unwrap();
    for i in 0..10_000i64 {
        let wamid = format!("wamid.bench{i}");
        s.insert_message(
            &mut tx,
            t,
            &key,
            sid,
            conv,
            &NewMessage {
                direction: "in",
                kind: "text",
                status: "received",
                wamid: Some(&wamid),
                body: Some(&body),
                author: "customer",
            },
            i,
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    let mut times = Vec::new();
    for _ in 0..5 {
        let t0 = Instant::now();
        let msgs = s.subject_messages(t, sid).await.unwrap();
        times.push(t0.elapsed());
        assert_eq!(msgs.len(), 10_000);
    }
    times.sort_unstable();
    println!(
        "  open a 10,000-message history (query + 1 unwrap + 10,000 AEAD): median {:?}, best {:?}",
        times[2], times[0]
    );
}

async fn ledger_append(env: &TestEnv, writers: usize) {
    let s = env.store.clone();
    let ledger = Ledger::open(s.db.clone(), &s.keys, "bench/ledger")
        .await
        .unwrap();
    ledger.sequence_all().await.unwrap();
    let start_size = ledger.size().await.unwrap();
    let run_for = Duration::from_secs(5);
    let deadline = Instant::now() + run_for;
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                let mut tx = s.db.begin().await.unwrap();
                audit::enqueue(
                    &mut tx,
                    &EntryDraft::new(EventKind::MESSAGE_RECEIVED, Actor::Meta),
                )
                .await
                .unwrap();
                tx.commit().await.unwrap();
                n += 1;
            }
            n
        }));
    }
    let seq = {
        let l = ledger.clone();
        tokio::spawn(async move {
            while Instant::now() < deadline {
                l.sequence_all().await.unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let mut committed = 0;
    for t in tasks {
        committed += t.await.unwrap();
    }
    seq.await.unwrap();
    let t0 = Instant::now();
    ledger.sequence_all().await.unwrap();
    let drain = t0.elapsed();
    let sequenced = ledger.size().await.unwrap() - start_size;
    assert_eq!(sequenced, committed);
    println!(
        "  ledger append, {writers:>2} writers: {:.0} committed appends/s; all {committed} sequenced ({:.0} entries/s incl. a {:.2} s drain)",
        committed as f64 / run_for.as_secs_f64(),
        sequenced as f64 / (run_for + drain).as_secs_f64(),
        drain.as_secs_f64()
    );
}
