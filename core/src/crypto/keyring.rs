//! The key store: tenant identities and service keys wrapped by the master key, in a
//! database apart from the main one (so main-database backups never hold a tenant key),
//! plus the unwrap caches.
//!
//! Caches are keyed by a digest of the wrapped bytes and every use re-reads the wrapped row,
//! so a key shredded by another process is never used again by this one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use secrecy::ExposeSecret;

use super::{MasterKey, SubjectKey, TenantKey};
use crate::db::schema::keystore::{keystore_meta, service_keys, tenant_keys};
use crate::db::{DbPool, Schema, now_micros};
use crate::db_run;
use crate::error::CoreError;

const CHECK_PLAINTEXT: &[u8] = b"smartchat key store check v1";
const CACHE_LIMIT: usize = 50_000;

/// Opens and caches keys. Cheap to clone.
#[derive(Clone)]
pub struct Keyring {
    /// The key store's pool (see [`Keyring::on_pool`]).
    store: DbPool,
    inner: Arc<Inner>,
}

struct Inner {
    master: MasterKey,
    tenants: Mutex<HashMap<blake3::Hash, Arc<TenantKey>>>,
    subjects: Mutex<HashMap<blake3::Hash, SubjectKey>>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keyring({})", self.inner.master.recipient())
    }
}

/// What [`Keyring::open`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeystoreState {
    /// The key store was empty and is now sealed with this master key.
    Initialized,
    /// The key store was sealed with this master key already.
    Opened,
}

/// A row of the key store, as `tenant list` shows it.
#[derive(Debug, Clone)]
pub struct TenantKeyInfo {
    /// Tenant id.
    pub tenant_id: String,
    /// Public recipient.
    pub recipient: String,
    /// Whether it was shredded.
    pub shredded: bool,
}

impl Keyring {
    /// Migrates the key store, then checks that `master` is the key it was sealed with
    /// (sealing an empty store). A different key is [`CoreError::MasterKeyMismatch`] and
    /// nothing is written.
    pub async fn open(
        store: DbPool,
        master: MasterKey,
    ) -> Result<(Self, KeystoreState), CoreError> {
        store.migrate(Schema::Keystore).await?;
        let state = {
            let mut tx = store.begin().await?;
            let existing: Option<(String, Vec<u8>)> = db_run!(tx, |c| keystore_meta::table
                .select((keystore_meta::master_recipient, keystore_meta::check_ct))
                .first(c)
                .await
                .optional())?;
            match existing {
                Some((recipient, check)) => {
                    let ok = recipient == master.recipient()
                        && master
                            .unwrap(&check)
                            .map(|p| p.expose() == CHECK_PLAINTEXT)
                            .unwrap_or(false);
                    if !ok {
                        return Err(CoreError::MasterKeyMismatch {
                            expected: recipient,
                            found: master.recipient(),
                        });
                    }
                    tx.rollback().await?;
                    KeystoreState::Opened
                }
                None => {
                    let check = master.wrap(CHECK_PLAINTEXT)?;
                    let recipient = master.recipient();
                    let now = now_micros();
                    db_run!(tx, |c| diesel::insert_into(keystore_meta::table)
                        .values((
                            keystore_meta::id.eq(1),
                            keystore_meta::master_recipient.eq(&recipient),
                            keystore_meta::check_ct.eq(&check),
                            keystore_meta::updated_at.eq(now),
                        ))
                        .execute(c)
                        .await)?;
                    tx.commit().await?;
                    KeystoreState::Initialized
                }
            }
        };
        Ok((
            Self {
                store,
                inner: Arc::new(Inner {
                    master,
                    tenants: Mutex::new(HashMap::new()),
                    subjects: Mutex::new(HashMap::new()),
                }),
            },
            state,
        ))
    }

    /// The recipient the key store is sealed with, if it was ever opened.
    pub async fn sealed_recipient(store: &DbPool) -> Result<Option<String>, CoreError> {
        store.migrate(Schema::Keystore).await?;
        let mut c = store.conn().await?;
        Ok(db_run!(c, |c| keystore_meta::table
            .select(keystore_meta::master_recipient)
            .first::<String>(c)
            .await
            .optional())?)
    }

