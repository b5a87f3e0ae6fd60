//! The main job end to end on both backends (issue 5): a signed Meta webhook in, the
//! message stored sealed, the assistant asked on a local OpenAI-compatible server, the reply
//! posted to a local Graph API server, statuses advancing, the ledger verifying; and the
//! failure paths.

use std::time::Duration;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use smartchat_api::app::{AppState, router};
use smartchat_api::boot::Services;
use smartchat_api::pipeline::{self, Pipeline};
use smartchat_assistant::fake::{Failure, FakeLlm};
use smartchat_core::db::schema::{ledger_entries, ledger_pending, messages};
use smartchat_core::db_run;
use smartchat_core::ids::{Handle, PhoneNumberId};
use smartchat_core::ledger_store::Ledger;
use smartchat_core::store::{NewTenant, Profile};
use smartchat_ledger::{EventKind, VerifyOptions, verify_bundle};
use smartchat_tests::{TestEnv, both_backends};
use smartchat_whatsapp::fake::{FakeGraph, GraphFailure, WebhookBuilder, WebhookUser};

const SECRET: &str = "test-app-secret";
const PNID: &str = "1000001";
const TOKEN: &str = "EAAGtesttoken";
const CUSTOMER: &str = "919800000001";

struct World {
    env: TestEnv,
    base: String,
    http: reqwest::Client,
    pipeline: Pipeline,
    ledger: Ledger,
    graph: FakeGraph,
    llm: FakeLlm,
}

fn profile() -> serde_json::Value {
    serde_json::json!({
        "name": "Glow Salon",
        "business_type": "salon",
        "timezone": "Asia/Kolkata",
        "hours": {
            "monday": [{"open": "10:00", "close": "19:00"}],
            "saturday": [{"open": "09:00", "close": "17:00"}]
        },
        "services": [{"name": "Haircut", "price": "Rs 500"}],
        "staff": [{"name": "Priya", "role": "stylist"}],
        "booking_links": [{"label": "Book online", "url": "https://book.example.com/glow"}],
        "handoff_message": "Our team will reply shortly."
    })
}

async fn world(env: TestEnv) -> World {
    world_with(env, &[]).await
}

/// [`world`] with more settings.
async fn world_with(env: TestEnv, extra: &[(&str, &str)]) -> World {
    let graph = FakeGraph::start().await.unwrap();
    graph.register(PNID, TOKEN);
    let llm = FakeLlm::start().await.unwrap();
    env.store
        .create_tenant(NewTenant {
            handle: "glow-salon".parse::<Handle>().unwrap(),
            profile: Profile(profile()),
            phone_number_id: Some(PNID.parse::<PhoneNumberId>().unwrap()),
            access_token: Some(smartchat_core::config::Secret::new(TOKEN)),
        })
        .await
        .unwrap();
    let mut vars = std::collections::HashMap::new();
    vars.insert("SMARTCHAT_META_APP_SECRET".to_owned(), SECRET.to_owned());
    vars.insert(
        "SMARTCHAT_META_VERIFY_TOKEN".to_owned(),
        "verify-me".to_owned(),
    );
    vars.insert(
        "SMARTCHAT_META_GRAPH_URL".to_owned(),
        graph.base_url.clone(),
    );
    vars.insert("SMARTCHAT_OPENAI_API_KEY".to_owned(), llm.api_key.clone());
    vars.insert("SMARTCHAT_OPENAI_BASE_URL".to_owned(), llm.base_url.clone());
    vars.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let config = smartchat_core::config::Config::load_from(None, &vars).unwrap();
    let ledger = Ledger::open(env.store.db.clone(), &env.store.keys, "test/ledger")
        .await
        .unwrap();
    let pipeline = Pipeline::new(env.store.clone(), &config).unwrap();
    let state = AppState::new(
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
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router(state)).await });
    World {
        env,
        base,
        http: reqwest::Client::new(),
        pipeline,
        ledger,
        graph,
        llm,
    }
}

impl World {
    async fn post(&self, body: Vec<u8>, signature: Option<&str>) -> reqwest::Response {
        let mut req = self
            .http
            .post(format!("{}/webhooks/whatsapp", self.base))
            .header("content-type", "application/json")
            .body(body);
        if let Some(s) = signature {
            req = req.header("x-hub-signature-256", s);
        }
        req.send().await.unwrap()
    }

    /// Announces a body of `len` bytes, sends 1 KiB of it, and reads the status line.
    async fn oversized_status(&self, len: usize) -> u16 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = self.base.trim_start_matches("http://");
        let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST /webhooks/whatsapp HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
             x-hub-signature-256: sha256={}\r\ncontent-length: {len}\r\n\r\n",
            "0".repeat(64)
        );
        sock.write_all(head.as_bytes()).await.unwrap();
        sock.write_all(&[b' '; 1024]).await.unwrap();
        let mut buf = vec![0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(10), sock.read(&mut buf))
            .await
            .expect("the server answers before the body is sent")
            .unwrap();
        let line = String::from_utf8_lossy(&buf[..n]).into_owned();
        line.split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0)
    }

    async fn deliver(&self, b: &WebhookBuilder) -> reqwest::Response {
        let (body, sig) = b.signed(SECRET.as_bytes());
        self.post(body, Some(&sig)).await
    }

    async fn rows(&self) -> Vec<(String, String, String, Option<String>, Option<i32>)> {
        let mut c = self.env.store.db.conn().await.unwrap();
        db_run!(c, |c| messages::table
            .order((messages::created_at, messages::id))
            .select((
                messages::direction,
                messages::author,
                messages::status,
                messages::wamid,
                messages::error_code
            ))
            .load(c)
            .await)
        .unwrap()
    }
}

/// Checkpoints the ledger, exports it whole and verifies it as an auditor would (with the
/// published key); returns the bundle.
async fn verified_bundle(w: &World) -> Vec<u8> {
    w.ledger.checkpoint().await.unwrap();
    let (_, _, bundle) = w.ledger.export(0, None, Vec::new()).await.unwrap();
    let report = verify_bundle(
        &bundle[..],
        &VerifyOptions {
            trusted_key: Some(w.ledger.vkey()),
            ..VerifyOptions::default()
        },
    )
    .unwrap();
    assert!(report.first_failure.is_none(), "{:?}", report.first_failure);
    bundle
}

fn now_secs() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn meta() -> WebhookBuilder {
    WebhookBuilder::new().at(now_secs())
}

fn text(wamid: &str, body: &str) -> WebhookBuilder {
    meta().entry(PNID, "+91 80 0000 0000").text(
        &WebhookUser::wa_id(CUSTOMER).named("Asha Customer"),
        wamid,
        body,
    )
}

