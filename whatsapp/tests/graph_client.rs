//! GraphClient against the local FakeGraph server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use smartchat_whatsapp::fake::{FakeGraph, GraphFailure};
use smartchat_whatsapp::{
    AccessToken, Backoff, ErrorClass, GraphClient, OutboundKind, PhoneNumberId, Recipient,
    SendError, Template, Wamid, WindowPermit, check_window,
};
use time::OffsetDateTime;

const PN: &str = "106540352242922";
const TOKEN: &str = "EAAGtest-token";

struct Setup {
    fake: FakeGraph,
    client: GraphClient,
    pn: PhoneNumberId,
    token: AccessToken,
    to: Recipient,
}

async fn setup() -> Setup {
    let fake = FakeGraph::start().await.unwrap();
    fake.register(PN, TOKEN);
    let client = GraphClient::new(&fake.base_url, "v23.0", reqwest::Client::new())
        .unwrap()
        .with_timeout(Duration::from_secs(5));
    Setup {
        fake,
        client,
        pn: PhoneNumberId::new(PN).unwrap(),
        token: AccessToken::new(TOKEN).unwrap(),
        to: Recipient::parse("16505551234").unwrap(),
    }
}

fn permit() -> WindowPermit {
    let now = OffsetDateTime::now_utc();
    check_window(
        OutboundKind::FreeForm,
        Some(now - time::Duration::hours(1)),
        now,
    )
    .unwrap()
}

#[tokio::test]
async fn send_text_success_and_request_shape() {
    let s = setup().await;
    let reply_to = Wamid::new("wamid.INBOUND1").unwrap();
    let sent = s
        .client
        .send_text(
            &s.pn,
            &s.token,
            &s.to,
            "Your order has shipped",
            Some(&reply_to),
            permit(),
        )
        .await
        .unwrap();
    assert!(sent.wamid.as_str().starts_with("wamid."));
    assert_eq!(sent.message_status.as_deref(), Some("accepted"));

    let reqs = s.fake.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(
        (r.version.as_str(), r.phone_number_id.as_str()),
        ("v23.0", PN)
    );
    assert!(r.authorized);
    assert_eq!(r.status, 200);
    let b = r.body.as_ref().unwrap();
    assert_eq!(b["messaging_product"], "whatsapp");
    assert_eq!(b["recipient_type"], "individual");
    assert_eq!(b["to"], "16505551234");
    assert_eq!(b["type"], "text");
    assert_eq!(b["text"]["body"], "Your order has shipped");
    assert_eq!(b["text"]["preview_url"], false);
    assert_eq!(b["context"]["message_id"], "wamid.INBOUND1");
}

#[tokio::test]
async fn send_to_bsuid_and_template() {
    let s = setup().await;
    let to = Recipient::parse("IN.1648738043044942").unwrap();
    let t = Template {
        name: "order_confirmation".into(),
        language: "en_US".into(),
        components: vec![serde_json::json!({
            "type": "body",
            "parameters": [{ "type": "text", "text": "#1234" }]
        })],
    };
    s.client
        .send_template(&s.pn, &s.token, &to, &t)
        .await
        .unwrap();
    let b = s.fake.requests()[0].body.clone().unwrap();
    assert_eq!(b["to"], "IN.1648738043044942");
    assert_eq!(b["type"], "template");
    assert_eq!(b["template"]["name"], "order_confirmation");
    assert_eq!(b["template"]["language"]["code"], "en_US");
    assert_eq!(b["template"]["components"][0]["type"], "body");
}

#[tokio::test]
async fn bad_token_is_401_code_190() {
    let s = setup().await;
    let wrong = AccessToken::new("EAAGwrong").unwrap();
    let err = s
        .client
        .send_text(&s.pn, &wrong, &s.to, "hi", None, permit())
        .await
        .unwrap_err();
    let SendError::Graph { status, error, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(*status, 401);
    assert_eq!(error.code, 190);
    assert_eq!(error.error_type.as_deref(), Some("OAuthException"));
    assert!(error.fbtrace_id.is_some());
    assert_eq!(err.class(), ErrorClass::AlertOwner);
    // A token registered for another number does not work either.
    s.fake.register("999", "EAAGother");
    let other = AccessToken::new("EAAGother").unwrap();
    let err = s
        .client
        .send_text(&s.pn, &other, &s.to, "hi", None, permit())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(190));
    assert!(!s.fake.requests()[0].authorized);
}

