//! Message templates on both backends (issue 9): synced from a local Graph API server that
//! speaks Meta's listing format (pages, statuses), registered by hand for the sandbox,
//! checked when a follow-up rule is saved, sent by follow-ups outside the 24-hour window
//! with their variables filled in, and paused by a `message_template_status_update`
//! webhook routed by the WhatsApp Business Account id. Booking links go out tracked: the
//! first opening redirects and moves the lead to booked.

use smartchat_api::app::{AppState, router};
use smartchat_api::auth::{AuthState, OneTimeLogin};
use smartchat_api::boot::Services;
use smartchat_api::follow_ups::evaluate;
use smartchat_api::pipeline::{self, Pipeline};
use smartchat_core::crypto::BlindKind;
use smartchat_core::ids::{Handle, PhoneNumberId, TenantId};
use smartchat_core::ledger_store::Ledger;
use smartchat_core::store::{NewTenant, PlainMessage, Profile};
use smartchat_ledger::{AttrKey, AttrValue, EventKind};
use smartchat_tests::{Session, TestEnv, both_backends};
use smartchat_whatsapp::fake::FakeGraph;
use time::{Duration, OffsetDateTime, UtcOffset};

const PNID: &str = "8100001";
const TOKEN: &str = "EAAGtemplates-token";
const WABA: &str = "1029384756";
const SLOT: &str = "Hi {{1}}, {{2}} has a slot for you this week. Reply to book.";

struct World {
    env: TestEnv,
    graph: FakeGraph,
    pipeline: Pipeline,
    ledger: Ledger,
    tenant: TenantId,
    session: Session,
}

fn profile(name: &str) -> serde_json::Value {
    let day = serde_json::json!([{"open": "09:00", "close": "19:00"}]);
    serde_json::json!({
        "name": name, "business_type": "salon", "timezone": "Asia/Kolkata",
        "hours": {
            "monday": day, "tuesday": day, "wednesday": day, "thursday": day,
            "friday": day, "saturday": day, "sunday": day
        },
        "services": [{"name": "Haircut"}],
        "booking_links": [{"label": "Book", "url": "https://book.example/glow"}],
    })
}

/// A tenant connected to the local Graph API (`connected`) or a sandbox tenant.
async fn world(env: TestEnv, connected: bool) -> World {
    let graph = FakeGraph::start().await.unwrap();
    graph.register(PNID, TOKEN);
    let tenant = env
        .store
        .create_tenant(NewTenant {
            handle: "glow-templates".parse::<Handle>().unwrap(),
            profile: Profile(profile("Glow Salon")),
            phone_number_id: Some(PNID.parse::<PhoneNumberId>().unwrap()),
            access_token: Some(smartchat_core::config::Secret::new(if connected {
                TOKEN
            } else {
                ""
            })),
        })
        .await
        .unwrap();
    let mut vars = std::collections::HashMap::new();
    vars.insert(
        "SMARTCHAT_META_GRAPH_URL".to_owned(),
        graph.base_url.clone(),
    );
    let config = smartchat_core::config::Config::load_from(None, &vars).unwrap();
    let ledger = Ledger::open(env.store.db.clone(), &env.store.keys, "test/ledger")
        .await
        .unwrap();
    let pipeline = Pipeline::new(env.store.clone(), &config).unwrap();
    let (otl, token) = OneTimeLogin::generate();
    let state = AppState::new(
        Services {
            store: env.store.clone(),
            ledger: ledger.clone(),
        },
        pipeline.clone(),
        AuthState::local(env.store.clone(), otl),
        &config,
    );
    let session = Session::start(router(state), &token, tenant).await;
    World {
        env,
        graph,
        pipeline,
        ledger,
        tenant,
        session,
    }
}

/// The first instant at or after `from` whose local time (India, +05:30) is `hour`:00.
fn next_local(from: OffsetDateTime, hour: u8) -> OffsetDateTime {
    let ist = UtcOffset::from_hms(5, 30, 0).unwrap();
    let local = from.to_offset(ist);
    let mut t = local.replace_time(time::Time::from_hms(hour, 0, 0).unwrap());
    if t < local {
        t += Duration::days(1);
    }
    t.to_offset(UtcOffset::UTC)
}

