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

/// The drawing's size in its own units (it scales to the card's width). Coordinates are
/// written as integers: formatting floats would add ~20 KB to the browser bundle.
const WIDTH: i64 = 1200;
const MARKS_TOP: i64 = 8;
const MARKS_BOTTOM: i64 = 68;
const DEPTH_TOP: i64 = 88;
const DEPTH_BOTTOM: i64 = 208;
const HEIGHT: i64 = 236;

fn at(x: f64) -> i64 {
    x.round() as i64
}

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
    // Laid out on a sliding axis, again at most twice a window; as the clock ticks only the
    // shift changes, so the window slides with it at the cost of one attribute.
    let clock = move || now_or(live, snapshot_now);
    let axis = Memo::new(move |_| view.with_value(|v| Axis::sliding(v, clock(), WIDTH as f64)));
    let shift = move || format!("translate({},0)", -at(axis.get().shift(clock())));
    let drawing = move || {
        let axis = axis.get();
        view.with_value(|v| {
            let grid = axis
                .grid(v)
                .into_iter()
                .map(|x| {
                    let x = at(x);
                    view! {
                        <line class="grid" x1=x x2=x y1=MARKS_TOP y2=MARKS_BOTTOM></line>
                    }
                })
                .collect_view();
            let marks = v
                .starts
                .iter()
                .filter_map(|s| {
                    let x = at(axis.x(s.at)?);
                    let priority = s.priority.as_str();
                    Some(view! {
                        <line
                            class=format!("mark priority-{}", priority.to_ascii_lowercase())
                            data-testid="timeline-start"
                            data-batch-id=s.batch_id.to_string()
                            data-priority=priority
                            x1=x
                            x2=x
                            y1=MARKS_TOP + 6
                            y2=MARKS_BOTTOM - 6
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
                            let height = (DEPTH_BOTTOM - DEPTH_TOP) as u64;
                            let y = DEPTH_BOTTOM - (waiting.min(deepest) * height / deepest) as i64;
                            format!("{},{y}", at(x))
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
                {grid}
                {marks}
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
            <rect class="lane" x="0" y=MARKS_TOP width=WIDTH height=MARKS_BOTTOM - MARKS_TOP></rect>
            <line class="axis" x1="0" x2=WIDTH y1=DEPTH_BOTTOM y2=DEPTH_BOTTOM></line>
            <g transform=shift>{drawing}</g>
            <text class="scale" x="4" y=DEPTH_TOP + 16>{format!("{deepest} waiting")}</text>
            <text class="scale" x="4" y=HEIGHT - 4>{format!("−{window_s} s")}</text>
            <text class="scale end" x=WIDTH - 4 y=HEIGHT - 4>"now"</text>
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
