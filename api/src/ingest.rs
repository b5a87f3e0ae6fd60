//! Storing webhook deliveries: the first step of the pipeline.
//!
//! [`ingest_batch`] stores any number of deliveries in one transaction: it reads what they
//! need with one query per table (numbers, known messages, subjects with their keys,
//! conversations; on PostgreSQL the reads in the transaction are one round trip, and the
//! numbers' tenants and keys, kept from earlier batches, are confirmed in it), decides every
//! event in memory in delivery order (so a redelivery inside the batch, or a second message
//! of a new customer, sees what the batch itself stored), and writes each table with one
//! statement ([`smartchat_core::batch`]; on PostgreSQL the writes and the `COMMIT` are one
//! round trip). [`ingest`] is a batch of one.
//!
//! [`GroupCommit`] is the webhook's way in: concurrent deliveries queue for the committer
//! tasks; a free committer takes whatever queued while the others were busy, stores it as
//! one batch, and answers each delivery only after that commit. A batch that meets a row
//! another writer created meanwhile (a unique key) is read and decided again, once. If a batch fails, its
//! deliveries are stored again one by one, so a bad delivery fails alone and the others
//! lose nothing.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use smartchat_core::CoreError;
use smartchat_core::batch::{BatchWrites, BlindLookup, Inbound, KnownMessage};
use smartchat_core::crypto::{SubjectKey, TenantKey};
use smartchat_core::db::micros_of;
use smartchat_core::ids::{PhoneNumberId, SubjectId, TenantId};
use smartchat_core::store::{SubjectContact, identifier_blinds, status_rank};
use smartchat_ledger::{
    Actor, AttrKey, AttrValue, EntryDraft, EventKind, Hash, Outcome, RefKind, Reference,
};
use smartchat_whatsapp::{InboundEvent, StatusKind, WebhookPayload};
use tokio::sync::{mpsc, oneshot};

use crate::pipeline::{Pipeline, body_of, message_job};

/// What one delivery did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Ingested {
    /// New messages stored.
    pub messages: usize,
    /// Redelivered messages recognised and skipped.
    pub duplicates: usize,
    /// Statuses that moved a message forward.
    pub statuses: usize,
    /// Statuses that changed nothing (late, repeated or unknown).
    pub stale_statuses: usize,
    /// Events for numbers no tenant has connected.
    pub unknown_numbers: usize,
    /// Other subscribed fields recorded.
    pub other: usize,
}

/// Stores one webhook delivery in one transaction.
pub async fn ingest(p: &Pipeline, payload: &WebhookPayload) -> Result<Ingested, CoreError> {
    let mut done = ingest_batch(p, &[payload]).await?;
    done.pop()
        .ok_or_else(|| CoreError::Internal("a batch of one answered nothing".into()))
}

/// The business number an event is for, as Meta sent it.
fn number_of<'a>(event: &InboundEvent<'a>) -> Option<&'a str> {
    match event {
        InboundEvent::Message {
            phone_number_id, ..
        }
        | InboundEvent::Status {
            phone_number_id, ..
        }
        | InboundEvent::Error {
            phone_number_id, ..
        } => Some(phone_number_id.as_str()),
        InboundEvent::Other {
            phone_number_id, ..
        } => phone_number_id.map(|p| p.as_str()),
    }
}

/// A connected tenant as a batch uses it: its key and its policy version.
struct TenantCtx {
    key: Arc<TenantKey>,
    policy_version: Hash,
}

/// A subject known to the batch (stored before, or created by it).
struct SubjectCtx {
    id: SubjectId,
    wa_blind: Option<Vec<u8>>,
    bsuid_blind: Option<Vec<u8>>,
    /// `None` once shredded (stored subjects only).
    wrapped_key: Option<Vec<u8>>,
    /// The opened key, once needed.
    key: Option<SubjectKey>,
}

/// How Meta identified the sender of a message.
fn contact_of(
    message: &smartchat_whatsapp::Message,
    contact: Option<&smartchat_whatsapp::Contact>,
) -> SubjectContact {
    let from = &message.from;
    let ident = contact.map(|c| &c.identity);
    SubjectContact {
        wa_id: from
            .wa_id
            .as_ref()
            .or(ident.and_then(|i| i.wa_id.as_ref()))
            .map(|w| w.as_str().to_owned()),
        bsuid: from
            .user_id
            .as_ref()
            .or(ident.and_then(|i| i.user_id.as_ref()))
            .map(|b| b.as_str().to_owned()),
        phone: None,
        profile_name: contact
            .and_then(|c| c.name.as_ref())
            .map(|n| n.as_str().to_owned()),
    }
}

