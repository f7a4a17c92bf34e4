//! The JSON routes. Handlers only translate HTTP to service calls and back; every rule lives
//! in the service and the domain.

mod admin;
mod auth;
mod cors;
mod error;
mod events;
mod health;
mod ingest;
mod metrics;
mod query;
mod queue;
mod server_fns;
mod status;
mod timeout;

pub use auth::bearer;
pub use cors::cors;
pub use error::ApiError;
pub use metrics::track;
pub use server_fns::undecodable_arguments_are_bad_requests;
pub use timeout::request_timeout;

use crate::server::{
    auth::{Access, Tokens},
    service::Service,
    shutdown::Shutdown,
};
use axum::{
    extract::DefaultBodyLimit,
    middleware::from_fn_with_state,
    routing::{get, post, put},
    Router,
};

/// State shared by the JSON handlers.
#[derive(Clone)]
pub struct ApiState {
    pub service: Service,
    pub max_body_bytes: usize,
    /// Ends event streams, so a graceful shutdown does not wait on them forever.
    pub shutdown: Shutdown,
    pub tokens: Tokens,
}

/// The JSON routes, grouped by the access they need (see `server::auth`), with the body limit
/// and JSON 405s.
pub fn router<S>(state: ApiState) -> Router<S> {
    let body_limit = state.max_body_bytes;
    let guard = |access| from_fn_with_state((state.tokens.clone(), access), auth::require);
    let writes = Router::new()
        .route(
            "/ingest",
            post(ingest::ingest).layer(DefaultBodyLimit::max(body_limit)),
        )
        .route("/ingest/{ingestion_id}/cancel", post(status::cancel))
        .route("/admin/pause", post(admin::pause))
        .route("/admin/resume", post(admin::resume))
        .route("/admin/rate", put(admin::rate))
        .route_layer(guard(Access::Write));
    let reads = Router::new()
        .route("/status/{ingestion_id}", get(status::status))
        .route("/ingestions", get(queue::recent))
        .route("/queue", get(queue::queue))
        .route("/events", get(events::all))
        .route("/status/{ingestion_id}/events", get(events::one_ingestion))
        .route("/metrics", get(metrics::metrics))
        .route_layer(guard(Access::Read));
    let open = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz));
    Router::new()
        .merge(writes)
        .merge(reads)
        .merge(open)
        .method_not_allowed_fallback(error::method_not_allowed)
        .with_state(state)
}
