//! Webhook load benchmark on PostgreSQL and SQLite (a bench binary, not a timed test).
//!
//! The server runs in-process as `smartchat serve` runs it: the axum router, and on the
//! background runtime (`api::background`, scheduled as `SMARTCHAT_BACKGROUND_PRIORITY` says,
//! `idle` by default; `normal` or `low` to compare) the pipeline worker (`BENCH_JOBS` jobs at once,
//! the server's default `SMARTCHAT_PIPELINE_CONCURRENCY` unless set; 0 runs none)
//! answering with the offline assistant (no provider key is set) and sending to the sandbox
//! (the numbers have no access token), the ledger sequencer and the search indexer
//! (`BENCH_SEARCH=0` to leave it out). 50 tenants, each with its own phone
//! number id and `BENCH_CUSTOMERS` (100) returning customers, each of whom sends one message
//! before the measured steps (the seed), so that subjects, conversations and sent replies
//! exist; the seed waits up to `BENCH_SEED_WAIT` (300) seconds for the pipeline to answer.
//!
//! A load generator on its own thread and tokio runtime posts signed, Meta-shaped deliveries
//! over loopback HTTP/1.1 (a pooled client; at most `BENCH_MAX_INFLIGHT` (512) requests in
//! flight, later ones wait in the generator, and that wait counts in their latency):
//!
//! - ≈ 70 % text (one in ten from a first-time customer), 10 % media (image or document),
//!   20 % status batches (`sent`, `delivered`, `read` of one outbound reply the pipeline
//!   really sent: a poller reads sent outbound wamids back from the database; when none is
//!   left unreported, an already reported one is reused and the row says how often);
//! - 5 % of all deliveries are exact re-sends (same body, same signature) of an earlier
//!   delivery that was answered 200.
//!
//! Steps: open loop at fixed rates (`BENCH_RATES`, default 320, 1000, 3000 per second; each
//! request has a scheduled slot and its latency runs from that slot to the 200, so queueing in
//! the generator or the server counts: no coordinated omission), then open loop at half the
//! pgbench rate (the target), then closed-loop saturation with `BENCH_CONCURRENCY` (64)
//! senders back to back. Each step runs `BENCH_WARMUP` (2) seconds of warm-up, then
//! `BENCH_SECONDS` (12) measured; requests still unanswered `BENCH_DRAIN` (60) seconds after
//! the last slot are cancelled and counted as errors (their latency as a lower bound, `>`).
//! After each step: the jobs still queued, the search feed rows the indexer has still to
//! apply (whether it keeps up), and the replies the pipeline stored per second over the step
//! (its pace while the webhook is under that load).
//! `BENCH_MAX_INFLIGHT` and `BENCH_CONCURRENCY` take one count, several joined by `+` (closed
//! loop: one step each), or counts per backend: `postgres:8+64,sqlite:4+64`.
//!
//! First, `pgbench -N` (simple-update: `-i -s 10`, then `-c 8 -j 2 -T BENCH_PGBENCH_SECONDS`)
//! runs on the same PostgreSQL in a scratch database, dropped afterwards; our best saturated
//! rate is reported as a fraction of its transactions per second. Target: at least 0.5 of it,
//! with p99 under 25 ms. Then pgbench runs once more at half its own rate (`-R`, every
//! transaction logged, as long as one of our steps and measured the same way: from each
//! transaction's scheduled start, warm-up left out): the reference's own p50/p99/max at the
//! rate our target step offers, on the same server.
//!
//! On PostgreSQL a **commit probe** runs beside every step: a one-row `INSERT` in its own
//! transaction every 20 ms, on a connection, thread and runtime of its own, latency from its
//! slot. Its p50/p99/max are printed under each step (and its worst commit in each timeline
//! slice): when the server's own commits stall (a WAL flush waiting behind the kernel's
//! writeback of data files) the probe stalls with the webhook, which tells those stalls from
//! ours. It adds 50 small commits a second.
//!
//! A **disk probe** runs through the whole benchmark, on both backends: an 8 kB write and
//! `fdatasync` every 20 ms into a preallocated 16 MB file on its own thread (in
//! `BENCH_DISK_DIR`, the system's temporary directory by default: put it on the disk the
//! database writes to), latency from its slot, so a slot that waits behind a stall counts
//! the whole wait as an arrival then would. Before anything else it runs alone for
//! `BENCH_DISK_BASELINE` (10) seconds: what one durable flush costs on this disk with
//! nothing of ours running. Under each step it prints the share of slots that took 25 ms or
//! more: when that share is 1 % or more, a flush issued at a random moment of the window
//! waited that long at least 1 % of the time, which by itself puts the p99 of a server that
//! answers only after a durable commit at about 25 ms or more (the summary says so beside the
//! verdict, which it does not change).
//!
//! After pgbench, the benchmark lowers its scheduling autogroup as `smartchat serve` does at
//! start when it leads its own session (`SMARTCHAT_AUTOGROUP_NICE`, 10 by default, 0 to leave
//! it; `smartchat_core::priority::lower_own_autogroup`), and prints what it did: run it under
//! `setsid` to measure a server started that way.
//!
//! Run: `cargo bench -p smartchat-tests --bench webhook` (`BENCH_BACKENDS=sqlite` or
//! `postgres` to run one; `BENCH_PGBENCH=0` to skip pgbench; `BENCH_TIMELINE=1` to print each
//! open-loop step's measured window in half-second slices, to tell steady queueing from
//! stalls).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use smartchat_api::app::{AppState, router};
use smartchat_api::background::{Background, BackgroundWork};
use smartchat_api::boot::Services;
use smartchat_api::pipeline::{self, Pipeline};
use smartchat_core::crypto::{BlindKind, TenantKey};
use smartchat_core::db::OpenOptions;
use smartchat_core::db::schema::{messages, subjects};
use smartchat_core::db_run;
use smartchat_core::ids::{Handle, PhoneNumberId};
use smartchat_core::ledger_store::Ledger;
use smartchat_core::priority::{Autogroup, BackgroundPriority, lower_own_autogroup};
use smartchat_core::store::{NewTenant, Profile, Store};
use smartchat_tests::{Backend, PgDatabase, TestEnv};
use smartchat_whatsapp::fake::{WebhookBuilder, WebhookUser};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

const SECRET: &str = "bench-app-secret";
const TENANTS: usize = 50;
/// Share of all deliveries that are exact re-sends of an earlier one.
const DUPLICATE_SHARE: f64 = 0.05;
/// Share of text messages that come from a customer never seen before.
const FIRST_TIME_SHARE: f64 = 0.10;
/// The p99 the issue asks for.
const TARGET_P99: Duration = Duration::from_millis(25);
/// Status of a request that failed below HTTP (connect, reset, client timeout).
const TRANSPORT_ERROR: u16 = 0;
/// Status of a request still unanswered when the step's drain time ran out.
const UNFINISHED: u16 = 1;

const TEXTS: &[&str] = &[
    "what time do you open on saturday?",
    "Are you open today?",
    "kal shaam 5 baje haircut ka slot milega?",
    "How much is a haircut?",
    "Can I book a facial for tomorrow at 5pm?",
    "Is Priya available on Monday?",
    "What services do you offer?",
    "Where are you located?",
    "hi",
    "Hello, do you do hair colour? What is the price?",
    "thank you!",
    "नमस्ते, क्या आप रविवार को खुले हैं?",
    "I want to book a haircut this weekend 🙂",
    "Good morning, what are your timings on sunday",
];

const NAMES: &[&str] = &[
    "Asha",
    "Ravi Kumar",
    "Priyanka",
    "Mohammed Irfan",
    "Lakshmi",
    "Arjun",
    "Fatima",
    "Deepak",
    "Sneha",
    "Vikram",
    "Ananya",
    "Rahul",
];

// ---------------------------------------------------------------------------------------
// Settings

struct Settings {
    backends: String,
    warmup: Duration,
    measure: Duration,
    rates: Vec<f64>,
    concurrency: PerBackend,
    max_inflight: PerBackend,
    jobs: usize,
    search: bool,
    customers: usize,
    drain: Duration,
    seed_wait: Duration,
    pgbench: bool,
    pgbench_secs: u64,
    disk_baseline: Duration,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

impl Settings {
    fn from_env() -> Self {
        let rates = std::env::var("BENCH_RATES")
            .unwrap_or_else(|_| "320,1000,3000".into())
            .split(',')
            .filter_map(|r| r.trim().parse::<f64>().ok())
            .filter(|r| *r > 0.0)
            .collect();
        Self {
            backends: std::env::var("BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into()),
            warmup: Duration::from_secs_f64(env_or("BENCH_WARMUP", 2.0)),
            measure: Duration::from_secs_f64(env_or("BENCH_SECONDS", 12.0)),
            rates,
            concurrency: PerBackend::from_env("BENCH_CONCURRENCY", 64),
            max_inflight: PerBackend::from_env("BENCH_MAX_INFLIGHT", 512),
            jobs: env_or(
                "BENCH_JOBS",
                smartchat_core::config::PIPELINE_CONCURRENCY as usize,
            ),
            search: env_or("BENCH_SEARCH", 1u8) != 0,
            customers: env_or("BENCH_CUSTOMERS", 100usize).max(1),
            drain: Duration::from_secs_f64(env_or("BENCH_DRAIN", 60.0)),
            seed_wait: Duration::from_secs_f64(env_or("BENCH_SEED_WAIT", 300.0)),
            disk_baseline: Duration::from_secs_f64(env_or("BENCH_DISK_BASELINE", 10.0)),
            pgbench: env_or("BENCH_PGBENCH", 1u8) != 0,
            pgbench_secs: env_or("BENCH_PGBENCH_SECONDS", 15u64),
        }
    }
}

/// Counts for both backends (`64`, or `8+64` for several), or per backend
/// (`postgres:8+64,sqlite:4+64`).
#[derive(Debug, Clone)]
struct PerBackend {
    postgres: Vec<usize>,
    sqlite: Vec<usize>,
}

impl PerBackend {
    fn from_env(name: &str, default: usize) -> Self {
        let mut v = Self {
            postgres: vec![default],
            sqlite: vec![default],
        };
        let Ok(text) = std::env::var(name) else {
            return v;
        };
        for part in text.split(',') {
            let (which, list) = match part.split_once(':') {
                Some((w, n)) => (Some(w.trim()), n),
                None => (None, part),
            };
            let ns: Vec<usize> = list
                .split('+')
                .filter_map(|n| n.trim().parse::<usize>().ok())
                .map(|n| n.max(1))
                .collect();
            if ns.is_empty() {
                continue;
            }
            match which {
                None => {
                    v.postgres.clone_from(&ns);
                    v.sqlite = ns;
                }
                Some("postgres" | "pg") => v.postgres = ns,
                Some("sqlite") => v.sqlite = ns,
                Some(_) => {}
            }
        }
        v
    }

