//! How soon a message is searchable after its webhook, under sustained load (issue 7).
//!
//! Meta-shaped deliveries (one text message each, from rotating customers of 10 tenants) go
//! through `pipeline::ingest` (what the webhook does after the signature check) at a fixed
//! rate, open loop, while the server's pipeline workers answer them and the search indexer
//! applies the feed. Every 10th message carries a unique marker word; a prober searches for
//! each marker until it is found. Latency = found − the message's scheduled time.
//!
//! The workers, the indexer and the ledger sequencer run on the background runtime as
//! `smartchat serve` runs them (`SMARTCHAT_BACKGROUND_PRIORITY`, `idle` by default).
//!
//! Run: `cargo bench -p smartchat-tests --bench search_freshness`
//! (`BENCH_BACKENDS=sqlite|postgres`, `BENCH_RATE` messages/s (default 200), `BENCH_SECONDS`
//! (default 20)).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use smartchat_api::pipeline::{self, Pipeline};
use smartchat_api::search::Search;
use smartchat_core::ids::{Handle, PhoneNumber, PhoneNumberId, TenantId};
use smartchat_core::store::{NewTenant, Profile};
use smartchat_search::SearchQuery;
use smartchat_tests::{Backend, TestEnv};

const TENANTS: usize = 10;

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const WORDS: &[&str] = &[
    "haircut",
    "price",
    "kal",
    "shaam",
    "booking",
    "bridal",
    "package",
    "facial",
    "kitne",
    "ka",
    "hai",
    "appointment",
    "saturday",
    "evening",
    "please",
    "thanks",
    "spa",
    "colour",
    "nails",
    "मुझे",
    "कल",
    "बाल",
    "कटवाने",
    "हैं",
];

fn sentence(i: u64) -> String {
    let n = 4 + (i % 9) as usize;
    (0..n)
        .map(|k| WORDS[((i as usize).wrapping_mul(31) + k * 7) % WORDS.len()])
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rate = env_num("BENCH_RATE", 200) as f64;
    let seconds = env_num("BENCH_SECONDS", 20);
    let which = std::env::var("BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let name = if backend == Backend::Sqlite {
            "sqlite"
        } else {
            "postgres"
        };
        if !which.contains(name) {
            continue;
        }
        run(backend, name, rate, seconds).await;
    }
}

