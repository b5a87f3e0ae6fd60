//! The relying party and resource server: discovery, the provider's keys (cached, refreshed
//! on an unknown `kid`), the authorization request, the code exchange with its ID-token
//! checks, and access-token checks. Built on the `openidconnect` crate's verifiers, with
//! every option that could weaken them pinned here.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreGenderClaim, CoreIdTokenVerifier, CoreJsonWebKeySet,
    CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm, CoreProviderMetadata,
};
use openidconnect::{
    AccessTokenHash, AdditionalClaims, AuthorizationCode, ClaimsVerificationError, ClientId,
    ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet, EndpointSet, IdToken,
    IdTokenVerifier, IssuerUrl, JsonWebTokenType, Nonce, OAuth2TokenResponse as _,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, SignatureVerificationError,
    TokenResponse as _,
};
use serde::{Deserialize, Serialize};

use super::AuthConfig;
use super::error::AuthError;

type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// How often an unknown `kid` may trigger a JWKS refresh (a flood of forged tokens must not
/// become a flood of requests to the provider).
const JWKS_REFRESH_INTERVAL: Duration = Duration::from_secs(10);
/// Tolerated clock skew for `iat` and `nbf`.
const SKEW_SECS: i64 = 60;

/// Claims of a JWT access token (RFC 9068) beyond the ID-token shape.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessTokenClaims {
    /// Not before (seconds since the epoch), when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// The client the token was issued to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Granted scopes, space-separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}
impl AdditionalClaims for AccessTokenClaims {}

type AccessJwt = IdToken<
    AccessTokenClaims,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;

/// A verified OIDC identity from an ID token.
#[derive(Clone)]
pub struct VerifiedLogin {
    /// The issuer.
    pub issuer: String,
    /// The subject.
    pub subject: String,
    /// The e-mail address, only when `email_verified` is true.
    pub verified_email: Option<String>,
}

impl std::fmt::Debug for VerifiedLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VerifiedLogin(<redacted>)")
    }
}

/// A verified access token's subject.
#[derive(Clone)]
pub struct VerifiedAccess {
    /// The issuer.
    pub issuer: String,
    /// The subject (the account, or the client for client credentials).
    pub subject: String,
}

impl std::fmt::Debug for VerifiedAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VerifiedAccess(<redacted>)")
    }
}

/// The provider as discovered at start-up.
pub struct Oidc {
    client: Client,
    issuer: IssuerUrl,
    client_id: ClientId,
    audience: String,
    metadata: CoreProviderMetadata,
    algs: Vec<CoreJwsSigningAlgorithm>,
    jwks: RwLock<Arc<CoreJsonWebKeySet>>,
    last_refresh: Mutex<Option<Instant>>,
    http: reqwest::Client,
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oidc")
            .field("issuer", &self.issuer.as_str())
            .finish_non_exhaustive()
    }
}

fn parse_alg(name: &str) -> Result<CoreJwsSigningAlgorithm, AuthError> {
    let alg: CoreJwsSigningAlgorithm =
        serde_json::from_value(serde_json::Value::String(name.into()))
            .map_err(|_| AuthError::Provider(format!("unknown signing algorithm {name}")))?;
    match alg {
        CoreJwsSigningAlgorithm::HmacSha256
        | CoreJwsSigningAlgorithm::HmacSha384
        | CoreJwsSigningAlgorithm::HmacSha512
        | CoreJwsSigningAlgorithm::None => Err(AuthError::Provider(format!(
            "signing algorithm {name} is not allowed (only asymmetric signatures)"
        ))),
        a => Ok(a),
    }
}

impl Oidc {
    /// Discovers the provider (its metadata's `issuer` must equal `config.issuer_url`
    /// exactly) and fetches its keys.
    pub async fn discover(config: &AuthConfig) -> Result<Self, AuthError> {
        // Never follow redirects: a provider URL must not lead the server elsewhere.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| AuthError::Provider(format!("http client: {e}")))?;
        let issuer = IssuerUrl::new(config.issuer_url.clone())
            .map_err(|e| AuthError::Provider(format!("issuer URL: {e}")))?;
        let metadata = CoreProviderMetadata::discover_async(issuer.clone(), &http)
            .await
            .map_err(|e| AuthError::Provider(format!("discovery: {e}")))?;
        let redirect = RedirectUrl::new(config.redirect_url.clone())
            .map_err(|e| AuthError::Provider(format!("redirect URL: {e}")))?;
        let client_id = ClientId::new(config.client_id.clone());
        let secret = config
            .client_secret
            .as_ref()
            .map(|s| ClientSecret::new(secrecy::ExposeSecret::expose_secret(s).to_owned()));
        let client =
            CoreClient::from_provider_metadata(metadata.clone(), client_id.clone(), secret)
                .set_redirect_uri(redirect);
        let algs = config
            .allowed_algs
            .iter()
            .map(|a| parse_alg(a))
            .collect::<Result<Vec<_>, _>>()?;
        if algs.is_empty() {
            return Err(AuthError::Provider("no signing algorithm allowed".into()));
        }
        let jwks = metadata.jwks().clone();
        Ok(Self {
            client,
            issuer,
            client_id,
            audience: config.audience.clone(),
            metadata,
            algs,
            jwks: RwLock::new(Arc::new(jwks)),
            last_refresh: Mutex::new(Some(Instant::now())),
            http,
        })
    }

