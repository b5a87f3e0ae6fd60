//! Set-based storage for a batch of webhook deliveries (the webhook's group commit).
//!
//! The pipeline learns the numbers' tenants ([`Store::tenants_for_numbers`], or from what it
//! kept), then [`Store::open_batch`] begins the transaction and reads, one query per table,
//! the numbers' tenants again (to confirm them), known messages, the senders' subjects and
//! their conversations; the pipeline decides every event in memory in delivery order,
//! collects the rows in [`BatchWrites`], and [`Store::commit_batch`] writes each table with
//! one statement and commits. The rows are the ones the one-at-a-time repositories write
//! (same sealing contexts, same ledger drafts), so a batch of one delivery stores exactly
//! what the delivery alone would.

use std::collections::{HashMap, HashSet};

use diesel::insert_into;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use smartchat_ledger::{Actor, EntryDraft, EventKind, Hash, RefKind, Reference};

use crate::crypto::{SubjectKey, TenantKey};
use crate::db::prepared::{column, stmt};
use crate::db::schema::{conversations, messages, phone_numbers, subject_keys, subjects};
use crate::db::{BATCH_BEGIN_PG, Conn, Raw, SqliteConn, Tx, is_unique_violation, now_micros};
use crate::db_run;
use crate::error::CoreError;
use crate::ids::{ConversationId, MessageId, SubjectId, TenantId};
use crate::jobs::NewJob;
use crate::store::{Store, SubjectContact, body_context, contact_context, identifier_blinds};

/// A stored message a batch refers to by Meta's id.
#[derive(Debug, Clone)]
pub struct KnownMessage {
    /// Our id.
    pub id: MessageId,
    /// Current status.
    pub status: String,
}

/// A stored subject found through a blind index.
#[derive(Debug, Clone)]
pub struct KnownSubject {
    /// Tenant.
    pub tenant: TenantId,
    /// Id.
    pub id: SubjectId,
    /// `wa_id` blind index, if linked.
    pub wa_blind: Option<Vec<u8>>,
    /// BSUID blind index, if linked.
    pub bsuid_blind: Option<Vec<u8>>,
    /// The subject key wrapped to the tenant identity; `None` once shredded.
    pub wrapped_key: Option<Vec<u8>>,
}

/// Subjects a batch looks up, per tenant: `wa_id` and BSUID blind indexes.
#[derive(Debug, Default)]
pub struct BlindLookup {
    /// `wa_id` blind indexes.
    pub wa: Vec<Vec<u8>>,
    /// BSUID blind indexes.
    pub bsuid: Vec<Vec<u8>>,
}

struct SubjectInsert {
    id: String,
    tenant: String,
    wa_blind: Option<Vec<u8>>,
    bsuid_blind: Option<Vec<u8>>,
    phone_blind: Option<Vec<u8>>,
    contact_ct: Vec<u8>,
    wrapped_key: Vec<u8>,
    at: i64,
}

struct ConversationInsert {
    id: String,
    tenant: String,
    subject: String,
    pnid: String,
    at: i64,
}

struct MessageInsert {
    id: String,
    tenant: String,
    conversation: String,
    subject: String,
    kind: String,
    wamid: String,
    body_ct: Option<Vec<u8>>,
    at: i64,
}

/// A status change, guarded by the status it was decided on.
struct StatusWrite {
    id: String,
    from: String,
    to: String,
    code: Option<i32>,
    at: i64,
}

/// What one inbound message needs to be stored.
#[derive(Debug)]
pub struct Inbound<'a> {
    /// Tenant.
    pub tenant: TenantId,
    /// Subject.
    pub subject: SubjectId,
    /// Conversation.
    pub conversation: ConversationId,
    /// Message type.
    pub kind: &'a str,
    /// Meta's message id.
    pub wamid: &'a str,
    /// Plain body, sealed here; `None` for a message without one.
    pub body: Option<&'a str>,
    /// Meta's timestamp, unix micros (moves the 24-hour window).
    pub at: i64,
    /// The tenant's policy version, for the ledger entry.
    pub policy_version: Hash,
}

/// The rows a batch writes, collected in memory in delivery order.
#[derive(Default)]
pub struct BatchWrites {
    subjects: Vec<SubjectInsert>,
    conversations: Vec<ConversationInsert>,
    messages: Vec<MessageInsert>,
    /// Conversation → the newest inbound timestamp of the batch.
    inbound_at: HashMap<String, i64>,
    /// Message → the status change (the last forward move of the batch wins).
    statuses: HashMap<String, StatusWrite>,
    jobs: Vec<NewJob>,
    feed: Vec<(String, String)>,
    drafts: Vec<EntryDraft>,
    last_micros: i64,
}

impl std::fmt::Debug for BatchWrites {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchWrites")
            .field("subjects", &self.subjects.len())
            .field("conversations", &self.conversations.len())
            .field("messages", &self.messages.len())
            .field("statuses", &self.statuses.len())
            .field("jobs", &self.jobs.len())
            .field("drafts", &self.drafts.len())
            .finish()
    }
}

impl BatchWrites {
    /// A strictly increasing clock within the batch, so messages stored together keep
    /// their delivery order.
    fn tick(&mut self) -> i64 {
        let now = now_micros().max(self.last_micros + 1);
        self.last_micros = now;
        now
    }

