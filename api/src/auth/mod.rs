//! Authentication and authorization of the owner portal and API (issue 8).
//!
//! # Portal login (OIDC authorization code + PKCE)
//!
//! ```text
//! browser            smartchat                                  provider
//!   │ GET /auth/login ─►│ binding B, state S (256-bit random each)      │
//!   │                   │ row login_attempts(H(S), H(B), tenant, +10m)  │
//!   │◄─ 303 + cookie B ─│ verifier = KDF(B,"pkce"), nonce = KDF(B,"nonce")
//!   │ GET authorize?code_challenge=S256(verifier)&state=S&nonce&resource ─►│
//!   │◄──────────────────────────── 303 /auth/callback?code&state=S&iss ──│
//!   │ GET /auth/callback ►│ DELETE row H(S) RETURNING … (single use)     │
//!   │                   │ cookie B must hash to the row's H(B)          │
//!   │                   │ iss param = issuer (RFC 9207)                 │
//!   │                   │ code + verifier ─── token endpoint ──────────►│
//!   │                   │ ID token: signature (JWKS, allow-listed alg,  │
//!   │                   │ never none/HMAC), iss, aud = client id only,  │
//!   │                   │ exp, iat, nonce, at_hash                      │
//!   │                   │ member by iss+sub, or invited verified e-mail │
//!   │                   │ one tx: sessions row H(session) + MEMBER_LOGIN│
//!   │◄─ 303 / + session cookie (HttpOnly, SameSite=Lax, Secure on https)
//! ```
//!
//! The database never holds a usable secret: login attempts keep digests of `state` and of
//! the browser-binding secret, from which the PKCE verifier and nonce are derived; sessions
//! keep the digest of the 256-bit session secret. A replayed callback finds no attempt
//! (400), a callback from another browser (or without the login cookie, hence without the
//! PKCE verifier) fails the binding check (400), and in every failure no session is written.
//! Logout (`POST /auth/logout`) deletes the session row and clears the cookie.
//!
//! # CSRF
//!
//! Each session has a synchronizer token derived from its secret (keyed BLAKE3), so it is
//! per session, unguessable without the cookie, and never stored. [`CurrentMember`] refuses
//! a session-authenticated request with a state-changing method unless `X-CSRF-Token`
//! carries it; logout also accepts the `csrf_token` form field. Pages get the token from
//! [`CurrentMember::csrf_token`] (and `/api/v1/me`). Bearer requests carry no ambient
//! credential and need none.
//!
//! # API (bearer access tokens)
//!
//! `Authorization: Bearer <JWT>` from the same provider, issued for our API as resource
//! (RFC 8707) in the RFC 9068 format: `typ` must be `at+jwt` (an ID token is refused),
//! signature by a key of the provider's JWKS (cached; an unknown `kid` refreshes it at most
//! every 10 s) under an allow-listed algorithm, `iss` exact, `aud` = our audience, `exp`,
//! `iat`/`nbf` within 60 s. The member is found by `iss` + `sub`; an identity in several
//! tenants names one with the `Smartchat-Tenant` header (else the oldest). Failures are
//! 401 with `WWW-Authenticate: Bearer error="invalid_token"`; a wrong role is 403; a
//! resource of another tenant is 404. Bodies are RFC 9457 problem details.
//!
//! # Without an identity provider
//!
//! The embedded default prints a one-time link (`/login/token/<token>`, 256-bit, only its
//! digest kept in memory, usable once). It logs the local operator in as owner of the
//! tenant named by `?tenant=` (or the oldest); the operator member of that tenant is
//! created on first use with role owner (ledgered). [`check_bind_allowed`] refuses a
//! non-loopback listen address in this mode.
//!
//! It must never log or return a token, a login, a claim value or a secret, and never
//! accept an unsigned or symmetric-key token.

pub mod bearer;
pub mod error;
pub mod extract;
pub mod local;
pub mod oidc;
pub mod session;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRef, Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use smartchat_core::ids::{MemberId, TenantId};
use smartchat_core::members::{Members, Role};
use smartchat_core::store::Store;
use smartchat_ledger::Actor;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::AuthError;
pub use extract::{AuthVia, CurrentMember, TENANT_HEADER};
pub use local::{OneTimeLogin, check_bind_allowed};
pub use oidc::Oidc;
pub use session::{CSRF_FIELD, CSRF_HEADER, Cookies};

