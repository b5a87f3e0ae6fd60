//! The durable job queue, in the main database, shared by every server process.
//!
//! A job is enqueued in the caller's transaction (so it exists exactly when the change that
//! needs it does). Workers claim one job at a time with a lease: PostgreSQL picks it with
//! `FOR UPDATE SKIP LOCKED`, SQLite inside `BEGIN IMMEDIATE` (one writer at a time), both
//! with one `UPDATE … RETURNING`. A claimed job whose lease runs out (its worker died) is
//! claimable again, so nothing is lost on a crash; jobs must therefore be idempotent.
//! Failures retry with exponential backoff and full jitter (or the delay the remote side
//! asked for) until `max_attempts`, then the job is `dead` and stays visible.

use std::time::Duration;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Nullable, Text};
use diesel_async::RunQueryDsl;
use rand::Rng;

use crate::db::schema::jobs;
use crate::db::{Conn, DbPool, now_micros};
use crate::db_run;
use crate::error::CoreError;

/// A job to enqueue.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// Queue name (workers poll one queue each).
    pub queue: &'static str,
    /// What to do.
    pub kind: &'static str,
    /// The tenant it concerns.
    pub tenant_id: Option<String>,
    /// Parameters: ids only, never personal data.
    pub payload: serde_json::Value,
    /// At most one job per key ever (e.g. `reply:<message id>`).
    pub dedupe_key: Option<String>,
    /// Not before (unix micros).
    pub run_at: i64,
    /// Attempts before the job is dead.
    pub max_attempts: i32,
}

impl NewJob {
    /// A job to run now, up to 8 attempts.
    pub fn now(queue: &'static str, kind: &'static str, payload: serde_json::Value) -> Self {
        Self {
            queue,
            kind,
            tenant_id: None,
            payload,
            dedupe_key: None,
            run_at: now_micros(),
            max_attempts: 8,
        }
    }
}

/// A claimed job.
#[derive(Debug, Clone, QueryableByName)]
pub struct Job {
    /// Id.
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    /// Queue.
    #[diesel(sql_type = Text)]
    pub queue: String,
    /// Kind.
    #[diesel(sql_type = Text)]
    pub kind: String,
    /// Tenant.
    #[diesel(sql_type = Nullable<Text>)]
    pub tenant_id: Option<String>,
    /// Parameters (JSON text).
    #[diesel(sql_type = Text)]
    pub payload: String,
    /// Attempts so far, this one included.
    #[diesel(sql_type = Integer)]
    pub attempts: i32,
    /// Attempts allowed.
    #[diesel(sql_type = Integer)]
    pub max_attempts: i32,
}

impl Job {
    /// The parameters.
    pub fn payload(&self) -> Result<serde_json::Value, CoreError> {
        serde_json::from_str(&self.payload)
            .map_err(|e| CoreError::Internal(format!("job {} payload: {e}", self.id)))
    }
}

/// Queues a job in the caller's transaction. Returns `None` when a job with the same
/// dedupe key exists already (nothing is written).
pub async fn enqueue(c: &mut Conn, job: &NewJob) -> Result<Option<i64>, CoreError> {
    let payload = job.payload.to_string();
    let now = now_micros();
    // One statement: a dedupe key already queued (or being queued by a transaction that
    // then commits) makes the insert do nothing.
    let id: Option<i64> = db_run!(c, |c| diesel::insert_into(jobs::table)
        .values((
            jobs::queue.eq(job.queue),
            jobs::kind.eq(job.kind),
            jobs::tenant_id.eq(&job.tenant_id),
            jobs::payload.eq(&payload),
            jobs::status.eq("ready"),
            jobs::attempts.eq(0),
            jobs::max_attempts.eq(job.max_attempts),
            jobs::run_at.eq(job.run_at),
            jobs::dedupe_key.eq(&job.dedupe_key),
            jobs::created_at.eq(now),
        ))
        .on_conflict(jobs::dedupe_key)
        .do_nothing()
        .returning(jobs::id)
        .get_result(c)
        .await
        .optional())?;
    Ok(id)
}