    /// A new subject: its key generated and wrapped to the tenant identity, its contact
    /// sealed under it, and a `key_created` entry. Returns the id and the key.
    pub fn new_subject(
        &mut self,
        tenant: TenantId,
        key: &TenantKey,
        contact: &SubjectContact,
    ) -> Result<(SubjectId, SubjectKey), CoreError> {
        use crate::crypto::BlindKind;
        if contact.wa_id.is_none() && contact.bsuid.is_none() {
            return Err(CoreError::Invalid {
                field: "contact",
                reason: "Meta sent neither wa_id nor user_id".into(),
            });
        }
        let tid = tenant.to_string();
        let id = SubjectId::new();
        let sid = id.to_string();
        let skey = SubjectKey::generate();
        let wrapped_key = key.wrap_subject_key(&skey)?;
        let contact_ct = skey.seal(
            &contact_context(&tid, &sid),
            &serde_json::to_vec(contact).map_err(|e| CoreError::Internal(e.to_string()))?,
        )?;
        let at = self.tick();
        let (wa_blind, bsuid_blind) = identifier_blinds(key, contact);
        self.subjects.push(SubjectInsert {
            id: sid.clone(),
            tenant: tid,
            wa_blind,
            bsuid_blind,
            phone_blind: contact
                .phone
                .as_deref()
                .or(contact.wa_id.as_deref())
                .map(|v| key.blind(BlindKind::Phone, v).to_vec()),
            contact_ct,
            wrapped_key,
            at,
        });
        self.drafts.push(
            EntryDraft::new(EventKind::KEY_CREATED, Actor::System)
                .tenant(tenant.bytes())
                .subject(key.pseudonym(&sid)),
        );
        Ok((id, skey))
    }

    /// A new conversation of a subject on a number.
    pub fn new_conversation(
        &mut self,
        tenant: TenantId,
        subject: SubjectId,
        pnid: &str,
    ) -> ConversationId {
        let id = ConversationId::new();
        let at = self.tick();
        self.conversations.push(ConversationInsert {
            id: id.to_string(),
            tenant: tenant.to_string(),
            subject: subject.to_string(),
            pnid: pnid.to_owned(),
            at,
        });
        id
    }

    /// An inbound message: its body sealed under the subject key, the conversation's
    /// window moved, a search feed row when it has a body, and its `message_received`
    /// entry (pseudonym, policy version, id, digest of the sealed body).
    pub fn inbound_message(
        &mut self,
        key: &TenantKey,
        skey: &SubjectKey,
        m: &Inbound<'_>,
    ) -> Result<MessageId, CoreError> {
        let tid = m.tenant.to_string();
        let sid = m.subject.to_string();
        let id = MessageId::new();
        let mid = id.to_string();
        let body_ct = match m.body {
            Some(b) => Some(skey.seal(&body_context(&tid, &mid), b.as_bytes())?),
            None => None,
        };
        let cid = m.conversation.to_string();
        let placed = self.tick();
        let newest = self.inbound_at.entry(cid.clone()).or_insert(m.at);
        *newest = (*newest).max(m.at);
        if m.body.is_some() {
            self.feed.push((tid.clone(), mid.clone()));
        }
        let mut draft = EntryDraft::new(EventKind::MESSAGE_RECEIVED, Actor::DataSubject)
            .tenant(m.tenant.bytes())
            .subject(key.pseudonym(&sid))
            .policy_version(m.policy_version)
            .reference(Reference::id(RefKind::MESSAGE, id.bytes()));
        if let Some(ct) = &body_ct {
            draft = draft.reference(Reference::digest(
                RefKind::RECORD_DIGEST,
                *blake3::hash(ct).as_bytes(),
            ));
        }
        self.drafts.push(draft);
        self.messages.push(MessageInsert {
            id: mid,
            tenant: tid,
            conversation: cid,
            subject: sid,
            kind: m.kind.to_owned(),
            wamid: m.wamid.to_owned(),
            body_ct,
            at: placed,
        });
        Ok(id)
    }

    /// Moves a message's status from `from` to `to` (the caller decided it is a forward
    /// move). Several moves of one message in a batch write once, the last one.
    pub fn status(&mut self, message: MessageId, from: &str, to: &str, code: Option<i32>, at: i64) {
        let id = message.to_string();
        let first_from = self
            .statuses
            .get(&id)
            .map_or_else(|| from.to_owned(), |s| s.from.clone());
        self.statuses.insert(
            id.clone(),
            StatusWrite {
                id,
                from: first_from,
                to: to.to_owned(),
                code,
                at,
            },
        );
    }

    /// A job to queue (skipped when its dedupe key exists).
    pub fn job(&mut self, job: NewJob) {
        self.jobs.push(job);
    }

    /// A ledger entry to queue, in order.
    pub fn draft(&mut self, draft: EntryDraft) {
        self.drafts.push(draft);
    }
}

#[derive(QueryableByName)]
struct WamidRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    tenant_id: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    wamid: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    id: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    status: String,
}

#[derive(QueryableByName)]
struct RouteRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    phone_number_id: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    tenant_id: String,
}

/// A subject found on SQLite: id, blind indexes, wrapped key.
type SqliteSubjectRow = (String, Option<Vec<u8>>, Option<Vec<u8>>, Option<Vec<u8>>);

#[derive(QueryableByName)]
struct SubjectRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    tenant_id: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    id: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Binary>)]
    wa_id_blind: Option<Vec<u8>>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Binary>)]
    bsuid_blind: Option<Vec<u8>>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Binary>)]
    wrapped_key: Option<Vec<u8>>,
    /// One of the subject's conversations, if it has any (a row per conversation).
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    conversation_id: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    phone_number_id: Option<String>,
}

/// Stored messages by Meta id, on PostgreSQL, for every tenant of the batch at once: one
/// `= ANY` on the `(wamid, tenant_id)` unique index, the only index with that column, so
/// its one generic plan is that index whatever the table holds. Rows of a tenant that did
/// not ask (Meta's ids are unique, so in practice none) are dropped by the caller.
const WAMIDS_PG: &str = "SELECT tenant_id, wamid, id, status FROM messages \
     WHERE wamid = ANY($1::text[])";

/// The numbers' tenants, by primary key (read in the batch's transaction, to confirm the
/// routing the batch was decided on).
const ROUTES_PG: &str = "SELECT phone_number_id, tenant_id FROM phone_numbers \
     WHERE phone_number_id = ANY($1::text[])";

/// [`WAMIDS_PG`], the rows locked until the transaction ends.
const WAMIDS_LOCKED_PG: &str = "SELECT tenant_id, wamid, id, status FROM messages \
     WHERE wamid = ANY($1::text[]) FOR UPDATE";

