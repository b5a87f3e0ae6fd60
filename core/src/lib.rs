//! smartchat-core: the domain, storage and key hierarchy every other part stands on.
//!
//! It owns the typed configuration, the one storage code path over PostgreSQL and SQLite
//! (`db`), the key hierarchy and crypto-shredding (`crypto`), the repositories (`store`),
//! and the ledger's storage (`audit`, `ledger_store`). It must never store personal data
//! in plaintext, log it, or put a key in an error or a `Debug` string.

pub mod analytics;
pub mod audit;
pub mod batch;
pub mod booking;
pub mod config;
pub mod conversations;
pub mod crypto;
pub mod db;
pub mod error;
pub mod follow_ups;
pub mod ids;
pub mod jobs;
pub mod leads;
pub mod ledger_store;
pub mod members;
pub mod policy_store;
pub mod priority;
pub mod rights;
pub mod rights_export;
pub mod search_feed;
pub mod settings;
pub mod store;
pub mod team;
pub mod templates;
pub mod termination;

pub use error::CoreError;
