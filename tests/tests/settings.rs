//! The owners' onboarding and settings API on both backends (issue 8): the business profile
//! (validated, re-sealed, ledgered), WhatsApp numbers (Meta and sandbox, never the token),
//! the tenant's own AI provider keys (sealed, never returned, the one sent to the provider,
//! unreadable after a shred, deleted by the purge), the policy a tenant may only tighten,
//! and the records of processing.

use smartchat_api::app::{AppState, router};
use smartchat_api::auth::{AuthState, OneTimeLogin};
use smartchat_api::boot::Services;
use smartchat_api::pipeline::{self, Pipeline};
use smartchat_assistant::fake::FakeLlm;
use smartchat_core::ids::{Handle, PhoneNumber, PhoneNumberId, TenantId};
use smartchat_core::ledger_store::Ledger;
use smartchat_core::members::{Members, Role};
use smartchat_core::store::{NewTenant, Profile};
use smartchat_ledger::{Actor, AttrKey, AttrValue, EntryDraft, EventKind};
use smartchat_tests::{Session, TestEnv, both_backends};

const PNID: &str = "7000001";
const CUSTOMER: &str = "919876543210";
const PLATFORM_KEY: &str = "sk-platform-key-0001";
const TENANT_KEY: &str = "sk-tenant-own-key-0042";

struct World {
    env: TestEnv,
    config: smartchat_core::config::Config,
    pipeline: Pipeline,
    ledger: Ledger,
    /// OpenAI's stand-in: it accepts only the tenant's own key.
    openai: FakeLlm,
    tenant: TenantId,
}

fn profile(name: &str) -> serde_json::Value {
    serde_json::json!({
        "name": name,
        "business_type": "salon",
        "timezone": "Asia/Kolkata",
        "services": [{"name": "Haircut", "price": "Rs 500"}],
        "handoff_message": "Our team will reply shortly."
    })
}

async fn new_tenant(env: &TestEnv, handle: &str, pnid: Option<&str>) -> TenantId {
    env.store
        .create_tenant(NewTenant {
            handle: handle.parse::<Handle>().unwrap(),
            profile: Profile(profile("Glow Salon")),
            phone_number_id: pnid.map(|p| p.parse::<PhoneNumberId>().unwrap()),
            access_token: None,
        })
        .await
        .unwrap()
}

async fn world(env: TestEnv) -> World {
    let openai = FakeLlm::start_with_key(TENANT_KEY).await.unwrap();
    let deepseek = FakeLlm::start().await.unwrap();
    let tenant = new_tenant(&env, "glow-settings", Some(PNID)).await;
    let vars: std::collections::HashMap<String, String> = [
        ("SMARTCHAT_OPENAI_API_KEY", PLATFORM_KEY),
        ("SMARTCHAT_OPENAI_BASE_URL", openai.base_url.as_str()),
        // No platform key for DeepSeek: only a tenant's own key makes it available.
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
    World {
        env,
        config,
        pipeline,
        ledger,
        openai,
        tenant,
    }
}

impl World {
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

    async fn as_role(&self, s: &Session, role: Role) {
        if role != Role::Owner {
            smartchat_tests::add_spare_owner(&self.env.store, self.tenant).await;
        }
        Members::new(self.env.store.clone())
            .set_role(self.tenant, s.member, role, Actor::System)
            .await
            .unwrap();
    }

    async fn says(&self, text: &str) {
        let from: PhoneNumber = CUSTOMER.parse().unwrap();
        let payload = pipeline::sandbox_payload(PNID, &from, text).unwrap();
        pipeline::ingest(&self.pipeline, &payload).await.unwrap();
        pipeline::drain(&self.pipeline).await.unwrap();
    }

    async fn drafts(&self, tenant: TenantId) -> Vec<EntryDraft> {
        self.ledger.sequence_all().await.unwrap();
        self.ledger
            .tenant_entries(tenant.bytes())
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.entry.draft)
            .collect()
    }

    async fn full_bundle(&self) -> Vec<u8> {
        self.ledger.sequence_all().await.unwrap();
        self.ledger.checkpoint().await.unwrap();
        self.ledger.export(0, None, Vec::new()).await.unwrap().2
    }
}

async fn put(s: &Session, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    s.send(reqwest::Method::PUT, path, Some(body), true).await
}

async fn delete(s: &Session, path: &str) -> (u16, serde_json::Value) {
    s.send(reqwest::Method::DELETE, path, None, true).await
}

fn kinds(d: &[EntryDraft], kind: EventKind) -> Vec<&EntryDraft> {
    d.iter().filter(|x| x.kind == kind).collect()
}

