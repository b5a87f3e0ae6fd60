//! The axum application: state built once in `main` and passed down (no globals), and the
//! router.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::{get, post};

use axum::{Json, Router};
use serde_json::json;
use smartchat_core::db::Schema;
use smartchat_core::ledger_store::Ledger;
use smartchat_core::store::Store;

use crate::boot::Services;

use crate::error::AppError;

/// Everything a request may need. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    services: Services,
    pipeline: crate::pipeline::Pipeline,
    meta_app_secret: Option<String>,
    meta_verify_token: Option<String>,
    /// `SMARTCHAT_METRICS_TOKEN` (`GET /metrics` is off without it).
    metrics_token: Option<String>,
    /// `SMARTCHAT_TRUSTED_PROXIES`.
    trusted_proxies: Vec<ipnet::IpNet>,
    auth: crate::auth::AuthState,
    search: Option<crate::search::Search>,
    /// Public rights requests per client address (in this process).
    ip_limiter: crate::rights::IpLimiter,
    /// Portal usage counts (page views, feature use) not yet counted this hour.
    usage: crate::portal::usage::Usage,
    /// The API's routes, which the portal calls in process (stateless: no cycle).
    api_routes: Router<AppState>,
    /// The webhook's group commit, started with the first delivery (on the runtime that
    /// serves it).
    group_commit: std::sync::OnceLock<crate::ingest::GroupCommit>,
}

impl AppState {
    /// Builds the state.
    pub fn new(
        services: Services,
        pipeline: crate::pipeline::Pipeline,
        auth: crate::auth::AuthState,
        config: &smartchat_core::config::Config,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                services,
                pipeline,
                meta_app_secret: config
                    .meta_app_secret
                    .as_ref()
                    .map(|s| s.expose().to_owned()),
                meta_verify_token: config
                    .meta_verify_token
                    .as_ref()
                    .map(|s| s.expose().to_owned()),
                metrics_token: config.metrics_token.as_ref().map(|s| s.expose().to_owned()),
                trusted_proxies: config.trusted_proxies.clone(),
                auth,
                search: None,
                ip_limiter: crate::rights::IpLimiter::default(),
                usage: crate::portal::usage::Usage::default(),
                api_routes: api_routes(),
                group_commit: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Serves search from this index (the process that runs the indexer).
    pub fn with_search(mut self, search: crate::search::Search) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.search = Some(search);
        }
        self
    }

    /// Search, when this process runs the indexer.
    pub fn search(&self) -> Option<&crate::search::Search> {
        self.inner.search.as_ref()
    }

    /// The message pipeline.
    pub fn pipeline(&self) -> &crate::pipeline::Pipeline {
        &self.inner.pipeline
    }

    /// The webhook's group commit (its committer task starts on first use; it holds only
    /// the pipeline, so it ends when this state is dropped).
    pub fn group_commit(&self) -> &crate::ingest::GroupCommit {
        self.inner
            .group_commit
            .get_or_init(|| crate::ingest::GroupCommit::start(self.inner.pipeline.clone()))
    }

    /// Meta's app secret (webhook signatures).
    pub fn meta_app_secret(&self) -> Option<&str> {
        self.inner.meta_app_secret.as_deref()
    }

    /// The webhook subscription verify token.
    pub fn meta_verify_token(&self) -> Option<&str> {
        self.inner.meta_verify_token.as_deref()
    }

    /// The reverse proxies whose `X-Forwarded-For` is believed.
    pub fn trusted_proxies(&self) -> &[ipnet::IpNet] {
        &self.inner.trusted_proxies
    }

    /// The bearer token of `GET /metrics`, when configured.
    pub fn metrics_token(&self) -> Option<&str> {
        self.inner.metrics_token.as_deref()
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.services.store
    }

    /// The ledger.
    pub fn ledger(&self) -> &Ledger {
        &self.inner.services.ledger
    }

    /// The API's routes without a state (for the portal's in-process calls).
    pub fn api_routes(&self) -> &Router<AppState> {
        &self.inner.api_routes
    }

    /// Portal usage counting.
    pub fn usage(&self) -> &crate::portal::usage::Usage {
        &self.inner.usage
    }

    /// Whether an identity provider is configured (else the one-time link logs in).
    pub fn oidc_configured(&self) -> bool {
        self.inner.auth.oidc().is_some()
    }

    /// The per-address limiter of public rights requests.
    pub fn ip_limiter(&self) -> &crate::rights::IpLimiter {
        &self.inner.ip_limiter
    }
}

