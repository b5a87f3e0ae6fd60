//! The test harness: a fresh database per test on PostgreSQL and on SQLite, and a store
//! with its own key store and master key. Every storage test runs on both backends
//! (`both_backends!`). PostgreSQL comes from `SMARTCHAT_TEST_PG` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); if it is unreachable the test fails,
//! it is never skipped.

pub mod browser;
pub mod oidc;

use std::path::PathBuf;

use smartchat_core::config::Config;
use smartchat_core::crypto::MasterKey;
use smartchat_core::crypto::keyring::Keyring;
use smartchat_core::db::{DbPool, DbUrl, OpenOptions, Schema};
use smartchat_core::store::Store;

/// The admin URL of the test PostgreSQL server.
pub fn pg_admin_url() -> String {
    std::env::var("SMARTCHAT_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Which backend a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite files in a temp dir.
    Sqlite,
    /// Fresh PostgreSQL databases.
    Postgres,
}

/// A fresh PostgreSQL database, dropped (with FORCE) when this value drops.
#[derive(Debug)]
pub struct PgDatabase {
    /// Its name.
    pub name: String,
    /// Its URL.
    pub url: String,
}

impl PgDatabase {
    /// Creates a database with a random name.
    pub async fn create() -> Self {
        let admin = pg_admin_url();
        let (client, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {admin} is unreachable ({e}); start it (see README) — storage tests never skip"));
        tokio::spawn(conn);
        let name = format!("sc_test_{}", uuid::Uuid::new_v4().simple());
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create test database");
        let url = url_with_db(&admin, &name);
        Self { name, url }
    }
}

fn url_with_db(admin: &str, db: &str) -> String {
    match admin.rfind('/') {
        Some(i) if i > "postgres://".len() => {
            let (base, rest) = admin.split_at(i);
            let query = rest.find('?').map(|q| &rest[q..]).unwrap_or("");
            format!("{base}/{db}{query}")
        }
        _ => format!("{admin}/{db}"),
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        let admin = pg_admin_url();
        // Drop from a thread of its own: Drop cannot await, and the test's runtime may be
        // shutting down.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                if let Ok((client, conn)) =
                    tokio_postgres::connect(&admin, tokio_postgres::NoTls).await
                {
                    tokio::spawn(conn);
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

/// A store on fresh databases with its own master key.
pub struct TestEnv {
    /// The backend.
    pub backend: Backend,
    /// Temp dir holding SQLite files and anything else the test writes.
    pub dir: tempfile::TempDir,
    /// The store.
    pub store: Store,
    /// The master key's text (tests re-open with it).
    pub master_secret: String,
    /// Main database URL.
    pub db_url: DbUrl,
    /// Key store URL.
    pub keystore_url: DbUrl,
    _pg: Vec<PgDatabase>,
    /// The analytics database, once [`TestEnv::analytics`] made it.
    analytics_db: tokio::sync::Mutex<Option<(DbUrl, Option<PgDatabase>)>>,
}

impl TestEnv {
    /// A fresh environment on `backend`.
    pub async fn new(backend: Backend) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut pg = Vec::new();
        let (db_url, keystore_url) = match backend {
            Backend::Sqlite => (
                DbUrl::Sqlite(dir.path().join("smartchat.db")),
                DbUrl::Sqlite(dir.path().join("keys.db")),
            ),
            Backend::Postgres => {
                let main = PgDatabase::create().await;
                let keys = PgDatabase::create().await;
                let urls = (
                    DbUrl::Postgres(main.url.clone()),
                    DbUrl::Postgres(keys.url.clone()),
                );
                pg.push(main);
                pg.push(keys);
                urls
            }
        };
        let master = MasterKey::generate();
        let master_secret = secret_text(&master);
        let store = open_store(&db_url, &keystore_url, master)
            .await
            .expect("open store");
        Self {
            backend,
            dir,
            store,
            master_secret,
            db_url,
            keystore_url,
            _pg: pg,
            analytics_db: tokio::sync::Mutex::new(None),
        }
    }

    /// The analytics store on a database of its own (made on first use).
    pub async fn analytics(&self) -> smartchat_core::analytics::Analytics {
        let mut slot = self.analytics_db.lock().await;
        if slot.is_none() {
            *slot = Some(match self.backend {
                Backend::Sqlite => (DbUrl::Sqlite(self.dir.path().join("analytics.db")), None),
                Backend::Postgres => {
                    let db = PgDatabase::create().await;
                    (DbUrl::Postgres(db.url.clone()), Some(db))
                }
            });
        }
        let url = slot
            .as_ref()
            .map(|(u, _)| u.clone())
            .expect("analytics url");
        smartchat_core::analytics::Analytics::open(&url, &OpenOptions::default())
            .await
            .expect("open analytics")
    }

    /// The analytics database's URL, once made.
    pub async fn analytics_url(&self) -> Option<DbUrl> {
        self.analytics_db
            .lock()
            .await
            .as_ref()
            .map(|(u, _)| u.clone())
    }

    /// Re-opens the same databases with another master key text.
    pub async fn reopen(&self, master_secret: &str) -> Result<Store, smartchat_core::CoreError> {
        open_store(
            &self.db_url,
            &self.keystore_url,
            MasterKey::parse(master_secret)?,
        )
        .await
    }

    /// A server configuration pointing at these databases.
    pub fn config(&self) -> Config {
        let mut env = std::collections::HashMap::new();
        env.insert(
            "SMARTCHAT_DATA_DIR".to_owned(),
            self.dir.path().display().to_string(),
        );
        env.insert(
            "SMARTCHAT_DATABASE_URL".to_owned(),
            url_string(&self.db_url),
        );
        env.insert(
            "SMARTCHAT_KEYSTORE_URL".to_owned(),
            url_string(&self.keystore_url),
        );
        env.insert(
            "SMARTCHAT_MASTER_KEY".to_owned(),
            self.master_secret.clone(),
        );
        Config::load_from(None, &env).expect("test config")
    }

    /// Files under the temp dir (SQLite databases, WAL files, key files).
    pub fn files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![self.dir.path().to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.push(p);
                }
            }
        }
        out
    }
}

/// A database trigger that makes one kind of write fail, as a database error in the middle
/// of a transaction would, on either backend; [`Refusal::lift`] removes it.
pub struct Refusal {
    db: DbPool,
    table: String,
}

/// Refuses every `event` (`"INSERT ON ledger_pending"`, `"UPDATE OF provider_chain ON
/// tenants"`) in `env`'s main database until the returned [`Refusal`] is lifted.
pub async fn refuse_writes(env: &TestEnv, event: &str) -> Refusal {
    use diesel_async::RunQueryDsl as _;
    use smartchat_core::db_run;
    let table = event
        .rsplit_once(" ON ")
        .expect("an event names its table after ON")
        .1
        .trim()
        .to_owned();
    let db = env.store.db.clone();
    let mut c = db.conn().await.expect("a connection");
    let statements = if c.is_postgres() {
        vec![
            "CREATE OR REPLACE FUNCTION sc_refuse() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$"
                .to_owned(),
            format!(
                "CREATE TRIGGER sc_refuse BEFORE {event} FOR EACH ROW EXECUTE FUNCTION sc_refuse()"
            ),
        ]
    } else {
        vec![format!(
            "CREATE TRIGGER sc_refuse BEFORE {event} BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
        )]
    };
    for sql in &statements {
        db_run!(c, |c| diesel::sql_query(sql.as_str()).execute(c).await).expect("trigger");
    }
    drop(c);
    Refusal { db, table }
}

impl Refusal {
    /// Removes the trigger.
    pub async fn lift(self) {
        use diesel_async::RunQueryDsl as _;
        use smartchat_core::db_run;
        let mut c = self.db.conn().await.expect("a connection");
        let sql = if c.is_postgres() {
            format!("DROP TRIGGER sc_refuse ON {}", self.table)
        } else {
            "DROP TRIGGER sc_refuse".to_owned()
        };
        db_run!(c, |c| diesel::sql_query(sql.as_str()).execute(c).await).expect("drop trigger");
    }
}

/// The URL string of a [`DbUrl`] (with its password, for tests only).
pub fn url_string(u: &DbUrl) -> String {
    match u {
        DbUrl::Postgres(s) => s.clone(),
        DbUrl::Sqlite(p) => format!("sqlite://{}", p.display()),
    }
}

/// The secret text of a master key.
pub fn secret_text(m: &MasterKey) -> String {
    use smartchat_core::crypto::ExposeSecretText as _;
    m.to_secret_string().expose_text()
}

/// Opens a store as the server does.
pub async fn open_store(
    db_url: &DbUrl,
    keystore_url: &DbUrl,
    master: MasterKey,
) -> Result<Store, smartchat_core::CoreError> {
    let opts = OpenOptions::default();
    let ks = DbPool::open(keystore_url, &opts).await?;
    let (keys, _) = Keyring::open(ks, master).await?;
    let db = DbPool::open(db_url, &opts).await?;
    db.migrate(Schema::Main).await?;
    let platform = std::sync::Arc::new(
        smartchat_policies::Policy::platform_default().expect("default policy"),
    );
    Ok(Store::new(db, keys, platform))
}

/// Runs one async test body on SQLite and on PostgreSQL, as two tests.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::TestEnv::new($crate::Backend::Sqlite).await).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::TestEnv::new($crate::Backend::Postgres).await).await;
                }
            }
        )*
    };
}

