//! A tenant's own settings, as its owners change them from the portal (issue 8): the
//! business profile, the WhatsApp numbers connected, and its own API keys for the AI
//! providers.
//!
//! Every change is written in one transaction with its ledger entry, which carries codes
//! and digests only: never the profile, a token or a key. Profiles, access tokens and
//! provider keys are sealed under the tenant data key (AAD `table.column|tenant|…`), so
//! shredding the tenant makes every one of them unreadable at once.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use rand::Rng;
use serde::Serialize;
use smartchat_ledger::{Actor, AttrKey, AttrValue, EntryDraft, EventKind, RefKind, Reference};

use crate::audit;
use crate::config::Secret;
use crate::conversations::PROVIDER_NAMES;
use crate::db::schema::{phone_numbers, provider_keys, tenants};
use crate::db::{Tx, now_micros};
use crate::db_run;
use crate::error::CoreError;
use crate::ids::{PhoneNumberId, TenantId};
use crate::store::{Profile, Store};

/// A connected WhatsApp number as its owner sees it (never the access token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NumberView {
    /// Meta's phone number id (or a generated sandbox id).
    pub phone_number_id: String,
    /// The WhatsApp Business Account id, once known.
    pub waba_id: Option<String>,
    /// Whether a Graph API access token is stored for it.
    pub access_token_set: bool,
    /// A number without a token: replies go to the local sandbox, never to Meta.
    pub sandbox: bool,
    /// When it was connected, unix micros.
    pub connected_at: i64,
}

/// One change of a tenant's provider keys: `Some` sets or replaces the key, `None` removes it.
#[derive(Debug, Clone)]
pub struct ProviderKeyChange {
    /// A name of [`PROVIDER_NAMES`].
    pub provider: String,
    /// The new key, or `None` to remove the tenant's key.
    pub key: Option<Secret>,
}

/// Length of a generated sandbox phone number id: 32 digits with two leading zeros. Meta's
/// ids are 64-bit integers (at most 20 digits, no leading zero), so one can never collide.
pub const SANDBOX_ID_LEN: usize = 32;

fn profile_context(tid: &str) -> String {
    format!("tenants.profile_ct|{tid}")
}

fn key_context(tid: &str, provider: &str) -> String {
    format!("provider_keys.key_ct|{tid}|{provider}")
}

fn number_digest(pnid: &str) -> [u8; 32] {
    *blake3::hash(pnid.as_bytes()).as_bytes()
}

fn provider_code(name: &str) -> u32 {
    match name {
        "openai" => u32::from(smartchat_ledger::ProviderCode::OPENAI.0),
        "deepseek" => u32::from(smartchat_ledger::ProviderCode::DEEPSEEK.0),
        _ => u32::from(smartchat_ledger::ProviderCode::COMPATIBLE.0),
    }
}

/// A fresh sandbox phone number id (see [`SANDBOX_ID_LEN`]).
pub fn sandbox_number_id() -> Result<PhoneNumberId, CoreError> {
    let mut rng = rand::thread_rng();
    let mut s = String::with_capacity(SANDBOX_ID_LEN);
    s.push_str("00");
    while s.len() < SANDBOX_ID_LEN {
        s.push(char::from(b'0' + rng.gen_range(0..10u8)));
    }
    s.parse()
}

/// The tenant must exist and be active (a terminated tenant connects nothing).
async fn require_active(tx: &mut Tx, tid: &str) -> Result<(), CoreError> {
    let status: Option<String> = db_run!(tx, |c| tenants::table
        .find(tid)
        .select(tenants::status)
        .first(c)
        .await
        .optional())?;
    match status.as_deref() {
        None => Err(CoreError::NotFound { what: "tenant" }),
        Some("active") => Ok(()),
        Some(_) => Err(CoreError::Conflict {
            what: "terminated tenant",
        }),
    }
}