/// The identity provider's settings (`SMARTCHAT_OIDC_*`).
#[derive(Clone)]
pub struct AuthConfig {
    /// `SMARTCHAT_OIDC_ISSUER`: the issuer URL, compared exactly with the discovered one.
    pub issuer_url: String,
    /// `SMARTCHAT_OIDC_CLIENT_ID`.
    pub client_id: String,
    /// `SMARTCHAT_OIDC_CLIENT_SECRET` (confidential client; `None` for a public one).
    pub client_secret: Option<secrecy::SecretString>,
    /// `SMARTCHAT_OIDC_REDIRECT_URL`: `<public base>/auth/callback`; https makes cookies
    /// `Secure` with the `__Host-` prefix.
    pub redirect_url: String,
    /// `SMARTCHAT_OIDC_AUDIENCE`: the API's resource indicator, required in access tokens.
    pub audience: String,
    /// Allowed signature algorithms (default RS256, ES256, EdDSA; HMAC and `none` are
    /// refused whatever is listed).
    pub allowed_algs: Vec<String>,
    /// How long a portal session lasts (default 12 h).
    pub session_lifetime: Duration,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("issuer_url", &self.issuer_url)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<set>"),
            )
            .field("redirect_url", &self.redirect_url)
            .field("audience", &self.audience)
            .field("allowed_algs", &self.allowed_algs)
            .field("session_lifetime", &self.session_lifetime)
            .finish()
    }
}

/// Default session lifetime.
pub const DEFAULT_SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);

impl AuthConfig {
    /// Settings with the default algorithms and session lifetime.
    pub fn new(
        issuer_url: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: Option<secrecy::SecretString>,
        redirect_url: impl Into<String>,
        audience: impl Into<String>,
    ) -> Self {
        Self {
            issuer_url: issuer_url.into(),
            client_id: client_id.into(),
            client_secret,
            redirect_url: redirect_url.into(),
            audience: audience.into(),
            allowed_algs: vec!["RS256".into(), "ES256".into(), "EdDSA".into()],
            session_lifetime: DEFAULT_SESSION_LIFETIME,
        }
    }
}

/// What the auth routes and extractors need. Cheap to clone. The lead's state provides it
/// with `impl FromRef<AppState> for AuthState`.
#[derive(Clone, Debug)]
pub struct AuthState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    members: Members,
    oidc: Option<Oidc>,
    cookies: Cookies,
    session_lifetime: Duration,
    one_time: OneTimeLogin,
}

impl AuthState {
    /// With an identity provider: discovers it now (a provider that cannot be reached
    /// stops start-up with the reason).
    pub async fn with_oidc(store: Store, config: &AuthConfig) -> Result<Self, AuthError> {
        let oidc = Oidc::discover(config).await?;
        Ok(Self {
            inner: Arc::new(Inner {
                members: Members::new(store),
                oidc: Some(oidc),
                cookies: Cookies {
                    secure: config.redirect_url.starts_with("https://"),
                },
                session_lifetime: config.session_lifetime,
                one_time: OneTimeLogin::default(),
            }),
        })
    }

    /// Without an identity provider (embedded default): sessions come only from the
    /// one-time link `login`; cookies are not `Secure` (plain http on loopback).
    pub fn local(store: Store, login: OneTimeLogin) -> Self {
        Self {
            inner: Arc::new(Inner {
                members: Members::new(store),
                oidc: None,
                cookies: Cookies { secure: false },
                session_lifetime: DEFAULT_SESSION_LIFETIME,
                one_time: login,
            }),
        }
    }

    /// The members repository.
    pub fn members(&self) -> &Members {
        &self.inner.members
    }

    /// The identity provider, when configured.
    pub fn oidc(&self) -> Option<&Oidc> {
        self.inner.oidc.as_ref()
    }

    /// Cookie settings.
    pub fn cookies(&self) -> Cookies {
        self.inner.cookies
    }

    /// Session lifetime.
    pub fn session_lifetime(&self) -> Duration {
        self.inner.session_lifetime
    }

    pub(crate) fn one_time_login(&self) -> &OneTimeLogin {
        &self.inner.one_time
    }
}

/// The auth routes outside the API: `/auth/login`, `/auth/callback`, `/auth/logout` (POST,
/// CSRF) and `/login/token/{token}`.
pub fn public_routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    AuthState: FromRef<S>,
{
    Router::new()
        .route("/auth/login", get(session::get_login))
        .route("/auth/callback", get(session::get_callback))
        .route("/auth/logout", post(session::post_logout))
        .route("/login/token/{token}", get(local::get_token_login))
}

