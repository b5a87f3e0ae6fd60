//! The main job: Meta webhook in, assistant, reply out; every step durable, encrypted and
//! ledgered.
//!
//! 1. [`ingest`]: one transaction per webhook delivery stores every message of the batch
//!    (sealed), advances statuses, queues one `reply` job per new inbound message and the
//!    ledger drafts, then commits; only then does the webhook answer 200. Redeliveries are
//!    recognised by Meta's message id and change nothing.
//! 2. [`run_reply`]: decides with the tenant's policy, redacts, asks the assistant (the
//!    tenant's provider chain, ending in the offline assistant), ledgers every provider call,
//!    stores the reply and queues a `send` job, and completes the `reply` job, in one
//!    transaction.
//! 3. [`run_send`]: checks the 24-hour window and the rate limits, sends through the Graph
//!    API (or to the sandbox when the number has no access token), records the outcome.
//!    Retryable Graph errors back off; permanent ones mark the message failed.

use std::sync::Arc;
use std::time::Duration;

use smartchat_assistant::{
    Assistant, BusinessProfile, ChatProvider, ConversationTurn, Intent, Pseudonym, ReplyRequest,
    ReplySource, RequestFlags, Role,
};
use smartchat_core::CoreError;
use smartchat_core::config::Config;
use smartchat_core::crypto::TenantKey;
use smartchat_core::db::now_micros;
use smartchat_core::ids::{ConversationId, MessageId, PhoneNumberId, TenantId};
use smartchat_core::jobs::{self, Job, NewJob};
use smartchat_core::store::{NewMessage, Store, SubjectFlags};
use smartchat_ledger::{
    Actor, AttrKey, AttrValue, DataCategory, EntryDraft, EventKind, Outcome, ProviderCode, Purpose,
    RefKind, Reference,
};
use smartchat_policies::{Category, ProcessorId, SubjectState};
use smartchat_whatsapp::{
    AccessToken, ErrorClass, GraphClient, MessageKind, OutboundKind, RateLimiter,
    RateLimiterConfig, Recipient, SendError, TokioClock, WebhookPayload, check_window,
};
use time::OffsetDateTime;

/// The queue all pipeline jobs run on.
pub const QUEUE: &str = "pipeline";
/// How long a worker holds a claimed job before another may take it over.
pub const LEASE: Duration = Duration::from_secs(90);
/// How often [`run_send`] tries to record a message Meta accepted before it fails the job.
const RECORD_SENT_ATTEMPTS: u32 = 6;
/// Half the first pause between those tries; each pause doubles the last (0.2, 0.4, 0.8, 1.6
/// and 3.2 s: about 6 s in all, well inside [`LEASE`]).
const RECORD_SENT_PAUSE: Duration = Duration::from_millis(100);
/// Messages of context given to the assistant.
const HISTORY: i64 = 12;
/// Jobs of one process at the database at once, however many are under way: as many as the
/// two workers that ran one job each before jobs ran concurrently. A job waiting on an AI
/// provider, the Graph API or a rate limit gives its turn up ([`DbTurn::outside`]); with the
/// offline assistant a job is nearly all database work, and more of them at once only took
/// CPU and commits from the webhook (one webhook benchmark run each, so a hint, not a
/// measure: with 12 one-job workers the webhook's p50 at 320 deliveries/s was 14 ms against
/// 8 ms with 2, for 78 replies/s against 54).
pub const DB_TURNS: usize = 2;

/// A job's turn at the database ([`DB_TURNS`] per process): held while it reads and writes,
/// given up while it waits on something outside.
pub(crate) struct DbTurn {
    turns: Arc<tokio::sync::Semaphore>,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl DbTurn {
    async fn take(&mut self) {
        if self.permit.is_none() {
            // The semaphore is never closed.
            self.permit = self.turns.clone().acquire_owned().await.ok();
        }
    }

    /// Runs `outside` (a provider call, a send, a rate limit's wait) without the turn, and
    /// waits for a turn again.
    pub(crate) async fn outside<T>(&mut self, outside: impl std::future::Future<Output = T>) -> T {
        self.permit = None;
        let out = outside.await;
        self.take().await;
        out
    }
}

/// What the pipeline needs besides the store.
#[derive(Clone)]
pub struct Pipeline {
    /// Storage.
    pub store: Store,
    providers: Arc<Vec<ChatProvider>>,
    /// Where each known provider is reached (base URL, model), with or without a platform
    /// key: a tenant's own key is used with it.
    endpoints: Arc<Vec<(smartchat_assistant::ProviderKind, String, String)>>,
    /// Clients built with tenants' own keys, by (tenant, provider), with a digest of the key
    /// and endpoint they were built for.
    tenant_clients: Arc<std::sync::Mutex<TenantClients>>,
    graph: Arc<GraphClient>,
    limiter: Arc<RateLimiter<TokioClock>>,
    /// Where tracked booking links point (`SMARTCHAT_PUBLIC_URL`).
    public_url: Arc<str>,
    /// The anonymized analytics store, when this process writes it.
    analytics: Option<smartchat_core::analytics::Analytics>,
    /// The webhook's numbers, their tenants and keys, as last read ([`crate::ingest`]).
    pub(crate) routes: Arc<crate::ingest::Routes>,
    /// How long the retention pass keeps done jobs (`SMARTCHAT_DONE_JOBS_KEPT_DAYS`).
    done_jobs_kept: std::time::Duration,
    /// Jobs a [`worker`] runs at once (`SMARTCHAT_PIPELINE_CONCURRENCY`).
    concurrency: usize,
    /// Turns at the database for the jobs under way ([`DB_TURNS`] of them).
    db_turns: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pipeline({} providers)", self.providers.len())
    }
}

pub use crate::ingest::{GroupCommit, Ingested, ingest, ingest_batch};

impl Pipeline {
    /// The Graph API client.
    pub fn graph(&self) -> &GraphClient {
        &self.graph
    }

