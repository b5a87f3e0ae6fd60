//! The repositories: tenants, phone numbers, subjects, conversations and messages. Every
//! personal field is sealed before it reaches SQL; lookups use blind indexes.
//!
//! Each write runs in one transaction with its ledger drafts ([`crate::audit::enqueue`]):
//! no data without its entry, no entry without its data.

use std::sync::Arc;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::{Deserialize, Serialize};
use smartchat_ledger::{Actor, EntryDraft, EventKind, RefKind, Reference};

use crate::audit;
use crate::crypto::keyring::Keyring;
use crate::crypto::{BlindKind, SubjectKey, TenantKey};
use crate::db::schema::{conversations, messages, phone_numbers, subject_keys, subjects, tenants};
use crate::db::{Conn, DbPool, Tx, is_unique_violation, now_micros};
use crate::db_run;
use crate::error::CoreError;
use crate::ids::{ConversationId, Handle, MessageId, PhoneNumberId, SubjectId, TenantId};
use crate::policy_store::PolicyService;
use smartchat_policies::Policy;

/// The storage façade: the main database, the keyring and the policy. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    /// The main database.
    pub db: DbPool,
    /// Keys.
    pub keys: Keyring,
    /// Policy decisions in each tenant's context.
    pub policy: PolicyService,
}

/// A business profile: what the assistant answers from. Sealed under the tenant key as a
/// whole (staff names and the business name may name people).
#[derive(Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Profile(pub serde_json::Value);

impl std::fmt::Debug for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Profile(<sealed>)")
    }
}

impl Profile {
    /// The business name, if the profile has one.
    pub fn name(&self) -> Option<&str> {
        self.0.get("name").and_then(|v| v.as_str())
    }
}

/// What `tenant create` needs.
#[derive(Debug, Clone)]
pub struct NewTenant {
    /// Public handle.
    pub handle: Handle,
    /// Business profile.
    pub profile: Profile,
    /// Meta's id of the WhatsApp number, if connected now.
    pub phone_number_id: Option<PhoneNumberId>,
    /// The Graph API access token for that number.
    pub access_token: Option<crate::config::Secret>,
}

/// A tenant as listed.
#[derive(Debug, Clone, Serialize)]
pub struct TenantSummary {
    /// Id.
    pub id: TenantId,
    /// Handle.
    pub handle: String,
    /// `active`, `terminated` or `purged`.
    pub status: String,
    /// Business name, or `None` when its key is shredded.
    pub name: Option<String>,
    /// Connected phone number ids.
    pub phone_number_ids: Vec<String>,
    /// Created, unix micros.
    pub created_at: i64,
}

/// A tenant with its decrypted profile.
#[derive(Debug, Clone)]
pub struct TenantView {
    /// Summary.
    pub summary: TenantSummary,
    /// Profile.
    pub profile: Profile,
}

/// How Meta identified a customer in one webhook; at least one of `wa_id` and `bsuid`.
#[derive(Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SubjectContact {
    /// Meta's `wa_id` (the phone number's digits), when Meta sends it.
    pub wa_id: Option<String>,
    /// The business-scoped user id (`user_id`).
    pub bsuid: Option<String>,
    /// A phone number the customer gave, if different from `wa_id`.
    pub phone: Option<String>,
    /// The WhatsApp profile name.
    pub profile_name: Option<String>,
}

impl std::fmt::Debug for SubjectContact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubjectContact")
            .field("wa_id", &self.wa_id.as_ref().map(|_| "<set>"))
            .field("bsuid", &self.bsuid.as_ref().map(|_| "<set>"))
            .field("phone", &self.phone.as_ref().map(|_| "<set>"))
            .field("profile_name", &self.profile_name.as_ref().map(|_| "<set>"))
            .finish()
    }
}

/// A message as stored (body still sealed).
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = messages)]
#[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
pub struct MessageRow {
    /// Id.
    pub id: String,
    /// Tenant.
    pub tenant_id: String,
    /// Conversation.
    pub conversation_id: String,
    /// Subject.
    pub subject_id: String,
    /// `in` or `out`.
    pub direction: String,
    /// `text`, `image`, ...
    pub kind: String,
    /// `received`, `queued`, `sent`, `delivered`, `read`, `failed`.
    pub status: String,
    /// Meta's message id.
    pub wamid: Option<String>,
    /// Sealed body.
    pub body_ct: Option<Vec<u8>>,
    /// `customer`, `assistant`, `human`.
    pub author: String,
    /// Graph API error code of a failed message.
    pub error_code: Option<i32>,
    /// Created, unix micros.
    pub created_at: i64,
    /// Last status change, unix micros.
    pub status_at: i64,
}

/// A message with its body opened.
#[derive(Clone)]
pub struct PlainMessage {
    /// The stored row (sealed body included).
    pub row: MessageRow,
    /// The opened body.
    pub body: Option<String>,
}

impl std::fmt::Debug for PlainMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PlainMessage({}, <body redacted>)", self.row.id)
    }
}

/// A new message to store.
#[derive(Clone)]
pub struct NewMessage<'a> {
    /// `in` or `out`.
    pub direction: &'a str,
    /// Message type.
    pub kind: &'a str,
    /// Initial status.
    pub status: &'a str,
    /// Meta's id.
    pub wamid: Option<&'a str>,
    /// Plain body, sealed before storing.
    pub body: Option<&'a str>,
    /// Author.
    pub author: &'a str,
}

/// A subject's id with its `wa_id` and BSUID blind indexes.
type SubjectIdRow = (String, Option<Vec<u8>>, Option<Vec<u8>>);

/// Context string that binds a sealed message body to its row.
pub(crate) fn body_context(tenant: &str, message_id: &str) -> String {
    format!("messages.body_ct|{tenant}|{message_id}")
}

/// The `wa_id` and BSUID blind indexes of how Meta identified a customer, where known.
pub fn identifier_blinds(
    key: &TenantKey,
    contact: &SubjectContact,
) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    (
        contact
            .wa_id
            .as_deref()
            .map(|v| key.blind(BlindKind::WaId, v).to_vec()),
        contact
            .bsuid
            .as_deref()
            .map(|v| key.blind(BlindKind::Bsuid, v).to_vec()),
    )
}

