//! Tenant overrides and the effective policy of a tenant.
//!
//! A tenant may tighten the platform policy, never loosen it:
//! [`Policy::effective_for`] applies [`TenantOverrides`] or explains, rule by
//! rule, what would be loosened. [`Policy::effective_in`] also applies the
//! registry changes still in their notice period and the tenant's objections.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::decision::{Decision, DenyCode, Restriction, Scope, SubjectState, decide};
use crate::model::{Category, PatternRule, PolicyDoc, ProcessorId, Purpose, Right};
use crate::policy::{Policy, PolicyError, PolicyVersion, parse_toml};
use crate::redact::{Redactor, compile_pattern};
use crate::registry::{ChangeId, ChangeKind, RegistryChange};

/// How a tenant tightens the platform policy. Every field is optional; an
/// empty value changes nothing. Read from TOML ([`TenantOverrides::from_toml_str`])
/// or JSON (serde); unknown keys are refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenantOverrides {
    /// Processors this tenant's data must never reach (e.g. `deepseek`).
    pub forbid_processors: BTreeSet<ProcessorId>,
    /// Narrower category or purpose sets per processor.
    pub processors: BTreeMap<ProcessorId, ProcessorOverride>,
    /// Shorter retention per category.
    pub retention: BTreeMap<Category, RetentionOverride>,
    /// A shorter schedule after termination.
    pub termination: TerminationOverride,
    /// More redaction.
    pub redaction: RedactionOverride,
    /// A shorter answer deadline for rights requests.
    pub rights: RightsOverride,
}

/// A narrower set of categories or purposes for one processor.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProcessorOverride {
    /// The categories it may receive (a subset of the platform's).
    pub categories: Option<BTreeSet<Category>>,
    /// The purposes it may serve (a subset of the platform's).
    pub purposes: Option<BTreeSet<Purpose>>,
}

/// Shorter retention for one category.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionOverride {
    /// Maximum age while the account is active.
    pub while_active_days: Option<u32>,
    /// Days after termination.
    pub after_termination_days: Option<u32>,
    /// `false` drops the anonymized copy.
    pub keep_anonymized: Option<bool>,
}

/// A shorter schedule after termination.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TerminationOverride {
    /// Days before deletion after termination.
    pub delete_after_days: Option<u32>,
    /// `false` keeps no anonymized analytics either.
    pub keep_anonymized_analytics: Option<bool>,
}

/// More redaction: built-ins may only be switched on, patterns added.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedactionOverride {
    /// Card numbers.
    pub card: Option<bool>,
    /// Aadhaar numbers.
    pub aadhaar: Option<bool>,
    /// PAN numbers.
    pub pan: Option<bool>,
    /// E-mail addresses.
    pub email: Option<bool>,
    /// Phone numbers other than the customer's own.
    pub phone: Option<bool>,
    /// Extra patterns (placeholder `[name]`).
    pub patterns: Vec<PatternRule>,
}

/// A shorter deadline for rights requests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RightsOverride {
    /// Days to answer.
    pub response_days: Option<u32>,
}

impl TenantOverrides {
    /// Parses overrides from TOML; `file` names it in errors (with line).
    pub fn from_toml_str(text: &str, file: &str) -> Result<Self, PolicyError> {
        parse_toml(text, file)
    }
}

/// One rule the overrides would loosen (or cannot apply).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// The rule, as a dotted key (`retention.conversations.after_termination_days`).
    pub rule: String,
    /// What the tenant asks and what the platform allows.
    pub reason: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.rule, self.reason)
    }
}

/// Tenant overrides that would loosen the platform floor; lists every
/// violation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tenant policy would loosen the platform policy: {}", display_all(.violations))]
pub struct TightenError {
    /// Every rule that would be loosened or cannot apply.
    pub violations: Vec<Violation>,
}

fn display_all(v: &[Violation]) -> String {
    v.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// What the decision needs to know about a tenant: its overrides, the
/// registry changes announced to it, its objections, and the time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantContext {
    /// The tenant's overrides.
    #[serde(default)]
    pub overrides: TenantOverrides,
    /// Registry changes announced (from [`crate::diff_registries`], stored by the caller).
    #[serde(default)]
    pub changes: Vec<RegistryChange>,
    /// Changes the tenant objected to.
    #[serde(default)]
    pub objections: BTreeSet<ChangeId>,
    /// The time of the decision.
    #[serde(with = "time::serde::rfc3339")]
    pub now: OffsetDateTime,
}

