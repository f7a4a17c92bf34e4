//! `GET /events` and `GET /status/{ingestion_id}/events`: Server-Sent Events from the durable
//! event log.
//!
//! Each SSE message carries the event's id, its type as the event name, and the event as JSON.
//! A client reconnecting with `Last-Event-ID` gets every event after that id (within the log's
//! retention), from whichever process it reconnects to. A first connection can say where to
//! start with `?after=<id>` (browsers' `EventSource` cannot set the header; a page passes the
//! `last_event_id` of the snapshot it rendered). Without either, `/events` starts with the
//! next event and an ingestion's stream starts from that ingestion's first event. Comments
//! every 15 s keep idle connections open through proxies.

use super::{query, streams::StreamTicket, ApiError, ApiState, Segment};
use crate::domain::{ErrorBody, Event};
use crate::server::{service::Service, shutdown::Shutdown};
use axum::{
    extract::{ConnectInfo, RawQuery, State},
    http::HeaderMap,
    response::sse::{Event as SseEvent, KeepAlive, KeepAliveStream, Sse},
    Extension,
};
use futures::{stream::BoxStream, StreamExt};
use std::{collections::VecDeque, convert::Infallible, net::SocketAddr, time::Duration};
use uuid::Uuid;

const PAGE: usize = 256;
const HEARTBEAT: Duration = Duration::from_secs(15);
/// After a failed read of the log, wait this long before trying again.
const RETRY: Duration = Duration::from_secs(1);

/// The address of the client, as the server's accept loop noted it.
type Client = Option<Extension<ConnectInfo<SocketAddr>>>;

type EventStream = Sse<KeepAliveStream<BoxStream<'static, Result<SseEvent, Infallible>>>>;

#[utoipa::path(
    get, path = "/events", tag = "events",
    summary = "Every change, as Server-Sent Events",
    description = "Each message: `id` (the event's id), `event` (its `type`), `data` (the Event \
        as JSON). Resume with `Last-Event-ID`; a first connection may start after `?after=`. \
        A read token may come as `?access_token=` (EventSource cannot send headers).",
    params(
        ("Last-Event-ID" = Option<u64>, Header, nullable = false, description = "Resume after this event"),
        ("after" = Option<u64>, Query, description = "Start after this event (default: from now)"),
        ("access_token" = Option<String>, Query, description = "A read token, when reads need one"),
    ),
    responses(
        (status = 200, description = "An endless event stream", body = Event,
         content_type = "text/event-stream"),
        (status = 400, description = "`Last-Event-ID` or `after` is not a number", body = ErrorBody),
        (status = 401, description = "A read token is needed", body = ErrorBody),
        (status = 429, description = "This client has `--max-streams-per-client` streams open \
            (`too_many_streams`); see `Retry-After`", body = ErrorBody),
        (status = 503, description = "The server has `--max-streams` streams open \
            (`streams_busy`); see `Retry-After`", body = ErrorBody),
    ),
    security((), ("bearer" = [])),
)]
pub(super) async fn all(
    State(state): State<ApiState>,
    client: Client,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<EventStream, ApiError> {
    // A reconnect's Last-Event-ID is newer than the `after` the page started with.
    let after = match (
        last_event_id(&headers)?,
        query::number(raw.as_deref(), "after")?,
    ) {
        (Some(id), _) | (None, Some(id)) => id,
        (None, None) => *state.service.event_feed().borrow(),
    };
    let ticket = admit(&state, client)?;
    Ok(sse(state.service, after, None, state.shutdown, ticket))
}

#[utoipa::path(
    get, path = "/status/{ingestion_id}/events", tag = "events",
    summary = "One ingestion's changes, from its first event, as Server-Sent Events",
    params(
        ("ingestion_id" = String, Path, description = "The id `POST /ingest` answered"),
        ("Last-Event-ID" = Option<u64>, Header, nullable = false, description = "Resume after this event"),
        ("after" = Option<u64>, Query, description = "Start after this event"),
        ("access_token" = Option<String>, Query, description = "A read token, when reads need one"),
    ),
    responses(
        (status = 200, description = "An endless event stream of that ingestion's events", body = Event,
         content_type = "text/event-stream"),
        (status = 400, description = "`Last-Event-ID` or `after` is not a number", body = ErrorBody),
        (status = 401, description = "A read token is needed", body = ErrorBody),
        (status = 404, description = "Unknown or malformed id", body = ErrorBody),
        (status = 429, description = "This client has `--max-streams-per-client` streams open \
            (`too_many_streams`); see `Retry-After`", body = ErrorBody),
        (status = 503, description = "The server has `--max-streams` streams open \
            (`streams_busy`); see `Retry-After`", body = ErrorBody),
    ),
    security((), ("bearer" = [])),
)]
pub(super) async fn one_ingestion(
    State(state): State<ApiState>,
    Segment(ingestion_id): Segment,
    client: Client,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<EventStream, ApiError> {
    // Both are checked; a reconnect's Last-Event-ID wins, as for the whole stream.
    let (resume, after) = (
        last_event_id(&headers)?,
        query::number(raw.as_deref(), "after")?,
    );
    let after = resume.or(after).unwrap_or(0);
    let view = state.service.status(&ingestion_id).await?;
    let ticket = admit(&state, client)?;
    Ok(sse(
        state.service,
        after,
        Some(view.ingestion_id),
        state.shutdown,
        ticket,
    ))
}

/// A place in the streams' budget for this client, or the refusal.
fn admit(state: &ApiState, client: Client) -> Result<StreamTicket, ApiError> {
    state
        .streams
        .admit(client.map(|Extension(ConnectInfo(addr))| addr.ip()))
}

fn last_event_id(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    headers
        .get("last-event-id")
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|s| query::non_negative(s.trim()))
                .ok_or(ApiError::InvalidLastEventId)
        })
        .transpose()
}