/// Stores several webhook deliveries in one transaction; one [`Ingested`] per delivery, in
/// order. Any error rolls the whole batch back.
///
/// The numbers' tenants and the tenants' keys come from `Routes`, what the last batch
/// read, when it holds every number of this one: then the batch's transaction reads the
/// numbers again in its first round trip and the tenants' keys are read on the key store at
/// the same time, and unless both are what the batch was decided on (a number moved, a key
/// shredded or replaced) the batch is rolled back and decided again on fresh reads. Otherwise
/// (a number not seen yet, or unknown) they are read first, as every batch did before.
pub async fn ingest_batch(
    p: &Pipeline,
    payloads: &[&WebhookPayload],
) -> Result<Vec<Ingested>, CoreError> {
    let mut numbers: Vec<String> = payloads
        .iter()
        .flat_map(|pl| pl.events())
        .filter_map(|e| number_of(&e))
        .filter(|raw| raw.parse::<PhoneNumberId>().is_ok())
        .map(str::to_owned)
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    numbers.sort();
    if let Some(routing) = p.routes.cached(&numbers) {
        if let Some(outs) = store_batch(p, payloads, &numbers, &routing, true).await? {
            return Ok(outs);
        }
        p.routes.forget();
    }
    let routing = read_routing(p, &numbers).await?;
    p.routes.remember(&routing);
    store_batch(p, payloads, &numbers, &routing, false)
        .await?
        .ok_or(CoreError::Conflict {
            what: "phone number routing",
        })
}

/// The tenants a batch's numbers belong to, with their keys.
pub(crate) struct Routing {
    owners: HashMap<String, TenantId>,
    keys: HashMap<TenantId, Arc<TenantKey>>,
}

/// The numbers' tenants and their keys as the last batches read them (so a batch can read
/// them in its own round trips instead of two before them; [`ingest_batch`] says how they
/// are confirmed). Numbers no tenant has connected are not kept.
#[derive(Default)]
pub(crate) struct Routes(std::sync::Mutex<HashMap<String, (TenantId, Arc<TenantKey>)>>);

/// At most this many numbers are kept; past it the cache starts again empty.
const ROUTES_LIMIT: usize = 10_000;

impl Routes {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (TenantId, Arc<TenantKey>)>> {
        // A panic while holding it cannot leave the map half-updated (single inserts).
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The routing of every one of `numbers`, or `None` unless all are kept.
    fn cached(&self, numbers: &[String]) -> Option<Routing> {
        let map = self.lock();
        let mut r = Routing {
            owners: HashMap::new(),
            keys: HashMap::new(),
        };
        for n in numbers {
            let (tenant, key) = map.get(n)?;
            r.owners.insert(n.clone(), *tenant);
            r.keys.insert(*tenant, key.clone());
        }
        Some(r)
    }

    fn remember(&self, r: &Routing) {
        let mut map = self.lock();
        if map.len() + r.owners.len() > ROUTES_LIMIT {
            map.clear();
        }
        for (n, t) in &r.owners {
            if let Some(k) = r.keys.get(t) {
                map.insert(n.clone(), (*t, k.clone()));
            }
        }
    }

