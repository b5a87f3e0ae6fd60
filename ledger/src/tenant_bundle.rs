//! The tenant bundle: one tenant's entries, each with its Merkle inclusion proof against
//! one signed checkpoint, and the log's verifier key. An auditor of one business verifies
//! it offline (`smartchat-verify tenant-bundle FILE --key VKEY`) without seeing a single
//! entry of another tenant: the proofs carry only hashes of tree nodes.
//!
//! It proves that every entry in the file is, unaltered, at its position in the log the
//! processor signed. It cannot prove that no entry of the tenant was left out (that needs
//! the whole log, i.e. every tenant's entries); the full bundle (section 6 of
//! `docs/ledger-format.md`) is for that. Format: section 6.1.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{VerifierKey, open_note};
use crate::error::lift;
use crate::store::{LedgerStore, StoredCheckpoint, StoredEntry};
use crate::verify::Failure;
use crate::{Entry, Hash, LedgerError, entry_hash, merkle};

/// The `format` value of a tenant bundle.
pub const TENANT_BUNDLE_FORMAT: &str = "smartchat-tenant-bundle/v1";

/// Tree hashes read per store call while proving.
const PROOF_READ_CHUNK: usize = 1000;

/// A tenant bundle (JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantBundle {
    /// [`TENANT_BUNDLE_FORMAT`].
    pub format: String,
    /// The log's C2SP verifier key.
    pub vkey: String,
    /// The tenant, 32 lowercase hex digits (its UUID's 16 bytes).
    pub tenant: String,
    /// The signed checkpoint every proof is against (a C2SP signed note).
    pub checkpoint: String,
    /// The tenant's entries covered by the checkpoint, by increasing sequence number.
    pub entries: Vec<TenantBundleEntry>,
}

/// One entry of a [`TenantBundle`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantBundleEntry {
    /// Its sequence number (the leaf index).
    pub seq: u64,
    /// The canonical entry encoding, base64 (standard, padded).
    pub entry: String,
    /// The entry hash, 64 lowercase hex digits.
    pub hash: String,
    /// The RFC 6962 inclusion proof, leaf to root, each 64 lowercase hex digits.
    pub proof: Vec<String>,
}

/// Builds the bundle of `entries` (all of one tenant, by increasing `seq`) against the
/// checkpoint `cp`; entries the checkpoint does not cover yet are left out. Tree hashes
/// are read in a few batched store calls, not one per entry.
///
/// # Errors
/// [`LedgerError::Invalid`] for an entry of another tenant or out of order,
/// [`LedgerError::OutOfRange`] when the checkpoint is beyond the stored tree,
/// [`LedgerError::Store`].
pub async fn tenant_bundle<S: LedgerStore>(
    store: &mut S,
    tenant: [u8; 16],
    cp: &StoredCheckpoint,
    entries: &[StoredEntry],
    key: &VerifierKey,
) -> Result<TenantBundle, LedgerError<S::Error>> {
    let size = cp.size;
    let have = store
        .head()
        .await
        .map_err(LedgerError::Store)?
        .map_or(0, |h| h.size);
    if size > have {
        return Err(LedgerError::OutOfRange(format!(
            "checkpoint size {size} beyond the log's {have} entries"
        )));
    }
    let covered: Vec<&StoredEntry> = entries.iter().filter(|e| e.entry.seq < size).collect();
    let mut last = None;
    for e in &covered {
        if e.entry.draft.tenant.map(|t| t.0) != Some(tenant) {
            return Err(LedgerError::Invalid(format!(
                "entry {} is not of this tenant",
                e.entry.seq
            )));
        }
        if last.is_some_and(|l| e.entry.seq <= l) {
            return Err(LedgerError::Invalid("entries out of order".into()));
        }
        last = Some(e.entry.seq);
    }
    let mut wanted: Vec<u64> = Vec::new();
    let mut per_entry = Vec::with_capacity(covered.len());
    for e in &covered {
        let ids = merkle::inclusion_proof_ids(e.entry.seq, size).map_err(lift)?;
        wanted.extend_from_slice(&ids);
        per_entry.push(ids);
    }
    wanted.sort_unstable();
    wanted.dedup();
    let mut known = std::collections::HashMap::with_capacity(wanted.len());
    for chunk in wanted.chunks(PROOF_READ_CHUNK) {
        let hashes = store
            .read_tree_hashes(chunk)
            .await
            .map_err(LedgerError::Store)?;
        if hashes.len() != chunk.len() {
            return Err(LedgerError::Malformed {
                what: "tree hashes",
                detail: "store returned wrong count".into(),
            });
        }
        known.extend(chunk.iter().copied().zip(hashes));
    }
    let mut out = Vec::with_capacity(covered.len());
    for (e, ids) in covered.iter().zip(per_entry) {
        let hashes: Vec<Hash> = ids
            .iter()
            .map(|id| {
                known
                    .get(id)
                    .copied()
                    .ok_or_else(|| LedgerError::Malformed {
                        what: "tree hashes",
                        detail: format!("tree hash {id} missing"),
                    })
            })
            .collect::<Result<_, _>>()?;
        let proof = merkle::inclusion_proof::<LedgerError>(e.entry.seq, size, |_| Ok(hashes))
            .map_err(lift)?;
        out.push(TenantBundleEntry {
            seq: e.entry.seq,
            entry: B64.encode(&e.bytes),
            hash: hex::encode(e.hash),
            proof: proof.iter().map(hex::encode).collect(),
        });
    }
    Ok(TenantBundle {
        format: TENANT_BUNDLE_FORMAT.to_owned(),
        vkey: key.to_string(),
        tenant: hex::encode(tenant),
        checkpoint: cp.note.clone(),
        entries: out,
    })
}

