//! The owners' portal: server-rendered HTML pages (maud, auto-escaped), no build step, a
//! few lines of plain JavaScript at most.
//!
//! # A client of the API, in process
//!
//! Every page reads through the JSON API (`/api/v1/...`) and every form acts through it:
//! a page handler builds a request carrying the viewer's own session cookie (and, for a
//! write, the session's CSRF token), runs it through the API router in this process
//! ([`Viewer::api`]), and renders the JSON it gets back. So the portal holds no logic of
//! its own about who may see or change what: the API's role checks, tenant scoping,
//! validation, ledgering and problem details are the portal's too, and a page can show
//! nothing the API would not give the same member.
//!
//! # Forms and CSRF
//!
//! Forms are plain HTML `POST`s (`application/x-www-form-urlencoded`) with a hidden
//! `csrf_token` field. [`form_csrf`] moves that field into the `X-CSRF-Token` header before
//! the request reaches the handler, so the one check of [`CurrentMember`] covers forms
//! too. After a successful write the handler answers `303 See Other` (post/redirect/get)
//! with a fixed notice code; a refused write re-renders the page with the API's status
//! and its problem detail.
//!
//! # Usage data
//!
//! Page views and feature use (privacy policy §2, usage data) are counted in the
//! anonymized analytics store as `page_view` and `feature_use` cells whose dimension is
//! the route template or the feature's name, with distinct members in place of distinct
//! customers ([`usage::Usage`]); never who, never what they typed.

mod account;
mod charts;
mod conversations;
mod html;
mod insight;
mod onboarding;
pub mod setup;
mod team;
pub mod usage;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Router, middleware};
use http_body_util::BodyExt as _;
use serde_json::Value;
use smartchat_core::CoreError;
use smartchat_core::members::Role;
use tower::ServiceExt as _;

use crate::app::AppState;
use crate::auth::error::AuthError;
use crate::auth::extract::{AuthVia, CurrentMember};
use crate::auth::session::{CSRF_FIELD, CSRF_HEADER};

/// The portal's routes (pages under `/` and `/portal/...`).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(overview))
        .route("/portal/static/portal.css", get(stylesheet))
        .route("/setup", post(setup::create))
        .route("/portal/conversations", get(conversations::list))
        .route("/portal/conversations/{id}", get(conversations::thread))
        .route(
            "/portal/conversations/{id}/reply",
            post(conversations::reply),
        )
        .route(
            "/portal/conversations/{id}/mode",
            post(conversations::switch_mode),
        )
        .route(
            "/portal/sandbox",
            get(conversations::sandbox).post(conversations::sandbox_send),
        )
        .route("/portal/search", get(conversations::search))
        .route("/portal/leads", get(conversations::leads))
        .route("/portal/leads/{id}/stage", post(conversations::lead_stage))
        .route(
            "/portal/rights",
            get(insight::rights).post(insight::rights_open),
        )
        .route("/portal/rights/{id}/{action}", post(insight::rights_action))
        .route("/portal/analytics", get(insight::analytics))
        .route("/portal/ledger", get(insight::ledger))
        .route("/portal/records", get(insight::records))
        .route("/portal/onboarding", get(onboarding::page))
        .route("/portal/onboarding/profile", post(onboarding::save_profile))
        .route(
            "/portal/onboarding/number",
            post(onboarding::connect_number),
        )
        .route(
            "/portal/onboarding/sandbox",
            post(onboarding::sandbox_number),
        )
        .route(
            "/portal/onboarding/assistant",
            post(onboarding::save_assistant),
        )
        .route("/portal/onboarding/policy", post(onboarding::save_policy))
        .route("/portal/team", get(team::page).post(team::invite))
        .route("/portal/team/{id}/{action}", post(team::member_action))
        .route("/portal/account", get(account::page))
        .route("/portal/account/terminate", post(account::terminate))
        .route_layer(middleware::from_fn(form_csrf))
}

/// Largest form the portal accepts (the profile form is the biggest, a few KiB).
const FORM_LIMIT: usize = 256 * 1024;

