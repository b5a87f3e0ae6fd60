//! The decision API: may this processor receive these categories for this
//! purpose, for this subject, and on which conditions.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::model::{Category, PolicyDoc, ProcessorId, Purpose};
use crate::policy::PolicyVersion;
use crate::redact::{RedactionKind, Redactor};

/// What is known about the data subject when deciding.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectState {
    /// The subject objected to processing by AI providers: no AI provider
    /// may receive their data (the offline assistant or a human answers).
    #[serde(default)]
    pub objected_to_ai: bool,
    /// The subject objected to these purposes (privacy policy s.8).
    #[serde(default)]
    pub objected_purposes: BTreeSet<Purpose>,
    /// The subject opted out of follow-up messages.
    #[serde(default)]
    pub opted_out_of_follow_ups: bool,
    /// The subject's data was deleted (erasure done or in progress).
    #[serde(default)]
    pub deleted: bool,
    /// A legal hold applies: processing is not denied for it, but every
    /// allow reports it, and a deleted subject under hold may still be
    /// processed for `legal_obligations`.
    #[serde(default)]
    pub legal_hold: bool,
}

/// A request setting a call to the processor must carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "flag", rename_all = "snake_case")]
pub enum RequestFlag {
    /// Send `store` with this value (OpenAI).
    Store {
        /// The value to send.
        value: bool,
    },
    /// Send a per-subject pseudonym (see [`pseudonymous_user_id`]) in this
    /// request field (`safety_identifier`, `user_id`); never a phone number.
    PseudonymousUser {
        /// The request field.
        field: String,
    },
    /// The provider must not train on the data (contractual; the account
    /// must have training disabled).
    NoTraining,
}

/// The conditions of an allow. Serializable, for the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Obligations {
    /// The version of the policy that decided (the effective policy's).
    pub policy_version: PolicyVersion,
    /// Redactions to apply to every text sent (all kinds of the effective
    /// redactor for AI providers; none for others, who must deliver or store
    /// the message as written).
    pub redactions: Vec<RedactionKind>,
    /// Request settings to send.
    pub request_flags: Vec<RequestFlag>,
    /// Use TLS to reach the processor.
    pub require_tls: bool,
    /// The subject is under legal hold (reported, not denied).
    pub legal_hold: bool,
    /// Where the processor processes the data, if known.
    pub region: Option<String>,
    /// Whether the processor is an AI provider.
    pub ai_provider: bool,
}

/// A machine-readable deny code. `as_str` gives the stable snake_case form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DenyCode {
    /// The processor is not in the registry.
    ProcessorNotRegistered,
    /// The processor may not receive one of the categories.
    CategoryNotAllowed,
    /// The processor or a category may not be used for the purpose.
    PurposeNotAllowed,
    /// The subject objected (to AI processing or to the purpose).
    SubjectObjected,
    /// The subject opted out of follow-ups.
    SubjectOptedOut,
    /// The subject's data was deleted.
    SubjectDeleted,
    /// The tenant's policy forbids this processor or category.
    TenantForbidsProcessor,
    /// The tenant objected to the registry change that allowed this.
    TenantObjectedToChange,
    /// The registry change that allows this is still in its notice period.
    ChangeNotYetEffective,
    /// The tenant's overrides would loosen the floor (from [`crate::Policy::may_for`]).
    TenantPolicyInvalid,
}

impl DenyCode {
    /// The stable code.
    pub fn as_str(self) -> &'static str {
        match self {
            DenyCode::ProcessorNotRegistered => "processor_not_registered",
            DenyCode::CategoryNotAllowed => "category_not_allowed",
            DenyCode::PurposeNotAllowed => "purpose_not_allowed",
            DenyCode::SubjectObjected => "subject_objected",
            DenyCode::SubjectOptedOut => "subject_opted_out",
            DenyCode::SubjectDeleted => "subject_deleted",
            DenyCode::TenantForbidsProcessor => "tenant_forbids_processor",
            DenyCode::TenantObjectedToChange => "tenant_objected_to_change",
            DenyCode::ChangeNotYetEffective => "change_not_yet_effective",
            DenyCode::TenantPolicyInvalid => "tenant_policy_invalid",
        }
    }
}

impl fmt::Display for DenyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where denied work should go instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fallback {
    /// Answer with the offline assistant (no AI provider).
    OfflineAssistant,
    /// Hand the work to a person at the business.
    Human,
    /// Do not do the work at all (deleted subject, opted out of follow-ups).
    Drop,
}

/// Why a decision denied. The message names processors, categories and
/// purposes only, never personal data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DenyReason {
    /// The machine-readable code.
    pub code: DenyCode,
    /// A sentence for people.
    pub message: String,
    /// Where the work should go instead.
    pub fallback: Fallback,
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// The answer of `may`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// Go ahead, honouring the obligations.
    Allow {
        /// What the caller must do.
        obligations: Obligations,
    },
    /// Do not send; route to the fallback and ledger the reason.
    Deny {
        /// Why.
        reason: DenyReason,
    },
}

impl Decision {
    /// Whether the decision allows.
    pub fn is_allow(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }

    /// The obligations of an allow.
    pub fn obligations(&self) -> Option<&Obligations> {
        match self {
            Decision::Allow { obligations } => Some(obligations),
            Decision::Deny { .. } => None,
        }
    }

    /// The reason of a deny.
    pub fn deny_reason(&self) -> Option<&DenyReason> {
        match self {
            Decision::Allow { .. } => None,
            Decision::Deny { reason } => Some(reason),
        }
    }

    /// Where denied work should go; `None` for an allow.
    pub fn fallback(&self) -> Option<Fallback> {
        self.deny_reason().map(|r| r.fallback)
    }
}