    /// Where customers reach this server (`SMARTCHAT_PUBLIC_URL`).
    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    /// Builds the pipeline from the configuration: providers with keys, the Graph client.
    pub fn new(store: Store, config: &Config) -> Result<Self, CoreError> {
        let mut providers = Vec::new();
        let bad = |key: &str, e: &dyn std::fmt::Display| CoreError::Config {
            key: key.into(),
            reason: e.to_string(),
        };
        if let Some(k) = &config.openai_api_key {
            let p = ChatProvider::new(
                smartchat_assistant::ProviderKind::OpenAi,
                &config.openai_base_url,
                secrecy::SecretString::from(k.expose().to_owned()),
                "gpt-4o-mini",
            )
            .map_err(|e| bad("SMARTCHAT_OPENAI_BASE_URL", &e))?;
            providers.push(p);
        }
        if let Some(k) = &config.deepseek_api_key {
            let p = ChatProvider::new(
                smartchat_assistant::ProviderKind::DeepSeek,
                &config.deepseek_base_url,
                secrecy::SecretString::from(k.expose().to_owned()),
                "deepseek-chat",
            )
            .map_err(|e| bad("SMARTCHAT_DEEPSEEK_BASE_URL", &e))?;
            providers.push(p);
        }
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| CoreError::Internal(e.to_string()))?;
        let graph = GraphClient::new(&config.meta_graph_url, "v23.0", http)
            .map_err(|e| bad("SMARTCHAT_META_GRAPH_URL", &e))?;
        let endpoints = vec![
            (
                smartchat_assistant::ProviderKind::OpenAi,
                config.openai_base_url.clone(),
                "gpt-4o-mini".to_owned(),
            ),
            (
                smartchat_assistant::ProviderKind::DeepSeek,
                config.deepseek_base_url.clone(),
                "deepseek-chat".to_owned(),
            ),
        ];
        Ok(Self {
            store,
            providers: Arc::new(providers),
            endpoints: Arc::new(endpoints),
            tenant_clients: Arc::default(),
            graph: Arc::new(graph),
            limiter: Arc::new(RateLimiter::new(
                RateLimiterConfig::default(),
                TokioClock::default(),
            )),
            public_url: Arc::from(config.public_url.as_str()),
            analytics: None,
            routes: Arc::default(),
            done_jobs_kept: std::time::Duration::from_secs(
                config.done_jobs_kept_days.saturating_mul(86_400),
            ),
            concurrency: usize::try_from(config.pipeline_concurrency)
                .unwrap_or(1)
                .max(1),
            db_turns: Arc::new(tokio::sync::Semaphore::new(DB_TURNS)),
        })
    }

    /// The same pipeline running `n` jobs at once (at least one) in its [`worker`].
    pub fn with_concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Jobs a [`worker`] runs at once.
    pub fn concurrency(&self) -> usize {
        self.concurrency
    }

    /// A turn at the database for a job's reads and writes; see [`DbTurn`].
    pub(crate) async fn db_turn(&self) -> DbTurn {
        let mut turn = DbTurn {
            turns: self.db_turns.clone(),
            permit: None,
        };
        turn.take().await;
        turn
    }

    /// How long the retention pass keeps done jobs ([`crate::account::run_retention`]).
    pub fn done_jobs_kept(&self) -> std::time::Duration {
        self.done_jobs_kept
    }

    /// The same pipeline (providers, clients, rate limits) on pools of its own
    /// ([`Store::twin`], [`smartchat_core::analytics::Analytics::twin`]): what the
    /// background runtime's workers use.
    pub fn twin(
        &self,
        priority: smartchat_core::priority::BackgroundPriority,
    ) -> Result<Self, CoreError> {
        let mut p = self.clone();
        p.store = self.store.twin(priority)?;
        p.analytics = self
            .analytics
            .as_ref()
            .map(|a| a.twin(priority))
            .transpose()?;
        Ok(p)
    }

    /// Writes anonymized analytics as events happen.
    pub fn with_analytics(mut self, analytics: smartchat_core::analytics::Analytics) -> Self {
        self.analytics = Some(analytics);
        self
    }

    /// The analytics store, if any.
    pub fn analytics(&self) -> Option<&smartchat_core::analytics::Analytics> {
        self.analytics.as_ref()
    }

    /// Replaces the provider chain (tests point it at local servers).
    pub fn with_providers(mut self, providers: Vec<ChatProvider>) -> Self {
        self.providers = Arc::new(providers);
        self
    }
}

/// Clients built with tenants' own provider keys: (tenant, provider) → (digest of key and
/// endpoint, client).
type TenantClients = std::collections::HashMap<(TenantId, &'static str), ([u8; 32], ChatProvider)>;

impl Pipeline {
    /// The AI providers available to `tenant`, in failover order: the platform's, each with
    /// the tenant's own key where it set one, then those only the tenant has a key for (in
    /// [`smartchat_core::conversations::PROVIDER_NAMES`] order). A provider with a tenant
    /// key counts as configured for that tenant. Keys are opened on every call, so a
    /// shredded tenant fails closed.
    pub async fn providers_for(&self, tenant: TenantId) -> Result<Vec<ChatProvider>, CoreError> {
        let keys = match self.store.provider_keys(tenant).await {
            Ok(k) => k,
            Err(e) => {
                self.clients().retain(|(t, _), _| *t != tenant);
                return Err(e);
            }
        };
        if keys.is_empty() {
            return Ok(self.providers.to_vec());
        }
        let mut out = Vec::with_capacity(self.providers.len() + keys.len());
        for p in self.providers.iter() {
            let name = provider_code(p).1;
            match keys.iter().find(|(n, _)| n == name) {
                Some((_, k)) => {
                    out.push(self.tenant_client(tenant, name, p.base_url(), p.model(), k)?)
                }
                None => out.push(p.clone()),
            }
        }
        for (name, k) in &keys {
            if out.iter().any(|p| provider_code(p).1 == name.as_str()) {
                continue;
            }
            let Some((kind, base, model)) = self
                .endpoints
                .iter()
                .find(|(kind, _, _)| kind_name(kind) == name.as_str())
            else {
                continue;
            };
            let name = kind_name(kind);
            out.push(self.tenant_client(tenant, name, base, model, k)?);
        }
        Ok(out)
    }

    /// The names of the providers available to `tenant` (see [`Pipeline::providers_for`]).
    pub async fn configured_providers_for(
        &self,
        tenant: TenantId,
    ) -> Result<Vec<&'static str>, CoreError> {
        Ok(self
            .providers_for(tenant)
            .await?
            .iter()
            .map(|p| provider_code(p).1)
            .collect())
    }

    fn clients(&self) -> std::sync::MutexGuard<'_, TenantClients> {
        self.tenant_clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn tenant_client(
        &self,
        tenant: TenantId,
        name: &'static str,
        base_url: &str,
        model: &str,
        key: &smartchat_core::config::Secret,
    ) -> Result<ChatProvider, CoreError> {
        let mut h = blake3::Hasher::new();
        h.update(key.expose().as_bytes());
        h.update(b"\n");
        h.update(base_url.as_bytes());
        h.update(b"\n");
        h.update(model.as_bytes());
        let digest = *h.finalize().as_bytes();
        if let Some((d, p)) = self.clients().get(&(tenant, name)) {
            if *d == digest {
                return Ok(p.clone());
            }
        }
        let kind = self
            .endpoints
            .iter()
            .map(|(k, _, _)| k)
            .find(|k| kind_name(k) == name)
            .cloned()
            .ok_or_else(|| CoreError::Internal("unknown provider".into()))?;
        let p = ChatProvider::new(
            kind,
            base_url,
            secrecy::SecretString::from(key.expose().to_owned()),
            model,
        )
        .map_err(|e| CoreError::Invalid {
            field: "keys",
            reason: e.to_string(),
        })?;
        self.clients().insert((tenant, name), (digest, p.clone()));
        Ok(p)
    }
}

