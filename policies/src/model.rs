//! The policy file's shape: serde types shared by the loader (which reads
//! them from TOML) and the renderers (which write them back).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use toml::Spanned;

/// A category of personal data (privacy policy s.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Business name, type, hours, services, staff, booking links.
    BusinessInfo,
    /// Names, phone numbers and e-mail addresses of owners and their users.
    ContactInfo,
    /// Customer conversations handled by the assistant.
    Conversations,
    /// Prospective customers and their enquiries.
    LeadData,
    /// Dashboard usage and analytics events.
    UsageData,
}

impl Category {
    /// Every category, in a fixed order.
    pub const ALL: [Category; 5] = [
        Category::BusinessInfo,
        Category::ContactInfo,
        Category::Conversations,
        Category::LeadData,
        Category::UsageData,
    ];

    /// The snake_case name used in policy files and ledger entries.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::BusinessInfo => "business_info",
            Category::ContactInfo => "contact_info",
            Category::Conversations => "conversations",
            Category::LeadData => "lead_data",
            Category::UsageData => "usage_data",
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A purpose of processing (privacy policy s.3). There is no training
/// purpose: s.5 promises conversations never train foundation models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// Provide, operate and maintain the service.
    ProvideService,
    /// Process and answer customer enquiries and leads.
    RespondToEnquiries,
    /// Automated follow-up messages (s.5, last paragraph).
    FollowUps,
    /// Usage monitoring and analytics for the business owner.
    Analytics,
    /// Account communication and support.
    Support,
    /// Compliance with legal obligations and enforcement of terms.
    LegalObligations,
}

impl Purpose {
    /// Every purpose, in a fixed order.
    pub const ALL: [Purpose; 6] = [
        Purpose::ProvideService,
        Purpose::RespondToEnquiries,
        Purpose::FollowUps,
        Purpose::Analytics,
        Purpose::Support,
        Purpose::LegalObligations,
    ];

    /// The snake_case name used in policy files and ledger entries.
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::ProvideService => "provide_service",
            Purpose::RespondToEnquiries => "respond_to_enquiries",
            Purpose::FollowUps => "follow_ups",
            Purpose::Analytics => "analytics",
            Purpose::Support => "support",
            Purpose::LegalObligations => "legal_obligations",
        }
    }
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A data-subject right the policy grants (privacy policy s.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Right {
    /// A copy of the data held.
    Access,
    /// Correction of inaccurate or incomplete data.
    Correction,
    /// Deletion.
    Deletion,
    /// Objection to processing for certain purposes.
    Objection,
    /// Transfer in a machine-readable format.
    Portability,
}

impl Right {
    /// The snake_case name used in policy files.
    pub fn as_str(self) -> &'static str {
        match self {
            Right::Access => "access",
            Right::Correction => "correction",
            Right::Deletion => "deletion",
            Right::Objection => "objection",
            Right::Portability => "portability",
        }
    }
}

/// The identifier of a sub-processor in the registry (`openai`, `meta`):
/// lowercase ASCII letters, digits and `_`, 1 to 64 characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProcessorId(String);

/// Why a string is not a valid [`ProcessorId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a processor id is 1 to 64 characters of a-z, 0-9 and _")]
pub struct InvalidProcessorId;

impl ProcessorId {
    /// Validates and wraps a processor id.
    pub fn new(id: &str) -> Result<Self, InvalidProcessorId> {
        let ok = !id.is_empty()
            && id.len() <= 64
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if ok {
            Ok(Self(id.to_owned()))
        } else {
            Err(InvalidProcessorId)
        }
    }

    /// The id as written in the policy.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ProcessorId {
    type Error = InvalidProcessorId;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(&value)
    }
}

impl From<ProcessorId> for String {
    fn from(value: ProcessorId) -> Self {
        value.0
    }
}

