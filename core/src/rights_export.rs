//! What an access or portability request returns: everything held about one subject,
//! opened in memory only for the answer (never stored): contact fields, every message both
//! ways, the lead, follow-ups, every AI-provider call made with their data (from the
//! ledger: provider, purpose, when, outcome), which sub-processors receive which categories,
//! and the retention that applies. Access gets JSON and a Markdown rendering; portability a
//! zip of JSON and CSV files with a manifest of sizes and SHA-256 checksums
//! (format `smartchat-portability/1`, documented in `docs/rights.md`).

use std::io::Write;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::Serialize;
use sha2::Digest;
use smartchat_ledger::{AttrKey, AttrValue, EventKind};

use crate::db::schema::follow_ups;
use crate::db_run;
use crate::error::CoreError;
use crate::ids::{SubjectId, TenantId};
use crate::ledger_store::Ledger;
use crate::store::Store;

/// The portability format's name and version.
pub const PORTABILITY_FORMAT: &str = "smartchat-portability/1";

/// One message in a report.
#[derive(Debug, Clone, Serialize)]
pub struct ReportMessage {
    /// Id.
    pub id: String,
    /// `in` (from the customer) or `out`.
    pub direction: String,
    /// Type.
    pub kind: String,
    /// Delivery status.
    pub status: String,
    /// Who wrote it (`customer`, `assistant`, `human`, `follow_up`).
    pub author: String,
    /// When (RFC 3339).
    pub at: String,
    /// Text or caption.
    pub text: Option<String>,
}

/// One follow-up in a report.
#[derive(Debug, Clone, Serialize)]
pub struct ReportFollowUp {
    /// Status.
    pub status: String,
    /// Why skipped or cancelled.
    pub reason: Option<String>,
    /// Due (RFC 3339).
    pub due_at: String,
}

/// One AI-provider call made with the subject's data.
#[derive(Debug, Clone, Serialize)]
pub struct ReportProviderCall {
    /// Provider (`openai`, `deepseek`, ...).
    pub provider: String,
    /// Purpose of processing.
    pub purpose: String,
    /// When (RFC 3339).
    pub at: String,
    /// Outcome.
    pub outcome: String,
    /// Data categories sent.
    pub categories: Vec<String>,
}

/// A sub-processor and what it may receive.
#[derive(Debug, Clone, Serialize)]
pub struct ReportRecipient {
    /// Name.
    pub name: String,
    /// What it does.
    pub service: String,
    /// Where it processes data.
    pub region: Option<String>,
    /// Categories it may receive.
    pub categories: Vec<String>,
}

/// Retention of one category.
#[derive(Debug, Clone, Serialize)]
pub struct ReportRetention {
    /// Category.
    pub category: String,
    /// While the account is active (days; `None`: the life of the account).
    pub while_active_days: Option<u32>,
    /// Days after the business's account ends.
    pub after_termination_days: u32,
}

/// Everything held about one subject.
#[derive(Debug, Clone, Serialize)]
pub struct AccessReport {
    /// Format.
    pub format: &'static str,
    /// When it was made (RFC 3339).
    pub generated_at: String,
    /// The business (the controller).
    pub business: String,
    /// Contact fields.
    pub contact: crate::store::SubjectContact,
    /// Messages, oldest first.
    pub messages: Vec<ReportMessage>,
    /// The lead: stage, source and details.
    pub lead: Option<serde_json::Value>,
    /// Follow-ups scheduled and sent.
    pub follow_ups: Vec<ReportFollowUp>,
    /// AI-provider calls made with the subject's data.
    pub provider_calls: Vec<ReportProviderCall>,
    /// Sub-processors and the categories they receive.
    pub recipients: Vec<ReportRecipient>,
    /// Retention per category.
    pub retention: Vec<ReportRetention>,
    /// Whether the subject objected to AI processing / opted out of follow-ups.
    pub objected_to_ai: bool,
    /// Opted out of follow-ups.
    pub opted_out_of_follow_ups: bool,
}

impl AccessReport {
    /// How many records the report holds (messages, lead, follow-ups, provider calls).
    pub fn record_count(&self) -> u64 {
        (self.messages.len()
            + usize::from(self.lead.is_some())
            + self.follow_ups.len()
            + self.provider_calls.len()) as u64
    }
}

