//! Authentication against a real OpenID provider (`oidc-provider`, started per test from
//! `tests/oidc/provider.mjs`), on both database backends: the portal's code flow with
//! PKCE, sessions and logout, bearer access tokens, and every refusal (replayed or
//! tampered state, missing PKCE verifier, forged, expired, wrong-audience, `alg: none`
//! tokens) answered with a problem-details body and no session written.

use std::net::SocketAddr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use ed25519_dalek::Signer as _;
use hmac::Mac as _;
use reqwest::StatusCode;
use reqwest::header::{
    AUTHORIZATION, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE, WWW_AUTHENTICATE,
};
use serde_json::{Value, json};
use smartchat_api::auth::{self, AuthConfig, AuthState, OneTimeLogin};
use smartchat_core::db::schema::ledger_pending;
use smartchat_core::db_run;
use smartchat_core::ids::{Handle, TenantId};
use smartchat_core::members::{Identity, Login, Members, Role};
use smartchat_core::store::{NewTenant, Profile, Store};
use smartchat_ledger::{Actor, EntryDraft, EventKind};
use smartchat_tests::{TestEnv, both_backends};

use smartchat_tests::oidc::{AUDIENCE, CLIENT_ID, CLIENT_SECRET, Provider};

/// The app under test: the auth router on a random port, plus its provider.
struct App {
    base: String,
    port: u16,
    state: AuthState,
    provider: Option<Provider>,
    _server: tokio::task::JoinHandle<()>,
}

impl App {
    async fn with_oidc(store: Store) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let redirect = format!("http://{addr}/auth/callback");
        let provider = Provider::start(&redirect).await;
        let config = AuthConfig::new(
            provider.issuer.clone(),
            CLIENT_ID,
            Some(secrecy::SecretString::from(CLIENT_SECRET)),
            redirect,
            AUDIENCE,
        );
        let state = AuthState::with_oidc(store, &config).await.unwrap();
        Self::serve(listener, addr, state, Some(provider))
    }

    async fn local(store: Store, login: OneTimeLogin) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        Self::serve(listener, addr, AuthState::local(store, login), None)
    }

    fn serve(
        listener: tokio::net::TcpListener,
        addr: SocketAddr,
        state: AuthState,
        provider: Option<Provider>,
    ) -> Self {
        let app = axum::Router::new()
            .merge(auth::router::<AuthState>())
            .with_state(state.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            base: format!("http://{addr}"),
            port: addr.port(),
            state,
            provider,
            _server: server,
        }
    }

    fn provider(&self) -> &Provider {
        self.provider.as_ref().unwrap()
    }

    fn issuer(&self) -> &str {
        &self.provider().issuer
    }

    /// A browser: keeps cookies, follows redirects except back to the app.
    fn browser(&self) -> reqwest::Client {
        let port = self.port;
        reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::custom(move |a| {
                if a.url().port() == Some(port) {
                    a.stop()
                } else {
                    a.follow()
                }
            }))
            .build()
            .unwrap()
    }

    /// Runs `/auth/login` through the provider; returns the callback URL it sends back.
    async fn start_login(
        &self,
        browser: &reqwest::Client,
        login_hint: &str,
        tenant: Option<TenantId>,
    ) -> String {
        let mut url = format!("{}/auth/login?login_hint={login_hint}", self.base);
        if let Some(t) = tenant {
            url.push_str(&format!("&tenant={t}"));
        }
        let res = browser.get(url).send().await.unwrap();
        assert_eq!(
            res.status(),
            StatusCode::SEE_OTHER,
            "the provider should redirect back"
        );
        let location = res.headers()[LOCATION].to_str().unwrap().to_owned();
        assert!(
            location.starts_with(&format!("{}/auth/callback?", self.base)),
            "{location}"
        );
        assert!(location.contains("code="));
        location
    }

    async fn sessions(&self) -> i64 {
        self.state.members().session_count().await.unwrap()
    }

    async fn me(&self, client: &reqwest::Client, header: (&str, String)) -> reqwest::Response {
        client
            .get(format!("{}/api/v1/me", self.base))
            .header(header.0, header.1)
            .send()
            .await
            .unwrap()
    }
}

