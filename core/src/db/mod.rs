//! Storage: one code path over PostgreSQL and SQLite.
//!
//! diesel's `MultiConnection` derive does not combine with diesel-async's
//! `SyncConnectionWrapper` in the released crates, so the backend is an enum of two pools
//! chosen by the URL scheme, and [`db_run!`](crate::db_run) expands one query body once per
//! backend, each arm compiled against its concrete connection type. The macro is used only
//! by the repository modules of this crate; callers see plain async functions.
//!
//! Transactions are explicit guards ([`Tx`]): `BEGIN` (SQLite: `BEGIN IMMEDIATE`, so a
//! writer never has to upgrade a read lock), then `commit()`. A guard dropped without
//! `commit()` (an error, a panic, a cancelled request) takes its connection out of the pool
//! and closes it, which rolls the transaction back: nothing half-written.

pub mod prepared;
pub mod schema;
pub mod schema_auth;

use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use diesel::{Connection as _, SqliteConnection};
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use futures::FutureExt as _;

use crate::error::CoreError;
use crate::priority::BackgroundPriority;

/// SQLite behind diesel-async's blocking wrapper.
pub type SqliteConn = SyncConnectionWrapper<SqliteConnection>;

const PG_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");
const ANALYTICS_PG_MIGRATIONS: EmbeddedMigrations =
    embed_migrations!("migrations/analytics-postgres");
const ANALYTICS_SQLITE_MIGRATIONS: EmbeddedMigrations =
    embed_migrations!("migrations/analytics-sqlite");
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const KEYSTORE_PG_MIGRATIONS: EmbeddedMigrations =
    embed_migrations!("migrations/keystore-postgres");
const KEYSTORE_SQLITE_MIGRATIONS: EmbeddedMigrations =
    embed_migrations!("migrations/keystore-sqlite");

/// Which schema a database holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    /// Tenants, subjects, messages, jobs, the ledger.
    Main,
    /// Tenant identities and service keys, wrapped by the master key.
    Keystore,
    /// Anonymized aggregates, kept apart from raw data (`crate::analytics`).
    Analytics,
}

/// What the embedded SQLite promises on a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSync {
    /// WAL with `synchronous=NORMAL`: survives a process crash, may lose the last
    /// transactions on an OS crash or power loss.
    Normal,
    /// WAL with `synchronous=FULL`: survives both.
    Full,
}

impl SqliteSync {
    fn pragma(self) -> &'static str {
        match self {
            Self::Normal => "NORMAL",
            Self::Full => "FULL",
        }
    }
}

/// A database URL, parsed by scheme.
#[derive(Clone, PartialEq, Eq)]
pub enum DbUrl {
    /// `postgres://` or `postgresql://`.
    Postgres(String),
    /// `sqlite://path` (relative or absolute) or `sqlite::memory:`.
    Sqlite(PathBuf),
}

impl std::fmt::Debug for DbUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a PostgreSQL password.
        match self {
            Self::Postgres(url) => match url::Url::parse(url) {
                Ok(mut u) => {
                    if u.password().is_some() {
                        let _ = u.set_password(Some("***"));
                    }
                    write!(f, "{u}")
                }
                Err(_) => f.write_str("postgres://<unparseable>"),
            },
            Self::Sqlite(p) => write!(f, "sqlite://{}", p.display()),
        }
    }
}

impl std::fmt::Display for DbUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

impl std::str::FromStr for DbUrl {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, CoreError> {
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            url::Url::parse(s).map_err(|e| CoreError::Config {
                key: "database_url".into(),
                reason: format!("not a valid PostgreSQL URL: {e}"),
            })?;
            Ok(Self::Postgres(s.to_owned()))
        } else if let Some(path) = s.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(CoreError::Config {
                    key: "database_url".into(),
                    reason: "sqlite:// needs a file path, e.g. sqlite://data/smartchat.db".into(),
                });
            }
            Ok(Self::Sqlite(PathBuf::from(path)))
        } else {
            Err(CoreError::Config {
                key: "database_url".into(),
                reason: "expected a URL starting with sqlite:// or postgres://".into(),
            })
        }
    }
}

