//! `Authorization: Bearer` (RFC 6750 §2.1) parsing.

use axum::http::{HeaderMap, header};

use super::error::AuthError;

/// The bearer token of a request: `Ok(None)` without an `Authorization` header,
/// `InvalidToken` for another scheme or a malformed value.
pub fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, AuthError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| AuthError::InvalidToken("authorization header is not ASCII".into()))?;
    let (scheme, token) = text
        .split_once(' ')
        .ok_or_else(|| AuthError::InvalidToken("malformed authorization header".into()))?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.contains(' ') {
        return Err(AuthError::InvalidToken("expected a bearer token".into()));
    }
    Ok(Some(token))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn h(v: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(v) {
            m.insert(header::AUTHORIZATION, v);
        }
        m
    }

    #[test]
    fn parses_bearer_and_refuses_others() {
        assert!(matches!(bearer_token(&HeaderMap::new()), Ok(None)));
        assert!(matches!(
            bearer_token(&h("Bearer abc.def.ghi")),
            Ok(Some("abc.def.ghi"))
        ));
        assert!(matches!(bearer_token(&h("bearer abc")), Ok(Some("abc"))));
        assert!(bearer_token(&h("Basic dXNlcjpwYXNz")).is_err());
        assert!(bearer_token(&h("Bearer")).is_err());
        assert!(bearer_token(&h("Bearer a b")).is_err());
    }
}