impl Store {
    /// Replaces the tenant's business profile (validated by the caller), re-sealed under the
    /// tenant key with the same AAD as at creation, ledgered as `tenant_profile_updated`
    /// with a digest of the new ciphertext, in one transaction.
    pub async fn update_profile(
        &self,
        tenant: TenantId,
        profile: &Profile,
        actor: Actor,
    ) -> Result<(), CoreError> {
        let tid = tenant.to_string();
        let key = self.tenant_key(tenant).await?;
        let bytes =
            serde_json::to_vec(&profile.0).map_err(|e| CoreError::Internal(e.to_string()))?;
        let ct = key.seal(&profile_context(&tid), &bytes)?;
        let mut tx = self.db.begin().await?;
        require_active(&mut tx, &tid).await?;
        db_run!(tx, |c| diesel::update(tenants::table.find(&tid))
            .set(tenants::profile_ct.eq(&ct))
            .execute(c)
            .await)?;
        audit::enqueue(
            &mut tx,
            &EntryDraft::new(EventKind::TENANT_PROFILE_UPDATED, actor)
                .tenant(tenant.bytes())
                .reference(Reference::digest(
                    RefKind::RECORD_DIGEST,
                    *blake3::hash(&ct).as_bytes(),
                )),
        )
        .await?;
        tx.commit().await
    }

    /// The tenant's WhatsApp numbers, oldest first; whether a token is set is read by
    /// opening it (a token is never returned).
    pub async fn numbers(&self, tenant: TenantId) -> Result<Vec<NumberView>, CoreError> {
        let tid = tenant.to_string();
        let key = self.tenant_key(tenant).await?;
        let mut c = self.db.conn().await?;
        let rows: Vec<(String, Option<String>, Vec<u8>, i64)> =
            db_run!(c, |c| phone_numbers::table
                .filter(phone_numbers::tenant_id.eq(&tid))
                .order((phone_numbers::created_at, phone_numbers::phone_number_id))
                .select((
                    phone_numbers::phone_number_id,
                    phone_numbers::waba_id,
                    phone_numbers::access_token_ct,
                    phone_numbers::created_at,
                ))
                .load(c)
                .await)?;
        rows.into_iter()
            .map(|(pnid, waba_id, ct, connected_at)| {
                let token =
                    key.open(&format!("phone_numbers.access_token_ct|{tid}|{pnid}"), &ct)?;
                let set = !token.is_empty();
                Ok(NumberView {
                    phone_number_id: pnid,
                    waba_id,
                    access_token_set: set,
                    sandbox: !set,
                    connected_at,
                })
            })
            .collect()
    }

