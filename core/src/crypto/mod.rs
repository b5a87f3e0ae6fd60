//! The key hierarchy and the primitives that use it.
//!
//! ```text
//! master key (age X25519, from SMARTCHAT_MASTER_KEY or a file; never in a database)
//!  └─ wraps each tenant identity (age X25519)            key store database
//!      ├─ derives the tenant data key (XChaCha20-Poly1305: profile, tokens)
//!      ├─ derives the blind-index key (keyed BLAKE3 of wa_id, BSUID, phone, login)
//!      ├─ derives the pseudonym key (keyed BLAKE3 of subject ids, for the ledger and providers)
//!      └─ wraps (age) one 32-byte data key per data subject   main database
//!          └─ seals that subject's personal data (XChaCha20-Poly1305, AAD = record context)
//! ```
//!
//! Shredding a subject deletes one wrapped key; shredding a tenant deletes one wrapped
//! identity. Both are O(1) in the amount of data, and every later read fails closed with
//! [`CoreError::Shredded`]. Nothing here implements `Debug` with key bytes.

pub mod keyring;

use std::fmt;
use std::str::FromStr;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use secrecy::ExposeSecret;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::CoreError;

/// Version byte of a sealed record: `0x01 || nonce(24) || ciphertext || tag(16)`.
const SEAL_V1: u8 = 1;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// The operator's master key: an age X25519 identity.
pub struct MasterKey {
    identity: age::x25519::Identity,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey({})", self.recipient())
    }
}

impl MasterKey {
    /// A fresh random master key.
    pub fn generate() -> Self {
        Self {
            identity: age::x25519::Identity::generate(),
        }
    }

    /// Parses `AGE-SECRET-KEY-1…` (surrounding whitespace and `#` comment lines ignored).
    pub fn parse(text: &str) -> Result<Self, CoreError> {
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .unwrap_or("");
        age::x25519::Identity::from_str(line)
            .map(|identity| Self { identity })
            .map_err(|_| CoreError::Config {
                key: "master_key".into(),
                reason: "expected an age X25519 secret key (AGE-SECRET-KEY-1…)".into(),
            })
    }

    /// The secret in age's text form, for writing a key file.
    pub fn to_secret_string(&self) -> secrecy::SecretString {
        self.identity.to_string()
    }

    /// The public recipient (`age1…`), safe to print.
    pub fn recipient(&self) -> String {
        self.identity.to_public().to_string()
    }

    /// Encrypts `secret` to this master key.
    pub fn wrap(&self, secret: &[u8]) -> Result<Vec<u8>, CoreError> {
        age::encrypt(&self.identity.to_public(), secret)
            .map_err(|e| CoreError::Crypto(format!("wrap: {e}")))
    }

    /// Decrypts what [`MasterKey::wrap`] produced.
    pub fn unwrap(&self, wrapped: &[u8]) -> Result<SecretBytes, CoreError> {
        age::decrypt(&self.identity, wrapped)
            .map(SecretBytes)
            .map_err(|_| CoreError::Crypto("cannot unwrap with this master key".into()))
    }
}

/// Reads a `SecretString` out as a plain `String`, for writing key files and tests.
pub trait ExposeSecretText {
    /// The secret text.
    fn expose_text(&self) -> String;
}

impl ExposeSecretText for secrecy::SecretString {
    fn expose_text(&self) -> String {
        self.expose_secret().to_owned()
    }
}

/// Bytes that are zeroed on drop and never printed.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    /// The bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes(<{} bytes>)", self.0.len())
    }
}

/// What a blind index is computed over; part of the hash input so two kinds never collide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlindKind {
    /// Meta's `wa_id`.
    WaId,
    /// Meta's business-scoped user id.
    Bsuid,
    /// A phone number in E.164 digits.
    Phone,
    /// A member's login (e-mail address or OIDC subject).
    Login,
}

impl BlindKind {
    fn tag(self) -> &'static [u8] {
        match self {
            Self::WaId => b"wa_id\0",
            Self::Bsuid => b"bsuid\0",
            Self::Phone => b"phone\0",
            Self::Login => b"login\0",
        }
    }
}

/// A tenant's unwrapped key: its age identity and the keys derived from it.
pub struct TenantKey {
    identity: age::x25519::Identity,
    data_key: [u8; 32],
    blind_key: [u8; 32],
    pseudonym_key: [u8; 32],
    search_key: [u8; 32],
}

