//! The recent pace, as the dashboard's timeline draws it: each start on a time axis, the
//! interval grid (a late or missing slot shows as a mark off its line or a line without a
//! mark), the waiting depth per priority over the same window, and the throughput. The
//! geometry is here, pure and tested, so the page only draws.

use super::{Priority, Timestamp};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use uuid::Uuid;

/// Slots the window shows at the current interval, within [`MIN_WINDOW`] and [`MAX_WINDOW`].
pub const SLOTS_SHOWN: u32 = 120;
pub const MIN_WINDOW: Duration = Duration::from_secs(10);
pub const MAX_WINDOW: Duration = Duration::from_secs(300);
/// Most grid lines drawn; a window with more slots gets none.
pub const MAX_GRID_LINES: i64 = 4 * SLOTS_SHOWN as i64;
/// Most starts one view carries (the newest; `truncated` says when older ones were left out).
pub const MAX_STARTS: usize = 600;

/// How far back the timeline looks at `interval`: [`SLOTS_SHOWN`] slots, within bounds (5 min
/// at the default 5 s; 12 s at 100 ms).
pub fn window_for(interval: Duration) -> Duration {
    interval
        .saturating_mul(SLOTS_SHOWN)
        .clamp(MIN_WINDOW, MAX_WINDOW)
}

/// One batch's start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct StartMark {
    pub at: Timestamp,
    pub priority: Priority,
    pub batch_id: Uuid,
}

/// The waiting batches per priority at one instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct DepthSample {
    pub at: Timestamp,
    pub high: u64,
    pub medium: u64,
    pub low: u64,
}

impl DepthSample {
    pub fn of(&self, priority: Priority) -> u64 {
        match priority {
            Priority::High => self.high,
            Priority::Medium => self.medium,
            Priority::Low => self.low,
        }
    }
}

/// The pace over the last minutes (`POST /api/pace`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct PaceView {
    /// The server's time when it was read: the window ends here.
    pub now: Timestamp,
    /// How long the window is (`window_for` the interval in force).
    pub window_ms: u64,
    pub rate_interval_ms: u64,
    /// Dispatch is paused by an operator.
    pub paused: bool,
    /// Starts within the window, oldest first.
    pub starts: Vec<StartMark>,
    /// More starts fell in the window than [`MAX_STARTS`]: the oldest were left out.
    pub truncated: bool,
    /// The waiting depth, oldest first, sampled by this replica every second while it runs
    /// (its history begins when it started); the last is the depth at `now`.
    pub depth: Vec<DepthSample>,
    /// The newest event reflected here.
    pub last_event_id: u64,
}

/// Where a view's parts fall on a drawing `width` wide whose window ends at `end` (the page's
/// ticking clock, so marks move left between reads).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Axis {
    pub end: Timestamp,
    pub window: Duration,
    pub width: f64,
}

impl Axis {
    pub fn new(view: &PaceView, end: Timestamp, width: f64) -> Self {
        Self {
            end: end.max(view.now),
            window: Duration::from_millis(view.window_ms.max(1)),
            width,
        }
    }

    /// The axis a sliding drawing is laid out on: its window ends at `anchor`, the latest
    /// half-window step of the page's clock past the view's time (so the layout changes at
    /// most twice a window, however often the clock ticks), and it extends one window past
    /// it with the same scale, so that shifting it left by [`Axis::shift`] shows the window
    /// ending at the clock.
    pub fn sliding(view: &PaceView, clock: Timestamp, width: f64) -> Self {
        let window = Duration::from_millis(view.window_ms.max(1));
        let half = i64::try_from(window.as_micros() / 2)
            .unwrap_or(i64::MAX)
            .max(1);
        let steps = clock.since(view.now).as_micros() as i64 / half;
        let anchor = Timestamp::from_micros(view.now.as_micros() + steps * half);
        Self {
            end: anchor.plus(window),
            window: window * 2,
            width: width * 2.0,
        }
    }

    /// How far left a drawing laid out on this (sliding) axis is moved for the window to end
    /// at `clock`.
    pub fn shift(&self, clock: Timestamp) -> f64 {
        let anchor = self.end.minus(self.window / 2);
        clock.since(anchor).as_micros() as f64 / self.window.as_micros().max(1) as f64 * self.width
    }

    pub fn start(&self) -> Timestamp {
        self.end.minus(self.window)
    }

    /// The x of `t`, or `None` before the window.
    pub fn x(&self, t: Timestamp) -> Option<f64> {
        let from = self.start();
        (t >= from).then(|| {
            let span = self.window.as_micros().max(1) as f64;
            (t.as_micros() - from.as_micros()) as f64 / span * self.width
        })
    }

