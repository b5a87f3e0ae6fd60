//! The decision API: a decision table and properties.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use proptest::prelude::*;
use smartchat_policies::{
    Category, Decision, DenyCode, Fallback, Policy, ProcessorId, Purpose, RedactionKind,
    RequestFlag, SubjectState, TenantOverrides, pseudonymous_user_id,
};

fn policy() -> &'static Policy {
    static P: std::sync::OnceLock<Policy> = std::sync::OnceLock::new();
    P.get_or_init(|| Policy::platform_default().unwrap())
}

fn pid(s: &str) -> ProcessorId {
    ProcessorId::new(s).unwrap()
}

use Category::*;
use Purpose::*;

#[derive(Clone, Copy)]
enum Subj {
    Plain,
    ObjectedAi,
    OptedOut,
    Deleted,
    DeletedHold,
    Hold,
    ObjectedAnalytics,
}

fn subject(s: Subj) -> SubjectState {
    let mut st = SubjectState::default();
    match s {
        Subj::Plain => {}
        Subj::ObjectedAi => st.objected_to_ai = true,
        Subj::OptedOut => st.opted_out_of_follow_ups = true,
        Subj::Deleted => st.deleted = true,
        Subj::DeletedHold => {
            st.deleted = true;
            st.legal_hold = true;
        }
        Subj::Hold => st.legal_hold = true,
        Subj::ObjectedAnalytics => {
            st.objected_purposes.insert(Analytics);
        }
    }
    st
}

/// processor, categories, purpose, subject, expected deny code (None: allow).
type Row = (
    &'static str,
    &'static [Category],
    Purpose,
    Subj,
    Option<DenyCode>,
);

#[test]
fn decision_table() {
    use DenyCode as D;
    let rows: &[Row] = &[
        (
            "openai",
            &[Conversations],
            RespondToEnquiries,
            Subj::Plain,
            None,
        ),
        (
            "openai",
            &[Conversations, BusinessInfo, LeadData],
            RespondToEnquiries,
            Subj::Plain,
            None,
        ),
        (
            "deepseek",
            &[Conversations],
            RespondToEnquiries,
            Subj::Plain,
            None,
        ),
        ("meta", &[Conversations], ProvideService, Subj::Plain, None),
        ("cloud_host", &[ContactInfo], Support, Subj::Plain, None),
        (
            "anthropic",
            &[Conversations],
            RespondToEnquiries,
            Subj::Plain,
            Some(D::ProcessorNotRegistered),
        ),
        (
            "openai",
            &[ContactInfo],
            RespondToEnquiries,
            Subj::Plain,
            Some(D::CategoryNotAllowed),
        ),
        (
            "openai",
            &[Conversations, UsageData],
            ProvideService,
            Subj::Plain,
            Some(D::CategoryNotAllowed),
        ),
        (
            "openai",
            &[Conversations],
            Analytics,
            Subj::Plain,
            Some(D::PurposeNotAllowed),
        ),
        (
            "openai",
            &[BusinessInfo],
            FollowUps,
            Subj::Plain,
            Some(D::PurposeNotAllowed),
        ),
        (
            "cloud_host",
            &[ContactInfo],
            FollowUps,
            Subj::Plain,
            Some(D::PurposeNotAllowed),
        ),
        // s.4: conversations serve the assistant and the owner's analytics only.
        (
            "cloud_host",
            &[Conversations],
            Support,
            Subj::Plain,
            Some(D::PurposeNotAllowed),
        ),
        (
            "openai",
            &[Conversations],
            RespondToEnquiries,
            Subj::ObjectedAi,
            Some(D::SubjectObjected),
        ),
        (
            "deepseek",
            &[Conversations],
            RespondToEnquiries,
            Subj::ObjectedAi,
            Some(D::SubjectObjected),
        ),
        (
            "meta",
            &[Conversations],
            RespondToEnquiries,
            Subj::ObjectedAi,
            None,
        ),
        (
            "openai",
            &[Conversations],
            FollowUps,
            Subj::OptedOut,
            Some(D::SubjectOptedOut),
        ),
        (
            "meta",
            &[Conversations],
            FollowUps,
            Subj::OptedOut,
            Some(D::SubjectOptedOut),
        ),
        (
            "openai",
            &[Conversations],
            RespondToEnquiries,
            Subj::OptedOut,
            None,
        ),
        (
            "openai",
            &[Conversations],
            RespondToEnquiries,
            Subj::Deleted,
            Some(D::SubjectDeleted),
        ),
        (
            "cloud_host",
            &[Conversations],
            LegalObligations,
            Subj::Deleted,
            Some(D::SubjectDeleted),
        ),
        (
            "cloud_host",
            &[Conversations],
            LegalObligations,
            Subj::DeletedHold,
            None,
        ),
        (
            "cloud_host",
            &[Conversations],
            ProvideService,
            Subj::DeletedHold,
            Some(D::SubjectDeleted),
        ),
        (
            "openai",
            &[Conversations],
            RespondToEnquiries,
            Subj::Hold,
            None,
        ),
        (
            "cloud_host",
            &[UsageData],
            Analytics,
            Subj::ObjectedAnalytics,
            Some(D::SubjectObjected),
        ),
        (
            "cloud_host",
            &[UsageData],
            Support,
            Subj::ObjectedAnalytics,
            None,
        ),
    ];
    for (i, &(p, cats, purpose, s, want)) in rows.iter().enumerate() {
        let d = policy().may(&pid(p), cats, purpose, &subject(s));
        match (want, &d) {
            (None, Decision::Allow { obligations }) => {
                assert_eq!(obligations.policy_version, policy().version(), "row {i}");
                assert_eq!(
                    obligations.legal_hold,
                    matches!(s, Subj::Hold | Subj::DeletedHold),
                    "row {i}"
                );
                assert!(obligations.require_tls, "row {i}");
            }
            (Some(code), Decision::Deny { reason }) => {
                assert_eq!(reason.code, code, "row {i}: {}", reason.message);
                assert!(!reason.message.is_empty());
            }
            _ => panic!("row {i} ({p}, {cats:?}, {purpose}): want {want:?}, got {d:?}"),
        }
    }
}

