//! The RFC 6962 Merkle tree over entry hashes, its storage layout and proofs.
//!
//! Leaf `i` is `SHA-256(0x00 || entry_hash_i)`, an interior node is
//! `SHA-256(0x01 || left || right)`, the empty tree is `SHA-256("")`, and a
//! tree of `n > 1` leaves splits at the largest power of two below `n`.
//! Proofs are those of RFC 6962 / RFC 9162 (ordered from the leaf up), so
//! any CT or C2SP tlog verifier checks them.
//!
//! Storage: every complete subtree of `2^level` leaves starting at leaf
//! `n * 2^level` has one integer *storage index* ([`stored_hash_index`]), the
//! layout of Go's `sumdb/tlog`: hashes are numbered in the order an
//! append-only log writes them, so appending leaf `n` writes the contiguous
//! indexes `stored_hash_index(0, n) ..= + trailing_ones(n)`. A tree of size
//! `n` has `stored_hash_count(n)` (about `2n`) stored hashes. Roots and proofs
//! for any size need only O(log n) stored hashes, fetched in one read.

use sha2::{Digest, Sha256};

use crate::{Hash, LedgerError};

/// SHA-256 of the empty string: the root of the empty tree.
pub const EMPTY_ROOT: Hash = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// RFC 6962 leaf hash of an entry hash: `SHA-256(0x00 || entry_hash)`.
#[must_use]
pub fn leaf_hash(entry_hash: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(entry_hash);
    h.finalize().into()
}

/// RFC 6962 interior node hash: `SHA-256(0x01 || left || right)`.
#[must_use]
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The storage index of the hash of the subtree of `2^level` leaves starting at leaf `n << level`.
#[must_use]
pub fn stored_hash_index(level: u8, n: u64) -> u64 {
    let mut n = n;
    for _ in 0..level {
        n = 2 * n + 1;
    }
    let mut i = 0u64;
    while n > 0 {
        i += n;
        n >>= 1;
    }
    i + u64::from(level)
}

/// Inverse of [`stored_hash_index`]: `(level, n)`.
#[must_use]
pub fn split_stored_hash_index(index: u64) -> (u8, u64) {
    let mut n = index / 2;
    let mut index_n = stored_hash_index(0, n);
    loop {
        let x = index_n + 1 + u64::from((n + 1).trailing_zeros());
        if x > index {
            break;
        }
        n += 1;
        index_n = x;
    }
    // index - index_n <= 64, a valid level.
    let level = u8::try_from(index - index_n).unwrap_or(u8::MAX);
    (level, n >> level)
}

/// Number of stored hashes in a tree of `n` leaves.
#[must_use]
pub fn stored_hash_count(n: u64) -> u64 {
    if n == 0 {
        return 0;
    }
    let mut count = stored_hash_index(0, n - 1) + 1;
    let mut i = n - 1;
    while i & 1 != 0 {
        count += 1;
        i >>= 1;
    }
    count
}

/// Storage indexes of existing hashes needed to append leaf `n` (to be read before
/// [`stored_hashes_for_leaf`]); they are all below `stored_hash_index(0, n)`.
#[must_use]
pub fn stored_hashes_needed_for_leaf(n: u64) -> Vec<u64> {
    let m = (n + 1).trailing_zeros();
    let mut ids = vec![0u64; m as usize];
    for i in 0..m {
        // n >> i is odd here.
        ids[(m - 1 - i) as usize] = stored_hash_index(i as u8, (n >> i) - 1);
    }
    ids
}

/// The hashes to store when appending leaf `n` with entry hash `entry_hash`:
/// `(storage index, hash)` pairs, contiguous from `stored_hash_index(0, n)`.
/// `read_existing` is called once with [`stored_hashes_needed_for_leaf`]`(n)`.
///
/// # Errors
/// Whatever `read_existing` returns, or [`LedgerError::Malformed`] if it returns the wrong count.
pub fn stored_hashes_for_leaf<E>(
    n: u64,
    entry_hash: &Hash,
    read_existing: impl FnOnce(&[u64]) -> Result<Vec<Hash>, E>,
) -> Result<Vec<(u64, Hash)>, E>
where
    E: From<LedgerError>,
{
    let needed = stored_hashes_needed_for_leaf(n);
    let old = if needed.is_empty() {
        Vec::new()
    } else {
        read_existing(&needed)?
    };
    if old.len() != needed.len() {
        return Err(LedgerError::malformed("tree hashes", "reader returned wrong count").into());
    }
    let start = stored_hash_index(0, n);
    let mut h = leaf_hash(entry_hash);
    let mut out = Vec::with_capacity(needed.len() + 1);
    out.push((start, h));
    for (i, o) in old.iter().rev().enumerate() {
        h = node_hash(o, &h);
        out.push((start + 1 + i as u64, h));
    }
    Ok(out)
}

