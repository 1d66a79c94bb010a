"""Soak one real `ftapi serve` on loopback (SQLite, local storage, the transformers engine):
files list/retrieve, job list/events, models and chat with tiny-chat (4 tokens) in an even mix, at
concurrency 1, 32 and 128, each level bounded in time (and in requests).

Prints per level the answers by status (5xx or a connection error is a failure), p50/p99 latency per
request kind, and the server's open file descriptors, threads and RSS: in the first and the last
minute of the run and of every level of two minutes or more (mean and max of one-second samples),
and at rest before the first level and after each. Exits 1 on any failure.

    .venv/bin/python -m bench.soak [--seconds 60] [--levels 1,32,128]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from tests.support.soak import Sample, percentile, run_soak, soak_server


def describe(samples: list[Sample]) -> str:
    fds = [s.fds for s in samples]
    threads = [s.threads for s in samples]
    rss = [s.rss_mb for s in samples]
    return (
        f"fds {statistics.mean(fds):.0f} (max {max(fds)}), threads {statistics.mean(threads):.0f} "
        f"(max {max(threads)}), RSS {statistics.mean(rss):.0f} MiB (max {max(rss):.0f})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60, help="per concurrency level")
    parser.add_argument("--levels", default="1,32,128")
    parser.add_argument("--max-requests", type=int, default=50_000, help="per level")
    args = parser.parse_args()
    levels = [(int(c), args.seconds) for c in args.levels.split(",")]
    with tempfile.TemporaryDirectory(prefix="ftapi-soak-") as tmp, soak_server(Path(tmp)) as (srv, ids):
        result = run_soak(srv, ids, levels, args.max_requests)
    failures = 0
    for level in result.levels:
        failures += level.failures
        print(
            f"concurrency {level.concurrency}: {level.requests} requests in {level.seconds:.0f} s "
            f"({level.requests / level.seconds:.1f}/s), statuses {dict(level.statuses)}"
        )
        for kind, ms in sorted(level.latencies_ms.items()):
            print(
                f"  {kind:7} n={len(ms):6}  "
                f"p50 {percentile(ms, 50):8.1f} ms  p99 {percentile(ms, 99):8.1f} ms"
            )
    # Across levels the first and the last minute differ by load (128 connections hold fds and
    # threads); a leak shows at rest, and within one level long enough to have two minutes.
    print(f"server, first minute: {describe(result.window(first=True))}")
    print(f"server, last minute:  {describe(result.window(first=False))}")
    for level in result.levels:
        if level.seconds >= 120:
            for first, which in ((True, "first"), (False, "last")):
                window = describe(result.window(first, level=level))
                print(f"concurrency {level.concurrency}, {which} minute: {window}")
    for label, rest in result.at_rest:
        print(f"at rest, {label}: fds {rest.fds}, threads {rest.threads}, RSS {rest.rss_mb:.0f} MiB")
    print(f"failures (5xx or connection errors): {failures}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
