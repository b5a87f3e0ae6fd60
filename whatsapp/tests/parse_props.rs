//! Property tests: the parser never panics, and batches yield exactly one event per item.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use serde_json::{Value, json};
use smartchat_whatsapp::fake::{WebhookBuilder, WebhookUser};
use smartchat_whatsapp::{InboundEvent, parse_payload};

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| json!(i)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,12}".prop_map(Value::String),
        // Strings that look like the fields Meta sends, so deep paths get exercised.
        prop_oneof![
            Just("messages"),
            Just("text"),
            Just("image"),
            Just("whatsapp_business_account"),
            Just("1749416383"),
            Just("wamid.X"),
            Just("106540352242922"),
            Just("US.123"),
        ]
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    let keys = prop_oneof![
        prop::sample::select(vec![
            "object",
            "entry",
            "changes",
            "field",
            "value",
            "metadata",
            "phone_number_id",
            "messages",
            "statuses",
            "contacts",
            "errors",
            "id",
            "from",
            "timestamp",
            "type",
            "text",
            "body",
            "status",
            "image",
            "interactive",
            "code",
            "wa_id",
            "user_id",
        ])
        .prop_map(str::to_owned),
        "[a-z_]{1,8}",
    ];
    leaf.prop_recursive(6, 128, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(keys.clone(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn never_panics_on_arbitrary_json(v in arb_json()) {
        let bytes = serde_json::to_vec(&v).unwrap();
        if let Ok(p) = parse_payload(&bytes) {
            let _ = p.events().count();
            let _ = format!("{p:?}");
        }
    }

    #[test]
    fn never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(p) = parse_payload(&bytes) {
            let _ = p.events().count();
        }
    }

    /// A valid payload with one field mutated must still parse or fail cleanly.
    #[test]
    fn never_panics_on_mutated_valid_payload(
        path in prop::collection::vec(0usize..8, 1..7),
        replacement in arb_json(),
    ) {
        let alice = WebhookUser::both("15551230001", "US.1").named("A");
        let mut v = WebhookBuilder::new()
            .entry("111", "1")
            .text(&alice, "wamid.A", "x")
            .media(&alice, "wamid.B", "image", "9", "image/png", Some("c"))
            .status(&alice, "wamid.C", "read")
            .failed_status(&alice, "wamid.D", 131047)
            .to_value();
        let mut pointer = String::new();
        let mut cur = &v;
        for step in path {
            match cur {
                Value::Object(m) if !m.is_empty() => {
                    let k = m.keys().nth(step % m.len()).unwrap();
                    pointer.push('/');
                    pointer.push_str(k);
                    cur = &m[k];
                }
                Value::Array(a) if !a.is_empty() => {
                    let i = step % a.len();
                    pointer.push_str(&format!("/{i}"));
                    cur = &a[i];
                }
                _ => break,
            }
        }
        if let Some(target) = v.pointer_mut(&pointer) {
            *target = replacement;
        }
        let bytes = serde_json::to_vec(&v).unwrap();
        if let Ok(p) = parse_payload(&bytes) {
            let _ = p.events().count();
        }
    }

    /// N entries x M messages x K statuses yield exactly N*M + N*K events, in order.
    #[test]
    fn batch_event_count(n in 1usize..5, m in 0usize..6, k in 0usize..6) {
        let mut b = WebhookBuilder::new();
        for e in 0..n {
            b = b.entry(&format!("{}", 1000 + e), "15550000000");
            for i in 0..m {
                let u = if i % 2 == 0 {
                    WebhookUser::wa_id(&format!("1555{e}{i:04}"))
                } else {
                    WebhookUser::bsuid(&format!("US.{e}x{i}"))
                };
                b = b.text(&u, &format!("wamid.M{e}_{i}"), "hello");
            }
            for j in 0..k {
                let u = WebhookUser::wa_id(&format!("1666{e}{j:04}"));
                b = if j % 3 == 2 {
                    b.failed_status(&u, &format!("wamid.S{e}_{j}"), 131026)
                } else {
                    b.status(&u, &format!("wamid.S{e}_{j}"), "delivered")
                };
            }
        }
        let body = b.build();
        let p = parse_payload(&body).unwrap();
        let events: Vec<_> = p.events().collect();
        prop_assert_eq!(events.len(), n * m + n * k);
        let msgs = events.iter().filter(|e| matches!(e, InboundEvent::Message { .. })).count();
        let stats = events.iter().filter(|e| matches!(e, InboundEvent::Status { .. })).count();
        prop_assert_eq!(msgs, n * m);
        prop_assert_eq!(stats, n * k);
        // Every message found its own contact.
        for e in &events {
            if let InboundEvent::Message { contact, message, .. } = e {
                prop_assert!(contact.is_some_and(|c| c.identity.same_user(&message.from)));
            }
        }
    }
}
