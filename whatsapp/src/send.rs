//! The outbound Graph API client: `POST {base}/{version}/{phone_number_id}/messages`.
//!
//! Meta advises branching on the numeric `code` (and `error_data.details`), not on titles or
//! HTTP status, so [`classify_code`] maps codes to an [`ErrorClass`] and falls back to the
//! HTTP status only for codes it does not know.
//!
//! Sends carry no idempotency key at Meta: a retry after a timeout can deliver twice. Callers
//! that must not duplicate should treat [`SendError::Timeout`] as "unknown outcome" and wait
//! for the status webhook before resending.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;

use crate::backoff::parse_retry_after;
use crate::ids::{ApiVersion, PhoneNumberId, Recipient, Wamid};
use crate::pii::Pii;
use crate::window::WindowPermit;

/// Longest text body Meta accepts, in characters.
pub const MAX_TEXT_CHARS: usize = 4096;

/// Default per-request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);

/// What a caller should do about a failed send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Transient (throughput, pair rate, Meta unavailable, 5xx, timeout): retry with backoff.
    Retry,
    /// This message will not go through as it is (undeliverable, outside the window, bad
    /// parameters, unknown template): do not retry it.
    Permanent,
    /// The business owner must act (billing, locked account, policy block, invalid token):
    /// stop sending for this number and alert.
    AlertOwner,
}

/// Classifies a Graph API error code; `http_status` decides for codes not listed.
///
/// | class | codes |
/// |---|---|
/// | Retry | 1, 2, 4, 80007, 130429, 131000, 131016, 131056, 131057 |
/// | AlertOwner | 190 (token invalid/expired), 368, 131031, 131042 |
/// | Permanent | 100, 131008, 131026, 131047, 131048, 131049, 131051, 131052, 131053, 132000, 132001, ... |
/// | by status | other codes: 429 and 5xx Retry, else Permanent |
pub fn classify_code(code: i64, http_status: u16) -> ErrorClass {
    match code {
        1 | 2 | 4 | 80007 | 130429 | 131000 | 131016 | 131056 | 131057 => ErrorClass::Retry,
        190 | 368 | 131031 | 131042 => ErrorClass::AlertOwner,
        100 | 131008 | 131026 | 131047 | 131048 | 131049 | 131051 | 131052 | 131053 | 132000
        | 132001 => ErrorClass::Permanent,
        _ => classify_status(http_status),
    }
}

fn classify_status(http_status: u16) -> ErrorClass {
    if http_status == 429 || http_status >= 500 {
        ErrorClass::Retry
    } else {
        ErrorClass::Permanent
    }
}

/// A Graph API error body: `{"error":{"message","type","code","error_subcode","error_data":{"details"},"fbtrace_id"}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphError {
    /// `error.message`, e.g. `(#131047) Re-engagement message`.
    pub message: String,
    /// `error.type`, e.g. `OAuthException`.
    pub error_type: Option<String>,
    /// `error.code`: branch on this.
    pub code: i64,
    /// `error.error_subcode` (deprecated since v16.0, still seen).
    pub error_subcode: Option<i64>,
    /// `error.error_data.details` (may quote parameters; redacted in `Debug`).
    pub details: Option<Pii>,
    /// `error.fbtrace_id`, for Meta support.
    pub fbtrace_id: Option<String>,
}

impl GraphError {
    /// Parses a Graph error body; `None` if the body is not one.
    pub fn from_body(body: &[u8]) -> Option<Self> {
        #[derive(Deserialize)]
        struct Outer {
            error: Inner,
        }
        #[derive(Deserialize)]
        struct Inner {
            #[serde(default)]
            message: String,
            #[serde(rename = "type")]
            error_type: Option<String>,
            code: i64,
            error_subcode: Option<i64>,
            error_data: Option<Data>,
            fbtrace_id: Option<String>,
        }
        #[derive(Deserialize)]
        struct Data {
            details: Option<String>,
        }
        let o: Outer = serde_json::from_slice(body).ok()?;
        Some(Self {
            message: o.error.message,
            error_type: o.error.error_type,
            code: o.error.code,
            error_subcode: o.error.error_subcode,
            details: o.error.error_data.and_then(|d| d.details).map(Pii::from),
            fbtrace_id: o.error.fbtrace_id,
        })
    }
}

