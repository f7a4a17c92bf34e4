//! The pace at a glance: the last minutes of dispatch as inline SVG. Each start is a mark on a
//! time axis, coloured by its priority, over the interval grid (a late start sits off its
//! line, a missing one leaves a line bare); below, the waiting depth per priority over the
//! same window; beside, the throughput against what the rate allows. The window ends at the
//! page's ticking clock, so marks move left between events; the data is re-read per burst of
//! events, like the other snapshots.

use super::{
    dashboard::{now_or, LoadError},
    format,
    live::Live,
};
use crate::domain::{Axis, ErrorDetail, PaceView, Priority};
use leptos::either::Either;
use leptos::prelude::*;

pub type PaceResource = Resource<Result<PaceView, ErrorDetail>>;

/// The drawing's size in its own units (it scales to the card's width).
const WIDTH: f64 = 600.0;
const MARKS_TOP: f64 = 4.0;
const MARKS_BOTTOM: f64 = 34.0;
const DEPTH_TOP: f64 = 44.0;
const DEPTH_BOTTOM: f64 = 104.0;
const HEIGHT: f64 = 118.0;

#[component]
pub fn Timeline(pace: PaceResource) -> impl IntoView {
    view! {
        <section class="card timeline" aria-labelledby="timeline-title" data-testid="timeline">
            <h2 id="timeline-title">"Pace"</h2>
            <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match pace.await {
                        Ok(view) => Either::Left(view! { <Drawing view/> }),
                        Err(error) => Either::Right(view! { <LoadError error/> }),
                    }
                })}
            </Transition>
        </section>
    }
}

#[component]
fn Drawing(view: PaceView) -> impl IntoView {
    let live = expect_context::<Live>();
    let (started, allowed) = view.per_minute_tenths();
    let count = view.starts.len();
    let window_s = view.window_ms / 1000;
    let summary = format!(
        "{count}{} start{} in the last {} · {}.{} a minute (the rate allows {}.{})",
        if view.truncated { "+" } else { "" },
        if count == 1 { "" } else { "s" },
        format::span(i64::try_from(view.window_ms).unwrap_or(i64::MAX)),
        started / 10,
        started % 10,
        allowed / 10,
        allowed % 10,
    );
    let deepest = view.deepest();
    let snapshot_now = view.now;
    let view = StoredValue::new(view);
    // Redrawn as the clock ticks: the window slides with it.
    let drawing = move || {
        let axis = view.with_value(|v| Axis::new(v, now_or(live, snapshot_now), WIDTH));
        view.with_value(|v| {
            let grid = axis
                .grid(v)
                .into_iter()
                .map(|x| {
                    view! {
                        <line class="grid" x1=x x2=x y1=MARKS_TOP y2=MARKS_BOTTOM></line>
                    }
                })
                .collect_view();
            let marks = v
                .starts
                .iter()
                .filter_map(|s| {
                    let x = axis.x(s.at)?;
                    let priority = s.priority.as_str();
                    Some(view! {
                        <line
                            class=format!("mark priority-{}", priority.to_ascii_lowercase())
                            data-testid="timeline-start"
                            data-batch-id=s.batch_id.to_string()
                            data-priority=priority
                            x1=x
                            x2=x
                            y1=MARKS_TOP + 3.0
                            y2=MARKS_BOTTOM - 3.0
                        >
                            <title>{format!("{priority} started {} UTC", format::clock(s.at))}</title>
                        </line>
                    })
                })
                .collect_view();
            let depth = Priority::ALL
                .into_iter()
                .map(|priority| {
                    let points = axis
                        .steps(v, priority)
                        .into_iter()
                        .map(|(x, waiting)| {
                            let y = DEPTH_BOTTOM
                                - (waiting as f64 / deepest as f64) * (DEPTH_BOTTOM - DEPTH_TOP);
                            format!("{x:.1},{y:.1}")
                        })
                        .collect::<Vec<_>>()
                        .join(" ");
                    view! {
                        <polyline
                            class=format!("depth priority-{}", priority.as_str().to_ascii_lowercase())
                            data-testid="timeline-depth"
                            data-priority=priority.as_str()
                            points=points
                        ></polyline>
                    }
                })
                .collect_view();
            view! {
                <rect class="lane" x="0" y=MARKS_TOP width=WIDTH height=MARKS_BOTTOM - MARKS_TOP></rect>
                {grid}
                {marks}
                <line class="axis" x1="0" x2=WIDTH y1=DEPTH_BOTTOM y2=DEPTH_BOTTOM></line>
                {depth}
            }
        })
    };
    let paused = view.with_value(|v| v.paused);
    view! {
        <p class="pace-summary" data-testid="timeline-summary">{summary}</p>
        <svg
            class="pace-drawing"
            viewBox=format!("0 0 {WIDTH} {HEIGHT}")
            role="img"
            aria-label="Starts over time on the interval grid, and the waiting batches per priority"
        >
            {drawing}
            <text class="scale" x="2" y=DEPTH_TOP + 8.0>{format!("{deepest} waiting")}</text>
            <text class="scale" x="2" y=HEIGHT - 2.0>{format!("−{window_s} s")}</text>
            <text class="scale end" x=WIDTH - 2.0 y=HEIGHT - 2.0>"now"</text>
        </svg>
        <p class="legend muted">
            <span class="key priority-high">"HIGH"</span>
            <span class="key priority-medium">"MEDIUM"</span>
            <span class="key priority-low">"LOW"</span>
            " · a line per slot; a start sits on its line"
            {paused.then_some(" · dispatch is paused")}
        </p>
    }
}
