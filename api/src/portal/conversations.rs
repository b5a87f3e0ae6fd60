//! Pages of the inbox: conversations, a thread with its hand-off and manual reply, the
//! sandbox chat, search and leads.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Value, json};
use smartchat_core::members::Role;

use super::html::{self, csrf, text, when};
use super::{Notice, PageError, Viewer, done, id_segment};
use crate::app::AppState;

/// Who works the inbox (the API says the same; pages that show a form first check too).
const ANSWERING: &[Role] = &[Role::Owner, Role::Staff];

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// `GET /portal/conversations`.
pub async fn list(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(notice): Query<Notice>,
) -> Result<Response, PageError> {
    let data = viewer
        .get(&state, "/api/v1/conversations?limit=200")
        .await?;
    let empty = Vec::new();
    let list = data["conversations"].as_array().unwrap_or(&empty);
    Ok(html::page(
        &viewer,
        "Conversations",
        "/portal/conversations",
        notice.text(),
        html! {
            @if list.is_empty() {
                p { "No conversations yet. Customers' messages appear here as they arrive; try the "
                    a href="/portal/sandbox" { "sandbox" } " to play a customer." }
            } @else {
                table #conversations {
                    thead { tr { th { "Customer" } th { "Number" } th { "Answered by" } th { "Last message" } } }
                    tbody {
                        @for c in list {
                            tr {
                                td { a href={ "/portal/conversations/" (text(&c["id"])) } {
                                    (c["customer_name"].as_str().or(c["customer_wa_id"].as_str()).unwrap_or("Customer (erased)"))
                                } }
                                td { (text(&c["phone_number_id"])) }
                                td { (mode_label(&c["mode"])) }
                                td { (when(c["last_inbound_at"].as_i64().or(c["updated_at"].as_i64()))) }
                            }
                        }
                    }
                }
            }
        },
    )
    .into_response())
}

fn mode_label(v: &Value) -> &'static str {
    match v.as_str() {
        Some("human") => "a person (assistant paused)",
        _ => "the assistant",
    }
}

/// A thread's messages, oldest first.
fn thread_markup(messages: &[Value]) -> Markup {
    html! {
        div.thread #thread {
            @for m in messages {
                div class={ "msg " (if m["direction"] == "in" { "in" } else { "out" }) } {
                    div.body {
                        @match m["body"].as_str() {
                            Some(b) => { (b) }
                            None => { em.muted { "(" (text(&m["kind"])) ")" } }
                        }
                    }
                    div.meta {
                        (text(&m["author"])) " · " (when(m["created_at"].as_i64()))
                        @if m["direction"] == "out" { " · " span.status { (text(&m["status"])) } }
                        @if let Some(code) = m["error_code"].as_i64() { " · error " (code) }
                    }
                }
            }
        }
    }
}

/// Whether the customer's last message still waits for the assistant's answer.
fn awaiting_assistant(mode: &Value, messages: &[Value]) -> bool {
    mode != "human" && messages.last().is_some_and(|m| m["direction"] == "in")
}

/// `GET /portal/conversations/{id}`.
pub async fn thread(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(notice): Query<Notice>,
) -> Result<Response, PageError> {
    let id = id_segment(&id, "conversation")?;
    let data = viewer
        .get(
            &state,
            &format!("/api/v1/conversations/{id}/messages?limit=200"),
        )
        .await?;
    Ok(render_thread(&viewer, &id, &data, notice.text(), None).into_response())
}