fn kind_name(kind: &smartchat_assistant::ProviderKind) -> &'static str {
    match kind {
        smartchat_assistant::ProviderKind::OpenAi => "openai",
        smartchat_assistant::ProviderKind::DeepSeek => "deepseek",
        smartchat_assistant::ProviderKind::Compatible(_) => "compatible",
    }
}

fn time_of(micros: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// The body to store for an inbound message: what the customer said, or a summary of the
/// media (Meta's media id and type; downloading media is a later issue). Sealed either way.
pub(crate) fn body_of(kind: &MessageKind) -> Option<String> {
    match kind {
        MessageKind::Text { body } => Some(body.as_str().to_owned()),
        MessageKind::Image(m)
        | MessageKind::Audio(m)
        | MessageKind::Video(m)
        | MessageKind::Document(m)
        | MessageKind::Sticker(m) => Some(
            serde_json::json!({
                "media_id": m.id,
                "mime_type": m.mime_type,
                "caption": m.caption.as_ref().map(|c| c.as_str()),
            })
            .to_string(),
        ),
        MessageKind::Interactive(
            smartchat_whatsapp::Interactive::ButtonReply { title, .. }
            | smartchat_whatsapp::Interactive::ListReply { title, .. },
        ) => Some(title.as_str().to_owned()),
        MessageKind::Button { text, .. } => text.as_ref().map(|t| t.as_str().to_owned()),
        _ => None,
    }
}

/// The assistant's view of a tenant's profile; missing fields get sensible defaults.
pub fn business_profile(profile: &serde_json::Value) -> BusinessProfile {
    let mut v = profile.clone();
    if let Some(o) = v.as_object_mut() {
        o.entry("business_type").or_insert("business".into());
        o.entry("timezone").or_insert("Asia/Kolkata".into());
        o.entry("handoff_message")
            .or_insert("Thank you! A member of our team will reply to you here shortly.".into());
    }
    serde_json::from_value::<BusinessProfile>(v.clone())
        .ok()
        .filter(|p| p.validate().is_ok())
        .unwrap_or_else(|| {
            let name = profile.get("name").and_then(|n| n.as_str()).unwrap_or("our business").to_owned();
            serde_json::from_value(serde_json::json!({
                "name": name,
                "business_type": "business",
                "timezone": "Asia/Kolkata",
                "handoff_message": "Thank you! A member of our team will reply to you here shortly.",
            }))
            .unwrap_or_else(|_| fallback_profile())
        })
}

#[expect(
    clippy::expect_used,
    reason = "a constant profile that the assistant's own tests accept"
)]
fn fallback_profile() -> BusinessProfile {
    BusinessProfile::from_json(
        r#"{"name":"our business","business_type":"business","timezone":"UTC","handoff_message":"A member of our team will reply shortly."}"#,
    )
    .expect("constant profile")
}

fn provider_code(p: &ChatProvider) -> (ProviderCode, &'static str) {
    match p.name() {
        smartchat_assistant::ProviderKind::OpenAi => (ProviderCode::OPENAI, "openai"),
        smartchat_assistant::ProviderKind::DeepSeek => (ProviderCode::DEEPSEEK, "deepseek"),
        smartchat_assistant::ProviderKind::Compatible(_) => {
            (ProviderCode::COMPATIBLE, "compatible")
        }
    }
}

/// The providers a tenant's chain names, in its order, among those the platform configured
/// (`None`: all of them, in the platform's order). A name the platform has no key for is
/// skipped; the offline assistant always ends the chain.
pub fn tenant_providers<'a>(
    configured: &'a [ChatProvider],
    chain: Option<&[String]>,
) -> Vec<&'a ChatProvider> {
    match chain {
        None => configured.iter().collect(),
        Some(names) => names
            .iter()
            .filter_map(|n| configured.iter().find(|p| provider_code(p).1 == n.as_str()))
            .collect(),
    }
}

/// The ledger code of a provider kind.
pub fn kind_code(kind: &smartchat_assistant::ProviderKind) -> ProviderCode {
    match kind {
        smartchat_assistant::ProviderKind::OpenAi => ProviderCode::OPENAI,
        smartchat_assistant::ProviderKind::DeepSeek => ProviderCode::DEEPSEEK,
        smartchat_assistant::ProviderKind::Compatible(_) => ProviderCode::COMPATIBLE,
    }
}

/// The `ai_provider_call` entry of one provider attempt, on `base` (its tenant, subject,
/// purpose, policy version and references): provider as actor, model digest, categories,
/// request digest, latency, tokens, HTTP status and outcome; never text.
pub fn provider_call(base: EntryDraft, a: &smartchat_assistant::AttemptRecord) -> EntryDraft {
    let code = kind_code(&a.provider);
    let ok = matches!(a.outcome, smartchat_assistant::AttemptOutcome::Success);
    let mut d = base
        .outcome(if ok {
            Outcome::SUCCESS
        } else {
            Outcome::FAILURE
        })
        .attr(AttrKey::PROVIDER, AttrValue::Code(u32::from(code.0)))
        .attr(
            AttrKey::MODEL_DIGEST,
            AttrValue::Digest(*blake3::hash(a.model.as_bytes()).as_bytes()),
        )
        .attr(
            AttrKey::DATA_CATEGORY,
            AttrValue::Code(u32::from(DataCategory::MESSAGE_TEXT.0)),
        )
        .attr(
            AttrKey::DATA_CATEGORY,
            AttrValue::Code(u32::from(DataCategory::CONVERSATION_HISTORY.0)),
        )
        .attr(AttrKey::REQUEST_DIGEST, AttrValue::Digest(a.request_digest))
        .attr(
            AttrKey::LATENCY_MICROS,
            AttrValue::U64(a.latency_ms.saturating_mul(1000)),
        );
    d.actor = Actor::Provider(code.0);
    if let Some(t) = &a.tokens {
        d = d
            .attr(AttrKey::TOKENS_IN, AttrValue::U64(u64::from(t.prompt)))
            .attr(AttrKey::TOKENS_OUT, AttrValue::U64(u64::from(t.completion)));
    }
    if let Some(s) = a.http_status {
        d = d.attr(AttrKey::HTTP_STATUS, AttrValue::Code(u32::from(s)));
    }
    d
}

/// A job about one customer message (`reply`, `lead`), at most one of each kind per message.
pub(crate) fn message_job(kind: &'static str, tenant: TenantId, message: MessageId) -> NewJob {
    let mut job = NewJob::now(
        QUEUE,
        kind,
        serde_json::json!({ "message": message.to_string() }),
    );
    job.tenant_id = Some(tenant.to_string());
    job.dedupe_key = Some(format!("{kind}:{message}"));
    job
}