/// The auth routes of the API, documented: `/api/v1/me`, `/api/v1/members/{id}` and
/// `/api/v1/members/{id}/role` (PUT, owners only).
pub fn api_routes<S>() -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    AuthState: FromRef<S>,
{
    OpenApiRouter::new()
        .routes(routes!(get_me))
        .routes(routes!(get_member))
        .routes(routes!(put_member_role))
}

/// All the auth routes ([`public_routes`] and [`api_routes`]). Mount with
/// `.merge(auth::router())` where the rest of the API is not served.
pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    AuthState: FromRef<S>,
{
    public_routes().merge(Router::from(api_routes()))
}

/// Who the caller is.
#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    /// The member.
    pub member_id: MemberId,
    /// Their tenant.
    pub tenant_id: TenantId,
    /// Their role.
    pub role: Role,
    /// `session` or `bearer`.
    #[schema(value_type = String, example = "session")]
    pub via: &'static str,
    /// The session's CSRF token (for `X-CSRF-Token`); `null` for a bearer request.
    pub csrf_token: Option<String>,
}

/// `GET /api/v1/me`: who the caller is (and, for a session, its CSRF token).
#[utoipa::path(
    get,
    path = "/api/v1/me",
    operation_id = "get_me",
    tag = "members",
    responses((status = 200, description = "The calling member", body = Me))
)]
async fn get_me(me: CurrentMember) -> Json<Me> {
    Json(Me {
        member_id: me.member_id,
        tenant_id: me.tenant_id,
        role: me.role,
        via: match me.via {
            AuthVia::Session { .. } => "session",
            AuthVia::Bearer => "bearer",
        },
        csrf_token: me.csrf_token().map(str::to_owned),
    })
}

fn parse_member(text: &str) -> Result<MemberId, AuthError> {
    text.parse().map_err(|_| AuthError::NotFound("member"))
}

/// A member as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemberView {
    /// The member.
    pub member_id: MemberId,
    /// Their tenant.
    pub tenant_id: TenantId,
    /// Their role.
    pub role: Role,
}

/// `GET /api/v1/members/{id}`: a member of the caller's tenant; 404 for any other.
#[utoipa::path(
    get,
    path = "/api/v1/members/{member_id}",
    operation_id = "get_member",
    tag = "members",
    params(("member_id" = String, Path, description = "The member's id (a UUID)")),
    responses((status = 200, description = "The member", body = MemberView))
)]
async fn get_member(
    State(state): State<AuthState>,
    me: CurrentMember,
    Path(member_id): Path<String>,
) -> Result<Json<MemberView>, AuthError> {
    let id = parse_member(&member_id)?;
    let m = state.members().member(me.tenant_id, id).await?;
    Ok(Json(MemberView {
        member_id: m.member_id,
        tenant_id: m.tenant_id,
        role: m.role,
    }))
}

/// Body of `PUT /api/v1/members/{id}/role`.
#[derive(Debug, Deserialize, ToSchema)]
struct RoleBody {
    role: Role,
}

/// A member's new role.
#[derive(Debug, Serialize, ToSchema)]
pub struct RoleChange {
    /// The member.
    pub member_id: MemberId,
    /// Their role now.
    pub role: Role,
}

/// `PUT /api/v1/members/{id}/role`: owners only; ledgered.
#[utoipa::path(
    put,
    path = "/api/v1/members/{member_id}/role",
    operation_id = "set_member_role",
    tag = "members",
    params(("member_id" = String, Path, description = "The member's id (a UUID)")),
    request_body = RoleBody,
    responses((status = 200, description = "The role was set", body = RoleChange))
)]
async fn put_member_role(
    State(state): State<AuthState>,
    me: CurrentMember,
    Path(member_id): Path<String>,
    crate::error::JsonBody(body): crate::error::JsonBody<RoleBody>,
) -> Result<axum::response::Response, AuthError> {
    use axum::response::IntoResponse as _;
    me.require(&[Role::Owner])?;
    let id = parse_member(&member_id)?;
    match state
        .members()
        .set_role(
            me.tenant_id,
            id,
            body.role,
            Actor::Member(me.member_id.bytes()),
        )
        .await
    {
        Ok(()) => Ok(Json(RoleChange {
            member_id: id,
            role: body.role,
        })
        .into_response()),
        Err(smartchat_core::CoreError::Conflict { what }) if what.starts_with("last owner") => {
            Ok(crate::team::last_owner_problem())
        }
        Err(e) => Err(e.into()),
    }
}
