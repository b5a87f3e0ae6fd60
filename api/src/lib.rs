//! smartchat-api: the HTTP API and the `smartchat` binary's commands.
//!
//! It owns start-up (configuration, keys, databases), the axum router and the one mapping
//! of library errors to HTTP (RFC 9457 problem details). Handlers stay thin: extract,
//! authorize, call one service function, map the result. It must never put personal data
//! in a log line or a response it was not asked for, nor details of a 5xx in its body.

pub mod account;
pub mod analytics;
pub mod app;
pub mod auth;
pub mod background;
pub mod booking;
pub mod boot;
pub mod conversations;
pub mod error;
pub mod follow_ups;
pub mod ingest;
pub mod leads;
pub mod ledger_api;
pub mod metrics;
pub mod openapi;
pub mod pipeline;
pub mod portal;
pub mod rights;
pub mod search;
pub mod settings;
pub mod team;
pub mod templates;
pub mod webhook;
