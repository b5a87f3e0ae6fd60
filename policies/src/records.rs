//! The processor's records of processing activities (GDPR Art. 30(2)),
//! generated from the effective policy and what the ledger says was done.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::model::{Category, ProcessorId, Purpose, RequestSettings};
use crate::policy::PolicyVersion;
use crate::tenant::EffectivePolicy;

/// What the ledger says was actually sent to each processor for a tenant.
/// Filled by the caller; serde so it can come from a query or a file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProcessingUsage {
    /// Contact of the controller (the business) as held on the account.
    pub controller_contact: Option<String>,
    /// Start of the period covered.
    #[serde(with = "time::serde::rfc3339::option")]
    pub period_from: Option<OffsetDateTime>,
    /// End of the period covered.
    #[serde(with = "time::serde::rfc3339::option")]
    pub period_to: Option<OffsetDateTime>,
    /// Per processor.
    pub processors: BTreeMap<ProcessorId, ProcessorUsage>,
}

/// Use of one processor in the period.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProcessorUsage {
    /// Allowed calls made.
    pub calls: u64,
    /// Calls denied by the policy.
    pub denied: u64,
    /// First call.
    #[serde(with = "time::serde::rfc3339::option")]
    pub first_at: Option<OffsetDateTime>,
    /// Last call.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_at: Option<OffsetDateTime>,
    /// Categories actually sent.
    pub categories_sent: BTreeSet<Category>,
    /// Purposes actually served.
    pub purposes: BTreeSet<Purpose>,
}

/// A party named in the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Party {
    /// Name.
    pub name: String,
    /// Contact, if known.
    pub contact: Option<String>,
}

/// One category of processing carried out for the controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessingActivity {
    /// The data category.
    pub category: Category,
    /// What it is.
    pub description: String,
    /// Purposes it serves.
    pub purposes: BTreeSet<Purpose>,
    /// Sub-processors that may receive it.
    pub recipients: Vec<ProcessorId>,
    /// Retention while the account is active, in words.
    pub retention_while_active: String,
    /// Days kept after termination.
    pub retention_after_termination_days: u32,
    /// Whether an anonymized form outlives deletion.
    pub anonymized_kept: bool,
}

/// One sub-processor as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubProcessorRecord {
    /// Registry id.
    pub id: ProcessorId,
    /// Name.
    pub name: String,
    /// Service.
    pub service: String,
    /// Whether it runs AI models.
    pub ai_provider: bool,
    /// Region, if known.
    pub region: Option<String>,
    /// Categories it may receive.
    pub categories: BTreeSet<Category>,
    /// Purposes.
    pub purposes: BTreeSet<Purpose>,
    /// Settings forced on every request.
    pub request: RequestSettings,
    /// What the provider keeps, as it documents.
    pub provider_retention: Option<String>,
    /// Use in the period, if any was recorded.
    pub usage: Option<ProcessorUsage>,
}

/// A transfer outside the operator's region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    /// The processor.
    pub processor: ProcessorId,
    /// Destination region (`None`: not known; must be confirmed).
    pub region: Option<String>,
    /// The safeguard relied on.
    pub safeguard: Option<String>,
}

/// The processor's record of processing for one controller (GDPR Art. 30(2)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Records {
    /// (a) The processor (us).
    pub processor: Party,
    /// (a) The controller (the business).
    pub controller: Party,
    /// The effective policy version the record was generated from.
    pub policy_version: PolicyVersion,
    /// The platform policy version.
    pub platform_version: PolicyVersion,
    /// Period covered by the usage figures.
    #[serde(with = "time::serde::rfc3339::option")]
    pub period_from: Option<OffsetDateTime>,
    /// Period end.
    #[serde(with = "time::serde::rfc3339::option")]
    pub period_to: Option<OffsetDateTime>,
    /// (b) Categories of processing carried out on behalf of the controller.
    pub processing: Vec<ProcessingActivity>,
    /// Sub-processors engaged.
    pub sub_processors: Vec<SubProcessorRecord>,
    /// (c) Transfers to third countries, with safeguards.
    pub transfers: Vec<Transfer>,
    /// (d) General description of security measures.
    pub security_measures: Vec<String>,
    /// Days after termination before deletion.
    pub delete_after_termination_days: u32,
    /// What the tenant's policy denies that the platform allows.
    pub restrictions: Vec<String>,
    /// Discrepancies between the ledger and the policy (should be empty).
    pub findings: Vec<String>,
}

