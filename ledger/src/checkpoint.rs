//! Signed checkpoints (c2sp.org/tlog-checkpoint in a c2sp.org/signed-note,
//! Ed25519) and offline proofs (c2sp.org/tlog-proof@v1).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::{Hash, LedgerError, merkle};

/// Signature type byte of Ed25519 keys in signed notes.
const ALG_ED25519: u8 = 0x01;
/// Most signature lines accepted on one note.
const MAX_SIGNATURES: usize = 100;
/// The header line of a tlog-proof.
pub const TLOG_PROOF_HEADER: &str = "c2sp.org/tlog-proof@v1";

/// A tree head: the log's origin line, size and RFC 6962 root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin (its name; also the signing key's name).
    pub origin: String,
    /// Number of entries in the tree.
    pub size: u64,
    /// RFC 6962 root of the tree.
    pub root: Hash,
}

impl Checkpoint {
    /// The note text: origin, decimal size, base64 root, each ending in a newline.
    #[must_use]
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        )
    }

    /// Parses a note text produced by [`Checkpoint::body`] (extension lines are rejected).
    ///
    /// # Errors
    /// [`LedgerError::Malformed`] on any deviation.
    pub fn parse_body(text: &str) -> Result<Self, LedgerError> {
        let bad = |d: &str| LedgerError::malformed("checkpoint", d);
        let body = text
            .strip_suffix('\n')
            .ok_or_else(|| bad("no final newline"))?;
        let lines: Vec<&str> = body.split('\n').collect();
        let [origin, size, root] = lines[..] else {
            return Err(bad("want exactly 3 lines"));
        };
        if origin.is_empty() || origin.chars().any(char::is_whitespace) {
            return Err(bad("origin line"));
        }
        if size.is_empty() || size.len() > 20 || !size.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("size line"));
        }
        if size.len() > 1 && size.starts_with('0') {
            return Err(bad("size has leading zeros"));
        }
        let size: u64 = size.parse().map_err(|_| bad("size line"))?;
        let root = decode_hash(root).ok_or_else(|| bad("root line"))?;
        Ok(Self {
            origin: origin.to_string(),
            size,
            root,
        })
    }
}

fn decode_hash(s: &str) -> Option<Hash> {
    let v = B64.decode(s).ok()?;
    let h: Hash = v.try_into().ok()?;
    // Reject non-canonical base64 (the encoder must give back the same text).
    (B64.encode(h) == s).then_some(h)
}

fn key_id(name: &str, pubkey: &[u8; 32]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ALG_ED25519]);
    h.update(pubkey);
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

fn valid_key_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('+') && !name.chars().any(char::is_whitespace)
}

/// The log's signing identity. Holds a secret: never log or serialise it.
pub struct CheckpointSigner {
    /// The log origin, used as the key name.
    pub origin: String,
    /// The Ed25519 signing key.
    pub key: SigningKey,
}

impl std::fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointSigner")
            .field("origin", &self.origin)
            .field("key", &"<secret>")
            .finish()
    }
}

impl CheckpointSigner {
    /// A signer for `origin` (which must be a valid key name: no spaces, no `+`).
    ///
    /// # Errors
    /// [`LedgerError::Invalid`] for a bad origin.
    pub fn new(origin: impl Into<String>, key: SigningKey) -> Result<Self, LedgerError> {
        let origin = origin.into();
        if !valid_key_name(&origin) {
            return Err(LedgerError::Invalid(
                "origin is not a valid key name".into(),
            ));
        }
        Ok(Self { origin, key })
    }

    /// The public verifier key.
    #[must_use]
    pub fn verifier_key(&self) -> VerifierKey {
        let key = self.key.verifying_key();
        VerifierKey {
            name: self.origin.clone(),
            id: key_id(&self.origin, key.as_bytes()),
            key,
        }
    }

    /// The C2SP verifier key string `name+hexid+base64(0x01 || pubkey)`.
    #[must_use]
    pub fn vkey(&self) -> String {
        self.verifier_key().to_string()
    }

    /// Signs a checkpoint and returns the signed note text.
    ///
    /// # Errors
    /// [`LedgerError::Invalid`] if the checkpoint's origin is not this signer's.
    pub fn sign_note(&self, cp: &Checkpoint) -> Result<String, LedgerError> {
        if cp.origin != self.origin {
            return Err(LedgerError::Invalid(
                "checkpoint origin differs from signer".into(),
            ));
        }
        let body = cp.body();
        let sig = self.key.sign(body.as_bytes());
        let id = key_id(&self.origin, self.key.verifying_key().as_bytes());
        let mut blob = Vec::with_capacity(68);
        blob.extend_from_slice(&id.to_be_bytes());
        blob.extend_from_slice(&sig.to_bytes());
        Ok(format!(
            "{body}\n\u{2014} {} {}\n",
            self.origin,
            B64.encode(blob)
        ))
    }
}

