//! Request and reply types exchanged with the caller.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::RequestError;
use crate::intent::Intent;
use crate::profile::BusinessProfile;
use crate::provider::ProviderKind;
use crate::redact::{Count, Redacted};

/// Longest customer message accepted, in characters.
pub const MAX_MESSAGE_CHARS: usize = 8_000;

/// Who wrote a conversation turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The customer (sent as the `user` role).
    Customer,
    /// An earlier automatic reply (sent as the `assistant` role).
    Assistant,
    /// A reply a human at the business wrote (sent as the `assistant` role).
    Human,
}

/// One earlier message of the conversation, already redacted by the caller.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationTurn {
    /// Who wrote it.
    pub role: Role,
    /// Redacted text.
    pub text: String,
    /// When it was sent.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

impl fmt::Debug for ConversationTurn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConversationTurn")
            .field("role", &self.role)
            .field("text", &Redacted(&self.text))
            .field("at", &self.at)
            .finish()
    }
}

/// A per-subject pseudonym: 16 to 128 lowercase hex characters. Never a phone number;
/// sent to providers as `safety_identifier` / `user_id`.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Pseudonym(String);

impl Pseudonym {
    /// Parses and checks the pseudonym.
    pub fn parse(s: &str) -> Result<Self, RequestError> {
        let ok = (16..=128).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if ok {
            Ok(Pseudonym(s.to_owned()))
        } else {
            Err(RequestError::InvalidPseudonym)
        }
    }

    /// The hex string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Pseudonym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A pseudonym is not secret, but a prefix is enough to correlate in a debugger.
        write!(f, "Pseudonym({}…)", &self.0[..8.min(self.0.len())])
    }
}

impl TryFrom<String> for Pseudonym {
    type Error = RequestError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Pseudonym::parse(&s)
    }
}

impl From<Pseudonym> for String {
    fn from(p: Pseudonym) -> String {
        p.0
    }
}

/// Which request field carries the subject pseudonym.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserIdField {
    /// By provider: OpenAI `safety_identifier`, DeepSeek `user_id`, others none.
    #[default]
    Auto,
    /// OpenAI's `safety_identifier`.
    SafetyIdentifier,
    /// DeepSeek's `user_id` (isolates its KV cache per subject).
    UserId,
    /// Send no end-user identifier.
    None,
}

/// Request settings the caller's policy decides.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestFlags {
    /// Whether any AI provider may see this conversation (false after a policy denial
    /// or the subject's objection): then the offline assistant answers.
    pub allow_providers: bool,
    /// Value of OpenAI's `store`: sent to OpenAI (`None` means `false`) and to other
    /// compatible servers when set; never to DeepSeek, which has no such field.
    pub store: Option<bool>,
    /// Where the pseudonym goes.
    pub user_field: UserIdField,
    /// DeepSeek thinking mode (`thinking: {type}`); `None` omits the field.
    pub thinking: Option<bool>,
    /// How many recent history turns may be sent.
    pub max_history_turns: usize,
}

impl Default for RequestFlags {
    fn default() -> Self {
        RequestFlags {
            allow_providers: true,
            store: Some(false),
            user_field: UserIdField::Auto,
            thinking: Some(false),
            max_history_turns: 20,
        }
    }
}

/// Everything needed to produce one reply. Text fields are already redacted by the caller.
#[derive(Clone, Serialize, Deserialize)]
pub struct ReplyRequest {
    /// The business's profile.
    pub profile: BusinessProfile,
    /// Recent turns, oldest first, already redacted.
    pub history: Vec<ConversationTurn>,
    /// The customer's new message, already redacted.
    pub customer_message: String,
    /// Per-subject pseudonym (hex).
    pub subject_pseudonym: Pseudonym,
    /// Current time (for "are you open now").
    #[serde(with = "time::serde::rfc3339")]
    pub now: OffsetDateTime,
    /// Policy flags.
    pub flags: RequestFlags,
}

impl fmt::Debug for ReplyRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplyRequest")
            .field("profile", &self.profile)
            .field("history", &Count(self.history.len()))
            .field("customer_message", &Redacted(&self.customer_message))
            .field("subject_pseudonym", &self.subject_pseudonym)
            .field("now", &self.now)
            .field("flags", &self.flags)
            .finish()
    }
}