/// Subjects by blind index, on PostgreSQL, with their wrapped keys and conversations (a row
/// per conversation): the two `= ANY` lookups walk the `(wa_id_blind, tenant_id)` and
/// `(bsuid_blind, tenant_id)` unique indexes, the only indexes with those columns, and the
/// keys and conversations are found through their subject indexes. One statement, so the
/// conversations are those of the subjects as the same snapshot saw them. A blind index is
/// keyed per tenant; a row of a tenant that did not ask it is dropped by the caller.
const SUBJECTS_PG: &str = "SELECT s.tenant_id, s.id, s.wa_id_blind, s.bsuid_blind, \
     k.wrapped_key, c.id AS conversation_id, c.phone_number_id \
     FROM subjects AS s \
     LEFT JOIN subject_keys AS k ON k.subject_id = s.id \
     LEFT JOIN conversations AS c ON c.subject_id = s.id \
     WHERE s.wa_id_blind = ANY($1::bytea[]) OR s.bsuid_blind = ANY($2::bytea[])";

/// What a batch refers to, read before it is decided ([`Store::open_batch`]).
#[derive(Debug, Default)]
pub struct Prefetched {
    /// Stored messages by (tenant, Meta id): the ones new messages may repeat, and the ones
    /// statuses refer to.
    pub known: HashMap<(TenantId, String), KnownMessage>,
    /// The senders' subjects, with their wrapped keys (a subject may appear more than once:
    /// found by both of its identifiers, or once per conversation).
    pub subjects: Vec<KnownSubject>,
    /// Those subjects' conversations: (tenant, subject, phone number id) → id.
    pub conversations: HashMap<(TenantId, SubjectId, String), ConversationId>,
    /// The numbers asked about, with the tenant each belongs to as the transaction reads
    /// it (a number no tenant has connected is absent).
    pub routes: HashMap<String, TenantId>,
}

/// (phone number id, tenant) rows as the routing map.
fn route_map(
    rows: impl Iterator<Item = (String, String)>,
) -> Result<HashMap<String, TenantId>, CoreError> {
    rows.map(|(pnid, tenant)| Ok((pnid, tenant.parse()?)))
        .collect()
}

/// (tenant, id, subject, phone number id) rows as the conversations map.
fn conversation_map(
    rows: impl Iterator<Item = (String, String, String, String)>,
) -> Result<HashMap<(TenantId, SubjectId, String), ConversationId>, CoreError> {
    let mut out = HashMap::new();
    for (tenant, id, sid, pnid) in rows {
        out.insert((tenant.parse()?, sid.parse()?, pnid), id.parse()?);
    }
    Ok(out)
}

/// A subject as read: tenant, id, `wa_id` and BSUID blind indexes, wrapped key.
type SubjectTuple = (
    String,
    String,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
);

/// The Meta ids of a lookup, every tenant's, as one array.
fn wamid_array(wanted: &HashMap<TenantId, Vec<String>>) -> Vec<&str> {
    wanted.values().flatten().map(String::as_str).collect()
}

/// Whether a stored (tenant, Meta id) row is one the lookup asked for.
fn asked_wamid(wanted: &HashMap<TenantId, Vec<String>>, tenant: &str, wamid: &str) -> bool {
    tenant
        .parse::<TenantId>()
        .ok()
        .and_then(|t| wanted.get(&t))
        .is_some_and(|ws| ws.iter().any(|w| w == wamid))
}

/// Whether a stored subject is one the lookup asked for: its tenant asked one of its
/// blind indexes.
fn asked_subject(
    wanted: &HashMap<TenantId, BlindLookup>,
    tenant: &str,
    wa: Option<&Vec<u8>>,
    bsuid: Option<&Vec<u8>>,
) -> bool {
    let Some(want) = tenant.parse::<TenantId>().ok().and_then(|t| wanted.get(&t)) else {
        return false;
    };
    wa.is_some_and(|b| want.wa.contains(b)) || bsuid.is_some_and(|b| want.bsuid.contains(b))
}

/// (tenant, Meta id, id, status) rows as known messages.
fn known_messages(
    rows: impl Iterator<Item = (String, String, String, String)>,
) -> Result<HashMap<(TenantId, String), KnownMessage>, CoreError> {
    let mut out = HashMap::new();
    for (tenant, wamid, id, status) in rows {
        out.insert(
            (tenant.parse()?, wamid),
            KnownMessage {
                id: id.parse()?,
                status,
            },
        );
    }
    Ok(out)
}

/// (tenant, id, blind indexes, wrapped key) rows as known subjects.
fn known_subjects(
    rows: impl Iterator<Item = SubjectTuple>,
) -> Result<Vec<KnownSubject>, CoreError> {
    rows.map(|(tenant, id, wa_blind, bsuid_blind, wrapped_key)| {
        Ok(KnownSubject {
            tenant: tenant.parse()?,
            id: id.parse()?,
            wa_blind,
            bsuid_blind,
            wrapped_key,
        })
    })
    .collect()
}

impl WamidRow {
    fn into_tuple(self) -> (String, String, String, String) {
        (self.tenant_id, self.wamid, self.id, self.status)
    }
}

impl SubjectRow {
    fn into_tuple(self) -> SubjectTuple {
        (
            self.tenant_id,
            self.id,
            self.wa_id_blind,
            self.bsuid_blind,
            self.wrapped_key,
        )
    }
}

/// Values per lookup statement (an `IN` list on SQLite, where each is a bound parameter):
/// far below SQLite's limit of 32,766. PostgreSQL's writes bind one array per column, so
/// they need no chunks.
const CHUNK: usize = 500;

impl Store {
    /// The tenants owning several phone number ids, with one query; unknown ids are absent.
    pub async fn tenants_for_numbers(
        &self,
        pnids: &[String],
    ) -> Result<HashMap<String, TenantId>, CoreError> {
        let mut out = HashMap::new();
        if pnids.is_empty() {
            return Ok(out);
        }
        let mut c = self.db.conn().await?;
        for chunk in pnids.chunks(CHUNK) {
            let rows: Vec<(String, String)> = db_run!(c, |c| phone_numbers::table
                .filter(phone_numbers::phone_number_id.eq_any(chunk))
                .select((phone_numbers::phone_number_id, phone_numbers::tenant_id))
                .load(c)
                .await)?;
            for (pnid, tenant) in rows {
                out.insert(pnid, tenant.parse()?);
            }
        }
        Ok(out)
    }