/// A parsed C2SP verifier key (Ed25519 only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifierKey {
    /// Key name (the log origin).
    pub name: String,
    /// Key id: the first 4 bytes of SHA-256(name || "\n" || 0x01 || pubkey).
    pub id: u32,
    /// The public key.
    pub key: VerifyingKey,
}

impl VerifierKey {
    /// Parses `name+hexid+base64(0x01 || pubkey)` and checks the id matches.
    ///
    /// # Errors
    /// [`LedgerError::Signature`] if malformed, not Ed25519, or the id is wrong.
    pub fn parse(s: &str) -> Result<Self, LedgerError> {
        let bad = |d: &str| LedgerError::Signature(format!("verifier key: {d}"));
        let mut parts = s.trim().splitn(3, '+');
        let (Some(name), Some(hexid), Some(key)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("want name+id+key"));
        };
        if !valid_key_name(name) {
            return Err(bad("name"));
        }
        if hexid.len() != 8
            || !hexid
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(bad("id"));
        }
        let id = u32::from_str_radix(hexid, 16).map_err(|_| bad("id"))?;
        let raw = B64.decode(key).map_err(|_| bad("base64"))?;
        let [alg, rest @ ..] = raw.as_slice() else {
            return Err(bad("empty key"));
        };
        if *alg != ALG_ED25519 {
            return Err(bad("not an Ed25519 key"));
        }
        let pk: [u8; 32] = rest.try_into().map_err(|_| bad("key length"))?;
        let key = VerifyingKey::from_bytes(&pk).map_err(|_| bad("invalid point"))?;
        if key_id(name, &pk) != id {
            return Err(bad("id does not match the key"));
        }
        Ok(Self {
            name: name.to_string(),
            id,
            key,
        })
    }
}

impl std::fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut raw = vec![ALG_ED25519];
        raw.extend_from_slice(self.key.as_bytes());
        write!(f, "{}+{:08x}+{}", self.name, self.id, B64.encode(raw))
    }
}

/// Opens a signed note: checks it carries a valid signature by `key` (signatures by other keys
/// are ignored; a bad signature by `key` rejects the note) and parses the checkpoint, whose
/// origin must be the key's name.
///
/// # Errors
/// [`LedgerError::Malformed`] for a malformed note, [`LedgerError::Signature`] for a missing
/// or invalid signature or an origin that is not the key's.
pub fn open_note(text: &str, key: &VerifierKey) -> Result<Checkpoint, LedgerError> {
    let bad = |d: &str| LedgerError::malformed("signed note", d);
    let split = text
        .rfind("\n\n")
        .ok_or_else(|| bad("no signature block"))?;
    let body = &text[..=split];
    let sigs = &text[split + 2..];
    let sigs = sigs
        .strip_suffix('\n')
        .ok_or_else(|| bad("no final newline"))?;
    let mut verified = false;
    for (i, line) in sigs.split('\n').enumerate() {
        if i >= MAX_SIGNATURES {
            return Err(bad("too many signatures"));
        }
        let rest = line
            .strip_prefix("\u{2014} ")
            .ok_or_else(|| bad("signature line prefix"))?;
        let (name, b64) = rest.split_once(' ').ok_or_else(|| bad("signature line"))?;
        let blob = B64.decode(b64).map_err(|_| bad("signature base64"))?;
        if blob.len() < 5 {
            return Err(bad("signature too short"));
        }
        let id = u32::from_be_bytes([blob[0], blob[1], blob[2], blob[3]]);
        if name != key.name || id != key.id {
            continue;
        }
        let sig = ed25519_dalek::Signature::from_slice(&blob[4..])
            .map_err(|_| LedgerError::Signature("signature length".into()))?;
        key.key
            .verify(body.as_bytes(), &sig)
            .map_err(|_| LedgerError::Signature("checkpoint signature does not verify".into()))?;
        verified = true;
    }
    if !verified {
        return Err(LedgerError::Signature(
            "no signature by the trusted key".into(),
        ));
    }
    let cp = Checkpoint::parse_body(body)?;
    if cp.origin != key.name {
        return Err(LedgerError::Signature(
            "origin is not the key's name".into(),
        ));
    }
    Ok(cp)
}

/// An offline inclusion proof (c2sp.org/tlog-proof@v1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlogProof {
    /// Optional opaque extra data (unauthenticated).
    pub extra: Option<Vec<u8>>,
    /// Leaf index (= entry sequence number).
    pub index: u64,
    /// The inclusion proof, leaf to root.
    pub hashes: Vec<Hash>,
    /// The signed checkpoint note the proof is against.
    pub note: String,
}

