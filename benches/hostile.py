#!/usr/bin/env python3
"""Hostile bodies: 64 clients at once posting 4 MiB bodies over the ID limit, in one run.

Each client sends `{"priority": "LOW", "ids": [1,1,1,...]}` of just under 4 MiB (about two
million IDs, twenty times `--max-ids`), rightly refused with 413, again and again for
BENCH_HOSTILE_SECONDS (10), while a probe asks `GET /healthz` every 20 ms. Measured per
binary: the server's resident memory (RSS, sampled every 50 ms) before and at its peak, the
probe's latency (p50, p98, max) and the refusals per second. With two binaries
(`benches/hostile.py NEW OLD`) they run interleaved, BENCH_HOSTILE_ROUNDS (2) rounds, and the
table shows each round; the ratios compare NEW with OLD in the same round.

Issue 17's targets: RSS at most +96 MB over the idle server, /healthz p98 at most 25 ms.

Usage: benches/hostile.py path/to/sluice [path/to/baseline/sluice]
"""

import os, socket, statistics, sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from quick import start  # noqa: E402

BINS = sys.argv[1:] or ["target/release/sluice"]
SECONDS = int(os.environ.get("BENCH_HOSTILE_SECONDS", "10"))
ROUNDS = int(os.environ.get("BENCH_HOSTILE_ROUNDS", "2"))
CLIENTS = 64
BODY = b'{"priority": "LOW", "ids": [' + b"1," * 2_097_000 + b"1]}"
assert len(BODY) <= 4 * 1024 * 1024


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def request(port, head, body=b"", timeout=30):
    """One HTTP/1.1 request on a new connection; the status code (0 on failure)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(head + body)
            data = b""
            while b"\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1") else 0
    except (OSError, ValueError, IndexError):
        return 0


def measure(bin_):
    with tempfile.TemporaryDirectory() as tmp:
        proc, base = start(os.path.join(tmp, "sluice.db"), "--rate-interval", "1h", bin_=bin_)
        port = int(base.rsplit(":", 1)[1])
        try:
            time.sleep(0.5)
            idle = rss_kb(proc.pid)
            stop = time.monotonic() + SECONDS
            refused, probes, peak = [0], [], [idle]
            head = (b"POST /ingest HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(BODY))

            def attacker():
                while time.monotonic() < stop:
                    if request(port, head, BODY) == 413:
                        refused[0] += 1

            def prober():
                while time.monotonic() < stop:
                    t = time.monotonic()
                    request(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    probes.append((time.monotonic() - t) * 1000)
                    time.sleep(0.02)

            def sampler():
                while time.monotonic() < stop:
                    peak[0] = max(peak[0], rss_kb(proc.pid))
                    time.sleep(0.05)

            threads = [threading.Thread(target=attacker) for _ in range(CLIENTS)]
            threads += [threading.Thread(target=prober), threading.Thread(target=sampler)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            probes.sort()
            pct = lambda p: probes[min(len(probes) - 1, int(p * len(probes)))]
            return {
                "idle_mb": idle / 1024, "peak_mb": peak[0] / 1024,
                "p50": pct(0.5), "p98": pct(0.98), "max": probes[-1],
                "refused_per_s": refused[0] / SECONDS,
            }
        finally:
            proc.terminate()
            proc.wait()


def main():
    print(f"{CLIENTS} clients posting {len(BODY) / 2**20:.2f} MiB bodies over the ID limit, "
          f"{SECONDS} s per run, {ROUNDS} rounds; probe GET /healthz every 20 ms\n")
    print("| round | binary | idle RSS MB | peak RSS MB | growth MB | /healthz p50 ms | p98 ms "
          "| max ms | 413s per s |")
    print("|---|---|---|---|---|---|---|---|---|")
    growth = {b: [] for b in BINS}
    p98 = {b: [] for b in BINS}
    for round_ in range(1, ROUNDS + 1):
        for bin_ in BINS:
            r = measure(bin_)
            growth[bin_].append(r["peak_mb"] - r["idle_mb"])
            p98[bin_].append(r["p98"])
            print(f"| {round_} | {bin_} | {r['idle_mb']:.0f} | {r['peak_mb']:.0f} | "
                  f"{r['peak_mb'] - r['idle_mb']:.0f} | {r['p50']:.1f} | {r['p98']:.1f} | "
                  f"{r['max']:.1f} | {r['refused_per_s']:.0f} |", flush=True)
    if len(BINS) == 2:
        new, old = BINS
        g = statistics.median(a / b for a, b in zip(growth[new], growth[old]) if b > 0)
        p = statistics.median(a / b for a, b in zip(p98[new], p98[old]) if b > 0)
        print(f"\nmedian over rounds, {new} ÷ {old}: RSS growth {g:.2f}×, /healthz p98 {p:.2f}×")


if __name__ == "__main__":
    main()