impl axum::extract::FromRef<AppState> for crate::auth::AuthState {
    fn from_ref(state: &AppState) -> Self {
        state.inner.auth.clone()
    }
}

/// Body size limit for every route (Meta's webhook bodies are far smaller).
pub const BODY_LIMIT: usize = 1024 * 1024;

/// The whole application: the API and public routes, and the portal's pages.
pub fn router(state: AppState) -> Router {
    api_router(state.clone()).merge(crate::portal::router().with_state(state))
}

/// The API and public routes.
pub fn api_router(state: AppState) -> Router {
    api_routes().with_state(state)
}

/// The API and public routes before they are given a state (the portal keeps one copy and
/// calls it in process, see [`crate::portal`]).
pub fn api_routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(get_health))
        .route("/readyz", get(get_readiness))
        .route("/metrics", get(crate::metrics::get_metrics))
        .route(
            "/webhooks/whatsapp",
            get(crate::webhook::get_webhook).post(crate::webhook::post_webhook),
        )
        .route("/b/{token}", get(crate::booking::open))
        .route(
            "/rights/{handle}/requests",
            post(crate::rights::public_request),
        )
        .route("/rights/challenges/{id}", post(crate::rights::confirm))
        .route("/rights/downloads/{token}", get(crate::rights::download))
        .merge(crate::auth::public_routes::<AppState>())
        // Every /api/v1 route, each with its OpenAPI documentation (crate::openapi).
        .merge(axum::Router::from(crate::openapi::routes()))
        .route(LEDGER_KEY_PATH, get(get_ledger_key))
        .route(
            "/.well-known/smartchat/ledger-checkpoint",
            get(get_ledger_checkpoint),
        )
        // Refuses a declared oversized body (Content-Length) with 413 before reading it,
        // and caps bodies without a length while they stream.
        .layer(tower_http::limit::RequestBodyLimitLayer::new(BODY_LIMIT))
        .layer(axum::middleware::map_response(too_large_as_problem))
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
}

/// The body limit layer answers 413 in plain text; every error of ours is a problem
/// document, so that one becomes one too.
async fn too_large_as_problem(res: axum::response::Response) -> axum::response::Response {
    let plain = res.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE
        && res
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|v| !v.starts_with(crate::openapi::PROBLEM_JSON));
    if plain {
        crate::error::problem(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "the body is larger than 1 MiB",
        )
    } else {
        res
    }
}

/// Where the ledger's checkpoint verifier key is published (C2SP vkey, text/plain).
pub const LEDGER_KEY_PATH: &str = "/.well-known/smartchat/ledger-key";

/// The checkpoint verifier key, so auditors can pin it.
async fn get_ledger_key(State(state): State<AppState>) -> String {
    format!("{}\n", state.ledger().vkey())
}

/// The latest signed checkpoint (a C2SP signed note), 404 before the first one.
async fn get_ledger_checkpoint(State(state): State<AppState>) -> Result<String, AppError> {
    match state.ledger().latest_checkpoint().await? {
        Some(cp) => Ok(cp.note),
        None => Err(AppError::Core(smartchat_core::CoreError::NotFound {
            what: "checkpoint",
        })),
    }
}

/// The process is up.
async fn get_health() -> &'static str {
    "ok"
}

/// The database answers and every migration is applied.
async fn get_readiness(State(state): State<AppState>) -> Result<Json<serde_json::Value>, AppError> {
    let pending = state
        .store()
        .db
        .pending_migrations(Schema::Main)
        .await
        .map_err(|e| AppError::NotReady(format!("database: {e}")))?;
    if pending > 0 {
        return Err(AppError::NotReady(format!("{pending} migrations pending")));
    }
    let ks_pending = state
        .store()
        .keys
        .store()
        .pending_migrations(Schema::Keystore)
        .await
        .map_err(|e| AppError::NotReady(format!("key store: {e}")))?;
    if ks_pending > 0 {
        return Err(AppError::NotReady(format!(
            "{ks_pending} key store migrations pending"
        )));
    }
    Ok(Json(json!({ "status": "ready" })))
}
