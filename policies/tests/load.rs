//! Policy loading: errors name file, line and reason; versions follow meaning.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use smartchat_policies::{PLATFORM_DEFAULT_TOML, Policy, PolicyError, PolicyVersion};

fn load(text: &str) -> Result<Policy, PolicyError> {
    Policy::from_toml_str(text, "tenant/test.toml")
}

/// Replaces exactly one occurrence of `from` in the default policy.
fn edit(from: &str, to: &str) -> String {
    assert_eq!(PLATFORM_DEFAULT_TOML.matches(from).count(), 1, "{from}");
    PLATFORM_DEFAULT_TOML.replacen(from, to, 1)
}

fn line_of(text: &str, needle: &str) -> usize {
    let off = text.find(needle).unwrap();
    text[..off].matches('\n').count() + 1
}

#[track_caller]
fn assert_invalid(text: &str, want_line: usize, reason_has: &str) {
    match load(text) {
        Err(PolicyError::Invalid {
            file,
            line,
            column,
            reason,
        }) => {
            assert_eq!(file, "tenant/test.toml");
            assert_eq!(line, want_line, "reason: {reason}");
            assert!(column >= 1);
            assert!(
                reason.contains(reason_has),
                "reason `{reason}` lacks `{reason_has}`"
            );
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn default_policy_loads_and_round_trips() {
    let p = Policy::platform_default().unwrap();
    let again = load(&p.to_toml_string().unwrap()).unwrap();
    assert_eq!(p.version(), again.version());
    assert_eq!(p.doc(), again.doc());
}

#[test]
fn version_displays_and_parses_as_hex() {
    let v = Policy::platform_default().unwrap().version();
    let s = v.to_string();
    assert_eq!(s.len(), 64);
    assert!(
        s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    assert_eq!(s.parse::<PolicyVersion>().unwrap(), v);
    assert!("xyz".parse::<PolicyVersion>().is_err());
    assert!(s[..63].parse::<PolicyVersion>().is_err());
    let json = serde_json::to_string(&v).unwrap();
    assert_eq!(json, format!("\"{s}\""));
    assert_eq!(serde_json::from_str::<PolicyVersion>(&json).unwrap(), v);
}

#[test]
fn formatting_does_not_change_the_version() {
    let base = Policy::platform_default().unwrap().version();
    // Comments, blank lines and spacing.
    let reformatted = PLATFORM_DEFAULT_TOML
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(|l| l.replace(" = ", "="))
        .collect::<Vec<_>>()
        .join("\n\n");
    assert_eq!(load(&reformatted).unwrap().version(), base);
    // Order of array items that are sets.
    let reordered = edit(
        "categories = [\"business_info\", \"conversations\", \"lead_data\"]\npurposes = [\"provide_service\", \"respond_to_enquiries\", \"follow_ups\"]\n\n[processors.openai.request]",
        "categories = [\"lead_data\", \"conversations\", \"business_info\"]\npurposes = [\"follow_ups\", \"provide_service\", \"respond_to_enquiries\"]\n\n[processors.openai.request]",
    );
    assert_eq!(load(&reordered).unwrap().version(), base);
}

#[test]
fn a_change_of_meaning_changes_the_version() {
    let base = Policy::platform_default().unwrap().version();
    let changes = [
        ("delete_after_days = 30", "delete_after_days = 45"),
        ("notice_period_days = 30", "notice_period_days = 31"),
        ("region = \"CN\"", "region = \"SG\""),
        ("phone = true ", "phone = false "),
        ("response_days = 30", "response_days = 20"),
    ];
    let mut seen = std::collections::BTreeSet::from([base]);
    for (from, to) in changes {
        let v = load(&edit(from, to)).unwrap().version();
        assert!(seen.insert(v), "{from} -> {to} did not give a new version");
    }
}

#[test]
fn unknown_category_names_file_and_line() {
    let text = edit(
        "categories = [\"business_info\", \"conversations\", \"lead_data\"]\npurposes = [\"provide_service\", \"respond_to_enquiries\", \"follow_ups\"]\n\n[processors.deepseek.request]",
        "categories = [\"business_info\", \"health_data\"]\npurposes = [\"provide_service\", \"respond_to_enquiries\", \"follow_ups\"]\n\n[processors.deepseek.request]",
    );
    assert_invalid(
        &text,
        line_of(&text, "\"health_data\""),
        "unknown variant `health_data`",
    );
}

#[test]
fn unknown_key_names_file_and_line() {
    let text = edit(
        "ai_provider = true\nregion = \"CN\"",
        "ai_provider = true\nregoin = \"CN\"",
    );
    assert_invalid(&text, line_of(&text, "regoin"), "unknown field `regoin`");
}

#[test]
fn processor_without_categories_is_refused() {
    let text = edit(
        "categories = [\"business_info\", \"contact_info\", \"conversations\", \"lead_data\", \"usage_data\"]",
        "categories = []",
    );
    assert_invalid(
        &text,
        line_of(&text, "categories = []"),
        "needs at least one category",
    );
}

#[test]
fn processor_missing_categories_key_is_refused() {
    let text = edit(
        "categories = [\"business_info\", \"contact_info\", \"conversations\", \"lead_data\", \"usage_data\"]\n",
        "",
    );
    match load(&text) {
        Err(PolicyError::Invalid { reason, line, .. }) => {
            assert!(reason.contains("missing field `categories`"), "{reason}");
            assert!(line > 1);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn redaction_pattern_that_does_not_compile_is_refused() {
    let text = format!(
        "{PLATFORM_DEFAULT_TOML}\n[[redaction.patterns]]\nname = \"booking\"\nregex = \"BK-(\\\\d+\"\n"
    );
    let line = line_of(&text, "[[redaction.patterns]]");
    match load(&text) {
        Err(PolicyError::Invalid {
            line: l, reason, ..
        }) => {
            assert!(reason.contains("does not compile"), "{reason}");
            // The span of the pattern table: its header or its first key.
            assert!(l == line || l == line + 1, "line {l}, header at {line}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn retention_of_zero_is_refused() {
    let text = edit(
        "[retention.lead_data]\nafter_termination_days = 30",
        "[retention.lead_data]\nafter_termination_days = 0",
    );
    match load(&text) {
        Err(PolicyError::Invalid { line, reason, .. }) => {
            assert!(reason.contains("retention.lead_data"), "{reason}");
            assert!(reason.contains("zero"), "{reason}");
            let header = line_of(&text, "[retention.lead_data]");
            assert!(
                line == header || line == header + 1,
                "line {line}, header {header}"
            );
        }
        other => panic!("{other:?}"),
    }
    let text = edit("delete_after_days = 30", "delete_after_days = 0");
    assert_invalid(&text, line_of(&text, "delete_after_days = 0"), "at least 1");
}

#[test]
fn ai_provider_must_promise_no_training() {
    let text = edit(
        "pseudonymous_user_field = \"user_id\"\nno_training = true",
        "pseudonymous_user_field = \"user_id\"\nno_training = false",
    );
    match load(&text) {
        Err(PolicyError::Invalid { reason, .. }) => {
            assert!(reason.contains("no_training"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn store_true_is_refused() {
    let text = edit("store = false", "store = true");
    match load(&text) {
        Err(PolicyError::Invalid { reason, .. }) => assert!(reason.contains("store"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn syntax_error_points_at_the_line() {
    let text = edit("name = \"DeepSeek\"", "name = DeepSeek\"");
    let line = line_of(&text, "name = DeepSeek");
    match load(&text) {
        Err(PolicyError::Invalid { line: l, .. }) => assert_eq!(l, line),
        other => panic!("{other:?}"),
    }
}

#[test]
fn error_display_is_file_line_column_reason() {
    let text = edit(
        "ai_provider = true\nregion = \"CN\"",
        "ai_provider = true\nregoin = \"CN\"",
    );
    let e = load(&text).unwrap_err().to_string();
    let line = line_of(&text, "regoin");
    assert!(
        e.starts_with(&format!("tenant/test.toml:{line}:1: ")),
        "{e}"
    );
}

#[test]
fn load_reads_a_file_and_reports_missing_ones() {
    let dir = std::env::temp_dir().join(format!("smartchat-policies-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("platform.toml");
    std::fs::write(&path, PLATFORM_DEFAULT_TOML).unwrap();
    let p = Policy::load(&path).unwrap();
    assert_eq!(p.version(), Policy::platform_default().unwrap().version());
    std::fs::remove_file(&path).unwrap();
    match Policy::load(&path) {
        Err(PolicyError::Read { file, .. }) => assert!(file.ends_with("platform.toml")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn there_is_no_training_or_sale_purpose() {
    for purpose in ["model_training", "sale", "marketing"] {
        let text = edit(
            "purposes = [\"provide_service\", \"support\", \"legal_obligations\"]",
            &format!("purposes = [\"provide_service\", \"{purpose}\"]"),
        );
        match load(&text) {
            Err(PolicyError::Invalid { reason, line, .. }) => {
                assert!(
                    reason.contains(&format!("unknown variant `{purpose}`")),
                    "{reason}"
                );
                assert_eq!(line, line_of(&text, &format!("\"{purpose}\"")));
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn section_rules_point_at_their_section() {
    let text = edit("require_tls = true", "require_tls = false");
    assert_invalid(
        &text,
        line_of(&text, "require_tls = false"),
        "require_tls must be true",
    );
    let text = edit("card = true ", "card = false ");
    assert_invalid(
        &text,
        line_of(&text, "[redaction]"),
        "while an AI provider is registered",
    );
    let text = edit(
        "[retention.usage_data]\nafter_termination_days = 30\nkeep_anonymized = true\n",
        "",
    );
    assert_invalid(
        &text,
        line_of(&text, "[categories.usage_data]"),
        "has no [retention.usage_data] rule",
    );
}
