#![allow(clippy::unwrap_used, clippy::expect_used)]
//! End-to-end tests of the manager on real encrypted folders.

use std::fs;
use std::path::Path;

use smartchat_search::{
    Direction, DocMessage, EncryptedDirectory, IndexManager, ManagerConfig, OpenOutcome,
    SearchError, SearchKey, SearchQuery, SortOrder,
};

const KEY: [u8; 32] = [9; 32];
const T: &str = "tenant-1";

fn msg(id: usize, subject: &str, text: &str) -> DocMessage {
    DocMessage {
        message_id: format!("m{id}"),
        conversation_id: format!("c-{subject}"),
        subject: subject.to_string(),
        direction: if id % 2 == 0 {
            Direction::In
        } else {
            Direction::Out
        },
        kind: "text".into(),
        time_micros: 1_700_000_000_000_000 + id as i64 * 1_000_000,
        text: text.to_string(),
    }
}

async fn manager() -> (tempfile::TempDir, IndexManager) {
    let tmp = tempfile::tempdir().unwrap();
    let m = IndexManager::new(tmp.path(), ManagerConfig::default()).unwrap();
    assert_eq!(
        m.open(T, SearchKey::new(KEY)).await.unwrap(),
        OpenOutcome::Created
    );
    (tmp, m)
}

async fn ids(m: &IndexManager, q: SearchQuery) -> Vec<String> {
    let mut v: Vec<String> = m
        .search(T, &q)
        .await
        .unwrap()
        .hits
        .into_iter()
        .map(|h| h.message_id)
        .collect();
    v.sort();
    v
}

fn all_files(dir: &Path) -> Vec<std::path::PathBuf> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn term_in_dictionary(path: &Path, key: [u8; 32], word: &str) -> bool {
    let dir = EncryptedDirectory::open(path, &SearchKey::new(key)).unwrap();
    let index = tantivy::Index::open(dir).unwrap();
    let field = index.schema().get_field("text").unwrap();
    let reader = index.reader().unwrap();
    let searcher = reader.searcher();
    searcher.segment_readers().iter().any(|seg| {
        seg.inverted_index(field)
            .unwrap()
            .terms()
            .get(word.as_bytes())
            .unwrap()
            .is_some()
    })
}

#[tokio::test]
async fn no_plaintext_anywhere_on_disk() {
    let (tmp, m) = manager().await;
    let docs = vec![
        msg(1, "aa11", "zqxmarkerword asked about bridal packages"),
        msg(2, "aa11", "call me on +91 98765 43210 please"),
        msg(3, "bb22", "शादी का पैकेज कितने का है"),
    ];
    m.add_messages(T, &docs, 3).await.unwrap();
    let path = m.index_path(T).unwrap();
    let files = all_files(&path);
    assert!(files.len() > 3, "{files:?}");
    for f in files {
        let bytes = fs::read(&f).unwrap();
        for needle in [
            "zqxmarkerword",
            "98765",
            "919876543210",
            "पैकेज",
            "bridal",
            "aa11",
        ] {
            assert!(!contains(&bytes, needle.as_bytes()), "{needle} in {f:?}");
        }
    }
    // Yet it is all searchable.
    assert_eq!(ids(&m, SearchQuery::text("zqxmarkerword")).await, ["m1"]);
    assert_eq!(ids(&m, SearchQuery::text("919876543210")).await, ["m2"]);
    assert_eq!(
        ids(&m, SearchQuery::text("\"+91 98765 43210\"")).await,
        ["m2"]
    );
    assert_eq!(ids(&m, SearchQuery::text("पैकेज")).await, ["m3"]);
    drop(tmp);
}