/// Builds the Art. 30(2) record for one tenant.
pub fn records_of_processing(
    effective: &EffectivePolicy,
    tenant_name: &str,
    usage: &ProcessingUsage,
) -> Records {
    let doc = effective.doc();
    let processing = doc
        .categories
        .iter()
        .map(|(cat, rule)| {
            let r = effective.retention(*cat);
            ProcessingActivity {
                category: *cat,
                description: rule.description.clone(),
                purposes: rule.purposes.get_ref().clone(),
                recipients: doc
                    .processors
                    .iter()
                    .filter(|(_, p)| p.get_ref().categories.get_ref().contains(cat))
                    .map(|(id, _)| id.clone())
                    .collect(),
                retention_while_active: match r.and_then(|r| r.while_active_days) {
                    Some(d) => format!("at most {d} days"),
                    None => "life of the account".to_owned(),
                },
                retention_after_termination_days: r.map_or(0, |r| r.after_termination_days),
                anonymized_kept: r.is_some_and(|r| r.keep_anonymized),
            }
        })
        .collect();
    let sub_processors = doc
        .processors
        .iter()
        .map(|(id, p)| {
            let p = p.get_ref();
            SubProcessorRecord {
                id: id.clone(),
                name: p.name.clone(),
                service: p.service.clone(),
                ai_provider: p.ai_provider,
                region: p.region.clone(),
                categories: p.categories.get_ref().clone(),
                purposes: p.purposes.get_ref().clone(),
                request: p.request.clone(),
                provider_retention: p.provider_retention.clone(),
                usage: usage.processors.get(id).cloned(),
            }
        })
        .collect();
    let transfers = doc
        .processors
        .iter()
        .filter(|(_, p)| p.get_ref().region.as_deref() != Some(doc.operator.region.as_str()))
        .map(|(id, p)| Transfer {
            processor: id.clone(),
            region: p.get_ref().region.clone(),
            safeguard: p.get_ref().transfer_safeguard.clone(),
        })
        .collect();
    let mut findings = Vec::new();
    for (id, u) in &usage.processors {
        match doc.processors.get(id) {
            None if u.calls > 0 => findings.push(format!(
                "{id}: {} calls recorded, but the processor is not allowed by this policy",
                u.calls
            )),
            None => {}
            Some(p) => {
                let p = p.get_ref();
                for c in u.categories_sent.difference(p.categories.get_ref()) {
                    findings.push(format!("{id}: {c} was sent but is not allowed"));
                }
                for c in u.purposes.difference(p.purposes.get_ref()) {
                    findings.push(format!("{id}: used for {c}, which is not allowed"));
                }
            }
        }
    }
    Records {
        processor: Party {
            name: doc.operator.name.clone(),
            contact: Some(doc.operator.contact.clone()),
        },
        controller: Party {
            name: tenant_name.to_owned(),
            contact: usage.controller_contact.clone(),
        },
        policy_version: effective.version(),
        platform_version: effective.platform_version(),
        period_from: usage.period_from,
        period_to: usage.period_to,
        processing,
        sub_processors,
        transfers,
        security_measures: doc.security.measures.clone(),
        delete_after_termination_days: *doc.termination.delete_after_days.get_ref(),
        restrictions: effective
            .restrictions()
            .iter()
            .map(|r| format!("{}: {}", r.code, r.message))
            .collect(),
        findings,
    }
}

fn md(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn date(t: Option<OffsetDateTime>) -> String {
    t.and_then(|t| {
        t.format(&time::format_description::well_known::Rfc3339)
            .ok()
    })
    .unwrap_or_else(|| "-".to_owned())
}

fn list<T: std::fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    let v: Vec<String> = items.into_iter().map(|i| i.to_string()).collect();
    if v.is_empty() {
        "-".to_owned()
    } else {
        v.join(", ")
    }
}