    /// Connects a WhatsApp number to the tenant: with Meta's access token, or without one
    /// (a sandbox number: replies go to the local sandbox). `Conflict` when any tenant has
    /// the number already. Ledgered as `phone_number_connected` (a digest of the id, never
    /// the token).
    pub async fn connect_number(
        &self,
        tenant: TenantId,
        pnid: &PhoneNumberId,
        access_token: Option<&Secret>,
        waba_id: Option<&str>,
        actor: Actor,
    ) -> Result<NumberView, CoreError> {
        if let Some(w) = waba_id {
            if w.is_empty() || w.len() > 64 || !w.bytes().all(|b| b.is_ascii_digit()) {
                return Err(CoreError::Invalid {
                    field: "waba_id",
                    reason: "the WhatsApp Business Account id is 1 to 64 digits".into(),
                });
            }
        }
        let token = access_token.map(Secret::expose).unwrap_or("");
        if token.len() > 4096 || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(CoreError::Invalid {
                field: "access_token",
                reason: "an access token has no spaces and at most 4096 characters".into(),
            });
        }
        let tid = tenant.to_string();
        let key = self.tenant_key(tenant).await?;
        let mut tx = self.db.begin().await?;
        require_active(&mut tx, &tid).await?;
        self.connect_number_in(&mut tx, &key, tenant, pnid, token)
            .await?;
        if let Some(w) = waba_id {
            db_run!(tx, |c| diesel::update(
                phone_numbers::table.find(pnid.as_str())
            )
            .set(phone_numbers::waba_id.eq(w))
            .execute(c)
            .await)?;
        }
        let connected_at: i64 = db_run!(tx, |c| phone_numbers::table
            .find(pnid.as_str())
            .select(phone_numbers::created_at)
            .first(c)
            .await)?;
        audit::enqueue(
            &mut tx,
            &EntryDraft::new(EventKind::PHONE_NUMBER_CONNECTED, actor)
                .tenant(tenant.bytes())
                .reference(Reference::digest(
                    RefKind::RECORD_DIGEST,
                    number_digest(pnid.as_str()),
                ))
                .attr(
                    AttrKey::REASON,
                    AttrValue::Code(if token.is_empty() { 2 } else { 1 }),
                ),
        )
        .await?;
        tx.commit().await?;
        Ok(NumberView {
            phone_number_id: pnid.to_string(),
            waba_id: waba_id.map(str::to_owned),
            access_token_set: !token.is_empty(),
            sandbox: token.is_empty(),
            connected_at,
        })
    }

    /// Connects a fresh sandbox number (a generated id no Meta number can have, see
    /// [`SANDBOX_ID_LEN`]): the business can try its assistant at once.
    pub async fn connect_sandbox_number(
        &self,
        tenant: TenantId,
        actor: Actor,
    ) -> Result<NumberView, CoreError> {
        // 10^30 ids: a collision is practically impossible, but one retry costs nothing.
        let mut last = None;
        for _ in 0..3 {
            match self
                .connect_number(tenant, &sandbox_number_id()?, None, None, actor)
                .await
            {
                Err(
                    e @ CoreError::Conflict {
                        what: "phone number id",
                    },
                ) => last = Some(e),
                other => return other,
            }
        }
        Err(last.unwrap_or(CoreError::Conflict {
            what: "phone number id",
        }))
    }

    /// Disconnects one of the tenant's numbers (its token goes with the row); `NotFound`
    /// for a number of another tenant or none. Ledgered as `phone_number_disconnected`.
    pub async fn disconnect_number(
        &self,
        tenant: TenantId,
        pnid: &PhoneNumberId,
        actor: Actor,
    ) -> Result<(), CoreError> {
        let tid = tenant.to_string();
        let mut tx = self.db.begin().await?;
        let n = db_run!(tx, |c| diesel::delete(
            phone_numbers::table
                .filter(phone_numbers::phone_number_id.eq(pnid.as_str()))
                .filter(phone_numbers::tenant_id.eq(&tid))
        )
        .execute(c)
        .await)?;
        if n == 0 {
            return Err(CoreError::NotFound {
                what: "phone number",
            });
        }
        audit::enqueue(
            &mut tx,
            &EntryDraft::new(EventKind::PHONE_NUMBER_DISCONNECTED, actor)
                .tenant(tenant.bytes())
                .reference(Reference::digest(
                    RefKind::RECORD_DIGEST,
                    number_digest(pnid.as_str()),
                )),
        )
        .await?;
        tx.commit().await
    }

    /// The providers the tenant has its own key for (names only), in [`PROVIDER_NAMES`]
    /// order.
    pub async fn provider_key_names(&self, tenant: TenantId) -> Result<Vec<String>, CoreError> {
        let tid = tenant.to_string();
        let mut c = self.db.conn().await?;
        let mut names: Vec<String> = db_run!(c, |c| provider_keys::table
            .filter(provider_keys::tenant_id.eq(&tid))
            .select(provider_keys::provider)
            .load(c)
            .await)?;
        names.sort_by_key(|n| PROVIDER_NAMES.iter().position(|k| k == n));
        Ok(names)
    }

    /// The tenant's own provider keys, opened (for the pipeline only; never returned by
    /// the API). `Shredded` once the tenant key is gone.
    pub async fn provider_keys(
        &self,
        tenant: TenantId,
    ) -> Result<Vec<(String, Secret)>, CoreError> {
        let tid = tenant.to_string();
        let mut c = self.db.conn().await?;
        let rows: Vec<(String, Vec<u8>)> = db_run!(c, |c| provider_keys::table
            .filter(provider_keys::tenant_id.eq(&tid))
            .select((provider_keys::provider, provider_keys::key_ct))
            .load(c)
            .await)?;
        drop(c);
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let key = self.tenant_key(tenant).await?;
        let mut out = Vec::with_capacity(rows.len());
        for (name, ct) in rows {
            let bytes = key.open(&key_context(&tid, &name), &ct)?;
            let text = String::from_utf8(bytes)
                .map_err(|_| CoreError::Crypto("provider key is not UTF-8".into()))?;
            out.push((name, Secret::new(text)));
        }
        out.sort_by_key(|(n, _)| PROVIDER_NAMES.iter().position(|k| k == n));
        Ok(out)
    }

    /// Sets, replaces or removes the tenant's own provider keys, all in one transaction,
    /// each ledgered as `provider_key_set` (reason 1 set, 2 replaced) or
    /// `provider_key_removed` with the provider's code, never the key. Validated first:
    /// a known provider, named once, a key of 8 to 512 visible characters.
    pub async fn set_provider_keys(
        &self,
        tenant: TenantId,
        changes: &[ProviderKeyChange],
        actor: Actor,
    ) -> Result<(), CoreError> {
        self.set_assistant(tenant, changes, None, actor).await
    }

    /// An owner's change of the assistant settings: the tenant's own provider keys (as
    /// [`Store::set_provider_keys`]) and, when `chain` is `Some`, the provider chain (as
    /// [`Store::set_provider_chain`]). Everything is validated before anything is written,
    /// and written in one transaction: a failure keeps none of it.
    pub async fn set_assistant(
        &self,
        tenant: TenantId,
        changes: &[ProviderKeyChange],
        chain: Option<Option<&[String]>>,
        actor: Actor,
    ) -> Result<(), CoreError> {
        for (i, ch) in changes.iter().enumerate() {
            if !PROVIDER_NAMES.contains(&ch.provider.as_str()) {
                return Err(CoreError::Invalid {
                    field: "keys",
                    reason: format!(
                        "unknown provider {:?}; known: {}",
                        ch.provider,
                        PROVIDER_NAMES.join(", ")
                    ),
                });
            }
            if changes[..i].iter().any(|c| c.provider == ch.provider) {
                return Err(CoreError::Invalid {
                    field: "keys",
                    reason: format!("{:?} is named twice", ch.provider),
                });
            }
            if let Some(k) = &ch.key {
                let k = k.expose();
                if !(8..=512).contains(&k.len()) || !k.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(CoreError::Invalid {
                        field: "keys",
                        reason: format!(
                            "the key for {} must be 8 to 512 visible ASCII characters",
                            ch.provider
                        ),
                    });
                }
            }
        }
        if let Some(Some(chain)) = chain {
            crate::conversations::check_provider_chain(chain)?;
        }
        if changes.is_empty() && chain.is_none() {
            return Ok(());
        }
        let tid = tenant.to_string();
        let key = if changes.is_empty() {
            None
        } else {
            Some(self.tenant_key(tenant).await?)
        };
        let mut tx = self.db.begin().await?;
        if let Some(key) = key {
            require_active(&mut tx, &tid).await?;
            write_provider_keys(&mut tx, &key, tenant, changes, actor).await?;
        }
        if let Some(chain) = chain {
            crate::conversations::write_provider_chain(&mut tx, tenant, chain, actor).await?;
        }
        tx.commit().await
    }
}