async fn tenant(store: &Store, handle: &str) -> TenantId {
    store
        .create_tenant(NewTenant {
            handle: handle.parse::<Handle>().unwrap(),
            profile: Profile(json!({ "name": handle })),
            phone_number_id: None,
            access_token: None,
        })
        .await
        .unwrap()
}

/// Asserts an RFC 9457 body with `status` and `code`.
async fn assert_problem(
    res: reqwest::Response,
    status: StatusCode,
    code: &str,
) -> reqwest::header::HeaderMap {
    assert_eq!(res.status(), status);
    let headers = res.headers().clone();
    assert_eq!(headers[CONTENT_TYPE], "application/problem+json");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], status.as_u16());
    assert_eq!(body["code"], code, "{body}");
    assert!(body["type"].as_str().unwrap().ends_with(code));
    headers
}

fn session_cookie(res: &reqwest::Response) -> String {
    res.headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|v| v.starts_with("smartchat_session=") && !v.starts_with("smartchat_session=;"))
        .map(|v| v.split(';').next().unwrap().to_owned())
        .expect("a session cookie")
}

async fn pending_kinds(store: &Store) -> Vec<EventKind> {
    let mut c = store.db.conn().await.unwrap();
    let drafts: Vec<Vec<u8>> = db_run!(c, |c| ledger_pending::table
        .order(ledger_pending::id)
        .select(ledger_pending::draft)
        .load(c)
        .await)
    .unwrap();
    drafts
        .iter()
        .map(|d| EntryDraft::decode(d).unwrap().kind)
        .collect()
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn portal_login_session_and_logout(env: TestEnv) {
    let store = env.store.clone();
    let a = tenant(&store, "glow-salon").await;
    let members = Members::new(store.clone());
    members
        .invite_member(
            a,
            &Login::email("Alice@Example.test").unwrap(),
            Role::Owner,
            Actor::System,
        )
        .await
        .unwrap();
    let app = App::with_oidc(store.clone()).await;
    let browser = app.browser();
    let callback = app.start_login(&browser, "alice", None).await;
    assert_eq!(app.sessions().await, 0);

    let res = browser.get(&callback).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let set: Vec<String> = res
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let session = set
        .iter()
        .find(|c| c.starts_with("smartchat_session="))
        .unwrap();
    assert!(
        session.contains("HttpOnly")
            && session.contains("SameSite=Lax")
            && session.contains("Path=/")
    );
    assert!(
        !session.contains("Secure"),
        "plain http redirect URL: no Secure flag"
    );
    let cookie = session_cookie(&res);
    assert_eq!(app.sessions().await, 1);

    // The session works, and the invitation is now bound to the OIDC identity.
    let me: Value = app
        .me(&browser, (COOKIE.as_str(), cookie.clone()))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["tenant_id"], a.to_string());
    assert_eq!(me["role"], "owner");
    assert_eq!(me["via"], "session");
    let csrf = me["csrf_token"].as_str().unwrap().to_owned();
    let bound = members
        .find_members_for_login(&Login::oidc(app.issuer(), "alice"), None)
        .await
        .unwrap();
    assert_eq!(bound.len(), 1);
    assert!(
        members
            .find_members_for_login(&Login::email("alice@example.test").unwrap(), None)
            .await
            .unwrap()
            .is_empty()
    );
    let kinds = pending_kinds(&store).await;
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == EventKind::MEMBER_LOGIN)
            .count(),
        1
    );

    // Replaying the callback (same state, same code) is refused and writes nothing.
    let replay = browser.get(&callback).send().await.unwrap();
    assert_problem(replay, StatusCode::BAD_REQUEST, "invalid_login_attempt").await;
    assert_eq!(app.sessions().await, 1);

    // A state-changing request without the CSRF token is refused.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let no_csrf = client
        .post(format!("{}/auth/logout", app.base))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_problem(no_csrf, StatusCode::FORBIDDEN, "csrf").await;
    let wrong_csrf = client
        .put(format!(
            "{}/api/v1/members/{}/role",
            app.base, bound[0].member_id
        ))
        .header(COOKIE, &cookie)
        .header("x-csrf-token", "not-the-token")
        .json(&json!({ "role": "staff" }))
        .send()
        .await
        .unwrap();
    assert_problem(wrong_csrf, StatusCode::FORBIDDEN, "csrf").await;
    assert_eq!(app.sessions().await, 1);

    // Logout with the token (as a form field) ends the session server-side.
    let out = client
        .post(format!("{}/auth/logout", app.base))
        .header(COOKIE, &cookie)
        .form(&[("csrf_token", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    let cleared = out.headers().get_all(SET_COOKIE).iter().any(|v| {
        let v = v.to_str().unwrap();
        v.starts_with("smartchat_session=;") && v.contains("Max-Age=0")
    });
    assert!(cleared, "logout clears the cookie");
    assert_eq!(app.sessions().await, 0);
    let after = app.me(&client, (COOKIE.as_str(), cookie.clone())).await;
    let h = assert_problem(after, StatusCode::UNAUTHORIZED, "invalid_session").await;
    assert!(
        h[WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
    let none = client
        .get(format!("{}/api/v1/me", app.base))
        .send()
        .await
        .unwrap();
    assert_problem(none, StatusCode::UNAUTHORIZED, "unauthenticated").await;
}

async fn callback_refusals_write_nothing(env: TestEnv) {
    let store = env.store.clone();
    let a = tenant(&store, "glow-salon").await;
    let members = Members::new(store.clone());
    for who in ["alice@example.test", "unverified-carol@example.test"] {
        members
            .invite_member(a, &Login::email(who).unwrap(), Role::Staff, Actor::System)
            .await
            .unwrap();
    }
    let app = App::with_oidc(store.clone()).await;
    let pending_before = pending_kinds(&store).await.len();

    // Tampered state: no such attempt.
    let browser = app.browser();
    let callback = app.start_login(&browser, "alice", None).await;
    let tampered = callback.replace("state=", "state=x");
    let res = browser.get(&tampered).send().await.unwrap();
    assert_problem(res, StatusCode::BAD_REQUEST, "invalid_login_attempt").await;
    // No state at all.
    let res = browser
        .get(format!("{}/auth/callback?code=abc", app.base))
        .send()
        .await
        .unwrap();
    assert_problem(res, StatusCode::BAD_REQUEST, "invalid_login_attempt").await;

    // The right callback from a client without the login cookie (so without the PKCE
    // verifier it derives): refused, and the attempt is spent for the real browser too.
    let stranger = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let res = stranger.get(&callback).send().await.unwrap();
    assert_problem(res, StatusCode::BAD_REQUEST, "invalid_login_attempt").await;
    let res = browser.get(&callback).send().await.unwrap();
    assert_problem(res, StatusCode::BAD_REQUEST, "invalid_login_attempt").await;

    // A mix-up (RFC 9207): the `iss` parameter names another issuer.
    let callback = app.start_login(&browser, "alice", None).await;
    let iss = format!("iss={}", urlencode(app.issuer()));
    assert!(
        callback.contains(&iss),
        "oidc-provider sends iss: {callback}"
    );
    let swapped = callback.replace(&iss, "iss=https%3A%2F%2Fevil.example");
    let res = browser.get(&swapped).send().await.unwrap();
    assert_problem(res, StatusCode::UNAUTHORIZED, "login_failed").await;

    // A code exchanged with the wrong verifier (login cookie of another attempt): the
    // binding check refuses before the provider is asked.
    let other = app.browser();
    let cb1 = app.start_login(&browser, "alice", None).await;
    let _cb2 = app.start_login(&other, "alice", None).await;
    let res = other.get(&cb1).send().await.unwrap();
    assert_problem(res, StatusCode::BAD_REQUEST, "invalid_login_attempt").await;

    // Authenticated at the provider (a fresh browser: no provider session yet) but no
    // member: 403, nothing written.
    let fresh = app.browser();
    let callback = app.start_login(&fresh, "bob", None).await;
    let res = fresh.get(&callback).send().await.unwrap();
    assert_problem(res, StatusCode::FORBIDDEN, "not_a_member").await;
    // An invited address the provider does not call verified is not matched.
    let fresh = app.browser();
    let callback = app.start_login(&fresh, "unverified-carol", None).await;
    let res = fresh.get(&callback).send().await.unwrap();
    assert_problem(res, StatusCode::FORBIDDEN, "not_a_member").await;
    // A tenant the member does not belong to.
    let b = tenant(&store, "other-shop").await;
    let callback = app.start_login(&browser, "alice", Some(b)).await;
    let res = browser.get(&callback).send().await.unwrap();
    assert_problem(res, StatusCode::FORBIDDEN, "not_a_member").await;

    assert_eq!(app.sessions().await, 0);
    let kinds = pending_kinds(&store).await;
    assert!(!kinds[pending_before..].contains(&EventKind::MEMBER_LOGIN));
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn bearer_tokens(env: TestEnv) {
    let store = env.store.clone();
    let a = tenant(&store, "glow-salon").await;
    let b = tenant(&store, "other-shop").await;
    let members = Members::new(store.clone());
    let app = App::with_oidc(store.clone()).await;
    let issuer = app.issuer().to_owned();
    // client_credentials tokens carry the client id as `sub`.
    let me_id = members
        .invite_member(
            a,
            &Login::oidc(&issuer, CLIENT_ID),
            Role::Staff,
            Actor::System,
        )
        .await
        .unwrap();
    let other = members
        .invite_member(
            b,
            &Login::oidc(&issuer, "someone"),
            Role::Owner,
            Actor::System,
        )
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let bearer = |t: &str| (AUTHORIZATION.as_str(), format!("Bearer {t}"));

    let token = app.provider().client_credentials().await;
    let res = app.me(&client, bearer(&token)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let me: Value = res.json().await.unwrap();
    assert_eq!(me["member_id"], me_id.to_string());
    assert_eq!(me["tenant_id"], a.to_string());
    assert_eq!(me["role"], "staff");
    assert_eq!(me["via"], "bearer");
    assert!(me["csrf_token"].is_null());

    // Tenant isolation: own member 200, another tenant's member 404, unknown id 404.
    let own = client
        .get(format!("{}/api/v1/members/{me_id}", app.base))
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), StatusCode::OK);
    for id in [other.to_string(), "not-a-uuid".to_owned()] {
        let res = client
            .get(format!("{}/api/v1/members/{id}", app.base))
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .send()
            .await
            .unwrap();
        assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
    }
    // A second owner, so that this one may step down below.
    members
        .invite_member(
            a,
            &Login::Email {
                email: "second.owner@example.test".into(),
            },
            Role::Owner,
            Actor::System,
        )
        .await
        .unwrap();
    // Role: staff may not change roles (403), and nothing is ledgered.
    let before = pending_kinds(&store).await.len();
    let res = client
        .put(format!("{}/api/v1/members/{me_id}/role", app.base))
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .json(&json!({ "role": "owner" }))
        .send()
        .await
        .unwrap();
    assert_problem(res, StatusCode::FORBIDDEN, "forbidden").await;
    assert_eq!(pending_kinds(&store).await.len(), before);
    // An owner may (bearer requests need no CSRF token); the change is ledgered.
    members
        .set_role(a, me_id, Role::Owner, Actor::System)
        .await
        .unwrap();
    let res = client
        .put(format!("{}/api/v1/members/{me_id}/role", app.base))
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .json(&json!({ "role": "auditor" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(members.member(a, me_id).await.unwrap().role, Role::Auditor);
    let kinds = pending_kinds(&store).await;
    assert_eq!(
        kinds[before..],
        [
            EventKind::MEMBER_ROLE_CHANGED,
            EventKind::MEMBER_ROLE_CHANGED
        ]
    );
    // Another tenant's member is not found by a role change either.
    let res = client
        .put(format!("{}/api/v1/members/{other}/role", app.base))
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .json(&json!({ "role": "staff" }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::FORBIDDEN,
        "an auditor may not change roles"
    );

    // Refusals: each 401 with `error="invalid_token"` and a problem body.
    let p = app.provider();
    let good = json!({ "iss": issuer, "sub": CLIENT_ID, "aud": AUDIENCE, "iat": now(), "exp": now() + 300, "client_id": CLIENT_ID });
    let with = |k: &str, v: Value| {
        let mut c = good.clone();
        c[k] = v;
        c
    };
    // The provider's own key, the right claims: accepted (the control).
    let control = p.sign(good.clone(), "at+jwt").await;
    assert_eq!(
        app.me(&client, bearer(&control)).await.status(),
        StatusCode::OK
    );

    let mut refused = vec![
        (
            "expired",
            p.sign(with("exp", json!(now() - 10)), "at+jwt").await,
        ),
        (
            "wrong audience",
            p.sign(with("aud", json!("https://other.example/")), "at+jwt")
                .await,
        ),
        (
            "wrong issuer",
            p.sign(with("iss", json!("http://127.0.0.1:1")), "at+jwt")
                .await,
        ),
        (
            "not yet valid",
            p.sign(with("nbf", json!(now() + 3600)), "at+jwt").await,
        ),
        (
            "issued in the future",
            p.sign(with("iat", json!(now() + 3600)), "at+jwt").await,
        ),
        ("an ID token", p.sign(good.clone(), "JWT").await),
        ("garbage", "not.a.jwt".to_owned()),
    ];
    let header = |h: Value| b64(h.to_string().as_bytes());
    let payload = b64(good.to_string().as_bytes());
    // alg none.
    refused.push((
        "alg none",
        format!(
            "{}.{payload}.",
            header(json!({ "alg": "none", "typ": "at+jwt" }))
        ),
    ));
    // HS256 keyed with the client secret (never accepted: asymmetric only).
    let input = format!(
        "{}.{payload}",
        header(json!({ "alg": "HS256", "typ": "at+jwt", "kid": "test-rs256" }))
    );
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(CLIENT_SECRET.as_bytes()).unwrap();
    mac.update(input.as_bytes());
    refused.push((
        "HS256",
        format!("{input}.{}", b64(&mac.finalize().into_bytes())),
    ));
    // Signed by a key of our own, with the provider's kid and with an unknown kid.
    let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    for kid in ["test-rs256", "attacker-key"] {
        let input = format!(
            "{}.{payload}",
            header(json!({ "alg": "EdDSA", "typ": "at+jwt", "kid": kid }))
        );
        let sig = key.sign(input.as_bytes());
        refused.push(("another key", format!("{input}.{}", b64(&sig.to_bytes()))));
    }
    // The provider's signature over other claims (payload swapped).
    let parts: Vec<&str> = control.split('.').collect();
    let other_payload = b64(with("sub", json!("someone")).to_string().as_bytes());
    refused.push((
        "swapped payload",
        format!("{}.{other_payload}.{}", parts[0], parts[2]),
    ));
    for (what, t) in &refused {
        app.state.oidc().unwrap().allow_key_refresh();
        let res = app.me(&client, bearer(t)).await;
        assert_eq!(
            res.status(),
            StatusCode::UNAUTHORIZED,
            "{what} must be refused"
        );
        let h = assert_problem(res, StatusCode::UNAUTHORIZED, "invalid_token").await;
        assert!(
            h[WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .contains("error=\"invalid_token\""),
            "{what}"
        );
    }
    // An identity in two tenants picks one with the Smartchat-Tenant header; a tenant it
    // does not belong to is refused.
    let in_b = members
        .invite_member(
            b,
            &Login::oidc(&issuer, CLIENT_ID),
            Role::Auditor,
            Actor::System,
        )
        .await
        .unwrap();
    let pick = |t: TenantId| {
        client
            .get(format!("{}/api/v1/me", app.base))
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .header("smartchat-tenant", t.to_string())
            .send()
    };
    let me_b: Value = pick(b).await.unwrap().json().await.unwrap();
    assert_eq!(me_b["member_id"], in_b.to_string());
    assert_eq!(me_b["tenant_id"], b.to_string());
    let me_a: Value = pick(a).await.unwrap().json().await.unwrap();
    assert_eq!(me_a["member_id"], me_id.to_string());
    let c = tenant(&store, "third-shop").await;
    assert_problem(
        pick(c).await.unwrap(),
        StatusCode::FORBIDDEN,
        "not_a_member",
    )
    .await;

    // Not a bearer scheme.
    let res = app
        .me(
            &client,
            (
                AUTHORIZATION.as_str(),
                "Basic c21hcnRjaGF0OnNlY3JldA==".into(),
            ),
        )
        .await;
    assert_problem(res, StatusCode::UNAUTHORIZED, "invalid_token").await;
    // A valid token of an identity that is no member.
    let stranger = p.sign(with("sub", json!("nobody")), "at+jwt").await;
    assert_problem(
        app.me(&client, bearer(&stranger)).await,
        StatusCode::FORBIDDEN,
        "not_a_member",
    )
    .await;
    assert_eq!(app.sessions().await, 0);
}

async fn one_time_login_link(env: TestEnv) {
    let store = env.store.clone();
    let (otl, token) = OneTimeLogin::generate();
    let app = App::local(store.clone(), otl).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let url = format!("{}/login/token/{token}", app.base);

    let res = client
        .get(format!("{}/login/token/wrong", app.base))
        .send()
        .await
        .unwrap();
    assert_problem(res, StatusCode::UNAUTHORIZED, "invalid_token").await;
    // No tenant yet: the link opens the first-run form (tests/tests/portal.rs), logs
    // nobody in and stays usable.
    let res = client.get(&url).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.text().await.unwrap().contains("action=\"/setup\""));
    assert_eq!(app.sessions().await, 0);
    // No identity provider: /auth/login is not there, bearer tokens are refused.
    let res = client
        .get(format!("{}/auth/login", app.base))
        .send()
        .await
        .unwrap();
    assert_problem(res, StatusCode::NOT_FOUND, "oidc_disabled").await;
    let res = app
        .me(&client, (AUTHORIZATION.as_str(), "Bearer a.b.c".into()))
        .await;
    assert_problem(res, StatusCode::UNAUTHORIZED, "invalid_token").await;

    let a = tenant(&store, "glow-salon").await;
    let res = client.get(&url).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let cookie = session_cookie(&res);
    let me: Value = app
        .me(&client, (COOKIE.as_str(), cookie))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["tenant_id"], a.to_string());
    assert_eq!(me["role"], "owner");
    let ops = Members::new(store.clone())
        .find_members_for_login(&Login::Operator, None)
        .await
        .unwrap();
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0].role, Role::Owner);
    // Used once.
    let res = client.get(&url).send().await.unwrap();
    assert_problem(res, StatusCode::UNAUTHORIZED, "invalid_token").await;
    assert_eq!(app.sessions().await, 1);
    let kinds = pending_kinds(&store).await;
    assert!(
        kinds.contains(&EventKind::MEMBER_LOGIN) && kinds.contains(&EventKind::MEMBER_ROLE_CHANGED)
    );
}

async fn members_repository(env: TestEnv) {
    let store = env.store.clone();
    let a = tenant(&store, "glow-salon").await;
    let b = tenant(&store, "other-shop").await;
    let m = Members::new(store.clone());
    let login = Login::email("priya@example.test").unwrap();
    let pa = m
        .invite_member(a, &login, Role::Staff, Actor::System)
        .await
        .unwrap();
    let pb = m
        .invite_member(b, &login, Role::Auditor, Actor::System)
        .await
        .unwrap();
    assert!(matches!(
        m.invite_member(a, &login, Role::Owner, Actor::System).await,
        Err(smartchat_core::CoreError::Conflict { .. })
    ));
    let all = m.find_members_for_login(&login, None).await.unwrap();
    assert_eq!(
        all.iter().map(|x| x.member_id).collect::<Vec<_>>(),
        vec![pa, pb]
    );
    let only_b = m.find_members_for_login(&login, Some(b)).await.unwrap();
    assert_eq!(only_b.len(), 1);
    assert_eq!(only_b[0].role, Role::Auditor);
    // Another tenant's member is not found through this tenant.
    assert!(m.member(a, pb).await.is_err());
    assert!(m.set_role(a, pb, Role::Owner, Actor::System).await.is_err());
    // Sessions: found while live, gone once expired or ended; another tenant's login is no
    // member here.
    let who = Identity::Oidc {
        issuer: "https://id.example".into(),
        subject: "priya".into(),
        verified_email: Some("priya@example.test".into()),
    };
    let live = [1u8; 32];
    let expired = [2u8; 32];
    let now = smartchat_core::db::now_micros();
    let s = m
        .start_session(&who, Some(b), &live, now + 60_000_000)
        .await
        .unwrap();
    assert_eq!((s.tenant_id, s.member_id, s.role), (b, pb, Role::Auditor));
    assert_eq!(m.session(&live).await.unwrap(), Some(s));
    m.start_session(&who, Some(b), &expired, now - 1)
        .await
        .unwrap();
    assert_eq!(m.session(&expired).await.unwrap(), None);
    assert_eq!(m.purge_expired().await.unwrap(), 1);
    // The role in force is read at each request.
    smartchat_tests::add_spare_owner(&store, b).await;
    m.set_role(b, pb, Role::Staff, Actor::System).await.unwrap();
    assert_eq!(m.session(&live).await.unwrap().unwrap().role, Role::Staff);
    assert!(m.end_session(&live).await.unwrap());
    assert_eq!(m.session(&live).await.unwrap(), None);
    assert!(!m.end_session(&live).await.unwrap());
    let stranger = Identity::Oidc {
        issuer: "https://id.example".into(),
        subject: "mallory".into(),
        verified_email: None,
    };
    assert!(matches!(
        m.start_session(&stranger, None, &[3u8; 32], now + 60_000_000)
            .await,
        Err(smartchat_core::CoreError::NotFound { what: "member" })
    ));
    assert_eq!(m.session_count().await.unwrap(), 0);

    // No login in plaintext in the members table.
    let mut c = store.db.conn().await.unwrap();
    let rows: Vec<(Vec<u8>, Vec<u8>)> = db_run!(c, |c| smartchat_core::db::schema::members::table
        .select((
            smartchat_core::db::schema::members::login_blind,
            smartchat_core::db::schema::members::login_ct
        ))
        .load(c)
        .await)
    .unwrap();
    for (blind, ct) in rows {
        for bytes in [blind, ct] {
            assert!(!bytes.windows(5).any(|w| w == b"priya"));
        }
    }
}

async fn keys_refreshed_on_unknown_kid(env: TestEnv) {
    let store = env.store.clone();
    let a = tenant(&store, "glow-salon").await;
    let mut app = App::with_oidc(store.clone()).await;
    let issuer = app.issuer().to_owned();
    Members::new(store.clone())
        .invite_member(
            a,
            &Login::oidc(&issuer, CLIENT_ID),
            Role::Staff,
            Actor::System,
        )
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let bearer = |t: &str| (AUTHORIZATION.as_str(), format!("Bearer {t}"));
    let old = app.provider().client_credentials().await;
    assert_eq!(app.me(&client, bearer(&old)).await.status(), StatusCode::OK);

    // The provider rotates: same issuer (same port), new keys with new ids.
    let port: u16 = issuer.rsplit(':').next().unwrap().parse().unwrap();
    let redirect = format!("{}/auth/callback", app.base);
    app.provider.take().unwrap().stop().await;
    app.provider = Some(Provider::start_on(port, &redirect, "-rotated").await);
    let new = app.provider().client_credentials().await;
    // The unknown kid makes the server fetch the JWKS again (the 10 s rate limit lifted).
    app.state.oidc().unwrap().allow_key_refresh();
    let res = app.me(&client, bearer(&new)).await;
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "a token under the new key verifies"
    );
    // The retired key is gone from the refreshed set.
    let res = app.me(&client, bearer(&old)).await;
    assert_problem(res, StatusCode::UNAUTHORIZED, "invalid_token").await;
}

both_backends!(
    keys_refreshed_on_unknown_kid,
    portal_login_session_and_logout,
    callback_refusals_write_nothing,
    bearer_tokens,
    one_time_login_link,
    members_repository,
);