/// Why a send failed. Messages name codes and statuses only, never recipients or bodies.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Refused locally: free-form message while the 24-hour window is closed.
    #[error(
        "free-form message refused: the 24-hour customer service window is closed; send an approved template"
    )]
    OutsideWindow {
        /// The last inbound message time, if any.
        last_inbound_at: Option<OffsetDateTime>,
    },
    /// Refused locally: the request is invalid.
    #[error("invalid send request: {0}")]
    Invalid(&'static str),
    /// The client or token is misconfigured.
    #[error("invalid client configuration: {0}")]
    Config(&'static str),
    /// Meta answered with a Graph error.
    #[error("graph api error code {} (http {status})", error.code)]
    Graph {
        /// HTTP status.
        status: u16,
        /// The parsed error (boxed to keep `Result`s small).
        error: Box<GraphError>,
        /// `Retry-After`, if sent.
        retry_after: Option<Duration>,
    },
    /// Meta (or a proxy) answered with an error status but no Graph error body.
    #[error("http {status} without a graph error body")]
    Http {
        /// HTTP status.
        status: u16,
        /// `Retry-After`, if sent.
        retry_after: Option<Duration>,
    },
    /// No answer within the timeout. The message may or may not have been accepted.
    #[error("graph api request timed out")]
    Timeout,
    /// Connection-level failure before an answer.
    #[error("graph api transport error: {0}")]
    Transport(String),
    /// A 2xx answer without a message id. The message may have been accepted: do not resend.
    #[error("graph api success response could not be decoded")]
    Decode,
}

impl SendError {
    /// What to do about it.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Graph { status, error, .. } => classify_code(error.code, *status),
            Self::Http { status, .. } => classify_status(*status),
            Self::Timeout | Self::Transport(_) => ErrorClass::Retry,
            Self::Config(_) => ErrorClass::AlertOwner,
            Self::OutsideWindow { .. } | Self::Invalid(_) | Self::Decode => ErrorClass::Permanent,
        }
    }

    /// The Graph error code, if Meta sent one.
    pub fn code(&self) -> Option<i64> {
        match self {
            Self::Graph { error, .. } => Some(error.code),
            _ => None,
        }
    }

    /// The server's `Retry-After`, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Graph { retry_after, .. } | Self::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// A system-user access token. `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(String);

impl AccessToken {
    /// Wraps a token; rejects empty tokens and tokens with whitespace or control characters.
    pub fn new(token: impl Into<String>) -> Result<Self, SendError> {
        let t = token.into();
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(SendError::Config(
                "access token is empty or has invalid characters",
            ));
        }
        Ok(Self(t))
    }

    /// The token, for the `Authorization` header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken(<redacted>)")
    }
}

/// An accepted send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMessage {
    /// The wamid Meta assigned: statuses for it arrive on the webhook.
    pub wamid: Wamid,
    /// `messages[0].message_status` (e.g. `accepted`), if given.
    pub message_status: Option<String>,
}

/// A template message.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    /// Approved template name.
    pub name: String,
    /// Language code, e.g. `en_US`.
    pub language: String,
    /// `components` as Meta documents them (header/body/button parameters); empty for none.
    pub components: Vec<serde_json::Value>,
}

/// A template as Meta lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteTemplate {
    /// Name.
    pub name: String,
    /// Language code.
    pub language: String,
    /// Review status (`APPROVED`, `PENDING`, `REJECTED`, `PAUSED`, `DISABLED`, ...).
    pub status: String,
    /// `MARKETING`, `UTILITY` or `AUTHENTICATION`.
    pub category: String,
    /// The text of its BODY component, if it has one.
    pub body: Option<String>,
}

/// Client for the Cloud API messages endpoint. Cheap to clone (shares the HTTP client).
#[derive(Debug, Clone)]
pub struct GraphClient {
    base_url: String,
    version: ApiVersion,
    http: reqwest::Client,
    timeout: Duration,
}