/// Runs one `reply` job.
pub async fn run_reply(p: &Pipeline, job: &Job) -> Result<(), CoreError> {
    let mut turn = p.db_turn().await;
    let store = &p.store;
    let payload = job.payload()?;
    let mid: MessageId = payload["message"].as_str().unwrap_or_default().parse()?;
    let mut c = store.db.conn().await?;
    let inbound = store.message_row(&mut c, mid).await?;
    let tenant: TenantId = inbound.tenant_id.parse()?;
    let conv_id: ConversationId = inbound.conversation_id.parse()?;
    let conv = store.conversation(&mut c, conv_id).await?;
    let key = store.tenant_key(tenant).await?;
    let flags = store.subject_flags(&mut c, conv.subject_id).await?;
    let mut history = store
        .recent_messages(&mut c, tenant, &conv, &key, HISTORY)
        .await?;
    let contact = store
        .subject_contact_in(&mut c, tenant, conv.subject_id, &key)
        .await?;
    drop(c);
    let Some(pos) = history.iter().position(|m| m.row.id == inbound.id) else {
        return Err(CoreError::NotFound {
            what: "message in its conversation",
        });
    };
    let current = history.remove(pos);
    let text = current.body.clone().unwrap_or_default();
    let view = store.tenant(tenant).await?;
    let profile = business_profile(&view.profile.0);
    let effective = store.policy.effective(tenant).await?;
    let version = effective.version();
    let pseudonym_bytes = key.pseudonym(&conv.subject_id.to_string());
    let own_number = contact.wa_id.clone();
    let redact = |t: &str| effective.redactor().redact(t, own_number.as_deref()).text;
    let subject_state = SubjectState {
        objected_to_ai: flags.objected,
        opted_out_of_follow_ups: flags.opted_out,
        ..SubjectState::default()
    };
    let mut drafts = Vec::new();
    let base = |kind: EventKind, actor: Actor| {
        EntryDraft::new(kind, actor)
            .tenant(tenant.bytes())
            .subject(pseudonym_bytes)
            .policy_version(version.0)
            .purpose(Purpose::SERVICE_DELIVERY)
            .reference(Reference::id(RefKind::MESSAGE, mid.bytes()))
    };

    // The business took the conversation over, or the customer objected to AI: no AI.
    let human = conv.mode == "human";
    let mut chain = Vec::new();
    if !human && !flags.objected {
        let tenant_chain = store.provider_chain(tenant).await?;
        let available = p.providers_for(tenant).await?;
        for prov in tenant_providers(&available, tenant_chain.as_deref()) {
            let (code, name) = provider_code(prov);
            let pid =
                ProcessorId::new(name).map_err(|_| CoreError::Internal("processor id".into()))?;
            let d = effective.may(
                &pid,
                &[Category::Conversations, Category::BusinessInfo],
                smartchat_policies::Purpose::RespondToEnquiries,
                &subject_state,
            );
            if d.is_allow() {
                chain.push(prov.clone());
            } else {
                let reason = d.deny_reason().map(|r| r.code.as_str()).unwrap_or("denied");
                drafts.push(
                    base(EventKind::ASSISTANT_DECISION, Actor::System)
                        .outcome(Outcome::REJECTED)
                        .attr(AttrKey::PROVIDER, AttrValue::Code(u32::from(code.0)))
                        .attr(
                            AttrKey::REASON,
                            AttrValue::Digest(*blake3::hash(reason.as_bytes()).as_bytes()),
                        ),
                );
            }
        }
    }
    let turns: Vec<ConversationTurn> = history
        .iter()
        .filter_map(|m| {
            let body = m.body.as_deref()?;
            let role = match m.row.author.as_str() {
                "customer" => Role::Customer,
                "human" => Role::Human,
                _ => Role::Assistant,
            };
            Some(ConversationTurn {
                role,
                text: redact(body),
                at: time_of(m.row.created_at),
            })
        })
        .collect();
    let pseudonym = Pseudonym::parse(&hex::encode(pseudonym_bytes))
        .map_err(|e| CoreError::Internal(e.to_string()))?;
    let now = OffsetDateTime::now_utc();
    // What happens to the conversation besides the reply, applied with it in one
    // transaction.
    let mut to_human = false;
    let mut opt_out = false;
    let mut chat_right: Option<smartchat_policies::Right> = None;
    let reply_text = if human {
        // Taken over: a person answers; the assistant stays silent.
        drafts.push(
            base(EventKind::ASSISTANT_DECISION, Actor::System)
                .attr(AttrKey::DECISION, AttrValue::Code(DECISION_IGNORE)),
        );
        None
    } else if flags.objected {
        // Objected to AI processing: no provider, no assistant; the conversation is flagged
        // for a person and the customer told so, once.
        to_human = true;
        drafts.push(
            base(EventKind::ASSISTANT_DECISION, Actor::System)
                .attr(AttrKey::DECISION, AttrValue::Code(DECISION_HAND_OVER))
                .attr(AttrKey::REASON, AttrValue::Code(HAND_OVER_OBJECTION)),
        );
        Some(profile.handoff_message.clone())
    } else {
        let req = ReplyRequest::new(profile.clone(), turns, redact(&text), pseudonym, now)
            .map_err(|e| CoreError::Invalid {
                field: "reply request",
                reason: e.to_string(),
            })?
            .with_flags(RequestFlags {
                allow_providers: !chain.is_empty(),
                ..RequestFlags::default()
            });
        let reply = turn
            .outside(Assistant::new(chain.clone()).reply(&req))
            .await;
        for a in &reply.attempts {
            drafts.push(provider_call(
                base(EventKind::AI_PROVIDER_CALL, Actor::System),
                a,
            ));
        }
        let mut decision = base(EventKind::ASSISTANT_DECISION, Actor::System);
        match reply.intent {
            Intent::Handoff => {
                to_human = true;
                decision = decision
                    .attr(AttrKey::DECISION, AttrValue::Code(DECISION_HAND_OVER))
                    .attr(AttrKey::REASON, AttrValue::Code(HAND_OVER_ASKED));
            }
            Intent::OptOut => {
                opt_out = true;
                decision = decision.attr(AttrKey::DECISION, AttrValue::Code(DECISION_ANSWER));
            }
            Intent::DeleteMyData => {
                chat_right = Some(smartchat_policies::Right::Deletion);
                decision = decision.attr(AttrKey::DECISION, AttrValue::Code(DECISION_ANSWER));
            }
            Intent::ExportMyData => {
                chat_right = Some(smartchat_policies::Right::Access);
                decision = decision.attr(AttrKey::DECISION, AttrValue::Code(DECISION_ANSWER));
            }
            _ => {
                decision = decision.attr(AttrKey::DECISION, AttrValue::Code(DECISION_ANSWER));
            }
        }
        // Which provider wrote the answer; none means the offline assistant did.
        if let ReplySource::Provider { provider, .. } = &reply.source {
            let code = kind_code(provider);
            decision = decision.attr(AttrKey::PROVIDER, AttrValue::Code(u32::from(code.0)));
        }
        drafts.push(decision);
        Some(reply.text)
    };
    let author = "assistant";

    // A rights request asked in the chat is opened before the transaction (it writes on
    // its own); its job is queued inside it.
    let chat_request = match chat_right {
        Some(right) => Some(crate::rights::open_from_chat(p, &conv, right).await?),
        None => None,
    };
    let mut tx = store.db.begin().await?;
    let answered = reply_text.is_some();
    if let Some(reply_text) = reply_text {
        queue_outbound(&mut tx, store, &key, &conv, &reply_text, author).await?;
    }
    if let Some(req) = &chat_request {
        crate::rights::queue_chat_request(&mut tx, &conv, req).await?;
    }
    if to_human {
        store
            .set_conversation_mode(&mut tx, conv.id, "human")
            .await?;
    }
    if opt_out {
        store
            .set_subject_flags(
                &mut tx,
                conv.subject_id,
                SubjectFlags {
                    opted_out: true,
                    ..flags
                },
            )
            .await?;
    }
    for d in &drafts {
        smartchat_core::audit::enqueue(&mut tx, d).await?;
    }
    // The message's lead job, queued with the reply's outcome (at most once per message).
    jobs::enqueue(&mut tx, &message_job("lead", tenant, mid)).await?;
    jobs::complete(&mut tx, job.id).await?;
    tx.commit().await?;
    // Counted after the commit: a failure here loses a count, never a message.
    if let Err(e) = reply_analytics(p, tenant, &inbound, conv.subject_id, &drafts, answered).await {
        tracing::warn!(error = %e, "analytics not recorded");
    }
    Ok(())
}