// Two claims, each an ordered scan of the `(queue, status, run_at, id)` index that stops at
// the first row (the index holds the whole ORDER BY: without `id` in it the planner may sort
// every ready row instead, one claim then costing time in proportion to the backlog): due ready jobs first, then jobs whose lease expired (their worker died). One
// query with `status = 'ready' OR (status = 'running' AND …)` could not use the index's order
// and read and sorted the whole backlog on every claim.
const CLAIM_READY_PG: &str = "UPDATE jobs SET status = 'running', attempts = attempts + 1, locked_until = $1 \
     WHERE id = (SELECT id FROM jobs WHERE queue = $2 AND status = 'ready' AND run_at <= $3 \
     ORDER BY run_at, id LIMIT 1 FOR UPDATE SKIP LOCKED) \
     RETURNING id, queue, kind, tenant_id, payload, attempts, max_attempts";
const CLAIM_EXPIRED_PG: &str = "UPDATE jobs SET status = 'running', attempts = attempts + 1, locked_until = $1 \
     WHERE id = (SELECT id FROM jobs WHERE queue = $2 AND status = 'running' AND locked_until < $3 \
     ORDER BY run_at, id LIMIT 1 FOR UPDATE SKIP LOCKED) \
     RETURNING id, queue, kind, tenant_id, payload, attempts, max_attempts";
const CLAIM_READY_SQLITE: &str = "UPDATE jobs SET status = 'running', attempts = attempts + 1, locked_until = ?1 \
     WHERE id = (SELECT id FROM jobs WHERE queue = ?2 AND status = 'ready' AND run_at <= ?3 \
     ORDER BY run_at, id LIMIT 1) \
     RETURNING id, queue, kind, tenant_id, payload, attempts, max_attempts";
const CLAIM_EXPIRED_SQLITE: &str = "UPDATE jobs SET status = 'running', attempts = attempts + 1, locked_until = ?1 \
     WHERE id = (SELECT id FROM jobs WHERE queue = ?2 AND status = 'running' AND locked_until < ?3 \
     ORDER BY run_at, id LIMIT 1) \
     RETURNING id, queue, kind, tenant_id, payload, attempts, max_attempts";

/// Claims the next due job of `queue` for `lease`. A job claimed more often than allowed
/// (its workers kept dying) is marked dead instead of returned.
pub async fn claim(db: &DbPool, queue: &str, lease: Duration) -> Result<Option<Job>, CoreError> {
    loop {
        let now = now_micros();
        let until = now.saturating_add(i64::try_from(lease.as_micros()).unwrap_or(i64::MAX));
        let mut tx = db.begin_planned().await?;
        let mut job: Option<Job> = None;
        for (pg_sql, sqlite_sql) in [
            (CLAIM_READY_PG, CLAIM_READY_SQLITE),
            (CLAIM_EXPIRED_PG, CLAIM_EXPIRED_SQLITE),
        ] {
            job = db_run!(
                tx,
                pg | c
                    | crate::db::prepared::stmt(pg_sql)
                        .bind::<BigInt, _>(until)
                        .bind::<Text, _>(queue)
                        .bind::<BigInt, _>(now)
                        .get_result(c)
                        .await
                        .optional(),
                sqlite
                    | c
                    | diesel::sql_query(sqlite_sql)
                        .bind::<BigInt, _>(until)
                        .bind::<Text, _>(queue)
                        .bind::<BigInt, _>(now)
                        .get_result(c)
                        .await
                        .optional()
            )?;
            if job.is_some() {
                break;
            }
        }
        match job {
            Some(j) if j.attempts > j.max_attempts => {
                db_run!(tx, |c| diesel::update(jobs::table.find(j.id))
                    .set((
                        jobs::status.eq("dead"),
                        jobs::last_error.eq(Some("lease expired too often"))
                    ))
                    .execute(c)
                    .await)?;
                tx.commit().await?;
                tracing::warn!(job.id = j.id, job.kind = %j.kind, "job dead: its workers kept stopping");
            }
            other => {
                tx.commit().await?;
                return Ok(other);
            }
        }
    }
}

/// One line of a query plan.
#[derive(Debug, QueryableByName)]
struct PlanLine {
    #[diesel(sql_type = Text, column_name = "QUERY PLAN")]
    line: String,
}

/// One step of SQLite's `EXPLAIN QUERY PLAN`.
#[derive(Debug, QueryableByName)]
struct SqlitePlanStep {
    #[diesel(sql_type = Text)]
    detail: String,
}

