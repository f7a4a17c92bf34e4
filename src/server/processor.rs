//! What happens to a dispatched batch: the downstream call.
//!
//! - `simulated` (the default, SPEC §2): each ID "fetched" concurrently for a fixed time.
//! - `http`: the batch is POSTed as JSON to a downstream URL, with its attempt number (the
//!   fencing token) and the batch id as `Idempotency-Key`; its answer gives each ID's result.
//!   Failures say whether another attempt could help (`retryable`, not before the
//!   downstream's `Retry-After`); the scheduler decides when (backoff) and how often.

use crate::domain::{ClaimedBatch, IdResult};
use async_trait::async_trait;
use serde::Deserialize;
use std::time::Duration;

/// A failed attempt.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ProcessError {
    pub message: String,
    /// Another attempt could succeed (timeouts, 5xx, 408/429, broken answers); a refusal the
    /// same request would get again (other 4xx) is not.
    pub retryable: bool,
    /// The downstream asked not to be called again before this long (`Retry-After` on a 429
    /// or 503); the next attempt waits at least this.
    pub retry_after: Option<Duration>,
    /// The downstream's HTTP status, when it answered.
    pub status: Option<u16>,
}

impl ProcessError {
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: true,
            retry_after: None,
            status: None,
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            retryable: false,
            ..Self::retryable(message)
        }
    }
}

#[async_trait]
pub trait Processor: Send + Sync + 'static {
    /// Process one batch: one result per ID, in the batch's order, or why it failed.
    async fn process(&self, batch: &ClaimedBatch) -> Result<Vec<IdResult>, ProcessError>;
}

/// The default processor (SPEC §2): simulates fetching every ID of the batch concurrently,
/// each taking `work`, and records `{"id": id, "data": "processed"}`.
#[derive(Clone, Debug)]
pub struct SimulatedProcessor {
    work: Duration,
}

impl SimulatedProcessor {
    pub fn new(work: Duration) -> Self {
        Self { work }
    }
}

#[async_trait]
impl Processor for SimulatedProcessor {
    async fn process(&self, batch: &ClaimedBatch) -> Result<Vec<IdResult>, ProcessError> {
        let fetches = batch.ids.iter().map(|&id| async move {
            tokio::time::sleep(self.work).await;
            IdResult::processed(id)
        });
        Ok(futures::future::join_all(fetches).await)
    }
}

/// POSTs `{"batch_id", "ingestion_id", "priority", "ids", "attempt"}` to a downstream URL,
/// with `Idempotency-Key: <batch_id>` (the same for every attempt of a batch; `attempt`
/// strictly increases across attempts, replicas and restarts). A downstream that keeps the
/// highest attempt it has applied per key and answers 409 to a lower one gets every batch's
/// effect exactly once (docs/decisions.md).
///
/// The answer: any 2xx with an empty body marks every ID done (`"data": "done"`); a 2xx with
/// `{"results": [{"id": 1, "data": …}, {"id": 2, "error": "…"}]}` gives each ID its data or
/// error (an ID the answer leaves out gets the error "no result"). Anything else is a failed
/// attempt: 408, 429, 5xx, timeouts, connection errors and unreadable 2xx bodies (including
/// one over [`MAX_ANSWER_BYTES`]) may be tried again, not before a 429's or 503's
/// `Retry-After` (in seconds, at most [`MAX_RETRY_AFTER`]); other 4xx answers are final,
/// 409 included: a downstream following the rules answers 409 only to an attempt the store
/// has already fenced off (a newer one took the batch over), so recording it is refused and
/// the attempt ends quietly; a 409 for any other reason fails the batch like any refusal.
pub struct HttpProcessor {
    client: reqwest::Client,
    url: String,
    /// Sent with every request (e.g. `Authorization: Bearer …`); never logged.
    header: Option<(reqwest::header::HeaderName, reqwest::header::HeaderValue)>,
}