    fn get(&self, b: Backend) -> &[usize] {
        match b {
            Backend::Postgres => &self.postgres,
            Backend::Sqlite => &self.sqlite,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------------------
// Main

struct Summary {
    backend: &'static str,
    durability: String,
    seed_replies_per_sec: f64,
    saturation: Row,
    target: Option<Row>,
    /// The disk probe's slots in the target step's window: (taking 25 ms or more, all).
    target_disk: Option<(usize, usize)>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let s = Settings::from_env();
    let clk = clock_ticks();
    println!(
        "webhook load: {TENANTS} tenants x {} customers, mix 70% text / 10% media / 20% status \
         batches, {:.0}% re-sends; warm-up {:?}, measured {:?} per step; pipeline: {} jobs at once, {} at the database; \
         search indexer {}; background priority {}",
        s.customers,
        DUPLICATE_SHARE * 100.0,
        s.warmup,
        s.measure,
        s.jobs,
        smartchat_api::pipeline::DB_TURNS,
        if s.search { "on" } else { "off" },
        background_priority()
    );
    let disk = disk_probe();
    let disk_baseline = match &disk {
        Some(d) if s.disk_baseline > Duration::ZERO => {
            let from = Instant::now();
            tokio::time::sleep(s.disk_baseline).await;
            let c = d.samples(from, Instant::now());
            println!("the disk alone, nothing else running: {}", disk_summary(&c));
            Some(c)
        }
        _ => None,
    };
    let bench = if s.pgbench { pgbench(&s).await } else { None };
    // As `smartchat serve` does at start (after pgbench, which runs in this session too).
    println!("{}", lower_autogroup_as_serve_does());
    let pg_tps = bench.as_ref().map(|b| b.tps);
    let mut summaries = Vec::new();
    for backend in [Backend::Postgres, Backend::Sqlite] {
        let name = backend_name(backend);
        if !s.backends.contains(name) {
            continue;
        }
        summaries.push(run_backend(backend, &s, pg_tps, clk, disk.as_ref()).await);
    }
    print_summary(&summaries, bench.as_ref(), disk_baseline.as_deref());
}

/// Lowers this process's scheduling autogroup as `smartchat serve` does (the server's
/// configuration: `SMARTCHAT_AUTOGROUP_NICE`, default 10, 0 to leave it), and says what it did.
fn lower_autogroup_as_serve_does() -> String {
    let nice = match smartchat_core::config::Config::load(None) {
        Ok(c) => c.autogroup_nice,
        Err(e) => return format!("scheduling autogroup: unchanged ({e})"),
    };
    if nice == 0 {
        return "scheduling autogroup: left as it is (SMARTCHAT_AUTOGROUP_NICE=0)".into();
    }
    match lower_own_autogroup(nice) {
        Ok(Autogroup::Own(n)) => {
            format!("scheduling autogroup: nice {n}, as `smartchat serve` sets it")
        }
        Ok(Autogroup::Shared) => "scheduling autogroup: the session's, left as it is \
            (run the benchmark under setsid to measure what `setsid smartchat serve` does)"
            .into(),
        Ok(Autogroup::Unsupported) => {
            "scheduling autogroup: none to lower here (no autogroups, or the root group)".into()
        }
        Err(reason) => format!("scheduling autogroup: unchanged ({reason})"),
    }
}

/// The background's priority as the server's configuration reads
/// `SMARTCHAT_BACKGROUND_PRIORITY` (unset or empty: the default).
fn background_priority() -> String {
    let v = std::env::var("SMARTCHAT_BACKGROUND_PRIORITY").unwrap_or_default();
    let parsed = if v.is_empty() {
        Some(BackgroundPriority::default())
    } else {
        BackgroundPriority::parse(&v)
    };
    match parsed {
        Some(p) => format!("{p:?}").to_lowercase(),
        None => format!("{v:?} (not a priority: the server refuses it)"),
    }
}

fn backend_name(b: Backend) -> &'static str {
    match b {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    }
}

fn print_summary(
    summaries: &[Summary],
    bench: Option<&PgBench>,
    disk_baseline: Option<&[(Instant, Duration)]>,
) {
    println!("\n== summary ==");
    if let Some(c) = disk_baseline {
        println!("the disk alone before the run: {}", disk_summary(c));
    }
    let pg_tps = bench.map(|b| b.tps);
    match bench {
        Some(PgBench {
            tps,
            at_half: Some(q),
        }) => println!(
            "pgbench -N on the same PostgreSQL: {tps:.0} tps; its own latency at half that \
             rate: {}",
            fmt_p50_p99_max(*q)
        ),
        Some(b) => println!("pgbench -N on the same PostgreSQL: {:.0} tps", b.tps),
        None => println!("pgbench: not run"),
    }
    println!(
        "{:<9} {:>10} {:>9} {:>9} {:>9} {:>9}  {:<40} durability",
        "backend",
        "sat 200/s",
        "sat p50",
        "sat p99",
        "vs tps",
        "replies/s",
        "open loop at 0.5 x tps"
    );
    for s in summaries {
        let frac = pg_tps
            .map(|t| format!("{:.2}", s.saturation.achieved / t))
            .unwrap_or_else(|| "-".into());
        let target = match &s.target {
            Some(r) => {
                let met = r.achieved >= 0.98 * r.offered.unwrap_or(0.0)
                    && r.p99.0 < TARGET_P99
                    && !r.p99.1
                    && r.errors == 0;
                format!(
                    "{:.0}/s -> {:.0}/s, p99 {}{}",
                    r.offered.unwrap_or(0.0),
                    r.achieved,
                    fmt_lat(r.p99),
                    if met {
                        ", target met"
                    } else {
                        ", target MISSED"
                    }
                )
            }
            None => "-".into(),
        };
        println!(
            "{:<9} {:>10.0} {:>9} {:>9} {:>9} {:>9.0}  {:<40} {}",
            s.backend,
            s.saturation.achieved,
            fmt_lat(s.saturation.p50),
            fmt_lat(s.saturation.p99),
            frac,
            s.seed_replies_per_sec,
            target,
            s.durability
        );
        if let Some((over, n)) = s.target_disk {
            println!(
                "{:<9} the disk probe in that window: {}",
                "",
                disk_verdict(over, n)
            );
        }
    }
    println!(
        "(sat = closed loop; vs tps = saturated deliveries/s over pgbench tps, target >= 0.5 \
         with p99 < {} ms; replies/s = the pipeline draining the seed backlog)",
        TARGET_P99.as_millis()
    );
}

// ---------------------------------------------------------------------------------------
// pgbench

/// What pgbench measured: its saturated rate, and its own latency at half that rate.
struct PgBench {
    tps: f64,
    /// `-R tps/2` over a window as long as one of our steps: p50, p99, max.
    at_half: Option<(Duration, Duration, Duration)>,
}

async fn pgbench(s: &Settings) -> Option<PgBench> {
    println!("== pgbench -N (simple-update) on the same PostgreSQL ==");
    let db = PgDatabase::create().await;
    let run = |args: Vec<String>| async move {
        tokio::process::Command::new("pgbench")
            .args(&args)
            .output()
            .await
    };
    let init = run(vec![
        "-i".into(),
        "-s".into(),
        "10".into(),
        "-q".into(),
        db.url.clone(),
    ])
    .await;
    match &init {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            println!(
                "  pgbench -i failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            );
            return None;
        }
        Err(e) => {
            println!("  pgbench is not runnable ({e}); skipping");
            return None;
        }
    }
    checkpoint().await;
    let out = run(vec![
        "-N".into(),
        "-c".into(),
        "8".into(),
        "-j".into(),
        "2".into(),
        "-T".into(),
        s.pgbench_secs.to_string(),
        db.url.clone(),
    ])
    .await
    .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let tps = text.lines().find_map(|l| {
        let rest = l.trim().strip_prefix("tps = ")?;
        if !l.contains("without initial connection time") {
            return None;
        }
        rest.split_whitespace().next()?.parse::<f64>().ok()
    });
    for l in text.lines().filter(|l| {
        l.starts_with("scaling factor")
            || l.starts_with("number of clients")
            || l.starts_with("number of transactions actually")
            || l.starts_with("latency average")
            || l.starts_with("tps")
    }) {
        println!("  {l}");
    }
    if tps.is_none() {
        println!(
            "  could not read tps: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let at_half = match tps {
        Some(t) => pgbench_at_half(s, &db.url, t).await,
        None => None,
    };
    drop(db);
    // Leave no dirty pages of pgbench's for our run to write back.
    checkpoint().await;
    Some(PgBench { tps: tps?, at_half })
}

/// pgbench's own latency at half its rate, right after its saturated run (as our target
/// step follows our heaviest one): `-N -c 8 -j 2 -R tps/2` for one step's warm-up and
/// window, every transaction logged (`-l`); pgbench measures a throttled transaction from
/// its scheduled start, as our generator does, so the two compare. The first warm-up
/// seconds are left out, as in our steps.
async fn pgbench_at_half(
    s: &Settings,
    url: &str,
    tps: f64,
) -> Option<(Duration, Duration, Duration)> {
    let rate = (tps * 0.5).round().max(1.0);
    let secs = (s.warmup + s.measure).as_secs_f64().ceil().max(1.0);
    let dir = tempfile::tempdir().ok()?;
    let out = tokio::process::Command::new("pgbench")
        .current_dir(dir.path())
        .args([
            "-N",
            "-c",
            "8",
            "-j",
            "2",
            "-R",
            &format!("{rate:.0}"),
            "-T",
            &format!("{secs:.0}"),
            "-l",
            url,
        ])
        .output()
        .await
        .ok()?;
    if !out.status.success() {
        println!(
            "  pgbench -R failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return None;
    }
    // Each line: client, transaction, latency (µs), script, end (s, µs)[, lag].
    let mut txs: Vec<(f64, Duration)> = Vec::new();
    for entry in std::fs::read_dir(dir.path()).ok()?.flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(lat), Some(sec), Some(us)) = (f.get(2), f.get(4), f.get(5)) else {
                continue;
            };
            let (Ok(lat), Ok(sec), Ok(us)) =
                (lat.parse::<u64>(), sec.parse::<f64>(), us.parse::<f64>())
            else {
                continue;
            };
            let end = sec + us / 1e6;
            txs.push((end - lat as f64 / 1e6, Duration::from_micros(lat)));
        }
    }
    let first = txs.iter().map(|t| t.0).fold(f64::INFINITY, f64::min);
    let from = first + s.warmup.as_secs_f64();
    let lat: Vec<Duration> = txs
        .into_iter()
        .filter(|t| t.0 >= from)
        .map(|t| t.1)
        .collect();
    if lat.is_empty() {
        return None;
    }
    let n = lat.len();
    let r = p50_p99_max(lat);
    println!(
        "  at half that rate (-R {rate:.0}, open loop, {n} transactions in the measured {:?}): {}",
        s.measure,
        fmt_p50_p99_max(r)
    );
    Some(r)
}

async fn admin() -> tokio_postgres::Client {
    let url = smartchat_tests::pg_admin_url();
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {url} is unreachable: {e}"));
    tokio::spawn(conn);
    client
}

async fn checkpoint() {
    let _ = admin().await.batch_execute("CHECKPOINT").await;
}

// ---------------------------------------------------------------------------------------
// One backend

struct World {
    base: String,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    background: Background,
    load: Arc<Load>,
}

async fn run_backend(
    backend: Backend,
    s: &Settings,
    pg_tps: Option<f64>,
    clk: f64,
    disk: Option<&Sampler>,
) -> Summary {
    let name = backend_name(backend);
    println!("\n== {name} ==");
    let env = TestEnv::new(backend).await;
    let durability = durability(&env).await;
    println!("  durability: {durability}");
    let world = start_world(&env, s).await;
    let max_inflight = s.max_inflight.get(backend)[0];
    let concurrency = s.concurrency.get(backend).to_vec();
    println!(
        "  server on {} (in-process, pool of {} connections); generator: at most {max_inflight} \
         requests in flight, closed loop with {concurrency:?} senders",
        world.base,
        match backend {
            // As `DbPool::open` sizes it: SQLite pools are capped at 8.
            Backend::Sqlite => OpenOptions::default().max_connections.min(8),
            Backend::Postgres => OpenOptions::default().max_connections,
        }
    );

    // Seed: every customer says something once; the pipeline answers all of it.
    let n = TENANTS * s.customers;
    let load = world.load.clone();
    let t0 = Instant::now();
    let senders = max_inflight.min(16);
    let seed_errors = on_generator_thread(move || seed(load, n, senders)).await;
    let ingest = t0.elapsed();
    println!(
        "  seed: {n} text deliveries (one per customer, {senders} senders) in {:.1} s ({:.0}/s), {seed_errors} not 200",
        ingest.as_secs_f64(),
        n as f64 / ingest.as_secs_f64()
    );
    if let Some(e) = world.load.take_first_error() {
        println!("  seed: first error: {e}");
    }
    let t1 = Instant::now();
    let backlog = wait_for_pipeline(&env.store, s.seed_wait).await;
    let drained = t0.elapsed();
    // Counted in the database: the poller offers replies to the status generator as it
    // finds them sent, which can lag.
    let replies = sent_count(&env).await;
    let seed_replies_per_sec = replies as f64 / drained.as_secs_f64();
    println!(
        "  seed: pipeline answered and sent {replies} replies {:.1} s after the seed began \
         ({:.1} s after its last delivery): {seed_replies_per_sec:.0} replies/s with {} jobs at once{}",
        drained.as_secs_f64(),
        t1.elapsed().as_secs_f64(),
        s.jobs,
        if backlog > 0 {
            format!(", {backlog} jobs still queued (BENCH_SEED_WAIT reached)")
        } else {
            String::new()
        }
    );

    println!(
        "  {:<18} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8}  {:<22} {:<26} after the step",
        "step",
        "offered/s",
        "200s/s",
        "p50",
        "p99",
        "max",
        "errors",
        "mix txt/med/st/dup %",
        "cpu% srv/gen/pg/other",
    );
    let mut steps: Vec<(String, Option<f64>)> = s
        .rates
        .iter()
        .map(|r| (format!("open {r:.0}/s"), Some(*r)))
        .collect();
    if let Some(t) = pg_tps {
        steps.push((
            "open 0.5 x tps".to_owned(),
            Some((t * 0.5).round().max(1.0)),
        ));
    }
    for c in &concurrency {
        steps.push((format!("closed x{c}"), None));
    }
    let mut target = None;
    let mut target_disk = None;
    let mut saturation: Option<Row> = None;
    let cores = std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64);
    let probe = match backend {
        Backend::Postgres => Some(commit_probe(smartchat_tests::url_string(&env.db_url))),
        Backend::Sqlite => None,
    };
    for (label, rate) in steps {
        let conc: usize = label
            .strip_prefix("closed x")
            .and_then(|c| c.parse().ok())
            .unwrap_or(1);
        let replies_before = (Instant::now(), outbound_count(&env).await);
        let start = Instant::now() + Duration::from_millis(200);
        let ws = start + s.warmup;
        let we = ws + s.measure;
        let cpu = tokio::spawn(cpu_over(ws, we, clk));
        let load = world.load.clone();
        let (warmup, measure, drain, inflight) = (s.warmup, s.measure, s.drain, max_inflight);
        let out = match rate {
            Some(r) => {
                on_generator_thread(move || {
                    open_loop(load, r, start, warmup, measure, inflight, drain, clk)
                })
                .await
            }
            None => {
                on_generator_thread(move || closed_loop(load, conc, start, warmup, measure, clk))
                    .await
            }
        };
        let (proc_cpu, pg_cpu, busy) = cpu.await.unwrap_or((0.0, 0.0, 0.0));
        let row = summarize(&label, rate, &out);
        let commits = probe.as_ref().map(|p| p.samples(ws, we));
        let flushes = disk.map(|d| d.samples(ws, we));
        if rate.is_some() && env_or("BENCH_TIMELINE", 0u8) != 0 {
            print_timeline(&out, commits.as_deref(), flushes.as_deref());
        }
        let ready = smartchat_core::jobs::count(&env.store.db, pipeline::QUEUE, "ready")
            .await
            .unwrap_or(-1);
        let feed = smartchat_core::search_feed::backlog(&env.store.db)
            .await
            .unwrap_or(-1);
        let fresh = world.load.targets.available();
        // The pipeline's pace meanwhile: replies stored per second over the whole step.
        let replies_per_sec = (outbound_count(&env).await - replies_before.1) as f64
            / replies_before.0.elapsed().as_secs_f64();
        let secs = s.measure.as_secs_f64();
        // Percent of all cores: the server, the generator, PostgreSQL, everything else.
        let all = secs * cores / 100.0;
        let srv = (proc_cpu - out.gen_cpu).max(0.0) / all;
        let gen_pct = out.gen_cpu / all;
        let pg_pct = pg_cpu / all;
        let other = (busy - proc_cpu - pg_cpu).max(0.0) / all;
        println!(
            "  {:<18} {:>9} {:>9.0} {:>9} {:>9} {:>9} {:>8}  {:<22} {:<26} {ready} jobs queued, {feed} search feed rows, {fresh} unsent-status replies, {replies_per_sec:.0} replies/s",
            row.name,
            row.offered
                .map(|o| format!("{o:.0}"))
                .unwrap_or_else(|| "-".into()),
            row.achieved,
            fmt_lat(row.p50),
            fmt_lat(row.p99),
            fmt_lat(row.max),
            row.errors,
            row.mix(),
            format!("{srv:.0}/{gen_pct:.0}/{pg_pct:.0}/{other:.0}"),
        );
        if !row.error_detail.is_empty() {
            println!("  {:<18} errors: {}", "", row.error_detail);
        }
        if let Some(e) = world.load.take_first_error() {
            println!("  {:<18} first error: {e}", "");
        }
        if row.stale_statuses > 0 {
            println!(
                "  {:<18} {} status batches re-used an already reported reply (no fresh sent reply was left)",
                "", row.stale_statuses
            );
        }
        if let Some(c) = &commits {
            println!("  {:<18} {}", "", probe_summary(c));
        }
        if let Some(c) = &flushes {
            println!("  {:<18} disk: {}", "", disk_summary(c));
        }
        if out.max_lag > Duration::from_millis(5) {
            println!(
                "  {:<18} generator fell behind its schedule by up to {} (counted in latency)",
                "",
                fmt_dur(out.max_lag)
            );
        }
        if label.contains("tps") {
            target = Some(row);
            target_disk = flushes.as_deref().map(|c| (slow_slots(c), c.len()));
        } else if rate.is_none()
            && saturation
                .as_ref()
                .is_none_or(|b| row.achieved > b.achieved)
        {
            saturation = Some(row);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    drop(probe);
    // Stop, then check what was stored against what was answered.
    // Whatever is still running after a few seconds is aborted (the databases are thrown
    // away next); dropping the background stops its runtime.
    let _ = world.stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), world.background.join()).await;
    for mut t in world.tasks {
        if tokio::time::timeout(Duration::from_secs(5), &mut t)
            .await
            .is_err()
        {
            t.abort();
            let _ = t.await;
        }
    }
    sanity(&env.store, &world.load).await;
    drop(env);
    let saturation = saturation.unwrap_or_else(|| Row::empty("closed"));
    Summary {
        backend: name,
        durability,
        seed_replies_per_sec,
        saturation,
        target,
        target_disk,
    }
}

#[derive(QueryableByName)]
struct SqlitePragma {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    synchronous: i32,
}

async fn durability(env: &TestEnv) -> String {
    match env.backend {
        Backend::Sqlite => {
            let mut c = env.store.db.conn().await.unwrap();
            let sync: Option<i32> = db_run!(
                c,
                pg | _c | None,
                sqlite
                    | c
                    | diesel::sql_query("PRAGMA synchronous")
                        .get_result::<SqlitePragma>(c)
                        .await
                        .ok()
                        .map(|p| p.synchronous)
            );
            let mode = match sync {
                Some(0) => "OFF",
                Some(1) => "NORMAL",
                Some(2) => "FULL",
                Some(3) => "EXTRA",
                _ => "unknown",
            };
            format!(
                "SQLite WAL, synchronous={mode} (the embedded default, SMARTCHAT_SQLITE_SYNC=normal: \
                 a commit survives a process crash, not an OS crash or power loss)"
            )
        }
        Backend::Postgres => {
            let a = admin().await;
            format!(
                "PostgreSQL synchronous_commit={}, fsync={}",
                pg_setting(&a, "synchronous_commit").await,
                pg_setting(&a, "fsync").await
            )
        }
    }
}

async fn pg_setting(a: &tokio_postgres::Client, name: &str) -> String {
    a.query_one(&format!("SHOW {name}"), &[])
        .await
        .ok()
        .and_then(|r| r.try_get::<_, String>(0).ok())
        .unwrap_or_else(|| "?".into())
}

fn profile(i: usize) -> serde_json::Value {
    serde_json::json!({
        "name": format!("Glow Salon {i}"),
        "business_type": "salon",
        "timezone": "Asia/Kolkata",
        "hours": {
            "monday": [{"open": "10:00", "close": "19:00"}],
            "tuesday": [{"open": "10:00", "close": "19:00"}],
            "wednesday": [{"open": "10:00", "close": "19:00"}],
            "thursday": [{"open": "10:00", "close": "19:00"}],
            "friday": [{"open": "10:00", "close": "19:00"}],
            "saturday": [{"open": "09:00", "close": "17:00"}]
        },
        "services": [
            {"name": "Haircut", "price": "Rs 500"},
            {"name": "Facial", "price": "Rs 1200"},
            {"name": "Hair colour", "price": "Rs 2500"}
        ],
        "staff": [{"name": "Priya", "role": "stylist"}],
        "booking_links": [{"label": "Book online", "url": format!("https://book.example.com/glow{i}")}],
        "handoff_message": "Our team will reply shortly."
    })
}

async fn start_world(env: &TestEnv, s: &Settings) -> World {
    for t in TEXTS {
        assert!(
            !smartchat_assistant::detect_intent(t).is_handled_locally(),
            "{t:?} would opt out or hand off, and stop the replies"
        );
    }
    let mut tenants = Vec::new();
    let mut by_id = HashMap::new();
    for i in 0..TENANTS {
        let pnid = format!("{}", 2_000_001 + i);
        let id = env
            .store
            .create_tenant(NewTenant {
                handle: format!("bench-salon-{i:02}").parse::<Handle>().unwrap(),
                profile: Profile(profile(i)),
                phone_number_id: Some(pnid.parse::<PhoneNumberId>().unwrap()),
                // No token: replies go to the sandbox.
                access_token: None,
            })
            .await
            .unwrap();
        by_id.insert(id.to_string(), i);
        tenants.push(TenantLoad {
            pnid,
            display: format!("+91 80 4000 {:04}", i + 1),
            key: env.store.tenant_key(id).await.unwrap(),
        });
    }
    let mut vars = HashMap::new();
    vars.insert("SMARTCHAT_META_APP_SECRET".to_owned(), SECRET.to_owned());
    vars.insert(
        "SMARTCHAT_META_VERIFY_TOKEN".to_owned(),
        "verify-me".to_owned(),
    );
    // Never reached (the sandbox sends nothing), and never the real Graph API.
    vars.insert(
        "SMARTCHAT_META_GRAPH_URL".to_owned(),
        "http://127.0.0.1:9".to_owned(),
    );
    // `SMARTCHAT_BACKGROUND_PRIORITY=normal` (or `low`) compares other schedulings.
    if let Ok(v) = std::env::var("SMARTCHAT_BACKGROUND_PRIORITY") {
        vars.insert("SMARTCHAT_BACKGROUND_PRIORITY".to_owned(), v);
    }
    let config = smartchat_core::config::Config::load_from(None, &vars).unwrap();
    assert!(config.openai_api_key.is_none() && config.deepseek_api_key.is_none());
    let ledger = Ledger::open(env.store.db.clone(), &env.store.keys, "bench/ledger")
        .await
        .unwrap();
    let pipeline = Pipeline::new(env.store.clone(), &config)
        .unwrap()
        .with_concurrency(s.jobs);
    let mut state = AppState::new(
        Services {
            store: env.store.clone(),
            ledger: ledger.clone(),
        },
        pipeline.clone(),
        smartchat_api::auth::AuthState::local(
            env.store.clone(),
            smartchat_api::auth::OneTimeLogin::generate().0,
        ),
        &config,
    );
    // As `smartchat serve` does with its default SMARTCHAT_SEARCH_INDEXER=true.
    let search = (s.search && config.search_indexer).then(|| {
        smartchat_api::search::Search::with_priority(
            env.store.clone(),
            env.dir.path().join("search"),
            config.background_priority,
        )
        .unwrap()
    });
    if let Some(search) = &search {
        state = state.with_search(search.clone());
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    {
        let mut rx = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            let _ = axum::serve(listener, router(state))
                .with_graceful_shutdown(async move {
                    let _ = rx.changed().await;
                })
                .await;
        }));
    }
    // As `smartchat serve` runs them: on the background runtime, below the webhook's
    // priority, on pools of their own.
    let background = Background::start(
        BackgroundWork {
            pipeline: pipeline.clone(),
            ledger,
            search,
            run_jobs: s.jobs > 0,
            follow_ups: None,
            retention: false,
            priority: config.background_priority,
        },
        &stop_rx,
    )
    .unwrap();
    let targets = Arc::new(Targets::default());
    {
        let mut t = lock(&targets.inner);
        for (ti, tl) in tenants.iter().enumerate() {
            for c in 0..s.customers {
                let wa = customer_wa(ti, c);
                t.blinds.insert(tl.key.blind(BlindKind::WaId, &wa), wa);
            }
        }
    }
    tasks.push(tokio::spawn(poll_sent_replies(
        env.store.clone(),
        by_id,
        targets.clone(),
        stop_rx,
    )));
    let load = Arc::new(Load {
        url: format!("{base}/webhooks/whatsapp"),
        tenants,
        customers: s.customers,
        seq: AtomicU64::new(0),
        targets,
        answered: Mutex::new(VecDeque::new()),
        messages_ok: AtomicU64::new(0),
        messages_unsure: AtomicU64::new(0),
        statuses_ok: AtomicU64::new(0),
        first_error: Mutex::new(None),
    });
    World {
        base,
        stop,
        tasks,
        background,
        load,
    }
}