impl Drop for TenantKey {
    fn drop(&mut self) {
        self.data_key.zeroize();
        self.blind_key.zeroize();
        self.pseudonym_key.zeroize();
        self.search_key.zeroize();
    }
}

impl fmt::Debug for TenantKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TenantKey({})", self.recipient())
    }
}

impl TenantKey {
    /// A fresh tenant identity.
    pub fn generate() -> Self {
        Self::from_identity(age::x25519::Identity::generate())
    }

    fn from_identity(identity: age::x25519::Identity) -> Self {
        let secret = identity.to_string();
        let s = secret.expose_secret().as_bytes();
        Self {
            data_key: blake3::derive_key("smartchat 2026-11 tenant data key v1", s),
            blind_key: blake3::derive_key("smartchat 2026-11 blind index key v1", s),
            pseudonym_key: blake3::derive_key("smartchat 2026-11 subject pseudonym key v1", s),
            search_key: blake3::derive_key("smartchat 2026-11 search index key v1", s),
            identity,
        }
    }

    /// The identity's secret text, to be wrapped by the master key.
    pub fn to_secret_string(&self) -> secrecy::SecretString {
        self.identity.to_string()
    }

    /// Parses an unwrapped identity.
    pub fn parse(secret: &[u8]) -> Result<Self, CoreError> {
        let text = std::str::from_utf8(secret)
            .map_err(|_| CoreError::Crypto("tenant identity is not text".into()))?;
        age::x25519::Identity::from_str(text.trim())
            .map(Self::from_identity)
            .map_err(|_| CoreError::Crypto("tenant identity does not parse".into()))
    }

    /// The public recipient.
    pub fn recipient(&self) -> String {
        self.identity.to_public().to_string()
    }

    /// Wraps a subject key to this tenant (age: one X25519 agreement).
    pub fn wrap_subject_key(&self, key: &SubjectKey) -> Result<Vec<u8>, CoreError> {
        age::encrypt(&self.identity.to_public(), &key.0)
            .map_err(|e| CoreError::Crypto(format!("wrap subject key: {e}")))
    }

    /// Unwraps a subject key.
    pub fn unwrap_subject_key(&self, wrapped: &[u8]) -> Result<SubjectKey, CoreError> {
        let mut bytes = age::decrypt(&self.identity, wrapped).map_err(|_| {
            CoreError::Crypto("subject key does not open with the tenant key".into())
        })?;
        let out: Result<[u8; 32], _> = bytes.as_slice().try_into();
        bytes.zeroize();
        out.map(SubjectKey)
            .map_err(|_| CoreError::Crypto("subject key has the wrong length".into()))
    }

    /// Keyed hash for looking a value up without storing it.
    pub fn blind(&self, kind: BlindKind, value: &str) -> [u8; 32] {
        let mut h = blake3::Hasher::new_keyed(&self.blind_key);
        h.update(kind.tag());
        h.update(value.as_bytes());
        *h.finalize().as_bytes()
    }

    /// The pseudonym of a subject: stable per tenant, unlinkable once the tenant key is gone.
    pub fn pseudonym(&self, subject_id: &str) -> [u8; 32] {
        let mut h = blake3::Hasher::new_keyed(&self.pseudonym_key);
        h.update(b"subject\0");
        h.update(subject_id.as_bytes());
        *h.finalize().as_bytes()
    }

    /// The key of the tenant's search index (the search crate derives its file key from it):
    /// gone with the tenant identity, so a shredded tenant's index is unreadable.
    pub fn search_key(&self) -> [u8; 32] {
        self.search_key
    }

    /// A keyed digest of `data` in `context` (ledger references to text that must not be
    /// recoverable by guessing, e.g. a search query).
    pub fn keyed_digest(&self, context: &str, data: &[u8]) -> [u8; 32] {
        let mut h = blake3::Hasher::new_keyed(&self.pseudonym_key);
        h.update(context.as_bytes());
        h.update(b"\0");
        h.update(data);
        *h.finalize().as_bytes()
    }

    /// Seals tenant-level data (business profile, access tokens).
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> Result<Vec<u8>, CoreError> {
        seal(&self.data_key, context, plaintext)
    }

    /// Opens what [`TenantKey::seal`] produced under the same context.
    pub fn open(&self, context: &str, sealed: &[u8]) -> Result<Vec<u8>, CoreError> {
        open(&self.data_key, context, sealed)
    }
}