    /// The interval grid: a line at every slot of the newest start's rhythm within the
    /// window (before it, and after it up to the window's end: slots that came without a
    /// start), in order. Nothing when nothing started, or when the window holds more than
    /// [`MAX_GRID_LINES`] slots (lines closer than a few pixels tell nothing).
    pub fn grid(&self, view: &PaceView) -> Vec<f64> {
        let Some(last) = view.starts.last() else {
            return Vec::new();
        };
        let step = i64::try_from(view.rate_interval_ms.max(1) * 1000).unwrap_or(i64::MAX);
        let (from, end, last) = (
            self.start().as_micros(),
            self.end.as_micros(),
            last.at.as_micros(),
        );
        // The slots last + k·step inside [from, end]: k from ⌈(from − last) / step⌉ to
        // ⌊(end − last) / step⌋, however long the page has been idle.
        let (first, final_) = (
            (from - last).div_euclid(step) + i64::from((from - last).rem_euclid(step) != 0),
            (end - last).div_euclid(step),
        );
        // The limit is for the window the view shows; a sliding layout spans more of them.
        let shown = u128::from(view.window_ms.max(1)) * 1000;
        let limit =
            MAX_GRID_LINES * i64::try_from((self.window.as_micros() / shown).max(1)).unwrap_or(1);
        if final_ < first || final_ - first >= limit {
            return Vec::new();
        }
        (first..=final_)
            .filter_map(|k| self.x(Timestamp::from_micros(last + k * step)))
            .collect()
    }

    /// One priority's depth as a step line: `(x, waiting)` points, held flat from each sample
    /// to the next and to the window's end.
    pub fn steps(&self, view: &PaceView, priority: Priority) -> Vec<(f64, u64)> {
        let mut points = Vec::new();
        let mut before: Option<u64> = None;
        for sample in &view.depth {
            let value = sample.of(priority);
            match self.x(sample.at) {
                None => before = Some(value),
                Some(x) => {
                    // The line starts at the window's edge with what was held before it.
                    if let (true, Some(held)) = (points.is_empty(), before) {
                        points.push((0.0, held));
                    }
                    if let Some(&(_, previous)) = points.last() {
                        points.push((x, previous));
                    }
                    points.push((x, value));
                }
            }
        }
        match (points.last().copied(), before) {
            (Some((_, last)), _) => points.push((self.width, last)),
            (None, Some(held)) => points.extend([(0.0, held), (self.width, held)]),
            (None, None) => {}
        }
        points
    }
}

impl PaceView {
    /// Starts per minute over the window, in tenths (integers: float formatting would grow
    /// the browser bundle), and what the rate allows, in tenths.
    pub fn per_minute_tenths(&self) -> (u64, u64) {
        let window_ms = self.window_ms.max(1);
        let started = self.starts.len() as u64 * 600_000 / window_ms;
        let allowed = 600_000 / self.rate_interval_ms.max(1);
        (started, allowed)
    }

    /// The largest depth in the view (the depth scale's top; at least 1).
    pub fn deepest(&self) -> u64 {
        self.depth
            .iter()
            .flat_map(|s| [s.high, s.medium, s.low])
            .max()
            .unwrap_or(0)
            .max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: i64) -> Timestamp {
        Timestamp::from_micros(ms * 1000)
    }

    fn view(starts: &[i64], depth: &[(i64, u64)]) -> PaceView {
        PaceView {
            now: t(100_000),
            window_ms: 10_000,
            rate_interval_ms: 1_000,
            paused: false,
            starts: starts
                .iter()
                .map(|&ms| StartMark {
                    at: t(ms),
                    priority: Priority::High,
                    batch_id: Uuid::nil(),
                })
                .collect(),
            truncated: false,
            depth: depth
                .iter()
                .map(|&(ms, high)| DepthSample {
                    at: t(ms),
                    high,
                    medium: 0,
                    low: 0,
                })
                .collect(),
            last_event_id: 0,
        }
    }

    #[test]
    fn the_window_shows_120_slots_between_10_seconds_and_5_minutes() {
        assert_eq!(window_for(Duration::from_secs(5)), Duration::from_secs(300));
        assert_eq!(
            window_for(Duration::from_millis(100)),
            Duration::from_secs(12)
        );
        assert_eq!(
            window_for(Duration::from_millis(10)),
            Duration::from_secs(10)
        );
        assert_eq!(
            window_for(Duration::from_secs(3600)),
            Duration::from_secs(300)
        );
    }

