//! Test tooling (feature `fake`): a local fake Graph API and a builder of signed, Meta-shaped
//! webhook requests. Never enable this feature in a production build.
//!
//! [`FakeGraph`] serves `POST /{version}/{phone_number_id}/messages` on `127.0.0.1:0`:
//! it checks the bearer token against registered `(phone_number_id, token)` pairs (401, code
//! 190 otherwise), validates the body shape (400, code 100), answers like Meta
//! (`{"messaging_product":"whatsapp","contacts":[…],"messages":[{"id":"wamid.…"}]}`), records
//! every request, and can be scripted to fail ([`FakeGraph::fail_next`]) or to rate limit
//! (130429 above [`FakeGraph::set_rate_limit`] requests per second and number).

mod webhook;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use rand::Rng;
use rand::distributions::Alphanumeric;
use serde_json::{Value, json};

pub use webhook::{WebhookBuilder, WebhookUser, escape_non_ascii};

/// A scripted failure for the next request(s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GraphFailure {
    /// A Graph error body with this code; HTTP 401 for 190, 500 for 1, 2, 131000 and 131016,
    /// else 400 (Meta answers most Cloud API errors with 400).
    Code(i64),
    /// A Graph error body with this code and HTTP status.
    CodeWithStatus {
        /// Graph error code.
        code: i64,
        /// HTTP status.
        status: u16,
    },
    /// A non-Graph answer (plain text, as from a proxy) with this status and an optional
    /// `Retry-After` in seconds.
    Http {
        /// HTTP status.
        status: u16,
        /// `Retry-After` seconds.
        retry_after_secs: Option<u64>,
    },
    /// Answer only after this delay (to exercise client timeouts).
    Hang(Duration),
}

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// Version path segment.
    pub version: String,
    /// Phone number id path segment.
    pub phone_number_id: String,
    /// Whether the bearer token matched a registered pair.
    pub authorized: bool,
    /// The JSON body, if it parsed.
    pub body: Option<Value>,
    /// The HTTP status answered.
    pub status: u16,
}

#[derive(Debug, Default)]
struct FakeState {
    tokens: HashMap<String, HashSet<String>>,
    failures: VecDeque<GraphFailure>,
    rate_limit: Option<u32>,
    windows: HashMap<String, (Instant, u32)>,
    requests: Vec<RecordedRequest>,
    /// WhatsApp Business Account id -> (accepted token, templates as Meta lists them).
    templates: HashMap<String, (String, Vec<Value>)>,
    template_page_size: Option<usize>,
}

type Shared = Arc<Mutex<FakeState>>;