    fn forget(&self) {
        self.lock().clear();
    }
}

/// Reads the numbers' tenants, then those tenants' keys.
async fn read_routing(p: &Pipeline, numbers: &[String]) -> Result<Routing, CoreError> {
    let store = &p.store;
    let owners = store.tenants_for_numbers(numbers).await?;
    let mut ids: Vec<String> = owners.values().map(ToString::to_string).collect();
    ids.sort();
    ids.dedup();
    let mut found = store.keys.tenant_keys(&ids).await?;
    let mut keys = HashMap::new();
    for t in owners.values() {
        if keys.contains_key(t) {
            continue;
        }
        let key = found
            .remove(&t.to_string())
            .ok_or(CoreError::NotFound { what: "tenant key" })??;
        keys.insert(*t, key);
    }
    Ok(Routing { owners, keys })
}

/// Stores a batch decided on `routing`; `None` (nothing stored) unless the transaction reads
/// the same routing and, with `check_keys`, the key store still holds the same keys.
async fn store_batch(
    p: &Pipeline,
    payloads: &[&WebhookPayload],
    numbers: &[String],
    routing: &Routing,
    check_keys: bool,
) -> Result<Option<Vec<Ingested>>, CoreError> {
    let store = &p.store;
    // Nothing inside the transaction may wait for a second connection of the main pool, or
    // enough concurrent writers would hold every connection while waiting for another: what
    // needs one (policy versions, account tenants) is read before it begins.
    let owners = &routing.owners;
    let mut tenants: HashMap<TenantId, TenantCtx> = HashMap::new();
    for (t, key) in &routing.keys {
        let policy_version = store.policy.version_for(*t).await?.0;
        tenants.insert(
            *t,
            TenantCtx {
                key: key.clone(),
                policy_version,
            },
        );
    }
    // Account-level changes (template status updates) carry no number: they go to every
    // tenant with a number in that WhatsApp Business Account.
    let mut accounts: HashMap<String, Vec<TenantId>> = HashMap::new();
    for pl in payloads {
        for event in pl.events() {
            if let InboundEvent::Other {
                account_id,
                phone_number_id: None,
                ..
            } = event
                && !account_id.is_empty()
                && !accounts.contains_key(account_id)
            {
                let ts = store.tenants_for_waba(account_id).await?;
                accounts.insert(account_id.to_owned(), ts);
            }
        }
    }
    let tenant_of = |raw: Option<&str>| raw.and_then(|r| owners.get(r)).copied();

    // What the batch refers to: Meta's message ids (new messages, and statuses of ours) and
    // senders' blind indexes, per tenant.
    let mut inbound_ids: HashMap<TenantId, Vec<String>> = HashMap::new();
    let mut status_ids: HashMap<TenantId, Vec<String>> = HashMap::new();
    let mut blinds: HashMap<TenantId, BlindLookup> = HashMap::new();
    for pl in payloads {
        for event in pl.events() {
            let Some(tenant) = tenant_of(number_of(&event)) else {
                continue;
            };
            match event {
                InboundEvent::Message {
                    contact, message, ..
                } => {
                    inbound_ids
                        .entry(tenant)
                        .or_default()
                        .push(message.id.as_str().to_owned());
                    let (wa, bsuid) =
                        identifier_blinds(&tenants[&tenant].key, &contact_of(message, contact));
                    let want = blinds.entry(tenant).or_default();
                    want.wa.extend(wa);
                    want.bsuid.extend(bsuid);
                }
                InboundEvent::Status { status, .. } if status.kind.is_some() => {
                    status_ids
                        .entry(tenant)
                        .or_default()
                        .push(status.id.as_str().to_owned());
                }
                _ => {}
            }
        }
    }
    for ids in inbound_ids.values_mut().chain(status_ids.values_mut()) {
        ids.sort();
        ids.dedup();
    }
    for want in blinds.values_mut() {
        want.wa.sort();
        want.wa.dedup();
        want.bsuid.sort();
        want.bsuid.dedup();
    }

    // The statuses' messages are read locked: the statuses are decided on what is read.
    let opened = store.open_batch(numbers, &inbound_ids, &status_ids, &blinds);
    let (mut tx, fetched) = if check_keys {
        // The key store is another pool: waiting for its connection while holding the
        // transaction's cannot close a cycle.
        let mut ids: Vec<String> = routing.keys.keys().map(ToString::to_string).collect();
        ids.sort();
        let (opened, keys) = tokio::join!(opened, store.keys.tenant_keys(&ids));
        let opened = opened?;
        let keys = keys?;
        let same = routing
            .keys
            .iter()
            .all(|(t, key)| matches!(keys.get(&t.to_string()), Some(Ok(k)) if Arc::ptr_eq(k, key)));
        if !same {
            return Ok(None);
        }
        opened
    } else {
        opened.await?
    };
    if fetched.routes != *owners {
        return Ok(None);
    }
    let mut known = fetched.known;
    let found = fetched.subjects;
    let mut conversations = fetched.conversations;
    let mut subjects: Vec<SubjectCtx> = Vec::new();
    let mut by_wa: HashMap<(TenantId, Vec<u8>), usize> = HashMap::new();
    let mut by_bsuid: HashMap<(TenantId, Vec<u8>), usize> = HashMap::new();
    {
        let mut seen = HashSet::new();
        for s in found {
            if !seen.insert(s.id) {
                continue;
            }
            let i = subjects.len();
            if let Some(b) = &s.wa_blind {
                by_wa.insert((s.tenant, b.clone()), i);
            }
            if let Some(b) = &s.bsuid_blind {
                by_bsuid.insert((s.tenant, b.clone()), i);
            }
            subjects.push(SubjectCtx {
                id: s.id,
                wa_blind: s.wa_blind,
                bsuid_blind: s.bsuid_blind,
                wrapped_key: s.wrapped_key,
                key: None,
            });
        }
    }

    let mut w = BatchWrites::default();
    let mut outs = Vec::with_capacity(payloads.len());
    for pl in payloads {
        let mut out = Ingested::default();
        for event in pl.events() {
            let raw = number_of(&event);
            if let InboundEvent::Other {
                account_id,
                phone_number_id: None,
                field,
                value,
            } = &event
                && let Some(ts) = accounts.get(*account_id).filter(|t| !t.is_empty())
            {
                for tenant in ts {
                    account_event(&mut tx, p, &mut w, *tenant, field, value).await?;
                }
                out.other += 1;
                continue;
            }
            let Some(tenant) = tenant_of(raw) else {
                // Unknown number: 200 so Meta stops retrying, one ledger entry, nothing else.
                out.unknown_numbers += 1;
                let mut d = EntryDraft::new(EventKind::UNKNOWN_PHONE_NUMBER, Actor::Meta)
                    .outcome(Outcome::REJECTED);
                if let Some(raw) = raw {
                    d = d.reference(Reference::digest(
                        RefKind::RECORD_DIGEST,
                        *blake3::hash(raw.as_bytes()).as_bytes(),
                    ));
                }
                w.draft(d);
                continue;
            };
            let ctx = &tenants[&tenant];
            match event {
                InboundEvent::Message {
                    phone_number_id,
                    contact,
                    message,
                } => {
                    let wamid = message.id.as_str();
                    if known.contains_key(&(tenant, wamid.to_owned())) {
                        out.duplicates += 1;
                        continue;
                    }
                    let contact = contact_of(message, contact);
                    let (wa, bsuid) = identifier_blinds(&ctx.key, &contact);
                    let found = wa
                        .as_ref()
                        .and_then(|b| by_wa.get(&(tenant, b.clone())))
                        .or_else(|| {
                            bsuid
                                .as_ref()
                                .and_then(|b| by_bsuid.get(&(tenant, b.clone())))
                        })
                        .copied();
                    let i = match found {
                        Some(i) => {
                            let s = &mut subjects[i];
                            let links = (s.wa_blind.is_none() && wa.is_some())
                                || (s.bsuid_blind.is_none() && bsuid.is_some());
                            if links {
                                // Meta revealed an identifier later (rare): linked now, so
                                // the rest of the batch finds the subject by it.
                                store
                                    .link_subject(
                                        &mut tx,
                                        tenant,
                                        &ctx.key,
                                        s.id,
                                        (s.wa_blind.clone(), s.bsuid_blind.clone()),
                                        &contact,
                                    )
                                    .await?;
                                if s.wa_blind.is_none() {
                                    s.wa_blind.clone_from(&wa);
                                }
                                if s.bsuid_blind.is_none() {
                                    s.bsuid_blind.clone_from(&bsuid);
                                }
                                if let Some(b) = &s.wa_blind {
                                    by_wa.insert((tenant, b.clone()), i);
                                }
                                if let Some(b) = &s.bsuid_blind {
                                    by_bsuid.insert((tenant, b.clone()), i);
                                }
                            }
                            i
                        }
                        None => {
                            let (id, key) = w.new_subject(tenant, &ctx.key, &contact)?;
                            let i = subjects.len();
                            if let Some(b) = &wa {
                                by_wa.insert((tenant, b.clone()), i);
                            }
                            if let Some(b) = &bsuid {
                                by_bsuid.insert((tenant, b.clone()), i);
                            }
                            subjects.push(SubjectCtx {
                                id,
                                wa_blind: wa,
                                bsuid_blind: bsuid,
                                wrapped_key: None,
                                key: Some(key),
                            });
                            i
                        }
                    };
                    let s = &mut subjects[i];
                    let skey = match (&s.key, &s.wrapped_key) {
                        (Some(k), _) => k.clone(),
                        (None, Some(wrapped)) => {
                            let k = store.keys.open_subject_key(&ctx.key, wrapped)?;
                            s.key = Some(k.clone());
                            k
                        }
                        (None, None) => {
                            return Err(CoreError::Shredded {
                                what: "subject key",
                            });
                        }
                    };
                    let sid = s.id;
                    let pnid = phone_number_id.as_str();
                    let conv = match conversations.get(&(tenant, sid, pnid.to_owned())) {
                        Some(c) => *c,
                        None => {
                            let c = w.new_conversation(tenant, sid, pnid);
                            conversations.insert((tenant, sid, pnid.to_owned()), c);
                            c
                        }
                    };
                    let body = body_of(&message.kind);
                    let kind_name = message.kind.type_name();
                    let mid = w.inbound_message(
                        &ctx.key,
                        &skey,
                        &Inbound {
                            tenant,
                            subject: sid,
                            conversation: conv,
                            kind: kind_name,
                            wamid,
                            body: body.as_deref(),
                            at: micros_of(message.timestamp),
                            policy_version: ctx.policy_version,
                        },
                    )?;
                    known.insert(
                        (tenant, wamid.to_owned()),
                        KnownMessage {
                            id: mid,
                            status: "received".into(),
                        },
                    );
                    if body.is_some() && kind_name != "reaction" {
                        // One job per message here; the reply's transaction queues its
                        // `lead` job (`pipeline::run_reply`), so the webhook writes one
                        // job row, not two.
                        w.job(message_job("reply", tenant, mid));
                    }
                    out.messages += 1;
                }
                InboundEvent::Status { status, .. } => {
                    let Some(next) = status.kind else {
                        out.stale_statuses += 1;
                        continue;
                    };
                    let Some(m) = known.get_mut(&(tenant, status.id.as_str().to_owned())) else {
                        out.stale_statuses += 1;
                        continue;
                    };
                    let name = match next {
                        StatusKind::Sent => "sent",
                        StatusKind::Delivered => "delivered",
                        StatusKind::Read => "read",
                        StatusKind::Failed => "failed",
                    };
                    // The state only moves forward; `failed` is final.
                    if m.status == "failed" || status_rank(name) <= status_rank(&m.status) {
                        out.stale_statuses += 1;
                        continue;
                    }
                    let code = status
                        .errors
                        .first()
                        .and_then(|e| i32::try_from(e.code).ok());
                    w.status(m.id, &m.status, name, code, micros_of(status.timestamp));
                    m.status = name.to_owned();
                    let mut d = EntryDraft::new(EventKind::MESSAGE_STATUS, Actor::Meta)
                        .tenant(tenant.bytes())
                        .reference(Reference::id(RefKind::MESSAGE, m.id.bytes()))
                        .attr(
                            AttrKey::MESSAGE_STATUS,
                            AttrValue::Code(u32::from(status_rank(name))),
                        );
                    if next == StatusKind::Failed {
                        d = d.outcome(Outcome::FAILURE);
                        if let Some(c) = code {
                            d = d.attr(
                                AttrKey::REASON,
                                AttrValue::Code(u32::try_from(c).unwrap_or(0)),
                            );
                        }
                    }
                    w.draft(d);
                    out.statuses += 1;
                }
                InboundEvent::Other { field, .. } => {
                    // Template status, quality and account updates: recorded, never a 500.
                    w.draft(
                        EntryDraft::new(EventKind::WEBHOOK_EVENT, Actor::Meta)
                            .tenant(tenant.bytes())
                            .reference(Reference::digest(
                                RefKind::RECORD_DIGEST,
                                *blake3::hash(field.as_bytes()).as_bytes(),
                            )),
                    );
                    out.other += 1;
                }
                InboundEvent::Error { .. } => {
                    w.draft(
                        EntryDraft::new(EventKind::WEBHOOK_EVENT, Actor::Meta)
                            .tenant(tenant.bytes())
                            .outcome(Outcome::FAILURE),
                    );
                    out.other += 1;
                }
            }
        }
        outs.push(out);
    }
    store.commit_batch(tx, w).await?;
    Ok(Some(outs))
}

/// Records an account-level webhook change for one tenant: a template status update
/// changes the stored template's status (ledgered); every change is ledgered as a
/// webhook event.
async fn account_event(
    tx: &mut smartchat_core::db::Tx,
    p: &Pipeline,
    w: &mut BatchWrites,
    tenant: TenantId,
    field: &str,
    value: &serde_json::Value,
) -> Result<(), CoreError> {
    if field == "message_template_status_update" {
        let text = |k: &str| value.get(k).and_then(|v| v.as_str()).unwrap_or_default();
        let (event, name, language) = (
            text("event"),
            text("message_template_name"),
            text("message_template_language"),
        );
        if !event.is_empty() && !name.is_empty() && event.len() <= 32 {
            p.store
                .set_template_status_in(tx, tenant, name, language, event)
                .await?;
        }
    }
    w.draft(
        EntryDraft::new(EventKind::WEBHOOK_EVENT, Actor::Meta)
            .tenant(tenant.bytes())
            .reference(Reference::digest(
                RefKind::RECORD_DIGEST,
                *blake3::hash(field.as_bytes()).as_bytes(),
            )),
    );
    Ok(())
}

/// Most deliveries one batch takes: bounds a batch's transaction (and the latency of the
/// first delivery in it) when many queue at once.
pub const MAX_BATCH: usize = 128;

type Waiting = (WebhookPayload, oneshot::Sender<Result<Ingested, CoreError>>);

/// The webhook's group commit: committer tasks that store queued deliveries a batch at a
/// time (see the module docs).
#[derive(Clone, Debug)]
pub struct GroupCommit {
    queue: mpsc::Sender<Waiting>,
}

/// Committers per process: one on both backends. SQLite has one writer anyway. On
/// PostgreSQL a second committer can run its batch while the first waits on its round trips
/// and commit, and two were the default until measured against one (webhook benchmark at
/// 3,000 deliveries/s, alternating runs on the same machine): two split the same arrivals
/// into twice as many batches (about three deliveries each, one batch per millisecond), and
/// every batch pays the same fixed statements (routing, keys, `BEGIN`, reads, `COMMIT`);
/// one took 2 to 5 points less of the machine's CPU in PostgreSQL, answered p50 6.0 ms
/// against 7.3 to 7.7 ms and p99 22 to 25 ms against 23 to 28 ms, and left the pipeline
/// workers half again as many replies per second.
pub fn committers_for(db: &smartchat_core::db::DbPool) -> usize {
    match db {
        smartchat_core::db::DbPool::Postgres(..) => POSTGRES_COMMITTERS,
        smartchat_core::db::DbPool::Sqlite(..) => 1,
    }
}

/// See [`committers_for`].
const POSTGRES_COMMITTERS: usize = 1;

impl GroupCommit {
    /// Starts the committer tasks on the current runtime ([`committers_for`] the pipeline's
    /// database). They stop when the last handle is dropped, after storing what was queued.
    pub fn start(p: Pipeline) -> Self {
        let n = committers_for(&p.store.db);
        Self::with_committers(p, n)
    }