/// The database's plan for claiming a ready job of `queue` (PostgreSQL `EXPLAIN`, SQLite
/// `EXPLAIN QUERY PLAN`), one step per line: for operators looking at a slow queue, and for
/// the test that a claim reads the index in order rather than sorting the backlog.
pub async fn claim_plan(db: &DbPool, queue: &str) -> Result<String, CoreError> {
    let mut c = db.conn().await?;
    let now = now_micros();
    let lines: Vec<String> = db_run!(
        c,
        pg | c
            | diesel::sql_query(format!("EXPLAIN {CLAIM_READY_PG}"))
                .bind::<BigInt, _>(now)
                .bind::<Text, _>(queue)
                .bind::<BigInt, _>(now)
                .load::<PlanLine>(c)
                .await
                .map(|v| v.into_iter().map(|l| l.line).collect()),
        sqlite
            | c
            | diesel::sql_query(format!("EXPLAIN QUERY PLAN {CLAIM_READY_SQLITE}"))
                .bind::<BigInt, _>(now)
                .bind::<Text, _>(queue)
                .bind::<BigInt, _>(now)
                .load::<SqlitePlanStep>(c)
                .await
                .map(|v| v.into_iter().map(|l| l.detail).collect())
    )?;
    Ok(lines.join("\n"))
}

/// Marks a job done, in the transaction that commits its effects.
pub async fn complete(c: &mut Conn, id: i64) -> Result<(), CoreError> {
    db_run!(c, |c| diesel::update(jobs::table.find(id))
        .set((jobs::status.eq("done"), jobs::locked_until.eq(None::<i64>)))
        .execute(c)
        .await)?;
    Ok(())
}

/// What became of a failed job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failed {
    /// It will run again at this time (unix micros).
    RetryAt(i64),
    /// It will not run again.
    Dead,
}

/// The backoff before attempt `attempts + 1`: full jitter over `base * 2^(attempts-1)`,
/// capped, or `retry_after` when the other side asked for a delay.
pub fn backoff(attempts: i32, retry_after: Option<Duration>) -> Duration {
    if let Some(d) = retry_after {
        return d.min(Duration::from_secs(3600));
    }
    let exp = u32::try_from(attempts.clamp(1, 16) - 1).unwrap_or(0);
    let cap = Duration::from_secs(300)
        .min(Duration::from_millis(500).saturating_mul(2u32.saturating_pow(exp)));
    let ms = u64::try_from(cap.as_millis()).unwrap_or(u64::MAX).max(1);
    Duration::from_millis(rand::thread_rng().gen_range(ms / 2..=ms))
}

/// Records a failure: retried later unless it is permanent or out of attempts.
pub async fn fail(
    db: &DbPool,
    job: &Job,
    error: &str,
    permanent: bool,
    retry_after: Option<Duration>,
) -> Result<Failed, CoreError> {
    let dead = permanent || job.attempts >= job.max_attempts;
    let mut c = db.conn().await?;
    let outcome = if dead {
        db_run!(c, |c| diesel::update(jobs::table.find(job.id))
            .set((
                jobs::status.eq("dead"),
                jobs::last_error.eq(Some(error)),
                jobs::locked_until.eq(None::<i64>)
            ))
            .execute(c)
            .await)?;
        Failed::Dead
    } else {
        let delay = backoff(job.attempts, retry_after);
        let at = now_micros().saturating_add(i64::try_from(delay.as_micros()).unwrap_or(i64::MAX));
        db_run!(c, |c| diesel::update(jobs::table.find(job.id))
            .set((
                jobs::status.eq("ready"),
                jobs::run_at.eq(at),
                jobs::last_error.eq(Some(error)),
                jobs::locked_until.eq(None::<i64>),
            ))
            .execute(c)
            .await)?;
        Failed::RetryAt(at)
    };
    Ok(outcome)
}

/// Whether a job whose dedupe key is `key`, or starts with `prefix`, is ready or running.
pub async fn any_active(db: &DbPool, key: &str, prefix: &str) -> Result<bool, CoreError> {
    let mut c = db.conn().await?;
    let pattern = format!("{prefix}%");
    let n: i64 = db_run!(c, |c| jobs::table
        .filter(jobs::status.eq_any(["ready", "running"]))
        .filter(jobs::dedupe_key.eq(key).or(jobs::dedupe_key.like(&pattern)))
        .count()
        .get_result(c)
        .await)?;
    Ok(n > 0)
}

/// Counts jobs by status in a queue (for tests, `/readyz` and the portal).
pub async fn count(db: &DbPool, queue: &str, status: &str) -> Result<i64, CoreError> {
    let mut c = db.conn().await?;
    count_in(&mut c, queue, status, None, None).await
}

