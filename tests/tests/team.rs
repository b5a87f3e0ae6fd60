//! The owners' team API on both backends (issue 8): listing members with how they log in,
//! inviting by e-mail or OIDC identity (409 for a member already), removing a member (their
//! sessions end with it; never the last owner), ledgered without a login; owners only; a
//! member of another tenant is 404.

use smartchat_api::app::{AppState, router};
use smartchat_api::auth::{AuthState, OneTimeLogin};
use smartchat_api::boot::Services;
use smartchat_api::pipeline::Pipeline;
use smartchat_core::ids::{Handle, MemberId, TenantId};
use smartchat_core::ledger_store::Ledger;
use smartchat_core::members::{Identity, Members, Role};
use smartchat_core::store::{NewTenant, Profile};
use smartchat_ledger::{Actor, AttrKey, AttrValue, EventKind};
use smartchat_tests::{Session, TestEnv, both_backends};

const EMAIL: &str = "priya.team@example.com";

async fn tenant(env: &TestEnv, handle: &str) -> TenantId {
    env.store
        .create_tenant(NewTenant {
            handle: handle.parse::<Handle>().unwrap(),
            profile: Profile(serde_json::json!({"name": "Glow"})),
            phone_number_id: None,
            access_token: None,
        })
        .await
        .unwrap()
}

async fn login(env: &TestEnv, ledger: &Ledger, tenant: TenantId) -> Session {
    let config = smartchat_core::config::Config::load_from(None, &Default::default()).unwrap();
    let (otl, token) = OneTimeLogin::generate();
    let state = AppState::new(
        Services {
            store: env.store.clone(),
            ledger: ledger.clone(),
        },
        Pipeline::new(env.store.clone(), &config).unwrap(),
        AuthState::local(env.store.clone(), otl),
        &config,
    );
    Session::start(router(state), &token, tenant).await
}

async fn delete(s: &Session, path: &str) -> (u16, serde_json::Value) {
    s.send(reqwest::Method::DELETE, path, None, true).await
}

