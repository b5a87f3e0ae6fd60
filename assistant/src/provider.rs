//! Clients for OpenAI-compatible `POST {base}/chat/completions` APIs (OpenAI, DeepSeek,
//! any compatible server).

use std::fmt;
use std::time::{Duration, SystemTime};

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::error::{ApiError, ProviderError};
use crate::redact::{Redacted, truncate};
use crate::retry::{RetryPolicy, parse_retry_after};
use crate::types::{
    AttemptOutcome, AttemptRecord, Pseudonym, ReplyRequest, RequestFlags, Role, TokenUsage,
    UserIdField,
};

/// Largest response body read from a provider.
const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// Which provider a client talks to; decides defaults for `store`, the end-user id
/// field and the max-tokens field.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// OpenAI (`https://api.openai.com/v1`).
    #[serde(rename = "openai")]
    OpenAi,
    /// DeepSeek (`https://api.deepseek.com`).
    #[serde(rename = "deepseek")]
    DeepSeek,
    /// Another OpenAI-compatible server, by a name for the ledger.
    Compatible(String),
}

impl ProviderKind {
    /// Short name for logs and ledgers.
    pub fn as_str(&self) -> &str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::DeepSeek => "deepseek",
            ProviderKind::Compatible(n) => n,
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A successful completion.
#[derive(Clone, PartialEq, Eq)]
pub struct Completion {
    /// `choices[0].message.content`, trimmed.
    pub text: String,
    /// Model that answered (from the response, else the one requested).
    pub model: String,
    /// Token usage, if reported.
    pub usage: Option<TokenUsage>,
    /// `choices[0].finish_reason`.
    pub finish_reason: Option<String>,
    /// `x-request-id` header.
    pub provider_request_id: Option<String>,
}

impl fmt::Debug for Completion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Completion")
            .field("text", &Redacted(&self.text))
            .field("model", &self.model)
            .field("usage", &self.usage)
            .field("finish_reason", &self.finish_reason)
            .field("provider_request_id", &self.provider_request_id)
            .finish()
    }
}

/// The outcome of a provider call with retries: the result and every attempt made.
#[derive(Debug)]
pub struct ProviderRun {
    /// Final result.
    pub result: Result<Completion, ProviderError>,
    /// One record per HTTP attempt.
    pub attempts: Vec<AttemptRecord>,
}

/// A client for one OpenAI-compatible chat-completions endpoint.
#[derive(Clone)]
pub struct ChatProvider {
    name: ProviderKind,
    base_url: String,
    api_key: SecretString,
    model: String,
    timeout: Duration,
    max_tokens: u32,
    temperature: f32,
    retry: RetryPolicy,
    client: reqwest::Client,
}

impl fmt::Debug for ChatProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatProvider")
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .field("api_key", &"<redacted>")
            .field("model", &self.model)
            .field("timeout", &self.timeout)
            .field("max_tokens", &self.max_tokens)
            .field("temperature", &self.temperature)
            .field("retry", &self.retry)
            .finish()
    }
}

fn is_loopback_host(rest: &str) -> bool {
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let host = if host.starts_with('[') {
        host.split(']').next().map(|h| h.trim_start_matches('['))
    } else {
        host.split(':').next()
    };
    matches!(host, Some("127.0.0.1" | "localhost" | "::1"))
}

/// Checks and normalizes a base URL: `https://`, or `http://` to a loopback host only
/// (never send keys and conversations in clear text over a network).
fn normalize_base_url(url: &str) -> Result<String, ProviderError> {
    let url = url.trim().trim_end_matches('/');
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ProviderError::Config("base URL contains whitespace"));
    }
    if let Some(rest) = url.strip_prefix("https://") {
        if rest.is_empty() {
            return Err(ProviderError::Config("base URL has no host"));
        }
    } else if let Some(rest) = url.strip_prefix("http://") {
        if !is_loopback_host(rest) {
            return Err(ProviderError::Config(
                "base URL must be https (http only to a loopback host)",
            ));
        }
    } else {
        return Err(ProviderError::Config("base URL must start with https://"));
    }
    if url.contains('?') || url.contains('#') {
        return Err(ProviderError::Config(
            "base URL must not have a query or fragment",
        ));
    }
    Ok(url.to_owned())
}