    /// The issuer, exactly as configured and discovered.
    pub fn issuer(&self) -> &str {
        self.issuer.as_str()
    }

    /// The authorization URL for one login: PKCE S256 from `verifier`, `state`, `nonce`,
    /// scopes `openid email`, the API as resource, and `login_hint` when given.
    pub fn authorize_url(
        &self,
        verifier: &str,
        state: &str,
        nonce: &str,
        login_hint: Option<&str>,
    ) -> url::Url {
        let challenge = PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(
            verifier.to_owned(),
        ));
        let (state, nonce) = (state.to_owned(), nonce.to_owned());
        let mut req = self
            .client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                move || CsrfToken::new(state),
                move || Nonce::new(nonce),
            )
            .add_scope(Scope::new("email".into()))
            .set_pkce_challenge(challenge);
        if let Some(hint) = login_hint {
            req = req.add_extra_param("login_hint", hint.to_owned());
        }
        let (url, _, _) = req.url();
        url
    }

    fn keys(&self) -> Arc<CoreJsonWebKeySet> {
        match self.jwks.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Re-fetches the JWKS unless it was fetched within [`JWKS_REFRESH_INTERVAL`]. Returns
    /// whether the keys changed.
    async fn refresh_keys(&self) -> bool {
        {
            let mut last = match self.last_refresh.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            if last.is_some_and(|t| t.elapsed() < JWKS_REFRESH_INTERVAL) {
                return false;
            }
            *last = Some(Instant::now());
        }
        match CoreJsonWebKeySet::fetch_async(self.metadata.jwks_uri(), &self.http).await {
            Ok(set) => {
                let changed = {
                    let old = self.keys();
                    serde_json::to_string(&*old).ok() != serde_json::to_string(&set).ok()
                };
                match self.jwks.write() {
                    Ok(mut g) => *g = Arc::new(set),
                    Err(p) => *p.into_inner() = Arc::new(set),
                }
                tracing::info!(changed, "refreshed the identity provider's keys");
                changed
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not refresh the identity provider's keys");
                false
            }
        }
    }

    /// Allows the next unknown `kid` to refresh the keys at once (tests of key rotation).
    pub fn allow_key_refresh(&self) {
        if let Ok(mut g) = self.last_refresh.lock() {
            *g = None;
        }
    }

    fn id_token_verifier(&self, keys: &CoreJsonWebKeySet) -> CoreIdTokenVerifier<'static> {
        // A public-client verifier: HMAC with the client secret is never accepted.
        IdTokenVerifier::new_public_client(
            self.client_id.clone(),
            self.issuer.clone(),
            keys.clone(),
        )
        .set_allowed_algs(self.algs.clone())
        .set_issue_time_verifier_fn(|iat| {
            if iat.timestamp() > unix_now() + SKEW_SECS {
                Err("issued in the future".to_owned())
            } else {
                Ok(())
            }
        })
    }

    fn access_token_verifier(
        &self,
        keys: &CoreJsonWebKeySet,
    ) -> Result<IdTokenVerifier<'static, openidconnect::core::CoreJsonWebKey>, AuthError> {
        let at_jwt = JsonWebTokenType::new("at+jwt".into())
            .normalize()
            .map_err(|e| AuthError::Provider(format!("token type: {e}")))?;
        Ok(IdTokenVerifier::new_public_client(
            ClientId::new(self.audience.clone()),
            self.issuer.clone(),
            keys.clone(),
        )
        .set_allowed_algs(self.algs.clone())
        // RFC 9068 §4: only `at+jwt`, so an ID token is never taken for an access token.
        .set_allowed_jose_types([at_jwt])
        .set_issue_time_verifier_fn(|iat| {
            if iat.timestamp() > unix_now() + SKEW_SECS {
                Err("issued in the future".to_owned())
            } else {
                Ok(())
            }
        }))
    }

    /// Exchanges the authorization code (with the PKCE verifier) and verifies the ID token:
    /// signature with the provider's keys and an allowed algorithm, `iss`, `aud` = client id
    /// (no other audience), `exp`, `iat`, `nonce`, and `at_hash` when present.
    pub async fn finish_login(
        &self,
        code: &str,
        verifier: &str,
        nonce: &str,
    ) -> Result<VerifiedLogin, AuthError> {
        let response = self
            .client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| AuthError::Provider(format!("token endpoint: {e}")))?
            .set_pkce_verifier(PkceCodeVerifier::new(verifier.to_owned()))
            .request_async(&self.http)
            .await
            .map_err(|e| match e {
                openidconnect::RequestTokenError::ServerResponse(r) => {
                    AuthError::LoginFailed(format!("token endpoint refused: {}", r.error()))
                }
                other => AuthError::Provider(format!("token endpoint: {other}")),
            })?;
        let id_token = response
            .id_token()
            .ok_or_else(|| AuthError::LoginFailed("no ID token".into()))?;
        let nonce = Nonce::new(nonce.to_owned());
        let mut keys = self.keys();
        let mut refreshed = false;
        loop {
            let verifier = self.id_token_verifier(&keys);
            match id_token.claims(&verifier, &nonce) {
                Ok(claims) => {
                    if let Some(expected) = claims.access_token_hash() {
                        let alg = id_token
                            .signing_alg()
                            .map_err(|e| AuthError::LoginFailed(e.to_string()))?;
                        let key = id_token
                            .signing_key(&verifier)
                            .map_err(|e| AuthError::LoginFailed(e.to_string()))?;
                        let actual = AccessTokenHash::from_token(response.access_token(), alg, key)
                            .map_err(|e| AuthError::LoginFailed(e.to_string()))?;
                        if actual != *expected {
                            return Err(AuthError::LoginFailed("at_hash mismatch".into()));
                        }
                    }
                    let verified_email = match (claims.email(), claims.email_verified()) {
                        (Some(e), Some(true)) => Some(e.as_str().to_owned()),
                        _ => None,
                    };
                    return Ok(VerifiedLogin {
                        issuer: self.issuer.as_str().to_owned(),
                        subject: claims.subject().as_str().to_owned(),
                        verified_email,
                    });
                }
                Err(ClaimsVerificationError::SignatureVerification(
                    SignatureVerificationError::NoMatchingKey,
                )) if !refreshed && self.refresh_keys().await => {
                    refreshed = true;
                    keys = self.keys();
                }
                Err(e) => return Err(AuthError::LoginFailed(e.to_string())),
            }
        }
    }

    /// Verifies a bearer access token: a JWT (`typ: at+jwt`) signed with one of the
    /// provider's keys under an allowed algorithm (never `none`, never HMAC), `iss` equal
    /// to the issuer, `aud` containing our API audience (and no other), `exp` in the
    /// future, `iat` and `nbf` not in the future (60 s skew).
    pub async fn verify_access_token(&self, token: &str) -> Result<VerifiedAccess, AuthError> {
        let jwt: AccessJwt = serde_json::from_value(serde_json::Value::String(token.to_owned()))
            .map_err(|_| AuthError::InvalidToken("not a signed JWT".into()))?;
        let mut keys = self.keys();
        let mut refreshed = false;
        loop {
            let verifier = self.access_token_verifier(&keys)?;
            match jwt.claims(&verifier, |_: Option<&Nonce>| Ok(())) {
                Ok(claims) => {
                    let now = unix_now();
                    if claims
                        .additional_claims()
                        .nbf
                        .is_some_and(|nbf| nbf > now + SKEW_SECS)
                    {
                        return Err(AuthError::InvalidToken("not yet valid".into()));
                    }
                    return Ok(VerifiedAccess {
                        issuer: self.issuer.as_str().to_owned(),
                        subject: claims.subject().as_str().to_owned(),
                    });
                }
                Err(ClaimsVerificationError::SignatureVerification(
                    SignatureVerificationError::NoMatchingKey,
                )) if !refreshed && self.refresh_keys().await => {
                    refreshed = true;
                    keys = self.keys();
                }
                Err(e) => return Err(AuthError::InvalidToken(e.to_string())),
            }
        }
    }
}

fn unix_now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs(),
    )
    .unwrap_or(i64::MAX)
}