pub(crate) fn contact_context(tenant: &str, subject_id: &str) -> String {
    format!("subjects.contact_ct|{tenant}|{subject_id}")
}

impl Store {
    /// Wraps a pool, the keyring and the platform policy.
    pub fn new(db: DbPool, keys: Keyring, platform: Arc<Policy>) -> Self {
        Self {
            policy: PolicyService::new(db.clone(), platform),
            db,
            keys,
        }
    }

    /// The same store (keys, policy caches) through pools of its own ([`DbPool::twin`]):
    /// what the background runtime works with, so that its connections, and the tasks
    /// that drive them, live on its lower-priority threads and never on the webhook's.
    pub fn twin(&self, priority: crate::priority::BackgroundPriority) -> Result<Self, CoreError> {
        let db = self.db.twin(priority)?;
        Ok(Self {
            policy: self.policy.on_pool(db.clone()),
            keys: self.keys.on_pool(self.keys.store().twin(priority)?),
            db,
        })
    }

    /// Creates a tenant: its key in the key store, then the tenant row, its phone number
    /// and ledger entries in one transaction of the main database.
    pub async fn create_tenant(&self, new: NewTenant) -> Result<TenantId, CoreError> {
        let id = TenantId::new();
        let tid = id.to_string();
        let key = self.keys.create_tenant_key(&tid).await?;
        let profile_ct = key.seal(
            &format!("tenants.profile_ct|{tid}"),
            &serde_json::to_vec(&new.profile.0).map_err(|e| CoreError::Internal(e.to_string()))?,
        )?;
        match self.insert_tenant(id, &key, &new, profile_ct).await {
            Ok(()) => Ok(id),
            Err(e) => {
                // Nothing half-written: the key made for a tenant that was not created goes.
                if let Err(cleanup) = self.keys.delete_unused_tenant_key(&tid).await {
                    tracing::warn!(tenant.id = %tid, error = %cleanup, "could not remove the unused tenant key");
                }
                Err(e)
            }
        }
    }