async fn a_message_is_answered_end_to_end(env: TestEnv) {
    let w = world(env).await;
    w.llm
        .script_reply("We open at 9 on Saturday. Book at https://book.example.com/glow");
    // A valid Aadhaar (Verhoeff check digit computed) and PAN ride along with a card number.
    let check = smartchat_policies::verhoeff_check_digit(b"23415678901").unwrap();
    let aadhaar = format!("2341 5678 901{}", char::from(check));
    let question = format!(
        "what time do you open on saturday? my card is 4111 1111 1111 1111, aadhaar {aadhaar}, pan ABCPE1234F"
    );
    let question = question.as_str();
    let res = w
        .deliver(&text("wamid.HBgMOTE5ODAwMDAwMDAxFQIAEhgUM0E", question))
        .await;
    assert_eq!(res.status(), 200);
    // Stored, sealed, with its reply job queued (the reply queues the lead job): nothing
    // ran yet.
    assert_eq!(w.rows().await.len(), 1);
    assert_eq!(
        smartchat_core::jobs::count(&w.env.store.db, pipeline::QUEUE, "ready")
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        pipeline::drain(&w.pipeline).await.unwrap(),
        3,
        "reply, lead extraction, then send"
    );
    // The provider saw a redacted message, store:false and a pseudonym, never the number:
    // in the reply request and in the lead extraction (structured output) alike.
    let all = w.llm.requests();
    assert_eq!(all.len(), 2);
    assert!(all.iter().any(|r| r.body.get("response_format").is_some()));
    for r in &all {
        let raw = String::from_utf8_lossy(&r.raw).into_owned();
        assert!(
            !raw.contains(CUSTOMER) && !raw.contains("4111 1111"),
            "{raw}"
        );
    }
    let calls: Vec<_> = all
        .into_iter()
        .filter(|r| r.body.get("response_format").is_none())
        .collect();
    assert_eq!(calls.len(), 1);
    let raw = String::from_utf8_lossy(&calls[0].raw).into_owned();
    assert_eq!(calls[0].body["store"], false);
    assert!(
        calls[0].body["safety_identifier"]
            .as_str()
            .is_some_and(|s| s.len() == 64)
    );
    for secret in [
        "4111 1111",
        "4111111111111111",
        aadhaar.as_str(),
        "ABCPE1234F",
        CUSTOMER,
        "Asha",
    ] {
        assert!(!raw.contains(secret), "{secret} reached the provider");
    }
    assert!(
        raw.contains("[card]") && raw.contains("[aadhaar]") && raw.contains("[pan]"),
        "{raw}"
    );
    // The reply went to the Graph API with the tenant's token, to the customer.
    let sent = w.graph.requests();
    assert_eq!(sent.len(), 1);
    assert!(sent[0].authorized);
    assert_eq!(sent[0].phone_number_id, PNID);
    let body = sent[0].body.clone().unwrap();
    assert_eq!(body["to"], CUSTOMER);
    // The model's booking link goes out as a tracked link (`/b/<32 hex>`).
    let text = body["text"]["body"].as_str().unwrap();
    let token = text
        .strip_prefix("We open at 9 on Saturday. Book at http://127.0.0.1:8080/b/")
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        token.len() == 32 && token.bytes().all(|b| b.is_ascii_hexdigit()),
        "{text}"
    );
    let rows = w.rows().await;
    assert_eq!(rows.len(), 2);
    let (dir, author, status, wamid, _) = rows[1].clone();
    assert_eq!(
        (dir.as_str(), author.as_str(), status.as_str()),
        ("out", "assistant", "sent")
    );
    let wamid = wamid.unwrap();
    // Meta reports delivered, then read; a late "delivered" changes nothing.
    let user = WebhookUser::wa_id(CUSTOMER);
    let st = |s: &str| meta().entry(PNID, "+91").status(&user, &wamid, s);
    assert_eq!(w.deliver(&st("delivered")).await.status(), 200);
    assert_eq!(w.rows().await[1].2, "delivered");
    assert_eq!(w.deliver(&st("read")).await.status(), 200);
    assert_eq!(w.deliver(&st("delivered")).await.status(), 200);
    assert_eq!(w.rows().await[1].2, "read");
    // Nothing readable at rest.
    smartchat_tests::assert_no_plaintext(
        &w.env,
        &[question, "We open at 9", CUSTOMER, "Asha Customer"],
    );
    // The ledger verifies and holds the story without its text.
    w.ledger.sequence_all().await.unwrap();
    let bundle = verified_bundle(&w).await;
    for needle in [question, CUSTOMER, "Asha", "We open at 9"] {
        assert!(
            !bundle.windows(needle.len()).any(|x| x == needle.as_bytes()),
            "{needle} in the ledger"
        );
    }
    let kinds: Vec<EventKind> = w
        .ledger
        .entries(0, w.ledger.size().await.unwrap())
        .await
        .unwrap()
        .iter()
        .map(|e| e.entry.draft.kind)
        .collect();
    for k in [
        EventKind::MESSAGE_RECEIVED,
        EventKind::AI_PROVIDER_CALL,
        EventKind::ASSISTANT_DECISION,
        EventKind::MESSAGE_SENT,
        EventKind::MESSAGE_STATUS,
    ] {
        assert!(kinds.contains(&k), "{k:?} missing from {kinds:?}");
    }
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == EventKind::MESSAGE_STATUS)
            .count(),
        2,
        "delivered and read, not the late one"
    );
}

