//! A fake OpenAI-compatible chat-completions server for tests (feature `fake`).
//!
//! [`FakeLlm::start`] listens on `127.0.0.1:0` and serves `POST /chat/completions` and
//! `POST /v1/chat/completions`. It checks the bearer key (401 in OpenAI's error shape),
//! validates `model`, `messages` and `response_format` (400), answers deterministically
//! (`fake reply to <n> messages`, or a scripted reply) with `usage`, records every
//! request body, and can be scripted to fail ([`FakeLlm::fail_next`]) or rate limited
//! ([`FakeLlm::set_rate_limit`]).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

/// A scripted failure for the next request(s).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// 429 `rate_limit_exceeded` with `retry-after: <secs>`.
    RateLimited {
        /// Value of the `retry-after` header.
        retry_after_secs: u64,
    },
    /// 429 `insufficient_quota` (must not be retried).
    InsufficientQuota,
    /// The given status with an OpenAI-shaped error body (e.g. 500, 503, 400, 401, 402).
    Status(u16),
    /// Never answer (the client must time out).
    Hang,
}

/// One request the fake received.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// Request path.
    pub path: String,
    /// Whether the bearer key matched.
    pub authorized: bool,
    /// Parsed JSON body (`Value::Null` if it was not JSON).
    pub body: Value,
    /// Raw body bytes.
    pub raw: Vec<u8>,
}

#[derive(Debug)]
struct RateLimit {
    limit: u32,
    window: Duration,
    window_start: tokio::time::Instant,
    used: u32,
}

#[derive(Debug, Default)]
struct Inner {
    api_key: String,
    failures: VecDeque<Failure>,
    replies: VecDeque<String>,
    json_replies: VecDeque<String>,
    requests: Vec<RecordedRequest>,
    rate: Option<RateLimit>,
    /// Requests being answered now, and the most seen at once.
    in_flight: usize,
    max_in_flight: usize,
    /// Hold each request until this many are in flight at once (or the wait runs out).
    hold: Option<(usize, Duration)>,
    served: u64,
}

type Shared = Arc<Mutex<Inner>>;