#[derive(Serialize)]
pub(crate) struct WireMessage<'a> {
    pub(crate) role: &'static str,
    pub(crate) content: &'a str,
}

#[derive(Serialize)]
struct Thinking {
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    messages: Vec<WireMessage<'a>>,
    temperature: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_completion_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    store: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    safety_identifier: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking: Option<Thinking>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<serde_json::Value>,
    stream: bool,
}

#[derive(Deserialize)]
struct WireResponse {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    choices: Vec<WireChoice>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireChoice {
    #[serde(default)]
    message: Option<WireChoiceMessage>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireChoiceMessage {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: Option<u32>,
    #[serde(default)]
    completion_tokens: Option<u32>,
}

#[derive(Deserialize)]
struct WireErrorEnvelope {
    #[serde(default)]
    error: Option<WireError>,
}

#[derive(Deserialize)]
struct WireError {
    #[serde(default)]
    message: Option<String>,
    #[serde(default, rename = "type")]
    error_type: Option<serde_json::Value>,
    #[serde(default)]
    code: Option<serde_json::Value>,
}

fn value_to_short(v: Option<serde_json::Value>) -> Option<String> {
    match v? {
        serde_json::Value::String(s) => Some(truncate(&s, 64)),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Parses an OpenAI-shaped error body; tolerates any body.
pub fn parse_api_error(status: u16, body: &[u8], retry_after: Option<Duration>) -> ApiError {
    let parsed = serde_json::from_slice::<WireErrorEnvelope>(body)
        .ok()
        .and_then(|e| e.error);
    let (message, error_type, code) = match parsed {
        Some(e) => (
            e.message.map(|m| truncate(&m, 300)),
            value_to_short(e.error_type),
            value_to_short(e.code),
        ),
        None => (None, None, None),
    };
    ApiError {
        status,
        error_type,
        code,
        message,
        retry_after,
    }
}

/// Parses a chat-completions success body.
pub fn parse_completion(body: &[u8], requested_model: &str) -> Result<Completion, ProviderError> {
    let r: WireResponse = serde_json::from_slice(body)
        .map_err(|_| ProviderError::InvalidResponse("body is not a chat completion"))?;
    let choice = r
        .choices
        .into_iter()
        .next()
        .ok_or(ProviderError::InvalidResponse("no choices"))?;
    let text = choice
        .message
        .and_then(|m| m.content)
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .ok_or(ProviderError::InvalidResponse("empty message content"))?;
    let usage = r.usage.map(|u| TokenUsage {
        prompt: u.prompt_tokens.unwrap_or(0),
        completion: u.completion_tokens.unwrap_or(0),
    });
    Ok(Completion {
        text,
        model: r
            .model
            .map(|m| truncate(&m, 128))
            .unwrap_or_else(|| requested_model.to_owned()),
        usage,
        finish_reason: choice.finish_reason.map(|f| truncate(&f, 32)),
        provider_request_id: None,
    })
}

fn classify_reqwest(e: &reqwest::Error) -> ProviderError {
    if e.is_timeout() {
        ProviderError::Timeout
    } else if e.is_connect() {
        ProviderError::Connect
    } else if e.is_builder() {
        ProviderError::Request("invalid request")
    } else {
        ProviderError::Transport
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl ChatProvider {
    /// A client for `base_url` (e.g. `https://api.openai.com/v1`, `https://api.deepseek.com`).
    /// Defaults: 20 s timeout, 400 max tokens, temperature 0.3, [`RetryPolicy::default`].
    pub fn new(
        name: ProviderKind,
        base_url: &str,
        api_key: SecretString,
        model: impl Into<String>,
    ) -> Result<Self, ProviderError> {
        let model = model.into();
        if model.trim().is_empty() || model.len() > 128 {
            return Err(ProviderError::Config("model name is empty or too long"));
        }
        let key = api_key.expose_secret();
        if key.is_empty() || key.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ProviderError::Config("API key is empty or has whitespace"));
        }
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|_| ProviderError::Config("HTTP client could not be built"))?;
        Ok(ChatProvider {
            name,
            base_url: normalize_base_url(base_url)?,
            api_key,
            model,
            timeout: Duration::from_secs(20),
            max_tokens: 400,
            temperature: 0.3,
            retry: RetryPolicy::default(),
            client,
        })
    }

    /// OpenAI at `https://api.openai.com/v1`.
    pub fn openai(api_key: SecretString, model: impl Into<String>) -> Result<Self, ProviderError> {
        ChatProvider::new(
            ProviderKind::OpenAi,
            "https://api.openai.com/v1",
            api_key,
            model,
        )
    }

    /// DeepSeek at `https://api.deepseek.com`.
    pub fn deepseek(
        api_key: SecretString,
        model: impl Into<String>,
    ) -> Result<Self, ProviderError> {
        ChatProvider::new(
            ProviderKind::DeepSeek,
            "https://api.deepseek.com",
            api_key,
            model,
        )
    }

    /// Sets the per-attempt timeout (connect + response).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the completion-token bound.
    pub fn with_max_tokens(mut self, max_tokens: u32) -> Self {
        self.max_tokens = max_tokens.max(1);
        self
    }

    /// Sets the temperature (clamped to `0.0..=2.0`).
    pub fn with_temperature(mut self, temperature: f32) -> Self {
        self.temperature = if temperature.is_finite() {
            temperature.clamp(0.0, 2.0)
        } else {
            0.3
        };
        self
    }

    /// Sets the retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = RetryPolicy {
            max_attempts: retry.max_attempts.max(1),
            ..retry
        };
        self
    }

