//! Tenant bundles (`docs/ledger-format.md` section 6.1): one tenant's entries with inclusion
//! proofs against one signed checkpoint. A good bundle verifies, in the library and with
//! `smartchat-verify tenant-bundle`; a tampered entry, a tampered proof, an entry of another
//! tenant and a checkpoint signed by another key fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use futures::executor::block_on;
use smartchat_ledger::*;
use std::process::Command;

/// The tenant `draft(i)` gives every third entry (see `common::draft`).
const TENANT: [u8; 16] = [2; 16];

fn bundle_of(store: &MemStore, tenant: [u8; 16]) -> TenantBundle {
    let mut st = store.clone();
    let cp = store.checkpoints().last().unwrap().clone();
    let entries: Vec<StoredEntry> = store
        .entries()
        .iter()
        .filter(|e| e.entry.draft.tenant.map(|t| t.0) == Some(tenant))
        .cloned()
        .collect();
    block_on(tenant_bundle(
        &mut st,
        tenant,
        &cp,
        &entries,
        &signer().verifier_key(),
    ))
    .unwrap()
}

fn check(b: &TenantBundle, key: Option<&str>) -> TenantReport {
    verify_tenant_bundle(&serde_json::to_vec(b).unwrap(), key).unwrap()
}

#[test]
fn a_good_bundle_verifies_and_holds_only_its_tenant() {
    // Entries past the last checkpoint are left out: nothing proves them yet.
    let store = build(300, 64, &[200, 257]);
    let b = bundle_of(&store, TENANT);
    let expected = store
        .entries()
        .iter()
        .filter(|e| e.entry.seq < 257 && e.entry.draft.tenant.map(|t| t.0) == Some(TENANT))
        .count();
    assert!(expected > 50);
    assert_eq!(b.entries.len(), expected);
    let r = check(&b, Some(&signer().vkey()));
    assert!(r.ok(), "{r:?}");
    assert_eq!(r.entries, expected as u64);
    assert_eq!(r.checkpoint_size, 257);
    // No other tenant's entry bytes are in the file.
    let text = serde_json::to_string(&b).unwrap();
    for e in store.entries() {
        if e.entry.draft.tenant.map(|t| t.0) != Some(TENANT) {
            use base64::Engine;
            let other = base64::engine::general_purpose::STANDARD.encode(&e.bytes);
            assert!(!text.contains(&other), "entry {} leaked", e.entry.seq);
        }
    }
    // A bundle built from entries of another tenant is refused by the builder.
    let mut st = store.clone();
    let cp = store.checkpoints().last().unwrap().clone();
    let wrong: Vec<StoredEntry> = store.entries()[..10].to_vec();
    assert!(
        block_on(tenant_bundle(
            &mut st,
            TENANT,
            &cp,
            &wrong,
            &signer().verifier_key()
        ))
        .is_err()
    );
}

#[test]
fn tampering_is_detected_with_the_seq() {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let store = build(150, 50, &[150]);
    let good = bundle_of(&store, TENANT);
    let n = 3;
    let seq = good.entries[n].seq;

    // One byte of an entry changed (its stored hash kept).
    let mut t = good.clone();
    let mut bytes = b64.decode(&t.entries[n].entry).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    t.entries[n].entry = b64.encode(&bytes);
    let r = check(&t, None);
    assert_eq!(r.first_failure.as_ref().unwrap().seq, Some(seq), "{r:?}");

    // The entry re-hashed to match: its proof no longer reaches the signed root.
    let mut t2 = t.clone();
    t2.entries[n].hash = hex::encode(entry_hash(&bytes));
    let r = check(&t2, None);
    assert!(!r.ok());
    assert_eq!(r.first_failure.unwrap().seq, Some(seq));

    // One proof hash changed.
    let mut t = good.clone();
    let mut h = hex::decode(&t.entries[n].proof[0]).unwrap();
    h[0] ^= 1;
    t.entries[n].proof[0] = hex::encode(h);
    let r = check(&t, None);
    assert_eq!(r.first_failure.as_ref().unwrap().seq, Some(seq));
    assert!(r.first_failure.unwrap().what.contains("signed tree"));

    // An entry moved to another position.
    let mut t = good.clone();
    t.entries[n].seq += 1;
    assert!(!check(&t, None).ok());

    // The bundle relabelled as another tenant's: its entries are not that tenant's.
    let mut t = good.clone();
    t.tenant = hex::encode([1u8; 16]);
    assert!(!check(&t, None).ok());

    // A checkpoint signed by another key: refused with the trusted key, and also when the
    // bundle carries the other key but --key pins the real one.
    let other = other_signer();
    let cp = open_note(&good.checkpoint, &signer().verifier_key()).unwrap();
    let forged_note = other.sign_note(&cp).unwrap();
    let mut t = good.clone();
    t.checkpoint = forged_note.clone();
    let r = check(&t, Some(&signer().vkey()));
    assert!(!r.ok());
    assert!(r.first_failure.unwrap().what.contains("checkpoint"));
    let mut t = good.clone();
    t.checkpoint = forged_note;
    t.vkey = other.vkey();
    let r = check(&t, Some(&signer().vkey()));
    assert!(r.first_failure.unwrap().what.contains("trusted key"));

    assert!(check(&good, Some(&signer().vkey())).ok());
}

#[test]
fn the_cli_verifies_a_tenant_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let store = build(90, 30, &[90]);
    let good = bundle_of(&store, TENANT);
    let path = dir.path().join("tenant.json");
    std::fs::write(&path, serde_json::to_vec(&good).unwrap()).unwrap();
    let bin = || Command::new(env!("CARGO_BIN_EXE_smartchat-verify"));
    let out = bin()
        .args(["tenant-bundle"])
        .arg(&path)
        .args(["--key", &signer().vkey()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("OK"), "{stdout}");
    assert!(
        stdout.contains(&format!("{} verified", good.entries.len())),
        "{stdout}"
    );

    let out = bin()
        .args(["tenant-bundle"])
        .arg(&path)
        .args(["--key", &other_signer().vkey(), "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], false);

    let mut t = good.clone();
    t.entries[0].proof.pop();
    std::fs::write(&path, serde_json::to_vec(&t).unwrap()).unwrap();
    let out = bin()
        .args(["tenant-bundle"])
        .arg(&path)
        .args(["--key", &signer().vkey()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("FIRST BAD SEQ"));

    // Not a tenant bundle at all: a usage error (2).
    std::fs::write(&path, b"{}").unwrap();
    let out = bin().args(["tenant-bundle"]).arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}