    async fn insert_tenant(
        &self,
        id: TenantId,
        key: &TenantKey,
        new: &NewTenant,
        profile_ct: Vec<u8>,
    ) -> Result<(), CoreError> {
        let tid = id.to_string();
        let now = now_micros();
        let mut tx = self.db.begin().await?;
        let handle = new.handle.as_str().to_owned();
        let res = db_run!(tx, |c| diesel::insert_into(tenants::table)
            .values((
                tenants::id.eq(&tid),
                tenants::handle.eq(&handle),
                tenants::status.eq("active"),
                tenants::profile_ct.eq(&profile_ct),
                tenants::created_at.eq(now),
            ))
            .execute(c)
            .await);
        match res {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                return Err(CoreError::Conflict {
                    what: "tenant handle",
                });
            }
            Err(e) => return Err(e.into()),
        }
        if let Some(pnid) = &new.phone_number_id {
            let token = new.access_token.as_ref().map(|s| s.expose()).unwrap_or("");
            self.connect_number_in(&mut tx, key, id, pnid, token)
                .await?;
        }
        audit::enqueue(
            &mut tx,
            &EntryDraft::new(EventKind::TENANT_CREATED, Actor::System).tenant(id.bytes()),
        )
        .await?;
        audit::enqueue(
            &mut tx,
            &EntryDraft::new(EventKind::KEY_CREATED, Actor::System)
                .tenant(id.bytes())
                .reference(Reference::digest(
                    RefKind::KEY,
                    *blake3::hash(key.recipient().as_bytes()).as_bytes(),
                )),
        )
        .await?;
        tx.commit().await
    }

    /// Inserts a phone number row with its sealed token (empty: a sandbox number) in the
    /// caller's transaction; `Conflict` when any tenant has the number already.
    pub(crate) async fn connect_number_in(
        &self,
        tx: &mut Tx,
        key: &TenantKey,
        tenant: TenantId,
        pnid: &PhoneNumberId,
        token: &str,
    ) -> Result<(), CoreError> {
        let tid = tenant.to_string();
        let ct = key.seal(
            &format!("phone_numbers.access_token_ct|{tid}|{pnid}"),
            token.as_bytes(),
        )?;
        let now = now_micros();
        let res = db_run!(tx, |c| diesel::insert_into(phone_numbers::table)
            .values((
                phone_numbers::phone_number_id.eq(pnid.as_str()),
                phone_numbers::tenant_id.eq(&tid),
                phone_numbers::access_token_ct.eq(&ct),
                phone_numbers::created_at.eq(now),
            ))
            .execute(c)
            .await);
        match res {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => Err(CoreError::Conflict {
                what: "phone number id",
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Lists tenants (names opened where their key still exists).
    pub async fn list_tenants(&self) -> Result<Vec<TenantSummary>, CoreError> {
        let mut c = self.db.conn().await?;
        let rows: Vec<(String, String, String, Vec<u8>, i64)> = db_run!(c, |c| tenants::table
            .select((
                tenants::id,
                tenants::handle,
                tenants::status,
                tenants::profile_ct,
                tenants::created_at
            ))
            .order(tenants::created_at)
            .load(c)
            .await)?;
        let numbers: Vec<(String, String)> = db_run!(c, |c| phone_numbers::table
            .select((phone_numbers::tenant_id, phone_numbers::phone_number_id))
            .load(c)
            .await)?;
        let mut out = Vec::with_capacity(rows.len());
        for (id, handle, status, profile_ct, created_at) in rows {
            let name = match self.open_profile(&id, &profile_ct).await {
                Ok(p) => p.name().map(str::to_owned),
                Err(CoreError::Shredded { .. } | CoreError::NotFound { .. }) => None,
                Err(e) => return Err(e),
            };
            out.push(TenantSummary {
                id: id.parse()?,
                phone_number_ids: numbers
                    .iter()
                    .filter(|(t, _)| *t == id)
                    .map(|(_, p)| p.clone())
                    .collect(),
                handle,
                status,
                name,
                created_at,
            });
        }
        Ok(out)
    }

    async fn open_profile(&self, tid: &str, ct: &[u8]) -> Result<Profile, CoreError> {
        let key = self.keys.tenant_key(tid).await?;
        let bytes = key.open(&format!("tenants.profile_ct|{tid}"), ct)?;
        serde_json::from_slice(&bytes)
            .map(Profile)
            .map_err(|_| CoreError::Crypto("profile does not parse".into()))
    }

    /// One tenant with its profile; `Shredded` when its key is gone.
    pub async fn tenant(&self, id: TenantId) -> Result<TenantView, CoreError> {
        let tid = id.to_string();
        let mut c = self.db.conn().await?;
        let row: Option<(String, String, Vec<u8>, i64)> = db_run!(c, |c| tenants::table
            .find(&tid)
            .select((
                tenants::handle,
                tenants::status,
                tenants::profile_ct,
                tenants::created_at
            ))
            .first(c)
            .await
            .optional())?;
        let (handle, status, profile_ct, created_at) =
            row.ok_or(CoreError::NotFound { what: "tenant" })?;
        let numbers: Vec<String> = db_run!(c, |c| phone_numbers::table
            .filter(phone_numbers::tenant_id.eq(&tid))
            .select(phone_numbers::phone_number_id)
            .load(c)
            .await)?;
        let profile = self.open_profile(&tid, &profile_ct).await?;
        Ok(TenantView {
            summary: TenantSummary {
                id,
                handle,
                status,
                name: profile.name().map(str::to_owned),
                phone_number_ids: numbers,
                created_at,
            },
            profile,
        })
    }

    /// Finds a tenant by handle.
    pub async fn tenant_by_handle(&self, handle: &Handle) -> Result<TenantId, CoreError> {
        let mut c = self.db.conn().await?;
        let id: Option<String> = db_run!(c, |c| tenants::table
            .filter(tenants::handle.eq(handle.as_str()))
            .select(tenants::id)
            .first(c)
            .await
            .optional())?;
        id.ok_or(CoreError::NotFound { what: "tenant" })?.parse()
    }

    /// The tenant that owns a WhatsApp phone number id.
    pub async fn tenant_for_number(&self, pnid: &PhoneNumberId) -> Result<TenantId, CoreError> {
        let mut c = self.db.conn().await?;
        let id: Option<String> = db_run!(c, |c| phone_numbers::table
            .find(pnid.as_str())
            .select(phone_numbers::tenant_id)
            .first(c)
            .await
            .optional())?;
        id.ok_or(CoreError::NotFound {
            what: "phone number",
        })?
        .parse()
    }

    /// Finds a subject by one identifier, through its blind index.
    pub async fn find_subject(
        &self,
        tenant: TenantId,
        kind: BlindKind,
        value: &str,
    ) -> Result<Option<SubjectId>, CoreError> {
        let key = self.keys.tenant_key(&tenant.to_string()).await?;
        let mut c = self.db.conn().await?;
        find_subject_in(&mut c, tenant, &key, kind, value).await
    }

    /// Finds or creates the subject Meta identified, inside the caller's transaction,
    /// linking `wa_id` and BSUID when both are known. Returns the id and whether it is new.
    pub async fn upsert_subject(
        &self,
        tx: &mut Tx,
        tenant: TenantId,
        key: &TenantKey,
        contact: &SubjectContact,
    ) -> Result<(SubjectId, bool), CoreError> {
        if contact.wa_id.is_none() && contact.bsuid.is_none() {
            return Err(CoreError::Invalid {
                field: "contact",
                reason: "Meta sent neither wa_id nor user_id".into(),
            });
        }
        let tid = tenant.to_string();
        let (wa_blind, bsuid_blind) = identifier_blinds(key, contact);
        let phone_blind = contact
            .phone
            .as_deref()
            .or(contact.wa_id.as_deref())
            .map(|v| key.blind(BlindKind::Phone, v).to_vec());
        let mut found: Option<SubjectIdRow> = None;
        for (col_is_wa, blind) in [(true, &wa_blind), (false, &bsuid_blind)] {
            let Some(b) = blind else { continue };
            let row: Option<SubjectIdRow> = if col_is_wa {
                db_run!(tx, |c| subjects::table
                    .filter(subjects::tenant_id.eq(&tid))
                    .filter(subjects::wa_id_blind.eq(b))
                    .select((subjects::id, subjects::wa_id_blind, subjects::bsuid_blind))
                    .first(c)
                    .await
                    .optional())?
            } else {
                db_run!(tx, |c| subjects::table
                    .filter(subjects::tenant_id.eq(&tid))
                    .filter(subjects::bsuid_blind.eq(b))
                    .select((subjects::id, subjects::wa_id_blind, subjects::bsuid_blind))
                    .first(c)
                    .await
                    .optional())?
            };
            if row.is_some() {
                found = row;
                break;
            }
        }
        if let Some((sid, have_wa, have_bsuid)) = found {
            let sid_parsed: SubjectId = sid.parse()?;
            self.link_subject(tx, tenant, key, sid_parsed, (have_wa, have_bsuid), contact)
                .await?;
            return Ok((sid_parsed, false));
        }
        let id = SubjectId::new();
        let sid = id.to_string();
        let skey = SubjectKey::generate();
        let wrapped = key.wrap_subject_key(&skey)?;
        let ct = skey.seal(
            &contact_context(&tid, &sid),
            &serde_json::to_vec(contact).map_err(|e| CoreError::Internal(e.to_string()))?,
        )?;
        let now = now_micros();
        db_run!(tx, |c| diesel::insert_into(subjects::table)
            .values((
                subjects::id.eq(&sid),
                subjects::tenant_id.eq(&tid),
                subjects::wa_id_blind.eq(&wa_blind),
                subjects::bsuid_blind.eq(&bsuid_blind),
                subjects::phone_blind.eq(&phone_blind),
                subjects::contact_ct.eq(&ct),
                subjects::created_at.eq(now),
            ))
            .execute(c)
            .await)?;
        db_run!(tx, |c| diesel::insert_into(subject_keys::table)
            .values((
                subject_keys::subject_id.eq(&sid),
                subject_keys::tenant_id.eq(&tid),
                subject_keys::wrapped_key.eq(&wrapped),
                subject_keys::created_at.eq(now),
            ))
            .execute(c)
            .await)?;
        audit::enqueue(
            tx,
            &EntryDraft::new(EventKind::KEY_CREATED, Actor::System)
                .tenant(tenant.bytes())
                .subject(key.pseudonym(&sid)),
        )
        .await?;
        Ok((id, true))
    }

    /// Links an identifier Meta reveals later (`wa_id` or BSUID) to a stored subject whose
    /// blind indexes are `have` (`wa_id`, BSUID), and refreshes the sealed contact with it
    /// and the newest profile name. Nothing is written when nothing new is known.
    pub async fn link_subject(
        &self,
        tx: &mut Tx,
        tenant: TenantId,
        key: &TenantKey,
        subject: SubjectId,
        have: (Option<Vec<u8>>, Option<Vec<u8>>),
        contact: &SubjectContact,
    ) -> Result<(), CoreError> {
        let (have_wa, have_bsuid) = have;
        let (wa_blind, bsuid_blind) = identifier_blinds(key, contact);
        if !((have_wa.is_none() && wa_blind.is_some())
            || (have_bsuid.is_none() && bsuid_blind.is_some()))
        {
            return Ok(());
        }
        let tid = tenant.to_string();
        let sid = subject.to_string();
        let skey = self.subject_key_in(tx, &tid, &sid, key).await?;
        let mut merged = self.open_contact(&skey, &tid, &sid, tx).await?;
        merged.wa_id = merged.wa_id.or_else(|| contact.wa_id.clone());
        merged.bsuid = merged.bsuid.or_else(|| contact.bsuid.clone());
        merged.profile_name = contact.profile_name.clone().or(merged.profile_name);
        let ct = skey.seal(
            &contact_context(&tid, &sid),
            &serde_json::to_vec(&merged).map_err(|e| CoreError::Internal(e.to_string()))?,
        )?;
        let new_wa = have_wa.or(wa_blind);
        let new_bsuid = have_bsuid.or(bsuid_blind);
        db_run!(tx, |c| diesel::update(subjects::table.find(&sid))
            .set((
                subjects::wa_id_blind.eq(&new_wa),
                subjects::bsuid_blind.eq(&new_bsuid),
                subjects::contact_ct.eq(&ct),
            ))
            .execute(c)
            .await)?;
        Ok(())
    }

    async fn open_contact(
        &self,
        skey: &SubjectKey,
        tid: &str,
        sid: &str,
        c: &mut Conn,
    ) -> Result<SubjectContact, CoreError> {
        let ct: Vec<u8> = db_run!(c, |c| subjects::table
            .find(sid)
            .select(subjects::contact_ct)
            .first(c)
            .await)?;
        let bytes = skey.open(&contact_context(tid, sid), &ct)?;
        serde_json::from_slice(&bytes)
            .map_err(|_| CoreError::Crypto("contact does not parse".into()))
    }

    /// The subject's contact fields, opened.
    pub async fn subject_contact(
        &self,
        tenant: TenantId,
        subject: SubjectId,
    ) -> Result<SubjectContact, CoreError> {
        let tid = tenant.to_string();
        let sid = subject.to_string();
        let key = self.keys.tenant_key(&tid).await?;
        let mut c = self.db.conn().await?;
        let skey = self.subject_key_in(&mut c, &tid, &sid, &key).await?;
        self.open_contact(&skey, &tid, &sid, &mut c).await
    }

    /// A subject's data key: `Shredded` once its wrapped key is gone, `NotFound` if the
    /// subject never existed for this tenant.
    pub async fn subject_key_in(
        &self,
        c: &mut Conn,
        tid: &str,
        sid: &str,
        key: &TenantKey,
    ) -> Result<SubjectKey, CoreError> {
        let wrapped: Option<Vec<u8>> = db_run!(c, |c| subject_keys::table
            .filter(subject_keys::subject_id.eq(sid))
            .filter(subject_keys::tenant_id.eq(tid))
            .select(subject_keys::wrapped_key)
            .first(c)
            .await
            .optional())?;
        match wrapped {
            Some(w) => self.keys.open_subject_key(key, &w),
            None => {
                let exists: i64 = db_run!(c, |c| subjects::table
                    .filter(subjects::id.eq(sid))
                    .filter(subjects::tenant_id.eq(tid))
                    .count()
                    .get_result(c)
                    .await)?;
                if exists > 0 {
                    Err(CoreError::Shredded {
                        what: "subject key",
                    })
                } else {
                    Err(CoreError::NotFound { what: "subject" })
                }
            }
        }
    }

    /// The data keys of several subjects of one tenant, with one query per 500; a subject
    /// whose key is gone (shredded) or who never existed is absent from the answer.
    pub async fn subject_keys_in(
        &self,
        c: &mut Conn,
        tid: &str,
        sids: &[&str],
        key: &TenantKey,
    ) -> Result<std::collections::HashMap<String, SubjectKey>, CoreError> {
        let mut out = std::collections::HashMap::new();
        for chunk in sids.chunks(500) {
            let rows: Vec<(String, Vec<u8>)> = db_run!(c, |c| subject_keys::table
                .filter(subject_keys::tenant_id.eq(tid))
                .filter(subject_keys::subject_id.eq_any(chunk))
                .select((subject_keys::subject_id, subject_keys::wrapped_key))
                .load(c)
                .await)?;
            for (sid, wrapped) in rows {
                let skey = self.keys.open_subject_key(key, &wrapped)?;
                out.insert(sid, skey);
            }
        }
        Ok(out)
    }

    /// Opens (or creates) the subject's conversation on a number, in the caller's transaction.
    pub async fn conversation_for(
        &self,
        tx: &mut Tx,
        tenant: TenantId,
        subject: SubjectId,
        pnid: &PhoneNumberId,
    ) -> Result<ConversationId, CoreError> {
        let tid = tenant.to_string();
        let sid = subject.to_string();
        let existing: Option<String> = db_run!(tx, |c| conversations::table
            .filter(conversations::tenant_id.eq(&tid))
            .filter(conversations::subject_id.eq(&sid))
            .filter(conversations::phone_number_id.eq(pnid.as_str()))
            .select(conversations::id)
            .first(c)
            .await
            .optional())?;
        if let Some(id) = existing {
            return id.parse();
        }
        let id = ConversationId::new();
        let cid = id.to_string();
        let now = now_micros();
        db_run!(tx, |c| diesel::insert_into(conversations::table)
            .values((
                conversations::id.eq(&cid),
                conversations::tenant_id.eq(&tid),
                conversations::subject_id.eq(&sid),
                conversations::phone_number_id.eq(pnid.as_str()),
                conversations::mode.eq("assistant"),
                conversations::created_at.eq(now),
                conversations::updated_at.eq(now),
            ))
            .execute(c)
            .await)?;
        Ok(id)
    }

    /// Stores one message, its body sealed under the subject key, in the caller's
    /// transaction. A `wamid` already stored for this tenant returns `Conflict`.
    /// `at_micros` is Meta's timestamp for an inbound message (it moves the 24-hour window;
    /// the message is placed at the time it is stored) and the creation time of an outbound
    /// one.
    #[expect(
        clippy::too_many_arguments,
        reason = "one call site per direction; a struct would only rename them"
    )]
    pub async fn insert_message(
        &self,
        tx: &mut Tx,
        tenant: TenantId,
        key: &TenantKey,
        subject: SubjectId,
        conversation: ConversationId,
        msg: &NewMessage<'_>,
        at_micros: i64,
    ) -> Result<MessageId, CoreError> {
        let tid = tenant.to_string();
        let sid = subject.to_string();
        let id = MessageId::new();
        let mid = id.to_string();
        let body_ct = match msg.body {
            Some(b) => {
                let skey = self.subject_key_in(tx, &tid, &sid, key).await?;
                Some(skey.seal(&body_context(&tid, &mid), b.as_bytes())?)
            }
            None => None,
        };
        let cid = conversation.to_string();
        // A message is placed in its conversation at the moment we stored it (our clock,
        // like the UUIDv7 ids and the replies); for an inbound message `at_micros` is Meta's
        // timestamp, which moves the 24-hour window.
        let now = now_micros();
        let placed_at = if msg.direction == "in" {
            now
        } else {
            at_micros
        };
        let res = db_run!(tx, |c| diesel::insert_into(messages::table)
            .values((
                messages::id.eq(&mid),
                messages::tenant_id.eq(&tid),
                messages::conversation_id.eq(&cid),
                messages::subject_id.eq(&sid),
                messages::direction.eq(msg.direction),
                messages::kind.eq(msg.kind),
                messages::status.eq(msg.status),
                messages::wamid.eq(msg.wamid),
                messages::body_ct.eq(&body_ct),
                messages::author.eq(msg.author),
                messages::created_at.eq(placed_at),
                messages::status_at.eq(placed_at),
            ))
            .execute(c)
            .await);
        match res {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                return Err(CoreError::Conflict { what: "message" });
            }
            Err(e) => return Err(e.into()),
        }
        if msg.direction == "in" {
            // The window runs from the customer's latest message: a late redelivery of an
            // older one never shortens it.
            // One statement for both changes.
            let window = diesel::dsl::case_when(
                conversations::last_inbound_at
                    .is_null()
                    .or(conversations::last_inbound_at.lt(at_micros)),
                Some(at_micros)
                    .into_sql::<diesel::sql_types::Nullable<diesel::sql_types::BigInt>>(),
            )
            .otherwise(conversations::last_inbound_at);
            db_run!(tx, |c| diesel::update(conversations::table.find(&cid))
                .set((
                    conversations::last_inbound_at.eq(window),
                    conversations::updated_at.eq(now),
                ))
                .execute(c)
                .await)?;
        } else {
            db_run!(tx, |c| diesel::update(conversations::table.find(&cid))
                .set(conversations::updated_at.eq(now))
                .execute(c)
                .await)?;
        }
        if msg.body.is_some() {
            crate::search_feed::enqueue(
                tx,
                &tid,
                &crate::search_feed::FeedOp::Add {
                    message_id: mid.clone(),
                },
            )
            .await?;
        }
        // Outbound messages are ledgered by the pipeline when the send succeeds or fails.
        if msg.direction != "in" {
            return Ok(id);
        }
        let kind = EventKind::MESSAGE_RECEIVED;
        let mut draft = EntryDraft::new(
            kind,
            if msg.direction == "in" {
                Actor::DataSubject
            } else {
                Actor::System
            },
        )
        .tenant(tenant.bytes())
        .subject(key.pseudonym(&sid))
        .policy_version(self.policy.version_for(tenant).await?.0)
        .reference(Reference::id(RefKind::MESSAGE, id.bytes()));
        if let Some(ct) = &body_ct {
            draft = draft.reference(Reference::digest(
                RefKind::RECORD_DIGEST,
                *blake3::hash(ct).as_bytes(),
            ));
        }
        audit::enqueue(tx, &draft).await?;
        Ok(id)
    }

    /// Every message of a subject, oldest first, bodies opened. One key unwrap for the
    /// whole history, then one AEAD open per message.
    pub async fn subject_messages(
        &self,
        tenant: TenantId,
        subject: SubjectId,
    ) -> Result<Vec<PlainMessage>, CoreError> {
        let tid = tenant.to_string();
        let sid = subject.to_string();
        let key = self.keys.tenant_key(&tid).await?;
        let mut c = self.db.conn().await?;
        let skey = self.subject_key_in(&mut c, &tid, &sid, &key).await?;
        let rows: Vec<MessageRow> = db_run!(c, |c| messages::table
            .filter(messages::tenant_id.eq(&tid))
            .filter(messages::subject_id.eq(&sid))
            .order((messages::created_at, messages::id))
            .select(MessageRow::as_select())
            .load(c)
            .await)?;
        open_messages(&skey, &tid, rows)
    }

    /// Crypto-shreds one subject: their wrapped key is deleted in one transaction with the
    /// ledger entry. O(1) in the number of their messages; rows are cleaned up separately.
    pub async fn shred_subject(
        &self,
        tenant: TenantId,
        subject: SubjectId,
        actor: Actor,
    ) -> Result<(), CoreError> {
        let tid = tenant.to_string();
        let sid = subject.to_string();
        let key = self.keys.tenant_key(&tid).await?;
        let mut tx = self.db.begin().await?;
        let wrapped: Option<Vec<u8>> = db_run!(tx, |c| subject_keys::table
            .filter(subject_keys::subject_id.eq(&sid))
            .filter(subject_keys::tenant_id.eq(&tid))
            .select(subject_keys::wrapped_key)
            .first(c)
            .await
            .optional())?;
        let Some(wrapped) = wrapped else {
            // Already shredded (idempotent) or never existed.
            let exists: i64 = db_run!(tx, |c| subjects::table
                .filter(subjects::id.eq(&sid))
                .filter(subjects::tenant_id.eq(&tid))
                .count()
                .get_result(c)
                .await)?;
            return if exists > 0 {
                Ok(())
            } else {
                Err(CoreError::NotFound { what: "subject" })
            };
        };
        db_run!(tx, |c| diesel::delete(subject_keys::table.find(&sid))
            .execute(c)
            .await)?;
        // Gone for good: the same number writing again is a new subject.
        db_run!(tx, |c| diesel::update(subjects::table.find(&sid))
            .set((
                subjects::wa_id_blind.eq(None::<Vec<u8>>),
                subjects::bsuid_blind.eq(None::<Vec<u8>>),
                subjects::phone_blind.eq(None::<Vec<u8>>),
            ))
            .execute(c)
            .await)?;
        // Their pending follow-ups are cancelled, each ledgered (reason: deleted).
        let lead_ids: Vec<String> = db_run!(tx, |c| crate::db::schema::leads::table
            .filter(crate::db::schema::leads::subject_id.eq(&sid))
            .select(crate::db::schema::leads::id)
            .load(c)
            .await)?;
        let pending: Vec<(String, String)> = db_run!(tx, |c| crate::db::schema::follow_ups::table
            .filter(crate::db::schema::follow_ups::lead_id.eq_any(&lead_ids))
            .filter(crate::db::schema::follow_ups::status.eq("scheduled"))
            .select((
                crate::db::schema::follow_ups::id,
                crate::db::schema::follow_ups::lead_id,
            ))
            .load(c)
            .await)?;
        for (fid, lid) in &pending {
            let n = db_run!(tx, |c| diesel::update(
                crate::db::schema::follow_ups::table
                    .find(fid)
                    .filter(crate::db::schema::follow_ups::status.eq("scheduled"))
            )
            .set((
                crate::db::schema::follow_ups::status.eq("cancelled"),
                crate::db::schema::follow_ups::reason.eq("deleted"),
                crate::db::schema::follow_ups::updated_at.eq(now_micros()),
            ))
            .execute(c)
            .await)?;
            if n == 1 {
                let d = crate::follow_ups::follow_up_draft(
                    EventKind::FOLLOW_UP_CANCELLED,
                    tenant,
                    key.pseudonym(&sid),
                    fid,
                    lid.parse()?,
                );
                audit::enqueue(&mut tx, &crate::follow_ups::with_reason(d, "deleted")).await?;
            }
        }
        // The search index holds a copy of their words: purged from disk by the indexer.
        crate::search_feed::enqueue(
            &mut tx,
            &tid,
            &crate::search_feed::FeedOp::DeleteSubject {
                pseudonym: hex::encode(key.pseudonym(&sid)),
            },
        )
        .await?;
        audit::enqueue(
            &mut tx,
            &EntryDraft::new(EventKind::KEY_SHREDDED, actor)
                .tenant(tenant.bytes())
                .subject(key.pseudonym(&sid))
                .reference(Reference::digest(
                    RefKind::KEY,
                    *blake3::hash(&wrapped).as_bytes(),
                )),
        )
        .await?;
        tx.commit().await?;
        self.keys.forget_subject_key(&wrapped);
        Ok(())
    }

    /// Crypto-shreds a tenant: its identity is destroyed in the key store (so every subject
    /// key, profile and token under it is unreadable at once), then the ledger records it.
    pub async fn shred_tenant(&self, tenant: TenantId, actor: Actor) -> Result<(), CoreError> {
        let tid = tenant.to_string();
        let key = self.keys.tenant_key(&tid).await;
        let recipient_digest = match &key {
            Ok(k) => Some(*blake3::hash(k.recipient().as_bytes()).as_bytes()),
            Err(CoreError::Shredded { .. }) => None,
            Err(e) => return Err(clone_err(e)),
        };
        self.keys.shred_tenant(&tid).await?;
        let mut tx = self.db.begin().await?;
        record_tenant_shred(&mut tx, tenant, recipient_digest, actor).await?;
        tx.commit().await
    }

    /// The record of a terminated tenant's shred that a failure lost: the key store (a
    /// database apart) committed the shred, the main database's transaction with its
    /// record did not. Writes it (`key_shredded`, without the key's digest, which is gone;
    /// the index drop; status `shredded`) when the tenant is still `terminated`, and says
    /// whether it did. Refuses while the key exists.
    pub async fn record_lost_tenant_shred(
        &self,
        tenant: TenantId,
        actor: Actor,
    ) -> Result<bool, CoreError> {
        match self.keys.tenant_key(&tenant.to_string()).await {
            Err(CoreError::Shredded { .. }) => {}
            Ok(_) => {
                return Err(CoreError::Conflict {
                    what: "tenant key (not shredded)",
                });
            }
            Err(e) => return Err(clone_err(&e)),
        }
        let mut tx = self.db.begin().await?;
        let recorded = record_tenant_shred(&mut tx, tenant, None, actor).await?;
        tx.commit().await?;
        Ok(recorded)
    }

    /// The tenant key, for callers that hold it across one operation.
    pub async fn tenant_key(&self, tenant: TenantId) -> Result<Arc<TenantKey>, CoreError> {
        self.keys.tenant_key(&tenant.to_string()).await
    }
}

