//! Onboarding and settings: the business profile the assistant answers from, the WhatsApp
//! number, the AI providers and their keys, and the policy choices a business may tighten.

use axum::Form;
use axum::extract::{Query, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::html::{self, csrf, text};
use super::{ApiReply, Notice, PageError, Viewer, done};
use crate::app::AppState;

const DAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// Providers a business may put in its chain (the offline assistant always ends it).
const PROVIDERS: [&str; 2] = ["openai", "deepseek"];

/// What the page shows besides the stored settings: a refused form's values and problem.
#[derive(Default)]
struct Refused<'a> {
    section: &'a str,
    detail: String,
    profile: Option<Value>,
    policy_text: Option<String>,
}

/// `GET /portal/onboarding`.
pub async fn page(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(notice): Query<Notice>,
) -> Result<Response, PageError> {
    render(
        &state,
        &viewer,
        notice.text(),
        Refused::default(),
        StatusCode::OK,
    )
    .await
}

async fn render(
    state: &AppState,
    viewer: &Viewer,
    notice: Option<&str>,
    refused: Refused<'_>,
    status: StatusCode,
) -> Result<Response, PageError> {
    let profile = match refused.profile.clone() {
        Some(p) => p,
        None => viewer.get(state, "/api/v1/profile").await?["profile"].take(),
    };
    let numbers = viewer.get(state, "/api/v1/numbers").await?;
    let assistant = viewer.get(state, "/api/v1/settings/assistant").await?;
    let policy = viewer.get(state, "/api/v1/policy").await?;
    let problem = |section: &str| -> Option<Markup> {
        (refused.section == section).then(|| html! { p.problem { (refused.detail) } })
    };
    let empty = Vec::new();
    let number_list = numbers["numbers"].as_array().unwrap_or(&empty);
    let page = html::page(
        viewer,
        "Settings",
        "/portal/onboarding",
        notice,
        html! {
            p.muted { "Four steps: describe your business, connect a WhatsApp number (or a sandbox number to try things first), "
                "choose the AI providers, and tighten the privacy policy where your business needs more." }
            section.card #step-profile {
                h2 { "1. Business profile" }
                p.muted { "Your assistant answers only from this: opening hours, services, staff and booking links." }
                @if let Some(p) = problem("profile") { (p) }
                (profile_form(viewer, &profile))
            }
            section.card #step-number {
                h2 { "2. WhatsApp number" }
                @if number_list.is_empty() {
                    p { "No number is connected yet." }
                } @else {
                    table #numbers {
                        thead { tr { th { "Phone number id" } th { "Business account" } th { "Kind" } } }
                        tbody {
                            @for n in number_list {
                                tr {
                                    td { (text(&n["phone_number_id"])) }
                                    td { (text(&n["waba_id"])) }
                                    td { @if n["sandbox"] == true { "sandbox (replies stay here)" } @else { "WhatsApp Cloud API" } }
                                }
                            }
                        }
                    }
                }
                @if let Some(p) = problem("number") { (p) }
                form method="post" action="/portal/onboarding/sandbox" {
                    (csrf(viewer))
                    button #connect-sandbox type="submit" { "Add a sandbox number to try the assistant" }
                }
                details {
                    summary { "Connect a WhatsApp Business number (Meta Cloud API)" }
                    form method="post" action="/portal/onboarding/number" {
                        (csrf(viewer))
                        label for="phone_number_id" { "Phone number id (from Meta's WhatsApp Manager)" }
                        input #phone_number_id type="text" name="phone_number_id" inputmode="numeric" required;
                        label for="waba_id" { "WhatsApp Business account id" }
                        input #waba_id type="text" name="waba_id" inputmode="numeric";
                        label for="access_token" { "Access token (stored encrypted with your business's key)" }
                        input #access_token type="password" name="access_token" autocomplete="off" required;
                        button type="submit" { "Connect" }
                    }
                }
            }
            section.card #step-assistant {
                h2 { "3. AI providers" }
                @if let Some(p) = problem("assistant") { (p) }
                (assistant_form(viewer, &assistant))
            }
            section.card #step-policy {
                h2 { "4. Privacy policy: your tightenings" }
                @if let Some(p) = problem("policy") { (p) }
                (policy_form(viewer, &policy, refused.policy_text.as_deref()))
            }
        },
    );
    Ok((status, page).into_response())
}

