//! The ledger for auditors on both backends (issue 8): a tenant's own entries as JSON (and
//! nothing of another tenant), the latest checkpoint with the verifier key, and the tenant
//! bundle that `smartchat-verify tenant-bundle` accepts offline (and rejects tampered). Also
//! the roles of every route of issue 8: staff 403 on owner-only routes, no conversation
//! text for auditors anywhere, 404 for every resource of another tenant.

use smartchat_api::app::{AppState, router};
use smartchat_api::auth::{AuthState, OneTimeLogin};
use smartchat_api::boot::Services;
use smartchat_api::pipeline::{self, Pipeline};
use smartchat_core::ids::{Handle, PhoneNumber, PhoneNumberId, TenantId};
use smartchat_core::ledger_store::Ledger;
use smartchat_core::members::{Members, Role};
use smartchat_core::store::{NewTenant, Profile};
use smartchat_ledger::{Actor, Entry, EventKind, verify_tenant_bundle};
use smartchat_tests::{Session, TestEnv, both_backends};

const PNID_A: &str = "8100001";
const PNID_B: &str = "8200002";
const CUSTOMER: &str = "919812340000";
const SECRET_TEXT: &str = "my knee surgery on friday";

struct World {
    env: TestEnv,
    config: smartchat_core::config::Config,
    pipeline: Pipeline,
    ledger: Ledger,
    a: TenantId,
    b: TenantId,
}

async fn tenant(env: &TestEnv, handle: &str, pnid: &str) -> TenantId {
    env.store
        .create_tenant(NewTenant {
            handle: handle.parse::<Handle>().unwrap(),
            profile: Profile(serde_json::json!({
                "name": "Clinic", "business_type": "clinic", "timezone": "Asia/Kolkata",
                "handoff_message": "We will reply soon."
            })),
            phone_number_id: Some(pnid.parse::<PhoneNumberId>().unwrap()),
            access_token: None,
        })
        .await
        .unwrap()
}

async fn world(env: TestEnv) -> World {
    let a = tenant(&env, "clinic-a", PNID_A).await;
    let b = tenant(&env, "clinic-b", PNID_B).await;
    let config = smartchat_core::config::Config::load_from(None, &Default::default()).unwrap();
    let ledger = Ledger::open(env.store.db.clone(), &env.store.keys, "test/ledger")
        .await
        .unwrap();
    let pipeline = Pipeline::new(env.store.clone(), &config).unwrap();
    let w = World {
        env,
        config,
        pipeline,
        ledger,
        a,
        b,
    };
    // Both tenants have customers, so the log interleaves their entries.
    for (pnid, text) in [
        (PNID_A, SECRET_TEXT),
        (PNID_B, "hello b"),
        (PNID_A, "and x-ray?"),
    ] {
        let from: PhoneNumber = CUSTOMER.parse().unwrap();
        let payload = pipeline::sandbox_payload(pnid, &from, text).unwrap();
        pipeline::ingest(&w.pipeline, &payload).await.unwrap();
        pipeline::drain(&w.pipeline).await.unwrap();
    }
    w
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

    async fn seqs(&self, tenant: TenantId) -> Vec<u64> {
        self.ledger.sequence_all().await.unwrap();
        self.ledger
            .tenant_entries(tenant.bytes())
            .await
            .unwrap()
            .iter()
            .map(|e| e.entry.seq)
            .collect()
    }
}

async fn raw(s: &Session, path: &str) -> (u16, String, reqwest::header::HeaderMap) {
    let res = s
        .http
        .get(format!("{}{path}", s.base))
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    (status, res.text().await.unwrap(), headers)
}

