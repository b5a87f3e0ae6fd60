//! The OpenAPI document of `/api/v1` against the real routes, on both backends (issue 8):
//! it is served without authentication as OpenAPI 3.1; every documented operation is
//! routed (a handler answers, not the router's 404 or 405) and every method a documented
//! path does not list is refused with 405; and schemathesis (PyPI, pinned in
//! `tests/schemathesis/requirements.txt`, installed into `tests/schemathesis/.venv` when
//! missing) sends a few hundred generated requests with a logged-in owner's session, none
//! of which may be answered with a 5xx, a status the document does not list, or a body or
//! content type that does not match it.

use std::path::{Path, PathBuf};

use reqwest::header::{CONTENT_TYPE, COOKIE, SET_COOKIE};
use serde_json::{Value, json};
use smartchat_api::app::{AppState, router};
use smartchat_api::auth::{AuthState, OneTimeLogin};
use smartchat_api::boot::Services;
use smartchat_api::pipeline::{self, Pipeline};
use smartchat_api::search::Search;
use smartchat_core::ids::{Handle, PhoneNumberId, TenantId};
use smartchat_core::ledger_store::Ledger;
use smartchat_core::store::{NewTenant, Profile};
use smartchat_tests::{TestEnv, both_backends};

const PNID: &str = "5000081";
const HANDLE: &str = "glow-openapi";
const CUSTOMER: &str = "+919812345678";
const DOC: &str = "/api/v1/openapi.json";

/// A server with a seeded tenant and a logged-in owner (cookie and CSRF token as raw
/// header values, as schemathesis sends them).
struct World {
    _env: TestEnv,
    pipeline: Pipeline,
    _tenant: TenantId,
    base: String,
    /// `Cookie` header value of the owner's session.
    cookie: String,
    csrf: String,
    member: String,
    http: reqwest::Client,
}