/// Largest power of two strictly below `n` (n >= 2), with its log2.
fn maxpow2(n: u64) -> (u64, u8) {
    let l = 63 - (n - 1).leading_zeros();
    (1u64 << l, l as u8)
}

fn sub_tree_index(mut lo: u64, hi: u64, need: &mut Vec<u64>) {
    while lo < hi {
        let (k, level) = maxpow2(hi - lo + 1);
        need.push(stored_hash_index(level, lo >> level));
        lo += k;
    }
}

fn sub_tree_hash(mut lo: u64, hi: u64, hashes: &[Hash]) -> (Hash, &[Hash]) {
    let mut num = 0usize;
    while lo < hi {
        let (k, _) = maxpow2(hi - lo + 1);
        num += 1;
        lo += k;
    }
    let mut h = hashes[num - 1];
    for i in (0..num - 1).rev() {
        h = node_hash(&hashes[i], &h);
    }
    (h, &hashes[num..])
}

/// Storage indexes needed by [`tree_root`] for a tree of `size` leaves.
#[must_use]
pub fn tree_root_ids(size: u64) -> Vec<u64> {
    let mut need = Vec::new();
    sub_tree_index(0, size, &mut need);
    need
}

fn check_count<E: From<LedgerError>>(got: &[Hash], want: usize) -> Result<(), E> {
    if got.len() == want {
        Ok(())
    } else {
        Err(LedgerError::malformed("tree hashes", "reader returned wrong count").into())
    }
}

/// The root of the tree of `size` leaves, reading O(log n) stored hashes in one call.
///
/// # Errors
/// Whatever `reader` returns, or [`LedgerError::Malformed`] if it returns the wrong count.
pub fn tree_root<E: From<LedgerError>>(
    size: u64,
    reader: impl FnOnce(&[u64]) -> Result<Vec<Hash>, E>,
) -> Result<Hash, E> {
    if size == 0 {
        return Ok(EMPTY_ROOT);
    }
    let ids = tree_root_ids(size);
    let hashes = reader(&ids)?;
    check_count(&hashes, ids.len())?;
    Ok(sub_tree_hash(0, size, &hashes).0)
}

fn leaf_proof_index(lo: u64, hi: u64, n: u64, need: &mut Vec<u64>) {
    if lo + 1 == hi {
        return;
    }
    let (k, _) = maxpow2(hi - lo);
    if n < lo + k {
        leaf_proof_index(lo, lo + k, n, need);
        sub_tree_index(lo + k, hi, need);
    } else {
        sub_tree_index(lo, lo + k, need);
        leaf_proof_index(lo + k, hi, n, need);
    }
}

fn leaf_proof<'a>(lo: u64, hi: u64, n: u64, hashes: &'a [Hash], p: &mut Vec<Hash>) -> &'a [Hash] {
    if lo + 1 == hi {
        return hashes;
    }
    let (k, _) = maxpow2(hi - lo);
    let (th, rest) = if n < lo + k {
        let rest = leaf_proof(lo, lo + k, n, hashes, p);
        sub_tree_hash(lo + k, hi, rest)
    } else {
        let (th, rest) = sub_tree_hash(lo, lo + k, hashes);
        (th, leaf_proof(lo + k, hi, n, rest, p))
    };
    p.push(th);
    rest
}

/// Storage indexes needed by [`inclusion_proof`].
///
/// # Errors
/// [`LedgerError::OutOfRange`] unless `index < size`.
pub fn inclusion_proof_ids(index: u64, size: u64) -> Result<Vec<u64>, LedgerError> {
    if index >= size {
        return Err(LedgerError::OutOfRange(format!(
            "leaf {index} not in a tree of size {size}"
        )));
    }
    let mut need = Vec::new();
    leaf_proof_index(0, size, index, &mut need);
    Ok(need)
}

