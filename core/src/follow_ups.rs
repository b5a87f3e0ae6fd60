//! Follow-up rules and the follow-ups they produce. A rule says when (a trigger and a
//! delay), what (a free text, sealed under the tenant's data key), how often (at most K per
//! lead, at least M minutes apart) and whether only within opening hours. A follow-up row
//! exists once per (rule, lead, sequence number), whichever process scheduled it, and its
//! status moves once from `scheduled` to `sent`, `skipped` or `cancelled`.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::{Deserialize, Serialize};
use smartchat_ledger::{
    Actor, AttrKey, AttrValue, EntryDraft, EventKind, Purpose, RefKind, Reference,
};

use crate::audit;
use crate::db::now_micros;
use crate::db::schema::{follow_up_rules, follow_ups, leads, messages};
use crate::db::{Tx, is_unique_violation};
use crate::db_run;
use crate::error::CoreError;
use crate::ids::{ConversationId, LeadId, SubjectId, TenantId};
use crate::leads::STAGES;
use crate::store::Store;

/// The 24-hour customer service window, in minutes: free text only inside it.
pub const WINDOW_MINUTES: i64 = 24 * 60;

/// When a rule fires.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Trigger {
    /// The business wrote last and the customer has not answered for `after_minutes`.
    NoReply,
    /// The lead has been in `stage` for `after_minutes`.
    StageFor {
        /// The stage.
        stage: String,
    },
    /// A booking link was sent (the last message of the business holds one of the profile's
    /// booking URLs) and the lead is not booked after `after_minutes`.
    BookingUnconfirmed,
}

/// A rule as given by the business.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// A name for the business.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 100))]
    pub name: String,
    /// When.
    pub trigger: Trigger,
    /// Delay after the trigger's moment, in minutes (> 0, at most 90 days).
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 129600))]
    pub after_minutes: i64,
    /// The free-text message (up to 4,096 characters), sent while the customer's 24-hour
    /// window is open. May be empty when a template is given.
    #[serde(default)]
    pub message: String,
    /// An approved template, sent when the window is closed (or always, without a free
    /// text). Checked against the tenant's templates when the rule is saved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<TemplateUse>,
    /// At most this many follow-ups of this rule per lead (1 to 10).
    #[serde(default = "one")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 10))]
    pub max_per_lead: i32,
    /// At least this many minutes between two follow-ups of this rule to one lead.
    #[serde(default)]
    pub min_gap_minutes: i64,
    /// Only within the business's opening hours, in its time zone.
    #[serde(default = "yes")]
    pub respect_hours: bool,
    /// Send a follow-up whose moment passed while the server was down (more than a day
    /// late); when false, it is skipped and ledgered as missed.
    #[serde(default = "yes")]
    pub catch_up: bool,
    /// Whether the rule runs.
    #[serde(default = "yes")]
    pub enabled: bool,
}

pub use crate::templates::TemplateUse;

/// Values filled in at sending time: the customer's name (the lead's, else their WhatsApp
/// profile name, else "there"), the business name, its first booking link, and the service
/// the lead asked about (else "our services").
pub const TEMPLATE_VARIABLES: &[&str] = &[
    "{customer_name}",
    "{business_name}",
    "{booking_link}",
    "{service}",
];

fn one() -> i32 {
    1
}
fn yes() -> bool {
    true
}

/// A stored rule.
#[derive(Debug, Clone, Serialize)]
pub struct Rule {
    /// Id.
    pub id: String,
    /// The rule.
    #[serde(flatten)]
    pub spec: RuleSpec,
}

/// In the API's OpenAPI document: the id and the fields of [`RuleSpec`] in one object (a
/// derived schema would keep the spec's `additionalProperties: false`, which the id breaks).
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Rule {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::RefOr;
        use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
        let mut rule = ObjectBuilder::new()
            .description(Some("A stored rule: its id and the rule as given."))
            .property(
                "id",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some("Id.")),
            )
            .required("id");
        if let RefOr::T(Schema::Object(spec)) = <RuleSpec as utoipa::PartialSchema>::schema() {
            for (name, property) in spec.properties {
                rule = rule.property(name, property);
            }
            for name in spec.required {
                rule = rule.required(name);
            }
        }
        rule.into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Rule {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        <RuleSpec as utoipa::ToSchema>::schemas(schemas);
    }
}