impl GraphClient {
    /// A client for `base_url` (e.g. `https://graph.facebook.com`) and `api_version` (e.g.
    /// `v23.0`), with a 20 s per-request timeout.
    pub fn new(
        base_url: impl Into<String>,
        api_version: &str,
        http: reqwest::Client,
    ) -> Result<Self, SendError> {
        let base_url = base_url.into().trim_end_matches('/').to_owned();
        if !(base_url.starts_with("https://") || base_url.starts_with("http://")) {
            return Err(SendError::Config("base url must be http(s)"));
        }
        let version = ApiVersion::new(api_version)
            .map_err(|_| SendError::Config("api version must look like v23.0"))?;
        Ok(Self {
            base_url,
            version,
            http,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Replaces the per-request timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// `{base}/{version}/{phone_number_id}/messages`.
    pub fn messages_url(&self, phone_number_id: &PhoneNumberId) -> String {
        format!(
            "{}/{}/{}/messages",
            self.base_url,
            self.version.as_str(),
            phone_number_id.as_str()
        )
    }

    /// Sends a free-form text message (optionally as a reply). Needs a [`WindowPermit`] from
    /// [`crate::check_window`]. Bodies must be 1 to 4,096 characters.
    pub async fn send_text(
        &self,
        phone_number_id: &PhoneNumberId,
        token: &AccessToken,
        to: &Recipient,
        body: &str,
        reply_to: Option<&Wamid>,
        _permit: WindowPermit,
    ) -> Result<SentMessage, SendError> {
        if body.trim().is_empty() {
            return Err(SendError::Invalid("text body is empty"));
        }
        if body.chars().count() > MAX_TEXT_CHARS {
            return Err(SendError::Invalid("text body exceeds 4096 characters"));
        }
        let mut req = json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": to.as_str(),
            "type": "text",
            "text": { "body": body, "preview_url": false },
        });
        if let (Some(w), Some(obj)) = (reply_to, req.as_object_mut()) {
            obj.insert("context".into(), json!({ "message_id": w.as_str() }));
        }
        self.post(phone_number_id, token, &req).await
    }

    /// Sends an approved template (allowed outside the window).
    pub async fn send_template(
        &self,
        phone_number_id: &PhoneNumberId,
        token: &AccessToken,
        to: &Recipient,
        template: &Template,
    ) -> Result<SentMessage, SendError> {
        if template.name.is_empty() || template.language.is_empty() {
            return Err(SendError::Invalid(
                "template name and language are required",
            ));
        }
        let mut t = json!({
            "name": template.name,
            "language": { "code": template.language },
        });
        if let (false, Some(obj)) = (template.components.is_empty(), t.as_object_mut()) {
            obj.insert("components".into(), json!(template.components));
        }
        let req = json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": to.as_str(),
            "type": "template",
            "template": t,
        });
        self.post(phone_number_id, token, &req).await
    }

    /// Every message template of the WhatsApp Business Account `waba_id`
    /// (`GET /{version}/{waba_id}/message_templates`, following the `after` cursor while
    /// Meta gives a `next` page; at most 50 pages).
    pub async fn list_templates(
        &self,
        waba_id: &str,
        token: &AccessToken,
    ) -> Result<Vec<RemoteTemplate>, SendError> {
        if waba_id.is_empty() || !waba_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SendError::Invalid(
                "a WhatsApp Business Account id is digits",
            ));
        }
        #[derive(Deserialize)]
        struct Page {
            #[serde(default)]
            data: Vec<RawTemplate>,
            #[serde(default)]
            paging: Option<Paging>,
        }
        #[derive(Deserialize)]
        struct Paging {
            #[serde(default)]
            cursors: Option<Cursors>,
            #[serde(default)]
            next: Option<String>,
        }
        #[derive(Deserialize)]
        struct Cursors {
            #[serde(default)]
            after: Option<String>,
        }
        #[derive(Deserialize)]
        struct RawTemplate {
            name: String,
            language: String,
            #[serde(default)]
            status: String,
            #[serde(default)]
            category: String,
            #[serde(default)]
            components: Vec<serde_json::Value>,
        }
        let url = format!(
            "{}/{}/{}/message_templates",
            self.base_url,
            self.version.as_str(),
            waba_id
        );
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..50 {
            let mut query = vec![
                (
                    "fields",
                    "name,language,status,category,components".to_owned(),
                ),
                ("limit", "100".to_owned()),
            ];
            if let Some(a) = &after {
                query.push(("after", a.clone()));
            }
            let req = self
                .http
                .get(&url)
                .query(&query)
                .bearer_auth(token.expose())
                .timeout(self.timeout);
            let bytes = self.answer(req).await?;
            let page: Page = serde_json::from_slice(&bytes).map_err(|_| SendError::Decode)?;
            for t in page.data {
                let body = t.components.iter().find_map(|c| {
                    let kind = c.get("type")?.as_str()?;
                    kind.eq_ignore_ascii_case("body")
                        .then(|| c.get("text")?.as_str().map(str::to_owned))
                        .flatten()
                });
                out.push(RemoteTemplate {
                    name: t.name,
                    language: t.language,
                    status: t.status,
                    category: t.category,
                    body,
                });
            }
            match page.paging {
                Some(Paging {
                    next: Some(_),
                    cursors: Some(Cursors { after: Some(a) }),
                }) => after = Some(a),
                _ => return Ok(out),
            }
        }
        Ok(out)
    }

    /// Marks an inbound message as read (blue ticks). Allowed at any time for messages the
    /// user sent; Meta answers `{"success": true}`.
    pub async fn mark_read(
        &self,
        phone_number_id: &PhoneNumberId,
        token: &AccessToken,
        message_id: &Wamid,
    ) -> Result<(), SendError> {
        let req = json!({
            "messaging_product": "whatsapp",
            "status": "read",
            "message_id": message_id.as_str(),
        });
        let bytes = self.post_raw(phone_number_id, token, &req).await?;
        #[derive(Deserialize)]
        struct Success {
            #[serde(default)]
            success: bool,
        }
        match serde_json::from_slice::<Success>(&bytes) {
            Ok(Success { success: true }) => Ok(()),
            _ => Err(SendError::Decode),
        }
    }

    async fn post(
        &self,
        phone_number_id: &PhoneNumberId,
        token: &AccessToken,
        body: &serde_json::Value,
    ) -> Result<SentMessage, SendError> {
        let bytes = self.post_raw(phone_number_id, token, body).await?;
        parse_success(&bytes)
    }

    /// Posts `body`; returns the body of a 2xx answer, else the classified error.
    async fn post_raw(
        &self,
        phone_number_id: &PhoneNumberId,
        token: &AccessToken,
        body: &serde_json::Value,
    ) -> Result<Vec<u8>, SendError> {
        let req = self
            .http
            .post(self.messages_url(phone_number_id))
            .bearer_auth(token.expose())
            .timeout(self.timeout)
            .json(body);
        self.answer(req).await
    }

    /// Sends `req`; returns the body of a 2xx answer, else the classified error.
    async fn answer(&self, req: reqwest::RequestBuilder) -> Result<Vec<u8>, SendError> {
        let resp = req.send().await.map_err(map_reqwest)?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, OffsetDateTime::now_utc()));
        let bytes = resp.bytes().await.map_err(map_reqwest)?;
        if (200..300).contains(&status) {
            return Ok(bytes.to_vec());
        }
        Err(match GraphError::from_body(&bytes) {
            Some(error) => SendError::Graph {
                status,
                error: Box::new(error),
                retry_after,
            },
            None => SendError::Http {
                status,
                retry_after,
            },
        })
    }
}

