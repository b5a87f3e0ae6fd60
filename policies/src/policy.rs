//! Loading, validating and versioning a policy file.

use std::fmt;
use std::ops::Range;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::decision::{Decision, SubjectState, decide};
use crate::model::{Category, PolicyDoc, ProcessorId, Purpose};
use crate::redact::{Redactor, compile_pattern};

/// The default platform policy, embedded at build time.
pub const PLATFORM_DEFAULT_TOML: &str = include_str!("../default/platform.toml");

/// The file name reported for errors in [`PLATFORM_DEFAULT_TOML`].
pub const PLATFORM_DEFAULT_FILE: &str = "policies/default/platform.toml";

/// A policy version: the blake3 digest (key derivation context
/// `"smartchat policy v1"`) of the policy's canonical form, its compact JSON
/// serialization with maps in key order and spans dropped. Comments, key
/// order and whitespace in the file therefore do not change it; any change of
/// meaning does. Displays and parses as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PolicyVersion(pub [u8; 32]);

impl PolicyVersion {
    pub(crate) fn of<T: Serialize>(context: &str, value: &T) -> Result<Self, serde_json::Error> {
        let canonical = serde_json::to_vec(value)?;
        let mut h = blake3::Hasher::new_derive_key(context);
        h.update(&canonical);
        Ok(Self(*h.finalize().as_bytes()))
    }
}

impl fmt::Display for PolicyVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for PolicyVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PolicyVersion({self})")
    }
}

/// A string that is not 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a policy version is 64 hex digits")]
pub struct InvalidPolicyVersion;

impl FromStr for PolicyVersion {
    type Err = InvalidPolicyVersion;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let b = s.as_bytes();
        if b.len() != 64 {
            return Err(InvalidPolicyVersion);
        }
        let nibble = |c: u8| -> Result<u8, InvalidPolicyVersion> {
            match c {
                b'0'..=b'9' => Ok(c - b'0'),
                b'a'..=b'f' => Ok(c - b'a' + 10),
                b'A'..=b'F' => Ok(c - b'A' + 10),
                _ => Err(InvalidPolicyVersion),
            }
        };
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = (nibble(b[2 * i])? << 4) | nibble(b[2 * i + 1])?;
        }
        Ok(Self(out))
    }
}

impl Serialize for PolicyVersion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PolicyVersion {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Why a policy (or tenant overrides) could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file is malformed or breaks a rule; `line` and `column` are 1-based.
    #[error("{file}:{line}:{column}: {reason}")]
    Invalid {
        /// The file as given by the caller.
        file: String,
        /// 1-based line.
        line: usize,
        /// 1-based column (in characters).
        column: usize,
        /// What is wrong.
        reason: String,
    },
    /// The file could not be read.
    #[error("cannot read policy file {file}: {source}")]
    Read {
        /// The path given.
        file: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The policy could not be serialized (a bug; never expected).
    #[error("cannot serialize policy: {0}")]
    Serialize(String),
}

impl PolicyError {
    pub(crate) fn at(file: &str, text: &str, span: Option<Range<usize>>, reason: String) -> Self {
        let (line, column) = span.map_or((1, 1), |s| line_col(text, s.start));
        PolicyError::Invalid {
            file: file.to_owned(),
            line,
            column,
            reason,
        }
    }
}

/// 1-based line and column of a byte offset.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, column)
}

/// The span of the first line that starts with `needle` (after
/// indentation), for rules about a whole section that has no value span.
fn find_key(text: &str, needle: &str) -> Option<Range<usize>> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if trimmed.starts_with(needle) {
            let start = offset + (line.len() - trimmed.len());
            return Some(start..start + needle.len());
        }
        offset += line.len();
    }
    None
}

/// Parses TOML into `T`, turning toml's errors into [`PolicyError::Invalid`].
pub(crate) fn parse_toml<T: serde::de::DeserializeOwned>(
    text: &str,
    file: &str,
) -> Result<T, PolicyError> {
    toml::from_str(text)
        .map_err(|e: toml::de::Error| PolicyError::at(file, text, e.span(), e.message().to_owned()))
}

/// A validated platform policy with its version.
#[derive(Debug, Clone)]
pub struct Policy {
    doc: PolicyDoc,
    version: PolicyVersion,
    redactor: Redactor,
}

