//! Registry changes: notice period and objections (GDPR Art. 28(2)).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use proptest::prelude::*;
use smartchat_policies::{
    Category, ChangeKind, Decision, DenyCode, PLATFORM_DEFAULT_TOML, Policy, ProcessorId, Purpose,
    RegistryChange, SubjectState, TenantContext, TenantOverrides, diff_registries,
};
use time::{Duration, OffsetDateTime, macros::datetime};

fn pid(s: &str) -> ProcessorId {
    ProcessorId::new(s).unwrap()
}

fn old() -> &'static Policy {
    static P: std::sync::OnceLock<Policy> = std::sync::OnceLock::new();
    P.get_or_init(|| Policy::platform_default().unwrap())
}

/// The default plus a new AI provider and contact_info sent to OpenAI.
fn new() -> &'static Policy {
    static P: std::sync::OnceLock<Policy> = std::sync::OnceLock::new();
    P.get_or_init(new_uncached)
}

fn new_uncached() -> Policy {
    let text = PLATFORM_DEFAULT_TOML.replacen(
        "categories = [\"business_info\", \"conversations\", \"lead_data\"]\npurposes = [\"provide_service\", \"respond_to_enquiries\", \"follow_ups\"]\n\n[processors.openai.request]",
        "categories = [\"business_info\", \"contact_info\", \"conversations\", \"lead_data\"]\npurposes = [\"provide_service\", \"respond_to_enquiries\", \"follow_ups\"]\n\n[processors.openai.request]",
        1,
    ) + r#"
[processors.mistral]
name = "Mistral AI"
service = "AI response generation"
ai_provider = true
region = "FR"
categories = ["conversations"]
purposes = ["respond_to_enquiries"]

[processors.mistral.request]
no_training = true
"#;
    Policy::from_toml_str(&text, "new.toml").unwrap()
}

const ANNOUNCED: OffsetDateTime = datetime!(2026-12-01 00:00 UTC);

fn changes() -> Vec<RegistryChange> {
    diff_registries(old(), new(), ANNOUNCED)
}

fn ctx(now: OffsetDateTime, objections: &[&RegistryChange]) -> TenantContext {
    TenantContext {
        overrides: TenantOverrides::default(),
        changes: changes(),
        objections: objections.iter().map(|c| c.id.clone()).collect(),
        now,
    }
}

fn code(d: &Decision) -> Option<DenyCode> {
    d.deny_reason().map(|r| r.code)
}

fn find(cs: &[RegistryChange], f: impl Fn(&ChangeKind) -> bool) -> &RegistryChange {
    cs.iter().find(|c| f(&c.change)).unwrap()
}

#[test]
fn diff_finds_each_change_with_its_notice() {
    let cs = changes();
    assert_eq!(cs.len(), 2, "{cs:?}");
    let add = find(&cs, |k| matches!(k, ChangeKind::AddProcessor { .. }));
    assert_eq!(add.processor, pid("mistral"));
    assert_eq!(add.effective_at, ANNOUNCED + Duration::days(30));
    let cat = find(&cs, |k| {
        matches!(
            k,
            ChangeKind::AddCategory {
                category: Category::ContactInfo
            }
        )
    });
    assert_eq!(cat.processor, pid("openai"));
    assert!(cat.id.0.starts_with("chg_"));
    assert_ne!(add.id, cat.id);
    // Stable ids.
    assert_eq!(changes(), cs);
    // Removal runs the other way and is immediate.
    let back = diff_registries(new(), old(), ANNOUNCED);
    assert_eq!(back.len(), 2);
    for c in &back {
        assert!(!c.change.needs_notice());
        assert_eq!(c.effective_at, ANNOUNCED);
    }
    assert!(diff_registries(old(), old(), ANNOUNCED).is_empty());
}

