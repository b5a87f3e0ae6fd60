//! Leads end to end on both backends (issue 9): a customer's enquiry becomes a lead, by the
//! rule-based extractor or an AI provider's structured output (falling back to the rules),
//! sealed at rest and ledgered by field names only; owners list, correct, move stages and
//! export CSV; roles and tenants bound it; deleting the customer deletes the lead.

use smartchat_api::app::{AppState, router};
use smartchat_api::auth::{AuthState, OneTimeLogin};
use smartchat_api::boot::Services;
use smartchat_api::pipeline::{self, Pipeline};
use smartchat_assistant::fake::FakeLlm;
use smartchat_core::ids::{Handle, PhoneNumber, PhoneNumberId, TenantId};
use smartchat_core::ledger_store::Ledger;
use smartchat_core::members::{Members, Role};
use smartchat_core::store::{NewTenant, Profile};
use smartchat_ledger::{Actor, AttrKey, AttrValue, EventKind};
use smartchat_tests::{Session, TestEnv, both_backends};

const PNID: &str = "5000001";
const CUSTOMER: &str = "919812345678";

struct World {
    env: TestEnv,
    config: smartchat_core::config::Config,
    pipeline: Pipeline,
    ledger: Ledger,
    llm: FakeLlm,
    tenant: TenantId,
}

