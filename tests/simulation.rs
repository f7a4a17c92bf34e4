//! A seeded, deterministic simulation of dispatch: several dispatchers (replicas) on one
//! store, in virtual time, with random arrivals at every priority, downstream failures and
//! slow work, lost leases, pauses, rate changes, cancels, requeues of failed batches, and
//! process deaths with restarts.
//! After every step a plain model of SPEC §2 (the oracle, written without `domain::decide`)
//! checks the store's answer and the invariants:
//!
//! - never two batches in flight (at most one triggered batch with a live lease);
//! - starts at least the interval in force apart, on the store's clock;
//! - every start is the first claimable batch in dispatch order (`--fairness fifo`) or, with
//!   `tenant` fairness (even seeds), the first batch of the tenant that waited longest at the
//!   highest priority with claimable work, and no claimable batch waits while the slot is due
//!   and nothing is in flight;
//! - with `tenant` fairness, between two starts of one tenant at a priority, every other
//!   tenant with claimable work at that priority starts once;
//! - a stale attempt's completion is refused;
//! - an ingestion's place (waiting batches dispatched before its own) is the model's count;
//! - in the end every acknowledged batch is completed, failed or cancelled.
//!
//! It runs on SQLite always and on PostgreSQL when `SLUICE_TEST_POSTGRES` is set (fewer
//! steps). `SLUICE_SIM_SEEDS` (how many seeds, default 8) and `SLUICE_SIM_STEPS` (steps per
//! seed, default 1500) run more; a failure prints the seed and how to replay it alone with
//! `SLUICE_SIM_SEED`.

#[path = "support/postgres.rs"]
mod postgres;

use sluice::domain::{Fairness, IdResult, Priority, Tenant, Timestamp};
use sluice::server::store::{
    Admission, Claim, Completion, DynStore, NewBatchRecord, NewIngestionRecord, PostgresStore,
    SlotClock, SqliteStore,
};
use std::{collections::HashMap, sync::Arc, time::Duration};
use uuid::Uuid;

const T0: i64 = 1_800_000_000_000_000;
const CONFIGURED_INTERVAL_US: i64 = 5_000;
const LEASE_US: i64 = 20_000;

/// splitmix64: small, seedable, the same sequence everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Waiting,
    Triggered,
    Completed,
    Cancelled,
    Failed,
}

/// The model's record of a batch.
#[derive(Clone, Debug)]
struct Batch {
    id: Uuid,
    ingestion: Uuid,
    rank: i64,
    tenant: u8,
    seq: usize,
    position: u32,
    state: State,
    attempt: u32,
    lease_until: i64,
    retry_at: Option<i64>,
}

/// A dispatcher and the batch it holds, if any.
#[derive(Clone, Debug, Default)]
struct Replica {
    holding: Option<(Uuid, u32)>,
}

struct Sim {
    store: DynStore,
    rng: Rng,
    now: i64,
    batches: Vec<Batch>,
    ingestions: Vec<Uuid>,
    replicas: Vec<Replica>,
    paused: bool,
    rate: Option<i64>,
    last_start: Option<i64>,
    fairness: Fairness,
    /// Each tenant's last start at each priority rank.
    tenant_starts: HashMap<(i64, u8), i64>,
    /// One process owns the store (SQLite): a death takes every dispatcher with it, and the
    /// restart takes over what was left in flight.
    single_process: bool,
    log: Vec<String>,
    /// What happened, so a run that exercised nothing fails: starts, takeovers of a batch
    /// whose lease ran out, refused stale completions, lost renewals.
    starts: usize,
    takeovers: usize,
    fenced: usize,
    lost: usize,
}

impl Sim {
    fn interval(&self) -> i64 {
        self.rate.unwrap_or(CONFIGURED_INTERVAL_US)
    }

    fn at(&self) -> Timestamp {
        Timestamp::from_micros(T0 + self.now)
    }

    fn index(&self, id: Uuid) -> usize {
        self.batches.iter().position(|b| b.id == id).unwrap()
    }

