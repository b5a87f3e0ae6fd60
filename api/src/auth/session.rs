//! Cookies, secrets and the portal's login, callback and logout handlers.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;
use serde::Deserialize;
use smartchat_core::CoreError;
use smartchat_core::db::now_micros;
use smartchat_core::ids::TenantId;
use smartchat_core::members::Identity;
use subtle::ConstantTimeEq as _;

use super::AuthState;
use super::error::AuthError;

/// How long an authorization request may take at the provider.
pub const LOGIN_ATTEMPT_TTL_SECS: i64 = 600;
/// The header a portal page sends its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The form field a portal form sends its CSRF token in.
pub const CSRF_FIELD: &str = "csrf_token";

/// 32 random bytes from the OS.
pub(crate) fn random_secret() -> [u8; 32] {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b
}

pub(crate) fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes a 32-byte secret from its cookie form; anything else is `None`.
pub(crate) fn secret_from(text: &str) -> Option<[u8; 32]> {
    let v = URL_SAFE_NO_PAD.decode(text.as_bytes()).ok()?;
    v.try_into().ok()
}

/// What the database keeps of a secret.
pub(crate) fn digest(secret: &[u8]) -> [u8; 32] {
    *blake3::hash(secret).as_bytes()
}

/// The session's CSRF token: derived from the session secret, so it is per session,
/// unguessable without the cookie, and never stored.
pub(crate) fn csrf_token(session_secret: &[u8; 32]) -> String {
    b64(blake3::keyed_hash(session_secret, b"smartchat csrf token v1").as_bytes())
}

/// Constant-time comparison of a presented CSRF token.
pub(crate) fn csrf_matches(session_secret: &[u8; 32], presented: &str) -> bool {
    let expected = csrf_token(session_secret);
    expected.as_bytes().ct_eq(presented.as_bytes()).into()
}

/// The PKCE verifier and nonce of a login, derived from the browser-binding secret so the
/// database never holds them.
pub(crate) fn login_secrets(binding: &[u8; 32]) -> (String, String) {
    (
        b64(&blake3::derive_key(
            "smartchat 2026-11 oidc pkce verifier v1",
            binding,
        )),
        b64(&blake3::derive_key(
            "smartchat 2026-11 oidc nonce v1",
            binding,
        )),
    )
}

/// Cookie names and attributes, chosen by whether the portal is served over https.
#[derive(Debug, Clone, Copy)]
pub struct Cookies {
    /// `Secure` and the `__Host-` prefix.
    pub secure: bool,
}

impl Cookies {
    /// The session cookie's name.
    pub fn session_name(self) -> &'static str {
        if self.secure {
            "__Host-smartchat_session"
        } else {
            "smartchat_session"
        }
    }

    /// The login-attempt binding cookie's name.
    pub fn login_name(self) -> &'static str {
        if self.secure {
            "__Host-smartchat_login"
        } else {
            "smartchat_login"
        }
    }

    fn build(self, name: &str, value: &str, max_age: i64) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        let text =
            format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}");
        // Names and values are ASCII (base64url); this cannot fail, but never panic.
        HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// `Set-Cookie` for a new session.
    pub fn session(self, secret: &[u8; 32], max_age: i64) -> HeaderValue {
        self.build(self.session_name(), &b64(secret), max_age)
    }

    /// `Set-Cookie` ending the session cookie.
    pub fn clear_session(self) -> HeaderValue {
        self.build(self.session_name(), "", 0)
    }

    fn login(self, binding: &[u8; 32]) -> HeaderValue {
        self.build(self.login_name(), &b64(binding), LOGIN_ATTEMPT_TTL_SECS)
    }

    fn clear_login(self) -> HeaderValue {
        self.build(self.login_name(), "", 0)
    }
}

/// The value of cookie `name` in the request, if present once or more (first wins).
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

