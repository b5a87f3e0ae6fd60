//! The embedded default without an identity provider: a one-time login link, and the rule
//! that such a server listens on loopback only.

use std::net::SocketAddr;
use std::sync::Mutex;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse as _, Response};
use smartchat_core::members::Identity;
use subtle::ConstantTimeEq as _;

use super::AuthState;
use super::error::AuthError;
use super::session::{LoginQuery, b64, digest, parse_tenant, random_secret, start_session};

/// A one-time login token held as its digest only. Redeeming it (once) logs the local
/// operator in as an owner of the tenant named by `?tenant=` or of the oldest tenant; the
/// operator member of that tenant is created on first use (role owner, ledgered).
#[derive(Default)]
pub struct OneTimeLogin {
    hash: Mutex<Option<[u8; 32]>>,
}

impl std::fmt::Debug for OneTimeLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OneTimeLogin(<redacted>)")
    }
}

impl OneTimeLogin {
    /// A fresh 256-bit token; returns the holder (digest only) and the token to print.
    pub fn generate() -> (Self, String) {
        let token = b64(&random_secret());
        let me = Self {
            hash: Mutex::new(Some(digest(token.as_bytes()))),
        };
        (me, token)
    }

    /// The link to print at start-up (`http://127.0.0.1:8080/login/token/<token>`).
    pub fn url(bind: SocketAddr, token: &str) -> String {
        format!("http://{bind}/login/token/{token}")
    }

    /// Whether `token` is the live one, without consuming it.
    pub(crate) fn is_live(&self, token: &str) -> bool {
        let g = match self.hash.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        g.as_ref()
            .is_some_and(|h| bool::from(h.ct_eq(&digest(token.as_bytes()))))
    }

    /// Whether `token` is the live one; consumes it when it is.
    pub(crate) fn take(&self, token: &str) -> bool {
        let mut g = match self.hash.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let ok = g
            .as_ref()
            .is_some_and(|h| bool::from(h.ct_eq(&digest(token.as_bytes()))));
        if ok {
            *g = None;
        }
        ok
    }

    pub(crate) fn restore(&self, token: &str) {
        if let Ok(mut g) = self.hash.lock() {
            *g = Some(digest(token.as_bytes()));
        }
    }
}

/// Refuses to listen beyond loopback without an identity provider: the one-time link is
/// the only way in then, and it must not be reachable from another machine.
pub fn check_bind_allowed(bind: SocketAddr, oidc_configured: bool) -> Result<(), String> {
    if oidc_configured || bind.ip().is_loopback() {
        Ok(())
    } else {
        Err(format!(
            "refusing to listen on {bind} without an identity provider: set SMARTCHAT_OIDC_ISSUER \
             (and the other SMARTCHAT_OIDC_* variables) or bind to 127.0.0.1"
        ))
    }
}

/// `GET /login/token/{token}`: redeems the one-time link (once) and starts a session.
pub async fn get_token_login(
    State(state): State<AuthState>,
    Path(token): Path<String>,
    Query(q): Query<LoginQuery>,
) -> Result<Response, AuthError> {
    let tenant = parse_tenant(q.tenant.as_deref())?;
    let otl = state.one_time_login();
    // First run: no business yet, so the link opens the form that creates one.
    if otl.is_live(&token) && state.members().store().list_tenants().await?.is_empty() {
        return Ok(crate::portal::setup::setup_page(&token, None).into_response());
    }
    if !otl.take(&token) {
        return Err(AuthError::InvalidToken("unknown or used login link".into()));
    }
    match start_session(&state, &Identity::Operator, tenant).await {
        Ok((secret, max_age)) => Ok(super::session::redirect_with_session(
            &state, &secret, max_age,
        )),
        Err(e) => {
            // Nothing was logged in (e.g. no tenant yet): the link stays usable.
            otl.restore(&token);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_rule() {
        let lo: SocketAddr = "127.0.0.1:8080".parse().unwrap_or_else(|_| unreachable!());
        let lo6: SocketAddr = "[::1]:8080".parse().unwrap_or_else(|_| unreachable!());
        let any: SocketAddr = "0.0.0.0:8080".parse().unwrap_or_else(|_| unreachable!());
        assert!(check_bind_allowed(lo, false).is_ok());
        assert!(check_bind_allowed(lo6, false).is_ok());
        assert!(check_bind_allowed(any, false).is_err());
        assert!(check_bind_allowed(any, true).is_ok());
    }

    #[test]
    fn one_time_login_is_single_use() {
        let (otl, token) = OneTimeLogin::generate();
        assert_eq!(token.len(), 43);
        assert!(!otl.take("wrong"));
        assert!(otl.take(&token));
        assert!(!otl.take(&token));
        otl.restore(&token);
        assert!(otl.take(&token));
        assert!(!format!("{otl:?}").contains(&token));
        assert!(
            OneTimeLogin::url(
                "127.0.0.1:8080".parse().unwrap_or_else(|_| unreachable!()),
                &token
            )
            .starts_with("http://127.0.0.1:8080/login/token/")
        );
    }
}