/// In the main database, in `tx`: a tenant's key shred. A `terminated` tenant becomes
/// `shredded` (its purge comes next); `key_shredded` is ledgered (with the key's digest when
/// known) and the search index's drop queued, unless a terminated tenant's shred was
/// recorded already (`false`). Other tenants (a shred outside termination) are always
/// recorded.
async fn record_tenant_shred(
    tx: &mut crate::db::Tx,
    tenant: TenantId,
    recipient_digest: Option<[u8; 32]>,
    actor: Actor,
) -> Result<bool, CoreError> {
    let tid = tenant.to_string();
    let status: Option<String> = db_run!(tx, |c| tenants::table
        .find(&tid)
        .select(tenants::status)
        .first(c)
        .await
        .optional())?;
    match status.as_deref() {
        None => return Err(CoreError::NotFound { what: "tenant" }),
        Some("shredded" | "purged") => return Ok(false),
        Some("terminated") => {
            db_run!(tx, |c| diesel::update(tenants::table.find(&tid))
                .filter(tenants::status.eq("terminated"))
                .set(tenants::status.eq("shredded"))
                .execute(c)
                .await)?;
        }
        Some(_) => {}
    }
    let mut draft = EntryDraft::new(EventKind::KEY_SHREDDED, actor).tenant(tenant.bytes());
    if let Some(d) = recipient_digest {
        draft = draft.reference(Reference::digest(RefKind::KEY, d));
    }
    audit::enqueue(tx, &draft).await?;
    // Its search index is unreadable now; the indexer removes its folder.
    crate::search_feed::enqueue(tx, &tid, &crate::search_feed::FeedOp::DropTenant).await?;
    Ok(true)
}