async fn auditors_read_and_verify_only_their_tenants_ledger(env: TestEnv) {
    let w = world(env).await;
    let s = w.login(w.a).await;
    let mine = w.seqs(w.a).await;
    let theirs = w.seqs(w.b).await;
    assert!(!theirs.is_empty());

    // Entries: this tenant's only, decoded, paged.
    let (status, v) = s.get("/api/v1/ledger/entries?limit=1000").await;
    assert_eq!(status, 200, "{v}");
    let got: Vec<u64> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    // The operator's login is ledgered too: every entry of this tenant so far.
    assert_eq!(got, w.seqs(w.a).await);
    assert!(got.iter().all(|q| !theirs.contains(q)));
    assert!(mine.iter().all(|q| got.contains(q)));
    let first = &v["entries"][0];
    assert_eq!(first["kind"]["name"], "tenant_created");
    assert_eq!(first["kind"]["code"], 500);
    assert!(first["hash"].as_str().unwrap().len() == 64);
    let received = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"]["name"] == "message_received")
        .unwrap();
    assert_eq!(received["subject"].as_str().unwrap().len(), 64);
    assert!(received["refs"][0]["id"].is_string());
    let (_, page) = s.get("/api/v1/ledger/entries?limit=2").await;
    assert_eq!(page["entries"].as_array().unwrap().len(), 2);
    let after = page["next_after"].as_u64().unwrap();
    let (_, next) = s
        .get(&format!("/api/v1/ledger/entries?after={after}&limit=2"))
        .await;
    assert_eq!(next["entries"][0]["seq"].as_u64().unwrap(), got[2]);

    // No checkpoint yet: 404. The export signs one.
    assert_eq!(s.get("/api/v1/ledger/checkpoint").await.0, 404);
    let (status, body, headers) = raw(&s, "/api/v1/ledger/export").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        headers["content-disposition"]
            .to_str()
            .unwrap()
            .contains("attachment")
    );
    let (status, cp) = s.get("/api/v1/ledger/checkpoint").await;
    assert_eq!(status, 200, "{cp}");
    assert_eq!(cp["vkey"], w.ledger.vkey());
    let vkey = w.ledger.vkey();

    // The bundle verifies offline with the published key, and holds no entry of tenant B.
    let report = verify_tenant_bundle(body.as_bytes(), Some(&vkey)).unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.checkpoint_size, cp["size"].as_u64().unwrap());
    let bundle: smartchat_ledger::TenantBundle = serde_json::from_str(&body).unwrap();
    let in_bundle: Vec<u64> = bundle.entries.iter().map(|e| e.seq).collect();
    assert_eq!(
        in_bundle,
        got.iter()
            .copied()
            .filter(|q| *q < report.checkpoint_size)
            .collect::<Vec<_>>()
    );
    use base64::Engine;
    for e in &bundle.entries {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&e.entry)
            .unwrap();
        let entry = Entry::decode(&bytes).unwrap();
        assert_eq!(entry.draft.tenant.map(|t| t.0), Some(w.a.bytes()));
    }
    assert!(!body.contains(SECRET_TEXT) && !body.contains(CUSTOMER));
    // A tampered entry, and the right key refusing another's signature.
    let mut t = bundle.clone();
    let mut bytes = base64::engine::general_purpose::STANDARD
        .decode(&t.entries[1].entry)
        .unwrap();
    bytes[10] ^= 1;
    t.entries[1].entry = base64::engine::general_purpose::STANDARD.encode(bytes);
    let r = verify_tenant_bundle(&serde_json::to_vec(&t).unwrap(), Some(&vkey)).unwrap();
    assert_eq!(r.first_failure.unwrap().seq, Some(t.entries[1].seq));

    // The export itself is ledgered, by the member.
    w.ledger.sequence_all().await.unwrap();
    let exported: Vec<_> = w
        .ledger
        .tenant_entries(w.a.bytes())
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.entry.draft.kind == EventKind::LEDGER_EXPORTED)
        .collect();
    assert_eq!(exported.len(), 1);
    assert_eq!(
        exported[0].entry.draft.actor,
        Actor::Member(s.member.bytes())
    );

    // Tenant B's auditor sees B's entries only.
    let o = w.login(w.b).await;
    let (_, v) = o.get("/api/v1/ledger/entries?limit=1000").await;
    let b_got: Vec<u64> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(b_got, w.seqs(w.b).await);
    assert!(b_got.iter().all(|q| !got.contains(q)));
}

