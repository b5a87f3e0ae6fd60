//! Conversation search, wired: the indexer that applies the search feed
//! ([`smartchat_core::search_feed`]) to the per-tenant encrypted tantivy indexes
//! ([`smartchat_search`]), the rebuild (`smartchat search reindex`, and any index found
//! missing or unreadable), and the owner's search endpoint.
//!
//! Freshness: the indexer polls the feed every 250 ms when idle, and under load starts a
//! round at most once a second, committing each tenant it touched once per round (at most
//! [`BATCH`] rows, and at most [`FLUSH_MAX`] messages per commit), so a message is
//! searchable within about 2 seconds of its webhook while the indexer keeps up. The commit
//! payload records the last feed sequence applied; feed rows are deleted only after that
//! commit, so after a crash the rows still present are applied again (idempotent: a
//! message's document is replaced by id).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use smartchat_core::CoreError;
use smartchat_core::ids::TenantId;
use smartchat_core::members::Role;
use smartchat_core::priority::BackgroundPriority;
use smartchat_core::search_feed::{self, FeedOp, IndexMessage};
use smartchat_core::store::Store;
use smartchat_ledger::{Actor, AttrKey, AttrValue, EntryDraft, EventKind, Purpose};
use smartchat_search::{
    Direction, DocMessage, IndexManager, ManagerConfig, OpenOutcome, SearchError, SearchKey,
    SearchQuery, SearchResults, SortOrder,
};

use crate::app::AppState;
use crate::auth::error::AuthError;
use crate::auth::extract::CurrentMember;
use crate::error::{Problem, QueryParams, problem, problem_with};

/// Feed rows applied per round (one index commit per tenant per round, or one per
/// [`FLUSH_MAX`] of its messages). A round's rows are the backlog's, however many tenants
/// they belong to: every commit starts a new segment, and in tantivy a new segment costs
/// far more than the documents in it (a 4 MB term table allocated, filled and scanned, a
/// set of files created and synced, more to merge later). With 2,000 rows a round over 50
/// busy tenants made segments of about 40 messages, and the indexer fell further behind at
/// 1,900 deliveries/s (webhook benchmark: 60,000 rows waiting after three 12-second steps);
/// with 20,000 it kept up at the same rate and CPU (9,000 to 17,000 rows waiting, about
/// one round's worth).
pub const BATCH: i64 = 20_000;
/// Most messages opened and handed to one tenant's index per commit: bounds the memory of
/// a round whose rows are mostly one tenant's (each opened message is held until its
/// commit).
pub const FLUSH_MAX: usize = 2_000;
/// How often the indexer looks at an empty feed.
const IDLE_POLL: Duration = Duration::from_millis(250);
/// The shortest time from one round's start to the next while the feed has rows but not a
/// full batch: each tenant's index commits at most about once per round.
const ROUND: Duration = Duration::from_millis(1000);
/// Documents per commit during a rebuild.
const REBUILD_BATCH: usize = 10_000;
/// Messages read from the database per page during a rebuild.
const REBUILD_PAGE: i64 = 1000;

/// Why a search or an indexing step failed.
#[derive(Debug, thiserror::Error)]
pub enum SearchFailure {
    /// From the core (database, keys).
    #[error(transparent)]
    Core(#[from] CoreError),
    /// From the index.
    #[error(transparent)]
    Index(#[from] SearchError),
}

/// The search side of a server process: the index manager and the store it mirrors.
#[derive(Clone)]
pub struct Search {
    manager: Arc<IndexManager>,
    store: Store,
    /// Tenants whose index is open (and, if it had to be, rebuilt).
    open: Arc<tokio::sync::Mutex<HashSet<TenantId>>>,
    /// Messages per commit ([`FLUSH_MAX`]).
    flush_max: usize,
}

impl std::fmt::Debug for Search {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Search")
    }
}

fn doc(m: IndexMessage) -> DocMessage {
    DocMessage {
        direction: if m.row.direction == "in" {
            Direction::In
        } else {
            Direction::Out
        },
        message_id: m.row.id,
        conversation_id: m.row.conversation_id,
        subject: m.pseudonym,
        kind: m.row.kind,
        time_micros: m.row.created_at,
        text: m.text,
    }
}

fn is_damage(e: &SearchError) -> bool {
    matches!(e, SearchError::Crypto | SearchError::CorruptIndex(_))
}

impl Search {
    /// Index folders under `root` (`<data_dir>/search`).
    pub fn new(store: Store, root: PathBuf) -> Result<Self, SearchFailure> {
        Self::with_priority(store, root, BackgroundPriority::Normal)
    }

