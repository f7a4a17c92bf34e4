//! The OpenAPI 3.1 document (`GET /openapi.json`) and its page for people (`GET /docs`).
//!
//! The JSON routes are registered through `utoipa_axum`'s router from their `#[utoipa::path]`
//! annotations, so a route cannot exist without its entry. The server functions (the
//! dashboard's calls) are registered by Leptos; they are described here, and a test checks
//! that every one Leptos registered is in the document. `/docs` is rendered here from the
//! document itself: no CDN, no bundled assets.

use crate::domain::{
    BatchAttempts, CancelResponse, ErrorDetail, Found, IngestRequest, IngestResponse,
    IngestionPage, IngestionView, PaceView, QueueView, RecentIngestions, WriteAccess,
};
use axum::{
    http::header,
    response::{Html, IntoResponse, Response},
    Extension,
};
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;
use utoipa::{
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    Modify, OpenApi, ToSchema,
};

/// What the routes do not say themselves: title, the bearer scheme, the server functions.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "sluice",
        description = "Priority, rate-limited batch ingestion. IDs are split into batches and \
            handed to a downstream processor one batch per rate interval, highest priority \
            first. Every error answers `{\"error\": {\"code\", \"message\"}}`. When the server \
            has API tokens, writes need `Authorization: Bearer <token>`; with read tokens, \
            reads too."
    ),
    paths(
        sf_ingest,
        sf_status,
        sf_cancel,
        sf_ingestions,
        sf_ingestion,
        sf_find,
        sf_pace,
        sf_queue,
        sf_attempts,
        sf_pause,
        sf_retry,
        sf_rate,
        sf_access,
        openapi_json,
        docs_page
    ),
    modifiers(&Bearer),
    tags(
        (name = "ingestions", description = "Submit, follow and cancel work"),
        (name = "queue", description = "The queue as it stands"),
        (name = "events", description = "Push events (Server-Sent Events)"),
        (name = "operations", description = "Health, metrics, pause/resume, rate"),
        (name = "dashboard", description = "Server functions: the dashboard's calls into the \
            same service (JSON bodies; errors answer `{code, message}`)"),
        (name = "documentation", description = "This document"),
    )
)]
pub struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API token (SLUICE_API_TOKENS) for writes; a read token or an API \
                         token for reads when SLUICE_READ_TOKENS is set",
                    ))
                    .build(),
            ),
        );
    }
}

/// Every operation that reads or writes the store may meet an outage: 503 `store_unavailable`
/// (added here rather than to each annotation).
pub fn add_store_outage(openapi: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{schema::Ref, ContentBuilder, ResponseBuilder};
    let outage = ResponseBuilder::new()
        .description("The store is unreachable (`store_unavailable`); see `Retry-After`")
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build();
    for (path, item) in openapi.paths.paths.iter_mut() {
        if matches!(
            path.as_str(),
            "/healthz" | "/readyz" | "/openapi.json" | "/docs"
        ) {
            continue;
        }
        for op in [&mut item.get, &mut item.post, &mut item.put]
            .into_iter()
            .flatten()
        {
            op.responses
                .responses
                .entry("503".into())
                .or_insert_with(|| outage.clone().into());
        }
    }
}

/// Event streams: each message on the wire is `id`, `event` and `data` lines, `data` being an
/// [`Event`](crate::domain::Event) as JSON. Described as such (the OpenAPI 3.2 way of typing a
/// stream's items; heartbeats are comments and carry no message).
pub fn describe_event_streams(openapi: &mut utoipa::openapi::OpenApi) {
    use crate::domain::EventBody;
    use utoipa::openapi::{
        schema::{ObjectBuilder, Ref, Type},
        ContentBuilder,
    };
    let message = ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some("One Server-Sent Events message"))
        .property(
            "id",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("^[0-9]+$"))
                .description(Some("The event id; resume after it with `Last-Event-ID`")),
        )
        .property(
            "event",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(EventBody::NAMES)),
        )
        .property(
            "data",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .content_media_type("application/json")
                .content_schema(Some(Ref::from_schema_name("Event"))),
        )
        .required("id")
        .required("event")
        .required("data")
        .build();
    for item in openapi.paths.paths.values_mut() {
        let Some(op) = item.get.as_mut() else {
            continue;
        };
        let Some(ok) = op.responses.responses.get_mut("200") else {
            continue;
        };
        let utoipa::openapi::RefOr::T(ok) = ok else {
            continue;
        };
        if let Some(stream) = ok.content.get_mut("text/event-stream") {
            *stream = utoipa::openapi::RefOr::T(
                ContentBuilder::new().schema(Some(message.clone())).build(),
            );
        }
    }
}