fn render_thread(
    viewer: &Viewer,
    id: &str,
    data: &Value,
    notice: Option<&str>,
    problem: Option<&str>,
) -> html::Page {
    let empty = Vec::new();
    let messages = data["messages"].as_array().unwrap_or(&empty);
    let mode = &data["conversation"]["mode"];
    let human = mode == "human";
    html::page(
        viewer,
        "Conversation",
        "/portal/conversations",
        notice,
        html! {
            p.muted { "Answered by " strong #mode { (mode_label(mode)) } }
            (thread_markup(messages))
            section.card {
                h2 { "Reply" }
                @if let Some(p) = problem { p.problem { (p) } }
                form method="post" action={ "/portal/conversations/" (id) "/reply" } {
                    (csrf(viewer))
                    label for="text" { "Your message" }
                    textarea #text name="text" required maxlength="4096" {}
                    button type="submit" { "Send" }
                }
                form method="post" action={ "/portal/conversations/" (id) "/mode" } {
                    (csrf(viewer))
                    @if human {
                        input type="hidden" name="mode" value="assistant";
                        button.secondary type="submit" { "Hand back to the assistant" }
                    } @else {
                        input type="hidden" name="mode" value="human";
                        button.secondary type="submit" { "Take over from the assistant" }
                    }
                }
            }
        },
    )
}

/// The reply form.
#[derive(Debug, Deserialize)]
pub struct ReplyForm {
    text: String,
}

/// `POST /portal/conversations/{id}/reply`.
pub async fn reply(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(form): Form<ReplyForm>,
) -> Result<Response, PageError> {
    let id = id_segment(&id, "conversation")?;
    let path = format!("/api/v1/conversations/{id}/messages");
    let r = viewer
        .act(
            &state,
            "manual_reply",
            Method::POST,
            &path,
            Some(&json!({ "text": form.text })),
        )
        .await?;
    if r.status.is_success() {
        return Ok(done(&format!("/portal/conversations/{id}"), "reply_sent"));
    }
    if r.status != StatusCode::UNPROCESSABLE_ENTITY {
        return Err(PageError::new(r.status, r.detail()));
    }
    let data = viewer.get(&state, &format!("{path}?limit=200")).await?;
    Ok((
        r.status,
        render_thread(&viewer, &id, &data, None, Some(&r.detail())),
    )
        .into_response())
}

/// The take-over / hand-back form.
#[derive(Debug, Deserialize)]
pub struct ModeForm {
    mode: String,
}

/// `POST /portal/conversations/{id}/mode`.
pub async fn switch_mode(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(form): Form<ModeForm>,
) -> Result<Response, PageError> {
    let id = id_segment(&id, "conversation")?;
    let (action, notice) = match form.mode.as_str() {
        "human" => ("takeover", "mode_human"),
        "assistant" => ("handback", "mode_assistant"),
        _ => {
            return Err(PageError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "mode must be human or assistant",
            ));
        }
    };
    viewer
        .act(
            &state,
            action,
            Method::POST,
            &format!("/api/v1/conversations/{id}/{action}"),
            None,
        )
        .await?
        .ok()?;
    Ok(done(&format!("/portal/conversations/{id}"), notice))
}

/// `?conversation=` of the sandbox page: the conversation just started there. (The
/// customer's number is looked up, never carried in the URL, where it would stay in the
/// browser's history.)
#[derive(Debug, Deserialize)]
pub struct SandboxQuery {
    conversation: Option<String>,
}

/// The sandbox customer's number shown by default (a test number, not a real one).
const SANDBOX_CUSTOMER: &str = "15550100001";

/// `GET /portal/sandbox`: play a customer and watch the assistant answer.
pub async fn sandbox(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(q): Query<SandboxQuery>,
) -> Result<Response, PageError> {
    viewer.require(ANSWERING)?;
    let (data, from) = match q.conversation.as_deref() {
        Some(c) => {
            let c = id_segment(c, "conversation")?;
            let messages = viewer
                .get(
                    &state,
                    &format!("/api/v1/conversations/{c}/messages?limit=200"),
                )
                .await?;
            // The number the member is playing, to keep playing it.
            let list = viewer
                .get(&state, "/api/v1/conversations?limit=200")
                .await?;
            let from = list["conversations"]
                .as_array()
                .and_then(|l| l.iter().find(|x| x["id"] == c.as_str()))
                .and_then(|x| x["customer_wa_id"].as_str())
                .map(str::to_owned);
            (Some((c, messages)), from)
        }
        None => (None, None),
    };
    Ok(render_sandbox(&viewer, from.as_deref(), data.as_ref(), None).into_response())
}

