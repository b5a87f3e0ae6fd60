//! Redaction: identifiers never survive; ordinary text is left alone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use smartchat_policies::{
    PatternRule, Policy, RedactionKind, Redactor, TenantOverrides, luhn_check_digit, luhn_valid,
    verhoeff_check_digit, verhoeff_valid,
};

fn redactor() -> &'static Redactor {
    static R: std::sync::OnceLock<Redactor> = std::sync::OnceLock::new();
    R.get_or_init(|| Policy::platform_default().unwrap().redactor().clone())
}

fn with_check(payload: &str, check: fn(&[u8]) -> Option<u8>) -> String {
    let c = check(payload.as_bytes()).unwrap();
    format!("{payload}{}", c as char)
}

fn group(digits: &str, sizes: &[usize], sep: &str) -> String {
    let mut out = Vec::new();
    let mut i = 0;
    for &s in sizes {
        if i >= digits.len() {
            break;
        }
        let end = (i + s).min(digits.len());
        out.push(&digits[i..end]);
        i = end;
    }
    if i < digits.len() {
        out.push(&digits[i..]);
    }
    out.join(sep)
}

#[test]
fn checksums() {
    assert!(luhn_valid(b"4111111111111111"));
    assert!(!luhn_valid(b"4111111111111112"));
    assert_eq!(
        with_check("411111111111111", luhn_check_digit),
        "4111111111111111"
    );
    // Verhoeff example from the literature: 236 -> check digit 3.
    assert_eq!(with_check("236", verhoeff_check_digit), "2363");
    assert!(verhoeff_valid(b"2363"));
    assert!(!verhoeff_valid(b"2364"));
}

#[test]
fn replaces_each_kind_with_a_typed_placeholder() {
    let aadhaar = with_check("23412341234", verhoeff_check_digit);
    let text = format!(
        "card 4111 1111 1111 1111, aadhaar {}, pan ABCPE1234F, mail a.b+c@example.co.in, call 98765 43210",
        group(&aadhaar, &[4, 4, 4], " ")
    );
    let r = redactor().redact(&text, None);
    assert_eq!(
        r.text,
        "card [card], aadhaar [aadhaar], pan [pan], mail [email], call [phone]"
    );
    for k in [
        RedactionKind::Card,
        RedactionKind::Aadhaar,
        RedactionKind::Pan,
        RedactionKind::Email,
        RedactionKind::Phone,
    ] {
        assert_eq!(r.counts.get(&k), Some(&1), "{k}");
    }
    assert_eq!(r.total(), 5);
}

#[test]
fn the_customers_own_number_is_kept_and_others_are_not() {
    let r = redactor().redact(
        "my number is +91 98765 43210, my friend's is 9123456789",
        Some("919876543210"),
    );
    assert_eq!(
        r.text,
        "my number is +91 98765 43210, my friend's is [phone]"
    );
    let r = redactor().redact("call +91 98765 43210 or 022 2345 6789", None);
    assert_eq!(r.text, "call [phone] or [phone]");
    assert_eq!(r.counts.get(&RedactionKind::Phone), Some(&2));
}

#[test]
fn invalid_checksums_are_not_redacted_as_cards_or_aadhaar() {
    let r = redactor().redact("ref 4111 1111 1111 1112 and 1234 5678 9012", None);
    assert!(!r.counts.contains_key(&RedactionKind::Card));
    assert!(!r.counts.contains_key(&RedactionKind::Aadhaar));
}

#[test]
fn tenant_patterns_are_applied() {
    let p = Policy::platform_default().unwrap();
    let mut o = TenantOverrides::default();
    o.redaction.patterns.push(PatternRule {
        name: "upi".to_owned(),
        regex: r"\b[\w.\-]+@(?:okaxis|oksbi|ybl|paytm)\b".to_owned(),
    });
    let eff = p.effective_for(&o).unwrap();
    let r = eff
        .redactor()
        .redact("pay to shop.name@okaxis please", None);
    assert_eq!(r.text, "pay to [upi] please");
    assert!(
        eff.redactor()
            .kinds()
            .contains(&RedactionKind::Custom("upi".to_owned()))
    );
}

fn card() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["4", "51", "52", "55", "34", "37", "6011", "35"]),
        prop::sample::select(vec![13usize, 15, 16, 19]),
        "[0-9]{18}",
        0..4usize,
    )
        .prop_map(|(prefix, len, fill, fmt)| {
            let payload = format!("{prefix}{}", &fill[..len - 1 - prefix.len()]);
            let digits = with_check(&payload, luhn_check_digit);
            match fmt {
                0 => digits,
                1 => group(&digits, &[4, 4, 4, 4], " "),
                2 => group(&digits, &[4, 4, 4, 4], "-"),
                _ => group(&digits, &[4, 6, 5], " "),
            }
        })
}

