//! Search benchmark (release, bench binary): indexing rate, size on disk,
//! open-loop query latency for tantivy (encrypted) versus PostgreSQL FTS,
//! and add-to-searchable freshness.
//!
//! `cargo bench -p smartchat-search --bench search_bench`
//! Environment: `SEARCH_BENCH_N` (messages, default 1,000,000),
//! `SEARCH_BENCH_Q` (queries per kind, default 1,000), `SEARCH_BENCH_RATE`
//! (queries/s, default 200), `SEARCH_BENCH_PG` (URL, default
//! `postgres://postgres@127.0.0.1:5432/postgres`; `off` skips PostgreSQL).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use smartchat_search::{
    Direction, DocMessage, IndexManager, ManagerConfig, SearchKey, SearchQuery,
};

const EN: &[&str] = &[
    "hello",
    "hi",
    "thanks",
    "please",
    "booking",
    "price",
    "package",
    "bridal",
    "makeup",
    "wedding",
    "appointment",
    "tomorrow",
    "today",
    "available",
    "confirm",
    "confirmed",
    "cancel",
    "payment",
    "advance",
    "discount",
    "location",
    "address",
    "time",
    "date",
    "morning",
    "evening",
    "guests",
    "venue",
    "photos",
    "catering",
    "menu",
    "decoration",
    "flowers",
    "hair",
    "nails",
    "facial",
    "trial",
    "reception",
    "engagement",
    "ceremony",
    "invoice",
    "receipt",
    "refund",
    "delivery",
    "order",
    "status",
    "delay",
    "sorry",
    "great",
    "perfect",
    "sure",
    "okay",
    "when",
    "where",
    "what",
    "how",
    "much",
    "cost",
    "rate",
    "quote",
    "team",
    "artist",
    "studio",
    "salon",
    "hotel",
    "room",
    "night",
    "week",
    "month",
    "season",
    "offer",
    "special",
    "premium",
    "basic",
    "deluxe",
    "call",
    "message",
    "number",
    "contact",
    "details",
    "share",
    "send",
    "received",
    "waiting",
    "reply",
    "question",
    "asked",
    "about",
    "need",
    "want",
    "book",
    "slot",
    "schedule",
    "change",
    "reschedule",
    "early",
    "late",
    "parking",
    "dress",
    "jewellery",
    "lehenga",
    "saree",
    "groom",
    "bride",
    "family",
    "friends",
    "party",
    "cake",
    "music",
    "dj",
    "lights",
    "stage",
    "budget",
];
const ROMAN: &[&str] = &[
    "kya",
    "hai",
    "kitne",
    "ka",
    "ki",
    "ke",
    "shaadi",
    "bhai",
    "accha",
    "theek",
    "kal",
    "aaj",
    "paisa",
    "kitna",
    "chahiye",
    "karna",
    "milega",
    "dhanyavad",
    "namaste",
    "ji",
    "haan",
    "nahi",
    "abhi",
    "kab",
    "kaise",
    "mera",
    "aapka",
    "samay",
    "jaldi",
    "baad",
    "pehle",
    "ghar",
    "dukaan",
    "saath",
    "wala",
    "bahut",
    "sundar",
    "mehndi",
    "sangeet",
    "dulhan",
    "haldi",
    "baraat",
    "rishta",
    "mahina",
    "din",
    "raat",
    "subah",
    "shaam",
    "batao",
    "bataiye",
    "bhejo",
    "dekho",
    "pasand",
    "mehmaan",
    "khana",
    "kamra",
    "tareekh",
    "rupaye",
    "seva",
    "pata",
];
const HI: &[&str] = &[
    "शादी",
    "का",
    "पैकेज",
    "क्या",
    "है",
    "कितने",
    "में",
    "मेहंदी",
    "संगीत",
    "दुल्हन",
    "बुकिंग",
    "कल",
    "आज",
    "धन्यवाद",
    "नमस्ते",
    "जी",
    "हाँ",
    "नहीं",
    "अभी",
    "कब",
    "कैसे",
    "मेरा",
    "आपका",
    "समय",
    "जल्दी",
    "बाद",
    "पहले",
    "घर",
    "दुकान",
    "साथ",
    "वाला",
    "बहुत",
    "सुंदर",
    "भुगतान",
    "छूट",
    "अग्रिम",
    "पुष्टि",
    "स्थान",
    "मेहमान",
    "खाना",
    "फोटो",
    "कमरा",
    "होटल",
    "तारीख",
    "महीने",
    "रुपये",
    "सेवा",
    "ग्राहक",
    "संपर्क",
    "पता",
    "हल्दी",
    "बारात",
];
const PHRASES: &[&str] = &[
    "bridal package",
    "booking confirmed",
    "advance payment",
    "makeup trial",
    "wedding venue",
    "guest list",
    "hair and makeup",
    "price list",
    "special offer",
    "next week",
    "shaadi ka",
    "kitne ka hai",
    "mehndi ka din",
    "kal subah",
    "bahut sundar",
    "theek hai",
    "abhi batao",
    "dulhan ka makeup",
    "sangeet night",
    "haldi ceremony",
    "शादी का पैकेज",
    "कितने का है",
    "बहुत सुंदर",
    "अग्रिम भुगतान",
    "बुकिंग की पुष्टि",
    "मेहंदी का दिन",
    "कल सुबह",
    "होटल का कमरा",
    "reception venue",
    "photo shoot",
    "engagement party",
    "full payment",
    "refund status",
    "delivery date",
    "premium package",
    "basic package",
    "deluxe room",
    "call me",
    "send details",
    "contact number",
];