fn render_sandbox(
    viewer: &Viewer,
    from: Option<&str>,
    data: Option<&(String, Value)>,
    problem: Option<&str>,
) -> html::Page {
    let empty = Vec::new();
    let messages = data
        .and_then(|(_, d)| d["messages"].as_array())
        .unwrap_or(&empty);
    let waiting =
        data.is_some_and(|(_, d)| awaiting_assistant(&d["conversation"]["mode"], messages));
    // While the assistant's answer is on its way, the page reloads itself each second
    // (no script needed); it stops as soon as the answer is there.
    let refresh = waiting.then(|| html! { meta http-equiv="refresh" content="1"; });
    html::page_with_head(
        viewer,
        "Sandbox",
        "/portal/sandbox",
        None,
        refresh,
        html! {
            p.muted { "Play a customer: your message goes through the same pipeline as a WhatsApp message "
                "(stored encrypted, ledgered, answered by your assistant), on a sandbox number that Meta never sees." }
            @if let Some((c, _)) = data {
                (thread_markup(messages))
                @if waiting { p.muted #waiting { "The assistant is answering…" } }
                p { a href={ "/portal/conversations/" (c) } { "Open this conversation in the inbox" } }
            }
            section.card {
                @if let Some(p) = problem { p.problem { (p) } }
                form method="post" action="/portal/sandbox" {
                    (csrf(viewer))
                    label for="from" { "Customer's WhatsApp number (digits)" }
                    input #from type="text" name="from" value=(from.unwrap_or(SANDBOX_CUSTOMER)) inputmode="numeric" required;
                    label for="sandbox-text" { "Message" }
                    textarea #sandbox-text name="text" required maxlength="4096" {}
                    button type="submit" { "Send as the customer" }
                }
            }
        },
    )
}

/// The sandbox form.
#[derive(Debug, Deserialize)]
pub struct SandboxForm {
    from: String,
    text: String,
}

/// `POST /portal/sandbox`.
pub async fn sandbox_send(
    State(state): State<AppState>,
    viewer: Viewer,
    Form(form): Form<SandboxForm>,
) -> Result<Response, PageError> {
    let r = viewer
        .act(
            &state,
            "sandbox",
            Method::POST,
            "/api/v1/sandbox/messages",
            Some(&json!({ "from": form.from, "text": form.text })),
        )
        .await?;
    if r.status.is_success() {
        let conv = text(&r.json["conversation_id"]);
        return Ok(axum::response::Redirect::to(&format!(
            "/portal/sandbox?conversation={}",
            enc(&conv)
        ))
        .into_response());
    }
    Ok((
        r.status,
        render_sandbox(&viewer, Some(&form.from), None, Some(&r.detail())),
    )
        .into_response())
}

/// `?q=` of the search page.
#[derive(Debug, Deserialize)]
pub struct SearchQuery {
    #[serde(default)]
    q: String,
}

/// A snippet with its highlighted byte ranges as `<mark>` (escaped by maud).
fn snippet(s: &Value) -> Markup {
    let fragment = s["fragment"].as_str().unwrap_or_default();
    let mut ranges: Vec<(usize, usize)> = s["highlighted"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| Some((r[0].as_u64()? as usize, r[1].as_u64()? as usize)))
                .collect()
        })
        .unwrap_or_default();
    ranges.sort_unstable();
    let mut parts: Vec<(bool, &str)> = Vec::new();
    let mut at = 0;
    for (a, b) in ranges {
        if a < at
            || b > fragment.len()
            || a >= b
            || !fragment.is_char_boundary(a)
            || !fragment.is_char_boundary(b)
        {
            continue;
        }
        parts.push((false, &fragment[at..a]));
        parts.push((true, &fragment[a..b]));
        at = b;
    }
    parts.push((false, &fragment[at..]));
    html! { @for (hl, p) in parts { @if hl { mark { (p) } } @else { (p) } } }
}