/// Waits until no pipeline job is ready or running; returns how many are left.
async fn wait_for_pipeline(store: &Store, max: Duration) -> i64 {
    let deadline = Instant::now() + max;
    loop {
        let mut left = 0;
        for status in ["ready", "running"] {
            left += smartchat_core::jobs::count(&store.db, pipeline::QUEUE, status)
                .await
                .unwrap_or(0);
        }
        if left == 0 || Instant::now() >= deadline {
            // Let the poller see the last sends.
            tokio::time::sleep(Duration::from_millis(1100)).await;
            return left;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn sanity(store: &Store, load: &Load) {
    let mut c = store.db.conn().await.unwrap();
    let inbound: i64 = db_run!(c, |c| messages::table
        .filter(messages::direction.eq("in"))
        .count()
        .get_result(c)
        .await)
    .unwrap();
    let out: Vec<(String, i64)> = db_run!(c, |c| messages::table
        .filter(messages::direction.eq("out"))
        .group_by(messages::status)
        .select((messages::status, diesel::dsl::count_star()))
        .load(c)
        .await)
    .unwrap();
    let ok = AtomicU64::load(&load.messages_ok, Ordering::Relaxed);
    let unsure = AtomicU64::load(&load.messages_unsure, Ordering::Relaxed);
    let verdict = if (inbound as u64) >= ok && (inbound as u64) <= ok + unsure {
        "consistent"
    } else {
        "INCONSISTENT"
    };
    println!(
        "  stored inbound messages: {inbound}; unique message deliveries answered 200: {ok} \
         (+{unsure} not answered 200): {verdict}"
    );
    let out: BTreeMap<String, i64> = out.into_iter().collect();
    println!(
        "  outbound replies by status: {out:?}; fresh status batches answered 200: {}",
        AtomicU64::load(&load.statuses_ok, Ordering::Relaxed)
    );
}

/// Outbound messages stored so far (the pipeline's replies).
/// Replies stored and handed to Meta (or the sandbox): outbound rows past `queued`.
async fn sent_count(env: &TestEnv) -> i64 {
    let Ok(mut c) = env.store.db.conn().await else {
        return 0;
    };
    db_run!(c, |c| messages::table
        .filter(messages::direction.eq("out"))
        .filter(messages::status.ne("queued"))
        .count()
        .get_result(c)
        .await)
    .unwrap_or(0)
}

async fn outbound_count(env: &TestEnv) -> i64 {
    let Ok(mut c) = env.store.db.conn().await else {
        return 0;
    };
    db_run!(c, |c| messages::table
        .filter(messages::direction.eq("out"))
        .count()
        .get_result(c)
        .await)
    .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------
// Sent replies, read back for status deliveries

#[derive(Debug, Clone)]
struct Target {
    tenant: usize,
    wa_id: String,
    wamid: String,
}

#[derive(Default)]
struct Targets {
    inner: Mutex<TargetsInner>,
}

#[derive(Default)]
struct TargetsInner {
    /// Sent replies no status was delivered for yet.
    fresh: Vec<Target>,
    /// Recently reported ones (a fallback when `fresh` runs dry).
    used: VecDeque<Target>,
    /// wa_id blind index -> wa_id, for the recipient of a status.
    blinds: HashMap<[u8; 32], String>,
}

impl Targets {
    fn take(&self) -> Option<Target> {
        let mut t = lock(&self.inner);
        let got = t.fresh.pop()?;
        if t.used.len() >= 4096 {
            t.used.pop_front();
        }
        t.used.push_back(got.clone());
        Some(got)
    }

    fn recycle(&self, rng: &mut StdRng) -> Option<Target> {
        let t = lock(&self.inner);
        if t.used.is_empty() {
            return None;
        }
        t.used.get(rng.gen_range(0..t.used.len())).cloned()
    }

    fn learn(&self, blind: [u8; 32], wa_id: &str) {
        lock(&self.inner).blinds.insert(blind, wa_id.to_owned());
    }

    fn available(&self) -> usize {
        lock(&self.inner).fresh.len()
    }
}

/// How old a row's id must be before the poller's cursor passes it.
const SETTLE_MS: u64 = 3_000;

fn now_millis() -> u64 {
    u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
    )
    .unwrap_or(u64::MAX)
}

/// The unix milliseconds of a UUIDv7 text id.
fn uuid7_millis(id: &str) -> Option<u64> {
    let hex: String = id.chars().filter(|c| *c != '-').take(12).collect();
    u64::from_str_radix(&hex, 16).ok()
}

type OutRow = (String, String, String, Option<String>, String);
/// A stored message as the poller reads it: id, direction, tenant, subject, wamid, status.
type PolledRow = (String, String, String, String, Option<String>, String);
type SubjectBlind = (String, Option<Vec<u8>>);

/// Reads sent outbound replies and offers them to the generator's status deliveries, once a
/// second: the rows stored after a cursor (the newest id read at least [`SETTLE_MS`] old,
/// whatever its direction), and the replies still queued at an earlier look again by id (the
/// oldest 1,000), so the poller's own queries stay small whatever the
/// pipeline's backlog. (It used to rescan from the oldest queued reply, 30 ms a time, and
/// later to rescan every inbound message after the newest reply: 12 ms every 300 ms, the
/// whole table when no reply had been stored yet.)
async fn poll_sent_replies(
    store: Store,
    tenants: HashMap<String, usize>,
    targets: Arc<Targets>,
    mut stop: watch::Receiver<bool>,
) {
    let mut cursor = String::new();
    let mut queued: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    let mut subject_wa: HashMap<String, String> = HashMap::new();
    let mut offered: HashSet<String> = HashSet::new();
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(Duration::from_millis(1000)) => {}
        }
        let Ok(mut c) = store.db.conn().await else {
            continue;
        };
        let cur = cursor.clone();
        let new_rows: Result<Vec<PolledRow>, _> = db_run!(c, |c| messages::table
            .filter(messages::id.gt(&cur))
            .order(messages::id)
            .limit(20_000)
            .select((
                messages::id,
                messages::direction,
                messages::tenant_id,
                messages::subject_id,
                messages::wamid,
                messages::status
            ))
            .load(c)
            .await);
        let Ok(all) = new_rows else { continue };
        // A row becomes visible when its transaction commits, which may be after rows with
        // later ids: the cursor only passes rows created `SETTLE` ago, and the newer ones
        // are read again next time (an outbound row is offered once, by `offered`).
        let settled = now_millis().saturating_sub(SETTLE_MS);
        if let Some(last) = all
            .iter()
            .rev()
            .find(|r| uuid7_millis(&r.0).is_some_and(|ms| ms <= settled))
        {
            cursor.clone_from(&last.0);
        }
        let mut rows: Vec<OutRow> = all
            .into_iter()
            .filter(|r| r.1 == "out" && !offered.contains(&r.0))
            .map(|(id, _, tenant, subject, wamid, status)| (id, tenant, subject, wamid, status))
            .collect();
        // The oldest queued replies are sent first (the queue runs in order): rechecking
        // the oldest thousand each round finds the ones sent since, without the poller
        // itself becoming a noticeable share of the database's work.
        let again: Vec<String> = queued.iter().take(1000).cloned().collect();
        if !again.is_empty() {
            let old: Result<Vec<OutRow>, _> = db_run!(c, |c| messages::table
                .filter(messages::id.eq_any(again.clone()))
                .select((
                    messages::id,
                    messages::tenant_id,
                    messages::subject_id,
                    messages::wamid,
                    messages::status
                ))
                .load(c)
                .await);
            rows.extend(old.unwrap_or_default());
        }
        let missing: Vec<String> = rows
            .iter()
            .filter(|r| r.4 == "sent" && !subject_wa.contains_key(&r.2))
            .map(|r| r.2.clone())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        if !missing.is_empty() {
            let found: Result<Vec<SubjectBlind>, _> = db_run!(c, |c| subjects::table
                .filter(subjects::id.eq_any(missing.clone()))
                .select((subjects::id, subjects::wa_id_blind))
                .load(c)
                .await);
            let t = lock(&targets.inner);
            for (sid, blind) in found.unwrap_or_default() {
                let wa = blind
                    .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
                    .and_then(|b| t.blinds.get(&b).cloned());
                if let Some(wa) = wa {
                    subject_wa.insert(sid, wa);
                }
            }
        }
        drop(c);
        let now_ms = now_millis();
        let mut fresh = Vec::new();
        for (id, tenant_id, subject_id, wamid, status) in rows {
            if status == "queued" {
                // Looked at again until sent, unless stuck for minutes.
                let stuck = uuid7_millis(&id).is_some_and(|ms| now_ms.saturating_sub(ms) > 120_000);
                if stuck {
                    queued.remove(&id);
                } else {
                    queued.insert(id);
                }
                continue;
            }
            // Seen past `queued` once: offered at most once.
            queued.remove(&id);
            if !offered.insert(id.clone()) || status != "sent" {
                continue;
            }
            let (Some(wamid), Some(&tenant), Some(wa)) =
                (wamid, tenants.get(&tenant_id), subject_wa.get(&subject_id))
            else {
                continue;
            };
            fresh.push(Target {
                tenant,
                wa_id: wa.clone(),
                wamid,
            });
        }
        let mut t = lock(&targets.inner);
        t.fresh.extend(fresh);
    }
}

// ---------------------------------------------------------------------------------------
// The load

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    FirstText,
    Media,
    Status,
    StaleStatus,
    Duplicate,
}