    /// Indexes whose writers' threads run at `priority` (the background's,
    /// `SMARTCHAT_BACKGROUND_PRIORITY`), whichever thread first needs a writer: a search
    /// request may open a tenant's index before the indexer does.
    pub fn with_priority(
        store: Store,
        root: PathBuf,
        priority: BackgroundPriority,
    ) -> Result<Self, SearchFailure> {
        fn lower(p: BackgroundPriority) {
            if let Err(reason) = smartchat_core::priority::lower_current_thread(p) {
                tracing::warn!(%reason, "an index writer keeps the normal priority");
            }
        }
        fn idle() {
            lower(BackgroundPriority::Idle);
        }
        fn low() {
            lower(BackgroundPriority::Low);
        }
        let config = ManagerConfig {
            writer_setup: match priority {
                BackgroundPriority::Idle => Some(idle),
                BackgroundPriority::Low => Some(low),
                BackgroundPriority::Normal => None,
            },
            ..ManagerConfig::default()
        };
        Ok(Self {
            manager: Arc::new(IndexManager::new(root, config)?),
            store,
            open: Arc::new(tokio::sync::Mutex::new(HashSet::new())),
            flush_max: FLUSH_MAX,
        })
    }

    /// The same indexes (writers, open set) with storage read through `store`: the
    /// background runtime's indexer uses its own pools ([`Store::twin`]).
    pub fn on_store(&self, store: Store) -> Self {
        Self {
            manager: self.manager.clone(),
            store,
            open: self.open.clone(),
            flush_max: self.flush_max,
        }
    }

    /// The same, committing a tenant's index every `n` messages (at least 1) instead of every
    /// [`FLUSH_MAX`] (tests use a small `n` to see a round split its commits).
    pub fn with_flush_max(mut self, n: usize) -> Self {
        self.flush_max = n.max(1);
        self
    }

    /// The manager (tests inspect disk usage and files).
    pub fn manager(&self) -> &IndexManager {
        &self.manager
    }

    /// Opens the tenant's index; one that is missing or unreadable is recreated and rebuilt
    /// from the database.
    async fn ensure_open(&self, tenant: TenantId) -> Result<(), SearchFailure> {
        let mut open = self.open.lock().await;
        if open.contains(&tenant) {
            return Ok(());
        }
        let key = self.store.tenant_key(tenant).await?;
        let tid = tenant.to_string();
        match self
            .manager
            .open_or_reset(&tid, SearchKey::new(key.search_key()))
            .await?
        {
            OpenOutcome::Opened { .. } => {}
            OpenOutcome::Created => {
                self.rebuild_locked(tenant, |_, _| {}).await?;
            }
            OpenOutcome::Reset { reason } => {
                tracing::warn!(tenant = %tenant, reason, "search index unreadable; rebuilding it from the database");
                self.rebuild_locked(tenant, |_, _| {}).await?;
            }
        }
        open.insert(tenant);
        Ok(())
    }

    /// Forgets an open index after damage, so the next use reopens (and rebuilds) it.
    async fn invalidate(&self, tenant: TenantId) {
        self.open.lock().await.remove(&tenant);
        let _ = self.manager.close(&tenant.to_string()).await;
    }