impl RuleSpec {
    /// Checks what can be checked without the business profile: a positive delay, sane
    /// limits, a known stage, a message WhatsApp accepts, and that a free-text message
    /// after "no reply" for a day or more would fall outside the 24-hour window.
    pub fn validate(&self) -> Result<(), CoreError> {
        let bad = |reason: String| {
            Err(CoreError::Invalid {
                field: "follow-up rule",
                reason,
            })
        };
        if self.name.trim().is_empty() || self.name.chars().count() > 100 {
            return bad("name: 1 to 100 characters".into());
        }
        if self.after_minutes <= 0 || self.after_minutes > 90 * 24 * 60 {
            return bad("after_minutes: more than 0 and at most 90 days".into());
        }
        let chars = self.message.trim().chars().count();
        if chars > 4096 || (chars == 0 && self.template.is_none()) {
            return bad("message: 1 to 4096 characters (or give a template)".into());
        }
        if let Some(t) = &self.template {
            if t.name.trim().is_empty() || t.language.trim().is_empty() {
                return bad("template: name and language are required".into());
            }
            for p in &t.params {
                let n = p.chars().count();
                if n == 0 || n > 1024 {
                    return bad("template params: 1 to 1024 characters each".into());
                }
                if p.starts_with('{')
                    && p.ends_with('}')
                    && !TEMPLATE_VARIABLES.contains(&p.as_str())
                {
                    return bad(format!(
                        "template param {p} is not a known variable ({})",
                        TEMPLATE_VARIABLES.join(", ")
                    ));
                }
            }
        }
        if !(1..=10).contains(&self.max_per_lead) {
            return bad("max_per_lead: 1 to 10".into());
        }
        if self.min_gap_minutes < 0 {
            return bad("min_gap_minutes: not negative".into());
        }
        if let Trigger::StageFor { stage } = &self.trigger {
            if !STAGES.contains(&stage.as_str()) {
                return bad(format!("stage: one of {}", STAGES.join(", ")));
            }
        }
        if matches!(self.trigger, Trigger::NoReply | Trigger::BookingUnconfirmed)
            && self.after_minutes >= WINDOW_MINUTES
            && self.template.is_none()
        {
            return bad(
                "a free-text follow-up a day or more after the customer's last message falls outside WhatsApp's 24-hour window; use a shorter delay or an approved template"
                    .into(),
            );
        }
        Ok(())
    }
}

/// A lead a rule may follow up now.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The lead.
    pub lead_id: LeadId,
    /// Its customer.
    pub subject_id: SubjectId,
    /// The conversation to write in.
    pub conversation_id: ConversationId,
    /// The trigger's moment (unix micros): due = anchor + delay.
    pub anchor_at: i64,
}

/// A follow-up row.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct FollowUp {
    /// Id.
    pub id: String,
    /// Its rule.
    pub rule_id: String,
    /// Its lead.
    pub lead_id: String,
    /// The conversation.
    pub conversation_id: String,
    /// 1 for the first follow-up of this rule to this lead, 2 for the second, ...
    pub seq: i32,
    /// The trigger's moment.
    pub anchor_at: i64,
    /// When it was due.
    pub due_at: i64,
    /// `scheduled`, `sent`, `skipped`, `cancelled`.
    pub status: String,
    /// Why it was skipped or cancelled.
    pub reason: Option<String>,
    /// The message sent.
    pub message_id: Option<String>,
}

type RuleRow = (
    String,
    String,
    String,
    Option<String>,
    i64,
    Vec<u8>,
    i32,
    i64,
    bool,
    bool,
    bool,
    Option<Vec<u8>>,
);

fn message_context(tenant: &str, rule: &str) -> String {
    format!("follow_up_rules.message_ct|{tenant}|{rule}")
}

fn template_context(tenant: &str, rule: &str) -> String {
    format!("follow_up_rules.template_ct|{tenant}|{rule}")
}