async fn bad_deliveries_are_refused_and_store_nothing(env: TestEnv) {
    let w = world(env).await;
    let (body, sig) = text("wamid.A1", "hello").signed(SECRET.as_bytes());
    // Missing and wrong signatures: 401.
    let r = w.post(body.clone(), None).await;
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let (_, other_sig) = text("wamid.A1", "hello").signed(b"another secret");
    assert_eq!(w.post(body.clone(), Some(&other_sig)).await.status(), 401);
    assert_eq!(w.post(body.clone(), Some("sha256=zz")).await.status(), 401);
    // A valid signature over malformed JSON: 400.
    let junk = b"{\"object\":\"whatsapp_business_account\",\"entry\":[".to_vec();
    let junk_sig = smartchat_whatsapp::signature_header(SECRET.as_bytes(), &junk);
    let r = w.post(junk, Some(&junk_sig)).await;
    assert_eq!(r.status(), 400);
    // Oversized: 413, decided from Content-Length before the body is read. (A raw socket:
    // an HTTP client still writing the 2 MiB would race the early answer.)
    assert_eq!(w.oversized_status(2 * 1024 * 1024).await, 413);
    assert!(w.rows().await.is_empty(), "nothing stored");
    // Only the rejections were ledgered.
    let mut c = w.env.store.db.conn().await.unwrap();
    let pending: i64 = db_run!(c, |c| ledger_pending::table.count().get_result(c).await).unwrap();
    let tenant_entries = 2; // tenant_created, key_created
    assert_eq!(pending, tenant_entries + 3);
    // The good one still works afterwards.
    assert_eq!(w.post(body, Some(&sig)).await.status(), 200);
    assert_eq!(w.rows().await.len(), 1);
    // Health, readiness and the ledger's published key.
    let get = |path: &str| w.http.get(format!("{}{path}", w.base)).send();
    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    // No metrics token configured: the endpoint is off, and says how to turn it on.
    let off = get("/metrics").await.unwrap();
    assert_eq!(off.status(), 404);
    assert!(
        off.text()
            .await
            .unwrap()
            .contains("set SMARTCHAT_METRICS_TOKEN")
    );
    let ready = get("/readyz").await.unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(
        ready.json::<serde_json::Value>().await.unwrap()["status"],
        "ready"
    );
    let vkey = get("/.well-known/smartchat/ledger-key")
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(vkey.trim(), w.ledger.vkey());
    assert_eq!(
        get("/.well-known/smartchat/ledger-checkpoint")
            .await
            .unwrap()
            .status(),
        404,
        "none signed yet"
    );
    // Subscription handshake.
    let ok = w
        .http
        .get(format!("{}/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token=verify-me&hub.challenge=1158201444", w.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.text().await.unwrap(), "1158201444");
    let bad = w
        .http
        .get(format!(
            "{}/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token=nope&hub.challenge=1",
            w.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 403);
}

async fn redeliveries_batches_and_unknown_numbers(env: TestEnv) {
    let w = world(env).await;
    let once = text("wamid.R1", "hi there");
    assert_eq!(w.deliver(&once).await.status(), 200);
    assert_eq!(w.deliver(&once).await.status(), 200);
    assert_eq!(w.rows().await.len(), 1, "a redelivery is stored once");
    assert_eq!(
        smartchat_core::jobs::count(&w.env.store.db, pipeline::QUEUE, "ready")
            .await
            .unwrap(),
        1,
        "one reply job (its lead job comes with the reply)"
    );
    // A batch: 3 entries, each with 2 messages and 3 statuses of earlier sends.
    let mut b = meta();
    for e in 0..3 {
        b = b.entry(PNID, "+91");
        for m in 0..2 {
            b = b.text(
                &WebhookUser::wa_id(&format!("9198000001{e}{m}")),
                &format!("wamid.B{e}{m}"),
                "batch message",
            );
        }
        for s in ["sent", "delivered", "read"] {
            b = b.status(
                &WebhookUser::wa_id(CUSTOMER),
                &format!("wamid.unknown{e}"),
                s,
            );
        }
    }
    assert_eq!(w.deliver(&b).await.status(), 200);
    assert_eq!(w.rows().await.len(), 7, "every message of every entry");
    // An unknown number: 200, ledgered, nothing stored.
    let stranger =
        meta()
            .entry("999999", "+1")
            .text(&WebhookUser::wa_id(CUSTOMER), "wamid.U1", "hello?");
    assert_eq!(w.deliver(&stranger).await.status(), 200);
    assert_eq!(w.rows().await.len(), 7);
    w.ledger.sequence_all().await.unwrap();
    let mut c = w.env.store.db.conn().await.unwrap();
    let unknown: i64 = db_run!(c, |c| ledger_entries::table
        .filter(ledger_entries::kind.eq(i32::from(EventKind::UNKNOWN_PHONE_NUMBER.0)))
        .count()
        .get_result(c)
        .await)
    .unwrap();
    assert_eq!(unknown, 1);
}

async fn provider_trouble_retries_then_fails_over(env: TestEnv) {
    let w = world(env).await;
    // 429 with Retry-After, then success.
    w.llm.fail_next(
        1,
        Failure::RateLimited {
            retry_after_secs: 1,
        },
    );
    w.llm.script_reply("Answer after a retry");
    assert_eq!(
        w.deliver(&text("wamid.P1", "do you do haircuts?"))
            .await
            .status(),
        200
    );
    pipeline::drain(&w.pipeline).await.unwrap();
    assert_eq!(
        w.llm
            .requests()
            .iter()
            .filter(|r| r.body.get("response_format").is_none())
            .count(),
        2,
        "the reply: a 429, then success"
    );
    assert_eq!(
        w.graph.requests()[0].body.clone().unwrap()["text"]["body"],
        "Answer after a retry"
    );
    // Provider down: the chain ends in the offline assistant, which knows Saturday's hours.
    w.llm.fail_next(10, Failure::Status(503));
    assert_eq!(
        w.deliver(&text("wamid.P2", "what time do you open on Saturday?"))
            .await
            .status(),
        200
    );
    pipeline::drain(&w.pipeline).await.unwrap();
    let reply = w.graph.requests()[1].body.clone().unwrap()["text"]["body"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        reply.contains("9") && reply.to_lowercase().contains("saturday"),
        "{reply}"
    );
    // Every attempt was ledgered as a provider call.
    w.ledger.sequence_all().await.unwrap();
    let calls = w
        .ledger
        .entries(0, w.ledger.size().await.unwrap())
        .await
        .unwrap()
        .iter()
        .filter(|e| e.entry.draft.kind == EventKind::AI_PROVIDER_CALL)
        .count();
    assert!(calls >= 3, "{calls}");
}

async fn graph_errors_are_classified(env: TestEnv) {
    let w = world(env).await;
    w.graph.fail_next(1, GraphFailure::Code(131047));
    assert_eq!(w.deliver(&text("wamid.G1", "hello")).await.status(), 200);
    pipeline::drain(&w.pipeline).await.unwrap();
    let out = w.rows().await[1].clone();
    assert_eq!(out.2, "failed");
    assert_eq!(out.4, Some(131047));
    assert_eq!(
        w.graph.requests().len(),
        1,
        "a permanent error is not retried"
    );
    // A throughput error is retried later, then succeeds.
    w.graph.fail_next(1, GraphFailure::Code(130429));
    assert_eq!(
        w.deliver(&text("wamid.G2", "hello again")).await.status(),
        200
    );
    pipeline::drain(&w.pipeline).await.unwrap();
    assert_eq!(w.rows().await[3].2, "queued", "waiting for its retry");
    assert_eq!(
        smartchat_core::jobs::count(&w.env.store.db, pipeline::QUEUE, "ready")
            .await
            .unwrap(),
        1
    );
}

async fn a_crash_between_commit_and_reply_loses_nothing(env: TestEnv) {
    let w = world(env).await;
    assert_eq!(
        w.deliver(&text("wamid.C1", "are you open today?"))
            .await
            .status(),
        200
    );
    // A worker claims the reply job and dies before finishing (its lease runs out).
    let claimed =
        smartchat_core::jobs::claim(&w.env.store.db, pipeline::QUEUE, Duration::from_millis(1))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(claimed.kind, "reply");
    tokio::time::sleep(Duration::from_millis(5)).await;
    // "After restart": a fresh pipeline on the same databases does the job, once.
    let restarted = Pipeline::new(w.env.store.clone(), &{
        let mut vars = std::collections::HashMap::new();
        vars.insert(
            "SMARTCHAT_META_GRAPH_URL".to_owned(),
            w.graph.base_url.clone(),
        );
        smartchat_core::config::Config::load_from(None, &vars).unwrap()
    })
    .unwrap();
    pipeline::drain(&restarted).await.unwrap();
    pipeline::drain(&restarted).await.unwrap();
    assert_eq!(w.graph.requests().len(), 1, "one reply, sent once");
    let rows = w.rows().await;
    assert_eq!(rows.iter().filter(|r| r.0 == "out").count(), 1);
}

/// Meta accepted the reply, then the database refused to record it for a moment: the send
/// job records it once the database answers again instead of failing, because the job's
/// retry would send the customer the same reply a second time (the Graph API has no
/// idempotency key).
async fn a_reply_meta_accepted_is_recorded_not_sent_again(env: TestEnv) {
    let w = world(env).await;
    w.llm.script_reply("We open at 10.");
    assert_eq!(
        w.deliver(&text("wamid.A1", "are you open today?"))
            .await
            .status(),
        200
    );
    // Only recording Meta's id of our message is refused.
    let refusal = smartchat_tests::refuse_writes(&w.env, "UPDATE OF wamid ON messages").await;
    let pipeline = w.pipeline.clone();
    let running = tokio::spawn(async move { pipeline::drain(&pipeline).await });
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while w.graph.requests().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the reply never reached Meta"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        outbound(&w).await,
        vec![("queued".to_owned(), None)],
        "Meta has the reply and recording it was refused"
    );
    refusal.lift().await;
    running.await.unwrap().unwrap();
    // Anything the send left due (a failed job's retry comes within a second) runs too.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    pipeline::drain(&w.pipeline).await.unwrap();
    assert_eq!(w.graph.requests().len(), 1, "the reply went to Meta once");
    let after = outbound(&w).await;
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].0, "sent");
    assert!(
        after[0]
            .1
            .as_deref()
            .is_some_and(|id| id.starts_with("wamid.")),
        "Meta's id recorded: {:?}",
        after[0].1
    );
    assert_no_job_left(&w).await;
    w.ledger.sequence_all().await.unwrap();
    assert_eq!(entries_of(&w, EventKind::MESSAGE_SENT).await, 1);
    verified_bundle(&w).await;
}