    /// The oracle: what a claim at `now` must answer, from the model alone.
    fn expected_claim(&self) -> Expected {
        let now = self.now;
        if self.paused {
            return Expected::Paused;
        }
        if let Some(last) = self.last_start {
            if now < last + self.interval() {
                return Expected::SlotNotDue(last + self.interval());
            }
        }
        let live = self
            .batches
            .iter()
            .filter(|b| b.state == State::Triggered && b.lease_until > now)
            .map(|b| b.lease_until)
            .max();
        if let Some(until) = live {
            return Expected::InFlight(until);
        }
        let claimable = |b: &&Batch| match b.state {
            State::Triggered => b.lease_until <= now,
            State::Waiting => b.retry_at.is_none_or(|r| r <= now),
            _ => false,
        };
        let key = |b: &Batch| (b.rank, b.seq, b.position);
        let abandoned = self
            .batches
            .iter()
            .filter(|b| b.state == State::Triggered)
            .filter(claimable)
            .min_by_key(|b| key(b));
        let waiting: Vec<&Batch> = self
            .batches
            .iter()
            .filter(|b| b.state == State::Waiting)
            .filter(claimable)
            .collect();
        let first_waiting = waiting.iter().copied().min_by_key(|b| key(b));
        let chosen = match (self.fairness, first_waiting) {
            (Fairness::Tenant, Some(first)) => {
                // Each tenant's first claimable batch at the highest priority with one; the
                // tenant that never started there first (oldest batch first), then the one
                // whose last start there is oldest.
                let mut heads: HashMap<u8, &Batch> = HashMap::new();
                for b in waiting.iter().filter(|b| b.rank == first.rank) {
                    let head = heads.entry(b.tenant).or_insert(b);
                    if key(b) < key(head) {
                        *head = b;
                    }
                }
                heads.into_values().min_by_key(|b| {
                    let last = self.tenant_starts.get(&(b.rank, b.tenant)).copied();
                    (last.is_some(), last, key(b))
                })
            }
            (_, first) => first,
        };
        if let Some(first) = abandoned.into_iter().chain(chosen).min_by_key(|b| key(b)) {
            return Expected::Start(first.id);
        }
        match self
            .batches
            .iter()
            .filter(|b| b.state == State::Waiting)
            .filter_map(|b| b.retry_at)
            .min()
        {
            Some(at) => Expected::RetryWait(at),
            None => Expected::Idle,
        }
    }

    /// Fairness as an invariant, apart from the oracle: under `tenant`, a tenant starts a
    /// waiting batch at a priority only if every other tenant with claimable work there has
    /// started since this tenant's last start there.
    fn check_fair_turn(&self, starting: usize) -> Result<(), String> {
        let b = &self.batches[starting];
        if self.fairness != Fairness::Tenant || b.state != State::Waiting {
            return Ok(());
        }
        let Some(&mine) = self.tenant_starts.get(&(b.rank, b.tenant)) else {
            return Ok(());
        };
        let passed_over = self.batches.iter().find(|o| {
            o.rank == b.rank
                && o.tenant != b.tenant
                && o.state == State::Waiting
                && o.retry_at.is_none_or(|r| r <= self.now)
                && self
                    .tenant_starts
                    .get(&(o.rank, o.tenant))
                    .is_none_or(|&theirs| theirs < mine)
        });
        match passed_over {
            Some(o) => Err(format!(
                "tenant-{} started again at rank {} while tenant-{} waited since before its last start",
                b.tenant, b.rank, o.tenant
            )),
            None => Ok(()),
        }
    }

    fn check_invariants(&self) -> Result<(), String> {
        let live = self
            .batches
            .iter()
            .filter(|b| b.state == State::Triggered && b.lease_until > self.now)
            .count();
        if live > 1 {
            return Err(format!("{live} batches in flight at once"));
        }
        let holders = self.replicas.iter().filter(|r| {
            r.holding.is_some_and(|(id, attempt)| {
                let b = &self.batches[self.index(id)];
                b.state == State::Triggered && b.attempt == attempt && b.lease_until > self.now
            })
        });
        if holders.count() > 1 {
            return Err("two dispatchers hold live leases".into());
        }
        Ok(())
    }

