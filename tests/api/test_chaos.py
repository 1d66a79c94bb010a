"""Workers under fire, the short variant of bench/chaos.py: 8 small jobs on PostgreSQL, two API
replicas and two `ftapi worker` processes, four seeded kill -9s of random workers and trainers.
Every job succeeds exactly once with one model, never with two live trainers, attempts agree with
the kills, and resumed attempts continue the step count (tests/support/chaos.py checks it all)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.chaos import ChaosConfig, run_chaos

# Trainer start-ups dominate; on a loaded machine they take tens of seconds each.
pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(1800)]


def test_jobs_survive_workers_and_trainers_killed_at_random(tmp_path: Path) -> None:
    result = run_chaos(tmp_path, ChaosConfig(jobs=8, workers=2, replicas=2, kills=4, seed=17, timeout=1500))
    assert len(result.kills) == 4, result.kills  # the chaos did happen
    assert not result.problems, "\n".join(result.problems)
    assert all(facts.status == "succeeded" for facts in result.jobs.values())
    # At least one job was hit and came back through a requeue (else nothing was tested).
    assert any(facts.requeues for facts in result.jobs.values()), result.jobs