/// One data subject's 32-byte data key.
#[derive(Zeroize, ZeroizeOnDrop, Clone)]
pub struct SubjectKey([u8; 32]);

impl fmt::Debug for SubjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SubjectKey(<redacted>)")
    }
}

impl SubjectKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        let mut k = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut k);
        Self(k)
    }

    /// Seals one record. `context` names the record (table, column, row id) and is
    /// authenticated, so a ciphertext moved to another row does not open.
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> Result<Vec<u8>, CoreError> {
        seal(&self.0, context, plaintext)
    }

    /// Opens one record.
    pub fn open(&self, context: &str, sealed: &[u8]) -> Result<Vec<u8>, CoreError> {
        open(&self.0, context, sealed)
    }
}

fn seal(key: &[u8; 32], context: &str, plaintext: &[u8]) -> Result<Vec<u8>, CoreError> {
    let cipher = XChaCha20Poly1305::new(key.into());
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let ct = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: context.as_bytes(),
            },
        )
        .map_err(|_| CoreError::Crypto("seal failed".into()))?;
    let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len());
    out.push(SEAL_V1);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

fn open(key: &[u8; 32], context: &str, sealed: &[u8]) -> Result<Vec<u8>, CoreError> {
    if sealed.len() < 1 + NONCE_LEN + TAG_LEN || sealed[0] != SEAL_V1 {
        return Err(CoreError::Crypto("sealed record is malformed".into()));
    }
    let cipher = XChaCha20Poly1305::new(key.into());
    cipher
        .decrypt(
            XNonce::from_slice(&sealed[1..1 + NONCE_LEN]),
            Payload {
                msg: &sealed[1 + NONCE_LEN..],
                aad: context.as_bytes(),
            },
        )
        .map_err(|_| CoreError::Crypto("sealed record does not authenticate".into()))
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trips_and_binds_context() {
        let k = SubjectKey::generate();
        let ct = k.seal("messages.body|m1", b"hello").unwrap();
        assert_eq!(k.open("messages.body|m1", &ct).unwrap(), b"hello");
        assert!(k.open("messages.body|m2", &ct).is_err());
        let other = SubjectKey::generate();
        assert!(other.open("messages.body|m1", &ct).is_err());
        let mut bad = ct.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(k.open("messages.body|m1", &bad).is_err());
        assert!(k.open("messages.body|m1", &ct[..10]).is_err());
    }

    #[test]
    fn subject_key_wraps_under_tenant_only() {
        let t = TenantKey::generate();
        let s = SubjectKey::generate();
        let w = t.wrap_subject_key(&s).unwrap();
        let back = t.unwrap_subject_key(&w).unwrap();
        assert_eq!(back.0, s.0);
        assert!(TenantKey::generate().unwrap_subject_key(&w).is_err());
    }

    #[test]
    fn tenant_key_survives_master_wrap() {
        let m = MasterKey::generate();
        let t = TenantKey::generate();
        let w = m
            .wrap(t.to_secret_string().expose_secret().as_bytes())
            .unwrap();
        let t2 = TenantKey::parse(m.unwrap(&w).unwrap().expose()).unwrap();
        assert_eq!(t.recipient(), t2.recipient());
        assert_eq!(
            t.blind(BlindKind::WaId, "919800000001"),
            t2.blind(BlindKind::WaId, "919800000001")
        );
        assert!(MasterKey::generate().unwrap(&w).is_err());
    }

    #[test]
    fn blind_indexes_differ_by_kind_and_tenant() {
        let t = TenantKey::generate();
        assert_ne!(
            t.blind(BlindKind::WaId, "1"),
            t.blind(BlindKind::Phone, "1")
        );
        assert_ne!(
            t.blind(BlindKind::WaId, "1"),
            TenantKey::generate().blind(BlindKind::WaId, "1")
        );
    }

    #[test]
    fn debug_never_prints_secrets() {
        let m = MasterKey::generate();
        let secret = m.to_secret_string().expose_secret().to_owned();
        assert!(!format!("{m:?}").contains(&secret));
        let t = TenantKey::generate();
        let tsecret = t.to_secret_string().expose_secret().to_owned();
        assert!(!format!("{t:?}").contains(&tsecret));
        assert_eq!(
            format!("{:?}", SubjectKey::generate()),
            "SubjectKey(<redacted>)"
        );
    }
}
