//! The `CurrentMember` extractor and tenant-scoped look-ups.

use axum::extract::{FromRef, FromRequestParts};
use axum::http::Method;
use axum::http::request::Parts;
use serde::Serialize;
use smartchat_core::ids::{MemberId, TenantId};
use smartchat_core::members::Role;

use super::AuthState;
use super::bearer::bearer_token;
use super::error::AuthError;
use super::session::{
    CSRF_HEADER, cookie, csrf_matches, csrf_token, digest, parse_tenant, secret_from,
};

/// The header an API client names its tenant in when its identity belongs to several.
pub const TENANT_HEADER: &str = "smartchat-tenant";

/// How the request authenticated.
#[derive(Clone, PartialEq, Eq)]
pub enum AuthVia {
    /// A portal session cookie; carries the session's CSRF token for forms.
    Session {
        /// The CSRF token pages must send back on state-changing requests.
        csrf_token: String,
    },
    /// A bearer access token.
    Bearer,
}

impl std::fmt::Debug for AuthVia {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Session { .. } => "Session",
            Self::Bearer => "Bearer",
        })
    }
}

/// The authenticated member of a request: from the session cookie, or from a bearer
/// access token (mapped to a member by `iss` + `sub`). A session request with a
/// state-changing method must carry the session's CSRF token in `X-CSRF-Token`.
#[derive(Debug, Clone, Serialize)]
pub struct CurrentMember {
    /// The member.
    pub member_id: MemberId,
    /// Their tenant: every look-up of this request is scoped by it.
    pub tenant_id: TenantId,
    /// Their role now.
    pub role: Role,
    /// How they authenticated.
    #[serde(skip)]
    pub via: AuthVia,
}

impl CurrentMember {
    /// `Forbidden` unless the member has one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), AuthError> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            Err(AuthError::Forbidden)
        }
    }

    /// Scopes a look-up by tenant: a resource of another tenant, or none, is `NotFound`
    /// (never `Forbidden`, which would confirm that it exists).
    pub fn scoped<T>(
        &self,
        what: &'static str,
        found: Option<(TenantId, T)>,
    ) -> Result<T, AuthError> {
        match found {
            Some((tenant, value)) if tenant == self.tenant_id => Ok(value),
            _ => Err(AuthError::NotFound(what)),
        }
    }

    /// The session's CSRF token, for rendering forms (`None` for bearer requests).
    pub fn csrf_token(&self) -> Option<&str> {
        match &self.via {
            AuthVia::Session { csrf_token } => Some(csrf_token),
            AuthVia::Bearer => None,
        }
    }
}

fn is_safe(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

impl<S> FromRequestParts<S> for CurrentMember
where
    S: Send + Sync,
    AuthState: FromRef<S>,
{
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AuthError> {
        let auth = AuthState::from_ref(state);
        if let Some(token) = bearer_token(&parts.headers)? {
            let oidc = auth
                .oidc()
                .ok_or_else(|| AuthError::InvalidToken("no identity provider configured".into()))?;
            let access = oidc.verify_access_token(token).await?;
            let tenant = parse_tenant(
                parts
                    .headers
                    .get(TENANT_HEADER)
                    .and_then(|v| v.to_str().ok()),
            )?;
            let m = auth
                .members()
                .member_for_subject(&access.issuer, &access.subject, tenant)
                .await?
                .ok_or(AuthError::NotAMember)?;
            return Ok(Self {
                member_id: m.member_id,
                tenant_id: m.tenant_id,
                role: m.role,
                via: AuthVia::Bearer,
            });
        }
        let secret = match cookie(&parts.headers, auth.cookies().session_name()) {
            None => return Err(AuthError::Unauthenticated),
            Some(v) => secret_from(v).ok_or(AuthError::InvalidSession)?,
        };
        let m = auth
            .members()
            .session(&digest(&secret))
            .await?
            .ok_or(AuthError::InvalidSession)?;
        if !is_safe(&parts.method) {
            let ok = parts
                .headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|p| csrf_matches(&secret, p));
            if !ok {
                return Err(AuthError::Csrf);
            }
        }
        Ok(Self {
            member_id: m.member_id,
            tenant_id: m.tenant_id,
            role: m.role,
            via: AuthVia::Session {
                csrf_token: csrf_token(&secret),
            },
        })
    }
}