impl fmt::Display for ProcessorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for ProcessorId {
    type Err = InvalidProcessorId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

/// A whole policy document, as in `default/platform.toml`.
///
/// Fields that need checks beyond their type carry their span in the file
/// ([`Spanned`]) so that a failed check names the line. Spans are ignored by
/// comparison and serialization.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyDoc {
    /// Format version of the file; only 1 exists.
    pub schema: Spanned<u32>,
    /// A name for people reading the file.
    pub name: String,
    /// Days between announcing a registry change and it taking effect.
    pub notice_period_days: Spanned<u32>,
    /// Who we are, for the records of processing.
    pub operator: Operator,
    /// The data categories and the purposes each may serve.
    pub categories: BTreeMap<Category, CategoryRule>,
    /// The schedule after an account ends.
    pub termination: Termination,
    /// Retention per category.
    pub retention: BTreeMap<Category, Spanned<RetentionRule>>,
    /// Data-subject rights granted and their deadline.
    pub rights: Rights,
    /// Security measures.
    pub security: Security,
    /// Identifiers to redact before any AI provider call.
    pub redaction: RedactionRules,
    /// The sub-processor registry.
    pub processors: BTreeMap<ProcessorId, Spanned<Processor>>,
}

/// The processor of record (us).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Operator {
    /// Legal name.
    pub name: String,
    /// Contact address for data-protection matters.
    pub contact: String,
    /// Website.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub website: Option<String>,
    /// Region (ISO 3166 code) where the operator and its tenants are.
    pub region: String,
}

/// What a category is and which purposes it may serve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CategoryRule {
    /// For people and the records of processing.
    pub description: String,
    /// The purposes this category may be processed for.
    pub purposes: Spanned<BTreeSet<Purpose>>,
}

/// The schedule after an account ends (privacy policy s.9).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Termination {
    /// Days data is kept after termination (export window) before deletion.
    pub delete_after_days: Spanned<u32>,
    /// Whether anonymized analytics may outlive the account.
    pub keep_anonymized_analytics: bool,
}

/// How long one category is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionRule {
    /// Maximum age while the account is active; `None` is the life of the account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub while_active_days: Option<u32>,
    /// Days after termination; `None` is `termination.delete_after_days`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_termination_days: Option<u32>,
    /// Whether an anonymized form may be kept after deletion.
    #[serde(default)]
    pub keep_anonymized: bool,
}

/// The data-subject rights granted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rights {
    /// The rights every subject has.
    pub granted: BTreeSet<Right>,
    /// Days to answer a request.
    pub response_days: Spanned<u32>,
}

/// Technical and organisational measures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Security {
    /// Every allow carries an obligation to use TLS.
    pub require_tls: bool,
    /// General description of the measures, for the records of processing.
    pub measures: Vec<String>,
}

/// Redaction rules: built-in identifiers and extra patterns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedactionRules {
    /// Payment card numbers (Luhn-checked).
    pub card: bool,
    /// Aadhaar numbers (Verhoeff-checked).
    pub aadhaar: bool,
    /// PAN numbers.
    pub pan: bool,
    /// E-mail addresses.
    pub email: bool,
    /// Phone numbers other than the customer's own.
    pub phone: bool,
    /// Extra patterns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patterns: Vec<Spanned<PatternRule>>,
}

/// An extra redaction pattern: matches become `[name]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatternRule {
    /// Placeholder name: lowercase letters, digits and `_`.
    pub name: String,
    /// A regular expression in the `regex` crate's syntax.
    pub regex: String,
}

/// One sub-processor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Processor {
    /// Legal or trade name.
    pub name: String,
    /// What it does for us.
    pub service: String,
    /// Whether it runs AI models on the data (redaction and no-training apply).
    pub ai_provider: bool,
    /// Where it processes data (ISO 3166 code), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The safeguard for a transfer outside the operator's region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer_safeguard: Option<String>,
    /// What the processor itself keeps, as documented by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_retention: Option<String>,
    /// Categories it may receive.
    pub categories: Spanned<BTreeSet<Category>>,
    /// Purposes it may receive them for.
    pub purposes: Spanned<BTreeSet<Purpose>>,
    /// Request settings every call must carry.
    #[serde(default, skip_serializing_if = "RequestSettings::is_empty")]
    pub request: RequestSettings,
}

/// Settings every request to a processor must carry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestSettings {
    /// OpenAI's `store` flag: must be sent with this value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<bool>,
    /// The request field that carries a per-subject pseudonym
    /// (`safety_identifier` for OpenAI, `user_id` for DeepSeek).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pseudonymous_user_field: Option<String>,
    /// The provider must not train on the data (required for AI providers).
    #[serde(default)]
    pub no_training: bool,
}

impl RequestSettings {
    /// Whether nothing is required.
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}
