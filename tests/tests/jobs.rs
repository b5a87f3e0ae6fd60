//! The durable job queue on both backends (issue 5): enqueue in the caller's transaction,
//! claims never overlap, leases expire, failures back off, dead jobs stay visible.

use std::collections::HashSet;
use std::time::Duration;

use smartchat_core::jobs::{self, Failed, NewJob};
use smartchat_tests::{TestEnv, both_backends};

fn job(n: usize) -> NewJob {
    let mut j = NewJob::now("test", "noop", serde_json::json!({ "n": n }));
    j.dedupe_key = Some(format!("noop:{n}"));
    j
}

async fn enqueue_is_transactional_and_deduplicated(env: TestEnv) {
    let db = &env.store.db;
    {
        let mut tx = db.begin().await.unwrap();
        jobs::enqueue(&mut tx, &job(1)).await.unwrap().unwrap();
        // dropped: rolled back
    }
    assert!(
        jobs::claim(db, "test", Duration::from_secs(30))
            .await
            .unwrap()
            .is_none()
    );
    let mut tx = db.begin().await.unwrap();
    assert!(jobs::enqueue(&mut tx, &job(1)).await.unwrap().is_some());
    assert!(
        jobs::enqueue(&mut tx, &job(1)).await.unwrap().is_none(),
        "same dedupe key"
    );
    tx.commit().await.unwrap();
    let j = jobs::claim(db, "test", Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(j.payload().unwrap()["n"], 1);
    assert_eq!(j.attempts, 1);
    // Claimed: nobody else gets it while the lease holds.
    assert!(
        jobs::claim(db, "test", Duration::from_secs(30))
            .await
            .unwrap()
            .is_none()
    );
    let mut tx = db.begin().await.unwrap();
    jobs::complete(&mut tx, j.id).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(jobs::count(db, "test", "done").await.unwrap(), 1);
}

async fn concurrent_claimers_never_share_a_job(env: TestEnv) {
    let db = env.store.db.clone();
    let mut tx = db.begin().await.unwrap();
    for n in 0..60 {
        jobs::enqueue(&mut tx, &job(n)).await.unwrap();
    }
    tx.commit().await.unwrap();
    let mut workers = Vec::new();
    for _ in 0..6 {
        let db = db.clone();
        workers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(j) = jobs::claim(&db, "test", Duration::from_secs(60))
                .await
                .unwrap()
            {
                let mut tx = db.begin().await.unwrap();
                jobs::complete(&mut tx, j.id).await.unwrap();
                tx.commit().await.unwrap();
                got.push(j.id);
            }
            got
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    let unique: HashSet<_> = all.iter().copied().collect();
    assert_eq!(all.len(), 60, "every job ran");
    assert_eq!(unique.len(), 60, "no job ran twice");
}

async fn expired_leases_are_reclaimed_and_failures_back_off(env: TestEnv) {
    let db = &env.store.db;
    let mut tx = db.begin().await.unwrap();
    let mut j = job(7);
    j.max_attempts = 2;
    jobs::enqueue(&mut tx, &j).await.unwrap();
    tx.commit().await.unwrap();
    // A worker claims with a tiny lease and "dies".
    let first = jobs::claim(db, "test", Duration::from_millis(1))
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let again = jobs::claim(db, "test", Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.id, again.id);
    assert_eq!(again.attempts, 2);
    // A retryable failure on the last attempt makes it dead.
    assert_eq!(
        jobs::fail(db, &again, "boom", false, None).await.unwrap(),
        Failed::Dead
    );
    assert_eq!(jobs::count(db, "test", "dead").await.unwrap(), 1);
    // A retryable failure with attempts left is scheduled later, honouring Retry-After.
    let mut tx = db.begin().await.unwrap();
    jobs::enqueue(&mut tx, &job(8)).await.unwrap();
    tx.commit().await.unwrap();
    let k = jobs::claim(db, "test", Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    let before = smartchat_core::db::now_micros();
    match jobs::fail(db, &k, "429", false, Some(Duration::from_secs(120)))
        .await
        .unwrap()
    {
        Failed::RetryAt(at) => assert!(at >= before + 119_000_000, "{at} vs {before}"),
        Failed::Dead => panic!("should retry"),
    }
    assert!(
        jobs::claim(db, "test", Duration::from_secs(60))
            .await
            .unwrap()
            .is_none(),
        "not due yet"
    );
    // A permanent failure is dead at once.
    let mut tx = db.begin().await.unwrap();
    jobs::enqueue(&mut tx, &job(9)).await.unwrap();
    tx.commit().await.unwrap();
    let p = jobs::claim(db, "test", Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        jobs::fail(db, &p, "400", true, None).await.unwrap(),
        Failed::Dead
    );
}

#[test]
fn backoff_grows_with_jitter_and_honours_retry_after() {
    for attempt in 1..10 {
        let cap = Duration::from_millis(500)
            .saturating_mul(2u32.pow(attempt as u32 - 1))
            .min(Duration::from_secs(300));
        let d = jobs::backoff(attempt, None);
        assert!(
            d <= cap && d >= cap / 2,
            "attempt {attempt}: {d:?} vs cap {cap:?}"
        );
    }
    assert_eq!(
        jobs::backoff(3, Some(Duration::from_secs(7))),
        Duration::from_secs(7)
    );
    assert_eq!(
        jobs::backoff(3, Some(Duration::from_secs(999_999))),
        Duration::from_secs(3600)
    );
}

/// A claim reads the ready index in order and stops at its first row: the plan has no sort
/// of the backlog, even with a backlog the planner's statistics have not seen (the table
/// was analyzed empty). Before the index held `id`, PostgreSQL sorted every ready job on
/// each claim.
async fn a_claim_never_sorts_the_backlog(env: TestEnv) {
    let db = &env.store.db;
    let mut tx = db.begin().await.unwrap();
    for n in 0..2000 {
        jobs::enqueue(&mut tx, &job(n)).await.unwrap();
    }
    tx.commit().await.unwrap();
    let plan = jobs::claim_plan(db, "test").await.unwrap();
    assert!(
        plan.contains("jobs_ready"),
        "the claim uses the ready index:\n{plan}"
    );
    assert!(!plan.contains("Sort"), "no sort in the claim:\n{plan}");
    assert!(
        !plan.contains("TEMP B-TREE"),
        "no sort in the claim:\n{plan}"
    );
    // And it claims the oldest job.
    let first = jobs::claim(db, "test", Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.payload().unwrap()["n"], 0);
}

both_backends!(
    a_claim_never_sorts_the_backlog,
    enqueue_is_transactional_and_deduplicated,
    concurrent_claimers_never_share_a_job,
    expired_leases_are_reclaimed_and_failures_back_off,
);