/// `submit_ingestion`'s arguments.
#[derive(Serialize, ToSchema)]
pub struct SubmitArgs {
    pub request: IngestRequest,
}

/// The argument of `ingestion_status` and `cancel_ingestion`.
#[derive(Serialize, ToSchema)]
pub struct IngestionIdArg {
    pub ingestion_id: String,
}

/// `set_dispatch_paused`'s argument.
#[derive(Serialize, ToSchema)]
pub struct PausedArg {
    pub paused: bool,
}

/// `batch_attempt_history`'s argument.
#[derive(Serialize, ToSchema)]
pub struct BatchIdArg {
    pub batch_id: String,
}

/// `list_ingestions`' arguments (as `GET /ingestions` takes them).
#[derive(Serialize, ToSchema)]
pub struct ListArgs {
    #[schema(format = Int64, minimum = 0, maximum = 4294967295_u64)]
    pub limit: u32,
    /// Only ingestions accepted before this one (the next page of older ones).
    pub before: Option<String>,
    /// `HIGH`, `MEDIUM` or `LOW`.
    pub priority: Option<String>,
    /// `yet_to_start`, `triggered`, `completed`, `cancelled` or `failed`.
    pub status: Option<String>,
}

/// `read_ingestion_page`'s arguments.
#[derive(Serialize, ToSchema)]
pub struct PageArgs {
    pub ingestion_id: String,
    /// The position of the page's first batch (0 for the first).
    #[schema(format = Int64, minimum = 0, maximum = 4294967295_u64)]
    pub from: u32,
}

/// `find_ingestions`' argument.
#[derive(Serialize, ToSchema)]
pub struct FindArg {
    /// A whole ingestion or batch id, or the last 4 to 12 hex digits of an ingestion's id.
    pub query: String,
}

/// `set_rate_interval`'s argument: a duration (`250ms`, `5s`), or null for the configured one.
#[derive(Serialize, ToSchema)]
pub struct RateArg {
    #[schema(required)]
    pub rate_interval: Option<String>,
}

/// `queue_snapshot` takes no argument.
#[derive(Serialize, ToSchema)]
pub struct NoArgs {}

// The server functions, described for the document only (Leptos registers and serves them).
#[utoipa::path(post, path = "/api/ingest", tag = "dashboard", summary = "submit_ingestion",
    request_body = SubmitArgs,
    responses((status = 200, body = IngestResponse),
              (status = "4XX", description = "As `POST /ingest`", body = ErrorDetail)),
    security((), ("bearer" = [])))]
#[allow(dead_code)]
fn sf_ingest() {}

#[utoipa::path(post, path = "/api/status", tag = "dashboard", summary = "ingestion_status",
    request_body = IngestionIdArg,
    responses((status = 200, body = IngestionView),
              (status = "4XX", description = "As `GET /status/{ingestion_id}`", body = ErrorDetail)),
    security((), ("bearer" = [])))]
#[allow(dead_code)]
fn sf_status() {}

#[utoipa::path(post, path = "/api/cancel", tag = "dashboard", summary = "cancel_ingestion",
    request_body = IngestionIdArg,
    responses((status = 200, body = CancelResponse),
              (status = "4XX", description = "As `POST /ingest/{ingestion_id}/cancel`", body = ErrorDetail)),
    security((), ("bearer" = [])))]