fn clone_err(e: &CoreError) -> CoreError {
    CoreError::Internal(e.to_string())
}

/// Opens the bodies of a batch of rows of one subject.
pub fn open_messages(
    skey: &SubjectKey,
    tid: &str,
    rows: Vec<MessageRow>,
) -> Result<Vec<PlainMessage>, CoreError> {
    rows.into_iter()
        .map(|row| {
            let body = match &row.body_ct {
                Some(ct) => Some(
                    String::from_utf8(skey.open(&body_context(tid, &row.id), ct)?)
                        .map_err(|_| CoreError::Crypto("body is not UTF-8".into()))?,
                ),
                None => None,
            };
            Ok(PlainMessage { row, body })
        })
        .collect()
}

async fn find_subject_in(
    c: &mut Conn,
    tenant: TenantId,
    key: &TenantKey,
    kind: BlindKind,
    value: &str,
) -> Result<Option<SubjectId>, CoreError> {
    let tid = tenant.to_string();
    let blind = key.blind(kind, value).to_vec();
    let id: Option<String> = match kind {
        BlindKind::WaId => db_run!(c, |c| subjects::table
            .filter(subjects::tenant_id.eq(&tid))
            .filter(subjects::wa_id_blind.eq(&blind))
            .select(subjects::id)
            .first(c)
            .await
            .optional())?,
        BlindKind::Bsuid => db_run!(c, |c| subjects::table
            .filter(subjects::tenant_id.eq(&tid))
            .filter(subjects::bsuid_blind.eq(&blind))
            .select(subjects::id)
            .first(c)
            .await
            .optional())?,
        BlindKind::Phone => db_run!(c, |c| subjects::table
            .filter(subjects::tenant_id.eq(&tid))
            .filter(subjects::phone_blind.eq(&blind))
            .select(subjects::id)
            .first(c)
            .await
            .optional())?,
        BlindKind::Login => None,
    };
    id.map(|s| s.parse()).transpose()
}

