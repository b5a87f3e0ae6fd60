//! Over 1,000 random (index, size) pairs every valid inclusion and consistency proof is accepted
//! and every corrupted one (a hash flipped, added or removed, wrong index, wrong size) rejected.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rand::{Rng, SeedableRng, rngs::StdRng};
use smartchat_ledger::merkle::*;
use smartchat_ledger::{Hash, LedgerError};

const N: u64 = 3000;

struct Tree {
    stored: Vec<Hash>,
    entry_hashes: Vec<Hash>,
}

impl Tree {
    fn new(n: u64) -> Self {
        let mut stored: Vec<Hash> = Vec::new();
        let mut entry_hashes = Vec::new();
        for i in 0..n {
            let eh = *blake3::hash(&i.to_le_bytes()).as_bytes();
            entry_hashes.push(eh);
            for (id, h) in stored_hashes_for_leaf::<LedgerError>(i, &eh, |ids| {
                Ok(ids.iter().map(|&id| stored[id as usize]).collect())
            })
            .unwrap()
            {
                assert_eq!(id as usize, stored.len());
                stored.push(h);
            }
        }
        Self {
            stored,
            entry_hashes,
        }
    }

    fn read(&self, ids: &[u64]) -> Result<Vec<Hash>, LedgerError> {
        Ok(ids.iter().map(|&id| self.stored[id as usize]).collect())
    }

    fn root(&self, size: u64) -> Hash {
        tree_root(size, |ids| self.read(ids)).unwrap()
    }
}

/// Every structural corruption of a proof: each bit-flipped hash (one random bit per node),
/// a hash added at either end, a hash removed from either end.
fn corruptions(p: &[Hash], rng: &mut StdRng) -> Vec<Vec<Hash>> {
    let mut out = Vec::new();
    for i in 0..p.len() {
        let mut q = p.to_vec();
        q[i][rng.gen_range(0..32)] ^= 1 << rng.gen_range(0..8);
        out.push(q);
    }
    let extra: Hash = rng.r#gen();
    let mut q = p.to_vec();
    q.push(extra);
    out.push(q);
    let mut q = vec![extra];
    q.extend_from_slice(p);
    out.push(q);
    if !p.is_empty() {
        out.push(p[1..].to_vec());
        out.push(p[..p.len() - 1].to_vec());
    }
    out
}

#[test]
fn inclusion_proofs_accepted_and_every_corruption_rejected() {
    let t = Tree::new(N);
    let mut rng = StdRng::seed_from_u64(6962);
    let mut rejected = 0u64;
    for _ in 0..1000 {
        let size = rng.gen_range(1..=N);
        let index = rng.gen_range(0..size);
        let root = t.root(size);
        let eh = t.entry_hashes[index as usize];
        let p = inclusion_proof(index, size, |ids| t.read(ids)).unwrap();
        verify_inclusion(&p, index, size, &eh, &root).unwrap();
        for q in corruptions(&p, &mut rng) {
            assert!(verify_inclusion(&q, index, size, &eh, &root).is_err());
            rejected += 1;
        }
        // Wrong index: the same proof claimed for a neighbour or a random other leaf.
        for j in [index.wrapping_sub(1), index + 1, rng.gen_range(0..size)] {
            if j < size && j != index {
                assert!(
                    verify_inclusion(&p, j, size, &eh, &root).is_err(),
                    "index {index}->{j} size {size}"
                );
                rejected += 1;
            }
        }
        // Wrong size: checked against the real root of the claimed size.
        for s in [size - 1, size + 1, size * 2, size / 2] {
            if s > index && s != size && s <= N {
                assert!(
                    verify_inclusion(&p, index, s, &eh, &t.root(s)).is_err(),
                    "size {size}->{s} index {index}"
                );
                rejected += 1;
            }
        }
        // Wrong entry.
        assert!(verify_inclusion(&p, index, size, &[7; 32], &root).is_err());
    }
    assert!(rejected > 10_000, "{rejected}");
}

#[test]
fn consistency_proofs_accepted_and_every_corruption_rejected() {
    let t = Tree::new(N);
    let mut rng = StdRng::seed_from_u64(9162);
    let mut rejected = 0u64;
    for _ in 0..1000 {
        let n = rng.gen_range(1..=N);
        let m = rng.gen_range(1..=n);
        let (rm, rn) = (t.root(m), t.root(n));
        let p = consistency_proof(m, n, |ids| t.read(ids)).unwrap();
        verify_consistency(&p, m, n, &rm, &rn).unwrap();
        if m == n {
            assert!(p.is_empty());
            continue;
        }
        for q in corruptions(&p, &mut rng) {
            assert!(verify_consistency(&q, m, n, &rm, &rn).is_err());
            rejected += 1;
        }
        // Wrong sizes, checked against the real roots of the claimed sizes.
        for (a, b) in [
            (m - 1, n),
            (m + 1, n),
            (m, n + 1),
            (m, n - 1),
            (m, n * 2),
            (m / 2, n),
        ] {
            if a >= 1 && a < b && b <= N && (a, b) != (m, n) {
                assert!(
                    verify_consistency(&p, a, b, &t.root(a), &t.root(b)).is_err(),
                    "{m},{n} -> {a},{b}"
                );
                rejected += 1;
            }
        }
        // Swapped or wrong roots.
        assert!(verify_consistency(&p, m, n, &rn, &rm).is_err());
        assert!(verify_consistency(&p, m, n, &rm, &[1; 32]).is_err());
        assert!(verify_consistency(&p, m, n, &[1; 32], &rn).is_err());
    }
    assert!(rejected > 5_000, "{rejected}");
    // From the empty tree: only the empty proof.
    verify_consistency(&[], 0, 5, &EMPTY_ROOT, &t.root(5)).unwrap();
    assert!(verify_consistency(&[[0; 32]], 0, 5, &EMPTY_ROOT, &t.root(5)).is_err());
}
