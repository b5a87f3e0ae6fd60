//! The team page: members, their roles, invitations.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;
use serde_json::{Value, json};

use super::html::{self, csrf, text, when};
use super::{Notice, PageError, Viewer, done};
use crate::app::AppState;

const ROLES: &[(&str, &str)] = &[
    ("owner", "owner: everything of this business"),
    ("staff", "staff: conversations, leads, replies"),
    (
        "auditor",
        "auditor: ledger and records of processing, never conversations",
    ),
];

/// `GET /portal/team`.
pub async fn page(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(notice): Query<Notice>,
) -> Result<Response, PageError> {
    let data = viewer.get(&state, "/api/v1/members").await?;
    Ok(render(&viewer, &data, notice.text(), None).into_response())
}

fn render(
    viewer: &Viewer,
    data: &Value,
    notice: Option<&str>,
    problem: Option<&str>,
) -> html::Page {
    let empty = Vec::new();
    let me = viewer.me.member_id.to_string();
    html::page(
        viewer,
        "Team",
        "/portal/team",
        notice,
        html! {
            table #members {
                thead { tr { th { "Member" } th { "Signs in with" } th { "Since" } th { "Role" } th { "" } } }
                tbody {
                    @for m in data["members"].as_array().unwrap_or(&empty) {
                        @let id = text(&m["member_id"]);
                        tr {
                            td { (m["email"].as_str().unwrap_or("—")) @if id == me { " (you)" } }
                            td { (text(&m["login"])) }
                            td { (when(m["created_at"].as_i64())) }
                            td {
                                form.inline method="post" action={ "/portal/team/" (id) "/role" } {
                                    (csrf(viewer))
                                    select name="role" aria-label="role" {
                                        @for (r, _) in ROLES { option value=(r) selected[m["role"] == *r] { (r) } }
                                    }
                                    button.secondary type="submit" { "Set" }
                                }
                            }
                            td {
                                @if id != me {
                                    form.inline method="post" action={ "/portal/team/" (id) "/remove" } {
                                        (csrf(viewer))
                                        button.danger type="submit" { "Remove" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            section.card {
                h2 { "Invite" }
                @if let Some(p) = problem { p.problem { (p) } }
                p.muted { "They sign in through your identity provider with this verified e-mail address; the invitation binds to their account at the first login." }
                form method="post" action="/portal/team" {
                    (csrf(viewer))
                    label for="email" { "E-mail address" }
                    input #email type="email" name="email" required;
                    label for="role" { "Role" }
                    select #role name="role" { @for (r, l) in ROLES { option value=(r) selected[*r == "staff"] { (l) } } }
                    button type="submit" { "Invite" }
                }
            }
        },
    )
}

/// The invitation form.
#[derive(Debug, Deserialize)]
pub struct InviteForm {
    email: String,
    role: String,
}

/// `POST /portal/team`.
pub async fn invite(
    State(state): State<AppState>,
    viewer: Viewer,
    Form(form): Form<InviteForm>,
) -> Result<Response, PageError> {
    let body = json!({ "email": form.email.trim(), "role": form.role });
    let r = viewer
        .act(
            &state,
            "invite_member",
            Method::POST,
            "/api/v1/members",
            Some(&body),
        )
        .await?;
    if r.status.is_success() {
        return Ok(done("/portal/team", "member_invited"));
    }
    if !r.status.is_client_error() {
        return Err(PageError::new(r.status, r.detail()));
    }
    let data = viewer.get(&state, "/api/v1/members").await?;
    Ok((r.status, render(&viewer, &data, None, Some(&r.detail()))).into_response())
}

/// The role form (the remove form has no field).
#[derive(Debug, Deserialize)]
pub struct MemberForm {
    #[serde(default)]
    role: Option<String>,
}

/// `POST /portal/team/{id}/{role|remove}`.
pub async fn member_action(
    State(state): State<AppState>,
    viewer: Viewer,
    Path((id, action)): Path<(String, String)>,
    Form(form): Form<MemberForm>,
) -> Result<Response, PageError> {
    let id = super::id_segment(&id, "member")?;
    let (reply, notice) = match action.as_str() {
        "role" => (
            viewer
                .act(
                    &state,
                    "member_role",
                    Method::PUT,
                    &format!("/api/v1/members/{id}/role"),
                    Some(&json!({ "role": form.role.unwrap_or_default() })),
                )
                .await?,
            "role_changed",
        ),
        "remove" => (
            viewer
                .act(
                    &state,
                    "remove_member",
                    Method::DELETE,
                    &format!("/api/v1/members/{id}"),
                    None,
                )
                .await?,
            "member_removed",
        ),
        _ => return Err(PageError::new(StatusCode::NOT_FOUND, "no such action")),
    };
    reply.ok()?;
    Ok(done("/portal/team", notice))
}
