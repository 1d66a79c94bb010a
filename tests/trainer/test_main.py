"""`python -m trainer run`: where the spec comes from (a file, or an environment variable in a pod)."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import pytest

from storage.config import LocalStoreConfig
from trainer.__main__ import main
from trainer.spec import BaseModelRef, Hyperparameters, JobSpec
from trainer.stop import StopRequest


def spec(tmp_path: Path) -> JobSpec:
    return JobSpec(
        job_id="ftjob-env",
        base_model=BaseModelRef(id="tiny-chat", source="builtin:tiny-chat"),
        hyperparameters=Hyperparameters(n_epochs=1, batch_size=1, learning_rate=1e-3),
        storage=LocalStoreConfig(root=tmp_path),
        training_file_key="files/x",
        output_prefix="jobs/p/ftjob-env/",
    )


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> list[JobSpec]:
    """Stand in for trainer.run (the ML stack): record the spec it would train."""
    seen: list[JobSpec] = []

    def run(job: JobSpec, reporter: Any, stop: Any) -> dict[str, object]:
        seen.append(job)
        return {"ok": True}

    monkeypatch.setitem(sys.modules, "trainer.run", types.SimpleNamespace(run=run))
    monkeypatch.setattr(StopRequest, "install", lambda self: None)  # keep pytest's own SIGTERM handler
    return seen


def test_spec_from_an_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runs: list[JobSpec]
) -> None:
    expected = spec(tmp_path)
    monkeypatch.setenv("FTAPI_JOB_SPEC", expected.model_dump_json())
    events = tmp_path / "events.jsonl"
    assert main(["run", "--spec-env", "FTAPI_JOB_SPEC", "--events", str(events)]) == 0
    assert runs == [expected]


def test_spec_from_a_file_still_works(tmp_path: Path, runs: list[JobSpec]) -> None:
    path = tmp_path / "spec.json"
    path.write_text(spec(tmp_path).model_dump_json())
    assert main(["run", "--spec", str(path)]) == 0
    assert runs == [spec(tmp_path)]


def test_spec_env_unset_or_both_sources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runs: list[JobSpec]
) -> None:
    monkeypatch.delenv("FTAPI_NO_SUCH_SPEC", raising=False)
    with pytest.raises(SystemExit) as exc:
        main(["run", "--spec-env", "FTAPI_NO_SUCH_SPEC", "--events", str(tmp_path / "e.jsonl")])
    assert exc.value.code == 2
    with pytest.raises(SystemExit):
        main(["run", "--spec", "x.json", "--spec-env", "FTAPI_JOB_SPEC"])
    assert runs == []
