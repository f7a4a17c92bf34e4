//! What both backends store as small integers: a batch's status and a priority's rank. One
//! copy of the codes and of their decoding; each backend only picks its integer width.

use super::StoreError;
use crate::domain::{BatchStatus, Priority, QueueKey, TenantHead, TenantQueue, Timestamp};

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