/// The RFC 6962 inclusion proof (audit path, leaf to root) of leaf `index` in the tree of `size`
/// leaves, reading O(log n) stored hashes in one call.
///
/// # Errors
/// [`LedgerError::OutOfRange`] unless `index < size`; whatever `reader` returns.
pub fn inclusion_proof<E: From<LedgerError>>(
    index: u64,
    size: u64,
    reader: impl FnOnce(&[u64]) -> Result<Vec<Hash>, E>,
) -> Result<Vec<Hash>, E> {
    let ids = inclusion_proof_ids(index, size)?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let hashes = reader(&ids)?;
    check_count(&hashes, ids.len())?;
    let mut p = Vec::new();
    leaf_proof(0, size, index, &hashes, &mut p);
    Ok(p)
}

fn tree_proof_index(lo: u64, hi: u64, n: u64, need: &mut Vec<u64>) {
    if n == hi {
        if lo != 0 {
            sub_tree_index(lo, hi, need);
        }
        return;
    }
    let (k, _) = maxpow2(hi - lo);
    if n <= lo + k {
        tree_proof_index(lo, lo + k, n, need);
        sub_tree_index(lo + k, hi, need);
    } else {
        sub_tree_index(lo, lo + k, need);
        tree_proof_index(lo + k, hi, n, need);
    }
}

fn tree_proof<'a>(lo: u64, hi: u64, n: u64, hashes: &'a [Hash], p: &mut Vec<Hash>) -> &'a [Hash] {
    if n == hi {
        if lo == 0 {
            return hashes;
        }
        let (th, rest) = sub_tree_hash(lo, hi, hashes);
        p.push(th);
        return rest;
    }
    let (k, _) = maxpow2(hi - lo);
    let (th, rest) = if n <= lo + k {
        let rest = tree_proof(lo, lo + k, n, hashes, p);
        sub_tree_hash(lo + k, hi, rest)
    } else {
        let (th, rest) = sub_tree_hash(lo, lo + k, hashes);
        (th, tree_proof(lo + k, hi, n, rest, p))
    };
    p.push(th);
    rest
}

/// Storage indexes needed by [`consistency_proof`].
///
/// # Errors
/// [`LedgerError::OutOfRange`] unless `0 < old_size <= new_size`.
pub fn consistency_proof_ids(old_size: u64, new_size: u64) -> Result<Vec<u64>, LedgerError> {
    if old_size == 0 || old_size > new_size {
        return Err(LedgerError::OutOfRange(format!(
            "no consistency proof from size {old_size} to {new_size}"
        )));
    }
    let mut need = Vec::new();
    tree_proof_index(0, new_size, old_size, &mut need);
    Ok(need)
}

/// The RFC 6962 consistency proof between the trees of `old_size` and `new_size` leaves,
/// reading O(log n) stored hashes in one call. Empty when the sizes are equal.
///
/// # Errors
/// [`LedgerError::OutOfRange`] unless `0 < old_size <= new_size`; whatever `reader` returns.
pub fn consistency_proof<E: From<LedgerError>>(
    old_size: u64,
    new_size: u64,
    reader: impl FnOnce(&[u64]) -> Result<Vec<Hash>, E>,
) -> Result<Vec<Hash>, E> {
    let ids = consistency_proof_ids(old_size, new_size)?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let hashes = reader(&ids)?;
    check_count(&hashes, ids.len())?;
    let mut p = Vec::new();
    tree_proof(0, new_size, old_size, &hashes, &mut p);
    Ok(p)
}

fn run_record_proof(p: &[Hash], lo: u64, hi: u64, n: u64, leaf: Hash) -> Option<Hash> {
    if lo + 1 == hi {
        return p.is_empty().then_some(leaf);
    }
    let (last, rest) = p.split_last()?;
    let (k, _) = maxpow2(hi - lo);
    if n < lo + k {
        let th = run_record_proof(rest, lo, lo + k, n, leaf)?;
        Some(node_hash(&th, last))
    } else {
        let th = run_record_proof(rest, lo + k, hi, n, leaf)?;
        Some(node_hash(last, &th))
    }
}

/// Verifies that the entry with hash `entry_hash` is leaf `index` of the tree of `size`
/// leaves with root `root`.
///
/// # Errors
/// [`LedgerError::ProofRejected`] if it does not.
pub fn verify_inclusion(
    proof: &[Hash],
    index: u64,
    size: u64,
    entry_hash: &Hash,
    root: &Hash,
) -> Result<(), LedgerError> {
    verify_inclusion_of_leaf(proof, index, size, &leaf_hash(entry_hash), root)
}