impl ReplyRequest {
    /// Builds a request with default flags, validating the profile and message.
    pub fn new(
        profile: BusinessProfile,
        history: Vec<ConversationTurn>,
        customer_message: impl Into<String>,
        subject_pseudonym: Pseudonym,
        now: OffsetDateTime,
    ) -> Result<Self, RequestError> {
        profile.validate()?;
        let customer_message = customer_message.into();
        if customer_message.trim().is_empty() {
            return Err(RequestError::EmptyMessage);
        }
        if customer_message.chars().count() > MAX_MESSAGE_CHARS {
            return Err(RequestError::MessageTooLong);
        }
        Ok(ReplyRequest {
            profile,
            history,
            customer_message,
            subject_pseudonym,
            now,
            flags: RequestFlags::default(),
        })
    }

    /// Replaces the flags.
    pub fn with_flags(mut self, flags: RequestFlags) -> Self {
        self.flags = flags;
        self
    }
}

/// Token counts a provider reported.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUsage {
    /// Prompt tokens.
    pub prompt: u32,
    /// Completion tokens.
    pub completion: u32,
}

/// Who produced the reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ReplySource {
    /// An AI provider.
    Provider {
        /// Which provider.
        provider: ProviderKind,
        /// Model that answered.
        model: String,
    },
    /// The deterministic offline assistant.
    Offline,
}

/// How one provider attempt ended (for the caller's ledger).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// A reply was produced.
    Success,
    /// 429 rate or concurrency limit.
    RateLimited,
    /// `insufficient_quota` / 402 insufficient balance.
    QuotaExhausted,
    /// 5xx.
    ServerError,
    /// 401 / 403.
    AuthError,
    /// Other 4xx.
    ClientError,
    /// No answer within the timeout.
    Timeout,
    /// Connection refused, DNS or TLS failure, or a broken connection.
    ConnectError,
    /// The response was not a valid completion.
    InvalidResponse,
}

impl AttemptOutcome {
    /// Classifies a provider error.
    pub fn from_error(e: &crate::error::ProviderError) -> Self {
        use crate::error::ProviderError as E;
        match e {
            E::Timeout | E::DeadlineExceeded => AttemptOutcome::Timeout,
            E::Connect | E::Transport => AttemptOutcome::ConnectError,
            E::Api(api) if api.is_quota_exhausted() => AttemptOutcome::QuotaExhausted,
            E::Api(api) => match api.status {
                429 => AttemptOutcome::RateLimited,
                401 | 403 => AttemptOutcome::AuthError,
                500..=599 => AttemptOutcome::ServerError,
                _ => AttemptOutcome::ClientError,
            },
            E::Config(_) | E::Request(_) => AttemptOutcome::ClientError,
            E::InvalidResponse(_) => AttemptOutcome::InvalidResponse,
        }
    }
}

/// One HTTP attempt against a provider. Holds no message text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// Which provider.
    pub provider: ProviderKind,
    /// Model requested.
    pub model: String,
    /// How it ended.
    pub outcome: AttemptOutcome,
    /// HTTP status, if the provider answered.
    pub http_status: Option<u16>,
    /// Wall time of the attempt.
    pub latency_ms: u64,
    /// Tokens the provider reported.
    pub tokens: Option<TokenUsage>,
    /// BLAKE3 of the exact request body sent.
    pub request_digest: [u8; 32],
    /// Provider's `x-request-id`, if any (ASCII, at most 128 characters).
    pub provider_request_id: Option<String>,
}

/// The produced reply.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// Text to send to the customer.
    pub text: String,
    /// Who produced it.
    pub source: ReplySource,
    /// Intent detected locally from the customer's message.
    pub intent: Intent,
    /// Tokens used by the successful provider call.
    pub usage: Option<TokenUsage>,
    /// Total time to produce the reply.
    pub latency_ms: u64,
    /// Every provider attempt made, in order.
    pub attempts: Vec<AttemptRecord>,
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reply")
            .field("text", &Redacted(&self.text))
            .field("source", &self.source)
            .field("intent", &self.intent)
            .field("usage", &self.usage)
            .field("latency_ms", &self.latency_ms)
            .field("attempts", &self.attempts)
            .finish()
    }
}