fn rfc3339(micros: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

impl Store {
    /// Builds the access report of a subject (their key must exist).
    pub async fn access_report(
        &self,
        ledger: &Ledger,
        tenant: TenantId,
        subject: SubjectId,
    ) -> Result<AccessReport, CoreError> {
        let key = self.tenant_key(tenant).await?;
        let view = self.tenant(tenant).await?;
        let contact = self.subject_contact(tenant, subject).await?;
        let messages = self
            .subject_messages(tenant, subject)
            .await?
            .into_iter()
            .map(|m| ReportMessage {
                at: rfc3339(m.row.created_at),
                id: m.row.id,
                direction: m.row.direction,
                kind: m.row.kind,
                status: m.row.status,
                author: m.row.author,
                text: m.body,
            })
            .collect();
        let lead_id = self.lead_of_subject(tenant, subject).await?;
        let (lead, follow_ups) = match lead_id {
            Some(id) => {
                let l = self.lead(tenant, id).await?;
                let lid = id.to_string();
                let mut c = self.db.conn().await?;
                let rows: Vec<(String, Option<String>, i64)> = db_run!(c, |c| follow_ups::table
                    .filter(follow_ups::lead_id.eq(&lid))
                    .order(follow_ups::due_at)
                    .select((follow_ups::status, follow_ups::reason, follow_ups::due_at))
                    .load(c)
                    .await)?;
                (
                    Some(serde_json::json!({
                        "stage": l.stage, "source": l.source, "details": l.details,
                        "created_at": rfc3339(l.created_at), "updated_at": rfc3339(l.updated_at),
                    })),
                    rows.into_iter()
                        .map(|(status, reason, due)| ReportFollowUp {
                            status,
                            reason,
                            due_at: rfc3339(due),
                        })
                        .collect(),
                )
            }
            None => (None, Vec::new()),
        };
        let pseudonym = key.pseudonym(&subject.to_string());
        let provider_calls = ledger
            .tenant_entries(tenant.bytes())
            .await?
            .into_iter()
            .filter(|e| {
                e.entry.draft.kind == EventKind::AI_PROVIDER_CALL
                    && e.entry.draft.subject == Some(pseudonym)
            })
            .map(|e| {
                let d = &e.entry.draft;
                let mut provider = String::from("unknown");
                let mut categories = Vec::new();
                for (k, v) in &d.attrs {
                    match (*k, v) {
                        (AttrKey::PROVIDER, AttrValue::Code(c)) => {
                            provider = crate_provider_name(*c);
                        }
                        (AttrKey::DATA_CATEGORY, AttrValue::Code(c)) => {
                            categories.push(
                                u16::try_from(*c)
                                    .ok()
                                    .and_then(|c| smartchat_ledger::DataCategory(c).name())
                                    .unwrap_or("unknown")
                                    .to_owned(),
                            );
                        }
                        _ => {}
                    }
                }
                ReportProviderCall {
                    provider,
                    purpose: d.purpose.name().unwrap_or("unknown").to_owned(),
                    at: rfc3339(e.entry.time_micros),
                    outcome: d.outcome.name().unwrap_or("unknown").to_owned(),
                    categories,
                }
            })
            .collect();
        let policy = self.policy.effective(tenant).await?;
        let recipients = policy
            .doc()
            .processors
            .values()
            .map(|p| {
                let p = p.get_ref();
                ReportRecipient {
                    name: p.name.clone(),
                    service: p.service.clone(),
                    region: p.region.clone(),
                    categories: p
                        .categories
                        .get_ref()
                        .iter()
                        .map(|c| c.as_str().to_owned())
                        .collect(),
                }
            })
            .collect();
        let retention = smartchat_policies::Category::ALL
            .iter()
            .filter_map(|c| {
                policy.retention(*c).map(|r| ReportRetention {
                    category: c.as_str().to_owned(),
                    while_active_days: r.while_active_days,
                    after_termination_days: r.after_termination_days,
                })
            })
            .collect();
        let mut c = self.db.conn().await?;
        let flags = self.subject_flags(&mut c, subject).await?;
        drop(c);
        Ok(AccessReport {
            format: "smartchat-access/1",
            generated_at: rfc3339(crate::db::now_micros()),
            business: view.summary.name.clone().unwrap_or_default(),
            contact,
            messages,
            lead,
            follow_ups,
            provider_calls,
            recipients,
            retention,
            objected_to_ai: flags.objected,
            opted_out_of_follow_ups: flags.opted_out,
        })
    }
}

fn crate_provider_name(code: u32) -> String {
    u16::try_from(code)
        .ok()
        .and_then(|c| smartchat_ledger::ProviderCode(c).name())
        .unwrap_or("other")
        .to_owned()
}

/// The report as Markdown, for people.
pub fn to_markdown(r: &AccessReport) -> String {
    let mut s = String::new();
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "—".into());
    s.push_str(&format!(
        "# Your data held for {}\n\nGenerated {} by smartchat, which processes it for {} (the controller).\n\n",
        r.business, r.generated_at, r.business
    ));
    s.push_str("## Contact details\n\n");
    s.push_str(&format!(
        "- WhatsApp number: {}\n- WhatsApp user id: {}\n- Other phone: {}\n- Profile name: {}\n\n",
        opt(&r.contact.wa_id),
        opt(&r.contact.bsuid),
        opt(&r.contact.phone),
        opt(&r.contact.profile_name)
    ));
    s.push_str(&format!("## Messages ({})\n\n", r.messages.len()));
    for m in &r.messages {
        let who = if m.direction == "in" {
            "You"
        } else {
            &r.business
        };
        s.push_str(&format!(
            "- {} — {} ({}, {}): {}\n",
            m.at,
            who,
            m.author,
            m.status,
            m.text.as_deref().unwrap_or("[no text]").replace('\n', " ")
        ));
    }
    s.push_str("\n## Enquiry (lead)\n\n");
    match &r.lead {
        Some(l) => s.push_str(&format!(
            "```json\n{}\n```\n\n",
            serde_json::to_string_pretty(l).unwrap_or_default()
        )),
        None => s.push_str("None.\n\n"),
    }
    s.push_str(&format!(
        "## Follow-up messages ({})\n\n",
        r.follow_ups.len()
    ));
    for f in &r.follow_ups {
        s.push_str(&format!(
            "- due {}: {}{}\n",
            f.due_at,
            f.status,
            f.reason
                .as_ref()
                .map(|x| format!(" ({x})"))
                .unwrap_or_default()
        ));
    }
    s.push_str(&format!(
        "\n## AI providers that processed your messages ({})\n\n",
        r.provider_calls.len()
    ));
    for p in &r.provider_calls {
        s.push_str(&format!(
            "- {} — {} for {} ({}); data: {}\n",
            p.at,
            p.provider,
            p.purpose,
            p.outcome,
            p.categories.join(", ")
        ));
    }
    s.push_str("\n## Who may receive which data (sub-processors)\n\n");
    for x in &r.recipients {
        s.push_str(&format!(
            "- {} ({}; {}): {}\n",
            x.name,
            x.service,
            x.region.as_deref().unwrap_or("region not stated"),
            x.categories.join(", ")
        ));
    }
    s.push_str("\n## How long it is kept\n\n");
    for x in &r.retention {
        s.push_str(&format!(
            "- {}: {}; {} days after the business's account ends\n",
            x.category,
            x.while_active_days
                .map(|d| format!("at most {d} days"))
                .unwrap_or_else(|| "while the business's account is active".into()),
            x.after_termination_days
        ));
    }
    s.push_str(&format!(
        "\n## Your choices\n\n- Objected to AI processing: {}\n- Opted out of follow-up messages: {}\n",
        if r.objected_to_ai { "yes" } else { "no" },
        if r.opted_out_of_follow_ups { "yes" } else { "no" }
    ));
    s
}