fn lock(s: &Shared) -> MutexGuard<'_, FakeState> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running fake Graph API; the server stops when this is dropped.
#[derive(Debug)]
pub struct FakeGraph {
    /// `http://127.0.0.1:<port>`: pass to [`crate::GraphClient::new`].
    pub base_url: String,
    state: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeGraph {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeGraph {
    /// Binds `127.0.0.1:0` and serves in a spawned task (needs a tokio runtime).
    pub async fn start() -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state: Shared = Arc::default();
        let app = Router::new()
            .route("/{version}/{phone_number_id}/messages", post(messages))
            .route(
                "/{version}/{waba_id}/message_templates",
                axum::routing::get(list_templates),
            )
            .fallback(unknown_path)
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            // Serving ends only when the task is aborted; an accept error ends the fake.
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            base_url: format!("http://{addr}"),
            state,
            task,
        })
    }

    /// Accepts `token` for `phone_number_id`.
    pub fn register(&self, phone_number_id: &str, token: &str) {
        lock(&self.state)
            .tokens
            .entry(phone_number_id.to_owned())
            .or_default()
            .insert(token.to_owned());
    }

    /// Adds a template to the WhatsApp Business Account `waba_id`, listed to `token`:
    /// `status` as Meta spells it (`APPROVED`, `PENDING`, ...), `body` with `{{n}}`
    /// variables. Once any template exists, template sends are checked against them
    /// (unknown name or language: 132001; wrong number of body parameters: 132000).
    pub fn add_template(
        &self,
        waba_id: &str,
        token: &str,
        name: &str,
        language: &str,
        status: &str,
        body: &str,
    ) {
        let mut st = lock(&self.state);
        let entry = st
            .templates
            .entry(waba_id.to_owned())
            .or_insert_with(|| (token.to_owned(), Vec::new()));
        entry.0 = token.to_owned();
        entry.1.push(json!({
            "name": name,
            "language": language,
            "status": status,
            "category": "UTILITY",
            "id": format!("{}", 1_000_000 + entry.1.len()),
            "components": [ { "type": "BODY", "text": body } ],
        }));
    }

    /// Lists at most `n` templates per page (Meta may return fewer than `limit`).
    pub fn set_template_page_size(&self, n: usize) {
        lock(&self.state).template_page_size = Some(n.max(1));
    }

    /// Makes the next `n` authorized requests fail with `failure`.
    pub fn fail_next(&self, n: usize, failure: GraphFailure) {
        let mut st = lock(&self.state);
        for _ in 0..n {
            st.failures.push_back(failure.clone());
        }
    }

    /// Answers 130429 once more than `per_second` requests for one number arrive within a
    /// one-second window; `None` turns it off.
    pub fn set_rate_limit(&self, per_second: Option<u32>) {
        lock(&self.state).rate_limit = per_second;
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.state).requests.clone()
    }

    /// Forgets recorded requests.
    pub fn clear_requests(&self) {
        lock(&self.state).requests.clear();
    }
}

fn graph_error(status: StatusCode, code: i64, message: &str) -> Response {
    let trace: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(23)
        .map(char::from)
        .collect();
    (
        status,
        axum::Json(json!({
            "error": {
                "message": message,
                "type": "OAuthException",
                "code": code,
                "error_data": { "messaging_product": "whatsapp", "details": message },
                "fbtrace_id": trace,
            }
        })),
    )
        .into_response()
}