/// Four customers write at once and the AI provider is slow: the worker asks for the four
/// replies side by side (`SMARTCHAT_PIPELINE_CONCURRENCY`), and each reply is sent once. The
/// local provider holds every request until four are in flight (or 5 s have passed); one job
/// at a time, as a worker ran them before, never had more than one in flight.
async fn replies_wait_on_the_provider_side_by_side(env: TestEnv) {
    let w = world_with(env, &[("SMARTCHAT_PIPELINE_CONCURRENCY", "4")]).await;
    assert_eq!(w.pipeline.concurrency(), 4);
    w.llm.hold_until_in_flight(4, Duration::from_secs(5));
    for i in 0..4 {
        let who = WebhookUser::wa_id(&format!("91980000010{i}")).named("Customer");
        let delivery = meta().entry(PNID, "+91 80 0000 0000").text(
            &who,
            &format!("wamid.S{i}"),
            "do you do haircuts?",
        );
        assert_eq!(w.deliver(&delivery).await.status(), 200);
    }
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(pipeline::worker(w.pipeline.clone(), stop_rx));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while w.graph.requests().len() < 4 {
        assert!(
            std::time::Instant::now() < deadline,
            "the replies never all reached Meta"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(true).unwrap();
    worker.await.unwrap();
    // What the worker left queued when it stopped (the leads) runs too.
    pipeline::drain(&w.pipeline).await.unwrap();
    assert_eq!(
        w.llm.max_in_flight(),
        4,
        "the four replies were asked for at once"
    );
    assert_eq!(w.graph.requests().len(), 4, "each reply went to Meta once");
    let sent = outbound(&w).await;
    assert_eq!(sent.len(), 4);
    assert!(sent.iter().all(|(status, _)| status == "sent"), "{sent:?}");
    assert_no_job_left(&w).await;
    w.ledger.sequence_all().await.unwrap();
    assert_eq!(entries_of(&w, EventKind::MESSAGE_SENT).await, 4);
    verified_bundle(&w).await;
}

/// More concurrent deliveries than the pool has connections: each holds one connection for
/// its transaction and never waits for a second, so all complete (before the fix they held
/// every connection and waited for the pool's 30 s timeout, then failed with 503).
async fn concurrent_deliveries_beyond_the_pool_all_complete(env: TestEnv) {
    let w = world(env).await;
    let mut set = tokio::task::JoinSet::new();
    for i in 0..64 {
        let p = w.pipeline.clone();
        set.spawn(async move {
            let from: smartchat_core::ids::PhoneNumber = format!("9197000{i:05}").parse().unwrap();
            let payload = pipeline::sandbox_payload(PNID, &from, "price?").unwrap();
            pipeline::ingest(&p, &payload).await
        });
    }
    let all = tokio::time::timeout(Duration::from_secs(25), async {
        let mut n = 0;
        while let Some(r) = set.join_next().await {
            assert_eq!(r.unwrap().unwrap().messages, 1);
            n += 1;
        }
        n
    })
    .await
    .expect("no delivery waits for a second connection");
    assert_eq!(all, 64);
    assert_eq!(w.rows().await.len(), 64);
}

const METRICS_TOKEN: &str = "metrics-token-0123456789";

/// `GET /metrics` with `token` as the bearer: the status, and each sample by its name and
/// labels.
async fn metrics(
    w: &World,
    token: Option<&str>,
) -> (u16, std::collections::BTreeMap<String, f64>, String) {
    let mut req = w.http.get(format!("{}/metrics", w.base));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let head = format!(
        "{:?} {:?}",
        res.headers().get("content-type"),
        res.headers().get("www-authenticate")
    );
    let body = res.text().await.unwrap();
    let samples = body
        .lines()
        .filter(|_| status == 200)
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            (k.to_owned(), v.parse().unwrap())
        })
        .collect();
    (status, samples, format!("{head}\n{body}"))
}

async fn metrics_report_the_backlogs_behind_a_token(env: TestEnv) {
    let w = world_with(env, &[("SMARTCHAT_METRICS_TOKEN", METRICS_TOKEN)]).await;
    // No token, a wrong one, a forged prefix: 401 with a Bearer challenge, no figures.
    for t in [None, Some("metrics-token-012345678"), Some("wrong")] {
        let (status, samples, shown) = metrics(&w, t).await;
        assert_eq!(status, 401, "{shown}");
        assert!(shown.contains("Bearer realm"), "{shown}");
        assert!(
            samples.is_empty() || !shown.contains("smartchat_jobs"),
            "{shown}"
        );
    }
    let (status, m, shown) = metrics(&w, Some(METRICS_TOKEN)).await;
    assert_eq!(status, 200, "{shown}");
    assert!(shown.contains("text/plain; version=0.0.4"), "{shown}");
    let pending = count(&w, "ledger_pending").await as f64;
    assert!(pending >= 2.0, "tenant and key created");
    assert_eq!(m["smartchat_ledger_pending_entries"], pending, "{shown}");
    assert_eq!(m["smartchat_jobs{state=\"due\"}"], 0.0, "{shown}");
    assert!(!m.contains_key("smartchat_ledger_checkpoint_age_seconds"));

    // A customer writes: the reply job is due, its draft waits for the sequencer, the
    // message waits for the indexer.
    let res = w
        .deliver(&text("wamid.METRICS1", "do you have a slot on friday?"))
        .await;
    assert_eq!(res.status(), 200);
    let (_, m, shown) = metrics(&w, Some(METRICS_TOKEN)).await;
    assert_eq!(m["smartchat_jobs{state=\"due\"}"], 1.0, "{shown}");
    assert!(m["smartchat_jobs_oldest_due_seconds"] >= 0.0, "{shown}");
    assert_eq!(
        m["smartchat_ledger_pending_entries"],
        count(&w, "ledger_pending").await as f64
    );
    assert!(m["smartchat_ledger_pending_entries"] > pending, "{shown}");
    assert!(m["smartchat_search_feed_backlog"] >= 1.0, "{shown}");
    // Counts only: neither the customer's number nor the text.
    assert!(
        !shown.contains(CUSTOMER) && !shown.contains("friday"),
        "{shown}"
    );

    // The jobs run and the ledger is sequenced and signed: the backlogs empty.
    assert_eq!(pipeline::drain(&w.pipeline).await.unwrap(), 3);
    w.ledger.sequence_all().await.unwrap();
    w.ledger.checkpoint().await.unwrap();
    let (_, m, shown) = metrics(&w, Some(METRICS_TOKEN)).await;
    assert_eq!(m["smartchat_jobs{state=\"due\"}"], 0.0, "{shown}");
    assert_eq!(m["smartchat_jobs{state=\"done\"}"], 3.0, "{shown}");
    assert_eq!(m["smartchat_jobs{state=\"dead\"}"], 0.0, "{shown}");
    assert_eq!(m["smartchat_jobs_oldest_due_seconds"], 0.0, "{shown}");
    assert_eq!(m["smartchat_ledger_pending_entries"], 0.0, "{shown}");
    assert_eq!(
        m["smartchat_ledger_entries"],
        w.ledger.size().await.unwrap() as f64
    );
    assert!(
        m["smartchat_ledger_checkpoint_age_seconds"] >= 0.0,
        "{shown}"
    );
}

