//! Follow-ups: the evaluator that turns the tenants' rules into scheduled follow-ups (run
//! every `SMARTCHAT_FOLLOW_UP_INTERVAL_SECS` by each server process; the database makes each
//! follow-up exist once), the `follow_up` job that re-checks the customer's wishes and sends
//! it, and the owner's API for rules and follow-ups.
//!
//! Checks, in order, when a follow-up is due: limits (at most K per lead, M minutes apart),
//! a late follow-up of a rule without catch-up (skipped as missed), opening hours (wait);
//! then when its job runs: rule still enabled, subject not deleted, not objected, not opted
//! out, the policy allows follow-ups through Meta, the customer has not written since the
//! trigger (cancelled), the 24-hour window is open. Every scheduled, sent, skipped and
//! cancelled follow-up is ledgered with its reason code.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use smartchat_assistant::BusinessProfile;
use smartchat_assistant::offline::LocalNow;
use smartchat_core::CoreError;
use smartchat_core::db::{micros_of, now_micros};
use smartchat_core::follow_ups::{
    FollowUp, Rule, RuleSpec, WINDOW_MINUTES, follow_up_draft, with_reason,
};
use smartchat_core::ids::{ConversationId, LeadId, TenantId};
use smartchat_core::jobs::{self, Job, NewJob};
use smartchat_core::members::Role;
use smartchat_ledger::{Actor, AttrKey, AttrValue, EventKind};
use smartchat_policies::{Category, ProcessorId, SubjectState};
use time::OffsetDateTime;

use crate::app::AppState;
use crate::auth::error::AuthError;
use crate::auth::extract::CurrentMember;
use crate::error::{JsonBody, QueryParams, problem};
use crate::pipeline::{self, Pipeline, QUEUE};

/// A follow-up due more than this long ago counts as missed (for rules without catch-up).
const LATE_MICROS: i64 = 24 * 3600 * 1_000_000;

/// Whether the business is open at `now` (its hours, in its time zone).
pub fn is_open(profile: &BusinessProfile, now: OffsetDateTime) -> bool {
    let local = LocalNow::for_profile(profile, now);
    profile
        .hours
        .day(local.weekday)
        .iter()
        .any(|iv| iv.contains(local.minute_of_day))
}

/// Whether the business is ever open.
pub fn ever_open(profile: &BusinessProfile) -> bool {
    smartchat_assistant::profile::Weekday::ALL
        .iter()
        .any(|d| !profile.hours.is_closed(*d))
}