fn code_status(code: i64) -> StatusCode {
    match code {
        190 => StatusCode::UNAUTHORIZED,
        1 | 2 | 131000 | 131016 => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

async fn unknown_path() -> Response {
    graph_error(
        StatusCode::BAD_REQUEST,
        100,
        "(#100) Unsupported post request",
    )
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

fn version_ok(v: &str) -> bool {
    crate::ids::ApiVersion::new(v).is_ok()
}

async fn messages(
    State(state): State<Shared>,
    Path((version, phone_number_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let authorized = bearer(&headers).is_some_and(|t| {
        lock(&state)
            .tokens
            .get(&phone_number_id)
            .is_some_and(|set| set.contains(t))
    });
    let (response, status) = decide(
        &state,
        &version,
        &phone_number_id,
        authorized,
        parsed.as_ref(),
    )
    .await;
    lock(&state).requests.push(RecordedRequest {
        version,
        phone_number_id,
        authorized,
        body: parsed,
        status,
    });
    response
}

async fn decide(
    state: &Shared,
    version: &str,
    phone_number_id: &str,
    authorized: bool,
    body: Option<&Value>,
) -> (Response, u16) {
    if !version_ok(version) {
        return (
            graph_error(
                StatusCode::BAD_REQUEST,
                100,
                "(#100) Unknown path components",
            ),
            400,
        );
    }
    if !authorized {
        return (
            graph_error(
                StatusCode::UNAUTHORIZED,
                190,
                "Invalid OAuth access token - Cannot parse access token",
            ),
            401,
        );
    }
    let failure = lock(state).failures.pop_front();
    if let Some(f) = failure {
        return match f {
            GraphFailure::Code(code) => {
                let s = code_status(code);
                (
                    graph_error(s, code, &format!("(#{code}) scripted failure")),
                    s.as_u16(),
                )
            }
            GraphFailure::CodeWithStatus { code, status } => {
                let s = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
                (
                    graph_error(s, code, &format!("(#{code}) scripted failure")),
                    s.as_u16(),
                )
            }
            GraphFailure::Http {
                status,
                retry_after_secs,
            } => {
                let s = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
                let mut r = (s, "upstream unavailable").into_response();
                if let Some(secs) = retry_after_secs {
                    r.headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
                }
                (r, s.as_u16())
            }
            GraphFailure::Hang(d) => {
                tokio::time::sleep(d).await;
                (StatusCode::GATEWAY_TIMEOUT.into_response(), 504)
            }
        };
    }
    if rate_limited(state, phone_number_id) {
        return (
            graph_error(StatusCode::BAD_REQUEST, 130429, "(#130429) Rate limit hit"),
            400,
        );
    }
    let Some(body) = body else {
        return (
            graph_error(StatusCode::BAD_REQUEST, 100, "(#100) Invalid parameter"),
            400,
        );
    };
    if let Some((code, message)) = template_refusal(state, body) {
        return (graph_error(StatusCode::BAD_REQUEST, code, message), 400);
    }
    match validate(body) {
        Ok(Accepted::MarkRead) => (axum::Json(json!({ "success": true })).into_response(), 200),
        Ok(Accepted::Message(to)) => {
            let id: String = rand::thread_rng()
                .sample_iter(&Alphanumeric)
                .take(40)
                .map(char::from)
                .collect();
            let contact = if to.bytes().all(|b| b.is_ascii_digit()) {
                json!({ "input": to, "wa_id": to })
            } else {
                json!({ "input": to, "user_id": to })
            };
            let resp = json!({
                "messaging_product": "whatsapp",
                "contacts": [contact],
                "messages": [{ "id": format!("wamid.{id}"), "message_status": "accepted" }],
            });
            (axum::Json(resp).into_response(), 200)
        }
        Err(why) => (
            graph_error(
                StatusCode::BAD_REQUEST,
                100,
                &format!("(#100) Invalid parameter: {why}"),
            ),
            400,
        ),
    }
}

#[derive(serde::Deserialize)]
struct ListQuery {
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    after: Option<String>,
}

/// `GET /{version}/{waba_id}/message_templates`: pages with `paging.cursors` and, while
/// more remain, `paging.next`.
async fn list_templates(
    State(state): State<Shared>,
    Path((version, waba_id)): Path<(String, String)>,
    axum::extract::Query(q): axum::extract::Query<ListQuery>,
    headers: HeaderMap,
) -> Response {
    if !version_ok(&version) {
        return graph_error(
            StatusCode::BAD_REQUEST,
            100,
            "(#100) Unknown path components",
        );
    }
    let st = lock(&state);
    let Some((token, all)) = st.templates.get(&waba_id) else {
        return graph_error(
            StatusCode::BAD_REQUEST,
            100,
            "(#100) Unsupported get request. Object does not exist",
        );
    };
    if bearer(&headers) != Some(token.as_str()) {
        return graph_error(
            StatusCode::UNAUTHORIZED,
            190,
            "Invalid OAuth access token - Cannot parse access token",
        );
    }
    let start: usize = q
        .after
        .as_deref()
        .and_then(|a| a.strip_prefix("c"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let size = q
        .limit
        .unwrap_or(25)
        .min(st.template_page_size.unwrap_or(usize::MAX))
        .max(1);
    let page: Vec<Value> = all.iter().skip(start).take(size).cloned().collect();
    let end = start + page.len();
    let mut paging =
        json!({ "cursors": { "before": format!("c{start}"), "after": format!("c{end}") } });
    if end < all.len() {
        paging["next"] = json!(format!(
            "https://graph.facebook.com/{version}/{waba_id}/message_templates?after=c{end}"
        ));
    }
    axum::Json(json!({ "data": page, "paging": paging })).into_response()
}

/// Checks a template send against the registered templates: `Some((code, message))`
/// when Meta would refuse it.
fn template_refusal(state: &Shared, body: &Value) -> Option<(i64, &'static str)> {
    let t = body.get("template")?;
    let st = lock(state);
    if st.templates.is_empty() {
        return None;
    }
    let name = t.get("name").and_then(Value::as_str).unwrap_or_default();
    let lang = t
        .get("language")
        .and_then(|l| l.get("code"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let known = st
        .templates
        .values()
        .flat_map(|(_, v)| v.iter())
        .find(|k| k["name"] == name && k["language"] == lang && k["status"] == "APPROVED");
    let Some(known) = known else {
        return Some((
            132001,
            "(#132001) Template name does not exist in the translation",
        ));
    };
    let text = known["components"][0]["text"].as_str().unwrap_or_default();
    let expected = (1..=20)
        .take_while(|n| text.contains(&format!("{{{{{n}}}}}")))
        .count();
    let given = t
        .get("components")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|c| c["type"] == "body")
        .map(|c| c["parameters"].as_array().map_or(0, Vec::len))
        .sum::<usize>();
    (expected != given).then_some((
        132000,
        "(#132000) Number of parameters does not match the expected number of params",
    ))
}

fn rate_limited(state: &Shared, phone_number_id: &str) -> bool {
    let mut st = lock(state);
    let Some(limit) = st.rate_limit else {
        return false;
    };
    let now = Instant::now();
    let w = st
        .windows
        .entry(phone_number_id.to_owned())
        .or_insert((now, 0));
    if now.duration_since(w.0) >= Duration::from_secs(1) {
        *w = (now, 0);
    }
    if w.1 >= limit {
        return true;
    }
    w.1 += 1;
    false
}

enum Accepted {
    Message(String),
    MarkRead,
}

fn validate(b: &Value) -> Result<Accepted, &'static str> {
    let o = b.as_object().ok_or("body is not an object")?;
    if o.get("messaging_product").and_then(Value::as_str) != Some("whatsapp") {
        return Err("messaging_product must be whatsapp");
    }
    if o.get("status").and_then(Value::as_str) == Some("read") {
        o.get("message_id")
            .and_then(Value::as_str)
            .ok_or("message_id is required")?;
        return Ok(Accepted::MarkRead);
    }
    match o.get("recipient_type").map(Value::as_str) {
        None | Some(Some("individual")) | Some(Some("group")) => {}
        _ => return Err("recipient_type is invalid"),
    }
    let to = o
        .get("to")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or("to is required")?;
    let ty = o.get("type").and_then(Value::as_str).unwrap_or("text");
    let content = o.get(ty).ok_or("the object named by type is missing")?;
    match ty {
        "text" => {
            let body = content
                .get("body")
                .and_then(Value::as_str)
                .ok_or("text.body is required")?;
            if body.is_empty() || body.chars().count() > 4096 {
                return Err("text.body must be 1 to 4096 characters");
            }
        }
        "template" => {
            content
                .get("name")
                .and_then(Value::as_str)
                .ok_or("template.name is required")?;
            content
                .get("language")
                .and_then(|l| l.get("code"))
                .and_then(Value::as_str)
                .ok_or("template.language.code is required")?;
        }
        "image" | "audio" | "video" | "document" | "sticker" => {
            if content.get("id").is_none() && content.get("link").is_none() {
                return Err("media needs id or link");
            }
        }
        "reaction" => {
            content
                .get("message_id")
                .and_then(Value::as_str)
                .ok_or("reaction.message_id is required")?;
        }
        "interactive" | "location" | "contacts" => {}
        _ => return Err("unknown message type"),
    }
    if let Some(ctx) = o.get("context") {
        ctx.get("message_id")
            .and_then(Value::as_str)
            .ok_or("context.message_id is required")?;
    }
    Ok(Accepted::Message(to.to_owned()))
}
