//! The OpenAPI 3.1 document of the versioned JSON API (`/api/v1`), generated from the
//! handlers: each `/api/v1` route is registered through [`routes()`] with utoipa-axum's
//! `routes!`, which takes the method and path from the handler's `#[utoipa::path]`, so a
//! route cannot be served without being documented (and a unit test refuses a plain
//! `.route("/api/v1…")` anywhere in this crate). [`document`] adds what every operation
//! shares: the security schemes (bearer JWT; the session cookie, plus `X-CSRF-Token` for a
//! state-changing request) and the error responses, all `application/problem+json` with
//! the one [`Problem`] schema. The public routes outside `/api/v1` (webhooks, `/rights/…`,
//! `/b/{token}`, `/auth/…`, `/login/…`, `/.well-known/…`, health checks) are not in it.
//!
//! Served unauthenticated at [`OPENAPI_PATH`].

use std::sync::OnceLock;

use axum::Json;
use axum::response::{IntoResponse, Response};
use utoipa::OpenApi as _;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::error::Problem;

/// Where the document is served.
pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "smartchat API",
        description = "The owners' versioned JSON API. Authenticate with a bearer access token \
            (JWT from the configured identity provider) or the portal's session cookie; a \
            session request that changes state also sends the session's CSRF token in \
            `X-CSRF-Token` (from `GET /api/v1/me`). Errors are RFC 9457 problem details."
    ),
    components(schemas(Problem)),
    tags(
        (name = "meta", description = "This document"),
        (name = "members", description = "Who is calling; members and roles"),
        (name = "conversations", description = "Conversations, replies, take-over and hand-back"),
        (name = "settings", description = "The tenant's assistant settings"),
        (name = "sandbox", description = "Playing the customer on a number not connected to Meta"),
        (name = "search", description = "Full-text search of the tenant's conversations"),
        (name = "leads", description = "Leads extracted from conversations"),
        (name = "follow-ups", description = "Follow-up rules and the follow-ups they produce"),
        (name = "templates", description = "WhatsApp message templates"),
        (name = "rights", description = "Data subjects' rights requests"),
        (name = "legal-holds", description = "Legal holds that make deletions wait"),
        (name = "account", description = "The account's end, export and retention"),
        (name = "analytics", description = "Anonymized counts"),
        (name = "ledger", description = "The tenant's audit ledger entries, checkpoint and bundle for auditors"),
    )
)]
struct ApiDoc;

/// Every `/api/v1` route with its documentation. The app merges it into its router; the
/// document is [`document`].
pub fn routes() -> OpenApiRouter<AppState> {
    use crate::templates;
    use crate::{
        account, analytics, conversations as conv, follow_ups, leads, ledger_api, rights, search,
        settings, team,
    };
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(get_openapi))
        .merge(crate::auth::api_routes())
        .routes(routes!(conv::list))
        .routes(routes!(conv::messages, conv::reply))
        .routes(routes!(conv::take_over))
        .routes(routes!(conv::hand_back))
        .routes(routes!(conv::get_assistant, conv::put_assistant))
        .routes(routes!(conv::sandbox))
        .routes(routes!(search::get_search))
        .routes(routes!(leads::list))
        .routes(routes!(leads::export_csv))
        .routes(routes!(leads::get_one, leads::patch))
        .routes(routes!(follow_ups::list_rules, follow_ups::create_rule))
        .routes(routes!(follow_ups::replace_rule))
        .routes(routes!(follow_ups::list_follow_ups))
        .routes(routes!(templates::list, templates::put))
        .routes(routes!(templates::sync))
        .routes(routes!(rights::list, rights::open))
        .routes(routes!(rights::get_one))
        .routes(routes!(rights::extend))
        .routes(routes!(rights::reject))
        .routes(routes!(rights::report))
        .routes(routes!(rights::list_holds, rights::place_hold))
        .routes(routes!(rights::release_hold))
        .routes(routes!(account::get_account))
        .routes(routes!(account::terminate))
        .routes(routes!(account::export))
        .routes(routes!(analytics::get_analytics))
        .routes(routes!(settings::get_profile, settings::put_profile))
        .routes(routes!(settings::list_numbers, settings::connect_number))
        .routes(routes!(settings::connect_sandbox_number))
        .routes(routes!(settings::disconnect_number))
        .routes(routes!(settings::get_policy, settings::put_policy))
        .routes(routes!(settings::get_records))
        .routes(routes!(team::list_members, team::invite_member))
        .routes(routes!(team::remove_member))
        .routes(routes!(ledger_api::list_entries))
        .routes(routes!(ledger_api::get_checkpoint))
        .routes(routes!(ledger_api::export))
}

