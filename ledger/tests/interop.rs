//! Independent implementations (Cloudflare's `signed_note` and `tlog_tiles` crates) accept our
//! checkpoints, tree layout and proofs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use futures::executor::block_on;
use signed_note::{Note, StandardVerifier, VerifierList};
use smartchat_ledger::*;

struct Reader<'a>(&'a MemStore);

impl tlog_tiles::HashReader for Reader<'_> {
    fn read_hashes(&self, ids: &[u64]) -> Result<Vec<tlog_tiles::Hash>, tlog_tiles::tlog::Error> {
        Ok(ids
            .iter()
            .map(|&i| tlog_tiles::Hash(self.0.tree()[i as usize].unwrap()))
            .collect())
    }
}

#[test]
fn signed_note_accepts_our_checkpoint_and_rejects_a_tampered_one() {
    let store = build(100, 30, &[100]);
    let cp = store.checkpoints().last().unwrap();
    let vkey = signer().vkey();
    let verifiers = VerifierList::new(vec![Box::new(StandardVerifier::new(&vkey).unwrap())]);
    let note = Note::from_bytes(cp.note.as_bytes()).unwrap();
    let (ok, _) = note.verify(&verifiers).unwrap();
    assert_eq!(ok.len(), 1);
    let parsed = tlog_tiles::Checkpoint::from_bytes(note.text()).unwrap();
    assert_eq!(parsed.origin(), ORIGIN);
    assert_eq!(parsed.size(), 100);
    assert_eq!(parsed.hash().0, cp.root);

    let tampered = cp.note.replacen("\n100\n", "\n101\n", 1);
    let note = Note::from_bytes(tampered.as_bytes()).unwrap();
    assert!(note.verify(&verifiers).is_err());

    // And our parser accepts a note signed by their implementation with our key.
    let skey_note = {
        let k = ed25519_dalek::SigningKey::from_bytes(&[42; 32]);
        let vk = signer().verifier_key();
        let mut raw = vec![1u8];
        raw.extend_from_slice(&k.to_bytes());
        use base64::Engine;
        let skey = format!(
            "PRIVATE+KEY+{ORIGIN}+{:08x}+{}",
            vk.id,
            base64::engine::general_purpose::STANDARD.encode(raw)
        );
        let theirs = signed_note::StandardSigner::new(&skey).unwrap();
        let body = Checkpoint {
            origin: ORIGIN.into(),
            size: 5,
            root: [1; 32],
        }
        .body();
        let mut n = Note::new(body.as_bytes(), &[]).unwrap();
        n.add_sigs(&[&theirs]).unwrap();
        String::from_utf8(n.to_bytes()).unwrap()
    };
    let got = open_note(&skey_note, &signer().verifier_key()).unwrap();
    assert_eq!(got.size, 5);
}

#[test]
fn tlog_tiles_agrees_on_layout_roots_and_proofs() {
    let mut store = build(777, 100, &[777]);
    let root = store.checkpoints().last().unwrap().root;
    let r = Reader(&store);
    for (level, n) in [(0u8, 0u64), (0, 776), (3, 17), (9, 1)] {
        assert_eq!(
            merkle::stored_hash_index(level, n),
            tlog_tiles::stored_hash_index(level, n)
        );
    }
    assert_eq!(
        merkle::stored_hash_count(777),
        tlog_tiles::stored_hash_count(777)
    );
    assert_eq!(tlog_tiles::tree_hash(777, &r).unwrap().0, root);
    for seq in [0u64, 1, 255, 256, 511, 776] {
        let ours = block_on(prove_inclusion(&mut store, seq, 777)).unwrap();
        let theirs = tlog_tiles::prove_record(777, seq, &Reader(&store)).unwrap();
        assert_eq!(ours, theirs.iter().map(|h| h.0).collect::<Vec<_>>());
        let leaf = tlog_tiles::record_hash(&store.entries()[seq as usize].hash);
        let p: Vec<_> = ours.iter().map(|h| tlog_tiles::Hash(*h)).collect();
        tlog_tiles::check_record(&p, 777, tlog_tiles::Hash(root), seq, leaf).unwrap();
    }
    for m in [1u64, 2, 100, 256, 500, 777] {
        let ours = block_on(prove_consistency(&mut store, m, 777)).unwrap();
        let old = block_on(stored_root(&mut store, m)).unwrap();
        let p: Vec<_> = ours.iter().map(|h| tlog_tiles::Hash(*h)).collect();
        tlog_tiles::check_tree(&p, 777, tlog_tiles::Hash(root), m, tlog_tiles::Hash(old)).unwrap();
        let theirs = tlog_tiles::prove_tree(777, m, &Reader(&store)).unwrap();
        assert_eq!(p, theirs);
    }
}

#[test]
fn tlog_proof_file_is_checked_by_tlog_tiles() {
    let mut store = build(50, 50, &[50]);
    let tp = block_on(tlog_proof(&mut store, 17)).unwrap();
    let text = tp.render();
    assert!(text.starts_with("c2sp.org/tlog-proof@v1\nindex 17\n"));
    let parsed = TlogProof::parse(&text).unwrap();
    let note = Note::from_bytes(parsed.note.as_bytes()).unwrap();
    let verifiers = VerifierList::new(vec![Box::new(
        StandardVerifier::new(&signer().vkey()).unwrap(),
    )]);
    note.verify(&verifiers).unwrap();
    let cp = tlog_tiles::Checkpoint::from_bytes(note.text()).unwrap();
    let p: Vec<_> = parsed.hashes.iter().map(|h| tlog_tiles::Hash(*h)).collect();
    let leaf = tlog_tiles::record_hash(&store.entries()[17].hash);
    tlog_tiles::check_record(&p, cp.size(), *cp.hash(), 17, leaf).unwrap();
}