async fn run(backend: Backend, name: &str, rate: f64, seconds: u64) {
    let env = TestEnv::new(backend).await;
    let mut tenants: Vec<(TenantId, String)> = Vec::new();
    for t in 0..TENANTS {
        let pnid = format!("77{t:05}");
        let id = env
            .store
            .create_tenant(NewTenant {
                handle: format!("fresh-{t}").parse::<Handle>().unwrap(),
                profile: Profile(
                    serde_json::json!({"name": format!("Salon {t}"), "business_type": "salon"}),
                ),
                phone_number_id: Some(pnid.parse::<PhoneNumberId>().unwrap()),
                access_token: Some(smartchat_core::config::Secret::new("")),
            })
            .await
            .unwrap();
        tenants.push((id, pnid));
    }
    // `SMARTCHAT_BACKGROUND_PRIORITY=normal` (or `low`) compares other schedulings.
    let vars: HashMap<String, String> = std::env::vars()
        .filter(|(k, _)| k == "SMARTCHAT_BACKGROUND_PRIORITY")
        .collect();
    let config = smartchat_core::config::Config::load_from(None, &vars).unwrap();
    let pipeline = Pipeline::new(env.store.clone(), &config).unwrap();
    let search = Search::with_priority(
        env.store.clone(),
        env.dir.path().join("search"),
        config.background_priority,
    )
    .unwrap();
    let (stop, rx) = tokio::sync::watch::channel(false);
    // As `smartchat serve` runs them: indexer, workers and ledger sequencer on the
    // background runtime, below the ingest's priority.
    let ledger = smartchat_core::ledger_store::Ledger::open(
        env.store.db.clone(),
        &env.store.keys,
        "bench/ledger",
    )
    .await
    .unwrap();
    let background = smartchat_api::background::Background::start(
        smartchat_api::background::BackgroundWork {
            pipeline: pipeline.clone(),
            ledger,
            search: Some(search.clone()),
            run_jobs: true,
            follow_ups: None,
            retention: false,
            priority: config.background_priority,
        },
        &rx,
    )
    .unwrap();
    // Pending markers: marker → (tenant, scheduled time).
    let pending: Arc<Mutex<HashMap<String, (TenantId, Instant)>>> = Arc::default();
    let found: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let prober = {
        let (pending, found, search) = (pending.clone(), found.clone(), search.clone());
        let mut rx = rx.clone();
        tokio::spawn(async move {
            loop {
                // One search per tenant and group of markers (`a OR b OR …`), so the prober
                // itself stays a small load; a hit's snippet names its marker.
                let mut by_tenant: HashMap<TenantId, Vec<(String, Instant)>> = HashMap::new();
                for (m, (t, at)) in pending.lock().unwrap().iter() {
                    by_tenant.entry(*t).or_default().push((m.clone(), *at));
                }
                for (tenant, markers) in by_tenant {
                    for group in markers.chunks(30) {
                        let text = group
                            .iter()
                            .map(|(m, _)| m.as_str())
                            .collect::<Vec<_>>()
                            .join(" OR ");
                        let mut q = SearchQuery::text(text);
                        q.limit = 100;
                        let Ok(r) = search.search(tenant, &q).await else {
                            continue;
                        };
                        for (marker, at) in group {
                            if r.hits
                                .iter()
                                .any(|h| h.snippet.fragment.contains(marker.as_str()))
                            {
                                found.lock().unwrap().push(at.elapsed());
                                pending.lock().unwrap().remove(marker);
                            }
                        }
                    }
                }
                tokio::select! {
                    _ = rx.changed() => return,
                    _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                }
            }
        })
    };
    let total = (rate * seconds as f64) as u64;
    let start = Instant::now() + Duration::from_millis(50);
    let mut ingest_lat = Vec::with_capacity(total as usize);
    let mut sent_markers = 0u64;
    let mut inflight = Vec::with_capacity(total as usize);
    for i in 0..total {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        let (tenant, pnid) = &tenants[(i as usize) % TENANTS];
        let from: PhoneNumber = format!("9197{:08}", i % 5000).parse().unwrap();
        let mut text = sentence(i);
        if i % 10 == 0 {
            let marker = format!("mk{i:07}x");
            text.push(' ');
            text.push_str(&marker);
            pending.lock().unwrap().insert(marker, (*tenant, due));
            sent_markers += 1;
        }
        let payload = pipeline::sandbox_payload(pnid, &from, &text).unwrap();
        // Open loop: each delivery is its own request, as concurrent webhooks are.
        let p = pipeline.clone();
        inflight.push(tokio::spawn(async move {
            pipeline::ingest(&p, &payload).await.unwrap();
            due.elapsed()
        }));
    }
    for t in inflight {
        ingest_lat.push(t.await.unwrap());
    }
    let offered_end = Instant::now();
    // Wait for the last markers (at most 30 s).
    let deadline = Instant::now() + Duration::from_secs(30);
    while !pending.lock().unwrap().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let achieved = total as f64 / (offered_end - start).as_secs_f64();
    stop.send(true).unwrap();
    let _ = prober.await;
    let _ = tokio::time::timeout(Duration::from_secs(30), background.join()).await;
    let mut lat = found.lock().unwrap().clone();
    lat.sort();
    ingest_lat.sort();
    let missing = pending.lock().unwrap().len();
    println!(
        "{name:8} offered {rate:.0}/s for {seconds} s, achieved {achieved:.0}/s; ingest p50 {:.1} ms p99 {:.1} ms; \
         webhook-to-searchable over {} markers: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms; {missing} of {sent_markers} never found",
        pct(&ingest_lat, 0.5).as_secs_f64() * 1e3,
        pct(&ingest_lat, 0.99).as_secs_f64() * 1e3,
        lat.len(),
        pct(&lat, 0.5).as_secs_f64() * 1e3,
        pct(&lat, 0.99).as_secs_f64() * 1e3,
        lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
}