impl Records {
    /// Renders the record as Markdown.
    pub fn to_markdown(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "# Record of processing activities (GDPR Art. 30(2))\n");
        let _ = writeln!(
            o,
            "- Processor: {} ({})",
            md(&self.processor.name),
            md(self.processor.contact.as_deref().unwrap_or("-"))
        );
        let _ = writeln!(
            o,
            "- Controller: {} ({})",
            md(&self.controller.name),
            md(self
                .controller
                .contact
                .as_deref()
                .unwrap_or("contact not on file"))
        );
        let _ = writeln!(
            o,
            "- Policy version: `{}` (platform `{}`)",
            self.policy_version, self.platform_version
        );
        let _ = writeln!(
            o,
            "- Period: {} to {}\n",
            date(self.period_from),
            date(self.period_to)
        );

        let _ = writeln!(o, "## Categories of processing\n");
        let _ = writeln!(
            o,
            "| category | description | purposes | recipients | retention while active | after termination | anonymized kept |"
        );
        let _ = writeln!(o, "|---|---|---|---|---|---|---|");
        for a in &self.processing {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} days | {} |",
                a.category,
                md(&a.description),
                list(&a.purposes),
                list(&a.recipients),
                a.retention_while_active,
                a.retention_after_termination_days,
                if a.anonymized_kept { "yes" } else { "no" }
            );
        }

        let _ = writeln!(o, "\n## Sub-processors\n");
        let _ = writeln!(
            o,
            "| id | name | service | AI | region | categories | purposes | request settings | calls | first | last | sent |"
        );
        let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|---|---|---|");
        for s in &self.sub_processors {
            let mut req = Vec::new();
            if let Some(store) = s.request.store {
                req.push(format!("store={store}"));
            }
            if let Some(f) = &s.request.pseudonymous_user_field {
                req.push(format!("{f}=pseudonym"));
            }
            if s.request.no_training {
                req.push("no training".to_owned());
            }
            let u = s.usage.clone().unwrap_or_default();
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                s.id,
                md(&s.name),
                md(&s.service),
                if s.ai_provider { "yes" } else { "no" },
                s.region.as_deref().map_or("unknown".to_owned(), md),
                list(&s.categories),
                list(&s.purposes),
                list(&req),
                u.calls,
                date(u.first_at),
                date(u.last_at),
                list(&u.categories_sent)
            );
        }

        let _ = writeln!(o, "\n## Transfers to third countries\n");
        if self.transfers.is_empty() {
            let _ = writeln!(o, "None.");
        }
        for t in &self.transfers {
            let _ = writeln!(
                o,
                "- {}: {}; safeguard: {}",
                t.processor,
                t.region
                    .as_deref()
                    .map_or("region not known, to be confirmed".to_owned(), md),
                t.safeguard.as_deref().map_or("none stated".to_owned(), md)
            );
        }

        let _ = writeln!(o, "\n## Security measures\n");
        for m in &self.security_measures {
            let _ = writeln!(o, "- {}", md(m));
        }
        let _ = writeln!(o, "\n## Retention\n");
        let _ = writeln!(
            o,
            "Data is kept while the account is active (or as capped per category above) and deleted {} days after termination.",
            self.delete_after_termination_days
        );
        let _ = writeln!(o, "\n## Restrictions set by the controller\n");
        if self.restrictions.is_empty() {
            let _ = writeln!(o, "None.");
        }
        for r in &self.restrictions {
            let _ = writeln!(o, "- {}", md(r));
        }
        let _ = writeln!(o, "\n## Findings\n");
        if self.findings.is_empty() {
            let _ = writeln!(
                o,
                "None: everything recorded in the ledger is allowed by the policy."
            );
        }
        for f in &self.findings {
            let _ = writeln!(o, "- {}", md(f));
        }
        o
    }
}