#[tokio::test]
async fn query_features_and_filters() {
    let (_tmp, m) = manager().await;
    let docs = vec![
        msg(
            1,
            "aa",
            "Who asked about bridal packages? booking BK-2931 confirmed",
        ),
        msg(2, "bb", "bridal makeup trial tomorrow"),
        msg(3, "aa", "packages for the wedding season"),
        msg(4, "cc", "shaadi ka package kitne ka hai"),
    ];
    m.add_messages(T, &docs, 4).await.unwrap();
    assert_eq!(ids(&m, SearchQuery::text("bridal")).await, ["m1", "m2"]);
    assert_eq!(ids(&m, SearchQuery::text("bridal packages")).await, ["m1"]);
    assert_eq!(
        ids(&m, SearchQuery::text("bridal OR wedding")).await,
        ["m1", "m2", "m3"]
    );
    assert_eq!(
        ids(&m, SearchQuery::text("\"bridal packages\"")).await,
        ["m1"]
    );
    assert_eq!(
        ids(&m, SearchQuery::text("\"packages bridal\"")).await,
        Vec::<String>::new()
    );
    assert_eq!(
        ids(&m, SearchQuery::text("pack*")).await,
        ["m1", "m3", "m4"]
    );
    assert_eq!(ids(&m, SearchQuery::text("brydal~1")).await, ["m1", "m2"]);
    assert_eq!(ids(&m, SearchQuery::text("BK-2931")).await, ["m1"]);
    assert_eq!(ids(&m, SearchQuery::text("bk-2931")).await, ["m1"]);
    assert_eq!(
        ids(&m, SearchQuery::text("\"booking BK-2931 confirmed\"")).await,
        ["m1"]
    );
    assert_eq!(ids(&m, SearchQuery::text("bridal -makeup")).await, ["m1"]);
    let mut q = SearchQuery::text("bridal");
    q.subject = Some("bb".into());
    assert_eq!(ids(&m, q).await, ["m2"]);
    let mut q = SearchQuery::text("");
    q.direction = Some(Direction::In);
    assert_eq!(ids(&m, q).await, ["m2", "m4"]);
    let mut q = SearchQuery::text("packages OR package");
    q.from_micros = Some(1_700_000_000_000_000 + 2_000_000);
    q.to_micros = Some(1_700_000_000_000_000 + 4_000_000);
    assert_eq!(ids(&m, q).await, ["m3"]);
    let mut q = SearchQuery::text("");
    q.sort = SortOrder::NewestFirst;
    q.limit = 2;
    let r = m.search(T, &q).await.unwrap();
    assert_eq!(r.total, 4);
    assert_eq!(
        r.hits
            .iter()
            .map(|h| h.message_id.as_str())
            .collect::<Vec<_>>(),
        ["m4", "m3"]
    );
    let r = m
        .search(T, &SearchQuery::text("bridal packages"))
        .await
        .unwrap();
    let hit = &r.hits[0];
    assert!(
        hit.snippet.html.contains("<b>bridal</b>"),
        "{}",
        hit.snippet.html
    );
    assert_eq!(
        (hit.conversation_id.as_str(), hit.subject.as_str()),
        ("c-aa", "aa")
    );
    assert!(hit.score.unwrap() > 0.0);
    assert_eq!(r.total, 1);
    // A quoted phrase runs on shingles; its words are still highlighted.
    let r = m
        .search(T, &SearchQuery::text("\"bridal packages\""))
        .await
        .unwrap();
    assert_eq!(r.total, 1);
    let html = &r.hits[0].snippet.html;
    assert!(
        html.contains("<b>bridal</b>") && html.contains("<b>packages</b>"),
        "{html}"
    );
    assert!(r.hits[0].score.unwrap() > 0.0);
}

