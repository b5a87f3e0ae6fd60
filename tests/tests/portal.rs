//! The owners' portal (issue 8), on both database backends.
//!
//! - In real headless Chromium against a real OpenID provider (`oidc-provider`): log in
//!   through the provider, complete onboarding (profile, sandbox number, offline
//!   assistant), send a sandbox message and see the assistant's answer, find it by search,
//!   see it counted on the analytics page (once five customers wrote, below which counts
//!   are hidden), log out; screenshots of the main pages are saved under
//!   `target/test-artifacts/portal/`.
//! - Over HTTP: forms without their CSRF token are refused and change nothing; every
//!   page's role rules (staff, auditor); a member of another tenant gets 404 for this
//!   tenant's conversation; a refused form shows the API's problem with its status.

use std::collections::HashMap;
use std::net::SocketAddr;

use base64::Engine as _;
use reqwest::StatusCode;
use serde_json::json;
use smartchat_api::app::{AppState, router};
use smartchat_api::auth::{AuthConfig, AuthState, OneTimeLogin};
use smartchat_api::boot::Services;
use smartchat_api::pipeline::{self, Pipeline};
use smartchat_api::search::Search;
use smartchat_core::config::Config;
use smartchat_core::ids::{Handle, PhoneNumber, PhoneNumberId, TenantId};
use smartchat_core::ledger_store::Ledger;
use smartchat_core::members::{Identity, Login, Members, Role};
use smartchat_core::store::{NewTenant, Profile};
use smartchat_ledger::Actor;
use smartchat_tests::browser::Browser;
use smartchat_tests::oidc::{AUDIENCE, CLIENT_ID, CLIENT_SECRET, Provider};
use smartchat_tests::{TestEnv, both_backends};

const HANDLE: &str = "glow-portal";

struct World {
    env: TestEnv,
    tenant: TenantId,
    base: String,

    pipeline: Pipeline,
    _provider: Option<Provider>,
    stop: tokio::sync::watch::Sender<bool>,
}

async fn tenant(env: &TestEnv, handle: &str, pnid: Option<&str>) -> TenantId {
    env.store
        .create_tenant(NewTenant {
            handle: handle.parse::<Handle>().unwrap(),
            profile: Profile(json!({
                "name": "Glow Salon", "business_type": "salon", "timezone": "UTC",
                "handoff_message": "A person from the salon will answer you soon.",
            })),
            phone_number_id: pnid.map(|p| p.parse::<PhoneNumberId>().unwrap()),
            access_token: pnid.map(|_| smartchat_core::config::Secret::new("")),
        })
        .await
        .unwrap()
}