impl TenantContext {
    /// A context with overrides only, no announced changes.
    pub fn new(overrides: TenantOverrides, now: OffsetDateTime) -> Self {
        Self {
            overrides,
            changes: Vec::new(),
            objections: BTreeSet::new(),
            now,
        }
    }
}

/// Retention that applies to one category for a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EffectiveRetention {
    /// Maximum age while the account is active (`None`: life of the account).
    pub while_active_days: Option<u32>,
    /// Days after termination before deletion.
    pub after_termination_days: u32,
    /// Whether an anonymized form outlives deletion.
    pub keep_anonymized: bool,
}

/// The policy that applies to one tenant: the platform policy, tightened by
/// the tenant's overrides, pending registry changes and objections.
#[derive(Debug, Clone)]
pub struct EffectivePolicy {
    doc: PolicyDoc,
    platform_version: PolicyVersion,
    version: PolicyVersion,
    restrictions: Vec<Restriction>,
    redactor: Redactor,
    valid_until: Option<OffsetDateTime>,
}

#[derive(Serialize)]
struct EffectiveCanonical<'a> {
    platform_version: PolicyVersion,
    policy: &'a PolicyDoc,
    restrictions: &'a [Restriction],
}

impl Policy {
    /// The effective policy for a tenant with these overrides (no registry
    /// changes pending). Fails, listing every rule, if the overrides would
    /// loosen the platform policy.
    pub fn effective_for(
        &self,
        overrides: &TenantOverrides,
    ) -> Result<EffectivePolicy, TightenError> {
        self.effective(overrides, &[], &BTreeSet::new(), None)
    }

    /// The effective policy for a tenant at `ctx.now`: overrides, then the
    /// registry changes still in their notice period (denied with
    /// `change_not_yet_effective`) and those the tenant objected to (denied
    /// with `tenant_objected_to_change`). Rebuild it once
    /// [`EffectivePolicy::valid_until`] has passed.
    pub fn effective_in(&self, ctx: &TenantContext) -> Result<EffectivePolicy, TightenError> {
        self.effective(&ctx.overrides, &ctx.changes, &ctx.objections, Some(ctx.now))
    }

    /// Decides for a tenant in one call ([`Policy::effective_in`], then
    /// [`EffectivePolicy::may`]). Overrides that would loosen the floor deny
    /// with `tenant_policy_invalid`. Callers deciding often should keep the
    /// effective policy instead.
    pub fn may_for(
        &self,
        ctx: &TenantContext,
        processor: &ProcessorId,
        categories: &[Category],
        purpose: Purpose,
        subject: &SubjectState,
    ) -> Decision {
        match self.effective_in(ctx) {
            Ok(eff) => eff.may(processor, categories, purpose, subject),
            Err(e) => Decision::Deny {
                reason: crate::decision::DenyReason {
                    code: DenyCode::TenantPolicyInvalid,
                    message: e.to_string(),
                    fallback: crate::decision::Fallback::OfflineAssistant,
                },
            },
        }
    }

