//! Pages of oversight: the data-subject requests queue, analytics, the ledger and the
//! records of processing.

use std::collections::BTreeMap;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;
use serde_json::{Value, json};
use smartchat_core::analytics::{WHOLE_DAY, metric};

use super::charts::{Series, bars};
use super::html::{self, csrf, text, when};
use super::{Notice, PageError, Viewer, done};
use crate::app::AppState;

const RIGHTS: &[(&str, &str)] = &[
    ("access", "Access (a copy of their data)"),
    ("portability", "Portability (machine-readable export)"),
    ("correction", "Correction"),
    ("deletion", "Deletion"),
    ("objection", "Objection to AI processing"),
];

/// `GET /portal/rights`: the queue, oldest deadline first.
pub async fn rights(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(notice): Query<Notice>,
) -> Result<Response, PageError> {
    let data = viewer.get(&state, "/api/v1/rights").await?;
    Ok(render_rights(&viewer, &data, notice.text(), None).into_response())
}

fn render_rights(
    viewer: &Viewer,
    data: &Value,
    notice: Option<&str>,
    problem: Option<&str>,
) -> html::Page {
    let mut list: Vec<&Value> = data["requests"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let open = |r: &Value| !matches!(r["status"].as_str(), Some("completed" | "rejected"));
    list.sort_by_key(|r| (!open(r), r["due_at"].as_i64().unwrap_or(i64::MAX)));
    html::page(
        viewer,
        "Rights requests",
        "/portal/rights",
        notice,
        html! {
            p.muted { "Requests from your customers (GDPR Art. 12(3): one month, extendable once by two; DPDP: as the rules set). "
                "Customers can also ask in the chat or on your public rights page; each request is ledgered." }
            table #requests {
                thead { tr { th { "Right" } th { "Status" } th { "Received" } th { "Due" } th { "Urgency" } th { "" } } }
                tbody {
                    @for r in &list {
                        tr {
                            td { (text(&r["right"])) " " span.muted { "(" (text(&r["regime"])) ", " (text(&r["channel"])) ")" } }
                            td { (text(&r["status"])) @if let Some(n) = r["record_count"].as_i64() { " · " (n) " records" } }
                            td { (when(r["received_at"].as_i64())) }
                            td { (when(r["due_at"].as_i64())) @if r["extended_at"].is_i64() { " (extended)" } }
                            td { (text(&r["urgency"])) }
                            td {
                                @if open(r) {
                                    form.inline method="post" action={ "/portal/rights/" (text(&r["id"])) "/extend" } {
                                        (csrf(viewer))
                                        input type="text" name="reason" placeholder="reason for extending" required aria-label="reason for extending";
                                        button.secondary type="submit" { "Extend" }
                                    }
                                    form.inline method="post" action={ "/portal/rights/" (text(&r["id"])) "/reject" } {
                                        (csrf(viewer))
                                        input type="text" name="reason" placeholder="reason for rejecting" required aria-label="reason for rejecting";
                                        button.danger type="submit" { "Reject" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            section.card {
                h2 { "Record a request received elsewhere" }
                @if let Some(p) = problem { p.problem { (p) } }
                form method="post" action="/portal/rights" {
                    (csrf(viewer))
                    label for="right" { "Right" }
                    select #right name="right" { @for (v, l) in RIGHTS { option value=(v) { (l) } } }
                    label for="wa_id" { "Customer's WhatsApp number (digits, with country code)" }
                    input #wa_id type="text" name="wa_id" inputmode="numeric" required;
                    label for="regime" { "Law" }
                    select #regime name="regime" { option value="gdpr" { "GDPR" } option value="dpdp" { "DPDP (India)" } }
                    button type="submit" { "Record and carry out" }
                }
            }
        },
    )
}

/// The form recording a request.
#[derive(Debug, Deserialize)]
pub struct OpenForm {
    right: String,
    wa_id: String,
    #[serde(default)]
    regime: Option<String>,
}

/// `POST /portal/rights`.
pub async fn rights_open(
    State(state): State<AppState>,
    viewer: Viewer,
    Form(form): Form<OpenForm>,
) -> Result<Response, PageError> {
    let body = json!({ "right": form.right, "wa_id": form.wa_id.trim(), "regime": form.regime });
    let r = viewer
        .act(
            &state,
            "dsr_open",
            Method::POST,
            "/api/v1/rights",
            Some(&body),
        )
        .await?;
    if r.status.is_success() {
        return Ok(done("/portal/rights", "dsr_opened"));
    }
    if !r.status.is_client_error() {
        return Err(PageError::new(r.status, r.detail()));
    }
    let data = viewer.get(&state, "/api/v1/rights").await?;
    Ok((
        r.status,
        render_rights(&viewer, &data, None, Some(&r.detail())),
    )
        .into_response())
}

/// A reason for extending or rejecting.
#[derive(Debug, Deserialize)]
pub struct ReasonForm {
    reason: String,
}

/// `POST /portal/rights/{id}/{extend|reject}`.
pub async fn rights_action(
    State(state): State<AppState>,
    viewer: Viewer,
    Path((id, action)): Path<(String, String)>,
    Form(form): Form<ReasonForm>,
) -> Result<Response, PageError> {
    let notice = match action.as_str() {
        "extend" => "dsr_extended",
        "reject" => "dsr_rejected",
        _ => return Err(PageError::new(StatusCode::NOT_FOUND, "no such action")),
    };
    let id = super::id_segment(&id, "request")?;
    viewer
        .act(
            &state,
            &format!("dsr_{action}"),
            Method::POST,
            &format!("/api/v1/rights/{id}/{action}"),
            Some(&json!({ "reason": form.reason })),
        )
        .await?
        .ok()?;
    Ok(done("/portal/rights", notice))
}

/// Cells of the analytics API, indexed for the charts.
struct Cells {
    /// (day, hour, metric, dimension) → value (`None`: suppressed).
    map: BTreeMap<(String, i64, String, String), Option<i64>>,
}

impl Cells {
    fn new(v: &Value) -> Self {
        let mut map = BTreeMap::new();
        for c in v["cells"].as_array().into_iter().flatten() {
            map.insert(
                (
                    text(&c["day"]),
                    c["hour"].as_i64().unwrap_or(-1),
                    text(&c["metric"]),
                    c["dimension"].as_str().unwrap_or_default().to_owned(),
                ),
                c["value"].as_i64(),
            );
        }
        Self { map }
    }

    /// The sum of a metric's cells matching `pick`; `None` when every matching cell is
    /// suppressed, `Some(0)` when there is none.
    fn sum(&self, pick: impl Fn(&str, i64, &str, &str) -> bool) -> Option<i64> {
        let mut any = false;
        let mut known = false;
        let mut total = 0;
        for ((d, h, m, dim), v) in &self.map {
            if pick(d, *h, m, dim) {
                any = true;
                if let Some(v) = v {
                    known = true;
                    total += v;
                }
            }
        }
        if any && !known { None } else { Some(total) }
    }

    fn per_day(&self, days: &[String], metric: &str, dim: Option<&str>) -> Vec<Option<i64>> {
        days.iter()
            .map(|day| {
                self.sum(|d, h, m, x| {
                    d == day
                        && h == i64::from(WHOLE_DAY)
                        && m == metric
                        && dim.is_none_or(|want| want == x)
                })
            })
            .collect()
    }

    fn dimensions(&self, metric: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .map
            .keys()
            .filter(|(_, _, m, _)| m == metric)
            .map(|(_, _, _, d)| d.clone())
            .collect();
        v.sort();
        v.dedup();
        v
    }

    fn per_dimension(&self, metric: &str, dims: &[String]) -> Vec<Option<i64>> {
        dims.iter()
            .map(|dim| self.sum(|_, h, m, x| h == i64::from(WHOLE_DAY) && m == metric && x == dim))
            .collect()
    }
}

/// `?days=` of the analytics page.
#[derive(Debug, Deserialize)]
pub struct Period {
    #[serde(default)]
    days: Option<i64>,
}

/// `GET /portal/analytics`: charts from the anonymized store only.
pub async fn analytics(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(period): Query<Period>,
) -> Result<Response, PageError> {
    let span = period.days.unwrap_or(14).clamp(1, 90);
    let today = time::OffsetDateTime::now_utc().date();
    let days: Vec<String> = (0..span)
        .rev()
        .map(|back| {
            let d = today - time::Duration::days(back);
            format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
        })
        .collect();
    let (from, to) = (
        days.first().cloned().unwrap_or_default(),
        days.last().cloned().unwrap_or_default(),
    );
    let data = viewer
        .get(&state, &format!("/api/v1/analytics?from={from}&to={to}"))
        .await?;
    let cells = Cells::new(&data);
    let in_per_day = cells.per_day(&days, metric::MESSAGES_IN, None);
    let out_per_day = cells.per_day(&days, metric::MESSAGES_OUT, None);
    let assistant = cells.per_day(&days, metric::MESSAGES_OUT, Some("assistant"));
    let human = cells.per_day(&days, metric::MESSAGES_OUT, Some("human"));
    let leads = cells.per_day(&days, metric::LEADS, None);
    let buckets: Vec<String> = ["under_5s", "5s_to_30s", "30s_to_5m", "over_5m"]
        .map(String::from)
        .to_vec();
    let response = cells.per_dimension(metric::RESPONSE_TIME, &buckets);
    let hours: Vec<String> = (0..24).map(|h| format!("{h:02}h")).collect();
    let busiest: Vec<Option<i64>> = (0..24)
        .map(|hour| cells.sum(|_, h, m, _| h == hour && m == metric::MESSAGES_IN))
        .collect();
    let providers = cells.dimensions(metric::PROVIDER_CALLS);
    let calls = cells.per_dimension(metric::PROVIDER_CALLS, &providers);
    let tokens = cells.per_dimension(metric::PROVIDER_TOKENS, &providers);
    let cost = cells.per_dimension(metric::PROVIDER_COST, &providers);
    let pages = cells.dimensions(metric::PAGE_VIEW);
    let views = cells.per_dimension(metric::PAGE_VIEW, &pages);
    let total = |v: &[Option<i64>]| v.iter().flatten().sum::<i64>();
    let shown = |v: Option<i64>| v.map_or_else(|| "<5 customers".to_owned(), |n| n.to_string());
    Ok(html::page(
        &viewer,
        "Analytics",
        "/portal/analytics",
        None,
        html! {
            p.muted {
                "Counts from the anonymized analytics store (kept apart from conversations; no customer identities; "
                "it outlives deletions). Any count built from fewer than " (data["min_subjects"].as_i64().unwrap_or(5))
                " customers is hidden and drawn hatched. Days are UTC, " (from) " to " (to) ". "
                a href="/portal/analytics?days=7" { "7 days" } " · " a href="/portal/analytics?days=30" { "30 days" } " · "
                a href="/portal/analytics?days=90" { "90 days" }
            }
            div.grid {
                section.card #messages-per-day {
                    h2 { "Messages per day" }
                    p.muted { "In: " strong #messages-in-total { (total(&in_per_day)) } " · out: " (total(&out_per_day)) }
                    (bars("chart-messages", "Messages in and out per day", &days, &[
                        Series { name: "in", class: "bar", values: in_per_day.clone() },
                        Series { name: "out", class: "bar2", values: out_per_day },
                    ]))
                }
                section.card {
                    h2 { "Replies: assistant and people" }
                    (bars("chart-authors", "Replies by the assistant and by people per day", &days, &[
                        Series { name: "assistant", class: "bar", values: assistant },
                        Series { name: "human", class: "bar2", values: human },
                    ]))
                }
                section.card {
                    h2 { "Response time" }
                    (bars("chart-response", "Time from a customer's message to the assistant's reply", &buckets, &[
                        Series { name: "replies", class: "bar", values: response },
                    ]))
                }
                section.card {
                    h2 { "Leads per day" }
                    (bars("chart-leads", "New leads per day", &days, &[Series { name: "leads", class: "bar", values: leads }]))
                }
                section.card {
                    h2 { "Busiest hours (UTC)" }
                    (bars("chart-hours", "Customer messages by hour of day", &hours, &[Series { name: "messages", class: "bar", values: busiest }]))
                }
                section.card {
                    h2 { "AI providers" }
                    @if providers.is_empty() {
                        p { "No AI-provider calls in this period (the offline assistant makes none)." }
                    } @else {
                        (bars("chart-providers", "Calls per AI provider", &providers, &[Series { name: "calls", class: "bar", values: calls.clone() }]))
                        table {
                            thead { tr { th { "Provider" } th { "Calls" } th { "Tokens" } th { "Estimated cost" } } }
                            tbody {
                                @for (i, p) in providers.iter().enumerate() {
                                    tr {
                                        td { (p) }
                                        td { (shown(calls[i])) }
                                        td { (shown(tokens[i])) }
                                        td { (cost[i].map_or_else(|| "<5 customers".to_owned(), |c| format!("US$ {:.4}", c as f64 / 1e6))) }
                                    }
                                }
                            }
                        }
                        p.muted { "Costs are estimated from token counts at the providers' list prices on the day of each call." }
                    }
                }
                section.card {
                    h2 { "Portal use" }
                    (bars("chart-usage", "Portal page views by page", &pages, &[Series { name: "views", class: "bar", values: views }]))
                }
            }
        },
    )
    .into_response())
}

/// `?after=` of the ledger page.
#[derive(Debug, Deserialize)]
pub struct LedgerPage {
    #[serde(default)]
    after: Option<u64>,
}

/// `GET /portal/ledger`: this business's entries, the latest checkpoint, the export.
pub async fn ledger(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(page): Query<LedgerPage>,
) -> Result<Response, PageError> {
    let path = match page.after {
        Some(a) => format!("/api/v1/ledger/entries?after={a}&limit=100"),
        None => "/api/v1/ledger/entries?limit=100".to_owned(),
    };
    let entries = viewer.get(&state, &path).await?;
    let checkpoint = viewer
        .api(&state, Method::GET, "/api/v1/ledger/checkpoint", None)
        .await?;
    let empty = Vec::new();
    let list = entries["entries"].as_array().unwrap_or(&empty);
    Ok(html::page(
        &viewer,
        "Ledger",
        "/portal/ledger",
        None,
        html! {
            p.muted { "Every conversation, AI-provider call, key event and rights request of this business is an entry of "
                "a hash-chained, signed audit ledger. Entries hold codes and digests, never message text." }
            section.card {
                h2 { "Verify it yourself" }
                p { a.button #ledger-export href="/api/v1/ledger/export" { "Download the auditor's bundle" } }
                p.muted { "It holds this business's entries with their inclusion proofs against a signed checkpoint, and no other "
                    "business's entry. Check it offline, without our secrets: " code { "smartchat-verify tenant-bundle <file>" } }
                @if checkpoint.status.is_success() {
                    h2 { "Latest signed checkpoint" }
                    pre #checkpoint { (text(&checkpoint.json["checkpoint"])) }
                } @else {
                    p.muted { "No checkpoint is signed yet (one is signed every minute while the ledger grows)." }
                }
            }
            table #entries {
                thead { tr { th { "#" } th { "Time" } th { "Event" } th { "Actor" } th { "Purpose" } th { "Details" } } }
                tbody {
                    @for e in list {
                        tr {
                            td { (text(&e["seq"])) }
                            td { (when(e["time_micros"].as_i64())) }
                            td { (text(&e["kind"]["name"])) }
                            td { (text(&e["actor"]["kind"])) }
                            td { (text(&e["purpose"]["name"])) }
                            td.muted {
                                @for a in e["attrs"].as_array().unwrap_or(&empty) {
                                    (text(&a["key"]["name"])) "=" (text(&a["value"])) " "
                                }
                                @if !e["outcome"]["name"].is_null() { "outcome=" (text(&e["outcome"]["name"])) }
                            }
                        }
                    }
                }
            }
            @if let Some(next) = entries["next_after"].as_u64() {
                @if list.len() >= 100 { p { a href={ "/portal/ledger?after=" (next) } { "Later entries" } } }
            }
        },
    )
    .into_response())
}

/// `GET /portal/records`: the records of processing activities (GDPR Art. 30(2)).
pub async fn records(State(state): State<AppState>, viewer: Viewer) -> Result<Response, PageError> {
    let r = viewer.get(&state, "/api/v1/records").await?;
    Ok(html::page(
        &viewer,
        "Records of processing",
        "/portal/records",
        None,
        html! {
            p.muted { "What we process for this business, why, where and for how long, from the policy in force "
                "and the ledger (GDPR Art. 30(2)). " a href="/api/v1/records?format=markdown" { "Download as Markdown" } }
            pre #records { (serde_json::to_string_pretty(&r).unwrap_or_default()) }
        },
    )
    .into_response())
}