fn lock(s: &Shared) -> MutexGuard<'_, Inner> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running fake server; stops when dropped.
#[derive(Debug)]
pub struct FakeLlm {
    /// Base URL ending in `/v1`, like OpenAI's (`http://127.0.0.1:<port>/v1`).
    pub base_url: String,
    /// Root URL without `/v1`, like DeepSeek's (`http://127.0.0.1:<port>`).
    pub root_url: String,
    /// The bearer key the fake accepts.
    pub api_key: String,
    state: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeLlm {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The default answer to a structured-output request: a lead object with nothing found.
pub const EMPTY_LEAD: &str = r#"{"name":null,"service":null,"preferred_date":null,"preferred_time":null,"budget_inr":null,"budget_bound":null,"stage":null}"#;

fn error_body(message: &str, kind: &str, param: Option<&str>, code: Option<&str>) -> Value {
    json!({"error": {"message": message, "type": kind, "param": param, "code": code}})
}

fn json_response(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

fn failure_response(f: Failure) -> Response {
    match f {
        Failure::RateLimited { retry_after_secs } => {
            let mut r = json_response(
                StatusCode::TOO_MANY_REQUESTS,
                error_body(
                    "Rate limit reached for requests",
                    "requests",
                    None,
                    Some("rate_limit_exceeded"),
                ),
            );
            if let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string()) {
                r.headers_mut().insert("retry-after", v);
            }
            r
        }
        Failure::InsufficientQuota => json_response(
            StatusCode::TOO_MANY_REQUESTS,
            error_body(
                "You exceeded your current quota, please check your plan and billing details.",
                "insufficient_quota",
                None,
                Some("insufficient_quota"),
            ),
        ),
        Failure::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let (msg, kind, c) = match code {
                400 => ("Invalid request", "invalid_request_error", None),
                401 => (
                    "Incorrect API key provided",
                    "invalid_request_error",
                    Some("invalid_api_key"),
                ),
                402 => (
                    "Insufficient Balance",
                    "invalid_request_error",
                    Some("insufficient_balance"),
                ),
                403 => (
                    "Country, region, or territory not supported",
                    "invalid_request_error",
                    Some("unsupported_country_region_territory"),
                ),
                404 => (
                    "The model does not exist",
                    "invalid_request_error",
                    Some("model_not_found"),
                ),
                422 => ("Invalid parameters", "invalid_request_error", None),
                503 => (
                    "The engine is currently overloaded, please try again later",
                    "server_error",
                    None,
                ),
                _ => (
                    "The server had an error while processing your request",
                    "server_error",
                    None,
                ),
            };
            json_response(status, error_body(msg, kind, None, c))
        }
        Failure::Hang => json_response(StatusCode::INTERNAL_SERVER_ERROR, json!({})),
    }
}

fn ratelimit_headers(r: &mut Response, limit: u32, remaining: u32, reset: Duration) {
    let reset = if reset < Duration::from_secs(1) {
        format!("{}ms", reset.as_millis())
    } else {
        format!("{}s", reset.as_secs())
    };
    for (k, v) in [
        ("x-ratelimit-limit-requests", limit.to_string()),
        ("x-ratelimit-remaining-requests", remaining.to_string()),
        ("x-ratelimit-reset-requests", reset),
    ] {
        if let Ok(v) = HeaderValue::from_str(&v) {
            r.headers_mut().insert(k, v);
        }
    }
}

/// Validates a chat-completions body; `Err((param, message))` on the first problem.
fn validate(body: &Value) -> Result<(&str, &Vec<Value>), (&'static str, &'static str)> {
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .ok_or(("model", "you must provide a model parameter"))?;
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
        .ok_or(("messages", "messages must be a non-empty array"))?;
    for m in messages {
        let role_ok = m
            .get("role")
            .and_then(Value::as_str)
            .is_some_and(|r| matches!(r, "system" | "developer" | "user" | "assistant" | "tool"));
        let content_ok = m.get("content").is_some_and(Value::is_string);
        if !role_ok || !content_ok {
            return Err((
                "messages",
                "each message needs a valid role and string content",
            ));
        }
    }
    validate_response_format(body, messages)?;
    Ok((model, messages))
}

/// Checks `response_format` as OpenAI does: `text`, `json_object` (the messages must
/// mention "json") or `json_schema` with a `name` of 1 to 64 `[A-Za-z0-9_-]` and a
/// `schema` object.
fn validate_response_format(
    body: &Value,
    messages: &[Value],
) -> Result<(), (&'static str, &'static str)> {
    let Some(rf) = body.get("response_format") else {
        return Ok(());
    };
    const PARAM: &str = "response_format";
    match rf.get("type").and_then(Value::as_str) {
        Some("text") => Ok(()),
        Some("json_object") => {
            let mentions_json = messages.iter().any(|m| {
                m.get("content")
                    .and_then(Value::as_str)
                    .is_some_and(|c| c.to_lowercase().contains("json"))
            });
            if mentions_json {
                Ok(())
            } else {
                Err((
                    "messages",
                    "'messages' must contain the word 'json' in some form, to use 'response_format' of type 'json_object'.",
                ))
            }
        }
        Some("json_schema") => {
            let js = rf
                .get("json_schema")
                .ok_or((PARAM, "json_schema is required"))?;
            let name_ok = js.get("name").and_then(Value::as_str).is_some_and(|n| {
                (1..=64).contains(&n.len())
                    && n.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            });
            if !name_ok {
                return Err((PARAM, "json_schema.name is invalid"));
            }
            if !js.get("schema").is_some_and(Value::is_object) {
                return Err((PARAM, "json_schema.schema must be an object"));
            }
            Ok(())
        }
        _ => Err((PARAM, "response_format.type is invalid")),
    }
}

fn words(v: &Value) -> u32 {
    let n = v
        .get("content")
        .and_then(Value::as_str)
        .map_or(0, |c| c.split_whitespace().count());
    u32::try_from(n).unwrap_or(u32::MAX)
}

async fn chat(State(state): State<Shared>, uri: Uri, headers: HeaderMap, raw: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    let failure = {
        let mut s = lock(&state);
        let expected = format!("Bearer {}", s.api_key);
        let authorized = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == expected);
        s.requests.push(RecordedRequest {
            path: uri.path().to_owned(),
            authorized,
            body: body.clone(),
            raw: raw.to_vec(),
        });
        if !authorized {
            return json_response(
                StatusCode::UNAUTHORIZED,
                error_body(
                    "Incorrect API key provided. You can find your API key in your account settings.",
                    "invalid_request_error",
                    None,
                    Some("invalid_api_key"),
                ),
            );
        }
        s.failures.pop_front()
    };
    match failure {
        Some(Failure::Hang) => return std::future::pending::<Response>().await,
        Some(f) => return failure_response(f),
        None => {}
    }
    let _in_flight = InFlight::enter(&state).await;
    let mut rate_headers = None;
    {
        let mut s = lock(&state);
        if let Some(rl) = s.rate.as_mut() {
            let now = tokio::time::Instant::now();
            if now.duration_since(rl.window_start) >= rl.window {
                rl.window_start = now;
                rl.used = 0;
            }
            let reset = rl
                .window
                .saturating_sub(now.duration_since(rl.window_start));
            if rl.used >= rl.limit {
                let mut r = failure_response(Failure::RateLimited {
                    retry_after_secs: reset.as_secs_f64().ceil() as u64,
                });
                ratelimit_headers(&mut r, rl.limit, 0, reset);
                return r;
            }
            rl.used += 1;
            rate_headers = Some((rl.limit, rl.limit - rl.used, reset));
        }
    }
    let (model, messages) = match validate(&body) {
        Ok(v) => v,
        Err((param, msg)) => {
            return json_response(
                StatusCode::BAD_REQUEST,
                error_body(msg, "invalid_request_error", Some(param), None),
            );
        }
    };
    let prompt_tokens: u32 = messages.iter().map(words).sum();
    // A structured-output request (`response_format` JSON) takes a scripted JSON answer,
    // else a scripted reply, else an empty lead object (every field null); a plain request
    // takes a scripted reply, else a deterministic text.
    let structured = body
        .get("response_format")
        .and_then(|rf| rf.get("type"))
        .and_then(Value::as_str)
        .is_some_and(|t| t == "json_schema" || t == "json_object");
    let (n, reply) = {
        let mut s = lock(&state);
        s.served += 1;
        let scripted = if structured {
            s.json_replies.pop_front().or_else(|| s.replies.pop_front())
        } else {
            s.replies.pop_front()
        };
        let reply = scripted.unwrap_or_else(|| {
            if structured {
                EMPTY_LEAD.to_owned()
            } else {
                format!("fake reply to {} messages", messages.len())
            }
        });
        (s.served, reply)
    };
    let completion_tokens = u32::try_from(reply.split_whitespace().count()).unwrap_or(u32::MAX);
    let mut r = json_response(
        StatusCode::OK,
        json!({
            "id": format!("chatcmpl-fake-{n}"),
            "object": "chat.completion",
            "created": 1_700_000_000u64 + n,
            "model": model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": reply},
                "finish_reason": "stop"
            }],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens.saturating_add(completion_tokens)
            }
        }),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("req_fake_{n}")) {
        r.headers_mut().insert("x-request-id", v);
    }
    if let Some((limit, remaining, reset)) = rate_headers {
        ratelimit_headers(&mut r, limit, remaining, reset);
    }
    r
}

