//! The one error type of the API and its one JSON shape (RFC 9457 problem details).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use smartchat_core::CoreError;

/// An error on its way to becoming an HTTP response.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// From the core.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// Not ready to serve (database unreachable, migrations pending).
    #[error("not ready: {0}")]
    NotReady(String),
}

/// RFC 9457 problem details: every error of the API has this shape (served as
/// `application/problem+json`); some carry extension members, e.g. `position` for a search
/// query syntax error or `graph_code` for an error of Meta's Graph API.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(example = json!({
    "type": "https://smartchat.invalid/problems/not_found",
    "title": "Not Found",
    "status": 404,
    "code": "not_found",
    "detail": "conversation not found"
}))]
pub struct Problem {
    /// A URI naming the problem type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary.
    pub title: String,
    /// HTTP status.
    pub status: u16,
    /// Stable machine-readable code.
    #[schema(value_type = String)]
    pub code: &'static str,
    /// Human explanation (never personal data; generic for 5xx).
    pub detail: String,
}

impl AppError {
    fn parts(&self) -> (StatusCode, &'static str, String) {
        match self {
            Self::NotReady(d) => (StatusCode::SERVICE_UNAVAILABLE, "not_ready", d.clone()),
            Self::Core(e) => core_parts(e),
        }
    }
}

/// The one mapping of a core error to a status, a stable code and a detail (generic for
/// 5xx), shared by every error type of the API.
pub(crate) fn core_parts(e: &CoreError) -> (StatusCode, &'static str, String) {
    match e {
        CoreError::NotFound { what } => (
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        ),
        CoreError::Conflict { what } => (
            StatusCode::CONFLICT,
            "conflict",
            format!("{what} already exists"),
        ),
        CoreError::Invalid { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid", e.to_string()),
        CoreError::Shredded { .. } => (StatusCode::GONE, "shredded", e.to_string()),
        e if e.is_transient() => (
            StatusCode::SERVICE_UNAVAILABLE,
            "database_unavailable",
            "the database is unavailable; try again later".into(),
        ),
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error".into(),
        ),
    }
}

/// A problem-details response with extension members (RFC 9457 §3.2), e.g. the position
/// of a query syntax error.
pub fn problem_with(
    status: StatusCode,
    code: &'static str,
    detail: &str,
    extensions: serde_json::Map<String, serde_json::Value>,
) -> Response {
    let mut body = serde_json::json!({
        "type": format!("https://smartchat.invalid/problems/{code}"),
        "title": status.canonical_reason().unwrap_or("error"),
        "status": status.as_u16(),
        "code": code,
        "detail": detail,
    });
    if let Some(obj) = body.as_object_mut() {
        for (k, v) in extensions {
            obj.entry(k).or_insert(v);
        }
    }
    let mut res = (status, axum::Json(body)).into_response();
    res.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/problem+json"),
    );
    res
}

/// A problem-details response for errors that are not [`AppError`]s.
pub fn problem(status: StatusCode, code: &'static str, detail: &str) -> Response {
    let body = Problem {
        kind: format!("https://smartchat.invalid/problems/{code}"),
        title: status.canonical_reason().unwrap_or("error").to_owned(),
        status: status.as_u16(),
        code,
        detail: detail.to_owned(),
    };
    let mut res = (status, axum::Json(body)).into_response();
    res.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/problem+json"),
    );
    res
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, code, detail) = self.parts();
        if status.is_server_error() {
            // Logged once, here; the body stays generic.
            tracing::error!(error = %self, code, "request failed");
        }
        problem(status, code, &detail)
    }
}

/// A JSON request body whose rejections are problem details too: 415 without a JSON
/// content type, 400 for malformed JSON, 422 for JSON of the wrong shape; 413 (from the
/// body limit) stays 413.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonBody<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for JsonBody<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Response> {
        use axum::extract::rejection::JsonRejection;
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(rejection) => {
                let (status, code) = match &rejection {
                    JsonRejection::MissingJsonContentType(_) => {
                        (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
                    }
                    JsonRejection::JsonSyntaxError(_) => {
                        (StatusCode::BAD_REQUEST, "malformed_json")
                    }
                    JsonRejection::JsonDataError(_) => {
                        (StatusCode::UNPROCESSABLE_ENTITY, "invalid")
                    }
                    _ if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                        (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large")
                    }
                    _ => (StatusCode::BAD_REQUEST, "bad_request"),
                };
                // The rejection's text names the field and the position, never a value.
                Err(problem(status, code, &rejection.body_text()))
            }
        }
    }
}

/// A query string whose rejections are problem details too (400 `invalid_parameter`,
/// naming the parameter, never its value), where axum's own `Query` answers in plain text.
#[derive(Debug, Clone, Copy, Default)]
pub struct QueryParams<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for QueryParams<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Response> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Self(v)),
            Err(rejection) => Err(problem(
                StatusCode::BAD_REQUEST,
                "invalid_parameter",
                &rejection.body_text(),
            )),
        }
    }
}

#[cfg(test)]
#[expect(
    clippy::unwrap_used,
    reason = "a test fails loudly on what it does not expect"
)]
mod tests {
    use super::{JsonBody, QueryParams};
    use axum::body::Body;
    use axum::http::{Request, StatusCode, header};
    use axum::routing::{get, post};
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    #[derive(Debug, serde::Deserialize)]
    struct Page {
        #[expect(dead_code, reason = "only parsed")]
        limit: Option<i64>,
    }

    async fn call(
        app: axum::Router,
        req: Request<Body>,
    ) -> (StatusCode, String, serde_json::Value) {
        let res = app.oneshot(req).await.unwrap();
        let status = res.status();
        let ct = res
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            ct,
            serde_json::from_slice(&bytes).unwrap_or_default(),
        )
    }

    #[tokio::test]
    async fn a_bad_query_string_is_a_problem_not_plain_text() {
        let app = axum::Router::new().route(
            "/x",
            get(|QueryParams(_p): QueryParams<Page>| async { "ok" }),
        );
        let (status, ct, body) = call(
            app.clone(),
            Request::get("/x?limit=lots").body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(ct, "application/problem+json");
        assert_eq!(body["code"], "invalid_parameter", "{body}");
        assert_eq!(body["status"], 400);
        assert!(body["detail"].as_str().unwrap().contains("limit"), "{body}");
        assert!(!body["detail"].as_str().unwrap().contains("lots"), "{body}");
        let (status, _, _) =
            call(app, Request::get("/x?limit=5").body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn a_bad_json_body_is_a_problem() {
        let app =
            axum::Router::new().route("/x", post(|JsonBody(_p): JsonBody<Page>| async { "ok" }));
        let req = |ct: &str, body: &'static str| {
            Request::post("/x")
                .header(header::CONTENT_TYPE, ct)
                .body(Body::from(body))
                .unwrap()
        };
        for (r, want, code) in [
            (
                req("application/json", "{"),
                StatusCode::BAD_REQUEST,
                "malformed_json",
            ),
            (
                req("application/json", "{\"limit\":\"x\"}"),
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
            ),
            (
                req("text/plain", "{}"),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
            ),
        ] {
            let (status, ct, body) = call(app.clone(), r).await;
            assert_eq!(status, want, "{body}");
            assert_eq!(ct, "application/problem+json");
            assert_eq!(body["code"], code);
        }
    }
}