#[test]
fn before_the_notice_period_ends_the_change_is_not_effective() {
    let cs = changes();
    let now = ANNOUNCED + Duration::days(10);
    let eff = new().effective_in(&ctx(now, &[])).unwrap();
    let s = SubjectState::default();
    let d = eff.may(
        &pid("mistral"),
        &[Category::Conversations],
        Purpose::RespondToEnquiries,
        &s,
    );
    assert_eq!(code(&d), Some(DenyCode::ChangeNotYetEffective));
    let d = eff.may(
        &pid("openai"),
        &[Category::ContactInfo],
        Purpose::ProvideService,
        &s,
    );
    assert_eq!(code(&d), Some(DenyCode::ChangeNotYetEffective));
    // What was already authorised continues.
    let d = eff.may(
        &pid("openai"),
        &[Category::Conversations],
        Purpose::RespondToEnquiries,
        &s,
    );
    assert!(d.is_allow());
    assert_eq!(eff.valid_until(), Some(cs[0].effective_at));
    assert!(eff.to_toml_string().unwrap().contains("valid until"));
}

#[test]
fn after_the_notice_period_the_change_applies() {
    let now = ANNOUNCED + Duration::days(30);
    let eff = new().effective_in(&ctx(now, &[])).unwrap();
    let s = SubjectState::default();
    assert!(
        eff.may(
            &pid("mistral"),
            &[Category::Conversations],
            Purpose::RespondToEnquiries,
            &s
        )
        .is_allow()
    );
    assert!(
        eff.may(
            &pid("openai"),
            &[Category::ContactInfo],
            Purpose::ProvideService,
            &s
        )
        .is_allow()
    );
    assert_eq!(eff.valid_until(), None);
    assert_eq!(eff.version(), new().version());
}

#[test]
fn an_objection_keeps_the_change_denied_for_that_tenant() {
    let cs = changes();
    let add = find(&cs, |k| matches!(k, ChangeKind::AddProcessor { .. }));
    let cat = find(&cs, |k| matches!(k, ChangeKind::AddCategory { .. }));
    let s = SubjectState::default();
    for now in [
        ANNOUNCED + Duration::days(1),
        ANNOUNCED + Duration::days(400),
    ] {
        let eff = new().effective_in(&ctx(now, &[add, cat])).unwrap();
        let d = eff.may(
            &pid("mistral"),
            &[Category::Conversations],
            Purpose::RespondToEnquiries,
            &s,
        );
        assert_eq!(code(&d), Some(DenyCode::TenantObjectedToChange));
        assert!(d.deny_reason().unwrap().message.contains(&add.id.0));
        let d = eff.may(
            &pid("openai"),
            &[Category::ContactInfo],
            Purpose::ProvideService,
            &s,
        );
        assert_eq!(code(&d), Some(DenyCode::TenantObjectedToChange));
        let d = eff.may(
            &pid("openai"),
            &[Category::Conversations],
            Purpose::RespondToEnquiries,
            &s,
        );
        assert!(d.is_allow());
    }
    // The same through the one-call API.
    let d = new().may_for(
        &ctx(ANNOUNCED + Duration::days(400), &[add]),
        &pid("mistral"),
        &[Category::Conversations],
        Purpose::RespondToEnquiries,
        &s,
    );
    assert_eq!(code(&d), Some(DenyCode::TenantObjectedToChange));
}

#[test]
fn a_region_change_holds_the_whole_processor() {
    let text = PLATFORM_DEFAULT_TOML.replacen("region = \"CN\"", "region = \"SG\"", 1);
    let moved = Policy::from_toml_str(&text, "moved.toml").unwrap();
    let cs = diff_registries(old(), &moved, ANNOUNCED);
    assert_eq!(cs.len(), 1);
    assert!(
        matches!(&cs[0].change, ChangeKind::ChangeRegion { from: Some(f), to: Some(t) } if f == "CN" && t == "SG")
    );
    let c = TenantContext {
        overrides: TenantOverrides::default(),
        changes: cs,
        objections: BTreeSet::new(),
        now: ANNOUNCED,
    };
    let d = moved.may_for(
        &c,
        &pid("deepseek"),
        &[Category::Conversations],
        Purpose::RespondToEnquiries,
        &SubjectState::default(),
    );
    assert_eq!(code(&d), Some(DenyCode::ChangeNotYetEffective));
}

