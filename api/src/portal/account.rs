//! The account page: export everything, terminate the contract.

use axum::Form;
use axum::extract::{Query, State};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;
use serde_json::{Value, json};

use super::html::{self, csrf, text, when};
use super::{Notice, PageError, Viewer, done};
use crate::app::AppState;

/// `GET /portal/account`.
pub async fn page(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(notice): Query<Notice>,
) -> Result<Response, PageError> {
    viewer.require(&[smartchat_core::members::Role::Owner])?;
    let account = viewer.get(&state, "/api/v1/account").await?;
    Ok(render(&viewer, &account, notice.text(), None).into_response())
}

fn render(viewer: &Viewer, a: &Value, notice: Option<&str>, problem: Option<&str>) -> html::Page {
    let active = a["status"] == "active";
    html::page(
        viewer,
        "Account",
        "/portal/account",
        notice,
        html! {
            section.card {
                h2 { "Status" }
                p #account-status { strong { (text(&a["status"])) }
                    @if let Some(t) = a["terminated_at"].as_i64() { " since " (when(Some(t))) }
                }
                @if let Some(p) = a["purge_after"].as_i64() {
                    p { "Your data is deleted on " strong { (when(Some(p))) } " (privacy policy: 30 days after termination)"
                        @if a["held"] == true { ", later if a legal hold still applies then" } "." }
                }
            }
            section.card {
                h2 { "Export" }
                p { "Everything this business holds with us, as a zip: the business profile and one access report per customer, "
                    "with a manifest of SHA-256 digests." }
                p { a.button #export href="/api/v1/account/export" { "Download the export" } }
            }
            @if active {
                section.card {
                    h2 { "Terminate" }
                    p { "Your numbers stop at once; you can export for 30 days; then every conversation, customer and key of this "
                        "business is deleted, backups included (their keys are destroyed). Anonymized counts remain." }
                    @if let Some(p) = problem { p.problem { (p) } }
                    form method="post" action="/portal/account/terminate" {
                        (csrf(viewer))
                        label for="confirm" { "Type your business's handle to confirm" }
                        input #confirm type="text" name="confirm" required autocomplete="off";
                        button.danger type="submit" { "Terminate the account" }
                    }
                }
            }
        },
    )
}

/// The termination form.
#[derive(Debug, Deserialize)]
pub struct TerminateForm {
    confirm: String,
}

/// `POST /portal/account/terminate`.
pub async fn terminate(
    State(state): State<AppState>,
    viewer: Viewer,
    Form(form): Form<TerminateForm>,
) -> Result<Response, PageError> {
    let body = json!({ "confirm": form.confirm.trim() });
    let r = viewer
        .act(
            &state,
            "terminate",
            Method::POST,
            "/api/v1/account/terminate",
            Some(&body),
        )
        .await?;
    if r.status.is_success() {
        return Ok(done("/portal/account", "terminated"));
    }
    if !r.status.is_client_error() {
        return Err(PageError::new(r.status, r.detail()));
    }
    let account = viewer.get(&state, "/api/v1/account").await?;
    Ok((r.status, render(&viewer, &account, None, Some(&r.detail()))).into_response())
}