/// Longest wait a downstream's `Retry-After` can ask for (a larger one is cut to this).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// A `Retry-After` in seconds (the HTTP-date form is not honoured: the backoff applies).
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let value = response.headers().get(reqwest::header::RETRY_AFTER)?;
    let text = value.to_str().ok()?.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Digits too many for a u64 are a very long wait: the cap.
    let secs = text.parse::<u64>().unwrap_or(u64::MAX);
    Some(Duration::from_secs(secs.min(MAX_RETRY_AFTER.as_secs())))
}

/// Longest error text kept from a downstream answer.
const ERROR_EXCERPT: usize = 300;

/// Largest downstream answer read (1 MiB): past it a 2xx answer is a failed attempt (which
/// may be tried again), and no more of it is read, so a broken or hostile downstream cannot
/// make sluice buffer without bound.
pub const MAX_ANSWER_BYTES: usize = 1 << 20;

/// Up to `limit` bytes of `response`'s body, and whether there was more.
async fn read_bounded(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = limit - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, true));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, false))
}

#[derive(Deserialize)]
struct Answer {
    results: Vec<AnswerItem>,
}

#[derive(Deserialize)]
struct AnswerItem {
    id: u64,
    #[serde(default)]
    data: serde_json::Value,
    #[serde(default)]
    error: Option<String>,
}

impl HttpProcessor {
    /// `header` is `Name: value`.
    pub fn new(url: &str, timeout: Duration, header: Option<&str>) -> Result<Self, String> {
        let parsed: reqwest::Url = url
            .parse()
            .map_err(|e| format!("processor URL {url:?}: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!(
                "processor URL {url:?}: must be http:// or https://"
            ));
        }
        let header = header
            .map(|raw| {
                let (name, value) = raw
                    .split_once(':')
                    .ok_or("the processor header must look like `Name: value`")?;
                let name = reqwest::header::HeaderName::from_bytes(name.trim().as_bytes())
                    .map_err(|_| "the processor header's name is not a valid header name")?;
                let mut value = reqwest::header::HeaderValue::from_str(value.trim())
                    .map_err(|_| "the processor header's value is not a valid header value")?;
                value.set_sensitive(true);
                Ok::<_, String>((name, value))
            })
            .transpose()?;
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| format!("building the HTTP client: {e}"))?;
        Ok(Self {
            client,
            url: url.to_owned(),
            header,
        })
    }
}

#[async_trait]
impl Processor for HttpProcessor {
    async fn process(&self, batch: &ClaimedBatch) -> Result<Vec<IdResult>, ProcessError> {
        let body = serde_json::json!({
            "batch_id": batch.batch_id,
            "ingestion_id": batch.ingestion_id,
            "priority": batch.priority,
            "ids": batch.ids,
            "attempt": batch.attempt,
        });
        let mut request = self
            .client
            .post(&self.url)
            .header("idempotency-key", batch.batch_id.to_string())
            .json(&body);
        if let Some((name, value)) = &self.header {
            request = request.header(name, value);
        }
        let response = request.send().await.map_err(|e| {
            let what = if e.is_timeout() {
                "timed out"
            } else if e.is_connect() {
                "could not connect"
            } else {
                "request failed"
            };
            ProcessError::retryable(format!("downstream {what}: {e}"))
        })?;
        let status = response.status();
        let wait = match status {
            reqwest::StatusCode::TOO_MANY_REQUESTS | reqwest::StatusCode::SERVICE_UNAVAILABLE => {
                retry_after(&response)
            }
            _ => None,
        };
        let (body, cut) = read_bounded(response, MAX_ANSWER_BYTES)
            .await
            .map_err(|e| ProcessError::retryable(format!("reading the downstream answer: {e}")))?;
        let text = String::from_utf8_lossy(&body);
        if !status.is_success() {
            let excerpt: String = text.chars().take(ERROR_EXCERPT).collect();
            let message = format!("downstream answered {status}: {excerpt}");
            let retryable = status.is_server_error()
                || status == reqwest::StatusCode::REQUEST_TIMEOUT
                || status == reqwest::StatusCode::TOO_MANY_REQUESTS;
            return Err(ProcessError {
                message,
                retryable,
                retry_after: wait,
                status: Some(status.as_u16()),
            });
        }
        if cut {
            return Err(ProcessError::retryable(format!(
                "the downstream answer is larger than {} KiB",
                MAX_ANSWER_BYTES / 1024
            )));
        }
        if text.trim().is_empty() {
            return Ok(batch
                .ids
                .iter()
                .map(|&id| IdResult {
                    id,
                    data: serde_json::Value::from("done"),
                    error: None,
                })
                .collect());
        }
        let answer: Answer = serde_json::from_str(&text).map_err(|e| {
            ProcessError::retryable(format!(
                "the downstream answer is not {{\"results\": [{{\"id\", \"data\"}}]}}: {e}"
            ))
        })?;
        let mut by_id: std::collections::HashMap<u64, AnswerItem> =
            answer.results.into_iter().map(|r| (r.id, r)).collect();
        Ok(batch
            .ids
            .iter()
            .map(|&id| match by_id.remove(&id) {
                Some(item) => IdResult {
                    id,
                    data: item.data,
                    error: item.error,
                },
                None => IdResult {
                    id,
                    data: serde_json::Value::Null,
                    error: Some("no result".into()),
                },
            })
            .collect())
    }
}

