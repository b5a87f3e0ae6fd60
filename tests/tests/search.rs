//! Conversation search wired end to end on both backends (issue 7): messages fed from
//! ingestion into the encrypted per-tenant index, the owner's search endpoint (phrases,
//! prefixes, fuzzy terms, filters, syntax errors, ledgered without the query), tenant
//! isolation, deletion purging the words from disk, a damaged index rebuilt, a restart
//! resuming from the feed.

use std::path::Path;

use smartchat_api::app::{AppState, router};
use smartchat_api::auth::{AuthState, OneTimeLogin};
use smartchat_api::boot::Services;
use smartchat_api::pipeline::{self, Pipeline};
use smartchat_api::search::Search;
use smartchat_core::ids::{Handle, PhoneNumber, PhoneNumberId, TenantId};
use smartchat_core::ledger_store::Ledger;
use smartchat_core::store::{NewTenant, Profile};
use smartchat_ledger::{Actor, EventKind};
use smartchat_search::{EncryptedDirectory, SearchKey};
use smartchat_tests::{Session, TestEnv, both_backends};

struct World {
    env: TestEnv,
    config: smartchat_core::config::Config,
    pipeline: Pipeline,
    ledger: Ledger,
    search: Search,
    a: TenantId,
    b: TenantId,
}

const A_PNID: &str = "4000001";
const B_PNID: &str = "4000002";

async fn tenant(env: &TestEnv, handle: &str, pnid: &str) -> TenantId {
    env.store
        .create_tenant(NewTenant {
            handle: handle.parse::<Handle>().unwrap(),
            profile: Profile(serde_json::json!({"name": "Glow Salon", "business_type": "salon"})),
            phone_number_id: Some(pnid.parse::<PhoneNumberId>().unwrap()),
            access_token: Some(smartchat_core::config::Secret::new("")),
        })
        .await
        .unwrap()
}

fn search_root(env: &TestEnv) -> std::path::PathBuf {
    env.dir.path().join("search")
}

async fn world(env: TestEnv) -> World {
    let a = tenant(&env, "salon-a", A_PNID).await;
    let b = tenant(&env, "salon-b", B_PNID).await;
    let config = smartchat_core::config::Config::load_from(None, &Default::default()).unwrap();
    let ledger = Ledger::open(env.store.db.clone(), &env.store.keys, "test/ledger")
        .await
        .unwrap();
    let pipeline = Pipeline::new(env.store.clone(), &config).unwrap();
    let search = Search::new(env.store.clone(), search_root(&env)).unwrap();
    World {
        env,
        config,
        pipeline,
        ledger,
        search,
        a,
        b,
    }
}

impl World {
    /// A customer writes to `pnid`'s business; the message is stored and answered.
    async fn says(&self, pnid: &str, from: &str, text: &str) {
        let from: PhoneNumber = from.parse().unwrap();
        let payload = pipeline::sandbox_payload(pnid, &from, text).unwrap();
        pipeline::ingest(&self.pipeline, &payload).await.unwrap();
        pipeline::drain(&self.pipeline).await.unwrap();
    }

    /// Logs the operator in as owner of `tenant`; returns the base URL, the session's client
    /// and the member.
    async fn login(&self, tenant: TenantId) -> (String, reqwest::Client, [u8; 16]) {
        let (otl, token) = OneTimeLogin::generate();
        let state = AppState::new(
            Services {
                store: self.env.store.clone(),
                ledger: self.ledger.clone(),
            },
            self.pipeline.clone(),
            AuthState::local(self.env.store.clone(), otl),
            &self.config,
        )
        .with_search(self.search.clone());
        let s = Session::start(router(state), &token, tenant).await;
        (s.base, s.http, s.member.bytes())
    }
}

async fn query(
    base: &str,
    http: &reqwest::Client,
    params: &[(&str, &str)],
) -> (u16, serde_json::Value) {
    let res = http
        .get(format!("{base}/api/v1/search"))
        .query(params)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap())
}

fn total(v: &serde_json::Value) -> u64 {
    v["total"].as_u64().unwrap()
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// The tenant's index files, decrypted with its key.
async fn decrypted_index(w: &World, tenant: TenantId) -> Vec<Vec<u8>> {
    let key = w.env.store.tenant_key(tenant).await.unwrap();
    let path = w.search.manager().index_path(&tenant.to_string()).unwrap();
    let dir = EncryptedDirectory::open(&path, &SearchKey::new(key.search_key())).unwrap();
    files(&path)
        .iter()
        .filter(|p| {
            !p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".tantivy")
        })
        .map(|p| dir.decrypt_file(Path::new(p.file_name().unwrap())).unwrap())
        .collect()
}