fn pick<'a>(rng: &mut StdRng, list: &[&'a str]) -> &'a str {
    let u: f64 = rng.r#gen();
    list[((u * u) * list.len() as f64) as usize % list.len()]
}

const T0: i64 = 1_700_000_000_000_000;
const YEAR: i64 = 365 * 86_400 * 1_000_000;

fn generate(i: u64, rng: &mut StdRng) -> DocMessage {
    let u: f64 = rng.r#gen();
    let target = 10 + (u * u * 290.0) as usize;
    let lang = rng.gen_range(0..100);
    let mut text = String::new();
    while text.chars().count() < target {
        let list = match (lang, rng.gen_range(0..10)) {
            (_, 0) => [EN, ROMAN, HI][rng.gen_range(0..3)],
            (0..45, _) => EN,
            (45..75, _) => ROMAN,
            _ => HI,
        };
        if !text.is_empty() {
            text.push(' ');
        }
        match rng.gen_range(0..100) {
            0..8 => text.push_str(PHRASES[rng.gen_range(0..PHRASES.len())]),
            8 => text.push_str(&format!(
                "+91 9{:04} {:05}",
                rng.gen_range(0..10_000),
                rng.gen_range(0..100_000)
            )),
            9 => text.push_str(&format!("BK-{}", rng.gen_range(1000..9999))),
            10 => text.push('🙏'),
            _ => text.push_str(pick(rng, list)),
        }
    }
    let subject = rng.gen_range(0..5000u32);
    DocMessage {
        message_id: format!("m{i}"),
        conversation_id: format!("c{subject}"),
        subject: format!(
            "{:016x}",
            u64::from(subject).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ),
        direction: if rng.gen_bool(0.5) {
            Direction::In
        } else {
            Direction::Out
        },
        kind: "text".into(),
        time_micros: T0 + (i as i64 * 7_919_000_003) % YEAR,
        text,
    }
}

#[derive(Clone)]
enum Kind {
    Term(String),
    Phrase(String),
    /// (misspelled word, correct word, from, to)
    Fuzzy(String, String, i64, i64),
}