/// A pool of connections to one database.
#[derive(Clone)]
pub enum DbPool {
    /// PostgreSQL through diesel-async's native connection, with what opened the pool (for
    /// [`DbPool::twin`]).
    Postgres(Pool<AsyncPgConnection>, Arc<PgSource>),
    /// SQLite through diesel-async's sync wrapper, with the process's writer gate: SQLite
    /// has one writer at a time, and waiting for it in a fair (FIFO) async queue instead of
    /// in SQLite's busy handler (which sleeps and retries, so a writer can starve past its
    /// timeout under load) gives every transaction its turn in arrival order.
    /// With what opened the pool (for [`DbPool::twin`]).
    Sqlite(
        Pool<SqliteConn>,
        Arc<tokio::sync::Mutex<()>>,
        Arc<SqliteSource>,
    ),
}

impl std::fmt::Debug for DbPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Postgres(..) => "DbPool::Postgres",
            Self::Sqlite(..) => "DbPool::Sqlite",
        })
    }
}

/// A pooled connection, outside any transaction.
#[expect(
    clippy::large_enum_variant,
    reason = "one Conn lives per request; boxing would add an allocation to every checkout"
)]
pub enum Conn {
    /// PostgreSQL.
    Pg(Object<AsyncPgConnection>),
    /// SQLite.
    Sqlite(Object<SqliteConn>),
}

/// A borrowed connection of either backend: what [`db_run!`](crate::db_run) matches on.
pub enum Raw<'a> {
    /// PostgreSQL.
    Pg(&'a mut AsyncPgConnection),
    /// SQLite.
    Sqlite(&'a mut SqliteConn),
}

impl Conn {
    /// The connection for a query.
    pub fn raw(&mut self) -> Raw<'_> {
        match self {
            Self::Pg(c) => Raw::Pg(&mut *c),
            Self::Sqlite(c) => Raw::Sqlite(&mut *c),
        }
    }

    /// Whether this is PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        matches!(self, Self::Pg(_))
    }
}

/// Runs one diesel-async body on whichever backend the connection is, binding the concrete
/// connection to `$c`. Storage modules only.
#[macro_export]
macro_rules! db_run {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn.raw() {
            $crate::db::Raw::Pg($c) => $body,
            $crate::db::Raw::Sqlite($c) => $body,
        }
    };
    ($conn:expr, pg |$pc:ident| $pbody:expr, sqlite |$sc:ident| $sbody:expr) => {
        match $conn.raw() {
            $crate::db::Raw::Pg($pc) => $pbody,
            $crate::db::Raw::Sqlite($sc) => $sbody,
        }
    };
}

/// An open transaction. Commit it with [`Tx::commit`]; dropping it rolls back.
pub struct Tx {
    conn: Option<Conn>,
    /// SQLite: this process's writer turn, held until the transaction ends (declared after
    /// the connection, so it is released after the connection is returned or closed).
    _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
}

/// How the webhook batch's transaction begins on PostgreSQL
/// ([`crate::store::Store::open_batch`] sends these first in the pipeline of its reads):
/// every statement in it keeps one generic plan per connection
/// (`plan_cache_mode = force_generic_plan`), made with sequential scans, hash joins and
/// merge joins disabled, for this transaction only (`set_config(…, true)` is `SET LOCAL`).
/// The batch's statements are built for it: each read is `= ANY` on the leading column of a
/// unique index that no other index of its table shares (Meta's id, a blind index, a primary
/// key), each insert goes over `unnest` and its rows' foreign-key checks are primary-key
/// lookups, so with those scans and joins disabled the only plans left walk those indexes,
/// whatever the tables held when a plan was made, and nothing is planned per run.
pub const BATCH_BEGIN_PG: [&str; 2] = [
    "BEGIN",
    "SELECT set_config('plan_cache_mode', 'force_generic_plan', true), \
     set_config('enable_seqscan', 'off', true), set_config('enable_hashjoin', 'off', true), \
     set_config('enable_mergejoin', 'off', true)",
];

impl Tx {
    /// Commits. On error the connection is discarded and the transaction is rolled back.
    pub async fn commit(mut self) -> Result<(), CoreError> {
        let Some(mut conn) = self.conn.take() else {
            return Err(CoreError::Internal("transaction already finished".into()));
        };
        let res = db_run!(conn, |c| c.batch_execute("COMMIT").await);
        match res {
            Ok(()) => Ok(()),
            Err(e) => {
                discard(conn);
                Err(e.into())
            }
        }
    }

