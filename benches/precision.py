#!/usr/bin/env python3
"""Dispatch precision: how late each batch starts after its slot, idle and under full HTTP load.

A release sluice on a temporary SQLite file dispatches a HIGH backlog of one-ID batches at a
50 ms interval for BENCH_PRECISION_SECONDS (60 by default), twice: on an otherwise idle server,
then while wrk posts ingestions (LOW, 5 IDs) at concurrency 64 for the whole run, and on for
another quarter of the run after the load stops ("after load"). The slot of a start is the
previous recorded start + the interval; the server logs, for every start that waited for its
slot, in signed microseconds:
  * late_us: the recorded start (`started_at`) - the slot;
  * handoff_late_us: the hand-off to the processor (after the claim committed) - the slot.
An early start is one with a negative lateness; the rate limit forbids any.

Lateness only sees starts that waited for their slot. A pace that slows down (a start that
finds its slot long passed never waited) shows in the gaps between consecutive starts, which
the backlog keeps busy: every start's recorded time and hand-off are logged too, and the table
gives the start-to-start and hand-off-to-hand-off gaps as multiples of the interval (1.00 is
exact; below 1 is too close).

Usage: benches/precision.py [path/to/release/sluice]   (needs wrk for the loaded run)
BENCH_PRECISION_SECONDS, BENCH_PRECISION_INTERVAL_MS and BENCH_PRECISION_WORK_MS change the
run's length, the interval and the simulated work per batch.
Prints a Markdown table; with BENCH_PLOT=file.png also draws the lateness distribution.
"""