impl PartialEq for Policy {
    fn eq(&self, other: &Self) -> bool {
        self.version == other.version
    }
}

impl Policy {
    /// The embedded default platform policy (`default/platform.toml`).
    pub fn platform_default() -> Result<Self, PolicyError> {
        Self::from_toml_str(PLATFORM_DEFAULT_TOML, PLATFORM_DEFAULT_FILE)
    }

    /// Reads and validates a policy file.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            file: file.clone(),
            source,
        })?;
        Self::from_toml_str(&text, &file)
    }

    /// Parses and validates a policy; `file` names it in errors.
    pub fn from_toml_str(text: &str, file: &str) -> Result<Self, PolicyError> {
        let doc: PolicyDoc = parse_toml(text, file)?;
        validate(&doc, text, file)?;
        Self::from_doc(doc)
    }

    /// Wraps an already validated document.
    pub(crate) fn from_doc(doc: PolicyDoc) -> Result<Self, PolicyError> {
        let version = PolicyVersion::of(POLICY_CONTEXT, &doc)
            .map_err(|e| PolicyError::Serialize(e.to_string()))?;
        let redactor = Redactor::new(&doc.redaction).map_err(|e| PolicyError::Invalid {
            file: String::new(),
            line: 1,
            column: 1,
            reason: e.to_string(),
        })?;
        Ok(Self {
            doc,
            version,
            redactor,
        })
    }

    /// The policy version to record in every ledger entry it governs.
    pub fn version(&self) -> PolicyVersion {
        self.version
    }

    /// The policy document.
    pub fn doc(&self) -> &PolicyDoc {
        &self.doc
    }

    /// The redactor built from the policy's redaction rules.
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// Decides on the platform policy alone (no tenant overrides, no pending
    /// registry changes). Call sites serving a tenant use
    /// [`crate::EffectivePolicy::may`] or [`Policy::may_for`].
    pub fn may(
        &self,
        processor: &ProcessorId,
        categories: &[Category],
        purpose: Purpose,
        subject: &SubjectState,
    ) -> Decision {
        decide(
            &self.doc,
            &[],
            self.version,
            &self.redactor,
            processor,
            categories,
            purpose,
            subject,
        )
    }

    /// The policy as TOML (re-loadable; same version).
    pub fn to_toml_string(&self) -> Result<String, PolicyError> {
        toml::to_string_pretty(&self.doc).map_err(|e| PolicyError::Serialize(e.to_string()))
    }
}

pub(crate) const POLICY_CONTEXT: &str = "smartchat policy v1";