    /// Rebuilds the tenant's index from the database; `progress(done, total)`.
    pub async fn rebuild(
        &self,
        tenant: TenantId,
        progress: impl FnMut(u64, u64) + Send + 'static,
    ) -> Result<u64, SearchFailure> {
        let mut open = self.open.lock().await;
        let key = self.store.tenant_key(tenant).await?;
        let tid = tenant.to_string();
        self.manager
            .open_or_reset(&tid, SearchKey::new(key.search_key()))
            .await?;
        let n = self.rebuild_locked(tenant, progress).await?;
        open.insert(tenant);
        Ok(n)
    }

    /// The rebuild itself (the caller holds the `open` lock and has opened the index). The
    /// watermark is the feed's highest sequence for the tenant, read before the first page,
    /// so every change after it is applied again from the feed.
    async fn rebuild_locked(
        &self,
        tenant: TenantId,
        mut progress: impl FnMut(u64, u64) + Send + 'static,
    ) -> Result<u64, SearchFailure> {
        let tid = tenant.to_string();
        let watermark = search_feed::max_seq(&self.store.db, &tid).await?;
        let total = u64::try_from(self.store.indexable_count(tenant).await?).unwrap_or(0);
        let (tx, mut rx) = tokio::sync::mpsc::channel::<DocMessage>(REBUILD_PAGE as usize * 2);
        let store = self.store.clone();
        // Pages are read and opened on the runtime; the index consumes them on its blocking
        // thread, so memory holds at most two pages.
        let reader = tokio::spawn(async move {
            let mut after: Option<String> = None;
            loop {
                let (page, last) = store
                    .message_page_for_index(tenant, after.as_deref(), REBUILD_PAGE)
                    .await?;
                if last.is_none() {
                    return Ok::<(), CoreError>(());
                }
                for m in page {
                    if tx.send(doc(m)).await.is_err() {
                        return Ok(());
                    }
                }
                after = last;
            }
        });
        let docs = std::iter::from_fn(move || rx.blocking_recv());
        let count = self
            .manager
            .rebuild(
                &tid,
                docs,
                u64::try_from(watermark).unwrap_or(0),
                REBUILD_BATCH,
                move |done| progress(done, total),
            )
            .await;
        let read = reader
            .await
            .map_err(|e| CoreError::Internal(format!("rebuild reader: {e}")))?;
        read?;
        Ok(count?)
    }

    /// Applies up to [`BATCH`] feed rows; returns how many.
    pub async fn apply_pending(&self) -> Result<usize, SearchFailure> {
        let rows = search_feed::pending(&self.store.db, BATCH).await?;
        if rows.is_empty() {
            return Ok(0);
        }
        // Each tenant's rows in feed order, tenants in order of first appearance: one pass,
        // however many tenants a round of up to BATCH rows holds.
        let mut slot: HashMap<&str, usize> = HashMap::new();
        let mut tenants: Vec<(&str, Vec<&search_feed::FeedRow>)> = Vec::new();
        for r in &rows {
            let i = *slot.entry(r.tenant_id.as_str()).or_insert_with(|| {
                tenants.push((r.tenant_id.as_str(), Vec::new()));
                tenants.len() - 1
            });
            tenants[i].1.push(r);
        }
        let mut applied = Vec::with_capacity(rows.len());
        for (tid, mine) in tenants {
            let seqs: Vec<i64> = mine.iter().map(|r| r.seq).collect();
            let tenant: TenantId = match tid.parse() {
                Ok(t) => t,
                Err(_) => {
                    applied.extend(seqs);
                    continue;
                }
            };
            match self.apply_tenant(tenant, &mine).await {
                Ok(()) => applied.extend(seqs),
                Err(SearchFailure::Core(CoreError::Shredded { .. })) => {
                    // The tenant key is gone: its index is unreadable; remove it.
                    self.invalidate(tenant).await;
                    self.manager.drop_tenant(tid).await?;
                    applied.extend(seqs);
                }
                Err(SearchFailure::Index(e)) if is_damage(&e) => {
                    // Rebuilt from the database at the next round.
                    tracing::warn!(tenant = %tenant, error = %e, "search index damaged; it will be rebuilt");
                    self.invalidate(tenant).await;
                }
                Err(e) => return Err(e),
            }
        }
        search_feed::remove(&self.store.db, &applied).await?;
        Ok(rows.len())
    }

