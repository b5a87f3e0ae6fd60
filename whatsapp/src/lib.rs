#![doc = include_str!("../README.md")]
//!
//! ## Owns / never does
//!
//! This crate owns Meta's WhatsApp Cloud API wire format: webhook subscription and signature
//! verification, payload parsing, the outbound Graph API client with error classification,
//! the 24-hour customer service window rule, rate limiting, and (feature `fake`) a local fake
//! Graph API plus a signed-webhook builder for tests.
//!
//! It must never: store anything, hold keys beyond the call it is given them for, log or put
//! personal data (names, phone numbers, BSUIDs, wamids, message bodies) into `Debug` output or
//! error messages, re-serialise a webhook body before verifying its signature, or read only the
//! first element of a batch.

pub mod backoff;
pub mod ids;
pub mod payload;
pub mod pii;
pub mod ratelimit;
pub mod send;
pub mod verify;
pub mod window;

#[cfg(feature = "fake")]
pub mod fake;

pub use backoff::{Backoff, parse_retry_after};
pub use ids::{ApiVersion, Bsuid, IdError, PhoneNumberId, Recipient, WaId, Wamid};
pub use payload::{
    ApiError, Change, Contact, Conversation, Entry, Events, InboundEvent, Interactive, Location,
    Media, Message, MessageContext, MessageKind, MessagesValue, Metadata, OrderItem, OtherChange,
    Pricing, Referral, SharedContacts, Status, StatusKind, UserIdentity, WebhookPayload,
    parse_payload,
};
pub use pii::Pii;
pub use ratelimit::{
    Clock, ManualClock, PairLimit, RateLimiter, RateLimiterConfig, RetryAfter, TokioClock,
};
pub use send::{
    AccessToken, ErrorClass, GraphClient, GraphError, RemoteTemplate, SendError, SentMessage,
    Template, classify_code,
};
pub use verify::{
    MAX_WEBHOOK_BODY_BYTES, SIGNATURE_HEADER, SignatureError, WebhookError, signature_header,
    verify_signature, verify_subscription,
};
pub use window::{CUSTOMER_SERVICE_WINDOW, OutboundKind, WindowPermit, check_window, window_open};