async fn messages_are_searchable_encrypted_and_each_search_ledgered(env: TestEnv) {
    let w = world(env).await;
    w.says(
        A_PNID,
        "919800000101",
        "Do you have a bridal package? zebracorn",
    )
    .await;
    w.says(A_PNID, "919800000102", "kal shaam ko haircut ho sakta hai?")
        .await;
    w.says(
        B_PNID,
        "919800000103",
        "bridal makeup price please zebracorn",
    )
    .await;
    let queued = smartchat_core::search_feed::backlog(&w.env.store.db)
        .await
        .unwrap();
    assert_eq!(
        queued, 6,
        "a feed row per message with text: three in, three replies"
    );
    assert_eq!(
        w.search.apply_pending().await.unwrap(),
        usize::try_from(queued).unwrap()
    );
    assert_eq!(
        w.search.apply_pending().await.unwrap(),
        0,
        "the feed is drained"
    );
    assert_eq!(
        smartchat_core::search_feed::backlog(&w.env.store.db)
            .await
            .unwrap(),
        0,
        "applied rows are deleted"
    );

    let (base, http, member) = w.login(w.a).await;
    let (status, v) = query(&base, &http, &[("q", "bridal")]).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(total(&v), 1, "only tenant A's message: {v}");
    let hit = &v["hits"][0];
    assert_eq!(hit["direction"], "in");
    assert!(
        hit["snippet"]["html"]
            .as_str()
            .unwrap()
            .contains("<b>bridal</b>"),
        "{v}"
    );
    for (q, n) in [
        ("\"bridal package\"", 1),
        ("\"package bridal\"", 0),
        ("brid*", 1),
        ("brydal~1", 1),
        ("haircut", 1),
        ("bridal OR haircut", 2),
        ("bridal -zebracorn", 0),
    ] {
        let (status, v) = query(&base, &http, &[("q", q)]).await;
        assert_eq!((status, total(&v)), (200, n), "{q}: {v}");
    }
    // Filters: direction, conversation, dates.
    let conv = hit["conversation_id"].as_str().unwrap().to_owned();
    let (_, v) = query(&base, &http, &[("q", "bridal"), ("direction", "out")]).await;
    assert_eq!(total(&v), 0);
    let (_, v) = query(&base, &http, &[("q", "haircut"), ("conversation", &conv)]).await;
    assert_eq!(
        total(&v),
        0,
        "the haircut question is in another conversation"
    );
    let (_, v) = query(&base, &http, &[("q", "bridal"), ("from", "2999-01-01")]).await;
    assert_eq!(total(&v), 0);
    let (_, v) = query(
        &base,
        &http,
        &[("q", "bridal"), ("to", "2999-01-01T00:00:00Z")],
    )
    .await;
    assert_eq!(total(&v), 1);
    // The assistant's replies are indexed too (direction out).
    let (_, v) = query(
        &base,
        &http,
        &[("q", ""), ("direction", "out"), ("sort", "newest")],
    )
    .await;
    assert_eq!(total(&v), 2, "{v}");

    // Bad input: 400 with the position and a hint; bad parameters named.
    let (status, v) = query(&base, &http, &[("q", "\"bridal package")]).await;
    assert_eq!(
        (status, v["code"].as_str()),
        (400, Some("query_syntax")),
        "{v}"
    );
    assert!(v["position"].is_number() || v["position"].is_null());
    assert!(!v["detail"].as_str().unwrap().is_empty());
    for bad in [
        ("direction", "sideways"),
        ("from", "last tuesday"),
        ("sort", "random"),
        ("limit", "1000"),
    ] {
        let (status, v) = query(&base, &http, &[("q", "bridal"), bad]).await;
        assert_eq!(status, 400, "{bad:?}: {v}");
    }

    // Every search performed (13; the 5 refused above were not run) is ledgered with the
    // member, never with its text.
    w.ledger.sequence_all().await.unwrap();
    let entries = w
        .ledger
        .entries(0, w.ledger.size().await.unwrap())
        .await
        .unwrap();
    let searches = entries
        .iter()
        .filter(|e| {
            e.entry.draft.kind == EventKind::SEARCH_PERFORMED
                && e.entry.draft.actor == Actor::Member(member)
        })
        .count();
    assert_eq!(searches, 13);
    let (_, _, bundle) = w.ledger.export(0, None, Vec::new()).await.unwrap();
    assert!(!contains(&bundle, "zebracorn") && !contains(&bundle, "bridal"));

    // Nothing readable on disk: the index files are sealed, and open with the tenant key.
    for f in files(&search_root(&w.env)) {
        let bytes = std::fs::read(&f).unwrap();
        for needle in ["zebracorn", "bridal", "haircut"] {
            assert!(!contains(&bytes, needle), "{needle} in {}", f.display());
        }
    }
    assert!(
        decrypted_index(&w, w.a)
            .await
            .iter()
            .any(|f| contains(f, "zebracorn")),
        "the check above looks at the real index"
    );
    smartchat_tests::assert_no_plaintext(&w.env, &["zebracorn", "bridal package"]);
}