struct Delivery {
    body: Vec<u8>,
    sig: String,
    kind: Kind,
}

struct TenantLoad {
    pnid: String,
    display: String,
    key: Arc<TenantKey>,
}

struct Load {
    url: String,
    tenants: Vec<TenantLoad>,
    customers: usize,
    seq: AtomicU64,
    targets: Arc<Targets>,
    /// Recent deliveries answered 200, for exact re-sends.
    answered: Mutex<VecDeque<(Vec<u8>, String)>>,
    messages_ok: AtomicU64,
    messages_unsure: AtomicU64,
    statuses_ok: AtomicU64,
    /// The first answer other than 200 since last asked: status and body.
    first_error: Mutex<Option<String>>,
}

fn customer_wa(tenant: usize, customer: usize) -> String {
    format!(
        "91{}",
        7_000_000_000u64 + (tenant as u64) * 100_000 + customer as u64
    )
}

fn now_secs() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

impl Load {
    fn next(&self, rng: &mut StdRng) -> Delivery {
        if rng.gen_bool(DUPLICATE_SHARE) {
            if let Some(d) = self.duplicate(rng) {
                return d;
            }
        }
        let t = rng.gen_range(0..self.tenants.len());
        let r: f64 = rng.gen_range(0.0..1.0);
        if r < 0.70 {
            self.text(t, None, rng)
        } else if r < 0.80 {
            self.media(t, rng)
        } else {
            self.status(rng)
        }
    }

