//! LISTEN/NOTIFY, made so it cannot go quiet: every replica hears every other's events at
//! once through NOTIFY, and at most [`POLL`] late without it.
//!
//! - The listener's connection has TCP keepalives, so a peer that vanished without closing
//!   the connection is noticed.
//! - Every [`POLL`] the listener also reads `event_serial` on that connection (durably: see
//!   `DURABLE_LATEST_EVENT`), with a timeout:
//!   a notification lost on the way is caught up within one poll, and a connection that no
//!   longer answers is dropped.
//! - A dropped connection is replaced after [`FIRST_BACKOFF`], then with a backoff doubling
//!   up to [`MAX_BACKOFF`] until a new connection has answered a poll.

use super::*;

/// How often the listener reads the event counter besides the notifications.
pub(super) const POLL: Duration = Duration::from_secs(1);
/// How long the poll may take before the connection is taken for dead.
const POLL_TIMEOUT: Duration = Duration::from_secs(2);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// The listener's connection settings: the store's, named (operators can find it in
/// `pg_stat_activity`) and with keepalives.
fn listener_config(mut config: tokio_postgres::Config) -> tokio_postgres::Config {
    config
        .application_name("sluice-listener")
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(10))
        .keepalives_interval(Duration::from_secs(2))
        .keepalives_retries(3)
        .connect_timeout(Duration::from_secs(5));
    config
}

/// Keep the feed current with every replica's events, for as long as the store lives.
pub(super) async fn listen(config: tokio_postgres::Config, feed: Arc<watch::Sender<u64>>) {
    let config = listener_config(config);
    let mut backoff = FIRST_BACKOFF;
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
                match client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
                    Ok(()) => {
                        if follow(&client, &mut rx, &feed).await {
                            backoff = FIRST_BACKOFF;
                        }
                        tracing::warn!("the event listener's connection was lost; reconnecting");
                    }
                    Err(e) => tracing::warn!(error = %e, "could not listen for events"),
                }
                driver.abort();
            }
            Err(e) => tracing::warn!(error = %e, "event listener cannot connect; retrying"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Follow notifications and poll the counter (at once: whatever committed before LISTEN took
/// effect), until the connection fails; whether a poll was ever answered.
async fn follow(
    client: &tokio_postgres::Client,
    notifications: &mut tokio::sync::mpsc::UnboundedReceiver<u64>,
    feed: &watch::Sender<u64>,
) -> bool {
    let mut poll = tokio::time::interval(POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut answered = false;
    loop {
        tokio::select! {
            id = notifications.recv() => match id {
                Some(id) => advance(feed, id),
                None => return answered,
            },
            _ = poll.tick() => {
                let read = client.query_one(DURABLE_LATEST_EVENT, &[]);
                match tokio::time::timeout(POLL_TIMEOUT, read).await {
                    Ok(Ok(row)) => {
                        answered = true;
                        advance(feed, row.get::<_, i64>(0) as u64);
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "the event listener's poll failed");
                        return answered;
                    }
                    Err(_) => {
                        tracing::warn!("the event listener's poll did not answer");
                        return answered;
                    }
                }
            }
        }
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