    async fn apply_tenant(
        &self,
        tenant: TenantId,
        rows: &[&search_feed::FeedRow],
    ) -> Result<(), SearchFailure> {
        let tid = tenant.to_string();
        let mut adds: Vec<String> = Vec::new();
        let mut last_add = 0i64;
        for r in rows {
            match &r.op {
                FeedOp::Add { message_id } => {
                    adds.push(message_id.clone());
                    last_add = r.seq;
                    if adds.len() >= self.flush_max {
                        self.flush(tenant, &mut adds, last_add).await?;
                    }
                }
                FeedOp::DeleteSubject { pseudonym } => {
                    self.flush(tenant, &mut adds, last_add).await?;
                    self.ensure_open(tenant).await?;
                    self.manager
                        .delete_subject(&tid, pseudonym, u64::try_from(r.seq).unwrap_or(0))
                        .await?;
                }
                FeedOp::DeleteMessage { id } => {
                    adds.retain(|a| a != id);
                    self.flush(tenant, &mut adds, last_add).await?;
                    self.ensure_open(tenant).await?;
                    self.manager
                        .delete_message(&tid, id, u64::try_from(r.seq).unwrap_or(0))
                        .await?;
                }
                FeedOp::DropTenant => {
                    adds.clear();
                    self.invalidate(tenant).await;
                    self.manager.drop_tenant(&tid).await?;
                }
            }
        }
        self.flush(tenant, &mut adds, last_add).await
    }

    async fn flush(
        &self,
        tenant: TenantId,
        adds: &mut Vec<String>,
        seq: i64,
    ) -> Result<(), SearchFailure> {
        if adds.is_empty() {
            return Ok(());
        }
        self.ensure_open(tenant).await?;
        let docs: Vec<DocMessage> = self
            .store
            .messages_for_index(tenant, adds)
            .await?
            .into_iter()
            .map(doc)
            .collect();
        self.manager
            .add_messages(&tenant.to_string(), &docs, u64::try_from(seq).unwrap_or(0))
            .await?;
        adds.clear();
        Ok(())
    }

    /// Searches the tenant's index (opening or rebuilding it first if needed; a damaged
    /// index is rebuilt and the search run again once).
    pub async fn search(
        &self,
        tenant: TenantId,
        query: &SearchQuery,
    ) -> Result<SearchResults, SearchFailure> {
        for attempt in 0..2 {
            self.ensure_open(tenant).await?;
            match self.manager.search(&tenant.to_string(), query).await {
                Err(e) if is_damage(&e) && attempt == 0 => {
                    tracing::warn!(tenant = %tenant, error = %e, "search index damaged; rebuilding it");
                    self.invalidate(tenant).await;
                }
                other => return Ok(other?),
            }
        }
        Err(SearchFailure::Index(SearchError::TenantNotOpen))
    }

