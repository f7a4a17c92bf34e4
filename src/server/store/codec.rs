//! What both backends store as small integers: a batch's status and a priority's rank. One
//! copy of the codes and of their decoding; each backend only picks its integer width.

use super::{Selection, StoreError};
use crate::domain::{
    BatchStatus, IngestionStatus, Priority, QueueKey, TenantHead, TenantQueue, Timestamp,
};
use uuid::Uuid;

pub const WAITING: i64 = 0;
pub const TRIGGERED: i64 = 1;
pub const COMPLETED: i64 = 2;
pub const CANCELLED: i64 = 3;
pub const FAILED: i64 = 4;

/// `queue_blocks` counts waiting batches per priority and block of 2^7 consecutive ingestions
/// (by `seq`): "how many wait ahead" then adds at most backlog/128 block rows and 128
/// ingestion rows, never every waiting batch. (The migrations that built the table use 7 too.)
pub const QUEUE_BLOCK_SHIFT: u32 = 7;
const _: () = assert!(
    QUEUE_BLOCK_SHIFT == 7,
    "the migrations that built queue_blocks use 7"
);

/// The `queue_blocks` block of ingestion `seq`.
pub fn queue_block(seq: i64) -> i64 {
    seq >> QUEUE_BLOCK_SHIFT
}

/// Ingestion `seq`'s block and the first `seq` of that block (what a place is counted from).
pub fn queue_block_bounds(seq: i64) -> (i64, i64) {
    let block = queue_block(seq);
    (block, block << QUEUE_BLOCK_SHIFT)
}

/// A `tenant_depth` row at priority `rank`, with its tenant's last start there and its first
/// ingestion with waiting work (`first_seq`), as round-robin predictions take it.
pub fn tenant_queue(
    rank: i64,
    tenant: String,
    waiting: i64,
    last_start: Option<i64>,
    first_seq: Option<i64>,
) -> TenantQueue {
    TenantQueue {
        tenant,
        head: TenantHead {
            first: QueueKey {
                rank,
                seq: first_seq.unwrap_or(i64::MAX),
                position: 0,
            },
            last_start: last_start.map(Timestamp::from_micros),
        },
        waiting: waiting.max(0) as u64,
    }
}

/// Each priority's tenants with waiting work (`tenant_queue`), read at most once per snapshot:
/// a list of summaries predicts several ingestions of a priority from the same read.
pub type TenantQueues = [Option<Vec<TenantQueue>>; 3];

/// How many more batches wait once `n` batches went from status `from` to `to`.
pub fn waiting_change(from: i64, to: i64, n: i64) -> i64 {
    n * (i64::from(to == WAITING) - i64::from(from == WAITING))
}

/// A stored status code as a status; an unknown code is corrupt data.
pub fn batch_status(code: i64) -> Result<BatchStatus, StoreError> {
    Ok(match code {
        WAITING => BatchStatus::YetToStart,
        TRIGGERED => BatchStatus::Triggered,
        COMPLETED => BatchStatus::Completed,
        CANCELLED => BatchStatus::Cancelled,
        FAILED => BatchStatus::Failed,
        other => return Err(StoreError::Corrupt(format!("batch status {other}"))),
    })
}

/// A stored priority rank as a priority; an unknown rank is corrupt data.
pub fn priority_of(rank: i64) -> Result<Priority, StoreError> {
    Priority::from_rank(rank).ok_or_else(|| StoreError::Corrupt(format!("priority {rank}")))
}

/// An ingestion's status (`IngestionStatus::of_counts`) as a condition on its counts in
/// `ingestions` (the same columns in both backends).
pub fn status_condition(status: IngestionStatus) -> &'static str {
    match status {
        IngestionStatus::YetToStart => {
            "(running = 0 AND completed = 0 AND cancelled = 0 AND failed = 0)"
        }
        IngestionStatus::Triggered => {
            "(running > 0 OR (waiting > 0 AND (completed > 0 OR cancelled > 0 OR failed > 0)))"
        }
        IngestionStatus::Completed => {
            "(waiting = 0 AND running = 0 AND cancelled = 0 AND failed = 0 AND completed > 0)"
        }
        IngestionStatus::Cancelled => {
            "(waiting = 0 AND running = 0 AND failed = 0 AND cancelled > 0)"
        }
        IngestionStatus::Failed => "(waiting = 0 AND running = 0 AND failed > 0)",
    }
}

/// A value a `Selection`'s query binds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    Id(Uuid),
    Rank(i64),
    Count(i64),
}

/// The query of the ingestions a `Selection` picks (its columns after `SELECT`), newest first,
/// with placeholders numbered by `place` from 1, and the values they bind, in order.
pub fn selection_query(
    columns: &str,
    selection: &Selection,
    place: impl Fn(usize) -> String,
) -> (String, Vec<Bound>) {
    let mut bound = Vec::new();
    let mut conditions: Vec<String> = Vec::new();
    let bind = |value: Bound, bound: &mut Vec<Bound>| {
        bound.push(value);
        place(bound.len())
    };
    if let Some(id) = selection.only {
        conditions.push(format!("id = {}", bind(Bound::Id(id), &mut bound)));
    }
    if let Some(before) = selection.before {
        let p = bind(Bound::Id(before), &mut bound);
        conditions.push(format!(
            "seq < (SELECT b.seq FROM ingestions b WHERE b.id = {p})"
        ));
    }
    if let Some(priority) = selection.priority {
        conditions.push(format!(
            "priority = {}",
            bind(Bound::Rank(priority.rank()), &mut bound)
        ));
    }
    if let Some(status) = selection.status {
        conditions.push(status_condition(status).to_owned());
    }
    let filter = match conditions.is_empty() {
        true => String::new(),
        false => format!(" WHERE {}", conditions.join(" AND ")),
    };
    let limit = bind(
        Bound::Count(i64::try_from(selection.limit).unwrap_or(i64::MAX)),
        &mut bound,
    );
    (
        format!("SELECT {columns} FROM ingestions{filter} ORDER BY seq DESC LIMIT {limit}"),
        bound,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::StatusCounts;

    /// Every combination of empty and non-empty counts: the SQL condition of each status
    /// holds exactly where `IngestionStatus::of_counts` answers that status.
    #[test]
    fn each_status_condition_picks_exactly_the_ingestions_of_that_status() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        for bits in 0u32..32 {
            let n = |i: u32| u64::from(bits >> i & 1);
            let counts = StatusCounts {
                waiting: n(0),
                running: n(1),
                completed: n(2),
                cancelled: n(3),
                failed: n(4),
            };
            if counts.total() == 0 {
                continue;
            }
            for status in IngestionStatus::ALL {
                let sql = format!(
                    "SELECT {} FROM (SELECT ?1 AS waiting, ?2 AS running, ?3 AS completed,
                                            ?4 AS cancelled, ?5 AS failed)",
                    status_condition(status)
                );
                let holds: bool = conn
                    .query_row(
                        &sql,
                        [n(0), n(1), n(2), n(3), n(4)].map(|v| v as i64),
                        |r| r.get(0),
                    )
                    .unwrap();
                assert_eq!(
                    holds,
                    IngestionStatus::of_counts(counts) == status,
                    "{status:?} for {counts:?}"
                );
            }
        }
    }
}
