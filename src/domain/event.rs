//! Push events: every change to an ingestion, in one ordered, durable log.
//!
//! Each event has a monotonically increasing `id`; Server-Sent Events carry it as the event id,
//! so a client that reconnects with `Last-Event-ID` receives exactly what it missed.

use super::{Priority, Timestamp};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct Event {
    pub id: u64,
    pub at: Timestamp,
    #[serde(flatten)]
    pub body: EventBody,
}

/// What happened. Serialized with a `type` field (`ingestion_created`, …), which is also the
/// SSE event name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventBody {
    IngestionCreated {
        ingestion_id: Uuid,
        priority: Priority,
        batches: u32,
    },
    BatchTriggered {
        ingestion_id: Uuid,
        batch_id: Uuid,
        position: u32,
        attempt: u32,
    },
    BatchCompleted {
        ingestion_id: Uuid,
        batch_id: Uuid,
        position: u32,
    },
    IngestionCompleted {
        ingestion_id: Uuid,
    },
    /// An attempt failed and the batch waits for another, not before `retry_at`.
    BatchRetrying {
        ingestion_id: Uuid,
        batch_id: Uuid,
        position: u32,
        attempt: u32,
        error: String,
        retry_at: Timestamp,
    },
    /// The last attempt failed: the batch is `failed`, with its error.
    BatchFailed {
        ingestion_id: Uuid,
        batch_id: Uuid,
        position: u32,
        attempt: u32,
        error: String,
    },
    /// An operator put a failed batch back in the queue.
    BatchRequeued {
        ingestion_id: Uuid,
        batch_id: Uuid,
        position: u32,
    },
    /// Every batch has finished and at least one failed (a third way an ingestion ends).
    IngestionFailed {
        ingestion_id: Uuid,
    },
    /// A client cancelled the ingestion: its `batches` waiting batches will never start.
    BatchesCancelled {
        ingestion_id: Uuid,
        batches: u32,
    },
    /// A cancelled ingestion has nothing left running (the counterpart of
    /// `ingestion_completed`: every ingestion ends with exactly one of the two).
    IngestionCancelled {
        ingestion_id: Uuid,
    },
    /// An operator paused dispatch: nothing new starts until resumed.
    DispatchPaused {},
    DispatchResumed {},
    /// An operator changed the rate interval at run time.
    RateChanged {
        rate_interval_ms: u64,
    },
}

impl EventBody {
    /// Every event name, for clients that subscribe to each by name.
    pub const NAMES: [&'static str; 13] = [
        "ingestion_created",
        "batch_triggered",
        "batch_completed",
        "ingestion_completed",
        "batches_cancelled",
        "ingestion_cancelled",
        "batch_retrying",
        "batch_failed",
        "batch_requeued",
        "ingestion_failed",
        "dispatch_paused",
        "dispatch_resumed",
        "rate_changed",
    ];

    pub fn name(&self) -> &'static str {
        match self {
            EventBody::IngestionCreated { .. } => "ingestion_created",
            EventBody::BatchTriggered { .. } => "batch_triggered",
            EventBody::BatchCompleted { .. } => "batch_completed",
            EventBody::IngestionCompleted { .. } => "ingestion_completed",
            EventBody::BatchesCancelled { .. } => "batches_cancelled",
            EventBody::BatchRetrying { .. } => "batch_retrying",
            EventBody::BatchFailed { .. } => "batch_failed",
            EventBody::BatchRequeued { .. } => "batch_requeued",
            EventBody::IngestionFailed { .. } => "ingestion_failed",
            EventBody::IngestionCancelled { .. } => "ingestion_cancelled",
            EventBody::DispatchPaused {} => "dispatch_paused",
            EventBody::DispatchResumed {} => "dispatch_resumed",
            EventBody::RateChanged { .. } => "rate_changed",
        }
    }

    /// The ingestion's last event: it completed, or it was cancelled and nothing runs.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            EventBody::IngestionCompleted { .. }
                | EventBody::IngestionCancelled { .. }
                | EventBody::IngestionFailed { .. }
        )
    }

    /// The ingestion the event is about; `None` for queue-wide events.
    pub fn ingestion_id(&self) -> Option<Uuid> {
        match self {
            EventBody::IngestionCreated { ingestion_id, .. }
            | EventBody::BatchTriggered { ingestion_id, .. }
            | EventBody::BatchCompleted { ingestion_id, .. }
            | EventBody::IngestionCompleted { ingestion_id }
            | EventBody::BatchesCancelled { ingestion_id, .. }
            | EventBody::BatchRetrying { ingestion_id, .. }
            | EventBody::BatchFailed { ingestion_id, .. }
            | EventBody::BatchRequeued { ingestion_id, .. }
            | EventBody::IngestionFailed { ingestion_id }
            | EventBody::IngestionCancelled { ingestion_id } => Some(*ingestion_id),
            EventBody::DispatchPaused {}
            | EventBody::DispatchResumed {}
            | EventBody::RateChanged { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_flat_json_named_by_its_type() {
        let id = Uuid::nil();
        let event = Event {
            id: 7,
            at: Timestamp::from_micros(0),
            body: EventBody::IngestionCompleted { ingestion_id: id },
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["type"], "ingestion_completed");
        assert_eq!(json["type"], event.body.name());
        assert!(EventBody::NAMES.contains(&event.body.name()));
        let paused = serde_json::to_value(EventBody::DispatchPaused {}).unwrap();
        assert_eq!(paused, serde_json::json!({"type": "dispatch_paused"}));
        assert_eq!(json["id"], 7);
        assert_eq!(json["ingestion_id"], id.to_string());
        assert_eq!(serde_json::from_value::<Event>(json).unwrap(), event);
    }
}
