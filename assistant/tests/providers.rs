//! Provider clients, retry and failover against the fake OpenAI-compatible server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{PSEUDONYM, request};
use serde_json::Value;
use smartchat_assistant::fake::{Failure, FakeLlm};
use smartchat_assistant::{
    Assistant, AttemptOutcome, ChatProvider, Intent, ManualClock, ProviderError, ProviderKind,
    ReplySource, RequestFlags, RetryPolicy, SecretString, TokenUsage, UserIdField,
};

fn key(k: &str) -> SecretString {
    SecretString::from(k.to_owned())
}

fn openai(fake: &FakeLlm) -> ChatProvider {
    ChatProvider::new(
        ProviderKind::OpenAi,
        &fake.base_url,
        key(&fake.api_key),
        "gpt-test",
    )
    .unwrap()
}

fn deepseek(fake: &FakeLlm) -> ChatProvider {
    ChatProvider::new(
        ProviderKind::DeepSeek,
        &fake.root_url,
        key(&fake.api_key),
        "deepseek-v4-flash",
    )
    .unwrap()
}

fn with_clock(chain: Vec<ChatProvider>) -> (Assistant, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new());
    (Assistant::new(chain).with_clock(clock.clone()), clock)
}

/// A loopback base URL where nothing listens.
async fn dead_base_url() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}/v1")
}

const QUESTION: &str = "Can you recommend something for dry hair?";

#[tokio::test]
async fn openai_request_shape() {
    let fake = FakeLlm::start().await.unwrap();
    let (assistant, clock) = with_clock(vec![openai(&fake)]);
    let reply = assistant.reply(&request(QUESTION)).await;

    assert_eq!(reply.text, "fake reply to 4 messages");
    assert_eq!(
        reply.source,
        ReplySource::Provider {
            provider: ProviderKind::OpenAi,
            model: "gpt-test".into()
        }
    );
    assert_eq!(reply.intent, Intent::Other);
    assert_eq!(reply.attempts.len(), 1);
    assert!(clock.sleeps().is_empty());

    let reqs = fake.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.path, "/v1/chat/completions");
    assert!(r.authorized);
    let b = &r.body;
    assert_eq!(b["model"], "gpt-test");
    assert_eq!(b["store"], Value::Bool(false));
    assert_eq!(b["safety_identifier"], PSEUDONYM);
    assert!(b.get("user_id").is_none());
    assert!(
        b.get("user").is_none(),
        "deprecated `user` must not be sent"
    );
    assert!(b.get("thinking").is_none());
    assert_eq!(b["max_completion_tokens"], 400);
    assert!(b.get("max_tokens").is_none());
    assert_eq!(b["stream"], Value::Bool(false));
    let messages = b["messages"].as_array().unwrap();
    assert_eq!(messages[0]["role"], "system");
    let system = messages[0]["content"].as_str().unwrap();
    assert!(system.contains("Glow Salon") && system.contains("Saturday: 09:00-14:00"));
    assert!(system.contains("Now: Saturday 11:00 (Asia/Kolkata)"));
    assert_eq!(messages[1]["role"], "user");
    assert_eq!(messages[2]["role"], "assistant");
    assert_eq!(
        messages[3],
        serde_json::json!({"role": "user", "content": QUESTION})
    );

    // The ledger record matches what was sent: digest of the exact body, tokens, status.
    let a = &reply.attempts[0];
    assert_eq!(a.outcome, AttemptOutcome::Success);
    assert_eq!(a.http_status, Some(200));
    assert_eq!(a.request_digest, *blake3::hash(&r.raw).as_bytes());
    assert_eq!(a.provider_request_id.as_deref(), Some("req_fake_1"));
    let usage = reply.usage.unwrap();
    assert_eq!(a.tokens, Some(usage));
    assert_eq!(usage.completion, 5);
    assert!(usage.prompt > 20);
    // The record serializes without any message text.
    let rec = serde_json::to_string(&reply.attempts).unwrap();
    assert!(!rec.contains("dry hair") && !rec.contains("Glow"));
    // Debug of the reply and of the provider shows neither text nor key.
    let dbg = format!("{reply:?} {:?}", openai(&fake));
    assert!(
        !dbg.contains("fake reply") && !dbg.contains(&fake.api_key),
        "{dbg}"
    );
}