fn code(d: &EntryDraft, key: AttrKey) -> Option<u32> {
    d.attrs.iter().find_map(|(k, v)| match v {
        AttrValue::Code(c) if *k == key => Some(*c),
        _ => None,
    })
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

async fn the_profile_is_validated_resealed_and_ledgered(env: TestEnv) {
    let w = world(env).await;
    let s = w.login(w.tenant).await;
    let (status, v) = s.get("/api/v1/profile").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["profile"]["name"], "Glow Salon");
    assert_eq!(v["handle"], "glow-settings");

    // Invalid profiles: 422 naming the field or rule; nothing written.
    let mut no_handoff = profile("Lotus Spa");
    no_handoff
        .as_object_mut()
        .unwrap()
        .remove("handoff_message");
    let mut bad_zone = profile("Lotus Spa");
    bad_zone["timezone"] = "Mars/Olympus".into();
    let mut empty_name = profile("   ");
    empty_name["name"] = "".into();
    let mut bad_hours = profile("Lotus Spa");
    bad_hours["hours"] = serde_json::json!({"monday": [{"open": "18:00", "close": "09:00"}]});
    for (body, says) in [
        (no_handoff, "handoff_message"),
        (bad_zone, "time zone"),
        (empty_name, "`name`"),
        (bad_hours, "open before it closes"),
    ] {
        let (status, v) = put(&s, "/api/v1/profile", body).await;
        assert_eq!(status, 422, "{v}");
        assert_eq!(v["code"], "invalid_profile");
        assert!(v["detail"].as_str().unwrap().contains(says), "{v}");
    }
    let (status, v) = put(&s, "/api/v1/profile", serde_json::json!("not an object")).await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(
        s.get("/api/v1/profile").await.1["profile"]["name"],
        "Glow Salon"
    );
    assert!(
        kinds(&w.drafts(w.tenant).await, EventKind::TENANT_PROFILE_UPDATED).is_empty(),
        "nothing ledgered for refused input"
    );

    // A valid profile replaces it, sealed, and the assistant answers from it.
    let (status, v) = put(&s, "/api/v1/profile", profile("Lotus Spa")).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        s.get("/api/v1/profile").await.1["profile"]["name"],
        "Lotus Spa"
    );
    let view = w.env.store.tenant(w.tenant).await.unwrap();
    assert_eq!(view.summary.name.as_deref(), Some("Lotus Spa"));
    let drafts = w.drafts(w.tenant).await;
    let updated = kinds(&drafts, EventKind::TENANT_PROFILE_UPDATED);
    assert_eq!(updated.len(), 1);
    assert_eq!(updated[0].actor, Actor::Member(s.member.bytes()));
    assert!(!contains(&w.full_bundle().await, "Lotus Spa"));
    smartchat_tests::assert_no_plaintext(&w.env, &["Lotus Spa"]);

    // Staff read it and may not change it; auditors do not read it.
    w.as_role(&s, Role::Staff).await;
    assert_eq!(s.get("/api/v1/profile").await.0, 200);
    assert_eq!(
        put(&s, "/api/v1/profile", profile("Staff Spa")).await.0,
        403
    );
    w.as_role(&s, Role::Auditor).await;
    assert_eq!(s.get("/api/v1/profile").await.0, 403);

    // Another tenant's owner changes only their own.
    let other = new_tenant(&w.env, "other-settings", None).await;
    let o = w.login(other).await;
    assert_eq!(
        put(&o, "/api/v1/profile", profile("Other Place")).await.0,
        200
    );
    assert_eq!(
        w.env
            .store
            .tenant(w.tenant)
            .await
            .unwrap()
            .summary
            .name
            .as_deref(),
        Some("Lotus Spa")
    );
}

