-- The event log behind GET /events and GET /status/{id}/events: ordered, durable, bounded.
CREATE TABLE events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    at           INTEGER NOT NULL,
    ingestion_id TEXT    NOT NULL,
    body         TEXT    NOT NULL   -- JSON of the event without id and time
);
CREATE INDEX events_by_ingestion ON events (ingestion_id, id);
