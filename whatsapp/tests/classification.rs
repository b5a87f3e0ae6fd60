//! The error classification table, code by code.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use smartchat_whatsapp::{ErrorClass, classify_code};

#[test]
fn retry_codes() {
    for code in [130429, 131056, 131057, 1, 2, 131000, 131016] {
        assert_eq!(classify_code(code, 400), ErrorClass::Retry, "{code}");
    }
}

#[test]
fn permanent_codes() {
    for code in [131026, 131047, 131048, 131049, 100, 132000, 132001] {
        // Permanent whatever the HTTP status says.
        assert_eq!(classify_code(code, 400), ErrorClass::Permanent, "{code}");
        assert_eq!(classify_code(code, 500), ErrorClass::Permanent, "{code}");
    }
}

#[test]
fn alert_owner_codes() {
    for code in [131042, 131031, 368, 190] {
        assert_eq!(classify_code(code, 400), ErrorClass::AlertOwner, "{code}");
    }
}

#[test]
fn unknown_codes_follow_http_status() {
    assert_eq!(classify_code(999_999, 500), ErrorClass::Retry);
    assert_eq!(classify_code(999_999, 503), ErrorClass::Retry);
    assert_eq!(classify_code(999_999, 429), ErrorClass::Retry);
    assert_eq!(classify_code(999_999, 400), ErrorClass::Permanent);
    assert_eq!(classify_code(999_999, 404), ErrorClass::Permanent);
}
