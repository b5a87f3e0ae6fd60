//! Shared test helpers: build a ledger in a `MemStore`, sign checkpoints, export bundles.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use futures::executor::block_on;
use smartchat_ledger::*;

pub const ORIGIN: &str = "ledger.smartchat.test/log";

pub fn signer() -> CheckpointSigner {
    CheckpointSigner::new(ORIGIN, ed25519_dalek::SigningKey::from_bytes(&[42; 32])).unwrap()
}

pub fn other_signer() -> CheckpointSigner {
    CheckpointSigner::new(ORIGIN, ed25519_dalek::SigningKey::from_bytes(&[43; 32])).unwrap()
}

/// A varied draft for entry number `i`.
pub fn draft(i: u64) -> EntryDraft {
    let kinds = EventKind::ALL;
    let kind = kinds[(i as usize) % kinds.len()];
    let actor = match i % 5 {
        0 => Actor::System,
        1 => Actor::Member([(i % 251) as u8; 16]),
        2 => Actor::DataSubject,
        3 => Actor::Meta,
        _ => Actor::Provider(ProviderCode::ANTHROPIC.0),
    };
    let mut d = EntryDraft::new(kind, actor)
        .purpose(Purpose::SERVICE_DELIVERY)
        .reference(Reference::id(RefKind::MESSAGE, [(i % 256) as u8; 16]))
        .attr(AttrKey::TOKENS_IN, AttrValue::U64(i))
        .attr(
            AttrKey::REQUEST_DIGEST,
            AttrValue::Digest(*blake3::hash(&i.to_le_bytes()).as_bytes()),
        );
    if i % 7 != 0 {
        d = d.tenant([(i % 3) as u8 + 1; 16]);
    }
    if i % 2 == 0 {
        d = d.subject([(i % 13) as u8; 32]);
    }
    if i % 3 == 0 {
        d = d.policy_version([9; 32]).outcome(Outcome::REJECTED);
    }
    d
}

/// Appends `n` entries in batches of `batch`, signing a checkpoint after each size in `cps`.
pub fn build(n: u64, batch: u64, cps: &[u64]) -> MemStore {
    let mut store = MemStore::new();
    let s = signer();
    let mut seq = 0u64;
    let mut t = 1_700_000_000_000_000i64;
    while seq < n {
        let k = batch.min(n - seq);
        let mut end = seq + k;
        if let Some(&c) = cps.iter().find(|&&c| c > seq && c < end) {
            end = c;
        }
        let drafts = (seq..end).map(draft).collect();
        block_on(append_batch(&mut store, t, drafts)).unwrap();
        t += 1_000;
        seq = end;
        if cps.contains(&seq) {
            block_on(sign_checkpoint(&mut store, &s, t)).unwrap();
        }
    }
    store
}

pub fn export(store: &MemStore, from: u64, to: u64) -> Vec<u8> {
    let mut st = store.clone();
    block_on(export_bundle(
        &mut st,
        from,
        to,
        &signer().verifier_key(),
        Vec::new(),
    ))
    .unwrap()
}

pub fn verify(bytes: &[u8]) -> Report {
    verify_bundle(bytes, &VerifyOptions::default()).unwrap()
}