/// Moves a form's `csrf_token` field into the `X-CSRF-Token` header, leaving the body as
/// it was, so [`CurrentMember`]'s check applies to forms unchanged.
pub async fn form_csrf(req: Request, next: Next) -> Response {
    let is_form = req.method() == Method::POST
        && req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form || req.headers().contains_key(CSRF_HEADER) {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    let bytes = match http_body_util::Limited::new(body, FORM_LIMIT)
        .collect()
        .await
    {
        Ok(c) => c.to_bytes(),
        Err(_) => {
            return PageError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "The form is larger than the portal accepts (256 KiB).",
            )
            .into_response();
        }
    };
    let token = url::form_urlencoded::parse(&bytes)
        .find(|(k, _)| k == CSRF_FIELD)
        .and_then(|(_, v)| HeaderValue::from_str(&v).ok());
    if let Some(t) = token {
        parts.headers.insert(CSRF_HEADER, t);
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// A portal page or form failed: the status and a sentence for the person.
#[derive(Debug)]
pub struct PageError {
    status: StatusCode,
    detail: String,
}

impl PageError {
    fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            detail: detail.into(),
        }
    }
}

impl From<AuthError> for PageError {
    fn from(e: AuthError) -> Self {
        let (status, _, detail) = e.parts();
        if status.is_server_error() {
            tracing::error!(error = %e, "portal request failed");
        }
        Self { status, detail }
    }
}

impl From<CoreError> for PageError {
    fn from(e: CoreError) -> Self {
        AuthError::Core(e).into()
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        if matches!(self.status, StatusCode::UNAUTHORIZED) {
            // No (or an ended) session: the login page says how to get one.
            return Redirect::to("/").into_response();
        }
        let body = html::bare(
            "Something went wrong",
            maud::html! {
                h1 { (self.status.as_u16()) " " (self.status.canonical_reason().unwrap_or("")) }
                p.problem { (self.detail) }
                p { a href="/" { "Back to the overview" } }
            },
        );
        (self.status, body).into_response()
    }
}

/// The member looking at a page: a portal session (bearer tokens are for scripts, not
/// pages), with what the in-process API calls need.
#[derive(Debug, Clone)]
pub struct Viewer {
    /// Who they are.
    pub me: CurrentMember,
    cookie: HeaderValue,
    csrf: String,
    /// The route template of this page (`/portal/leads`), for usage counts.
    route: String,
}

impl<S> FromRequestParts<S> for Viewer
where
    S: Send + Sync,
    AppState: axum::extract::FromRef<S>,
{
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, PageError> {
        let app = <AppState as axum::extract::FromRef<S>>::from_ref(state);
        let me = CurrentMember::from_request_parts(parts, &app).await?;
        let AuthVia::Session { csrf_token } = &me.via else {
            return Err(PageError::new(
                StatusCode::FORBIDDEN,
                "The portal needs a browser session; bearer tokens are for the API.",
            ));
        };
        let cookie = parts
            .headers
            .get(header::COOKIE)
            .cloned()
            .ok_or(AuthError::Unauthenticated)?;
        let route = parts
            .extensions
            .get::<axum::extract::MatchedPath>()
            .map(|m| m.as_str().to_owned())
            .unwrap_or_default();
        let csrf = csrf_token.clone();
        let viewer = Self {
            me,
            cookie,
            csrf,
            route,
        };
        if parts.method == Method::GET {
            app.usage()
                .count(&app, &viewer, usage::PAGE_VIEW, &viewer.route);
        }
        Ok(viewer)
    }
}

/// What the API answered an in-process call.
#[derive(Debug)]
pub struct ApiReply {
    /// Its status.
    pub status: StatusCode,
    /// Its body as JSON (`Null` when it was not JSON).
    pub json: Value,
}

impl ApiReply {
    /// The problem detail of a refused call (or a generic sentence).
    pub fn detail(&self) -> String {
        self.json["detail"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("The request was refused ({}).", self.status))
    }

    /// The body of a successful call, or the call's problem as a [`PageError`].
    pub fn ok(self) -> Result<Value, PageError> {
        if self.status.is_success() {
            Ok(self.json)
        } else {
            Err(PageError::new(self.status, self.detail()))
        }
    }
}

impl Viewer {
    /// The member's role.
    pub fn role(&self) -> Role {
        self.me.role
    }

    /// 403 unless the member has one of `roles` (for pages that show a form before they
    /// call the API, which checks again).
    pub fn require(&self, roles: &[Role]) -> Result<(), PageError> {
        Ok(self.me.require(roles)?)
    }

    /// The session's CSRF token, for hidden form fields.
    pub fn csrf(&self) -> &str {
        &self.csrf
    }

