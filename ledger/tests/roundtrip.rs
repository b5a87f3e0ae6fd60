//! Append, sign, prove, export and verify end to end.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use futures::executor::block_on;
use smartchat_ledger::*;

#[test]
fn append_sign_export_verify() {
    let store = build(300, 37, &[1, 64, 100, 257, 300]);
    assert_eq!(store.entries().len(), 300);
    assert_eq!(store.checkpoints().len(), 5);
    let bundle = export(&store, 0, 300);
    let r = verify(&bundle);
    assert!(r.ok(), "{r:?}");
    assert_eq!(r.entries, 300);
    assert_eq!(r.checkpoints, 5);
    assert_eq!(r.roots_checked, 5);
    assert_eq!(r.consistency_checked, 4);
    assert_eq!(r.latest_checkpoint.as_ref().unwrap().0, 300);
}

#[test]
fn entries_chain_and_time_never_decreases() {
    let mut store = MemStore::new();
    let a = block_on(append_batch(&mut store, 100, vec![draft(0), draft(1)])).unwrap();
    // The clock went backwards: the appender keeps the previous time.
    let b = block_on(append_batch(&mut store, 50, vec![draft(2)])).unwrap();
    assert_eq!(a[0].entry.prev, [0; 32]);
    assert_eq!(a[1].entry.prev, a[0].hash);
    assert_eq!(b[0].entry.prev, a[1].hash);
    assert_eq!(b[0].entry.time_micros, 100);
    assert_eq!(b[0].entry.seq, 2);
    assert_eq!(
        StoredEntry::from_stored(b[0].bytes.clone(), b[0].hash).unwrap(),
        b[0]
    );
}

#[test]
fn partial_bundle_verifies_with_prefix() {
    let store = build(200, 50, &[50, 150, 200]);
    let r = verify(&export(&store, 77, 200));
    assert!(r.ok(), "{r:?}");
    assert_eq!(r.entries, 123);
    assert_eq!(r.from_seq, 77);
    assert_eq!(r.roots_checked, 2);
}

#[test]
fn sign_checkpoint_same_size_returns_existing_and_refuses_a_rewritten_log() {
    let mut store = build(10, 10, &[10]);
    let s = signer();
    let again = block_on(sign_checkpoint(&mut store, &s, 5)).unwrap();
    assert_eq!(&again, store.checkpoints().last().unwrap());
    assert_eq!(store.checkpoints().len(), 1);

    // A store whose history differs from the signed checkpoint (same key, other entries).
    let mut forked = MemStore::new();
    let drafts = (100..110).map(draft).collect();
    block_on(append_batch(&mut forked, 1, drafts)).unwrap();
    block_on(forked.write_checkpoint(store.checkpoints().last().unwrap())).unwrap();
    block_on(append_batch(&mut forked, 2, vec![draft(1)])).unwrap();
    let err = block_on(sign_checkpoint(&mut forked, &s, 9)).unwrap_err();
    assert!(matches!(err, LedgerError::Inconsistent(_)), "{err}");
    assert_eq!(forked.checkpoints().len(), 1, "nothing was signed");
}

#[test]
fn proofs_from_the_store_verify() {
    let mut store = build(1000, 100, &[1000]);
    let cp = store.checkpoints().last().unwrap().clone();
    for seq in [0u64, 1, 511, 512, 999] {
        let p = block_on(prove_inclusion(&mut store, seq, 1000)).unwrap();
        let h = store.entries()[seq as usize].hash;
        verify_inclusion(&p, seq, 1000, &h, &cp.root).unwrap();
        let tp = block_on(tlog_proof(&mut store, seq)).unwrap();
        let parsed = TlogProof::parse(&tp.render()).unwrap();
        parsed.verify(&h, &signer().verifier_key()).unwrap();
        assert!(parsed.verify(&[1; 32], &signer().verifier_key()).is_err());
    }
    let r500 = block_on(stored_root(&mut store, 500)).unwrap();
    let p = block_on(prove_consistency(&mut store, 500, 1000)).unwrap();
    verify_consistency(&p, 500, 1000, &r500, &cp.root).unwrap();
    assert!(block_on(prove_inclusion(&mut store, 5, 1001)).is_err());
}

#[test]
fn prove_seq_option_checks_inclusion() {
    let store = build(130, 40, &[130]);
    let bundle = export(&store, 0, 130);
    let opts = VerifyOptions {
        prove_seq: Some(77),
        ..VerifyOptions::default()
    };
    let r = verify_bundle(&bundle[..], &opts).unwrap();
    assert!(r.ok(), "{r:?}");
    assert_eq!(r.inclusion_proven_in, Some(130));
    let opts = VerifyOptions {
        prove_seq: Some(130),
        ..VerifyOptions::default()
    };
    assert!(!verify_bundle(&bundle[..], &opts).unwrap().ok());
}

#[test]
fn trusted_key_must_match() {
    let store = build(20, 20, &[20]);
    let bundle = export(&store, 0, 20);
    let ok = VerifyOptions {
        trusted_key: Some(signer().vkey()),
        ..VerifyOptions::default()
    };
    assert!(verify_bundle(&bundle[..], &ok).unwrap().ok());
    let bad = VerifyOptions {
        trusted_key: Some(other_signer().vkey()),
        ..VerifyOptions::default()
    };
    let r = verify_bundle(&bundle[..], &bad).unwrap();
    assert!(r.first_failure.unwrap().what.contains("trusted key"));
}