both_backends!(
    metrics_report_the_backlogs_behind_a_token,
    concurrent_deliveries_beyond_the_pool_all_complete,
    a_message_is_answered_end_to_end,
    bad_deliveries_are_refused_and_store_nothing,
    redeliveries_batches_and_unknown_numbers,
    provider_trouble_retries_then_fails_over,
    graph_errors_are_classified,
    a_crash_between_commit_and_reply_loses_nothing,
    a_reply_meta_accepted_is_recorded_not_sent_again,
    replies_wait_on_the_provider_side_by_side,
    a_batch_stores_what_its_deliveries_store_alone,
    a_failing_delivery_fails_alone,
    dropped_requests_leave_nothing_half_written,
    a_batch_confirms_its_routing_and_keys,
    a_status_move_decided_on_a_stale_read_commits_nothing,
);

async fn count(w: &World, table: &str) -> i64 {
    use smartchat_core::db::schema::{conversations, jobs, subjects};
    let mut c = w.env.store.db.conn().await.unwrap();
    match table {
        "subjects" => db_run!(c, |c| subjects::table.count().get_result(c).await),
        "conversations" => db_run!(c, |c| conversations::table.count().get_result(c).await),
        "messages" => db_run!(c, |c| messages::table.count().get_result(c).await),
        "jobs" => db_run!(c, |c| jobs::table.count().get_result(c).await),
        "ledger_pending" => db_run!(c, |c| ledger_pending::table.count().get_result(c).await),
        other => panic!("no table {other}"),
    }
    .unwrap()
}

/// The row counts of `tables`, in order.
async fn counts(w: &World, tables: &[&str]) -> Vec<i64> {
    let mut out = Vec::with_capacity(tables.len());
    for t in tables {
        out.push(count(w, t).await);
    }
    out
}

/// Asserts that no pipeline job is ready, running or dead.
async fn assert_no_job_left(w: &World) {
    for status in ["ready", "running", "dead"] {
        assert_eq!(
            smartchat_core::jobs::count(&w.env.store.db, pipeline::QUEUE, status)
                .await
                .unwrap(),
            0,
            "{status} jobs"
        );
    }
}

/// Our outbound messages' status and Meta's id, oldest first.
async fn outbound(w: &World) -> Vec<(String, Option<String>)> {
    w.rows()
        .await
        .into_iter()
        .filter(|r| r.0 == "out")
        .map(|r| (r.2, r.3))
        .collect()
}

async fn entries_of(w: &World, kind: EventKind) -> i64 {
    let mut c = w.env.store.db.conn().await.unwrap();
    db_run!(c, |c| ledger_entries::table
        .filter(ledger_entries::kind.eq(i32::from(kind.0)))
        .count()
        .get_result(c)
        .await)
    .unwrap()
}

/// Several deliveries stored as one batch (the webhook's group commit) are stored as each
/// would be alone: a customer's second message in the batch finds the subject and the
/// conversation the first one created, a redelivery inside the batch is recognised, an
/// identifier revealed later links to the stored subject, statuses of one message move it
/// forward once each and a late one changes nothing, an unknown number is only ledgered.
async fn a_batch_stores_what_its_deliveries_store_alone(env: TestEnv) {
    let w = world(env).await;
    // An earlier reply, so statuses have a message of ours to move.
    assert_eq!(w.deliver(&text("wamid.P1", "hi")).await.status(), 200);
    pipeline::drain(&w.pipeline).await.unwrap();
    let sent = w
        .rows()
        .await
        .into_iter()
        .find(|r| r.0 == "out")
        .and_then(|r| r.3)
        .expect("the reply was sent and has Meta's id");
    // A returning customer known by wa_id only so far.
    let known =
        meta()
            .entry(PNID, "+91")
            .text(&WebhookUser::wa_id("919811111111"), "wamid.K1", "hello");
    assert_eq!(w.deliver(&known).await.status(), 200);
    let (subjects_before, convs_before, messages_before) = (
        count(&w, "subjects").await,
        count(&w, "conversations").await,
        count(&w, "messages").await,
    );

    let new_customer = |wamid: &str, body: &str| {
        meta().entry(PNID, "+91").text(
            &WebhookUser::wa_id("919822222222").named("Ravi"),
            wamid,
            body,
        )
    };
    let status = |s: &str| {
        meta()
            .entry(PNID, "+91")
            .status(&WebhookUser::wa_id(CUSTOMER), &sent, s)
    };
    let builders = [
        new_customer("wamid.N1", "do you open on saturday?"),
        new_customer("wamid.N2", "and how do I book?"),
        new_customer("wamid.N1", "do you open on saturday?"),
        meta().entry(PNID, "+91").text(
            &WebhookUser::both("919811111111", "IN.bsuidK1"),
            "wamid.K2",
            "it's me again",
        ),
        meta().entry(PNID, "+91").text(
            &WebhookUser::bsuid("IN.bsuidK1"),
            "wamid.K3",
            "and again, without my number",
        ),
        status("delivered"),
        status("read"),
        status("delivered"),
        meta()
            .entry("999999", "+1")
            .text(&WebhookUser::wa_id(CUSTOMER), "wamid.U1", "hello?"),
    ];
    let payloads: Vec<_> = builders
        .iter()
        .map(|b| smartchat_whatsapp::parse_payload(&b.signed(SECRET.as_bytes()).0).unwrap())
        .collect();
    let refs: Vec<_> = payloads.iter().collect();
    let outs = pipeline::ingest_batch(&w.pipeline, &refs).await.unwrap();
    let message = |messages| pipeline::Ingested {
        messages,
        ..Default::default()
    };
    assert_eq!(
        outs,
        vec![
            message(1),
            message(1),
            pipeline::Ingested {
                duplicates: 1,
                ..Default::default()
            },
            message(1),
            message(1),
            pipeline::Ingested {
                statuses: 1,
                ..Default::default()
            },
            pipeline::Ingested {
                statuses: 1,
                ..Default::default()
            },
            pipeline::Ingested {
                stale_statuses: 1,
                ..Default::default()
            },
            pipeline::Ingested {
                unknown_numbers: 1,
                ..Default::default()
            },
        ]
    );
    assert_eq!(
        count(&w, "subjects").await,
        subjects_before + 1,
        "one new customer"
    );
    assert_eq!(
        count(&w, "conversations").await,
        convs_before + 1,
        "the new customer's two messages share one conversation, the known one keeps hers"
    );
    assert_eq!(count(&w, "messages").await, messages_before + 4);
    let rows = w.rows().await;
    let out = rows.iter().find(|r| r.3.as_deref() == Some(sent.as_str()));
    assert_eq!(
        out.map(|r| r.2.as_str()),
        Some("read"),
        "read is final here"
    );
    // The identifier revealed later finds the same subject afterwards too.
    let by_bsuid = w
        .env
        .store
        .find_subject(
            tenant_of(&w).await,
            smartchat_core::crypto::BlindKind::Bsuid,
            "IN.bsuidK1",
        )
        .await
        .unwrap();
    let by_wa = w
        .env
        .store
        .find_subject(
            tenant_of(&w).await,
            smartchat_core::crypto::BlindKind::WaId,
            "919811111111",
        )
        .await
        .unwrap();
    assert!(by_bsuid.is_some());
    assert_eq!(by_bsuid, by_wa);
    // The bodies are sealed and open again, in the order they arrived.
    let ravi = w
        .env
        .store
        .find_subject(
            tenant_of(&w).await,
            smartchat_core::crypto::BlindKind::WaId,
            "919822222222",
        )
        .await
        .unwrap()
        .unwrap();
    let history = w
        .env
        .store
        .subject_messages(tenant_of(&w).await, ravi)
        .await
        .unwrap();
    let bodies: Vec<_> = history.iter().filter_map(|m| m.body.clone()).collect();
    assert_eq!(
        bodies,
        vec!["do you open on saturday?", "and how do I book?"],
        "stored once each, in delivery order"
    );
    // One reply job per new message (wamid.K1's still waits: nothing drained since); the
    // ledger holds each entry once.
    assert_eq!(
        smartchat_core::jobs::count(&w.env.store.db, pipeline::QUEUE, "ready")
            .await
            .unwrap(),
        1 + 4
    );
    w.ledger.sequence_all().await.unwrap();
    assert_eq!(entries_of(&w, EventKind::MESSAGE_STATUS).await, 2);
    assert_eq!(entries_of(&w, EventKind::UNKNOWN_PHONE_NUMBER).await, 1);
    assert_eq!(
        entries_of(&w, EventKind::MESSAGE_RECEIVED).await,
        messages_before - 1 + 4,
        "one per inbound message (the reply is not one)"
    );
    verified_bundle(&w).await;
}