    fn wamid(&self, rng: &mut StdRng) -> String {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        format!(
            "wamid.HBgMOTE5{seq:010}FQIAEhgU{:016X}{:08X}",
            rng.gen_range(0..u64::MAX),
            rng.gen_range(0..u32::MAX)
        )
    }

    fn user(
        &self,
        rng: &mut StdRng,
        tenant: usize,
        customer: Option<usize>,
    ) -> (WebhookUser, Kind) {
        let name = NAMES[rng.gen_range(0..NAMES.len())];
        let (wa, kind) = match customer {
            Some(c) => (customer_wa(tenant, c), Kind::Text),
            None if rng.gen_bool(FIRST_TIME_SHARE) => {
                let n = self.seq.fetch_add(1, Ordering::Relaxed);
                let wa = format!("91{}", 8_000_000_000u64 + n);
                self.targets
                    .learn(self.tenants[tenant].key.blind(BlindKind::WaId, &wa), &wa);
                (wa, Kind::FirstText)
            }
            None => (
                customer_wa(tenant, rng.gen_range(0..self.customers)),
                Kind::Text,
            ),
        };
        (WebhookUser::wa_id(&wa).named(name), kind)
    }

    fn entry(&self, tenant: usize) -> WebhookBuilder {
        let t = &self.tenants[tenant];
        WebhookBuilder::new()
            .at(now_secs())
            .entry(&t.pnid, &t.display)
    }