#[tokio::test]
async fn code_131047_is_permanent() {
    let s = setup().await;
    s.fake.fail_next(1, GraphFailure::Code(131047));
    let err = s
        .client
        .send_text(&s.pn, &s.token, &s.to, "hi", None, permit())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(131047));
    assert_eq!(err.class(), ErrorClass::Permanent);
    // The error message names the code, never the recipient or body.
    let shown = err.to_string();
    assert!(shown.contains("131047") && !shown.contains("16505551234"));
}

#[tokio::test]
async fn throughput_130429_then_success_on_retry() {
    let s = setup().await;
    s.fake.fail_next(1, GraphFailure::Code(130429));
    let backoff = Backoff {
        base: Duration::from_millis(1),
        max: Duration::from_millis(5),
        max_retry_after: Duration::from_millis(5),
    };
    let mut attempt = 0;
    let sent = loop {
        match s
            .client
            .send_text(&s.pn, &s.token, &s.to, "hi", None, permit())
            .await
        {
            Ok(sent) => break sent,
            Err(e) => {
                assert_eq!(e.code(), Some(130429));
                assert_eq!(e.class(), ErrorClass::Retry);
                assert!(attempt < 3, "retried too often");
                tokio::time::sleep(backoff.delay(attempt, e.retry_after())).await;
                attempt += 1;
            }
        }
    };
    assert!(sent.wamid.as_str().starts_with("wamid."));
    let statuses: Vec<_> = s.fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [400, 200]);
}

#[tokio::test]
async fn fake_rate_limit_answers_130429() {
    let s = setup().await;
    s.fake.set_rate_limit(Some(2));
    let mut ok = 0;
    let mut limited = 0;
    for _ in 0..5 {
        match s
            .client
            .send_text(&s.pn, &s.token, &s.to, "hi", None, permit())
            .await
        {
            Ok(_) => ok += 1,
            Err(e) => {
                assert_eq!(e.code(), Some(130429));
                limited += 1;
            }
        }
    }
    // Whatever the window boundaries, at most two windows fit five quick requests.
    assert!(ok <= 4 && limited >= 1, "ok={ok} limited={limited}");
}

#[tokio::test]
async fn server_errors_retry_with_retry_after() {
    let s = setup().await;
    s.fake.fail_next(
        1,
        GraphFailure::Http {
            status: 503,
            retry_after_secs: Some(7),
        },
    );
    s.fake.fail_next(1, GraphFailure::Code(2));
    let e = s
        .client
        .send_text(&s.pn, &s.token, &s.to, "hi", None, permit())
        .await
        .unwrap_err();
    assert!(matches!(e, SendError::Http { status: 503, .. }), "{e:?}");
    assert_eq!(e.class(), ErrorClass::Retry);
    assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
    assert_eq!(
        Backoff::default().delay(0, e.retry_after()),
        Duration::from_secs(7)
    );
    let e = s
        .client
        .send_text(&s.pn, &s.token, &s.to, "hi", None, permit())
        .await
        .unwrap_err();
    assert!(matches!(e, SendError::Graph { status: 500, .. }), "{e:?}");
    assert_eq!(e.class(), ErrorClass::Retry);
    s.client
        .send_text(&s.pn, &s.token, &s.to, "hi", None, permit())
        .await
        .unwrap();
}

#[tokio::test]
async fn timeout_is_retryable() {
    let s = setup().await;
    let client = s.client.clone().with_timeout(Duration::from_millis(200));
    s.fake
        .fail_next(1, GraphFailure::Hang(Duration::from_secs(30)));
    let e = client
        .send_text(&s.pn, &s.token, &s.to, "hi", None, permit())
        .await
        .unwrap_err();
    assert!(matches!(e, SendError::Timeout), "{e:?}");
    assert_eq!(e.class(), ErrorClass::Retry);
}

#[tokio::test]
async fn local_validation_never_reaches_meta() {
    let s = setup().await;
    let long = "a".repeat(4097);
    for body in ["", "   ", long.as_str()] {
        let e = s
            .client
            .send_text(&s.pn, &s.token, &s.to, body, None, permit())
            .await
            .unwrap_err();
        assert!(matches!(e, SendError::Invalid(_)));
        assert_eq!(e.class(), ErrorClass::Permanent);
    }
    // 4096 multi-byte characters are fine.
    let ok = "é".repeat(4096);
    s.client
        .send_text(&s.pn, &s.token, &s.to, &ok, None, permit())
        .await
        .unwrap();
    assert_eq!(s.fake.requests().len(), 1);
}

#[tokio::test]
async fn window_closed_refuses_free_form_only() {
    let now = OffsetDateTime::now_utc();
    let last = Some(now - time::Duration::hours(30));
    let e = check_window(OutboundKind::FreeForm, last, now).unwrap_err();
    assert!(matches!(e, SendError::OutsideWindow { .. }));
    assert_eq!(e.class(), ErrorClass::Permanent);
    assert!(check_window(OutboundKind::Template, last, now).is_ok());
}