    /// Begins a webhook batch's transaction and reads what the batch refers to: the tenants
    /// of its `numbers` ([`Prefetched::routes`], so the caller can confirm the routing it
    /// decided on), the stored messages its new messages may repeat, the stored messages its
    /// statuses refer to, and its senders' subjects with their wrapped keys and
    /// conversations. On PostgreSQL the `BEGIN` with its plan settings ([`BATCH_BEGIN_PG`],
    /// which says why) and four reads go out in one pipeline, one round trip; each read is
    /// one `= ANY` on the leading column of a unique index for every tenant at once (the
    /// numbers' primary key), and the statuses' messages are locked
    /// (`FOR UPDATE`) until the transaction ends, so a status decided on them cannot be
    /// overtaken. On SQLite, whose one writer holds the database once the transaction has
    /// begun, they run one after another in process, one query per tenant.
    ///
    /// [`BATCH_BEGIN_PG`]: crate::db::BATCH_BEGIN_PG
    pub async fn open_batch(
        &self,
        numbers: &[String],
        inbound: &HashMap<TenantId, Vec<String>>,
        statuses: &HashMap<TenantId, Vec<String>>,
        blinds: &HashMap<TenantId, BlindLookup>,
    ) -> Result<(Tx, Prefetched), CoreError> {
        let mut tx = self.db.begin_unsent().await?;
        let fetched = self
            .prefetch(&mut tx, numbers, inbound, statuses, blinds)
            .await?;
        Ok((tx, fetched))
    }

    /// [`Self::open_batch`]'s reads; on PostgreSQL preceded by the `BEGIN`.
    async fn prefetch(
        &self,
        c: &mut Conn,
        numbers: &[String],
        inbound: &HashMap<TenantId, Vec<String>>,
        statuses: &HashMap<TenantId, Vec<String>>,
        blinds: &HashMap<TenantId, BlindLookup>,
    ) -> Result<Prefetched, CoreError> {
        if let Raw::Pg(pg) = c.raw() {
            use diesel::sql_types::{Array, Binary, Text};
            let conn: &diesel_async::AsyncPgConnection = pg;
            let wa: Vec<&Vec<u8>> = blinds.values().flat_map(|w| &w.wa).collect();
            let bsuid: Vec<&Vec<u8>> = blinds.values().flat_map(|w| &w.bsuid).collect();
            let begin = stmt(BATCH_BEGIN_PG[0]).execute(&mut &*conn);
            let settings = stmt(BATCH_BEGIN_PG[1]).execute(&mut &*conn);
            let routes = stmt(ROUTES_PG)
                .bind::<Array<Text>, _>(numbers)
                .load::<RouteRow>(&mut &*conn);
            let repeats = stmt(WAMIDS_PG)
                .bind::<Array<Text>, _>(wamid_array(inbound))
                .load::<WamidRow>(&mut &*conn);
            let referred = stmt(WAMIDS_LOCKED_PG)
                .bind::<Array<Text>, _>(wamid_array(statuses))
                .load::<WamidRow>(&mut &*conn);
            let senders = stmt(SUBJECTS_PG)
                .bind::<Array<Binary>, _>(&wa)
                .bind::<Array<Binary>, _>(&bsuid)
                .load::<SubjectRow>(&mut &*conn);
            // Polled in this order, so sent in this order and run by the server in order.
            let (_, _, routes, repeats, referred, senders) =
                futures::try_join!(begin, settings, routes, repeats, referred, senders)?;
            let routes = route_map(routes.into_iter().map(|r| (r.phone_number_id, r.tenant_id)))?;
            let known = known_messages(
                repeats
                    .into_iter()
                    .filter(|r| asked_wamid(inbound, &r.tenant_id, &r.wamid))
                    .chain(
                        referred
                            .into_iter()
                            .filter(|r| asked_wamid(statuses, &r.tenant_id, &r.wamid)),
                    )
                    .map(WamidRow::into_tuple),
            )?;
            let senders: Vec<SubjectRow> = senders
                .into_iter()
                .filter(|r| {
                    asked_subject(
                        blinds,
                        &r.tenant_id,
                        r.wa_id_blind.as_ref(),
                        r.bsuid_blind.as_ref(),
                    )
                })
                .collect();
            let conversations = conversation_map(senders.iter().filter_map(|r| {
                Some((
                    r.tenant_id.clone(),
                    r.conversation_id.clone()?,
                    r.id.clone(),
                    r.phone_number_id.clone()?,
                ))
            }))?;
            return Ok(Prefetched {
                known,
                subjects: known_subjects(senders.into_iter().map(SubjectRow::into_tuple))?,
                conversations,
                routes,
            });
        }
        let Raw::Sqlite(raw) = c.raw() else {
            unreachable!("PostgreSQL returned above")
        };
        let mut routes = Vec::new();
        for chunk in numbers.chunks(CHUNK) {
            let found: Vec<(String, String)> = phone_numbers::table
                .filter(phone_numbers::phone_number_id.eq_any(chunk))
                .select((phone_numbers::phone_number_id, phone_numbers::tenant_id))
                .load(raw)
                .await?;
            routes.extend(found);
        }
        let routes = route_map(routes.into_iter())?;
        let mut rows = sqlite_wamids(raw, inbound).await?;
        rows.extend(sqlite_wamids(raw, statuses).await?);
        let known = known_messages(rows.into_iter())?;
        let subjects = known_subjects(sqlite_subjects(raw, blinds).await?.into_iter())?;
        let mut wanted: HashMap<TenantId, Vec<String>> = HashMap::new();
        for s in &subjects {
            wanted.entry(s.tenant).or_default().push(s.id.to_string());
        }
        let conversations =
            conversation_map(sqlite_conversations(raw, &wanted).await?.into_iter())?;
        Ok(Prefetched {
            known,
            subjects,
            conversations,
            routes,
        })
    }