/// A conversation as the pipeline needs it.
#[derive(Debug, Clone)]
pub struct ConversationRow {
    /// Id.
    pub id: ConversationId,
    /// Tenant.
    pub tenant_id: TenantId,
    /// Subject.
    pub subject_id: SubjectId,
    /// The business number it runs on.
    pub phone_number_id: PhoneNumberId,
    /// `assistant` or `human` (taken over by the business).
    pub mode: String,
    /// Last inbound message (unix micros): the 24-hour customer service window.
    pub last_inbound_at: Option<i64>,
}

/// A subject's processing flags.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SubjectFlags {
    /// Objected to AI processing (hand-off to a human).
    pub objected: bool,
    /// Opted out of follow-ups ("stop").
    pub opted_out: bool,
}

/// Ordering of message statuses: the state only moves forward; `failed` is final.
pub fn status_rank(status: &str) -> u8 {
    match status {
        "received" | "queued" => 0,
        "sent" => 1,
        "delivered" => 2,
        "read" => 3,
        "failed" => 4,
        _ => 0,
    }
}

impl Store {
    /// The message with Meta id `wamid` at a tenant: (id, direction, status).
    pub async fn message_by_wamid(
        &self,
        c: &mut Conn,
        tenant: TenantId,
        wamid: &str,
    ) -> Result<Option<(MessageId, String, String)>, CoreError> {
        let tid = tenant.to_string();
        let row: Option<(String, String, String)> = db_run!(c, |c| messages::table
            .filter(messages::tenant_id.eq(&tid))
            .filter(messages::wamid.eq(wamid))
            .select((messages::id, messages::direction, messages::status))
            .first(c)
            .await
            .optional())?;
        row.map(|(id, d, s)| Ok((id.parse()?, d, s))).transpose()
    }

