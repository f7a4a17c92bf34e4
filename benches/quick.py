#!/usr/bin/env python3
"""A quick, reproducible measurement of a release sluice on this machine.

Starts the release binary on a temporary SQLite file and measures, side by side in one run:
  * POST /ingest (5 IDs, durable) and GET /status/<id> against a no-op handler of the same
    server (GET /healthz: routing + a constant JSON body, no database) as the ceiling, each
    ratio the median of BENCH_ROUNDS (3) back-to-back pairs of BENCH_SECONDS (5) runs;
  * the same ingest on PostgreSQL when BENCH_POSTGRES is a database URL (it is emptied);
  * dispatch spacing: 200 batches at a 100 ms interval, lateness = gap - interval, and the
    server's own lateness histogram (microseconds) from /metrics.

Usage: benches/quick.py [path/to/release/sluice]   (needs wrk: apt-get install wrk)
"""

import json, os, re, socket, subprocess, sys, tempfile, time, urllib.parse, urllib.request
from datetime import datetime

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release/sluice"
SECONDS = int(os.environ.get("BENCH_SECONDS", "5"))
# Each ratio is the median of this many back-to-back (ceiling, subject) pairs: this virtual
# machine's ceiling alone moves by ±15% from one run to the next.
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(db, *args, bin_=None, log=None):
    """Serve `db` (a SQLite path or a PostgreSQL URL) on a free port once it is ready:
    (process, base URL). Its output goes to `log` if given."""
    port = free_port()
    url = db if db.startswith("postgres") else f"sqlite://{db}"
    proc = subprocess.Popen(
        [bin_ or BIN, "serve", "--addr", f"127.0.0.1:{port}", "--database-url", url, *args],
        env={**os.environ, "RUST_LOG": "warn", "NO_COLOR": "1"}, stdout=log, stderr=log,
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(1000):
        try:
            urllib.request.urlopen(base + "/readyz", timeout=1)
            return proc, base
        except Exception:
            time.sleep(0.02)
    raise SystemExit(f"sluice did not start on {url}")


def ingest_script(tmp, priority):
    """A wrk script posting 5-ID ingestions of `priority`; its path."""
    script = os.path.join(tmp, f"ingest-{priority.lower()}.lua")
    with open(script, "w") as f:
        f.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                f'wrk.body = \'{{"ids": [1, 2, 3, 4, 5], "priority": "{priority}"}}\'\n')
    return script


def wrk(url, conns, script=None):
    cmd = ["wrk", "-t", str(min(conns, 2)), "-c", str(conns), "-d", f"{SECONDS}s", "--latency", url]
    if script:
        cmd[1:1] = ["-s", script]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    def pct(p):
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)\b", out)
        v, unit = float(m.group(1)), m.group(2)
        return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, pct(50), pct(99), int(non2xx.group(1)) if non2xx else 0


