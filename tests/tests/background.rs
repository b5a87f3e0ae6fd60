//! The background runtime on both backends: the pipeline answers a message from it, its
//! threads (and, on PostgreSQL on this host, its connections' server processes) are
//! scheduled below the webhook's, nothing of the webhook's side is lowered, a stop leaves
//! nothing pending, and its pools share keys and caches with the server's (a key shredded
//! through one is gone for the other).

use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use smartchat_api::background::{Background, BackgroundWork};
use smartchat_api::pipeline::{self, Pipeline};
use smartchat_api::search::Search;
use smartchat_core::db::schema::{ledger_pending, messages};
use smartchat_core::db::{Conn, DbPool};
use smartchat_core::db_run;
use smartchat_core::ids::{Handle, PhoneNumber, PhoneNumberId, TenantId};
use smartchat_core::ledger_store::Ledger;
use smartchat_core::priority::{BackgroundPriority, current_thread_id, scheduling_of};
use smartchat_core::store::{NewTenant, Profile};
use smartchat_ledger::Actor;
use smartchat_search::SearchQuery;
use smartchat_tests::{Backend, TestEnv, both_backends};

const PNID: &str = "3000001";

async fn tenant(env: &TestEnv) -> TenantId {
    env.store
        .create_tenant(NewTenant {
            handle: "bg-salon".parse::<Handle>().unwrap(),
            profile: Profile(serde_json::json!({
                "name": "Background Salon",
                "business_type": "salon",
                "hours": {"saturday": [{"open": "09:00", "close": "17:00"}]}
            })),
            phone_number_id: Some(PNID.parse::<PhoneNumberId>().unwrap()),
            // No token: the reply goes to the sandbox.
            access_token: None,
        })
        .await
        .unwrap()
}

/// Whether this process may lower other users' processes (root has `CAP_SYS_NICE`).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next().map(|u| u == "0"))
        .unwrap()
}

/// This process's threads named `name`, with their scheduling.
fn threads_named(name: &str) -> Vec<(i32, (bool, i32))> {
    let mut out = Vec::new();
    for t in std::fs::read_dir("/proc/self/task").unwrap() {
        let t = t.unwrap();
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if comm.trim() == name {
            let tid: i32 = t.file_name().to_string_lossy().parse().unwrap();
            if let Some(s) = scheduling_of(tid) {
                out.push((tid, s));
            }
        }
    }
    out
}

/// The PostgreSQL server process behind a connection of `db`.
async fn backend_pid(db: &DbPool) -> i32 {
    let mut c = db.conn().await.unwrap();
    match c {
        Conn::Pg(ref mut c) => diesel::select(diesel::dsl::sql::<diesel::sql_types::Integer>(
            "pg_backend_pid()",
        ))
        .get_result::<i32>(&mut **c)
        .await
        .unwrap(),
        Conn::Sqlite(_) => unreachable!("PostgreSQL only"),
    }
}

/// Waits until `word` finds something in the tenant's index.
async fn searchable(search: &Search, tenant: TenantId, word: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let hits = search
            .search(tenant, &SearchQuery::text(word))
            .await
            .map(|r| r.hits.len())
            .unwrap_or(0);
        if hits > 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{word:?} never searchable");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One backend after the other, never two at once: the index writers' threads are read
/// from this process's thread list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_runs_below_the_webhook() {
    pipeline_below_the_webhook(TestEnv::new(Backend::Sqlite).await).await;
    pipeline_below_the_webhook(TestEnv::new(Backend::Postgres).await).await;
}