impl World {
    /// A customer message Meta timestamped `hours_ago` hours ago (so the 24-hour window
    /// may already be closed), then every job it causes.
    async fn says_long_ago(&self, from: &str, text: &str, hours_ago: i64) {
        let ts = (OffsetDateTime::now_utc() - Duration::hours(hours_ago)).unix_timestamp();
        let payload = serde_json::json!({
            "object": "whatsapp_business_account",
            "entry": [{ "id": WABA, "changes": [{ "field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": { "display_phone_number": "0", "phone_number_id": PNID },
                "contacts": [{ "profile": { "name": "Asha Verma" }, "wa_id": from }],
                "messages": [{
                    "from": from,
                    "id": format!("wamid.t{}", uuid::Uuid::new_v4().simple()),
                    "timestamp": ts.to_string(),
                    "type": "text",
                    "text": { "body": text }
                }]
            }}]}]
        });
        let parsed = smartchat_whatsapp::parse_payload(payload.to_string().as_bytes()).unwrap();
        pipeline::ingest(&self.pipeline, &parsed).await.unwrap();
        pipeline::drain(&self.pipeline).await.unwrap();
    }

    async fn thread(&self, from: &str) -> Vec<PlainMessage> {
        let sid = self
            .env
            .store
            .find_subject(self.tenant, BlindKind::WaId, from)
            .await
            .unwrap()
            .unwrap();
        self.env
            .store
            .subject_messages(self.tenant, sid)
            .await
            .unwrap()
    }

    async fn follow_up_outcomes(&self) -> Vec<(String, Option<String>)> {
        self.env
            .store
            .tenant_follow_ups(self.tenant, 100)
            .await
            .unwrap()
            .into_iter()
            .rev()
            .map(|f| (f.status, f.reason))
            .collect()
    }

    async fn reasons(&self, kind: EventKind) -> Vec<Vec<u32>> {
        self.ledger.sequence_all().await.unwrap();
        self.ledger
            .entries(0, self.ledger.size().await.unwrap())
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.entry.draft.kind == kind)
            .map(|e| {
                e.entry
                    .draft
                    .attrs
                    .iter()
                    .filter_map(|(k, v)| match v {
                        AttrValue::Code(c) if *k == AttrKey::REASON => Some(*c),
                        _ => None,
                    })
                    .collect()
            })
            .collect()
    }

    /// Runs the evaluator an hour after "now", at 10:00 local, then every job.
    async fn follow_up_round(&self, days: i64) -> usize {
        let at = next_local(
            OffsetDateTime::now_utc() + Duration::minutes(61) + Duration::days(days),
            10,
        );
        let n = evaluate(&self.pipeline, at).await.unwrap();
        pipeline::drain(&self.pipeline).await.unwrap();
        n
    }
}

fn template_rule(template: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "name": "come back", "trigger": {"kind": "stage_for", "stage": "engaged"},
        "after_minutes": 60, "template": template, "max_per_lead": 1
    })
}