#[tokio::test]
async fn deepseek_request_shape() {
    let fake = FakeLlm::start().await.unwrap();
    fake.script_reply("Try our hair spa.");
    let (assistant, _) = with_clock(vec![deepseek(&fake)]);
    let reply = assistant.reply(&request(QUESTION)).await;
    assert_eq!(reply.text, "Try our hair spa.");
    assert_eq!(reply.usage.map(|u| u.completion), Some(4));
    let r = &fake.requests()[0];
    assert_eq!(r.path, "/chat/completions");
    let b = &r.body;
    assert_eq!(b["user_id"], PSEUDONYM);
    assert!(b.get("safety_identifier").is_none());
    assert!(b.get("store").is_none());
    assert_eq!(b["max_tokens"], 400);
    assert!(b.get("max_completion_tokens").is_none());
    assert_eq!(b["thinking"]["type"], "disabled");
}

#[tokio::test]
async fn flags_choose_the_identifier_and_history_bound() {
    let fake = FakeLlm::start().await.unwrap();
    let compat = ChatProvider::new(
        ProviderKind::Compatible("local-vllm".into()),
        &fake.base_url,
        key(&fake.api_key),
        "llama",
    )
    .unwrap();
    let flags = RequestFlags {
        user_field: UserIdField::SafetyIdentifier,
        store: None,
        max_history_turns: 1,
        ..RequestFlags::default()
    };
    let req = request(QUESTION).with_flags(flags);
    let reply = compat.complete(&req, "sys").await.unwrap();
    assert_eq!(reply.text, "fake reply to 3 messages");
    let b = &fake.requests()[0].body;
    assert_eq!(b["safety_identifier"], PSEUDONYM);
    assert!(b.get("store").is_none());
    assert_eq!(b["messages"].as_array().unwrap().len(), 3);
    assert_eq!(b["messages"][1]["role"], "assistant");

    let req = request(QUESTION).with_flags(RequestFlags {
        user_field: UserIdField::None,
        ..RequestFlags::default()
    });
    openai(&fake).complete(&req, "sys").await.unwrap();
    let b = &fake.requests()[1].body;
    assert!(b.get("safety_identifier").is_none() && b.get("user_id").is_none());
}

#[tokio::test]
async fn rate_limited_then_success_honours_retry_after() {
    let fake = FakeLlm::start().await.unwrap();
    fake.fail_next(
        1,
        Failure::RateLimited {
            retry_after_secs: 2,
        },
    );
    let (assistant, clock) = with_clock(vec![openai(&fake)]);
    let reply = assistant.reply(&request(QUESTION)).await;
    assert!(matches!(reply.source, ReplySource::Provider { .. }));
    let outcomes: Vec<_> = reply
        .attempts
        .iter()
        .map(|a| (a.outcome, a.http_status))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            (AttemptOutcome::RateLimited, Some(429)),
            (AttemptOutcome::Success, Some(200))
        ]
    );
    assert_eq!(clock.sleeps(), vec![Duration::from_secs(2)]);
    // Both attempts sent the same body.
    assert_eq!(
        reply.attempts[0].request_digest,
        reply.attempts[1].request_digest
    );
    assert_eq!(fake.request_count(), 2);
}

#[tokio::test]
async fn server_errors_back_off_with_jitter_then_succeed() {
    let fake = FakeLlm::start().await.unwrap();
    fake.fail_next(1, Failure::Status(500));
    fake.fail_next(1, Failure::Status(503));
    let policy = RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(1),
        max_retry_after: Duration::from_secs(30),
    };
    let (assistant, clock) = with_clock(vec![openai(&fake).with_retry(policy)]);
    let reply = assistant.reply(&request(QUESTION)).await;
    assert!(matches!(reply.source, ReplySource::Provider { .. }));
    let outcomes: Vec<_> = reply.attempts.iter().map(|a| a.outcome).collect();
    assert_eq!(
        outcomes,
        vec![
            AttemptOutcome::ServerError,
            AttemptOutcome::ServerError,
            AttemptOutcome::Success
        ]
    );
    let sleeps = clock.sleeps();
    assert_eq!(sleeps.len(), 2);
    assert!(sleeps[0] <= Duration::from_millis(100), "{sleeps:?}");
    assert!(sleeps[1] <= Duration::from_millis(200), "{sleeps:?}");
}