    /// Ends a transaction whose `COMMIT` the caller sent itself, pipelined after its last
    /// statements, and saw succeed with every statement before it: the connection goes back
    /// to the pool.
    pub(crate) fn committed_in_pipeline(mut self) {
        drop(self.conn.take());
        drop(self._turn.take());
    }

    /// Rolls back explicitly (dropping does the same, less politely).
    pub async fn rollback(mut self) -> Result<(), CoreError> {
        if let Some(mut conn) = self.conn.take() {
            let res = db_run!(conn, |c| c.batch_execute("ROLLBACK").await);
            if let Err(e) = res {
                discard(conn);
                return Err(e.into());
            }
        }
        Ok(())
    }
}

fn discard(conn: Conn) {
    match conn {
        Conn::Pg(o) => drop(Object::take(o)),
        Conn::Sqlite(o) => drop(Object::take(o)),
    }
}

impl Drop for Tx {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            // Closing the connection rolls the open transaction back on both backends.
            discard(conn);
        }
    }
}

impl Deref for Tx {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        // A Tx always holds its connection until commit/rollback consume it.
        match &self.conn {
            Some(c) => c,
            None => unreachable_conn(),
        }
    }
}

impl DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut Conn {
        match &mut self.conn {
            Some(c) => c,
            None => unreachable_conn(),
        }
    }
}

#[expect(
    clippy::panic,
    reason = "commit/rollback take self by value, so no Tx without a connection is reachable"
)]
fn unreachable_conn() -> ! {
    panic!("transaction used after commit")
}

/// What a PostgreSQL pool connects to.
pub struct PgSource {
    url: String,
    max_connections: usize,
}

impl PgSource {
    /// A new pool; it connects on first use. Unless `priority` is normal, each connection's
    /// server process is lowered to it when it runs on this host ([`lower_backend`]).
    fn pool(&self, priority: BackgroundPriority) -> Result<Pool<AsyncPgConnection>, CoreError> {
        // Fast recycling: a connection goes back out unless it is known broken (its socket
        // closed, a failed transaction). The default ran `SELECT 1` on every checkout: a
        // quarter of all statements under load, each a round trip.
        let mut cfg = ManagerConfig::<AsyncPgConnection>::default();
        cfg.recycling_method = RecyclingMethod::Fast;
        if priority != BackgroundPriority::Normal {
            cfg.custom_setup = Box::new(move |url: &str| {
                let url = url.to_owned();
                async move {
                    let mut c =
                        <AsyncPgConnection as diesel_async::AsyncConnection>::establish(&url)
                            .await?;
                    if let Err(reason) = lower_backend(&mut c, &url, priority).await {
                        static REPORTED: std::sync::atomic::AtomicBool =
                            std::sync::atomic::AtomicBool::new(false);
                        if !REPORTED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                            tracing::info!(
                                %reason,
                                "background database connections keep the normal priority"
                            );
                        }
                    }
                    Ok(c)
                }
                .boxed()
            });
        }
        let mgr =
            AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(&self.url, cfg);
        Pool::builder(mgr)
            .max_size(self.max_connections)
            .wait_timeout(Some(Duration::from_secs(30)))
            .create_timeout(Some(Duration::from_secs(10)))
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map_err(|e| CoreError::Database(format!("pool: {e}")))
    }
}

/// What a SQLite pool opens.
pub struct SqliteSource {
    path: String,
    sync: SqliteSync,
    busy_ms: u128,
    max_connections: usize,
}

impl SqliteSource {
    /// A new pool; it opens connections on first use.
    fn pool(&self) -> Result<Pool<SqliteConn>, CoreError> {
        let (sync, busy_ms) = (self.sync, self.busy_ms);
        let mut cfg = ManagerConfig::<SqliteConn>::default();
        cfg.recycling_method = RecyclingMethod::Fast;
        cfg.custom_setup = Box::new(move |url: &str| {
            let url = url.to_owned();
            async move {
                let mut c = SqliteConnection::establish(&url)?;
                diesel::connection::SimpleConnection::batch_execute(
                    &mut c,
                    &format!(
                        "PRAGMA busy_timeout = {busy_ms}; PRAGMA journal_mode = WAL; \
                         PRAGMA synchronous = {}; PRAGMA foreign_keys = ON;",
                        sync.pragma()
                    ),
                )
                .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
                Ok(SyncConnectionWrapper::new(c))
            }
            .boxed()
        });
        let mgr = AsyncDieselConnectionManager::<SqliteConn>::new_with_config(&self.path, cfg);
        Pool::builder(mgr)
            .max_size(self.max_connections)
            .wait_timeout(Some(Duration::from_secs(30)))
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map_err(|e| CoreError::Database(format!("pool: {e}")))
    }
}

