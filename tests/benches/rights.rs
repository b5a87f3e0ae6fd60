//! Rights and retention benchmarks on SQLite and PostgreSQL (a bench binary, not a timed
//! test):
//!
//! 1. deleting a subject with 10 and with 100,000 messages: the shredding step
//!    (`Store::shred_subject`: key row, identifiers, follow-ups, search feed, ledger), then the
//!    physical clean-up (`purge_subject_rows`, batches of 1,000) with its rate;
//! 2. deleting a tenant with 1,000 and with 1,000,000 messages (`BENCH_TENANT_MESSAGES`):
//!    `Store::shred_tenant`, then `purge_tenant_rows`;
//! 3. the access report of a subject with 10,000 messages: JSON, Markdown and the
//!    portability zip, 5 runs.
//!
//! Messages are inserted in bulk (sealed bodies, 1,000 rows per transaction) so the set-up
//! stays short; what is timed goes through the same code as the server.
//! Run: `cargo bench -p smartchat-tests --bench rights` (`BENCH_BACKENDS=sqlite` or
//! `postgres` to run one).

use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use smartchat_core::db::schema::messages;
use smartchat_core::db_run;
use smartchat_core::ids::{ConversationId, Handle, PhoneNumberId, SubjectId, TenantId};
use smartchat_core::ledger_store::Ledger;
use smartchat_core::rights_export::{portability_zip, to_markdown};
use smartchat_core::store::{NewTenant, Profile, SubjectContact};
use smartchat_ledger::Actor;
use smartchat_tests::{Backend, TestEnv};

#[derive(Insertable)]
#[diesel(table_name = messages)]
struct MessageRow {
    id: String,
    tenant_id: String,
    conversation_id: String,
    subject_id: String,
    direction: String,
    kind: String,
    status: String,
    body_ct: Option<Vec<u8>>,
    author: String,
    created_at: i64,
    status_at: i64,
}

const BODY: &str = "Namaste! kal shaam 5 baje haircut ka slot milega? Also what is the price of the gold facial, and do you have bridal packages in December?";

async fn tenant(env: &TestEnv, handle: &str, pnid: &str) -> TenantId {
    env.store
        .create_tenant(NewTenant {
            handle: handle.parse::<Handle>().unwrap(),
            profile: Profile(serde_json::json!({"name": "Bench Salon"})),
            phone_number_id: Some(pnid.parse::<PhoneNumberId>().unwrap()),
            access_token: Some(smartchat_core::config::Secret::new("")),
        })
        .await
        .unwrap()
}

/// A subject with `n` messages, inserted in bulk.
async fn subject_with(
    env: &TestEnv,
    t: TenantId,
    pnid: &str,
    wa_id: &str,
    n: usize,
) -> (SubjectId, ConversationId) {
    let s = &env.store;
    let key = s.tenant_key(t).await.unwrap();
    let pnid: PhoneNumberId = pnid.parse().unwrap();
    let mut tx = s.db.begin().await.unwrap();
    let contact = SubjectContact {
        wa_id: Some(wa_id.into()),
        profile_name: Some("Bench Customer".into()),
        ..SubjectContact::default()
    };
    let (sid, _) = s.upsert_subject(&mut tx, t, &key, &contact).await.unwrap();
    let conv = s.conversation_for(&mut tx, t, sid, &pnid).await.unwrap();
    let skey = s
        .subject_key_in(&mut tx, &t.to_string(), &sid.to_string(), &key)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let (tid, sids, cid) = (t.to_string(), sid.to_string(), conv.to_string());
    let mut done = 0;
    while done < n {
        let rows: Vec<MessageRow> = (done..(done + 1000).min(n))
            .map(|i| {
                let id = uuid::Uuid::now_v7().to_string();
                let ct = skey
                    .seal(&format!("messages.body_ct|{tid}|{id}"), BODY.as_bytes())
                    .unwrap();
                MessageRow {
                    id,
                    tenant_id: tid.clone(),
                    conversation_id: cid.clone(),
                    subject_id: sids.clone(),
                    direction: if i % 2 == 0 { "in" } else { "out" }.into(),
                    kind: "text".into(),
                    status: "delivered".into(),
                    body_ct: Some(ct),
                    author: if i % 2 == 0 { "customer" } else { "assistant" }.into(),
                    created_at: 1_700_000_000_000_000 + i as i64,
                    status_at: 1_700_000_000_000_000 + i as i64,
                }
            })
            .collect();
        done += rows.len();
        // PostgreSQL takes 1,000 rows per statement; SQLite one statement per row, in one
        // transaction (diesel's SQLite backend has no multi-row insert for this shape).
        let mut tx = s.db.begin().await.unwrap();
        db_run!(
            tx,
            pg | c | {
                diesel::insert_into(messages::table)
                    .values(&rows)
                    .execute(c)
                    .await
                    .unwrap();
            },
            sqlite | c | {
                for r in &rows {
                    diesel::insert_into(messages::table)
                        .values(r)
                        .execute(c)
                        .await
                        .unwrap();
                }
            }
        );
        tx.commit().await.unwrap();
    }
    (sid, conv)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let which = std::env::var("BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    let big: usize = std::env::var("BENCH_TENANT_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let name = if backend == Backend::Sqlite {
            "sqlite"
        } else {
            "postgres"
        };
        if !which.contains(name) {
            continue;
        }
        println!("== {name}");
        let env = TestEnv::new(backend).await;
        subjects(&env).await;
        tenants(&env, big).await;
        export(&env).await;
    }
}