#[test]
fn provider_obligations_carry_the_request_settings() {
    let s = SubjectState::default();
    let openai = policy().may(&pid("openai"), &[Conversations], RespondToEnquiries, &s);
    let o = openai.obligations().unwrap();
    assert!(
        o.request_flags
            .contains(&RequestFlag::Store { value: false })
    );
    assert!(o.request_flags.contains(&RequestFlag::PseudonymousUser {
        field: "safety_identifier".into()
    }));
    assert!(o.request_flags.contains(&RequestFlag::NoTraining));
    assert_eq!(
        o.redactions,
        vec![
            RedactionKind::Card,
            RedactionKind::Aadhaar,
            RedactionKind::Pan,
            RedactionKind::Email,
            RedactionKind::Phone
        ]
    );
    assert_eq!(o.region.as_deref(), Some("US"));

    let ds = policy().may(&pid("deepseek"), &[Conversations], RespondToEnquiries, &s);
    let o = ds.obligations().unwrap();
    assert!(o.request_flags.contains(&RequestFlag::PseudonymousUser {
        field: "user_id".into()
    }));
    assert!(
        !o.request_flags
            .iter()
            .any(|f| matches!(f, RequestFlag::Store { .. }))
    );

    // Meta delivers the customer's message as written: no redaction.
    let meta = policy().may(&pid("meta"), &[Conversations], RespondToEnquiries, &s);
    assert!(meta.obligations().unwrap().redactions.is_empty());
}

#[test]
fn fallbacks() {
    let s = subject(Subj::ObjectedAi);
    let d = policy().may(&pid("openai"), &[Conversations], RespondToEnquiries, &s);
    assert_eq!(d.fallback(), Some(Fallback::OfflineAssistant));
    let d = policy().may(
        &pid("meta"),
        &[ContactInfo],
        RespondToEnquiries,
        &SubjectState::default(),
    );
    assert_eq!(d.fallback(), Some(Fallback::Human));
    let d = policy().may(
        &pid("openai"),
        &[Conversations],
        FollowUps,
        &subject(Subj::OptedOut),
    );
    assert_eq!(d.fallback(), Some(Fallback::Drop));
    let d = policy().may(
        &pid("openai"),
        &[Conversations],
        RespondToEnquiries,
        &SubjectState::default(),
    );
    assert_eq!(d.fallback(), None);
}