/// Lowers the PostgreSQL server process behind `c` to `priority`, when that process runs
/// on this host: the background's statements then yield the CPU to the webhook's as its
/// threads do. Checked before touching anything: the URL names this host (loopback or a
/// Unix socket), and the process PostgreSQL reports (`pg_backend_pid()`) is, in this host's
/// process table, a PostgreSQL backend whose title names this connection's client port (or
/// `[local]` on a socket), so a database in another PID namespace (a container) never gets
/// an unrelated process lowered. Lowering another user's process needs `CAP_SYS_NICE` (root
/// has it); without it the connection works as before. Returns why nothing was done.
pub async fn lower_backend(
    c: &mut AsyncPgConnection,
    url: &str,
    priority: BackgroundPriority,
) -> Result<i32, String> {
    use diesel::dsl::sql;
    use diesel::sql_types::{Integer, Nullable};
    use diesel_async::RunQueryDsl as _;
    let local = match url::Url::parse(url) {
        Ok(u) => match u.host_str() {
            None | Some("") => true,
            Some(h) => matches!(h, "localhost" | "127.0.0.1" | "[::1]" | "::1"),
        },
        Err(_) => false,
    };
    if !local {
        return Err("the database is on another host".into());
    }
    let (pid, port) = diesel::select((
        sql::<Integer>("pg_backend_pid()"),
        sql::<Nullable<Integer>>("inet_client_port()"),
    ))
    .get_result::<(i32, Option<i32>)>(c)
    .await
    .map_err(|e| e.to_string())?;
    let title = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map_err(|_| "its server process is not in this host's process table".to_owned())?;
    let title = String::from_utf8_lossy(&title);
    let ours = title.starts_with("postgres: ")
        && match port {
            Some(p) => title.contains(&format!("({p})")),
            None => title.contains("[local]"),
        };
    if !ours {
        return Err(format!(
            "process {pid} on this host is not this connection's server"
        ));
    }
    #[cfg(target_os = "linux")]
    {
        crate::priority::lower(pid, priority)?;
        Ok(pid)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = priority;
        Err("only on Linux".into())
    }
}

/// Options for opening a database.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// Maximum pooled connections.
    pub max_connections: usize,
    /// SQLite durability.
    pub sqlite_sync: SqliteSync,
    /// How long a SQLite writer waits for the lock.
    pub busy_timeout: Duration,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            sqlite_sync: SqliteSync::Normal,
            busy_timeout: Duration::from_secs(10),
        }
    }
}

