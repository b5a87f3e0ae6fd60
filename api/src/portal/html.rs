//! The portal's layout and small rendering helpers.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};
use serde_json::Value;
use smartchat_core::members::Role;

use super::Viewer;

/// A rendered page: HTML, never cached (it carries the member's data and CSRF token).
pub struct Page(Markup);

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            self.0.into_string(),
        )
            .into_response()
    }
}

/// The sections of the portal: (path, label, roles that see it).
const NAV: &[(&str, &str, &[Role])] = &[
    ("/", "Overview", &[Role::Owner, Role::Staff, Role::Auditor]),
    (
        "/portal/conversations",
        "Conversations",
        &[Role::Owner, Role::Staff],
    ),
    ("/portal/sandbox", "Sandbox", &[Role::Owner, Role::Staff]),
    ("/portal/search", "Search", &[Role::Owner, Role::Staff]),
    ("/portal/leads", "Leads", &[Role::Owner, Role::Staff]),
    (
        "/portal/analytics",
        "Analytics",
        &[Role::Owner, Role::Staff],
    ),
    ("/portal/rights", "Rights requests", &[Role::Owner]),
    ("/portal/ledger", "Ledger", &[Role::Owner, Role::Auditor]),
    (
        "/portal/records",
        "Records of processing",
        &[Role::Owner, Role::Auditor],
    ),
    ("/portal/onboarding", "Settings", &[Role::Owner]),
    ("/portal/team", "Team", &[Role::Owner]),
    ("/portal/account", "Account", &[Role::Owner]),
];

fn head(title: &str, extra: Option<Markup>) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            meta name="referrer" content="same-origin";
            @if let Some(x) = extra { (x) }
            title { (title) " · smartchat" }
            link rel="stylesheet" href="/portal/static/portal.css";
        }
    }
}

/// A page of the portal for a member: navigation for their role, the notice of the last
/// action, the content, and the logout form.
pub fn page(
    viewer: &Viewer,
    title: &str,
    active: &str,
    notice: Option<&str>,
    content: Markup,
) -> Page {
    page_with_head(viewer, title, active, notice, None, content)
}

/// [`page`] with extra elements in `<head>` (a refresh while a reply is awaited).
pub fn page_with_head(
    viewer: &Viewer,
    title: &str,
    active: &str,
    notice: Option<&str>,
    extra_head: Option<Markup>,
    content: Markup,
) -> Page {
    let role = viewer.role();
    Page(html! {
        (DOCTYPE)
        html lang="en" {
            (head(title, extra_head))
            body {
                header.top {
                    a.brand href="/" { "smartchat" }
                    nav {
                        @for (path, label, roles) in NAV {
                            @if roles.contains(&role) {
                                a href=(path) class=[(*path == active).then_some("active")] { (label) }
                            }
                        }
                    }
                    form.logout method="post" action="/auth/logout" {
                        input type="hidden" name="csrf_token" value=(viewer.csrf());
                        span.role { (role.as_str()) }
                        button type="submit" { "Log out" }
                    }
                }
                main {
                    h1 { (title) }
                    @if let Some(n) = notice { p.notice role="status" { (n) } }
                    (content)
                }
            }
        }
    })
}

/// A page without a member (errors, login).
pub fn bare(title: &str, content: Markup) -> Page {
    Page(html! {
        (DOCTYPE)
        html lang="en" {
            (head(title, None))
            body { main.narrow { (content) } }
        }
    })
}

/// The login page.
pub fn login_page(oidc: bool) -> Page {
    bare(
        "Log in",
        html! {
            h1 { "smartchat" }
            p { "The portal of your business's WhatsApp assistant." }
            @if oidc {
                p { a.button #login href="/auth/login" { "Log in with your organisation's account" } }
            } @else {
                p {
                    "This server runs without an identity provider: open the one-time login link "
                    "that " code { "smartchat serve" } " printed when it started. It works once."
                }
            }
        },
    )
}

/// A hidden CSRF field for a form.
pub fn csrf(viewer: &Viewer) -> Markup {
    html! { input type="hidden" name="csrf_token" value=(viewer.csrf()); }
}

/// Unix microseconds as `YYYY-MM-DD HH:MM UTC`.
pub fn when(micros: Option<i64>) -> String {
    let Some(m) = micros else {
        return "—".into();
    };
    match time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(m) * 1000) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute()
        ),
        Err(_) => "—".into(),
    }
}

/// A JSON value as short text (strings bare, null as a dash).
pub fn text(v: &Value) -> String {
    match v {
        Value::Null => "—".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The overview page's content.
pub fn overview(
    viewer: &Viewer,
    profile: Option<&Value>,
    account: Option<&Value>,
    recent: &Value,
) -> Markup {
    html! {
        @if let Some(p) = profile {
            section.card {
                h2 #business-name { (text(&p["profile"]["name"])) }
                @if let Some(a) = account { p { "Account: " strong { (text(&a["status"])) } } }
                p { a href="/portal/onboarding" { "Business profile, WhatsApp number and assistant settings" } }
            }
        }
        @if let Some(list) = recent["conversations"].as_array() {
            section.card {
                h2 { "Recent conversations" }
                @if list.is_empty() {
                    p { "No conversations yet. Try the " a href="/portal/sandbox" { "sandbox" } "." }
                } @else {
                    ul {
                        @for c in list {
                            li {
                                a href={ "/portal/conversations/" (text(&c["id"])) } {
                                    (c["customer_name"].as_str().or(c["customer_wa_id"].as_str()).unwrap_or("Customer"))
                                }
                                " · " (when(c["updated_at"].as_i64()))
                            }
                        }
                    }
                }
            }
        }
        @if viewer.role() == Role::Auditor {
            section.card {
                h2 { "Auditor" }
                p { "You can read this business's " a href="/portal/ledger" { "audit ledger" } " and its "
                    a href="/portal/records" { "records of processing" } ", and download a ledger bundle that "
                    code { "smartchat-verify" } " checks offline. Conversations are not shown to auditors." }
            }
        }
    }
}
