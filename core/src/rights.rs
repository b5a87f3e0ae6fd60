//! Data-subject requests (privacy policy s.8; GDPR Art. 12-21; DPDP Act 2023 s.11-13) carried
//! out for the business, the controller: the request's lifecycle and deadline, legal holds,
//! and the work itself (erasure, correction, objection; access and portability reports are
//! in [`crate::rights_export`]).
//!
//! Lifecycle: `received` (public requests until the code is confirmed) → `verified` →
//! `completed` or `rejected` (with a reason), or `on_hold` while a legal hold blocks an
//! erasure. Every transition is ledgered (`dsr_received`, `dsr_verified`, `dsr_completed`,
//! `dsr_rejected`) with the right and the subject's pseudonym, never a value. An open request
//! is unique per (tenant, subject, right, what it asks), so the same request twice is one
//! request: nothing is deleted or exported twice.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::Serialize;
use smartchat_ledger::{
    Actor, AttrKey, AttrValue, EntryDraft, EventKind, Outcome, Purpose, RefKind, Reference,
};
use smartchat_policies::Right;
use smartchat_policies::deadlines::{self, Regime, Urgency};
use time::OffsetDateTime;

use crate::audit;
use crate::db::schema::{
    booking_links, conversations, dsr_challenges, dsr_requests, follow_ups, leads, legal_holds,
    messages, subjects,
};
use crate::db::{is_unique_violation, micros_of, now_micros};
use crate::db_run;
use crate::error::CoreError;
use crate::ids::{SubjectId, TenantId};
use crate::store::Store;

/// Where a request came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// A member of the business, on the subject's behalf (owner API).
    Owner,
    /// The subject, on the public endpoint, after confirming a one-time code.
    Public,
    /// The subject, in the WhatsApp chat (the chat proves control of the number).
    Chat,
}

impl Channel {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Owner => "owner",
            Channel::Public => "public",
            Channel::Chat => "chat",
        }
    }
}

/// Statuses in which a request is still open.
pub const OPEN_STATUSES: &[&str] = &["received", "verified", "on_hold"];

/// The ledger code of a right.
pub fn right_code(r: Right) -> u32 {
    u32::from(
        match r {
            Right::Access => smartchat_ledger::Right::ACCESS,
            Right::Correction => smartchat_ledger::Right::CORRECTION,
            Right::Deletion => smartchat_ledger::Right::DELETION,
            Right::Objection => smartchat_ledger::Right::OBJECTION,
            Right::Portability => smartchat_ledger::Right::PORTABILITY,
        }
        .0,
    )
}

/// Parses a right's snake_case name.
pub fn parse_right(s: &str) -> Option<Right> {
    Some(match s {
        "access" => Right::Access,
        "correction" => Right::Correction,
        "deletion" => Right::Deletion,
        "objection" => Right::Objection,
        "portability" => Right::Portability,
        _ => return None,
    })
}

/// Why a request was rejected, as a ledger reason code.
pub fn rejection_code(reason: &str) -> u32 {
    match reason {
        "not_granted" => 1,
        "manifestly_unfounded" => 2,
        "identity_not_confirmed" => 3,
        "legal_hold" => 4,
        "withdrawn" => 5,
        _ => 0,
    }
}

/// A request as the owner API shows it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct DsrRequest {
    /// Id.
    pub id: String,
    /// The subject's id, when the number belongs to a customer.
    pub subject_id: Option<String>,
    /// The right.
    pub right: String,
    /// `owner`, `public` or `chat`.
    pub channel: String,
    /// `gdpr` or `dpdp`.
    pub regime: String,
    /// `received`, `verified`, `on_hold`, `completed`, `rejected`.
    pub status: String,
    /// Received (unix micros).
    pub received_at: i64,
    /// Due (unix micros), extended or not.
    pub due_at: i64,
    /// When it was extended, if it was.
    pub extended_at: Option<i64>,
    /// The reasons given for the extension.
    pub extension_reason: Option<String>,
    /// Completed or rejected at.
    pub completed_at: Option<i64>,
    /// Rejection or hold reason.
    pub reason: Option<String>,
    /// Records affected (exported, deleted, corrected).
    pub record_count: Option<i64>,
    /// For an open request: on track, soon due or overdue.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub urgency: Option<Urgency>,
}

type RequestRow = (
    String,
    Option<String>,
    String,
    String,
    String,
    String,
    i64,
    i64,
    Option<i64>,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<i64>,
);

fn to_request(r: RequestRow, now: OffsetDateTime) -> DsrRequest {
    let open = OPEN_STATUSES.contains(&r.5.as_str());
    let due = OffsetDateTime::from_unix_timestamp_nanos(i128::from(r.7) * 1000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    DsrRequest {
        id: r.0,
        subject_id: r.1,
        right: r.2,
        channel: r.3,
        regime: r.4,
        status: r.5,
        received_at: r.6,
        due_at: r.7,
        extended_at: r.8,
        extension_reason: r.9,
        completed_at: r.10,
        reason: r.11,
        record_count: r.12,
        urgency: open.then(|| deadlines::urgency(due, now)),
    }
}

macro_rules! request_columns {
    () => {
        (
            dsr_requests::id,
            dsr_requests::subject_id,
            dsr_requests::right_kind,
            dsr_requests::channel,
            dsr_requests::regime,
            dsr_requests::status,
            dsr_requests::received_at,
            dsr_requests::due_at,
            dsr_requests::extended_at,
            dsr_requests::extension_reason,
            dsr_requests::completed_at,
            dsr_requests::reason,
            dsr_requests::record_count,
        )
    };
}

/// A new request.
#[derive(Debug, Clone)]
pub struct NewRequest<'a> {
    /// The business.
    pub tenant: TenantId,
    /// The subject, when the number is a customer's.
    pub subject: Option<SubjectId>,
    /// The right.
    pub right: Right,
    /// Where it came from.
    pub channel: Channel,
    /// The regime it is answered under.
    pub regime: Regime,
    /// What it asks (a correction's new values), sealed while the request is open.
    pub details: Option<&'a serde_json::Value>,
    /// Whether the requester's identity is already established (owner, chat).
    pub verified: bool,
    /// Who asked.
    pub actor: Actor,
    /// Receipt time.
    pub now: OffsetDateTime,
}