/// Writes the tenant's key changes (checked by the caller) and ledgers each, in `tx`.
async fn write_provider_keys(
    tx: &mut Tx,
    key: &crate::crypto::TenantKey,
    tenant: TenantId,
    changes: &[ProviderKeyChange],
    actor: Actor,
) -> Result<(), CoreError> {
    let tid = tenant.to_string();
    let now = now_micros();
    for ch in changes {
        let name = ch.provider.as_str();
        let existed = db_run!(tx, |c| diesel::delete(
            provider_keys::table
                .filter(provider_keys::tenant_id.eq(&tid))
                .filter(provider_keys::provider.eq(name))
        )
        .execute(c)
        .await)?
            > 0;
        let draft = match &ch.key {
            Some(secret) => {
                let ct = key.seal(&key_context(&tid, name), secret.expose().as_bytes())?;
                db_run!(tx, |c| diesel::insert_into(provider_keys::table)
                    .values((
                        provider_keys::tenant_id.eq(&tid),
                        provider_keys::provider.eq(name),
                        provider_keys::key_ct.eq(&ct),
                        provider_keys::updated_at.eq(now),
                    ))
                    .execute(c)
                    .await)?;
                EntryDraft::new(EventKind::PROVIDER_KEY_SET, actor).attr(
                    AttrKey::REASON,
                    AttrValue::Code(if existed { 2 } else { 1 }),
                )
            }
            None if existed => EntryDraft::new(EventKind::PROVIDER_KEY_REMOVED, actor),
            None => continue,
        };
        audit::enqueue(
            tx,
            &draft
                .tenant(tenant.bytes())
                .attr(AttrKey::PROVIDER, AttrValue::Code(provider_code(name))),
        )
        .await?;
    }
    Ok(())
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn sandbox_ids_are_valid_and_never_a_meta_id() {
        for _ in 0..100 {
            let id = sandbox_number_id().unwrap();
            let s = id.as_str();
            assert_eq!(s.len(), SANDBOX_ID_LEN);
            assert!(s.starts_with("00"));
            // Meta's ids fit in 64 bits; a sandbox id does not parse as one with its zeros.
            assert!(s.len() > u64::MAX.to_string().len());
        }
        assert_ne!(sandbox_number_id().unwrap(), sandbox_number_id().unwrap());
    }
}