/// [`verify_inclusion`] for a leaf hash (`leaf_hash(entry_hash)`) instead of an entry hash.
///
/// # Errors
/// [`LedgerError::ProofRejected`] if the proof does not verify.
pub fn verify_inclusion_of_leaf(
    proof: &[Hash],
    index: u64,
    size: u64,
    leaf: &Hash,
    root: &Hash,
) -> Result<(), LedgerError> {
    if index >= size || proof.len() > 64 {
        return Err(LedgerError::ProofRejected(
            "inclusion: index or proof length",
        ));
    }
    match run_record_proof(proof, 0, size, index, *leaf) {
        Some(r) if r == *root => Ok(()),
        _ => Err(LedgerError::ProofRejected("inclusion: root mismatch")),
    }
}

fn run_tree_proof(p: &[Hash], lo: u64, hi: u64, n: u64, old: Hash) -> Option<(Hash, Hash)> {
    if n == hi {
        if lo == 0 {
            return p.is_empty().then_some((old, old));
        }
        return match p {
            [h] => Some((*h, *h)),
            _ => None,
        };
    }
    let (last, rest) = p.split_last()?;
    let (k, _) = maxpow2(hi - lo);
    if n <= lo + k {
        let (oh, th) = run_tree_proof(rest, lo, lo + k, n, old)?;
        Some((oh, node_hash(&th, last)))
    } else {
        let (oh, th) = run_tree_proof(rest, lo + k, hi, n, old)?;
        Some((node_hash(last, &oh), node_hash(last, &th)))
    }
}

/// Verifies that the tree of `old_size` leaves with root `old_root` is a prefix of the tree
/// of `new_size` leaves with root `new_root`. `old_size == 0` needs an empty proof.
///
/// # Errors
/// [`LedgerError::ProofRejected`] if it is not.
pub fn verify_consistency(
    proof: &[Hash],
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
) -> Result<(), LedgerError> {
    if old_size > new_size || proof.len() > 128 {
        return Err(LedgerError::ProofRejected(
            "consistency: sizes or proof length",
        ));
    }
    if old_size == 0 {
        return if proof.is_empty() && *old_root == EMPTY_ROOT {
            Ok(())
        } else {
            Err(LedgerError::ProofRejected(
                "consistency: from the empty tree",
            ))
        };
    }
    match run_tree_proof(proof, 0, new_size, old_size, *old_root) {
        Some((o, n)) if o == *old_root && n == *new_root => Ok(()),
        _ => Err(LedgerError::ProofRejected("consistency: root mismatch")),
    }
}

/// Incremental root computation over a stream of leaf hashes: a stack of the roots of the
/// complete subtrees of the prefix seen so far (a "compact range" from leaf 0).
#[derive(Clone, Debug, Default)]
pub struct CompactRange {
    size: u64,
    /// (level, hash), levels strictly decreasing from bottom to top.
    stack: Vec<(u8, Hash)>,
}

impl CompactRange {
    /// The empty range.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds the range of the first `size` leaves from the hashes of its complete
    /// subtrees (what [`tree_root_ids`]`(size)` names, in that order).
    ///
    /// # Errors
    /// [`LedgerError::Malformed`] if the count does not match.
    pub fn from_subtrees(size: u64, hashes: &[Hash]) -> Result<Self, LedgerError> {
        let mut stack = Vec::new();
        let mut lo = 0u64;
        while lo < size {
            let (k, level) = maxpow2(size - lo + 1);
            stack.push(level);
            lo += k;
        }
        if stack.len() != hashes.len() {
            return Err(LedgerError::malformed(
                "compact range",
                format!(
                    "{} hashes for size {size}, want {}",
                    hashes.len(),
                    stack.len()
                ),
            ));
        }
        Ok(Self {
            size,
            stack: stack.into_iter().zip(hashes.iter().copied()).collect(),
        })
    }

    /// Number of leaves so far.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The complete-subtree hashes, in the order [`CompactRange::from_subtrees`] takes them.
    #[must_use]
    pub fn subtrees(&self) -> Vec<Hash> {
        self.stack.iter().map(|(_, h)| *h).collect()
    }

    /// Appends one leaf hash (already `leaf_hash`ed).
    pub fn push_leaf(&mut self, leaf: Hash) {
        self.push_subtree(0, leaf);
    }

    /// Appends the root of a complete subtree of `2^level` leaves. The current size must be a
    /// multiple of `2^level` and no smaller subtree may be pending (callers append aligned blocks).
    pub fn push_subtree(&mut self, level: u8, hash: Hash) {
        self.size += 1u64 << level;
        let mut level = level;
        let mut h = hash;
        while let Some(&(l, left)) = self.stack.last() {
            if l != level {
                break;
            }
            self.stack.pop();
            h = node_hash(&left, &h);
            level += 1;
        }
        self.stack.push((level, h));
    }