#[test]
fn decisions_serialize_with_stable_codes() {
    let d = policy().may(
        &pid("anthropic"),
        &[Conversations],
        RespondToEnquiries,
        &SubjectState::default(),
    );
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(json["decision"], "deny");
    assert_eq!(json["reason"]["code"], "processor_not_registered");
    assert_eq!(
        DenyCode::TenantObjectedToChange.as_str(),
        "tenant_objected_to_change"
    );
    let back: Decision = serde_json::from_value(json).unwrap();
    assert_eq!(back, d);
}

#[test]
fn pseudonyms_are_stable_and_unlinkable() {
    let k1 = [1u8; 32];
    let k2 = [2u8; 32];
    let a = pseudonymous_user_id(&k1, &pid("openai"), "subject-1");
    assert_eq!(a, pseudonymous_user_id(&k1, &pid("openai"), "subject-1"));
    assert_eq!(a.len(), 32);
    assert_ne!(a, pseudonymous_user_id(&k1, &pid("deepseek"), "subject-1"));
    assert_ne!(a, pseudonymous_user_id(&k2, &pid("openai"), "subject-1"));
    assert_ne!(a, pseudonymous_user_id(&k1, &pid("openai"), "subject-2"));
    assert!(!a.contains("subject"));
}

fn processors() -> Vec<&'static str> {
    vec![
        "openai",
        "deepseek",
        "meta",
        "cloud_host",
        "anthropic",
        "mistral",
    ]
}

fn arb_subject() -> impl Strategy<Value = SubjectState> {
    (
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        prop::collection::btree_set(prop::sample::select(Purpose::ALL.to_vec()), 0..3),
    )
        .prop_map(
            |(objected_to_ai, opted_out_of_follow_ups, deleted, legal_hold, objected_purposes)| {
                SubjectState {
                    objected_to_ai,
                    objected_purposes,
                    opted_out_of_follow_ups,
                    deleted,
                    legal_hold,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn denied_processors_are_never_allowed_and_ai_allows_always_redact(
        forbid in prop::collection::btree_set(prop::sample::select(vec!["openai", "deepseek", "meta", "cloud_host"]), 0..4),
        p in prop::sample::select(processors()),
        cats in prop::collection::vec(prop::sample::select(Category::ALL.to_vec()), 0..4),
        purpose in prop::sample::select(Purpose::ALL.to_vec()),
        s in arb_subject(),
    ) {
        let overrides = TenantOverrides {
            forbid_processors: forbid.iter().map(|f| pid(f)).collect(),
            ..TenantOverrides::default()
        };
        let eff = policy().effective_for(&overrides).unwrap();
        let d = eff.may(&pid(p), &cats, purpose, &s);
        let floor = policy().doc();
        if forbid.contains(p) {
            prop_assert!(!d.is_allow());
            if !s.deleted {
                prop_assert_eq!(d.deny_reason().map(|r| r.code), Some(DenyCode::TenantForbidsProcessor));
            }
        }
        if let Decision::Allow { obligations } = &d {
            let reg = floor.processors.get(&pid(p));
            prop_assert!(reg.is_some(), "unregistered {} allowed", p);
            let reg = reg.unwrap().get_ref();
            let allowed: BTreeSet<Category> = reg.categories.get_ref().clone();
            prop_assert!(cats.iter().all(|c| allowed.contains(c)));
            prop_assert!(reg.purposes.get_ref().contains(&purpose));
            prop_assert!(cats.iter().all(|c| floor.categories[c].purposes.get_ref().contains(&purpose)));
            prop_assert!(!s.deleted || (s.legal_hold && purpose == LegalObligations));
            prop_assert!(!(reg.ai_provider && s.objected_to_ai));
            prop_assert!(!s.objected_purposes.contains(&purpose));
            prop_assert!(!(purpose == FollowUps && s.opted_out_of_follow_ups));
            prop_assert_eq!(obligations.legal_hold, s.legal_hold);
            if reg.ai_provider {
                for k in [RedactionKind::Card, RedactionKind::Aadhaar, RedactionKind::Pan] {
                    prop_assert!(obligations.redactions.contains(&k), "{} missing", k);
                }
                prop_assert!(obligations.request_flags.contains(&RequestFlag::NoTraining));
                prop_assert!(obligations.request_flags.iter().any(|f| matches!(f, RequestFlag::PseudonymousUser { .. })), "no pseudonym flag");
            }
        }
    }
}