fn redirect(location: &str, cookies: &[HeaderValue]) -> Response {
    let mut res = StatusCode::SEE_OTHER.into_response();
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(location) {
        h.insert(header::LOCATION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for c in cookies {
        h.append(header::SET_COOKIE, c.clone());
    }
    res
}

/// 303 to `/` carrying a new session cookie.
pub(crate) fn redirect_with_session(
    state: &AuthState,
    secret: &[u8; 32],
    max_age: i64,
) -> Response {
    redirect("/", &[state.cookies().session(secret, max_age)])
}

fn with_cookie(mut res: Response, cookie: HeaderValue) -> Response {
    res.headers_mut().append(header::SET_COOKIE, cookie);
    res
}

/// Query of `/auth/login`.
#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    /// The tenant to log into (its id); the first tenant of the login otherwise.
    pub tenant: Option<String>,
    /// Passed to the provider as `login_hint`.
    pub login_hint: Option<String>,
}

pub(crate) fn parse_tenant(text: Option<&str>) -> Result<Option<TenantId>, AuthError> {
    text.filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<TenantId>()
                .map_err(|_| AuthError::NotFound("tenant"))
        })
        .transpose()
}

/// `GET /auth/login`: records a login attempt and redirects to the provider.
pub async fn get_login(
    State(state): State<AuthState>,
    Query(q): Query<LoginQuery>,
) -> Result<Response, AuthError> {
    let oidc = state.oidc().ok_or(AuthError::OidcDisabled)?;
    let tenant = parse_tenant(q.tenant.as_deref())?;
    let binding = random_secret();
    let state_secret = random_secret();
    let state_text = b64(&state_secret);
    let (verifier, nonce) = login_secrets(&binding);
    let expires = now_micros() + LOGIN_ATTEMPT_TTL_SECS * 1_000_000;
    let hint = tenant.map(|t| t.to_string());
    state
        .members()
        .insert_login_attempt(
            &digest(state_text.as_bytes()),
            &digest(&binding),
            hint.as_deref(),
            expires,
        )
        .await?;
    let url = oidc.authorize_url(&verifier, &state_text, &nonce, q.login_hint.as_deref());
    Ok(redirect(url.as_str(), &[state.cookies().login(&binding)]))
}

/// Query of `/auth/callback` (RFC 6749 §4.1.2, RFC 9207 `iss`).
#[derive(Debug, Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    iss: Option<String>,
    error: Option<String>,
}

/// `GET /auth/callback`: the provider sends the browser back here.
pub async fn get_callback(
    State(state): State<AuthState>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let cookies = state.cookies();
    match callback(&state, &headers, q).await {
        Ok((secret, max_age)) => redirect(
            "/",
            &[cookies.clear_login(), cookies.session(&secret, max_age)],
        ),
        Err(e) => with_cookie(e.into_response(), cookies.clear_login()),
    }
}

async fn callback(
    state: &AuthState,
    headers: &HeaderMap,
    q: CallbackQuery,
) -> Result<([u8; 32], i64), AuthError> {
    let oidc = state.oidc().ok_or(AuthError::OidcDisabled)?;
    let state_text = q.state.as_deref().ok_or(AuthError::InvalidLoginAttempt(
        "the state parameter is missing",
    ))?;
    // Single use: the attempt is deleted whatever happens next.
    let attempt = state
        .members()
        .take_login_attempt(&digest(state_text.as_bytes()))
        .await?
        .ok_or(AuthError::InvalidLoginAttempt(
            "unknown or already used state",
        ))?;
    if attempt.expires_at <= now_micros() {
        return Err(AuthError::InvalidLoginAttempt("the login attempt expired"));
    }
    let binding = cookie(headers, state.cookies().login_name())
        .and_then(secret_from)
        .ok_or(AuthError::InvalidLoginAttempt(
            "the login cookie is missing",
        ))?;
    if !bool::from(digest(&binding).as_slice().ct_eq(&attempt.binding_hash)) {
        return Err(AuthError::InvalidLoginAttempt(
            "the login was started in another browser",
        ));
    }
    if q.error.is_some() {
        return Err(AuthError::LoginFailed(
            "the provider returned an error".into(),
        ));
    }
    if let Some(iss) = &q.iss {
        if iss != oidc.issuer() {
            return Err(AuthError::LoginFailed("issuer mismatch (RFC 9207)".into()));
        }
    }
    let code = q.code.as_deref().ok_or(AuthError::InvalidLoginAttempt(
        "the code parameter is missing",
    ))?;
    let (verifier, nonce) = login_secrets(&binding);
    let login = oidc.finish_login(code, &verifier, &nonce).await?;
    let tenant = parse_tenant(attempt.tenant_hint.as_deref())?;
    let who = Identity::Oidc {
        issuer: login.issuer,
        subject: login.subject,
        verified_email: login.verified_email,
    };
    start_session(state, &who, tenant).await
}

