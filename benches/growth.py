#!/usr/bin/env python3
"""Ingest over a growing database: does the tail stay flat as the file grows?

Each binary gets a fresh SQLite file and BENCH_GROWTH_RUNS (4) back-to-back runs of wrk at
concurrency 64 posting durable 5-ID MEDIUM ingestions for BENCH_GROWTH_SECONDS (8) each, on
the same server and database (nothing is dispatched: the interval is 1 h, so everything
stays). Printed per run: requests/s, p50, p99, the database and WAL sizes after it, and the
run's p99 ÷ the first run's p99. With two binaries (`benches/growth.py NEW OLD`) they take
turns, one server at a time (background work of one must not slow the other),
BENCH_GROWTH_ROUNDS (1) rounds.

Issue 17's target: every later run's p99 within 2× the first's (it was 7 ms, then 107, 145,
155 ms over 100 → 290 MB).

Usage: benches/growth.py path/to/sluice [path/to/baseline/sluice]   (needs wrk)
"""

import os, shutil, sys, tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import quick  # noqa: E402

BINS = sys.argv[1:] or ["target/release/sluice"]
RUNS = int(os.environ.get("BENCH_GROWTH_RUNS", "4"))
ROUNDS = int(os.environ.get("BENCH_GROWTH_ROUNDS", "1"))
quick.SECONDS = int(os.environ.get("BENCH_GROWTH_SECONDS", "8"))


def mb(path):
    return os.path.getsize(path) / 2**20 if os.path.exists(path) else 0.0


def main():
    tmp = tempfile.mkdtemp(prefix="sluice-growth-")
    script = quick.ingest_script(tmp, "MEDIUM")
    print(f"wrk -c 64, {quick.SECONDS} s per run, {RUNS} runs on one growing database each, "
          f"{ROUNDS} rounds\n")
    print("| round | binary | run | ingest req/s | p50 ms | p99 ms | database MB | WAL MB "
          "| p99 ÷ run 1 |")
    print("|---|---|---|---|---|---|---|---|---|")
    worst = {b: [] for b in BINS}
    try:
        for round_ in range(1, ROUNDS + 1):
            for i, bin_ in enumerate(BINS):
                # One server at a time: background work of one (checkpoints) must not slow
                # the other's runs.
                db = os.path.join(tmp, f"{round_}-{i}.db")
                proc, base = quick.start(db, "--rate-interval", "1h", bin_=bin_)
                try:
                    first, ratios = None, []
                    for run in range(1, RUNS + 1):
                        rps, p50, p99, errors = quick.wrk(base + "/ingest", 64, script)
                        if errors:
                            raise SystemExit(f"{errors} ingests failed on {bin_}")
                        first = first or p99
                        ratios.append(p99 / first)
                        print(f"| {round_} | {bin_} | {run} | {rps:.0f} | {p50:.2f} | {p99:.2f} "
                              f"| {mb(db):.0f} | {mb(db + '-wal'):.0f} | {p99 / first:.2f}× |",
                              flush=True)
                    worst[bin_].append(max(ratios[1:], default=1.0))
                finally:
                    proc.terminate()
                    proc.wait()
                    for f in (db, db + "-wal", db + "-shm"):
                        if os.path.exists(f):
                            os.remove(f)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print()
    for bin_ in BINS:
        w = " / ".join(f"{r:.2f}×" for r in worst[bin_])
        print(f"{bin_}: worst later p99 ÷ first p99, per round: {w} (target ≤ 2×)")


if __name__ == "__main__":
    main()