/// `GET /portal/search?q=`.
pub async fn search(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(q): Query<SearchQuery>,
) -> Result<Response, PageError> {
    viewer.require(ANSWERING)?;
    let query = q.q.trim();
    let (results, problem, status) = if query.is_empty() {
        (None, None, StatusCode::OK)
    } else {
        let r = viewer
            .act(
                &state,
                "search",
                Method::GET,
                &format!("/api/v1/search?q={}&limit=50", enc(query)),
                None,
            )
            .await?;
        if r.status.is_success() {
            (Some(r.json), None, StatusCode::OK)
        } else if r.status.is_client_error() || r.status == StatusCode::SERVICE_UNAVAILABLE {
            let d = r.detail();
            (None, Some(d), r.status)
        } else {
            return Err(PageError::new(r.status, r.detail()));
        }
    };
    let empty = Vec::new();
    let page = html::page(
        &viewer,
        "Search",
        "/portal/search",
        None,
        html! {
            form method="get" action="/portal/search" {
                label for="q" { "Search conversations" }
                input #q type="search" name="q" value=(query) placeholder="haircut, \"bridal makeup\", price~1";
                button type="submit" { "Search" }
            }
            p.muted { "Words, \"exact phrases\", word~1 for near spellings, -word to exclude. Searches are ledgered without their text." }
            @if let Some(p) = &problem { p.problem { (p) } }
            @if let Some(r) = &results {
                p #total { (r["total"].as_u64().unwrap_or(0)) " messages found" }
                table #hits {
                    tbody {
                        @for h in r["hits"].as_array().unwrap_or(&empty) {
                            tr {
                                td { (when(h["time_micros"].as_i64())) }
                                td { (if h["direction"] == "in" { "customer" } else { "business" }) }
                                td { a href={ "/portal/conversations/" (text(&h["conversation_id"])) } { (snippet(&h["snippet"])) } }
                            }
                        }
                    }
                }
            }
        },
    );
    Ok((status, page).into_response())
}

/// `?stage=` of the leads page.
#[derive(Debug, Deserialize)]
pub struct LeadsQuery {
    #[serde(default)]
    stage: Option<String>,
    #[serde(flatten)]
    notice: Notice,
}

const STAGES: &[&str] = &["new", "engaged", "booked", "lost"];

/// `GET /portal/leads`.
pub async fn leads(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(q): Query<LeadsQuery>,
) -> Result<Response, PageError> {
    let stage = q.stage.as_deref().filter(|s| STAGES.contains(s));
    let path = match stage {
        Some(s) => format!("/api/v1/leads?stage={s}&limit=500"),
        None => "/api/v1/leads?limit=500".into(),
    };
    let data = viewer.get(&state, &path).await?;
    let empty = Vec::new();
    let list = data["leads"].as_array().unwrap_or(&empty);
    Ok(html::page(
        &viewer,
        "Leads",
        "/portal/leads",
        q.notice.text(),
        html! {
            p {
                "Stage: "
                a href="/portal/leads" { "all" }
                @for s in STAGES { " · " a href={ "/portal/leads?stage=" (s) } { (s) } }
                " · " a href="/api/v1/leads.csv" { "Download CSV" }
            }
            @if list.is_empty() {
                p { "No leads yet: they are captured from conversations as customers ask about services." }
            } @else {
                table #leads {
                    thead { tr { th { "Customer" } th { "Details" } th { "Captured" } th { "Stage" } } }
                    tbody {
                        @for l in list {
                            tr {
                                td {
                                    (l["details"]["name"].as_str().or(l["customer_wa_id"].as_str()).unwrap_or("—"))
                                    @if let Some(c) = l["conversation_id"].as_str() {
                                        br; a href={ "/portal/conversations/" (c) } { "conversation" }
                                    }
                                }
                                td {
                                    @if let Some(d) = l["details"].as_object() {
                                        @for (k, v) in d { @if k != "name" { span.muted { (k) ": " } (text(v)) br; } }
                                    }
                                }
                                td { (when(l["created_at"].as_i64())) }
                                td {
                                    form.inline method="post" action={ "/portal/leads/" (text(&l["id"])) "/stage" } {
                                        (csrf(&viewer))
                                        select name="stage" aria-label="stage" {
                                            @for s in STAGES {
                                                option value=(s) selected[l["stage"] == *s] { (s) }
                                            }
                                        }
                                        button.secondary type="submit" { "Set" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
    .into_response())
}

/// The stage form.
#[derive(Debug, Deserialize)]
pub struct StageForm {
    stage: String,
}

/// `POST /portal/leads/{id}/stage`.
pub async fn lead_stage(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(form): Form<StageForm>,
) -> Result<Response, PageError> {
    let id = id_segment(&id, "lead")?;
    viewer
        .act(
            &state,
            "lead_stage",
            Method::PATCH,
            &format!("/api/v1/leads/{id}"),
            Some(&json!({ "stage": form.stage })),
        )
        .await?
        .ok()?;
    Ok(done("/portal/leads", "stage_changed"))
}
