//! Server functions: how the browser calls the service. They take and return the shared wire
//! types and answer errors in the JSON routes' `{code, message}` shape with the same status,
//! because both go through the same service and the same error mapping. They need the same
//! tokens as the JSON routes; the browser sends the one kept for its session (see
//! [`TokenClient`]).

use crate::domain::{
    BatchAttempts, CancelResponse, ErrorDetail, Found, IngestRequest, IngestResponse,
    IngestionPage, IngestionView, PaceView, QueueView, RecentIngestions, WriteAccess,
};
use leptos::prelude::*;
use leptos::server_fn::codec::Json;

/// Submit IDs with a priority (`POST /api/ingest`, JSON `{"request": {...}}`).
#[server(prefix = "/api", endpoint = "ingest", input = Json, client = TokenClient)]
pub async fn submit_ingestion(request: IngestRequest) -> Result<IngestResponse, ErrorDetail> {
    let (service, grant) = ssr::granted(ssr::Access::Write)?;
    let ingestion_id = service
        .ingest_request(request, grant.tenant)
        .await
        .map_err(ssr::rejected)?;
    Ok(IngestResponse { ingestion_id })
}

/// One ingestion's status (`POST /api/status`, JSON `{"ingestion_id": "..."}`).
#[server(prefix = "/api", endpoint = "status", input = Json, client = TokenClient)]
pub async fn ingestion_status(ingestion_id: String) -> Result<IngestionView, ErrorDetail> {
    let service = ssr::service(ssr::Access::Read)?;
    service.status(&ingestion_id).await.map_err(ssr::rejected)
}

/// Cancel an ingestion's batches that have not started (`POST /api/cancel`).
#[server(prefix = "/api", endpoint = "cancel", input = Json, client = TokenClient)]
pub async fn cancel_ingestion(ingestion_id: String) -> Result<CancelResponse, ErrorDetail> {
    let service = ssr::service(ssr::Access::Write)?;
    service.cancel(&ingestion_id).await.map_err(ssr::rejected)
}

/// Pause (`true`) or resume (`false`) dispatch (`POST /api/pause`, JSON `{"paused": bool}`),
/// as `POST /admin/pause` and `/admin/resume` do; answers whether it changed anything.
#[server(prefix = "/api", endpoint = "pause", input = Json, client = TokenClient)]
pub async fn set_dispatch_paused(paused: bool) -> Result<bool, ErrorDetail> {
    let service = ssr::service(ssr::Access::Write)?;
    let changed = match paused {
        true => service.pause().await,
        false => service.resume().await,
    };
    changed.map_err(ssr::rejected)
}

/// Set the run-time rate interval (`POST /api/rate`, JSON `{"rate_interval": "2s"}`), or with
/// null go back to the configured one, as `PUT /admin/rate` does (same rules, same answers);
/// answers the interval in force, in milliseconds.
#[server(prefix = "/api", endpoint = "rate", input = Json, client = TokenClient)]
pub async fn set_rate_interval(rate_interval: serde_json::Value) -> Result<u64, ErrorDetail> {
    let service = ssr::service(ssr::Access::Write)?;
    let interval = crate::server::http::rate_setting(Some(&rate_interval)).map_err(ssr::refused)?;
    let effective = service
        .set_rate_interval(interval)
        .await
        .map_err(ssr::rejected)?;
    Ok(u64::try_from(effective.as_millis()).unwrap_or(u64::MAX))
}

/// An operator's retry of a failed batch (`POST /api/retry`, JSON `{"batch_id": "..."}`), as
/// `POST /admin/batches/{batch_id}/retry` does; answers `true` once it is back in the queue.
#[server(prefix = "/api", endpoint = "retry", input = Json, client = TokenClient)]
pub async fn retry_failed_batch(batch_id: String) -> Result<bool, ErrorDetail> {
    let service = ssr::service(ssr::Access::Write)?;
    service
        .retry_batch(&batch_id)
        .await
        .map_err(ssr::rejected)?;
    Ok(true)
}