    /// Writes a batch in its transaction and commits it. On PostgreSQL: one statement per
    /// table (subjects and their keys share one), each a prepared [`stmt`] over `unnest`ed
    /// column arrays, then the `COMMIT`, pipelined: all sent at once, in order (the server
    /// runs them one after another, so a message follows its conversation), one round trip
    /// in all: the two updates first, then the inserts, each planned once per connection
    /// (the transaction is [`Self::open_batch`]'s: [`BATCH_BEGIN_PG`] says why). Whatever
    /// must stop the commit raises inside the transaction, so the pipelined `COMMIT` then
    /// only rolls back. A message whose Meta id is already stored (a concurrent writer got
    /// it first) is `Conflict`, and so is a status that moved since it was read: nothing is
    /// stored, and the caller decides again. On error the transaction's connection is
    /// closed.
    ///
    /// [`BATCH_BEGIN_PG`]: crate::db::BATCH_BEGIN_PG
    pub async fn commit_batch(&self, mut tx: Tx, mut w: BatchWrites) -> Result<(), CoreError> {
        let now = now_micros();
        let bump_at = w.tick();
        let mut bumps: Vec<(String, i64)> = w.inbound_at.drain().collect();
        // A stable order, so two writers lock rows in the same order.
        bumps.sort();
        let mut moves: Vec<StatusWrite> = w.statuses.drain().map(|(_, s)| s).collect();
        moves.sort_by(|a, b| a.id.cmp(&b.id));
        match tx.raw() {
            Raw::Pg(c) => {
                use diesel::sql_types::{Array, BigInt, Binary, Integer, Nullable, Text};
                let conn: &diesel_async::AsyncPgConnection = c;
                // A conversation the batch creates is inserted with its window (and its
                // update time as the bump would set it); only those stored before are
                // updated.
                let created: HashSet<&str> =
                    w.conversations.iter().map(|v| v.id.as_str()).collect();
                let (fresh, bumps): (Vec<_>, Vec<_>) = bumps
                    .into_iter()
                    .partition(|(id, _)| created.contains(id.as_str()));
                let fresh: HashMap<String, i64> = fresh.into_iter().collect();
                let new_windows: Vec<Option<i64>> = w
                    .conversations
                    .iter()
                    .map(|v| fresh.get(&v.id).copied())
                    .collect();
                let new_updated: Vec<i64> = w
                    .conversations
                    .iter()
                    .map(|v| {
                        if fresh.contains_key(&v.id) {
                            bump_at
                        } else {
                            v.at
                        }
                    })
                    .collect();
                let payloads: Vec<String> = w.jobs.iter().map(|j| j.payload.to_string()).collect();
                let encoded: Vec<Vec<u8>> = w
                    .drafts
                    .iter()
                    .map(|d| d.encode().map_err(|e| CoreError::Ledger(e.to_string())))
                    .collect::<Result<_, _>>()?;
                let mut steps: Vec<(Step, PgFuture<'_>)> = Vec::new();
                // First the two updates: a status move, and the windows of conversations
                // stored before (a new conversation is inserted with its window). Each finds
                // its rows by primary key (`= ANY`).
                if !moves.is_empty() {
                    let ids: Vec<&str> = moves.iter().map(|m| m.id.as_str()).collect();
                    let from: Vec<&str> = moves.iter().map(|m| m.from.as_str()).collect();
                    let to: Vec<&str> = moves.iter().map(|m| m.to.as_str()).collect();
                    let codes: Vec<Option<i32>> = moves.iter().map(|m| m.code).collect();
                    let ats: Vec<i64> = moves.iter().map(|m| m.at).collect();
                    steps.push((
                        Step::Statuses(None),
                        stmt(UPDATE_STATUSES_PG)
                            .bind::<Array<Text>, _>(ids)
                            .bind::<Array<Text>, _>(from)
                            .bind::<Array<Text>, _>(to)
                            .bind::<Array<Nullable<Integer>>, _>(codes)
                            .bind::<Array<BigInt>, _>(ats)
                            .execute(&mut &*conn),
                    ));
                }
                if !bumps.is_empty() {
                    let ids: Vec<&str> = bumps.iter().map(|(id, _)| id.as_str()).collect();
                    let ats: Vec<i64> = bumps.iter().map(|(_, at)| *at).collect();
                    steps.push((
                        Step::Other,
                        stmt(UPDATE_WINDOWS_PG)
                            .bind::<BigInt, _>(bump_at)
                            .bind::<Array<Text>, _>(ids)
                            .bind::<Array<BigInt>, _>(ats)
                            .execute(&mut &*conn),
                    ));
                }
                // Then the inserts: each reads nothing but its own unique indexes, and each
                // row's foreign-key checks (which the transaction's plan setting also
                // governs) are primary-key lookups. Planned per run, the checks alone were
                // 14 % of PostgreSQL's CPU under webhook load (perf; 5 % with their plans
                // kept).
                // One statement per table whatever the row count (`unnest` of one array
                // per column), each a prepared statement kept on the connection.
                if !w.subjects.is_empty() {
                    let s = &w.subjects;
                    steps.push((
                        Step::Subjects,
                        stmt(INSERT_SUBJECTS_PG)
                            .bind::<Array<Text>, _>(column(s, |r| &r.id))
                            .bind::<Array<Text>, _>(column(s, |r| &r.tenant))
                            .bind::<Array<Nullable<Binary>>, _>(column(s, |r| &r.wa_blind))
                            .bind::<Array<Nullable<Binary>>, _>(column(s, |r| &r.bsuid_blind))
                            .bind::<Array<Nullable<Binary>>, _>(column(s, |r| &r.phone_blind))
                            .bind::<Array<Binary>, _>(column(s, |r| &r.contact_ct))
                            .bind::<Array<Binary>, _>(column(s, |r| &r.wrapped_key))
                            .bind::<Array<BigInt>, _>(column(s, |r| r.at))
                            .execute(&mut &*conn),
                    ));
                }
                if !w.conversations.is_empty() {
                    let v = &w.conversations;
                    steps.push((
                        Step::Other,
                        stmt(INSERT_CONVERSATIONS_PG)
                            .bind::<Array<Text>, _>(column(v, |r| &r.id))
                            .bind::<Array<Text>, _>(column(v, |r| &r.tenant))
                            .bind::<Array<Text>, _>(column(v, |r| &r.subject))
                            .bind::<Array<Text>, _>(column(v, |r| &r.pnid))
                            .bind::<Array<BigInt>, _>(column(v, |r| r.at))
                            .bind::<Array<Nullable<BigInt>>, _>(&new_windows)
                            .bind::<Array<BigInt>, _>(&new_updated)
                            .execute(&mut &*conn),
                    ));
                }
                if !w.messages.is_empty() {
                    let m = &w.messages;
                    steps.push((
                        Step::Messages,
                        stmt(INSERT_MESSAGES_PG)
                            .bind::<Array<Text>, _>(column(m, |r| &r.id))
                            .bind::<Array<Text>, _>(column(m, |r| &r.tenant))
                            .bind::<Array<Text>, _>(column(m, |r| &r.conversation))
                            .bind::<Array<Text>, _>(column(m, |r| &r.subject))
                            .bind::<Array<Text>, _>(column(m, |r| &r.kind))
                            .bind::<Array<Text>, _>(column(m, |r| &r.wamid))
                            .bind::<Array<Nullable<Binary>>, _>(column(m, |r| &r.body_ct))
                            .bind::<Array<BigInt>, _>(column(m, |r| r.at))
                            .execute(&mut &*conn),
                    ));
                }
                if !w.jobs.is_empty() {
                    let j = &w.jobs;
                    steps.push((
                        Step::Other,
                        stmt(INSERT_JOBS_PG)
                            .bind::<BigInt, _>(now)
                            .bind::<Array<Text>, _>(column(j, |r| r.queue))
                            .bind::<Array<Text>, _>(column(j, |r| r.kind))
                            .bind::<Array<Nullable<Text>>, _>(column(j, |r| &r.tenant_id))
                            .bind::<Array<Text>, _>(&payloads)
                            .bind::<Array<Integer>, _>(column(j, |r| r.max_attempts))
                            .bind::<Array<BigInt>, _>(column(j, |r| r.run_at))
                            .bind::<Array<Nullable<Text>>, _>(column(j, |r| &r.dedupe_key))
                            .execute(&mut &*conn),
                    ));
                }
                if !w.feed.is_empty() {
                    let f = &w.feed;
                    steps.push((
                        Step::Other,
                        stmt(INSERT_FEED_PG)
                            .bind::<BigInt, _>(now)
                            .bind::<Array<Text>, _>(column(f, |(t, _)| t))
                            .bind::<Array<Text>, _>(column(f, |(_, m)| m))
                            .execute(&mut &*conn),
                    ));
                }
                if !encoded.is_empty() {
                    steps.push((
                        Step::Other,
                        stmt(INSERT_LEDGER_PENDING_PG)
                            .bind::<BigInt, _>(now)
                            .bind::<Array<Binary>, _>(&encoded)
                            .execute(&mut &*conn),
                    ));
                }
                // And the COMMIT, in the same pipeline. Every check that decides whether the
                // batch may commit raises inside the transaction (the status moves' count
                // too: `smartchat_expect_rows`), so a failed statement aborts the
                // transaction and this COMMIT only rolls it back.
                steps.push((Step::Other, stmt("COMMIT").execute(&mut &*conn)));
                let (kinds, futures): (Vec<Step>, Vec<PgFuture<'_>>) = steps.into_iter().unzip();
                let results = futures::future::join_all(futures).await;
                // The first failure is the cause; the statements after it only saw the
                // transaction aborted. On any failure `tx` is dropped here, which closes
                // its connection.
                for (kind, res) in kinds.into_iter().zip(results) {
                    step_result(kind, res)?;
                }
                tx.committed_in_pipeline();
                return Ok(());
            }
            Raw::Sqlite(c) => {
                // Statements run in process here: one per row costs no round trip (and
                // diesel-async's SQLite wrapper has no multi-row insert).
                let subject_rows: Vec<_> = w
                    .subjects
                    .iter()
                    .map(|s| {
                        (
                            subjects::id.eq(&s.id),
                            subjects::tenant_id.eq(&s.tenant),
                            subjects::wa_id_blind.eq(&s.wa_blind),
                            subjects::bsuid_blind.eq(&s.bsuid_blind),
                            subjects::phone_blind.eq(&s.phone_blind),
                            subjects::contact_ct.eq(&s.contact_ct),
                            subjects::created_at.eq(s.at),
                        )
                    })
                    .collect();
                let key_rows: Vec<_> = w
                    .subjects
                    .iter()
                    .map(|s| {
                        (
                            subject_keys::subject_id.eq(&s.id),
                            subject_keys::tenant_id.eq(&s.tenant),
                            subject_keys::wrapped_key.eq(&s.wrapped_key),
                            subject_keys::created_at.eq(s.at),
                        )
                    })
                    .collect();
                let conversation_rows: Vec<_> = w
                    .conversations
                    .iter()
                    .map(|v| {
                        (
                            conversations::id.eq(&v.id),
                            conversations::tenant_id.eq(&v.tenant),
                            conversations::subject_id.eq(&v.subject),
                            conversations::phone_number_id.eq(&v.pnid),
                            conversations::mode.eq("assistant"),
                            conversations::created_at.eq(v.at),
                            conversations::updated_at.eq(v.at),
                        )
                    })
                    .collect();
                let message_rows: Vec<_> = w
                    .messages
                    .iter()
                    .map(|m| {
                        (
                            messages::id.eq(&m.id),
                            messages::tenant_id.eq(&m.tenant),
                            messages::conversation_id.eq(&m.conversation),
                            messages::subject_id.eq(&m.subject),
                            messages::direction.eq("in"),
                            messages::kind.eq(&m.kind),
                            messages::status.eq("received"),
                            messages::wamid.eq(Some(&m.wamid)),
                            messages::body_ct.eq(&m.body_ct),
                            messages::author.eq("customer"),
                            messages::created_at.eq(m.at),
                            messages::status_at.eq(m.at),
                        )
                    })
                    .collect();
                for row in subject_rows {
                    step_result(
                        Step::Subjects,
                        insert_into(subjects::table).values(row).execute(c).await,
                    )?;
                }
                for row in key_rows {
                    insert_into(subject_keys::table)
                        .values(row)
                        .execute(c)
                        .await?;
                }
                for row in conversation_rows {
                    insert_into(conversations::table)
                        .values(row)
                        .execute(c)
                        .await?;
                }
                for row in message_rows {
                    step_result(
                        Step::Messages,
                        insert_into(messages::table).values(row).execute(c).await,
                    )?;
                }
                for (id, at) in &bumps {
                    let window = diesel::dsl::case_when(
                        conversations::last_inbound_at
                            .is_null()
                            .or(conversations::last_inbound_at.lt(*at)),
                        Some(*at)
                            .into_sql::<diesel::sql_types::Nullable<diesel::sql_types::BigInt>>(),
                    )
                    .otherwise(conversations::last_inbound_at);
                    diesel::update(conversations::table.find(id))
                        .set((
                            conversations::last_inbound_at.eq(window),
                            conversations::updated_at.eq(bump_at),
                        ))
                        .execute(c)
                        .await?;
                }
                let mut moved = 0;
                for m in &moves {
                    moved += diesel::update(messages::table.find(&m.id))
                        .filter(messages::status.eq(&m.from))
                        .set((
                            messages::status.eq(&m.to),
                            messages::error_code.eq(m.code),
                            messages::status_at.eq(m.at),
                        ))
                        .execute(c)
                        .await?;
                }
                step_result(Step::Statuses(Some(moves.len())), Ok(moved))?;
            }
        }
        // SQLite: jobs, feed rows and ledger drafts as their own modules queue one, one
        // statement each (the drafts in order), then the commit.
        for job in &w.jobs {
            crate::jobs::enqueue(&mut tx, job).await?;
        }
        for (tenant, mid) in &w.feed {
            let op = crate::search_feed::FeedOp::Add {
                message_id: mid.clone(),
            };
            crate::search_feed::enqueue(&mut tx, tenant, &op).await?;
        }
        for draft in &w.drafts {
            crate::audit::enqueue(&mut tx, draft).await?;
        }
        tx.commit().await
    }
}

/// Stored messages by (tenant, Meta id) on SQLite: one query per tenant (per [`CHUNK`]).
async fn sqlite_wamids(
    c: &mut SqliteConn,
    wanted: &HashMap<TenantId, Vec<String>>,
) -> Result<Vec<(String, String, String, String)>, CoreError> {
    let mut rows = Vec::new();
    for (tenant, wamids) in wanted {
        let tid = tenant.to_string();
        for chunk in wamids.chunks(CHUNK) {
            let found: Vec<(String, Option<String>, String)> = messages::table
                .filter(messages::tenant_id.eq(&tid))
                .filter(messages::wamid.eq_any(chunk))
                .select((messages::id, messages::wamid, messages::status))
                .load(c)
                .await?;
            rows.extend(
                found
                    .into_iter()
                    .filter_map(|(id, w, st)| w.map(|w| (tid.clone(), w, id, st))),
            );
        }
    }
    Ok(rows)
}

/// Conversations of subjects on SQLite, one query per tenant (per [`CHUNK`] subjects):
/// (tenant, id, subject, phone number id).
async fn sqlite_conversations(
    c: &mut SqliteConn,
    wanted: &HashMap<TenantId, Vec<String>>,
) -> Result<Vec<(String, String, String, String)>, CoreError> {
    let mut rows = Vec::new();
    for (tenant, sids) in wanted {
        let tid = tenant.to_string();
        for chunk in sids.chunks(CHUNK) {
            let part: Vec<(String, String, String)> = conversations::table
                .filter(conversations::tenant_id.eq(&tid))
                .filter(conversations::subject_id.eq_any(chunk))
                .select((
                    conversations::id,
                    conversations::subject_id,
                    conversations::phone_number_id,
                ))
                .load(c)
                .await?;
            rows.extend(
                part.into_iter()
                    .map(|(id, sid, pnid)| (tid.clone(), id, sid, pnid)),
            );
        }
    }
    Ok(rows)
}

/// Subjects by `wa_id` or BSUID blind index on SQLite, with their wrapped keys: two queries
/// per tenant (per [`CHUNK`]).
async fn sqlite_subjects(
    c: &mut SqliteConn,
    wanted: &HashMap<TenantId, BlindLookup>,
) -> Result<Vec<SubjectTuple>, CoreError> {
    let mut rows = Vec::new();
    for (tenant, want) in wanted {
        let tid = tenant.to_string();
        for (by_wa, list) in [(true, &want.wa), (false, &want.bsuid)] {
            for chunk in list.chunks(CHUNK) {
                let q = subjects::table
                    .left_join(subject_keys::table)
                    .filter(subjects::tenant_id.eq(&tid))
                    .select((
                        subjects::id,
                        subjects::wa_id_blind,
                        subjects::bsuid_blind,
                        subject_keys::wrapped_key.nullable(),
                    ))
                    .into_boxed();
                let q = if by_wa {
                    q.filter(subjects::wa_id_blind.eq_any(chunk))
                } else {
                    q.filter(subjects::bsuid_blind.eq_any(chunk))
                };
                let part: Vec<SqliteSubjectRow> = q.load(c).await?;
                rows.extend(
                    part.into_iter()
                        .map(|(id, wa, bs, k)| (tid.clone(), id, wa, bs, k)),
                );
            }
        }
    }
    Ok(rows)
}

/// A pipelined statement on PostgreSQL.
type PgFuture<'a> = futures::future::BoxFuture<'a, diesel::QueryResult<usize>>;

/// What a statement of a batch writes, for its error.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// New subjects: a unique violation means another writer created one first.
    Subjects,
    /// New messages: a unique violation means another writer stored the Meta id first.
    Messages,
    /// Status moves, each guarded by the status it was decided on: how many must move when
    /// the client counts (SQLite), `None` when the statement checks the count itself and
    /// raises `serialization_failure` (PostgreSQL).
    Statuses(Option<usize>),
    /// Anything else.
    Other,
}

fn step_result(step: Step, res: diesel::QueryResult<usize>) -> Result<(), CoreError> {
    match (step, res) {
        (Step::Subjects, Err(e)) if is_unique_violation(&e) => {
            Err(CoreError::Conflict { what: "subject" })
        }
        (Step::Messages, Err(e)) if is_unique_violation(&e) => {
            Err(CoreError::Conflict { what: "message" })
        }
        (Step::Statuses(Some(want)), Ok(moved)) if moved != want => Err(CoreError::Conflict {
            what: "message status",
        }),
        (
            Step::Statuses(None),
            Err(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::SerializationFailure,
                _,
            )),
        ) => Err(CoreError::Conflict {
            what: "message status",
        }),
        (_, Err(e)) => Err(e.into()),
        (_, Ok(_)) => Ok(()),
    }
}

