//! Tenant overrides: tightening works, loosening is refused rule by rule.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::field_reassign_with_default
)]

use std::collections::BTreeSet;

use proptest::prelude::*;
use smartchat_policies::{
    Category, DenyCode, PatternRule, Policy, PolicyError, ProcessorId, ProcessorOverride, Purpose,
    RetentionOverride, Right, SubjectState, TenantOverrides,
};

fn policy() -> &'static Policy {
    static P: std::sync::OnceLock<Policy> = std::sync::OnceLock::new();
    P.get_or_init(|| Policy::platform_default().unwrap())
}

fn pid(s: &str) -> ProcessorId {
    ProcessorId::new(s).unwrap()
}

#[test]
fn no_overrides_keep_the_platform_version() {
    let eff = policy().effective_for(&TenantOverrides::default()).unwrap();
    assert_eq!(eff.version(), policy().version());
    assert_eq!(eff.platform_version(), policy().version());
    assert!(eff.restrictions().is_empty());
    assert!(eff.loosenings_against(policy()).is_empty());
}

#[test]
fn a_tenant_can_forbid_deepseek() {
    let o =
        TenantOverrides::from_toml_str("forbid_processors = [\"deepseek\"]\n", "t.toml").unwrap();
    let eff = policy().effective_for(&o).unwrap();
    assert_ne!(eff.version(), policy().version());
    let s = SubjectState::default();
    let d = eff.may(
        &pid("deepseek"),
        &[Category::Conversations],
        Purpose::RespondToEnquiries,
        &s,
    );
    assert_eq!(
        d.deny_reason().unwrap().code,
        DenyCode::TenantForbidsProcessor
    );
    let d = eff.may(
        &pid("openai"),
        &[Category::Conversations],
        Purpose::RespondToEnquiries,
        &s,
    );
    assert!(d.is_allow());
    assert_eq!(d.obligations().unwrap().policy_version, eff.version());
    let shown = eff.to_toml_string().unwrap();
    assert!(shown.contains("tenant_forbids_processor"));
    assert!(!shown.contains("[processors.deepseek]"));
    assert_eq!(shown, eff.to_string());
    // The document part of `show` loads as a policy by itself.
    Policy::from_toml_str(&shown, "shown.toml").unwrap();
}

#[test]
fn dropping_a_category_for_a_processor() {
    let o = TenantOverrides::from_toml_str(
        "[processors.openai]\ncategories = [\"conversations\", \"business_info\"]\n",
        "t.toml",
    )
    .unwrap();
    let eff = policy().effective_for(&o).unwrap();
    let s = SubjectState::default();
    let d = eff.may(
        &pid("openai"),
        &[Category::LeadData],
        Purpose::RespondToEnquiries,
        &s,
    );
    assert_eq!(
        d.deny_reason().unwrap().code,
        DenyCode::TenantForbidsProcessor
    );
    assert!(d.deny_reason().unwrap().message.contains("lead_data"));
    assert!(
        eff.may(
            &pid("deepseek"),
            &[Category::LeadData],
            Purpose::RespondToEnquiries,
            &s
        )
        .is_allow()
    );
}

#[test]
fn retention_can_be_shortened() {
    let o = TenantOverrides::from_toml_str(
        "[termination]\ndelete_after_days = 7\nkeep_anonymized_analytics = false\n\n[retention.conversations]\nwhile_active_days = 180\n",
        "t.toml",
    )
    .unwrap();
    let eff = policy().effective_for(&o).unwrap();
    let r = eff.retention(Category::Conversations).unwrap();
    assert_eq!(r.while_active_days, Some(180));
    assert_eq!(r.after_termination_days, 7);
    assert!(!r.keep_anonymized);
    assert_eq!(
        eff.retention(Category::BusinessInfo)
            .unwrap()
            .after_termination_days,
        7
    );
    assert!(eff.loosenings_against(policy()).is_empty());
}

