//! Limits a public server needs, over raw TCP where a well-behaved HTTP client would not do
//! what an attacker does: slow headers, idle connections, too many connections, huge bodies
//! and huge headers.

mod common;

use common::spawn_app;
use std::time::{Duration, Instant};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

async fn connect(base: &str) -> TcpStream {
    TcpStream::connect(base.trim_start_matches("http://"))
        .await
        .unwrap()
}

/// Read until the server closes the connection; how long that took and what it sent.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (Duration, String) {
    let started = Instant::now();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(
            tokio::time::Instant::from_std(started + within),
            stream.read(&mut buf),
        )
        .await
        {
            Err(_) => panic!(
                "still open after {within:?}; got {:?}",
                String::from_utf8_lossy(&seen)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => {
                return (started.elapsed(), String::from_utf8_lossy(&seen).into())
            }
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected_and_others_are_served() {
    let app = spawn_app(&["--header-timeout", "300ms"]).await;
    let mut slow = connect(&app.base).await;
    slow.write_all(b"POST /ingest HTTP/1.1\r\nHost: sluice\r\nContent-Ty")
        .await
        .unwrap();
    // Meanwhile everyone else is served.
    let res = app.get("/healthz").await;
    assert_eq!(res.status(), 200);
    let (after, _) = read_until_closed(&mut slow, Duration::from_secs(5)).await;
    assert!(
        after >= Duration::from_millis(250),
        "closed too early: {after:?}"
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let app = spawn_app(&["--request-timeout", "500ms", "--idle-timeout", "1s"]).await;
    let mut idle = connect(&app.base).await;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: sluice\r\n\r\n")
        .await
        .unwrap();
    let (after, answered) = read_until_closed(&mut idle, Duration::from_secs(5)).await;
    assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
    assert!(
        after >= Duration::from_millis(900),
        "closed too early: {after:?}"
    );
}

#[tokio::test]
async fn past_the_connection_bound_new_clients_wait_until_one_closes() {
    let app = spawn_app(&["--max-connections", "2", "--header-timeout", "60s"]).await;
    let first = connect(&app.base).await;
    let _second = connect(&app.base).await;
    // Give the server a moment to accept both (it then stops accepting).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let waiting = reqwest::Client::new()
        .get(format!("{}/healthz", app.base))
        .timeout(Duration::from_millis(500))
        .send()
        .await;
    assert!(
        waiting.is_err(),
        "a third connection was served: {waiting:?}"
    );
    drop(first);
    let res = reqwest::Client::new()
        .get(format!("{}/healthz", app.base))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn a_declared_100_mb_body_is_refused_at_once_without_reading_it() {
    let app = spawn_app(&[]).await;
    let mut stream = connect(&app.base).await;
    let started = Instant::now();
    stream
        .write_all(
            b"POST /ingest HTTP/1.1\r\nHost: sluice\r\nContent-Type: application/json\r\n\
              Content-Length: 104857600\r\n\r\n{\"ids\": [",
        )
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf))
        .await
        .expect("answered without waiting for the body")
        .unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("payload_too_large"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn a_streamed_100_mb_body_is_cut_off_near_the_limit() {
    let app = spawn_app(&["--max-body-bytes", "1048576"]).await;
    let stream = connect(&app.base).await;
    let (mut read, mut write) = stream.into_split();
    let sender = tokio::spawn(async move {
        let mut sent = 0usize;
        let head = b"POST /ingest HTTP/1.1\r\nHost: sluice\r\nContent-Type: application/json\r\n\
                     Transfer-Encoding: chunked\r\n\r\n";
        if write.write_all(head).await.is_err() {
            return sent;
        }
        let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, "1,".repeat(32 * 1024));
        while sent < 100 * 1024 * 1024 {
            if write.write_all(chunk.as_bytes()).await.is_err() {
                break;
            }
            sent += 64 * 1024;
        }
        sent
    });
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), read.read(&mut buf))
        .await
        .expect("answered")
        .unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    drop(read);
    let sent = tokio::time::timeout(Duration::from_secs(10), sender)
        .await
        .expect("the server closed the connection instead of reading on")
        .unwrap();
    assert!(
        sent < 32 * 1024 * 1024,
        "the server read {sent} bytes of a body limited to 1 MiB"
    );
}

#[tokio::test]
async fn oversized_headers_are_refused_with_431() {
    let app = spawn_app(&[]).await;
    let mut stream = connect(&app.base).await;
    let huge = "x".repeat(100 * 1024);
    stream
        .write_all(
            format!("GET /healthz HTTP/1.1\r\nHost: sluice\r\nX-Big: {huge}\r\n\r\n").as_bytes(),
        )
        .await
        .ok();
    let (_, answer) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
}

/// Open `GET /events` on a connection of its own (a client of its own, so nothing is pooled),
/// from `from`; the response is returned unread, so a stream stays open while it is held.
async fn open_stream(base: &str, from: std::net::IpAddr) -> (reqwest::Client, reqwest::Response) {
    let client = reqwest::Client::builder()
        .local_address(from)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let res = client
        .get(format!("{base}/events"))
        .timeout(Duration::from_secs(3_600))
        .send()
        .await
        .unwrap();
    (client, res)
}

/// A refusal in the one error shape, with its code and a `Retry-After`.
async fn assert_refused(res: reqwest::Response, status: u16, code: &str) {
    assert_eq!(res.status(), status);
    let retry_after = res.headers()["retry-after"].to_str().unwrap().to_owned();
    assert!(retry_after.parse::<u64>().unwrap() >= 1, "{retry_after}");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], code, "{body}");
    assert_eq!(body["detail"], body["error"]["message"], "{body}");
}