/// What [`verify_tenant_bundle`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TenantReport {
    /// Origin of the log (from its key).
    pub origin: String,
    /// The verifier key used.
    pub vkey: String,
    /// The tenant, hex.
    pub tenant: String,
    /// Size of the signed checkpoint the proofs are against.
    pub checkpoint_size: u64,
    /// Its root, hex.
    pub checkpoint_root: String,
    /// Entries verified (before the first failure).
    pub entries: u64,
    /// `None` when everything verified.
    pub first_failure: Option<Failure>,
}

impl TenantReport {
    /// `true` when nothing failed.
    #[must_use]
    pub fn ok(&self) -> bool {
        self.first_failure.is_none()
    }

    fn fail(mut self, seq: Option<u64>, what: impl Into<String>) -> Self {
        self.first_failure = Some(Failure {
            seq,
            what: what.into(),
        });
        self
    }
}

fn hash_hex(s: &str) -> Option<Hash> {
    let v = hex::decode(s).ok()?;
    let h: Hash = v.try_into().ok()?;
    (hex::encode(h) == s).then_some(h)
}

/// Verifies a tenant bundle (its JSON bytes): the key (equal to `trusted_key` when given),
/// the checkpoint's signature, and for each entry its canonical encoding, its sequence
/// number, that it is the bundle's tenant's, its hash, increasing sequence numbers and
/// non-decreasing times, and its inclusion proof against the signed root.
///
/// Integrity problems are reported in [`TenantReport::first_failure`]; `Err` only for a
/// file that is not a tenant bundle at all.
///
/// # Errors
/// [`LedgerError::Malformed`] when the bytes are not a tenant bundle's JSON.
pub fn verify_tenant_bundle(
    bytes: &[u8],
    trusted_key: Option<&str>,
) -> Result<TenantReport, LedgerError> {
    let b: TenantBundle = serde_json::from_slice(bytes)
        .map_err(|e| LedgerError::malformed("tenant bundle", e.to_string()))?;
    if b.format != TENANT_BUNDLE_FORMAT {
        return Err(LedgerError::malformed(
            "tenant bundle",
            format!("unknown format {:?}", b.format),
        ));
    }
    let mut r = TenantReport {
        vkey: b.vkey.clone(),
        tenant: b.tenant.clone(),
        ..TenantReport::default()
    };
    let key = match VerifierKey::parse(&b.vkey) {
        Ok(k) => k,
        Err(e) => return Ok(r.fail(None, format!("bundle key: {e}"))),
    };
    r.origin = key.name.clone();
    if let Some(t) = trusted_key {
        match VerifierKey::parse(t) {
            Ok(tk) if tk.to_string() == key.to_string() => {}
            Ok(_) => {
                return Ok(r.fail(None, "the bundle's key is not the trusted key (--key)"));
            }
            Err(e) => return Ok(r.fail(None, format!("trusted key: {e}"))),
        }
    }
    let cp = match open_note(&b.checkpoint, &key) {
        Ok(cp) => cp,
        Err(e) => return Ok(r.fail(None, format!("checkpoint: {e}"))),
    };
    r.checkpoint_size = cp.size;
    r.checkpoint_root = hex::encode(cp.root);
    let tenant: [u8; 16] = match hex::decode(&b.tenant).ok().and_then(|v| v.try_into().ok()) {
        Some(t) => t,
        None => return Ok(r.fail(None, "tenant is not 32 hex digits")),
    };
    let mut prev: Option<(u64, i64)> = None;
    for e in &b.entries {
        let seq = Some(e.seq);
        let Ok(bytes) = B64.decode(&e.entry) else {
            return Ok(r.fail(seq, "entry is not base64"));
        };
        let entry = match Entry::decode(&bytes) {
            Ok(x) => x,
            Err(err) => return Ok(r.fail(seq, err.to_string())),
        };
        if entry.seq != e.seq {
            return Ok(r.fail(seq, format!("entry says seq {}", entry.seq)));
        }
        if entry.draft.tenant.map(|t| t.0) != Some(tenant) {
            return Ok(r.fail(seq, "entry of another tenant (or of none)"));
        }
        if let Some((ps, pt)) = prev {
            if e.seq <= ps {
                return Ok(r.fail(seq, "sequence numbers not increasing"));
            }
            if entry.time_micros < pt {
                return Ok(r.fail(seq, "time goes backwards"));
            }
        }
        let hash = entry_hash(&bytes);
        if hash_hex(&e.hash) != Some(hash) {
            return Ok(r.fail(seq, "entry hash does not match the entry"));
        }
        let Some(proof) = e
            .proof
            .iter()
            .map(|p| hash_hex(p))
            .collect::<Option<Vec<_>>>()
        else {
            return Ok(r.fail(seq, "proof hash is not 64 lowercase hex digits"));
        };
        if let Err(err) = merkle::verify_inclusion(&proof, e.seq, cp.size, &hash, &cp.root) {
            return Ok(r.fail(seq, format!("not in the signed tree: {err}")));
        }
        prev = Some((e.seq, entry.time_micros));
        r.entries += 1;
    }
    Ok(r)
}