async fn synced_templates_go_out_of_window_and_a_pause_stops_them(env: TestEnv) {
    let w = world(env, true).await;
    w.graph
        .add_template(WABA, TOKEN, "slot_reminder", "en", "APPROVED", SLOT);
    w.graph
        .add_template(WABA, TOKEN, "promo_draft", "en", "PENDING", "Hi {{1}}");
    w.graph.add_template(
        WABA,
        TOKEN,
        "thanks",
        "hi",
        "APPROVED",
        "धन्यवाद! {{1}} आपका इंतज़ार कर रहा है।",
    );
    w.graph.set_template_page_size(2);
    let s = &w.session;

    // Sync needs the account first; a half-given account is refused.
    let (status, v) = s
        .post("/api/v1/templates/sync", Some(serde_json::json!({})))
        .await;
    assert_eq!(
        (status, v["code"].as_str()),
        (409, Some("no_business_account")),
        "{v}"
    );
    let (status, _) = s
        .post(
            "/api/v1/templates/sync",
            Some(serde_json::json!({ "waba_id": WABA })),
        )
        .await;
    assert_eq!(status, 400);
    let (status, v) = s
        .post(
            "/api/v1/templates/sync",
            Some(serde_json::json!({ "phone_number_id": PNID, "waba_id": WABA })),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["written"], 3, "{v}");
    let (_, v) = s.get("/api/v1/templates").await;
    let listed: Vec<(String, String, i64)> = v["templates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_owned(),
                t["status"].as_str().unwrap().to_owned(),
                t["params"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("promo_draft".to_owned(), "pending".to_owned(), 1),
            ("slot_reminder".to_owned(), "approved".to_owned(), 2),
            ("thanks".to_owned(), "approved".to_owned(), 1),
        ]
    );
    // A connected tenant cannot declare templates approved by hand.
    let (status, v) = s
        .send(
            reqwest::Method::PUT,
            "/api/v1/templates",
            Some(serde_json::json!({"templates": [
                {"name": "mine", "language": "en", "category": "utility", "body": "Hi"}
            ]})),
            true,
        )
        .await;
    assert_eq!(
        (status, v["code"].as_str()),
        (409, Some("templates_from_meta"))
    );

    // Rules are checked against the templates when saved.
    for (template, why) in [
        (
            serde_json::json!({"name": "nope", "language": "en", "params": []}),
            "unknown",
        ),
        (
            serde_json::json!({"name": "promo_draft", "language": "en", "params": ["x"]}),
            "not approved",
        ),
        (
            serde_json::json!({"name": "slot_reminder", "language": "en", "params": ["{customer_name}"]}),
            "2 variables",
        ),
        (
            serde_json::json!({"name": "slot_reminder", "language": "en", "params": ["{customer_name}", "{shoe_size}"]}),
            "not a known variable",
        ),
    ] {
        let (status, v) = s
            .post("/api/v1/follow-up-rules", Some(template_rule(template)))
            .await;
        assert_eq!(status, 422, "{why}: {v}");
        assert!(v["detail"].as_str().unwrap().contains(why), "{why}: {v}");
    }
    // Without a template, a free text a day after the customer's message is refused.
    let (status, v) = s
        .post(
            "/api/v1/follow-up-rules",
            Some(serde_json::json!({
                "name": "late", "trigger": {"kind": "no_reply"}, "after_minutes": 1500,
                "message": "Still there?"
            })),
        )
        .await;
    assert_eq!(status, 422, "{v}");
    let (status, v) = s
        .post(
            "/api/v1/follow-up-rules",
            Some(template_rule(serde_json::json!({
                "name": "slot_reminder", "language": "en",
                "params": ["{customer_name}", "{business_name}"]
            }))),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["template"]["name"], "slot_reminder");

    // A customer wrote 30 hours ago: the window is closed, so the template goes.
    let customer = "919822200001";
    w.says_long_ago(customer, "How much is a haircut?", 30)
        .await;
    w.graph.clear_requests();
    assert_eq!(w.follow_up_round(0).await, 1);
    assert_eq!(w.follow_up_outcomes().await, [("sent".to_owned(), None)]);
    let sent: Vec<_> = w
        .graph
        .requests()
        .into_iter()
        .filter_map(|r| r.body)
        .filter(|b| b["type"] == "template")
        .collect();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let t = &sent[0]["template"];
    assert_eq!(t["name"], "slot_reminder");
    assert_eq!(t["language"]["code"], "en");
    let params: Vec<&str> = t["components"][0]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["text"].as_str().unwrap())
        .collect();
    assert_eq!(params, ["Asha Verma", "Glow Salon"]);
    let thread = w.thread(customer).await;
    let last = thread.last().unwrap();
    assert_eq!(
        (
            last.row.kind.as_str(),
            last.row.status.as_str(),
            last.row.author.as_str()
        ),
        ("template", "sent", "follow_up")
    );
    let rendered = "Hi Asha Verma, Glow Salon has a slot for you this week. Reply to book.";
    assert_eq!(last.body.as_deref(), Some(rendered));
    assert!(last.row.wamid.as_deref().unwrap().starts_with("wamid."));
    smartchat_tests::assert_no_plaintext(&w.env, &[rendered, "Asha Verma"]);

    // Meta pauses the template: the webhook names the account, not a number.
    let pause = serde_json::json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": WABA, "time": 1_767_000_000, "changes": [{
            "field": "message_template_status_update",
            "value": {
                "event": "PAUSED", "message_template_id": 1000000,
                "message_template_name": "slot_reminder",
                "message_template_language": "en", "reason": "NONE"
            }
        }]}]
    });
    let parsed = smartchat_whatsapp::parse_payload(pause.to_string().as_bytes()).unwrap();
    let out = pipeline::ingest(&w.pipeline, &parsed).await.unwrap();
    assert_eq!((out.other, out.unknown_numbers), (1, 0));
    let tpl = w
        .env
        .store
        .template(w.tenant, "slot_reminder", "en")
        .await
        .unwrap();
    assert_eq!(tpl.status, "paused");
    // Synced (1) then paused by the webhook (3).
    assert_eq!(
        w.reasons(EventKind::TEMPLATES_CHANGED).await,
        [vec![1], vec![3]]
    );
    // An account we do not know: nothing changes, one unknown entry.
    let other = pause.to_string().replace(WABA, "555");
    let parsed = smartchat_whatsapp::parse_payload(other.as_bytes()).unwrap();
    assert_eq!(
        pipeline::ingest(&w.pipeline, &parsed)
            .await
            .unwrap()
            .unknown_numbers,
        1
    );

    // The next customer's follow-up finds the template paused: skipped, reason 9.
    let second = "919822200002";
    w.says_long_ago(second, "Haircut price please", 30).await;
    w.graph.clear_requests();
    assert_eq!(w.follow_up_round(0).await, 1);
    assert!(
        w.graph
            .requests()
            .iter()
            .all(|r| r.body.as_ref().is_none_or(|b| b["type"] != "template"))
    );
    assert!(w.follow_up_outcomes().await.contains(&(
        "skipped".to_owned(),
        Some("template_unavailable".to_owned())
    )));
    assert!(
        w.reasons(EventKind::FOLLOW_UP_SKIPPED)
            .await
            .contains(&vec![9])
    );
}