#[tokio::test]
async fn bad_queries_are_typed_errors() {
    let (_tmp, m) = manager().await;
    m.add_messages(T, &[msg(1, "aa", "hello world")], 1)
        .await
        .unwrap();
    for bad in [
        "\"unclosed",
        "(a OR b",
        "text:hello",
        "time:[1 TO 2]",
        "-hello",
        "a*",
    ] {
        match m.search(T, &SearchQuery::text(bad)).await {
            Err(SearchError::QuerySyntax { .. }) => {}
            other => panic!("{bad}: {other:?}"),
        }
    }
    let mut q = SearchQuery::text("hello");
    q.limit = 101;
    assert!(matches!(
        m.search(T, &q).await,
        Err(SearchError::InvalidRequest(_))
    ));
    q.limit = 10;
    q.offset = 10_001;
    assert!(matches!(
        m.search(T, &q).await,
        Err(SearchError::InvalidRequest(_))
    ));
    assert!(matches!(
        m.search("../x", &SearchQuery::text("a")).await,
        Err(SearchError::InvalidTenant)
    ));
    assert!(matches!(
        m.search("other", &SearchQuery::text("a")).await,
        Err(SearchError::TenantNotOpen)
    ));
}

#[tokio::test]
async fn delete_subject_physically_removes_words() {
    let (_tmp, m) = manager().await;
    // Several commits so there are several segments.
    for i in 0..6 {
        let docs = vec![
            msg(
                i * 2,
                "subjecta",
                &format!("alphamarkerqq number {i} asked about rooms"),
            ),
            msg(
                i * 2 + 1,
                "subjectb",
                &format!("betamarkerqq number {i} asked about rooms"),
            ),
        ];
        m.add_messages(T, &docs, i as u64 + 1).await.unwrap();
    }
    let path = m.index_path(T).unwrap();
    assert!(term_in_dictionary(&path, KEY, "alphamarkerqq"));
    m.delete_subject(T, "subjecta", 7).await.unwrap();
    assert_eq!(m.last_applied_seq(T).await.unwrap(), Some(7));
    assert_eq!(
        ids(&m, SearchQuery::text("alphamarkerqq")).await,
        Vec::<String>::new()
    );
    assert_eq!(ids(&m, SearchQuery::text("betamarkerqq")).await.len(), 6);
    assert!(!term_in_dictionary(&path, KEY, "alphamarkerqq"));
    assert!(term_in_dictionary(&path, KEY, "betamarkerqq"));
    let dir = EncryptedDirectory::open(&path, &SearchKey::new(KEY)).unwrap();
    let mut saw_beta = false;
    for f in all_files(&path) {
        let name = f.file_name().unwrap();
        if name.to_string_lossy().ends_with(".lock") {
            continue;
        }
        let plain = dir.decrypt_file(Path::new(name)).unwrap();
        assert!(!contains(&plain, b"alphamarkerqq"), "{name:?}");
        assert!(!contains(&plain, b"subjecta"), "{name:?}");
        saw_beta |= contains(&plain, b"betamarkerqq");
    }
    assert!(
        saw_beta,
        "control: the surviving subject's words are in the decrypted files"
    );
}

#[tokio::test]
async fn corrections_deletes_and_restart_watermark() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let m = IndexManager::new(tmp.path(), ManagerConfig::default()).unwrap();
        m.open(T, SearchKey::new(KEY)).await.unwrap();
        m.add_messages(
            T,
            &[msg(1, "aa", "see you at noon"), msg(2, "aa", "thanks")],
            10,
        )
        .await
        .unwrap();
        m.update_message(T, &msg(1, "aa", "see you at midnight"), 11)
            .await
            .unwrap();
        m.delete_message(T, "m2", 12).await.unwrap();
        assert_eq!(
            ids(&m, SearchQuery::text("noon")).await,
            Vec::<String>::new()
        );
        assert_eq!(ids(&m, SearchQuery::text("midnight")).await, ["m1"]);
        assert_eq!(
            ids(&m, SearchQuery::text("thanks")).await,
            Vec::<String>::new()
        );
    }
    let m = IndexManager::new(tmp.path(), ManagerConfig::default()).unwrap();
    let outcome = m.open(T, SearchKey::new(KEY)).await.unwrap();
    assert_eq!(
        outcome,
        OpenOutcome::Opened {
            last_applied_seq: Some(12)
        }
    );
    assert_eq!(ids(&m, SearchQuery::text("midnight")).await, ["m1"]);
}

