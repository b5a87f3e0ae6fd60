//! The owner's side of a conversation on both backends (issue 5): taking a conversation
//! over from the assistant, replying by hand, handing it back; the 24-hour window refusing a
//! hand-written reply with nothing stored; roles and tenant isolation; the per-tenant
//! provider chain; the sandbox endpoint.

use smartchat_api::app::{AppState, router};
use smartchat_api::auth::{AuthState, OneTimeLogin};
use smartchat_api::boot::Services;
use smartchat_api::pipeline::{self, Pipeline};
use smartchat_assistant::fake::FakeLlm;
use smartchat_core::ids::{Handle, PhoneNumberId, TenantId};
use smartchat_core::ledger_store::Ledger;
use smartchat_core::members::{Members, Role};
use smartchat_core::store::{NewTenant, Profile};
use smartchat_ledger::{Actor, EventKind};
use smartchat_tests::{Session, TestEnv, both_backends};
use smartchat_whatsapp::fake::{FakeGraph, WebhookBuilder, WebhookUser};

const SECRET: &str = "test-app-secret";
const PNID: &str = "2000001";
const TOKEN: &str = "EAAGconvtoken";
const CUSTOMER: &str = "919811112222";

struct World {
    env: TestEnv,
    config: smartchat_core::config::Config,
    pipeline: Pipeline,
    ledger: Ledger,
    graph: FakeGraph,
    openai: FakeLlm,
    deepseek: FakeLlm,
    tenant: TenantId,
    /// The webhook's server.
    base: String,
}

fn profile(name: &str) -> serde_json::Value {
    serde_json::json!({
        "name": name,
        "business_type": "salon",
        "timezone": "Asia/Kolkata",
        "hours": { "saturday": [{"open": "09:00", "close": "17:00"}] },
        "booking_links": [{"label": "Book online", "url": "https://book.example.com/glow"}],
        "handoff_message": "Our team will reply shortly."
    })
}

async fn tenant(env: &TestEnv, handle: &str, pnid: &str, token: Option<&str>) -> TenantId {
    env.store
        .create_tenant(NewTenant {
            handle: handle.parse::<Handle>().unwrap(),
            profile: Profile(profile("Glow Salon")),
            phone_number_id: Some(pnid.parse::<PhoneNumberId>().unwrap()),
            access_token: Some(smartchat_core::config::Secret::new(token.unwrap_or(""))),
        })
        .await
        .unwrap()
}

