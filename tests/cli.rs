//! The client commands of the real binary against a real server: ingest, status --watch, queue.

mod common;

use common::spawn_app;
use std::process::Output;
use tokio::process::Command;

async fn sluice(args: &[&str], stdin: Option<&str>) -> Output {
    sluice_with_token(args, stdin, None).await
}

async fn sluice_with_token(args: &[&str], stdin: Option<&str>, token: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
    command.args(args).env_remove("SLUICE_TOKEN");
    if let Some(token) = token {
        command.env("SLUICE_TOKEN", token);
    }
    command
        .env_remove("SLUICE_SERVER")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        use tokio::io::AsyncWriteExt;
        input.write_all(text.as_bytes()).await.unwrap();
    }
    drop(input);
    child.wait_with_output().await.unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn ingest_then_watch_prints_every_step_until_completed() {
    let app = spawn_app(&[]).await;
    let out = sluice(
        &[
            "ingest",
            "--server",
            &app.base,
            "--priority",
            "HIGH",
            "1-4",
            "9",
        ],
        None,
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_owned();
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().to_string(), id);

    let out = sluice(&["status", "--server", &app.base, &id, "--watch"], None).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines = text(&out.stdout);
    assert!(
        lines.lines().last().unwrap().ends_with("completed"),
        "{lines}"
    );

    let out = sluice(&["status", "--server", &app.base, &id], None).await;
    let view: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(view["batches"][0]["ids"], serde_json::json!([1, 2, 3]));
    assert_eq!(view["batches"][1]["ids"], serde_json::json!([4, 9]));
}

#[tokio::test]
async fn ids_can_come_from_standard_input_and_the_queue_can_be_read() {
    let app = spawn_app(&["--rate-interval", "1h"]).await;
    let out = sluice(&["ingest", "--server", &app.base], Some("5\n6\n7\n8\n")).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = sluice(&["queue", "--server", &app.base], None).await;
    assert!(out.status.success());
    let queue: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // MEDIUM by default: two batches, the first possibly started already.
    let medium = queue["waiting"][1]["batches"].as_u64().unwrap();
    let started = queue["recent"].as_array().unwrap().len() as u64;
    assert_eq!(medium + started, 2, "{queue}");
    assert_eq!(queue["waiting"][0]["batches"], 0);
    assert_eq!(queue["waiting"][2]["batches"], 0);
}

#[tokio::test]
async fn refusals_exit_with_failure_and_say_why() {
    let app = spawn_app(&[]).await;
    let out = sluice(&["ingest", "--server", &app.base, "0"], None).await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("out of range"),
        "{}",
        text(&out.stderr)
    );

    let out = sluice(
        &["ingest", "--server", &app.base, "-p", "URGENT", "1"],
        None,
    )
    .await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("invalid_priority"),
        "{}",
        text(&out.stderr)
    );

    let unknown = uuid::Uuid::new_v4().to_string();
    let out = sluice(&["status", "--server", &app.base, &unknown], None).await;
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("404"), "{}", text(&out.stderr));
    assert_eq!(app.count("ingestions"), 0);

    let out = sluice(&["queue", "--server", "http://127.0.0.1:9"], None).await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("cannot reach"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn the_client_sends_the_token_from_the_environment_and_can_cancel() {
    let token = "cli-test-token-0123456789";
    let app = spawn_app(&["--api-tokens", token, "--rate-interval", "1h"]).await;
    let refused = sluice(&["ingest", "--server", &app.base, "1-9"], None).await;
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("unauthorized"),
        "{}",
        text(&refused.stderr)
    );
    assert!(!text(&refused.stderr).contains(token));

    let out = sluice_with_token(&["ingest", "--server", &app.base, "1-9"], None, Some(token)).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_owned();
    let out = sluice_with_token(&["cancel", "--server", &app.base, &id], None, Some(token)).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["cancelled_batches"], 2, "{answer}");
    // Reads stay open without a read token.
    let out = sluice(&["status", "--server", &app.base, &id, "--watch"], None).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("cancelled"),
        "{}",
        text(&out.stdout)
    );
}