async fn world(env: TestEnv) -> World {
    let llm = FakeLlm::start().await.unwrap();
    let tenant = env
        .store
        .create_tenant(NewTenant {
            handle: "glow-leads".parse::<Handle>().unwrap(),
            profile: Profile(serde_json::json!({
                "name": "Glow Salon",
                "business_type": "salon",
                "timezone": "Asia/Kolkata",
                "services": [{"name": "Haircut", "price": "Rs 500"}, {"name": "Bridal makeup"}],
                "booking_links": [{"label": "Book", "url": "https://book.example.com/glow"}],
            })),
            phone_number_id: Some(PNID.parse::<PhoneNumberId>().unwrap()),
            access_token: Some(smartchat_core::config::Secret::new("")),
        })
        .await
        .unwrap();
    let vars: std::collections::HashMap<String, String> = [
        ("SMARTCHAT_OPENAI_API_KEY", llm.api_key.as_str()),
        ("SMARTCHAT_OPENAI_BASE_URL", llm.base_url.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let config = smartchat_core::config::Config::load_from(None, &vars).unwrap();
    let ledger = Ledger::open(env.store.db.clone(), &env.store.keys, "test/ledger")
        .await
        .unwrap();
    let pipeline = Pipeline::new(env.store.clone(), &config).unwrap();
    World {
        env,
        config,
        pipeline,
        ledger,
        llm,
        tenant,
    }
}

impl World {
    async fn says(&self, from: &str, text: &str) {
        let from: PhoneNumber = from.parse().unwrap();
        let payload = pipeline::sandbox_payload(PNID, &from, text).unwrap();
        pipeline::ingest(&self.pipeline, &payload).await.unwrap();
        pipeline::drain(&self.pipeline).await.unwrap();
    }

    async fn login(&self, tenant: TenantId) -> Session {
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
        Session::start(router(state), &token, tenant).await
    }

    async fn entries(&self) -> Vec<smartchat_ledger::EntryDraft> {
        self.ledger.sequence_all().await.unwrap();
        self.ledger
            .entries(0, self.ledger.size().await.unwrap())
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.entry.draft)
            .collect()
    }
}

async fn leads_of(s: &Session) -> Vec<serde_json::Value> {
    let (status, v) = s.get("/api/v1/leads").await;
    assert_eq!(status, 200, "{v}");
    v["leads"].as_array().unwrap().clone()
}

fn codes(d: &smartchat_ledger::EntryDraft, key: AttrKey) -> Vec<u32> {
    d.attrs
        .iter()
        .filter_map(|(k, v)| match v {
            AttrValue::Code(c) if *k == key => Some(*c),
            _ => None,
        })
        .collect()
}

async fn the_rules_turn_an_enquiry_into_a_lead(env: TestEnv) {
    let w = world(env).await;
    // Offline only: the rule-based extractor, no provider call.
    w.env
        .store
        .set_provider_chain(w.tenant, Some(&[]), Actor::System)
        .await
        .unwrap();
    w.says(
        CUSTOMER,
        "Hi, my name is Asha. Can I get a haircut tomorrow evening? Budget under 1500",
    )
    .await;
    assert_eq!(w.llm.request_count(), 0);
    let s = w.login(w.tenant).await;
    let leads = leads_of(&s).await;
    assert_eq!(leads.len(), 1, "{leads:?}");
    let lead = &leads[0];
    assert_eq!(lead["stage"], "engaged", "{lead}");
    assert_eq!(lead["source"], "whatsapp");
    assert_eq!(lead["customer_wa_id"], CUSTOMER);
    assert_eq!(lead["details"]["service"], "Haircut", "{lead}");
    assert_eq!(lead["details"]["name"], "Asha", "{lead}");
    assert_eq!(lead["details"]["preferred_time"], "evening", "{lead}");
    assert!(lead["details"]["preferred_date"].is_string(), "{lead}");
    assert!(lead["details"]["budget"].is_object(), "{lead}");

    // A second message updates the same lead and keeps what it knew.
    w.says(CUSTOMER, "actually bridal makeup instead").await;
    let leads = leads_of(&s).await;
    assert_eq!(leads.len(), 1);
    assert_eq!(leads[0]["details"]["service"], "Bridal makeup");
    assert_eq!(leads[0]["details"]["name"], "Asha");

    // Ledgered by field names and extractor, never the values; sealed at rest.
    let captured: Vec<_> = w
        .entries()
        .await
        .into_iter()
        .filter(|d| d.kind == EventKind::LEAD_CAPTURED)
        .collect();
    assert_eq!(captured.len(), 2);
    let fields = codes(&captured[0], AttrKey::FIELD);
    for f in [1, 2, 4, 5] {
        assert!(fields.contains(&f), "field {f} in {fields:?}");
    }
    assert!(
        codes(&captured[0], AttrKey::PROVIDER).is_empty(),
        "the rules, not a provider"
    );
    let (_, _, bundle) = w.ledger.export(0, None, Vec::new()).await.unwrap();
    for needle in ["Asha", "Haircut", "1500"] {
        assert!(
            !bundle.windows(needle.len()).any(|x| x == needle.as_bytes()),
            "{needle}"
        );
    }
    smartchat_tests::assert_no_plaintext(&w.env, &["Asha", "Bridal makeup instead"]);
}

async fn a_provider_extracts_with_structured_output_and_falls_back(env: TestEnv) {
    let w = world(env).await;
    w.llm.script_reply("Happy to help!");
    w.llm.script_json_reply(&serde_json::json!({
        "name": "Asha", "service": "Haircut", "preferred_date": null,
        "preferred_time": "18:30", "budget_inr": 1500, "budget_bound": "at_most", "stage": "engaged"
    }));
    w.says(
        CUSTOMER,
        "hello, haircut possible today around 6:30 pm? max 1500",
    )
    .await;
    let lead_req = w
        .llm
        .requests()
        .into_iter()
        .find(|r| r.body.get("response_format").is_some())
        .expect("a structured-output request");
    assert_eq!(lead_req.body["response_format"]["type"], "json_schema");
    assert_eq!(lead_req.body["store"], false);
    assert!(!String::from_utf8_lossy(&lead_req.raw).contains(CUSTOMER));
    let s = w.login(w.tenant).await;
    let leads = leads_of(&s).await;
    assert_eq!(leads[0]["details"]["preferred_time"], "18:30", "{leads:?}");
    let entries = w.entries().await;
    let captured: Vec<_> = entries
        .iter()
        .filter(|d| d.kind == EventKind::LEAD_CAPTURED)
        .collect();
    assert_eq!(
        codes(captured[0], AttrKey::PROVIDER),
        [1],
        "extracted by OpenAI"
    );
    assert!(
        entries.iter().any(|d| d.kind == EventKind::AI_PROVIDER_CALL
            && d.purpose == smartchat_ledger::Purpose::LEAD_MANAGEMENT),
        "the extraction call is ledgered under lead management"
    );

    // A provider answering nonsense: the rules answer, and the ledger says so.
    w.llm.script_reply("Sure!");
    w.llm
        .script_json_reply(&serde_json::json!({"name": "Asha", "surprise": true}));
    w.says(CUSTOMER, "and bridal makeup next week?").await;
    let captured: Vec<_> = w
        .entries()
        .await
        .into_iter()
        .filter(|d| d.kind == EventKind::LEAD_CAPTURED)
        .collect();
    assert_eq!(captured.len(), 2);
    assert!(codes(&captured[1], AttrKey::PROVIDER).is_empty());
    assert_eq!(
        codes(&captured[1], AttrKey::REASON),
        [1],
        "fell back to the rules"
    );
    assert_eq!(leads_of(&s).await[0]["details"]["service"], "Bridal makeup");
}

async fn owners_correct_stage_and_export_leads(env: TestEnv) {
    let w = world(env).await;
    w.env
        .store
        .set_provider_chain(w.tenant, Some(&[]), Actor::System)
        .await
        .unwrap();
    w.says(CUSTOMER, "I want a haircut, I'm Asha").await;
    w.says("919800000002", "bridal makeup price?").await;
    let s = w.login(w.tenant).await;
    let leads = leads_of(&s).await;
    assert_eq!(leads.len(), 2);
    let asha = leads
        .iter()
        .find(|l| l["customer_wa_id"] == CUSTOMER)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // A correction: the value replaced, ledgered with field names only.
    let (status, v) = s
        .patch(
            &format!("/api/v1/leads/{asha}"),
            serde_json::json!({ "details": { "name": "=HYPERLINK(\"x\")", "notes": "prefers Priya, pays cash" } }),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["details"]["notes"], "prefers Priya, pays cash");
    let (status, v) = s
        .patch(
            &format!("/api/v1/leads/{asha}"),
            serde_json::json!({ "stage": "booked" }),
        )
        .await;
    assert_eq!((status, v["stage"].as_str()), (200, Some("booked")));
    // Bad input: refused, nothing changed.
    for bad in [
        serde_json::json!({ "stage": "won" }),
        serde_json::json!({ "details": { "ssn": "x" } }),
        serde_json::json!({ "details": "name" }),
    ] {
        let (status, v) = s.patch(&format!("/api/v1/leads/{asha}"), bad).await;
        assert_eq!(status, 422, "{v}");
    }
    let (_, v) = s.get(&format!("/api/v1/leads/{asha}")).await;
    assert_eq!(v["stage"], "booked");
    // A change of details and stage that fails half-way (the database refuses the stage's
    // update, after the details' in the same request) keeps none of it.
    let refusal = smartchat_tests::refuse_writes(&w.env, "UPDATE OF stage ON leads").await;
    let (status, v) = s
        .patch(
            &format!("/api/v1/leads/{asha}"),
            serde_json::json!({ "details": { "notes": "changed her mind" }, "stage": "lost" }),
        )
        .await;
    assert!((500..600).contains(&status), "{status} {v}");
    refusal.lift().await;
    let (_, v) = s.get(&format!("/api/v1/leads/{asha}")).await;
    assert_eq!(v["stage"], "booked");
    assert_eq!(v["details"]["notes"], "prefers Priya, pays cash");
    // Both in one request, once it can.
    let (status, v) = s
        .patch(
            &format!("/api/v1/leads/{asha}"),
            serde_json::json!({ "details": { "notes": "changed her mind" }, "stage": "lost" }),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["stage"].as_str(), v["details"]["notes"].as_str()),
        (Some("lost"), Some("changed her mind"))
    );
    let (status, v) = s
        .patch(
            &format!("/api/v1/leads/{asha}"),
            serde_json::json!({ "details": { "notes": "prefers Priya, pays cash" }, "stage": "booked" }),
        )
        .await;
    assert_eq!((status, v["stage"].as_str()), (200, Some("booked")));
    // Filter by stage.
    let (_, v) = s.get("/api/v1/leads?stage=booked").await;
    assert_eq!(v["leads"].as_array().unwrap().len(), 1);
    let (status, _) = s.get("/api/v1/leads?stage=won").await;
    assert_eq!(status, 422);
    // CSV: a header, one row per lead, formulas defused, quoting right.
    let res = s
        .http
        .get(format!("{}/api/v1/leads.csv", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["content-type"].to_str().unwrap(),
        "text/csv; charset=utf-8"
    );
    let csv = res.text().await.unwrap();
    let lines: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[0].starts_with("id,stage,source,whatsapp_number,name,service"));
    assert!(csv.contains("\"'=HYPERLINK(\"\"x\"\")\""), "{csv}");
    assert!(csv.contains("\"prefers Priya, pays cash\""), "{csv}");
    let me = Actor::Member(s.member.bytes());
    let entries = w.entries().await;
    let correction = entries
        .iter()
        .find(|d| d.kind == EventKind::CORRECTION && d.actor == me)
        .unwrap();
    let mut fields = codes(correction, AttrKey::FIELD);
    fields.sort_unstable();
    assert_eq!(fields, [1, 7]);
    assert!(
        entries
            .iter()
            .any(|d| d.kind == EventKind::LEAD_STAGE_CHANGED
                && d.actor == me
                && codes(d, AttrKey::STAGE) == [3])
    );
    assert!(
        entries
            .iter()
            .any(|d| d.kind == EventKind::EXPORT_MADE && d.actor == me)
    );
    smartchat_tests::assert_no_plaintext(&w.env, &["prefers Priya", "HYPERLINK"]);

    // Another tenant's member sees none of it; an auditor is refused.
    let other = w
        .env
        .store
        .create_tenant(NewTenant {
            handle: "other-leads".parse::<Handle>().unwrap(),
            profile: Profile(serde_json::json!({"name": "Other"})),
            phone_number_id: None,
            access_token: None,
        })
        .await
        .unwrap();
    let stranger = w.login(other).await;
    assert!(leads_of(&stranger).await.is_empty());
    assert_eq!(stranger.get(&format!("/api/v1/leads/{asha}")).await.0, 404);
    assert_eq!(
        stranger
            .patch(
                &format!("/api/v1/leads/{asha}"),
                serde_json::json!({ "stage": "lost" })
            )
            .await
            .0,
        404
    );
    smartchat_tests::add_spare_owner(&w.env.store, w.tenant).await;
    Members::new(w.env.store.clone())
        .set_role(w.tenant, s.member, Role::Auditor, Actor::System)
        .await
        .unwrap();
    assert_eq!(s.get("/api/v1/leads").await.0, 403);
    assert_eq!(s.get("/api/v1/leads.csv").await.0, 403);
}

async fn deleting_the_customer_deletes_the_lead(env: TestEnv) {
    let w = world(env).await;
    w.env
        .store
        .set_provider_chain(w.tenant, Some(&[]), Actor::System)
        .await
        .unwrap();
    w.says(CUSTOMER, "haircut tomorrow please, I'm Asha").await;
    let s = w.login(w.tenant).await;
    let id = leads_of(&s).await[0]["id"].as_str().unwrap().to_owned();
    let sid = w
        .env
        .store
        .find_subject(w.tenant, smartchat_core::crypto::BlindKind::WaId, CUSTOMER)
        .await
        .unwrap()
        .unwrap();
    w.env
        .store
        .shred_subject(w.tenant, sid, Actor::System)
        .await
        .unwrap();
    assert!(leads_of(&s).await.is_empty());
    assert_eq!(s.get(&format!("/api/v1/leads/{id}")).await.0, 404);
}

both_backends!(
    the_rules_turn_an_enquiry_into_a_lead,
    a_provider_extracts_with_structured_output_and_falls_back,
    owners_correct_stage_and_export_leads,
    deleting_the_customer_deletes_the_lead,
);
