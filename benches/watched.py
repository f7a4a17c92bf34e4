#!/usr/bin/env python3
"""Watched queue: what open dashboards cost the server, in one run.

The server (`--rate-interval 100ms`, a fresh SQLite file) is given 20 ingestions of 100 000
IDs (MEDIUM). After a 2 s warm-up, two phases of BENCH_WATCHED_SECONDS (10) each:
  * unwatched: nobody listens;
  * watched: BENCH_WATCHED_DASHBOARDS (2) simulated dashboards. Each holds one `GET /events`
    stream and, for every event (a burst within 30 ms costs one refresh), posts
    `/api/ingestions` `{"limit": 20}` and `/api/queue` `{}` on its own keep-alive connection,
    reading the whole answers, as the page does.
Measured per phase: the server's CPU (utime + stime from /proc, % of one core over the phase),
its peak RSS (sampled every 50 ms), the latency of a probe asking `GET /queue` every 50 ms on
its own connection (p50, p98, max) and, when watched, the dashboards' refreshes and events per
second. Then per run what watching adds: CPU points, RSS MB, and /queue p98 watched ÷
unwatched. With two binaries (`benches/watched.py NEW OLD`) they run interleaved,
BENCH_WATCHED_ROUNDS (2) rounds, and the medians over rounds of NEW ÷ OLD of those are shown.

The issue's targets: watching adds at most 15 points of CPU and 48 MB of RSS, and /queue p98
watched is at most 3× the unwatched one (it was 8% → 137% CPU, 81 → 441 MB, max 688 ms).

Usage: benches/watched.py path/to/sluice [path/to/baseline/sluice]
"""

import contextlib, http.client, json, os, re, socket, statistics, sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from quick import start  # noqa: E402

BINS = sys.argv[1:] or ["target/release/sluice"]
SECONDS = int(os.environ.get("BENCH_WATCHED_SECONDS", "10"))
ROUNDS = int(os.environ.get("BENCH_WATCHED_ROUNDS", "2"))
DASHBOARDS = int(os.environ.get("BENCH_WATCHED_DASHBOARDS", "2"))
INGESTIONS, IDS = 20, 100_000
JSON = {"Content-Type": "application/json"}
TICK = os.sysconf("SC_CLK_TCK")


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1))


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime (fields 14 and 15)


def call(conn, method, path, body=None):
    """One request on a keep-alive connection, the whole answer read; loud unless 200.
    Reconnects once if the server had closed the idle connection."""
    data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
    for attempt in (1, 2):
        try:
            conn.request(method, path, body=data, headers=JSON if data is not None else {})
            resp = conn.getresponse()
            answer = resp.read()
            break
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            conn.close()
            if attempt == 2:
                raise
    if resp.status != 200:
        raise RuntimeError(f"{method} {path} answered {resp.status}: {answer[:200]!r}")
    return answer