/// Counts an answered customer message in the analytics store: the message, the time to
/// the reply, and each provider call with its tokens.
async fn reply_analytics(
    p: &Pipeline,
    tenant: TenantId,
    inbound: &smartchat_core::store::MessageRow,
    subject: smartchat_core::ids::SubjectId,
    drafts: &[EntryDraft],
    answered: bool,
) -> Result<(), CoreError> {
    use smartchat_core::analytics::{Event, metric, response_bucket};
    let Some(a) = &p.analytics else {
        return Ok(());
    };
    let (new_in_hour, new_in_day) = p
        .store
        .first_in_period(tenant, subject, "in", inbound.created_at)
        .await?;
    let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(inbound.created_at) * 1000)
        .unwrap_or_else(|_| OffsetDateTime::now_utc());
    let ev = |metric, dimension, value| Event {
        tenant,
        at,
        metric,
        dimension,
        value,
        new_in_hour,
        new_in_day,
    };
    a.record(&ev(metric::MESSAGES_IN, "", 1)).await?;
    if answered {
        let ms = (now_micros() - inbound.created_at) / 1000;
        a.record(&ev(metric::RESPONSE_TIME, response_bucket(ms), 1))
            .await?;
    }
    for d in drafts
        .iter()
        .filter(|d| d.kind == EventKind::AI_PROVIDER_CALL)
    {
        let mut provider = "other";
        let (mut tokens_in, mut tokens_out) = (0u64, 0u64);
        for (k, v) in &d.attrs {
            match (*k, v) {
                (AttrKey::PROVIDER, AttrValue::Code(c)) => {
                    provider = u16::try_from(*c)
                        .ok()
                        .and_then(|c| smartchat_ledger::ProviderCode(c).name())
                        .unwrap_or("other");
                }
                (AttrKey::TOKENS_IN, AttrValue::U64(n)) => tokens_in += n,
                (AttrKey::TOKENS_OUT, AttrValue::U64(n)) => tokens_out += n,
                _ => {}
            }
        }
        a.record(&ev(metric::PROVIDER_CALLS, provider, 1)).await?;
        let tokens = i64::try_from(tokens_in + tokens_out).unwrap_or(i64::MAX);
        if tokens > 0 {
            a.record(&ev(metric::PROVIDER_TOKENS, provider, tokens))
                .await?;
            let cost = smartchat_core::analytics::cost_micro_usd(provider, tokens_in, tokens_out);
            if cost > 0 {
                a.record(&ev(metric::PROVIDER_COST, provider, cost)).await?;
            }
        }
    }
    Ok(())
}

/// Counts a message sent to a customer (by its author) in the analytics store.
async fn sent_analytics(
    p: &Pipeline,
    tenant: TenantId,
    subject: smartchat_core::ids::SubjectId,
    created_at: i64,
    author: &str,
) -> Result<(), CoreError> {
    let Some(a) = &p.analytics else {
        return Ok(());
    };
    let (new_in_hour, new_in_day) = p
        .store
        .first_in_period(tenant, subject, "out", created_at)
        .await?;
    a.record(&smartchat_core::analytics::Event {
        tenant,
        at: OffsetDateTime::now_utc(),
        metric: smartchat_core::analytics::metric::MESSAGES_OUT,
        dimension: author,
        value: 1,
        new_in_hour,
        new_in_day,
    })
    .await
}

/// `decision` codes of [`EventKind::ASSISTANT_DECISION`] (docs/ledger-format.md §2.5).
const DECISION_ANSWER: u32 = 1;
const DECISION_HAND_OVER: u32 = 2;
const DECISION_IGNORE: u32 = 3;
/// `reason` of a hand-over: the customer asked for a person.
const HAND_OVER_ASKED: u32 = 1;
/// `reason` of a hand-over: the subject objected to AI processing.
const HAND_OVER_OBJECTION: u32 = 2;

/// Outcome of a send attempt, for the worker.
#[derive(Debug)]
pub enum SendOutcome {
    /// Sent (or delivered to the sandbox).
    Sent,
    /// Will not be sent; the message is marked failed.
    Failed(String),
    /// Try again later.
    Retry(String, Option<Duration>),
}

