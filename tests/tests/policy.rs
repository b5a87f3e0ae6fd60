//! Policies as code, stored and enforced (issue 4): registry changes notified with a notice
//! period and objections, tenants tightening but never loosening, and the policy version in
//! the ledger entries it governs.

use std::sync::Arc;

use smartchat_core::CoreError;
use smartchat_core::ids::{Handle, PhoneNumberId, TenantId};
use smartchat_core::ledger_store::Ledger;
use smartchat_core::policy_store::PolicyService;
use smartchat_core::store::{NewMessage, NewTenant, Profile, Store, SubjectContact};
use smartchat_ledger::{Actor, EventKind};
use smartchat_policies::{
    Category, ChangeKind, DenyCode, Policy, ProcessorId, Purpose, SubjectState, TenantOverrides,
};
use smartchat_tests::{TestEnv, both_backends};
use time::{Duration, OffsetDateTime};

const NEW_PROCESSOR: &str = r#"
[processors.mistral]
name = "Mistral AI"
service = "AI response generation"
ai_provider = true
region = "FR"
transfer_safeguard = "EU adequacy decision not needed (EU established)"
provider_retention = "no retention under the zero-retention agreement"
categories = ["conversations"]
purposes = ["respond_to_enquiries"]

[processors.mistral.request]
no_training = true
"#;

fn widened_platform() -> Policy {
    let base = include_str!("../../policies/default/platform.toml");
    Policy::from_toml_str(&format!("{base}\n{NEW_PROCESSOR}"), "widened.toml").unwrap()
}

async fn tenant(store: &Store, handle: &str) -> TenantId {
    store
        .create_tenant(NewTenant {
            handle: handle.parse::<Handle>().unwrap(),
            profile: Profile(serde_json::json!({"name": handle})),
            phone_number_id: None,
            access_token: None,
        })
        .await
        .unwrap()
}

fn overrides(toml: &str) -> TenantOverrides {
    TenantOverrides::from_toml_str(toml, "t.toml").unwrap()
}