async fn world(env: TestEnv) -> World {
    let graph = FakeGraph::start().await.unwrap();
    graph.register(PNID, TOKEN);
    let openai = FakeLlm::start().await.unwrap();
    let deepseek = FakeLlm::start().await.unwrap();
    openai.script_reply("openai answers");
    deepseek.script_reply("deepseek answers");
    let tenant = tenant(&env, "glow-salon", PNID, Some(TOKEN)).await;
    let vars: std::collections::HashMap<String, String> = [
        ("SMARTCHAT_META_APP_SECRET", SECRET),
        ("SMARTCHAT_META_GRAPH_URL", graph.base_url.as_str()),
        ("SMARTCHAT_OPENAI_API_KEY", openai.api_key.as_str()),
        ("SMARTCHAT_OPENAI_BASE_URL", openai.base_url.as_str()),
        ("SMARTCHAT_DEEPSEEK_API_KEY", deepseek.api_key.as_str()),
        ("SMARTCHAT_DEEPSEEK_BASE_URL", deepseek.base_url.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let config = smartchat_core::config::Config::load_from(None, &vars).unwrap();
    let ledger = Ledger::open(env.store.db.clone(), &env.store.keys, "test/ledger")
        .await
        .unwrap();
    let pipeline = Pipeline::new(env.store.clone(), &config).unwrap();
    let mut w = World {
        env,
        config,
        pipeline,
        ledger,
        graph,
        openai,
        deepseek,
        tenant,
        base: String::new(),
    };
    w.base = w.serve().await;
    w
}

impl World {
    /// The app on the same databases, with its own one-time login link.
    fn app(&self) -> (axum::Router, String) {
        let (otl, token) = OneTimeLogin::generate();
        let state = AppState::new(
            Services {
                store: self.env.store.clone(),
                ledger: self.ledger.clone(),
            },
            self.pipeline.clone(),
            AuthState::local(self.env.store.clone(), otl),
            &self.config,
        );
        (router(state), token)
    }

    /// Starts one more server on the same databases; returns its base URL.
    async fn serve(&self) -> String {
        let (app, _) = self.app();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        base
    }

    /// Logs the local operator in as owner of `tenant`.
    async fn login(&self, tenant: TenantId) -> Session {
        let (app, token) = self.app();
        Session::start(app, &token, tenant).await
    }

    async fn deliver(&self, b: &WebhookBuilder) {
        let (body, sig) = b.signed(SECRET.as_bytes());
        let res = reqwest::Client::new()
            .post(format!("{}/webhooks/whatsapp", self.base))
            .header("content-type", "application/json")
            .header("x-hub-signature-256", sig)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }

    async fn customer_says(&self, wamid: &str, body: &str) {
        self.customer_says_at(wamid, body, now_secs()).await;
    }

    async fn customer_says_at(&self, wamid: &str, body: &str, at: i64) {
        let b = WebhookBuilder::new().at(at).entry(PNID, "+91").text(
            &WebhookUser::wa_id(CUSTOMER).named("Asha Customer"),
            wamid,
            body,
        );
        self.deliver(&b).await;
    }

    async fn kinds(&self) -> Vec<(EventKind, Actor)> {
        self.ledger.sequence_all().await.unwrap();
        self.ledger
            .entries(0, self.ledger.size().await.unwrap())
            .await
            .unwrap()
            .iter()
            .map(|e| (e.entry.draft.kind, e.entry.draft.actor))
            .collect()
    }
}

async fn only_conversation(s: &Session) -> String {
    let (status, list) = s.get("/api/v1/conversations").await;
    assert_eq!(status, 200, "{list}");
    let convs = list["conversations"].as_array().unwrap();
    assert_eq!(convs.len(), 1, "{list}");
    convs[0]["id"].as_str().unwrap().to_owned()
}

async fn messages(s: &Session, conv: &str) -> Vec<serde_json::Value> {
    let (status, v) = s
        .get(&format!("/api/v1/conversations/{conv}/messages"))
        .await;
    assert_eq!(status, 200, "{v}");
    v["messages"].as_array().unwrap().clone()
}

/// Reply requests a fake provider received (lead extractions, which ask for structured
/// output, left out).
fn replies(llm: &FakeLlm) -> usize {
    llm.requests()
        .iter()
        .filter(|r| r.body.get("response_format").is_none())
        .count()
}

fn now_secs() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

async fn an_owner_takes_over_replies_by_hand_and_hands_back(env: TestEnv) {
    let w = world(env).await;
    // The assistant answers the first message (the tenant's chain: offline only here, so
    // no provider is asked).
    w.env
        .store
        .set_provider_chain(w.tenant, Some(&[]), Actor::System)
        .await
        .unwrap();
    w.customer_says("wamid.c1", "what time do you open on saturday?")
        .await;
    assert_eq!(
        pipeline::drain(&w.pipeline).await.unwrap(),
        3,
        "reply, lead, send"
    );
    assert_eq!(w.graph.requests().len(), 1);
    assert_eq!(w.openai.request_count() + w.deepseek.request_count(), 0);

    let s = w.login(w.tenant).await;
    let (status, list) = s.get("/api/v1/conversations").await;
    assert_eq!(status, 200);
    assert_eq!(list["conversations"][0]["mode"], "assistant");
    assert_eq!(list["conversations"][0]["customer_name"], "Asha Customer");
    assert_eq!(list["conversations"][0]["customer_wa_id"], CUSTOMER);
    let conv = only_conversation(&s).await;

    // Without the CSRF header a portal session cannot change anything.
    let (status, _) = s
        .send(
            reqwest::Method::POST,
            &format!("/api/v1/conversations/{conv}/takeover"),
            None,
            false,
        )
        .await;
    assert_eq!(status, 403);
    let (status, v) = s
        .post(&format!("/api/v1/conversations/{conv}/takeover"), None)
        .await;
    assert_eq!(
        (status, v["mode"].as_str(), v["changed"].as_bool()),
        (200, Some("human"), Some(true))
    );
    let (_, v) = s
        .post(&format!("/api/v1/conversations/{conv}/takeover"), None)
        .await;
    assert_eq!(v["changed"], false, "taking over twice changes nothing");

    // Taken over: the customer's next message gets no assistant reply.
    w.customer_says("wamid.c2", "can I speak to Priya?").await;
    assert_eq!(
        pipeline::drain(&w.pipeline).await.unwrap(),
        2,
        "reply and lead jobs, nothing to send"
    );
    assert_eq!(w.graph.requests().len(), 1, "nothing sent");

    // The owner replies by hand: stored, queued, sent with the tenant's token.
    let hand = "Hi Asha, Priya here. Saturday 11:00 works.";
    let (status, v) = s
        .post(
            &format!("/api/v1/conversations/{conv}/messages"),
            Some(serde_json::json!({ "text": hand })),
        )
        .await;
    assert_eq!(status, 202, "{v}");
    assert_eq!(v["status"], "queued");
    assert_eq!(pipeline::drain(&w.pipeline).await.unwrap(), 1, "send job");
    let sent = w.graph.requests();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[1].body.as_ref().unwrap()["text"]["body"], hand);
    assert_eq!(sent[1].body.as_ref().unwrap()["to"], CUSTOMER);

    // Bad texts are refused with nothing stored.
    let before = messages(&s, &conv).await.len();
    for (body, code) in [
        (serde_json::json!({ "text": "   " }), 422),
        (serde_json::json!({ "text": "x".repeat(4097) }), 422),
        (serde_json::json!({ "txt": "hello" }), 422),
    ] {
        let (status, v) = s
            .post(
                &format!("/api/v1/conversations/{conv}/messages"),
                Some(body),
            )
            .await;
        assert_eq!(status, code, "{v}");
        assert!(v["detail"].as_str().is_some_and(|d| !d.is_empty()), "{v}");
    }
    let res = s
        .http
        .post(format!("{}/api/v1/conversations/{conv}/messages", s.base))
        .header("x-csrf-token", &s.csrf)
        .header("content-type", "application/json")
        .body("{\"text\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(
        res.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    assert_eq!(messages(&s, &conv).await.len(), before);

    // The owner sees the whole conversation, in order, with authors and states.
    let msgs = messages(&s, &conv).await;
    let authors: Vec<&str> = msgs.iter().map(|m| m["author"].as_str().unwrap()).collect();
    assert_eq!(authors, ["customer", "assistant", "customer", "human"]);
    assert_eq!(msgs[3]["body"], hand);
    assert_eq!(msgs[3]["status"], "sent");
    assert_eq!(msgs[2]["body"], "can I speak to Priya?");

    // Handed back: the assistant answers again.
    let (status, v) = s
        .post(&format!("/api/v1/conversations/{conv}/handback"), None)
        .await;
    assert_eq!((status, v["mode"].as_str()), (200, Some("assistant")));
    w.customer_says("wamid.c3", "how do I book?").await;
    assert_eq!(pipeline::drain(&w.pipeline).await.unwrap(), 3);
    let sent = w.graph.requests();
    assert_eq!(sent.len(), 3);
    let answer = sent[2].body.as_ref().unwrap()["text"]["body"]
        .as_str()
        .unwrap()
        .to_owned();
    // The booking link goes out tracked (`/b/<token>`), never as the raw URL.
    assert!(
        answer.contains("You can book here: http://127.0.0.1:8080/b/")
            && !answer.contains("https://book.example.com/glow"),
        "{answer}"
    );

    // Ledgered with the member as actor; the hand-written text is nowhere at rest.
    let me = Actor::Member(s.member.bytes());
    let kinds = w.kinds().await;
    for k in [
        EventKind::CONVERSATION_TAKEN_OVER,
        EventKind::HUMAN_REPLY,
        EventKind::CONVERSATION_HANDED_BACK,
    ] {
        assert_eq!(
            kinds.iter().filter(|(kk, a)| *kk == k && *a == me).count(),
            1,
            "{k}"
        );
    }
    smartchat_tests::assert_no_plaintext(&w.env, &[hand, "Priya here"]);
}

async fn outside_the_window_a_hand_reply_is_refused_and_nothing_stored(env: TestEnv) {
    let w = world(env).await;
    w.env
        .store
        .set_provider_chain(w.tenant, Some(&[]), Actor::System)
        .await
        .unwrap();
    // The customer last wrote 25 hours ago (Meta redelivers for up to 7 days).
    w.customer_says_at("wamid.old", "hello?", now_secs() - 25 * 3600)
        .await;
    pipeline::drain(&w.pipeline).await.unwrap();
    let s = w.login(w.tenant).await;
    let conv = only_conversation(&s).await;
    let before = messages(&s, &conv).await;
    let jobs_before = smartchat_core::jobs::count(&w.env.store.db, pipeline::QUEUE, "ready")
        .await
        .unwrap();
    let (status, v) = s
        .post(
            &format!("/api/v1/conversations/{conv}/messages"),
            Some(serde_json::json!({ "text": "Sorry for the wait!" })),
        )
        .await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["code"], "outside_window");
    assert!(v["detail"].as_str().unwrap().contains("24-hour"), "{v}");
    assert_eq!(messages(&s, &conv).await.len(), before.len());
    assert_eq!(
        smartchat_core::jobs::count(&w.env.store.db, pipeline::QUEUE, "ready")
            .await
            .unwrap(),
        jobs_before
    );
    assert!(
        !w.kinds()
            .await
            .iter()
            .any(|(k, _)| *k == EventKind::HUMAN_REPLY),
        "a refused reply is not ledgered as sent"
    );
}

async fn roles_and_tenants_bound_the_conversation_api(env: TestEnv) {
    let w = world(env).await;
    w.customer_says("wamid.r1", "hi").await;
    pipeline::drain(&w.pipeline).await.unwrap();
    let other = tenant(&w.env, "other-shop", "2000002", None).await;
    let owner = w.login(w.tenant).await;
    let conv = only_conversation(&owner).await;
    let stranger = w.login(other).await;

    // Another tenant's conversation does not exist for this member: 404 for every verb.
    let (status, v) = stranger
        .get(&format!("/api/v1/conversations/{conv}/messages"))
        .await;
    assert_eq!((status, v["code"].as_str()), (404, Some("not_found")));
    for path in ["takeover", "handback"] {
        let (status, _) = stranger
            .post(&format!("/api/v1/conversations/{conv}/{path}"), None)
            .await;
        assert_eq!(status, 404);
    }
    let (status, _) = stranger
        .post(
            &format!("/api/v1/conversations/{conv}/messages"),
            Some(serde_json::json!({ "text": "hijack" })),
        )
        .await;
    assert_eq!(status, 404);
    let (_, list) = stranger.get("/api/v1/conversations").await;
    assert_eq!(list["conversations"].as_array().unwrap().len(), 0);
    let (status, _) = owner.get("/api/v1/conversations/not-a-uuid/messages").await;
    assert_eq!(status, 404);

    // Without credentials: 401.
    let res = reqwest::get(format!("{}/api/v1/conversations", w.base))
        .await
        .unwrap();
    assert_eq!(res.status(), 401);

    // Staff answer conversations but do not set the provider chain; auditors see the
    // ledger, not conversations.
    smartchat_tests::add_spare_owner(&w.env.store, w.tenant).await;
    let members = Members::new(w.env.store.clone());
    members
        .set_role(w.tenant, owner.member, Role::Staff, Actor::System)
        .await
        .unwrap();
    assert_eq!(owner.get("/api/v1/conversations").await.0, 200);
    let (status, _) = owner
        .send(
            reqwest::Method::PUT,
            "/api/v1/settings/assistant",
            Some(serde_json::json!({ "providers": [] })),
            true,
        )
        .await;
    assert_eq!(status, 403);
    members
        .set_role(w.tenant, owner.member, Role::Auditor, Actor::System)
        .await
        .unwrap();
    assert_eq!(owner.get("/api/v1/conversations").await.0, 403);
    assert_eq!(
        owner
            .get(&format!("/api/v1/conversations/{conv}/messages"))
            .await
            .0,
        403
    );
    assert_eq!(
        owner
            .post(&format!("/api/v1/conversations/{conv}/takeover"), None)
            .await
            .0,
        403
    );
    // Nothing of it changed the conversation.
    let conv_id = conv.parse().unwrap();
    assert_eq!(
        w.env
            .store
            .tenant_conversation(w.tenant, conv_id)
            .await
            .unwrap()
            .mode,
        "assistant"
    );
}

async fn each_tenant_chooses_its_provider_chain(env: TestEnv) {
    let w = world(env).await;
    let s = w.login(w.tenant).await;
    // The platform's default: every configured provider, OpenAI first.
    let (status, v) = s.get("/api/v1/settings/assistant").await;
    assert_eq!(status, 200);
    assert_eq!(v["providers"], serde_json::Value::Null);
    assert_eq!(v["configured"], serde_json::json!(["openai", "deepseek"]));
    w.customer_says("wamid.p1", "do you do bridal makeup?")
        .await;
    pipeline::drain(&w.pipeline).await.unwrap();
    assert_eq!((replies(&w.openai), replies(&w.deepseek)), (1, 0));

    // DeepSeek first.
    let (status, v) = s
        .send(
            reqwest::Method::PUT,
            "/api/v1/settings/assistant",
            Some(serde_json::json!({ "providers": ["deepseek", "openai"] })),
            true,
        )
        .await;
    assert_eq!(status, 200, "{v}");
    w.customer_says("wamid.p2", "and hair spa?").await;
    pipeline::drain(&w.pipeline).await.unwrap();
    assert_eq!((replies(&w.openai), replies(&w.deepseek)), (1, 1));
    assert_eq!(
        w.graph.requests().last().unwrap().body.as_ref().unwrap()["text"]["body"],
        "deepseek answers"
    );

    // DeepSeek down: failover to the next in the tenant's chain.
    w.deepseek
        .fail_next(10, smartchat_assistant::fake::Failure::Status(500));
    w.customer_says("wamid.p3", "still open?").await;
    pipeline::drain(&w.pipeline).await.unwrap();
    assert_eq!(replies(&w.openai), 2);

    // Offline only: no provider sees the conversation, for replies or lead extraction.
    let (status, _) = s
        .send(
            reqwest::Method::PUT,
            "/api/v1/settings/assistant",
            Some(serde_json::json!({ "providers": [] })),
            true,
        )
        .await;
    assert_eq!(status, 200);
    let (calls_o, calls_d) = (w.openai.request_count(), w.deepseek.request_count());
    w.customer_says("wamid.p4", "how do I book?").await;
    pipeline::drain(&w.pipeline).await.unwrap();
    assert_eq!(
        (w.openai.request_count(), w.deepseek.request_count()),
        (calls_o, calls_d)
    );
    let answer = w.graph.requests().last().unwrap().body.clone().unwrap();
    assert!(
        answer["text"]["body"]
            .as_str()
            .unwrap()
            .contains("You can book here: http://127.0.0.1:8080/b/"),
        "{answer}"
    );
    let (_, v) = s.get("/api/v1/settings/assistant").await;
    assert_eq!(v["providers"], serde_json::json!([]));
    assert_eq!(v["effective"], serde_json::json!([]));

    // Unknown or repeated names are refused and change nothing.
    for bad in [
        serde_json::json!({ "providers": ["anthropic"] }),
        serde_json::json!({ "providers": ["openai", "openai"] }),
        serde_json::json!({ "providers": "openai" }),
    ] {
        let (status, v) = s
            .send(
                reqwest::Method::PUT,
                "/api/v1/settings/assistant",
                Some(bad),
                true,
            )
            .await;
        assert_eq!(status, 422, "{v}");
    }
    assert_eq!(
        w.env.store.provider_chain(w.tenant).await.unwrap(),
        Some(vec![])
    );
    // Each change is ledgered with the member who made it.
    let me = Actor::Member(s.member.bytes());
    assert_eq!(
        w.kinds()
            .await
            .iter()
            .filter(|(k, a)| *k == EventKind::ASSISTANT_SETTINGS_CHANGED && *a == me)
            .count(),
        2
    );
}

async fn the_sandbox_endpoint_plays_the_customer(env: TestEnv) {
    let w = world(env).await;
    // A tenant whose only number is not connected to Meta.
    let sandboxed = tenant(&w.env, "sandbox-salon", "2000003", None).await;
    w.env
        .store
        .set_provider_chain(sandboxed, Some(&[]), Actor::System)
        .await
        .unwrap();
    let s = w.login(sandboxed).await;
    let (status, v) = s
        .post(
            "/api/v1/sandbox/messages",
            Some(serde_json::json!({ "from": "+91 90000 00009", "text": "how do I book?" })),
        )
        .await;
    assert_eq!(status, 202, "{v}");
    let conv = v["conversation_id"].as_str().unwrap().to_owned();
    assert_eq!(pipeline::drain(&w.pipeline).await.unwrap(), 3);
    let msgs = messages(&s, &conv).await;
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0]["body"], "how do I book?");
    assert_eq!(msgs[1]["author"], "assistant");
    assert_eq!(msgs[1]["status"], "sent");
    assert!(
        msgs[1]["body"]
            .as_str()
            .unwrap()
            .contains("https://book.example.com/glow"),
        "{msgs:?}"
    );
    assert!(
        w.graph.requests().is_empty(),
        "the sandbox never calls Meta"
    );

    // A tenant whose numbers are all connected to Meta has no sandbox.
    let owner = w.login(w.tenant).await;
    let (status, v) = owner
        .post(
            "/api/v1/sandbox/messages",
            Some(serde_json::json!({ "from": "919000000009", "text": "hi" })),
        )
        .await;
    assert_eq!(
        (status, v["code"].as_str()),
        (409, Some("no_sandbox_number"))
    );
    let (status, _) = s
        .post(
            "/api/v1/sandbox/messages",
            Some(serde_json::json!({ "from": "not a number", "text": "hi" })),
        )
        .await;
    assert_eq!(status, 422);
}