/// The whole server as `smartchat serve` runs it (job worker, search indexer, ledger
/// sequencer, analytics store), with a real OpenID provider when `oidc`.
async fn world(env: TestEnv, oidc: bool) -> World {
    let tenant = tenant(&env, HANDLE, None).await;
    let config = Config::load_from(None, &HashMap::new()).unwrap();
    let analytics = env.analytics().await;
    let pipeline = Pipeline::new(env.store.clone(), &config)
        .unwrap()
        .with_analytics(analytics);
    let ledger = Ledger::open(env.store.db.clone(), &env.store.keys, "test/ledger")
        .await
        .unwrap();
    let search = Search::new(env.store.clone(), env.dir.path().join("search")).unwrap();
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(pipeline::worker(pipeline.clone(), stop_rx.clone()));
    tokio::spawn(search.clone().worker(stop_rx.clone()));
    tokio::spawn(smartchat_api::background::ledger_worker(
        ledger.clone(),
        stop_rx.clone(),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let base = format!("http://{addr}");
    let (auth, provider) = if oidc {
        let redirect = format!("{base}/auth/callback");
        let provider = Provider::start(&redirect).await;
        let cfg = AuthConfig::new(
            provider.issuer.clone(),
            CLIENT_ID,
            Some(secrecy::SecretString::from(CLIENT_SECRET)),
            redirect,
            AUDIENCE,
        );
        let auth = AuthState::with_oidc(env.store.clone(), &cfg).await.unwrap();
        (auth, Some(provider))
    } else {
        // No provider: sessions are made directly by the tests (as a login would).
        let (otl, _token) = OneTimeLogin::generate();
        (AuthState::local(env.store.clone(), otl), None)
    };
    let state = AppState::new(
        Services {
            store: env.store.clone(),
            ledger,
        },
        pipeline.clone(),
        auth,
        &config,
    )
    .with_search(search);
    let app = router(state.clone());
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    World {
        env,
        tenant,
        base,

        pipeline,
        _provider: provider,
        stop,
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

async fn portal_in_chromium(env: TestEnv) {
    let backend = format!("{:?}", env.backend).to_lowercase();
    let w = world(env, true).await;
    // The owner is invited by e-mail; the provider's account `alice` has it, verified.
    Members::new(w.env.store.clone())
        .invite_member(
            w.tenant,
            &Login::Email {
                email: "alice@example.test".into(),
            },
            Role::Owner,
            Actor::System,
        )
        .await
        .unwrap();
    let b = Browser::start().await;
    let shot = |name: &str| format!("{backend}-{name}");

    // Log in through the provider.
    b.goto(&format!("{}/", w.base)).await;
    assert!(
        b.exists("#login").await,
        "the login page offers the provider"
    );
    b.screenshot(&shot("01-login")).await;
    b.click("#login").await;
    let name = b.wait_for("#business-name", 15, false, |_| true).await;
    assert_eq!(name, "Glow Salon");
    assert!(b.url().await.starts_with(&w.base), "back on the portal");
    assert_eq!(b.text(".role").await, "owner");
    b.screenshot(&shot("02-overview")).await;

    // Onboarding: the profile, a sandbox number, the offline assistant.
    b.goto(&format!("{}/portal/onboarding", w.base)).await;
    b.fill("#business_type", "hair salon").await;
    b.fill("#hours_saturday", "10:00-16:00").await;
    b.fill("#hours_monday", "09:00-18:00").await;
    b.fill("#services", "Haircut | Rs 500 | 30\nBridal makeup")
        .await;
    b.fill(
        "#booking_links",
        "Book online | https://book.example.com/glow",
    )
    .await;
    b.click("#save-profile").await;
    assert_eq!(
        b.text(".notice").await,
        "The business profile is saved.",
        "the profile form saves through the API"
    );
    // A refused profile (an interval that ends before it starts) shows why, keeps the rest.
    b.fill("#hours_sunday", "18:00-09:00").await;
    b.click("#save-profile").await;
    assert!(
        b.exists("#step-profile .problem").await,
        "a refused profile says why"
    );
    b.goto(&format!("{}/portal/onboarding", w.base)).await;
    assert_eq!(
        b.client
            .find(fantoccini::Locator::Css("#hours_saturday"))
            .await
            .unwrap()
            .prop("value")
            .await
            .unwrap()
            .as_deref(),
        Some("10:00-16:00"),
        "the saved profile is what the page shows"
    );
    b.click("#connect-sandbox").await;
    assert!(
        b.text(".notice")
            .await
            .starts_with("A sandbox number is connected")
    );
    assert!(b.text("#numbers").await.contains("sandbox"));
    b.fill("#providers", "").await;
    b.click("#save-assistant").await;
    assert_eq!(b.text(".notice").await, "The assistant settings are saved.");
    b.screenshot(&shot("03-onboarding")).await;

    // The sandbox: play a customer, see the assistant answer from the profile.
    b.goto(&format!("{}/portal/sandbox", w.base)).await;
    b.fill("#from", "15550100001").await;
    b.fill("#sandbox-text", "What time do you open on Saturday?")
        .await;
    b.click("form[action='/portal/sandbox'] button").await;
    let answer = b
        .wait_for(".msg.out .body", 30, true, |t| !t.is_empty())
        .await;
    assert!(
        answer.contains("10:00") || answer.contains("10 AM") || answer.contains("10am"),
        "the offline assistant answers from the saved Saturday hours: {answer}"
    );
    b.screenshot(&shot("04-sandbox")).await;

    // The conversation is in the inbox.
    b.goto(&format!("{}/portal/conversations", w.base)).await;
    assert!(b.exists("#conversations a").await);
    b.click("#conversations a").await;
    let thread = b.text("#thread").await;
    assert!(
        thread.contains("What time do you open on Saturday?"),
        "{thread}"
    );
    b.screenshot(&shot("05-conversation")).await;

    // Search finds it (the indexer follows the database feed).
    b.goto(&format!("{}/portal/search?q=saturday", w.base))
        .await;
    let total = b
        .wait_for("#total", 30, true, |t| !t.starts_with("0 "))
        .await;
    assert!(total.ends_with("messages found"), "{total}");
    let hit = b.text("#hits mark").await;
    assert_eq!(hit.to_lowercase(), "saturday", "the hit is highlighted");
    b.screenshot(&shot("06-search")).await;

    // Four more customers write; with five, today's count is no longer hidden.
    for n in 2..=5 {
        b.goto(&format!("{}/portal/sandbox", w.base)).await;
        b.fill("#from", &format!("1555010000{n}")).await;
        b.fill("#sandbox-text", "How do I book?").await;
        b.click("form[action='/portal/sandbox'] button").await;
        b.wait_for(".msg.out .body", 30, true, |t| !t.is_empty())
            .await;
    }
    let today = smartchat_core::analytics::day_of(time::OffsetDateTime::now_utc());
    b.goto(&format!("{}/portal/analytics", w.base)).await;
    let css = format!("#chart-messages rect[data-series='in'][data-category='{today}']");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    let counted = loop {
        let v = b
            .client
            .find(fantoccini::Locator::Css(&css))
            .await
            .unwrap()
            .attr("data-value")
            .await
            .unwrap()
            .unwrap_or_default();
        if v == "5" || tokio::time::Instant::now() > deadline {
            break v;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        b.client.refresh().await.unwrap();
    };
    assert_eq!(
        counted, "5",
        "five customers' messages are counted on the chart"
    );
    assert_eq!(b.text("#messages-in-total").await, "5");
    b.screenshot(&shot("07-analytics")).await;

    // The other owner pages render.
    for (path, name) in [
        ("/portal/leads", "08-leads"),
        ("/portal/rights", "09-rights"),
        ("/portal/ledger", "10-ledger"),
        ("/portal/records", "11-records"),
        ("/portal/team", "12-team"),
        ("/portal/account", "13-account"),
    ] {
        b.goto(&format!("{}{path}", w.base)).await;
        assert!(b.exists("main h1").await, "{path} renders");
        assert!(!b.exists(".problem").await, "{path} shows no problem");
        b.screenshot(&shot(name)).await;
    }

    // Log out: the session ends server-side; the portal asks to log in again.
    b.click(".logout button").await;
    assert!(b.exists("#login").await, "logged out to the login page");
    b.goto(&format!("{}/portal/conversations", w.base)).await;
    assert!(b.exists("#login").await, "no page without a session");
    assert_eq!(
        Members::new(w.env.store.clone())
            .session_count()
            .await
            .unwrap(),
        0,
        "logout deleted the session row"
    );
    b.close().await;
}

/// A member's HTTP session made directly (as the login would), with its CSRF token.
struct Member {
    http: reqwest::Client,
    csrf: String,
}

async fn session_for(w: &World, who: Identity, tenant: TenantId) -> Member {
    let secret: [u8; 32] = rand::random();
    let digest = *blake3::hash(&secret).as_bytes();
    Members::new(w.env.store.clone())
        .start_session(
            &who,
            Some(tenant),
            &digest,
            smartchat_core::db::now_micros() + 3_600_000_000,
        )
        .await
        .unwrap();
    let cookie = format!(
        "smartchat_session={}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
    );
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::COOKIE, cookie.parse().unwrap());
    let http = reqwest::Client::builder()
        .default_headers(headers)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let me: serde_json::Value = http
        .get(format!("{}/api/v1/me", w.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    Member {
        http,
        csrf: me["csrf_token"].as_str().unwrap().to_owned(),
    }
}

fn oidc_identity(sub: &str) -> Identity {
    Identity::Oidc {
        issuer: "https://idp.example.test".into(),
        subject: sub.into(),
        verified_email: None,
    }
}

async fn invite(w: &World, tenant: TenantId, sub: &str, role: Role) {
    Members::new(w.env.store.clone())
        .invite_member(
            tenant,
            &Login::Oidc {
                issuer: "https://idp.example.test".into(),
                subject: sub.into(),
                email: None,
            },
            role,
            Actor::System,
        )
        .await
        .unwrap();
}

async fn status(m: &Member, base: &str, path: &str) -> (u16, String) {
    let r = m.http.get(format!("{base}{path}")).send().await.unwrap();
    let s = r.status().as_u16();
    (s, r.text().await.unwrap_or_default())
}

async fn forms_roles_and_tenants(env: TestEnv) {
    let w = world(env, false).await;
    let other = tenant(&w.env, "other-salon", Some("7000002")).await;
    // A conversation of the other tenant (a customer wrote to its number).
    let from: PhoneNumber = "15550109999".parse().unwrap();
    let payload = pipeline::sandbox_payload("7000002", &from, "Hello, are you open?").unwrap();
    pipeline::ingest(&w.pipeline, &payload).await.unwrap();
    pipeline::drain(&w.pipeline).await.unwrap();
    let other_conv = w
        .env
        .store
        .list_conversations(other, 10)
        .await
        .unwrap()
        .remove(0)
        .id;

    invite(&w, w.tenant, "olivia", Role::Owner).await;
    invite(&w, w.tenant, "sam", Role::Staff).await;
    invite(&w, w.tenant, "ada", Role::Auditor).await;
    let owner = session_for(&w, oidc_identity("olivia"), w.tenant).await;
    let staff = session_for(&w, oidc_identity("sam"), w.tenant).await;
    let auditor = session_for(&w, oidc_identity("ada"), w.tenant).await;

    // The overview names the business; the login page is what anyone else gets.
    let (s, body) = status(&owner, &w.base, "/").await;
    assert_eq!(s, 200);
    assert!(body.contains("Glow Salon"), "{body}");
    let anon = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = anon.get(format!("{}/", w.base)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("one-time login link"));
    let r = anon
        .get(format!("{}/portal/leads", w.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::SEE_OTHER,
        "no session: to the login page"
    );

    // A form without its CSRF token is refused and changes nothing.
    let profile_before = w.env.store.tenant(w.tenant).await.unwrap().profile.0;
    let form = [
        ("name", "Hijacked"),
        ("business_type", "x"),
        ("timezone", "UTC"),
        ("handoff_message", "x"),
    ];
    let r = owner
        .http
        .post(format!("{}/portal/onboarding/profile", w.base))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = owner
        .http
        .post(format!("{}/portal/onboarding/profile", w.base))
        .form(&[&form[..], &[("csrf_token", "forged")]].concat())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        w.env.store.tenant(w.tenant).await.unwrap().profile.0,
        profile_before,
        "nothing changed"
    );
    // With the token the same form saves (and redirects with a notice).
    let r = owner
        .http
        .post(format!("{}/portal/onboarding/profile", w.base))
        .form(&[&form[..], &[("csrf_token", owner.csrf.as_str())]].concat())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        r.headers()["location"],
        "/portal/onboarding?notice=profile_saved"
    );
    assert_eq!(
        w.env.store.tenant(w.tenant).await.unwrap().profile.0["name"],
        "Hijacked"
    );
    // A refused termination shows the API's problem with its status, and terminates nothing.
    let r = owner
        .http
        .post(format!("{}/portal/account/terminate", w.base))
        .form(&[
            ("confirm", "not-the-handle"),
            ("csrf_token", owner.csrf.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains("type the business"));
    assert_eq!(
        w.env.store.account(w.tenant).await.unwrap().status,
        "active"
    );

    // An oversized body is a problem document too (413), decided from Content-Length
    // before the body is read (a raw socket: a client still writing would see the reset).
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = w.base.trim_start_matches("http://");
        let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "PUT /api/v1/profile HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
             content-length: {}\r\n\r\n",
            2 * 1024 * 1024
        );
        sock.write_all(head.as_bytes()).await.unwrap();
        sock.write_all(&[b' '; 1024]).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), sock.read(&mut buf))
            .await
            .expect("the server answers before the body is sent")
            .unwrap();
        let res = String::from_utf8_lossy(&buf[..n]).to_lowercase();
        assert!(res.starts_with("http/1.1 413"), "{res}");
        assert!(
            res.contains("content-type: application/problem+json"),
            "{res}"
        );
        assert!(res.contains("\"code\":\"body_too_large\""), "{res}");
    }

    // Roles: staff works the inbox, never settings, team, ledger or the account.
    for path in [
        "/portal/conversations",
        "/portal/leads",
        "/portal/sandbox",
        "/portal/analytics",
        "/portal/search",
    ] {
        assert_eq!(
            status(&staff, &w.base, path).await.0,
            200,
            "staff may open {path}"
        );
    }
    for path in [
        "/portal/onboarding",
        "/portal/team",
        "/portal/account",
        "/portal/rights",
        "/portal/ledger",
    ] {
        assert_eq!(
            status(&staff, &w.base, path).await.0,
            403,
            "staff may not open {path}"
        );
    }
    // Auditors read the ledger and records, never conversations.
    for path in ["/portal/ledger", "/portal/records"] {
        let (s, body) = status(&auditor, &w.base, path).await;
        assert_eq!(s, 200, "auditor may open {path}: {body}");
    }
    for path in [
        "/portal/conversations",
        "/portal/search?q=open",
        "/portal/sandbox",
        "/portal/leads",
        "/portal/onboarding",
    ] {
        assert_eq!(
            status(&auditor, &w.base, path).await.0,
            403,
            "auditor may not open {path}"
        );
    }
    let (_, overview) = status(&auditor, &w.base, "/").await;
    assert!(!overview.contains("Recent conversations"));
    // Another tenant's conversation is not found, for the page and its forms.
    let path = format!("/portal/conversations/{other_conv}");
    assert_eq!(status(&owner, &w.base, &path).await.0, 404);
    let r = owner
        .http
        .post(format!("{}{path}/reply", w.base))
        .form(&[("text", "hi"), ("csrf_token", owner.csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = owner
        .http
        .post(format!("{}{path}/mode", w.base))
        .form(&[("mode", "human"), ("csrf_token", owner.csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let (_, list) = status(&owner, &w.base, "/portal/conversations").await;
    assert!(
        !list.contains(&other_conv.to_string()),
        "nothing of the other tenant is listed"
    );
    // Bearer-less pages never render for a bearer token either (pages are for sessions).
    let r = anon
        .get(format!("{}/portal/leads", w.base))
        .header("authorization", "Bearer not-a-token")
        .send()
        .await
        .unwrap();
    assert_ne!(r.status(), StatusCode::OK);

    // Page views are counted as usage data in the analytics store, without who.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let cells = w
        .env
        .analytics()
        .await
        .cells(w.tenant, "2000-01-01", "2999-12-31")
        .await
        .unwrap();
    assert!(
        cells
            .iter()
            .any(|c| c.metric == "page_view" && c.dimension == "/portal/conversations"),
        "{cells:?}"
    );
    assert!(
        cells
            .iter()
            .any(|c| c.metric == "feature_use" && c.dimension == "profile"),
        "{cells:?}"
    );
}

/// The embedded default's first run: the one-time link on a server without a business
/// opens the form that creates one, then logs the operator in as its owner.
async fn first_run_creates_the_business(env: TestEnv) {
    let config = Config::load_from(None, &HashMap::new()).unwrap();
    let pipeline = Pipeline::new(env.store.clone(), &config).unwrap();
    let ledger = Ledger::open(env.store.db.clone(), &env.store.keys, "test/ledger")
        .await
        .unwrap();
    let (otl, token) = OneTimeLogin::generate();
    let state = AppState::new(
        Services {
            store: env.store.clone(),
            ledger,
        },
        pipeline,
        AuthState::local(env.store.clone(), otl),
        &config,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = router(state);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let http = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = http
        .get(format!("{base}/login/token/{token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(page.contains("action=\"/setup\""), "{page}");
    // A wrong token creates nothing.
    let form = |tok: &str, tz: &str| {
        vec![
            ("token", tok.to_owned()),
            ("name", "Asha's Café & Salon".to_owned()),
            ("business_type", "salon".to_owned()),
            ("timezone", tz.to_owned()),
        ]
    };
    let r = http
        .post(format!("{base}/setup"))
        .form(&form("not-the-token", "Asia/Kolkata"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "to the login page");
    assert!(env.store.list_tenants().await.unwrap().is_empty());
    // A refused form says why and keeps the link usable.
    let r = http
        .post(format!("{base}/setup"))
        .form(&form(&token, "Mars/Olympus"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains("IANA"));
    assert!(env.store.list_tenants().await.unwrap().is_empty());
    // The business is made but the session cannot be (the database refuses it): an error,
    // and the link still logs the operator in.
    let refusal = smartchat_tests::refuse_writes(&env, "INSERT ON sessions").await;
    let r = http
        .post(format!("{base}/setup"))
        .form(&form(&token, "Asia/Kolkata"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_server_error(), "{}", r.status());
    refusal.lift().await;
    let r = http
        .get(format!("{base}/login/token/{token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let tenants = env.store.list_tenants().await.unwrap();
    assert_eq!(tenants.len(), 1);
    assert_eq!(tenants[0].handle, "asha-s-caf-salon");
    let overview = http.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(overview.status(), 200);
    let overview = overview.text().await.unwrap();
    assert!(
        overview.contains("Asha&#39;s Café &amp; Salon")
            || overview.contains("Asha's Café &amp; Salon"),
        "{overview}"
    );
    // The link is spent.
    let again = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = again
        .get(format!("{base}/login/token/{token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = again
        .post(format!("{base}/setup"))
        .form(&form(&token, "Asia/Kolkata"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(env.store.list_tenants().await.unwrap().len(), 1);
}

both_backends!(
    portal_in_chromium,
    forms_roles_and_tenants,
    first_run_creates_the_business
);