impl Store {
    /// Stores a new rule (validated), ledgered as a settings change by `actor`.
    pub async fn create_rule(
        &self,
        tenant: TenantId,
        spec: &RuleSpec,
        actor: Actor,
    ) -> Result<String, CoreError> {
        spec.validate()?;
        let id = uuid::Uuid::now_v7().to_string();
        self.write_rule(tenant, &id, spec, actor, true).await?;
        Ok(id)
    }

    /// Replaces a rule of `tenant` (`NotFound` for another tenant's).
    pub async fn replace_rule(
        &self,
        tenant: TenantId,
        id: &str,
        spec: &RuleSpec,
        actor: Actor,
    ) -> Result<(), CoreError> {
        spec.validate()?;
        self.rule(tenant, id).await?;
        self.write_rule(tenant, id, spec, actor, false).await
    }

    async fn write_rule(
        &self,
        tenant: TenantId,
        id: &str,
        spec: &RuleSpec,
        actor: Actor,
        new: bool,
    ) -> Result<(), CoreError> {
        let tid = tenant.to_string();
        let key = self.tenant_key(tenant).await?;
        let ct = key.seal(&message_context(&tid, id), spec.message.trim().as_bytes())?;
        let template_ct = match &spec.template {
            Some(t) => Some(key.seal(
                &template_context(&tid, id),
                &serde_json::to_vec(t).map_err(|e| CoreError::Internal(e.to_string()))?,
            )?),
            None => None,
        };
        let (kind, stage) = match &spec.trigger {
            Trigger::NoReply => ("no_reply", None),
            Trigger::StageFor { stage } => ("stage_for", Some(stage.clone())),
            Trigger::BookingUnconfirmed => ("booking_unconfirmed", None),
        };
        let now = now_micros();
        let mut tx = self.db.begin().await?;
        if new {
            db_run!(tx, |c| diesel::insert_into(follow_up_rules::table)
                .values((
                    follow_up_rules::id.eq(id),
                    follow_up_rules::tenant_id.eq(&tid),
                    follow_up_rules::name.eq(spec.name.trim()),
                    follow_up_rules::trigger_kind.eq(kind),
                    follow_up_rules::trigger_stage.eq(&stage),
                    follow_up_rules::after_minutes.eq(spec.after_minutes),
                    follow_up_rules::message_ct.eq(&ct),
                    follow_up_rules::max_per_lead.eq(spec.max_per_lead),
                    follow_up_rules::min_gap_minutes.eq(spec.min_gap_minutes),
                    follow_up_rules::respect_hours.eq(spec.respect_hours),
                    follow_up_rules::catch_up.eq(spec.catch_up),
                    follow_up_rules::enabled.eq(spec.enabled),
                    follow_up_rules::template_ct.eq(&template_ct),
                    follow_up_rules::created_at.eq(now),
                    follow_up_rules::updated_at.eq(now),
                ))
                .execute(c)
                .await)?;
        } else {
            db_run!(tx, |c| diesel::update(follow_up_rules::table.find(id))
                .set((
                    follow_up_rules::name.eq(spec.name.trim()),
                    follow_up_rules::trigger_kind.eq(kind),
                    follow_up_rules::trigger_stage.eq(&stage),
                    follow_up_rules::after_minutes.eq(spec.after_minutes),
                    follow_up_rules::message_ct.eq(&ct),
                    follow_up_rules::max_per_lead.eq(spec.max_per_lead),
                    follow_up_rules::min_gap_minutes.eq(spec.min_gap_minutes),
                    follow_up_rules::respect_hours.eq(spec.respect_hours),
                    follow_up_rules::catch_up.eq(spec.catch_up),
                    follow_up_rules::enabled.eq(spec.enabled),
                    follow_up_rules::template_ct.eq(&template_ct),
                    follow_up_rules::updated_at.eq(now),
                ))
                .execute(c)
                .await)?;
        }
        audit::enqueue(
            &mut tx,
            &EntryDraft::new(EventKind::ASSISTANT_SETTINGS_CHANGED, actor)
                .tenant(tenant.bytes())
                .purpose(Purpose::FOLLOW_UP)
                .reference(Reference::digest(
                    RefKind::RECORD_DIGEST,
                    *blake3::hash(id.as_bytes()).as_bytes(),
                )),
        )
        .await?;
        tx.commit().await
    }