class Dashboard:
    """One open page: an event stream, and two refreshes per burst of events."""

    def __init__(self, port, errors):
        self.port, self.errors = port, errors
        self.events = self.refreshes = 0
        self.dirty, self.stopped = threading.Event(), False
        self.stream = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.stream.request("GET", "/events", headers={"Accept": "text/event-stream"})
        self.sock = self.stream.sock  # the response may take it over
        self.resp = self.stream.getresponse()
        kind = self.resp.getheader("Content-Type", "")
        if self.resp.status != 200 or not kind.startswith("text/event-stream"):
            raise RuntimeError(f"GET /events answered {self.resp.status} {kind}")
        for target in (self.listen, self.refresh):
            threading.Thread(target=self.guarded, args=(target,), daemon=True).start()

    def guarded(self, target):
        try:
            target()
        except Exception as e:  # noqa: BLE001 - reported by the main thread
            if not self.stopped:
                self.errors.append(f"dashboard: {e!r}")

    def listen(self):
        in_event = False
        while not self.stopped:
            line = self.resp.readline()
            if not line:
                raise RuntimeError("the event stream ended")
            line = line.rstrip(b"\r\n")
            if not line:  # a blank line ends an event
                if in_event:
                    self.events += 1
                    self.dirty.set()
                in_event = False
            elif not line.startswith(b":"):  # comments are keepalives
                in_event = True

    def refresh(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        while not self.stopped:
            if not self.dirty.wait(0.2):
                continue
            time.sleep(0.03)  # coalesce the burst
            self.dirty.clear()
            call(conn, "POST", "/api/ingestions", {"limit": 20})
            call(conn, "POST", "/api/queue", {})
            self.refreshes += 1
        conn.close()

    def stop(self):
        self.stopped = True
        self.dirty.set()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked reader
        self.stream.close()


def observe(proc, port, dashboards, errors):
    """Watch the server for SECONDS: CPU %, peak RSS MB, /queue latencies, dashboard rates."""
    stop = time.monotonic() + SECONDS
    peak, probes = [0], []
    counts0 = [(d.events, d.refreshes) for d in dashboards]

    def sampler():
        while time.monotonic() < stop:
            if proc.poll() is not None:
                errors.append(f"the server died (exit {proc.returncode})")
                return
            peak[0] = max(peak[0], rss_kb(proc.pid))
            time.sleep(0.05)

    def prober():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            while time.monotonic() < stop:
                t = time.monotonic()
                call(conn, "GET", "/queue")
                probes.append((time.monotonic() - t) * 1000)
                time.sleep(0.05)
        except Exception as e:  # noqa: BLE001
            errors.append(f"GET /queue probe: {e!r}")
        conn.close()

    cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
    threads = [threading.Thread(target=f) for f in (sampler, prober)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if proc.poll() is not None and not errors:
        errors.append(f"the server died (exit {proc.returncode})")
    if errors:
        raise RuntimeError("; ".join(errors))
    cpu = (cpu_seconds(proc.pid) - cpu0) / (time.monotonic() - t0) * 100
    probes.sort()
    pct = lambda p: probes[min(len(probes) - 1, int(p * len(probes)))]
    events = sum(d.events - e for d, (e, _) in zip(dashboards, counts0))
    refreshes = sum(d.refreshes - r for d, (_, r) in zip(dashboards, counts0))
    return {"cpu": cpu, "rss": peak[0] / 1024, "p50": pct(0.5), "p98": pct(0.98),
            "max": probes[-1], "refreshes": refreshes / SECONDS, "events": events / SECONDS}


def measure(bin_):
    with tempfile.TemporaryDirectory() as tmp:
        proc, base = start(os.path.join(tmp, "sluice.db"), "--rate-interval", "100ms", bin_=bin_)
        port = int(base.rsplit(":", 1)[1])
        dashboards, errors = [], []
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
            for i in range(INGESTIONS):
                ids = list(range(i * IDS + 1, (i + 1) * IDS + 1))
                try:
                    call(conn, "POST", "/ingest", {"ids": ids, "priority": "MEDIUM"})
                except Exception as e:
                    raise RuntimeError(f"ingestion {i + 1} of {INGESTIONS} failed: {e}") from e
            conn.close()
            time.sleep(2)
            unwatched = observe(proc, port, [], errors)
            dashboards = [Dashboard(port, errors) for _ in range(DASHBOARDS)]
            time.sleep(0.5)
            watched = observe(proc, port, dashboards, errors)
            return unwatched, watched
        finally:
            for d in dashboards:
                d.stop()
            proc.terminate()
            proc.wait()


def main():
    print(f"{INGESTIONS} ingestions × {IDS} IDs, --rate-interval 100ms; {SECONDS} s per phase, "
          f"{DASHBOARDS} dashboards when watched, {ROUNDS} rounds; probe GET /queue every 50 ms\n")
    print("| round | binary | phase | CPU % | RSS max MB | /queue p50 ms | p98 ms | max ms "
          "| dashboard refreshes/s | events/s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    deltas = {b: [] for b in BINS}  # per round: (CPU points, RSS MB, p98 ratio)
    for round_ in range(1, ROUNDS + 1):
        for bin_ in BINS:
            unwatched, watched = measure(bin_)
            for phase, r in (("unwatched", unwatched), ("watched", watched)):
                print(f"| {round_} | {bin_} | {phase} | {r['cpu']:.0f} | {r['rss']:.0f} | "
                      f"{r['p50']:.1f} | {r['p98']:.1f} | {r['max']:.1f} | "
                      f"{r['refreshes']:.1f} | {r['events']:.1f} |", flush=True)
            deltas[bin_].append((watched["cpu"] - unwatched["cpu"],
                                 watched["rss"] - unwatched["rss"],
                                 watched["p98"] / unwatched["p98"]))
    print("\nWhat watching adds (targets: ≤ +15 points CPU, ≤ +48 MB RSS, /queue p98 ≤ 3×)\n")
    print("| round | binary | CPU points | RSS MB | /queue p98 watched ÷ unwatched |")
    print("|---|---|---|---|---|")
    for round_ in range(ROUNDS):
        for bin_ in BINS:
            cpu, rss, p98 = deltas[bin_][round_]
            print(f"| {round_ + 1} | {bin_} | {cpu:+.0f} | {rss:+.0f} | {p98:.2f}× |")
    if len(BINS) == 2:
        new, old = BINS
        med = lambda k: statistics.median(
            [a[k] / b[k] for a, b in zip(deltas[new], deltas[old]) if b[k] > 0] or [float("nan")])
        print(f"\nmedian over rounds, {new} ÷ {old}: CPU points added {med(0):.2f}×, "
              f"RSS added {med(1):.2f}×, /queue p98 ratio {med(2):.2f}×")


if __name__ == "__main__":
    main()