    /// Moves a message's status forward (never back; `failed` is final). Returns whether it
    /// changed.
    pub async fn advance_status(
        &self,
        c: &mut Conn,
        message: MessageId,
        current: &str,
        next: &str,
        error_code: Option<i32>,
        at: i64,
    ) -> Result<bool, CoreError> {
        if current == "failed" || status_rank(next) <= status_rank(current) {
            return Ok(false);
        }
        let mid = message.to_string();
        let n = db_run!(c, |c| diesel::update(messages::table.find(&mid))
            .filter(messages::status.eq(current))
            .set((
                messages::status.eq(next),
                messages::error_code.eq(error_code),
                messages::status_at.eq(at)
            ))
            .execute(c)
            .await)?;
        Ok(n == 1)
    }

    /// Records Meta's id of a message we sent.
    pub async fn set_wamid(
        &self,
        c: &mut Conn,
        message: MessageId,
        wamid: &str,
    ) -> Result<(), CoreError> {
        let mid = message.to_string();
        db_run!(c, |c| diesel::update(messages::table.find(&mid))
            .set(messages::wamid.eq(Some(wamid)))
            .execute(c)
            .await)?;
        Ok(())
    }

    /// One message row (body sealed).
    pub async fn message_row(
        &self,
        c: &mut Conn,
        message: MessageId,
    ) -> Result<MessageRow, CoreError> {
        let mid = message.to_string();
        db_run!(c, |c| messages::table
            .find(&mid)
            .select(MessageRow::as_select())
            .first(c)
            .await
            .optional())?
        .ok_or(CoreError::NotFound { what: "message" })
    }