async fn world(env: TestEnv) -> World {
    let tenant = env
        .store
        .create_tenant(NewTenant {
            handle: HANDLE.parse::<Handle>().unwrap(),
            profile: Profile(json!({
                "name": "Glow Salon", "business_type": "salon", "timezone": "Asia/Kolkata",
                "services": [{"name": "Haircut", "price": "Rs 500"}],
                "booking_links": [{"label": "Book", "url": "https://book.example.com/glow"}],
            })),
            phone_number_id: Some(PNID.parse::<PhoneNumberId>().unwrap()),
            // No access token: the sandbox number.
            access_token: Some(smartchat_core::config::Secret::new("")),
        })
        .await
        .unwrap();
    let config = smartchat_core::config::Config::load_from(None, &Default::default()).unwrap();
    let ledger = Ledger::open(env.store.db.clone(), &env.store.keys, "test/ledger")
        .await
        .unwrap();
    let pipeline = Pipeline::new(env.store.clone(), &config)
        .unwrap()
        .with_analytics(env.analytics().await);
    let search = Search::new(env.store.clone(), env.dir.path().join("search")).unwrap();
    let (otl, token) = OneTimeLogin::generate();
    let state = AppState::new(
        Services {
            store: env.store.clone(),
            ledger,
        },
        pipeline.clone(),
        AuthState::local(env.store.clone(), otl),
        &config,
    )
    .with_search(search);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router(state)).await });
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let res = http
        .get(format!("{base}/login/token/{token}?tenant={tenant}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303, "the one-time link logs in");
    let cookie = res
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("smartchat_session="))
        .and_then(|v| v.split(';').next())
        .expect("a session cookie")
        .to_owned();
    let me: Value = http
        .get(format!("{base}/api/v1/me"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["role"], "owner", "{me}");
    let csrf = me["csrf_token"].as_str().unwrap().to_owned();
    let member = me["member_id"].as_str().unwrap().to_owned();
    World {
        _env: env,
        pipeline,
        _tenant: tenant,
        base,
        cookie,
        csrf,
        member,
        http,
    }
}

impl World {
    /// `method path` as the owner (cookie and CSRF token), with a JSON body when given:
    /// status, content type and body (`null` when not JSON).
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, String, Value) {
        let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header(COOKIE, &self.cookie)
            .header("x-csrf-token", &self.csrf);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let ct = res
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = res.json().await.unwrap_or(Value::Null);
        (status, ct, body)
    }

    /// Data for the generated requests to find: a conversation (played in the sandbox and
    /// answered), its lead, a follow-up rule, a template, an access request, a legal hold.
    /// Returns the ids of what it made (the owner's member id first).
    async fn seed(&self) -> Vec<String> {
        let id = |v: &Value, key: &str| {
            v[key]
                .as_str()
                .unwrap_or_else(|| panic!("{key} in {v}"))
                .to_owned()
        };
        let mut ids = vec![self.member.clone()];
        let (status, _, v) = self
            .call(
                "post",
                "/api/v1/sandbox/messages",
                Some(json!({
                    "from": CUSTOMER,
                    "text": "Hi, my name is Asha. Can I get a haircut tomorrow evening? Budget under 1500",
                })),
            )
            .await;
        assert_eq!(status, 202, "{v}");
        ids.push(id(&v, "conversation_id"));
        pipeline::drain(&self.pipeline).await.unwrap();
        let (status, _, v) = self.call("get", "/api/v1/leads", None).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["leads"].as_array().unwrap().len(), 1, "{v}");
        ids.push(id(&v["leads"][0], "id"));
        let (status, _, v) = self
            .call(
                "put",
                "/api/v1/templates",
                Some(json!({"templates": [{
                    "name": "visit_reminder", "language": "en", "category": "utility",
                    "body": "Hello {{1}}, see you soon at {{2}}",
                }]})),
            )
            .await;
        assert_eq!(status, 200, "{v}");
        let (status, _, v) = self
            .call(
                "post",
                "/api/v1/follow-up-rules",
                Some(json!({
                    "name": "nudge", "trigger": {"kind": "no_reply"}, "after_minutes": 120,
                    "message": "Still interested, {customer_name}?", "respect_hours": false,
                })),
            )
            .await;
        assert_eq!(status, 201, "{v}");
        ids.push(id(&v, "id"));
        let (status, _, v) = self
            .call(
                "post",
                "/api/v1/rights",
                Some(json!({"right": "access", "wa_id": CUSTOMER})),
            )
            .await;
        assert_eq!(status, 201, "{v}");
        ids.push(id(&v, "id"));
        let (status, _, v) = self
            .call(
                "post",
                "/api/v1/legal-holds",
                Some(json!({"reason": "case 2026-17", "wa_id": CUSTOMER})),
            )
            .await;
        assert_eq!(status, 201, "{v}");
        ids.push(id(&v, "id"));
        ids
    }

    async fn document(&self) -> Value {
        // No credentials: the document is public.
        let res = self
            .http
            .get(format!("{}{DOC}", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let ct = res.headers().get(CONTENT_TYPE).unwrap().to_str().unwrap();
        assert!(ct.starts_with("application/json"), "{ct}");
        let text = res.text().await.unwrap();
        serde_json::from_str(&text).expect("the document is JSON")
    }
}

const METHODS: &[&str] = &["get", "post", "put", "patch", "delete"];

/// A documented path with its parameters filled with a UUID that names nothing.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|seg| {
            if seg.starts_with('{') {
                "00000000-0000-4000-8000-000000000000"
            } else {
                seg
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Every documented (path, method), the path concrete.
fn operations(doc: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let concrete = concrete(path);
        for m in METHODS {
            if item.get(*m).is_some() {
                out.push((concrete.clone(), (*m).to_owned()));
            }
        }
    }
    out
}

async fn the_document_and_the_routes_agree(env: TestEnv) {
    let w = world(env).await;
    let _ = w.seed().await;
    let doc = w.document().await;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1."),
        "{}",
        doc["openapi"]
    );
    assert_eq!(
        doc["components"]["schemas"]["Problem"]["type"], "object",
        "the one error schema"
    );
    for scheme in ["bearer", "session", "csrf"] {
        assert!(
            doc["components"]["securitySchemes"][scheme].is_object(),
            "{scheme}"
        );
    }
    let ops = operations(&doc);
    assert!(ops.len() >= 35, "{ops:?}");
    for path in doc["paths"].as_object().unwrap().keys() {
        assert!(path.starts_with("/api/v1/"), "{path} outside /api/v1");
    }
    for (path, method) in &ops {
        let body = (method != "get" && method != "delete").then(|| json!({}));
        let (status, ct, v) = w.call(method, path, body).await;
        // The router's own 404 (no route) has no body; a handler's is a problem.
        let unrouted = status == 405 || (status == 404 && ct != "application/problem+json");
        assert!(
            !unrouted,
            "{method} {path} is documented but not routed: {status} {ct} {v}"
        );
        assert!(status < 500, "{method} {path}: {status} {v}");
        if status >= 400 {
            assert_eq!(
                ct, "application/problem+json",
                "{method} {path}: {status} {v}"
            );
            assert_eq!(v["status"], status, "{method} {path}: {v}");
        }
    }
    // The other way: a documented path serves no method the document does not list.
    for (path, item) in doc["paths"].as_object().unwrap() {
        let concrete = concrete(path);
        for m in METHODS.iter().filter(|m| item.get(**m).is_none()) {
            let (status, _, v) = w.call(m, &concrete, Some(json!({}))).await;
            assert_eq!(status, 405, "{m} {path} is routed but not documented: {v}");
        }
    }
    // And an unknown /api/v1 path is the router's 404.
    let (status, ct, _) = w.call("get", "/api/v1/no-such-thing", None).await;
    assert_eq!((status, ct.as_str()), (404, ""));
}

