//! The page at `/`: submit form, the pace timeline, recent ingestions with live batch cards,
//! queue panel.

use super::{
    ingestions::{IngestionList, Listing},
    live::{Connection, Live},
    queue::QueuePanel,
    search::SearchBox,
    submit::SubmitForm,
    timeline::{PaceResource, Timeline},
    token::TokenPrompt,
};
use crate::api::{pace_timeline, queue_snapshot};
use crate::domain::{ErrorDetail, Limits, QueueView, RecentIngestions, Timestamp};
use leptos::prelude::*;

/// Ingestions the page lists.
pub const LISTED: u32 = 20;

pub type RecentResource = Resource<Result<RecentIngestions, ErrorDetail>>;
pub type QueueResource = Resource<Result<QueueView, ErrorDetail>>;

#[component]
pub fn Dashboard() -> impl IntoView {
    let live = Live::new();
    provide_context(live);
    let listing = RwSignal::new(Listing::default());
    let recent: RecentResource = Resource::new(
        move || (live.version.get(), listing.get()),
        |(_, listing)| listing.read(LISTED),
    );
    let queue: QueueResource = Resource::new(move || live.version.get(), |_| queue_snapshot());
    let pace: PaceResource = Resource::new(move || live.version.get(), |_| pace_timeline());

    // Every snapshot corrects the clock; the first list also starts the live parts.
    Effect::new(move |_| {
        if let Some(read) = queue.get() {
            live.note_read(read.as_ref().map(|q| q.now));
            if let Ok(q) = read {
                live.limits.set(Limits {
                    max_ids: q.max_ids as usize,
                });
                live.batch_size.set(q.batch_size.max(1));
                live.rate_overridden.set(q.rate_overridden);
            }
        }
        if let Some(listed) = recent.get() {
            let after = listed.as_ref().ok().map(|r| r.last_event_id);
            live.begin(listed.as_ref().map(|_| ()), after);
        }
    });

    view! {
        <header class="masthead">
            <div>
                <h1>"sluice"</h1>
                <p class="tagline">"Priority, rate-limited batch ingestion"</p>
            </div>
            <SearchBox/>
            <ConnectionBadge live/>
        </header>
        <TokenPrompt/>
        <ReadOnlyNotice live/>
        <div class="layout">
            <div class="column">
                <SubmitForm/>
                <Timeline pace/>
                <IngestionList recent listing/>
            </div>
            <QueuePanel queue/>
        </div>
    }
}

/// Says why the buttons that write are disabled, and offers to use another token.
#[component]
fn ReadOnlyNotice(live: Live) -> impl IntoView {
    view! {
        <Show when=move || live.write_refusal().is_some()>
            <p class="card notice" data-testid="read-only" role="status">
                {move || live.write_refusal().unwrap_or_default()}
                ": submitting, cancelling, retrying and pausing are disabled. "
                <button
                    type="button"
                    data-testid="change-token"
                    on:click=move |_| live.writes_refused.set(true)
                >
                    "Use another token"
                </button>
            </p>
        </Show>
    }
}

#[component]
pub fn ConnectionBadge(live: Live) -> impl IntoView {
    let connection = live.connection;
    let label = move || match connection.get() {
        Connection::Connecting => "connecting…".to_owned(),
        Connection::Live => "live".to_owned(),
        Connection::Reconnecting => "reconnecting…".to_owned(),
        Connection::BackingOff { retry_at } => {
            let left = live.now.get().map_or(0, |now| {
                retry_at.as_micros().saturating_sub(now.as_micros())
            });
            format!(
                "no live updates (refused or unreachable): retrying in {} s",
                (left.max(0) + 999_999) / 1_000_000
            )
        }
    };
    view! {
        <p
            class=move || format!("connection {}", connection.get().as_str())
            data-testid="connection"
            data-state=move || connection.get().as_str()
            role="status"
        >
            <span class="dot" aria-hidden="true"></span>
            {label}
        </p>
    }
}

/// The current time as the page shows it: the ticking clock, or the snapshot's time before the
/// first tick.
pub fn now_or(live: Live, snapshot_now: Timestamp) -> Timestamp {
    live.now.get().unwrap_or(snapshot_now)
}

/// A failed read, shown in place of what could not be loaded.
#[component]
pub fn LoadError(error: ErrorDetail) -> impl IntoView {
    view! {
        <p class="error" role="alert">
            "Could not load: " {error.message}
        </p>
    }
}