    async fn ingest(&mut self) -> Result<(), String> {
        let priority =
            [Priority::High, Priority::Medium, Priority::Low][self.rng.below(3) as usize];
        let batches = 1 + self.rng.below(4) as usize;
        let tenant = self.rng.below(4) as u8;
        let record = NewIngestionRecord {
            id: Uuid::new_v4(),
            priority,
            tenant: Tenant::parse(&format!("tenant-{tenant}")).unwrap(),
            created_at: self.at(),
            batches: (0..batches)
                .map(|k| NewBatchRecord {
                    id: Uuid::new_v4(),
                    ids: vec![k as u64 + 1],
                })
                .collect(),
        };
        let seq = self.ingestions.len();
        self.ingestions.push(record.id);
        for (position, b) in record.batches.iter().enumerate() {
            self.batches.push(Batch {
                id: b.id,
                ingestion: record.id,
                rank: priority.rank(),
                tenant,
                seq,
                position: position as u32,
                state: State::Waiting,
                attempt: 0,
                lease_until: 0,
                retry_at: None,
            });
        }
        self.log.push(format!(
            "t={} ingest {priority:?} x{batches} tenant-{tenant}",
            self.now
        ));
        self.store
            .insert_ingestion(record, Admission::default())
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    async fn claim(&mut self, replica: usize) -> Result<(), String> {
        let expected = self.expected_claim();
        let interval = Duration::from_micros(CONFIGURED_INTERVAL_US as u64);
        let lease = Duration::from_micros(LEASE_US as u64);
        let answer = self
            .store
            .claim_next(
                self.at(),
                interval,
                lease,
                &format!("replica-{replica}"),
                self.fairness,
            )
            .await
            .map_err(|e| e.to_string())?;
        self.log.push(format!(
            "t={} replica {replica} claims: {answer:?}",
            self.now
        ));
        let micros = |t: Timestamp| t.as_micros() - T0;
        match (expected, answer) {
            (Expected::Start(id), Claim::Claimed(batch)) if batch.batch_id == id => {
                if let Some(last) = self.last_start {
                    if self.now - last < self.interval() {
                        return Err(format!(
                            "started {} µs after the last start",
                            self.now - last
                        ));
                    }
                }
                let i = self.index(id);
                self.check_fair_turn(i)?;
                let (rank, tenant) = (self.batches[i].rank, self.batches[i].tenant);
                self.tenant_starts.insert((rank, tenant), self.now);
                self.starts += 1;
                self.takeovers += usize::from(self.batches[i].state == State::Triggered);
                let b = &mut self.batches[i];
                b.state = State::Triggered;
                b.attempt += 1;
                b.lease_until = self.now + LEASE_US;
                b.retry_at = None;
                if batch.attempt != b.attempt || micros(batch.started_at) != self.now {
                    return Err(format!(
                        "claimed {batch:?}, model has attempt {}",
                        b.attempt
                    ));
                }
                self.last_start = Some(self.now);
                self.replicas[replica].holding = Some((id, batch.attempt));
                Ok(())
            }
            (Expected::SlotNotDue(slot), Claim::SlotNotDue { slot: s, wait, .. })
                if micros(s) == slot && wait.as_micros() as i64 == slot - self.now =>
            {
                Ok(())
            }
            (Expected::InFlight(until), Claim::InFlight { until: u, wait })
                if micros(u) == until && wait.as_micros() as i64 == until - self.now =>
            {
                Ok(())
            }
            (Expected::RetryWait(at), Claim::RetryWait { at: a, .. }) if micros(a) == at => Ok(()),
            (Expected::Idle, Claim::Idle) | (Expected::Paused, Claim::Paused) => Ok(()),
            (expected, answer) => Err(format!(
                "expected {expected:?}, the store answered {answer:?}"
            )),
        }
    }

    /// The holder finishes: completes, or fails (retry later or for good). A holder whose lease
    /// ran out would have been cancelled; sometimes its late answer arrives anyway.
    async fn finish(&mut self, replica: usize) -> Result<(), String> {
        let Some((id, attempt)) = self.replicas[replica].holding.take() else {
            return Ok(());
        };
        let i = self.index(id);
        let current = {
            let b = &self.batches[i];
            b.state == State::Triggered && b.attempt == attempt
        };
        let at = self.at();
        let roll = self.rng.below(10);
        let outcome = if roll < 7 {
            self.log.push(format!(
                "t={} replica {replica} completes attempt {attempt}",
                self.now
            ));
            self.store
                .complete(id, attempt, at, vec![IdResult::processed(1)])
                .await
        } else {
            let retry = (roll < 9)
                .then(|| self.now + self.rng.below(4 * CONFIGURED_INTERVAL_US as u64) as i64 + 1);
            self.log.push(format!(
                "t={} replica {replica} fails attempt {attempt}, retry {retry:?}",
                self.now
            ));
            self.store
                .fail(
                    id,
                    attempt,
                    at,
                    "503".into(),
                    None,
                    retry.map(|r| Timestamp::from_micros(T0 + r)),
                )
                .await
                .inspect(|c| {
                    if *c == Completion::Completed {
                        let b = &mut self.batches[i];
                        b.state = match retry {
                            Some(_) => State::Waiting,
                            None => State::Failed,
                        };
                        b.retry_at = retry;
                    }
                })
        }
        .map_err(|e| e.to_string())?;
        match (current, outcome) {
            (true, Completion::Completed) => {
                let b = &mut self.batches[i];
                if b.state == State::Triggered {
                    b.state = State::Completed;
                }
                Ok(())
            }
            (false, Completion::Fenced) => {
                self.fenced += 1;
                Ok(())
            }
            (current, outcome) => Err(format!(
                "attempt {attempt} current={current}, the store answered {outcome:?}"
            )),
        }
    }

    async fn renew(&mut self, replica: usize) -> Result<(), String> {
        let Some((id, attempt)) = self.replicas[replica].holding else {
            return Ok(());
        };
        let i = self.index(id);
        let b = &self.batches[i];
        let live = b.state == State::Triggered && b.attempt == attempt && b.lease_until > self.now;
        let renewed = self
            .store
            .renew_lease(
                id,
                attempt,
                self.at(),
                Duration::from_micros(LEASE_US as u64),
            )
            .await
            .map_err(|e| e.to_string())?;
        self.log.push(format!(
            "t={} replica {replica} renews: {renewed}",
            self.now
        ));
        if renewed != live {
            return Err(format!(
                "renewal answered {renewed}, the lease was live: {live}"
            ));
        }
        if renewed {
            self.batches[i].lease_until = self.now + LEASE_US;
        } else {
            // Lost: the scheduler drops the work and records nothing.
            self.lost += 1;
            self.replicas[replica].holding = None;
        }
        Ok(())
    }

    async fn step(&mut self) -> Result<(), String> {
        // Time moves by up to two intervals, often by less than one.
        self.now += self.rng.below(2 * CONFIGURED_INTERVAL_US as u64) as i64;
        let replica = self.rng.below(self.replicas.len() as u64) as usize;
        match self.rng.below(100) {
            0..=19 => self.ingest().await?,
            20..=49 if self.replicas[replica].holding.is_none() => self.claim(replica).await?,
            50..=69 => self.finish(replica).await?,
            70..=79 => self.renew(replica).await?,
            80..=83 => {
                let paused = !self.paused;
                self.store
                    .set_paused(paused, self.at())
                    .await
                    .map_err(|e| e.to_string())?;
                self.paused = paused;
                self.log.push(format!("t={} paused: {paused}", self.now));
            }
            84..=86 => {
                let rate = match self.rng.below(3) {
                    0 => None,
                    n => Some(n as i64 * 3_000),
                };
                let us = rate.map(|r| Duration::from_micros(r as u64));
                self.store
                    .set_rate_interval(us, 0, self.at())
                    .await
                    .map_err(|e| e.to_string())?;
                self.rate = rate;
                self.log.push(format!("t={} rate: {rate:?}", self.now));
            }
            87..=90 if !self.ingestions.is_empty() => {
                let id = self.ingestions[self.rng.below(self.ingestions.len() as u64) as usize];
                self.store
                    .cancel(id, self.at())
                    .await
                    .map_err(|e| e.to_string())?;
                for b in self.batches.iter_mut().filter(|b| b.ingestion == id) {
                    if b.state == State::Waiting {
                        b.state = State::Cancelled;
                    }
                }
                self.log.push(format!("t={} cancel {id}", self.now));
            }
            91..=93 => self.die(replica).await?,
            94..=95 => self.requeue().await?,
            _ => {}
        }
        self.check_invariants()?;
        self.check_place().await
    }

    /// An operator requeues a batch that failed for good (if there is one): it waits again.
    async fn requeue(&mut self) -> Result<(), String> {
        let failed: Vec<usize> = (0..self.batches.len())
            .filter(|&i| self.batches[i].state == State::Failed)
            .collect();
        if failed.is_empty() {
            return Ok(());
        }
        let i = failed[self.rng.below(failed.len() as u64) as usize];
        let id = self.batches[i].id;
        let answer = self
            .store
            .requeue(id, self.at())
            .await
            .map_err(|e| e.to_string())?;
        if answer != Some(true) {
            return Err(format!("requeue of failed batch {id} answered {answer:?}"));
        }
        let b = &mut self.batches[i];
        b.state = State::Waiting;
        b.retry_at = None;
        self.log.push(format!("t={} requeue {id}", self.now));
        Ok(())
    }

    /// How many waiting batches start before each of ingestion `id`'s waiting ones, from the
    /// model alone: dispatch played out, one start at a time, on every waiting batch (backing
    /// off or not, as predictions assume), under the fairness in force.
    fn played(&self, id: Uuid) -> Vec<u64> {
        let mut waiting: Vec<&Batch> = self
            .batches
            .iter()
            .filter(|b| b.state == State::Waiting)
            .collect();
        waiting.sort_by_key(|b| (b.rank, b.seq, b.position));
        let mut starts = self.tenant_starts.clone();
        let (mut clock, mut started, mut before) = (self.now, 0u64, Vec::new());
        while let Some(first) = waiting.first() {
            let rank = first.rank;
            let chosen = match self.fairness {
                Fairness::Fifo => 0,
                // Each tenant's first batch at the rank; the tenant whose turn it is.
                Fairness::Tenant => (0..waiting.len())
                    .filter(|&i| waiting[i].rank == rank)
                    .filter(|&i| !waiting[..i].iter().any(|o| o.tenant == waiting[i].tenant))
                    .min_by_key(|&i| {
                        let last = starts.get(&(rank, waiting[i].tenant)).copied();
                        (last.is_some(), last, i)
                    })
                    .unwrap(),
            };
            let b = waiting.remove(chosen);
            if b.ingestion == id {
                before.push(started);
            }
            started += 1;
            clock += 1_000_000;
            starts.insert((rank, b.tenant), clock);
        }
        before
    }

    /// One ingestion's place (drawn at random): for each of its waiting batches, the store's
    /// count of waiting batches dispatched before it equals the model's, whatever happened to
    /// the queue, under either fairness.
    async fn check_place(&mut self) -> Result<(), String> {
        if self.ingestions.is_empty() {
            return Ok(());
        }
        let id = self.ingestions[self.rng.below(self.ingestions.len() as u64) as usize];
        let me = self.batches.iter().find(|b| b.ingestion == id).unwrap();
        let (rank, seq, tenant) = (me.rank, me.seq, me.tenant);
        let expected = self.played(id);
        let place = self
            .store
            .queue_place(id, self.fairness)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("ingestion {id} has no place"))?;
        let counted: Vec<u64> = (0..expected.len() as u64)
            .map(|k| place.ahead.before(k))
            .collect();
        if counted != expected {
            return Err(format!(
                "ingestion {id} (rank {rank}, #{seq}, tenant-{tenant}, {}) has {counted:?} ahead \
                 of its waiting batches; the model says {expected:?}",
                self.fairness.as_str()
            ));
        }
        Ok(())
    }

