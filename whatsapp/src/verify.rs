//! Webhook authenticity: the subscription handshake (GET) and the payload signature (POST).

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Name of the header carrying the payload signature.
pub const SIGNATURE_HEADER: &str = "X-Hub-Signature-256";

/// Body limit for the webhook route: Meta's payloads are at most about 3 MB, so 4 MiB leaves
/// headroom. Answer 413 before buffering more.
pub const MAX_WEBHOOK_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Longest `hub.challenge` echoed back (Meta sends a short integer).
pub const MAX_CHALLENGE_LEN: usize = 256;

/// Why a subscription handshake or a webhook body was rejected. The HTTP layer answers 403 for
/// the handshake variants. Never carries the submitted token or body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// `hub.mode` was missing or not `subscribe`.
    #[error("hub.mode is not subscribe")]
    WrongMode,
    /// `hub.verify_token` was missing or did not match the configured token.
    #[error("verify token does not match")]
    TokenMismatch,
    /// `hub.challenge` was missing, empty, too long, or not `[A-Za-z0-9_-]`.
    #[error("hub.challenge is missing or invalid")]
    BadChallenge,
    /// The configured verify token is empty (a configuration error; every request is refused).
    #[error("no verify token is configured")]
    NotConfigured,
    /// The body is not a webhook payload. Position and category only: the serde message could
    /// quote personal data from the body.
    #[error("malformed webhook payload ({category} error at line {line}, column {column})")]
    Malformed {
        /// serde_json's error category (`syntax`, `data`, `eof`, `io`).
        category: &'static str,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
    },
}

impl From<serde_json::Error> for WebhookError {
    fn from(e: serde_json::Error) -> Self {
        let category = match e.classify() {
            serde_json::error::Category::Io => "io",
            serde_json::error::Category::Syntax => "syntax",
            serde_json::error::Category::Data => "data",
            serde_json::error::Category::Eof => "eof",
        };
        Self::Malformed {
            category,
            line: e.line(),
            column: e.column(),
        }
    }
}

/// Answers Meta's subscription handshake
/// (`GET ?hub.mode=subscribe&hub.verify_token=…&hub.challenge=…`).
///
/// Returns the challenge to echo back with 200 (as `text/plain`). The token comparison takes
/// the same time whatever the tokens' contents and lengths (both are hashed, then compared in
/// constant time).
pub fn verify_subscription(
    mode: Option<&str>,
    verify_token: Option<&str>,
    challenge: Option<&str>,
    configured_token: &str,
) -> Result<String, WebhookError> {
    if configured_token.is_empty() {
        return Err(WebhookError::NotConfigured);
    }
    if mode != Some("subscribe") {
        return Err(WebhookError::WrongMode);
    }
    let given = Sha256::digest(verify_token.unwrap_or("").as_bytes());
    let want = Sha256::digest(configured_token.as_bytes());
    let same: bool = given.as_slice().ct_eq(want.as_slice()).into();
    if verify_token.is_none() || !same {
        return Err(WebhookError::TokenMismatch);
    }
    match challenge {
        Some(c)
            if !c.is_empty()
                && c.len() <= MAX_CHALLENGE_LEN
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            Ok(c.to_owned())
        }
        _ => Err(WebhookError::BadChallenge),
    }
}

/// Why an `X-Hub-Signature-256` check failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No signature header.
    #[error("signature header is missing")]
    Missing,
    /// The header is not `sha256=` followed by 64 hex digits.
    #[error("signature header is malformed: {0}")]
    Malformed(&'static str),
    /// The signature does not match the body under the app secret.
    #[error("signature does not match")]
    Mismatch,
    /// The configured app secret is empty (a configuration error; every body is refused).
    #[error("no app secret is configured")]
    NoSecret,
}

/// Checks `X-Hub-Signature-256: sha256=<hex>` against HMAC-SHA256(app secret, raw body).
///
/// `raw_body` must be the bytes exactly as received: Meta signs its escaped-unicode
/// serialisation, so re-serialised JSON does not verify. Comparison is constant time.
pub fn verify_signature(
    app_secret: &[u8],
    raw_body: &[u8],
    header: Option<&str>,
) -> Result<(), SignatureError> {
    if app_secret.is_empty() {
        return Err(SignatureError::NoSecret);
    }
    let header = header.ok_or(SignatureError::Missing)?.trim();
    let hex_sig = header
        .strip_prefix("sha256=")
        .ok_or(SignatureError::Malformed("expected the sha256= prefix"))?;
    if hex_sig.len() != 64 {
        return Err(SignatureError::Malformed("expected 64 hex digits"));
    }
    let mut sig = [0u8; 32];
    hex::decode_to_slice(hex_sig, &mut sig)
        .map_err(|_| SignatureError::Malformed("expected 64 hex digits"))?;
    let mut mac = HmacSha256::new_from_slice(app_secret).map_err(|_| SignatureError::NoSecret)?;
    mac.update(raw_body);
    mac.verify_slice(&sig).map_err(|_| SignatureError::Mismatch)
}

/// The `X-Hub-Signature-256` header value Meta would send for `raw_body` (lowercase hex).
/// Used by tests and the fake webhook builder; production code only verifies.
pub fn signature_header(app_secret: &[u8], raw_body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail; the fallback keeps it panic-free.
    match HmacSha256::new_from_slice(app_secret) {
        Ok(mut mac) => {
            mac.update(raw_body);
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        }
        Err(_) => String::from("sha256="),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn subscription() {
        let ok = verify_subscription(Some("subscribe"), Some("tok"), Some("1158201444"), "tok");
        assert_eq!(ok.unwrap(), "1158201444");
        assert_eq!(
            verify_subscription(Some("unsubscribe"), Some("tok"), Some("1"), "tok"),
            Err(WebhookError::WrongMode)
        );
        assert_eq!(
            verify_subscription(None, Some("tok"), Some("1"), "tok"),
            Err(WebhookError::WrongMode)
        );
        assert_eq!(
            verify_subscription(Some("subscribe"), Some("tok2"), Some("1"), "tok"),
            Err(WebhookError::TokenMismatch)
        );
        assert_eq!(
            verify_subscription(Some("subscribe"), None, Some("1"), "tok"),
            Err(WebhookError::TokenMismatch)
        );
        assert_eq!(
            verify_subscription(Some("subscribe"), Some(""), Some("1"), ""),
            Err(WebhookError::NotConfigured)
        );
        for bad in [None, Some(""), Some("<script>")] {
            assert_eq!(
                verify_subscription(Some("subscribe"), Some("tok"), bad, "tok"),
                Err(WebhookError::BadChallenge)
            );
        }
    }

    #[test]
    fn signature_round_trip() {
        let body = br#"{"object":"whatsapp_business_account","entry":[]}"#;
        let h = signature_header(b"secret", body);
        assert!(h.starts_with("sha256=") && h.len() == 71);
        assert_eq!(verify_signature(b"secret", body, Some(&h)), Ok(()));
        assert_eq!(
            verify_signature(b"other", body, Some(&h)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(b"", body, Some(&h)),
            Err(SignatureError::NoSecret)
        );
    }
}