impl TlogProof {
    /// Renders the text form.
    #[must_use]
    pub fn render(&self) -> String {
        let mut s = String::from(TLOG_PROOF_HEADER);
        s.push('\n');
        if let Some(e) = &self.extra {
            s.push_str("extra ");
            s.push_str(&B64.encode(e));
            s.push('\n');
        }
        s.push_str(&format!("index {}\n", self.index));
        for h in &self.hashes {
            s.push_str(&B64.encode(h));
            s.push('\n');
        }
        s.push('\n');
        s.push_str(&self.note);
        s
    }

    /// Parses the text form.
    ///
    /// # Errors
    /// [`LedgerError::Malformed`] on any deviation.
    pub fn parse(text: &str) -> Result<Self, LedgerError> {
        let bad = |d: &str| LedgerError::malformed("tlog-proof", d);
        let (head, note) = text
            .split_once("\n\n")
            .ok_or_else(|| bad("no checkpoint"))?;
        let mut lines = head.split('\n');
        if lines.next() != Some(TLOG_PROOF_HEADER) {
            return Err(bad("header line"));
        }
        let mut line = lines.next().ok_or_else(|| bad("no index line"))?;
        let mut extra = None;
        if let Some(e) = line.strip_prefix("extra ") {
            extra = Some(B64.decode(e).map_err(|_| bad("extra base64"))?);
            line = lines.next().ok_or_else(|| bad("no index line"))?;
        }
        let idx = line
            .strip_prefix("index ")
            .ok_or_else(|| bad("index line"))?;
        if idx.is_empty()
            || !idx.bytes().all(|b| b.is_ascii_digit())
            || (idx.len() > 1 && idx.starts_with('0'))
        {
            return Err(bad("index"));
        }
        let index = idx.parse().map_err(|_| bad("index"))?;
        let mut hashes = Vec::new();
        for l in lines {
            if hashes.len() >= 64 {
                return Err(bad("too many hashes"));
            }
            hashes.push(decode_hash(l).ok_or_else(|| bad("hash line"))?);
        }
        Ok(Self {
            extra,
            index,
            hashes,
            note: note.to_string(),
        })
    }

    /// Verifies the checkpoint signature and that the entry with `entry_hash` is leaf `index`.
    ///
    /// # Errors
    /// [`LedgerError::Signature`] or [`LedgerError::ProofRejected`].
    pub fn verify(&self, entry_hash: &Hash, key: &VerifierKey) -> Result<Checkpoint, LedgerError> {
        let cp = open_note(&self.note, key)?;
        merkle::verify_inclusion(&self.hashes, self.index, cp.size, entry_hash, &cp.root)?;
        Ok(cp)
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    fn signer() -> CheckpointSigner {
        CheckpointSigner::new("ledger.example/test", SigningKey::from_bytes(&[7; 32])).unwrap()
    }

    #[test]
    fn sign_open_round_trip_and_tamper() {
        let s = signer();
        let vk = VerifierKey::parse(&s.vkey()).unwrap();
        assert_eq!(vk.to_string(), s.vkey());
        let cp = Checkpoint {
            origin: s.origin.clone(),
            size: 12,
            root: [5; 32],
        };
        let note = s.sign_note(&cp).unwrap();
        assert_eq!(open_note(&note, &vk).unwrap(), cp);
        // Changed size.
        let t = note.replacen("\n12\n", "\n13\n", 1);
        assert!(open_note(&t, &vk).is_err());
        // Another key with the same name.
        let other =
            CheckpointSigner::new(s.origin.clone(), SigningKey::from_bytes(&[8; 32])).unwrap();
        let vk2 = VerifierKey::parse(&other.vkey()).unwrap();
        assert!(open_note(&note, &vk2).is_err());
        // A bad vkey id.
        let mut bad = s.vkey();
        bad.replace_range(s.origin.len() + 1..s.origin.len() + 2, "z");
        assert!(VerifierKey::parse(&bad).is_err());
    }

    #[test]
    fn tlog_proof_round_trip() {
        let p = TlogProof {
            extra: Some(b"x".to_vec()),
            index: 3,
            hashes: vec![[1; 32], [2; 32]],
            note: "o\n1\nAAAA\n\n\u{2014} o AAAA\n".into(),
        };
        assert_eq!(TlogProof::parse(&p.render()).unwrap(), p);
        let q = TlogProof {
            extra: None,
            hashes: vec![],
            ..p
        };
        assert_eq!(TlogProof::parse(&q.render()).unwrap(), q);
    }
}