    /// Applies the feed until `shutdown` changes, one round at a time (see
    /// [`next_round_in`]).
    pub async fn worker(self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            let started = tokio::time::Instant::now();
            let applied = match self.apply_pending().await {
                Ok(n) => Some(n),
                Err(e) => {
                    tracing::error!(error = %e, "search indexer");
                    None
                }
            };
            let pause = next_round_in(applied, started.elapsed());
            if pause.is_zero() {
                continue;
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }
}

/// How long the indexer waits after a round that applied `applied` feed rows (`None`: it
/// failed) and took `elapsed`. An empty feed (or a failure) is polled again after
/// [`IDLE_POLL`]. A round that found rows but not a full batch is followed by the rest of
/// [`ROUND`]: each round commits every tenant it touched (a new segment: files created,
/// merged later), so rounds back to back under a steady trickle spent more on creating files
/// than on indexing (28 % of the machine at 320 deliveries/s over 50 tenants). A full batch
/// is a backlog: the next round starts at once.
fn next_round_in(applied: Option<usize>, elapsed: Duration) -> Duration {
    match applied {
        Some(0) | None => IDLE_POLL,
        Some(n) if n >= usize::try_from(BATCH).unwrap_or(usize::MAX) => Duration::ZERO,
        Some(_) => ROUND.saturating_sub(elapsed),
    }
}

/// `GET /api/v1/search` parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// The query text.
    #[serde(default)]
    q: String,
    /// Only this conversation.
    conversation: Option<String>,
    /// Only this subject (pseudonym, as in hits).
    subject: Option<String>,
    /// `in` or `out`.
    #[param(pattern = "^(in|out)?$")]
    direction: Option<String>,
    /// From this time (RFC 3339, or a date `YYYY-MM-DD`), inclusive.
    from: Option<String>,
    /// Before this time (RFC 3339, or a date), exclusive.
    to: Option<String>,
    /// `best` (default) or `newest`.
    #[param(pattern = "^(best|newest)?$")]
    sort: Option<String>,
    /// Page size, 1..=100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<usize>,
    /// Hits to skip (≤ 10,000).
    #[param(maximum = 10000)]
    offset: Option<usize>,
}

fn bad_request(code: &'static str, detail: &str) -> Response {
    problem(StatusCode::BAD_REQUEST, code, detail)
}

fn parse_time(field: &str, v: &str) -> Result<i64, String> {
    use time::format_description::well_known::Rfc3339;
    let t = time::OffsetDateTime::parse(v, &Rfc3339)
        .or_else(|_| {
            let fmt = time::macros::format_description!("[year]-[month]-[day]");
            time::Date::parse(v, &fmt).map(|d| d.midnight().assume_utc())
        })
        .map_err(|_| format!("{field}: expected an RFC 3339 time or a date such as 2026-11-01"))?;
    i64::try_from(t.unix_timestamp_nanos() / 1000).map_err(|_| format!("{field}: out of range"))
}

/// The query, or what is wrong with a parameter.
fn to_query(p: SearchParams) -> Result<SearchQuery, String> {
    let direction = match p.direction.as_deref() {
        None | Some("") => None,
        Some("in") => Some(Direction::In),
        Some("out") => Some(Direction::Out),
        Some(_) => return Err("direction: expected in or out".into()),
    };
    let sort = match p.sort.as_deref() {
        None | Some("") | Some("best") => SortOrder::BestFirst,
        Some("newest") => SortOrder::NewestFirst,
        Some(_) => return Err("sort: expected best or newest".into()),
    };
    Ok(SearchQuery {
        text: p.q,
        subject: p.subject.filter(|s| !s.is_empty()),
        conversation_id: p.conversation.filter(|s| !s.is_empty()),
        direction,
        from_micros: p
            .from
            .as_deref()
            .map(|v| parse_time("from", v))
            .transpose()?,
        to_micros: p.to.as_deref().map(|v| parse_time("to", v)).transpose()?,
        sort,
        offset: p.offset.unwrap_or(0),
        limit: p.limit.unwrap_or(20),
    })
}

/// `GET /api/v1/search?q=…`: owners and staff search their tenant's conversations. Every
/// search is ledgered (`search_performed`: a keyed digest of the query, never its text,
/// and the result count). A syntax error is 400 with the position and a hint.
#[utoipa::path(
    get,
    path = "/api/v1/search",
    operation_id = "search_messages",
    tag = "search",
    params(SearchParams),
    responses(
        (status = 200, description = "A page of hits", body = SearchResponse),
        (status = 400, description = "A malformed parameter (`invalid_parameter`) or a query syntax error (`query_syntax`, with `position`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The business's contract has ended (`tenant_terminated`)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_search(
    State(state): State<AppState>,
    me: CurrentMember,
    QueryParams(params): QueryParams<SearchParams>,
) -> Result<Response, AuthError> {
    me.require(&[Role::Owner, Role::Staff])?;
    let Some(search) = state.search() else {
        return Ok(problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "search_unavailable",
            "search runs on the server process with SMARTCHAT_SEARCH_INDEXER=true",
        ));
    };
    let view = state.store().tenant(me.tenant_id).await?;
    if view.summary.status != "active" {
        return Ok(problem(
            StatusCode::CONFLICT,
            "tenant_terminated",
            "this business's contract has ended; its conversations can no longer be searched",
        ));
    }
    let query = match to_query(params) {
        Ok(q) => q,
        Err(why) => return Ok(bad_request("invalid_parameter", &why)),
    };
    let key = state.store().tenant_key(me.tenant_id).await?;
    let digest = key.keyed_digest("search query", query.text.as_bytes());
    let results = match search.search(me.tenant_id, &query).await {
        Ok(r) => r,
        Err(SearchFailure::Index(SearchError::QuerySyntax { position, hint })) => {
            let mut ext = serde_json::Map::new();
            ext.insert("position".into(), json!(position));
            return Ok(problem_with(
                StatusCode::BAD_REQUEST,
                "query_syntax",
                &hint,
                ext,
            ));
        }
        Err(SearchFailure::Index(SearchError::InvalidRequest(why))) => {
            return Ok(bad_request("invalid_parameter", &why));
        }
        Err(SearchFailure::Core(e)) => return Err(e.into()),
        Err(SearchFailure::Index(e)) => {
            return Err(CoreError::Internal(format!("search: {e}")).into());
        }
    };
    let draft = EntryDraft::new(
        EventKind::SEARCH_PERFORMED,
        Actor::Member(me.member_id.bytes()),
    )
    .tenant(me.tenant_id.bytes())
    .purpose(Purpose::SERVICE_DELIVERY)
    .attr(AttrKey::QUERY_DIGEST, AttrValue::Digest(digest))
    .attr(
        AttrKey::RESULT_COUNT,
        AttrValue::U64(u64::try_from(results.total).unwrap_or(u64::MAX)),
    );
    let mut tx = state.store().db.begin().await?;
    smartchat_core::audit::enqueue(&mut tx, &draft).await?;
    tx.commit().await?;
    Ok(Json(SearchResponse {
        total: results.total,
        truncated: results.truncated,
        hits: results.hits,
    })
    .into_response())
}

/// A page of search results.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct SearchResponse {
    /// Matching messages (up to where the time budget stopped counting).
    pub total: usize,
    /// True when the time budget ran out: `total` and `hits` are partial.
    pub truncated: bool,
    /// The page: message and conversation ids, subject pseudonym, direction, kind, time
    /// (unix micros), score and a highlighted snippet.
    #[schema(value_type = Vec<Object>)]
    pub hits: Vec<smartchat_search::SearchHit>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_batch_waits_for_the_rest_of_the_round() {
        let quick = Duration::from_millis(100);
        assert_eq!(next_round_in(Some(3), quick), ROUND - quick);
        assert_eq!(
            next_round_in(Some(5), ROUND + Duration::from_millis(1)),
            Duration::ZERO
        );
    }

    #[test]
    fn a_full_batch_is_a_backlog_followed_at_once() {
        let full = usize::try_from(BATCH).unwrap_or(usize::MAX);
        let quick = Duration::from_millis(100);
        assert_eq!(next_round_in(Some(full), quick), Duration::ZERO);
        assert_eq!(next_round_in(Some(full - 1), quick), ROUND - quick);
    }

    #[test]
    fn an_empty_feed_or_a_failure_is_polled_again_soon() {
        let t = Duration::from_millis(3);
        assert_eq!(next_round_in(Some(0), t), IDLE_POLL);
        assert_eq!(next_round_in(None, t), IDLE_POLL);
        assert!(IDLE_POLL < ROUND);
    }
}
