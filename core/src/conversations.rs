//! What an owner sees and does with conversations: the list, one conversation's messages,
//! taking a conversation over from the assistant and handing it back, and the tenant's
//! assistant settings (its provider chain). Every look-up is scoped by tenant: a
//! conversation of another tenant is `NotFound`, never `Forbidden`.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::Serialize;
use smartchat_ledger::{Actor, AttrKey, AttrValue, EntryDraft, EventKind, RefKind, Reference};

use crate::audit;
use crate::db::now_micros;
use crate::db::schema::{conversations, tenants};
use crate::db_run;
use crate::error::CoreError;
use crate::ids::{ConversationId, TenantId};
use crate::store::{ConversationRow, PlainMessage, Store};

/// A conversation as the owner's list shows it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct ConversationSummary {
    /// Id.
    pub id: ConversationId,
    /// The business number it runs on.
    pub phone_number_id: String,
    /// `assistant` or `human`.
    pub mode: String,
    /// The customer's WhatsApp profile name, when Meta sent one and the subject's key exists.
    pub customer_name: Option<String>,
    /// The customer's `wa_id`, when known and not shredded.
    pub customer_wa_id: Option<String>,
    /// Last inbound message, unix micros.
    pub last_inbound_at: Option<i64>,
    /// Last change, unix micros.
    pub updated_at: i64,
}

/// Which way a conversation is switched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The assistant answers.
    Assistant,
    /// A person of the business answers; the assistant stays silent.
    Human,
}

impl Mode {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Assistant => "assistant",
            Self::Human => "human",
        }
    }
}

/// The AI providers a tenant's chain may name (the offline assistant always ends it).
pub const PROVIDER_NAMES: &[&str] = &["openai", "deepseek"];

/// The ledger code of a provider name in [`PROVIDER_NAMES`].
fn provider_code(name: &str) -> u32 {
    match name {
        "openai" => u32::from(smartchat_ledger::ProviderCode::OPENAI.0),
        "deepseek" => u32::from(smartchat_ledger::ProviderCode::DEEPSEEK.0),
        _ => 0,
    }
}

/// Checks a provider chain: known names ([`PROVIDER_NAMES`]), none named twice.
pub fn check_provider_chain(chain: &[String]) -> Result<(), CoreError> {
    for (i, name) in chain.iter().enumerate() {
        if !PROVIDER_NAMES.contains(&name.as_str()) {
            return Err(CoreError::Invalid {
                field: "providers",
                reason: format!(
                    "unknown provider {name:?}; known: {}",
                    PROVIDER_NAMES.join(", ")
                ),
            });
        }
        if chain[..i].contains(name) {
            return Err(CoreError::Invalid {
                field: "providers",
                reason: format!("{name:?} is named twice"),
            });
        }
    }
    Ok(())
}

impl Store {
    /// The tenant's conversations, most recently active first, at most `limit`. On
    /// PostgreSQL the tenant's rows are found by `(tenant_id)` and sorted here by the query
    /// (no index holds `updated_at`, so the webhook's window moves stay heap-only updates).
    pub async fn list_conversations(
        &self,
        tenant: TenantId,
        limit: i64,
    ) -> Result<Vec<ConversationSummary>, CoreError> {
        let tid = tenant.to_string();
        let key = self.tenant_key(tenant).await?;
        let mut c = self.db.conn().await?;
        type Row = (String, String, String, String, Option<i64>, i64);
        let rows: Vec<Row> = db_run!(c, |c| conversations::table
            .filter(conversations::tenant_id.eq(&tid))
            .order((conversations::updated_at.desc(), conversations::id.desc()))
            .limit(limit.clamp(1, 500))
            .select((
                conversations::id,
                conversations::subject_id,
                conversations::phone_number_id,
                conversations::mode,
                conversations::last_inbound_at,
                conversations::updated_at,
            ))
            .load(c)
            .await)?;
        let mut out = Vec::with_capacity(rows.len());
        for (id, sid, pnid, mode, last_inbound_at, updated_at) in rows {
            // A subject whose key was shredded still has a row until it is purged; it is
            // listed without a name.
            let contact = match self
                .subject_contact_in(&mut c, tenant, sid.parse()?, &key)
                .await
            {
                Ok(ct) => Some(ct),
                Err(CoreError::Shredded { .. } | CoreError::NotFound { .. }) => None,
                Err(e) => return Err(e),
            };
            out.push(ConversationSummary {
                id: id.parse()?,
                phone_number_id: pnid,
                mode,
                customer_name: contact.as_ref().and_then(|c| c.profile_name.clone()),
                customer_wa_id: contact.and_then(|c| c.wa_id),
                last_inbound_at,
                updated_at,
            });
        }
        Ok(out)
    }

    /// One conversation of `tenant` (`NotFound` for another tenant's).
    pub async fn tenant_conversation(
        &self,
        tenant: TenantId,
        id: ConversationId,
    ) -> Result<ConversationRow, CoreError> {
        let mut c = self.db.conn().await?;
        let conv = self.conversation(&mut c, id).await?;
        if conv.tenant_id != tenant {
            return Err(CoreError::NotFound {
                what: "conversation",
            });
        }
        Ok(conv)
    }