/// Moves each conversation's 24-hour window to its newest inbound message (never back:
/// a late redelivery of an older message does not shorten it) and touches `updated_at`.
/// The ids are also given as `= ANY`, so the primary key is walked (joined with `unnest`
/// alone, the planner may hash the whole table).
const UPDATE_WINDOWS_PG: &str = "UPDATE conversations AS c \
     SET last_inbound_at = GREATEST(c.last_inbound_at, v.at), updated_at = $1 \
     FROM unnest($2::text[], $3::bigint[]) AS v(id, at) \
     WHERE c.id = ANY($2::text[]) AND c.id = v.id";

/// Applies status moves, each guarded by the status it was decided on, and raises
/// (`serialization_failure`, migration 15's `smartchat_expect_rows`) unless every one moved,
/// so the COMMIT pipelined after it cannot commit a batch decided on a status that changed.
/// The ids are distinct (one move per message).
const UPDATE_STATUSES_PG: &str = "WITH moved AS (UPDATE messages AS m \
     SET status = v.next, error_code = v.code, status_at = v.at \
     FROM unnest($1::text[], $2::text[], $3::text[], $4::int4[], $5::bigint[]) \
     AS v(id, prev, next, code, at) \
     WHERE m.id = ANY($1::text[]) AND m.id = v.id AND m.status = v.prev RETURNING m.id) \
     SELECT smartchat_expect_rows(count(*), cardinality($1::text[]), 'message status') \
     FROM moved";