fn map_reqwest(e: reqwest::Error) -> SendError {
    if e.is_timeout() {
        SendError::Timeout
    } else {
        SendError::Transport(e.without_url().to_string())
    }
}

fn parse_success(bytes: &[u8]) -> Result<SentMessage, SendError> {
    #[derive(Deserialize)]
    struct Resp {
        #[serde(default)]
        messages: Vec<Msg>,
    }
    #[derive(Deserialize)]
    struct Msg {
        id: Wamid,
        message_status: Option<String>,
    }
    let r: Resp = serde_json::from_slice(bytes).map_err(|_| SendError::Decode)?;
    let m = r.messages.into_iter().next().ok_or(SendError::Decode)?;
    Ok(SentMessage {
        wamid: m.id,
        message_status: m.message_status,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn graph_error_parse() {
        let body = br#"{"error":{"message":"(#130429) Rate limit hit","type":"OAuthException","code":130429,"error_data":{"messaging_product":"whatsapp","details":"Cloud API message throughput has been reached."},"error_subcode":2494055,"fbtrace_id":"Az8or2yhqkZfEZ-_4Qn_Bam"}}"#;
        let e = GraphError::from_body(body).unwrap();
        assert_eq!(e.code, 130429);
        assert_eq!(e.error_subcode, Some(2494055));
        assert_eq!(e.fbtrace_id.as_deref(), Some("Az8or2yhqkZfEZ-_4Qn_Bam"));
        assert!(!format!("{e:?}").contains("throughput has been"));
        assert!(GraphError::from_body(b"<html>502</html>").is_none());
    }

    #[test]
    fn token_redacted() {
        let t = AccessToken::new("EAAGsecret").unwrap();
        assert!(!format!("{t:?}").contains("secret"));
        assert!(AccessToken::new("a b").is_err());
        assert!(AccessToken::new("").is_err());
    }

    #[test]
    fn client_config() {
        let http = reqwest::Client::new();
        assert!(GraphClient::new("ftp://x", "v23.0", http.clone()).is_err());
        assert!(GraphClient::new("https://graph.facebook.com", "23", http.clone()).is_err());
        let c = GraphClient::new("https://graph.facebook.com/", "v23.0", http).unwrap();
        let pn = PhoneNumberId::new("106540352242922").unwrap();
        assert_eq!(
            c.messages_url(&pn),
            "https://graph.facebook.com/v23.0/106540352242922/messages"
        );
    }
}
