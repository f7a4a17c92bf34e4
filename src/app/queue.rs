//! The queue panel: depth per priority, the batch in flight, the countdown to the next slot,
//! and the latest dispatches.

use super::{
    dashboard::{now_or, LoadError, QueueResource},
    format,
    live::{write_error, Live},
};
use crate::domain::{DispatchView, QueueView};
use leptos::either::Either;
use leptos::prelude::*;

#[component]
pub fn QueuePanel(queue: QueueResource) -> impl IntoView {
    view! {
        <aside class="card queue" aria-labelledby="queue-title" data-testid="queue">
            <h2 id="queue-title">"Queue"</h2>
            <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match queue.await {
                        Ok(q) => Either::Left(view! { <QueueBody queue=q/> }),
                        Err(error) => Either::Right(view! { <LoadError error/> }),
                    }
                })}
            </Transition>
            <RateControl/>
        </aside>
    }
}

/// Set the run-time rate interval, or go back to the configured one. Outside the snapshot's
/// redraws, so what is typed survives them.
#[component]
fn RateControl() -> impl IntoView {
    let live = expect_context::<Live>();
    let text = RwSignal::new(String::new());
    let set = live.write_action(move || {
        let entered = text.get_untracked().trim().to_owned();
        crate::api::set_rate_interval(serde_json::Value::String(entered))
    });
    let clear = live.write_action(|| crate::api::set_rate_interval(serde_json::Value::Null));
    Effect::new(move |_| {
        if let Some(Ok(_)) = set.value().get() {
            text.set(String::new());
        }
    });
    view! {
        <form
            class="rate"
            data-testid="rate-form"
            on:submit=move |ev| {
                ev.prevent_default();
                if !text.get_untracked().trim().is_empty() {
                    set.dispatch(());
                }
            }
        >
            <label for="rate">"Rate interval"</label>
            <input
                id="rate"
                data-testid="rate-input"
                placeholder="e.g. 2s, 250ms"
                autocomplete="off"
                prop:value=move || text.get()
                on:input=move |ev| text.set(event_target_value(&ev))
            />
            <button
                type="submit"
                data-testid="rate-set"
                title=live.write_title(
                    "Dispatch one batch per this interval, on every replica, until cleared",
                )
                disabled=live.write_disabled(move || set.pending().get())
            >
                "Set"
            </button>
            <Show when=move || live.rate_overridden.get()>
                <button
                    type="button"
                    data-testid="rate-clear"
                    title=live.write_title("Go back to the interval the server was started with")
                    disabled=live.write_disabled(move || clear.pending().get())
                    on:click=move |_| {
                        clear.dispatch(());
                    }
                >
                    "Back to configured"
                </button>
            </Show>
            {write_error(set)}
            {write_error(clear)}
        </form>
    }
}

#[component]
fn QueueBody(queue: QueueView) -> impl IntoView {
    let live = expect_context::<Live>();
    let snapshot_now = queue.now;
    let waiting: u64 = queue.waiting.iter().map(|d| d.batches).sum();
    let next_slot = queue.next_slot;
    let paused = queue.paused;
    let toggle = live.write_action(move || crate::api::set_dispatch_paused(!paused));
    let toggle_error = write_error(toggle);
    let next = move || {
        let now = now_or(live, snapshot_now);
        if paused {
            return "paused by an operator: nothing starts until resumed".to_owned();
        }
        match (waiting, next_slot > now) {
            (0, false) => "idle: new work starts at once".to_owned(),
            (_, false) => "now".to_owned(),
            (_, true) => format!(
                "{} UTC · {}",
                format::clock(next_slot),
                format::countdown(next_slot, now)
            ),
        }
    };
    let depths = queue
        .waiting
        .iter()
        .map(|d| {
            let p = d.priority.as_str();
            // Who the waiting work belongs to, most first (shown when it is not all `default`'s).
            let mut shares: Vec<String> = d
                .tenants
                .iter()
                .map(|t| format!("{} {}", t.tenant, t.batches))
                .collect();
            if d.other_tenants > 0 {
                shares.push(format!("others {}", d.other_tenants));
            }
            let only_default = d.tenants.len() == 1
                && d.other_tenants == 0
                && d.tenants[0].tenant == crate::domain::DEFAULT_TENANT;
            let tenants = (!shares.is_empty() && !only_default).then(|| {
                view! {
                    <dd class="tenants" data-testid=format!("tenants-{p}")>{shares.join(" · ")}</dd>
                }
            });
            view! {
                <div class=format!("depth priority-{}", p.to_ascii_lowercase()) data-testid=format!("depth-{p}")>
                    <dt>{p}</dt>
                    <dd>{d.batches} <span class="muted">{if d.batches == 1 { " batch" } else { " batches" }}</span></dd>
                    {tenants}
                </div>
            }
        })
        .collect_view();
    let in_flight = match queue.in_flight {
        Some(d) => {
            let start = d.started_at;
            let running = move || format::elapsed(start, now_or(live, snapshot_now));
            Either::Left(view! {
                <p data-testid="in-flight" data-batch-id=d.batch_id.to_string()>
                    <span class=format!("badge priority-{}", d.priority.as_str().to_ascii_lowercase())>
                        {d.priority.as_str()}
                    </span>
                    " " <code>{format::short(d.ingestion_id)}</code>
                    " #" {d.position + 1} " · " {format::ids(&d.ids)} " · running " {running}
                </p>
            })
        }
        None => Either::Right(
            view! { <p class="muted" data-testid="in-flight">"Nothing in flight."</p> },
        ),
    };
    let recent = queue
        .recent
        .into_iter()
        .map(|d| view! { <Dispatch d/> })
        .collect_view();
    view! {
        <dl class="depths">{depths}</dl>
        <h3>"Next dispatch slot"</h3>
        <p class="next-slot" data-testid="next-slot">{next}</p>
        <p class="operate">
            <button
                type="button"
                data-testid="pause-toggle"
                data-paused=paused.to_string()
                title=live.write_title(if paused {
                    "Start dispatching again, under the rate limit"
                } else {
                    "Start nothing new until resumed; the batch in flight finishes"
                })
                disabled=live.write_disabled(move || toggle.pending().get())
                on:click=move |_| {
                    toggle.dispatch(());
                }
            >
                {if paused { "Resume dispatch" } else { "Pause dispatch" }}
            </button>
            {toggle_error}
        </p>
        <h3>"In flight"</h3>
        {in_flight}
        <h3>"Recent dispatches"</h3>
        <ol class="dispatches" data-testid="recent-dispatches">{recent}</ol>
        <p class="muted pace">
            {format!(
                "One batch every {}{} · {} IDs per batch",
                format::span(queue.rate_interval_ms as i64),
                if queue.rate_overridden { " (set at run time)" } else { "" },
                queue.batch_size,
            )}
        </p>
    }
}

#[component]
fn Dispatch(d: DispatchView) -> impl IntoView {
    let outcome = match d.completed_at {
        Some(end) => format!("done in {}", format::elapsed(d.started_at, end)),
        None => "running".to_owned(),
    };
    view! {
        <li data-ingestion-id=d.ingestion_id.to_string()>
            <span class="muted">{format::clock(d.started_at)}</span>
            " "
            <span class=format!("badge priority-{}", d.priority.as_str().to_ascii_lowercase())>
                {d.priority.as_str()}
            </span>
            " " <code>{format::short(d.ingestion_id)}</code> " #" {d.position + 1} " · " <span class="took">{outcome}</span>
        </li>
    }
}
