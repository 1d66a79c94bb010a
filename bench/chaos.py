"""Workers under fire at deployment scale: 40 small jobs on PostgreSQL, 2 API replicas, 4 `ftapi
worker` processes and a seeded, bounded chaos loop of kill -9s of random workers and trainers.

Prints what happened (kills, requeues, resumes, attempts, wall time) and every broken promise: a job
not succeeded exactly once with one model, two live trainers of a job at once, attempts that do not
add up, a resumed job whose step count does not continue. Exits 1 if there is any.

    .venv/bin/python -m bench.chaos [--jobs 40 --workers 4 --replicas 2 --kills 20 --seed 17]

Needs PostgreSQL on 127.0.0.1:5432 (trust), as the tests do. The checks live in tests/support/chaos.py
(the short variant runs in `make test`: tests/api/test_chaos.py).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from pathlib import Path

from tests.support.chaos import ChaosConfig, run_chaos


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=3600)
    args = parser.parse_args()
    cfg = ChaosConfig(
        jobs=args.jobs,
        workers=args.workers,
        replicas=args.replicas,
        kills=args.kills,
        seed=args.seed,
        epochs=args.epochs,
        timeout=args.timeout,
    )
    print(
        f"chaos: {cfg.jobs} jobs x {cfg.epochs} epochs, {cfg.workers} workers, {cfg.replicas} replicas, "
        f"{cfg.kills} kills, seed {cfg.seed}, lease {cfg.lease_seconds}s",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="ftapi-chaos-") as tmp:
        result = run_chaos(Path(tmp), cfg, log=True)
    kinds = Counter(k.kind for k in result.kills)
    jobs = result.jobs.values()
    print(f"wall time: {result.seconds:.0f} s for {len(result.jobs)} jobs")
    print(f"kills: {len(result.kills)} ({kinds['worker']} workers, {kinds['trainer']} trainers)")
    print(f"kills that hit a live trainer of a job: {sum(f.kills_hit for f in jobs)}")
    print(f"job statuses: {dict(Counter(f.status for f in jobs))}")
    print(
        f"requeues: {sum(f.requeues for f in jobs)}, "
        f"resumes from a checkpoint: {sum(f.resumes for f in jobs)}"
    )
    print(f"attempts per job: {dict(sorted(Counter(f.attempts for f in jobs).items()))}")
    print(f"most live trainers of one job at once: {max(result.max_live_trainers.values(), default=0)}")
    if result.problems:
        print(f"PROBLEMS ({len(result.problems)}):")
        for problem in result.problems:
            print("  " + problem)
        return 1
    print("no problems: every job succeeded exactly once with one model")
    return 0


if __name__ == "__main__":
    sys.exit(main())