/// How failed attempts are tried again: at most `max_attempts` dispatches in all, the n-th
/// retry not before `base × 2^(n-1)` (capped) with jitter, each a new dispatch under the rate
/// limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base: Duration,
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base: Duration::from_secs(1),
            cap: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// The wait before the next attempt after `attempt` failed, or `None` if that was the
    /// last one (or the failure is final). `unit` in [0, 1) picks the jitter: the wait is
    /// between half and all of the exponential backoff, and at least what the downstream
    /// asked for.
    pub fn backoff(&self, attempt: u32, error: &ProcessError, unit: f64) -> Option<Duration> {
        if !error.retryable || attempt >= self.max_attempts {
            return None;
        }
        let exp = self
            .base
            .saturating_mul(
                1u32.checked_shl(attempt.saturating_sub(1))
                    .unwrap_or(u32::MAX),
            )
            .min(self.cap);
        let backoff = exp.mul_f64(0.5 + 0.5 * unit.clamp(0.0, 1.0));
        Some(backoff.max(error.retry_after.unwrap_or_default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_with_jitter_until_the_last_attempt() {
        let policy = RetryPolicy {
            max_attempts: 4,
            base: Duration::from_secs(1),
            cap: Duration::from_secs(5),
        };
        let soft = ProcessError::retryable("503");
        assert_eq!(policy.backoff(1, &soft, 1.0), Some(Duration::from_secs(1)));
        assert_eq!(policy.backoff(2, &soft, 1.0), Some(Duration::from_secs(2)));
        assert_eq!(policy.backoff(3, &soft, 0.0), Some(Duration::from_secs(2)));
        assert_eq!(
            policy.backoff(4, &soft, 1.0),
            None,
            "the fourth was the last"
        );
        let capped = RetryPolicy {
            max_attempts: 50,
            ..policy
        };
        assert_eq!(capped.backoff(40, &soft, 1.0), Some(Duration::from_secs(5)));
        assert_eq!(
            policy.backoff(1, &ProcessError::permanent("400"), 1.0),
            None
        );
        // The downstream's Retry-After is a floor, not a replacement; it spends an attempt.
        let wait = ProcessError {
            retry_after: Some(Duration::from_secs(60)),
            ..ProcessError::retryable("429")
        };
        assert_eq!(policy.backoff(1, &wait, 1.0), Some(Duration::from_secs(60)));
        assert_eq!(policy.backoff(4, &wait, 1.0), None);
        let short = ProcessError {
            retry_after: Some(Duration::from_millis(10)),
            ..ProcessError::retryable("503")
        };
        assert_eq!(policy.backoff(2, &short, 1.0), Some(Duration::from_secs(2)));
    }
}