/// Runs one `send` job.
pub async fn run_send(p: &Pipeline, job: &Job) -> Result<SendOutcome, CoreError> {
    let mut turn = p.db_turn().await;
    let store = &p.store;
    let payload = job.payload()?;
    let mid: MessageId = payload["message"].as_str().unwrap_or_default().parse()?;
    let mut c = store.db.conn().await?;
    let gone = |why: &'static str| async move {
        // The customer was deleted meanwhile: nothing can be sent, nothing to retry.
        let mut tx = store.db.begin().await?;
        jobs::complete(&mut tx, job.id).await?;
        tx.commit().await?;
        Ok::<SendOutcome, CoreError>(SendOutcome::Failed(why.into()))
    };
    let msg = match store.message_row(&mut c, mid).await {
        Ok(m) => m,
        Err(CoreError::NotFound { .. }) => {
            drop(c);
            return gone("the message was deleted").await;
        }
        Err(e) => return Err(e),
    };
    if msg.status != "queued" {
        // Already sent by an earlier attempt whose completion was lost: done, once.
        let mut tx = store.db.begin().await?;
        jobs::complete(&mut tx, job.id).await?;
        tx.commit().await?;
        return Ok(SendOutcome::Sent);
    }
    let tenant: TenantId = msg.tenant_id.parse()?;
    let (author, created_at) = (msg.author.clone(), msg.created_at);
    let conv = store
        .conversation(&mut c, msg.conversation_id.parse()?)
        .await?;
    let key = store.tenant_key(tenant).await?;
    let contact = match store
        .subject_contact_in(&mut c, tenant, conv.subject_id, &key)
        .await
    {
        Ok(contact) => contact,
        Err(CoreError::Shredded { .. } | CoreError::NotFound { .. }) => {
            drop(c);
            return gone("the customer's data was deleted").await;
        }
        Err(e) => return Err(e),
    };
    let template = if msg.kind == "template" {
        Some(store.message_template(&mut c, &key, &msg).await?)
    } else {
        None
    };
    let body = store
        .open_message(&mut c, tenant, &key, msg)
        .await?
        .body
        .unwrap_or_default();
    drop(c);
    let token = store.access_token(tenant, &conv.phone_number_id).await?;
    let now = OffsetDateTime::now_utc();
    let ledger_sent = |outcome: Outcome, code: Option<i64>| {
        let mut d = EntryDraft::new(EventKind::MESSAGE_SENT, Actor::System)
            .tenant(tenant.bytes())
            .subject(key.pseudonym(&conv.subject_id.to_string()))
            .reference(Reference::id(RefKind::MESSAGE, mid.bytes()))
            .outcome(outcome);
        if let Some(c) = code {
            d = d.attr(
                AttrKey::REASON,
                AttrValue::Code(u32::try_from(c).unwrap_or(0)),
            );
        }
        d
    };
    // Booking links go out tracked: recorded before the send, so a click can never
    // arrive before its row (a retried send reuses the same tokens).
    let urls: Vec<String> = business_profile(&store.tenant(tenant).await?.profile.0)
        .booking_links
        .iter()
        .map(|l| l.url.clone())
        .collect();
    let mut links = Vec::new();
    let (body, found) = smartchat_core::booking::rewrite(&key, mid, &p.public_url, &urls, &body);
    links.extend(found);
    let template = template.map(|mut t| {
        for v in &mut t.params {
            let (tracked, found) =
                smartchat_core::booking::rewrite(&key, mid, &p.public_url, &urls, v);
            *v = tracked;
            links.extend(found);
        }
        t
    });
    links.dedup_by(|a, b| a.token == b.token);
    store.track_links(tenant, conv.id, mid, &links).await?;
    let kind = if template.is_some() {
        OutboundKind::Template
    } else {
        OutboundKind::FreeForm
    };
    let outcome = match check_window(kind, conv.last_inbound_at.map(time_of), now) {
        Err(_) => Err((
            SendOutcome::Failed(
                "outside the 24-hour customer service window; a template is needed".into(),
            ),
            Some(131047),
        )),
        Ok(permit) if token.expose().is_empty() => {
            let _ = permit;
            Ok(format!("sandbox.{}", uuid::Uuid::new_v4().simple()))
        }
        Ok(permit) => {
            let to = match (&contact.wa_id, &contact.bsuid) {
                (Some(w), _) => smartchat_whatsapp::WaId::new(w.clone())
                    .map(Recipient::WaId)
                    .ok(),
                (None, Some(b)) => smartchat_whatsapp::Bsuid::new(b.clone())
                    .map(Recipient::Bsuid)
                    .ok(),
                _ => None,
            };
            let pnid = smartchat_whatsapp::PhoneNumberId::new(conv.phone_number_id.as_str())
                .map_err(|e| CoreError::Internal(e.to_string()))?;
            let token = AccessToken::new(token.expose().to_owned())
                .map_err(|e| CoreError::Internal(e.to_string()))?;
            match to {
                None => Err((
                    SendOutcome::Failed("the customer has no address Meta accepts".into()),
                    None,
                )),
                Some(to) => {
                    let sent = turn
                        .outside(async {
                            p.limiter.acquire(&pnid, &to).await;
                            match &template {
                                Some(t) => {
                                    let call = smartchat_whatsapp::Template {
                                        name: t.name.clone(),
                                        language: t.language.clone(),
                                        components: template_components(&t.params),
                                    };
                                    p.graph.send_template(&pnid, &token, &to, &call).await
                                }
                                None => {
                                    p.graph
                                        .send_text(&pnid, &token, &to, &body, None, permit)
                                        .await
                                }
                            }
                        })
                        .await;
                    match sent {
                        Ok(sent) => Ok(sent.wamid.as_str().to_owned()),
                        Err(e) => Err(classify(&e)),
                    }
                }
            }
        }
    };
    let result = match outcome {
        Ok(wamid) => {
            record_sent(store, job, mid, &wamid, || {
                ledger_sent(Outcome::SUCCESS, None)
            })
            .await?;
            SendOutcome::Sent
        }
        Err((outcome, code)) => {
            let mut tx = store.db.begin().await?;
            let outcome = match outcome {
                // Attempts left: the worker schedules the retry; nothing changes here.
                SendOutcome::Retry(why, after) if job.attempts < job.max_attempts => {
                    tx.rollback().await?;
                    return Ok(SendOutcome::Retry(why, after));
                }
                // Out of attempts: a retryable error becomes a failure like any other.
                SendOutcome::Retry(why, _) => SendOutcome::Failed(why),
                other => other,
            };
            let error_code = code.and_then(|c| i32::try_from(c).ok());
            store
                .advance_status(&mut tx, mid, "queued", "failed", error_code, now_micros())
                .await?;
            smartchat_core::audit::enqueue(&mut tx, &ledger_sent(Outcome::FAILURE, code)).await?;
            jobs::complete(&mut tx, job.id).await?;
            tx.commit().await?;
            outcome
        }
    };
    if matches!(result, SendOutcome::Sent) {
        if let Err(e) = sent_analytics(p, tenant, conv.subject_id, created_at, &author).await {
            tracing::warn!(error = %e, "analytics not recorded");
        }
    }
    Ok(result)
}

