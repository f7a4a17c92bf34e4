#!/usr/bin/env python3
"""Soak: steady load on a release sluice for SOAK_SECONDS (1800 by default), recording the
server's memory and the clients' latency over time, to show that neither drifts.

Load, all at once for the whole run, on a fresh SQLite file, dispatching every 2 ms with no
simulated work (so the queue drains as fast as it fills, a steady state):
  * SOAK_RATE ingestions/s (200 by default), 3 IDs each, priorities in turn, paced by the clock;
  * a status read of each new ingestion, and of an old one;
  * one event-stream client reading /events throughout.
Every 10 s: RSS (VmRSS), open file descriptors, ingest and status latency p50/p99 of that
window, waiting batches. Writes a CSV, a plot (matplotlib) and a Markdown summary.

Usage: benches/soak.py [path/to/release/sluice] [out-dir (default docs/soak)]
"""

import csv, http.client, json, os, re, socket, statistics, subprocess, sys, tempfile, threading, time

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release/sluice"
OUT = sys.argv[2] if len(sys.argv) > 2 else "docs/soak"
SECONDS = int(os.environ.get("SOAK_SECONDS", "1800"))
RATE = int(os.environ.get("SOAK_RATE", "200"))
WINDOW = 10


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Client:
    """One keep-alive connection."""

    def __init__(self, port):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def call(self, method, path, body=None):
        headers = {"content-type": "application/json"} if body is not None else {}
        data = json.dumps(body) if body is not None else None
        for attempt in range(2):
            try:
                t0 = time.perf_counter()
                self.conn.request(method, path, body=data, headers=headers)
                res = self.conn.getresponse()
                payload = res.read()
                return res.status, payload, (time.perf_counter() - t0) * 1000
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                if attempt:
                    raise


def main():
    os.makedirs(OUT, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="sluice-soak-")
    port = free_port()
    proc = subprocess.Popen(
        [BIN, "serve", "--addr", f"127.0.0.1:{port}",
         "--database-url", f"sqlite://{os.path.join(tmp, 'sluice.db')}",
         "--rate-interval", "2ms", "--simulated-work", "0s"],
        env={**os.environ, "RUST_LOG": "warn"},
    )
    for _ in range(500):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.02)
    lock = threading.Lock()
    ingest_ms, status_ms, errors = [], [], [0]
    stop = threading.Event()
    events_seen = [0]

    def listen():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("GET", "/events")
        res = conn.getresponse()
        while not stop.is_set():
            line = res.fp.readline()
            if not line:
                break
            if line.startswith(b"id:"):
                events_seen[0] += 1

    def load():
        client = Client(port)
        first = None
        n = 0
        start = time.monotonic()
        while not stop.is_set():
            due = start + n / RATE
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            priority = ("HIGH", "MEDIUM", "LOW")[n % 3]
            try:
                status, body, ms = client.call("POST", "/ingest", {"ids": [n * 3 + 1, n * 3 + 2, n * 3 + 3], "priority": priority})
            except OSError:
                if stop.is_set():
                    return  # the server was stopped at the end of the run
                raise
            if status != 200:
                with lock:
                    errors[0] += 1
                n += 1
                continue
            ingestion = json.loads(body)["ingestion_id"]
            first = first or ingestion
            s1, _, ms1 = client.call("GET", f"/status/{ingestion}")
            s2, _, ms2 = client.call("GET", f"/status/{first}")
            with lock:
                ingest_ms.append(ms)
                status_ms.extend([ms1, ms2])
                errors[0] += (s1 != 200) + (s2 != 200)
            n += 1

    threads = [threading.Thread(target=listen, daemon=True), threading.Thread(target=load, daemon=True)]
    for t in threads:
        t.start()
    rows = []
    began = time.monotonic()
    monitor = Client(port)
    while time.monotonic() - began < SECONDS:
        time.sleep(WINDOW)
        with open(f"/proc/{proc.pid}/status") as f:
            rss = int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1)) / 1024
        fds = len(os.listdir(f"/proc/{proc.pid}/fd"))
        with lock:
            ing, sts = sorted(ingest_ms), sorted(status_ms)
            ingest_ms.clear(); status_ms.clear()
            errs = errors[0]
        _, body, _ = monitor.call("GET", "/queue")
        waiting = sum(d["batches"] for d in json.loads(body)["waiting"])
        q = lambda xs, p: xs[min(len(xs) - 1, int(p * len(xs)))] if xs else float("nan")
        row = {
            "t_s": round(time.monotonic() - began),
            "rss_mb": round(rss, 1), "fds": fds, "waiting_batches": waiting,
            "ingest_per_s": round(len(ing) / WINDOW, 1),
            "ingest_p50_ms": round(q(ing, .5), 2), "ingest_p99_ms": round(q(ing, .99), 2),
            "status_p50_ms": round(q(sts, .5), 2), "status_p99_ms": round(q(sts, .99), 2),
            "errors": errs, "events_seen": events_seen[0],
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    stop.set()
    proc.terminate(); proc.wait()

    with open(os.path.join(OUT, "soak.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader(); w.writerows(rows)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    t = [r["t_s"] / 60 for r in rows]
    fig, (a, b) = plt.subplots(2, 1, figsize=(8, 5), dpi=110, sharex=True)
    a.plot(t, [r["rss_mb"] for r in rows], label="RSS MB")
    a.set_ylabel("MB"); a.set_ylim(bottom=0); a.grid(True, alpha=0.3); a.legend(fontsize=8)
    for key in ("ingest_p50_ms", "ingest_p99_ms", "status_p50_ms", "status_p99_ms"):
        b.plot(t, [r[key] for r in rows], label=key.replace("_", " "))
    b.set_yscale("log"); b.set_ylabel("ms"); b.set_xlabel("minutes"); b.grid(True, alpha=0.3)
    b.legend(fontsize=7, ncol=2)
    fig.suptitle(f"Soak: {RATE} ingestions/s + 2 status reads each + an event stream, {SECONDS // 60} min")
    fig.tight_layout(); fig.savefig(os.path.join(OUT, "soak.png"))

    half = len(rows) // 2
    first_half = statistics.mean(r["rss_mb"] for r in rows[1:half]) if half > 1 else rows[0]["rss_mb"]
    second_half = statistics.mean(r["rss_mb"] for r in rows[half:])
    summary = (
        f"| duration | ingestions | errors | events seen | RSS first / last / max MB | "
        f"RSS mean 1st half → 2nd half | ingest p99 ms first / last window | fds first / last |\n"
        f"|---|---|---|---|---|---|---|---|\n"
        f"| {SECONDS // 60} min | {sum(r['ingest_per_s'] for r in rows) * WINDOW:.0f} | {rows[-1]['errors']} | "
        f"{rows[-1]['events_seen']} | {rows[0]['rss_mb']} / {rows[-1]['rss_mb']} / {max(r['rss_mb'] for r in rows)} | "
        f"{first_half:.1f} → {second_half:.1f} | {rows[0]['ingest_p99_ms']} / {rows[-1]['ingest_p99_ms']} | "
        f"{rows[0]['fds']} / {rows[-1]['fds']} |\n"
    )
    with open(os.path.join(OUT, "summary.md"), "w") as f:
        f.write(summary)
    print(summary)


if __name__ == "__main__":
    main()