/// The document: the routes' operations plus the shared security schemes and error
/// responses. Built once.
pub fn document() -> &'static OpenApi {
    static DOC: OnceLock<OpenApi> = OnceLock::new();
    DOC.get_or_init(|| complete(routes().into_openapi()))
}

/// `GET /api/v1/openapi.json`: this document (no authentication).
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    operation_id = "get_openapi",
    tag = "meta",
    security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object))
)]
pub async fn get_openapi() -> Response {
    Json(document()).into_response()
}

/// The reusable error responses: (component name, status, description, for which
/// operations).
#[derive(Clone, Copy, PartialEq, Eq)]
enum When {
    /// Every authenticated operation.
    Always,
    /// Operations with a request body.
    WithBody,
    /// Operations with a request body or parameters.
    WithInput,
    /// Operations that change state (not GET or HEAD).
    Writing,
}

const ERRORS: &[(&str, &str, &str, When)] = &[
    (
        "BadRequest",
        "400",
        "A parameter or the body is malformed (`invalid_parameter`, `malformed_json`, …)",
        When::WithInput,
    ),
    (
        "Unauthenticated",
        "401",
        "No credentials, or a bearer token or session that is not valid (with \
         `WWW-Authenticate: Bearer`)",
        When::Always,
    ),
    (
        "Forbidden",
        "403",
        "The member's role does not allow this, the identity is not a member, or the session's \
         CSRF token is missing or wrong (`forbidden`, `not_a_member`, `csrf`)",
        When::Always,
    ),
    (
        "NotFound",
        "404",
        "No such resource in the caller's tenant (one of another tenant is not found either)",
        When::Always,
    ),
    (
        "Conflict",
        "409",
        "The resource's state does not allow this, or it exists already (`conflict`)",
        When::Writing,
    ),
    (
        "PayloadTooLarge",
        "413",
        "The body is larger than 1 MiB",
        When::WithBody,
    ),
    (
        "UnsupportedMediaType",
        "415",
        "The body is not `application/json`",
        When::WithBody,
    ),
    (
        "Unprocessable",
        "422",
        "A value breaks a rule (`invalid`, with the field and the rule)",
        When::Always,
    ),
    (
        "Unavailable",
        "503",
        "The database is briefly unavailable (`database_unavailable`); try again",
        When::Always,
    ),
];

fn problem_response(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            PROBLEM_JSON,
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = (bool, &mut Operation)> {
    [
        (true, item.get.as_mut()),
        (true, item.head.as_mut()),
        (false, item.post.as_mut()),
        (false, item.put.as_mut()),
        (false, item.patch.as_mut()),
        (false, item.delete.as_mut()),
    ]
    .into_iter()
    .filter_map(|(safe, op)| op.map(|op| (safe, op)))
}

/// Adds the security schemes, each operation's security requirements (none for this
/// document) and the shared error responses (a response an operation documents itself
/// is kept).
fn complete(mut doc: OpenApi) -> OpenApi {
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .description(Some(
                    "An RFC 9068 access token (`typ` at+jwt) of the configured identity \
                     provider for this API's audience. An identity that is a member of \
                     several tenants names one in the `Smartchat-Tenant` header.",
                ))
                .build(),
        ),
    );
    components.add_security_scheme(
        "session",
        SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
            "smartchat_session",
            "The portal's session cookie (`__Host-smartchat_session` when served over https).",
        ))),
    );
    components.add_security_scheme(
        "csrf",
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
            crate::auth::CSRF_HEADER,
            "The session's CSRF token (`csrf_token` of `GET /api/v1/me`), required with the \
             session cookie on every request that is not GET or HEAD.",
        ))),
    );
    let mut used = Vec::new();
    for item in doc.paths.paths.values_mut() {
        let path_params = item.parameters.as_ref().is_some_and(|p| !p.is_empty());
        for (safe, op) in operations(item) {
            if op.operation_id.as_deref() == Some("get_openapi") {
                continue;
            }
            let none: [&str; 0] = [];
            op.security = Some(if safe {
                vec![
                    SecurityRequirement::new("bearer", none),
                    SecurityRequirement::new("session", none),
                ]
            } else {
                vec![
                    SecurityRequirement::new("bearer", none),
                    SecurityRequirement::new("session", none).add("csrf", none),
                ]
            });
            let with_body = op.request_body.is_some();
            let with_params = path_params || op.parameters.as_ref().is_some_and(|p| !p.is_empty());
            for (name, status, _, when) in ERRORS {
                let applies = match when {
                    When::Always => true,
                    When::WithBody => with_body,
                    When::WithInput => with_body || with_params,
                    When::Writing => !safe,
                };
                if applies && !op.responses.responses.contains_key(*status) {
                    op.responses.responses.insert(
                        (*status).to_owned(),
                        RefOr::Ref(Ref::from_response_name(*name)),
                    );
                    used.push(*name);
                }
            }
        }
    }
    for (name, _, description, _) in ERRORS {
        if used.contains(name) && !components.responses.contains_key(*name) {
            components
                .responses
                .insert((*name).to_owned(), RefOr::T(problem_response(description)));
        }
    }
    doc
}