/// Records message `mid`, which Meta accepted as `wamid`, as sent, and completes its job.
/// Meta has the message already: failing the job here would send it again on the retry (the
/// Graph API has no idempotency key), so a database that refuses for a moment is asked
/// again, up to [`RECORD_SENT_ATTEMPTS`] times, before the error is returned.
async fn record_sent(
    store: &Store,
    job: &Job,
    mid: MessageId,
    wamid: &str,
    draft: impl Fn() -> EntryDraft,
) -> Result<(), CoreError> {
    let mut attempt = 1;
    loop {
        let recorded = async {
            let mut tx = store.db.begin().await?;
            if attempt > 1 && store.message_row(&mut tx, mid).await?.status != "queued" {
                // The last try's commit went through after all (its answer was lost).
                return Ok(());
            }
            store.set_wamid(&mut tx, mid, wamid).await?;
            store
                .advance_status(&mut tx, mid, "queued", "sent", None, now_micros())
                .await?;
            smartchat_core::audit::enqueue(&mut tx, &draft()).await?;
            jobs::complete(&mut tx, job.id).await?;
            tx.commit().await
        };
        match recorded.await {
            Err(e @ (CoreError::Database(_) | CoreError::Query(_)))
                if attempt < RECORD_SENT_ATTEMPTS =>
            {
                tracing::warn!(job.id = job.id, attempt, error = %e,
                    "a sent message could not be recorded; trying again");
                tokio::time::sleep(RECORD_SENT_PAUSE.saturating_mul(1 << attempt)).await;
                attempt += 1;
            }
            done => return done,
        }
    }
}

fn classify(e: &SendError) -> (SendOutcome, Option<i64>) {
    let code = e.code();
    match e.class() {
        ErrorClass::Retry => (
            SendOutcome::Retry(
                format!("graph api: retryable error {}", code.unwrap_or(0)),
                e.retry_after(),
            ),
            code,
        ),
        ErrorClass::Permanent => (
            SendOutcome::Failed(format!("graph api: error {}", code.unwrap_or(0))),
            code,
        ),
        ErrorClass::AlertOwner => {
            tracing::error!(
                graph.code = code.unwrap_or(0),
                "Meta refused to send: the business must act (billing, locked account or policy)"
            );
            (
                SendOutcome::Failed(format!(
                    "graph api: error {} needs the owner",
                    code.unwrap_or(0)
                )),
                code,
            )
        }
    }
}

/// Claims and runs one job; returns whether there was one.
pub async fn run_one(p: &Pipeline) -> Result<bool, CoreError> {
    let Some(job) = jobs::claim(&p.store.db, QUEUE, LEASE).await? else {
        return Ok(false);
    };
    run_claimed(p, job).await?;
    Ok(true)
}

/// Runs a job this process claimed, and records a failure on it. A reply, a send and a
/// lead take a database turn ([`DB_TURNS`]) for their reads and writes only; any other job
/// for its whole run.
async fn run_claimed(p: &Pipeline, job: Job) -> Result<(), CoreError> {
    let res = match job.kind.as_str() {
        "reply" => run_reply(p, &job).await.map(|()| None),
        "send" => run_send(p, &job).await.map(|o| match o {
            SendOutcome::Retry(why, after) => Some((why, after)),
            _ => None,
        }),
        "lead" => crate::leads::run_lead(p, &job).await.map(|()| None),
        kind => {
            let _turn = p.db_turn().await;
            match kind {
                "follow_up" => crate::follow_ups::run_follow_up(p, &job)
                    .await
                    .map(|()| None),
                "dsr" => crate::rights::run_dsr(p, &job).await.map(|()| None),
                "purge_subject" => crate::rights::run_purge(p, &job).await.map(|()| None),
                other => Err(CoreError::Internal(format!("unknown job kind {other}"))),
            }
        }
    };
    let (why, permanent, after) = match res {
        Ok(None) => return Ok(()),
        Ok(Some((why, after))) => (why, false, after),
        Err(e) => {
            let permanent = matches!(
                e,
                CoreError::NotFound { .. } | CoreError::Shredded { .. } | CoreError::Invalid { .. }
            );
            tracing::warn!(job.id = job.id, job.kind = %job.kind, error = %e, "job failed");
            (e.to_string(), permanent, None)
        }
    };
    // Only a failure has something left to write.
    let _turn = p.db_turn().await;
    jobs::fail(&p.store.db, &job, &why, permanent, after).await?;
    Ok(())
}

/// Runs jobs one after another until none is due (tests, `smartchat chat`).
pub async fn drain(p: &Pipeline) -> Result<usize, CoreError> {
    let mut n = 0;
    while run_one(p).await? {
        n += 1;
    }
    Ok(n)
}

/// A worker: claims jobs and runs up to [`Pipeline::concurrency`] of them at once, until
/// `shutdown` changes; then claims no more and lets the jobs under way finish. With nothing
/// due it looks again every 100 ms. A job that waits (a provider's answer, the Graph API, a
/// recipient's pair rate of about one message per 6 s) holds one of its places, not the
/// queue.
pub async fn worker(p: Pipeline, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let places = Arc::new(tokio::sync::Semaphore::new(p.concurrency()));
    let mut running = tokio::task::JoinSet::new();
    loop {
        while let Some(done) = running.try_join_next() {
            report_panic(done);
        }
        // A stop request is honoured between claims, not only when the queue is empty.
        if *shutdown.borrow() {
            break;
        }
        let place = tokio::select! {
            _ = shutdown.changed() => break,
            place = places.clone().acquire_owned() => match place {
                Ok(place) => place,
                Err(_) => break,
            },
        };
        match jobs::claim(&p.store.db, QUEUE, LEASE).await {
            Ok(Some(job)) => {
                let p = p.clone();
                running.spawn(async move {
                    let _place = place;
                    let (id, kind) = (job.id, job.kind.clone());
                    if let Err(e) = run_claimed(&p, job).await {
                        tracing::error!(job.id = id, job.kind = %kind, error = %e, "job outcome not recorded");
                    }
                });
                continue;
            }
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "job queue unavailable"),
        }
        drop(place);
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
    while let Some(done) = running.join_next().await {
        report_panic(done);
    }
}

/// Logs a job task that panicked (its lease expires and another claim runs it again).
fn report_panic(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        if e.is_panic() {
            tracing::error!("a pipeline job panicked; it runs again when its lease expires");
        }
    }
}

/// The provider's name as the policy's processor registry and tenants' chains name it.
pub fn provider_name(p: &ChatProvider) -> &'static str {
    provider_code(p).1
}

impl Pipeline {
    /// The AI providers this server has keys for, in failover order.
    pub fn providers(&self) -> &[ChatProvider] {
        &self.providers
    }

    /// The names of the AI providers this server has keys for, in failover order.
    pub fn configured_providers(&self) -> Vec<&'static str> {
        self.providers.iter().map(|p| provider_code(p).1).collect()
    }
}

/// Stores an outbound text message sealed and queues its `send` job, in the caller's
/// transaction (a reply, a hand-written message, a follow-up).
pub async fn queue_outbound(
    tx: &mut smartchat_core::db::Tx,
    store: &Store,
    key: &TenantKey,
    conv: &smartchat_core::store::ConversationRow,
    text: &str,
    author: &str,
) -> Result<MessageId, CoreError> {
    let mid = store
        .insert_message(
            tx,
            conv.tenant_id,
            key,
            conv.subject_id,
            conv.id,
            &NewMessage {
                direction: "out",
                kind: "text",
                status: "queued",
                wamid: None,
                body: Some(text),
                author,
            },
            now_micros(),
        )
        .await?;
    enqueue_send(tx, conv, mid).await?;
    Ok(mid)
}