struct Cursor {
    service: Service,
    ingestion: Option<Uuid>,
    after: u64,
    pending: VecDeque<Event>,
    shutdown: Shutdown,
    /// Given back to the budget when the stream ends.
    _ticket: StreamTicket,
}

fn sse(
    service: Service,
    after: u64,
    ingestion: Option<Uuid>,
    shutdown: Shutdown,
    ticket: StreamTicket,
) -> EventStream {
    let cursor = Cursor {
        service,
        ingestion,
        after,
        pending: VecDeque::new(),
        shutdown,
        _ticket: ticket,
    };
    let stream = futures::stream::unfold(cursor, |mut c| async move {
        let event = c.next().await?;
        Some((Ok(to_sse(&event)), c))
    });
    Sse::new(stream.boxed()).keep_alive(KeepAlive::new().interval(HEARTBEAT))
}

impl Cursor {
    /// The next event, waiting for one to be committed; `None` once shutting down.
    async fn next(&mut self) -> Option<Event> {
        let mut feed = self.service.event_feed();
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            if self.shutdown.is_triggered() {
                return None;
            }
            // Mark the feed seen *before* reading, so a commit after the read wakes us.
            feed.borrow_and_update();
            match self
                .service
                .events_after(self.after, self.ingestion, PAGE)
                .await
            {
                Ok(events) if !events.is_empty() => {
                    self.after = events.last().map_or(self.after, |e| e.id);
                    self.pending.extend(events);
                    continue;
                }
                Ok(_) => {
                    tokio::select! {
                        changed = feed.changed() => changed.ok()?,
                        _ = self.shutdown.triggered() => return None,
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "reading the event log failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(RETRY) => {}
                        _ = self.shutdown.triggered() => return None,
                    }
                }
            }
        }
    }
}

fn to_sse(event: &Event) -> SseEvent {
    SseEvent::default()
        .id(event.id.to_string())
        .event(event.body.name())
        .json_data(event)
        .unwrap_or_else(|_| SseEvent::default().comment("unserializable event"))
}
