#![doc = include_str!("../README.md")]
//!
//! ## What this crate owns and what it must never do
//!
//! It owns the ledger's format and logic: the canonical entry encoding and
//! hash chain, the RFC 6962 Merkle tree with inclusion and consistency
//! proofs, C2SP signed checkpoints, the export bundle and its verifier
//! (`smartchat-verify`). It must never hold personal data (entries carry
//! pseudonyms, codes, numbers, digests and ids only), never depend on other
//! smartchat crates, never need a secret to verify, and never sign two
//! checkpoints of one log without checking a consistency proof between them.

mod bundle;
mod checkpoint;
mod codes;
#[cfg(feature = "db")]
mod db;
mod entry;
mod error;
pub mod merkle;
mod store;
mod tenant_bundle;
mod verify;

pub use bundle::{
    BUNDLE_MAGIC, BUNDLE_VERSION, BatchItem, BundleCheckpoint, BundleHeader, BundleReader,
    BundleWriter, DbColumns, EntryBatch, MAX_ENTRY_LEN, RawEntry, TRAILER_MAGIC, parse_bundle,
    write_bundle,
};
pub use checkpoint::{
    Checkpoint, CheckpointSigner, TLOG_PROOF_HEADER, TlogProof, VerifierKey, open_note,
};
pub use codes::{AttrKey, DataCategory, EventKind, Outcome, ProviderCode, Purpose, RefKind, Right};
#[cfg(feature = "db")]
pub use db::verify_database;
pub use entry::{
    Actor, AttrValue, DRAFT_FORMAT_VERSION, ENTRY_FORMAT_VERSION, ENTRY_HASH_CONTEXT,
    ENTRY_HEADER_LEN, Entry, EntryDraft, EntryHeader, Hash, MAX_ATTRS, MAX_REF_LEN, MAX_REFS,
    Reference, TenantRef, check_entry, entry_hash,
};
pub use error::LedgerError;
pub use merkle::{verify_consistency, verify_inclusion};
pub use store::{
    Head, LedgerStore, MemStore, MemStoreError, StoredCheckpoint, StoredEntry, append_batch,
    export_bundle, prove_consistency, prove_inclusion, sign_checkpoint, stored_root, tlog_proof,
};
pub use tenant_bundle::{
    TENANT_BUNDLE_FORMAT, TenantBundle, TenantBundleEntry, TenantReport, tenant_bundle,
    verify_tenant_bundle,
};
pub use verify::{Failure, Progress, Report, VerifyOptions, verify_bundle};