    /// Shares an HTTP client (connection pool) between providers. It should not follow
    /// redirects.
    pub fn with_http_client(mut self, client: reqwest::Client) -> Self {
        self.client = client;
        self
    }

    /// Which provider.
    pub fn name(&self) -> &ProviderKind {
        &self.name
    }

    /// Model requested.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// Base URL (no trailing slash).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The retry policy.
    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry
    }

    /// `{base}/chat/completions`.
    pub fn endpoint(&self) -> String {
        format!("{}/chat/completions", self.base_url)
    }

    /// The exact JSON body that would be sent: the system prompt, the most recent
    /// `flags.max_history_turns` history turns and the customer message, plus `store`,
    /// the pseudonym field and the token bound chosen by provider and flags.
    pub fn request_body(
        &self,
        req: &ReplyRequest,
        system_prompt: &str,
    ) -> Result<Vec<u8>, ProviderError> {
        let flags = &req.flags;
        let skip = req.history.len().saturating_sub(flags.max_history_turns);
        let mut messages = Vec::with_capacity(req.history.len() - skip + 2);
        messages.push(WireMessage {
            role: "system",
            content: system_prompt,
        });
        for turn in req.history.iter().skip(skip) {
            if turn.text.trim().is_empty() {
                continue;
            }
            let role = match turn.role {
                Role::Customer => "user",
                Role::Assistant | Role::Human => "assistant",
            };
            messages.push(WireMessage {
                role,
                content: &turn.text,
            });
        }
        messages.push(WireMessage {
            role: "user",
            content: &req.customer_message,
        });
        self.body_for(messages, &req.subject_pseudonym, flags, None, None)
    }

    /// Serializes a chat-completions body for `messages` with the provider- and
    /// flag-dependent fields (`store`, pseudonym field, token bound, `thinking`), an
    /// optional `response_format` and an optional temperature override.
    pub(crate) fn body_for(
        &self,
        messages: Vec<WireMessage<'_>>,
        subject_pseudonym: &Pseudonym,
        flags: &RequestFlags,
        response_format: Option<serde_json::Value>,
        temperature: Option<f32>,
    ) -> Result<Vec<u8>, ProviderError> {
        let openai = self.name == ProviderKind::OpenAi;
        let deepseek = self.name == ProviderKind::DeepSeek;
        let pseudonym = Some(subject_pseudonym.as_str());
        let (safety_identifier, user_id) = match flags.user_field {
            UserIdField::Auto if openai => (pseudonym, None),
            UserIdField::Auto if deepseek => (None, pseudonym),
            UserIdField::Auto | UserIdField::None => (None, None),
            UserIdField::SafetyIdentifier => (pseudonym, None),
            UserIdField::UserId => (None, pseudonym),
        };
        // `store` is OpenAI's parameter: always sent to OpenAI (false unless the policy
        // says otherwise), never to DeepSeek, as the flags say to other servers.
        let store = if openai {
            Some(flags.store.unwrap_or(false))
        } else if deepseek {
            None
        } else {
            flags.store
        };
        let thinking = if deepseek {
            flags.thinking.map(|on| Thinking {
                kind: if on { "enabled" } else { "disabled" },
            })
        } else {
            None
        };
        let body = WireRequest {
            model: &self.model,
            messages,
            temperature: temperature.unwrap_or(self.temperature),
            max_completion_tokens: openai.then_some(self.max_tokens),
            max_tokens: (!openai).then_some(self.max_tokens),
            store,
            safety_identifier,
            user_id,
            thinking,
            response_format,
            stream: false,
        };
        serde_json::to_vec(&body)
            .map_err(|_| ProviderError::Request("body could not be serialized"))
    }