async fn deleting_a_subject_purges_their_words_from_disk(env: TestEnv) {
    let w = world(env).await;
    w.says(A_PNID, "919800000201", "my secret word is zebracorn")
        .await;
    w.says(A_PNID, "919800000202", "and mine is quokkafish")
        .await;
    w.search.apply_pending().await.unwrap();
    assert!(
        decrypted_index(&w, w.a)
            .await
            .iter()
            .any(|f| contains(f, "zebracorn"))
    );
    let sid = w
        .env
        .store
        .find_subject(w.a, smartchat_core::crypto::BlindKind::WaId, "919800000201")
        .await
        .unwrap()
        .unwrap();
    w.env
        .store
        .shred_subject(w.a, sid, Actor::System)
        .await
        .unwrap();
    w.search.apply_pending().await.unwrap();
    let files = decrypted_index(&w, w.a).await;
    assert!(
        !files.iter().any(|f| contains(f, "zebracorn")),
        "merged and collected away"
    );
    assert!(
        files.iter().any(|f| contains(f, "quokkafish")),
        "the other customer stays"
    );
    let (base, http, _) = w.login(w.a).await;
    let (_, v) = query(&base, &http, &[("q", "zebracorn")]).await;
    assert_eq!(total(&v), 0);
    let (_, v) = query(&base, &http, &[("q", "quokkafish")]).await;
    assert_eq!(total(&v), 1);
    // A rebuild from the database cannot bring them back: their key is gone.
    let n = w.search.rebuild(w.a, |_, _| {}).await.unwrap();
    assert_eq!(n, 2, "the remaining customer's message and its reply");
    let (_, v) = query(&base, &http, &[("q", "zebracorn")]).await;
    assert_eq!(total(&v), 0);
}

async fn a_shredded_tenant_loses_its_index(env: TestEnv) {
    let w = world(env).await;
    w.says(A_PNID, "919800000301", "zebracorn booking").await;
    w.search.apply_pending().await.unwrap();
    let path = w.search.manager().index_path(&w.a.to_string()).unwrap();
    assert!(path.exists());
    w.env.store.shred_tenant(w.a, Actor::System).await.unwrap();
    w.search.apply_pending().await.unwrap();
    assert!(!path.exists(), "the folder is removed");
    // Tenant B is untouched.
    w.says(B_PNID, "919800000302", "quokkafish booking").await;
    w.search.apply_pending().await.unwrap();
    let (base, http, _) = w.login(w.b).await;
    let (_, v) = query(&base, &http, &[("q", "booking")]).await;
    assert_eq!(total(&v), 1);
}