/// New subjects with their wrapped keys: one row per element of the arrays (the key row
/// in the same statement, after its subject).
const INSERT_SUBJECTS_PG: &str = "WITH v AS (SELECT * FROM unnest($1::text[], $2::text[], \
     $3::bytea[], $4::bytea[], $5::bytea[], $6::bytea[], $7::bytea[], $8::bigint[]) \
     AS v(id, tenant_id, wa, bsuid, phone, contact, wrapped, at)), \
     s AS (INSERT INTO subjects (id, tenant_id, wa_id_blind, bsuid_blind, phone_blind, \
     contact_ct, created_at) SELECT id, tenant_id, wa, bsuid, phone, contact, at FROM v \
     RETURNING id) \
     INSERT INTO subject_keys (subject_id, tenant_id, wrapped_key, created_at) \
     SELECT v.id, v.tenant_id, v.wrapped, v.at FROM v JOIN s ON s.id = v.id";

/// New conversations, in the assistant's hands.
const INSERT_CONVERSATIONS_PG: &str = "INSERT INTO conversations \
     (id, tenant_id, subject_id, phone_number_id, mode, created_at, last_inbound_at, \
     updated_at) \
     SELECT id, tenant_id, subject_id, pnid, 'assistant', at, inbound, updated \
     FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], \
     $6::bigint[], $7::bigint[]) AS v(id, tenant_id, subject_id, pnid, at, inbound, updated)";

