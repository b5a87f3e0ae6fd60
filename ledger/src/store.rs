//! The storage trait, the appender, checkpoint signing, proof generation,
//! export, and an in-memory store.

use std::collections::HashMap;
use std::future::Future;
use std::io::Write;

use crate::bundle::{BundleCheckpoint, BundleHeader, BundleWriter};
use crate::checkpoint::{Checkpoint, CheckpointSigner, TlogProof, VerifierKey};
use crate::error::lift;
use crate::merkle;
use crate::{Entry, EntryDraft, Hash, LedgerError, entry_hash};

/// The state of the log after its last entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    /// Number of entries (= next sequence number).
    pub size: u64,
    /// Hash of the last entry.
    pub last_hash: Hash,
    /// Time of the last entry.
    pub last_time_micros: i64,
}

/// An entry as stored: decoded, its canonical bytes and its hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEntry {
    /// The decoded entry.
    pub entry: Entry,
    /// `entry.encode()`, the bytes the hash covers (column `ledger_entries.entry`).
    pub bytes: Vec<u8>,
    /// `entry_hash(bytes)` (column `ledger_entries.hash`).
    pub hash: Hash,
}

impl StoredEntry {
    /// Decodes stored bytes, keeping the stored hash as given (verification compares them).
    ///
    /// # Errors
    /// [`LedgerError::Malformed`] if the bytes are not a canonical entry.
    pub fn from_stored(bytes: Vec<u8>, hash: Hash) -> Result<Self, LedgerError> {
        Ok(Self {
            entry: Entry::decode(&bytes)?,
            bytes,
            hash,
        })
    }
}

/// A signed checkpoint as stored (table `ledger_checkpoints`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// Tree size.
    pub size: u64,
    /// Tree root.
    pub root: Hash,
    /// The signed note text.
    pub note: String,
    /// When it was signed, microseconds since the Unix epoch.
    pub created_micros: i64,
}

/// Where a ledger lives. Implemented by the application for PostgreSQL and SQLite (inside the
/// caller's transaction) and here by [`MemStore`].
pub trait LedgerStore {
    /// The backend's error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The head, or `None` for an empty log.
    fn head(&mut self) -> impl Future<Output = Result<Option<Head>, Self::Error>> + Send;

    /// The tree hashes at the given storage indexes, in the same order. Every id must exist.
    fn read_tree_hashes(
        &mut self,
        ids: &[u64],
    ) -> impl Future<Output = Result<Vec<Hash>, Self::Error>> + Send;