/// A tenant-level restriction on something the platform allows: the
/// processor as a whole, one category for it or one purpose for it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "scope", rename_all = "snake_case")]
pub enum Scope {
    /// The whole processor.
    Processor,
    /// One category sent to it.
    Category {
        /// The category.
        category: Category,
    },
    /// One purpose it serves.
    Purpose {
        /// The purpose.
        purpose: Purpose,
    },
}

/// Why something the platform allows is denied for a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restriction {
    /// The processor concerned.
    pub processor: ProcessorId,
    /// What of it is restricted.
    #[serde(flatten)]
    pub scope: Scope,
    /// The deny code to answer with.
    pub code: DenyCode,
    /// A sentence for people.
    pub message: String,
}

/// A per-subject pseudonym for a provider's user field: hex of the keyed
/// blake3 hash of processor and subject reference under a per-tenant secret
/// key. Stable per (key, processor, subject), unlinkable across processors
/// and tenants, and reveals nothing without the key.
pub fn pseudonymous_user_id(
    tenant_key: &[u8; 32],
    processor: &ProcessorId,
    subject_ref: &str,
) -> String {
    let mut h = blake3::Hasher::new_keyed(tenant_key);
    h.update(b"smartchat pseudonymous user v1\0");
    h.update(processor.as_str().as_bytes());
    h.update(b"\0");
    h.update(subject_ref.as_bytes());
    let hash = h.finalize();
    hash.to_hex()[..32].to_owned()
}

fn deny(code: DenyCode, message: String, fallback: Fallback) -> Decision {
    Decision::Deny {
        reason: DenyReason {
            code,
            message,
            fallback,
        },
    }
}

/// The single decision procedure behind every `may`.
#[expect(
    clippy::too_many_arguments,
    reason = "internal; callers pass their own fields"
)]
pub(crate) fn decide(
    doc: &PolicyDoc,
    restrictions: &[Restriction],
    version: PolicyVersion,
    redactor: &Redactor,
    processor: &ProcessorId,
    categories: &[Category],
    purpose: Purpose,
    subject: &SubjectState,
) -> Decision {
    // Work that cannot reach an AI provider can still be done by the offline
    // assistant; work for a messaging or hosting processor needs a person.
    let ai = doc
        .processors
        .get(processor)
        .map(|p| p.get_ref().ai_provider)
        .unwrap_or(true);
    let fallback = if ai {
        Fallback::OfflineAssistant
    } else {
        Fallback::Human
    };

    if subject.deleted && !(subject.legal_hold && purpose == Purpose::LegalObligations) {
        return deny(
            DenyCode::SubjectDeleted,
            "the subject's data was deleted; nothing may be processed".to_owned(),
            Fallback::Drop,
        );
    }

    let restricted = |scope: &Scope| {
        restrictions
            .iter()
            .find(|r| &r.processor == processor && &r.scope == scope)
    };
    let from_restriction = |r: &Restriction| deny(r.code, r.message.clone(), fallback);

    let Some(p) = doc.processors.get(processor) else {
        if let Some(r) = restricted(&Scope::Processor) {
            return from_restriction(r);
        }
        return deny(
            DenyCode::ProcessorNotRegistered,
            format!("processor {processor} is not in the sub-processor registry"),
            fallback,
        );
    };
    let p = p.get_ref();
    if let Some(r) = restricted(&Scope::Processor) {
        return from_restriction(r);
    }
    for &category in categories {
        if let Some(r) = restricted(&Scope::Category { category }) {
            return from_restriction(r);
        }
        if !p.categories.get_ref().contains(&category) {
            return deny(
                DenyCode::CategoryNotAllowed,
                format!("processor {processor} may not receive {category}"),
                fallback,
            );
        }
    }
    if let Some(r) = restricted(&Scope::Purpose { purpose }) {
        return from_restriction(r);
    }
    if !p.purposes.get_ref().contains(&purpose) {
        return deny(
            DenyCode::PurposeNotAllowed,
            format!("processor {processor} may not be used for {purpose}"),
            fallback,
        );
    }
    for &category in categories {
        let allowed = doc
            .categories
            .get(&category)
            .is_some_and(|c| c.purposes.get_ref().contains(&purpose));
        if !allowed {
            return deny(
                DenyCode::PurposeNotAllowed,
                format!("{category} may not be processed for {purpose}"),
                fallback,
            );
        }
    }
    if p.ai_provider && subject.objected_to_ai {
        return deny(
            DenyCode::SubjectObjected,
            format!("the subject objected to AI processing; {processor} is an AI provider"),
            fallback,
        );
    }
    if subject.objected_purposes.contains(&purpose) {
        return deny(
            DenyCode::SubjectObjected,
            format!("the subject objected to processing for {purpose}"),
            fallback,
        );
    }
    if purpose == Purpose::FollowUps && subject.opted_out_of_follow_ups {
        return deny(
            DenyCode::SubjectOptedOut,
            "the subject opted out of follow-ups".to_owned(),
            Fallback::Drop,
        );
    }

    let mut request_flags = Vec::new();
    if let Some(store) = p.request.store {
        request_flags.push(RequestFlag::Store { value: store });
    }
    if let Some(field) = &p.request.pseudonymous_user_field {
        request_flags.push(RequestFlag::PseudonymousUser {
            field: field.clone(),
        });
    }
    if p.request.no_training {
        request_flags.push(RequestFlag::NoTraining);
    }
    Decision::Allow {
        obligations: Obligations {
            policy_version: version,
            redactions: if p.ai_provider {
                redactor.kinds()
            } else {
                Vec::new()
            },
            request_flags,
            require_tls: doc.security.require_tls,
            legal_hold: subject.legal_hold,
            region: p.region.clone(),
            ai_provider: p.ai_provider,
        },
    }
}