/// A batch's attempts (`POST /api/attempts`, JSON `{"batch_id": "..."}`): read when the
/// person opens a batch card's history.
#[server(prefix = "/api", endpoint = "attempts", input = Json, client = TokenClient)]
pub async fn batch_attempt_history(batch_id: String) -> Result<BatchAttempts, ErrorDetail> {
    let service = ssr::service(ssr::Access::Read)?;
    service.attempts(&batch_id).await.map_err(ssr::rejected)
}

/// The newest ingestions, newest first (`POST /api/ingestions`, JSON `{"limit": n}`, and
/// optionally `"before"`, `"priority"`, `"status"`, as `GET /ingestions` takes them).
#[server(prefix = "/api", endpoint = "ingestions", input = Json, client = TokenClient)]
pub async fn list_ingestions(
    limit: u32,
    #[server(default)] before: Option<String>,
    #[server(default)] priority: Option<String>,
    #[server(default)] status: Option<String>,
) -> Result<RecentIngestions, ErrorDetail> {
    let service = ssr::service(ssr::Access::Read)?;
    let listing = crate::server::service::Listing {
        limit: limit as usize,
        before: before.as_deref(),
        priority: priority.as_deref(),
        status: status.as_deref(),
    };
    service.list(listing).await.map_err(ssr::rejected)
}

/// One ingestion with a page of its batches from position `from` (`POST /api/ingestion`,
/// JSON `{"ingestion_id": "...", "from": n}`): what its page at `/ingestions/{id}` shows.
#[server(prefix = "/api", endpoint = "ingestion", input = Json, client = TokenClient)]
pub async fn read_ingestion_page(
    ingestion_id: String,
    from: u32,
) -> Result<IngestionPage, ErrorDetail> {
    let service = ssr::service(ssr::Access::Read)?;
    service
        .ingestion_page(&ingestion_id, from)
        .await
        .map_err(ssr::rejected)
}

/// The ingestions a search names (`POST /api/find`, JSON `{"query": "..."}`): a whole
/// ingestion or batch id, or the last 4 to 12 hex digits of an ingestion's id.
#[server(prefix = "/api", endpoint = "find", input = Json, client = TokenClient)]
pub async fn find_ingestions(query: String) -> Result<Found, ErrorDetail> {
    let service = ssr::service(ssr::Access::Read)?;
    service.find(&query).await.map_err(ssr::rejected)
}

/// The pace over the last minutes (`POST /api/pace`): every start in the window, the waiting
/// depth over it, and the interval, for the dashboard's timeline.
#[server(prefix = "/api", endpoint = "pace", input = Json, client = TokenClient)]
pub async fn pace_timeline() -> Result<PaceView, ErrorDetail> {
    let service = ssr::service(ssr::Access::Read)?;
    service.pace().await.map_err(ssr::rejected)
}

/// The queue snapshot (`POST /api/queue`).
#[server(prefix = "/api", endpoint = "queue", input = Json, client = TokenClient)]
pub async fn queue_snapshot() -> Result<QueueView, ErrorDetail> {
    let service = ssr::service(ssr::Access::Read)?;
    service.queue().await.map_err(ssr::rejected)
}

/// What the request's token may do with writes (`POST /api/access`): open to every caller
/// (it tells nothing about any token but the one sent), so the dashboard can disable its
/// buttons, with the reason, for a token that may only read.
#[server(prefix = "/api", endpoint = "access", input = Json, client = TokenClient)]
pub async fn session_write_access() -> Result<WriteAccess, ErrorDetail> {
    ssr::write_access()
}

/// The browser's client for server functions: `fetch`, plus `Authorization: Bearer` with the
/// token the person entered for this browser session, if any.
pub struct TokenClient;