    /// Stores new entries (contiguous, following the head), new tree hashes and the new head.
    fn write_batch(
        &mut self,
        entries: &[StoredEntry],
        tree: &[(u64, Hash)],
        new_head: &Head,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Entries with `from_seq <= seq < to_seq_exclusive`, in order.
    fn read_entries(
        &mut self,
        from_seq: u64,
        to_seq_exclusive: u64,
    ) -> impl Future<Output = Result<Vec<StoredEntry>, Self::Error>> + Send;

    /// The checkpoint with the largest size, if any.
    fn latest_checkpoint(
        &mut self,
    ) -> impl Future<Output = Result<Option<StoredCheckpoint>, Self::Error>> + Send;

    /// All checkpoints with `size <= max_size`, by increasing size.
    fn read_checkpoints(
        &mut self,
        max_size: u64,
    ) -> impl Future<Output = Result<Vec<StoredCheckpoint>, Self::Error>> + Send;

    /// Stores a new checkpoint.
    fn write_checkpoint(
        &mut self,
        cp: &StoredCheckpoint,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

async fn read_hashes<S: LedgerStore>(
    store: &mut S,
    ids: &[u64],
) -> Result<Vec<Hash>, LedgerError<S::Error>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let h = store
        .read_tree_hashes(ids)
        .await
        .map_err(LedgerError::Store)?;
    if h.len() != ids.len() {
        return Err(LedgerError::Malformed {
            what: "tree hashes",
            detail: "store returned wrong count".into(),
        });
    }
    Ok(h)
}

/// Sequences drafts: assigns sequence numbers, time (`max(now, last time)`) and chain links,
/// computes the new tree hashes, and stores everything with one `write_batch` call. Run it
/// inside the caller's database transaction, serialised with other appenders (e.g. a row lock
/// on the head).
///
/// # Errors
/// [`LedgerError::Invalid`] for a draft over the format limits (nothing is written);
/// [`LedgerError::Store`] from the store.
pub async fn append_batch<S: LedgerStore>(
    store: &mut S,
    now_micros: i64,
    drafts: Vec<EntryDraft>,
) -> Result<Vec<StoredEntry>, LedgerError<S::Error>> {
    for d in &drafts {
        d.validate().map_err(lift)?;
    }
    if drafts.is_empty() {
        return Ok(Vec::new());
    }
    let head = store.head().await.map_err(LedgerError::Store)?;
    let (size, mut prev, last_time) = match head {
        Some(h) => (h.size, h.last_hash, h.last_time_micros),
        None => (0, [0; 32], i64::MIN),
    };
    let time = now_micros.max(last_time);
    let count = drafts.len() as u64;
    // Existing hashes the new leaves need, read in one call.
    let existing_limit = merkle::stored_hash_count(size);
    let mut need: Vec<u64> = (size..size + count)
        .flat_map(merkle::stored_hashes_needed_for_leaf)
        .filter(|&id| id < existing_limit)
        .collect();
    need.sort_unstable();
    need.dedup();
    let old = read_hashes(store, &need).await?;
    let mut known: HashMap<u64, Hash> = need.into_iter().zip(old).collect();

    let mut entries = Vec::with_capacity(drafts.len());
    let mut tree = Vec::new();
    for (i, draft) in drafts.into_iter().enumerate() {
        let seq = size + i as u64;
        let entry = Entry {
            seq,
            time_micros: time,
            prev,
            draft,
        };
        let bytes = entry.encode().map_err(lift)?;
        let hash = entry_hash(&bytes);
        let add = merkle::stored_hashes_for_leaf::<LedgerError>(seq, &hash, |ids| {
            ids.iter()
                .map(|id| {
                    known
                        .get(id)
                        .copied()
                        .ok_or_else(|| LedgerError::Inconsistent(format!("tree hash {id} missing")))
                })
                .collect()
        })
        .map_err(lift)?;
        for &(id, h) in &add {
            known.insert(id, h);
        }
        tree.extend(add);
        prev = hash;
        entries.push(StoredEntry { entry, bytes, hash });
    }
    let new_head = Head {
        size: size + count,
        last_hash: prev,
        last_time_micros: time,
    };
    store
        .write_batch(&entries, &tree, &new_head)
        .await
        .map_err(LedgerError::Store)?;
    Ok(entries)
}

/// The root of the stored tree at `size`.
///
/// # Errors
/// [`LedgerError::Store`] from the store.
pub async fn stored_root<S: LedgerStore>(
    store: &mut S,
    size: u64,
) -> Result<Hash, LedgerError<S::Error>> {
    let ids = merkle::tree_root_ids(size);
    let hashes = read_hashes(store, &ids).await?;
    merkle::tree_root::<LedgerError>(size, |_| Ok(hashes)).map_err(lift)
}

/// Signs a checkpoint of the current head. Returns the latest checkpoint unchanged if it
/// already covers the head. Refuses (and signs nothing) unless the current tree is consistent
/// with the latest signed checkpoint, checked with a consistency proof.
///
/// # Errors
/// [`LedgerError::OutOfRange`] for an empty log, [`LedgerError::Inconsistent`] if the stored
/// log no longer matches what was signed, [`LedgerError::Store`] from the store.
pub async fn sign_checkpoint<S: LedgerStore>(
    store: &mut S,
    signer: &CheckpointSigner,
    now_micros: i64,
) -> Result<StoredCheckpoint, LedgerError<S::Error>> {
    let head = store
        .head()
        .await
        .map_err(LedgerError::Store)?
        .ok_or_else(|| LedgerError::OutOfRange("the log is empty".into()))?;
    let size = head.size;
    let root = stored_root(store, size).await?;
    if let Some(latest) = store
        .latest_checkpoint()
        .await
        .map_err(LedgerError::Store)?
    {
        if latest.size > size {
            return Err(LedgerError::Inconsistent(format!(
                "log has {size} entries but a checkpoint of size {} was signed",
                latest.size
            )));
        }
        let signed =
            crate::checkpoint::open_note(&latest.note, &signer.verifier_key()).map_err(|_| {
                LedgerError::Inconsistent("latest checkpoint not signed by this key".into())
            })?;
        if signed.size != latest.size || signed.root != latest.root {
            return Err(LedgerError::Inconsistent(
                "latest checkpoint row differs from its note".into(),
            ));
        }
        if latest.size == size {
            return if latest.root == root {
                Ok(latest)
            } else {
                Err(LedgerError::Inconsistent(format!(
                    "tree root at size {size} differs from the signed one"
                )))
            };
        }
        let proof = prove_consistency(store, latest.size, size).await?;
        merkle::verify_consistency(&proof, latest.size, size, &latest.root, &root).map_err(
            |_| {
                LedgerError::Inconsistent(format!(
                    "tree of size {size} is not an extension of the signed tree of size {}",
                    latest.size
                ))
            },
        )?;
    }
    let cp = Checkpoint {
        origin: signer.origin.clone(),
        size,
        root,
    };
    let note = signer.sign_note(&cp).map_err(lift)?;
    let stored = StoredCheckpoint {
        size,
        root,
        note,
        created_micros: now_micros,
    };
    store
        .write_checkpoint(&stored)
        .await
        .map_err(LedgerError::Store)?;
    Ok(stored)
}

/// Inclusion proof of entry `seq` in the tree of `size` entries (one read of O(log n) hashes).
///
/// # Errors
/// [`LedgerError::OutOfRange`] unless `seq < size <= head size`; [`LedgerError::Store`].
pub async fn prove_inclusion<S: LedgerStore>(
    store: &mut S,
    seq: u64,
    size: u64,
) -> Result<Vec<Hash>, LedgerError<S::Error>> {
    check_size(store, size).await?;
    let ids = merkle::inclusion_proof_ids(seq, size).map_err(lift)?;
    let hashes = read_hashes(store, &ids).await?;
    merkle::inclusion_proof::<LedgerError>(seq, size, |_| Ok(hashes)).map_err(lift)
}

/// Consistency proof between tree sizes `m` and `n` (one read of O(log n) hashes).
///
/// # Errors
/// [`LedgerError::OutOfRange`] unless `0 < m <= n <= head size`; [`LedgerError::Store`].
pub async fn prove_consistency<S: LedgerStore>(
    store: &mut S,
    m: u64,
    n: u64,
) -> Result<Vec<Hash>, LedgerError<S::Error>> {
    check_size(store, n).await?;
    let ids = merkle::consistency_proof_ids(m, n).map_err(lift)?;
    let hashes = read_hashes(store, &ids).await?;
    merkle::consistency_proof::<LedgerError>(m, n, |_| Ok(hashes)).map_err(lift)
}

/// A c2sp.org/tlog-proof for entry `seq` against the latest signed checkpoint.
///
/// # Errors
/// [`LedgerError::OutOfRange`] if no checkpoint covers `seq`; [`LedgerError::Store`].
pub async fn tlog_proof<S: LedgerStore>(
    store: &mut S,
    seq: u64,
) -> Result<TlogProof, LedgerError<S::Error>> {
    let cp = store
        .latest_checkpoint()
        .await
        .map_err(LedgerError::Store)?
        .filter(|c| seq < c.size)
        .ok_or_else(|| LedgerError::OutOfRange(format!("no checkpoint covers entry {seq}")))?;
    let hashes = prove_inclusion(store, seq, cp.size).await?;
    Ok(TlogProof {
        extra: None,
        index: seq,
        hashes,
        note: cp.note,
    })
}

async fn check_size<S: LedgerStore>(store: &mut S, size: u64) -> Result<(), LedgerError<S::Error>> {
    let have = store
        .head()
        .await
        .map_err(LedgerError::Store)?
        .map_or(0, |h| h.size);
    if size > have {
        return Err(LedgerError::OutOfRange(format!(
            "tree size {size} beyond the log's {have} entries"
        )));
    }
    Ok(())
}

/// Entries read per store call during export.
const EXPORT_PAGE: u64 = 10_000;

/// Writes a bundle of entries `from..to` with every checkpoint of size `<= to`, consistency
/// proofs between consecutive checkpoints, and the public key, for `smartchat-verify`.
///
/// # Errors
/// [`LedgerError::OutOfRange`] for a bad range, [`LedgerError::Io`], [`LedgerError::Store`].
pub async fn export_bundle<S: LedgerStore, W: Write>(
    store: &mut S,
    from: u64,
    to: u64,
    key: &VerifierKey,
    writer: W,
) -> Result<W, LedgerError<S::Error>> {
    check_size(store, to).await?;
    if from > to {
        return Err(LedgerError::OutOfRange(format!("range {from}..{to}")));
    }
    let prefix = read_hashes(store, &merkle::tree_root_ids(from)).await?;
    let stored = store
        .read_checkpoints(to)
        .await
        .map_err(LedgerError::Store)?;
    let mut checkpoints = Vec::with_capacity(stored.len());
    let mut prev_size = 0u64;
    for cp in stored {
        let proof = if prev_size == 0 || cp.size == prev_size {
            Vec::new()
        } else {
            prove_consistency(store, prev_size, cp.size).await?
        };
        prev_size = cp.size;
        checkpoints.push(BundleCheckpoint {
            note: cp.note,
            proof_from_previous: proof,
        });
    }
    let header = BundleHeader {
        vkey: key.to_string(),
        from,
        to,
        prefix,
        checkpoints,
    };
    let mut w = BundleWriter::new(writer, &header).map_err(lift)?;
    let mut seq = from;
    while seq < to {
        let end = (seq + EXPORT_PAGE).min(to);
        let page = store
            .read_entries(seq, end)
            .await
            .map_err(LedgerError::Store)?;
        if page.len() as u64 != end - seq {
            return Err(LedgerError::OutOfRange(format!(
                "store returned {} entries for {seq}..{end}",
                page.len()
            )));
        }
        for e in &page {
            w.write_entry(&e.bytes, &e.hash).map_err(lift)?;
        }
        seq = end;
    }
    w.finish().map_err(lift)
}

/// Errors of [`MemStore`].
#[derive(Debug, thiserror::Error)]
pub enum MemStoreError {
    /// A tree hash id that was never written.
    #[error("tree hash {0} not stored")]
    MissingHash(u64),
    /// A write that does not follow the head.
    #[error("write does not follow the head")]
    NotContiguous,
}

/// An in-memory [`LedgerStore`] for tests, benches and tools.
#[derive(Clone, Debug, Default)]
pub struct MemStore {
    entries: Vec<StoredEntry>,
    tree: Vec<Option<Hash>>,
    head: Option<Head>,
    checkpoints: Vec<StoredCheckpoint>,
}

impl MemStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// All stored entries.
    #[must_use]
    pub fn entries(&self) -> &[StoredEntry] {
        &self.entries
    }

    /// All stored checkpoints, by increasing size.
    #[must_use]
    pub fn checkpoints(&self) -> &[StoredCheckpoint] {
        &self.checkpoints
    }

    /// The stored tree hashes by storage index (for benches and tests).
    #[must_use]
    pub fn tree(&self) -> &[Option<Hash>] {
        &self.tree
    }
}

impl LedgerStore for MemStore {
    type Error = MemStoreError;