    /// The conversation of a subject on a number, if there is one.
    pub async fn conversation_of(
        &self,
        tenant: TenantId,
        subject: crate::ids::SubjectId,
        pnid: &crate::ids::PhoneNumberId,
    ) -> Result<ConversationId, CoreError> {
        let tid = tenant.to_string();
        let sid = subject.to_string();
        let mut c = self.db.conn().await?;
        let id: Option<String> = db_run!(c, |c| conversations::table
            .filter(conversations::tenant_id.eq(&tid))
            .filter(conversations::subject_id.eq(&sid))
            .filter(conversations::phone_number_id.eq(pnid.as_str()))
            .select(conversations::id)
            .first(c)
            .await
            .optional())?;
        id.ok_or(CoreError::NotFound {
            what: "conversation",
        })?
        .parse()
    }

    /// The last `limit` messages of one of `tenant`'s conversations, oldest first.
    pub async fn conversation_messages(
        &self,
        tenant: TenantId,
        id: ConversationId,
        limit: i64,
    ) -> Result<(ConversationRow, Vec<PlainMessage>), CoreError> {
        let conv = self.tenant_conversation(tenant, id).await?;
        let key = self.tenant_key(tenant).await?;
        let mut c = self.db.conn().await?;
        let msgs = self
            .recent_messages(&mut c, tenant, &conv, &key, limit.clamp(1, 1000))
            .await?;
        Ok((conv, msgs))
    }

    /// Switches a conversation between the assistant and a person, ledgered with the member
    /// who did it. Returns whether the mode changed (switching to the current mode is a
    /// no-op and writes nothing).
    pub async fn set_mode(
        &self,
        tenant: TenantId,
        id: ConversationId,
        mode: Mode,
        actor: Actor,
    ) -> Result<bool, CoreError> {
        let conv = self.tenant_conversation(tenant, id).await?;
        if conv.mode == mode.as_str() {
            return Ok(false);
        }
        let key = self.tenant_key(tenant).await?;
        let cid = id.to_string();
        let mut tx = self.db.begin().await?;
        let now = now_micros();
        let current = conv.mode.clone();
        let n = db_run!(tx, |c| diesel::update(conversations::table.find(&cid))
            .filter(conversations::mode.eq(&current))
            .set((
                conversations::mode.eq(mode.as_str()),
                conversations::updated_at.eq(now)
            ))
            .execute(c)
            .await)?;
        if n == 0 {
            // Someone else switched it in between: theirs stands.
            return Ok(false);
        }
        let kind = match mode {
            Mode::Human => EventKind::CONVERSATION_TAKEN_OVER,
            Mode::Assistant => EventKind::CONVERSATION_HANDED_BACK,
        };
        let draft = EntryDraft::new(kind, actor)
            .tenant(tenant.bytes())
            .subject(key.pseudonym(&conv.subject_id.to_string()))
            .reference(Reference::id(RefKind::CONVERSATION, id.bytes()));
        audit::enqueue(&mut tx, &draft).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The tenant's provider chain: `None` means every provider the platform configured, in
    /// the platform's order; `Some([])` the offline assistant only.
    pub async fn provider_chain(&self, tenant: TenantId) -> Result<Option<Vec<String>>, CoreError> {
        let tid = tenant.to_string();
        let mut c = self.db.conn().await?;
        let raw: Option<Option<String>> = db_run!(c, |c| tenants::table
            .find(&tid)
            .select(tenants::provider_chain)
            .first(c)
            .await
            .optional())?;
        let raw = raw.ok_or(CoreError::NotFound { what: "tenant" })?;
        raw.map(|s| {
            serde_json::from_str(&s)
                .map_err(|e| CoreError::Internal(format!("stored provider chain: {e}")))
        })
        .transpose()
    }

    /// Sets the tenant's provider chain (validated against [`PROVIDER_NAMES`], no repeats),
    /// ledgered with the provider codes in order; `None` returns to the platform's default.
    /// With key changes, in the same transaction: [`Store::set_assistant`].
    pub async fn set_provider_chain(
        &self,
        tenant: TenantId,
        chain: Option<&[String]>,
        actor: Actor,
    ) -> Result<(), CoreError> {
        self.set_assistant(tenant, &[], Some(chain), actor).await
    }
}

/// Writes the tenant's provider chain (checked by the caller) and ledgers it, in `tx`.
pub(crate) async fn write_provider_chain(
    tx: &mut crate::db::Tx,
    tenant: TenantId,
    chain: Option<&[String]>,
    actor: Actor,
) -> Result<(), CoreError> {
    let stored = chain
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| CoreError::Internal(e.to_string()))?;
    let tid = tenant.to_string();
    let n = db_run!(tx, |c| diesel::update(tenants::table.find(&tid))
        .set(tenants::provider_chain.eq(&stored))
        .execute(c)
        .await)?;
    if n == 0 {
        return Err(CoreError::NotFound { what: "tenant" });
    }
    // `reason` 0: back to the platform's default chain; 1: the tenant's own chain
    // (possibly empty: the offline assistant only).
    let mut draft = EntryDraft::new(EventKind::ASSISTANT_SETTINGS_CHANGED, actor)
        .tenant(tenant.bytes())
        .attr(AttrKey::REASON, AttrValue::Code(u32::from(chain.is_some())));
    for name in chain.unwrap_or_default() {
        draft = draft.attr(AttrKey::PROVIDER, AttrValue::Code(provider_code(name)));
    }
    audit::enqueue(tx, &draft).await
}