    /// Starts `n` committer tasks (at least one).
    pub fn with_committers(p: Pipeline, n: usize) -> Self {
        let (queue, rx) = mpsc::channel::<Waiting>(MAX_BATCH * 8);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        for _ in 0..n.max(1) {
            tokio::spawn(commit_loop(p.clone(), rx.clone()));
        }
        Self { queue }
    }

    /// Stores one delivery with whatever else is queued; answers after the commit.
    pub async fn ingest(&self, payload: WebhookPayload) -> Result<Ingested, CoreError> {
        let (done, answer) = oneshot::channel();
        self.queue
            .send((payload, done))
            .await
            .map_err(|_| CoreError::Internal("the webhook committer stopped".into()))?;
        answer
            .await
            .map_err(|_| CoreError::Internal("the webhook committer stopped".into()))?
    }
}

async fn commit_loop(p: Pipeline, rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Waiting>>>) {
    let mut batch: Vec<Waiting> = Vec::with_capacity(MAX_BATCH);
    loop {
        // One committer takes what is queued; the others wait for the next.
        let got = rx.lock().await.recv_many(&mut batch, MAX_BATCH).await;
        if got == 0 {
            return;
        }
        let payloads: Vec<&WebhookPayload> = batch.iter().map(|(pl, _)| pl).collect();
        let mut result = ingest_batch(&p, &payloads).await;
        if let Err(CoreError::Conflict { .. }) = result {
            // Another writer stored a row this batch also creates (the same new customer,
            // or the same message, in two batches at once): read again and decide again.
            result = ingest_batch(&p, &payloads).await;
        }
        match result {
            Ok(outs) => {
                for ((_, done), out) in batch.drain(..).zip(outs) {
                    // The sender may have gone (client disconnected): stored all the same.
                    let _ = done.send(Ok(out));
                }
            }
            Err(e) if batch.len() == 1 => {
                if let Some((_, done)) = batch.pop() {
                    let _ = done.send(Err(e));
                }
            }
            Err(e) => {
                tracing::debug!(
                    error = %e,
                    deliveries = batch.len(),
                    "a webhook batch failed; storing its deliveries one by one"
                );
                for (pl, done) in batch.drain(..) {
                    let _ = done.send(ingest(&p, &pl).await);
                }
            }
        }
    }
}