async fn numbers_connect_to_meta_or_the_sandbox_and_never_show_the_token(env: TestEnv) {
    let w = world(env).await;
    let s = w.login(w.tenant).await;
    let (status, v) = s.get("/api/v1/numbers").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["numbers"].as_array().unwrap().len(), 1);
    assert_eq!(v["numbers"][0]["phone_number_id"], PNID);
    assert_eq!(v["numbers"][0]["sandbox"], true);
    assert_eq!(v["numbers"][0]["access_token_set"], false);

    let token = "EAAGmetaTokenSecret123";
    let (status, v) = s
        .post(
            "/api/v1/numbers",
            Some(serde_json::json!({
                "phone_number_id": "7000002", "access_token": token, "waba_id": "880001"
            })),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["access_token_set"], true);
    assert_eq!(v["sandbox"], false);
    assert_eq!(v["waba_id"], "880001");
    let (_, v) = s.get("/api/v1/numbers").await;
    assert_eq!(v["numbers"].as_array().unwrap().len(), 2);
    assert!(!v.to_string().contains(token));
    assert_eq!(
        w.env
            .store
            .access_token(w.tenant, &"7000002".parse().unwrap())
            .await
            .unwrap()
            .expose(),
        token
    );

    // Anyone's number already: 409, for this tenant and another alike. Bad ids: 422.
    let again = serde_json::json!({ "phone_number_id": "7000002" });
    assert_eq!(s.post("/api/v1/numbers", Some(again.clone())).await.0, 409);
    let other = new_tenant(&w.env, "other-numbers", None).await;
    let o = w.login(other).await;
    assert_eq!(o.post("/api/v1/numbers", Some(again)).await.0, 409);
    for bad in [
        serde_json::json!({ "phone_number_id": "12ab" }),
        serde_json::json!({ "phone_number_id": "7000009", "waba_id": "x" }),
        serde_json::json!({ "phone_number_id": "7000009", "access_token": "has space" }),
        serde_json::json!({ "number": "7000009" }),
    ] {
        let (status, v) = s.post("/api/v1/numbers", Some(bad)).await;
        assert_eq!(status, 422, "{v}");
    }

    // A new business gets a sandbox number and can try its assistant at once.
    let (status, v) = o.post("/api/v1/numbers/sandbox", None).await;
    assert_eq!(status, 201, "{v}");
    let sandbox_id = v["phone_number_id"].as_str().unwrap().to_owned();
    assert_eq!(sandbox_id.len(), 32);
    assert!(sandbox_id.starts_with("00"));
    assert_eq!(v["sandbox"], true);
    let (status, v) = o
        .post(
            "/api/v1/sandbox/messages",
            Some(serde_json::json!({ "from": "+919800000001", "text": "hello, are you open?" })),
        )
        .await;
    assert_eq!(status, 202, "{v}");
    assert_eq!(
        w.env
            .store
            .tenant_for_number(&sandbox_id.parse().unwrap())
            .await
            .unwrap(),
        other
    );

    // Disconnecting: another tenant's number is 404; the owner's own goes.
    assert_eq!(delete(&o, "/api/v1/numbers/7000002").await.0, 404);
    assert_eq!(delete(&s, "/api/v1/numbers/not-a-number").await.0, 404);
    assert_eq!(delete(&s, "/api/v1/numbers/7000002").await.0, 204);
    assert_eq!(delete(&s, "/api/v1/numbers/7000002").await.0, 404);
    assert!(
        w.env
            .store
            .tenant_for_number(&"7000002".parse().unwrap())
            .await
            .is_err()
    );
    assert_eq!(
        s.get("/api/v1/numbers").await.1["numbers"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Ledgered with digests and reasons, never the token; the token is sealed at rest.
    let drafts = w.drafts(w.tenant).await;
    let connected = kinds(&drafts, EventKind::PHONE_NUMBER_CONNECTED);
    assert_eq!(connected.len(), 1);
    assert_eq!(code(connected[0], AttrKey::REASON), Some(1));
    assert_eq!(
        kinds(&drafts, EventKind::PHONE_NUMBER_DISCONNECTED).len(),
        1
    );
    let sandbox = kinds(&w.drafts(other).await, EventKind::PHONE_NUMBER_CONNECTED)
        .into_iter()
        .filter_map(|d| code(d, AttrKey::REASON))
        .collect::<Vec<_>>();
    assert_eq!(sandbox, vec![2]);
    assert!(!contains(&w.full_bundle().await, token));
    smartchat_tests::assert_no_plaintext(&w.env, &[token]);

    // Staff may not see or change numbers.
    w.as_role(&s, Role::Staff).await;
    assert_eq!(s.get("/api/v1/numbers").await.0, 403);
    assert_eq!(s.post("/api/v1/numbers/sandbox", None).await.0, 403);
    assert_eq!(delete(&s, &format!("/api/v1/numbers/{PNID}")).await.0, 403);
}

async fn a_tenants_own_provider_key_is_sealed_used_and_shredded(env: TestEnv) {
    let w = world(env).await;
    let s = w.login(w.tenant).await;
    w.openai.script_reply("from openai");
    // The platform's key is not the one this provider accepts.
    w.says("hello there").await;
    let first = w.openai.requests();
    assert!(!first.is_empty());
    assert!(
        first.iter().all(|r| !r.authorized),
        "the platform key is sent"
    );

    // The owner sets the tenant's own key: sealed, never returned, ledgered without it.
    let (status, v) = put(
        &s,
        "/api/v1/settings/assistant",
        serde_json::json!({ "keys": { "openai": TENANT_KEY } }),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["keys"], serde_json::json!(["openai"]));
    assert!(!v.to_string().contains(TENANT_KEY));
    let (_, v) = s.get("/api/v1/settings/assistant").await;
    assert_eq!(v["keys"], serde_json::json!(["openai"]));
    assert_eq!(
        v["providers"],
        serde_json::Value::Null,
        "the chain is left as it was"
    );
    assert!(!v.to_string().contains(TENANT_KEY));

    // The pipeline sends the tenant's key in Authorization.
    let n = w.openai.request_count();
    w.says("do you do haircuts?").await;
    let after = &w.openai.requests()[n..];
    assert!(!after.is_empty());
    assert!(
        after.iter().all(|r| r.authorized),
        "the tenant's key is sent"
    );

    // A provider the platform has no key for becomes available with the tenant's key.
    assert_eq!(v["configured"], serde_json::json!(["openai"]));
    let (status, v) = put(
        &s,
        "/api/v1/settings/assistant",
        serde_json::json!({ "keys": { "deepseek": "sk-deepseek-tenant-1" }, "providers": ["deepseek", "openai"] }),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["configured"], serde_json::json!(["openai", "deepseek"]));
    assert_eq!(v["effective"], serde_json::json!(["deepseek", "openai"]));
    assert_eq!(v["keys"], serde_json::json!(["openai", "deepseek"]));

    // Refused input changes nothing: unknown provider, a short key, a bad chain with keys.
    for bad in [
        serde_json::json!({ "keys": { "anthropic": "sk-anthropic-123" } }),
        serde_json::json!({ "keys": { "openai": "short" } }),
        serde_json::json!({ "keys": { "openai": "sk-new-key-9999" }, "providers": ["nope"] }),
        serde_json::json!({ "keys": ["openai"] }),
        serde_json::json!({ "key": {} }),
    ] {
        let (status, v) = put(&s, "/api/v1/settings/assistant", bad).await;
        assert_eq!(status, 422, "{v}");
    }
    let keys = w.env.store.provider_keys(w.tenant).await.unwrap();
    assert_eq!(
        keys[0].1.expose(),
        TENANT_KEY,
        "the refused key was not stored"
    );

    // A change that fails half-way (the database refuses the chain's update, after the
    // key's removal in the same request) keeps none of it and ledgers nothing.
    let refusal =
        smartchat_tests::refuse_writes(&w.env, "UPDATE OF provider_chain ON tenants").await;
    let (status, v) = put(
        &s,
        "/api/v1/settings/assistant",
        serde_json::json!({ "keys": { "deepseek": null }, "providers": ["openai"] }),
    )
    .await;
    assert!((500..600).contains(&status), "{status} {v}");
    refusal.lift().await;
    let (_, v) = s.get("/api/v1/settings/assistant").await;
    assert_eq!(v["keys"], serde_json::json!(["openai", "deepseek"]));
    assert_eq!(v["providers"], serde_json::json!(["deepseek", "openai"]));

    // null removes; staff may read but not set.
    let (status, v) = put(
        &s,
        "/api/v1/settings/assistant",
        serde_json::json!({ "keys": { "deepseek": null } }),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["keys"], serde_json::json!(["openai"]));
    assert_eq!(v["configured"], serde_json::json!(["openai"]));
    let drafts = w.drafts(w.tenant).await;
    let set: Vec<_> = kinds(&drafts, EventKind::PROVIDER_KEY_SET)
        .into_iter()
        .map(|d| (code(d, AttrKey::PROVIDER), code(d, AttrKey::REASON)))
        .collect();
    assert_eq!(set, vec![(Some(1), Some(1)), (Some(7), Some(1))]);
    let removed = kinds(&drafts, EventKind::PROVIDER_KEY_REMOVED);
    assert_eq!(removed.len(), 1);
    assert_eq!(code(removed[0], AttrKey::PROVIDER), Some(7));
    assert_eq!(removed[0].actor, Actor::Member(s.member.bytes()));
    let bundle = w.full_bundle().await;
    assert!(!contains(&bundle, TENANT_KEY) && !contains(&bundle, "sk-deepseek"));
    smartchat_tests::assert_no_plaintext(&w.env, &[TENANT_KEY, "sk-deepseek-tenant-1"]);
    w.as_role(&s, Role::Staff).await;
    assert_eq!(s.get("/api/v1/settings/assistant").await.0, 200);
    let (status, _) = put(
        &s,
        "/api/v1/settings/assistant",
        serde_json::json!({ "keys": { "openai": null } }),
    )
    .await;
    assert_eq!(status, 403);

    // Shredding the tenant makes the key unreadable; the purge deletes its row.
    w.env
        .store
        .shred_tenant(w.tenant, Actor::System)
        .await
        .unwrap();
    assert!(matches!(
        w.env.store.provider_keys(w.tenant).await,
        Err(smartchat_core::CoreError::Shredded { .. })
    ));
    assert!(
        w.pipeline.providers_for(w.tenant).await.is_err(),
        "fails closed"
    );
    assert_eq!(
        w.env
            .store
            .provider_key_names(w.tenant)
            .await
            .unwrap()
            .len(),
        1
    );
    w.env
        .store
        .purge_tenant_rows(w.tenant, 100, |_| {})
        .await
        .unwrap();
    assert!(
        w.env
            .store
            .provider_key_names(w.tenant)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn a_tenant_may_only_tighten_its_policy(env: TestEnv) {
    let w = world(env).await;
    let s = w.login(w.tenant).await;
    let (status, v) = s.get("/api/v1/policy").await;
    assert_eq!(status, 200, "{v}");
    let before = v["version"].as_str().unwrap().to_owned();
    assert_eq!(v["version"], v["platform_version"]);
    assert!(v["effective"]["retention"].is_object(), "{v}");
    assert_eq!(v["overrides"]["forbid_processors"], serde_json::json!([]));

    // Loosening: 422 with every rule named; nothing changes, nothing ledgered.
    let (status, v) = put(
        &s,
        "/api/v1/policy",
        serde_json::json!({ "retention": { "conversations": { "after_termination_days": 400 } } }),
    )
    .await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["code"], "policy_loosens");
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("retention.conversations"),
        "{v}"
    );
    assert_eq!(
        v["violations"][0]["rule"]
            .as_str()
            .map(|r| r.starts_with("retention.conversations")),
        Some(true),
        "{v}"
    );
    let (status, _) = put(
        &s,
        "/api/v1/policy",
        serde_json::json!({ "forbid": ["deepseek"] }),
    )
    .await;
    assert_eq!(status, 422, "unknown keys are refused");
    assert_eq!(s.get("/api/v1/policy").await.1["version"], before.as_str());

    // Tightening: a new version, ledgered like the CLI (with the member as actor).
    let (status, v) = put(
        &s,
        "/api/v1/policy",
        serde_json::json!({ "forbid_processors": ["deepseek"] }),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_ne!(v["version"], before.as_str());
    assert_eq!(
        v["overrides"]["forbid_processors"],
        serde_json::json!(["deepseek"])
    );
    let drafts = w.drafts(w.tenant).await;
    let changed = kinds(&drafts, EventKind::POLICY_VERSION_CHANGED);
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].actor, Actor::Member(s.member.bytes()));

    // Records of processing: the same content as `smartchat policy records`.
    w.ledger.sequence_all().await.unwrap();
    let (status, v) = s.get("/api/v1/records").await;
    assert_eq!(status, 200, "{v}");
    let eff = w.env.store.policy.effective(w.tenant).await.unwrap();
    let entries = w.ledger.tenant_entries(w.tenant.bytes()).await.unwrap();
    let usage = smartchat_core::policy_store::usage_from_entries(&entries);
    let expected = smartchat_policies::records_of_processing(&eff, "Glow Salon", &usage);
    assert_eq!(v, serde_json::to_value(&expected).unwrap());
    let res = s
        .http
        .get(format!("{}/api/v1/records?format=markdown", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/markdown")
    );
    assert_eq!(res.text().await.unwrap(), expected.to_markdown());
    assert_eq!(s.get("/api/v1/records?format=pdf").await.0, 400);

    // Auditors read the policy and the records, and change nothing; staff see neither.
    w.as_role(&s, Role::Auditor).await;
    assert_eq!(s.get("/api/v1/policy").await.0, 200);
    assert_eq!(s.get("/api/v1/records").await.0, 200);
    assert_eq!(
        put(&s, "/api/v1/policy", serde_json::json!({})).await.0,
        403
    );
    w.as_role(&s, Role::Staff).await;
    assert_eq!(s.get("/api/v1/policy").await.0, 403);
    assert_eq!(s.get("/api/v1/records").await.0, 403);
}

both_backends!(
    the_profile_is_validated_resealed_and_ledgered,
    numbers_connect_to_meta_or_the_sandbox_and_never_show_the_token,
    a_tenants_own_provider_key_is_sealed_used_and_shredded,
    a_tenant_may_only_tighten_its_policy,
);