fn aadhaar() -> impl Strategy<Value = String> {
    ("[2-9][0-9]{10}", 0..3usize).prop_map(|(payload, fmt)| {
        let digits = with_check(&payload, verhoeff_check_digit);
        match fmt {
            0 => digits,
            1 => group(&digits, &[4, 4, 4], " "),
            _ => group(&digits, &[4, 4, 4], "-"),
        }
    })
}

fn pan() -> impl Strategy<Value = String> {
    ("[A-Z]{3}[ABCFGHLJPT][A-Z][0-9]{4}[A-Z]", any::<bool>())
        .prop_map(|(p, lower)| if lower { p.to_lowercase() } else { p })
}

fn filler() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 ,.:;!?()/#₹-]{0,40}"
}

fn digits_of(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn a_valid_card_never_survives(before in filler(), id in card(), after in filler()) {
        let text = format!("{before} {id} {after}");
        let r = redactor().redact(&text, None);
        prop_assert!(!r.text.contains(&id), "{} survived in {}", id, r.text);
        prop_assert!(!digits_of(&r.text).contains(&digits_of(&id)));
        prop_assert!(r.total() >= 1);
    }

    #[test]
    fn a_valid_aadhaar_never_survives(before in filler(), id in aadhaar(), after in filler()) {
        let text = format!("{before} {id} {after}");
        let r = redactor().redact(&text, None);
        prop_assert!(!r.text.contains(&id), "{} survived in {}", id, r.text);
        prop_assert!(!digits_of(&r.text).contains(&digits_of(&id)));
    }

    #[test]
    fn a_pan_never_survives(before in filler(), id in pan(), after in filler()) {
        let text = format!("{before} {id} {after}");
        let r = redactor().redact(&text, None);
        prop_assert!(!r.text.contains(&id), "{} survived in {}", id, r.text);
        prop_assert!(r.counts.contains_key(&RedactionKind::Pan));
    }

    #[test]
    fn identifiers_glued_to_words_or_punctuation_never_survive(
        word in "[a-zA-Z]{1,8}", sep in prop::sample::select(vec![":", "=", "(", "/", "#"]), id in card()
    ) {
        let text = format!("{word}{sep}{id}.");
        let r = redactor().redact(&text, None);
        prop_assert!(!r.text.contains(&id), "{}", r.text);
    }

    #[test]
    fn ordinary_text_is_left_alone(tokens in prop::collection::vec(ordinary(), 1..8)) {
        let text = tokens.join(" and then ");
        let r = redactor().redact(&text, None);
        prop_assert_eq!(&r.text, &text);
        prop_assert!(r.counts.is_empty());
    }

    #[test]
    fn redaction_is_idempotent(before in filler(), id in card(), after in filler()) {
        let text = format!("{before} {id} {after}");
        let once = redactor().redact(&text, None);
        let twice = redactor().redact(&once.text, None);
        prop_assert_eq!(once.text, twice.text);
    }
}

/// Dates, times, prices, booking codes and counts people write in chats.
fn ordinary() -> impl Strategy<Value = String> {
    let date = (1..=28u32, 1..=12u32, 2020..=2030u32, 0..3usize).prop_map(|(d, m, y, f)| match f {
        0 => format!("{d:02}/{m:02}/{y}"),
        1 => format!("{y}-{m:02}-{d:02}"),
        _ => format!("{d} Nov {y}"),
    });
    let time = (0..=23u32, 0..=59u32, any::<bool>()).prop_map(|(h, m, pm)| {
        if pm {
            format!("{}:{m:02} pm", h % 12 + 1)
        } else {
            format!("{h:02}:{m:02}")
        }
    });
    let price = (1..=999_999u32, 0..4usize).prop_map(|(n, f)| match f {
        0 => format!("Rs {n}"),
        1 => format!("₹{n}"),
        2 => format!("INR {n}.50"),
        _ => format!("Rs. {},{:03}", n / 1000 + 1, n % 1000),
    });
    let code =
        ("[A-Z]{2}", 1000..=9999u32, "[A-Z0-9]{4}", 0..3usize).prop_map(|(a, n, b, f)| match f {
            0 => format!("BK-{n}-{b}"),
            1 => format!("booking {a}{n}"),
            _ => format!("order #{n}{}", n % 97),
        });
    let count = (1..=40u32).prop_map(|n| format!("table for {n} people"));
    prop_oneof![date, time, price, code, count]
}

#[test]
fn the_customers_own_number_is_never_taken_for_an_aadhaar() {
    // Find a 91-prefixed mobile number that is Verhoeff-valid.
    let own = (0..10_000u32)
        .map(|i| format!("9198765{i:05}"))
        .find(|n| verhoeff_valid(n.as_bytes()))
        .unwrap();
    let r = redactor().redact(&format!("reach me on {own}"), Some(&own));
    assert_eq!(r.text, format!("reach me on {own}"));
    let r = redactor().redact(&format!("reach me on {own}"), None);
    assert_eq!(r.total(), 1);
}
