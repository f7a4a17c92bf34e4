#!/usr/bin/env python3
"""Backlog scaling: how sluice behaves with 1k, 10k, 100k and 1M batches waiting.

For each size, on a fresh SQLite file with a release binary: fill the queue while dispatch is
paused (batch size 1, 100 000 IDs per request), then measure
  * claim time: the server's own `sluice_claim_duration_seconds` over ~2 s of dispatching at a
    20 ms interval (mean of the claims in that window);
  * status: one read of the newest ingestion (LOW, behind the MEDIUM backlog) right after an
    event (it computes its place in the queue), the same for the newest MEDIUM ingestion
    (behind its own priority's whole backlog), and req/s + p50 of repeated reads (the place
    is remembered between events);
  * RSS of the server process with the backlog in place;
  * start to serving: kill it, start it again on the same file, time until /readyz is 200.

Usage: benches/backlog.py [path/to/release/sluice …] [sizes…]   (needs wrk)
With two or more binaries (`benches/backlog.py NEW OLD 1000000`), each size runs on each binary
in turn, for an A/B in one run; the first column then names the build.
With BENCH_PLOT=file.png also draws claim time, status time and RSS against the backlog.
"""

import json, os, re, shutil, signal, socket, subprocess, sys, tempfile, time, urllib.request

BINS = [a for a in sys.argv[1:] if not a.isdigit()] or ["target/release/sluice"]
SIZES = [int(a) for a in sys.argv[1:] if a.isdigit()] or [1_000, 10_000, 100_000, 1_000_000]
PER_REQUEST = 100_000


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(db, bin_):
    port = free_port()
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [bin_, "serve", "--addr", f"127.0.0.1:{port}", "--database-url", f"sqlite://{db}",
         "--batch-size", "1", "--rate-interval", "20ms", "--simulated-work", "0s",
         "--max-ids", str(PER_REQUEST), "--max-body-bytes", str(16 << 20)],
        env={**os.environ, "RUST_LOG": "warn"},
    )
    base = f"http://127.0.0.1:{port}"
    while True:
        try:
            if urllib.request.urlopen(base + "/readyz", timeout=1).status == 200:
                return proc, base, time.monotonic() - t0
        except Exception:
            if time.monotonic() - t0 > 120:
                raise SystemExit("sluice did not become ready")
            time.sleep(0.005)


def call(base, path, body=None, method=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"content-type": "application/json"})
    return json.load(urllib.request.urlopen(req, timeout=600))


def claim_stats(base):
    text = urllib.request.urlopen(base + "/metrics").read().decode()
    total = float(re.search(r"^sluice_claim_duration_seconds_sum (\S+)", text, re.M).group(1))
    count = int(re.search(r"^sluice_claim_duration_seconds_count (\S+)", text, re.M).group(1))
    return total, count


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1)) / 1024


def wrk(url):
    out = subprocess.run(["wrk", "-t", "1", "-c", "1", "-d", "3s", "--latency", url],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    m = re.search(r"\s50%\s+([\d.]+)(us|ms|s)\b", out)
    v, unit = float(m.group(1)), m.group(2)
    return rps, v / 1000 if unit == "us" else v * 1000 if unit == "s" else v


def main():
    ab = len(BINS) > 1
    print(("| build " if ab else "") + "| waiting batches | fill s | claim mean µs | "
          "status after an event ms | same priority ms | status req/s (p50 ms) | RSS MB | "
          "start to serving s |")
    print("|---" * (8 + ab) + "|")
    rows = []
    for size, bin_ in [(size, bin_) for size in SIZES for bin_ in BINS]:
        tmp = tempfile.mkdtemp(prefix="sluice-backlog-")
        db = os.path.join(tmp, "sluice.db")
        proc, base, _ = start(db, bin_)
        call(base, "/admin/pause", {})
        t0 = time.monotonic()
        left, first = size, 1
        while left:
            n = min(left, PER_REQUEST)
            call(base, "/ingest", {"ids": list(range(first, first + n)), "priority": "MEDIUM"})
            left, first = left - n, first + n
        fill = time.monotonic() - t0
        newest = call(base, "/ingest", {"ids": [7], "priority": "LOW"})["ingestion_id"]
        last_medium = call(base, "/ingest", {"ids": [8], "priority": "MEDIUM"})["ingestion_id"]

        # Claims while dispatching, at 20 ms, for ~2 s.
        before = claim_stats(base)
        call(base, "/admin/resume", {})
        time.sleep(2)
        call(base, "/admin/pause", {})
        after = claim_stats(base)
        claims = max(after[1] - before[1], 1)
        claim_us = (after[0] - before[0]) / claims * 1e6

        # A status read right after an event counts the queue ahead of the ingestion.
        call(base, "/admin/rate", {"rate_interval": "20ms"}, method="PUT")
        t0 = time.monotonic()
        call(base, f"/status/{newest}")
        first_read = (time.monotonic() - t0) * 1000
        call(base, "/admin/rate", {"rate_interval": "20ms"}, method="PUT")
        t0 = time.monotonic()
        call(base, f"/status/{last_medium}")
        same_read = (time.monotonic() - t0) * 1000
        rps, p50 = wrk(f"{base}/status/{newest}")
        rss = rss_mb(proc.pid)

        proc.send_signal(signal.SIGKILL); proc.wait()
        proc, base, ready = start(db, bin_)
        proc.send_signal(signal.SIGKILL); proc.wait()
        print((f"| {bin_} " if ab else "") + f"| {size:,} | {fill:.1f} | {claim_us:.0f} | {first_read:.1f} | {same_read:.1f} | "
              f"{rps:.0f} ({p50:.2f}) | {rss:.0f} | {ready:.2f} |", flush=True)
        rows.append((size, claim_us, first_read, same_read, rss, ready))
        shutil.rmtree(tmp, ignore_errors=True)
    plot = os.environ.get("BENCH_PLOT")
    if plot and not ab:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        sizes = [r[0] for r in rows]
        fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5), dpi=110)
        a.plot(sizes, [r[1] / 1000 for r in rows], "o-", label="claim the next batch")
        a.plot(sizes, [r[2] for r in rows], "s-", label="status after an event")
        a.plot(sizes, [r[3] for r in rows], "^--", label="status after an event, same priority")
        a.set_xscale("log"); a.set_yscale("log")
        a.set_xlabel("waiting batches"); a.set_ylabel("ms")
        a.grid(True, alpha=0.3); a.legend(fontsize=7)
        b.plot(sizes, [r[4] for r in rows], "o-", label="RSS MB")
        b.plot(sizes, [r[5] * 1000 for r in rows], "s-", label="start to serving ms")
        b.set_xscale("log"); b.set_xlabel("waiting batches")
        b.grid(True, alpha=0.3); b.legend(fontsize=7)
        fig.suptitle("Backlog scaling (SQLite, release)")
        fig.tight_layout()
        fig.savefig(plot)
        print(f"\n![backlog scaling]({os.path.relpath(plot, 'docs')})")


if __name__ == "__main__":
    main()