/// Where one queue stands: jobs by state and the oldest due job's wait.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueState {
    /// Ready and due now.
    pub due: i64,
    /// Ready but not before a later time (backing off, or scheduled).
    pub later: i64,
    /// Claimed by a worker (a job whose worker died counts here until another worker
    /// reclaims it once its lease has run out).
    pub running: i64,
    /// Out of attempts or failed for good; never pruned.
    pub dead: i64,
    /// Done and not yet pruned ([`prune_done`]).
    pub done: i64,
    /// How long the oldest due job has been due (microseconds), when one is.
    pub oldest_due_micros: Option<i64>,
}

/// Where `queue` stands at `now` (unix micros): for operators (`smartchat status`). Every
/// count is a range of the `(queue, status, run_at, id)` index: no count scans the whole
/// table, though the done range grows with the traffic of the days done jobs are kept.
pub async fn queue_state(db: &DbPool, queue: &str, now: i64) -> Result<QueueState, CoreError> {
    let mut c = db.conn().await?;
    let due = count_in(&mut c, queue, "ready", Some(now), None).await?;
    let later = count_in(&mut c, queue, "ready", None, Some(now)).await?;
    let running = count_in(&mut c, queue, "running", None, None).await?;
    let dead = count_in(&mut c, queue, "dead", None, None).await?;
    let done = count_in(&mut c, queue, "done", None, None).await?;
    let oldest: Option<i64> = db_run!(c, |c| jobs::table
        .filter(jobs::queue.eq(queue))
        .filter(jobs::status.eq("ready"))
        .filter(jobs::run_at.le(now))
        .select(diesel::dsl::min(jobs::run_at))
        .first(c)
        .await)?;
    Ok(QueueState {
        due,
        later,
        running,
        dead,
        done,
        oldest_due_micros: oldest.map(|at| now.saturating_sub(at).max(0)),
    })
}

/// How long a done job is kept before the retention pass deletes it ([`prune_done`]) unless
/// `SMARTCHAT_DONE_JOBS_KEPT_DAYS` says otherwise: a week, for operators looking into what
/// just ran. Dead jobs are never pruned.
pub const DONE_KEPT: Duration = Duration::from_secs(7 * 24 * 3600);

/// Deletes `queue`'s done jobs that were due before `before` (unix micros), `batch` rows per
/// transaction, and returns how many. A job's dedupe key goes with it; that is safe because
/// every key names the thing whose creation queues the job (a message's `reply`, `lead` and
/// `send`, a follow-up, a data-subject request, a shredded subject's purge), which is never
/// created again, and a done `purge` queued once more would find nothing left to delete.
/// Without this the queue grows by every message ever answered.
///
/// `progress` is called after each batch with the total deleted so far.
pub async fn prune_done(
    db: &DbPool,
    queue: &str,
    before: i64,
    batch: i64,
    mut progress: impl FnMut(u64),
) -> Result<u64, CoreError> {
    let mut total = 0u64;
    loop {
        let mut c = db.conn().await?;
        // The select walks the index in order and stops after `batch` rows.
        let ids: Vec<i64> = db_run!(c, |c| jobs::table
            .filter(jobs::queue.eq(queue))
            .filter(jobs::status.eq("done"))
            .filter(jobs::run_at.lt(before))
            .order((jobs::run_at, jobs::id))
            .select(jobs::id)
            .limit(batch)
            .load(c)
            .await)?;
        if ids.is_empty() {
            return Ok(total);
        }
        // Still done (a job is never moved out of `done`), so the check is only a guard.
        let n = db_run!(c, |c| diesel::delete(
            jobs::table
                .filter(jobs::id.eq_any(&ids))
                .filter(jobs::status.eq("done"))
        )
        .execute(c)
        .await)?;
        total += u64::try_from(n).unwrap_or(0);
        progress(total);
        if i64::try_from(ids.len()).unwrap_or(0) < batch {
            return Ok(total);
        }
    }
}

/// Jobs of `queue` in `status`, due at or before `due_by` and after `due_after` when given.
async fn count_in(
    c: &mut Conn,
    queue: &str,
    status: &str,
    due_by: Option<i64>,
    due_after: Option<i64>,
) -> Result<i64, CoreError> {
    Ok(db_run!(c, |c| {
        let mut q = jobs::table
            .filter(jobs::queue.eq(queue))
            .filter(jobs::status.eq(status))
            .into_boxed();
        if let Some(t) = due_by {
            q = q.filter(jobs::run_at.le(t));
        }
        if let Some(t) = due_after {
            q = q.filter(jobs::run_at.gt(t));
        }
        q.count().get_result(c).await
    })?)
}