    /// Opens one message's body (one subject-key unwrap, one AEAD open).
    pub async fn open_message(
        &self,
        c: &mut Conn,
        tenant: TenantId,
        key: &TenantKey,
        row: MessageRow,
    ) -> Result<PlainMessage, CoreError> {
        let tid = tenant.to_string();
        let skey = self.subject_key_in(c, &tid, &row.subject_id, key).await?;
        open_messages(&skey, &tid, vec![row])?
            .pop()
            .ok_or(CoreError::NotFound { what: "message" })
    }

    /// One conversation.
    pub async fn conversation(
        &self,
        c: &mut Conn,
        id: ConversationId,
    ) -> Result<ConversationRow, CoreError> {
        let cid = id.to_string();
        let row: Option<(String, String, String, String, Option<i64>)> =
            db_run!(c, |c| conversations::table
                .find(&cid)
                .select((
                    conversations::tenant_id,
                    conversations::subject_id,
                    conversations::phone_number_id,
                    conversations::mode,
                    conversations::last_inbound_at,
                ))
                .first(c)
                .await
                .optional())?;
        let (t, s, p, mode, last_inbound_at) = row.ok_or(CoreError::NotFound {
            what: "conversation",
        })?;
        Ok(ConversationRow {
            id,
            tenant_id: t.parse()?,
            subject_id: s.parse()?,
            phone_number_id: p.parse()?,
            mode,
            last_inbound_at,
        })
    }

    /// Sets a conversation's mode (`assistant` or `human`).
    pub async fn set_conversation_mode(
        &self,
        c: &mut Conn,
        id: ConversationId,
        mode: &str,
    ) -> Result<(), CoreError> {
        let cid = id.to_string();
        let now = now_micros();
        db_run!(c, |c| diesel::update(conversations::table.find(&cid))
            .set((
                conversations::mode.eq(mode),
                conversations::updated_at.eq(now)
            ))
            .execute(c)
            .await)?;
        Ok(())
    }

    /// The last `limit` messages of a conversation, oldest first, bodies opened.
    pub async fn recent_messages(
        &self,
        c: &mut Conn,
        tenant: TenantId,
        conv: &ConversationRow,
        key: &TenantKey,
        limit: i64,
    ) -> Result<Vec<PlainMessage>, CoreError> {
        let tid = tenant.to_string();
        let cid = conv.id.to_string();
        let sid = conv.subject_id.to_string();
        let skey = self.subject_key_in(c, &tid, &sid, key).await?;
        let mut rows: Vec<MessageRow> = db_run!(c, |c| messages::table
            .filter(messages::conversation_id.eq(&cid))
            .order((messages::created_at.desc(), messages::id.desc()))
            .limit(limit)
            .select(MessageRow::as_select())
            .load(c)
            .await)?;
        rows.reverse();
        open_messages(&skey, &tid, rows)
    }

    /// A subject's flags.
    pub async fn subject_flags(
        &self,
        c: &mut Conn,
        subject: SubjectId,
    ) -> Result<SubjectFlags, CoreError> {
        let sid = subject.to_string();
        let (objected, opted_out): (bool, bool) = db_run!(c, |c| subjects::table
            .find(&sid)
            .select((subjects::objected, subjects::opted_out))
            .first(c)
            .await
            .optional())?
        .ok_or(CoreError::NotFound { what: "subject" })?;
        Ok(SubjectFlags {
            objected,
            opted_out,
        })
    }

    /// Sets a subject's flags.
    pub async fn set_subject_flags(
        &self,
        c: &mut Conn,
        subject: SubjectId,
        flags: SubjectFlags,
    ) -> Result<(), CoreError> {
        let sid = subject.to_string();
        db_run!(c, |c| diesel::update(subjects::table.find(&sid))
            .set((
                subjects::objected.eq(flags.objected),
                subjects::opted_out.eq(flags.opted_out)
            ))
            .execute(c)
            .await)?;
        Ok(())
    }

    /// The Graph API access token of a connected number (empty: the sandbox).
    pub async fn access_token(
        &self,
        tenant: TenantId,
        pnid: &PhoneNumberId,
    ) -> Result<crate::config::Secret, CoreError> {
        let tid = tenant.to_string();
        let key = self.keys.tenant_key(&tid).await?;
        let mut c = self.db.conn().await?;
        let ct: Vec<u8> = db_run!(c, |c| phone_numbers::table
            .filter(phone_numbers::phone_number_id.eq(pnid.as_str()))
            .filter(phone_numbers::tenant_id.eq(&tid))
            .select(phone_numbers::access_token_ct)
            .first(c)
            .await
            .optional())?
        .ok_or(CoreError::NotFound {
            what: "phone number",
        })?;
        let bytes = key.open(&format!("phone_numbers.access_token_ct|{tid}|{pnid}"), &ct)?;
        Ok(crate::config::Secret::new(
            String::from_utf8(bytes).map_err(|_| CoreError::Crypto("token is not UTF-8".into()))?,
        ))
    }

    /// The subject's contact fields, opened within a transaction.
    pub async fn subject_contact_in(
        &self,
        c: &mut Conn,
        tenant: TenantId,
        subject: SubjectId,
        key: &TenantKey,
    ) -> Result<SubjectContact, CoreError> {
        let tid = tenant.to_string();
        let sid = subject.to_string();
        let skey = self.subject_key_in(c, &tid, &sid, key).await?;
        self.open_contact(&skey, &tid, &sid, c).await
    }
}