/// How a request ends.
#[derive(Debug, Clone, Copy)]
pub enum Finish<'a> {
    /// Carried out; `records` were exported, deleted or corrected.
    Completed {
        /// Records affected.
        records: u64,
    },
    /// Refused, with a reason code name (see [`rejection_code`]).
    Rejected {
        /// Reason.
        reason: &'a str,
    },
    /// Waiting for a legal hold to be released.
    OnHold,
}

/// A legal hold.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct LegalHold {
    /// Id.
    pub id: String,
    /// The subject it covers; `None` covers the whole tenant.
    pub subject_id: Option<String>,
    /// Why (the business's own words, e.g. a case reference; never personal data).
    pub reason: String,
    /// Placed at.
    pub placed_at: i64,
    /// Released at.
    pub released_at: Option<i64>,
}

/// The ledger code of a contact field (`field` attribute: 101 profile_name, 102 phone).
pub fn contact_field_code(name: &str) -> u32 {
    match name {
        "profile_name" => 101,
        "phone" => 102,
        _ => 0,
    }
}

type HoldRow = (String, Option<String>, String, i64, Option<i64>);

fn details_context(tenant: &str, id: &str) -> String {
    format!("dsr_requests.details_ct|{tenant}|{id}")
}

fn dsr_draft(kind: EventKind, tenant: TenantId, actor: Actor, right: &str) -> EntryDraft {
    EntryDraft::new(kind, actor)
        .tenant(tenant.bytes())
        .purpose(Purpose::DSR_FULFILMENT)
        .attr(
            AttrKey::RIGHT,
            AttrValue::Code(parse_right(right).map_or(0, right_code)),
        )
}

fn request_ref(id: &str) -> Reference {
    let bytes = uuid::Uuid::parse_str(id)
        .map(|u| *u.as_bytes())
        .unwrap_or([0; 16]);
    Reference::id(RefKind::DSR, bytes)
}