#[tokio::test]
async fn wrong_key_and_tampering_are_typed_and_reset_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let m = IndexManager::new(tmp.path(), ManagerConfig::default()).unwrap();
        m.open(T, SearchKey::new(KEY)).await.unwrap();
        m.add_messages(T, &[msg(1, "aa", "hello world")], 1)
            .await
            .unwrap();
    }
    let m = IndexManager::new(tmp.path(), ManagerConfig::default()).unwrap();
    assert!(matches!(
        m.open(T, SearchKey::new([1; 32])).await,
        Err(SearchError::Crypto)
    ));
    // Tamper with a segment file: opening with the right key fails, typed.
    let path = m.index_path(T).unwrap();
    let seg = all_files(&path)
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "term"))
        .unwrap();
    let mut bytes = fs::read(&seg).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    fs::write(&seg, bytes).unwrap();
    let err = m.open(T, SearchKey::new(KEY)).await.unwrap_err();
    assert!(matches!(err, SearchError::Crypto), "{err:?}");
    // open_or_reset removes it and starts empty; rebuild fills it again.
    let outcome = m.open_or_reset(T, SearchKey::new(KEY)).await.unwrap();
    assert!(matches!(outcome, OpenOutcome::Reset { .. }));
    assert_eq!(
        ids(&m, SearchQuery::text("hello")).await,
        Vec::<String>::new()
    );
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let docs: Vec<DocMessage> = (0..25).map(|i| msg(i, "aa", "hello again")).collect();
    let n = m
        .rebuild(T, docs, 99, 10, move |n| s2.lock().unwrap().push(n))
        .await
        .unwrap();
    assert_eq!(n, 25);
    assert_eq!(*seen.lock().unwrap(), [10, 20, 25]);
    assert_eq!(
        m.search(T, &SearchQuery::text("hello"))
            .await
            .unwrap()
            .total,
        25
    );
    assert_eq!(m.last_applied_seq(T).await.unwrap(), Some(99));
}

#[tokio::test]
async fn drop_tenant_removes_the_folder() {
    let (_tmp, m) = manager().await;
    m.add_messages(T, &[msg(1, "aa", "hello")], 1)
        .await
        .unwrap();
    let path = m.index_path(T).unwrap();
    assert!(path.exists());
    m.drop_tenant(T).await.unwrap();
    assert!(!path.exists());
    assert!(matches!(
        m.search(T, &SearchQuery::text("hello")).await,
        Err(SearchError::TenantNotOpen)
    ));
}

#[tokio::test]
async fn tenants_are_isolated() {
    let (_tmp, m) = manager().await;
    m.open("tenant-2", SearchKey::new([3; 32])).await.unwrap();
    m.add_messages(T, &[msg(1, "aa", "only in one")], 1)
        .await
        .unwrap();
    assert_eq!(
        m.search("tenant-2", &SearchQuery::text("only"))
            .await
            .unwrap()
            .total,
        0
    );
    assert_eq!(
        m.search(T, &SearchQuery::text("only")).await.unwrap().total,
        1
    );
}

#[test]
fn debug_output_has_no_text() {
    let d = msg(1, "aa", "secret words here");
    assert!(!format!("{d:?}").contains("secret"));
    let q = SearchQuery::text("secret words");
    assert!(!format!("{q:?}").contains("secret"));
    assert_eq!(
        format!("{:?}", SearchKey::new(KEY)),
        "SearchKey(<redacted>)"
    );
}

#[tokio::test]
async fn fuzzy_with_date_filter() {
    let (_tmp, m) = manager().await;
    m.add_messages(T, &[msg(1, "aa", "appointment tomorrow reschedule")], 1)
        .await
        .unwrap();
    assert_eq!(ids(&m, SearchQuery::text("appoixtment~1")).await, ["m1"]);
    assert_eq!(ids(&m, SearchQuery::text("reschxdule~1")).await, ["m1"]);
    let mut q = SearchQuery::text("appoixtment~1");
    q.from_micros = Some(1_700_000_000_000_000);
    q.to_micros = Some(1_700_000_000_000_000 + 30 * 86_400_000_000);
    assert_eq!(ids(&m, q).await, ["m1"]);
}

