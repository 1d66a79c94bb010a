"""The short soak (bench/soak.py runs it for minutes): one real server under the files, jobs,
models and chat mix at concurrency 16, three rounds. No answer is a 5xx or a dropped connection,
and the server's open file descriptors and threads at rest do not grow from round to round (a leak
per request would add hundreds). No timing assertions."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.soak import run_soak, soak_server

pytestmark = pytest.mark.slow


def test_a_soak_answers_without_server_errors_and_leaks_nothing(tmp_path: Path) -> None:
    with soak_server(tmp_path / "data") as (srv, ids):
        rounds = []
        for i in range(3):
            result = run_soak(srv, ids, [(16, 8)], max_requests=2000, seed=i)
            _, rest = result.at_rest[-1]  # the connections the load closed are gone from the server too
            rounds.append((result.levels[0], rest.fds, rest.threads))
    for level, _, _ in rounds:
        assert level.requests > 0 and level.failures == 0, level.statuses
        assert all(s in ("200",) for s in level.statuses), level.statuses
    (_, fds1, threads1), _, (_, fds3, threads3) = rounds
    assert fds3 <= fds1 + 3, (fds1, fds3)
    assert threads3 <= threads1 + 2, (threads1, threads3)