#[allow(dead_code)]
fn sf_cancel() {}

#[utoipa::path(post, path = "/api/ingestions", tag = "dashboard", summary = "list_ingestions",
    request_body = ListArgs,
    responses((status = 200, body = RecentIngestions),
              (status = "4XX", description = "As `GET /ingestions`", body = ErrorDetail)),
    security((), ("bearer" = [])))]
#[allow(dead_code)]
fn sf_ingestions() {}

#[utoipa::path(post, path = "/api/ingestion", tag = "dashboard", summary = "read_ingestion_page",
    request_body = PageArgs,
    responses((status = 200, body = IngestionPage),
              (status = "4XX", description = "As `GET /status/{ingestion_id}`: 404 `not_found` for an unknown id", body = ErrorDetail)),
    security((), ("bearer" = [])))]
#[allow(dead_code)]
fn sf_ingestion() {}

#[utoipa::path(post, path = "/api/find", tag = "dashboard", summary = "find_ingestions",
    request_body = FindArg,
    responses((status = 200, body = Found),
              (status = "4XX", description = "400 `invalid_query`: neither an id nor 4 to 12 hex digits; 401 without a read token where one is needed", body = ErrorDetail)),
    security((), ("bearer" = [])))]
#[allow(dead_code)]
fn sf_find() {}

#[utoipa::path(post, path = "/api/pace", tag = "dashboard", summary = "pace_timeline",
    request_body = NoArgs,
    responses((status = 200, body = PaceView),
              (status = "4XX", description = "401 without a read token where one is needed", body = ErrorDetail)),
    security((), ("bearer" = [])))]
#[allow(dead_code)]
fn sf_pace() {}

#[utoipa::path(post, path = "/api/queue", tag = "dashboard", summary = "queue_snapshot",
    request_body = NoArgs,
    responses((status = 200, body = QueueView),
              (status = "4XX", description = "As `GET /queue`", body = ErrorDetail)),
    security((), ("bearer" = [])))]
#[allow(dead_code)]
fn sf_queue() {}

#[utoipa::path(post, path = "/api/attempts", tag = "dashboard", summary = "batch_attempt_history",
    request_body = BatchIdArg,
    responses((status = 200, body = BatchAttempts),
              (status = "4XX", description = "As `GET /batches/{batch_id}/attempts`", body = ErrorDetail)),
    security((), ("bearer" = [])))]
#[allow(dead_code)]
fn sf_attempts() {}

#[utoipa::path(post, path = "/api/pause", tag = "dashboard", summary = "set_dispatch_paused",
    request_body = PausedArg,
    responses((status = 200, description = "Whether it changed anything", body = bool,
               content_type = "application/json"),
              (status = "4XX", description = "As `POST /admin/pause`", body = ErrorDetail)),
    security((), ("bearer" = [])))]
#[allow(dead_code)]
fn sf_pause() {}

#[utoipa::path(post, path = "/api/retry", tag = "dashboard", summary = "retry_failed_batch",
    request_body = BatchIdArg,
    responses((status = 200, description = "Back in the queue (`true`)", body = bool,
               content_type = "application/json"),
              (status = "4XX", description = "As `POST /admin/batches/{batch_id}/retry`", body = ErrorDetail)),
    security((), ("bearer" = [])))]
#[allow(dead_code)]
fn sf_retry() {}

#[utoipa::path(post, path = "/api/rate", tag = "dashboard", summary = "set_rate_interval",
    request_body = RateArg,
    responses((status = 200, description = "The interval in force, in ms", body = u64,
               content_type = "application/json"),
              (status = "4XX", description = "As `PUT /admin/rate`", body = ErrorDetail)),
    security((), ("bearer" = [])))]
#[allow(dead_code)]
fn sf_rate() {}

#[utoipa::path(post, path = "/api/access", tag = "dashboard", summary = "session_write_access",
    request_body = NoArgs,
    responses((status = 200, description = "What the token sent may do with writes",
               body = WriteAccess),
              (status = "4XX", description = "Arguments that are not a JSON object \
               (`invalid_arguments`)", body = ErrorDetail)),
    security((), ("bearer" = [])))]