fn lines(v: &Value, f: impl Fn(&Value) -> String) -> String {
    v.as_array()
        .map(|a| a.iter().map(f).collect::<Vec<_>>().join("\n"))
        .unwrap_or_default()
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

fn profile_form(viewer: &Viewer, p: &Value) -> Markup {
    let services = lines(&p["services"], |x| {
        let mut parts = vec![s(&x["name"]), s(&x["price"])];
        let dur = x["duration_minutes"]
            .as_u64()
            .map(|d| d.to_string())
            .unwrap_or_default();
        let desc = s(&x["description"]);
        if !dur.is_empty() || !desc.is_empty() {
            parts.push(dur);
            parts.push(desc);
        }
        trim_bars(parts.join(" | "))
    });
    let staff = lines(&p["staff"], |x| {
        trim_bars(format!("{} | {}", s(&x["name"]), s(&x["role"])))
    });
    let links = lines(&p["booking_links"], |x| {
        format!("{} | {}", s(&x["label"]), s(&x["url"]))
    });
    let languages = p["languages"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    html! {
        form #profile-form method="post" action="/portal/onboarding/profile" {
            (csrf(viewer))
            label for="name" { "Business name" }
            input #name type="text" name="name" value=(s(&p["name"])) required;
            label for="business_type" { "Kind of business" }
            input #business_type type="text" name="business_type" value=(s(&p["business_type"])) placeholder="hair salon" required;
            label for="timezone" { "Time zone (IANA)" }
            input #timezone type="text" name="timezone" value=(p["timezone"].as_str().unwrap_or("Asia/Kolkata")) required;
            fieldset {
                legend { "Opening hours (e.g. 09:00-13:00, 14:00-19:00; empty for closed)" }
                @for d in DAYS {
                    label for={ "hours_" (d) } { (d) }
                    input id={ "hours_" (d) } type="text" name={ "hours_" (d) } value=(hours_text(&p["hours"][d]));
                }
            }
            label for="services" { "Services, one per line: name | price | minutes | description" }
            textarea #services name="services" { (services) }
            label for="staff" { "Staff, one per line: name | role" }
            textarea #staff name="staff" { (staff) }
            label for="booking_links" { "Booking links, one per line: label | https://…" }
            textarea #booking_links name="booking_links" { (links) }
            label for="greeting" { "Greeting" }
            input #greeting type="text" name="greeting" value=(s(&p["greeting"]));
            label for="handoff_message" { "Message when a customer asks for a person" }
            input #handoff_message type="text" name="handoff_message" value=(s(&p["handoff_message"])) required;
            label for="languages" { "Languages (e.g. en, hi)" }
            input #languages type="text" name="languages" value=(languages);
            label for="location" { "Address or directions" }
            input #location type="text" name="location" value=(s(&p["location"]));
            label for="contact" { "Business contact" }
            input #contact type="text" name="contact" value=(s(&p["contact"]));
            button #save-profile type="submit" { "Save profile" }
        }
    }
}

fn trim_bars(s: String) -> String {
    s.trim_end_matches([' ', '|']).to_owned()
}

fn hours_text(v: &Value) -> String {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|i| format!("{}-{}", s(&i["open"]), s(&i["close"])))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// The profile form as submitted.
#[derive(Debug, Deserialize)]
pub struct ProfileForm {
    name: String,
    business_type: String,
    timezone: String,
    #[serde(default)]
    hours_monday: String,
    #[serde(default)]
    hours_tuesday: String,
    #[serde(default)]
    hours_wednesday: String,
    #[serde(default)]
    hours_thursday: String,
    #[serde(default)]
    hours_friday: String,
    #[serde(default)]
    hours_saturday: String,
    #[serde(default)]
    hours_sunday: String,
    #[serde(default)]
    services: String,
    #[serde(default)]
    staff: String,
    #[serde(default)]
    booking_links: String,
    #[serde(default)]
    greeting: String,
    handoff_message: String,
    #[serde(default)]
    languages: String,
    #[serde(default)]
    location: String,
    #[serde(default)]
    contact: String,
}

fn opt(s: &str) -> Value {
    let t = s.trim();
    if t.is_empty() { Value::Null } else { json!(t) }
}

/// `|`-separated fields of each non-empty line.
fn rows(text: &str) -> impl Iterator<Item = Vec<String>> + '_ {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| l.split('|').map(|f| f.trim().to_owned()).collect())
}