#[test]
fn rights_deadline_can_be_shortened_not_lengthened() {
    let mut o = TenantOverrides::default();
    o.rights.response_days = Some(15);
    let eff = policy().effective_for(&o).unwrap();
    assert_eq!(eff.response_days(), 15);
    assert!(eff.grants(Right::Portability));
    o.rights.response_days = Some(60);
    let e = policy().effective_for(&o).unwrap_err();
    assert_eq!(e.violations[0].rule, "rights.response_days");
}

#[test]
fn loosening_retention_is_explained() {
    let o = TenantOverrides::from_toml_str(
        "[retention.conversations]\nafter_termination_days = 400\n",
        "t.toml",
    )
    .unwrap();
    let e = policy().effective_for(&o).unwrap_err();
    assert_eq!(
        e.to_string(),
        "tenant policy would loosen the platform policy: retention.conversations.after_termination_days: tenant asks 400 days, platform allows at most 30 days after termination"
    );
}

#[test]
fn every_violation_is_listed() {
    let text = r#"
forbid_processors = ["anthropic"]

[processors.openai]
categories = ["conversations", "contact_info"]
purposes = ["analytics"]

[termination]
delete_after_days = 90

[retention.lead_data]
after_termination_days = 0

[redaction]
card = false

[[redaction.patterns]]
name = "bad"
regex = "(unclosed"
"#;
    let o = TenantOverrides::from_toml_str(text, "t.toml").unwrap();
    let e = policy().effective_for(&o).unwrap_err();
    let rules: BTreeSet<&str> = e.violations.iter().map(|v| v.rule.as_str()).collect();
    let want: BTreeSet<&str> = [
        "forbid_processors",
        "processors.openai.categories",
        "processors.openai.purposes",
        "termination.delete_after_days",
        "retention.lead_data.after_termination_days",
        "redaction.card",
        "redaction.patterns[0]",
    ]
    .into();
    assert_eq!(rules, want, "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("tenant asks to send contact_info to openai"),
        "{msg}"
    );
    assert!(
        msg.contains("tenant asks 90 days, platform allows at most 30 days"),
        "{msg}"
    );
}