#[allow(dead_code)]
fn sf_access() {}

/// The document, serialized once at start-up.
#[derive(Clone)]
pub struct Document {
    pub json: Arc<String>,
    pub html: Arc<String>,
}

impl Document {
    pub fn new(openapi: &utoipa::openapi::OpenApi) -> Self {
        let value = serde_json::to_value(openapi).unwrap_or(Value::Null);
        Self {
            json: Arc::new(serde_json::to_string_pretty(&value).unwrap_or_default()),
            html: Arc::new(render(&value)),
        }
    }
}

#[utoipa::path(get, path = "/openapi.json", tag = "documentation",
    summary = "This OpenAPI 3.1 document",
    responses((status = 200, description = "The document", content_type = "application/json")))]
pub(super) async fn openapi_json(Extension(doc): Extension<Document>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        doc.json.as_str().to_owned(),
    )
        .into_response()
}

#[utoipa::path(get, path = "/docs", tag = "documentation",
    summary = "This document as a page for people",
    responses((status = 200, description = "HTML", content_type = "text/html")))]
pub(super) async fn docs_page(Extension(doc): Extension<Document>) -> Html<String> {
    Html(doc.html.as_str().to_owned())
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Inline code spans (`like this`) in a description, escaped.
fn prose(s: &str) -> String {
    esc(s)
        .split('`')
        .enumerate()
        .map(|(i, part)| match i % 2 {
            1 => format!("<code>{part}</code>"),
            _ => part.to_owned(),
        })
        .collect()
}

/// A schema in one line: `IngestionView`, `array of integer`, `string (date-time)`.
fn type_of(schema: &Value) -> String {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next().unwrap_or(r);
        return format!("<a href=\"#schema-{0}\">{0}</a>", esc(name));
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        if let Some(options) = schema.get(key).and_then(Value::as_array) {
            let parts: Vec<String> = options.iter().map(type_of).collect();
            return parts.join(" | ");
        }
    }
    let kind = match schema.get("type") {
        Some(Value::Array(kinds)) => kinds
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" | "),
        Some(Value::String(kind)) => kind.clone(),
        _ => "any".into(),
    };
    let mut out = esc(&kind);
    if let Some(items) = schema.get("items") {
        out = format!("array of {}", type_of(items));
    }
    if let Some(format) = schema.get("format").and_then(Value::as_str) {
        out.push_str(&format!(" ({})", esc(format)));
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        let values: Vec<String> = values.iter().map(|v| esc(&v.to_string())).collect();
        out.push_str(&format!(": {}", values.join(", ")));
    }
    out
}