#[test]
fn weaker_terms_are_a_change() {
    let text = PLATFORM_DEFAULT_TOML.replacen("pseudonymous_user_field = \"user_id\"\n", "", 1);
    let weaker = Policy::from_toml_str(&text, "w.toml").unwrap();
    let cs = diff_registries(old(), &weaker, ANNOUNCED);
    assert_eq!(cs.len(), 1);
    assert!(
        matches!(&cs[0].change, ChangeKind::WeakerTerms { what } if what.contains("pseudonymous_user_field"))
    );
    assert!(cs[0].change.needs_notice());
}

#[test]
fn who_is_notified() {
    let cs = changes();
    let add = find(&cs, |k| matches!(k, ChangeKind::AddProcessor { .. }));
    let cat = find(&cs, |k| matches!(k, ChangeKind::AddCategory { .. }));
    assert!(add.affects(&TenantOverrides::default()));
    let mut o = TenantOverrides::default();
    o.forbid_processors.insert(pid("mistral"));
    assert!(!add.affects(&o));
    assert!(cat.affects(&o));
    let o = TenantOverrides::from_toml_str(
        "[processors.openai]\ncategories = [\"conversations\"]\n",
        "t",
    )
    .unwrap();
    assert!(!cat.affects(&o));
}

#[test]
fn changes_and_contexts_serialize() {
    let c = ctx(ANNOUNCED, &[]);
    let json = serde_json::to_string(&c).unwrap();
    assert!(json.contains("\"kind\":\"add_processor\""));
    assert!(json.contains("2026-12-31T00:00:00Z"));
    let back: TenantContext = serde_json::from_str(&json).unwrap();
    assert_eq!(back, c);
}

#[test]
fn a_tenant_forbidding_a_new_processor_is_unaffected_by_its_notice() {
    let mut c = ctx(ANNOUNCED, &[]);
    c.overrides.forbid_processors.insert(pid("mistral"));
    let eff = new().effective_in(&c).unwrap();
    let d = eff.may(
        &pid("mistral"),
        &[Category::Conversations],
        Purpose::RespondToEnquiries,
        &SubjectState::default(),
    );
    assert_eq!(code(&d), Some(DenyCode::TenantForbidsProcessor));
}

proptest! {
    /// At any time, with any objections: allowed only when effective and
    /// not objected.
    #[test]
    fn notice_and_objection_logic(days in -5i64..90, object_add in any::<bool>(), object_cat in any::<bool>()) {
        let cs = changes();
        let add = find(&cs, |k| matches!(k, ChangeKind::AddProcessor { .. }));
        let cat = find(&cs, |k| matches!(k, ChangeKind::AddCategory { .. }));
        let mut objs = Vec::new();
        if object_add { objs.push(add); }
        if object_cat { objs.push(cat); }
        let now = ANNOUNCED + Duration::days(days);
        let eff = new().effective_in(&ctx(now, &objs)).unwrap();
        let s = SubjectState::default();
        let m = eff.may(&pid("mistral"), &[Category::Conversations], Purpose::RespondToEnquiries, &s);
        let want = if object_add { Some(DenyCode::TenantObjectedToChange) } else if days < 30 { Some(DenyCode::ChangeNotYetEffective) } else { None };
        prop_assert_eq!(code(&m), want);
        let o = eff.may(&pid("openai"), &[Category::ContactInfo], Purpose::ProvideService, &s);
        let want = if object_cat { Some(DenyCode::TenantObjectedToChange) } else if days < 30 { Some(DenyCode::ChangeNotYetEffective) } else { None };
        prop_assert_eq!(code(&o), want);
    }
}