    /// The tenant's rules, oldest first.
    pub async fn rules(&self, tenant: TenantId) -> Result<Vec<Rule>, CoreError> {
        self.load_rules(tenant, None).await
    }

    /// One rule of `tenant`.
    pub async fn rule(&self, tenant: TenantId, id: &str) -> Result<Rule, CoreError> {
        self.load_rules(tenant, Some(id))
            .await?
            .pop()
            .ok_or(CoreError::NotFound {
                what: "follow-up rule",
            })
    }

    async fn load_rules(
        &self,
        tenant: TenantId,
        only: Option<&str>,
    ) -> Result<Vec<Rule>, CoreError> {
        let tid = tenant.to_string();
        let key = self.tenant_key(tenant).await?;
        let mut c = self.db.conn().await?;
        let only = only.map(str::to_owned);
        let rows: Vec<RuleRow> = db_run!(c, |c| {
            let mut q = follow_up_rules::table
                .filter(follow_up_rules::tenant_id.eq(&tid))
                .into_boxed();
            if let Some(id) = &only {
                q = q.filter(follow_up_rules::id.eq(id));
            }
            q.order(follow_up_rules::created_at)
                .select((
                    follow_up_rules::id,
                    follow_up_rules::name,
                    follow_up_rules::trigger_kind,
                    follow_up_rules::trigger_stage,
                    follow_up_rules::after_minutes,
                    follow_up_rules::message_ct,
                    follow_up_rules::max_per_lead,
                    follow_up_rules::min_gap_minutes,
                    follow_up_rules::respect_hours,
                    follow_up_rules::catch_up,
                    follow_up_rules::enabled,
                    follow_up_rules::template_ct,
                ))
                .load(c)
                .await
        })?;
        rows.into_iter()
            .map(
                |(id, name, kind, stage, after, ct, max, gap, hours, catch_up, enabled, tct)| {
                    let message = String::from_utf8(key.open(&message_context(&tid, &id), &ct)?)
                        .map_err(|_| CoreError::Crypto("rule message is not UTF-8".into()))?;
                    let template = match tct {
                        Some(tct) => Some(
                            serde_json::from_slice(&key.open(&template_context(&tid, &id), &tct)?)
                                .map_err(|_| {
                                    CoreError::Crypto("rule template is not JSON".into())
                                })?,
                        ),
                        None => None,
                    };
                    let trigger = match kind.as_str() {
                        "no_reply" => Trigger::NoReply,
                        "stage_for" => Trigger::StageFor {
                            stage: stage.unwrap_or_default(),
                        },
                        _ => Trigger::BookingUnconfirmed,
                    };
                    Ok(Rule {
                        id,
                        spec: RuleSpec {
                            name,
                            trigger,
                            after_minutes: after,
                            message,
                            template,
                            max_per_lead: max,
                            min_gap_minutes: gap,
                            respect_hours: hours,
                            catch_up,
                            enabled,
                        },
                    })
                },
            )
            .collect()
    }