async fn sandbox_templates_are_registered_by_hand_and_sent_to_the_sandbox(env: TestEnv) {
    let w = world(env, false).await;
    let s = &w.session;
    let put = |templates: serde_json::Value| {
        s.send(
            reqwest::Method::PUT,
            "/api/v1/templates",
            Some(serde_json::json!({ "templates": templates })),
            true,
        )
    };
    for (bad, why) in [
        (
            serde_json::json!({"name": "Bad Name", "language": "en", "category": "utility", "body": "Hi"}),
            "name",
        ),
        (
            serde_json::json!({"name": "gap", "language": "en", "category": "utility", "body": "Hi {{2}}"}),
            "without gaps",
        ),
        (
            serde_json::json!({"name": "cat", "language": "en", "category": "spam", "body": "Hi"}),
            "category",
        ),
    ] {
        let (status, v) = put(serde_json::json!([bad])).await;
        assert_eq!(status, 422, "{why}: {v}");
        assert!(v["detail"].as_str().unwrap().contains(why), "{why}: {v}");
    }
    assert!(w.env.store.templates(w.tenant).await.unwrap().is_empty());
    let (status, v) = put(serde_json::json!([
        {"name": "book_now", "language": "en", "category": "marketing",
         "body": "Hello {{1}}! Book your {{2}} here: {{3}}"}
    ]))
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["templates"][0]["source"], "sandbox");
    // The sandbox has no Meta account to sync from.
    let (status, v) = s
        .post("/api/v1/templates/sync", Some(serde_json::json!({})))
        .await;
    assert_eq!(
        (status, v["code"].as_str()),
        (409, Some("no_business_account"))
    );

    let (status, v) = s
        .post(
            "/api/v1/follow-up-rules",
            Some(template_rule(serde_json::json!({
                "name": "book_now", "language": "en",
                "params": ["{customer_name}", "{service}", "{booking_link}"]
            }))),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let customer = "919822200003";
    w.says_long_ago(customer, "How much is a haircut?", 30)
        .await;
    assert_eq!(w.follow_up_round(0).await, 1);
    let thread = w.thread(customer).await;
    let last = thread.last().unwrap();
    assert_eq!(
        (last.row.kind.as_str(), last.row.status.as_str()),
        ("template", "sent")
    );
    assert!(last.row.wamid.as_deref().unwrap().starts_with("sandbox."));
    let body = last.body.clone().unwrap();
    assert!(
        body.starts_with("Hello Asha Verma! Book your ")
            && body.ends_with(" here: https://book.example/glow"),
        "{body}"
    );
    assert!(
        w.graph.requests().is_empty(),
        "nothing reaches Meta from the sandbox"
    );
}

