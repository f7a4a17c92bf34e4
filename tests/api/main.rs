//! The JSON API over real HTTP: every status code of SPEC §1, response shapes, and that a
//! refused request stores nothing.

#[path = "../common/mod.rs"]
mod common;

mod ingest;
mod operations;
mod serving;
mod status;
mod tokens;

use common::spawn_app;
use serde_json::{json, Value};
use sluice::domain::Timestamp;
use std::time::Duration;

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort();
    k
}

/// The one error shape: `{"error": {"code", "message"}, "detail": message}` (the top-level
/// `detail`, as the FastAPI reference's errors have it, repeats the message).
fn assert_error(body: &Value, code: &str) {
    assert_eq!(keys(body), vec!["detail", "error"], "{body}");
    assert_eq!(keys(&body["error"]), vec!["code", "message"], "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(!body["error"]["message"].as_str().unwrap().is_empty());
    assert_eq!(body["detail"], body["error"]["message"], "{body}");
}