async fn tenant_of(w: &World) -> smartchat_core::ids::TenantId {
    w.env
        .store
        .tenant_for_number(&PNID.parse().unwrap())
        .await
        .unwrap()
}

/// A batch that fails stores nothing of any of its deliveries; through the group commit the
/// failing delivery fails alone and the others are stored.
async fn a_failing_delivery_fails_alone(env: TestEnv) {
    let w = world(env).await;
    let bad_sender = WebhookUser::wa_id("919833333333");
    let first = meta()
        .entry(PNID, "+91")
        .text(&bad_sender, "wamid.S1", "first");
    assert_eq!(w.deliver(&first).await.status(), 200);
    // The subject's key is gone while its blind index stays: its next message cannot be
    // sealed (a damaged row, not a shredded subject, whose blind indexes go with the key).
    {
        use smartchat_core::db::schema::subject_keys;
        let mut c = w.env.store.db.conn().await.unwrap();
        db_run!(c, |c| diesel::delete(subject_keys::table).execute(c).await).unwrap();
    }
    let before = counts(&w, &["messages", "subjects", "jobs", "ledger_pending"]).await;
    let good = |n: u32| {
        let b = meta().entry(PNID, "+91").text(
            &WebhookUser::wa_id(&format!("91984444444{n}")),
            &format!("wamid.G{n}"),
            "a good one",
        );
        smartchat_whatsapp::parse_payload(&b.signed(SECRET.as_bytes()).0).unwrap()
    };
    let bad = smartchat_whatsapp::parse_payload(
        &meta()
            .entry(PNID, "+91")
            .text(&bad_sender, "wamid.S2", "second")
            .signed(SECRET.as_bytes())
            .0,
    )
    .unwrap();
    let (g1, g2) = (good(1), good(2));
    let err = pipeline::ingest_batch(&w.pipeline, &[&g1, &bad, &g2])
        .await
        .unwrap_err();
    assert!(
        matches!(err, smartchat_core::CoreError::Shredded { .. }),
        "{err:?}"
    );
    let after = counts(&w, &["messages", "subjects", "jobs", "ledger_pending"]).await;
    assert_eq!(after, before, "nothing of the batch was written");

    let commit = pipeline::GroupCommit::start(w.pipeline.clone());
    let (a, b, c) = tokio::join!(
        commit.ingest(g1.clone()),
        commit.ingest(bad.clone()),
        commit.ingest(g2.clone())
    );
    assert_eq!(a.unwrap().messages, 1);
    assert!(matches!(
        b.unwrap_err(),
        smartchat_core::CoreError::Shredded { .. }
    ));
    assert_eq!(c.unwrap().messages, 1);
    assert_eq!(count(&w, "messages").await, before[0] + 2);
    // Over HTTP the failure is a 5xx (Meta retries), the good deliveries 200.
    let fine = meta().entry(PNID, "+91").text(
        &WebhookUser::wa_id("919855555555"),
        "wamid.H1",
        "over http",
    );
    let broken = meta()
        .entry(PNID, "+91")
        .text(&bad_sender, "wamid.S3", "third");
    let (r1, r2) = tokio::join!(w.deliver(&fine), w.deliver(&broken));
    assert_eq!(r1.status(), 200);
    assert_eq!(
        r2.status(),
        410,
        "the damaged subject's delivery alone fails"
    );
    assert_eq!(count(&w, "messages").await, before[0] + 3);
}

/// Requests dropped while their delivery waits in the group commit (a client that hung
/// up) leave nothing half-written: each such delivery is stored whole, with its jobs, or not
/// at all, and the answered ones are all stored.
async fn dropped_requests_leave_nothing_half_written(env: TestEnv) {
    let w = world(env).await;
    // One committer: a delivery queued after the others is stored after them.
    let commit = pipeline::GroupCommit::with_committers(w.pipeline.clone(), 1);
    let payload_of = |i: u32| {
        let b = meta().entry(PNID, "+91").text(
            &WebhookUser::wa_id(&format!("9198666{i:05}")),
            &format!("wamid.W{i}"),
            "counted",
        );
        smartchat_whatsapp::parse_payload(&b.signed(SECRET.as_bytes()).0).unwrap()
    };
    let mut answered = tokio::task::JoinSet::new();
    let mut dropped = Vec::new();
    for i in 0..40u32 {
        let payload = payload_of(i);
        let c = commit.clone();
        if i % 4 == 0 {
            dropped.push(tokio::spawn(async move { c.ingest(payload).await }));
        } else {
            answered.spawn(async move { c.ingest(payload).await });
        }
    }
    tokio::task::yield_now().await;
    for d in &dropped {
        d.abort();
    }
    let mut n = 0;
    while let Some(r) = answered.join_next().await {
        assert_eq!(r.unwrap().unwrap().messages, 1);
        n += 1;
    }
    assert_eq!(n, 30);
    for d in dropped {
        let _ = d.await;
    }
    // Queued last, stored last: everything queued before it is settled when it returns.
    assert_eq!(commit.ingest(payload_of(99)).await.unwrap().messages, 1);
    let stored = count(&w, "messages").await;
    assert!(
        (31..=41).contains(&stored),
        "every answered delivery is stored ({stored})"
    );
    assert_eq!(
        count(&w, "jobs").await,
        stored,
        "each stored message has its reply job"
    );
}

#[derive(QueryableByName)]
struct PlanCounts {
    #[diesel(sql_type = diesel::sql_types::Text)]
    statement: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    generic_plans: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    custom_plans: i64,
}

#[derive(QueryableByName)]
struct Prepared {
    #[diesel(sql_type = diesel::sql_types::Text)]
    name: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    statement: String,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    params: i32,
}