async fn a_tracked_booking_link_redirects_and_books_the_lead(env: TestEnv) {
    let w = world(env, true).await;
    let customer = "919822200004";
    w.says_long_ago(customer, "I want a haircut. How do I book?", 0)
        .await;
    let lead = |w: &World| {
        let store = w.env.store.clone();
        let tenant = w.tenant;
        async move {
            store
                .list_leads(tenant, None, 10)
                .await
                .unwrap()
                .into_iter()
                .next()
                .expect("a lead")
        }
    };
    assert_ne!(lead(&w).await.stage, "booked");
    // The copy sent to WhatsApp carries the tracked link; the stored message keeps the
    // business's own URL.
    let sent: Vec<String> = w
        .graph
        .requests()
        .into_iter()
        .filter_map(|r| r.body?["text"]["body"].as_str().map(str::to_owned))
        .collect();
    let tracked = sent
        .iter()
        .find_map(|b| {
            let at = b.find("/b/")?;
            Some(b[at..at + 3 + 32].to_owned())
        })
        .unwrap_or_else(|| panic!("no tracked link in {sent:?}"));
    assert!(
        sent.iter()
            .all(|b| !b.contains("https://book.example/glow"))
    );
    let stored = w.thread(customer).await;
    let reply = stored.last().unwrap();
    assert_eq!(reply.row.direction, "out");
    assert!(
        reply
            .body
            .as_deref()
            .unwrap()
            .contains("https://book.example/glow"),
        "{reply:?}"
    );

    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let base = w.session.base.clone();
    let open = |path: String| {
        let (http, base) = (http.clone(), base.clone());
        async move { http.get(format!("{base}{path}")).send().await.unwrap() }
    };
    // The first opening fails half-way (the ledger refuses its entries, as a database
    // error would): nothing of it is kept, so the next opening is the first again.
    let refusal = smartchat_tests::refuse_writes(&w.env, "INSERT ON ledger_pending").await;
    let res = open(tracked.clone()).await;
    assert!(res.status().is_server_error(), "{}", res.status());
    assert!(res.headers().get("location").is_none());
    refusal.lift().await;
    assert_ne!(lead(&w).await.stage, "booked");
    assert!(w.reasons(EventKind::BOOKING_LINK_CLICKED).await.is_empty());
    for round in 0..2 {
        let res = open(tracked.clone()).await;
        assert_eq!(res.status().as_u16(), 302, "round {round}");
        assert_eq!(
            res.headers()["location"].to_str().unwrap(),
            "https://book.example/glow"
        );
    }
    assert_eq!(lead(&w).await.stage, "booked");
    assert_eq!(
        w.reasons(EventKind::BOOKING_LINK_CLICKED).await.len(),
        1,
        "the first opening only"
    );
    for bad in [
        "/b/00000000000000000000000000000000".to_owned(),
        "/b/not-a-token".to_owned(),
    ] {
        let res = open(bad.clone()).await;
        assert_eq!(res.status().as_u16(), 404, "{bad}");
        assert!(res.headers().get("location").is_none());
    }
}

both_backends!(
    synced_templates_go_out_of_window_and_a_pause_stops_them,
    sandbox_templates_are_registered_by_hand_and_sent_to_the_sandbox,
    a_tracked_booking_link_redirects_and_books_the_lead,
);
