//! The orchestrator: local intent check, the tenant's provider failover chain, and the
//! offline assistant as the last link that always answers.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, TokioClock};
use crate::intent::Normalized;
use crate::offline::{OfflineAssistant, detect_with_profile};
use crate::prompt::build_system_prompt;
use crate::provider::ChatProvider;
use crate::types::{Reply, ReplyRequest, ReplySource};

/// Produces replies for one tenant.
#[derive(Clone)]
pub struct Assistant {
    chain: Vec<ChatProvider>,
    clock: Arc<dyn Clock>,
    deadline: Duration,
    offline: OfflineAssistant,
}

impl std::fmt::Debug for Assistant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Assistant")
            .field("chain", &self.chain)
            .field("deadline", &self.deadline)
            .finish()
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Assistant {
    /// An assistant trying `chain` in order, then the offline assistant. Total deadline
    /// for all provider attempts defaults to 25 s; time is tokio's.
    pub fn new(chain: Vec<ChatProvider>) -> Self {
        Assistant {
            chain,
            clock: Arc::new(TokioClock::new()),
            deadline: Duration::from_secs(25),
            offline: OfflineAssistant,
        }
    }

    /// An assistant with no provider: offline answers only.
    pub fn offline_only() -> Self {
        Assistant::new(Vec::new())
    }

    /// Replaces the clock (tests use [`crate::clock::ManualClock`]).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Sets the total deadline for provider attempts; the offline answer follows.
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// The provider chain.
    pub fn chain(&self) -> &[ChatProvider] {
        &self.chain
    }

    /// Produces a reply; never fails (the offline assistant is the last resort).
    ///
    /// Opt-out, erasure, access and hand-off requests are detected locally and answered
    /// without any provider call; so are all requests when `flags.allow_providers` is
    /// false. Otherwise each provider is tried in order with its retry policy, and every
    /// HTTP attempt is recorded in [`Reply::attempts`].
    pub async fn reply(&self, req: &ReplyRequest) -> Reply {
        let start = self.clock.now();
        let normalized = Normalized::new(&req.customer_message);
        let intent = detect_with_profile(&normalized, &req.profile);
        let mut attempts = Vec::new();
        let use_providers =
            req.flags.allow_providers && !intent.is_handled_locally() && !self.chain.is_empty();
        if use_providers {
            let deadline = start + self.deadline;
            let system_prompt = build_system_prompt(&req.profile, req.now);
            for provider in &self.chain {
                if self.clock.now() >= deadline {
                    break;
                }
                let run = provider
                    .complete_with_retry(req, &system_prompt, self.clock.as_ref(), deadline)
                    .await;
                attempts.extend(run.attempts);
                match run.result {
                    Ok(c) => {
                        return Reply {
                            text: c.text,
                            source: ReplySource::Provider {
                                provider: provider.name().clone(),
                                model: c.model,
                            },
                            intent,
                            usage: c.usage,
                            latency_ms: millis(self.clock.now().saturating_sub(start)),
                            attempts,
                        };
                    }
                    Err(e) => {
                        tracing::warn!(
                            provider = %provider.name(),
                            error = %e,
                            "provider failed, failing over"
                        );
                    }
                }
            }
        }
        let answer = self.offline.answer_intent(req, &normalized, intent);
        Reply {
            text: answer.text,
            source: ReplySource::Offline,
            intent,
            usage: None,
            latency_ms: millis(self.clock.now().saturating_sub(start)),
            attempts,
        }
    }
}
