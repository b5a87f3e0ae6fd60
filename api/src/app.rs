//! The axum application: state built once in `main` and passed down (no globals), and the
//! router.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use smartchat_core::db::Schema;
use smartchat_core::store::Store;

use crate::error::AppError;

/// Everything a request may need. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
}

impl AppState {
    /// Builds the state.
    pub fn new(store: Store) -> Self {
        Self {
            inner: Arc::new(Inner { store }),
        }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }
}

/// Body size limit for every route (Meta's webhook bodies are far smaller).
pub const BODY_LIMIT: usize = 1024 * 1024;

/// The router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(get_health))
        .route("/readyz", get(get_readiness))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(BODY_LIMIT))
        .with_state(state)
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