#[tokio::test]
async fn fake_rejects_malformed_bodies_with_code_100() {
    let s = setup().await;
    let http = reqwest::Client::new();
    let url = format!("{}/v23.0/{PN}/messages", s.fake.base_url);
    for body in [
        serde_json::json!({"to": "1", "type": "text", "text": {"body": "x"}}),
        serde_json::json!({"messaging_product": "whatsapp", "type": "text", "text": {"body": "x"}}),
        serde_json::json!({"messaging_product": "whatsapp", "to": "1", "type": "text"}),
        serde_json::json!({"messaging_product": "whatsapp", "to": "1", "type": "template", "template": {"name": "x"}}),
        serde_json::json!({"messaging_product": "whatsapp", "to": "1", "type": "carrier_pigeon", "carrier_pigeon": {}}),
    ] {
        let r = http
            .post(&url)
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 400);
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], 100);
    }
    // Wrong path shape.
    let r = http
        .post(format!("{}/23/{PN}/messages", s.fake.base_url))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
}

#[tokio::test]
async fn mark_read() {
    let s = setup().await;
    let w = Wamid::new("wamid.INBOUND2").unwrap();
    s.client.mark_read(&s.pn, &s.token, &w).await.unwrap();
    let b = s.fake.requests()[0].body.clone().unwrap();
    assert_eq!(b["status"], "read");
    assert_eq!(b["message_id"], "wamid.INBOUND2");
    let wrong = AccessToken::new("EAAGwrong").unwrap();
    let e = s.client.mark_read(&s.pn, &wrong, &w).await.unwrap_err();
    assert_eq!(e.code(), Some(190));
}

const WABA: &str = "1029384756";

#[tokio::test]
async fn template_listing_follows_every_page() {
    let s = setup().await;
    for (i, status) in ["APPROVED", "PENDING", "REJECTED", "APPROVED", "PAUSED"]
        .iter()
        .enumerate()
    {
        s.fake.add_template(
            WABA,
            TOKEN,
            &format!("t{i}"),
            "en",
            status,
            &format!("Hello {{{{1}}}}, number {i}"),
        );
    }
    s.fake.set_template_page_size(2);
    let all = s.client.list_templates(WABA, &s.token).await.unwrap();
    assert_eq!(
        all.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        ["t0", "t1", "t2", "t3", "t4"],
        "three pages of 2, 2 and 1"
    );
    assert_eq!(all[1].status, "PENDING");
    assert_eq!(all[4].body.as_deref(), Some("Hello {{1}}, number 4"));
    assert_eq!(all[0].category, "UTILITY");

    let wrong = AccessToken::new("EAAGwrong").unwrap();
    let err = s.client.list_templates(WABA, &wrong).await.unwrap_err();
    assert!(
        matches!(&err, SendError::Graph { status: 401, error, .. } if error.code == 190),
        "{err:?}"
    );
    let err = s.client.list_templates("999", &s.token).await.unwrap_err();
    assert!(
        matches!(&err, SendError::Graph { error, .. } if error.code == 100),
        "{err:?}"
    );
    assert!(matches!(
        s.client.list_templates("../x", &s.token).await,
        Err(SendError::Invalid(_))
    ));
}

#[tokio::test]
async fn template_sends_are_checked_like_meta_does() {
    let s = setup().await;
    s.fake.add_template(
        WABA,
        TOKEN,
        "slot",
        "en",
        "APPROVED",
        "Hi {{1}}, {{2}} awaits",
    );
    s.fake
        .add_template(WABA, TOKEN, "draft", "en", "PENDING", "Hi {{1}}");
    let call = |name: &str, values: &[&str]| Template {
        name: name.into(),
        language: "en".into(),
        components: vec![serde_json::json!({
            "type": "body",
            "parameters": values
                .iter()
                .map(|v| serde_json::json!({ "type": "text", "text": v }))
                .collect::<Vec<_>>(),
        })],
    };
    s.client
        .send_template(&s.pn, &s.token, &s.to, &call("slot", &["Asha", "Glow"]))
        .await
        .unwrap();
    for (t, code) in [
        (call("slot", &["Asha"]), 132000),
        (call("nope", &["Asha"]), 132001),
        (call("draft", &["Asha"]), 132001),
    ] {
        let err = s
            .client
            .send_template(&s.pn, &s.token, &s.to, &t)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, SendError::Graph { error, .. } if error.code == code),
            "{}: {err:?}",
            t.name
        );
        assert_eq!(err.class(), ErrorClass::Permanent, "{code} is not retried");
    }
}