    fn effective(
        &self,
        o: &TenantOverrides,
        changes: &[RegistryChange],
        objections: &BTreeSet<ChangeId>,
        now: Option<OffsetDateTime>,
    ) -> Result<EffectivePolicy, TightenError> {
        let mut v = Vec::new();
        let mut doc = self.doc().clone();
        let mut restrictions = Vec::new();
        apply_processors(&mut doc, o, &mut restrictions, &mut v);
        apply_retention(&mut doc, o, &mut v);
        apply_redaction(&mut doc, o, &mut v);
        if let Some(days) = o.rights.response_days {
            let platform = *doc.rights.response_days.get_ref();
            if days == 0 {
                v.push(violation(
                    "rights.response_days",
                    "must be at least 1 day".to_owned(),
                ));
            } else if days > platform {
                v.push(violation(
                    "rights.response_days",
                    format!("tenant asks {days} days, platform allows at most {platform} days"),
                ));
            } else {
                *doc.rights.response_days.get_mut() = days;
            }
        }
        if !v.is_empty() {
            return Err(TightenError { violations: v });
        }
        let mut valid_until: Option<OffsetDateTime> = None;
        if let Some(now) = now {
            for c in changes.iter().filter(|c| c.change.needs_notice()) {
                if !doc.processors.contains_key(&c.processor) {
                    // Forbidden by the tenant or gone from the registry.
                    continue;
                }
                let code = if objections.contains(&c.id) {
                    DenyCode::TenantObjectedToChange
                } else if !c.is_effective(now) {
                    valid_until =
                        Some(valid_until.map_or(c.effective_at, |u| u.min(c.effective_at)));
                    DenyCode::ChangeNotYetEffective
                } else {
                    continue;
                };
                restrict_for_change(&mut doc, &mut restrictions, c, code);
            }
        }
        let redactor = Redactor::new(&doc.redaction).map_err(|e| TightenError {
            violations: vec![violation("redaction.patterns", e.to_string())],
        })?;
        let version = if restrictions.is_empty() && &doc == self.doc() {
            self.version()
        } else {
            PolicyVersion::of(
                "smartchat effective policy v1",
                &EffectiveCanonical {
                    platform_version: self.version(),
                    policy: &doc,
                    restrictions: &restrictions,
                },
            )
            .map_err(|e| TightenError {
                violations: vec![violation("policy", e.to_string())],
            })?
        };
        Ok(EffectivePolicy {
            doc,
            platform_version: self.version(),
            version,
            restrictions,
            redactor,
            valid_until,
        })
    }
}

fn violation(rule: &str, reason: String) -> Violation {
    Violation {
        rule: rule.to_owned(),
        reason,
    }
}

fn apply_processors(
    doc: &mut PolicyDoc,
    o: &TenantOverrides,
    restrictions: &mut Vec<Restriction>,
    v: &mut Vec<Violation>,
) {
    for id in &o.forbid_processors {
        if doc.processors.remove(id).is_none() {
            v.push(violation(
                "forbid_processors",
                format!("processor {id} is not in the platform registry"),
            ));
            continue;
        }
        restrictions.push(Restriction {
            processor: id.clone(),
            scope: Scope::Processor,
            code: DenyCode::TenantForbidsProcessor,
            message: format!("the tenant's policy forbids processor {id}"),
        });
    }
    for (id, po) in &o.processors {
        if o.forbid_processors.contains(id) {
            continue;
        }
        let nothing_left = po.categories.as_ref().is_some_and(BTreeSet::is_empty)
            || po.purposes.as_ref().is_some_and(BTreeSet::is_empty);
        if nothing_left && doc.processors.remove(id).is_some() {
            // Sending nothing, or for nothing, is forbidding the processor.
            restrictions.push(Restriction {
                processor: id.clone(),
                scope: Scope::Processor,
                code: DenyCode::TenantForbidsProcessor,
                message: format!("the tenant's policy forbids processor {id}"),
            });
            continue;
        }
        let Some(p) = doc.processors.get_mut(id) else {
            v.push(violation(
                &format!("processors.{id}"),
                format!("processor {id} is not in the platform registry"),
            ));
            continue;
        };
        let p = p.get_mut();
        if let Some(want) = &po.categories {
            let extra: Vec<_> = want
                .difference(p.categories.get_ref())
                .map(|c| c.as_str())
                .collect();
            if !extra.is_empty() {
                v.push(violation(
                    &format!("processors.{id}.categories"),
                    format!(
                        "tenant asks to send {} to {id}, platform allows only {}",
                        extra.join(", "),
                        join(p.categories.get_ref().iter().map(|c| c.as_str()))
                    ),
                ));
            } else {
                for &category in p.categories.get_ref().difference(want) {
                    restrictions.push(Restriction {
                        processor: id.clone(),
                        scope: Scope::Category { category },
                        code: DenyCode::TenantForbidsProcessor,
                        message: format!("the tenant's policy does not send {category} to {id}"),
                    });
                }
                *p.categories.get_mut() = want.clone();
            }
        }
        if let Some(want) = &po.purposes {
            let extra: Vec<_> = want
                .difference(p.purposes.get_ref())
                .map(|c| c.as_str())
                .collect();
            if !extra.is_empty() {
                v.push(violation(
                    &format!("processors.{id}.purposes"),
                    format!(
                        "tenant asks to use {id} for {}, platform allows only {}",
                        extra.join(", "),
                        join(p.purposes.get_ref().iter().map(|c| c.as_str()))
                    ),
                ));
            } else {
                for &purpose in p.purposes.get_ref().difference(want) {
                    restrictions.push(Restriction {
                        processor: id.clone(),
                        scope: Scope::Purpose { purpose },
                        code: DenyCode::TenantForbidsProcessor,
                        message: format!("the tenant's policy does not use {id} for {purpose}"),
                    });
                }
                *p.purposes.get_mut() = want.clone();
            }
        }
    }
}