impl ProfileForm {
    /// The profile JSON the API takes (the API validates it).
    fn to_json(&self) -> Result<Value, String> {
        let mut hours = Map::new();
        for (day, text) in DAYS.iter().zip([
            &self.hours_monday,
            &self.hours_tuesday,
            &self.hours_wednesday,
            &self.hours_thursday,
            &self.hours_friday,
            &self.hours_saturday,
            &self.hours_sunday,
        ]) {
            let mut intervals = Vec::new();
            for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let Some((open, close)) = part.split_once('-') else {
                    return Err(format!("{day}: write each interval as 09:00-18:00"));
                };
                intervals.push(json!({ "open": open.trim(), "close": close.trim() }));
            }
            hours.insert((*day).to_owned(), Value::Array(intervals));
        }
        let mut services = Vec::new();
        for r in rows(&self.services) {
            let field = |i: usize| r.get(i).map(String::as_str).unwrap_or_default();
            let minutes = match field(2) {
                "" => Value::Null,
                m => json!(m.parse::<u32>().map_err(|_| format!(
                    "service {}: minutes must be a whole number",
                    field(0)
                ))?),
            };
            services.push(json!({
                "name": field(0), "price": opt(field(1)), "duration_minutes": minutes,
                "description": field(3),
            }));
        }
        let staff: Vec<Value> = rows(&self.staff)
            .map(|r| json!({ "name": r.first().cloned().unwrap_or_default(), "role": r.get(1).cloned().unwrap_or_default() }))
            .collect();
        let mut links = Vec::new();
        for r in rows(&self.booking_links) {
            match r.as_slice() {
                [label, url] => links.push(json!({ "label": label, "url": url })),
                [url] => links.push(json!({ "label": "Book", "url": url })),
                _ => return Err("booking links: write each as label | https://…".into()),
            }
        }
        let languages: Vec<&str> = self
            .languages
            .split(',')
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        Ok(json!({
            "name": self.name.trim(),
            "business_type": self.business_type.trim(),
            "timezone": self.timezone.trim(),
            "hours": hours,
            "services": services,
            "staff": staff,
            "booking_links": links,
            "greeting": opt(&self.greeting),
            "handoff_message": self.handoff_message.trim(),
            "languages": languages,
            "location": opt(&self.location),
            "contact": opt(&self.contact),
        }))
    }
}

async fn refused(
    state: &AppState,
    viewer: &Viewer,
    section: &str,
    reply: ApiReply,
    profile: Option<Value>,
    policy_text: Option<String>,
) -> Result<Response, PageError> {
    if !reply.status.is_client_error() {
        return Err(PageError::new(reply.status, reply.detail()));
    }
    let detail = reply.detail();
    render(
        state,
        viewer,
        None,
        Refused {
            section,
            detail,
            profile,
            policy_text,
        },
        reply.status,
    )
    .await
}

/// `POST /portal/onboarding/profile`.
pub async fn save_profile(
    State(state): State<AppState>,
    viewer: Viewer,
    Form(form): Form<ProfileForm>,
) -> Result<Response, PageError> {
    let body = match form.to_json() {
        Ok(b) => b,
        Err(why) => {
            let r = ApiReply {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                json: json!({ "detail": why }),
            };
            return refused(&state, &viewer, "profile", r, None, None).await;
        }
    };
    let r = viewer
        .act(
            &state,
            "profile",
            Method::PUT,
            "/api/v1/profile",
            Some(&body),
        )
        .await?;
    if r.status.is_success() {
        return Ok(done("/portal/onboarding", "profile_saved"));
    }
    refused(&state, &viewer, "profile", r, Some(body), None).await
}

/// The number form.
#[derive(Debug, Deserialize)]
pub struct NumberForm {
    phone_number_id: String,
    #[serde(default)]
    waba_id: String,
    access_token: String,
}

/// `POST /portal/onboarding/number`.
pub async fn connect_number(
    State(state): State<AppState>,
    viewer: Viewer,
    Form(form): Form<NumberForm>,
) -> Result<Response, PageError> {
    let body = json!({
        "phone_number_id": form.phone_number_id.trim(),
        "waba_id": opt(&form.waba_id),
        "access_token": form.access_token.trim(),
    });
    let r = viewer
        .act(
            &state,
            "connect_number",
            Method::POST,
            "/api/v1/numbers",
            Some(&body),
        )
        .await?;
    if r.status.is_success() {
        return Ok(done("/portal/onboarding", "number_connected"));
    }
    refused(&state, &viewer, "number", r, None, None).await
}

/// `POST /portal/onboarding/sandbox`.
pub async fn sandbox_number(
    State(state): State<AppState>,
    viewer: Viewer,
) -> Result<Response, PageError> {
    let r = viewer
        .act(
            &state,
            "sandbox_number",
            Method::POST,
            "/api/v1/numbers/sandbox",
            None,
        )
        .await?;
    if r.status.is_success() {
        return Ok(done("/portal/onboarding", "sandbox_connected"));
    }
    refused(&state, &viewer, "number", r, None, None).await
}