    /// A process dies holding its batch (nothing recorded). On a store one process owns, every
    /// dispatcher dies with it and the restart takes over what was in flight.
    async fn die(&mut self, replica: usize) -> Result<(), String> {
        self.log
            .push(format!("t={} replica {replica} dies", self.now));
        if !self.single_process {
            self.replicas[replica].holding = None;
            return Ok(());
        }
        for r in &mut self.replicas {
            r.holding = None;
        }
        self.store
            .recover_abandoned()
            .await
            .map_err(|e| e.to_string())?;
        for b in self
            .batches
            .iter_mut()
            .filter(|b| b.state == State::Triggered)
        {
            b.lease_until = 0;
        }
        Ok(())
    }

    /// No more arrivals or faults: dispatch until nothing is left, then compare every batch
    /// with the store.
    async fn drain(&mut self) -> Result<(), String> {
        if self.paused {
            self.store
                .set_paused(false, self.at())
                .await
                .map_err(|e| e.to_string())?;
            self.paused = false;
        }
        for _ in 0..100_000 {
            if self
                .batches
                .iter()
                .all(|b| matches!(b.state, State::Completed | State::Cancelled | State::Failed))
            {
                break;
            }
            self.now += CONFIGURED_INTERVAL_US.max(self.interval());
            for replica in 0..self.replicas.len() {
                if self.replicas[replica].holding.is_some() {
                    self.finish(replica).await?;
                } else {
                    self.claim(replica).await?;
                }
                self.check_invariants()?;
            }
            // A batch left by a dead dispatcher goes when its lease runs out.
            if self.batches.iter().any(|b| b.state == State::Triggered) {
                self.now += LEASE_US;
            }
        }
        for &id in &self.ingestions {
            let record = self
                .store
                .ingestion(id)
                .await
                .map_err(|e| e.to_string())?
                .ok_or("an acknowledged ingestion is gone")?;
            for stored in &record.batches {
                let model = &self.batches[self.index(stored.id)];
                let state = match stored.status {
                    sluice::domain::BatchStatus::Completed => State::Completed,
                    sluice::domain::BatchStatus::Cancelled => State::Cancelled,
                    sluice::domain::BatchStatus::Failed => State::Failed,
                    other => return Err(format!("batch left {other:?}")),
                };
                if state != model.state || stored.attempt != model.attempt {
                    return Err(format!("store has {stored:?}, model {model:?}"));
                }
            }
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug)]
enum Expected {
    Start(Uuid),
    SlotNotDue(i64),
    InFlight(i64),
    RetryWait(i64),
    Idle,
    Paused,
}

async fn run(store: DynStore, seed: u64, steps: usize, single_process: bool) -> Result<(), String> {
    let mut rng = Rng(seed);
    let replicas = 1 + rng.below(3) as usize;
    let fairness = match seed % 2 {
        0 => Fairness::Tenant,
        _ => Fairness::Fifo,
    };
    let mut sim = Sim {
        store,
        rng,
        now: 0,
        batches: Vec::new(),
        ingestions: Vec::new(),
        replicas: vec![Replica::default(); replicas],
        paused: false,
        rate: None,
        last_start: None,
        fairness,
        tenant_starts: HashMap::new(),
        single_process,
        log: Vec::new(),
        starts: 0,
        takeovers: 0,
        fenced: 0,
        lost: 0,
    };
    let mut outcome = Ok(());
    for _ in 0..steps {
        outcome = sim.step().await;
        if outcome.is_err() {
            break;
        }
    }
    if outcome.is_ok() {
        outcome = sim.drain().await;
    }
    if outcome.is_ok() && sim.starts < steps / 20 {
        outcome = Err(format!("only {} starts in {steps} steps", sim.starts));
    }
    eprintln!(
        "seed {seed} ({}): {} dispatchers, {} batches, {} starts, {} takeovers, {} stale completions refused, {} leases lost",
        fairness.as_str(),
        replicas,
        sim.batches.len(),
        sim.starts,
        sim.takeovers,
        sim.fenced,
        sim.lost
    );
    outcome.map_err(|e| {
        let tail: Vec<&String> = sim.log.iter().rev().take(12).rev().collect();
        format!(
            "{e}\nlast steps:\n{}",
            tail.iter()
                .map(|l| format!("  {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        )
    })
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The seeds to run: one named by `SLUICE_SIM_SEED`, or `SLUICE_SIM_SEEDS` of them.
fn seeds() -> Vec<u64> {
    match std::env::var("SLUICE_SIM_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        Some(seed) => vec![seed],
        None => (1..=env_number("SLUICE_SIM_SEEDS", 8)).collect(),
    }
}

fn replay(test: &str, seed: u64) -> String {
    format!("replay: SLUICE_SIM_SEED={seed} cargo test --features ssr --test simulation {test}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatch_keeps_every_rule_in_random_runs_on_sqlite() {
    let steps = env_number("SLUICE_SIM_STEPS", 1500) as usize;
    for seed in seeds() {
        let store: DynStore = Arc::new(SqliteStore::open_memory().await.unwrap());
        if let Err(e) = run(store, seed, steps, true).await {
            panic!("seed {seed}: {e}\n{}", replay("sqlite", seed));
        }
    }
}

#[cfg_attr(skip_postgres, ignore = "SLUICE_SKIP_POSTGRES=1")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatch_keeps_every_rule_in_random_runs_on_postgres() {
    let steps = env_number("SLUICE_SIM_STEPS", 1500) as usize / 5;
    for seed in seeds().into_iter().take(3) {
        let db = postgres::fresh_database().await;
        let store: DynStore = Arc::new(
            PostgresStore::open(&db.url, SlotClock::Caller, 4)
                .await
                .unwrap(),
        );
        if let Err(e) = run(store, seed, steps, false).await {
            panic!("seed {seed}: {e}\n{}", replay("postgres", seed));
        }
    }
}