/// Schedules every follow-up due at `now` (the clock is a parameter so tests control it).
/// Returns how many this call scheduled.
pub async fn evaluate(p: &Pipeline, now: OffsetDateTime) -> Result<usize, CoreError> {
    let store = &p.store;
    let now_us = micros_of(now);
    let mut scheduled = 0;
    for t in store.list_tenants().await? {
        if t.status != "active" {
            continue;
        }
        let rules = store.rules(t.id).await?;
        if !rules.iter().any(|r| r.spec.enabled) {
            continue;
        }
        let view = store.tenant(t.id).await?;
        let profile = pipeline::business_profile(&view.profile.0);
        let links: Vec<String> = profile
            .booking_links
            .iter()
            .map(|l| l.url.clone())
            .collect();
        let has_link = move |text: &str| links.iter().any(|u| text.contains(u.as_str()));
        let key = store.tenant_key(t.id).await?;
        for rule in rules.iter().filter(|r| r.spec.enabled) {
            for cand in store.candidates(t.id, rule, now_us, &has_link).await? {
                let existing = store.follow_ups_of(&rule.id, cand.lead_id).await?;
                if existing.iter().any(|f| f.anchor_at == cand.anchor_at) {
                    continue;
                }
                let sent: Vec<_> = existing.iter().filter(|f| f.status == "sent").collect();
                if sent.len() >= usize::try_from(rule.spec.max_per_lead).unwrap_or(0) {
                    continue;
                }
                let gap = rule.spec.min_gap_minutes.saturating_mul(60_000_000);
                if sent.iter().any(|f| f.due_at.saturating_add(gap) > now_us) {
                    continue;
                }
                let due = cand
                    .anchor_at
                    .saturating_add(rule.spec.after_minutes.saturating_mul(60_000_000));
                let late = now_us.saturating_sub(due) > LATE_MICROS;
                let missed = late && !rule.spec.catch_up;
                if !missed && rule.spec.respect_hours && !is_open(&profile, now) {
                    // Quiet hours: it goes out at the first evaluation after opening.
                    continue;
                }
                let seq = i32::try_from(existing.len() + 1).unwrap_or(i32::MAX);
                let pseudonym = key.pseudonym(&cand.subject_id.to_string());
                let mut tx = store.db.begin().await?;
                if missed {
                    if let Some(id) = store
                        .schedule_follow_up(
                            &mut tx,
                            t.id,
                            &rule.id,
                            &cand,
                            seq,
                            due,
                            ("skipped", Some("missed")),
                        )
                        .await?
                    {
                        let d = follow_up_draft(
                            EventKind::FOLLOW_UP_SKIPPED,
                            t.id,
                            pseudonym,
                            &id,
                            cand.lead_id,
                        );
                        smartchat_core::audit::enqueue(&mut tx, &with_reason(d, "missed")).await?;
                        tx.commit().await?;
                    }
                    continue;
                }
                // It goes now: its time is the evaluation's (the nominal due time, or the
                // end of quiet hours); the gap to the next one counts from here.
                let Some(id) = store
                    .schedule_follow_up(
                        &mut tx,
                        t.id,
                        &rule.id,
                        &cand,
                        seq,
                        now_us,
                        ("scheduled", None),
                    )
                    .await?
                else {
                    // Another process scheduled it first.
                    continue;
                };
                let mut job = NewJob::now(QUEUE, "follow_up", json!({ "follow_up": id }));
                job.tenant_id = Some(t.id.to_string());
                job.dedupe_key = Some(format!("fu:{id}"));
                jobs::enqueue(&mut tx, &job).await?;
                let d = follow_up_draft(
                    EventKind::FOLLOW_UP_SCHEDULED,
                    t.id,
                    pseudonym,
                    &id,
                    cand.lead_id,
                )
                .attr(AttrKey::SCHEDULED_FOR_MICROS, AttrValue::I64(now_us));
                smartchat_core::audit::enqueue(&mut tx, &d).await?;
                tx.commit().await?;
                scheduled += 1;
            }
        }
    }
    Ok(scheduled)
}