fn assistant_form(viewer: &Viewer, a: &Value) -> Markup {
    let chain: Vec<String> = a["providers"]
        .as_array()
        .map(|v| {
            v.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let default_chain = a["providers"].is_null();
    let with_key = |p: &str| {
        a["keys"]
            .as_array()
            .is_some_and(|k| k.iter().any(|x| x == p))
    };
    html! {
        p.muted {
            "Replies are written by these providers in order, each tried when the one before fails; the offline "
            "assistant (answers from your profile, no AI provider) always comes last. "
            @if default_chain { "You use the platform's default chain." }
        }
        form method="post" action="/portal/onboarding/assistant" {
            (csrf(viewer))
            label for="providers" { "Providers in order (e.g. openai, deepseek; empty for the offline assistant only)" }
            input #providers type="text" name="providers" value=(chain.join(", "));
            @for p in PROVIDERS {
                label for={ "key_" (p) } { (p) " API key of your own (stored encrypted; never shown again)" }
                input id={ "key_" (p) } type="password" name={ "key_" (p) } autocomplete="off"
                    placeholder=(if with_key(p) { "a key is set; type to replace" } else { "none: the platform's key is used" });
                @if with_key(p) {
                    label { input type="checkbox" name={ "remove_" (p) } value="1"; " remove my " (p) " key" }
                }
            }
            button #save-assistant type="submit" { "Save AI providers" }
        }
    }
}

/// The assistant form.
#[derive(Debug, Deserialize)]
pub struct AssistantForm {
    #[serde(default)]
    providers: String,
    #[serde(default)]
    key_openai: String,
    #[serde(default)]
    key_deepseek: String,
    #[serde(default)]
    remove_openai: Option<String>,
    #[serde(default)]
    remove_deepseek: Option<String>,
}

/// `POST /portal/onboarding/assistant`.
pub async fn save_assistant(
    State(state): State<AppState>,
    viewer: Viewer,
    Form(form): Form<AssistantForm>,
) -> Result<Response, PageError> {
    let providers: Vec<&str> = form
        .providers
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    let mut keys = Map::new();
    for (name, key, remove) in [
        ("openai", &form.key_openai, &form.remove_openai),
        ("deepseek", &form.key_deepseek, &form.remove_deepseek),
    ] {
        if remove.is_some() {
            keys.insert(name.into(), Value::Null);
        } else if !key.trim().is_empty() {
            keys.insert(name.into(), json!(key.trim()));
        }
    }
    let body = json!({ "providers": providers, "keys": keys });
    let r = viewer
        .act(
            &state,
            "assistant_settings",
            Method::PUT,
            "/api/v1/settings/assistant",
            Some(&body),
        )
        .await?;
    if r.status.is_success() {
        return Ok(done("/portal/onboarding", "assistant_saved"));
    }
    refused(&state, &viewer, "assistant", r, None, None).await
}

fn policy_form(viewer: &Viewer, policy: &Value, submitted: Option<&str>) -> Markup {
    let current = submitted.map(str::to_owned).unwrap_or_else(|| {
        serde_json::to_string_pretty(&policy["overrides"]).unwrap_or_else(|_| "{}".into())
    });
    html! {
        p.muted {
            "The platform's policy (retention, AI providers, redaction, deadlines) applies to every business. "
            "You may only tighten it: forbid a processor, narrow what it receives, keep data for less time, "
            "redact more, answer rights requests sooner. A change that would loosen a rule is refused."
        }
        details {
            summary { "The policy in force" }
            pre #effective-policy { (serde_json::to_string_pretty(&policy["effective"]).unwrap_or_default()) }
        }
        form method="post" action="/portal/onboarding/policy" {
            (csrf(viewer))
            label for="overrides" { "Your tightenings (JSON)" }
            textarea #overrides name="overrides" rows="12" { (current) }
            button #save-policy type="submit" { "Apply" }
        }
    }
}

/// The policy form.
#[derive(Debug, Deserialize)]
pub struct PolicyForm {
    overrides: String,
}

/// `POST /portal/onboarding/policy`.
pub async fn save_policy(
    State(state): State<AppState>,
    viewer: Viewer,
    Form(form): Form<PolicyForm>,
) -> Result<Response, PageError> {
    let body: Value = match serde_json::from_str(&form.overrides) {
        Ok(v) => v,
        Err(e) => {
            let r = ApiReply {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                json: json!({ "detail": format!("not JSON: {e}") }),
            };
            return refused(&state, &viewer, "policy", r, None, Some(form.overrides)).await;
        }
    };
    let r = viewer
        .act(&state, "policy", Method::PUT, "/api/v1/policy", Some(&body))
        .await?;
    if r.status.is_success() {
        return Ok(done("/portal/onboarding", "policy_saved"));
    }
    refused(&state, &viewer, "policy", r, None, Some(form.overrides)).await
}
