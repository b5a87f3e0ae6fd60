//! The owners' team API (issue 8): list the members, invite one (by e-mail address, or by
//! an OIDC identity's issuer and subject), remove one (their sessions end with it). Owners
//! only; a member of another tenant is 404; removing the last owner is 409. Role changes
//! are `PUT /api/v1/members/{id}/role` (`crate::auth`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use smartchat_core::CoreError;
use smartchat_core::ids::MemberId;
use smartchat_core::members::{Login, Role};
use smartchat_ledger::Actor;

use crate::auth::AuthState;
use crate::auth::error::AuthError;
use crate::auth::extract::CurrentMember;
use crate::error::{JsonBody, problem};

/// `GET /api/v1/members` (owners): the team, with how each member logs in and the address
/// they were invited with.
#[utoipa::path(get, path = "/api/v1/members", operation_id = "list_members", tag = "members",
    responses((status = 200, description = "The team", body = Object)))]
pub async fn list_members(
    State(auth): State<AuthState>,
    me: CurrentMember,
) -> Result<Json<serde_json::Value>, AuthError> {
    me.require(&[Role::Owner])?;
    let members = auth.members().list_members(me.tenant_id).await?;
    Ok(Json(json!({ "members": members })))
}

/// Body of `POST /api/v1/members`: `{"email", "role"}` or `{"issuer", "subject", "role"}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::ToSchema)]
pub struct InviteBody {
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    issuer: Option<String>,
    #[serde(default)]
    subject: Option<String>,
    #[schema(value_type = String, pattern = "^(owner|staff|auditor)$")]
    role: Role,
}

fn login_of(body: &InviteBody) -> Result<Login, &'static str> {
    match (&body.email, &body.issuer, &body.subject) {
        (Some(e), None, None) => Login::email(e).map_err(|_| "email is not an e-mail address"),
        (None, Some(i), Some(s)) => {
            let ok = |v: &str| !v.trim().is_empty() && v.len() <= 255;
            if ok(i) && ok(s) && (i.starts_with("https://") || i.starts_with("http://")) {
                Ok(Login::oidc(i, s))
            } else {
                Err("issuer must be the provider's URL and subject 1 to 255 characters")
            }
        }
        _ => Err("give either email, or issuer and subject"),
    }
}

/// `POST /api/v1/members` (owners): invites a member with a role; ledgered as a role grant.
/// 201; 409 when the login is a member already.
#[utoipa::path(post, path = "/api/v1/members", operation_id = "invite_member", tag = "members",
    request_body = InviteBody,
    responses((status = 201, description = "The member is invited", body = Object)))]
pub async fn invite_member(
    State(auth): State<AuthState>,
    me: CurrentMember,
    JsonBody(body): JsonBody<InviteBody>,
) -> Result<Response, AuthError> {
    me.require(&[Role::Owner])?;
    let login = match login_of(&body) {
        Ok(l) => l,
        Err(why) => return Ok(problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid", why)),
    };
    let id = auth
        .members()
        .invite_member(
            me.tenant_id,
            &login,
            body.role,
            Actor::Member(me.member_id.bytes()),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "member_id": id, "role": body.role })),
    )
        .into_response())
}

/// `DELETE /api/v1/members/{id}` (owners): removes the member and ends their sessions;
/// ledgered. 204; 404 for a member of another tenant; 409 for the last owner.
#[utoipa::path(delete, path = "/api/v1/members/{member_id}", operation_id = "remove_member", tag = "members",
    params(("member_id" = String, Path, description = "The member's id")),
    responses((status = 204, description = "Removed; their sessions ended")))]
pub async fn remove_member(
    State(auth): State<AuthState>,
    me: CurrentMember,
    Path(member_id): Path<String>,
) -> Result<Response, AuthError> {
    me.require(&[Role::Owner])?;
    let id: MemberId = member_id
        .parse()
        .map_err(|_| AuthError::NotFound("member"))?;
    match auth
        .members()
        .remove_member(me.tenant_id, id, Actor::Member(me.member_id.bytes()))
        .await
    {
        Ok(()) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(CoreError::Conflict { what }) if what.starts_with("last owner") => {
            Ok(last_owner_problem())
        }
        Err(e) => Err(e.into()),
    }
}

/// 409 `last_owner`: removing or demoting the business's only owner.
pub(crate) fn last_owner_problem() -> Response {
    problem(
        StatusCode::CONFLICT,
        "last_owner",
        "a business keeps at least one owner: make another member owner first",
    )
}