/// Runs one `follow_up` job: re-checks everything that may have changed since it was
/// scheduled, then queues the message (or records why not), once.
pub async fn run_follow_up(p: &Pipeline, job: &Job) -> Result<(), CoreError> {
    let store = &p.store;
    let payload = job.payload()?;
    let id = payload["follow_up"].as_str().unwrap_or_default().to_owned();
    let fu = store.follow_up(&id).await?;
    let mut c = store.db.conn().await?;
    let conv_id: ConversationId = fu.conversation_id.parse()?;
    let conv = store.conversation(&mut c, conv_id).await?;
    let tenant: TenantId = conv.tenant_id;
    let lead: LeadId = fu.lead_id.parse()?;
    let key = store.tenant_key(tenant).await?;
    let pseudonym = key.pseudonym(&conv.subject_id.to_string());
    let finish = |status: &'static str, reason: &'static str| (status, reason);
    let rule = store.rule(tenant, &fu.rule_id).await?;
    let mut contact = None;
    let verdict: Option<(&str, &str)> = if fu.status != "scheduled" {
        None
    } else {
        let deleted = match store
            .subject_contact_in(&mut c, tenant, conv.subject_id, &key)
            .await
        {
            Ok(found) => {
                contact = Some(found);
                false
            }
            Err(CoreError::Shredded { .. } | CoreError::NotFound { .. }) => true,
            Err(e) => return Err(e),
        };
        let flags = if deleted {
            Default::default()
        } else {
            store.subject_flags(&mut c, conv.subject_id).await?
        };
        let effective = store.policy.effective(tenant).await?;
        let meta = ProcessorId::new("meta").map_err(|_| CoreError::Internal("processor".into()))?;
        let allowed = effective
            .may(
                &meta,
                &[Category::Conversations, Category::LeadData],
                smartchat_policies::Purpose::FollowUps,
                &SubjectState {
                    objected_to_ai: flags.objected,
                    opted_out_of_follow_ups: flags.opted_out,
                    ..SubjectState::default()
                },
            )
            .is_allow();
        let recent = if deleted {
            Vec::new()
        } else {
            store
                .recent_messages(&mut c, tenant, &conv, &key, 1)
                .await?
        };
        let replied = recent
            .iter()
            .any(|m| m.row.direction == "in" && m.row.created_at > fu.anchor_at);
        let window_open = conv
            .last_inbound_at
            .is_some_and(|t| t.saturating_add(WINDOW_MINUTES * 60_000_000) > now_micros());
        Some(if !rule.spec.enabled {
            finish("cancelled", "rule_disabled")
        } else if deleted {
            finish("skipped", "deleted")
        } else if flags.objected {
            finish("skipped", "objected")
        } else if flags.opted_out {
            finish("skipped", "opted_out")
        } else if !allowed {
            finish("skipped", "policy")
        } else if replied {
            finish("cancelled", "customer_replied")
        } else if window_open && !rule.spec.message.trim().is_empty() {
            finish("sent", "text")
        } else if let Some(t) = &rule.spec.template {
            // Outside the window (or a template-only rule): only an approved template.
            match store.template(tenant, &t.name, &t.language).await {
                Ok(found) if found.is_approved() => finish("sent", "template"),
                Ok(_) | Err(CoreError::NotFound { .. }) => {
                    finish("skipped", "template_unavailable")
                }
                Err(e) => return Err(e),
            }
        } else {
            finish("skipped", "outside_window")
        })
    };
    // Values of the template's variables, read before the transaction (they need the
    // lead and the profile).
    let values = match (verdict, &rule.spec.template) {
        (Some(("sent", "template")), Some(t)) => {
            let view = store.tenant(tenant).await?;
            let profile = pipeline::business_profile(&view.profile.0);
            let details = store.lead(tenant, lead).await?.details;
            Some(template_values(t, &profile, &details, contact.as_ref()))
        }
        _ => None,
    };
    drop(c);
    let mut tx = store.db.begin().await?;
    if let Some((status, reason)) = verdict {
        if status == "sent" {
            let mid = match (values, &rule.spec.template) {
                (Some(values), Some(t)) => {
                    let template = store.template(tenant, &t.name, &t.language).await?;
                    pipeline::queue_template(
                        &mut tx,
                        store,
                        &key,
                        &conv,
                        &template,
                        values,
                        "follow_up",
                    )
                    .await?
                }
                _ => {
                    pipeline::queue_outbound(
                        &mut tx,
                        store,
                        &key,
                        &conv,
                        &rule.spec.message,
                        "follow_up",
                    )
                    .await?
                }
            };
            if store
                .finish_follow_up(&mut tx, &id, "sent", None, Some(&mid.to_string()))
                .await?
            {
                let d = follow_up_draft(EventKind::FOLLOW_UP_SENT, tenant, pseudonym, &id, lead)
                    .reference(smartchat_ledger::Reference::id(
                        smartchat_ledger::RefKind::MESSAGE,
                        mid.bytes(),
                    ));
                smartchat_core::audit::enqueue(&mut tx, &d).await?;
            } else {
                // Finished elsewhere meanwhile: nothing of this attempt stays.
                drop(tx);
                let mut tx = store.db.begin().await?;
                jobs::complete(&mut tx, job.id).await?;
                return tx.commit().await;
            }
        } else if store
            .finish_follow_up(&mut tx, &id, status, Some(reason), None)
            .await?
        {
            let kind = if status == "cancelled" {
                EventKind::FOLLOW_UP_CANCELLED
            } else {
                EventKind::FOLLOW_UP_SKIPPED
            };
            let d = follow_up_draft(kind, tenant, pseudonym, &id, lead);
            smartchat_core::audit::enqueue(&mut tx, &with_reason(d, reason)).await?;
        }
    }
    jobs::complete(&mut tx, job.id).await?;
    tx.commit().await
}