async fn subjects(env: &TestEnv) {
    let t = tenant(env, "bench-subjects", "4000001").await;
    for (i, n) in [10usize, 100_000].into_iter().enumerate() {
        let t0 = Instant::now();
        let (sid, _) = subject_with(env, t, "4000001", &format!("91990000010{i}"), n).await;
        let seeded = t0.elapsed();
        let t0 = Instant::now();
        env.store
            .shred_subject(t, sid, Actor::System)
            .await
            .unwrap();
        let shred = t0.elapsed();
        let t0 = Instant::now();
        let mut reports = 0u32;
        let rows = env
            .store
            .purge_subject_rows(t, sid, 1000, |_| reports += 1)
            .await
            .unwrap();
        let purge = t0.elapsed();
        println!(
            "  subject with {n:>7} messages: shredding step {:>8.2} ms; clean-up {rows} rows in {:.2} s ({:.0} rows/s, {reports} progress reports); seeded in {:.1} s",
            ms(shred),
            purge.as_secs_f64(),
            rows as f64 / purge.as_secs_f64().max(1e-9),
            seeded.as_secs_f64()
        );
    }
}

async fn tenants(env: &TestEnv, big: usize) {
    for (i, n) in [1_000usize, big].into_iter().enumerate() {
        let pnid = format!("500000{i}");
        let t = tenant(env, &format!("bench-tenant-{i}"), &pnid).await;
        let t0 = Instant::now();
        // 1,000 customers' worth of conversations are not needed for the timing: one
        // subject holds them all, which is the worst case for the clean-up's batches.
        subject_with(env, t, &pnid, &format!("9199000002{i:02}"), n).await;
        let seeded = t0.elapsed();
        let t0 = Instant::now();
        env.store.shred_tenant(t, Actor::System).await.unwrap();
        let shred = t0.elapsed();
        let t0 = Instant::now();
        let mut reports = 0u32;
        let rows = env
            .store
            .purge_tenant_rows(t, 1000, |_| reports += 1)
            .await
            .unwrap();
        let purge = t0.elapsed();
        println!(
            "  tenant with {n:>9} messages: shredding step {:>8.2} ms; clean-up {rows} rows in {:.2} s ({:.0} rows/s, {reports} progress reports); seeded in {:.1} s",
            ms(shred),
            purge.as_secs_f64(),
            rows as f64 / purge.as_secs_f64().max(1e-9),
            seeded.as_secs_f64()
        );
    }
}

async fn export(env: &TestEnv) {
    let t = tenant(env, "bench-export", "6000001").await;
    let (sid, _) = subject_with(env, t, "6000001", "919900000301", 10_000).await;
    let ledger = Ledger::open(env.store.db.clone(), &env.store.keys, "bench/ledger")
        .await
        .unwrap();
    let mut json = Vec::new();
    let mut all = Vec::new();
    for _ in 0..5 {
        let t0 = Instant::now();
        let report = env.store.access_report(&ledger, t, sid).await.unwrap();
        let bytes = serde_json::to_vec(&report).unwrap();
        json.push(t0.elapsed());
        let md = to_markdown(&report);
        let zip = portability_zip(&report).unwrap();
        all.push(t0.elapsed());
        assert_eq!(report.messages.len(), 10_000);
        assert!(!bytes.is_empty() && !md.is_empty() && !zip.is_empty());
    }
    json.sort_unstable();
    all.sort_unstable();
    println!(
        "  access export of 10,000 messages: report + JSON median {:.0} ms (max {:.0} ms); + Markdown + portability zip median {:.0} ms (max {:.0} ms)",
        ms(json[2]),
        ms(json[4]),
        ms(all[2]),
        ms(all[4])
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
