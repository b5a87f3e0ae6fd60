//! Several `smartchat serve` processes on one PostgreSQL share the job queue without doing
//! a job twice (issue 5), and send each follow-up once (issue 9). This runs the real binary twice against the same databases,
//! delivers signed webhooks to both, and checks that every customer gets exactly one reply
//! and every job was claimed exactly once.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use smartchat_core::ids::{Handle, PhoneNumberId};
use smartchat_core::store::{NewTenant, Profile};
use smartchat_tests::{Backend, TestEnv, url_string};
use smartchat_whatsapp::fake::{FakeGraph, WebhookBuilder, WebhookUser};

const SECRET: &str = "shared-queue-secret";
const PNID: &str = "3000001";
const TOKEN: &str = "EAAGsharedqueue";
const CUSTOMERS: usize = 40;

/// A `smartchat serve` child, killed when dropped.
struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(env: &TestEnv, graph: &FakeGraph) -> anyhow::Result<Server> {
    start_with(env, graph, &[])
}

fn start_with(env: &TestEnv, graph: &FakeGraph, extra: &[(&str, &str)]) -> anyhow::Result<Server> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_smartchat"))
        .arg("serve")
        .env_clear()
        .envs(extra.iter().copied())
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SMARTCHAT_DATA_DIR", env.dir.path())
        .env("SMARTCHAT_DATABASE_URL", url_string(&env.db_url))
        .env("SMARTCHAT_KEYSTORE_URL", url_string(&env.keystore_url))
        .env("SMARTCHAT_MASTER_KEY", &env.master_secret)
        .env("SMARTCHAT_BIND", "127.0.0.1:0")
        .env("SMARTCHAT_META_APP_SECRET", SECRET)
        .env("SMARTCHAT_META_GRAPH_URL", &graph.base_url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("spawn smartchat serve")?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let base = loop {
        let Some(line) = lines.next() else {
            bail!("smartchat serve exited before listening");
        };
        if let Some(rest) = line?.strip_prefix("smartchat listening on ") {
            break rest.trim().to_owned();
        }
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Ok(Server { child, base })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_share_the_queue_and_do_each_job_once() -> anyhow::Result<()> {
    let env = TestEnv::new(Backend::Postgres).await;
    let graph = FakeGraph::start().await?;
    graph.register(PNID, TOKEN);
    env.store
        .create_tenant(NewTenant {
            handle: "two-servers".parse::<Handle>()?,
            profile: Profile(serde_json::json!({
                "name": "Glow Salon",
                "business_type": "salon",
                "booking_links": [{"label": "Book", "url": "https://book.example.com/glow"}],
            })),
            phone_number_id: Some(PNID.parse::<PhoneNumberId>()?),
            access_token: Some(smartchat_core::config::Secret::new(TOKEN)),
        })
        .await?;
    let a = start(&env, &graph)?;
    let b = start(&env, &graph)?;

    // Every customer writes once, alternately to each server; a few deliveries are
    // redelivered to the other server, as Meta may.
    let http = reqwest::Client::new();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    for i in 0..CUSTOMERS {
        let customer = format!("9198{i:08}");
        let delivery = WebhookBuilder::new().at(now).entry(PNID, "+91").text(
            &WebhookUser::wa_id(&customer),
            &format!("wamid.shared{i}"),
            "how do I book?",
        );
        let (body, sig) = delivery.signed(SECRET.as_bytes());
        let targets: &[&Server] = if i % 10 == 0 {
            &[&a, &b]
        } else if i % 2 == 0 {
            &[&a]
        } else {
            &[&b]
        };
        for s in targets {
            let res = http
                .post(format!("{}/webhooks/whatsapp", s.base))
                .header("content-type", "application/json")
                .header("x-hub-signature-256", &sig)
                .body(body.clone())
                .send()
                .await?;
            ensure!(res.status() == 200, "delivery {i}: {}", res.status());
        }
    }

    // Both processes' workers drain the shared queue.
    let deadline = Instant::now() + Duration::from_secs(60);
    while graph.requests().len() < CUSTOMERS {
        ensure!(
            Instant::now() < deadline,
            "only {} of {CUSTOMERS} replies sent in 60 s",
            graph.requests().len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The lead extractions run beside the sends and may finish after them: wait until no
    // job is left to run (on a busy machine that can take a while), then give a duplicate
    // the time to show up, were a job run twice.
    let (client, conn) =
        tokio_postgres::connect(&url_string(&env.db_url), tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let open: i64 = client
            .query_one(
                "SELECT count(*) FROM jobs WHERE status IN ('ready', 'running')",
                &[],
            )
            .await?
            .get(0);
        if open == 0 {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "{open} jobs still to run after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sent = graph.requests();
    ensure!(
        sent.len() == CUSTOMERS,
        "{} sends for {CUSTOMERS} customers",
        sent.len()
    );
    let mut per_customer: HashMap<String, usize> = HashMap::new();
    for r in &sent {
        let to = r
            .body
            .as_ref()
            .and_then(|b| b["to"].as_str())
            .context("a send without a recipient")?;
        *per_customer.entry(to.to_owned()).or_default() += 1;
    }
    ensure!(per_customer.len() == CUSTOMERS && per_customer.values().all(|&n| n == 1));

    // Every job (a reply, a lead extraction and a send per customer) done, each claimed
    // exactly once.
    let rows = client
        .query("SELECT kind, status, attempts FROM jobs", &[])
        .await?;
    ensure!(rows.len() == 3 * CUSTOMERS, "{} jobs", rows.len());
    for r in &rows {
        let (kind, status, attempts): (String, String, i32) = (r.get(0), r.get(1), r.get(2));
        ensure!(
            status == "done" && attempts == 1,
            "{kind} job: {status} after {attempts} claims"
        );
    }
    let stored: i64 = client
        .query_one("SELECT count(*) FROM messages WHERE direction = 'in'", &[])
        .await?
        .get(0);
    ensure!(
        stored == CUSTOMERS as i64,
        "{stored} inbound messages stored"
    );
    drop((a, b));
    Ok(())
}

/// Two `smartchat serve` processes on one PostgreSQL, both evaluating follow-up rules every
/// second: a due follow-up is scheduled, sent and ledgered exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_send_each_follow_up_once() -> anyhow::Result<()> {
    use smartchat_core::follow_ups::{RuleSpec, Trigger};
    let env = TestEnv::new(Backend::Postgres).await;
    let graph = FakeGraph::start().await?;
    graph.register(PNID, TOKEN);
    let tenant = env
        .store
        .create_tenant(NewTenant {
            handle: "two-servers-fu".parse::<Handle>()?,
            profile: Profile(serde_json::json!({"name": "Glow Salon", "business_type": "salon"})),
            phone_number_id: Some(PNID.parse::<PhoneNumberId>()?),
            access_token: Some(smartchat_core::config::Secret::new(TOKEN)),
        })
        .await?;
    env.store
        .create_rule(
            tenant,
            &RuleSpec {
                name: "nudge".into(),
                trigger: Trigger::NoReply,
                after_minutes: 60,
                message: "Still thinking about it? Reply here to book.".into(),
                template: None,
                max_per_lead: 1,
                min_gap_minutes: 0,
                respect_hours: false,
                catch_up: true,
                enabled: true,
            },
            smartchat_ledger::Actor::System,
        )
        .await?;
    let fast = [("SMARTCHAT_FOLLOW_UP_INTERVAL_SECS", "1")];
    let a = start_with(&env, &graph, &fast)?;
    let b = start_with(&env, &graph, &fast)?;

    // A customer writes; the assistant answers (the business wrote last).
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let delivery = WebhookBuilder::new().at(now).entry(PNID, "+91").text(
        &WebhookUser::wa_id("919811177001"),
        "wamid.fu1",
        "how much is a haircut?",
    );
    let (body, sig) = delivery.signed(SECRET.as_bytes());
    let res = reqwest::Client::new()
        .post(format!("{}/webhooks/whatsapp", a.base))
        .header("content-type", "application/json")
        .header("x-hub-signature-256", &sig)
        .body(body)
        .send()
        .await?;
    ensure!(res.status() == 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    while graph.requests().is_empty() {
        ensure!(Instant::now() < deadline, "no reply in 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Three hours pass for the conversation (the window stays open: it runs from Meta's
    // timestamp): the follow-up is due, and both servers look every second.
    let (client, conn) =
        tokio_postgres::connect(&url_string(&env.db_url), tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    client
        .execute(
            "UPDATE messages SET created_at = created_at - 10800000000, status_at = status_at - 10800000000",
            &[],
        )
        .await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while graph.requests().len() < 2 {
        ensure!(Instant::now() < deadline, "no follow-up in 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Several more evaluations by each server, were one to send it again.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let sent = graph.requests();
    ensure!(
        sent.len() == 2,
        "{} sends: the reply and one follow-up",
        sent.len()
    );
    ensure!(
        sent[1]
            .body
            .as_ref()
            .and_then(|b| b["text"]["body"].as_str())
            == Some("Still thinking about it? Reply here to book.")
    );
    let rows = client.query("SELECT status FROM follow_ups", &[]).await?;
    ensure!(rows.len() == 1, "{} follow-ups", rows.len());
    ensure!(rows[0].get::<_, String>(0) == "sent");
    let jobs = client
        .query(
            "SELECT status, attempts FROM jobs WHERE kind = 'follow_up'",
            &[],
        )
        .await?;
    ensure!(jobs.len() == 1, "{} follow-up jobs", jobs.len());
    ensure!(jobs[0].get::<_, String>(0) == "done" && jobs[0].get::<_, i32>(1) == 1);
    drop((a, b));
    Ok(())
}
