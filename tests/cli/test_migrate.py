"""`ftapi migrate-from-openai` against a second real ftapi server as the source (it speaks the
same API): jobs, files and hyperparameters are recreated on the target, what cannot be carried over
is reported, and a second run creates nothing new."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.conftest import combo_server, new_project
from tests.support.data import chat_jsonl, dpo_jsonl
from tests.support.jobs import wait_for_status
from tests.support.server import RunningServer


@pytest.fixture(scope="module")
def source_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    # The source accepts W&B integrations (offline mode, no trainers run): jobs that carry one.
    extra = {"FTAPI_MAX_CONCURRENT_JOBS": "0", "FTAPI_WANDB__MODE": "offline"}
    with combo_server(request, tmp_path_factory, "local-sqlite", extra, label="source") as srv:
        yield srv


@pytest.fixture(scope="module")
def target_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    extra = {"FTAPI_MAX_CONCURRENT_JOBS": "0"}
    with combo_server(request, tmp_path_factory, "s3-postgres", extra, label="target") as srv:
        yield srv


def migrate(source: openai.OpenAI, target: openai.OpenAI, *args: str) -> dict[str, Any]:
    cmd = [
        sys.executable, "-m", "api.cli", "migrate-from-openai",
        "--source-base-url", str(source.base_url), "--source-api-key", source.api_key,
        "--base-url", str(target.base_url), "--api-key", target.api_key, "--json", *args,
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def test_migrate_jobs_from_another_service(
    source_server: RunningServer, target_server: RunningServer
) -> None:
    src = openai.OpenAI(
        base_url=source_server.base_url,
        api_key=new_project(source_server).key,
        _strict_response_validation=True,
    )
    tgt = openai.OpenAI(
        base_url=target_server.base_url,
        api_key=new_project(target_server).key,
        _strict_response_validation=True,
    )
    train, valid, prefs = chat_jsonl(12), chat_jsonl(10), dpo_jsonl(12)
    f_train = src.files.create(file=("support.jsonl", train), purpose="fine-tune").id
    f_valid = src.files.create(file=("support-valid.jsonl", valid), purpose="fine-tune").id
    f_prefs = src.files.create(file=("prefs.jsonl", prefs), purpose="fine-tune").id
    f_gone = src.files.create(file=("gone.jsonl", chat_jsonl(11)), purpose="fine-tune").id
    sft = src.fine_tuning.jobs.create(
        model="tiny-chat",
        training_file=f_train,
        validation_file=f_valid,
        method={
            "type": "supervised",
            "supervised": {
                "hyperparameters": {"n_epochs": 3, "batch_size": 4, "learning_rate_multiplier": 2.0}
            },
        },
        suffix="support",
        seed=7,
        metadata={"team": "a"},
    )
    dpo = src.fine_tuning.jobs.create(
        model="tiny-chat",
        training_file=f_prefs,
        method={"type": "dpo", "dpo": {"hyperparameters": {"n_epochs": 2, "beta": 0.2}}},
    )
    tracked = src.fine_tuning.jobs.create(
        model="tiny-chat", training_file=f_train, integrations=[{"type": "wandb", "wandb": {"project": "p"}}]
    )
    gone = src.fine_tuning.jobs.create(model="tiny-chat", training_file=f_gone)
    cancelled = src.fine_tuning.jobs.create(model="tiny-chat", training_file=f_train)
    src.fine_tuning.jobs.cancel(cancelled.id)
    for job in (sft, dpo, tracked, gone):
        assert wait_for_status(src, job.id, {"queued", "failed"}).status == "queued"
    src.files.delete(f_gone)  # its content can no longer be downloaded

    # A dry run whose mapping matches none of the source's models creates nothing.
    dry = migrate(src, tgt, "--map", "gpt-4o*=tiny-chat", "--dry-run")
    assert dry["counts"] == {"not_mapped": 4, "skipped": 1}
    assert all(
        "no target model for tiny-chat" in j["not_mapped"][0]
        for j in dry["jobs"]
        if j["outcome"] != "skipped"
    )
    assert tgt.fine_tuning.jobs.list().data == [] and tgt.files.list().data == []

    report = migrate(src, tgt, "--model", "tiny-chat")
    by_source = {j["source_job"]: j for j in report["jobs"]}
    assert [j["source_job"] for j in report["jobs"]] == [sft.id, dpo.id, tracked.id, gone.id, cancelled.id]
    assert report["counts"] == {"created": 3, "not_mapped": 1, "skipped": 1}
    assert by_source[cancelled.id]["outcome"] == "skipped"
    assert (
        "could not be downloaded" in by_source[gone.id]["not_mapped"][0]
        and f_gone in by_source[gone.id]["not_mapped"][0]
    )
    assert any("integrations (wandb)" in r for r in by_source[tracked.id]["not_mapped"])

    new_sft = tgt.fine_tuning.jobs.retrieve(by_source[sft.id]["target_job"])
    assert new_sft.model == "tiny-chat" and new_sft.user_provided_suffix == "support" and new_sft.seed == 7
    assert new_sft.metadata == {"team": "a", "migrated_from": sft.id}
    assert new_sft.method and new_sft.method.supervised
    hp = new_sft.method.supervised.hyperparameters
    assert (hp.n_epochs, hp.batch_size, hp.learning_rate_multiplier) == (3, 4, 2.0)
    assert tgt.files.content(new_sft.training_file).read() == train
    assert new_sft.validation_file and tgt.files.content(new_sft.validation_file).read() == valid
    new_dpo = tgt.fine_tuning.jobs.retrieve(by_source[dpo.id]["target_job"])
    assert new_dpo.method and new_dpo.method.type == "dpo" and new_dpo.method.dpo
    dpo_hp = new_dpo.method.dpo.hyperparameters
    assert (dpo_hp.n_epochs, dpo_hp.beta) == (2, 0.2)
    assert tgt.files.content(new_dpo.training_file).read() == prefs
    new_tracked = tgt.fine_tuning.jobs.retrieve(by_source[tracked.id]["target_job"])
    assert new_tracked.integrations == [] and new_tracked.training_file == new_sft.training_file
    assert len(tgt.files.list().data) == 3  # a file two jobs share is copied once

    # Again: everything is found, nothing is created twice.
    again = migrate(src, tgt, "--model", "tiny-chat")
    assert again["counts"] == {"exists": 3, "not_mapped": 1, "skipped": 1}
    assert {j["source_job"]: j["target_job"] for j in again["jobs"] if j["outcome"] == "exists"} == {
        s: by_source[s]["target_job"] for s in (sft.id, dpo.id, tracked.id)
    }
    assert len(tgt.fine_tuning.jobs.list().data) == 3 and len(tgt.files.list().data) == 3