def paired(base, url, c, script=None):
    """The median of ROUNDS (ceiling, subject) pairs, by ratio: (ceiling rps, (rps, p50, p99), ratios)."""
    rounds = []
    for _ in range(ROUNDS):
        ceil_rps, _, _, _ = wrk(base + "/healthz", c)
        rps, p50, p99, errors = wrk(url, c, script)
        assert errors == 0, f"{errors} requests to {url} failed"
        rounds.append((rps / ceil_rps, ceil_rps, rps, p50, p99))
    rounds.sort()
    ratio, ceil_rps, rps, p50, p99 = rounds[len(rounds) // 2]
    return ceil_rps, rps, ratio, p50, p99, " / ".join(f"{r[0]:.1%}" for r in rounds)


def fresh_postgres(url):
    """Create the database `url` names if it is missing, and empty it."""
    parts = urllib.parse.urlparse(url)
    name = parts.path.lstrip("/")
    admin = parts._replace(path="/postgres").geturl()
    exists = subprocess.run(["psql", admin, "-tAXc",
                             f"SELECT 1 FROM pg_database WHERE datname = '{name}'"],
                            check=True, capture_output=True, text=True).stdout.strip()
    if not exists:
        subprocess.run(["psql", admin, "-qXc", f'CREATE DATABASE "{name}"'], check=True,
                       capture_output=True)
    subprocess.run(["psql", url, "-qXc", "DROP SCHEMA public CASCADE; CREATE SCHEMA public;"],
                   check=True, capture_output=True)


def post(base, body):
    req = urllib.request.Request(base + "/ingest", data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    return json.load(urllib.request.urlopen(req))


def main():
    tmp = tempfile.mkdtemp(prefix="sluice-bench-")
    script = ingest_script(tmp, "MEDIUM")

    stores = [("SQLite", os.path.join(tmp, "http.db"))]
    if os.environ.get("BENCH_POSTGRES"):
        url = os.environ["BENCH_POSTGRES"]
        fresh_postgres(url)
        stores.append(("PostgreSQL", url))
    for name, db in stores:
        proc, base = start(db, "--rate-interval", "1h")
        print(f"## ingest vs ceiling (durable {name}, {os.cpu_count()} cores; median of {ROUNDS} "
              f"pairs of {SECONDS}s runs)\n")
        print("| concurrency | ceiling req/s | ingest req/s | ratio | ingest p50 ms | ingest p99 ms | every pair |")
        print("|---|---|---|---|---|---|---|")
        for c in (1, 16, 64):
            ceil_rps, rps, ratio, p50, p99, all_ = paired(base, base + "/ingest", c, script)
            print(f"| {c} | {ceil_rps:.0f} | {rps:.0f} | {ratio:.1%} | {p50:.2f} | {p99:.2f} | {all_} |")
        if name == "SQLite":
            one = post(base, {"ids": [1, 2, 3, 4, 5], "priority": "LOW"})["ingestion_id"]
            print(f"\n## status vs ceiling ({name}; median of {ROUNDS} pairs of {SECONDS}s runs)\n")
            print("| concurrency | ceiling req/s | status req/s | ratio | status p50 ms | status p99 ms | every pair |")
            print("|---|---|---|---|---|---|---|")
            for c in (1, 16, 64):
                ceil_rps, rps, ratio, p50, p99, all_ = paired(base, f"{base}/status/{one}", c)
                print(f"| {c} | {ceil_rps:.0f} | {rps:.0f} | {ratio:.1%} | {p50:.2f} | {p99:.2f} | {all_} |")
        print()
        proc.terminate(); proc.wait()

    interval_ms, batches = 100, int(os.environ.get("BENCH_BATCHES", "200"))
    proc, base = start(os.path.join(tmp, "dispatch.db"), "--rate-interval", f"{interval_ms}ms",
                       "--simulated-work", "0s", "--batch-size", "1")
    ingestion = post(base, {"ids": list(range(1, batches + 1)), "priority": "HIGH"})["ingestion_id"]
    time.sleep(batches * interval_ms / 1000 + 2)
    status = json.load(urllib.request.urlopen(f"{base}/status/{ingestion}"))
    metrics = urllib.request.urlopen(f"{base}/metrics").read().decode()
    proc.terminate(); proc.wait()
    lateness_sum = float(re.search(r"^sluice_dispatch_lateness_seconds_sum (\S+)", metrics, re.M).group(1))
    lateness_count = int(re.search(r"^sluice_dispatch_lateness_seconds_count (\S+)", metrics, re.M).group(1))
    starts = [datetime.fromisoformat(b["started_at"].replace("Z", "+00:00")) for b in status["batches"]]
    gaps = sorted((b - a).total_seconds() * 1000 for a, b in zip(starts, starts[1:]))
    late = [g - interval_ms for g in gaps]
    print(f"\n## dispatch spacing ({batches} batches at {interval_ms} ms, idle server, ms resolution)\n")
    print("| early starts | lateness p50 ms | p99 ms | max ms |")
    print("|---|---|---|---|")
    early = sum(1 for g in gaps if g < interval_ms)
    q = lambda p: late[min(len(late) - 1, int(p * len(late)))]
    print(f"| {early} | {q(0.50):.0f} | {q(0.99):.0f} | {max(late):.0f} |")
    print(f"\nThe server's lateness histogram: {lateness_count} starts waited for their slot, "
          f"mean lateness {lateness_sum / max(lateness_count, 1) * 1e6:.0f} µs.")


if __name__ == "__main__":
    main()