    /// The master key's public recipient.
    pub fn master_recipient(&self) -> String {
        self.inner.master.recipient()
    }

    /// The key store pool.
    pub fn store(&self) -> &DbPool {
        &self.store
    }

    /// The same keyring (master key and caches, so a shredded key is forgotten by both)
    /// reading the key store through another pool: the background runtime's
    /// ([`crate::store::Store::twin`]).
    pub fn on_pool(&self, store: DbPool) -> Self {
        Self {
            store,
            inner: self.inner.clone(),
        }
    }

    /// Creates and stores a new tenant key.
    pub async fn create_tenant_key(&self, tenant_id: &str) -> Result<Arc<TenantKey>, CoreError> {
        let key = TenantKey::generate();
        let wrapped = self
            .inner
            .master
            .wrap(key.to_secret_string().expose_secret().as_bytes())?;
        let recipient = key.recipient();
        let now = now_micros();
        let mut c = self.store.conn().await?;
        let res = db_run!(c, |c| diesel::insert_into(tenant_keys::table)
            .values((
                tenant_keys::tenant_id.eq(tenant_id),
                tenant_keys::recipient.eq(&recipient),
                tenant_keys::wrapped_identity.eq(Some(&wrapped)),
                tenant_keys::created_at.eq(now),
            ))
            .execute(c)
            .await);
        match res {
            Ok(_) => {}
            Err(e) if crate::db::is_unique_violation(&e) => {
                return Err(CoreError::Conflict { what: "tenant key" });
            }
            Err(e) => return Err(e.into()),
        }
        let key = Arc::new(key);
        self.cache_tenant(blake3::hash(&wrapped), key.clone());
        Ok(key)
    }

    /// The tenant's key: [`CoreError::Shredded`] once shredded, `NotFound` if never made.
    pub async fn tenant_key(&self, tenant_id: &str) -> Result<Arc<TenantKey>, CoreError> {
        let mut c = self.store.conn().await?;
        let row: Option<Option<Vec<u8>>> = db_run!(c, |c| tenant_keys::table
            .find(tenant_id)
            .select(tenant_keys::wrapped_identity)
            .first(c)
            .await
            .optional())?;
        let wrapped = match row {
            None => return Err(CoreError::NotFound { what: "tenant key" }),
            Some(None) => return Err(CoreError::Shredded { what: "tenant key" }),
            Some(Some(w)) => w,
        };
        let digest = blake3::hash(&wrapped);
        if let Some(k) = self.lock_tenants().get(&digest) {
            return Ok(k.clone());
        }
        let secret = self.inner.master.unwrap(&wrapped)?;
        let key = Arc::new(TenantKey::parse(secret.expose())?);
        self.cache_tenant(digest, key.clone());
        Ok(key)
    }

    /// Several tenants' keys with one query: each `Shredded` once shredded, `NotFound` if
    /// never made (as [`Keyring::tenant_key`] answers for one).
    pub async fn tenant_keys(
        &self,
        tenant_ids: &[String],
    ) -> Result<HashMap<String, Result<Arc<TenantKey>, CoreError>>, CoreError> {
        let mut c = self.store.conn().await?;
        let mut rows: HashMap<String, Option<Vec<u8>>> = HashMap::new();
        for chunk in tenant_ids.chunks(500) {
            let found: Vec<(String, Option<Vec<u8>>)> = db_run!(c, |c| tenant_keys::table
                .filter(tenant_keys::tenant_id.eq_any(chunk))
                .select((tenant_keys::tenant_id, tenant_keys::wrapped_identity))
                .load(c)
                .await)?;
            rows.extend(found);
        }
        let mut out = HashMap::new();
        for id in tenant_ids {
            let key = match rows.remove(id) {
                None => Err(CoreError::NotFound { what: "tenant key" }),
                Some(None) => Err(CoreError::Shredded { what: "tenant key" }),
                Some(Some(wrapped)) => {
                    let digest = blake3::hash(&wrapped);
                    let cached = self.lock_tenants().get(&digest).cloned();
                    match cached {
                        Some(k) => Ok(k),
                        None => {
                            let secret = self.inner.master.unwrap(&wrapped)?;
                            let key = Arc::new(TenantKey::parse(secret.expose())?);
                            self.cache_tenant(digest, key.clone());
                            Ok(key)
                        }
                    }
                }
            };
            out.insert(id.clone(), key);
        }
        Ok(out)
    }