/// Queues the `send` job of an outbound message (once per message).
async fn enqueue_send(
    tx: &mut smartchat_core::db::Tx,
    conv: &smartchat_core::store::ConversationRow,
    mid: MessageId,
) -> Result<(), CoreError> {
    let mut send = NewJob::now(
        QUEUE,
        "send",
        serde_json::json!({ "message": mid.to_string() }),
    );
    send.tenant_id = Some(conv.tenant_id.to_string());
    send.dedupe_key = Some(format!("send:{mid}"));
    jobs::enqueue(tx, &send).await?;
    Ok(())
}

/// The `components` of a template send: the body's text parameters, in order.
fn template_components(values: &[String]) -> Vec<serde_json::Value> {
    if values.is_empty() {
        return Vec::new();
    }
    let parameters: Vec<serde_json::Value> = values
        .iter()
        .map(|v| serde_json::json!({ "type": "text", "text": v }))
        .collect();
    vec![serde_json::json!({ "type": "body", "parameters": parameters })]
}

/// Queues an approved template to the conversation's customer: the rendered text is the
/// message body (what the owner sees), the call itself (name, language, values) is sealed
/// beside it for the sender. Allowed outside the 24-hour window.
pub async fn queue_template(
    tx: &mut smartchat_core::db::Tx,
    store: &Store,
    key: &TenantKey,
    conv: &smartchat_core::store::ConversationRow,
    template: &smartchat_core::templates::Template,
    values: Vec<String>,
    author: &str,
) -> Result<MessageId, CoreError> {
    let text = smartchat_core::templates::render(&template.body, &values);
    let mid = store
        .insert_message(
            tx,
            conv.tenant_id,
            key,
            conv.subject_id,
            conv.id,
            &NewMessage {
                direction: "out",
                kind: "template",
                status: "queued",
                wamid: None,
                body: Some(&text),
                author,
            },
            now_micros(),
        )
        .await?;
    let call = smartchat_core::templates::TemplateUse {
        name: template.name.clone(),
        language: template.language.clone(),
        params: values,
    };
    store
        .set_message_template(tx, key, conv, mid, &call)
        .await?;
    enqueue_send(tx, conv, mid).await?;
    Ok(mid)
}

/// Why a hand-written reply was refused before anything was stored.
#[derive(Debug, thiserror::Error)]
pub enum ReplyRefused {
    /// The text is empty or longer than WhatsApp accepts.
    #[error("{0}")]
    Text(&'static str),
    /// The last customer message is more than 24 hours old: only a template may be sent.
    #[error(
        "outside the 24-hour customer service window: the customer last wrote more than 24 hours ago, so only an approved template can be sent"
    )]
    OutsideWindow,
}

/// WhatsApp's limit on a text message body, in characters.
pub const MAX_TEXT_CHARS: usize = 4096;

/// Queues a reply written by a member of the business: checks the text and the 24-hour
/// window first (a refusal stores nothing), then in one transaction stores the message
/// sealed, queues its `send` job and ledgers it with the member as actor. Writing by hand
/// does not take the conversation over; [`Store::set_mode`] does.
pub async fn queue_human_reply(
    p: &Pipeline,
    tenant: TenantId,
    conversation: ConversationId,
    member: [u8; 16],
    text: &str,
) -> Result<Result<MessageId, ReplyRefused>, CoreError> {
    let store = &p.store;
    let text = text.trim();
    if text.is_empty() {
        return Ok(Err(ReplyRefused::Text("the reply is empty")));
    }
    if text.chars().count() > MAX_TEXT_CHARS {
        return Ok(Err(ReplyRefused::Text(
            "the reply is longer than WhatsApp's 4096 characters",
        )));
    }
    let conv = store.tenant_conversation(tenant, conversation).await?;
    if check_window(
        OutboundKind::FreeForm,
        conv.last_inbound_at.map(time_of),
        OffsetDateTime::now_utc(),
    )
    .is_err()
    {
        return Ok(Err(ReplyRefused::OutsideWindow));
    }
    let key = store.tenant_key(tenant).await?;
    let mut tx = store.db.begin().await?;
    let mid = queue_outbound(&mut tx, store, &key, &conv, text, "human").await?;
    let draft = EntryDraft::new(EventKind::HUMAN_REPLY, Actor::Member(member))
        .tenant(tenant.bytes())
        .subject(key.pseudonym(&conv.subject_id.to_string()))
        .purpose(Purpose::SERVICE_DELIVERY)
        .reference(Reference::id(RefKind::CONVERSATION, conv.id.bytes()))
        .reference(Reference::id(RefKind::MESSAGE, mid.bytes()));
    smartchat_core::audit::enqueue(&mut tx, &draft).await?;
    tx.commit().await?;
    Ok(Ok(mid))
}

/// A Meta-shaped delivery of one text message from `from` to a sandbox number, so the
/// sandbox (`smartchat chat`, the sandbox endpoint) runs through the same pipeline as Meta's
/// webhook.
pub fn sandbox_payload(
    phone_number_id: &str,
    from: &smartchat_core::ids::PhoneNumber,
    text: &str,
) -> Result<WebhookPayload, CoreError> {
    let payload = serde_json::json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": "0", "changes": [{ "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": { "display_phone_number": "0", "phone_number_id": phone_number_id },
            "contacts": [{ "profile": { "name": "Sandbox customer" }, "wa_id": from.digits() }],
            "messages": [{
                "from": from.digits(),
                "id": format!("wamid.sandbox{}", uuid::Uuid::new_v4().simple()),
                "timestamp": OffsetDateTime::now_utc().unix_timestamp().to_string(),
                "type": "text",
                "text": { "body": text }
            }]
        }}]}]
    });
    smartchat_whatsapp::parse_payload(payload.to_string().as_bytes()).map_err(|e| {
        CoreError::Invalid {
            field: "sandbox message",
            reason: e.to_string(),
        }
    })
}

/// The tenant's first number that is not connected to Meta (no access token): where the
/// sandbox plays the customer. `None` when every number is connected, so the sandbox can
/// never send on a real number.
pub async fn sandbox_number(p: &Pipeline, tenant: TenantId) -> Result<Option<String>, CoreError> {
    let view = p.store.tenant(tenant).await?;
    for raw in &view.summary.phone_number_ids {
        let pnid: PhoneNumberId = raw.parse()?;
        if p.store
            .access_token(tenant, &pnid)
            .await?
            .expose()
            .is_empty()
        {
            return Ok(Some(raw.clone()));
        }
    }
    Ok(None)
}