    /// The root of the tree of the leaves so far.
    #[must_use]
    pub fn root(&self) -> Hash {
        let mut it = self.stack.iter().rev();
        let Some(&(_, mut h)) = it.next() else {
            return EMPTY_ROOT;
        };
        for (_, left) in it {
            h = node_hash(left, &h);
        }
        h
    }
}

/// Root of the complete subtree over `leaves` (leaf hashes; the length must be a power of two,
/// otherwise the RFC 6962 root of the leaves is returned, computed the slow way).
#[must_use]
pub fn perfect_root(leaves: &[Hash]) -> Hash {
    if !leaves.len().is_power_of_two() {
        let mut r = CompactRange::new();
        for l in leaves {
            r.push_leaf(*l);
        }
        return r.root();
    }
    let mut level: Vec<Hash> = leaves.to_vec();
    while level.len() > 1 {
        level = level
            .chunks_exact(2)
            .map(|c| node_hash(&c[0], &c[1]))
            .collect();
    }
    level.first().copied().unwrap_or(EMPTY_ROOT)
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    /// The RFC 6962 definition, recursively, as the oracle.
    fn naive_root(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => EMPTY_ROOT,
            1 => leaves[0],
            n => {
                let (k, _) = maxpow2(n as u64);
                let k = k as usize;
                node_hash(&naive_root(&leaves[..k]), &naive_root(&leaves[k..]))
            }
        }
    }

    fn build(n: u64) -> (Vec<Hash>, Vec<Hash>) {
        let mut store: Vec<Hash> = Vec::new();
        let mut leaves = Vec::new();
        for i in 0..n {
            let eh = *blake3::hash(&i.to_be_bytes()).as_bytes();
            leaves.push(leaf_hash(&eh));
            let add = stored_hashes_for_leaf::<LedgerError>(i, &eh, |ids| {
                Ok(ids.iter().map(|&id| store[id as usize]).collect())
            })
            .unwrap();
            for (id, h) in add {
                assert_eq!(id as usize, store.len());
                store.push(h);
            }
            assert_eq!(store.len() as u64, stored_hash_count(i + 1));
        }
        (store, leaves)
    }

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        assert_eq!(EMPTY_ROOT, <[u8; 32]>::from(Sha256::digest([])));
    }

    #[test]
    fn index_round_trip() {
        for level in 0..20u8 {
            for n in 0..200u64 {
                assert_eq!(
                    split_stored_hash_index(stored_hash_index(level, n)),
                    (level, n)
                );
            }
        }
    }

    #[test]
    fn roots_and_proofs_match_the_rfc_definition() {
        let (store, leaves) = build(70);
        let rd = |ids: &[u64]| -> Result<Vec<Hash>, LedgerError> {
            Ok(ids.iter().map(|&id| store[id as usize]).collect())
        };
        for size in 0..=70u64 {
            let root = tree_root(size, rd).unwrap();
            assert_eq!(root, naive_root(&leaves[..size as usize]), "size {size}");
            let mut cr = CompactRange::new();
            for l in &leaves[..size as usize] {
                cr.push_leaf(*l);
            }
            assert_eq!(cr.root(), root);
            let ids = tree_root_ids(size);
            let cr2 = CompactRange::from_subtrees(size, &rd(&ids).unwrap()).unwrap();
            assert_eq!(cr2.root(), root);
            for i in 0..size {
                let p = inclusion_proof(i, size, rd).unwrap();
                let eh = *blake3::hash(&i.to_be_bytes()).as_bytes();
                verify_inclusion(&p, i, size, &eh, &root).unwrap();
                assert!(verify_inclusion(&p, i, size, &[0; 32], &root).is_err());
            }
            for m in 1..=size {
                let p = consistency_proof(m, size, rd).unwrap();
                let old = naive_root(&leaves[..m as usize]);
                verify_consistency(&p, m, size, &old, &root).unwrap();
                if m < size {
                    assert!(verify_consistency(&p, m, size, &root, &root).is_err());
                }
            }
        }
        assert_eq!(perfect_root(&leaves[..64]), naive_root(&leaves[..64]));
        assert_eq!(perfect_root(&leaves[..70]), naive_root(&leaves[..70]));
    }
}