    /// One attempt, no retries.
    pub async fn complete(
        &self,
        req: &ReplyRequest,
        system_prompt: &str,
    ) -> Result<Completion, ProviderError> {
        let body = self.request_body(req, system_prompt)?;
        self.send(body, self.timeout).await.0
    }

    /// Sends one body; returns the result, the HTTP status and the request id.
    async fn send(
        &self,
        body: Vec<u8>,
        timeout: Duration,
    ) -> (
        Result<Completion, ProviderError>,
        Option<u16>,
        Option<String>,
    ) {
        let response = self
            .client
            .post(self.endpoint())
            .bearer_auth(self.api_key.expose_secret())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(timeout)
            .body(body)
            .send()
            .await;
        let mut response = match response {
            Ok(r) => r,
            Err(e) => return (Err(classify_reqwest(&e)), None, None),
        };
        let status = response.status().as_u16();
        let request_id = response
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
            .map(str::to_owned);
        let retry_after = parse_retry_after(response.headers(), SystemTime::now());
        if response
            .content_length()
            .is_some_and(|l| l > MAX_RESPONSE_BYTES as u64)
        {
            return (
                Err(ProviderError::InvalidResponse("response too large")),
                Some(status),
                request_id,
            );
        }
        let mut bytes = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if bytes.len() + chunk.len() > MAX_RESPONSE_BYTES {
                        return (
                            Err(ProviderError::InvalidResponse("response too large")),
                            Some(status),
                            request_id,
                        );
                    }
                    bytes.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => return (Err(classify_reqwest(&e)), Some(status), request_id),
            }
        }
        let result = if (200..300).contains(&status) {
            parse_completion(&bytes, &self.model).map(|mut c| {
                c.provider_request_id = request_id.clone();
                c
            })
        } else {
            Err(ProviderError::Api(parse_api_error(
                status,
                &bytes,
                retry_after,
            )))
        };
        (result, Some(status), request_id)
    }

    /// Calls the provider with this provider's retry policy, stopping at `deadline`
    /// (a [`Clock::now`] value). Retries 429 (except quota exhaustion), 5xx, timeouts and
    /// connection errors; waits `Retry-After` when the server gives one (failing over
    /// instead if it exceeds `max_retry_after` or the deadline), otherwise full-jitter
    /// exponential backoff.
    pub async fn complete_with_retry(
        &self,
        req: &ReplyRequest,
        system_prompt: &str,
        clock: &dyn Clock,
        deadline: Duration,
    ) -> ProviderRun {
        match self.request_body(req, system_prompt) {
            Ok(body) => self.send_with_retry(body, clock, deadline).await,
            Err(e) => ProviderRun {
                result: Err(e),
                attempts: Vec::new(),
            },
        }
    }

    /// Sends a prebuilt body with this provider's retry policy (see
    /// [`ChatProvider::complete_with_retry`]), recording every attempt.
    pub(crate) async fn send_with_retry(
        &self,
        body: Vec<u8>,
        clock: &dyn Clock,
        deadline: Duration,
    ) -> ProviderRun {
        let mut attempts = Vec::new();
        let digest: [u8; 32] = *blake3::hash(&body).as_bytes();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let remaining = deadline.saturating_sub(clock.now());
            if remaining.is_zero() {
                return ProviderRun {
                    result: Err(ProviderError::DeadlineExceeded),
                    attempts,
                };
            }
            let started = clock.now();
            let (result, http_status, provider_request_id) =
                self.send(body.clone(), self.timeout.min(remaining)).await;
            let latency = clock.now().saturating_sub(started);
            let outcome = match &result {
                Ok(_) => AttemptOutcome::Success,
                Err(e) => AttemptOutcome::from_error(e),
            };
            let tokens = result.as_ref().ok().and_then(|c| c.usage);
            tracing::info!(
                provider = %self.name,
                model = %self.model,
                attempt,
                outcome = ?outcome,
                http.status = http_status,
                duration_ms = millis(latency),
                "provider attempt"
            );
            attempts.push(AttemptRecord {
                provider: self.name.clone(),
                model: self.model.clone(),
                outcome,
                http_status,
                latency_ms: millis(latency),
                tokens,
                request_digest: digest,
                provider_request_id,
            });
            let err = match result {
                Ok(c) => {
                    return ProviderRun {
                        result: Ok(c),
                        attempts,
                    };
                }
                Err(e) => e,
            };
            if !err.is_retryable() || attempt >= self.retry.max_attempts {
                return ProviderRun {
                    result: Err(err),
                    attempts,
                };
            }
            let wait = match err.retry_after() {
                Some(d) if d > self.retry.max_retry_after => {
                    return ProviderRun {
                        result: Err(err),
                        attempts,
                    };
                }
                Some(d) => d,
                None => self.retry.backoff(attempt - 1, &mut rand::thread_rng()),
            };
            if clock.now() + wait >= deadline {
                return ProviderRun {
                    result: Err(err),
                    attempts,
                };
            }
            clock.sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn base_url_rules() {
        assert_eq!(
            normalize_base_url("https://api.openai.com/v1/").unwrap(),
            "https://api.openai.com/v1"
        );
        assert!(normalize_base_url("http://127.0.0.1:8080/v1").is_ok());
        assert!(normalize_base_url("http://localhost:1").is_ok());
        assert!(normalize_base_url("http://[::1]:9/v1").is_ok());
        assert!(normalize_base_url("http://api.deepseek.com").is_err());
        assert!(normalize_base_url("http://127.0.0.1.evil.com").is_err());
        assert!(normalize_base_url("ftp://x").is_err());
        assert!(normalize_base_url("https://").is_err());
        assert!(normalize_base_url("https://a b").is_err());
    }

    #[test]
    fn parses_openai_error_shape() {
        let body = br#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#;
        let e = parse_api_error(429, body, None);
        assert!(e.is_quota_exhausted());
        assert!(!ProviderError::Api(e.clone()).is_retryable());
        // Display and Debug never show the provider's message.
        assert!(!format!("{e} {e:?}").contains("exceeded"));
        let e = parse_api_error(
            429,
            br#"{"error":{"message":"m","type":"requests","code":"rate_limit_exceeded"}}"#,
            None,
        );
        assert!(ProviderError::Api(e).is_retryable());
        let e = parse_api_error(503, b"<html>overloaded</html>", None);
        assert_eq!(e.code, None);
        assert!(ProviderError::Api(e).is_retryable());
        for s in [400u16, 401, 402, 403, 404, 422] {
            assert!(
                !ProviderError::Api(parse_api_error(s, b"{}", None)).is_retryable(),
                "{s}"
            );
        }
    }

    #[test]
    fn parses_completion() {
        let body = br#"{"id":"x","model":"gpt-x","choices":[{"index":0,"message":{"role":"assistant","content":"  Hi there "},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15}}"#;
        let c = parse_completion(body, "asked").unwrap();
        assert_eq!(c.text, "Hi there");
        assert_eq!(c.model, "gpt-x");
        assert_eq!(
            c.usage,
            Some(TokenUsage {
                prompt: 12,
                completion: 3
            })
        );
        assert!(parse_completion(br#"{"choices":[]}"#, "m").is_err());
        assert!(parse_completion(br#"{"choices":[{"message":{"content":"  "}}]}"#, "m").is_err());
        assert!(parse_completion(b"not json", "m").is_err());
        // DeepSeek may send blank keep-alive lines before the JSON.
        let c = parse_completion(
            b"\n\n  {\"choices\":[{\"message\":{\"content\":\"ok\"}}]}",
            "m",
        )
        .unwrap();
        assert_eq!(c.model, "m");
    }

    #[test]
    fn debug_hides_key() {
        let p = ChatProvider::openai(SecretString::from("sk-very-secret"), "gpt-test").unwrap();
        assert!(!format!("{p:?}").contains("very-secret"));
    }
}
