//! Verification of a whole ledger (a bundle or a database): every entry's
//! encoding and hash, every chain link, sequence numbers and times, every
//! checkpoint's signature and root, consistency between consecutive
//! checkpoints, and optionally one inclusion proof.
//!
//! Entries are hashed in parallel (rayon) in batches; the sequential part is
//! a 32-byte compare per link and one SHA-256 node hash per 1,024 leaves.

use std::io::Read;
use std::sync::Arc;

use rayon::prelude::*;
use serde::Serialize;

use crate::bundle::{BundleReader, EntryBatch};
use crate::checkpoint::{Checkpoint, VerifierKey, open_note};
use crate::merkle::{self, CompactRange};
use crate::{EntryHeader, Hash, LedgerError, check_entry, entry_hash};

/// Entries per batch.
const BATCH: usize = 1 << 16;
/// Leaves per parallel subtree (2^CHUNK_LEVEL).
const CHUNK_LEVEL: u8 = 10;
const CHUNK: u64 = 1 << CHUNK_LEVEL;

/// A progress callback: `(entries done, entries expected)`.
pub type Progress = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// What to check beyond the defaults.
#[derive(Clone, Default)]
pub struct VerifyOptions {
    /// The verifier key the auditor trusts (C2SP vkey string). If given, the bundle's key must
    /// be this one; for a database it is the key (required there).
    pub trusted_key: Option<String>,
    /// Also prove and check the inclusion of this entry in the latest checkpoint.
    pub prove_seq: Option<u64>,
    /// Called after each batch.
    pub progress: Option<Progress>,
    /// Signed checkpoint notes the auditor obtained earlier (from smartchat, a witness, a
    /// previous audit). The ledger must contain their entries and reproduce their roots: this
    /// catches a truncated tail even when the log's own later checkpoints were removed too.
    pub trusted_checkpoints: Vec<String>,
}

impl std::fmt::Debug for VerifyOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyOptions")
            .field("trusted_key", &self.trusted_key)
            .field("prove_seq", &self.prove_seq)
            .field("trusted_checkpoints", &self.trusted_checkpoints.len())
            .finish_non_exhaustive()
    }
}

/// The first thing found wrong.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// The first bad sequence number, when the failure is at an entry.
    pub seq: Option<u64>,
    /// What is wrong.
    pub what: String,
}

/// Result of a verification run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Origin of the log (from its key).
    pub origin: String,
    /// The verifier key used.
    pub vkey: String,
    /// First sequence number examined.
    pub from_seq: u64,
    /// Entries verified (before the first failure).
    pub entries: u64,
    /// Checkpoints whose signature verified.
    pub checkpoints: u64,
    /// Checkpoint roots recomputed from the entries and found equal.
    pub roots_checked: u64,
    /// Consistency proofs between consecutive checkpoints that verified.
    pub consistency_checked: u64,
    /// The largest signed checkpoint: size and hex root.
    pub latest_checkpoint: Option<(u64, String)>,
    /// `prove_seq`'s result: the tree size it was proven in.
    pub inclusion_proven_in: Option<u64>,
    /// `None` when everything verified.
    pub first_failure: Option<Failure>,
}

impl Report {
    /// `true` when nothing failed.
    #[must_use]
    pub fn ok(&self) -> bool {
        self.first_failure.is_none()
    }

    fn fail(&mut self, seq: Option<u64>, what: impl Into<String>) {
        if self.first_failure.is_none() {
            self.first_failure = Some(Failure {
                seq,
                what: what.into(),
            });
        }
    }
}

/// One checkpoint to check.
pub(crate) struct CheckpointInput {
    pub(crate) note: String,
    /// Consistency proof from the previous input (bundle), if carried.
    pub(crate) proof: Option<Vec<Hash>>,
    /// A root stored beside the note (database column), to compare.
    pub(crate) stored_root: Option<Hash>,
}

/// Source of entry batches.
pub(crate) trait EntrySource {
    /// Fills `batch`; returns `false` when no more batches follow.
    fn next(&mut self, batch: &mut EntryBatch) -> Result<bool, LedgerError>;
}