fn queries(n: usize) -> Vec<(&'static str, Vec<Kind>)> {
    let mut rng = StdRng::seed_from_u64(7);
    let terms: Vec<&str> = EN
        .iter()
        .step_by(5)
        .chain(ROMAN.iter().step_by(4))
        .chain(HI.iter().step_by(4))
        .copied()
        .collect();
    let fuzzy_words: Vec<&str> = EN
        .iter()
        .chain(ROMAN.iter())
        .filter(|w| w.len() >= 6)
        .copied()
        .take(48)
        .collect();
    assert!(terms.len() >= 40 && fuzzy_words.len() >= 40 && PHRASES.len() >= 40);
    let mut term_q = Vec::new();
    let mut phrase_q = Vec::new();
    let mut fuzzy_q = Vec::new();
    for i in 0..n {
        term_q.push(Kind::Term(terms[i % terms.len()].to_string()));
        phrase_q.push(Kind::Phrase(PHRASES[i % PHRASES.len()].to_string()));
        let w = fuzzy_words[i % fuzzy_words.len()];
        let mut chars: Vec<char> = w.chars().collect();
        let at = chars.len() / 2;
        chars[at] = if chars[at] == 'x' { 'z' } else { 'x' };
        let from = T0 + rng.gen_range(0..YEAR - 30 * 86_400_000_000);
        fuzzy_q.push(Kind::Fuzzy(
            chars.into_iter().collect(),
            w.to_string(),
            from,
            from + 30 * 86_400_000_000,
        ));
    }
    vec![
        ("term", term_q),
        ("phrase", phrase_q),
        ("fuzzy+date", fuzzy_q),
    ]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

struct Stats {
    p50: Duration,
    p99: Duration,
    max: Duration,
    done: usize,
}

fn report(engine: &str, kind: &str, mut lat: Vec<Duration>, planned: usize) -> Stats {
    lat.sort();
    let s = Stats {
        p50: percentile(&lat, 0.5),
        p99: percentile(&lat, 0.99),
        max: lat.last().copied().unwrap_or_default(),
        done: lat.len(),
    };
    println!(
        "{engine:9} {kind:11} p50 {:>9.3} ms  p99 {:>9.3} ms  max {:>9.3} ms  ({}/{} queries)",
        s.p50.as_secs_f64() * 1e3,
        s.p99.as_secs_f64() * 1e3,
        s.max.as_secs_f64() * 1e3,
        s.done,
        planned
    );
    s
}

/// Open loop: query i is due at start + i/rate and goes to a shared queue served by
/// `workers` threads (a server runs concurrent searches on its blocking pool); latency
/// counts from the due time, so queueing delay is included.
fn open_loop(
    rate: f64,
    qs: &[Kind],
    cap: Duration,
    workers: usize,
    run: impl Fn(&Kind) + Sync,
) -> Vec<Duration> {
    let start = Instant::now() + Duration::from_millis(20);
    let (tx, rx) = std::sync::mpsc::channel::<(usize, Instant)>();
    let rx = std::sync::Mutex::new(rx);
    let lat = std::sync::Mutex::new(Vec::with_capacity(qs.len()));
    std::thread::scope(|s| {
        for _ in 0..workers.max(1) {
            s.spawn(|| {
                loop {
                    let next = rx.lock().unwrap().recv();
                    let Ok((i, due)) = next else { return };
                    run(&qs[i]);
                    lat.lock().unwrap().push(due.elapsed());
                }
            });
        }
        for i in 0..qs.len() {
            let due = start + Duration::from_secs_f64(i as f64 / rate);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if Instant::now() > start + cap {
                break;
            }
            if tx.send((i, due)).is_err() {
                break;
            }
        }
        drop(tx);
    });
    lat.into_inner().unwrap()
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let n = env_or("SEARCH_BENCH_N", 1_000_000) as u64;
    let nq = env_or("SEARCH_BENCH_Q", 1_000);
    let rate = env_or("SEARCH_BENCH_RATE", 200) as f64;
    let pg_url = std::env::var("SEARCH_BENCH_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let cap = Duration::from_secs(60);
    let workers = env_or("SEARCH_BENCH_WORKERS", 2);
    println!(
        "search_bench: {n} messages, {nq} queries per kind at {rate}/s (open loop, {workers} workers per engine), {} cores",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    let tmp = tempfile::tempdir().unwrap();
    let config = ManagerConfig {
        writer_threads: 2,
        writer_memory_bytes: 200_000_000,
        ..ManagerConfig::default()
    };
    let manager = IndexManager::new(tmp.path(), config).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(manager.open("bench", SearchKey::new([5; 32])))
        .unwrap();

    // Generate once; the same rows go to PostgreSQL.
    let mut rng = StdRng::seed_from_u64(42);
    let t = Instant::now();
    let docs: Vec<DocMessage> = (0..n).map(|i| generate(i, &mut rng)).collect();
    let raw: usize = docs.iter().map(|d| d.text.len()).sum();
    println!(
        "generated in {:.1} s, raw text {:.1} MB, mean {:.0} bytes/message",
        t.elapsed().as_secs_f64(),
        raw as f64 / 1e6,
        raw as f64 / n as f64
    );

    // Indexing with batched commits.
    let batch = 10_000usize;
    let t = Instant::now();
    for (b, chunk) in docs.chunks(batch).enumerate() {
        manager
            .add_messages_blocking("bench", chunk, b as u64 + 1)
            .unwrap();
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "indexing: {:.0} messages/s ({n} messages, commit every {batch}, {:.1} s, encrypted directory)",
        n as f64 / secs,
        secs
    );
    let disk = manager.disk_usage("bench").unwrap();
    println!(
        "index size on disk: {:.1} MB = {:.2}x raw text ({:.1} MB); text is STORED for snippets",
        disk as f64 / 1e6,
        disk as f64 / raw as f64,
        raw as f64 / 1e6
    );

    rt.block_on(manager.wait_for_merges("bench")).unwrap();
    println!(
        "merges settled; size on disk now {:.1} MB",
        manager.disk_usage("bench").unwrap() as f64 / 1e6
    );
    let kinds = queries(nq);
    // Warm-up (also checks that queries match something).
    for (kind, qs) in &kinds {
        let mut matched = 0;
        for q in qs.iter().take(60) {
            matched += usize::from(
                manager
                    .search_blocking("bench", &tantivy_query(q))
                    .unwrap()
                    .total
                    > 0,
            );
        }
        println!("warm-up {kind}: {matched}/60 queries had hits");
    }
    // Closed loop, one query at a time: pure service time, no queueing.
    for (kind, qs) in &kinds {
        let mut lat: Vec<Duration> = qs
            .iter()
            .take(200)
            .map(|q| {
                let t = Instant::now();
                std::hint::black_box(manager.search_blocking("bench", &tantivy_query(q)).unwrap());
                t.elapsed()
            })
            .collect();
        lat.sort();
        let mean = lat.iter().sum::<Duration>() / lat.len().max(1) as u32;
        println!(
            "tantivy   {kind:11} service time (closed loop, 200 queries): mean {:.3} ms, p50 {:.3} ms, p99 {:.3} ms",
            mean.as_secs_f64() * 1e3,
            percentile(&lat, 0.5).as_secs_f64() * 1e3,
            percentile(&lat, 0.99).as_secs_f64() * 1e3
        );
    }
    let mut tv = Vec::new();
    for (kind, qs) in &kinds {
        let lat = open_loop(rate, qs, cap, workers, |q| {
            let r = manager.search_blocking("bench", &tantivy_query(q)).unwrap();
            std::hint::black_box(r);
        });
        tv.push(report("tantivy", kind, lat, qs.len()));
    }

    if pg_url != "off" {
        match rt.block_on(postgres(&pg_url, &docs, &kinds, rate, cap, workers)) {
            Ok(pg) => {
                for ((kind, _), (t, p)) in kinds.iter().zip(tv.iter().zip(pg.iter())) {
                    println!(
                        "ratio {kind:11} p50 {:>7.1}x  p99 {:>7.1}x (PostgreSQL / tantivy){}",
                        p.p50.as_secs_f64() / t.p50.as_secs_f64(),
                        p.p99.as_secs_f64() / t.p99.as_secs_f64(),
                        if p.done < nq {
                            "  [PostgreSQL hit the 60 s cap]"
                        } else {
                            ""
                        }
                    );
                }
            }
            Err(e) => println!("PostgreSQL part skipped: {e}"),
        }
    }
    drop(docs);
    // Cold open: every file of the index is decrypted once into memory.
    rt.block_on(manager.close("bench")).unwrap();
    let t = Instant::now();
    rt.block_on(manager.open("bench", SearchKey::new([5; 32])))
        .unwrap();
    let opened = t.elapsed();
    let t = Instant::now();
    let first = manager
        .search_blocking("bench", &SearchQuery::text("bridal"))
        .unwrap();
    println!(
        "reopen (decrypt whole index into memory): {:.0} ms for {:.1} MB; first query {:.1} ms ({} hits)",
        opened.as_secs_f64() * 1e3,
        manager.disk_usage("bench").unwrap() as f64 / 1e6,
        t.elapsed().as_secs_f64() * 1e3,
        first.total
    );
    freshness(&manager, &rt);
}

fn tantivy_query(k: &Kind) -> SearchQuery {
    match k {
        Kind::Term(t) => SearchQuery::text(t.clone()),
        Kind::Phrase(p) => SearchQuery::text(format!("\"{p}\"")),
        Kind::Fuzzy(w, _, from, to) => {
            let mut q = SearchQuery::text(format!("{w}~1"));
            q.from_micros = Some(*from);
            q.to_micros = Some(*to);
            q
        }
    }
}

const TERM_SQL: &str = "SELECT id FROM msgs, plainto_tsquery('simple', $1) q WHERE tsv @@ q ORDER BY ts_rank(tsv, q) DESC LIMIT 20";
const PHRASE_SQL: &str = "SELECT id FROM msgs, phraseto_tsquery('simple', $1) q WHERE tsv @@ q ORDER BY ts_rank(tsv, q) DESC LIMIT 20";
const DATED_SQL: &str = "SELECT id FROM msgs, plainto_tsquery('simple', $1) q WHERE tsv @@ q AND ts >= $2 AND ts < $3 ORDER BY ts_rank(tsv, q) DESC LIMIT 20";

async fn postgres(
    url: &str,
    docs: &[DocMessage],
    kinds: &[(&'static str, Vec<Kind>)],
    rate: f64,
    cap: Duration,
    workers: usize,
) -> Result<Vec<Stats>, tokio_postgres::Error> {
    use futures::SinkExt;
    let (admin, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    let db = format!("search_bench_{}", std::process::id());
    admin
        .batch_execute(&format!("CREATE DATABASE {db} ENCODING 'UTF8' LC_CTYPE 'C.UTF-8' LC_COLLATE 'C.UTF-8' TEMPLATE template0"))
        .await?;
    let result = async {
        let db_url = match url.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{db}"),
            None => url.to_string(),
        };
        let (client, conn) = tokio_postgres::connect(&db_url, tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        client
            .batch_execute(
                "CREATE TABLE msgs (id text PRIMARY KEY, subject text, ts bigint NOT NULL, body text NOT NULL,
                 tsv tsvector GENERATED ALWAYS AS (to_tsvector('simple', body)) STORED)",
            )
            .await?;
        let t = Instant::now();
        let sink = client.copy_in("COPY msgs (id, subject, ts, body) FROM STDIN").await?;
        futures::pin_mut!(sink);
        for chunk in docs.chunks(10_000) {
            let mut buf = String::new();
            for d in chunk {
                buf.push_str(&format!("{}\t{}\t{}\t{}\n", d.message_id, d.subject, d.time_micros, d.text));
            }
            sink.send(std::io::Cursor::new(buf.into_bytes())).await?;
        }
        sink.finish().await?;
        let load = t.elapsed();
        let t = Instant::now();
        client.batch_execute("CREATE INDEX msgs_tsv ON msgs USING gin (tsv); CREATE INDEX msgs_ts ON msgs (ts); ANALYZE msgs").await?;
        println!("postgres: COPY {:.1} s, GIN + btree build {:.1} s", load.as_secs_f64(), t.elapsed().as_secs_f64());
        let size: i64 = client.query_one("SELECT pg_total_relation_size('msgs')", &[]).await?.get(0);
        println!("postgres: table + indexes {:.1} MB", size as f64 / 1e6);
        let term = client.prepare(TERM_SQL).await?;
        let phrase = client.prepare(PHRASE_SQL).await?;
        let dated = client.prepare(DATED_SQL).await?;
        let run_one = |q: &Kind| {
            let q = q.clone();
            let (term, phrase, dated) = (&term, &phrase, &dated);
            let client = &client;
            async move {
                match &q {
                    Kind::Term(t) => client.query(term, &[t]).await,
                    Kind::Phrase(p) => client.query(phrase, &[p]).await,
                    // PostgreSQL FTS has no fuzzy match: it gets the correct spelling.
                    Kind::Fuzzy(_, w, from, to) => client.query(dated, &[w, from, to]).await,
                }
            }
        };
        for (kind, qs) in kinds {
            let mut lat = Vec::new();
            for q in qs.iter().take(50) {
                let t = Instant::now();
                std::hint::black_box(run_one(q).await?);
                lat.push(t.elapsed());
            }
            lat.sort();
            let mean = lat.iter().sum::<Duration>() / lat.len().max(1) as u32;
            println!(
                "postgres  {kind:11} service time (closed loop, 50 queries): mean {:.3} ms, p50 {:.3} ms, p99 {:.3} ms",
                mean.as_secs_f64() * 1e3,
                percentile(&lat, 0.5).as_secs_f64() * 1e3,
                percentile(&lat, 0.99).as_secs_f64() * 1e3
            );
        }
        // The same open loop with `workers` connections serving a shared queue.
        let mut conns = Vec::new();
        for _ in 0..workers.max(1) {
            let (c, conn) = tokio_postgres::connect(&db_url, tokio_postgres::NoTls).await?;
            tokio::spawn(conn);
            let stmts = (
                c.prepare(TERM_SQL).await?,
                c.prepare(PHRASE_SQL).await?,
                c.prepare(DATED_SQL).await?,
            );
            conns.push((std::sync::Arc::new(c), stmts));
        }
        let mut out = Vec::new();
        for (kind, qs) in kinds {
            let start = Instant::now() + Duration::from_millis(20);
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<(Kind, Instant)>();
            let rx = std::sync::Arc::new(tokio::sync::Mutex::new(rx));
            let mut tasks = Vec::new();
            for (c, (term, phrase, dated)) in &conns {
                let (c, term, phrase, dated) =
                    (c.clone(), term.clone(), phrase.clone(), dated.clone());
                let rx = rx.clone();
                tasks.push(tokio::spawn(async move {
                    let mut lat = Vec::new();
                    loop {
                        let next = rx.lock().await.recv().await;
                        let Some((q, due)) = next else { break };
                        if Instant::now() > start + cap {
                            // Past the cap: what is still queued is left unanswered
                            // (reported as done/planned).
                            break;
                        }
                        let rows = match &q {
                            Kind::Term(t) => c.query(&term, &[t]).await,
                            Kind::Phrase(p) => c.query(&phrase, &[p]).await,
                            Kind::Fuzzy(_, w, from, to) => c.query(&dated, &[w, from, to]).await,
                        };
                        std::hint::black_box(rows?);
                        lat.push(due.elapsed());
                    }
                    Ok::<Vec<Duration>, tokio_postgres::Error>(lat)
                }));
            }
            for (i, q) in qs.iter().enumerate() {
                let due = start + Duration::from_secs_f64(i as f64 / rate);
                tokio::time::sleep_until(due.into()).await;
                if Instant::now() > start + cap {
                    break;
                }
                let _ = tx.send((q.clone(), due));
            }
            drop(tx);
            let mut lat = Vec::new();
            for t in tasks {
                if let Ok(part) = t.await {
                    lat.extend(part?);
                }
            }
            out.push(report("postgres", kind, lat, qs.len()));
        }
        Ok(out)
    }
    .await;
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        .await?;
    result
}

fn freshness(manager: &IndexManager, rt: &tokio::runtime::Runtime) {
    let manager_ref = manager;
    rt.block_on(manager_ref.open("fresh", SearchKey::new([6; 32])))
        .unwrap();
    let mut rng = StdRng::seed_from_u64(3);
    let pre: Vec<DocMessage> = (0..50_000).map(|i| generate(i, &mut rng)).collect();
    manager.add_messages_blocking("fresh", &pre, 1).unwrap();
    let add_rate = 1000.0;
    let commit_every = Duration::from_millis(500);
    let run_for = Duration::from_secs(10);
    let (tx, rx) = std::sync::mpsc::channel::<(DocMessage, Instant)>();
    let stop = Arc::new(AtomicBool::new(false));
    std::thread::scope(|s| {
        // Committer: drains what arrived and commits every `commit_every`.
        let stop_c = stop.clone();
        s.spawn(move || {
            let mut seq = 1;
            while !stop_c.load(Ordering::Relaxed) {
                std::thread::sleep(commit_every);
                let batch: Vec<DocMessage> = rx.try_iter().map(|(d, _)| d).collect();
                if !batch.is_empty() {
                    seq += 1;
                    manager.add_messages_blocking("fresh", &batch, seq).unwrap();
                }
            }
        });
        // Producer at `add_rate`, prober on every 25th message.
        let (ptx, prx) = std::sync::mpsc::channel::<(String, Instant)>();
        s.spawn(move || {
            let start = Instant::now();
            let mut i = 0u64;
            while start.elapsed() < run_for {
                let due = start + Duration::from_secs_f64(i as f64 / add_rate);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                let mut d = generate(1_000_000 + i, &mut StdRng::seed_from_u64(i));
                let marker = format!("freshmark{i}x");
                d.text = format!("{} {marker}", d.text);
                let sent = Instant::now();
                tx.send((d, sent)).unwrap();
                if i % 25 == 0 {
                    ptx.send((marker, sent)).unwrap();
                }
                i += 1;
            }
        });
        let mut lat = Vec::new();
        for (marker, sent) in prx {
            // Probe without skipping: wait for each sampled marker in turn.
            loop {
                let r = manager
                    .search_blocking("fresh", &SearchQuery::text(marker.clone()))
                    .unwrap();
                if r.total > 0 {
                    lat.push(sent.elapsed());
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        stop.store(true, Ordering::Relaxed);
        lat.sort();
        println!(
            "freshness (add {add_rate}/s, commit every {} ms, 50k preloaded): add-to-visible p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms ({} probes)",
            commit_every.as_millis(),
            percentile(&lat, 0.5).as_secs_f64() * 1e3,
            percentile(&lat, 0.99).as_secs_f64() * 1e3,
            lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
            lat.len()
        );
    });
}
