#!/usr/bin/env python3
"""Scale-out: SQLite vs PostgreSQL, one replica vs three, in one run on this machine.

Every configuration runs the same load: wrk posts 5-ID MEDIUM ingestions at concurrency 64
(split evenly over the replicas, one wrk per replica; the last configuration gives each of
three replicas 64) for BENCH_SCALEOUT_SECONDS (10), while
the replicas dispatch at a 100 ms interval with 10 ms of simulated work per batch; a backlog
submitted before the load keeps every slot busy. Measured per configuration:
  * durable ingest req/s (the sum over the replicas' wrk runs), and errors (non-2xx);
  * the start-to-start gaps during the load, as multiples of the interval (every start,
    read from the database afterwards: 1.00 is exact; below 1 would break the rate limit);
  * status reads: GET /status/<id> at concurrency 64 on one replica, after the ingest load;
  * on PostgreSQL, ingestions per committed transaction (every transaction of the database
    counts, so it slightly understates the writers' group size), and the machine's idle CPU.

Figures are printed as ratios against the first configuration measured in the same round
(SQLite), each the median over BENCH_SCALEOUT_ROUNDS (2) rounds; with more binaries
(`benches/scaleout.py NEW OLD`) every configuration runs on each, interleaved, for an A/B.

The PostgreSQL database is BENCH_POSTGRES (default postgres://root@127.0.0.1:5432/sluice_bench,
created if missing); it is emptied before each configuration.

BENCH_SCALEOUT_CONFIGS (e.g. 1,2) picks configurations by index (0 SQLite, 1 one replica, 2
three replicas, 3 three with 64 clients each).

Usage: benches/scaleout.py [path/to/release/sluice [path/to/baseline/sluice]]
"""

import os, re, sqlite3, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from quick import fresh_postgres, ingest_script, post, start  # noqa: E402

BINS = sys.argv[1:] or ["target/release/sluice"]
SECONDS = int(os.environ.get("BENCH_SCALEOUT_SECONDS", "10"))
ROUNDS = int(os.environ.get("BENCH_SCALEOUT_ROUNDS", "2"))
PG = os.environ.get("BENCH_POSTGRES", "postgres://root@127.0.0.1:5432/sluice_bench")
INTERVAL_MS, WORK_MS, CONNS = 100, 10, 64
# (label, store, replicas, ingest clients): the last one gives each replica the clients the
# single replica had, to show how group size, not coordination alone, sets the three's rate.
CONFIGS = [("SQLite, 1 process", "sqlite", 1, CONNS), ("PostgreSQL, 1 replica", "pg", 1, CONNS),
           ("PostgreSQL, 3 replicas", "pg", 3, CONNS),
           (f"PostgreSQL, 3 replicas, c={3 * CONNS}", "pg", 3, 3 * CONNS)]
# BENCH_SCALEOUT_CONFIGS=1,2 runs only those (indexes into CONFIGS; SQLite, 0, is the
# reference of "vs SQLite", 1 of "vs 1 replica": a column whose reference is left out is blank).
PICKED = [int(i) for i in os.environ.get("BENCH_SCALEOUT_CONFIGS", "0,1,2,3").split(",")]


def wrk_many(urls, conns, script=None):
    """One wrk per URL, concurrently; (summed req/s, summed non-2xx)."""
    procs = []
    for i, url in enumerate(urls):
        c = conns // len(urls) + (1 if i < conns % len(urls) else 0)
        cmd = ["wrk", "-t", "1", "-c", str(c), "-d", f"{SECONDS}s", url]
        if script:
            cmd[1:1] = ["-s", script]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True))
    rps, errors = 0.0, 0
    for p in procs:
        out = p.communicate()[0]
        if p.returncode != 0:
            raise SystemExit(f"wrk failed: {out}")
        rps += float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        errors += int(m.group(1)) if m else 0
        errors += sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    return rps, errors


def starts_between(kind, db, lo_us, hi_us):
    sql = ("SELECT started_at FROM batches WHERE started_at IS NOT NULL "
           f"AND started_at BETWEEN {lo_us} AND {hi_us} ORDER BY started_at")
    if kind == "sqlite":
        conn = sqlite3.connect(db)
        rows = [r[0] for r in conn.execute(sql)]
        conn.close()
        return rows
    out = subprocess.run(["psql", PG, "-tAXc", sql], check=True, capture_output=True,
                         text=True).stdout
    return [int(x) for x in out.split()]


