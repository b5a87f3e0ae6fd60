#![doc = include_str!("../README.md")]
//!
//! ## What this crate owns, and what it must never do
//!
//! It owns the policy model (categories, purposes, retention, the
//! sub-processor registry, redaction rules), its loading and versioning, the
//! decision procedure (`may`), tenant tightening, registry-change notice
//! logic, redaction and the Art. 30(2) record. It must never do I/O beyond
//! reading a policy file it is given, never hold state, never talk to a
//! database or network, never log, and never put personal data in an error
//! or a deny message.

pub mod deadlines;
mod decision;
mod model;
mod policy;
mod records;
mod redact;
mod registry;
mod tenant;

pub use decision::{
    Decision, DenyCode, DenyReason, Fallback, Obligations, RequestFlag, Restriction, Scope,
    SubjectState, pseudonymous_user_id,
};
pub use model::{
    Category, CategoryRule, InvalidProcessorId, Operator, PatternRule, PolicyDoc, Processor,
    ProcessorId, Purpose, RedactionRules, RequestSettings, RetentionRule, Right, Rights, Security,
    Termination,
};
pub use policy::{
    InvalidPolicyVersion, PLATFORM_DEFAULT_FILE, PLATFORM_DEFAULT_TOML, Policy, PolicyError,
    PolicyVersion,
};
pub use records::{
    Party, ProcessingActivity, ProcessingUsage, ProcessorUsage, Records, SubProcessorRecord,
    Transfer, records_of_processing,
};
pub use redact::{
    PatternError, Redacted, RedactionKind, Redactor, luhn_check_digit, luhn_valid,
    verhoeff_check_digit, verhoeff_valid,
};
pub use registry::{ChangeId, ChangeKind, RegistryChange, diff_registries};
pub use tenant::{
    EffectivePolicy, EffectiveRetention, ProcessorOverride, RedactionOverride, RetentionOverride,
    RightsOverride, TenantContext, TenantOverrides, TerminationOverride, TightenError, Violation,
};