    fn text(&self, tenant: usize, customer: Option<usize>, rng: &mut StdRng) -> Delivery {
        let (user, kind) = self.user(rng, tenant, customer);
        let body = TEXTS[rng.gen_range(0..TEXTS.len())];
        let b = self.entry(tenant).text(&user, &self.wamid(rng), body);
        sign(&b, kind)
    }

    fn media(&self, tenant: usize, rng: &mut StdRng) -> Delivery {
        let customer = rng.gen_range(0..self.customers);
        let (user, _) = self.user(rng, tenant, Some(customer));
        let media_id = format!(
            "{}",
            rng.gen_range(1_000_000_000_000_000u64..9_999_999_999_999_999)
        );
        let wamid = self.wamid(rng);
        let b = if rng.gen_bool(0.6) {
            self.entry(tenant).media(
                &user,
                &wamid,
                "image",
                &media_id,
                "image/jpeg",
                Some("can you do this style?"),
            )
        } else {
            self.entry(tenant).media(
                &user,
                &wamid,
                "document",
                &media_id,
                "application/pdf",
                None,
            )
        };
        sign(&b, Kind::Media)
    }

    fn status(&self, rng: &mut StdRng) -> Delivery {
        let (target, kind) = match self.targets.take() {
            Some(t) => (t, Kind::Status),
            None => match self.targets.recycle(rng) {
                Some(t) => (t, Kind::StaleStatus),
                None => return self.text(rng.gen_range(0..self.tenants.len()), None, rng),
            },
        };
        let user = WebhookUser::wa_id(&target.wa_id);
        let b = self
            .entry(target.tenant)
            .status(&user, &target.wamid, "sent")
            .status(&user, &target.wamid, "delivered")
            .status(&user, &target.wamid, "read");
        sign(&b, kind)
    }

    fn duplicate(&self, rng: &mut StdRng) -> Option<Delivery> {
        let a = lock(&self.answered);
        if a.is_empty() {
            return None;
        }
        let (body, sig) = a.get(rng.gen_range(0..a.len()))?.clone();
        Some(Delivery {
            body,
            sig,
            kind: Kind::Duplicate,
        })
    }

    fn error(&self, what: String) {
        let mut e = lock(&self.first_error);
        if e.is_none() {
            *e = Some(what);
        }
    }

    fn take_first_error(&self) -> Option<String> {
        lock(&self.first_error).take()
    }

    fn record(&self, kind: Kind, status: u16, delivery: Option<Delivery>) {
        match kind {
            Kind::Text | Kind::FirstText | Kind::Media => {
                if status == 200 {
                    self.messages_ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    self.messages_unsure.fetch_add(1, Ordering::Relaxed);
                }
            }
            Kind::Status if status == 200 => {
                self.statuses_ok.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
        if let Some(d) = delivery.filter(|d| status == 200 && d.kind != Kind::Duplicate) {
            let mut a = lock(&self.answered);
            if a.len() >= 4096 {
                a.pop_front();
            }
            a.push_back((d.body, d.sig));
        }
    }
}

fn sign(b: &WebhookBuilder, kind: Kind) -> Delivery {
    let (body, sig) = b.signed(SECRET.as_bytes());
    Delivery { body, sig, kind }
}

// ---------------------------------------------------------------------------------------
// The generator (its own thread and runtime)

async fn on_generator_thread<F, Fut, T>(f: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T>,
    T: Send + 'static,
{
    let thread = on_own_thread("load-generator", f);
    tokio::task::spawn_blocking(move || thread.join())
        .await
        .expect("join the generator thread")
        .expect("the generator thread panicked")
}

/// Runs `f` on a new thread with a current-thread runtime of its own, dropped (its tasks
/// with it) before the thread returns `f`'s output.
fn on_own_thread<F, Fut, T>(name: &str, f: F) -> std::thread::JoinHandle<T>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T>,
    T: Send + 'static,
{
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("thread runtime");
            let out = rt.block_on(f());
            drop(rt);
            out
        })
        .expect("spawn a thread")
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(usize::MAX)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(120))
        .build()
        .expect("http client")
}

async fn post(client: &reqwest::Client, load: &Load, d: &Delivery) -> u16 {
    let started = Instant::now();
    let res = client
        .post(&load.url)
        .header("content-type", "application/json")
        .header("x-hub-signature-256", &d.sig)
        .body(d.body.clone())
        .send()
        .await;
    match res {
        Ok(r) => {
            let status = r.status().as_u16();
            let body = r.bytes().await.unwrap_or_default();
            if status != 200 {
                let text: String = String::from_utf8_lossy(&body).chars().take(200).collect();
                load.error(format!(
                    "HTTP {status} after {}: {text}",
                    fmt_dur(started.elapsed())
                ));
            }
            status
        }
        Err(e) => {
            load.error(format!("after {}: {e}", fmt_dur(started.elapsed())));
            TRANSPORT_ERROR
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Scheduled send time (open loop) or send time (closed loop).
    at: Instant,
    done: Instant,
    status: u16,
    kind: Kind,
}

struct StepOut {
    samples: Vec<Sample>,
    start: Instant,
    warmup: Duration,
    measure: Duration,
    /// CPU seconds of the generator thread over the measured window.
    gen_cpu: f64,
    /// How late the generator built a request, at worst.
    max_lag: Duration,
}

/// Reads this thread's CPU seconds at `ws` and at `we` (spawned on the generator runtime).
fn gen_cpu_over(ws: Instant, we: Instant, clk: f64) -> tokio::task::JoinHandle<f64> {
    tokio::spawn(async move {
        tokio::time::sleep_until(ws.into()).await;
        let a = thread_cpu(clk);
        tokio::time::sleep_until(we.into()).await;
        thread_cpu(clk) - a
    })
}

async fn seed(load: Arc<Load>, n: usize, senders: usize) -> usize {
    let client = http_client();
    let next = Arc::new(AtomicUsize::new(0));
    let mut set = JoinSet::new();
    for _ in 0..senders {
        let (load, client, next) = (load.clone(), client.clone(), next.clone());
        set.spawn(async move {
            let mut rng = StdRng::from_entropy();
            let mut errors = 0;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return errors;
                }
                let tenant = i % TENANTS;
                let customer = (i / TENANTS) % load.customers;
                let d = load.text(tenant, Some(customer), &mut rng);
                let status = post(&client, &load, &d).await;
                if status != 200 {
                    errors += 1;
                }
                load.record(d.kind, status, Some(d));
            }
        });
    }
    let mut errors = 0;
    while let Some(r) = set.join_next().await {
        errors += r.unwrap_or(0);
    }
    errors
}

