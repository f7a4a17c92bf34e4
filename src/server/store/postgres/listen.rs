//! LISTEN/NOTIFY, made so it cannot go quiet: every replica hears every other's events at
//! once through NOTIFY, and at most [`POLL`] late without it.
//!
//! - NOTIFY is sent after commit, by the listener on its own connection, with the newest id
//!   this replica committed; ids committed while one NOTIFY is on its way go out together in
//!   the next. (A NOTIFY inside the writing transaction would take PostgreSQL's one lock for
//!   notifying transactions through each commit and its WAL flush, serializing every replica's
//!   commits; and it would cost every listener a wake-up per transaction.) A replica that dies
//!   between a commit and its NOTIFY leaves the others to find that event by their poll.
//! - The listener's connection has TCP keepalives, so a peer that vanished without closing
//!   the connection is noticed.
//! - Every [`POLL`] the listener also reads `event_seq` on that connection, with a timeout:
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

/// What this replica knows of the event log.
pub(super) struct Feed {
    /// The newest event id committed anywhere that this replica has seen: its event streams
    /// and memos follow it.
    pub(super) seen: watch::Sender<u64>,
    /// The newest one its own writes committed: the listener announces it to the others.
    own: watch::Sender<u64>,
}

impl Feed {
    pub(super) fn new(latest: u64) -> Self {
        Self {
            seen: watch::Sender::new(latest),
            own: watch::Sender::new(latest),
        }
    }

    /// This replica committed up to event `id`: its own streams move at once, the other
    /// replicas hear of it from the listener.
    pub(super) fn committed(&self, id: u64) {
        advance(&self.seen, id);
        advance(&self.own, id);
    }
}

/// Keep the feed current with every replica's events, and announce this replica's, for as
/// long as the store lives.
pub(super) async fn listen(config: tokio_postgres::Config, feed: Arc<Feed>) {
    let config = listener_config(config);
    let mut backoff = FIRST_BACKOFF;
    let mut own = feed.own.subscribe();
    let mut announced = *own.borrow_and_update();
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
                        if follow(&client, &mut rx, &feed.seen, &mut own, &mut announced).await {
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
/// effect), and announce this replica's commits (`own`, past `announced`), until the
/// connection fails or the store is gone; whether a poll was ever answered.
async fn follow(
    client: &tokio_postgres::Client,
    notifications: &mut tokio::sync::mpsc::UnboundedReceiver<u64>,
    feed: &watch::Sender<u64>,
    own: &mut watch::Receiver<u64>,
    announced: &mut u64,
) -> bool {
    let mut poll = tokio::time::interval(POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut answered = false;
    let Ok(notify) = client.prepare("SELECT pg_notify($1, $2)").await else {
        return answered;
    };
    loop {
        let id = *own.borrow_and_update();
        if id > *announced {
            let payload = id.to_string();
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&CHANNEL, &payload];
            let sent = client.execute(&notify, &params);
            match tokio::time::timeout(POLL_TIMEOUT, sent).await {
                Ok(Ok(_)) => *announced = id,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "the event listener could not notify");
                    return answered;
                }
                Err(_) => {
                    tracing::warn!("the event listener's notification did not answer");
                    return answered;
                }
            }
        }
        tokio::select! {
            id = notifications.recv() => match id {
                Some(id) => advance(feed, id),
                None => return answered,
            },
            changed = own.changed() => if changed.is_err() {
                return answered;
            },
            _ = poll.tick() => {
                let read = client.query_one(LATEST_EVENT, &[]);
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