    /// Calls the JSON API in process as this member.
    pub async fn api(
        &self,
        state: &AppState,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<ApiReply, PageError> {
        let mut req = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header(header::COOKIE, self.cookie.clone())
            .header(CSRF_HEADER, &self.csrf)
            .header(header::ACCEPT, "application/json");
        let body = match body {
            Some(v) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Body::from(serde_json::to_vec(v).map_err(|e| CoreError::Internal(e.to_string()))?)
            }
            None => Body::empty(),
        };
        let req = req
            .body(body)
            .map_err(|e| CoreError::Internal(e.to_string()))?;
        let res = state
            .api_routes()
            .clone()
            .with_state(state.clone())
            .oneshot(req)
            .await
            .map_err(|e| CoreError::Internal(e.to_string()))?;
        let status = res.status();
        let bytes: Bytes = res
            .into_body()
            .collect()
            .await
            .map_err(|e| CoreError::Internal(e.to_string()))?
            .to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(ApiReply { status, json })
    }

    /// `GET` through the API; a refusal becomes the page's error.
    pub async fn get(&self, state: &AppState, path: &str) -> Result<Value, PageError> {
        self.api(state, Method::GET, path, None).await?.ok()
    }

    /// A write through the API, counted as use of `feature`.
    pub async fn act(
        &self,
        state: &AppState,
        feature: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<ApiReply, PageError> {
        let reply = self.api(state, method, path, body).await?;
        if reply.status.is_success() {
            state
                .usage()
                .count(state, self, usage::FEATURE_USE, feature);
        }
        Ok(reply)
    }
}

/// An id the portal puts into an API path: ids are UUIDs, so anything else is a 404
/// before it reaches the API.
pub(crate) fn id_segment(s: &str, what: &'static str) -> Result<String, PageError> {
    if !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
        Ok(s.to_owned())
    } else {
        Err(PageError::new(
            StatusCode::NOT_FOUND,
            format!("{what} not found"),
        ))
    }
}

/// `303` back to `to` with a notice code the page turns into a sentence.
pub(crate) fn done(to: &str, notice: &str) -> Response {
    let sep = if to.contains('?') { '&' } else { '?' };
    Redirect::to(&format!("{to}{sep}notice={notice}")).into_response()
}

/// `GET /`: the overview for a member, the login page for anyone else.
async fn overview(
    axum::extract::State(state): axum::extract::State<AppState>,
    viewer: Result<Viewer, PageError>,
) -> Result<Response, PageError> {
    let viewer = match viewer {
        Ok(v) => v,
        Err(e) if matches!(e.status, StatusCode::UNAUTHORIZED) => {
            return Ok(html::login_page(state.oidc_configured()).into_response());
        }
        Err(e) => return Err(e),
    };
    let account = match viewer.role() {
        Role::Owner => Some(viewer.get(&state, "/api/v1/account").await?),
        _ => None,
    };
    let profile = match viewer.role() {
        Role::Auditor => None,
        _ => Some(viewer.get(&state, "/api/v1/profile").await?),
    };
    let recent = match viewer.role() {
        Role::Auditor => Value::Null,
        _ => viewer.get(&state, "/api/v1/conversations?limit=5").await?,
    };
    Ok(html::page(
        &viewer,
        "Overview",
        "/",
        None,
        html::overview(&viewer, profile.as_ref(), account.as_ref(), &recent),
    )
    .into_response())
}

/// The portal's stylesheet (embedded, cached for a day).
async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        include_str!("portal.css"),
    )
        .into_response()
}

/// The `notice` query parameter of a page after a redirect.
#[derive(Debug, Default, serde::Deserialize)]
pub struct Notice {
    #[serde(default)]
    notice: Option<String>,
}

impl Notice {
    /// The sentence for a known notice code (unknown codes say nothing).
    pub fn text(&self) -> Option<&'static str> {
        Some(match self.notice.as_deref()? {
            "reply_sent" => "Your reply is queued for sending.",
            "mode_human" => "You have taken over this conversation; the assistant is silent.",
            "mode_assistant" => "The assistant answers this conversation again.",
            "stage_changed" => "The lead's stage is changed.",
            "dsr_opened" => "The request is recorded; its deadline runs from now.",
            "dsr_extended" => "The deadline is extended and the extension recorded.",
            "dsr_rejected" => "The request is rejected and the reason recorded.",
            "profile_saved" => "The business profile is saved.",
            "number_connected" => "The WhatsApp number is connected.",
            "sandbox_connected" => "A sandbox number is connected: try your assistant now.",
            "assistant_saved" => "The assistant settings are saved.",
            "policy_saved" => "The tightened policy is in force.",
            "member_invited" => "The invitation is recorded; they log in with that identity.",
            "member_removed" => "The member is removed and their sessions ended.",
            "role_changed" => "The member's role is changed.",
            "terminated" => "The account is terminated; export your data before the window closes.",
            _ => return None,
        })
    }
}