#[expect(
    clippy::too_many_arguments,
    reason = "a bench step's knobs, passed once"
)]
async fn open_loop(
    load: Arc<Load>,
    rate: f64,
    start: Instant,
    warmup: Duration,
    measure: Duration,
    max_inflight: usize,
    drain: Duration,
    clk: f64,
) -> StepOut {
    let client = http_client();
    let cpu = gen_cpu_over(start + warmup, start + warmup + measure, clk);
    let sem = Arc::new(Semaphore::new(max_inflight));
    let (cancel_tx, cancel_rx) = watch::channel(false);
    let mut rng = StdRng::from_entropy();
    let total = ((warmup + measure).as_secs_f64() * rate).round() as u64;
    let mut set = JoinSet::new();
    let mut samples = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    let mut max_lag = Duration::ZERO;
    for i in 0..total {
        let at = start + Duration::from_secs_f64(i as f64 / rate);
        let now = Instant::now();
        if at > now {
            tokio::time::sleep_until(at.into()).await;
        } else {
            max_lag = max_lag.max(now - at);
            if i % 32 == 0 {
                tokio::task::yield_now().await;
            }
        }
        let d = load.next(&mut rng);
        let kind = d.kind;
        let (client, sem, load, mut cancel) =
            (client.clone(), sem.clone(), load.clone(), cancel_rx.clone());
        set.spawn(async move {
            let work = {
                let load = load.clone();
                async move {
                    let _permit = sem.acquire_owned().await.ok();
                    let status = post(&client, &load, &d).await;
                    (status, Instant::now(), d)
                }
            };
            tokio::select! {
                (status, done, d) = work => {
                    load.record(kind, status, Some(d));
                    Sample { at, done, status, kind }
                }
                _ = cancel.changed() => {
                    load.record(kind, UNFINISHED, None);
                    Sample { at, done: Instant::now(), status: UNFINISHED, kind }
                }
            }
        });
        while let Some(r) = set.try_join_next() {
            if let Ok(s) = r {
                samples.push(s);
            }
        }
    }
    let deadline = tokio::time::Instant::now() + drain;
    let mut cancelled = false;
    loop {
        tokio::select! {
            r = set.join_next() => match r {
                Some(Ok(s)) => samples.push(s),
                Some(Err(_)) => {}
                None => break,
            },
            _ = tokio::time::sleep_until(deadline), if !cancelled => {
                let _ = cancel_tx.send(true);
                cancelled = true;
            }
        }
    }
    StepOut {
        samples,
        start,
        warmup,
        measure,
        gen_cpu: cpu.await.unwrap_or(0.0),
        max_lag,
    }
}

async fn closed_loop(
    load: Arc<Load>,
    concurrency: usize,
    start: Instant,
    warmup: Duration,
    measure: Duration,
    clk: f64,
) -> StepOut {
    let client = http_client();
    let end = start + warmup + measure;
    let cpu = gen_cpu_over(start + warmup, end, clk);
    tokio::time::sleep_until(start.into()).await;
    let mut set = JoinSet::new();
    for _ in 0..concurrency {
        let (load, client) = (load.clone(), client.clone());
        set.spawn(async move {
            let mut rng = StdRng::from_entropy();
            let mut out = Vec::new();
            while Instant::now() < end {
                let d = load.next(&mut rng);
                let kind = d.kind;
                let at = Instant::now();
                let status = post(&client, &load, &d).await;
                let done = Instant::now();
                load.record(kind, status, Some(d));
                out.push(Sample {
                    at,
                    done,
                    status,
                    kind,
                });
            }
            out
        });
    }
    let mut samples = Vec::new();
    while let Some(r) = set.join_next().await {
        samples.extend(r.unwrap_or_default());
    }
    StepOut {
        samples,
        start,
        warmup,
        measure,
        gen_cpu: cpu.await.unwrap_or(0.0),
        max_lag: Duration::ZERO,
    }
}

// ---------------------------------------------------------------------------------------
// Results

struct Row {
    name: String,
    offered: Option<f64>,
    achieved: f64,
    /// (latency, whether it is only a lower bound: a cancelled request)
    p50: (Duration, bool),
    p99: (Duration, bool),
    max: (Duration, bool),
    errors: usize,
    error_detail: String,
    stale_statuses: usize,
    mix: [usize; 4],
}

impl Row {
    fn empty(name: &str) -> Self {
        Self {
            name: name.into(),
            offered: None,
            achieved: 0.0,
            p50: (Duration::ZERO, false),
            p99: (Duration::ZERO, false),
            max: (Duration::ZERO, false),
            errors: 0,
            error_detail: String::new(),
            stale_statuses: 0,
            mix: [0; 4],
        }
    }

    fn mix(&self) -> String {
        let n: usize = self.mix.iter().sum();
        if n == 0 {
            return "-".into();
        }
        let p = |i: usize| self.mix[i] as f64 * 100.0 / n as f64;
        format!("{:.0}/{:.0}/{:.0}/{:.1}", p(0), p(1), p(2), p(3))
    }
}

