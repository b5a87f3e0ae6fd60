//! Records of processing (GDPR Art. 30(2)).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use smartchat_policies::{
    Category, Policy, ProcessingUsage, ProcessorId, ProcessorUsage, Purpose, TenantOverrides,
    records_of_processing,
};
use time::macros::datetime;

fn pid(s: &str) -> ProcessorId {
    ProcessorId::new(s).unwrap()
}

fn usage() -> ProcessingUsage {
    let mut u = ProcessingUsage {
        controller_contact: Some("owner@acme.example".into()),
        period_from: Some(datetime!(2026-11-01 00:00 UTC)),
        period_to: Some(datetime!(2026-11-30 23:59 UTC)),
        ..ProcessingUsage::default()
    };
    u.processors.insert(
        pid("openai"),
        ProcessorUsage {
            calls: 120,
            denied: 3,
            first_at: Some(datetime!(2026-11-02 09:00 UTC)),
            last_at: Some(datetime!(2026-11-29 18:30 UTC)),
            categories_sent: [Category::Conversations, Category::BusinessInfo].into(),
            purposes: [Purpose::RespondToEnquiries].into(),
        },
    );
    u
}

#[test]
fn the_record_has_every_part_of_art_30_2() {
    let p = Policy::platform_default().unwrap();
    let o = TenantOverrides::from_toml_str("forbid_processors = [\"deepseek\"]\n", "t").unwrap();
    let eff = p.effective_for(&o).unwrap();
    let r = records_of_processing(&eff, "Acme Salon", &usage());
    // (a) names and contacts
    assert_eq!(r.processor.name, "SmartChat Solutions");
    assert_eq!(r.controller.name, "Acme Salon");
    assert_eq!(r.controller.contact.as_deref(), Some("owner@acme.example"));
    // (b) categories of processing
    assert_eq!(r.processing.len(), 5);
    let conv = r
        .processing
        .iter()
        .find(|a| a.category == Category::Conversations)
        .unwrap();
    assert!(conv.recipients.contains(&pid("openai")));
    assert!(!conv.recipients.contains(&pid("deepseek")));
    assert_eq!(conv.retention_after_termination_days, 30);
    // (c) transfers: OpenAI (US), Meta (US), the host (unknown); DeepSeek is forbidden.
    let t: Vec<&str> = r.transfers.iter().map(|t| t.processor.as_str()).collect();
    assert_eq!(t, ["cloud_host", "meta", "openai"]);
    // (d) security
    assert!(r.security_measures.iter().any(|m| m.contains("TLS")));
    assert_eq!(r.policy_version, eff.version());
    assert_eq!(r.restrictions.len(), 1);
    assert!(r.findings.is_empty(), "{:?}", r.findings);
    let openai = r
        .sub_processors
        .iter()
        .find(|s| s.id == pid("openai"))
        .unwrap();
    assert_eq!(openai.usage.as_ref().unwrap().calls, 120);

    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["controller"]["name"], "Acme Salon");
    assert_eq!(json["period_from"], "2026-11-01T00:00:00Z");
    assert_eq!(json["processing"][2]["category"], "conversations");

    let md = r.to_markdown();
    for h in [
        "# Record of processing activities",
        "## Categories of processing",
        "## Sub-processors",
        "## Transfers to third countries",
        "## Security measures",
        "## Retention",
        "## Findings",
    ] {
        assert!(md.contains(h), "missing {h}");
    }
    assert!(md.contains("| openai | OpenAI |"));
    assert!(md.contains("store=false"));
    assert!(md.contains("region not known, to be confirmed"));
}

#[test]
fn ledger_use_outside_the_policy_is_a_finding() {
    let p = Policy::platform_default().unwrap();
    let o = TenantOverrides::from_toml_str("forbid_processors = [\"deepseek\"]\n", "t").unwrap();
    let eff = p.effective_for(&o).unwrap();
    let mut u = usage();
    u.processors
        .get_mut(&pid("openai"))
        .unwrap()
        .categories_sent
        .insert(Category::ContactInfo);
    u.processors.insert(
        pid("deepseek"),
        ProcessorUsage {
            calls: 2,
            ..ProcessorUsage::default()
        },
    );
    let r = records_of_processing(&eff, "Acme Salon", &u);
    assert_eq!(r.findings.len(), 2, "{:?}", r.findings);
    assert!(r.findings.iter().any(|f| f.contains("contact_info")));
    assert!(
        r.findings
            .iter()
            .any(|f| f.starts_with("deepseek: 2 calls"))
    );
    assert!(!r.to_markdown().contains("None: everything recorded"));
}

#[test]
fn usage_reads_from_json() {
    let u: ProcessingUsage = serde_json::from_str(
        r#"{"processors":{"meta":{"calls":5,"first_at":"2026-11-01T10:00:00Z","categories_sent":["conversations"]}}}"#,
    )
    .unwrap();
    assert_eq!(u.processors[&pid("meta")].calls, 5);
}