/// Computes a proof between two sizes from stored tree hashes.
pub(crate) type ProofFn = Box<dyn FnMut(u64, u64) -> Result<Vec<Hash>, LedgerError>>;

/// Inputs to the shared verification routine.
pub(crate) struct Inputs {
    pub(crate) key: VerifierKey,
    pub(crate) from: u64,
    /// Entry count announced by the source, if known.
    pub(crate) expected_to: Option<u64>,
    pub(crate) prefix: Vec<Hash>,
    pub(crate) checkpoints: Vec<CheckpointInput>,
    /// Consistency proof between two sizes computed by the source (database tree), if any.
    pub(crate) prove_consistency: Option<ProofFn>,
    /// Inclusion proof computed by the source, if any; else it is built from the entries' leaves.
    pub(crate) prove_inclusion: Option<ProofFn>,
}

/// Verifies a bundle read from `reader`.
///
/// Integrity problems are reported in [`Report::first_failure`]; `Err` is only returned for
/// I/O errors while reading.
///
/// # Errors
/// [`LedgerError::Io`].
pub fn verify_bundle<R: Read + Send>(
    reader: R,
    opts: &VerifyOptions,
) -> Result<Report, LedgerError> {
    let mut report = Report::default();
    let mut rd = match BundleReader::new(reader) {
        Ok(r) => r,
        Err(LedgerError::Io(e)) => return Err(LedgerError::Io(e)),
        Err(e) => {
            report.fail(None, e.to_string());
            return Ok(report);
        }
    };
    let h = rd.header().clone();
    report.vkey.clone_from(&h.vkey);
    let key = match VerifierKey::parse(&h.vkey) {
        Ok(k) => k,
        Err(e) => {
            report.fail(None, format!("bundle public key: {e}"));
            return Ok(report);
        }
    };
    if let Some(t) = &opts.trusted_key {
        match VerifierKey::parse(t) {
            Ok(tk) if tk == key => {}
            Ok(_) => {
                report.fail(
                    None,
                    "the bundle's public key is not the trusted key (--key)",
                );
                return Ok(report);
            }
            Err(e) => {
                report.fail(None, format!("trusted key: {e}"));
                return Ok(report);
            }
        }
    }
    let inputs = Inputs {
        key,
        from: h.from,
        expected_to: Some(h.to),
        prefix: h.prefix,
        checkpoints: h
            .checkpoints
            .into_iter()
            .map(|c| CheckpointInput {
                note: c.note,
                proof: Some(c.proof_from_previous),
                stored_root: None,
            })
            .collect(),
        prove_consistency: None,
        prove_inclusion: None,
    };
    // Read on a second thread while this one (and rayon) hash: the read is then off the
    // critical path. Batches are recycled through a return channel.
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<(EntryBatch, bool), LedgerError>>(2);
        let (ret_tx, ret_rx) = std::sync::mpsc::channel::<EntryBatch>();
        scope.spawn(move || {
            loop {
                let mut b = ret_rx.try_recv().unwrap_or_default();
                match rd.read_batch(BATCH, &mut b) {
                    Ok(more) => {
                        if tx.send(Ok((b, more))).is_err() || !more {
                            break;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        break;
                    }
                }
            }
        });
        let mut src = ChannelSource { rx, ret_tx };
        run(inputs, &mut src, opts, report)
    })
}

/// Batches read by another thread.
struct ChannelSource {
    rx: std::sync::mpsc::Receiver<Result<(EntryBatch, bool), LedgerError>>,
    ret_tx: std::sync::mpsc::Sender<EntryBatch>,
}