fn join<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let v: Vec<&str> = items.collect();
    if v.is_empty() {
        "nothing".to_owned()
    } else {
        v.join(", ")
    }
}

fn apply_retention(doc: &mut PolicyDoc, o: &TenantOverrides, v: &mut Vec<Violation>) {
    let platform_delete = *doc.termination.delete_after_days.get_ref();
    if let Some(days) = o.termination.delete_after_days {
        if days == 0 {
            v.push(violation(
                "termination.delete_after_days",
                "must be at least 1 day (the export window)".to_owned(),
            ));
        } else if days > platform_delete {
            v.push(violation(
                "termination.delete_after_days",
                format!(
                    "tenant asks {days} days, platform allows at most {platform_delete} days after termination"
                ),
            ));
        } else {
            *doc.termination.delete_after_days.get_mut() = days;
        }
    }
    match o.termination.keep_anonymized_analytics {
        Some(true) if !doc.termination.keep_anonymized_analytics => v.push(violation(
            "termination.keep_anonymized_analytics",
            "tenant asks to keep anonymized analytics, platform keeps none".to_owned(),
        )),
        Some(false) => doc.termination.keep_anonymized_analytics = false,
        _ => {}
    }
    let delete_after = *doc.termination.delete_after_days.get_ref();
    for (cat, ro) in &o.retention {
        let Some(rule) = doc.retention.get_mut(cat) else {
            v.push(violation(
                &format!("retention.{cat}"),
                format!("category {cat} is not in the platform policy"),
            ));
            continue;
        };
        let rule = rule.get_mut();
        if let Some(days) = ro.after_termination_days {
            let platform = rule.after_termination_days.unwrap_or(platform_delete);
            if days == 0 {
                v.push(violation(
                    &format!("retention.{cat}.after_termination_days"),
                    "a retention of zero days is not allowed (at least 1)".to_owned(),
                ));
            } else if days > platform {
                v.push(violation(
                    &format!("retention.{cat}.after_termination_days"),
                    format!(
                        "tenant asks {days} days, platform allows at most {platform} days after termination"
                    ),
                ));
            } else {
                rule.after_termination_days = Some(days);
            }
        }
        if let Some(days) = ro.while_active_days {
            if days == 0 {
                v.push(violation(
                    &format!("retention.{cat}.while_active_days"),
                    "a retention of zero days is not allowed (at least 1)".to_owned(),
                ));
            } else if let Some(platform) = rule.while_active_days.filter(|p| days > *p) {
                v.push(violation(
                    &format!("retention.{cat}.while_active_days"),
                    format!(
                        "tenant asks {days} days, platform allows at most {platform} days while the account is active"
                    ),
                ));
            } else {
                rule.while_active_days = Some(days);
            }
        }
        match ro.keep_anonymized {
            Some(true) if !rule.keep_anonymized => v.push(violation(
                &format!("retention.{cat}.keep_anonymized"),
                format!("tenant asks to keep anonymized {cat}, platform keeps none"),
            )),
            Some(false) => rule.keep_anonymized = false,
            _ => {}
        }
    }
    // A shorter schedule or no anonymized analytics bind every category.
    let keep_any = doc.termination.keep_anonymized_analytics;
    for rule in doc.retention.values_mut() {
        let rule = rule.get_mut();
        if let Some(after) = rule.after_termination_days {
            if after > delete_after {
                rule.after_termination_days = Some(delete_after);
            }
        }
        if !keep_any {
            rule.keep_anonymized = false;
        }
    }
}