#[tokio::test]
async fn a_failed_batch_leaves_nothing_behind() {
    let (_tmp, m) = manager().await;
    let mut bad = msg(2, "aa", "orphanword");
    bad.message_id.clear();
    let err = m
        .add_messages(T, &[msg(1, "aa", "orphanword"), bad], 5)
        .await
        .unwrap_err();
    assert!(matches!(err, SearchError::InvalidDocument(_)), "{err:?}");
    m.add_messages(T, &[msg(3, "aa", "fine")], 6).await.unwrap();
    assert_eq!(
        ids(&m, SearchQuery::text("orphanword")).await,
        Vec::<String>::new()
    );
    assert_eq!(ids(&m, SearchQuery::text("fine")).await, ["m3"]);
    assert_eq!(m.last_applied_seq(T).await.unwrap(), Some(6));
}

#[tokio::test]
async fn the_time_budget_truncates_instead_of_running_on() {
    let tmp = tempfile::tempdir().unwrap();
    let config = ManagerConfig {
        search_time_budget: std::time::Duration::ZERO,
        ..ManagerConfig::default()
    };
    let m = IndexManager::new(tmp.path(), config).unwrap();
    m.open(T, SearchKey::new(KEY)).await.unwrap();
    m.add_messages(T, &[msg(1, "aa", "hello")], 1)
        .await
        .unwrap();
    let r = m.search(T, &SearchQuery::text("hello")).await.unwrap();
    assert!(r.truncated);
    assert_eq!(r.total, 0);
}

#[tokio::test]
async fn opening_twice_keeps_the_open_index() {
    let (_tmp, m) = manager().await;
    m.add_messages(T, &[msg(1, "aa", "hello")], 4)
        .await
        .unwrap();
    let again = m.open(T, SearchKey::new(KEY)).await.unwrap();
    assert_eq!(
        again,
        OpenOutcome::Opened {
            last_applied_seq: Some(4)
        }
    );
    m.close(T).await.unwrap();
    let reopened = m.open(T, SearchKey::new(KEY)).await.unwrap();
    assert_eq!(reopened, again);
    m.add_messages(T, &[msg(2, "aa", "hello")], 5)
        .await
        .unwrap();
    assert_eq!(ids(&m, SearchQuery::text("hello")).await, ["m1", "m2"]);
}

#[tokio::test]
async fn an_index_of_an_older_schema_is_reset_for_a_rebuild() {
    let tmp = tempfile::tempdir().unwrap();
    let m = IndexManager::new(tmp.path(), ManagerConfig::default()).unwrap();
    let path = m.index_path(T).unwrap();
    fs::create_dir_all(&path).unwrap();
    {
        // The schema before shingles: text without the `pairs` field.
        let mut b = tantivy::schema::Schema::builder();
        let text = b.add_text_field("text", tantivy::schema::TEXT);
        let dir = EncryptedDirectory::open(&path, &SearchKey::new(KEY)).unwrap();
        let index = tantivy::Index::create(dir, b.build(), Default::default()).unwrap();
        let mut w: tantivy::IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
        let mut doc = tantivy::TantivyDocument::default();
        doc.add_text(text, "old format");
        w.add_document(doc).unwrap();
        w.commit().unwrap();
    }
    assert!(matches!(
        m.open(T, SearchKey::new(KEY)).await,
        Err(SearchError::CorruptIndex(_))
    ));
    let outcome = m.open_or_reset(T, SearchKey::new(KEY)).await.unwrap();
    assert!(
        matches!(&outcome, OpenOutcome::Reset { reason } if reason.contains("pairs")),
        "{outcome:?}"
    );
    m.add_messages(T, &[msg(1, "s", "kitne ka hai")], 1)
        .await
        .unwrap();
    assert_eq!(ids(&m, SearchQuery::text("\"kitne ka\"")).await, vec!["m1"]);
}