impl<E, IS, OS> leptos::server_fn::client::Client<E, IS, OS> for TokenClient
where
    E: leptos::server_fn::error::FromServerFnError,
    IS: leptos::server_fn::error::FromServerFnError,
    OS: leptos::server_fn::error::FromServerFnError,
{
    type Request = leptos::server_fn::request::browser::BrowserRequest;
    type Response = leptos::server_fn::response::browser::BrowserResponse;

    fn send(
        request: Self::Request,
    ) -> impl std::future::Future<Output = Result<Self::Response, E>> + Send {
        #[cfg(feature = "browser")]
        if let Some(token) = crate::app::token::session_token() {
            request
                .headers()
                .set("authorization", &format!("Bearer {token}"));
        }
        <Browser as leptos::server_fn::client::Client<E, IS, OS>>::send(request)
    }

    fn open_websocket(
        path: &str,
    ) -> impl std::future::Future<
        Output = Result<
            (
                impl futures::Stream<Item = Result<bytes::Bytes, bytes::Bytes>> + Send + 'static,
                impl futures::Sink<bytes::Bytes> + Send + 'static,
            ),
            E,
        >,
    > + Send {
        <Browser as leptos::server_fn::client::Client<E, IS, OS>>::open_websocket(path)
    }

    fn spawn(future: impl std::future::Future<Output = ()> + Send + 'static) {
        <Browser as leptos::server_fn::client::Client<E, IS, OS>>::spawn(future)
    }
}

type Browser = leptos::server_fn::client::browser::BrowserClient;

#[cfg(feature = "ssr")]
mod ssr {
    use crate::domain::{ErrorDetail, WriteAccess};
    pub use crate::server::auth::Access;
    use crate::server::{
        auth::{Grant, Tokens},
        http::bearer,
        http::ApiError,
        service::Service,
        service::ServiceError,
    };
    use leptos::prelude::*;

    /// The service, if the request's token allows `access` (the JSON routes' rule and answer).
    pub fn service(access: Access) -> Result<Service, ErrorDetail> {
        granted(access).map(|(service, _)| service)
    }

    /// The service and what the request's token was granted, if it allows `access`.
    pub fn granted(access: Access) -> Result<(Service, Grant), ErrorDetail> {
        let (tokens, token) = presented()?;
        let grant = tokens
            .check(access, token.as_deref())
            .map_err(|denied| refused(ApiError::Denied(denied)))?;
        let service = use_context::<Service>().ok_or_else(|| missing("the service"))?;
        Ok((service, grant))
    }

    /// What the request's token may do with writes.
    pub fn write_access() -> Result<WriteAccess, ErrorDetail> {
        let (tokens, token) = presented()?;
        Ok(tokens.write_access(token.as_deref()))
    }

    /// The configured tokens and the request's bearer token, if it sent one.
    fn presented() -> Result<(Tokens, Option<String>), ErrorDetail> {
        let tokens = use_context::<Tokens>().ok_or_else(|| missing("the tokens"))?;
        let parts = use_context::<axum::http::request::Parts>();
        let token = parts
            .as_ref()
            .and_then(|p| bearer(&p.headers))
            .map(str::to_owned);
        Ok((tokens, token))
    }

    fn missing(what: &str) -> ErrorDetail {
        tracing::error!("server function called without {what} in context");
        ErrorDetail {
            code: "internal".into(),
            message: "internal error".into(),
        }
    }

    /// The error for the caller; a server-function call also answers with its status. A page
    /// render (which has a `RequestUrl`) keeps its 200: the page shows the error itself.
    pub fn refused(error: ApiError) -> ErrorDetail {
        let (status, detail) = error.into_detail();
        let rendering_page = use_context::<leptos_router::location::RequestUrl>().is_some();
        if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
            if !rendering_page {
                response.set_status(status);
            }
        }
        detail
    }

    /// Same status and body as the JSON route would answer.
    pub fn rejected(e: ServiceError) -> ErrorDetail {
        refused(ApiError::from(e))
    }
}