fn csv_field(v: &str) -> String {
    // Cells that a spreadsheet would run as formulas are prefixed with a quote.
    let v = if v.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{v}")
    } else {
        v.to_owned()
    };
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v
    }
}

fn csv(rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r.iter().map(|f| csv_field(f)).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    out
}

/// The portability zip: `data.json` (the whole report), `messages.csv`, `follow_ups.csv`,
/// `provider_calls.csv`, and `manifest.json` listing each file with its size and SHA-256.
pub fn portability_zip(r: &AccessReport) -> Result<Vec<u8>, CoreError> {
    let internal = |e: &dyn std::fmt::Display| CoreError::Internal(e.to_string());
    let mut files: Vec<(&str, Vec<u8>)> = Vec::new();
    files.push((
        "data.json",
        serde_json::to_vec_pretty(r).map_err(|e| internal(&e))?,
    ));
    let mut rows = vec![vec![
        "id".to_owned(),
        "at".to_owned(),
        "direction".to_owned(),
        "author".to_owned(),
        "kind".to_owned(),
        "status".to_owned(),
        "text".to_owned(),
    ]];
    for m in &r.messages {
        rows.push(vec![
            m.id.clone(),
            m.at.clone(),
            m.direction.clone(),
            m.author.clone(),
            m.kind.clone(),
            m.status.clone(),
            m.text.clone().unwrap_or_default(),
        ]);
    }
    files.push(("messages.csv", csv(&rows).into_bytes()));
    let mut rows = vec![vec![
        "due_at".to_owned(),
        "status".to_owned(),
        "reason".to_owned(),
    ]];
    for f in &r.follow_ups {
        rows.push(vec![
            f.due_at.clone(),
            f.status.clone(),
            f.reason.clone().unwrap_or_default(),
        ]);
    }
    files.push(("follow_ups.csv", csv(&rows).into_bytes()));
    let mut rows = vec![vec![
        "at".to_owned(),
        "provider".to_owned(),
        "purpose".to_owned(),
        "outcome".to_owned(),
        "categories".to_owned(),
    ]];
    for p in &r.provider_calls {
        rows.push(vec![
            p.at.clone(),
            p.provider.clone(),
            p.purpose.clone(),
            p.outcome.clone(),
            p.categories.join(";"),
        ]);
    }
    files.push(("provider_calls.csv", csv(&rows).into_bytes()));
    let manifest = serde_json::json!({
        "format": PORTABILITY_FORMAT,
        "generated_at": r.generated_at,
        "business": r.business,
        "files": files.iter().map(|(name, bytes)| serde_json::json!({
            "name": name,
            "bytes": bytes.len(),
            "sha256": hex::encode(sha2::Sha256::digest(bytes)),
        })).collect::<Vec<_>>(),
    });
    files.push((
        "manifest.json",
        serde_json::to_vec_pretty(&manifest).map_err(|e| internal(&e))?,
    ));
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in &files {
        zip.start_file(*name, options).map_err(|e| internal(&e))?;
        zip.write_all(bytes).map_err(|e| internal(&e))?;
    }
    Ok(zip.finish().map_err(|e| internal(&e))?.into_inner())
}
