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

/// Where a queue stands, as `smartchat status` prints it: every state counted, the oldest
/// due job's wait; and pruning deletes only done jobs due before the cut-off, in batches,
/// leaving ready, running and dead ones (and recent done ones) alone.
async fn queue_state_counts_and_pruning_keeps_all_but_old_done(env: TestEnv) {
    let db = &env.store.db;
    let now = smartchat_core::db::now_micros();
    let hour = 3_600_000_000i64;
    let mut tx = db.begin().await.unwrap();
    // 7 due an hour ago, 1 due in an hour.
    for n in 0..7 {
        let mut j = job(n);
        j.run_at = now - hour;
        jobs::enqueue(&mut tx, &j).await.unwrap().unwrap();
    }
    let mut later = job(100);
    later.run_at = now + hour;
    jobs::enqueue(&mut tx, &later).await.unwrap().unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        jobs::queue_state(db, "other", now).await.unwrap(),
        Default::default()
    );
    let s = jobs::queue_state(db, "test", now).await.unwrap();
    assert_eq!((s.due, s.later, s.running, s.dead, s.done), (7, 1, 0, 0, 0));
    let waited = s.oldest_due_micros.unwrap();
    assert!((hour..hour + 60_000_000).contains(&waited), "{waited}");
    // Five done, one running, one dead.
    for _ in 0..5 {
        let j = jobs::claim(db, "test", Duration::from_secs(30))
            .await
            .unwrap()
            .unwrap();
        let mut tx = db.begin().await.unwrap();
        jobs::complete(&mut tx, j.id).await.unwrap();
        tx.commit().await.unwrap();
    }
    let dead = jobs::claim(db, "test", Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        jobs::fail(db, &dead, "gone", true, None).await.unwrap(),
        Failed::Dead
    );
    let _running = jobs::claim(db, "test", Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    let s = jobs::queue_state(db, "test", now).await.unwrap();
    assert_eq!((s.due, s.later, s.running, s.dead, s.done), (0, 1, 1, 1, 5));
    assert_eq!(s.oldest_due_micros, None);

    // A cut-off before they were due prunes nothing; after, every done one, two per batch.
    let none = |_: u64| {};
    assert_eq!(
        jobs::prune_done(db, "test", now - 2 * hour, 2, none)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        jobs::prune_done(db, "other", now, 2, none).await.unwrap(),
        0
    );
    let mut seen = Vec::new();
    let n = jobs::prune_done(db, "test", now, 2, |t| seen.push(t))
        .await
        .unwrap();
    assert_eq!((n, seen), (5, vec![2, 4, 5]));
    let s = jobs::queue_state(db, "test", now).await.unwrap();
    assert_eq!((s.due, s.later, s.running, s.dead, s.done), (0, 1, 1, 1, 0));
    assert_eq!(
        jobs::prune_done(db, "test", now + 2 * hour, 2, none)
            .await
            .unwrap(),
        0
    );
}

both_backends!(
    queue_state_counts_and_pruning_keeps_all_but_old_done,
    a_claim_never_sorts_the_backlog,
    enqueue_is_transactional_and_deduplicated,
    concurrent_claimers_never_share_a_job,
    expired_leases_are_reclaimed_and_failures_back_off,
);