/// The schemathesis command of the venv, installed from the pinned requirements when it
/// is missing or they changed (one install per test process).
fn schemathesis() -> PathBuf {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _held = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemathesis");
    let venv = dir.join(".venv");
    let bin = venv.join("bin").join("schemathesis");
    let wanted = std::fs::read_to_string(dir.join("requirements.txt")).unwrap();
    let stamp = venv.join("installed-requirements.txt");
    if bin.exists() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return bin;
    }
    let run = |cmd: &mut std::process::Command| {
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{cmd:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    if !venv.join("bin").join("pip").exists() {
        run(std::process::Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv));
    }
    run(std::process::Command::new(venv.join("bin").join("pip"))
        .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
        .arg(dir.join("requirements.txt")));
    std::fs::write(&stamp, wanted).unwrap();
    assert!(bin.exists(), "{} after the install", bin.display());
    bin
}

async fn schemathesis_finds_no_server_error(env: TestEnv) {
    let bin = tokio::task::spawn_blocking(schemathesis).await.unwrap();
    let w = world(env).await;
    let ids = w.seed().await;
    let report = tempfile::tempdir().unwrap();
    // Half of the generated path ids and customer numbers name what the seed made, so the
    // requests reach the handlers' real work, not only their 404s.
    let config = report.path().join("schemathesis.toml");
    std::fs::write(
        &config,
        format!(
            "[dictionaries.ids]\nvalues = {ids}\n\n[dictionaries.numbers]\nvalues = {numbers}\n\n\
             [parameters]\n\
             \"path.id\" = {{ dictionary = \"ids\", probability = 0.5 }}\n\
             \"path.member_id\" = {{ dictionary = \"ids\", probability = 0.5 }}\n\
             \"body.wa_id\" = {{ dictionary = \"numbers\", probability = 0.5 }}\n\
             \"body.from\" = {{ dictionary = \"numbers\", probability = 0.5 }}\n",
            ids = json!(ids),
            numbers = json!([CUSTOMER, "919812345678"]),
        ),
    )
    .unwrap();
    let out = tokio::process::Command::new(&bin)
        // Its cache directory goes there too.
        .current_dir(report.path())
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(format!("{}{DOC}", w.base))
        .args(["--url", &w.base])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", "12", "--seed", "8", "--workers", "1"])
        .args(["--generation-database", "none", "--request-timeout", "30"])
        .args(["--no-color", "--output-truncate", "false"])
        // The session's cookie and CSRF token below, never generated ones.
        .args(["--generation-with-security-parameters", "false"])
        .args(["--report", "junit", "--report-junit-path"])
        .arg(report.path().join("junit.xml"))
        .args(["-H", &format!("Cookie: {}", w.cookie)])
        .args(["-H", &format!("X-CSRF-Token: {}", w.csrf)])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Shown with --nocapture: the run's warnings and counts.
    eprintln!("{stdout}");
    assert!(
        out.status.success(),
        "schemathesis found failures:\n{stdout}\n{stderr}"
    );
    // The run really happened: every operation tested, a few hundred requests.
    let junit = std::fs::read_to_string(report.path().join("junit.xml")).unwrap();
    let testcases = junit.matches("<testcase").count();
    assert!(
        testcases >= 35,
        "{testcases} operations in the report\n{stdout}"
    );
    // "Test cases:" then "  1434 generated, 1434 passed".
    let generated: usize = stdout
        .lines()
        .skip_while(|l| l.trim() != "Test cases:")
        .nth(1)
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no test case count in:\n{stdout}"));
    assert!(generated >= 300, "only {generated} requests:\n{stdout}");
}

both_backends!(
    the_document_and_the_routes_agree,
    schemathesis_finds_no_server_error,
);