    /// Leads of `tenant` whose trigger for `rule` has happened by `now` (not yet checking
    /// limits, hours or the subject's wishes). `has_link` tells whether a text holds one of
    /// the business's booking links.
    pub async fn candidates(
        &self,
        tenant: TenantId,
        rule: &Rule,
        now: i64,
        has_link: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<Vec<Candidate>, CoreError> {
        let tid = tenant.to_string();
        let after = rule.spec.after_minutes.saturating_mul(60_000_000);
        let mut c = self.db.conn().await?;
        let rows: Vec<(String, String, Option<String>, String, i64)> =
            db_run!(c, |c| leads::table
                .filter(leads::tenant_id.eq(&tid))
                .select((
                    leads::id,
                    leads::subject_id,
                    leads::conversation_id,
                    leads::stage,
                    leads::updated_at
                ))
                .load(c)
                .await)?;
        let key = self.tenant_key(tenant).await?;
        let mut out = Vec::new();
        for (lid, sid, cid, stage, updated_at) in rows {
            let Some(cid) = cid else { continue };
            let anchor = match &rule.spec.trigger {
                Trigger::StageFor { stage: s } => (stage == *s).then_some(updated_at),
                Trigger::NoReply | Trigger::BookingUnconfirmed => {
                    if stage == "booked" || stage == "lost" {
                        None
                    } else {
                        let last: Option<crate::store::MessageRow> =
                            db_run!(c, |c| messages::table
                                .filter(messages::conversation_id.eq(&cid))
                                .order((messages::created_at.desc(), messages::id.desc()))
                                .select(crate::store::MessageRow::as_select())
                                .first(c)
                                .await
                                .optional())?;
                        match last {
                            Some(m) if m.direction == "out" => {
                                let at = m.created_at;
                                if rule.spec.trigger == Trigger::BookingUnconfirmed {
                                    let opened = self
                                        .open_message(&mut c, tenant, &key, m)
                                        .await
                                        .ok()
                                        .and_then(|p| p.body);
                                    opened.filter(|b| has_link(b)).map(|_| at)
                                } else {
                                    Some(at)
                                }
                            }
                            _ => None,
                        }
                    }
                }
            };
            if let Some(anchor_at) = anchor {
                if anchor_at.saturating_add(after) <= now {
                    out.push(Candidate {
                        lead_id: lid.parse()?,
                        subject_id: sid.parse()?,
                        conversation_id: cid.parse()?,
                        anchor_at,
                    });
                }
            }
        }
        Ok(out)
    }

    /// The follow-ups of a rule for a lead, oldest first.
    pub async fn follow_ups_of(
        &self,
        rule_id: &str,
        lead: LeadId,
    ) -> Result<Vec<FollowUp>, CoreError> {
        self.load_follow_ups(None, Some((rule_id.to_owned(), lead.to_string())), None)
            .await
    }

    /// The tenant's follow-ups, newest first, at most `limit`.
    pub async fn tenant_follow_ups(
        &self,
        tenant: TenantId,
        limit: i64,
    ) -> Result<Vec<FollowUp>, CoreError> {
        let mut all = self
            .load_follow_ups(Some(tenant.to_string()), None, None)
            .await?;
        all.reverse();
        all.truncate(usize::try_from(limit).unwrap_or(0));
        Ok(all)
    }

    /// One follow-up.
    pub async fn follow_up(&self, id: &str) -> Result<FollowUp, CoreError> {
        self.load_follow_ups(None, None, Some(id.to_owned()))
            .await?
            .pop()
            .ok_or(CoreError::NotFound { what: "follow-up" })
    }

    async fn load_follow_ups(
        &self,
        tenant: Option<String>,
        rule_lead: Option<(String, String)>,
        id: Option<String>,
    ) -> Result<Vec<FollowUp>, CoreError> {
        type Row = (
            String,
            String,
            String,
            String,
            i32,
            i64,
            i64,
            String,
            Option<String>,
            Option<String>,
        );
        let mut c = self.db.conn().await?;
        let rows: Vec<Row> = db_run!(c, |c| {
            let mut q = follow_ups::table.into_boxed();
            if let Some(t) = &tenant {
                q = q.filter(follow_ups::tenant_id.eq(t));
            }
            if let Some((r, l)) = &rule_lead {
                q = q
                    .filter(follow_ups::rule_id.eq(r))
                    .filter(follow_ups::lead_id.eq(l));
            }
            if let Some(i) = &id {
                q = q.filter(follow_ups::id.eq(i));
            }
            q.order((follow_ups::created_at, follow_ups::id))
                .select((
                    follow_ups::id,
                    follow_ups::rule_id,
                    follow_ups::lead_id,
                    follow_ups::conversation_id,
                    follow_ups::seq,
                    follow_ups::anchor_at,
                    follow_ups::due_at,
                    follow_ups::status,
                    follow_ups::reason,
                    follow_ups::message_id,
                ))
                .load(c)
                .await
        })?;
        Ok(rows
            .into_iter()
            .map(
                |(
                    id,
                    rule_id,
                    lead_id,
                    conversation_id,
                    seq,
                    anchor_at,
                    due_at,
                    status,
                    reason,
                    message_id,
                )| {
                    FollowUp {
                        id,
                        rule_id,
                        lead_id,
                        conversation_id,
                        seq,
                        anchor_at,
                        due_at,
                        status,
                        reason,
                        message_id,
                    }
                },
            )
            .collect())
    }

    /// Records the `seq`-th follow-up of a rule for a lead in the caller's transaction, with
    /// `status` (`scheduled`, or `skipped` with a reason). Returns `None` when another
    /// process recorded it first (the unique (rule, lead, seq) key).
    #[expect(
        clippy::too_many_arguments,
        reason = "one call site per status; a struct would only rename them"
    )]
    pub async fn schedule_follow_up(
        &self,
        tx: &mut Tx,
        tenant: TenantId,
        rule_id: &str,
        cand: &Candidate,
        seq: i32,
        due_at: i64,
        (status, reason): (&str, Option<&str>),
    ) -> Result<Option<String>, CoreError> {
        let id = uuid::Uuid::now_v7().to_string();
        let tid = tenant.to_string();
        let now = now_micros();
        let res = db_run!(tx, |c| diesel::insert_into(follow_ups::table)
            .values((
                follow_ups::id.eq(&id),
                follow_ups::tenant_id.eq(&tid),
                follow_ups::rule_id.eq(rule_id),
                follow_ups::lead_id.eq(cand.lead_id.to_string()),
                follow_ups::conversation_id.eq(cand.conversation_id.to_string()),
                follow_ups::seq.eq(seq),
                follow_ups::anchor_at.eq(cand.anchor_at),
                follow_ups::due_at.eq(due_at),
                follow_ups::status.eq(status),
                follow_ups::reason.eq(reason),
                follow_ups::created_at.eq(now),
                follow_ups::updated_at.eq(now),
            ))
            .execute(c)
            .await);
        match res {
            Ok(_) => Ok(Some(id)),
            Err(e) if is_unique_violation(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Moves a scheduled follow-up to `status` (once: returns false when it was no longer
    /// scheduled).
    pub async fn finish_follow_up(
        &self,
        tx: &mut Tx,
        id: &str,
        status: &str,
        reason: Option<&str>,
        message_id: Option<&str>,
    ) -> Result<bool, CoreError> {
        let now = now_micros();
        let n = db_run!(tx, |c| diesel::update(follow_ups::table.find(id))
            .filter(follow_ups::status.eq("scheduled"))
            .set((
                follow_ups::status.eq(status),
                follow_ups::reason.eq(reason),
                follow_ups::message_id.eq(message_id),
                follow_ups::updated_at.eq(now),
            ))
            .execute(c)
            .await)?;
        Ok(n == 1)
    }
}

/// The ledger entry of a follow-up event.
pub fn follow_up_draft(
    kind: EventKind,
    tenant: TenantId,
    pseudonym: [u8; 32],
    follow_up_id: &str,
    lead: LeadId,
) -> EntryDraft {
    let fid = uuid::Uuid::parse_str(follow_up_id)
        .map(|u| *u.as_bytes())
        .unwrap_or([0; 16]);
    EntryDraft::new(kind, Actor::System)
        .tenant(tenant.bytes())
        .subject(pseudonym)
        .purpose(Purpose::FOLLOW_UP)
        .reference(Reference::id(RefKind::FOLLOW_UP, fid))
        .reference(Reference::id(RefKind::LEAD, lead.bytes()))
}

/// A skip or cancel reason as a ledger code (1 objected, 2 opted out, 3 deleted, 4 policy,
/// 5 customer replied, 6 outside the window without a template, 7 missed while down, 8 rule
/// disabled, 9 its template is missing or no longer approved).
pub fn reason_code(reason: &str) -> u32 {
    match reason {
        "objected" => 1,
        "opted_out" => 2,
        "deleted" => 3,
        "policy" => 4,
        "customer_replied" => 5,
        "outside_window" => 6,
        "missed" => 7,
        "rule_disabled" => 8,
        "template_unavailable" => 9,
        _ => 0,
    }
}

/// Attaches a reason code.
pub fn with_reason(d: EntryDraft, reason: &str) -> EntryDraft {
    d.attr(AttrKey::REASON, AttrValue::Code(reason_code(reason)))
}
