#!/usr/bin/env python3
"""Results pages of a big ingestion: what one `GET /status/{id}/results` page costs.

Per binary, a fresh SQLite file gets one ingestion of 100 000 IDs; then BENCH_PAGES_N (200)
pages of 100 results are read one after another from the middle (offset 50 000), each on a
kept-alive connection, and the mean and p98 latency are printed. With two binaries
(`benches/pages.py NEW OLD`) they take turns, BENCH_PAGES_ROUNDS (2) rounds, and the median
ratio NEW ÷ OLD of the means is shown.

Usage: benches/pages.py path/to/sluice [path/to/baseline/sluice]
"""

import http.client, json, os, statistics, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from quick import start  # noqa: E402

BINS = sys.argv[1:] or ["target/release/sluice"]
N = int(os.environ.get("BENCH_PAGES_N", "200"))
ROUNDS = int(os.environ.get("BENCH_PAGES_ROUNDS", "2"))


def measure(bin_):
    with tempfile.TemporaryDirectory() as tmp:
        proc, base = start(os.path.join(tmp, "sluice.db"), "--rate-interval", "1h", bin_=bin_)
        try:
            conn = http.client.HTTPConnection(base.split("//")[1])
            body = json.dumps({"ids": list(range(1, 100_001)), "priority": "LOW"})
            conn.request("POST", "/ingest", body, {"Content-Type": "application/json"})
            res = conn.getresponse()
            answer = res.read()
            if res.status != 200:
                raise SystemExit(f"ingest failed: {res.status} {answer[:200]!r}")
            id_ = json.loads(answer)["ingestion_id"]
            times = []
            for _ in range(N):
                t = time.perf_counter()
                conn.request("GET", f"/status/{id_}/results?offset=50000&limit=100")
                res = conn.getresponse()
                page = json.loads(res.read())
                times.append((time.perf_counter() - t) * 1000)
                if res.status != 200 or len(page["results"]) != 100:
                    raise SystemExit(f"bad page: {res.status} {str(page)[:200]}")
            times.sort()
            return statistics.mean(times), times[int(0.98 * (len(times) - 1))]
        finally:
            proc.terminate()
            proc.wait()


def main():
    print(f"{N} pages of 100 results at offset 50 000 of a 100 000-ID ingestion\n")
    print("| round | binary | mean ms | p98 ms |\n|---|---|---|---|")
    means = {b: [] for b in BINS}
    for round_ in range(1, ROUNDS + 1):
        for bin_ in BINS:
            mean, p98 = measure(bin_)
            means[bin_].append(mean)
            print(f"| {round_} | {bin_} | {mean:.2f} | {p98:.2f} |", flush=True)
    if len(BINS) == 2:
        new, old = BINS
        r = statistics.median(a / b for a, b in zip(means[new], means[old]))
        print(f"\nmedian over rounds, {new} ÷ {old}: mean page time {r:.3f}×")


if __name__ == "__main__":
    main()
