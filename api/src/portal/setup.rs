//! First run of the embedded default: the one-time link opened on a server that has no
//! business yet shows a form that creates one, then logs the operator in as its owner.
//! The link's token is the credential: the form carries it back, and it is consumed only
//! when the business is created (a refused form leaves it usable).

use axum::Form;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;
use serde_json::json;
use smartchat_core::members::Identity;
use smartchat_core::store::{NewTenant, Profile};

use super::PageError;
use super::html;
use crate::app::AppState;
use crate::auth::AuthState;

/// A handle from a business name: lower-case ASCII letters and digits, runs of anything
/// else as one `-`, at most 40 characters.
pub fn slug(name: &str) -> String {
    let mut out = String::new();
    for ch in name.chars().flat_map(char::to_lowercase) {
        if ch.is_ascii_alphanumeric() {
            out.push(ch);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    out.trim_end_matches('-').chars().take(40).collect()
}

/// The form that creates the first business (`problem`: why the last try was refused).
pub fn setup_page(token: &str, problem: Option<&str>) -> html::Page {
    html::bare(
        "Set up your business",
        html! {
            h1 { "Welcome to smartchat" }
            p { "This server has no business yet. Name yours; you will then describe it, connect a number "
                "(or a sandbox number) and try your assistant." }
            @if let Some(p) = problem { p.problem { (p) } }
            form method="post" action="/setup" {
                input type="hidden" name="token" value=(token);
                label for="name" { "Business name" }
                input #name type="text" name="name" required maxlength="120";
                label for="business_type" { "Kind of business" }
                input #business_type type="text" name="business_type" placeholder="hair salon" required;
                label for="timezone" { "Time zone (IANA)" }
                input #timezone type="text" name="timezone" value="Asia/Kolkata" required;
                button #create-business type="submit" { "Create" }
            }
        },
    )
}

/// The first-run form.
#[derive(Debug, Deserialize)]
pub struct SetupForm {
    token: String,
    name: String,
    business_type: String,
    timezone: String,
}

/// `POST /setup`: creates the first business and logs the operator in as its owner.
pub async fn create(
    State(state): State<AppState>,
    Form(form): Form<SetupForm>,
) -> Result<Response, PageError> {
    let auth: AuthState = axum::extract::FromRef::from_ref(&state);
    if !auth.one_time_login().is_live(&form.token) {
        return Err(PageError::new(
            StatusCode::UNAUTHORIZED,
            "This login link is unknown or already used.",
        ));
    }
    if !state.store().list_tenants().await?.is_empty() {
        return Err(PageError::new(
            StatusCode::CONFLICT,
            "A business exists already on this server: open the login link again to log in.",
        ));
    }
    let refuse = |why: &str| {
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            setup_page(&form.token, Some(why)),
        )
            .into_response()
    };
    let name = form.name.trim();
    let handle = match slug(name).parse() {
        Ok(h) if !name.is_empty() => h,
        _ => return Ok(refuse("The name needs at least one letter or digit.")),
    };
    let tz = form.timezone.trim();
    if jiff::tz::TimeZone::get(tz).is_err() {
        return Ok(refuse(
            "The time zone must be an IANA name such as Asia/Kolkata.",
        ));
    }
    let profile = Profile(json!({
        "name": name,
        "business_type": form.business_type.trim(),
        "timezone": tz,
        "handoff_message": "Thank you! A person from our team will reply to you soon.",
    }));
    // The token is consumed only now, with the business about to be made.
    if !auth.one_time_login().take(&form.token) {
        return Err(PageError::new(
            StatusCode::UNAUTHORIZED,
            "This login link is unknown or already used.",
        ));
    }
    let tenant = match state
        .store()
        .create_tenant(NewTenant {
            handle,
            profile,
            phone_number_id: None,
            access_token: None,
        })
        .await
    {
        Ok(t) => t,
        Err(e) => {
            auth.one_time_login().restore(&form.token);
            return Err(e.into());
        }
    };
    match crate::auth::session::start_session(&auth, &Identity::Operator, Some(tenant)).await {
        Ok((secret, max_age)) => Ok(crate::auth::session::redirect_with_session(
            &auth, &secret, max_age,
        )),
        Err(e) => {
            // The business exists but nobody is logged in: the link stays usable, and logs
            // in (`/login/token/…`) now that the business exists.
            auth.one_time_login().restore(&form.token);
            Err(e.into())
        }
    }
}