impl EntrySource for ChannelSource {
    fn next(&mut self, batch: &mut EntryBatch) -> Result<bool, LedgerError> {
        match self.rx.recv() {
            Ok(Ok((mut b, more))) => {
                std::mem::swap(batch, &mut b);
                let _ = self.ret_tx.send(b);
                Ok(more)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(LedgerError::Io(std::io::Error::other(
                "bundle reader thread ended",
            ))),
        }
    }
}

struct Checked {
    size: u64,
    cp: Checkpoint,
}

/// Per-entry result of the parallel phase.
type EntryResult = Result<(EntryHeader, Hash, Hash), String>;

pub(crate) fn run(
    mut inputs: Inputs,
    source: &mut dyn EntrySource,
    opts: &VerifyOptions,
    mut report: Report,
) -> Result<Report, LedgerError> {
    report.origin.clone_from(&inputs.key.name);
    report.vkey = inputs.key.to_string();
    report.from_seq = inputs.from;

    // 1. Checkpoints: signatures, order, forks, carried consistency proofs.
    let mut checked: Vec<Checked> = Vec::new();
    for (i, c) in inputs.checkpoints.iter().enumerate() {
        let cp = match open_note(&c.note, &inputs.key) {
            Ok(cp) => cp,
            Err(e) => {
                report.fail(None, format!("checkpoint #{i}: {e}"));
                return Ok(report);
            }
        };
        if c.stored_root.is_some_and(|r| r != cp.root) {
            report.fail(
                None,
                format!(
                    "checkpoint of size {}: stored root differs from the signed note",
                    cp.size
                ),
            );
            return Ok(report);
        }
        report.checkpoints += 1;
        if let Some(prev) = checked.last() {
            if cp.size < prev.size {
                report.fail(
                    None,
                    format!(
                        "checkpoints out of order: size {} after {}",
                        cp.size, prev.size
                    ),
                );
                return Ok(report);
            }
            if cp.size == prev.size {
                if cp.root != prev.cp.root {
                    report.fail(
                        Some(cp.size.saturating_sub(1)),
                        format!("forked history: two signed checkpoints of size {} with different roots", cp.size),
                    );
                    return Ok(report);
                }
                continue;
            }
            let proof = match (&c.proof, inputs.prove_consistency.as_mut()) {
                (Some(p), _) => Some(p.clone()),
                (None, Some(f)) => match f(prev.size, cp.size) {
                    Ok(p) => Some(p),
                    Err(e) => {
                        report.fail(
                            None,
                            format!("consistency proof {} -> {}: {e}", prev.size, cp.size),
                        );
                        return Ok(report);
                    }
                },
                (None, None) => None,
            };
            if let Some(p) = proof {
                if merkle::verify_consistency(&p, prev.size, cp.size, &prev.cp.root, &cp.root)
                    .is_err()
                {
                    report.fail(
                        None,
                        format!("checkpoints of size {} and {} are not consistent (forked or rewritten history)", prev.size, cp.size),
                    );
                    return Ok(report);
                }
                report.consistency_checked += 1;
            }
        }
        checked.push(Checked { size: cp.size, cp });
    }
    if let Some(last) = checked.last() {
        report.latest_checkpoint = Some((last.size, hex::encode(last.cp.root)));
    }

    // 2. Entries.
    let from = inputs.from;
    let mut cr = match CompactRange::from_subtrees(from, &inputs.prefix) {
        Ok(c) => c,
        Err(e) => {
            report.fail(None, format!("bundle prefix: {e}"));
            return Ok(report);
        }
    };
    // Checkpoint sizes whose roots can be recomputed here, ascending.
    // Checkpoints the auditor brings: same key, must not contradict the log's own.
    let mut trusted: Vec<Checked> = Vec::new();
    for (i, note) in opts.trusted_checkpoints.iter().enumerate() {
        let cp = match open_note(note, &inputs.key) {
            Ok(cp) => cp,
            Err(e) => {
                report.fail(None, format!("trusted checkpoint #{i}: {e}"));
                return Ok(report);
            }
        };
        if let Some(c) = checked
            .iter()
            .chain(trusted.iter())
            .find(|c| c.size == cp.size)
        {
            if c.cp.root != cp.root {
                report.fail(
                    Some(cp.size.saturating_sub(1)),
                    format!("forked history: trusted checkpoint of size {} has another root than the log's", cp.size),
                );
                return Ok(report);
            }
        }
        if cp.size <= from && cp.size > 0 {
            report.fail(
                None,
                format!(
                    "trusted checkpoint of size {} precedes this bundle's first entry {from}",
                    cp.size
                ),
            );
            return Ok(report);
        }
        trusted.push(Checked { size: cp.size, cp });
    }
    let mut pending: Vec<&Checked> = checked
        .iter()
        .chain(trusted.iter())
        .filter(|c| c.size > from)
        .collect();
    pending.sort_by_key(|c| c.size);
    pending.dedup_by_key(|c| c.size);
    let mut next_cp = 0usize;
    let mut expected = from;
    let mut last_hash: Option<Hash> = None;
    let mut last_time = i64::MIN;
    let total = inputs.expected_to.map_or(0, |t| t.saturating_sub(from));
    let want_leaf = opts.prove_seq.filter(|_| inputs.prove_inclusion.is_none());
    let mut leaves_for_proof: Vec<Hash> = Vec::new();
    let mut proof_leaf: Option<Hash> = None;
    let mut batch = EntryBatch::default();
    loop {
        let more = source.next(&mut batch)?;
        // Leaves are only needed while a checkpoint root remains to be checked or a proof built.
        let need_tree = next_cp < pending.len() || want_leaf.is_some();
        let results: Vec<EntryResult> = batch
            .items
            .par_iter()
            .map(|it| {
                let bytes = batch.bytes(it);
                let h = check_entry(bytes).map_err(|e| e.to_string())?;
                let eh = entry_hash(bytes);
                if eh != it.hash {
                    return Err("entry hash differs from the stored hash (entry or hash altered)".into());
                }
                if let Some(c) = it.cols {
                    if c.seq != h.seq
                        || c.tenant != h.tenant.map(|t| t.0)
                        || c.kind != h.kind.0
                        || c.time_micros != h.time_micros
                    {
                        return Err("database columns (seq, tenant_id, kind, time_micros) differ from the entry".into());
                    }
                }
                let leaf = if need_tree { merkle::leaf_hash(&eh) } else { [0; 32] };
                Ok((h, eh, leaf))
            })
            .collect();
        let mut leaves = Vec::with_capacity(results.len());
        for r in results {
            let (h, eh, leaf) = match r {
                Ok(v) => v,
                Err(what) => {
                    report.fail(Some(expected), what);
                    return Ok(report);
                }
            };
            if h.seq != expected {
                let what = if h.seq > expected {
                    format!("gap or deletion: expected seq {expected}, found {}", h.seq)
                } else {
                    format!(
                        "inserted, repeated or reordered entry: expected seq {expected}, found {}",
                        h.seq
                    )
                };
                report.fail(Some(expected), what);
                return Ok(report);
            }
            match last_hash {
                Some(p) if p != h.prev => {
                    report.fail(
                        Some(expected),
                        "chain broken: prev is not the hash of the previous entry",
                    );
                    return Ok(report);
                }
                None if expected == 0 && h.prev != [0; 32] => {
                    report.fail(Some(0), "entry 0 must have an all-zero prev");
                    return Ok(report);
                }
                _ => {}
            }
            if h.time_micros < last_time {
                report.fail(Some(expected), "time goes backwards");
                return Ok(report);
            }
            last_time = h.time_micros;
            last_hash = Some(eh);
            if opts.prove_seq == Some(expected) {
                proof_leaf = Some(merkle::leaf_hash(&eh));
            }
            leaves.push(leaf);
            expected += 1;
        }
        // Merkle: aligned full chunks in parallel, the rest leaf by leaf.
        if !need_tree {
            leaves.clear();
        }
        let mut i = 0usize;
        while i < leaves.len() {
            let pos = cr.size();
            let next_size = pending.get(next_cp).map_or(u64::MAX, |c| c.size);
            if pos % CHUNK == 0 && next_size >= pos + CHUNK && i + CHUNK as usize <= leaves.len() {
                let mut j = i;
                let limit = next_size.saturating_sub(pos);
                while j + CHUNK as usize <= leaves.len() && ((j - i) as u64 + CHUNK) <= limit {
                    j += CHUNK as usize;
                }
                let roots: Vec<Hash> = leaves[i..j]
                    .par_chunks(CHUNK as usize)
                    .map(merkle::perfect_root)
                    .collect();
                for r in roots {
                    cr.push_subtree(CHUNK_LEVEL, r);
                }
                i = j;
            } else {
                cr.push_leaf(leaves[i]);
                i += 1;
            }
            while let Some(c) = pending.get(next_cp) {
                if c.size != cr.size() {
                    break;
                }
                if cr.root() != c.cp.root {
                    report.fail(
                        None,
                        format!(
                            "checkpoint of size {}: root recomputed from entries {}..{} differs from the signed root",
                            c.size, from, c.size
                        ),
                    );
                    return Ok(report);
                }
                report.roots_checked += 1;
                next_cp += 1;
            }
        }
        if want_leaf.is_some() {
            leaves_for_proof.extend_from_slice(&leaves);
        }
        report.entries = expected - from;
        if let Some(p) = &opts.progress {
            p(report.entries, total);
        }
        if let Some(e) = batch.error.take() {
            report.fail(Some(expected), e);
            return Ok(report);
        }
        if !more {
            break;
        }
    }
    if let Some(t) = inputs.expected_to {
        if expected != t {
            report.fail(
                Some(expected),
                format!("entries end at {expected}, the source announced {t}"),
            );
            return Ok(report);
        }
    }
    if let Some(c) = pending.get(next_cp) {
        report.fail(
            Some(expected),
            format!(
                "truncated: entries end at {expected} but a checkpoint of size {} was signed",
                c.size
            ),
        );
        return Ok(report);
    }

    // 3. Optional inclusion proof against the latest checkpoint.
    if let Some(seq) = opts.prove_seq {
        let Some(last) = checked.last() else {
            report.fail(Some(seq), "no checkpoint to prove inclusion against");
            return Ok(report);
        };
        if seq < from || seq >= last.size {
            report.fail(Some(seq), format!("entry {seq} is not covered by the latest checkpoint (size {}) within this bundle", last.size));
            return Ok(report);
        }
        let proof = match inputs.prove_inclusion.as_mut() {
            Some(f) => f(seq, last.size),
            None if from == 0 => merkle::inclusion_proof::<LedgerError>(seq, last.size, |ids| {
                ids_from_leaves(ids, &leaves_for_proof)
            }),
            None => Err(LedgerError::OutOfRange(
                "inclusion proofs need a bundle from entry 0".into(),
            )),
        };
        match proof {
            Ok(p) => {
                // The proof is checked against the leaf recomputed from the entry.
                let leaf = if let Some(l) = proof_leaf {
                    l
                } else {
                    report.fail(Some(seq), "entry not available for the inclusion proof");
                    return Ok(report);
                };
                if verify_inclusion_leaf(&p, seq, last.size, leaf, &last.cp.root) {
                    report.inclusion_proven_in = Some(last.size);
                } else {
                    report.fail(Some(seq), "inclusion proof does not verify");
                }
            }
            Err(e) => report.fail(Some(seq), format!("inclusion proof: {e}")),
        }
    }
    Ok(report)
}

/// Reads stored hashes for a proof from an in-memory list of leaf hashes (building subtrees).
fn ids_from_leaves(ids: &[u64], leaves: &[Hash]) -> Result<Vec<Hash>, LedgerError> {
    ids.iter()
        .map(|&id| {
            let (level, n) = merkle::split_stored_hash_index(id);
            let lo =
                usize::try_from(n << level).map_err(|_| LedgerError::OutOfRange("id".into()))?;
            let hi = lo + (1usize << level);
            leaves
                .get(lo..hi)
                .map(merkle::perfect_root)
                .ok_or_else(|| LedgerError::OutOfRange("subtree beyond the entries".into()))
        })
        .collect()
}

/// Checks an inclusion proof for a leaf hash (already `leaf_hash`ed).
fn verify_inclusion_leaf(proof: &[Hash], index: u64, size: u64, leaf: Hash, root: &Hash) -> bool {
    merkle::verify_inclusion_of_leaf(proof, index, size, &leaf, root).is_ok()
}