    /// Crypto-shreds a tenant: the wrapped identity is destroyed, a tombstone remains so
    /// later reads say `Shredded`. Idempotent. O(1) in the tenant's data.
    pub async fn shred_tenant(&self, tenant_id: &str) -> Result<(), CoreError> {
        let now = now_micros();
        let mut c = self.store.conn().await?;
        let n = db_run!(c, |c| diesel::update(tenant_keys::table.find(tenant_id))
            .set((
                tenant_keys::wrapped_identity.eq(None::<Vec<u8>>),
                tenant_keys::shredded_at.eq(Some(now)),
            ))
            .execute(c)
            .await)?;
        if n == 0 {
            return Err(CoreError::NotFound { what: "tenant key" });
        }
        // Forget every cached copy; the digest is of the wrapped bytes, so drop them all
        // for this recipient.
        self.lock_tenants().clear();
        self.lock_subjects().clear();
        Ok(())
    }

    /// Removes a tenant key that was created for a tenant whose creation then failed.
    pub async fn delete_unused_tenant_key(&self, tenant_id: &str) -> Result<(), CoreError> {
        let mut c = self.store.conn().await?;
        db_run!(c, |c| diesel::delete(tenant_keys::table.find(tenant_id))
            .execute(c)
            .await)?;
        self.lock_tenants().clear();
        Ok(())
    }

    /// Lists the key store's tenant rows.
    pub async fn list_tenant_keys(&self) -> Result<Vec<TenantKeyInfo>, CoreError> {
        let mut c = self.store.conn().await?;
        let rows: Vec<(String, String, Option<Vec<u8>>)> = db_run!(c, |c| tenant_keys::table
            .select((
                tenant_keys::tenant_id,
                tenant_keys::recipient,
                tenant_keys::wrapped_identity
            ))
            .order(tenant_keys::created_at)
            .load(c)
            .await)?;
        Ok(rows
            .into_iter()
            .map(|(tenant_id, recipient, w)| TenantKeyInfo {
                tenant_id,
                recipient,
                shredded: w.is_none(),
            })
            .collect())
    }

    /// Unwraps a subject key with its tenant key, caching by the wrapped bytes' digest.
    pub fn open_subject_key(
        &self,
        tenant: &TenantKey,
        wrapped: &[u8],
    ) -> Result<SubjectKey, CoreError> {
        let digest = blake3::hash(wrapped);
        if let Some(k) = self.lock_subjects().get(&digest) {
            return Ok(k.clone());
        }
        let key = tenant.unwrap_subject_key(wrapped)?;
        let mut cache = self.lock_subjects();
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(digest, key.clone());
        Ok(key)
    }

    /// Forgets a cached subject key (after shredding it).
    pub fn forget_subject_key(&self, wrapped: &[u8]) {
        self.lock_subjects().remove(&blake3::hash(wrapped));
    }

