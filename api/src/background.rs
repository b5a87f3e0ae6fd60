//! Work the server does besides answering requests: the pipeline worker and its jobs, sequencing the
//! ledger and signing checkpoints, the search indexer, follow-ups and retention. Each loop
//! stops when the shutdown signal fires.
//!
//! [`Background`] runs them on a runtime of their own whose threads are scheduled below the
//! server's (`SMARTCHAT_BACKGROUND_PRIORITY`, `SCHED_IDLE` by default, on Linux), with
//! database pools of their own whose server processes are lowered too where PostgreSQL runs
//! on this host ([`Pipeline::twin`], [`smartchat_core::priority`]). The webhook's 200 waits
//! only for its own commit, and Meta backs off a number's traffic when its webhook answers
//! slowly; everything here works from durable queues and may fall behind in a burst. At the
//! same priority a backlog of replies or index commits took the CPU the webhook needed; at a
//! lower one it gets every idle cycle and yields when a request is runnable. Threads the
//! background threads start (the search index writers') inherit their priority.

use std::time::Duration;

use smartchat_core::CoreError;
use smartchat_core::ledger_store::Ledger;
use smartchat_core::priority::BackgroundPriority;
use tokio::sync::watch;

use crate::pipeline::Pipeline;
use crate::search::Search;

/// How often pending ledger drafts are sequenced.
pub const SEQUENCE_EVERY: Duration = Duration::from_millis(200);
/// How often a checkpoint is signed when the log has grown.
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(60);
/// Threads of the background runtime.
pub const BACKGROUND_THREADS: usize = 2;

/// What runs in the background.
#[derive(Debug)]
pub struct BackgroundWork {
    /// The server's pipeline (the background takes a twin of it on pools of its own).
    pub pipeline: Pipeline,
    /// The ledger to sequence and checkpoint.
    pub ledger: Ledger,
    /// The search indexes to keep up to date, when this server indexes.
    pub search: Option<Search>,
    /// Whether this server runs pipeline jobs: one [`crate::pipeline::worker`], running up
    /// to the pipeline's concurrency (`SMARTCHAT_PIPELINE_CONCURRENCY`) at once.
    pub run_jobs: bool,
    /// How often follow-up rules are evaluated; `None`: not by this server.
    pub follow_ups: Option<Duration>,
    /// Whether this server applies the retention rules.
    pub retention: bool,
    /// How the background is scheduled (`SMARTCHAT_BACKGROUND_PRIORITY`).
    pub priority: BackgroundPriority,
}

/// The background runtime and its loops.
pub struct Background {
    runtime: Option<tokio::runtime::Runtime>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Background {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Background({} loops)", self.tasks.len())
    }
}

impl Background {
    /// Starts every loop of `work` on a new background runtime; they stop when `shutdown`
    /// changes.
    pub fn start(
        work: BackgroundWork,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<Self, CoreError> {
        let runtime = runtime(BACKGROUND_THREADS, work.priority).map_err(|e| {
            CoreError::Internal(format!("cannot start the background runtime: {e}"))
        })?;
        let pipeline = work.pipeline.twin(work.priority)?;
        let ledger = work.ledger.on_pool(pipeline.store.db.clone());
        let mut tasks = vec![runtime.spawn(ledger_worker(ledger, shutdown.clone()))];
        if work.run_jobs {
            tasks.push(runtime.spawn(crate::pipeline::worker(pipeline.clone(), shutdown.clone())));
        }
        if let Some(search) = work.search {
            let search = search.on_store(pipeline.store.clone());
            tasks.push(runtime.spawn(search.worker(shutdown.clone())));
        }
        if let Some(every) = work.follow_ups {
            tasks.push(runtime.spawn(crate::follow_ups::scheduler(
                pipeline.clone(),
                every,
                shutdown.clone(),
            )));
        }
        if work.retention {
            tasks.push(runtime.spawn(crate::account::retention_loop(pipeline, shutdown.clone())));
        }
        Ok(Self {
            runtime: Some(runtime),
            tasks,
        })
    }

    /// Waits until every loop has stopped (send the shutdown signal first), then stops the
    /// runtime.
    pub async fn join(mut self) -> Result<(), tokio::task::JoinError> {
        for t in std::mem::take(&mut self.tasks) {
            t.await?;
        }
        Ok(())
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        // A runtime may not be dropped (and block) inside another one.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// A multi-threaded runtime whose threads (workers and blocking pool, and the threads they
/// start) run at `priority`.
pub fn runtime(
    threads: usize,
    priority: BackgroundPriority,
) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .thread_name("smartchat-bg")
        .on_thread_start(move || {
            if let Err(reason) = smartchat_core::priority::lower_current_thread(priority) {
                tracing::warn!(%reason, "a background thread keeps the normal priority");
            }
        })
        .enable_all()
        .build()
}

/// Runs the ledger sequencer and checkpoint signer until `shutdown` changes.
pub async fn ledger_worker(ledger: Ledger, mut shutdown: watch::Receiver<bool>) {
    let mut seq_tick = tokio::time::interval(SEQUENCE_EVERY);
    let mut cp_tick = tokio::time::interval(CHECKPOINT_EVERY);
    seq_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    cp_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = seq_tick.tick() => {
                if let Err(e) = ledger.sequence_all().await {
                    tracing::error!(error = %e, "ledger sequencing failed");
                }
            }
            _ = cp_tick.tick() => {
                match ledger.checkpoint().await {
                    Ok(Some(cp)) => tracing::debug!(ledger.size = cp.size, "ledger checkpoint"),
                    Ok(None) => {}
                    Err(e) => tracing::error!(error = %e, "ledger checkpoint refused"),
                }
            }
        }
    }
    // Leave nothing pending that a clean stop could have sequenced.
    if let Err(e) = ledger.sequence_all().await {
        tracing::error!(error = %e, "ledger sequencing at shutdown failed");
    }
}
