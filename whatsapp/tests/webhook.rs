//! Inbound side: signature and subscription checks, fixture parsing, batches, BSUIDs,
//! unknown types, redaction.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use smartchat_whatsapp::fake::{WebhookBuilder, WebhookUser};
use smartchat_whatsapp::{
    Change, InboundEvent, Interactive, MessageKind, SignatureError, StatusKind, WebhookError,
    WebhookPayload, parse_payload, signature_header, verify_signature, verify_subscription,
};

const SECRET: &[u8] = b"app-secret-for-tests";

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn parse(name: &str) -> WebhookPayload {
    parse_payload(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn messages(p: &WebhookPayload) -> Vec<&smartchat_whatsapp::Message> {
    p.events()
        .filter_map(|e| match e {
            InboundEvent::Message { message, .. } => Some(message),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------- signature

#[test]
fn signature_good() {
    let body = fixture("text_message.json");
    let h = signature_header(SECRET, &body);
    assert_eq!(verify_signature(SECRET, &body, Some(&h)), Ok(()));
    // Uppercase hex is still the same signature.
    let upper = format!("sha256={}", h["sha256=".len()..].to_uppercase());
    assert_eq!(verify_signature(SECRET, &body, Some(&upper)), Ok(()));
}

#[test]
fn signature_missing() {
    let body = fixture("text_message.json");
    assert_eq!(
        verify_signature(SECRET, &body, None),
        Err(SignatureError::Missing)
    );
}

#[test]
fn signature_wrong_body_or_secret() {
    let body = fixture("text_message.json");
    let h = signature_header(SECRET, &body);
    let mut tampered = body.clone();
    let pos = tampered.iter().position(|b| *b == b'?').unwrap();
    tampered[pos] = b'!';
    assert_eq!(
        verify_signature(SECRET, &tampered, Some(&h)),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        verify_signature(b"another-secret", &body, Some(&h)),
        Err(SignatureError::Mismatch)
    );
    // The verify token or access token is not the key.
    let wrong_key = signature_header(b"verify-token", &body);
    assert_eq!(
        verify_signature(SECRET, &body, Some(&wrong_key)),
        Err(SignatureError::Mismatch)
    );
}

#[test]
fn signature_malformed() {
    let body = fixture("text_message.json");
    let good = signature_header(SECRET, &body);
    let hex_part = &good["sha256=".len()..];
    let cases = [
        String::new(),
        hex_part.to_owned(),                            // no prefix
        format!("sha1={}", &hex_part[..40]),            // legacy X-Hub-Signature
        format!("SHA256={hex_part}"),                   // wrong prefix case
        format!("sha256={}", &hex_part[..63]),          // short
        format!("sha256={hex_part}0"),                  // long
        format!("sha256={}zz", &hex_part[..62]),        // not hex
        format!("sha256= {}", &hex_part[..63]),         // space inside
        format!("sha256={hex_part},sha256={hex_part}"), // list
    ];
    for c in cases {
        assert!(
            matches!(
                verify_signature(SECRET, &body, Some(&c)),
                Err(SignatureError::Malformed(_))
            ),
            "{c:?}"
        );
    }
    assert_eq!(
        verify_signature(b"", &body, Some(&good)),
        Err(SignatureError::NoSecret)
    );
}

/// Meta signs its escaped-unicode bytes: hashing a re-serialisation fails, hashing the raw
/// bytes works, and the parsed text is the Hindi original.
#[test]
fn signature_hindi_escaped_raw_bytes() {
    let raw = fixture("text_reply_hindi.json");
    assert!(raw.is_ascii(), "fixture keeps Meta's \\u escapes");
    let h = signature_header(SECRET, &raw);
    assert_eq!(verify_signature(SECRET, &raw, Some(&h)), Ok(()));

    let reserialised =
        serde_json::to_vec(&serde_json::from_slice::<serde_json::Value>(&raw).unwrap()).unwrap();
    assert_ne!(reserialised, raw);
    assert_eq!(
        verify_signature(SECRET, &reserialised, Some(&h)),
        Err(SignatureError::Mismatch)
    );

    let p = parse_payload(&raw).unwrap();
    let m = messages(&p);
    let MessageKind::Text { body } = &m[0].kind else {
        panic!("text expected")
    };
    assert_eq!(body.as_str(), "नमस्ते, मुझे मदद चाहिए 🙏");
    assert!(m[0].context.as_ref().unwrap().id.is_some());
}

// ---------------------------------------------------------------- subscription

#[test]
fn subscription_handshake() {
    assert_eq!(
        verify_subscription(
            Some("subscribe"),
            Some("my-verify"),
            Some("1158201444"),
            "my-verify"
        )
        .unwrap(),
        "1158201444"
    );
    assert_eq!(
        verify_subscription(Some("subscribe"), Some("my-verifx"), Some("1"), "my-verify"),
        Err(WebhookError::TokenMismatch)
    );
    assert_eq!(
        verify_subscription(
            Some("subscribe"),
            Some("my-verify-longer"),
            Some("1"),
            "my-verify"
        ),
        Err(WebhookError::TokenMismatch)
    );
    assert_eq!(
        verify_subscription(Some("SUBSCRIBE"), Some("my-verify"), Some("1"), "my-verify"),
        Err(WebhookError::WrongMode)
    );
    assert_eq!(
        verify_subscription(
            Some("subscribe"),
            Some("my-verify"),
            Some("1 OR 1=1"),
            "my-verify"
        ),
        Err(WebhookError::BadChallenge)
    );
    let long = "9".repeat(257);
    assert_eq!(
        verify_subscription(
            Some("subscribe"),
            Some("my-verify"),
            Some(&long),
            "my-verify"
        ),
        Err(WebhookError::BadChallenge)
    );
}

// ---------------------------------------------------------------- fixtures

#[test]
fn every_fixture_parses() {
    let dir = format!("{}/tests/fixtures", env!("CARGO_MANIFEST_DIR"));
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let p = parse_payload(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(p.is_whatsapp());
        assert!(p.events().count() > 0, "{}", path.display());
        n += 1;
    }
    assert!(n >= 10);
}

#[test]
fn text_message_fixture() {
    let p = parse("text_message.json");
    let ev: Vec<_> = p.events().collect();
    assert_eq!(ev.len(), 1);
    let InboundEvent::Message {
        phone_number_id,
        contact,
        message,
    } = ev[0]
    else {
        panic!("message expected")
    };
    assert_eq!(phone_number_id.as_str(), "106540352242922");
    let contact = contact.unwrap();
    assert_eq!(contact.name.as_deref(), Some("Sheena Nelson"));
    assert_eq!(
        contact.identity.wa_id.as_ref().unwrap().as_str(),
        "16505551234"
    );
    assert_eq!(
        contact.identity.user_id.as_ref().unwrap().as_str(),
        "US.13491208655302741918"
    );
    assert_eq!(message.from, contact.identity);
    assert_eq!(message.timestamp.unix_timestamp(), 1_749_416_383);
    assert_eq!(message.kind.type_name(), "text");
    let Change::Messages(v) = &p.entry[0].changes[0] else {
        panic!()
    };
    assert_eq!(
        v.metadata.display_phone_number.as_deref(),
        Some("15550783881")
    );
}

#[test]
fn media_fixture() {
    let p = parse("image_message.json");
    let m = messages(&p);
    let kinds: Vec<_> = m.iter().map(|m| m.kind.type_name()).collect();
    assert_eq!(kinds, ["image", "document", "audio", "video", "sticker"]);
    let img = m[0].kind.media().unwrap();
    assert_eq!(img.id, "1003383421387256");
    assert_eq!(img.mime_type.as_deref(), Some("image/jpeg"));
    assert_eq!(
        img.sha256.as_deref(),
        Some("Sgz0tpwV3cnv3ZqRG8mQ3mqMQv36EjgNeSOUyYyL0UI=")
    );
    assert_eq!(img.caption.as_deref(), Some("Black jacket, size M"));
    let doc = m[1].kind.media().unwrap();
    assert_eq!(doc.filename.as_deref(), Some("invoice-2026-04.pdf"));
    assert_eq!(m[2].kind.media().unwrap().voice, Some(true));
    assert_eq!(m[4].kind.media().unwrap().animated, Some(false));
}

#[test]
fn interactive_fixture_matches_contacts() {
    let p = parse("interactive_reply.json");
    let ev: Vec<_> = p.events().collect();
    assert_eq!(ev.len(), 2);
    let mut seen = 0;
    for e in ev {
        let InboundEvent::Message {
            contact, message, ..
        } = e
        else {
            panic!()
        };
        let contact = contact.unwrap();
        assert!(contact.identity.same_user(&message.from));
        assert!(message.context.as_ref().unwrap().id.is_some());
        match &message.kind {
            MessageKind::Interactive(Interactive::ButtonReply { id, title }) => {
                assert_eq!(id, "erase-yes");
                assert_eq!(title.as_str(), "Yes, delete");
                assert_eq!(contact.name.as_deref(), Some("Sheena Nelson"));
                seen += 1;
            }
            MessageKind::Interactive(Interactive::ListReply {
                id, description, ..
            }) => {
                assert_eq!(id, "priority_express");
                assert_eq!(description.as_deref(), Some("Next Day to 2 Days"));
                assert_eq!(contact.name.as_deref(), Some("Pablo Morales"));
                seen += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen, 2);
}

#[test]
fn statuses_fixture_and_ordering() {
    let p = parse("statuses.json");
    let st: Vec<_> = p
        .events()
        .filter_map(|e| match e {
            InboundEvent::Status { status, .. } => Some(status),
            _ => None,
        })
        .collect();
    assert_eq!(st.len(), 4);
    assert_eq!(st[0].kind, Some(StatusKind::Sent));
    assert_eq!(
        st[0].recipient.wa_id.as_ref().unwrap().as_str(),
        "16505551234"
    );
    assert!(st[0].recipient.user_id.is_some());
    let pricing = st[0].pricing.as_ref().unwrap();
    assert_eq!(pricing.pricing_model.as_deref(), Some("PMP"));
    assert_eq!(
        pricing.pricing_type.as_deref(),
        Some("free_customer_service")
    );
    assert_eq!(
        st[0].conversation.as_ref().unwrap().origin.as_deref(),
        Some("service")
    );
    assert!(st[1].conversation.is_none() && st[1].pricing.is_none());
    // Unranked statuses keep their raw name.
    assert_eq!(st[3].kind, None);
    assert_eq!(st[3].status, "played");

    // Arrival order is sent, read, delivered: the late `delivered` must not regress `read`.
    let mut stored: Option<StatusKind> = None;
    let mut applied = Vec::new();
    for s in &st[..3] {
        let k = s.kind.unwrap();
        if StatusKind::advances(stored, k) {
            stored = Some(k);
            applied.push(k);
        }
    }
    assert_eq!(applied, [StatusKind::Sent, StatusKind::Read]);
    assert_eq!(stored, Some(StatusKind::Read));
}

#[test]
fn failed_status_131047() {
    let p = parse("status_failed_131047.json");
    let InboundEvent::Status { status, .. } = p.events().next().unwrap() else {
        panic!()
    };
    assert_eq!(status.kind, Some(StatusKind::Failed));
    assert_eq!(status.errors.len(), 1);
    assert_eq!(status.errors[0].code, 131047);
    assert_eq!(
        status.errors[0].title.as_deref(),
        Some("Re-engagement message")
    );
    assert!(
        status.errors[0]
            .details
            .as_deref()
            .unwrap()
            .contains("24 hours")
    );
    assert!(StatusKind::advances(
        Some(StatusKind::Sent),
        StatusKind::Failed
    ));
    assert!(!StatusKind::advances(
        Some(StatusKind::Failed),
        StatusKind::Read
    ));
}

#[test]
fn bsuid_only_contact() {
    let p = parse("bsuid_only_contact.json");
    let ev: Vec<_> = p.events().collect();
    assert_eq!(ev.len(), 2);
    let InboundEvent::Message {
        contact, message, ..
    } = ev[0]
    else {
        panic!()
    };
    let c = contact.unwrap();
    assert!(c.identity.wa_id.is_none(), "phone withheld");
    assert_eq!(
        c.identity.user_id.as_ref().unwrap().as_str(),
        "IN.1648738043044942"
    );
    assert!(c.identity.parent_user_id.as_ref().unwrap().is_parent());
    assert_eq!(c.username.as_deref(), Some("@asha.writes"));
    assert!(message.from.wa_id.is_none());
    assert_eq!(message.from.user_id, c.identity.user_id);
    assert!(matches!(
        message.from.recipient(),
        Some(smartchat_whatsapp::Recipient::Bsuid(_))
    ));
    let InboundEvent::Status { status, .. } = ev[1] else {
        panic!()
    };
    assert!(status.recipient.wa_id.is_none());
    assert_eq!(status.recipient.user_id, c.identity.user_id);
}

#[test]
fn template_and_other_fields() {
    let p = parse("template_status_update.json");
    let fields: Vec<_> = p
        .events()
        .map(|e| match e {
            InboundEvent::Other { field, value, .. } => (field.to_owned(), value.clone()),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    let names: Vec<_> = fields.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_template_status_update",
            "template_category_update",
            "phone_number_quality_update",
            "account_update"
        ]
    );
    assert_eq!(fields[0].1["event"], "APPROVED");
    assert_eq!(fields[1].1["new_category"], "MARKETING");
}

#[test]
fn misc_types_and_unknown() {
    let p = parse("misc_types.json");
    let m = messages(&p);
    let kinds: Vec<_> = m.iter().map(|m| m.kind.type_name()).collect();
    assert_eq!(
        kinds,
        [
            "location",
            "contacts",
            "reaction",
            "reaction",
            "button",
            "order",
            "system",
            "poll",
            "request_welcome",
            "hologram",
            "text",
            "interactive",
            "text"
        ]
    );
    let MessageKind::Location(loc) = &m[0].kind else {
        panic!()
    };
    assert!((loc.latitude - 37.483).abs() < 0.01);
    let MessageKind::Contacts(cards) = &m[1].kind else {
        panic!()
    };
    assert_eq!(cards.0.len(), 1);
    let MessageKind::Reaction { message_id, emoji } = &m[2].kind else {
        panic!()
    };
    assert!(message_id.is_some());
    assert_eq!(emoji.as_deref(), Some("👍"));
    let MessageKind::Reaction { emoji, .. } = &m[3].kind else {
        panic!()
    };
    assert!(emoji.is_none(), "reaction removed");
    let MessageKind::Button { payload, .. } = &m[4].kind else {
        panic!()
    };
    assert_eq!(payload.as_deref(), Some("STOP_PROMOTIONS"));
    let MessageKind::Order { product_items, .. } = &m[5].kind else {
        panic!()
    };
    assert_eq!(
        product_items[0].product_retailer_id.as_deref(),
        Some("di9ozbzfi4")
    );
    let MessageKind::System {
        system_type,
        new_wa_id,
        ..
    } = &m[6].kind
    else {
        panic!()
    };
    assert_eq!(system_type.as_deref(), Some("user_changed_number"));
    assert_eq!(new_wa_id.as_ref().unwrap().as_str(), "16505559999");
    assert!(
        matches!(&m[7].kind, MessageKind::Unsupported { original_type } if original_type == "poll")
    );
    assert_eq!(m[7].errors[0].code, 131051);
    assert!(matches!(m[8].kind, MessageKind::RequestWelcome));
    assert!(
        matches!(&m[9].kind, MessageKind::Unsupported { original_type } if original_type == "hologram")
    );
    let referral = m[10].referral.as_ref().unwrap();
    assert_eq!(referral.source_type.as_deref(), Some("ad"));
    assert_eq!(referral.ctwa_clid.as_deref(), Some("ARAkLkA8rmlFeiCktEJQ"));
    assert!(matches!(
        &m[11].kind,
        MessageKind::Interactive(Interactive::NfmReply { .. })
    ));
    let ctx = m[12].context.as_ref().unwrap();
    assert!(ctx.forwarded && ctx.frequently_forwarded && ctx.id.is_none());
}

#[test]
fn multi_entry_batch_reads_everything() {
    let p = parse("multi_entry_batch.json");
    let ev: Vec<_> = p.events().collect();
    assert_eq!(ev.len(), 5, "3 messages, 1 status, 1 value-level error");
    let pn: Vec<_> = ev
        .iter()
        .map(|e| match e {
            InboundEvent::Message {
                phone_number_id, ..
            }
            | InboundEvent::Status {
                phone_number_id, ..
            }
            | InboundEvent::Error {
                phone_number_id, ..
            } => phone_number_id.as_str(),
            InboundEvent::Other { .. } => panic!(),
        })
        .collect();
    assert_eq!(
        pn,
        [
            "106540352242922",
            "106540352242922",
            "106540352242922",
            "106540352242923",
            "106540352242923"
        ]
    );
    let InboundEvent::Error { error, .. } = ev[4] else {
        panic!()
    };
    assert_eq!(error.code, 131000);
    // Each message is matched with its own contact, not the first one.
    let names: Vec<_> = ev
        .iter()
        .filter_map(|e| match e {
            InboundEvent::Message { contact, .. } => {
                Some(contact.unwrap().name.as_deref().unwrap().to_owned())
            }
            _ => None,
        })
        .collect();
    assert_eq!(names, ["A", "B", "C"]);
}

#[test]
fn malformed_bodies_are_errors_not_panics() {
    for body in [
        &b""[..],
        b"{",
        b"[]",
        b"{\"entry\":[]}",
        b"{\"object\":\"whatsapp_business_account\",\"entry\":[{\"changes\":[{\"field\":\"messages\",\"value\":{}}]}]}",
        b"{\"object\":\"x\",\"entry\":[{\"changes\":[{\"field\":\"messages\",\"value\":{\"metadata\":{\"phone_number_id\":\"12a\"}}}]}]}",
        b"{\"object\":\"x\",\"entry\":[{\"changes\":[{\"field\":\"messages\",\"value\":{\"metadata\":{\"phone_number_id\":\"1\"},\"messages\":[{\"id\":\"\",\"timestamp\":\"1\"}]}}]}]}",
    ] {
        let e = parse_payload(body).unwrap_err();
        assert!(matches!(e, WebhookError::Malformed { .. }));
    }
}

#[test]
fn debug_output_has_no_personal_data() {
    for name in [
        "text_message.json",
        "image_message.json",
        "misc_types.json",
        "bsuid_only_contact.json",
        "interactive_reply.json",
        "status_failed_131047.json",
    ] {
        let p = parse(name);
        let dbg = format!("{p:?}");
        for secret in [
            "Sheena",
            "Does it come",
            "16505551234",
            "Black jacket",
            "invoice-2026",
            "Hacker Way",
            "37.48",
            "Barbara",
            "1648738043044942",
            "asha.writes",
            "Yes, delete",
            "Please deliver",
            "HBgLMTY1MDM4",
            "more than 24 hours",
        ] {
            assert!(!dbg.contains(secret), "{name}: {secret} leaked in Debug");
        }
    }
    let p = parse("text_message.json");
    assert!(format!("{p:?}").contains("Text { body: <redacted 30 bytes> }"));
}

// ---------------------------------------------------------------- builder

#[test]
fn builder_batches_sign_and_parse() {
    let alice = WebhookUser::wa_id("15551230001").named("Alice");
    let bob = WebhookUser::bsuid("US.77788899900011").named("Bob");
    let carol = WebhookUser::both("4915112345678", "DE.123abc").named("Zoë");
    let (body, sig) = WebhookBuilder::new()
        .entry("111", "15550000001")
        .text(&alice, "wamid.T1", "hi")
        .text(&bob, "wamid.T2", "grüß dich")
        .media(
            &carol,
            "wamid.T3",
            "image",
            "998877",
            "image/png",
            Some("📷"),
        )
        .status(&alice, "wamid.O1", "delivered")
        .entry("222", "15550000002")
        .failed_status(&bob, "wamid.O2", 131026)
        .other_change("account_update", serde_json::json!({"event": "X"}))
        .signed(SECRET);
    assert!(body.is_ascii());
    verify_signature(SECRET, &body, Some(&sig)).unwrap();
    let p = parse_payload(&body).unwrap();
    let ev: Vec<_> = p.events().collect();
    assert_eq!(ev.len(), 6);
    let InboundEvent::Message {
        contact, message, ..
    } = ev[1]
    else {
        panic!()
    };
    assert!(message.from.wa_id.is_none());
    assert_eq!(contact.unwrap().name.as_deref(), Some("Bob"));
    let MessageKind::Text { body } = &message.kind else {
        panic!()
    };
    assert_eq!(body.as_str(), "grüß dich");
    let InboundEvent::Message { contact, .. } = ev[2] else {
        panic!()
    };
    assert_eq!(contact.unwrap().name.as_deref(), Some("Zoë"));
    let InboundEvent::Status { status, .. } = ev[4] else {
        panic!()
    };
    assert_eq!(status.errors[0].code, 131026);
    assert!(matches!(
        ev[5],
        InboundEvent::Other {
            field: "account_update",
            ..
        }
    ));
}
