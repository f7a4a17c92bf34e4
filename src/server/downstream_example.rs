//! `sluice downstream-example`: a reference downstream for `--processor http` that follows
//! the two rules which turn sluice's at-least-once delivery into exactly-once effects
//! (docs/decisions.md, "Exactly-once effects at the downstream"):
//!
//! 1. deduplicate by `Idempotency-Key` (the batch id): a batch already applied is answered
//!    with its stored answer, not applied again;
//! 2. refuse stale attempts: keep the highest `attempt` seen per key and answer 409 to a lower
//!    one, also when a newer attempt arrived while this one was working.
//!
//! Each batch "works" for `--work`, then its effect is applied: a line in the `--record` file
//! (JSON lines: every request as `received`, every effect as `applied`, every refusal as
//! `stale` or `duplicate`). The effect runs in its own task, so a sluice replica that dies
//! mid-request does not cut it short, as with a real downstream.

use anyhow::Context;
use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
    Json, Router,
};
use serde_json::{json, Value};
use std::{
    collections::HashMap,
    io::Write,
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

/// `sluice downstream-example`'s settings.
#[derive(Clone, Debug, clap::Args)]
pub struct DownstreamArgs {
    /// Address to listen on (POST /batches).
    #[arg(long, default_value = "127.0.0.1:3100")]
    pub addr: SocketAddr,
    /// The JSON-lines file every request and effect is appended to.
    #[arg(long)]
    pub record: PathBuf,
    /// How long a batch works before its effect is applied (e.g. `500ms`).
    #[arg(long, default_value = "100ms")]
    pub work: humantime::Duration,
}

/// What the downstream knows of one batch (one key).
#[derive(Default)]
struct Seen {
    /// The highest attempt received.
    highest: u64,
    /// The answer of the applied effect, once applied.
    applied: Option<Value>,
}

#[derive(Clone)]
struct Downstream {
    seen: Arc<Mutex<HashMap<String, Seen>>>,
    record: Arc<Mutex<std::fs::File>>,
    work: Duration,
}

impl Downstream {
    fn note(&self, line: Value) {
        let mut file = self.record.lock().unwrap_or_else(|p| p.into_inner());
        // One write per line, flushed at once: the test reading the file sees whole lines.
        let _ = writeln!(file, "{line}");
        let _ = file.flush();
    }

    /// Apply the batch's effect once, unless it is stale or already applied.
    fn apply(&self, key: &str, attempt: u64, ids: &Value) -> (StatusCode, Value) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let entry = seen.entry(key.to_owned()).or_default();
        if attempt < entry.highest {
            self.note(json!({"event": "stale", "key": key, "attempt": attempt}));
            return (
                StatusCode::CONFLICT,
                json!({"error": format!("attempt {attempt} is older than {}", entry.highest)}),
            );
        }
        if let Some(answer) = &entry.applied {
            self.note(json!({"event": "duplicate", "key": key, "attempt": attempt}));
            return (StatusCode::OK, answer.clone());
        }
        let results: Vec<Value> = ids
            .as_array()
            .map(|ids| {
                ids.iter()
                    .map(|id| json!({"id": id, "data": "applied"}))
                    .collect()
            })
            .unwrap_or_default();
        let answer = json!({ "results": results });
        entry.applied = Some(answer.clone());
        self.note(json!({"event": "applied", "key": key, "attempt": attempt, "ids": ids}));
        (StatusCode::OK, answer)
    }
}

async fn batches(
    State(down): State<Downstream>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let Some(key) = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return (StatusCode::BAD_REQUEST, "Idempotency-Key is required").into_response();
    };
    let Some(attempt) = body["attempt"].as_u64() else {
        return (StatusCode::BAD_REQUEST, "attempt is required").into_response();
    };
    down.note(json!({"event": "received", "key": key, "attempt": attempt}));
    {
        // Rule 2 on arrival: a newer attempt was already seen.
        let mut seen = down.seen.lock().unwrap_or_else(|p| p.into_inner());
        let entry = seen.entry(key.clone()).or_default();
        if attempt < entry.highest {
            drop(seen);
            down.note(json!({"event": "stale", "key": key, "attempt": attempt}));
            return (StatusCode::CONFLICT, "a newer attempt exists").into_response();
        }
        entry.highest = attempt;
    }
    let work = down.clone();
    let ids = body["ids"].clone();
    let done = tokio::spawn(async move {
        tokio::time::sleep(work.work).await;
        // Rules 1 and 2 again at the moment of the effect.
        work.apply(&key, attempt, &ids)
    });
    match done.await {
        Ok((status, answer)) => (status, Json(answer)).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Serve until the process is stopped.
pub async fn run(args: DownstreamArgs) -> anyhow::Result<bool> {
    let record = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.record)
        .with_context(|| format!("cannot open {}", args.record.display()))?;
    let state = Downstream {
        seen: Default::default(),
        record: Arc::new(Mutex::new(record)),
        work: args.work.into(),
    };
    let app = Router::new()
        .route("/batches", post(batches))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("cannot listen on {}", args.addr))?;
    eprintln!(
        "downstream example listening on http://{}/batches",
        args.addr
    );
    axum::serve(listener, app).await?;
    Ok(true)
}
