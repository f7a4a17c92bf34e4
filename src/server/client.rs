//! The client commands of the `sluice` binary: `ingest`, `status [--watch]`, `queue`, `cancel`,
//! against a running server's JSON routes and event stream, with the token in `SLUICE_TOKEN`. IDs are read by the same rules as the
//! dashboard's form; the server applies its own limits.

use crate::domain::{ids_from_text, Event, EventBody, IngestionView, Limits};
use crate::server::config::{Command, IngestArgs, ServerArg, StatusArgs};
use anyhow::{bail, Context};
use futures::StreamExt;
use serde_json::Value;
use std::io::Read;

/// The environment variable holding the token the client commands send.
pub const TOKEN_ENV: &str = "SLUICE_TOKEN";

/// Run a client command; `Ok(false)` when the server refused it (already reported).
pub async fn run(command: Command) -> anyhow::Result<bool> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = std::env::var(TOKEN_ENV)
        .ok()
        .filter(|t| !t.trim().is_empty())
    {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.trim()))
            .with_context(|| format!("{TOKEN_ENV} is not a valid token"))?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    let http = reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .context("building the HTTP client")?;
    match command {
        Command::Ingest(args) => ingest(&http, args).await,
        Command::Status(args) => status(&http, args).await,
        Command::Queue(ServerArg { server }) => {
            let body = get(&http, &format!("{}/queue", base(&server))).await?;
            print_json(&body)
        }
        Command::Cancel(args) => {
            let server = base(&args.server.server);
            let response = http
                .post(format!("{server}/ingest/{}/cancel", args.ingestion_id))
                .send()
                .await
                .with_context(|| format!("cannot reach {server}"))?;
            let (ok, body) = read(response).await?;
            if ok {
                print_json(&body)?;
            }
            Ok(ok)
        }
        Command::DownstreamExample(args) => crate::server::downstream_example::run(args).await,
        Command::Serve(_) => bail!("serve is not a client command"),
    }
}

fn base(server: &str) -> &str {
    server.trim_end_matches('/')
}

async fn ingest(http: &reqwest::Client, args: IngestArgs) -> anyhow::Result<bool> {
    let text = if args.ids.is_empty() {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading IDs from standard input")?;
        text
    } else {
        args.ids.join(" ")
    };
    // Generous here: the server refuses more than its own limit with a clear error.
    let ids = ids_from_text(
        &text,
        Limits {
            max_ids: 10_000_000,
        },
    )?;
    let mut body = serde_json::json!({"ids": ids, "priority": args.priority});
    if let Some(tenant) = args.tenant {
        body["tenant"] = tenant.into();
    }
    let response = http
        .post(format!("{}/ingest", base(&args.server.server)))
        .json(&body)
        .send()
        .await
        .with_context(|| format!("cannot reach {}", args.server.server))?;
    let (ok, body) = read(response).await?;
    if ok {
        println!("{}", body["ingestion_id"].as_str().unwrap_or_default());
    }
    Ok(ok)
}

async fn status(http: &reqwest::Client, args: StatusArgs) -> anyhow::Result<bool> {
    let server = base(&args.server.server);
    let url = format!("{server}/status/{}", args.ingestion_id);
    let response = http
        .get(&url)
        .send()
        .await
        .with_context(|| format!("cannot reach {server}"))?;
    let (ok, body) = read(response).await?;
    if !ok || !args.watch {
        return if ok { print_json(&body) } else { Ok(false) };
    }
    let view: IngestionView = serde_json::from_value(body).context("unexpected status body")?;
    println!(
        "{} {} {}: {} batches",
        view.ingestion_id,
        view.priority.as_str(),
        view.status.as_str(),
        view.batches.len()
    );
    if view.status.is_final() {
        return Ok(true);
    }
    // The ingestion's own stream replays from its first event, so nothing is missed; earlier
    // steps print again, which keeps the output a complete history.
    let response = http
        .get(format!("{url}/events"))
        .send()
        .await
        .with_context(|| format!("cannot reach {server}"))?;
    let mut stream = response.bytes_stream();
    let mut buffer = String::new();
    while let Some(chunk) = stream.next().await {
        buffer.push_str(&String::from_utf8_lossy(
            &chunk.context("event stream broke")?,
        ));
        while let Some(end) = buffer.find("\n\n") {
            let message: String = buffer.drain(..end + 2).collect();
            let Some(data) = message.lines().find_map(|l| l.strip_prefix("data:")) else {
                continue; // a heartbeat comment
            };
            let event: Event = serde_json::from_str(data.trim()).context("unexpected event")?;
            println!("{}", describe(&event));
            if event.body.is_final() {
                return Ok(true);
            }
        }
    }
    bail!("the event stream ended before the ingestion finished")
}

fn describe(event: &Event) -> String {
    let at = event.at.to_rfc3339();
    match &event.body {
        EventBody::IngestionCreated { batches, .. } => format!("{at} created ({batches} batches)"),
        EventBody::BatchTriggered {
            position, attempt, ..
        } => format!("{at} batch {} triggered (attempt {attempt})", position + 1),
        EventBody::BatchCompleted { position, .. } => {
            format!("{at} batch {} completed", position + 1)
        }
        EventBody::IngestionCompleted { .. } => format!("{at} completed"),
        EventBody::BatchesCancelled { batches, .. } => {
            format!("{at} cancelled ({batches} waiting batches)")
        }
        EventBody::IngestionCancelled { .. } => format!("{at} cancelled, nothing left running"),
        EventBody::BatchRetrying {
            position,
            attempt,
            error,
            retry_at,
            ..
        } => format!(
            "{at} batch {} attempt {attempt} failed ({error}); retry at {}",
            position + 1,
            retry_at.to_rfc3339()
        ),
        EventBody::BatchFailed {
            position,
            attempt,
            error,
            ..
        } => format!(
            "{at} batch {} failed after {attempt} attempts: {error}",
            position + 1
        ),
        EventBody::IngestionFailed { .. } => format!("{at} failed"),
        other => format!("{at} {}", other.name()),
    }
}

async fn get(http: &reqwest::Client, url: &str) -> anyhow::Result<Value> {
    let response = http
        .get(url)
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let (ok, body) = read(response).await?;
    if !ok {
        bail!("the server refused the request");
    }
    Ok(body)
}

/// The body as JSON; a refusal is printed to standard error in the server's words.
async fn read(response: reqwest::Response) -> anyhow::Result<(bool, Value)> {
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .with_context(|| format!("the server answered {status} without JSON"))?;
    if !status.is_success() {
        let error = &body["error"];
        eprintln!(
            "sluice: {status}: {} ({})",
            error["message"].as_str().unwrap_or("refused"),
            error["code"].as_str().unwrap_or("unknown")
        );
        return Ok((false, body));
    }
    Ok((true, body))
}

fn print_json(body: &Value) -> anyhow::Result<bool> {
    println!("{}", serde_json::to_string_pretty(body)?);
    Ok(true)
}