/// The values of a rule's template variables for one lead: fixed texts as written,
/// variables filled from the lead, the customer's profile name and the business profile.
fn template_values(
    t: &smartchat_core::templates::TemplateUse,
    profile: &BusinessProfile,
    details: &serde_json::Map<String, serde_json::Value>,
    contact: Option<&smartchat_core::store::SubjectContact>,
) -> Vec<String> {
    let detail = |k: &str| {
        details
            .get(k)
            .and_then(|v| v.as_str())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    t.params
        .iter()
        .map(|p| match p.as_str() {
            "{customer_name}" => detail("name")
                .or_else(|| contact.and_then(|c| c.profile_name.clone()))
                .unwrap_or_else(|| "there".into()),
            "{business_name}" => profile.name.clone(),
            "{booking_link}" => profile
                .booking_links
                .first()
                .map(|l| l.url.clone())
                .unwrap_or_default(),
            "{service}" => detail("service").unwrap_or_else(|| "our services".into()),
            fixed => fixed.to_owned(),
        })
        .collect()
}

/// Runs the evaluator every `interval` until `shutdown` changes.
pub async fn scheduler(
    p: Pipeline,
    interval: std::time::Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        if let Err(e) = evaluate(&p, OffsetDateTime::now_utc()).await {
            tracing::error!(error = %e, "follow-up evaluation failed");
        }
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// Checks a rule against the business profile: opening hours that never open cannot hold
/// a rule that respects them.
async fn check_with_profile(
    state: &AppState,
    tenant: TenantId,
    spec: &RuleSpec,
) -> Result<(), AuthError> {
    spec.validate()?;
    if let Some(t) = &spec.template {
        let bad = |reason: String| -> AuthError {
            CoreError::Invalid {
                field: "follow-up rule",
                reason,
            }
            .into()
        };
        let found = match state.store().template(tenant, &t.name, &t.language).await {
            Ok(found) => found,
            Err(CoreError::NotFound { .. }) => {
                return Err(bad(format!(
                    "template {} ({}) is unknown: sync the templates from Meta (or register it for the sandbox) first",
                    t.name, t.language
                )));
            }
            Err(e) => return Err(e.into()),
        };
        if !found.is_approved() {
            return Err(bad(format!(
                "template {} ({}) is {}, not approved",
                t.name, t.language, found.status
            )));
        }
        if usize::try_from(found.params).unwrap_or(0) != t.params.len() {
            return Err(bad(format!(
                "template {} has {} variables; the rule gives {} values",
                t.name,
                found.params,
                t.params.len()
            )));
        }
        if t.params.iter().any(|p| p == "{booking_link}") {
            let view = state.store().tenant(tenant).await?;
            if pipeline::business_profile(&view.profile.0)
                .booking_links
                .is_empty()
            {
                return Err(bad(
                    "{booking_link} needs a booking link in the business profile".into(),
                ));
            }
        }
    }
    if spec.respect_hours {
        let view = state.store().tenant(tenant).await?;
        if !ever_open(&pipeline::business_profile(&view.profile.0)) {
            return Err(CoreError::Invalid {
                field: "follow-up rule",
                reason: "respect_hours is set but the business profile has no opening hours, so it would never be sent".into(),
            }
            .into());
        }
    }
    Ok(())
}

/// The tenant's follow-up rules.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct RuleList {
    /// The rules.
    pub rules: Vec<Rule>,
}

/// The path parameter of a rule.
const RULE_ID: &str = "The rule's id";

/// `GET /api/v1/follow-up-rules`.
#[utoipa::path(
    get,
    path = "/api/v1/follow-up-rules",
    operation_id = "list_follow_up_rules",
    tag = "follow-ups",
    responses((status = 200, description = "The rules", body = RuleList))
)]
pub async fn list_rules(
    State(state): State<AppState>,
    me: CurrentMember,
) -> Result<Json<RuleList>, AuthError> {
    me.require(&[Role::Owner, Role::Staff])?;
    Ok(Json(RuleList {
        rules: state.store().rules(me.tenant_id).await?,
    }))
}