    /// Gets or creates a service key (an Ed25519 seed), wrapped by the master key.
    /// Returns the 32-byte seed.
    pub async fn service_seed(
        &self,
        name: &str,
        public_of: impl Fn(&[u8; 32]) -> String,
    ) -> Result<zeroize::Zeroizing<[u8; 32]>, CoreError> {
        let mut c = self.store.conn().await?;
        let row: Option<Vec<u8>> = db_run!(c, |c| service_keys::table
            .find(name)
            .select(service_keys::wrapped_secret)
            .first(c)
            .await
            .optional())?;
        if let Some(w) = row {
            return seed_from(&self.inner.master.unwrap(&w)?);
        }
        let mut seed = zeroize::Zeroizing::new([0u8; 32]);
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, seed.as_mut());
        let wrapped = self.inner.master.wrap(seed.as_ref())?;
        let public = public_of(&seed);
        let now = now_micros();
        let res = db_run!(c, |c| diesel::insert_into(service_keys::table)
            .values((
                service_keys::name.eq(name),
                service_keys::public_key.eq(&public),
                service_keys::wrapped_secret.eq(&wrapped),
                service_keys::created_at.eq(now),
            ))
            .execute(c)
            .await);
        match res {
            Ok(_) => Ok(seed),
            // Another process created it first: use theirs.
            Err(e) if crate::db::is_unique_violation(&e) => {
                let w: Vec<u8> = db_run!(c, |c| service_keys::table
                    .find(name)
                    .select(service_keys::wrapped_secret)
                    .first(c)
                    .await)?;
                seed_from(&self.inner.master.unwrap(&w)?)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Re-wraps every tenant identity and service key under `new` in one transaction of the
    /// key store; data is not re-encrypted. Returns how many keys were re-wrapped. If it is
    /// interrupted, the transaction rolls back and every key stays readable with the old key.
    pub async fn rotate_master(
        store: &DbPool,
        old: &MasterKey,
        new: &MasterKey,
    ) -> Result<usize, CoreError> {
        let mut tx = store.begin().await?;
        let recorded: String = db_run!(tx, |c| keystore_meta::table
            .select(keystore_meta::master_recipient)
            .first(c)
            .await
            .optional())?
        .ok_or(CoreError::NotFound {
            what: "key store seal",
        })?;
        if recorded != old.recipient() {
            return Err(CoreError::MasterKeyMismatch {
                expected: recorded,
                found: old.recipient(),
            });
        }
        let tenants: Vec<(String, Vec<u8>)> = db_run!(tx, |c| tenant_keys::table
            .filter(tenant_keys::wrapped_identity.is_not_null())
            .select((
                tenant_keys::tenant_id,
                tenant_keys::wrapped_identity.assume_not_null()
            ))
            .load(c)
            .await)?;
        let services: Vec<(String, Vec<u8>)> = db_run!(tx, |c| service_keys::table
            .select((service_keys::name, service_keys::wrapped_secret))
            .load(c)
            .await)?;
        let mut n = 0;
        for (id, w) in tenants {
            let rewrapped = new.wrap(old.unwrap(&w)?.expose())?;
            db_run!(tx, |c| diesel::update(tenant_keys::table.find(&id))
                .set(tenant_keys::wrapped_identity.eq(Some(&rewrapped)))
                .execute(c)
                .await)?;
            n += 1;
        }
        for (name, w) in services {
            let rewrapped = new.wrap(old.unwrap(&w)?.expose())?;
            db_run!(tx, |c| diesel::update(service_keys::table.find(&name))
                .set(service_keys::wrapped_secret.eq(&rewrapped))
                .execute(c)
                .await)?;
            n += 1;
        }
        let check = new.wrap(CHECK_PLAINTEXT)?;
        let recipient = new.recipient();
        let now = now_micros();
        db_run!(tx, |c| diesel::update(keystore_meta::table.find(1))
            .set((
                keystore_meta::master_recipient.eq(&recipient),
                keystore_meta::check_ct.eq(&check),
                keystore_meta::updated_at.eq(now),
            ))
            .execute(c)
            .await)?;
        tx.commit().await?;
        Ok(n)
    }

    fn cache_tenant(&self, digest: blake3::Hash, key: Arc<TenantKey>) {
        let mut cache = self.lock_tenants();
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(digest, key);
    }

    fn lock_tenants(&self) -> std::sync::MutexGuard<'_, HashMap<blake3::Hash, Arc<TenantKey>>> {
        self.inner
            .tenants
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock_subjects(&self) -> std::sync::MutexGuard<'_, HashMap<blake3::Hash, SubjectKey>> {
        self.inner
            .subjects
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn seed_from(secret: &super::SecretBytes) -> Result<zeroize::Zeroizing<[u8; 32]>, CoreError> {
    let arr: [u8; 32] = secret
        .expose()
        .try_into()
        .map_err(|_| CoreError::Crypto("service key has the wrong length".into()))?;
    Ok(zeroize::Zeroizing::new(arr))
}