def run(bin_, kind, replicas, conns, tmp, tag):
    if kind == "sqlite":
        db = os.path.join(tmp, f"{tag}.db")
    else:
        fresh_postgres(PG)
        db = PG
    log = open(os.path.join(tmp, f"{tag}.log"), "w")
    flags = ["--rate-interval", f"{INTERVAL_MS}ms", "--simulated-work", f"{WORK_MS}ms"]
    servers = [start(db, *flags, bin_=bin_, log=log) for _ in range(replicas)]
    bases = [b for _, b in servers]
    # Enough work for every slot of the run before the load begins.
    post(bases[0], {"ids": list(range(1, 3 * (SECONDS * 1000 // INTERVAL_MS + 40))),
                    "priority": "MEDIUM"})
    script = ingest_script(tmp, "MEDIUM")
    time.sleep(0.5)
    commits, cpu = pg_commits() if kind == "pg" else 0, cpu_times()
    began = time.time()
    rps, errors = wrk_many([b + "/ingest" for b in bases], conns, script)
    ended = time.time()
    per_commit = rps * (ended - began) / max(1, pg_commits() - commits) if kind == "pg" else 0
    idle = idle_share(cpu, cpu_times())
    one = post(bases[0], {"ids": [1, 2, 3, 4, 5], "priority": "LOW"})["ingestion_id"]
    status_rps, status_errors = wrk_many([f"{bases[0]}/status/{one}"], CONNS)
    for proc, _ in servers:
        proc.terminate()
    for proc, _ in servers:
        proc.wait()
    log.close()
    # Skip the first second of the load (the replicas' first claims find the slot idle).
    starts = starts_between(kind, db, int((began + 1) * 1e6), int(ended * 1e6))
    gaps = [(b - a) / (INTERVAL_MS * 1000) for a, b in zip(starts, starts[1:])]
    return rps, errors, gaps, status_rps, status_errors, per_commit, idle


def pg_commits():
    """Committed transactions of the bench database so far (every replica's, all kinds)."""
    sql = "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
    out = subprocess.run(["psql", PG, "-tAXc", "SELECT pg_stat_clear_snapshot(); " + sql],
                         check=True, capture_output=True, text=True).stdout
    return int(out.split()[-1])


def cpu_times():
    with open("/proc/stat") as f:
        return [int(x) for x in f.readline().split()[1:]]


def idle_share(before, after):
    """The machine's idle share between two /proc/stat readings (idle + iowait)."""
    delta = [b - a for a, b in zip(before, after)]
    return (delta[3] + delta[4]) / max(1, sum(delta))


def q(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(p * len(s)))] if s else float("nan")


def main():
    tmp = tempfile.mkdtemp(prefix="sluice-scaleout-")
    results = {}  # (bin index, config index) -> list of run results
    for r in range(ROUNDS):
        for ci, (_, kind, replicas, conns) in enumerate(CONFIGS):
            if ci not in PICKED:
                continue
            for bi, bin_ in enumerate(BINS):
                results.setdefault((bi, ci), []).append(
                    run(bin_, kind, replicas, conns, tmp, f"r{r}-c{ci}-b{bi}"))
    print(f"## scale-out ({SECONDS} s of 5-ID ingests at c={CONNS} per configuration, "
          f"{INTERVAL_MS} ms interval, {WORK_MS} ms work, {os.cpu_count()} cores; "
          f"medians of {ROUNDS} rounds)\n")
    names = [os.path.basename(b) for b in BINS] if len(BINS) > 1 else [""]
    print("| build | configuration | ingest req/s | vs SQLite | vs 1 replica | errors "
          "| gap p50 × interval | p99 | max | early | status req/s | vs SQLite "
          "| ingestions per commit | idle CPU |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for bi, name in enumerate(names):
        med = lambda ci, i: statistics.median(run_[i] for run_ in results[(bi, ci)])
        ratio = lambda x, ref_ci, i: (f"{x / med(ref_ci, i):.2f}×"
                                      if (bi, ref_ci) in results else "")
        for ci, (label, kind, replicas, _) in enumerate(CONFIGS):
            if ci not in PICKED:
                continue
            runs = results[(bi, ci)]
            gaps = [g for run_ in runs for g in run_[2]]
            errors = sum(run_[1] + run_[4] for run_ in runs)
            rps, status = med(ci, 0), med(ci, 3)
            early = sum(1 for g in gaps if g < 1.0)
            per_commit = f"{med(ci, 5):.1f}" if kind == "pg" else ""
            vs_one = ratio(rps, 1, 0) if ci >= 2 else ""
            print(f"| {name} | {label} | {rps:.0f} | {ratio(rps, 0, 0)} | {vs_one} | "
                  f"{errors} | {q(gaps, .5):.3f} | {q(gaps, .99):.3f} | "
                  f"{max(gaps) if gaps else float('nan'):.3f} | {early} | {status:.0f} | "
                  f"{ratio(status, 0, 3)} | {per_commit} | {med(ci, 6):.0%} |")


if __name__ == "__main__":
    main()