/// Asserts that no needle is stored in plaintext: scans every file of the SQLite
/// environment (the master key file excepted), or a `pg_dump` of both PostgreSQL databases.
pub fn assert_no_plaintext(env: &TestEnv, needles: &[&str]) {
    let mut hay: Vec<(String, Vec<u8>)> = Vec::new();
    match env.backend {
        Backend::Sqlite => {
            for f in env.files() {
                if f.file_name().is_some_and(|n| n == "master.key") {
                    continue;
                }
                hay.push((f.display().to_string(), std::fs::read(&f).unwrap()));
            }
        }
        Backend::Postgres => {
            for u in [&env.db_url, &env.keystore_url] {
                let url = url_string(u);
                let out = std::process::Command::new("pg_dump")
                    .arg("--data-only")
                    .arg(&url)
                    .output()
                    .expect("pg_dump runs");
                assert!(
                    out.status.success(),
                    "pg_dump failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                hay.push((format!("pg_dump {u}"), out.stdout));
            }
        }
    }
    assert!(!hay.is_empty());
    for (name, bytes) in &hay {
        for n in needles {
            assert!(
                !bytes.windows(n.len()).any(|w| w == n.as_bytes()),
                "plaintext {n:?} found in {name}"
            );
        }
    }
}

/// A member of a tenant logged in to a running API server (the local one-time link), with
/// the session cookie and the CSRF token its writes need.
pub struct Session {
    /// A client carrying the session cookie (redirects not followed).
    pub http: reqwest::Client,
    /// The server's base URL.
    pub base: String,
    /// The session's CSRF token.
    pub csrf: String,
    /// The member.
    pub member: smartchat_core::ids::MemberId,
}

impl Session {
    /// Serves `app` (built around `auth`, whose one-time link is `token`) on a loopback
    /// port, logs the operator in as owner of `tenant`, and returns the session.
    pub async fn start(
        app: axum::Router,
        token: &str,
        tenant: smartchat_core::ids::TenantId,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        let res = http
            .get(format!("{base}/login/token/{token}?tenant={tenant}"))
            .send()
            .await
            .expect("login");
        assert_eq!(res.status(), 303, "the one-time link logs in");
        let me: serde_json::Value = http
            .get(format!("{base}/api/v1/me"))
            .send()
            .await
            .expect("me")
            .json()
            .await
            .expect("me json");
        assert_eq!(me["role"], "owner");
        Self {
            http,
            base,
            csrf: me["csrf_token"].as_str().expect("csrf").to_owned(),
            member: me["member_id"]
                .as_str()
                .expect("member")
                .parse()
                .expect("member id"),
        }
    }

    /// `GET path`: status and JSON body (`null` when not JSON).
    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        self.send(reqwest::Method::GET, path, None, false).await
    }

    /// `method path` with an optional JSON body, with or without the CSRF header.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
        csrf: bool,
    ) -> (u16, serde_json::Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if csrf {
            req = req.header("x-csrf-token", &self.csrf);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("request");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// `POST` with the CSRF header.
    pub async fn post(
        &self,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        self.send(reqwest::Method::POST, path, body, true).await
    }

    /// `PATCH` with the CSRF header.
    pub async fn patch(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        self.send(reqwest::Method::PATCH, path, Some(body), true)
            .await
    }
}

/// An attacker with a full dump of both databases and the master key: every message body
/// they can open (through every tenant identity and subject key still present).
pub async fn recover_with_dump_and_master(env: &TestEnv) -> Vec<String> {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use smartchat_core::crypto::TenantKey;
    use smartchat_core::db::schema::{keystore, messages, subject_keys};
    use smartchat_core::db_run;
    let master = MasterKey::parse(&env.master_secret).unwrap();
    let ks = DbPool::open(&env.keystore_url, &OpenOptions::default())
        .await
        .unwrap();
    let mut kc = ks.conn().await.unwrap();
    let wrapped_ids: Vec<(String, Option<Vec<u8>>)> = db_run!(kc, |c| keystore::tenant_keys::table
        .select((
            keystore::tenant_keys::tenant_id,
            keystore::tenant_keys::wrapped_identity
        ))
        .load(c)
        .await)
    .unwrap();
    let mut c = env.store.db.conn().await.unwrap();
    let wrapped_subject_keys: Vec<Vec<u8>> = db_run!(c, |c| subject_keys::table
        .select(subject_keys::wrapped_key)
        .load(c)
        .await)
    .unwrap();
    let bodies: Vec<(String, String, Option<Vec<u8>>)> = db_run!(c, |c| messages::table
        .select((messages::id, messages::tenant_id, messages::body_ct))
        .load(c)
        .await)
    .unwrap();
    let mut plain = Vec::new();
    for (tid, w) in wrapped_ids {
        let Some(w) = w else { continue };
        let tkey = TenantKey::parse(master.unwrap(&w).unwrap().expose()).unwrap();
        for wk in &wrapped_subject_keys {
            let Ok(sk) = tkey.unwrap_subject_key(wk) else {
                continue;
            };
            for (mid, mtid, ct) in &bodies {
                let Some(ct) = ct else { continue };
                if let Ok(p) = sk.open(&format!("messages.body_ct|{mtid}|{mid}"), ct) {
                    let _ = &tid;
                    plain.push(String::from_utf8_lossy(&p).into_owned());
                }
            }
        }
    }
    plain
}

/// Invites a second owner into `tenant` (a tenant keeps at least one owner, so a test that
/// demotes its only owner to try another role needs one).
pub async fn add_spare_owner(store: &Store, tenant: smartchat_core::ids::TenantId) {
    smartchat_core::members::Members::new(store.clone())
        .invite_member(
            tenant,
            &smartchat_core::members::Login::Email {
                email: format!("spare.owner.{}@example.test", uuid::Uuid::new_v4()),
            },
            smartchat_core::members::Role::Owner,
            smartchat_ledger::Actor::System,
        )
        .await
        .expect("a spare owner");
}