fn pct(sorted: &[(Duration, bool)], p: f64) -> (Duration, bool) {
    if sorted.is_empty() {
        return (Duration::ZERO, false);
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// p50, p99 and max of latencies that are all measured (none a lower bound).
fn p50_p99_max(mut lat: Vec<Duration>) -> (Duration, Duration, Duration) {
    lat.sort_unstable();
    let sorted: Vec<(Duration, bool)> = lat.into_iter().map(|l| (l, false)).collect();
    let q = |p: f64| pct(&sorted, p).0;
    (q(0.5), q(0.99), q(1.0))
}

fn fmt_p50_p99_max((p50, p99, max): (Duration, Duration, Duration)) -> String {
    format!(
        "p50 {} / p99 {} / max {}",
        fmt_dur(p50),
        fmt_dur(p99),
        fmt_dur(max)
    )
}

/// The measured window of an open-loop step in half-second slices of scheduled time:
/// requests, p50, p99 and max latency of each, the slowest probe commit (PostgreSQL) and
/// the slowest disk probe flush.
fn print_timeline(
    out: &StepOut,
    commits: Option<&[(Instant, Duration)]>,
    flushes: Option<&[(Instant, Duration)]>,
) {
    let ws = out.start + out.warmup;
    let slice = Duration::from_millis(500);
    let slices = (out.measure.as_millis() / slice.as_millis()).max(1) as usize;
    let slice_of = |at: Instant| {
        (at >= ws).then(|| (at.duration_since(ws).as_millis() / slice.as_millis()) as usize)
    };
    let mut lat: Vec<Vec<(Duration, bool)>> = vec![Vec::new(); slices];
    for s in &out.samples {
        if let Some(v) = slice_of(s.at).and_then(|i| lat.get_mut(i)) {
            v.push((
                s.done.saturating_duration_since(s.at),
                s.status == UNFINISHED,
            ));
        }
    }
    let slice_max = |samples: Option<&[(Instant, Duration)]>| {
        let mut max = vec![None::<Duration>; slices];
        for (at, l) in samples.unwrap_or_default() {
            if let Some(m) = slice_of(*at).and_then(|i| max.get_mut(i)) {
                *m = Some(m.map_or(*l, |m| m.max(*l)));
            }
        }
        max
    };
    let commit_max = slice_max(commits);
    let flush_max = slice_max(flushes);
    for (i, v) in lat.iter_mut().enumerate() {
        v.sort_unstable_by_key(|l| l.0);
        let q = |p: f64| pct(v, p).0.as_secs_f64() * 1000.0;
        let commit = commit_max[i]
            .map(|m| format!("  probe commit max {:>6.1} ms", m.as_secs_f64() * 1000.0))
            .unwrap_or_default();
        let flush = flush_max[i]
            .map(|m| format!("  disk flush max {:>6.1} ms", m.as_secs_f64() * 1000.0))
            .unwrap_or_default();
        println!(
            "    t+{:>5.1}s {:>5} req  p50 {:>6.1} ms  p99 {:>6.1} ms  max {:>6.1} ms{commit}{flush}",
            i as f64 * 0.5,
            v.len(),
            q(0.5),
            q(0.99),
            q(1.0)
        );
    }
}

// ---------------------------------------------------------------------------------------
// The commit probe (PostgreSQL)

/// How often the probe commits.
const PROBE_EVERY: Duration = Duration::from_millis(20);

/// A probe's thread and what it measured: one latency per slot, by slot. Dropping it stops
/// the thread and waits for it.
struct Sampler {
    samples: Arc<Mutex<Vec<(Instant, Duration)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// What the probe writes into, removed after the thread stopped.
    _dir: Option<tempfile::TempDir>,
}

impl Sampler {
    /// Runs `spawn(samples, stop)`, which starts the probe's thread.
    fn start(
        spawn: impl FnOnce(
            Arc<Mutex<Vec<(Instant, Duration)>>>,
            Arc<AtomicBool>,
        ) -> std::thread::JoinHandle<()>,
        dir: Option<tempfile::TempDir>,
    ) -> Self {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = spawn(samples.clone(), stop.clone());
        Self {
            samples,
            stop,
            thread: Some(thread),
            _dir: dir,
        }
    }

    /// The latencies of the slots in `[from, to)`.
    fn samples(&self, from: Instant, to: Instant) -> Vec<(Instant, Duration)> {
        lock(&self.samples)
            .iter()
            .filter(|(at, _)| *at >= from && *at < to)
            .copied()
            .collect()
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A one-row durable commit every [`PROBE_EVERY`], on a connection, thread and runtime of
/// its own, at the normal priority, on a fixed schedule (each latency runs from its slot,
/// as the generator's do): what the server alone takes to commit while the webhook is under
/// load, to tell the server's stalls (a WAL flush waiting behind the kernel's writeback of
/// data files) from ours. It adds 50 small commits a second to the server.
fn commit_probe(url: String) -> Sampler {
    Sampler::start(
        |s, st| on_own_thread("commit-probe", move || probe_loop(url, s, st)),
        None,
    )
}

async fn probe_loop(
    url: String,
    samples: Arc<Mutex<Vec<(Instant, Duration)>>>,
    stop: Arc<AtomicBool>,
) {
    let client = match tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
        Ok((client, conn)) => {
            tokio::spawn(conn);
            client
        }
        Err(e) => {
            println!("  commit probe: cannot connect ({e})");
            return;
        }
    };
    if let Err(e) = client
        .batch_execute("CREATE TABLE bench_commit_probe (id bigserial PRIMARY KEY)")
        .await
    {
        println!("  commit probe: cannot create its table ({e})");
        return;
    }
    let mut slot = Instant::now();
    while !AtomicBool::load(&stop, Ordering::Relaxed) {
        slot += PROBE_EVERY;
        tokio::time::sleep_until(slot.into()).await;
        if let Err(e) = client
            .batch_execute("INSERT INTO bench_commit_probe DEFAULT VALUES")
            .await
        {
            println!("  commit probe: {e}");
            return;
        }
        lock(&samples).push((slot, slot.elapsed()));
    }
}

// ---------------------------------------------------------------------------------------
// The disk probe (both backends)

/// The size of the disk probe's file, written over in place (allocated and synced first,
/// so a flush syncs data only, as a PostgreSQL WAL segment's does).
const DISK_PROBE_FILE: usize = 16 << 20;
/// What the disk probe writes each time.
const DISK_PROBE_WRITE: usize = 8 << 10;

/// An 8 kB write and `fdatasync` every [`PROBE_EVERY`] on a thread of its own, into a
/// preallocated file in `BENCH_DISK_DIR` (or the temporary directory): what one durable
/// flush costs on this disk, whatever the server does. Each latency runs from its slot: a
/// slot that comes while a flush is stalled waits for it, and counts the wait as a request
/// arriving then would. `None`, said why, when the file cannot be made.
fn disk_probe() -> Option<Sampler> {
    let base = std::env::var_os("BENCH_DISK_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let made = tempfile::tempdir_in(&base).and_then(|dir| {
        use std::io::Write;
        let path = dir.path().join("flushes");
        let mut f = std::fs::File::create(&path)?;
        f.write_all(&vec![0u8; DISK_PROBE_FILE])?;
        f.sync_all()?;
        Ok((dir, f))
    });
    let (dir, file) = match made {
        Ok(m) => m,
        Err(e) => {
            println!(
                "disk probe: cannot prepare its file in {} ({e})",
                base.display()
            );
            return None;
        }
    };
    Some(Sampler::start(
        |s, st| {
            std::thread::Builder::new()
                .name("disk-probe".into())
                .spawn(move || disk_probe_loop(file, s, st))
                .expect("spawn the disk probe")
        },
        Some(dir),
    ))
}

fn disk_probe_loop(
    file: std::fs::File,
    samples: Arc<Mutex<Vec<(Instant, Duration)>>>,
    stop: Arc<AtomicBool>,
) {
    use std::os::unix::fs::FileExt;
    let block = vec![0x5au8; DISK_PROBE_WRITE];
    let places = (DISK_PROBE_FILE / DISK_PROBE_WRITE) as u64;
    let mut slot = Instant::now();
    let mut i = 0u64;
    while !AtomicBool::load(&stop, Ordering::Relaxed) {
        slot += PROBE_EVERY;
        if let Some(wait) = slot.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let at = (i % places) * DISK_PROBE_WRITE as u64;
        i += 1;
        if let Err(e) = file
            .write_all_at(&block, at)
            .and_then(|()| file.sync_data())
        {
            println!("disk probe: {e}");
            return;
        }
        lock(&samples).push((slot, slot.elapsed()));
    }
}

/// The slots that took [`TARGET_P99`] or more.
fn slow_slots(c: &[(Instant, Duration)]) -> usize {
    c.iter().filter(|(_, l)| *l >= TARGET_P99).count()
}

/// One line on the disk probe's flushes in a window.
fn disk_summary(c: &[(Instant, Duration)]) -> String {
    format!(
        "{} flushes of {} kB: {}; {}",
        c.len(),
        DISK_PROBE_WRITE >> 10,
        fmt_p50_p99_max(p50_p99_max(c.iter().map(|(_, l)| *l).collect())),
        disk_verdict(slow_slots(c), c.len())
    )
}

/// How many of `n` slots took 25 ms or more, and what that share means for a p99.
fn disk_verdict(over: usize, n: usize) -> String {
    let share = if n == 0 {
        0.0
    } else {
        over as f64 * 100.0 / n as f64
    };
    format!(
        "{over} of {n} slots ({share:.1} %) took {} ms or more{}",
        TARGET_P99.as_millis(),
        if share >= 1.0 {
            ": the disk alone put a durable commit's p99 at the target or over in this window"
        } else {
            ""
        }
    )
}

/// One line on the probe's commits in a step's window.
fn probe_summary(c: &[(Instant, Duration)]) -> String {
    let over = slow_slots(c);
    format!(
        "probe: {} one-row commits on their own connection: {}, {over} took {} ms or more",
        c.len(),
        fmt_p50_p99_max(p50_p99_max(c.iter().map(|(_, l)| *l).collect())),
        TARGET_P99.as_millis()
    )
}

fn summarize(name: &str, offered: Option<f64>, out: &StepOut) -> Row {
    let ws = out.start + out.warmup;
    let we = ws + out.measure;
    // Open loop: the requests scheduled in the window. Closed loop: those in flight at some
    // point of it (a request stuck since the warm-up counts).
    let measured: Vec<&Sample> = out
        .samples
        .iter()
        .filter(|s| match offered {
            Some(_) => s.at >= ws && s.at < we,
            None => s.at < we && s.done >= ws,
        })
        .collect();
    let mut lat: Vec<(Duration, bool)> = measured
        .iter()
        .map(|s| {
            (
                s.done.saturating_duration_since(s.at),
                s.status == UNFINISHED,
            )
        })
        .collect();
    lat.sort_unstable_by_key(|l| l.0);
    let ok_in_window = out
        .samples
        .iter()
        .filter(|s| s.status == 200 && s.done >= ws && s.done < we)
        .count();
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    let mut mix = [0usize; 4];
    let mut stale = 0;
    for s in &measured {
        if s.status != 200 {
            let label = match s.status {
                TRANSPORT_ERROR => "transport".to_owned(),
                UNFINISHED => "cancelled".to_owned(),
                c => format!("HTTP {c}"),
            };
            *errors.entry(label).or_default() += 1;
        }
        let i = match s.kind {
            Kind::Text | Kind::FirstText => 0,
            Kind::Media => 1,
            Kind::Status | Kind::StaleStatus => 2,
            Kind::Duplicate => 3,
        };
        mix[i] += 1;
        if s.kind == Kind::StaleStatus {
            stale += 1;
        }
    }
    Row {
        name: name.into(),
        offered,
        achieved: ok_in_window as f64 / out.measure.as_secs_f64(),
        p50: pct(&lat, 0.50),
        p99: pct(&lat, 0.99),
        max: lat.last().copied().unwrap_or((Duration::ZERO, false)),
        errors: errors.values().sum(),
        error_detail: errors
            .iter()
            .map(|(k, v)| format!("{k} x{v}"))
            .collect::<Vec<_>>()
            .join(", "),
        stale_statuses: stale,
        mix,
    }
}

fn fmt_dur(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms >= 10_000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

fn fmt_lat((d, lower_bound): (Duration, bool)) -> String {
    if lower_bound {
        format!(">{}", fmt_dur(d))
    } else {
        fmt_dur(d)
    }
}

// ---------------------------------------------------------------------------------------
// CPU accounting from /proc (Linux; zeros elsewhere)

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// utime + stime of a `/proc/.../stat` file, in seconds.
fn stat_cpu(path: &str, clk: f64) -> Option<(String, f64)> {
    let text = std::fs::read_to_string(path).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_owned();
    let fields: Vec<&str> = text.get(close + 2..)?.split_whitespace().collect();
    // Fields after the command start at field 3 (state); utime is 14, stime 15.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((comm, (utime + stime) / clk))
}

fn thread_cpu(clk: f64) -> f64 {
    stat_cpu("/proc/thread-self/stat", clk)
        .map(|c| c.1)
        .unwrap_or(0.0)
}

fn postgres_cpu(clk: f64) -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    dir.flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| stat_cpu(&format!("{}/stat", e.path().display()), clk))
        .filter(|(comm, _)| comm == "postgres")
        .map(|(_, s)| s)
        .sum()
}

/// Busy CPU seconds of the whole machine (all cores), from `/proc/stat`.
fn machine_busy(clk: f64) -> f64 {
    let Ok(text) = std::fs::read_to_string("/proc/stat") else {
        return 0.0;
    };
    let Some(line) = text.lines().next() else {
        return 0.0;
    };
    // cpu user nice system idle iowait irq softirq steal ...
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: f64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0.0) + v.get(4).copied().unwrap_or(0.0);
    (total - idle) / clk
}

/// CPU seconds of this process, of all postgres processes and of the whole machine between
/// `ws` and `we`.
async fn cpu_over(ws: Instant, we: Instant, clk: f64) -> (f64, f64, f64) {
    let snap = move || {
        (
            stat_cpu("/proc/self/stat", clk).map(|c| c.1).unwrap_or(0.0),
            postgres_cpu(clk),
            machine_busy(clk),
        )
    };
    tokio::time::sleep_until(ws.into()).await;
    let a = snap();
    tokio::time::sleep_until(we.into()).await;
    let b = snap();
    (b.0 - a.0, b.1 - a.1, b.2 - a.2)
}
