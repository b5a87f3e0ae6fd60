//! Changes to the sub-processor registry and their notice period
//! (GDPR Art. 28(2): general authorisation, with notice of intended changes
//! and a chance to object).
//!
//! Pure: [`diff_registries`] turns two policies into the changes to
//! announce; the caller stores them, notifies the tenants that
//! [`RegistryChange::affects`] and records objections, and passes both back
//! in a [`crate::TenantContext`] when deciding.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::model::{Category, Processor, ProcessorId, Purpose};
use crate::policy::Policy;
use crate::tenant::TenantOverrides;

/// A stable identifier of a registry change: `chg_` and 24 hex digits of
/// the blake3 digest of the new policy's version and the change. Running
/// [`diff_registries`] twice on the same policies gives the same ids.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ChangeId(pub String);

impl fmt::Display for ChangeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What changed for one processor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ChangeKind {
    /// A new processor.
    AddProcessor {
        /// What it may receive.
        categories: BTreeSet<Category>,
        /// For which purposes.
        purposes: BTreeSet<Purpose>,
        /// Where, if known.
        region: Option<String>,
    },
    /// A processor leaves the registry.
    RemoveProcessor,
    /// A category newly sent to an existing processor.
    AddCategory {
        /// The category.
        category: Category,
    },
    /// A category no longer sent.
    RemoveCategory {
        /// The category.
        category: Category,
    },
    /// A new purpose for an existing processor.
    AddPurpose {
        /// The purpose.
        purpose: Purpose,
    },
    /// A purpose no longer served.
    RemovePurpose {
        /// The purpose.
        purpose: Purpose,
    },
    /// The processing region changed (a possible new transfer).
    ChangeRegion {
        /// Before.
        from: Option<String>,
        /// After.
        to: Option<String>,
    },
    /// The processor becomes an AI provider, or a required request setting
    /// was dropped: terms that protect the data got weaker.
    WeakerTerms {
        /// What got weaker, in words.
        what: String,
    },
}

impl ChangeKind {
    /// Whether the change widens what the processor receives or how, and
    /// so needs notice and may be objected to. Narrowing changes take
    /// effect at once.
    pub fn needs_notice(&self) -> bool {
        !matches!(
            self,
            ChangeKind::RemoveProcessor
                | ChangeKind::RemoveCategory { .. }
                | ChangeKind::RemovePurpose { .. }
        )
    }
}

/// One announced change to the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryChange {
    /// Stable id; objections name it.
    pub id: ChangeId,
    /// The processor concerned.
    pub processor: ProcessorId,
    /// What changed.
    pub change: ChangeKind,
    /// When tenants were told.
    #[serde(with = "time::serde::rfc3339")]
    pub announced_at: OffsetDateTime,
    /// When it applies: `announced_at` plus the new policy's notice period
    /// for widening changes, `announced_at` for narrowing ones.
    #[serde(with = "time::serde::rfc3339")]
    pub effective_at: OffsetDateTime,
}

impl RegistryChange {
    /// Whether the change applies at `now`.
    pub fn is_effective(&self, now: OffsetDateTime) -> bool {
        now >= self.effective_at
    }

    /// Whether a tenant with these overrides must be notified: every tenant
    /// is, unless it already forbids the processor (or, for a category or
    /// purpose change, drops that category or purpose for it).
    pub fn affects(&self, overrides: &TenantOverrides) -> bool {
        if overrides.forbid_processors.contains(&self.processor) {
            return false;
        }
        let Some(o) = overrides.processors.get(&self.processor) else {
            return true;
        };
        match &self.change {
            ChangeKind::AddCategory { category } | ChangeKind::RemoveCategory { category } => o
                .categories
                .as_ref()
                .is_none_or(|allowed| allowed.contains(category)),
            ChangeKind::AddPurpose { purpose } | ChangeKind::RemovePurpose { purpose } => o
                .purposes
                .as_ref()
                .is_none_or(|allowed| allowed.contains(purpose)),
            _ => true,
        }
    }
}

/// The changes from `old` to `new`, announced at `announced_at`. Widening
/// changes take effect after `new`'s `notice_period_days`.
pub fn diff_registries(
    old: &Policy,
    new: &Policy,
    announced_at: OffsetDateTime,
) -> Vec<RegistryChange> {
    let notice = time::Duration::days(i64::from(*new.doc().notice_period_days.get_ref()));
    let effective = announced_at.saturating_add(notice);
    let new_version = new.version();
    let mut out = Vec::new();
    let mut push = |processor: &ProcessorId, change: ChangeKind| {
        let mut h = blake3::Hasher::new_derive_key("smartchat registry change v1");
        h.update(&new_version.0);
        h.update(processor.as_str().as_bytes());
        h.update(b"\0");
        h.update(
            serde_json::to_string(&change)
                .unwrap_or_default()
                .as_bytes(),
        );
        let id = ChangeId(format!("chg_{}", &h.finalize().to_hex()[..24]));
        let effective_at = if change.needs_notice() {
            effective
        } else {
            announced_at
        };
        out.push(RegistryChange {
            id,
            processor: processor.clone(),
            change,
            announced_at,
            effective_at,
        });
    };
    let old_p = &old.doc().processors;
    let new_p = &new.doc().processors;
    for (id, p) in new_p {
        let p = p.get_ref();
        let Some(o) = old_p.get(id) else {
            push(
                id,
                ChangeKind::AddProcessor {
                    categories: p.categories.get_ref().clone(),
                    purposes: p.purposes.get_ref().clone(),
                    region: p.region.clone(),
                },
            );
            continue;
        };
        diff_processor(id, o.get_ref(), p, &mut push);
    }
    for id in old_p.keys() {
        if !new_p.contains_key(id) {
            push(id, ChangeKind::RemoveProcessor);
        }
    }
    out
}

fn diff_processor(
    id: &ProcessorId,
    old: &Processor,
    new: &Processor,
    push: &mut impl FnMut(&ProcessorId, ChangeKind),
) {
    let (oc, nc) = (old.categories.get_ref(), new.categories.get_ref());
    for &category in nc.difference(oc) {
        push(id, ChangeKind::AddCategory { category });
    }
    for &category in oc.difference(nc) {
        push(id, ChangeKind::RemoveCategory { category });
    }
    let (op, np) = (old.purposes.get_ref(), new.purposes.get_ref());
    for &purpose in np.difference(op) {
        push(id, ChangeKind::AddPurpose { purpose });
    }
    for &purpose in op.difference(np) {
        push(id, ChangeKind::RemovePurpose { purpose });
    }
    if old.region != new.region {
        push(
            id,
            ChangeKind::ChangeRegion {
                from: old.region.clone(),
                to: new.region.clone(),
            },
        );
    }
    let mut weaker = Vec::new();
    if new.ai_provider && !old.ai_provider {
        weaker.push("becomes an AI provider".to_owned());
    }
    if old.request.store.is_some() && new.request.store != old.request.store {
        weaker.push("request.store no longer forced".to_owned());
    }
    if old.request.pseudonymous_user_field.is_some()
        && new.request.pseudonymous_user_field.is_none()
    {
        weaker.push("request.pseudonymous_user_field dropped".to_owned());
    }
    if old.request.no_training && !new.request.no_training {
        weaker.push("request.no_training dropped".to_owned());
    }
    if !weaker.is_empty() {
        push(
            id,
            ChangeKind::WeakerTerms {
                what: weaker.join("; "),
            },
        );
    }
}
