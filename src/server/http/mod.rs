//! The JSON routes. Handlers only translate HTTP to service calls and back; every rule lives
//! in the service and the domain.

mod admin;
mod auth;
mod buffers;
mod cors;
mod error;
mod events;
mod health;
mod ingest;
mod metrics;
mod openapi;
mod query;
mod queue;
mod serve;
mod server_fns;
mod status;
mod streams;
mod timeout;

pub use admin::rate_setting;
pub use auth::bearer;
pub use buffers::BufferBudget;
pub use cors::cors;
pub use error::ApiError;
use error::Segment;
pub use metrics::track;
pub use serve::{serve, ConnectionLimits};
pub use server_fns::undecodable_arguments_are_bad_requests;
pub use streams::StreamBudget;
pub use timeout::request_timeout;

use crate::server::{
    auth::{Access, Tokens},
    service::Service,
    shutdown::Shutdown,
};
use axum::{extract::DefaultBodyLimit, middleware::from_fn_with_state, Extension, Router};
use utoipa::OpenApi;
use utoipa_axum::{router::OpenApiRouter, routes};

/// State shared by the JSON handlers.
#[derive(Clone)]
pub struct ApiState {
    pub service: Service,
    pub max_body_bytes: usize,
    /// Ends event streams, so a graceful shutdown does not wait on them forever.
    pub shutdown: Shutdown,
    pub tokens: Tokens,
    /// The event streams' share of the connections.
    pub streams: StreamBudget,
    /// Room for request bodies held in memory at once.
    pub buffers: BufferBudget,
}

/// The JSON routes, grouped by the access they need (see `server::auth`), with the body limit,
/// JSON 405s and the OpenAPI document built from the same registrations.
pub fn router<S: Clone + Send + Sync + 'static>(state: ApiState) -> Router<S> {
    let body_limit = state.max_body_bytes;
    let guard = |access| from_fn_with_state((state.tokens.clone(), access), auth::require);
    let writes = OpenApiRouter::new()
        .routes(routes!(ingest::ingest))
        .routes(routes!(status::cancel))
        .routes(routes!(admin::pause))
        .routes(routes!(admin::resume))
        .routes(routes!(admin::rate))
        .routes(routes!(admin::retry_batch))
        .route_layer(guard(Access::Write))
        // Only `POST /ingest` takes a large body; the limit is checked by the handler too.
        .layer(DefaultBodyLimit::max(body_limit));
    let reads = OpenApiRouter::new()
        .routes(routes!(status::status))
        .routes(routes!(status::results))
        .routes(routes!(status::attempts))
        .routes(routes!(queue::recent))
        .routes(routes!(queue::queue))
        .routes(routes!(events::all))
        .routes(routes!(events::one_ingestion))
        .routes(routes!(metrics::metrics))
        .route_layer(guard(Access::Read));
    let open = OpenApiRouter::new()
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(openapi::openapi_json))
        .routes(routes!(openapi::docs_page));
    let (router, spec) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(writes)
        .merge(reads)
        .merge(open)
        .split_for_parts();
    let mut spec = spec;
    spec.info.version = env!("CARGO_PKG_VERSION").to_owned();
    openapi::add_store_outage(&mut spec);
    openapi::describe_event_streams(&mut spec);
    router
        .layer(Extension(openapi::Document::new(&spec)))
        .method_not_allowed_fallback(error::method_not_allowed)
        .with_state(state)
}