fn apply_redaction(doc: &mut PolicyDoc, o: &TenantOverrides, v: &mut Vec<Violation>) {
    let r = &mut doc.redaction;
    for (name, want, have) in [
        ("card", o.redaction.card, &mut r.card),
        ("aadhaar", o.redaction.aadhaar, &mut r.aadhaar),
        ("pan", o.redaction.pan, &mut r.pan),
        ("email", o.redaction.email, &mut r.email),
        ("phone", o.redaction.phone, &mut r.phone),
    ] {
        match want {
            Some(false) if *have => v.push(violation(
                &format!("redaction.{name}"),
                format!("tenant asks to stop redacting {name}, platform requires it"),
            )),
            Some(true) => *have = true,
            _ => {}
        }
    }
    let mut names: BTreeSet<String> = r
        .patterns
        .iter()
        .map(|p| p.get_ref().name.clone())
        .collect();
    for (i, p) in o.redaction.patterns.iter().enumerate() {
        let rule = format!("redaction.patterns[{i}]");
        if !names.insert(p.name.clone()) {
            v.push(violation(
                &rule,
                format!("pattern name `{}` is already used", p.name),
            ));
            continue;
        }
        match compile_pattern(&p.name, &p.regex) {
            Ok(_) => r.patterns.push(toml::Spanned::new(0..0, p.clone())),
            Err(e) => v.push(violation(&rule, e.to_string())),
        }
    }
}

fn restrict_for_change(
    doc: &mut PolicyDoc,
    restrictions: &mut Vec<Restriction>,
    c: &RegistryChange,
    code: DenyCode,
) {
    let id = &c.processor;
    let why = match code {
        DenyCode::TenantObjectedToChange => {
            format!("the tenant objected to registry change {}", c.id)
        }
        _ => format!(
            "registry change {} is in its notice period until {}",
            c.id,
            c.effective_at
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
        ),
    };
    match &c.change {
        ChangeKind::AddCategory { category } => {
            if let Some(p) = doc.processors.get_mut(id) {
                p.get_mut().categories.get_mut().remove(category);
            }
            restrictions.push(Restriction {
                processor: id.clone(),
                scope: Scope::Category {
                    category: *category,
                },
                code,
                message: format!("{category} may not be sent to {id}: {why}"),
            });
        }
        ChangeKind::AddPurpose { purpose } => {
            if let Some(p) = doc.processors.get_mut(id) {
                p.get_mut().purposes.get_mut().remove(purpose);
            }
            restrictions.push(Restriction {
                processor: id.clone(),
                scope: Scope::Purpose { purpose: *purpose },
                code,
                message: format!("{id} may not be used for {purpose}: {why}"),
            });
        }
        _ => {
            doc.processors.remove(id);
            restrictions.retain(|r| &r.processor != id);
            restrictions.push(Restriction {
                processor: id.clone(),
                scope: Scope::Processor,
                code,
                message: format!("processor {id} may not be used: {why}"),
            });
        }
    }
}

impl EffectivePolicy {
    /// Decides for this tenant. See [`crate::Decision`].
    pub fn may(
        &self,
        processor: &ProcessorId,
        categories: &[Category],
        purpose: Purpose,
        subject: &SubjectState,
    ) -> Decision {
        decide(
            &self.doc,
            &self.restrictions,
            self.version,
            &self.redactor,
            processor,
            categories,
            purpose,
            subject,
        )
    }

    /// The version to record in ledger entries this policy governs: the
    /// platform version when nothing was tightened, else the digest of
    /// platform version, effective document and restrictions.
    pub fn version(&self) -> PolicyVersion {
        self.version
    }

    /// The version of the platform policy it derives from.
    pub fn platform_version(&self) -> PolicyVersion {
        self.platform_version
    }

    /// The tightened policy document.
    pub fn doc(&self) -> &PolicyDoc {
        &self.doc
    }

    /// What the platform allows but this tenant's policy denies, and why.
    pub fn restrictions(&self) -> &[Restriction] {
        &self.restrictions
    }

    /// The redactor for this tenant (platform rules plus the tenant's).
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// When a pending registry change takes effect: rebuild then.
    pub fn valid_until(&self) -> Option<OffsetDateTime> {
        self.valid_until
    }

    /// Retention for one category, `None` if the category is not declared.
    pub fn retention(&self, category: Category) -> Option<EffectiveRetention> {
        let rule = self.doc.retention.get(&category)?.get_ref();
        Some(EffectiveRetention {
            while_active_days: rule.while_active_days,
            after_termination_days: rule
                .after_termination_days
                .unwrap_or(*self.doc.termination.delete_after_days.get_ref()),
            keep_anonymized: rule.keep_anonymized && self.doc.termination.keep_anonymized_analytics,
        })
    }