const HERE: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

#[tokio::test]
async fn more_event_streams_than_their_budget_are_refused_and_requests_are_still_served() {
    let app = spawn_app(&[
        "--max-connections",
        "8",
        "--max-streams",
        "3",
        "--max-streams-per-client",
        "0",
    ])
    .await;
    let mut open = Vec::new();
    for _ in 0..3 {
        let (client, res) = open_stream(&app.base, HERE).await;
        assert_eq!(res.status(), 200);
        open.push((client, res));
    }
    // Far more refused streams than there are connections left: each refusal closes its
    // connection, so none of them keeps a slot (their clients are all kept alive here).
    let mut refused = Vec::new();
    for _ in 0..12 {
        let (client, res) = open_stream(&app.base, HERE).await;
        assert_refused(res, 503, "streams_busy").await;
        refused.push(client);
    }
    for _ in 0..5 {
        let res = reqwest::Client::new()
            .get(format!("{}/healthz", app.base))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .expect("a health probe is served while streams hold their whole budget");
        assert_eq!(res.status(), 200);
    }
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("sluice_event_streams_open 3"), "{metrics}");

    // A stream that ends gives its place back.
    drop(open.pop());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_client, res) = open_stream(&app.base, HERE).await;
        if res.status() == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the place of a closed stream was not given back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn one_client_cannot_take_every_event_stream_and_another_client_still_gets_one() {
    let app = spawn_app(&["--max-streams", "8", "--max-streams-per-client", "2"]).await;
    let _first = open_stream(&app.base, HERE).await;
    let _second = open_stream(&app.base, HERE).await;
    let (_, third) = open_stream(&app.base, HERE).await;
    assert_refused(third, 429, "too_many_streams").await;
    // Another address (all of 127.0.0.0/8 is this machine) is another client.
    let (_, other) = open_stream(&app.base, std::net::IpAddr::from([127, 0, 0, 2])).await;
    assert_eq!(other.status(), 200);
}

/// Start `POST /ingest` declaring `declared` bytes and send only `sent` of them.
async fn start_slow_body(base: &str, declared: usize, sent: usize) -> TcpStream {
    let body = format!(r#"{{"priority": "LOW", "ids": [{}"#, "1,".repeat(declared));
    let mut stream = connect(base).await;
    stream
        .write_all(
            format!(
                "POST /ingest HTTP/1.1\r\nHost: sluice\r\nContent-Type: application/json\r\n\
                 Content-Length: {declared}\r\n\r\n{}",
                &body[..sent]
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    stream
}

async fn small_ingest(base: String) -> reqwest::StatusCode {
    reqwest::Client::new()
        .post(format!("{base}/ingest"))
        .json(&serde_json::json!({"ids": [7], "priority": "HIGH"}))
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn bodies_wait_for_room_among_the_bodies_held_at_once_and_slow_senders_cannot_keep_it() {
    let app = spawn_app(&["--max-body-bytes", "4096", "--max-buffered-bytes", "8192"]).await;
    // Two clients declare the largest body and send part of it: all the room is theirs.
    let mut slow = Vec::new();
    for _ in 0..2 {
        slow.push(start_slow_body(&app.base, 4096, 2000).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A third body waits for room; health probes do not.
    let waiting = tokio::spawn(small_ingest(app.base.clone()));
    assert_eq!(app.get("/healthz").await.status(), 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "a body was read while the room was taken"
    );
    // The slow senders never finish: within their deadline (5 s for 4 KiB) they are answered
    // 408 and the room goes to the waiting body.
    let started = Instant::now();
    let status = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the waiting body was served once the slow senders were cut")
        .unwrap();
    assert_eq!(status, 200);
    for mut stream in slow {
        let (_, answered) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
        assert!(answered.starts_with("HTTP/1.1 408"), "{answered}");
        assert!(answered.contains("request_timeout"), "{answered}");
    }
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}
