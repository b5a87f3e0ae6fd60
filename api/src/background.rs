//! Work the server does besides answering requests: sequencing the ledger and signing
//! checkpoints. Each loop stops when the shutdown signal fires.

use std::time::Duration;

use smartchat_core::ledger_store::Ledger;
use tokio::sync::watch;

/// How often pending ledger drafts are sequenced.
pub const SEQUENCE_EVERY: Duration = Duration::from_millis(200);
/// How often a checkpoint is signed when the log has grown.
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(60);

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