impl DbPool {
    /// Opens a pool for `url` (creating the SQLite file and its folder if needed) and checks
    /// that the database answers.
    pub async fn open(url: &DbUrl, opts: &OpenOptions) -> Result<Self, CoreError> {
        let pool = match url {
            DbUrl::Postgres(u) => {
                let source = Arc::new(PgSource {
                    url: u.clone(),
                    max_connections: opts.max_connections,
                });
                Self::Postgres(source.pool(BackgroundPriority::Normal)?, source)
            }
            DbUrl::Sqlite(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| CoreError::Io {
                        path: dir.to_path_buf(),
                        reason: e.to_string(),
                    })?;
                }
                let source = Arc::new(SqliteSource {
                    path: path.to_string_lossy().into_owned(),
                    sync: opts.sqlite_sync,
                    busy_ms: opts.busy_timeout.as_millis(),
                    max_connections: opts.max_connections.min(8),
                });
                Self::Sqlite(
                    source.pool()?,
                    Arc::new(tokio::sync::Mutex::new(())),
                    source,
                )
            }
        };
        // Fail now, with the reason, rather than at the first request.
        let mut c = pool.conn().await?;
        db_run!(c, |x| x.batch_execute("SELECT 1").await)?;
        Ok(pool)
    }

    /// Another pool to the same database, for the background runtime. PostgreSQL: a pool of
    /// its own, whose connections are made (and, as diesel-async does, driven by a task
    /// spawned) on the runtime of the task that first needs them, so they never run on the
    /// webhook's threads; their server processes are lowered to `priority` where
    /// PostgreSQL runs on this host ([`lower_backend`]). SQLite: a pool of its own behind
    /// the same writer gate (one writer per file either way).
    pub fn twin(&self, priority: BackgroundPriority) -> Result<Self, CoreError> {
        match self {
            Self::Postgres(_, source) => Ok(Self::Postgres(source.pool(priority)?, source.clone())),
            Self::Sqlite(_, gate, source) => {
                Ok(Self::Sqlite(source.pool()?, gate.clone(), source.clone()))
            }
        }
    }

    /// A pooled connection.
    pub async fn conn(&self) -> Result<Conn, CoreError> {
        match self {
            Self::Postgres(p, _) => p.get().await.map(Conn::Pg).map_err(|e| {
                CoreError::Database(format!("cannot get a PostgreSQL connection: {e}"))
            }),
            Self::Sqlite(p, ..) => {
                p.get().await.map(Conn::Sqlite).map_err(|e| {
                    CoreError::Database(format!("cannot open the SQLite database: {e}"))
                })
            }
        }
    }

    /// Begins a write transaction.
    pub async fn begin(&self) -> Result<Tx, CoreError> {
        self.begin_with("BEGIN").await
    }

    /// Begins a write transaction whose statements are planned for the values they run
    /// with: on PostgreSQL `plan_cache_mode = force_custom_plan` for this transaction only
    /// (the `SET LOCAL` travels with the `BEGIN`, no extra round trip). For the set-based
    /// statements over `unnest` arrays ([`prepared::stmt`]) and the job claims: their best
    /// plan depends on the arrays' lengths and the tables' current sizes, and a generic plan
    /// that a long-lived connection settled on while the tables were small keeps reading
    /// whole tables once they have grown (the webhook benchmark measured 10 ms per read of
    /// a few rows). The text stays prepared, so only planning is repeated.
    ///
    /// Planning every run cost about a third of PostgreSQL's CPU at 320 webhook
    /// deliveries/s (perf; batches of about three deliveries), so the webhook batch, whose
    /// statements were rebuilt so that one plan is right for every run, has a transaction
    /// of its own ([`BATCH_BEGIN_PG`]). Generic plans for everything (the job claims and
    /// the batch's earlier reads, which joined `unnest`ed (tenant, id) pairs with
    /// tenant-led indexes) were measured worse (saturation 579/s against 1,319/s on the
    /// same machine the same day; the pipeline workers answered 3 replies/s for the first
    /// half minute): such a plan made while a table was empty chose between indexes
    /// blindly (the read by Meta id walked `(tenant_id, created_at)` instead of the unique
    /// `(tenant_id, wamid)`).
    pub async fn begin_planned(&self) -> Result<Tx, CoreError> {
        self.begin_with("BEGIN; SET LOCAL plan_cache_mode = force_custom_plan")
            .await
    }

    /// A write transaction whose `BEGIN` the caller sends itself on PostgreSQL, as the first
    /// statements of its first pipeline ([`BATCH_BEGIN_PG`], by
    /// [`crate::store::Store::open_batch`]): one round trip fewer than [`Self::begin`]. On
    /// SQLite, where statements run in process, it is [`Self::begin`] (the writer's turn,
    /// `BEGIN IMMEDIATE`). Dropped (or on error), the guard closes its connection like any
    /// other.
    pub(crate) async fn begin_unsent(&self) -> Result<Tx, CoreError> {
        match self {
            Self::Postgres(..) => Ok(Tx {
                conn: Some(self.conn().await?),
                _turn: None,
            }),
            Self::Sqlite(..) => self.begin().await,
        }
    }

    async fn begin_with(&self, pg_begin: &str) -> Result<Tx, CoreError> {
        let turn = match self {
            Self::Sqlite(_, gate, _) => Some(gate.clone().lock_owned().await),
            Self::Postgres(..) => None,
        };
        let mut conn = self.conn().await?;
        let begin = match conn {
            Conn::Pg(_) => pg_begin,
            Conn::Sqlite(_) => "BEGIN IMMEDIATE",
        };
        let res = db_run!(conn, |c| c.batch_execute(begin).await);
        match res {
            Ok(()) => Ok(Tx {
                conn: Some(conn),
                _turn: turn,
            }),
            Err(e) => {
                discard(conn);
                Err(e.into())
            }
        }
    }

    /// Whether this pool is PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        matches!(self, Self::Postgres(..))
    }

    /// Applies pending migrations of `schema`; returns how many ran.
    pub async fn migrate(&self, schema: Schema) -> Result<usize, CoreError> {
        let conn = self.conn().await?;
        let n = match conn {
            Conn::Pg(obj) => {
                let set = match schema {
                    Schema::Main => PG_MIGRATIONS,
                    Schema::Keystore => KEYSTORE_PG_MIGRATIONS,
                    Schema::Analytics => ANALYTICS_PG_MIGRATIONS,
                };
                // The harness blocks; run it on the blocking pool with its own connection
                // taken from the pool (it is returned to the pool afterwards).
                let conn: AsyncPgConnection = Object::take(obj);
                tokio::task::spawn_blocking(move || {
                    let mut w: diesel_async::async_connection_wrapper::AsyncConnectionWrapper<
                        AsyncPgConnection,
                    > = diesel_async::async_connection_wrapper::AsyncConnectionWrapper::from(conn);
                    w.run_pending_migrations(set)
                        .map(|v| v.len())
                        .map_err(|e| CoreError::Migration(e.to_string()))
                })
                .await
                .map_err(|e| CoreError::Internal(format!("migration task: {e}")))??
            }
            Conn::Sqlite(obj) => {
                let set = match schema {
                    Schema::Main => SQLITE_MIGRATIONS,
                    Schema::Keystore => KEYSTORE_SQLITE_MIGRATIONS,
                    Schema::Analytics => ANALYTICS_SQLITE_MIGRATIONS,
                };
                let mut wrapper: SqliteConn = Object::take(obj);
                wrapper
                    .spawn_blocking(move |c| {
                        Ok(c.run_pending_migrations(set)
                            .map(|v| v.len())
                            .map_err(|e| e.to_string()))
                    })
                    .await?
                    .map_err(CoreError::Migration)?
            }
        };
        Ok(n)
    }

    /// Whether every migration of `schema` is applied (for `/readyz`).
    pub async fn pending_migrations(&self, schema: Schema) -> Result<usize, CoreError> {
        let conn = self.conn().await?;
        match conn {
            Conn::Pg(obj) => {
                let set = match schema {
                    Schema::Main => PG_MIGRATIONS,
                    Schema::Keystore => KEYSTORE_PG_MIGRATIONS,
                    Schema::Analytics => ANALYTICS_PG_MIGRATIONS,
                };
                let conn: AsyncPgConnection = Object::take(obj);
                tokio::task::spawn_blocking(move || {
                    let mut w = diesel_async::async_connection_wrapper::AsyncConnectionWrapper::<
                        AsyncPgConnection,
                    >::from(conn);
                    w.pending_migrations(set)
                        .map(|v| v.len())
                        .map_err(|e| CoreError::Migration(e.to_string()))
                })
                .await
                .map_err(|e| CoreError::Internal(format!("migration task: {e}")))?
            }
            Conn::Sqlite(mut obj) => {
                let set = match schema {
                    Schema::Main => SQLITE_MIGRATIONS,
                    Schema::Keystore => KEYSTORE_SQLITE_MIGRATIONS,
                    Schema::Analytics => ANALYTICS_SQLITE_MIGRATIONS,
                };
                let c: &mut SqliteConn = &mut obj;
                c.spawn_blocking(move |c| {
                    Ok(c.pending_migrations(set)
                        .map(|v| v.len())
                        .map_err(|e| e.to_string()))
                })
                .await?
                .map_err(CoreError::Migration)
            }
        }
    }
}

/// `t` as unix microseconds, as every timestamp column stores it (past the year 294,247:
/// `i64::MAX`).
pub fn micros_of(t: time::OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
}

/// Now as unix microseconds.
pub fn now_micros() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// Whether a diesel error is a unique-constraint violation.
pub fn is_unique_violation(e: &diesel::result::Error) -> bool {
    matches!(
        e,
        diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _)
    )
}