impl Store {
    /// Opens a request, or returns the open one that asks the same (then `false`). A right
    /// the tenant's policy does not grant is refused (`Invalid`).
    pub async fn open_request(&self, new: NewRequest<'_>) -> Result<(DsrRequest, bool), CoreError> {
        let policy = self.policy.effective(new.tenant).await?;
        if !policy.grants(new.right) {
            return Err(CoreError::Invalid {
                field: "right",
                reason: format!("the policy does not grant {}", new.right.as_str()),
            });
        }
        let tid = new.tenant.to_string();
        let key = self.tenant_key(new.tenant).await?;
        let due = deadlines::due_date(new.now, new.regime, new.right, policy.response_days());
        let details_json = match new.details {
            Some(d) => Some(serde_json::to_vec(d).map_err(|e| CoreError::Internal(e.to_string()))?),
            None => None,
        };
        let open_key = new.subject.map(|s| {
            let what = details_json
                .as_deref()
                .map(|d| hex::encode(key.keyed_digest("dsr-details", d)))
                .unwrap_or_default();
            hex::encode(key.keyed_digest(
                "dsr-open",
                format!("{s}|{}|{what}", new.right.as_str()).as_bytes(),
            ))
        });
        if let Some(k) = &open_key {
            if let Some(existing) = self.request_by_open_key(k, new.now).await? {
                return Ok((existing, false));
            }
        }
        let id = uuid::Uuid::now_v7().to_string();
        let details_ct = match &details_json {
            Some(d) => Some(key.seal(&details_context(&tid, &id), d)?),
            None => None,
        };
        let sid = new.subject.map(|s| s.to_string());
        let status = if new.verified { "verified" } else { "received" };
        let mut tx = self.db.begin().await?;
        let res = db_run!(tx, |c| diesel::insert_into(dsr_requests::table)
            .values((
                dsr_requests::id.eq(&id),
                dsr_requests::tenant_id.eq(&tid),
                dsr_requests::subject_id.eq(&sid),
                dsr_requests::right_kind.eq(new.right.as_str()),
                dsr_requests::channel.eq(new.channel.as_str()),
                dsr_requests::regime.eq(new.regime.as_str()),
                dsr_requests::status.eq(status),
                dsr_requests::received_at.eq(micros_of(new.now)),
                dsr_requests::due_at.eq(micros_of(due)),
                dsr_requests::details_ct.eq(&details_ct),
                dsr_requests::open_key.eq(&open_key),
            ))
            .execute(c)
            .await);
        match res {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                drop(tx);
                let k = open_key.unwrap_or_default();
                return match self.request_by_open_key(&k, new.now).await? {
                    Some(existing) => Ok((existing, false)),
                    None => Err(CoreError::Conflict { what: "request" }),
                };
            }
            Err(e) => return Err(e.into()),
        }
        let with_subject = |d: EntryDraft| match &sid {
            Some(s) => d.subject(key.pseudonym(s)),
            None => d,
        };
        let right = new.right.as_str();
        audit::enqueue(
            &mut tx,
            &with_subject(dsr_draft(
                EventKind::DSR_RECEIVED,
                new.tenant,
                new.actor,
                right,
            ))
            .reference(request_ref(&id)),
        )
        .await?;
        if new.verified {
            audit::enqueue(
                &mut tx,
                &with_subject(dsr_draft(
                    EventKind::DSR_VERIFIED,
                    new.tenant,
                    new.actor,
                    right,
                ))
                .reference(request_ref(&id)),
            )
            .await?;
        }
        tx.commit().await?;
        Ok((self.dsr_request(new.tenant, &id, new.now).await?, true))
    }

    async fn request_by_open_key(
        &self,
        open_key: &str,
        now: OffsetDateTime,
    ) -> Result<Option<DsrRequest>, CoreError> {
        let mut c = self.db.conn().await?;
        let row: Option<RequestRow> = db_run!(c, |c| dsr_requests::table
            .filter(dsr_requests::open_key.eq(open_key))
            .select(request_columns!())
            .first(c)
            .await
            .optional())?;
        Ok(row.map(|r| to_request(r, now)))
    }

    /// The tenant's requests, open ones first by due date, then the rest newest first.
    pub async fn dsr_requests(
        &self,
        tenant: TenantId,
        now: OffsetDateTime,
    ) -> Result<Vec<DsrRequest>, CoreError> {
        let tid = tenant.to_string();
        let mut c = self.db.conn().await?;
        let rows: Vec<RequestRow> = db_run!(c, |c| dsr_requests::table
            .filter(dsr_requests::tenant_id.eq(&tid))
            .order(dsr_requests::received_at.desc())
            .select(request_columns!())
            .load(c)
            .await)?;
        let mut list: Vec<DsrRequest> = rows.into_iter().map(|r| to_request(r, now)).collect();
        list.sort_by_key(|r| {
            (
                r.urgency.is_none(),
                if r.urgency.is_some() {
                    r.due_at
                } else {
                    -r.received_at
                },
            )
        });
        Ok(list)
    }

    /// One request of the tenant.
    pub async fn dsr_request(
        &self,
        tenant: TenantId,
        id: &str,
        now: OffsetDateTime,
    ) -> Result<DsrRequest, CoreError> {
        let tid = tenant.to_string();
        let mut c = self.db.conn().await?;
        let row: Option<RequestRow> = db_run!(c, |c| dsr_requests::table
            .filter(dsr_requests::tenant_id.eq(&tid))
            .filter(dsr_requests::id.eq(id))
            .select(request_columns!())
            .first(c)
            .await
            .optional())?;
        row.map(|r| to_request(r, now))
            .ok_or(CoreError::NotFound { what: "request" })
    }

    /// What an open request asks (a correction's values), opened.
    pub async fn dsr_details(
        &self,
        tenant: TenantId,
        id: &str,
    ) -> Result<Option<serde_json::Value>, CoreError> {
        let tid = tenant.to_string();
        let key = self.tenant_key(tenant).await?;
        let mut c = self.db.conn().await?;
        let ct: Option<Option<Vec<u8>>> = db_run!(c, |c| dsr_requests::table
            .filter(dsr_requests::tenant_id.eq(&tid))
            .filter(dsr_requests::id.eq(id))
            .select(dsr_requests::details_ct)
            .first(c)
            .await
            .optional())?;
        match ct.flatten() {
            Some(ct) => Ok(Some(
                serde_json::from_slice(&key.open(&details_context(&tid, id), &ct)?)
                    .map_err(|_| CoreError::Crypto("request details do not parse".into()))?,
            )),
            None => Ok(None),
        }
    }

    /// Marks a received request verified (the public code was confirmed).
    pub async fn verify_request(
        &self,
        tenant: TenantId,
        id: &str,
        actor: Actor,
    ) -> Result<(), CoreError> {
        let tid = tenant.to_string();
        let key = self.tenant_key(tenant).await?;
        let req = self
            .dsr_request(tenant, id, OffsetDateTime::now_utc())
            .await?;
        let mut tx = self.db.begin().await?;
        let n = db_run!(tx, |c| diesel::update(
            dsr_requests::table
                .filter(dsr_requests::tenant_id.eq(&tid))
                .filter(dsr_requests::id.eq(id))
                .filter(dsr_requests::status.eq("received"))
        )
        .set(dsr_requests::status.eq("verified"))
        .execute(c)
        .await)?;
        if n == 1 {
            let mut d = dsr_draft(EventKind::DSR_VERIFIED, tenant, actor, &req.right)
                .reference(request_ref(id));
            if let Some(s) = &req.subject_id {
                d = d.subject(key.pseudonym(s));
            }
            audit::enqueue(&mut tx, &d).await?;
        }
        tx.commit().await
    }

    /// Ends (or holds) an open request, once; ledgered. Returns the request as it is now.
    pub async fn finish_request(
        &self,
        tenant: TenantId,
        id: &str,
        finish: Finish<'_>,
        actor: Actor,
    ) -> Result<DsrRequest, CoreError> {
        let tid = tenant.to_string();
        let key = self.tenant_key(tenant).await?;
        let now = OffsetDateTime::now_utc();
        let req = self.dsr_request(tenant, id, now).await?;
        let mut tx = self.db.begin().await?;
        let open = dsr_requests::table
            .filter(dsr_requests::tenant_id.eq(&tid))
            .filter(dsr_requests::id.eq(id))
            .filter(dsr_requests::status.eq_any(OPEN_STATUSES));
        let (n, draft) = match finish {
            Finish::Completed { records } => {
                let records = i64::try_from(records).unwrap_or(i64::MAX);
                let n = db_run!(tx, |c| diesel::update(open.clone())
                    .set((
                        dsr_requests::status.eq("completed"),
                        dsr_requests::completed_at.eq(micros_of(now)),
                        dsr_requests::record_count.eq(records),
                        dsr_requests::details_ct.eq(None::<Vec<u8>>),
                        dsr_requests::open_key.eq(None::<String>),
                        dsr_requests::reason.eq(None::<String>),
                    ))
                    .execute(c)
                    .await)?;
                (
                    n,
                    Some(
                        dsr_draft(EventKind::DSR_COMPLETED, tenant, actor, &req.right)
                            .attr(AttrKey::RECORD_COUNT, AttrValue::U64(records as u64)),
                    ),
                )
            }
            Finish::Rejected { reason } => {
                let n = db_run!(tx, |c| diesel::update(open.clone())
                    .set((
                        dsr_requests::status.eq("rejected"),
                        dsr_requests::completed_at.eq(micros_of(now)),
                        dsr_requests::reason.eq(reason),
                        dsr_requests::details_ct.eq(None::<Vec<u8>>),
                        dsr_requests::open_key.eq(None::<String>),
                    ))
                    .execute(c)
                    .await)?;
                (
                    n,
                    Some(
                        dsr_draft(EventKind::DSR_REJECTED, tenant, actor, &req.right)
                            .attr(AttrKey::REASON, AttrValue::Code(rejection_code(reason)))
                            .outcome(Outcome::REJECTED),
                    ),
                )
            }
            Finish::OnHold => {
                let n = db_run!(tx, |c| diesel::update(open.clone())
                    .set((
                        dsr_requests::status.eq("on_hold"),
                        dsr_requests::reason.eq("legal_hold"),
                    ))
                    .execute(c)
                    .await)?;
                (n, None)
            }
        };
        if n == 1 {
            if let Some(mut d) = draft {
                d = d.reference(request_ref(id));
                if let Some(s) = &req.subject_id {
                    d = d.subject(key.pseudonym(s));
                }
                audit::enqueue(&mut tx, &d).await?;
            }
        }
        tx.commit().await?;
        self.dsr_request(tenant, id, now).await
    }

    /// Extends an open GDPR request once, within its first month, with reasons
    /// (Art. 12(3)); the reasons are what the subject is told.
    pub async fn extend_request(
        &self,
        tenant: TenantId,
        id: &str,
        reason: &str,
        now: OffsetDateTime,
    ) -> Result<DsrRequest, CoreError> {
        let req = self.dsr_request(tenant, id, now).await?;
        if !OPEN_STATUSES.contains(&req.status.as_str()) {
            return Err(CoreError::Conflict {
                what: "request (already closed)",
            });
        }
        let regime = Regime::parse(&req.regime).unwrap_or(Regime::Gdpr);
        let received =
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(req.received_at) * 1000)
                .unwrap_or(now);
        let due = deadlines::extend(received, regime, req.extended_at.is_some(), reason, now)
            .map_err(|e| CoreError::Invalid {
                field: "extension",
                reason: e.to_string(),
            })?;
        if reason.chars().count() > 500 {
            return Err(CoreError::Invalid {
                field: "extension",
                reason: "reasons: at most 500 characters".into(),
            });
        }
        let tid = tenant.to_string();
        let mut c = self.db.conn().await?;
        db_run!(c, |c| diesel::update(
            dsr_requests::table
                .filter(dsr_requests::tenant_id.eq(&tid))
                .filter(dsr_requests::id.eq(id))
                .filter(dsr_requests::extended_at.is_null())
        )
        .set((
            dsr_requests::due_at.eq(micros_of(due)),
            dsr_requests::extended_at.eq(micros_of(now)),
            dsr_requests::extension_reason.eq(reason.trim()),
        ))
        .execute(c)
        .await)?;
        drop(c);
        self.dsr_request(tenant, id, now).await
    }

    /// Places a legal hold on the tenant (`subject` `None`) or one subject.
    pub async fn place_hold(
        &self,
        tenant: TenantId,
        subject: Option<SubjectId>,
        reason: &str,
        actor: Actor,
    ) -> Result<String, CoreError> {
        let n = reason.trim().chars().count();
        if n == 0 || n > 200 {
            return Err(CoreError::Invalid {
                field: "reason",
                reason: "1 to 200 characters".into(),
            });
        }
        let key = self.tenant_key(tenant).await?;
        let id = uuid::Uuid::now_v7().to_string();
        let (tid, sid) = (tenant.to_string(), subject.map(|s| s.to_string()));
        let mut tx = self.db.begin().await?;
        db_run!(tx, |c| diesel::insert_into(legal_holds::table)
            .values((
                legal_holds::id.eq(&id),
                legal_holds::tenant_id.eq(&tid),
                legal_holds::subject_id.eq(&sid),
                legal_holds::reason.eq(reason.trim()),
                legal_holds::placed_at.eq(now_micros()),
            ))
            .execute(c)
            .await)?;
        let mut d = EntryDraft::new(EventKind::LEGAL_HOLD_PLACED, actor)
            .tenant(tenant.bytes())
            .purpose(Purpose::LEGAL_OBLIGATION)
            .reference(Reference::digest(
                RefKind::RECORD_DIGEST,
                *blake3::hash(id.as_bytes()).as_bytes(),
            ));
        if let Some(s) = &sid {
            d = d.subject(key.pseudonym(s));
        }
        audit::enqueue(&mut tx, &d).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Releases a hold (once); ledgered.
    pub async fn release_hold(
        &self,
        tenant: TenantId,
        id: &str,
        actor: Actor,
    ) -> Result<(), CoreError> {
        let tid = tenant.to_string();
        let mut tx = self.db.begin().await?;
        let n = db_run!(tx, |c| diesel::update(
            legal_holds::table
                .filter(legal_holds::tenant_id.eq(&tid))
                .filter(legal_holds::id.eq(id))
                .filter(legal_holds::released_at.is_null())
        )
        .set(legal_holds::released_at.eq(now_micros()))
        .execute(c)
        .await)?;
        if n == 0 {
            return Err(CoreError::NotFound {
                what: "active legal hold",
            });
        }
        audit::enqueue(
            &mut tx,
            &EntryDraft::new(EventKind::LEGAL_HOLD_RELEASED, actor)
                .tenant(tenant.bytes())
                .purpose(Purpose::LEGAL_OBLIGATION)
                .reference(Reference::digest(
                    RefKind::RECORD_DIGEST,
                    *blake3::hash(id.as_bytes()).as_bytes(),
                )),
        )
        .await?;
        tx.commit().await
    }

    /// The tenant's holds, newest first.
    pub async fn legal_holds(&self, tenant: TenantId) -> Result<Vec<LegalHold>, CoreError> {
        let tid = tenant.to_string();
        let mut c = self.db.conn().await?;
        let rows: Vec<HoldRow> = db_run!(c, |c| legal_holds::table
            .filter(legal_holds::tenant_id.eq(&tid))
            .order(legal_holds::placed_at.desc())
            .select((
                legal_holds::id,
                legal_holds::subject_id,
                legal_holds::reason,
                legal_holds::placed_at,
                legal_holds::released_at
            ))
            .load(c)
            .await)?;
        Ok(rows
            .into_iter()
            .map(
                |(id, subject_id, reason, placed_at, released_at)| LegalHold {
                    id,
                    subject_id,
                    reason,
                    placed_at,
                    released_at,
                },
            )
            .collect())
    }

    /// Requests a carrying-out left open by failing half-way: `verified` and received
    /// before `before` (unix micros), and `on_hold` while no hold covers them any more.
    /// Nothing else moves these on (a request is carried out once, when it is verified or
    /// its hold released), so the retention pass resumes them.
    pub async fn stranded_requests(
        &self,
        before: i64,
    ) -> Result<Vec<(TenantId, String)>, CoreError> {
        let mut c = self.db.conn().await?;
        let verified: Vec<(String, String)> = db_run!(c, |c| dsr_requests::table
            .filter(dsr_requests::status.eq("verified"))
            .filter(dsr_requests::received_at.lt(before))
            .select((dsr_requests::tenant_id, dsr_requests::id))
            .load(c)
            .await)?;
        let held: Vec<(String, String, Option<String>)> = db_run!(c, |c| dsr_requests::table
            .filter(dsr_requests::status.eq("on_hold"))
            .select((
                dsr_requests::tenant_id,
                dsr_requests::id,
                dsr_requests::subject_id
            ))
            .load(c)
            .await)?;
        drop(c);
        let mut out = Vec::with_capacity(verified.len());
        for (tid, id) in verified {
            out.push((tid.parse()?, id));
        }
        for (tid, id, sid) in held {
            let tenant: TenantId = tid.parse()?;
            let subject = sid.map(|s| s.parse()).transpose()?;
            if !self.is_held(tenant, subject).await? {
                out.push((tenant, id));
            }
        }
        Ok(out)
    }

    /// Whether deletion of the subject's data (or, with `None`, the tenant's) is held.
    pub async fn is_held(
        &self,
        tenant: TenantId,
        subject: Option<SubjectId>,
    ) -> Result<bool, CoreError> {
        let tid = tenant.to_string();
        let sid = subject.map(|s| s.to_string());
        let mut c = self.db.conn().await?;
        let n: i64 = db_run!(c, |c| {
            let mut q = legal_holds::table
                .filter(legal_holds::tenant_id.eq(&tid))
                .filter(legal_holds::released_at.is_null())
                .into_boxed();
            q = match &sid {
                Some(s) => q.filter(
                    legal_holds::subject_id
                        .is_null()
                        .or(legal_holds::subject_id.eq(s)),
                ),
                None => q,
            };
            q.count().get_result(c).await
        })?;
        Ok(n > 0)
    }

    /// Deletes what crypto-shredding left of a subject (their key is already gone): the
    /// rows of their messages, conversations, leads, follow-ups and tracked links, then the
    /// subject itself, `batch` rows at a time; `progress` gets the running total. Returns
    /// how many rows were deleted. Refuses while the subject's key still exists.
    pub async fn purge_subject_rows(
        &self,
        tenant: TenantId,
        subject: SubjectId,
        batch: i64,
        mut progress: impl FnMut(u64) + Send,
    ) -> Result<u64, CoreError> {
        use crate::db::schema::subject_keys;
        let (tid, sid) = (tenant.to_string(), subject.to_string());
        let batch = batch.max(1);
        let mut c = self.db.conn().await?;
        let key_left: i64 = db_run!(c, |c| subject_keys::table
            .filter(subject_keys::subject_id.eq(&sid))
            .count()
            .get_result(c)
            .await)?;
        if key_left > 0 {
            return Err(CoreError::Conflict {
                what: "subject (shred the key first)",
            });
        }
        drop(c);
        let mut total: u64 = 0;
        let which = crate::termination::MessageBatch {
            tenant: &tid,
            subject: Some(&sid),
            before: None,
            size: batch,
        };
        let mut cursor = i64::MIN;
        loop {
            let mut tx = self.db.begin().await?;
            let ids =
                crate::termination::delete_message_batch(&mut tx, &which, &mut cursor).await?;
            if ids.is_empty() {
                break;
            }
            tx.commit().await?;
            total += ids.len() as u64;
            progress(total);
        }
        let mut tx = self.db.begin().await?;
        let convs: Vec<String> = db_run!(tx, |c| conversations::table
            .filter(conversations::tenant_id.eq(&tid))
            .filter(conversations::subject_id.eq(&sid))
            .select(conversations::id)
            .load(c)
            .await)?;
        let lead_ids: Vec<String> = db_run!(tx, |c| leads::table
            .filter(leads::subject_id.eq(&sid))
            .select(leads::id)
            .load(c)
            .await)?;
        let mut n = db_run!(tx, |c| diesel::delete(
            follow_ups::table.filter(
                follow_ups::lead_id
                    .eq_any(&lead_ids)
                    .or(follow_ups::conversation_id.eq_any(&convs))
            )
        )
        .execute(c)
        .await)?;
        n += db_run!(tx, |c| diesel::delete(
            booking_links::table.filter(booking_links::conversation_id.eq_any(&convs))
        )
        .execute(c)
        .await)?;
        n += db_run!(tx, |c| diesel::delete(
            leads::table.filter(leads::subject_id.eq(&sid))
        )
        .execute(c)
        .await)?;
        n += db_run!(tx, |c| diesel::delete(
            conversations::table.filter(conversations::id.eq_any(&convs))
        )
        .execute(c)
        .await)?;
        n += db_run!(tx, |c| diesel::delete(
            subjects::table
                .filter(subjects::tenant_id.eq(&tid))
                .filter(subjects::id.eq(&sid))
        )
        .execute(c)
        .await)?;
        tx.commit().await?;
        total += n as u64;
        progress(total);
        Ok(total)
    }

    /// Corrects the subject's contact fields (`profile_name`, `phone`): the old values are
    /// replaced by a new sealing; returns the names of the fields changed.
    pub async fn correct_contact(
        &self,
        tenant: TenantId,
        subject: SubjectId,
        patch: &serde_json::Map<String, serde_json::Value>,
        actor: Actor,
    ) -> Result<Vec<String>, CoreError> {
        let key = self.tenant_key(tenant).await?;
        let mut contact = self.subject_contact(tenant, subject).await?;
        let mut changed = Vec::new();
        for (k, v) in patch {
            let value = match v {
                serde_json::Value::String(s)
                    if !s.trim().is_empty() && s.chars().count() <= 200 =>
                {
                    Some(s.trim().to_owned())
                }
                serde_json::Value::Null => None,
                _ => {
                    return Err(CoreError::Invalid {
                        field: "contact",
                        reason: format!("{k}: a text of 1 to 200 characters, or null"),
                    });
                }
            };
            match k.as_str() {
                "profile_name" => contact.profile_name = value,
                "phone" => contact.phone = value,
                other => {
                    return Err(CoreError::Invalid {
                        field: "contact",
                        reason: format!(
                            "{other:?} cannot be corrected here; contact fields: profile_name, phone"
                        ),
                    });
                }
            }
            changed.push(k.clone());
        }
        if changed.is_empty() {
            return Ok(changed);
        }
        let (tid, sid) = (tenant.to_string(), subject.to_string());
        let mut tx = self.db.begin().await?;
        let skey = self.subject_key_in(&mut tx, &tid, &sid, &key).await?;
        let ct = skey.seal(
            &format!("subjects.contact_ct|{tid}|{sid}"),
            &serde_json::to_vec(&contact).map_err(|e| CoreError::Internal(e.to_string()))?,
        )?;
        let phone_blind = contact
            .phone
            .as_deref()
            .map(|p| key.blind(crate::crypto::BlindKind::Phone, p).to_vec());
        db_run!(tx, |c| diesel::update(subjects::table.find(&sid))
            .set((
                subjects::contact_ct.eq(&ct),
                subjects::phone_blind.eq(&phone_blind),
            ))
            .execute(c)
            .await)?;
        audit::enqueue(
            &mut tx,
            &changed.iter().fold(
                EntryDraft::new(EventKind::CORRECTION, actor)
                    .tenant(tenant.bytes())
                    .subject(key.pseudonym(&sid))
                    .purpose(Purpose::DSR_FULFILMENT)
                    .reference(Reference::digest(
                        RefKind::RECORD_DIGEST,
                        *blake3::hash(format!("subjects|{sid}").as_bytes()).as_bytes(),
                    )),
                |d, f| d.attr(AttrKey::FIELD, AttrValue::Code(contact_field_code(f))),
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(changed)
    }

    /// The lead of a subject, if any.
    pub async fn lead_of_subject(
        &self,
        tenant: TenantId,
        subject: SubjectId,
    ) -> Result<Option<crate::ids::LeadId>, CoreError> {
        let (tid, sid) = (tenant.to_string(), subject.to_string());
        let mut c = self.db.conn().await?;
        let id: Option<String> = db_run!(c, |c| leads::table
            .filter(leads::tenant_id.eq(&tid))
            .filter(leads::subject_id.eq(&sid))
            .select(leads::id)
            .first(c)
            .await
            .optional())?;
        id.map(|s| s.parse()).transpose()
    }

    /// The subject whose `wa_id` has this blind index, if any.
    pub async fn subject_by_blind(
        &self,
        tenant: TenantId,
        blind: &[u8],
    ) -> Result<Option<SubjectId>, CoreError> {
        let tid = tenant.to_string();
        let b = blind.to_vec();
        let mut c = self.db.conn().await?;
        let id: Option<String> = db_run!(c, |c| subjects::table
            .filter(subjects::tenant_id.eq(&tid))
            .filter(subjects::wa_id_blind.eq(&b))
            .select(subjects::id)
            .first(c)
            .await
            .optional())?;
        id.map(|s| s.parse()).transpose()
    }

    /// How many codes were issued for this number of the tenant since `since` (unix micros).
    pub async fn challenges_since(
        &self,
        tenant: TenantId,
        number_blind: &[u8],
        since: i64,
    ) -> Result<i64, CoreError> {
        let mut c = self.db.conn().await?;
        count_challenges(&mut c, &tenant.to_string(), number_blind, since).await
    }

    /// Records a one-time code (as a keyed digest) for a request not yet made.
    pub async fn create_challenge(&self, ch: &NewChallenge<'_>) -> Result<(), CoreError> {
        let mut c = self.db.conn().await?;
        insert_challenge(&mut c, ch).await
    }

    /// A challenge by id.
    pub async fn challenge(&self, id: &str) -> Result<Challenge, CoreError> {
        let mut c = self.db.conn().await?;
        let row: Option<ChallengeRow> = db_run!(c, |c| dsr_challenges::table
            .find(id)
            .select((
                dsr_challenges::id,
                dsr_challenges::tenant_id,
                dsr_challenges::right_kind,
                dsr_challenges::regime,
                dsr_challenges::number_blind,
                dsr_challenges::code_digest,
                dsr_challenges::attempts,
                dsr_challenges::expires_at,
                dsr_challenges::used_at,
                dsr_challenges::request_id,
                dsr_challenges::download_digest,
            ))
            .first(c)
            .await
            .optional())?;
        let r = row.ok_or(CoreError::NotFound { what: "challenge" })?;
        Ok(Challenge {
            id: r.0,
            tenant: r.1.parse()?,
            right: r.2,
            regime: r.3,
            number_blind: r.4,
            code_digest: r.5,
            attempts: r.6,
            expires_at: r.7,
            used_at: r.8,
            request_id: r.9,
            download_digest: r.10,
        })
    }

    /// Counts one more attempt at a challenge; returns the attempts made so far.
    pub async fn count_attempt(&self, id: &str) -> Result<i32, CoreError> {
        let mut tx = self.db.begin().await?;
        db_run!(tx, |c| diesel::update(dsr_challenges::table.find(id))
            .set(dsr_challenges::attempts.eq(dsr_challenges::attempts + 1))
            .execute(c)
            .await)?;
        let n: i32 = db_run!(tx, |c| dsr_challenges::table
            .find(id)
            .select(dsr_challenges::attempts)
            .first(c)
            .await)?;
        tx.commit().await?;
        Ok(n)
    }

    /// Marks a challenge used (once) and links its request and download; `false` when it
    /// was already used.
    pub async fn use_challenge(
        &self,
        id: &str,
        request_id: Option<&str>,
        download_digest: Option<&[u8]>,
    ) -> Result<bool, CoreError> {
        let mut c = self.db.conn().await?;
        let n = db_run!(c, |c| diesel::update(
            dsr_challenges::table
                .find(id)
                .filter(dsr_challenges::used_at.is_null())
        )
        .set((
            dsr_challenges::used_at.eq(now_micros()),
            dsr_challenges::request_id.eq(request_id),
            dsr_challenges::download_digest.eq(download_digest),
        ))
        .execute(c)
        .await)?;
        Ok(n == 1)
    }

    /// Whether a download was granted for request `request_id` (a challenge holding a
    /// download digest for it).
    pub async fn download_granted(&self, request_id: &str) -> Result<bool, CoreError> {
        let mut c = self.db.conn().await?;
        let n: i64 = db_run!(c, |c| dsr_challenges::table
            .filter(dsr_challenges::request_id.eq(request_id))
            .filter(dsr_challenges::download_digest.is_not_null())
            .count()
            .get_result(c)
            .await)?;
        Ok(n > 0)
    }

    /// The challenge that grants a download, by the token's digest.
    pub async fn challenge_by_download(
        &self,
        digest: &[u8],
    ) -> Result<Option<Challenge>, CoreError> {
        let d = digest.to_vec();
        let mut c = self.db.conn().await?;
        let id: Option<String> = db_run!(c, |c| dsr_challenges::table
            .filter(dsr_challenges::download_digest.eq(&d))
            .select(dsr_challenges::id)
            .first(c)
            .await
            .optional())?;
        drop(c);
        match id {
            Some(id) => Ok(Some(self.challenge(&id).await?)),
            None => Ok(None),
        }
    }

    /// How many records a subject has (messages, lead, follow-ups): what an access or
    /// portability answer will hold.
    pub async fn subject_record_count(
        &self,
        tenant: TenantId,
        subject: SubjectId,
    ) -> Result<u64, CoreError> {
        let (tid, sid) = (tenant.to_string(), subject.to_string());
        let mut c = self.db.conn().await?;
        let msgs: i64 = db_run!(c, |c| messages::table
            .filter(messages::tenant_id.eq(&tid))
            .filter(messages::subject_id.eq(&sid))
            .count()
            .get_result(c)
            .await)?;
        let lead_ids: Vec<String> = db_run!(c, |c| leads::table
            .filter(leads::subject_id.eq(&sid))
            .select(leads::id)
            .load(c)
            .await)?;
        let fus: i64 = db_run!(c, |c| follow_ups::table
            .filter(follow_ups::lead_id.eq_any(&lead_ids))
            .count()
            .get_result(c)
            .await)?;
        Ok((msgs + fus) as u64 + lead_ids.len() as u64)
    }

    /// The subject's most recently active conversation.
    pub async fn latest_conversation(
        &self,
        tenant: TenantId,
        subject: SubjectId,
    ) -> Result<Option<crate::store::ConversationRow>, CoreError> {
        let (tid, sid) = (tenant.to_string(), subject.to_string());
        let mut c = self.db.conn().await?;
        let id: Option<String> = db_run!(c, |c| conversations::table
            .filter(conversations::tenant_id.eq(&tid))
            .filter(conversations::subject_id.eq(&sid))
            .order(conversations::updated_at.desc())
            .select(conversations::id)
            .first(c)
            .await
            .optional())?;
        match id {
            Some(id) => Ok(Some(self.conversation(&mut c, id.parse()?).await?)),
            None => Ok(None),
        }
    }
}

/// A one-time code to record.
#[derive(Debug, Clone)]
pub struct NewChallenge<'a> {
    /// Id (also in the URL the requester confirms at).
    pub id: &'a str,
    /// The business.
    pub tenant: TenantId,
    /// The right asked for.
    pub right: Right,
    /// The regime.
    pub regime: Regime,
    /// Blind index of the number.
    pub number_blind: &'a [u8],
    /// Keyed digest of the code.
    pub code_digest: &'a [u8],
    /// Expiry (unix micros).
    pub expires_at: i64,
    /// Set for a download grant made without a code (chat requests).
    pub request_id: Option<&'a str>,
    /// Set for a download grant.
    pub used_at: Option<i64>,
    /// Digest of the download token.
    pub download_digest: Option<&'a [u8]>,
}

type ChallengeRow = (
    String,
    String,
    String,
    String,
    Vec<u8>,
    Vec<u8>,
    i32,
    i64,
    Option<i64>,
    Option<String>,
    Option<Vec<u8>>,
);

/// A stored challenge.
#[derive(Debug, Clone)]
pub struct Challenge {
    /// Id.
    pub id: String,
    /// The business.
    pub tenant: TenantId,
    /// The right asked for.
    pub right: String,
    /// The regime.
    pub regime: String,
    /// Blind index of the number.
    pub number_blind: Vec<u8>,
    /// Keyed digest of the code.
    pub code_digest: Vec<u8>,
    /// Attempts made.
    pub attempts: i32,
    /// Expiry (unix micros).
    pub expires_at: i64,
    /// When the code was confirmed.
    pub used_at: Option<i64>,
    /// The request it became.
    pub request_id: Option<String>,
    /// Digest of the download token.
    pub download_digest: Option<Vec<u8>>,
}

/// Inserts challenge `ch` on `c` (a transaction's connection, for one that also queues the
/// code's message).
pub async fn insert_challenge(
    c: &mut crate::db::Conn,
    ch: &NewChallenge<'_>,
) -> Result<(), CoreError> {
    let tid = ch.tenant.to_string();
    db_run!(c, |c| diesel::insert_into(dsr_challenges::table)
        .values((
            dsr_challenges::id.eq(ch.id),
            dsr_challenges::tenant_id.eq(&tid),
            dsr_challenges::right_kind.eq(ch.right.as_str()),
            dsr_challenges::regime.eq(ch.regime.as_str()),
            dsr_challenges::number_blind.eq(ch.number_blind),
            dsr_challenges::code_digest.eq(ch.code_digest),
            dsr_challenges::attempts.eq(0),
            dsr_challenges::expires_at.eq(ch.expires_at),
            dsr_challenges::request_id.eq(ch.request_id),
            dsr_challenges::used_at.eq(ch.used_at),
            dsr_challenges::download_digest.eq(ch.download_digest),
            dsr_challenges::created_at.eq(now_micros()),
        ))
        .execute(c)
        .await)?;
    Ok(())
}

/// In `tx`, after locking the tenant (so concurrent requests decide one at a time): how many
/// challenges the number (`number_blind`) was sent since `since` (unix micros).
pub async fn challenges_since_locked(
    tx: &mut crate::db::Tx,
    tenant: TenantId,
    number_blind: &[u8],
    since: i64,
) -> Result<i64, CoreError> {
    let tid = tenant.to_string();
    crate::team::lock_tenant(tx, &tid).await?;
    count_challenges(tx, &tid, number_blind, since).await
}

/// Challenges sent to the number (`number_blind`) of tenant `tid` since `since`.
async fn count_challenges(
    c: &mut crate::db::Conn,
    tid: &str,
    number_blind: &[u8],
    since: i64,
) -> Result<i64, CoreError> {
    let blind = number_blind.to_vec();
    Ok(db_run!(c, |c| dsr_challenges::table
        .filter(dsr_challenges::tenant_id.eq(tid))
        .filter(dsr_challenges::number_blind.eq(&blind))
        .filter(dsr_challenges::created_at.ge(since))
        .count()
        .get_result(c)
        .await)?)
}