#[test]
fn overrides_with_unknown_keys_fail_with_a_line() {
    let err =
        TenantOverrides::from_toml_str("\n\nforbid_processor = [\"deepseek\"]\n", "acme.toml")
            .unwrap_err();
    match err {
        PolicyError::Invalid {
            file, line, reason, ..
        } => {
            assert_eq!(file, "acme.toml");
            assert_eq!(line, 3);
            assert!(
                reason.contains("unknown field `forbid_processor`"),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn overrides_read_from_json() {
    let o: TenantOverrides = serde_json::from_str(
        r#"{"forbid_processors":["deepseek"],"retention":{"conversations":{"while_active_days":90}}}"#,
    )
    .unwrap();
    let eff = policy().effective_for(&o).unwrap();
    assert_eq!(
        eff.retention(Category::Conversations)
            .unwrap()
            .while_active_days,
        Some(90)
    );
    assert!(serde_json::from_str::<TenantOverrides>(r#"{"allow_training":true}"#).is_err());
}

fn opt<T: std::fmt::Debug + Clone>(
    s: impl Strategy<Value = T>,
) -> impl Strategy<Value = Option<T>> {
    prop::option::of(s)
}

fn arb_overrides() -> impl Strategy<Value = TenantOverrides> {
    let ids = vec!["openai", "deepseek", "meta", "cloud_host", "anthropic"];
    let cats = Category::ALL.to_vec();
    let purposes = Purpose::ALL.to_vec();
    (
        prop::collection::btree_set(prop::sample::select(ids.clone()), 0..3),
        prop::collection::btree_map(
            prop::sample::select(ids),
            (
                opt(prop::collection::btree_set(
                    prop::sample::select(cats.clone()),
                    0..5,
                )),
                opt(prop::collection::btree_set(
                    prop::sample::select(purposes),
                    0..6,
                )),
            ),
            0..3,
        ),
        prop::collection::btree_map(
            prop::sample::select(cats),
            (opt(0..500u32), opt(0..500u32), opt(any::<bool>())),
            0..5,
        ),
        (opt(0..100u32), opt(any::<bool>()), opt(0..100u32)),
        prop::collection::vec(opt(any::<bool>()), 5),
    )
        .prop_map(|(forbid, procs, ret, (del, keep, resp), red)| {
            let mut o = TenantOverrides::default();
            o.forbid_processors = forbid.into_iter().map(pid).collect();
            for (id, (categories, purposes)) in procs {
                o.processors.insert(
                    pid(id),
                    ProcessorOverride {
                        categories,
                        purposes,
                    },
                );
            }
            for (cat, (active, after, keep)) in ret {
                o.retention.insert(
                    cat,
                    RetentionOverride {
                        while_active_days: active,
                        after_termination_days: after,
                        keep_anonymized: keep,
                    },
                );
            }
            o.termination.delete_after_days = del;
            o.termination.keep_anonymized_analytics = keep;
            o.rights.response_days = resp;
            o.redaction.card = red[0];
            o.redaction.aadhaar = red[1];
            o.redaction.pan = red[2];
            o.redaction.email = red[3];
            o.redaction.phone = red[4];
            o
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Whatever a tenant asks, the result is refused or at least as strict
    /// as the floor.
    #[test]
    fn the_floor_holds(o in arb_overrides()) {
        match policy().effective_for(&o) {
            Ok(eff) => {
                let loose = eff.loosenings_against(policy());
                prop_assert!(loose.is_empty(), "{:?}", loose);
            }
            Err(e) => prop_assert!(!e.violations.is_empty()),
        }
    }

    /// Overrides that only tighten are always accepted.
    #[test]
    fn pure_tightening_is_accepted(
        forbid in prop::collection::btree_set(prop::sample::select(vec!["openai", "deepseek", "meta", "cloud_host"]), 0..4),
        del in 1..=30u32,
        active in 1..=3650u32,
        after in 1..=30u32,
        resp in 1..=30u32,
        extra in prop::collection::vec("[a-z]{3,8}", 0..3),
    ) {
        let mut o = TenantOverrides::default();
        o.forbid_processors = forbid.into_iter().map(pid).collect();
        o.termination.delete_after_days = Some(del);
        o.termination.keep_anonymized_analytics = Some(false);
        o.retention.insert(Category::Conversations, RetentionOverride {
            while_active_days: Some(active),
            after_termination_days: Some(after),
            keep_anonymized: Some(false),
        });
        o.rights.response_days = Some(resp);
        let names: BTreeSet<String> = extra.into_iter().filter(|n| !["card", "pan", "email", "phone"].contains(&n.as_str())).collect();
        for name in names {
            o.redaction.patterns.push(PatternRule { name: format!("x_{name}"), regex: format!(r"\b{name}\d+\b") });
        }
        let eff = policy().effective_for(&o);
        prop_assert!(eff.is_ok(), "{:?}", eff.err());
        let eff = eff.unwrap();
        prop_assert!(eff.loosenings_against(policy()).is_empty());
        prop_assert_eq!(eff.retention(Category::Conversations).unwrap().after_termination_days, after.min(del));
    }
}

#[test]
fn sending_nothing_to_a_processor_forbids_it() {
    let o = TenantOverrides::from_toml_str("[processors.deepseek]\ncategories = []\n", "t.toml")
        .unwrap();
    let eff = policy().effective_for(&o).unwrap();
    assert!(!eff.doc().processors.contains_key(&pid("deepseek")));
    let d = eff.may(
        &pid("deepseek"),
        &[],
        Purpose::RespondToEnquiries,
        &SubjectState::default(),
    );
    assert_eq!(
        d.deny_reason().unwrap().code,
        DenyCode::TenantForbidsProcessor
    );
}