/// `POST /api/v1/follow-up-rules`: owners add a rule; refused with the reason at save.
#[utoipa::path(
    post,
    path = "/api/v1/follow-up-rules",
    operation_id = "create_follow_up_rule",
    tag = "follow-ups",
    request_body = RuleSpec,
    responses((status = 201, description = "The rule", body = Rule))
)]
pub async fn create_rule(
    State(state): State<AppState>,
    me: CurrentMember,
    JsonBody(spec): JsonBody<RuleSpec>,
) -> Result<Response, AuthError> {
    me.require(&[Role::Owner])?;
    check_with_profile(&state, me.tenant_id, &spec).await?;
    let id = state
        .store()
        .create_rule(me.tenant_id, &spec, Actor::Member(me.member_id.bytes()))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(state.store().rule(me.tenant_id, &id).await?),
    )
        .into_response())
}

/// `PUT /api/v1/follow-up-rules/{id}`: replaces a rule (`enabled: false` stops it; rules
/// are kept for the record of the follow-ups sent under them).
#[utoipa::path(
    put,
    path = "/api/v1/follow-up-rules/{id}",
    operation_id = "replace_follow_up_rule",
    tag = "follow-ups",
    params(("id" = String, Path, description = RULE_ID)),
    request_body = RuleSpec,
    responses((status = 200, description = "The rule", body = Rule))
)]
pub async fn replace_rule(
    State(state): State<AppState>,
    me: CurrentMember,
    Path(id): Path<String>,
    JsonBody(spec): JsonBody<RuleSpec>,
) -> Result<Response, AuthError> {
    me.require(&[Role::Owner])?;
    check_with_profile(&state, me.tenant_id, &spec).await?;
    state
        .store()
        .replace_rule(
            me.tenant_id,
            &id,
            &spec,
            Actor::Member(me.member_id.bytes()),
        )
        .await?;
    Ok(Json(state.store().rule(me.tenant_id, &id).await?).into_response())
}

/// `?limit=`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

/// The tenant's follow-ups.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct FollowUpList {
    /// Newest first.
    pub follow_ups: Vec<FollowUp>,
}

/// `GET /api/v1/follow-ups`: the tenant's follow-ups, newest first, with status and reason.
#[utoipa::path(
    get,
    path = "/api/v1/follow-ups",
    operation_id = "list_follow_ups",
    tag = "follow-ups",
    params(Page),
    responses((status = 200, description = "The follow-ups", body = FollowUpList))
)]
pub async fn list_follow_ups(
    State(state): State<AppState>,
    me: CurrentMember,
    QueryParams(page): QueryParams<Page>,
) -> Result<Response, AuthError> {
    me.require(&[Role::Owner, Role::Staff])?;
    let limit = page.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Ok(problem(
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            "limit: 1 to 1000",
        ));
    }
    let list = state.store().tenant_follow_ups(me.tenant_id, limit).await?;
    Ok(Json(FollowUpList { follow_ups: list }).into_response())
}
