//! Server functions: how the browser calls the service. They take and return the shared wire
//! types and answer errors in the JSON routes' `{code, message}` shape with the same status,
//! because both go through the same service and the same error mapping.

use crate::domain::{
    CancelResponse, ErrorDetail, IngestRequest, IngestResponse, IngestionView, QueueView,
    RecentIngestions,
};
use leptos::prelude::*;
use leptos::server_fn::codec::Json;

/// Submit IDs with a priority (`POST /api/ingest`, JSON `{"request": {...}}`).
#[server(prefix = "/api", endpoint = "ingest", input = Json)]
pub async fn submit_ingestion(request: IngestRequest) -> Result<IngestResponse, ErrorDetail> {
    let service = ssr::service()?;
    let ingestion_id = service
        .ingest_request(request)
        .await
        .map_err(ssr::rejected)?;
    Ok(IngestResponse { ingestion_id })
}

/// One ingestion's status (`POST /api/status`, JSON `{"ingestion_id": "..."}`).
#[server(prefix = "/api", endpoint = "status", input = Json)]
pub async fn ingestion_status(ingestion_id: String) -> Result<IngestionView, ErrorDetail> {
    let service = ssr::service()?;
    service.status(&ingestion_id).await.map_err(ssr::rejected)
}

/// Cancel an ingestion's batches that have not started (`POST /api/cancel`).
#[server(prefix = "/api", endpoint = "cancel", input = Json)]
pub async fn cancel_ingestion(ingestion_id: String) -> Result<CancelResponse, ErrorDetail> {
    let service = ssr::service()?;
    service.cancel(&ingestion_id).await.map_err(ssr::rejected)
}

/// The newest ingestions, newest first (`POST /api/ingestions`, JSON `{"limit": n}`).
#[server(prefix = "/api", endpoint = "ingestions", input = Json)]
pub async fn list_ingestions(limit: u32) -> Result<RecentIngestions, ErrorDetail> {
    let service = ssr::service()?;
    service.recent(limit as usize).await.map_err(ssr::rejected)
}

/// The queue snapshot (`POST /api/queue`).
#[server(prefix = "/api", endpoint = "queue", input = Json)]
pub async fn queue_snapshot() -> Result<QueueView, ErrorDetail> {
    let service = ssr::service()?;
    service.queue().await.map_err(ssr::rejected)
}

#[cfg(feature = "ssr")]
mod ssr {
    use crate::domain::ErrorDetail;
    use crate::server::{http::ApiError, service::Service, service::ServiceError};
    use leptos::prelude::*;

    pub fn service() -> Result<Service, ErrorDetail> {
        use_context::<Service>().ok_or_else(|| {
            tracing::error!("server function called without the service in context");
            ErrorDetail {
                code: "internal".into(),
                message: "internal error".into(),
            }
        })
    }

    /// Same status and body as the JSON route would answer.
    pub fn rejected(e: ServiceError) -> ErrorDetail {
        let (status, detail) = ApiError::from(e).into_detail();
        if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
            response.set_status(status);
        }
        detail
    }
}