fn render(doc: &Value) -> String {
    let mut html = String::from(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>sluice API</title><style>\
         :root{color-scheme:light dark;font-family:system-ui,sans-serif;line-height:1.45}\
         body{max-width:60rem;margin:0 auto;padding:1rem 1.2rem 3rem}\
         code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.92em}\
         .op{border:1px solid #8884;border-radius:.5rem;padding:.6rem .9rem;margin:.8rem 0}\
         .method{font-weight:700;text-transform:uppercase;margin-right:.5rem}\
         table{border-collapse:collapse;margin:.3rem 0}td,th{text-align:left;padding:.15rem .6rem .15rem 0;vertical-align:top}\
         .muted{opacity:.75}</style></head><body>",
    );
    let info = &doc["info"];
    html.push_str(&format!(
        "<h1>{} <span class=\"muted\">{}</span></h1><p>{}</p>\
         <p>OpenAPI {} · <a href=\"/openapi.json\">openapi.json</a> · \
         <a href=\"/\">dashboard</a></p>",
        esc(info["title"].as_str().unwrap_or("sluice")),
        esc(info["version"].as_str().unwrap_or("")),
        prose(info["description"].as_str().unwrap_or("")),
        esc(doc["openapi"].as_str().unwrap_or("")),
    ));
    html.push_str("<h2>Routes</h2>");
    if let Some(paths) = doc["paths"].as_object() {
        for (path, item) in paths {
            let Some(item) = item.as_object() else {
                continue;
            };
            for (method, op) in item {
                render_operation(&mut html, method, path, op);
            }
        }
    }
    html.push_str("<h2>Schemas</h2>");
    if let Some(schemas) = doc["components"]["schemas"].as_object() {
        for (name, schema) in schemas {
            html.push_str(&format!(
                "<div class=\"op\" id=\"schema-{0}\"><h3><code>{0}</code></h3>",
                esc(name)
            ));
            if let Some(d) = schema["description"].as_str() {
                html.push_str(&format!("<p>{}</p>", prose(d)));
            }
            match schema["properties"].as_object() {
                Some(props) => {
                    let required: Vec<&str> = schema["required"]
                        .as_array()
                        .map(|r| r.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_default();
                    html.push_str("<table>");
                    for (field, s) in props {
                        html.push_str(&format!(
                            "<tr><td><code>{}</code>{}</td><td>{}</td><td>{}</td></tr>",
                            esc(field),
                            if required.contains(&field.as_str()) {
                                " *"
                            } else {
                                ""
                            },
                            type_of(s),
                            prose(s["description"].as_str().unwrap_or("")),
                        ));
                    }
                    html.push_str("</table>");
                }
                None => html.push_str(&format!("<p>{}</p>", type_of(schema))),
            }
            html.push_str("</div>");
        }
    }
    html.push_str("<p class=\"muted\">* required</p></body></html>");
    html
}

fn render_operation(html: &mut String, method: &str, path: &str, op: &Value) {
    html.push_str(&format!(
        "<div class=\"op\"><h3><span class=\"method\">{}</span><code>{}</code></h3>",
        esc(method),
        esc(path)
    ));
    if let Some(s) = op["summary"].as_str() {
        html.push_str(&format!("<p><strong>{}</strong></p>", prose(s)));
    }
    if let Some(d) = op["description"].as_str() {
        html.push_str(&format!("<p>{}</p>", prose(d)));
    }
    if let Some(params) = op["parameters"].as_array().filter(|p| !p.is_empty()) {
        html.push_str("<table><tr><th>parameter</th><th>in</th><th>type</th><th></th></tr>");
        for p in params {
            html.push_str(&format!(
                "<tr><td><code>{}</code>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(p["name"].as_str().unwrap_or("")),
                if p["required"].as_bool() == Some(true) {
                    " *"
                } else {
                    ""
                },
                esc(p["in"].as_str().unwrap_or("")),
                type_of(&p["schema"]),
                prose(p["description"].as_str().unwrap_or("")),
            ));
        }
        html.push_str("</table>");
    }
    if let Some(content) = op["requestBody"]["content"].as_object() {
        for (kind, body) in content {
            html.push_str(&format!(
                "<p>Body ({}): {}</p>",
                esc(kind),
                type_of(&body["schema"])
            ));
        }
    }
    if let Some(responses) = op["responses"].as_object() {
        html.push_str("<table><tr><th>answer</th><th>body</th><th></th></tr>");
        for (status, r) in responses {
            let body = r["content"]
                .as_object()
                .and_then(|c| c.values().next())
                .map(|c| type_of(&c["schema"]))
                .unwrap_or_default();
            html.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(status),
                body,
                prose(r["description"].as_str().unwrap_or("")),
            ));
        }
        html.push_str("</table>");
    }
    let open = op["security"].as_array().is_some_and(|s| {
        s.iter()
            .any(|req| req.as_object().is_some_and(|o| o.is_empty()))
    });
    if op.get("security").is_some() {
        html.push_str(&format!(
            "<p class=\"muted\">{}</p>",
            if open {
                "Bearer token when the server has tokens for this kind of access."
            } else {
                "Bearer token required."
            }
        ));
    }
    html.push_str("</div>");
}