    async fn head(&mut self) -> Result<Option<Head>, MemStoreError> {
        Ok(self.head)
    }

    async fn read_tree_hashes(&mut self, ids: &[u64]) -> Result<Vec<Hash>, MemStoreError> {
        ids.iter()
            .map(|&id| {
                usize::try_from(id)
                    .ok()
                    .and_then(|i| self.tree.get(i).copied().flatten())
                    .ok_or(MemStoreError::MissingHash(id))
            })
            .collect()
    }

    async fn write_batch(
        &mut self,
        entries: &[StoredEntry],
        tree: &[(u64, Hash)],
        new_head: &Head,
    ) -> Result<(), MemStoreError> {
        let size = self.head.map_or(0, |h| h.size);
        if entries.first().is_some_and(|e| e.entry.seq != size)
            || new_head.size != size + entries.len() as u64
        {
            return Err(MemStoreError::NotContiguous);
        }
        self.entries.extend_from_slice(entries);
        for &(id, h) in tree {
            let i = usize::try_from(id).map_err(|_| MemStoreError::MissingHash(id))?;
            if self.tree.len() <= i {
                self.tree.resize(i + 1, None);
            }
            self.tree[i] = Some(h);
        }
        self.head = Some(*new_head);
        Ok(())
    }

    async fn read_entries(
        &mut self,
        from: u64,
        to: u64,
    ) -> Result<Vec<StoredEntry>, MemStoreError> {
        let len = self.entries.len();
        let a = usize::try_from(from).unwrap_or(usize::MAX).min(len);
        let b = usize::try_from(to).unwrap_or(usize::MAX).min(len).max(a);
        Ok(self.entries[a..b].to_vec())
    }

    async fn latest_checkpoint(&mut self) -> Result<Option<StoredCheckpoint>, MemStoreError> {
        Ok(self.checkpoints.last().cloned())
    }

    async fn read_checkpoints(
        &mut self,
        max_size: u64,
    ) -> Result<Vec<StoredCheckpoint>, MemStoreError> {
        Ok(self
            .checkpoints
            .iter()
            .filter(|c| c.size <= max_size)
            .cloned()
            .collect())
    }

    async fn write_checkpoint(&mut self, cp: &StoredCheckpoint) -> Result<(), MemStoreError> {
        self.checkpoints.push(cp.clone());
        self.checkpoints.sort_by_key(|c| c.size);
        Ok(())
    }
}