async fn a_damaged_or_missing_index_is_rebuilt_and_a_restart_resumes(env: TestEnv) {
    let w = world(env).await;
    w.says(A_PNID, "919800000401", "first zebracorn").await;
    w.search.apply_pending().await.unwrap();
    // Messages arrive while the indexer is down; then the process restarts.
    w.says(A_PNID, "919800000401", "second zebracorn").await;
    drop(w.search.clone());
    let restarted = Search::new(w.env.store.clone(), search_root(&w.env)).unwrap();
    restarted.apply_pending().await.unwrap();
    let q = smartchat_search::SearchQuery::text("zebracorn");
    assert_eq!(restarted.search(w.a, &q).await.unwrap().total, 2);
    // Applying the same feed twice does not duplicate documents.
    assert_eq!(restarted.search(w.a, &q).await.unwrap().total, 2);

    // A tampered file: the next process finds the index unreadable and rebuilds it.
    let path = w.search.manager().index_path(&w.a.to_string()).unwrap();
    drop(restarted);
    let victim = files(&path)
        .into_iter()
        .find(|p| p.file_name().unwrap() == "meta.json")
        .unwrap();
    let mut bytes = std::fs::read(&victim).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(&victim, bytes).unwrap();
    let again = Search::new(w.env.store.clone(), search_root(&w.env)).unwrap();
    assert_eq!(again.search(w.a, &q).await.unwrap().total, 2);
    // A deleted index folder: rebuilt too.
    drop(again);
    std::fs::remove_dir_all(&path).unwrap();
    let fresh = Search::new(w.env.store.clone(), search_root(&w.env)).unwrap();
    assert_eq!(fresh.search(w.a, &q).await.unwrap().total, 2);
    // The rebuild reports its progress up to the number of messages with text.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let n = fresh
        .rebuild(w.a, move |done, total| {
            s2.lock().unwrap().push((done, total))
        })
        .await
        .unwrap();
    assert_eq!(n, 4, "two questions and two replies");
    assert_eq!(seen.lock().unwrap().last(), Some(&(4, 4)));
}

async fn a_terminated_tenant_cannot_search(env: TestEnv) {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use smartchat_core::db::schema::tenants;
    let w = world(env).await;
    let (base, http, _) = w.login(w.a).await;
    let tid = w.a.to_string();
    let mut c = w.env.store.db.conn().await.unwrap();
    smartchat_core::db_run!(c, |c| diesel::update(tenants::table.find(&tid))
        .set(tenants::status.eq("terminated"))
        .execute(c)
        .await)
    .unwrap();
    let (status, v) = query(&base, &http, &[("q", "anything")]).await;
    assert_eq!(
        (status, v["code"].as_str()),
        (409, Some("tenant_terminated")),
        "{v}"
    );
}

async fn the_indexer_worker_follows_the_feed(env: TestEnv) {
    let w = world(env).await;
    let (stop, rx) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(w.search.clone().worker(rx));
    w.says(A_PNID, "919800000501", "zebracorn at noon").await;
    let q = smartchat_search::SearchQuery::text("zebracorn");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while w.search.search(w.a, &q).await.unwrap().total == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "not indexed within 10 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    stop.send(true).unwrap();
    worker.await.unwrap();
}

/// A round commits a tenant's index every `flush_max` messages: a backlog of one tenant is
/// indexed in bounded pieces, each its own segment, and every message is found.
async fn a_round_splits_a_large_tenant_batch_into_bounded_commits(env: TestEnv) {
    let w = world(env).await;
    w.says(A_PNID, "919800000601", "zebracorn one").await;
    w.says(A_PNID, "919800000602", "quokkafish two").await;
    w.says(A_PNID, "919800000603", "narwhalbee three").await;
    let queued = smartchat_core::search_feed::backlog(&w.env.store.db)
        .await
        .unwrap();
    assert_eq!(queued, 6, "three messages in, three replies");
    let small = w.search.clone().with_flush_max(2);
    assert_eq!(small.apply_pending().await.unwrap(), 6);
    assert_eq!(
        smartchat_core::search_feed::backlog(&w.env.store.db)
            .await
            .unwrap(),
        0,
        "every row applied and deleted"
    );
    for word in ["zebracorn", "quokkafish", "narwhalbee"] {
        let found = small
            .search(w.a, &smartchat_search::SearchQuery::text(word))
            .await
            .unwrap();
        assert_eq!(found.total, 1, "{word}");
    }
    let path = w.search.manager().index_path(&w.a.to_string()).unwrap();
    let segments = files(&path)
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "idx"))
        .count();
    assert!(
        segments >= 3,
        "six messages two per commit make three segments, found {segments}"
    );
}

both_backends!(
    a_round_splits_a_large_tenant_batch_into_bounded_commits,
    the_indexer_worker_follows_the_feed,
    messages_are_searchable_encrypted_and_each_search_ledgered,
    deleting_a_subject_purges_their_words_from_disk,
    a_shredded_tenant_loses_its_index,
    a_damaged_or_missing_index_is_rebuilt_and_a_restart_resumes,
    a_terminated_tenant_cannot_search,
);