/// New inbound messages, `received`.
const INSERT_MESSAGES_PG: &str = "INSERT INTO messages (id, tenant_id, conversation_id, \
     subject_id, direction, kind, status, wamid, body_ct, author, created_at, status_at) \
     SELECT id, tenant_id, conversation_id, subject_id, 'in', kind, 'received', wamid, \
     body_ct, 'customer', at, at \
     FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
     $7::bytea[], $8::bigint[]) \
     AS v(id, tenant_id, conversation_id, subject_id, kind, wamid, body_ct, at)";

/// New ready jobs; one whose dedupe key is taken is skipped.
const INSERT_JOBS_PG: &str = "INSERT INTO jobs (queue, kind, tenant_id, payload, status, \
     attempts, max_attempts, run_at, dedupe_key, created_at) \
     SELECT queue, kind, tenant_id, payload, 'ready', 0, max_attempts, run_at, dedupe_key, $1 \
     FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::int4[], $7::bigint[], \
     $8::text[]) AS v(queue, kind, tenant_id, payload, max_attempts, run_at, dedupe_key) \
     ON CONFLICT (dedupe_key) DO NOTHING";

/// New messages for the search indexer.
const INSERT_FEED_PG: &str = "INSERT INTO search_feed (tenant_id, op, ref_id, created_at) \
     SELECT tenant_id, 'add', ref_id, $1 FROM unnest($2::text[], $3::text[]) \
     AS v(tenant_id, ref_id)";

/// Ledger drafts for the sequencer, in order.
const INSERT_LEDGER_PENDING_PG: &str = "INSERT INTO ledger_pending (draft, created_micros) \
     SELECT draft, $1 FROM unnest($2::bytea[]) WITH ORDINALITY AS v(draft, n) ORDER BY n";