fn member_of(v: &serde_json::Value, id: MemberId) -> Option<serde_json::Value> {
    v["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["member_id"] == id.to_string())
        .cloned()
}

async fn owners_invite_list_and_remove_members(env: TestEnv) {
    let ledger = Ledger::open(env.store.db.clone(), &env.store.keys, "test/ledger")
        .await
        .unwrap();
    let t = tenant(&env, "glow-team").await;
    let s = login(&env, &ledger, t).await;
    let (status, v) = s.get("/api/v1/members").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["members"].as_array().unwrap().len(), 1);
    let me = member_of(&v, s.member).unwrap();
    assert_eq!(me["role"], "owner");
    assert_eq!(me["login"], "operator");

    // Invitations: by e-mail address, by OIDC identity; the same login twice is 409.
    let (status, v) = s
        .post(
            "/api/v1/members",
            Some(serde_json::json!({ "email": "  Priya.Team@Example.com ", "role": "staff" })),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let priya: MemberId = v["member_id"].as_str().unwrap().parse().unwrap();
    let (status, v) = s
        .post(
            "/api/v1/members",
            Some(serde_json::json!({ "email": EMAIL, "role": "auditor" })),
        )
        .await;
    assert_eq!(status, 409, "{v}");
    let (status, v) = s
        .post(
            "/api/v1/members",
            Some(serde_json::json!({
                "issuer": "https://id.example.com", "subject": "auditor-7", "role": "auditor"
            })),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let auditor: MemberId = v["member_id"].as_str().unwrap().parse().unwrap();
    for bad in [
        serde_json::json!({ "email": "not-an-address", "role": "staff" }),
        serde_json::json!({ "email": "a@b.example", "issuer": "https://x", "subject": "s", "role": "staff" }),
        serde_json::json!({ "issuer": "https://id.example.com", "role": "staff" }),
        serde_json::json!({ "issuer": "id.example.com", "subject": "s", "role": "staff" }),
        serde_json::json!({ "email": "a@b.example", "role": "admin" }),
        serde_json::json!({ "email": "a@b.example" }),
    ] {
        let (status, v) = s.post("/api/v1/members", Some(bad)).await;
        assert_eq!(status, 422, "{v}");
    }
    let (_, v) = s.get("/api/v1/members").await;
    assert_eq!(v["members"].as_array().unwrap().len(), 3);
    let p = member_of(&v, priya).unwrap();
    assert_eq!(
        (p["role"].as_str(), p["login"].as_str()),
        (Some("staff"), Some("email"))
    );
    assert_eq!(p["email"], EMAIL);
    let a = member_of(&v, auditor).unwrap();
    assert_eq!(
        (a["role"].as_str(), a["login"].as_str()),
        (Some("auditor"), Some("oidc"))
    );
    assert_eq!(a["email"], serde_json::Value::Null);

    // Priya's first login binds the invitation; removing her ends her session.
    let members = Members::new(env.store.clone());
    let hash = [7u8; 32];
    members
        .start_session(
            &Identity::Oidc {
                issuer: "https://id.example.com".into(),
                subject: "priya-sub".into(),
                verified_email: Some(EMAIL.into()),
            },
            Some(t),
            &hash,
            i64::MAX,
        )
        .await
        .unwrap();
    assert!(members.session(&hash).await.unwrap().is_some());
    let (_, v) = s.get("/api/v1/members").await;
    let p = member_of(&v, priya).unwrap();
    assert_eq!(
        (p["login"].as_str(), p["email"].as_str()),
        (Some("oidc"), Some(EMAIL))
    );
    assert_eq!(delete(&s, &format!("/api/v1/members/{priya}")).await.0, 204);
    assert!(
        members.session(&hash).await.unwrap().is_none(),
        "her session ended"
    );
    assert_eq!(delete(&s, &format!("/api/v1/members/{priya}")).await.0, 404);
    assert_eq!(delete(&s, "/api/v1/members/not-an-id").await.0, 404);
    assert!(member_of(&s.get("/api/v1/members").await.1, priya).is_none());

    // The last owner stays (neither removed nor demoted); with a second owner, one may go.
    let (status, v) = delete(&s, &format!("/api/v1/members/{}", s.member)).await;
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["code"], "last_owner");
    let (status, v) = s
        .send(
            reqwest::Method::PUT,
            &format!("/api/v1/members/{}/role", s.member),
            Some(serde_json::json!({ "role": "staff" })),
            true,
        )
        .await;
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["code"], "last_owner");
    assert_eq!(
        s.get("/api/v1/me").await.1["role"],
        "owner",
        "still the owner"
    );
    let (status, v) = s
        .post(
            "/api/v1/members",
            Some(serde_json::json!({ "email": "second.owner@example.com", "role": "owner" })),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let second: MemberId = v["member_id"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        delete(&s, &format!("/api/v1/members/{second}")).await.0,
        204
    );

    // Ledgered with member ids and roles, never a login; logins sealed at rest.
    ledger.sequence_all().await.unwrap();
    let drafts: Vec<_> = ledger
        .tenant_entries(t.bytes())
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.entry.draft)
        .collect();
    let me_actor = Actor::Member(s.member.bytes());
    let granted: Vec<_> = drafts
        .iter()
        .filter(|d| d.kind == EventKind::MEMBER_ROLE_CHANGED && d.actor == me_actor)
        .flat_map(|d| d.attrs.iter().map(|(k, v)| (*k, *v)))
        .filter(|(k, _)| *k == AttrKey::ROLE)
        .map(|(_, v)| v)
        .collect();
    assert_eq!(
        granted,
        vec![AttrValue::Code(3), AttrValue::Code(5), AttrValue::Code(1)]
    );
    let removed = drafts
        .iter()
        .filter(|d| d.kind == EventKind::MEMBER_REMOVED && d.actor == me_actor)
        .count();
    assert_eq!(removed, 2);
    let (_, _, bundle) = ledger.export(0, None, Vec::new()).await.unwrap();
    assert!(!bundle.windows(EMAIL.len()).any(|w| w == EMAIL.as_bytes()));
    smartchat_tests::assert_no_plaintext(&env, &[EMAIL, "auditor-7"]);

    // Another tenant's owner: every member id of this tenant is 404.
    let other = tenant(&env, "other-team").await;
    let o = login(&env, &ledger, other).await;
    assert_eq!(member_of(&o.get("/api/v1/members").await.1, s.member), None);
    assert_eq!(o.get(&format!("/api/v1/members/{auditor}")).await.0, 404);
    assert_eq!(
        delete(&o, &format!("/api/v1/members/{auditor}")).await.0,
        404
    );
    assert_eq!(
        o.send(
            reqwest::Method::PUT,
            &format!("/api/v1/members/{auditor}/role"),
            Some(serde_json::json!({ "role": "owner" })),
            true
        )
        .await
        .0,
        404
    );
    assert!(member_of(&s.get("/api/v1/members").await.1, auditor).is_some());

    // Only owners manage the team (another owner stays, so this one may be demoted).
    members
        .invite_member(
            t,
            &smartchat_core::members::Login::Email {
                email: "keeper@example.com".into(),
            },
            Role::Owner,
            Actor::System,
        )
        .await
        .unwrap();
    members
        .set_role(t, s.member, Role::Staff, Actor::System)
        .await
        .unwrap();
    assert_eq!(s.get("/api/v1/members").await.0, 403);
    let invite = serde_json::json!({ "email": "x@example.com", "role": "staff" });
    assert_eq!(s.post("/api/v1/members", Some(invite.clone())).await.0, 403);
    assert_eq!(
        delete(&s, &format!("/api/v1/members/{auditor}")).await.0,
        403
    );
    members
        .set_role(t, s.member, Role::Auditor, Actor::System)
        .await
        .unwrap();
    assert_eq!(s.get("/api/v1/members").await.0, 403);
    assert_eq!(s.post("/api/v1/members", Some(invite)).await.0, 403);
}

both_backends!(owners_invite_list_and_remove_members);