/// Starts a session for `who`; returns its secret and cookie lifetime.
pub(crate) async fn start_session(
    state: &AuthState,
    who: &Identity,
    tenant: Option<TenantId>,
) -> Result<([u8; 32], i64), AuthError> {
    let secret = random_secret();
    let lifetime =
        i64::try_from(state.session_lifetime().as_secs()).unwrap_or(i64::MAX / 2_000_000);
    let expires = now_micros() + lifetime * 1_000_000;
    match state
        .members()
        .start_session(who, tenant, &digest(&secret), expires)
        .await
    {
        Ok(m) => {
            tracing::info!(tenant.id = %m.tenant_id, member.id = %m.member_id, "member logged in");
            Ok((secret, lifetime))
        }
        Err(CoreError::NotFound { what: "member" }) => Err(AuthError::NotAMember),
        Err(e) => Err(e.into()),
    }
}

/// `POST /auth/logout`: ends the session server-side and clears the cookie. CSRF-checked:
/// the token in the `X-CSRF-Token` header or the `csrf_token` form field.
pub async fn post_logout(
    State(state): State<AuthState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AuthError> {
    let cookies = state.cookies();
    let secret = cookie(&headers, cookies.session_name())
        .and_then(secret_from)
        .ok_or(AuthError::Unauthenticated)?;
    let from_header = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let presented = from_header.or_else(|| {
        url::form_urlencoded::parse(&body)
            .find(|(k, _)| k == CSRF_FIELD)
            .map(|(_, v)| v.into_owned())
    });
    if !presented.is_some_and(|p| csrf_matches(&secret, &p)) {
        return Err(AuthError::Csrf);
    }
    state.members().end_session(&digest(&secret)).await?;
    Ok(redirect("/", &[cookies.clear_session()]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_httponly_lax_and_secure_on_https() {
        let secret = random_secret();
        let plain = Cookies { secure: false }.session(&secret, 60);
        let plain = plain.to_str().unwrap_or_default();
        assert!(plain.starts_with("smartchat_session="));
        assert!(plain.contains("HttpOnly") && plain.contains("SameSite=Lax"));
        assert!(!plain.contains("Secure"));
        let tls = Cookies { secure: true }.session(&secret, 60);
        let tls = tls.to_str().unwrap_or_default();
        assert!(tls.starts_with("__Host-smartchat_session=") && tls.contains("; Secure"));
        assert!(tls.contains("Path=/") && !tls.contains("Domain"));
        let cleared = Cookies { secure: true }.clear_session();
        assert!(cleared.to_str().unwrap_or_default().contains("Max-Age=0"));
    }

    #[test]
    fn cookie_parsing_and_secrets() {
        let secret = random_secret();
        let mut h = HeaderMap::new();
        let v = format!("a=1; smartchat_session={}; b=2", b64(&secret));
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static("")),
        );
        let got = cookie(&h, "smartchat_session").and_then(secret_from);
        assert_eq!(got, Some(secret));
        assert_eq!(cookie(&h, "missing"), None);
        assert_eq!(secret_from("too-short"), None);
        // CSRF tokens: per session, checked in constant time.
        let other = random_secret();
        assert!(csrf_matches(&secret, &csrf_token(&secret)));
        assert!(!csrf_matches(&secret, &csrf_token(&other)));
        assert!(!csrf_matches(&secret, ""));
        // PKCE verifier: 43 unreserved characters (RFC 7636 §4.1); nonce differs.
        let (verifier, nonce) = login_secrets(&secret);
        assert_eq!(verifier.len(), 43);
        assert!(
            verifier
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_ne!(verifier, nonce);
        assert_ne!(login_secrets(&other).0, verifier);
    }
}