/// The `decision` attributes (and `reason`, if any) of every assistant decision, in order.
async fn decisions(w: &World) -> Vec<(u32, Option<u32>)> {
    use smartchat_ledger::{AttrKey, AttrValue};
    w.ledger.sequence_all().await.unwrap();
    let code = |attrs: &[(AttrKey, AttrValue)], key: AttrKey| {
        attrs.iter().find_map(|(k, v)| match v {
            AttrValue::Code(c) if *k == key => Some(*c),
            _ => None,
        })
    };
    w.ledger
        .entries(0, w.ledger.size().await.unwrap())
        .await
        .unwrap()
        .iter()
        .map(|e| &e.entry.draft)
        .filter(|d| d.kind == EventKind::ASSISTANT_DECISION)
        .filter_map(|d| {
            Some((
                code(&d.attrs, AttrKey::DECISION)?,
                code(&d.attrs, AttrKey::REASON),
            ))
        })
        .collect()
}

async fn an_objecting_customer_gets_a_person_not_the_ai(env: TestEnv) {
    let w = world(env).await;
    w.customer_says("wamid.o1", "do you do bridal makeup?")
        .await;
    pipeline::drain(&w.pipeline).await.unwrap();
    assert_eq!(
        w.openai.request_count(),
        2,
        "the reply and the lead extraction"
    );
    // The customer objects to AI processing (the rights workflow sets this flag).
    let sid = w
        .env
        .store
        .find_subject(w.tenant, smartchat_core::crypto::BlindKind::WaId, CUSTOMER)
        .await
        .unwrap()
        .unwrap();
    let mut c = w.env.store.db.conn().await.unwrap();
    w.env
        .store
        .set_subject_flags(
            &mut c,
            sid,
            smartchat_core::store::SubjectFlags {
                objected: true,
                opted_out: false,
            },
        )
        .await
        .unwrap();
    drop(c);
    w.customer_says("wamid.o2", "and the price?").await;
    pipeline::drain(&w.pipeline).await.unwrap();
    assert_eq!(
        (w.openai.request_count(), w.deepseek.request_count()),
        (2, 0),
        "no provider sees an objecting customer's message (neither reply nor lead)"
    );
    let sent = w.graph.requests();
    assert_eq!(sent.len(), 2);
    assert_eq!(
        sent[1].body.as_ref().unwrap()["text"]["body"],
        "Our team will reply shortly."
    );
    let s = w.login(w.tenant).await;
    let (_, list) = s.get("/api/v1/conversations").await;
    assert_eq!(
        list["conversations"][0]["mode"], "human",
        "flagged for a person"
    );
    // Told once; after that a person answers.
    w.customer_says("wamid.o3", "hello?").await;
    pipeline::drain(&w.pipeline).await.unwrap();
    assert_eq!(w.graph.requests().len(), 2);
    // answer (by a provider), hand over because of the objection, then silence.
    assert_eq!(decisions(&w).await, [(1, None), (2, Some(2)), (3, None)]);
}

both_backends!(
    an_objecting_customer_gets_a_person_not_the_ai,
    an_owner_takes_over_replies_by_hand_and_hands_back,
    outside_the_window_a_hand_reply_is_refused_and_nothing_stored,
    roles_and_tenants_bound_the_conversation_api,
    each_tenant_chooses_its_provider_chain,
    the_sandbox_endpoint_plays_the_customer,
);
