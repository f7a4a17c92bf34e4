//! The vocabulary shared by server and browser: requests, statuses, views, errors.
//!
//! Everything here is wasm-safe (serde, fixed-width integers, no I/O), so the dashboard
//! and the server agree on every shape and every validation rule by construction.

mod dispatch;
mod error;
mod event;
mod id_text;
mod ingest_body;
mod queue;
mod request;
mod status;
mod time;
mod timeline;

pub use dispatch::{
    candidate, decide, slot_after, ClaimFacts, ClaimedBatch, Decision, Fairness, QueueKey,
    TenantHead, MAX_RATE_INTERVAL, MIN_RATE_INTERVAL,
};
pub use error::{ErrorBody, ErrorDetail, INVALID_ARGUMENTS};
pub use event::{Event, EventBody};
pub use id_text::{ids_from_text, IdTextError};
pub use queue::{
    Ahead, Depth, DispatchView, Pace, QueueView, TenantDepth, TenantQueue, Turns, TOP_TENANTS,
};
pub use request::{
    IngestRequest, IngestResponse, Limits, NewIngestion, Priority, RequestError, RequestErrorKind,
    Tenant, DEFAULT_TENANT, MAX_ID, MIN_ID,
};
pub use status::{
    page_window, summary_window, AttemptView, BatchAttempts, BatchStatus, BatchView,
    CancelResponse, Found, IdResult, IdResultView, IngestionPage, IngestionStatus,
    IngestionSummary, IngestionView, RecentIngestions, ResultsPage, StatusCounts, WriteAccess,
};
pub use time::Timestamp;
pub use timeline::{window_for, Axis, DepthSample, PaceView, StartMark, MAX_STARTS, MAX_WINDOW};