#[derive(QueryableByName)]
struct IndexedColumn {
    #[diesel(sql_type = diesel::sql_types::Text)]
    tbl: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    col: String,
}

#[derive(QueryableByName)]
struct PlanLine {
    #[diesel(sql_type = diesel::sql_types::Text)]
    #[diesel(column_name = "QUERY PLAN")]
    line: String,
}

/// On PostgreSQL every statement of the webhook batch (reads, updates, inserts) is planned
/// once per connection, and that one plan walks indexes although it was made while the
/// tables were nearly empty: `pg_prepared_statements` counts the plans per statement on
/// the (single) connection the batches ran on, and each statement's kept plan is read back
/// with `EXPLAIN`; the updates change no indexed column. A conversation the batch creates is
/// inserted with its customer service window open (the reply goes out free-form).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_batch_keeps_one_index_plan_per_statement_on_postgres() {
    use smartchat_core::db::schema::conversations;
    use smartchat_core::db::{DbPool, OpenOptions};
    let env = TestEnv::new(smartchat_tests::Backend::Postgres).await;
    env.store
        .create_tenant(NewTenant {
            handle: "glow-salon".parse::<Handle>().unwrap(),
            profile: Profile(profile()),
            phone_number_id: Some(PNID.parse::<PhoneNumberId>().unwrap()),
            access_token: None,
        })
        .await
        .unwrap();
    let one = OpenOptions {
        max_connections: 1,
        ..OpenOptions::default()
    };
    let db = DbPool::open(&env.db_url, &one).await.unwrap();
    let platform = std::sync::Arc::new(smartchat_policies::Policy::platform_default().unwrap());
    let store = smartchat_core::store::Store::new(db.clone(), env.store.keys.clone(), platform);
    let p = Pipeline::new(store, &env.config()).unwrap();
    let signed = |b: &WebhookBuilder| {
        smartchat_whatsapp::parse_payload(&b.signed(SECRET.as_bytes()).0).unwrap()
    };
    // The customer's first message, then eight replies of ours already sent (as the send
    // job leaves them) for Meta's statuses to move.
    let first = signed(&text("wamid.F", "hi"));
    pipeline::ingest_batch(&p, &[&first]).await.unwrap();
    let mut c = db.conn().await.unwrap();
    let smartchat_core::db::Raw::Pg(pg) = c.raw() else {
        panic!("a PostgreSQL connection")
    };
    diesel::sql_query(
        "INSERT INTO messages (id, tenant_id, conversation_id, subject_id, direction, kind, \
         status, wamid, author, created_at, status_at) \
         SELECT gen_random_uuid()::text, tenant_id, conversation_id, subject_id, 'out', 'text', 'sent', \
         'wamid.OUT' || n, 'assistant', created_at, created_at \
         FROM messages, generate_series(0, 7) AS n WHERE wamid = 'wamid.F'",
    )
    .execute(pg)
    .await
    .unwrap();
    drop(c);
    let user = WebhookUser::wa_id(CUSTOMER);
    for i in 0..8 {
        // The same customer again (a stored conversation's window moves), a new customer, a
        // redelivery, and a status of one of our replies.
        let builders = [
            text(&format!("wamid.G{i}"), "hello"),
            meta().entry(PNID, "+91").text(
                &WebhookUser::wa_id(&format!("91977000{i:04}")).named("New"),
                &format!("wamid.H{i}"),
                "do you open on saturday?",
            ),
            text(&format!("wamid.G{i}"), "hello"),
            meta()
                .entry(PNID, "+91")
                .status(&user, &format!("wamid.OUT{i}"), "delivered"),
        ];
        let payloads: Vec<_> = builders.iter().map(signed).collect();
        let refs: Vec<_> = payloads.iter().collect();
        let outs = pipeline::ingest_batch(&p, &refs).await.unwrap();
        assert_eq!(outs.iter().map(|o| o.messages).sum::<usize>(), 2);
        assert_eq!(outs[2].duplicates, 1);
        assert_eq!(outs[3].statuses, 1);
    }
    let mut c = db.conn().await.unwrap();
    let smartchat_core::db::Raw::Pg(pg) = c.raw() else {
        panic!("a PostgreSQL connection")
    };
    let plans: Vec<PlanCounts> = diesel::sql_query(
        "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements",
    )
    .load(pg)
    .await
    .unwrap();
    let statements = [
        "SELECT tenant_id, wamid, id, status FROM messages WHERE wamid = ANY($1::text[])",
        "SELECT tenant_id, wamid, id, status FROM messages WHERE wamid = ANY($1::text[]) FOR",
        "SELECT s.tenant_id, s.id",
        "WITH moved AS (UPDATE messages",
        "UPDATE conversations",
        "INSERT INTO messages",
        "INSERT INTO conversations",
        "INSERT INTO jobs",
        "INSERT INTO search_feed",
        "INSERT INTO ledger_pending",
        "WITH v AS",
        "SELECT phone_number_id, tenant_id FROM phone_numbers",
    ];
    let find = |start: &str| {
        let found: Vec<&PlanCounts> = plans
            .iter()
            .filter(|p| {
                p.statement.starts_with(start)
                    && (start.ends_with("FOR") || !p.statement[start.len()..].starts_with(" FOR"))
            })
            .collect();
        assert_eq!(found.len(), 1, "one prepared statement starting {start:?}");
        found[0]
    };
    for start in statements {
        let s = find(start);
        assert_eq!(s.custom_plans, 0, "{start}: planned once, not per run");
        assert!(s.generic_plans >= 1, "{start}: {}", s.generic_plans);
    }
    // The kept plans, as the batch's transaction made them.
    let prepared: Vec<Prepared> = diesel::sql_query(
        "SELECT name, statement, coalesce(array_length(parameter_types, 1), 0) AS params \
         FROM pg_prepared_statements",
    )
    .load(pg)
    .await
    .unwrap();
    diesel::sql_query("SET plan_cache_mode = force_generic_plan")
        .execute(pg)
        .await
        .unwrap();
    let mut read = Vec::new();
    for start in statements {
        let s = prepared
            .iter()
            .find(|p| p.statement == find(start).statement)
            .unwrap();
        let nulls = vec!["NULL"; usize::try_from(s.params).unwrap()].join(", ");
        let lines: Vec<PlanLine> =
            diesel::sql_query(format!("EXPLAIN EXECUTE {}({nulls})", s.name))
                .load(pg)
                .await
                .unwrap();
        let plan: Vec<String> = lines.into_iter().map(|l| l.line).collect();
        let plan = plan.join("\n");
        for bad in ["Seq Scan", "Hash Join", "Merge Join"] {
            assert!(!plan.contains(bad), "{start}: {bad} in\n{plan}");
        }
        read.push(plan);
    }
    diesel::sql_query("RESET plan_cache_mode")
        .execute(pg)
        .await
        .unwrap();
    for (plan, index) in [
        (&read[0], "messages_wamid_tenant"),
        (&read[1], "messages_wamid_tenant"),
        (&read[2], "subjects_wa_id_blind_tenant"),
        (&read[2], "subjects_bsuid_blind_tenant"),
        (&read[2], "conversations_subject"),
        (&read[3], "messages_pkey"),
        (&read[4], "conversations_pkey"),
        (&read[11], "phone_numbers_pkey"),
    ] {
        assert!(plan.contains(index), "{index} not in\n{plan}");
    }
    // The window moves and status moves change no indexed column, so they can stay on their
    // page (heap-only updates, which write no index entry).
    let indexed: Vec<IndexedColumn> = diesel::sql_query(
        "SELECT c.relname AS tbl, a.attname AS col FROM pg_index AS i \
         JOIN pg_class AS c ON c.oid = i.indrelid \
         JOIN pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
         WHERE c.relname IN ('conversations', 'messages')",
    )
    .load(pg)
    .await
    .unwrap();
    assert!(
        indexed
            .iter()
            .any(|i| i.tbl == "conversations" && i.col == "tenant_id")
    );
    for (tbl, col) in [
        ("conversations", "last_inbound_at"),
        ("conversations", "updated_at"),
        ("messages", "status"),
        ("messages", "status_at"),
        ("messages", "error_code"),
    ] {
        assert!(
            !indexed.iter().any(|i| i.tbl == tbl && i.col == col),
            "{tbl}.{col} is indexed"
        );
    }
    // Every status moved.
    let moved: i64 = db_run!(c, |c| messages::table
        .filter(messages::direction.eq("out"))
        .filter(messages::status.eq("delivered"))
        .count()
        .get_result(c)
        .await)
    .unwrap();
    assert_eq!(moved, 8);
    // Every conversation, new or stored, has its window open at its newest message.
    let rows: Vec<(Option<i64>, i64, i64)> = db_run!(c, |c| conversations::table
        .select((
            conversations::last_inbound_at,
            conversations::created_at,
            conversations::updated_at
        ))
        .load(c)
        .await)
    .unwrap();
    assert_eq!(rows.len(), 9);
    for (window, created, updated) in rows {
        let window = window.expect("the window is open");
        assert!(
            window > 0 && updated >= created,
            "{window} {created} {updated}"
        );
    }
}