    #[test]
    fn a_start_sits_where_its_time_falls_and_one_before_the_window_nowhere() {
        let v = view(&[], &[]);
        let axis = Axis::new(&v, t(100_000), 1000.0);
        assert_eq!(axis.x(t(100_000)), Some(1000.0));
        assert_eq!(axis.x(t(95_000)), Some(500.0));
        assert_eq!(axis.x(t(90_000)), Some(0.0));
        assert_eq!(axis.x(t(89_999)), None);
        // The page's clock moved on: the same start slides left.
        let later = Axis::new(&v, t(101_000), 1000.0);
        assert_eq!(later.x(t(95_000)), Some(400.0));
    }

    #[test]
    fn a_sliding_drawing_moves_left_with_the_clock_and_is_laid_out_again_each_half_window() {
        let v = view(&[95_000], &[(99_000, 3)]);
        // Laid out at the view's time: the same places as a plain axis, one window wider.
        let plain = Axis::new(&v, t(100_000), 1000.0);
        let sliding = Axis::sliding(&v, t(100_000), 1000.0);
        assert_eq!(sliding.x(t(95_000)), plain.x(t(95_000)));
        assert_eq!(sliding.shift(t(100_000)), 0.0);
        assert_eq!(sliding.steps(&v, Priority::High).last(), Some(&(2000.0, 3)));
        // 2 s later: the same layout, moved 200 left (a tenth of the 10 s window is 100).
        let later = Axis::sliding(&v, t(102_000), 1000.0);
        assert_eq!(later, sliding);
        assert_eq!(later.shift(t(102_000)), 200.0);
        // Shifted, the drawing shows exactly the window that ends at the clock.
        let shift = later.shift(t(102_000));
        assert_eq!(later.x(t(102_000)).unwrap() - shift, 1000.0);
        assert_eq!(later.x(t(92_000)).unwrap() - shift, 0.0);
        // A sliding layout keeps the grid wherever a plain one would draw it.
        let fine = PaceView {
            rate_interval_ms: 30,
            ..v.clone()
        };
        assert!(!Axis::new(&fine, t(100_000), 1000.0).grid(&fine).is_empty());
        assert!(!sliding.grid(&fine).is_empty());
        // Half a window later it is laid out again, ending 5 s on.
        let next = Axis::sliding(&v, t(105_500), 1000.0);
        assert_eq!(next.x(t(95_000)), Some(0.0));
        assert_eq!(next.shift(t(105_500)), 50.0);
    }

    #[test]
    fn the_grid_has_a_line_per_slot_through_the_newest_start_so_a_missing_one_shows() {
        // Starts every second, then none for the last 3.5 s (three slots came without one).
        let v = view(&[95_500, 96_500], &[]);
        let axis = Axis::new(&v, t(100_000), 1000.0);
        let grid = axis.grid(&v);
        assert_eq!(
            grid,
            [50.0, 150.0, 250.0, 350.0, 450.0, 550.0, 650.0, 750.0, 850.0, 950.0]
        );
        assert!(axis.grid(&view(&[], &[])).is_empty());
        // A page left open for a day without a start: no slot of it is in the window any
        // more than before, and finding that takes no walk through the day.
        let idle = Axis::new(&v, t(100_000 + 86_400_000), 1000.0);
        assert_eq!(idle.grid(&v).len(), 10);
        // At 1 ms the 10 s window holds 10 000 slots: too dense to draw.
        let dense = PaceView {
            rate_interval_ms: 1,
            ..v.clone()
        };
        assert!(axis.grid(&dense).is_empty());
    }

    #[test]
    fn depth_is_a_step_line_held_from_before_the_window_to_its_end() {
        let v = view(&[], &[(80_000, 4), (92_000, 7), (96_000, 2)]);
        let axis = Axis::new(&v, t(100_000), 1000.0);
        assert_eq!(
            axis.steps(&v, Priority::High),
            [
                (0.0, 4),
                (200.0, 4),
                (200.0, 7),
                (600.0, 7),
                (600.0, 2),
                (1000.0, 2)
            ]
        );
        // Only a sample before the window: flat across it.
        let old = view(&[], &[(50_000, 3)]);
        assert_eq!(axis.steps(&old, Priority::High), [(0.0, 3), (1000.0, 3)]);
        assert!(axis.steps(&view(&[], &[]), Priority::High).is_empty());
    }

    #[test]
    fn throughput_is_starts_per_minute_over_the_window_beside_what_the_rate_allows() {
        let v = view(&[91_000, 92_000, 93_000, 94_000, 95_000], &[]);
        // 5 starts in 10 s: 30 a minute; one a second allows 60.
        assert_eq!(v.per_minute_tenths(), (300, 600));
        assert_eq!(view(&[], &[]).deepest(), 1);
        assert_eq!(view(&[], &[(99_000, 12)]).deepest(), 12);
    }
}
