//! LISTEN/NOTIFY: every replica hears every other's events, and reconnects when dropped.

use super::*;

/// Keep the feed current with every replica's events; reconnect when the connection drops.
pub(super) async fn listen(config: tokio_postgres::Config, feed: Arc<watch::Sender<u64>>) {
    loop {
        match config.connect(NoTls).await {
            Ok((client, mut connection)) => {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
                let driver = tokio::spawn(async move {
                    let mut messages =
                        futures::stream::poll_fn(move |cx| connection.poll_message(cx));
                    while let Some(message) = messages.next().await {
                        match message {
                            Ok(AsyncMessage::Notification(n)) => {
                                if let Ok(id) = n.payload().parse() {
                                    let _ = tx.send(id);
                                }
                            }
                            Ok(_) => {}
                            Err(_) => break,
                        }
                    }
                });
                let caught_up = async {
                    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
                    // Whatever was committed before LISTEN took effect.
                    let row = client
                        .query_one("SELECT COALESCE(MAX(id), 0) FROM events", &[])
                        .await?;
                    Ok::<u64, tokio_postgres::Error>(row.get::<_, i64>(0) as u64)
                };
                match caught_up.await {
                    Ok(latest) => {
                        advance(&feed, latest);
                        while let Some(id) = rx.recv().await {
                            advance(&feed, id);
                        }
                        tracing::warn!("the event listener's connection closed; reconnecting");
                    }
                    Err(e) => tracing::warn!(error = %e, "could not listen for events"),
                }
                driver.abort();
            }
            Err(e) => tracing::warn!(error = %e, "event listener cannot connect; retrying"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Move the feed forward to `id` (never back).
pub(super) fn advance(feed: &watch::Sender<u64>, id: u64) {
    feed.send_if_modified(|seen| {
        let newer = id > *seen;
        if newer {
            *seen = id;
        }
        newer
    });
}