#[tokio::test]
async fn insufficient_quota_is_not_retried_and_fails_over() {
    let first = FakeLlm::start().await.unwrap();
    let second = FakeLlm::start().await.unwrap();
    first.fail_next(5, Failure::InsufficientQuota);
    let (assistant, clock) = with_clock(vec![openai(&first), deepseek(&second)]);
    let reply = assistant.reply(&request(QUESTION)).await;
    assert_eq!(
        reply.source,
        ReplySource::Provider {
            provider: ProviderKind::DeepSeek,
            model: "deepseek-v4-flash".into()
        }
    );
    assert_eq!(first.request_count(), 1);
    assert_eq!(second.request_count(), 1);
    let outcomes: Vec<_> = reply
        .attempts
        .iter()
        .map(|a| (a.provider.clone(), a.outcome))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            (ProviderKind::OpenAi, AttemptOutcome::QuotaExhausted),
            (ProviderKind::DeepSeek, AttemptOutcome::Success)
        ]
    );
    assert!(clock.sleeps().is_empty());
}

#[tokio::test]
async fn deepseek_insufficient_balance_402_is_not_retried() {
    let fake = FakeLlm::start().await.unwrap();
    fake.fail_next(5, Failure::Status(402));
    let (assistant, _) = with_clock(vec![deepseek(&fake)]);
    let reply = assistant.reply(&request(QUESTION)).await;
    assert_eq!(reply.source, ReplySource::Offline);
    assert_eq!(reply.attempts.len(), 1);
    assert_eq!(reply.attempts[0].outcome, AttemptOutcome::QuotaExhausted);
}

#[tokio::test]
async fn client_errors_are_never_retried() {
    for status in [400u16, 403, 404, 422] {
        let fake = FakeLlm::start().await.unwrap();
        fake.fail_next(5, Failure::Status(status));
        let (assistant, clock) = with_clock(vec![openai(&fake)]);
        let reply = assistant.reply(&request(QUESTION)).await;
        assert_eq!(reply.attempts.len(), 1, "{status}");
        assert_eq!(reply.attempts[0].http_status, Some(status));
        assert_eq!(reply.source, ReplySource::Offline);
        assert!(clock.sleeps().is_empty());
    }
}