import json, os, re, sqlite3, subprocess, sys, tempfile, time, urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from quick import free_port, ingest_script, post  # noqa: E402

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release/sluice"
SECONDS = int(os.environ.get("BENCH_PRECISION_SECONDS", "60"))
INTERVAL_MS = int(os.environ.get("BENCH_PRECISION_INTERVAL_MS", "50"))
# Simulated work per batch (the issue that found the pace ratcheting down used 20 ms and 2 ms).
WORK_MS = int(os.environ.get("BENCH_PRECISION_WORK_MS", "0"))
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def run(tmp, name, loaded):
    """Lateness lists, (start gaps, hand-off gaps) during the run and after it, and the load."""
    port = free_port()
    log_path = os.path.join(tmp, f"{name}.log")
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [BIN, "serve", "--addr", f"127.0.0.1:{port}",
             "--database-url", f"sqlite://{os.path.join(tmp, name + '.db')}",
             "--rate-interval", f"{INTERVAL_MS}ms", "--simulated-work", f"{WORK_MS}ms",
             "--batch-size", "1"],
            env={**os.environ, "RUST_LOG": "warn,sluice::server::scheduler=info", "NO_COLOR": "1"},
            stderr=log, stdout=log,
        )
    base = f"http://127.0.0.1:{port}"
    for _ in range(500):
        try:
            urllib.request.urlopen(base + "/readyz", timeout=1)
            break
        except Exception:
            time.sleep(0.02)
    else:
        raise SystemExit("sluice did not start")
    # Enough HIGH work to keep every slot of the run busy, submitted at once.
    batches = SECONDS * 1000 // INTERVAL_MS + 40
    post(base, {"ids": list(range(1, batches + 1)), "priority": "HIGH"})
    if loaded:
        script = ingest_script(tmp, "LOW")
        out = subprocess.run(["wrk", "-t", "2", "-c", "64", "-d", f"{SECONDS}s", "-s", script,
                              base + "/ingest"], capture_output=True, text=True, check=True).stdout
        load = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        load_ended = time.time()
        # Does the pace come back once the load is gone?
        time.sleep(max(2, SECONDS // 4))
    else:
        time.sleep(SECONDS)
        load = 0.0
        load_ended = None
    proc.terminate()
    proc.wait()
    late, handoff, times = [], [], []
    with open(log_path) as f:
        for line in f:
            line = ANSI.sub("", line)
            if "batch triggered" not in line:
                continue
            m = re.search(r"\blate_us=(-?\d+)", line)
            h = re.search(r"\bhandoff_late_us=(-?\d+)", line)
            if m and h:
                late.append(int(m.group(1)))
                handoff.append(int(h.group(1)))
            s = re.search(r"\bstart_us=(-?\d+)", line)
            t = re.search(r"\bhanded_us=(-?\d+)", line)
            if s and t:
                times.append((int(s.group(1)), int(t.group(1))))
    # A build whose starts never wait for their slot (the pace fell behind it) logs none:
    # its lateness columns then read n/a.
    # Every recorded start, from the database (so a build that does not log them is measured
    # the same way); hand-offs from the log where the build logs them.
    db = sqlite3.connect(os.path.join(tmp, name + ".db"))
    starts = [r[0] for r in db.execute(
        "SELECT started_at FROM batches WHERE started_at IS NOT NULL ORDER BY started_at")]
    db.close()
    handed = sorted(t for _, t in times)
    # Gaps between consecutive starts (skipping the first, which found the server idle),
    # split at the end of the load by the start's wall time.
    def split(series):
        during, after = [], []
        for a, b in zip(series[1:], series[2:]):
            (after if load_ended and b / 1e6 > load_ended else during).append(b - a)
        return during, after
    (s_during, s_after), (h_during, h_after) = split(starts), split(handed)
    return late, handoff, load, (s_during, h_during), (s_after, h_after)


def q(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(p * len(s)))]


def main():
    tmp = tempfile.mkdtemp(prefix="sluice-precision-")
    print(f"## dispatch precision ({SECONDS} s at {INTERVAL_MS} ms, {WORK_MS} ms work, "
          f"{os.cpu_count()} cores)\n")
    print("| server | ingest load req/s | starts | early starts | late p50 ms | p99 ms | max ms "
          "| hand-off p50 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    runs, gaps = {}, []
    for name, loaded in (("idle", False), ("loaded", True)):
        late, handoff, load, during, after = run(tmp, name, loaded)
        runs[name] = (late, handoff)
        gaps.append((name, during))
        if after[0]:
            gaps.append(("after load", after))
        early = sum(1 for v in late if v < 0)
        ms = lambda values, f: f"{f(values) / 1000:.2f}" if values else "n/a"
        p50, p99 = (lambda v: q(v, .5)), (lambda v: q(v, .99))
        print(f"| {name} | {load:.0f} | {len(late)} | {early} | {ms(late, p50)} | "
              f"{ms(late, p99)} | {ms(late, max)} | {ms(handoff, p50)} | "
              f"{ms(handoff, p99)} | {ms(handoff, max)} |")
    interval_us = INTERVAL_MS * 1000
    print("\nGaps between consecutive starts, as multiples of the interval (1.00 is exact):\n")
    print("| phase | gaps | start-to-start p50 | p99 | max | min | hand-off gap p50 | p99 | max | min |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, (starts, handed) in gaps:
        if not starts:
            continue
        x = lambda v: f"{v / interval_us:.3f}"
        h = (lambda f: x(f(handed))) if handed else (lambda f: "n/a")
        print(f"| {name} | {len(starts)} | {x(q(starts, .5))} | {x(q(starts, .99))} | "
              f"{x(max(starts))} | {x(min(starts))} | {h(lambda v: q(v, .5))} | "
              f"{h(lambda v: q(v, .99))} | {h(max)} | {h(min)} |")
    plot = os.environ.get("BENCH_PLOT")
    if plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(7, 3.5), dpi=110)
        for name, (late, _) in runs.items():
            s = sorted(v / 1000 for v in late)
            ax.plot(s, [i / len(s) for i in range(len(s))], label=f"{name} (recorded start)")
        for name, (_, handoff) in runs.items():
            s = sorted(v / 1000 for v in handoff)
            ax.plot(s, [i / len(s) for i in range(len(s))], "--", label=f"{name} (hand-off)")
        ax.set_xscale("symlog", linthresh=0.1)
        ax.set_xlabel("ms after the slot")
        ax.set_ylabel("fraction of starts")
        ax.set_title(f"Dispatch lateness, {INTERVAL_MS} ms interval, {SECONDS} s")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(plot)
        print(f"\n![dispatch lateness]({os.path.relpath(plot, 'docs')})")


if __name__ == "__main__":
    main()