async fn pipeline_below_the_webhook(env: TestEnv) {
    let writers_before: std::collections::HashSet<i32> = threads_named("thrd-tantivy-in")
        .into_iter()
        .map(|(tid, _)| tid)
        .collect();
    let tenant = tenant(&env).await;
    let config = smartchat_core::config::Config::load_from(None, &Default::default()).unwrap();
    assert_eq!(config.background_priority, BackgroundPriority::Idle);
    let pipeline = Pipeline::new(env.store.clone(), &config).unwrap();
    let ledger = Ledger::open(env.store.db.clone(), &env.store.keys, "test/ledger")
        .await
        .unwrap();
    let search = Search::with_priority(
        env.store.clone(),
        env.dir.path().join("search"),
        BackgroundPriority::Idle,
    )
    .unwrap();
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let background = Background::start(
        BackgroundWork {
            pipeline: pipeline.clone(),
            ledger: ledger.clone(),
            search: Some(search.clone()),
            run_jobs: true,
            follow_ups: None,
            retention: false,
            priority: BackgroundPriority::Idle,
        },
        &stop_rx,
    )
    .unwrap();

    // A search from the server's side may open the tenant's index (and its writer) before
    // the indexer does: the writer is created on a lowered thread all the same.
    search
        .search(tenant, &SearchQuery::text("nothing yet"))
        .await
        .unwrap();
    // The webhook's side (this runtime) stores the message; the background answers it.
    let from: PhoneNumber = "919811100001".parse().unwrap();
    let payload =
        pipeline::sandbox_payload(PNID, &from, "what time do you open on saturday?").unwrap();
    assert_eq!(
        pipeline::ingest(&pipeline, &payload)
            .await
            .unwrap()
            .messages,
        1
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let tid = tenant.to_string();
    let answered = loop {
        let mut c = env.store.db.conn().await.unwrap();
        let out: Vec<String> = db_run!(c, |c| messages::table
            .filter(messages::tenant_id.eq(&tid))
            .filter(messages::direction.eq("out"))
            .select(messages::status)
            .load(c)
            .await)
        .unwrap();
        if out.iter().any(|s| s != "queued") || Instant::now() > deadline {
            break out;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(answered.len(), 1, "one reply stored");
    assert_ne!(answered[0], "queued", "the reply was sent (to the sandbox)");

    // Its threads are SCHED_IDLE; this test's own thread, the webhook's side, is not.
    let bg = threads_named("smartchat-bg");
    assert!(bg.len() >= 2, "background runtime threads: {bg:?}");
    assert!(bg.iter().all(|(_, (idle, _))| *idle), "{bg:?}");
    assert_eq!(
        scheduling_of(current_thread_id().unwrap()).map(|s| s.0),
        Some(false),
        "the caller's thread was lowered"
    );
    // The message becomes searchable. A second one is applied by the indexer (the index is
    // open by now, so no rebuild on a request's thread commits it): tantivy starts a
    // writer's indexing threads anew at every commit, from the committing thread, and the
    // indexer's are the background's.
    searchable(&search, tenant, "saturday").await;
    let payload = pipeline::sandbox_payload(PNID, &from, "do you have marigold facials?").unwrap();
    pipeline::ingest(&pipeline, &payload).await.unwrap();
    searchable(&search, tenant, "marigold").await;
    let writers: Vec<_> = threads_named("thrd-tantivy-in")
        .into_iter()
        .filter(|(tid, _)| !writers_before.contains(tid))
        .collect();
    assert!(!writers.is_empty(), "the indexer opened a writer");
    assert!(writers.iter().all(|(_, (idle, _))| *idle), "{writers:?}");

    if env.backend == Backend::Postgres {
        // The background's connections are its own; as root on this host their server
        // processes are lowered too, never the webhook's.
        let ours = backend_pid(&env.store.db).await;
        assert_eq!(scheduling_of(ours).map(|s| s.0), Some(false));
        let mut c = env.store.db.conn().await.unwrap();
        let pids: Vec<i32> = db_run!(c, |c| diesel::sql_query(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
                 AND pid <> pg_backend_pid()"
        )
        .load::<Pid>(c)
        .await)
        .unwrap()
        .into_iter()
        .map(|p| p.pid)
        .collect();
        let lowered = pids
            .iter()
            .filter(|p| scheduling_of(**p).is_some_and(|s| s.0))
            .count();
        if is_root() {
            assert!(lowered >= 1, "no background backend lowered among {pids:?}");
        } else {
            assert_eq!(lowered, 0, "lowered without the right to");
        }
    }

    // A stop ends every loop; the sequencer's last round leaves nothing pending.
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(60), background.join())
        .await
        .expect("background stopped")
        .unwrap();
    let mut c = env.store.db.conn().await.unwrap();
    let pending: i64 = db_run!(c, |c| ledger_pending::table.count().get_result(c).await).unwrap();
    assert_eq!(pending, 0, "drafts left unsequenced");
    assert!(ledger.size().await.unwrap() >= 3);
}

#[derive(QueryableByName)]
struct Pid {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    pid: i32,
}

async fn a_twin_shares_keys_but_not_connections(env: TestEnv) {
    let tenant = tenant(&env).await;
    let twin = env.store.twin(BackgroundPriority::Idle).unwrap();
    let key = twin.tenant_key(tenant).await.unwrap();
    assert_eq!(
        key.pseudonym("s"),
        env.store.tenant_key(tenant).await.unwrap().pseudonym("s")
    );
    if env.backend == Backend::Postgres {
        let (a, b) = (
            backend_pid(&env.store.db).await,
            backend_pid(&twin.db).await,
        );
        assert_ne!(a, b, "the twin uses connections of its own");
        assert_eq!(scheduling_of(a).map(|s| s.0), Some(false));
        assert_eq!(scheduling_of(b).map(|s| s.0), Some(is_root()));
        // A twin at the normal priority lowers nothing.
        let same = env.store.twin(BackgroundPriority::Normal).unwrap();
        let c = backend_pid(&same.db).await;
        assert_eq!(scheduling_of(c).map(|s| s.0), Some(false));
    }
    // Shredded through the server's store: the twin fails closed at once (shared caches).
    env.store.shred_tenant(tenant, Actor::System).await.unwrap();
    let err = twin.tenant_key(tenant).await.unwrap_err();
    assert!(
        matches!(err, smartchat_core::CoreError::Shredded { .. }),
        "{err:?}"
    );
}

both_backends!(a_twin_shares_keys_but_not_connections);

/// A connection whose URL names another host is left alone even when the server process
/// PostgreSQL reports is on this host (it would be someone else's process there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_is_lowered_only_when_it_is_provably_ours() {
    let env = TestEnv::new(Backend::Postgres).await;
    let url = match &env.db_url {
        smartchat_core::db::DbUrl::Postgres(u) => u.clone(),
        smartchat_core::db::DbUrl::Sqlite(_) => unreachable!(),
    };
    let mut c = env.store.db.conn().await.unwrap();
    let Conn::Pg(ref mut pg) = c else {
        unreachable!()
    };
    let pid = diesel::select(diesel::dsl::sql::<diesel::sql_types::Integer>(
        "pg_backend_pid()",
    ))
    .get_result::<i32>(&mut **pg)
    .await
    .unwrap();
    let elsewhere = url.replace("127.0.0.1", "db.example.com");
    assert_ne!(elsewhere, url);
    let err = smartchat_core::db::lower_backend(pg, &elsewhere, BackgroundPriority::Idle)
        .await
        .unwrap_err();
    assert!(err.contains("another host"), "{err}");
    assert_eq!(scheduling_of(pid).map(|s| s.0), Some(false));
    let res = smartchat_core::db::lower_backend(pg, &url, BackgroundPriority::Idle).await;
    if is_root() {
        assert_eq!(res, Ok(pid));
        assert_eq!(scheduling_of(pid).map(|s| s.0), Some(true));
    } else {
        assert!(res.is_err());
        assert_eq!(scheduling_of(pid).map(|s| s.0), Some(false));
    }
    // The connection (now lowered) goes back to a pool that is dropped with the test.
    drop(c);
}