#[tokio::test]
async fn unauthorized_is_not_retried() {
    let fake = FakeLlm::start().await.unwrap();
    let wrong = ChatProvider::new(
        ProviderKind::OpenAi,
        &fake.base_url,
        key("sk-wrong"),
        "gpt-test",
    )
    .unwrap();
    let err = wrong.complete(&request(QUESTION), "sys").await.unwrap_err();
    match &err {
        ProviderError::Api(e) => {
            assert_eq!(e.status, 401);
            assert_eq!(e.code.as_deref(), Some("invalid_api_key"));
            assert!(
                e.message
                    .as_deref()
                    .unwrap()
                    .starts_with("Incorrect API key")
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(!err.is_retryable());
    assert!(!format!("{err} {err:?}").contains("sk-wrong"));

    let (assistant, clock) = with_clock(vec![wrong]);
    let reply = assistant.reply(&request(QUESTION)).await;
    assert_eq!(reply.source, ReplySource::Offline);
    assert_eq!(reply.attempts.len(), 1);
    assert_eq!(reply.attempts[0].outcome, AttemptOutcome::AuthError);
    assert!(clock.sleeps().is_empty());
    assert!(fake.requests().iter().all(|r| !r.authorized));
}

#[tokio::test]
async fn provider_down_fails_over_to_next_then_offline() {
    let down = ChatProvider::new(
        ProviderKind::OpenAi,
        &dead_base_url().await,
        key("k"),
        "gpt-test",
    )
    .unwrap();
    let flaky = FakeLlm::start().await.unwrap();
    flaky.fail_next(10, Failure::Status(503));
    let second = deepseek(&flaky).with_retry(RetryPolicy {
        max_attempts: 2,
        ..RetryPolicy::default()
    });
    let (assistant, clock) = with_clock(vec![down, second]);
    let reply = assistant
        .reply(&request("do you do keratin treatment for curly hair?"))
        .await;
    assert_eq!(reply.source, ReplySource::Offline);
    // Offline still answers from the profile.
    assert!(reply.text.contains("Haircut"), "{}", reply.text);
    let outcomes: Vec<_> = reply
        .attempts
        .iter()
        .map(|a| (a.provider.clone(), a.outcome))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            (ProviderKind::OpenAi, AttemptOutcome::ConnectError),
            (ProviderKind::OpenAi, AttemptOutcome::ConnectError),
            (ProviderKind::OpenAi, AttemptOutcome::ConnectError),
            (ProviderKind::DeepSeek, AttemptOutcome::ServerError),
            (ProviderKind::DeepSeek, AttemptOutcome::ServerError),
        ]
    );
    assert!(reply.attempts[..3].iter().all(|a| a.http_status.is_none()));
    assert_eq!(clock.sleeps().len(), 3);
    assert_eq!(flaky.request_count(), 2);
}

#[tokio::test]
async fn timeout_fails_over() {
    let hanging = FakeLlm::start().await.unwrap();
    hanging.fail_next(5, Failure::Hang);
    let healthy = FakeLlm::start().await.unwrap();
    let slow = openai(&hanging)
        .with_timeout(Duration::from_millis(300))
        .with_retry(RetryPolicy::no_retry());
    let (assistant, _) = with_clock(vec![slow, deepseek(&healthy)]);
    let reply = assistant.reply(&request(QUESTION)).await;
    assert!(matches!(
        reply.source,
        ReplySource::Provider {
            provider: ProviderKind::DeepSeek,
            ..
        }
    ));
    let outcomes: Vec<_> = reply.attempts.iter().map(|a| a.outcome).collect();
    assert_eq!(
        outcomes,
        vec![AttemptOutcome::Timeout, AttemptOutcome::Success]
    );
    assert!(reply.attempts[0].latency_ms >= 300);
}

#[tokio::test]
async fn retry_after_beyond_the_bound_fails_over_without_waiting() {
    let limited = FakeLlm::start().await.unwrap();
    limited.set_rate_limit(1, Duration::from_secs(60));
    let spare = FakeLlm::start().await.unwrap();
    let (assistant, clock) = with_clock(vec![openai(&limited), deepseek(&spare)]);

    let first = assistant.reply(&request(QUESTION)).await;
    assert!(matches!(
        first.source,
        ReplySource::Provider {
            provider: ProviderKind::OpenAi,
            ..
        }
    ));
    let second = assistant.reply(&request(QUESTION)).await;
    assert!(matches!(
        second.source,
        ReplySource::Provider {
            provider: ProviderKind::DeepSeek,
            ..
        }
    ));
    assert_eq!(second.attempts[0].outcome, AttemptOutcome::RateLimited);
    assert!(
        clock.sleeps().is_empty(),
        "a 60 s Retry-After exceeds the 30 s bound"
    );
}

#[tokio::test]
async fn total_deadline_bounds_retries() {
    let fake = FakeLlm::start().await.unwrap();
    fake.fail_next(
        50,
        Failure::RateLimited {
            retry_after_secs: 1,
        },
    );
    let p = openai(&fake).with_retry(RetryPolicy {
        max_attempts: 50,
        ..RetryPolicy::default()
    });
    let clock = Arc::new(ManualClock::new());
    let assistant = Assistant::new(vec![p])
        .with_clock(clock.clone())
        .with_deadline(Duration::from_millis(3_500));
    let reply = assistant.reply(&request(QUESTION)).await;
    assert_eq!(reply.source, ReplySource::Offline);
    assert_eq!(clock.sleeps(), vec![Duration::from_secs(1); 3]);
    assert_eq!(reply.attempts.len(), 4);
}

#[tokio::test]
async fn rights_and_handoff_never_reach_a_provider() {
    let fake = FakeLlm::start().await.unwrap();
    let (assistant, _) = with_clock(vec![openai(&fake)]);
    for (msg, intent) in [
        ("STOP", Intent::OptOut),
        ("band karo", Intent::OptOut),
        ("delete my data", Intent::DeleteMyData),
        ("mera data delete karo", Intent::DeleteMyData),
        ("मेरा डेटा हटाओ", Intent::DeleteMyData),
        ("send me a copy of my data", Intent::ExportMyData),
        ("talk to a human", Intent::Handoff),
        ("मैनेजर से बात करनी है", Intent::Handoff),
    ] {
        let reply = assistant.reply(&request(msg)).await;
        assert_eq!(reply.intent, intent, "{msg}");
        assert_eq!(reply.source, ReplySource::Offline, "{msg}");
        assert!(reply.attempts.is_empty(), "{msg}");
    }
    assert_eq!(fake.request_count(), 0);
}

#[tokio::test]
async fn providers_not_allowed_goes_offline() {
    let fake = FakeLlm::start().await.unwrap();
    let (assistant, _) = with_clock(vec![openai(&fake)]);
    let req = request("What time do you open on Saturday?").with_flags(RequestFlags {
        allow_providers: false,
        ..RequestFlags::default()
    });
    let reply = assistant.reply(&req).await;
    assert_eq!(reply.source, ReplySource::Offline);
    assert_eq!(reply.text, "On Saturday we're open 9 AM – 2 PM.");
    assert_eq!(fake.request_count(), 0);

    let reply = Assistant::offline_only().reply(&request(QUESTION)).await;
    assert_eq!(reply.source, ReplySource::Offline);
    assert!(reply.attempts.is_empty());
}

#[tokio::test]
async fn outgoing_requests_carry_only_what_the_caller_gave() {
    let fake = FakeLlm::start().await.unwrap();
    let (assistant, _) = with_clock(vec![openai(&fake), deepseek(&fake)]);
    fake.fail_next(1, Failure::Status(400));
    let reply = assistant
        .reply(&request("my number is [PHONE], can I come at 5?"))
        .await;
    assert_eq!(reply.attempts.len(), 2);
    for r in fake.requests() {
        let raw = String::from_utf8(r.raw.clone()).unwrap();
        assert!(raw.contains("[PHONE]"));
        // No digits run long enough to be a phone number appears anywhere.
        let longest_digits = raw
            .split(|c: char| !c.is_ascii_digit())
            .map(str::len)
            .max()
            .unwrap_or(0);
        assert!(longest_digits < 10, "{raw}");
    }
}

#[tokio::test]
async fn fake_validates_requests_and_rate_limits_with_headers() {
    let fake = FakeLlm::start().await.unwrap();
    let client = reqwest::Client::new();
    let url = format!("{}/chat/completions", fake.base_url);
    let post = |body: Value| {
        client
            .post(&url)
            .bearer_auth(&fake.api_key)
            .json(&body)
            .send()
    };
    let r = post(serde_json::json!({"messages": [{"role": "user", "content": "hi"}]}))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["param"], "model");
    assert_eq!(e["error"]["type"], "invalid_request_error");
    let r = post(serde_json::json!({"model": "m", "messages": []}))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = client
        .post(&url)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "invalid_api_key");

    fake.set_rate_limit(2, Duration::from_secs(60));
    let ok = serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "a b c"}]});
    let r = post(ok.clone()).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-ratelimit-remaining-requests"], "1");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["usage"]["prompt_tokens"], 3);
    assert_eq!(post(ok.clone()).await.unwrap().status(), 200);
    let r = post(ok).await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["x-ratelimit-limit-requests"], "2");
    assert_eq!(r.headers()["x-ratelimit-remaining-requests"], "0");
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
    assert_eq!(fake.request_count(), 6);
}

#[tokio::test(start_paused = true)]
async fn tokio_clock_works_with_paused_time() {
    // The default clock is tokio's: with paused time a 2 s Retry-After costs no real time.
    let fake = FakeLlm::start().await.unwrap();
    fake.fail_next(
        1,
        Failure::RateLimited {
            retry_after_secs: 2,
        },
    );
    let assistant = Assistant::new(vec![openai(&fake).with_timeout(Duration::from_secs(3600))]);
    let started = std::time::Instant::now();
    let reply = assistant.reply(&request(QUESTION)).await;
    assert!(
        matches!(reply.source, ReplySource::Provider { .. }),
        "{:?}",
        reply.attempts
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(reply.latency_ms >= 2_000);
    assert_eq!(reply.usage.map(|u: TokenUsage| u.completion), Some(5));
}

#[test]
fn reply_future_is_send_so_it_can_be_spawned() {
    fn assert_send<T: Send>(_: &T) {}
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<Assistant>();
    assert_send_sync::<ChatProvider>();
    let assistant = Assistant::offline_only();
    let req = request("hi");
    let fut = assistant.reply(&req);
    assert_send(&fut);
    drop(fut);
}