/// One request being answered: counted in `in_flight` until dropped.
struct InFlight(Shared);

impl InFlight {
    /// Counts the request in, then waits while a hold asks for more requests at once.
    async fn enter(state: &Shared) -> Self {
        let hold = {
            let mut s = lock(state);
            s.in_flight += 1;
            s.max_in_flight = s.max_in_flight.max(s.in_flight);
            s.hold
        };
        if let Some((n, wait)) = hold {
            let until = tokio::time::Instant::now() + wait;
            while lock(state).max_in_flight < n && tokio::time::Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        InFlight(state.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut s = lock(&self.0);
        s.in_flight = s.in_flight.saturating_sub(1);
    }
}

impl FakeLlm {
    /// Starts a fake accepting the key `fake-key`.
    pub async fn start() -> std::io::Result<FakeLlm> {
        FakeLlm::start_with_key("fake-key").await
    }

    /// Starts a fake accepting the given bearer key.
    pub async fn start_with_key(api_key: &str) -> std::io::Result<FakeLlm> {
        let state: Shared = Arc::new(Mutex::new(Inner {
            api_key: api_key.to_owned(),
            ..Inner::default()
        }));
        let app = Router::new()
            .route("/chat/completions", post(chat))
            .route("/v1/chat/completions", post(chat))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "fake LLM server stopped");
            }
        });
        Ok(FakeLlm {
            base_url: format!("http://{addr}/v1"),
            root_url: format!("http://{addr}"),
            api_key: api_key.to_owned(),
            state,
            task,
        })
    }

    /// From now on each authorized request is held until `n` requests have been in flight
    /// at once, or for `wait` at most: a client that sends one request at a time waits
    /// `wait` on each and [`Self::max_in_flight`] stays 1.
    pub fn hold_until_in_flight(&self, n: usize, wait: Duration) {
        lock(&self.state).hold = Some((n, wait));
    }

    /// The most authorized requests answered at once so far.
    pub fn max_in_flight(&self) -> usize {
        lock(&self.state).max_in_flight
    }

    /// The next `n` authorized requests fail with `failure`.
    pub fn fail_next(&self, n: usize, failure: Failure) {
        let mut s = lock(&self.state);
        for _ in 0..n {
            s.failures.push_back(failure);
        }
    }

    /// Queues a reply text for the next successful request.
    pub fn script_reply(&self, text: impl Into<String>) {
        lock(&self.state).replies.push_back(text.into());
    }

    /// Queues a JSON value as the content of the next structured-output answer (a request
    /// with a JSON `response_format`); plain requests never take it.
    pub fn script_json_reply(&self, value: &Value) {
        lock(&self.state).json_replies.push_back(value.to_string());
    }

    /// Allows `limit` successful requests per `window`; the next get 429 with
    /// `retry-after` and `x-ratelimit-*` headers.
    pub fn set_rate_limit(&self, limit: u32, window: Duration) {
        lock(&self.state).rate = Some(RateLimit {
            limit,
            window,
            window_start: tokio::time::Instant::now(),
            used: 0,
        });
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.state).requests.clone()
    }

    /// How many requests were received.
    pub fn request_count(&self) -> usize {
        lock(&self.state).requests.len()
    }
}