async fn roles_bound_every_route_and_auditors_never_see_conversations(env: TestEnv) {
    let w = world(env).await;
    let s = w.login(w.a).await;
    let members = Members::new(w.env.store.clone());
    let invited = s
        .post(
            "/api/v1/members",
            Some(serde_json::json!({ "email": "staff@example.com", "role": "staff" })),
        )
        .await
        .1["member_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let conv = s.get("/api/v1/conversations").await.1["conversations"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Another tenant's owner: every resource of tenant A is 404.
    let o = w.login(w.b).await;
    let put = reqwest::Method::PUT;
    let del = reqwest::Method::DELETE;
    for (method, path) in [
        (del.clone(), format!("/api/v1/numbers/{PNID_A}")),
        (del.clone(), format!("/api/v1/members/{invited}")),
        (reqwest::Method::GET, format!("/api/v1/members/{invited}")),
        (put.clone(), format!("/api/v1/members/{invited}/role")),
        (
            reqwest::Method::GET,
            format!("/api/v1/conversations/{conv}/messages"),
        ),
    ] {
        let body = (method == put).then(|| serde_json::json!({ "role": "owner" }));
        let (status, v) = o.send(method.clone(), &path, body, true).await;
        assert_eq!(status, 404, "{method} {path}: {v}");
    }
    assert_eq!(
        w.env
            .store
            .tenant_for_number(&PNID_A.parse().unwrap())
            .await
            .unwrap(),
        w.a
    );

    // Staff: 403 on every owner-only route (and the auditors' ledger and records).
    smartchat_tests::add_spare_owner(&w.env.store, w.a).await;
    members
        .set_role(w.a, s.member, Role::Staff, Actor::System)
        .await
        .unwrap();
    let owner_only: Vec<(reqwest::Method, String, Option<serde_json::Value>)> = vec![
        (
            put.clone(),
            "/api/v1/profile".into(),
            Some(serde_json::json!({})),
        ),
        (reqwest::Method::GET, "/api/v1/numbers".into(), None),
        (
            reqwest::Method::POST,
            "/api/v1/numbers".into(),
            Some(serde_json::json!({ "phone_number_id": "8100009" })),
        ),
        (
            reqwest::Method::POST,
            "/api/v1/numbers/sandbox".into(),
            None,
        ),
        (del.clone(), format!("/api/v1/numbers/{PNID_A}"), None),
        (
            put.clone(),
            "/api/v1/policy".into(),
            Some(serde_json::json!({})),
        ),
        (reqwest::Method::GET, "/api/v1/policy".into(), None),
        (reqwest::Method::GET, "/api/v1/records".into(), None),
        (reqwest::Method::GET, "/api/v1/members".into(), None),
        (
            reqwest::Method::POST,
            "/api/v1/members".into(),
            Some(serde_json::json!({ "email": "x@example.com", "role": "staff" })),
        ),
        (del.clone(), format!("/api/v1/members/{invited}"), None),
        (
            put.clone(),
            "/api/v1/settings/assistant".into(),
            Some(serde_json::json!({ "keys": { "openai": "sk-staff-key-1" } })),
        ),
        (reqwest::Method::GET, "/api/v1/ledger/entries".into(), None),
        (
            reqwest::Method::GET,
            "/api/v1/ledger/checkpoint".into(),
            None,
        ),
        (reqwest::Method::GET, "/api/v1/ledger/export".into(), None),
    ];
    for (method, path, body) in &owner_only {
        let (status, v) = s.send(method.clone(), path, body.clone(), true).await;
        assert_eq!(status, 403, "staff {method} {path}: {v}");
    }
    assert_eq!(s.get("/api/v1/profile").await.0, 200);
    assert_eq!(s.get("/api/v1/settings/assistant").await.0, 200);
    assert_eq!(
        w.env.store.numbers(w.a).await.unwrap().len(),
        1,
        "nothing changed"
    );

    // Auditors: the ledger, the policy, the records; never a conversation or its text.
    members
        .set_role(w.a, s.member, Role::Auditor, Actor::System)
        .await
        .unwrap();
    for path in [
        "/api/v1/conversations".to_owned(),
        format!("/api/v1/conversations/{conv}/messages"),
        "/api/v1/profile".into(),
        "/api/v1/settings/assistant".into(),
        "/api/v1/numbers".into(),
        "/api/v1/members".into(),
        "/api/v1/search?q=knee".into(),
    ] {
        let (status, body, _) = raw(&s, &path).await;
        assert_eq!(status, 403, "auditor {path}: {body}");
    }
    for path in [
        "/api/v1/ledger/entries?limit=1000",
        "/api/v1/ledger/export",
        "/api/v1/ledger/checkpoint",
        "/api/v1/records",
        "/api/v1/records?format=markdown",
        "/api/v1/policy",
    ] {
        let (status, body, _) = raw(&s, path).await;
        assert_eq!(status, 200, "auditor {path}: {body}");
        for needle in [SECRET_TEXT, "x-ray", CUSTOMER] {
            assert!(!body.contains(needle), "{needle} in {path}");
        }
    }
}

both_backends!(
    auditors_read_and_verify_only_their_tenants_ledger,
    roles_bound_every_route_and_auditors_never_see_conversations,
);