/// A schema for a file body (zip, CSV, Markdown): a string of that media type.
pub struct File;

impl utoipa::PartialSchema for File {
    fn schema() -> RefOr<utoipa::openapi::schema::Schema> {
        ObjectBuilder::new().schema_type(Type::String).into()
    }
}

impl utoipa::ToSchema for File {}

#[cfg(test)]
#[expect(
    clippy::unwrap_used,
    reason = "a test fails loudly on what it does not expect"
)]
mod tests {
    /// Every `/api/v1` route goes through [`super::routes`] (`routes!`), so the document
    /// names it: a plain axum `.route("/api/v1…")` in this crate would serve an undocumented
    /// route.
    #[test]
    fn no_api_route_bypasses_the_document() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut stack = vec![root];
        let mut seen = 0;
        let mut offenders = Vec::new();
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    seen += 1;
                    let text = std::fs::read_to_string(&path).unwrap();
                    // The code without comments or whitespace.
                    let squashed: String = text
                        .lines()
                        .filter(|l| !l.trim_start().starts_with("//"))
                        .flat_map(str::split_whitespace)
                        .collect();
                    for needle in [".route(\"/api/", ".route_service(\"/api/", ".nest(\"/api"] {
                        if squashed.contains(needle) {
                            offenders.push(format!("{}: {needle}", path.display()));
                        }
                    }
                }
            }
        }
        assert!(seen > 10, "the walk found the sources");
        assert!(
            offenders.is_empty(),
            "undocumented /api routes: {offenders:?}"
        );
    }

    #[test]
    fn the_document_is_openapi_3_1_with_problem_errors() {
        let doc = serde_json::to_value(super::document()).unwrap();
        assert!(
            doc["openapi"].as_str().unwrap().starts_with("3.1"),
            "{}",
            doc["openapi"]
        );
        let paths = doc["paths"].as_object().unwrap();
        assert!(
            paths.keys().all(|p| p.starts_with("/api/v1/")),
            "{:?}",
            paths.keys()
        );
        let mut ids = Vec::new();
        for (path, item) in paths {
            for (method, op) in item.as_object().unwrap() {
                if !["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                    continue;
                }
                let id = op["operationId"].as_str().unwrap().to_owned();
                assert!(
                    id.contains('_') && id == id.to_lowercase(),
                    "{method} {path}: {id}"
                );
                assert!(!ids.contains(&id), "duplicate operation id {id}");
                ids.push(id);
                if path != super::OPENAPI_PATH {
                    assert!(op["security"].is_array(), "{method} {path} has no security");
                    assert!(
                        op["responses"]["401"].is_object(),
                        "{method} {path}: no 401"
                    );
                }
            }
        }
        assert!(ids.len() > 30, "{ids:?}");
        assert_eq!(
            doc["components"]["responses"]["NotFound"]["content"][super::PROBLEM_JSON]["schema"]["$ref"],
            "#/components/schemas/Problem"
        );
    }
}
