//! Error types. Messages carry field names, statuses and machine codes only, never
//! message text, names or keys.

use std::time::Duration;

/// A business profile or reply request failed validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    /// A required field is empty.
    #[error("profile field `{0}` is empty")]
    Empty(&'static str),
    /// A field exceeds the length bound.
    #[error("profile field `{0}` is too long")]
    TooLong(&'static str),
    /// The time zone is not a known IANA name.
    #[error("unknown IANA time zone")]
    UnknownTimeZone,
    /// A time of day is not `HH:MM` within `00:00..=24:00`.
    #[error("time of day must be HH:MM between 00:00 and 24:00")]
    InvalidTime,
    /// An interval does not have `open < close`.
    #[error("opening interval must open before it closes")]
    InvalidInterval,
    /// Two intervals of a day overlap or are out of order.
    #[error("opening intervals of a day overlap or are not sorted")]
    OverlappingIntervals,
    /// Two services share a name.
    #[error("two services share a name")]
    DuplicateService,
    /// A booking link is not an http(s) URL.
    #[error("booking link must be an http(s) URL")]
    InvalidUrl,
    /// A language tag is not plausible.
    #[error("language tag must be 2 to 8 ASCII letters, digits or '-'")]
    InvalidLanguage,
    /// The JSON could not be parsed.
    #[error("profile JSON is invalid: {0}")]
    Json(String),
}

/// A reply request failed validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The subject pseudonym is not 16 to 128 lowercase hex characters.
    #[error("subject pseudonym must be 16 to 128 lowercase hex characters")]
    InvalidPseudonym,
    /// The customer message is empty.
    #[error("customer message is empty")]
    EmptyMessage,
    /// The customer message is too long.
    #[error("customer message is too long")]
    MessageTooLong,
    /// The profile is invalid.
    #[error(transparent)]
    Profile(#[from] ProfileError),
}

/// The error an OpenAI-compatible API returned, parsed from
/// `{"error": {"message", "type", "param", "code"}}`.
///
/// `Display` shows status, type and code only; the provider's free-text message is kept
/// (truncated) for diagnosis but is never printed by `Display` or `Debug`, because providers
/// may echo parameters or parts of keys in it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// `error.type`, truncated to 64 characters.
    pub error_type: Option<String>,
    /// `error.code`, truncated to 64 characters.
    pub code: Option<String>,
    /// `error.message`, truncated to 300 characters. Not shown by `Debug`/`Display`.
    pub message: Option<String>,
    /// Wait the server asked for (`retry-after-ms` or `retry-after`).
    pub retry_after: Option<Duration>,
}

impl std::fmt::Debug for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiError")
            .field("status", &self.status)
            .field("error_type", &self.error_type)
            .field("code", &self.code)
            .field("message", &self.message.as_ref().map(|_| "<redacted>"))
            .field("retry_after", &self.retry_after)
            .finish()
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {}", self.status)?;
        if let Some(t) = &self.error_type {
            write!(f, " type={t}")?;
        }
        if let Some(c) = &self.code {
            write!(f, " code={c}")?;
        }
        Ok(())
    }
}

impl ApiError {
    /// `insufficient_quota` (OpenAI, as 429) or insufficient balance (DeepSeek, 402).
    pub fn is_quota_exhausted(&self) -> bool {
        let is = |v: &Option<String>| v.as_deref() == Some("insufficient_quota");
        self.status == 402 || is(&self.code) || is(&self.error_type)
    }
}

/// Why a provider call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The provider is misconfigured (bad base URL, empty model or key).
    #[error("provider configuration is invalid: {0}")]
    Config(&'static str),
    /// The request could not be built.
    #[error("request could not be built: {0}")]
    Request(&'static str),
    /// No response within the provider's timeout.
    #[error("provider timed out")]
    Timeout,
    /// The connection could not be made (refused, DNS, TLS).
    #[error("could not connect to provider")]
    Connect,
    /// The connection broke while sending or receiving.
    #[error("transport error talking to provider")]
    Transport,
    /// The API answered with an error status.
    #[error("provider returned {0}")]
    Api(ApiError),
    /// The response was not a valid chat completion.
    #[error("provider response is invalid: {0}")]
    InvalidResponse(&'static str),
    /// Retrying stopped because the total deadline would be exceeded.
    #[error("deadline exceeded before the provider answered")]
    DeadlineExceeded,
}

impl ProviderError {
    /// Whether the same request may succeed if retried: 429 (except quota exhaustion),
    /// 5xx, timeouts and connection errors. 400/401/402/403/404/422 and
    /// `insufficient_quota` never are.
    pub fn is_retryable(&self) -> bool {
        match self {
            ProviderError::Timeout | ProviderError::Connect | ProviderError::Transport => true,
            ProviderError::Api(e) => {
                if e.is_quota_exhausted() {
                    return false;
                }
                e.status == 429 || (500..=599).contains(&e.status) || e.status == 408
            }
            ProviderError::Config(_)
            | ProviderError::Request(_)
            | ProviderError::InvalidResponse(_)
            | ProviderError::DeadlineExceeded => false,
        }
    }

    /// The server-requested wait, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ProviderError::Api(e) => e.retry_after,
            _ => None,
        }
    }

    /// HTTP status, if the provider answered.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            ProviderError::Api(e) => Some(e.status),
            _ => None,
        }
    }
}