/// Checks the rules a well-typed document must also follow.
fn validate(doc: &PolicyDoc, text: &str, file: &str) -> Result<(), PolicyError> {
    let err = |span: Range<usize>, reason: String| PolicyError::at(file, text, Some(span), reason);
    if *doc.schema.get_ref() != 1 {
        return Err(err(
            doc.schema.span(),
            format!("schema {} is not supported (only 1)", doc.schema.get_ref()),
        ));
    }
    if *doc.notice_period_days.get_ref() == 0 {
        return Err(err(
            doc.notice_period_days.span(),
            "notice_period_days must be at least 1: tenants need time to object (GDPR Art. 28(2))"
                .to_owned(),
        ));
    }
    if *doc.termination.delete_after_days.get_ref() == 0 {
        return Err(err(
            doc.termination.delete_after_days.span(),
            "termination.delete_after_days must be at least 1 (privacy policy s.9 promises an export window)"
                .to_owned(),
        ));
    }
    if *doc.rights.response_days.get_ref() == 0 || *doc.rights.response_days.get_ref() > 90 {
        return Err(err(
            doc.rights.response_days.span(),
            "rights.response_days must be 1 to 90".to_owned(),
        ));
    }
    if !doc.security.require_tls {
        return Err(PolicyError::at(
            file,
            text,
            find_key(text, "require_tls"),
            "security.require_tls must be true (privacy policy s.5, s.6: encryption in transit)"
                .to_owned(),
        ));
    }
    for (cat, rule) in &doc.categories {
        if rule.purposes.get_ref().is_empty() {
            return Err(err(
                rule.purposes.span(),
                format!(
                    "categories.{cat}.purposes is empty: a category needs at least one purpose"
                ),
            ));
        }
        if !doc.retention.contains_key(cat) {
            return Err(PolicyError::at(
                file,
                text,
                find_key(text, &format!("[categories.{cat}]")),
                format!("category {cat} has no [retention.{cat}] rule"),
            ));
        }
    }
    let delete_after = *doc.termination.delete_after_days.get_ref();
    for (cat, rule) in &doc.retention {
        let span = rule.span();
        let rule = rule.get_ref();
        if !doc.categories.contains_key(cat) {
            return Err(err(
                span,
                format!("retention.{cat}: category {cat} is not declared in [categories]"),
            ));
        }
        if rule.while_active_days == Some(0) || rule.after_termination_days == Some(0) {
            return Err(err(
                span,
                format!("retention.{cat}: a retention of zero days is not allowed (at least 1)"),
            ));
        }
        if let Some(after) = rule.after_termination_days {
            if after > delete_after {
                return Err(err(
                    span,
                    format!(
                        "retention.{cat}.after_termination_days is {after} but termination.delete_after_days is {delete_after}"
                    ),
                ));
            }
        }
        if rule.keep_anonymized && !doc.termination.keep_anonymized_analytics {
            return Err(err(
                span,
                format!(
                    "retention.{cat}.keep_anonymized needs termination.keep_anonymized_analytics = true"
                ),
            ));
        }
    }
    let has_ai = doc.processors.values().any(|p| p.get_ref().ai_provider);
    let r = &doc.redaction;
    if has_ai && !(r.card && r.aadhaar && r.pan) {
        return Err(PolicyError::at(
            file,
            text,
            find_key(text, "[redaction]"),
            "redaction.card, redaction.aadhaar and redaction.pan must be true while an AI provider is registered"
                .to_owned(),
        ));
    }
    let mut names = std::collections::BTreeSet::new();
    for p in &doc.redaction.patterns {
        let span = p.span();
        let rule = p.get_ref();
        if !names.insert(rule.name.clone()) {
            return Err(err(
                span,
                format!("redaction pattern `{}` is defined twice", rule.name),
            ));
        }
        compile_pattern(&rule.name, &rule.regex).map_err(|e| err(span.clone(), e.to_string()))?;
    }
    for (id, proc_) in &doc.processors {
        let span = proc_.span();
        let p = proc_.get_ref();
        if p.categories.get_ref().is_empty() {
            return Err(err(
                p.categories.span(),
                format!(
                    "processors.{id}.categories is empty: a processor needs at least one category"
                ),
            ));
        }
        if p.purposes.get_ref().is_empty() {
            return Err(err(
                p.purposes.span(),
                format!(
                    "processors.{id}.purposes is empty: a processor needs at least one purpose"
                ),
            ));
        }
        for cat in p.categories.get_ref() {
            if !doc.categories.contains_key(cat) {
                return Err(err(
                    p.categories.span(),
                    format!("processors.{id}: category {cat} is not declared in [categories]"),
                ));
            }
        }
        for purpose in p.purposes.get_ref() {
            let served = p.categories.get_ref().iter().any(|c| {
                doc.categories
                    .get(c)
                    .is_some_and(|r| r.purposes.get_ref().contains(purpose))
            });
            if !served {
                return Err(err(
                    p.purposes.span(),
                    format!(
                        "processors.{id}: purpose {purpose} is allowed for none of its categories"
                    ),
                ));
            }
        }
        if p.ai_provider && !p.request.no_training {
            return Err(err(
                span.clone(),
                format!(
                    "processors.{id} is an AI provider and must set request.no_training = true (privacy policy s.5)"
                ),
            ));
        }
        if p.request.store == Some(true) {
            return Err(err(
                span.clone(),
                format!(
                    "processors.{id}.request.store = true keeps data at the provider (privacy policy s.5: minimal retention)"
                ),
            ));
        }
        if p.request.pseudonymous_user_field.as_deref() == Some("") {
            return Err(err(
                span,
                format!("processors.{id}.request.pseudonymous_user_field is empty"),
            ));
        }
    }
    Ok(())
}