/// The webhook keeps the numbers' tenants and keys it read (so a batch needs no reads before
/// its transaction), but every batch confirms them: a number another process moved to
/// another tenant is stored under that tenant, and a key another process shredded stops the
/// batch, nothing written.
async fn a_batch_confirms_its_routing_and_keys(env: TestEnv) {
    use smartchat_core::db::schema::keystore::tenant_keys;
    use smartchat_core::db::schema::phone_numbers;
    let w = world(env).await;
    let first = tenant_of(&w).await;
    let signed = |b: &WebhookBuilder| {
        smartchat_whatsapp::parse_payload(&b.signed(SECRET.as_bytes()).0).unwrap()
    };
    let one = signed(&text("wamid.R1", "hello"));
    pipeline::ingest_batch(&w.pipeline, &[&one]).await.unwrap();
    // Another process moves the number to a second tenant, behind this one's back.
    let second = w
        .env
        .store
        .create_tenant(NewTenant {
            handle: "other-salon".parse::<Handle>().unwrap(),
            profile: Profile(profile()),
            phone_number_id: None,
            access_token: None,
        })
        .await
        .unwrap();
    assert_ne!(first, second);
    let mut c = w.env.store.db.conn().await.unwrap();
    let moved = db_run!(c, |c| diesel::update(phone_numbers::table.find(PNID))
        .set(phone_numbers::tenant_id.eq(second.to_string()))
        .execute(c)
        .await)
    .unwrap();
    assert_eq!(moved, 1);
    drop(c);
    let two = signed(&text("wamid.R2", "hello again"));
    let out = pipeline::ingest_batch(&w.pipeline, &[&two]).await.unwrap();
    assert_eq!(out[0].messages, 1);
    let owner_of = |wamid: &'static str| {
        let db = w.env.store.db.clone();
        async move {
            let mut c = db.conn().await.unwrap();
            db_run!(c, |c| messages::table
                .filter(messages::wamid.eq(wamid))
                .select(messages::tenant_id)
                .first::<String>(c)
                .await)
            .unwrap()
        }
    };
    assert_eq!(owner_of("wamid.R1").await, first.to_string());
    assert_eq!(
        owner_of("wamid.R2").await,
        second.to_string(),
        "stored under the number's tenant now"
    );
    // Another process shreds the second tenant's key (this process's key caches are not
    // told: the row is changed directly).
    let mut k = w.env.store.keys.store().conn().await.unwrap();
    let shredded = db_run!(k, |c| diesel::update(
        tenant_keys::table.find(second.to_string())
    )
    .set(tenant_keys::wrapped_identity.eq(None::<Vec<u8>>))
    .execute(c)
    .await)
    .unwrap();
    assert_eq!(shredded, 1);
    drop(k);
    let before = counts(&w, &["messages", "jobs", "ledger_pending"]).await;
    let three = signed(&text("wamid.R3", "still there?"));
    let err = pipeline::ingest_batch(&w.pipeline, &[&three])
        .await
        .unwrap_err();
    assert!(
        matches!(err, smartchat_core::CoreError::Shredded { .. }),
        "{err:?}"
    );
    let after = counts(&w, &["messages", "jobs", "ledger_pending"]).await;
    assert_eq!(after, before, "nothing of the batch was written");
}

/// A batch's status move is guarded by the status it was decided on; if the stored status
/// is another, the batch is a conflict and nothing of it is committed (on PostgreSQL the
/// check raises inside the transaction, ahead of the pipelined COMMIT).
async fn a_status_move_decided_on_a_stale_read_commits_nothing(env: TestEnv) {
    use smartchat_core::batch::BatchWrites;
    use smartchat_ledger::{Actor, EntryDraft};
    let w = world(env).await;
    assert_eq!(w.deliver(&text("wamid.T1", "hi")).await.status(), 200);
    let mut c = w.env.store.db.conn().await.unwrap();
    let id: String = db_run!(c, |c| messages::table
        .filter(messages::wamid.eq("wamid.T1"))
        .select(messages::id)
        .first(c)
        .await)
    .unwrap();
    drop(c);
    let id: smartchat_core::ids::MessageId = id.parse().unwrap();
    let pending = count(&w, "ledger_pending").await;
    let status_now = |w: &World| {
        let db = w.env.store.db.clone();
        async move {
            let mut c = db.conn().await.unwrap();
            db_run!(c, |c| messages::table
                .filter(messages::wamid.eq("wamid.T1"))
                .select(messages::status)
                .first::<String>(c)
                .await)
            .unwrap()
        }
    };
    let store = &w.env.store;
    let empty = std::collections::HashMap::new();
    let no_blinds = std::collections::HashMap::new();
    for (from, stored) in [("sent", false), ("received", true)] {
        let (tx, _) = store
            .open_batch(&[], &empty, &empty, &no_blinds)
            .await
            .unwrap();
        let mut batch = BatchWrites::default();
        batch.status(id, from, "delivered", None, 1);
        batch.draft(EntryDraft::new(EventKind::MESSAGE_STATUS, Actor::Meta));
        let res = store.commit_batch(tx, batch).await;
        if stored {
            res.unwrap();
            assert_eq!(status_now(&w).await, "delivered");
            assert_eq!(count(&w, "ledger_pending").await, pending + 1);
        } else {
            let err = res.unwrap_err();
            assert!(
                matches!(
                    err,
                    smartchat_core::CoreError::Conflict {
                        what: "message status"
                    }
                ),
                "{err:?}"
            );
            assert_eq!(status_now(&w).await, "received", "not moved");
            assert_eq!(
                count(&w, "ledger_pending").await,
                pending,
                "its ledger draft not kept"
            );
        }
    }
}