    /// Whether a right is granted.
    pub fn grants(&self, right: Right) -> bool {
        self.doc.rights.granted.contains(&right)
    }

    /// Days to answer a rights request.
    pub fn response_days(&self) -> u32 {
        *self.doc.rights.response_days.get_ref()
    }

    /// Every way this policy is less strict than `floor` (empty when it is at
    /// least as strict). Independent of how the policy was built, so tests
    /// use it to check [`Policy::effective_for`].
    pub fn loosenings_against(&self, floor: &Policy) -> Vec<String> {
        let mut out = Vec::new();
        let f = floor.doc();
        let d = &self.doc;
        for (id, p) in &d.processors {
            let Some(fp) = f.processors.get(id) else {
                out.push(format!("processor {id} not in floor"));
                continue;
            };
            let (p, fp) = (p.get_ref(), fp.get_ref());
            if !p.categories.get_ref().is_subset(fp.categories.get_ref()) {
                out.push(format!("processors.{id}.categories wider"));
            }
            if !p.purposes.get_ref().is_subset(fp.purposes.get_ref()) {
                out.push(format!("processors.{id}.purposes wider"));
            }
            if p.request != fp.request || p.ai_provider != fp.ai_provider || p.region != fp.region {
                out.push(format!("processors.{id} terms differ"));
            }
        }
        for (cat, fr) in &f.retention {
            let fr = fr.get_ref();
            let Some(r) = self.retention(*cat) else {
                continue;
            };
            let f_after = fr
                .after_termination_days
                .unwrap_or(*f.termination.delete_after_days.get_ref());
            if r.after_termination_days > f_after || r.after_termination_days == 0 {
                out.push(format!("retention.{cat}.after_termination_days longer"));
            }
            if let Some(fa) = fr.while_active_days {
                if r.while_active_days.is_none_or(|a| a > fa) {
                    out.push(format!("retention.{cat}.while_active_days longer"));
                }
            }
            if r.keep_anonymized && !(fr.keep_anonymized && f.termination.keep_anonymized_analytics)
            {
                out.push(format!("retention.{cat}.keep_anonymized looser"));
            }
        }
        if d.termination.delete_after_days.get_ref() > f.termination.delete_after_days.get_ref() {
            out.push("termination.delete_after_days longer".to_owned());
        }
        if d.rights.response_days.get_ref() > f.rights.response_days.get_ref()
            || !f.rights.granted.is_subset(&d.rights.granted)
        {
            out.push("rights looser".to_owned());
        }
        let (r, fr) = (&d.redaction, &f.redaction);
        if (fr.card && !r.card)
            || (fr.aadhaar && !r.aadhaar)
            || (fr.pan && !r.pan)
            || (fr.email && !r.email)
            || (fr.phone && !r.phone)
            || !fr.patterns.iter().all(|p| r.patterns.contains(p))
        {
            out.push("redaction looser".to_owned());
        }
        if d.security != f.security {
            out.push("security differs".to_owned());
        }
        out
    }

    /// The effective policy as TOML, for `smartchat policy show`: a comment
    /// header with the versions and restrictions, then the document in the
    /// policy file format.
    pub fn to_toml_string(&self) -> Result<String, PolicyError> {
        let body =
            toml::to_string_pretty(&self.doc).map_err(|e| PolicyError::Serialize(e.to_string()))?;
        let mut out = String::new();
        out.push_str("# Effective policy\n");
        out.push_str(&format!("# version:          {}\n", self.version));
        out.push_str(&format!("# platform version: {}\n", self.platform_version));
        if let Some(until) = self.valid_until {
            let until = until
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            out.push_str(&format!(
                "# valid until:      {until} (a registry change takes effect)\n"
            ));
        }
        if self.restrictions.is_empty() {
            out.push_str("# restrictions:     none\n");
        } else {
            out.push_str("# restrictions:\n");
            for r in &self.restrictions {
                out.push_str(&format!("#   {}: {}\n", r.code, r.message));
            }
        }
        out.push('\n');
        out.push_str(&body);
        Ok(out)
    }
}

impl fmt::Display for EffectivePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.to_toml_string().map_err(|_| fmt::Error)?;
        f.write_str(&s)
    }
}