async fn registry_change_is_notified_delayed_and_objectable(env: TestEnv) {
    let s = &env.store;
    let a = tenant(s, "tenant-a").await;
    let b = tenant(s, "tenant-b").await;
    let first = s
        .policy
        .record_platform(OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert!(first.changes.is_empty());
    // Same policy again: nothing new.
    let again = s
        .policy
        .record_platform(OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert!(again.changes.is_empty() && again.notices == 0 && again.previous.is_none());

    // The operator deploys a policy with a new sub-processor.
    let t0 = OffsetDateTime::now_utc();
    let widened = PolicyService::new(s.db.clone(), Arc::new(widened_platform()));
    let rec = widened.record_platform(t0).await.unwrap();
    assert_eq!(rec.changes.len(), 1, "{:?}", rec.changes);
    let change = &rec.changes[0];
    assert_eq!(change.processor.as_str(), "mistral");
    assert!(matches!(change.change, ChangeKind::AddProcessor { .. }));
    assert_eq!(rec.notices, 2, "both tenants are notified");
    assert_eq!(widened.notices(a).await.unwrap().len(), 1);

    let mistral = ProcessorId::new("mistral").unwrap();
    let ask = |eff: &smartchat_policies::EffectivePolicy| {
        eff.may(
            &mistral,
            &[Category::Conversations],
            Purpose::RespondToEnquiries,
            &SubjectState::default(),
        )
    };
    // During the notice period: denied for everyone.
    let during = widened
        .effective_at(a, t0 + Duration::days(1))
        .await
        .unwrap();
    assert_eq!(
        ask(&during).deny_reason().unwrap().code,
        DenyCode::ChangeNotYetEffective
    );
    // Tenant A objects; after the period A is still denied, B is allowed.
    widened
        .object(a, &change.id.0, Actor::System)
        .await
        .unwrap();
    widened
        .object(a, &change.id.0, Actor::System)
        .await
        .unwrap(); // idempotent
    let after_a = widened
        .effective_at(a, t0 + Duration::days(31))
        .await
        .unwrap();
    assert_eq!(
        ask(&after_a).deny_reason().unwrap().code,
        DenyCode::TenantObjectedToChange
    );
    let after_b = widened
        .effective_at(b, t0 + Duration::days(31))
        .await
        .unwrap();
    assert!(ask(&after_b).is_allow(), "{:?}", ask(&after_b));
    assert!(widened.notices(a).await.unwrap()[0].objected_at.is_some());
    assert!(matches!(
        widened.object(a, "chg_unknown", Actor::System).await,
        Err(CoreError::NotFound { .. })
    ));

    // Everything is ledgered.
    let ledger = Ledger::open(s.db.clone(), &s.keys, "test/ledger")
        .await
        .unwrap();
    ledger.sequence_all().await.unwrap();
    let kinds_a: Vec<EventKind> = ledger
        .tenant_entries(a.bytes())
        .await
        .unwrap()
        .iter()
        .map(|e| e.entry.draft.kind)
        .collect();
    assert!(kinds_a.contains(&EventKind::SUB_PROCESSOR_CHANGE_NOTIFIED));
    assert_eq!(
        kinds_a
            .iter()
            .filter(|k| **k == EventKind::SUB_PROCESSOR_CHANGE_OBJECTED)
            .count(),
        1
    );
    let all = ledger
        .entries(0, ledger.size().await.unwrap())
        .await
        .unwrap();
    let platform_changes: Vec<_> = all
        .iter()
        .filter(|e| {
            e.entry.draft.kind == EventKind::POLICY_VERSION_CHANGED
                && e.entry.draft.tenant.is_none()
        })
        .collect();
    assert_eq!(
        platform_changes.len(),
        2,
        "first recording and the widened policy"
    );
    assert_eq!(
        platform_changes[1].entry.draft.policy_version,
        Some(widened.platform().version().0)
    );
}

async fn tenants_tighten_never_loosen_and_versions_follow(env: TestEnv) {
    let s = &env.store;
    let t = tenant(s, "tightener").await;
    let ledger = Ledger::open(s.db.clone(), &s.keys, "test/ledger")
        .await
        .unwrap();
    let before = s.policy.version_for(t).await.unwrap();
    assert_eq!(before, s.policy.platform().version());
    // Loosening is refused with the rule named; nothing changes.
    let e = s
        .policy
        .set_overrides(
            t,
            &overrides("[retention.conversations]\nafter_termination_days = 400\n"),
            Actor::System,
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("retention.conversations"), "{e}");
    assert_eq!(s.policy.version_for(t).await.unwrap(), before);
    assert_eq!(
        s.policy.overrides(t).await.unwrap(),
        TenantOverrides::default()
    );
    // A message before tightening carries the platform version...
    store_message(s, t, "wamid.before").await;
    // ... tightening (forbid DeepSeek) changes the version ...
    let after = s
        .policy
        .set_overrides(
            t,
            &overrides("forbid_processors = [\"deepseek\"]\n"),
            Actor::System,
        )
        .await
        .unwrap();
    assert_ne!(after, before);
    let eff = s.policy.effective(t).await.unwrap();
    let deepseek = ProcessorId::new("deepseek").unwrap();
    let d = eff.may(
        &deepseek,
        &[Category::Conversations],
        Purpose::RespondToEnquiries,
        &SubjectState::default(),
    );
    assert_eq!(
        d.deny_reason().unwrap().code,
        DenyCode::TenantForbidsProcessor
    );
    // ... and the next message's ledger entry carries the new version.
    store_message(s, t, "wamid.after").await;
    ledger.sequence_all().await.unwrap();
    let entries = ledger.tenant_entries(t.bytes()).await.unwrap();
    let versions: Vec<_> = entries
        .iter()
        .filter(|e| e.entry.draft.kind == EventKind::MESSAGE_RECEIVED)
        .map(|e| e.entry.draft.policy_version)
        .collect();
    assert_eq!(versions, vec![Some(before.0), Some(after.0)]);
    let change = entries
        .iter()
        .find(|e| e.entry.draft.kind == EventKind::POLICY_VERSION_CHANGED)
        .unwrap();
    assert_eq!(change.entry.draft.policy_version, Some(after.0));
}

async fn store_message(s: &Store, t: TenantId, wamid: &str) {
    let key = s.tenant_key(t).await.unwrap();
    let mut tx = s.db.begin().await.unwrap();
    let contact = SubjectContact {
        wa_id: Some("919800000077".into()),
        ..SubjectContact::default()
    };
    let (sid, _) = s.upsert_subject(&mut tx, t, &key, &contact).await.unwrap();
    let conv = s
        .conversation_for(
            &mut tx,
            t,
            sid,
            &"4000001".parse::<PhoneNumberId>().unwrap(),
        )
        .await
        .unwrap();
    s.insert_message(
        &mut tx,
        t,
        &key,
        sid,
        conv,
        &NewMessage {
            direction: "in",
            kind: "text",
            status: "received",
            wamid: Some(wamid),
            body: Some("hello"),
            author: "customer",
        },
        1,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

#[test]
fn a_policy_file_that_does_not_load_stops_start_up_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("platform.toml");
    std::fs::write(&p, "schema = 1\nname = \"x\"\nnotice_period_days = 0\n").unwrap();
    let mut env = std::collections::HashMap::new();
    env.insert("SMARTCHAT_POLICY_FILE".to_owned(), p.display().to_string());
    let config = smartchat_core::config::Config::load_from(None, &env).unwrap();
    let e = smartchat_api::boot::load_policy(&config)
        .unwrap_err()
        .to_string();
    assert!(e.contains("platform.toml"), "{e}");
    assert!(e.contains("SMARTCHAT_POLICY_FILE"), "{e}");
}

both_backends!(
    registry_change_is_notified_delayed_and_objectable,
    tenants_tighten_never_loosen_and_versions_follow,
);
