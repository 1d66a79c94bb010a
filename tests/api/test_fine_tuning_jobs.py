"""/v1/fine_tuning/jobs through the strict SDK: creation checks, async validation, listing, cancel."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from tests.conftest import new_project
from tests.support.data import chat_jsonl, dpo_jsonl
from tests.support.jobs import wait_for_status
from tests.support.server import RunningServer

SFT = {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2}}}


def upload(client: openai.OpenAI, content: bytes, purpose: str = "fine-tune") -> str:
    return client.files.create(file=("train.jsonl", content), purpose=purpose).id  # type: ignore[arg-type]


def test_create_echoes_auto_then_validation_resolves(client: openai.OpenAI) -> None:
    fid = upload(client, chat_jsonl(12))
    job = client.fine_tuning.jobs.create(
        model="tiny-chat",
        training_file=fid,
        method=SFT,
        suffix="t1",
        seed=42,
        metadata={"k": "v"},  # type: ignore[arg-type]
    )
    assert job.id.startswith("ftjob-") and job.object == "fine_tuning.job"
    assert job.status in ("validating_files", "queued")
    assert (job.result_files, job.fine_tuned_model, job.seed, job.metadata) == ([], None, 42, {"k": "v"})
    assert job.method is not None and job.method.supervised is not None
    hp = job.method.supervised.hyperparameters
    assert hp is not None and hp.n_epochs == 2
    assert job.hyperparameters.batch_size == "auto" and job.hyperparameters.learning_rate_multiplier == "auto"

    queued = wait_for_status(client, job.id, {"queued", "failed"})
    assert queued.status == "queued", queued  # type: ignore[attr-defined]
    assert queued.hyperparameters.n_epochs == 2  # type: ignore[attr-defined]
    assert isinstance(queued.hyperparameters.batch_size, int)  # type: ignore[attr-defined]
    assert isinstance(queued.hyperparameters.learning_rate_multiplier, float)  # type: ignore[attr-defined]

    events = list(client.fine_tuning.jobs.list_events(job.id, limit=2))  # pages of 2
    assert all(e.id.startswith("ftevent-") for e in events) and len({e.id for e in events}) == len(events)
    assert [e.message for e in reversed(events)] == [
        f"Created fine-tuning job: {job.id}",
        f"Validating training file: {fid}",
        "Files validated, moving job to queued state",
    ]
    assert [e.created_at for e in events] == sorted((e.created_at for e in events), reverse=True)


def test_seed_is_generated_and_top_level_hyperparameters_accepted(client: openai.OpenAI) -> None:
    fid = upload(client, chat_jsonl(12))
    job = client.fine_tuning.jobs.create(
        model="tiny-chat", training_file=fid, hyperparameters={"n_epochs": 3}
    )
    assert isinstance(job.seed, int)
    assert job.method is not None and job.method.type == "supervised"
    assert job.hyperparameters.n_epochs == 3


def test_dpo_job(client: openai.OpenAI) -> None:
    fid = upload(client, dpo_jsonl(12))
    job = client.fine_tuning.jobs.create(
        model="tiny-chat",
        training_file=fid,
        method={"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.2}}},
    )
    queued = wait_for_status(client, job.id, {"queued", "failed"})
    assert queued.status == "queued"  # type: ignore[attr-defined]
    assert queued.method.dpo.hyperparameters.beta == 0.2  # type: ignore[attr-defined]
    assert isinstance(queued.hyperparameters.n_epochs, int)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        (
            {"method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 0}}}},
            "method.supervised.hyperparameters.n_epochs",
        ),
        (
            {"method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 51}}}},
            "method.supervised.hyperparameters.n_epochs",
        ),
        (
            {"method": {"type": "supervised", "supervised": {"hyperparameters": {"batch_size": 257}}}},
            "method.supervised.hyperparameters.batch_size",
        ),
        (
            {"method": {"type": "dpo", "dpo": {"hyperparameters": {"beta": 3}}}},
            "method.dpo.hyperparameters.beta",
        ),
        ({"method": {"type": "reinforcement"}}, "method.type"),
        ({"suffix": "x" * 65}, "suffix"),
        ({"seed": -1}, "seed"),
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
        ({"model": "gpt-4o-mini"}, "model"),
        ({"training_file": "file-doesnotexist"}, "training_file"),
        ({"validation_file": "file-doesnotexist"}, "validation_file"),
    ],
)
def test_create_time_errors_are_400(client: openai.OpenAI, kwargs: dict[str, object], param: str) -> None:
    body: dict[str, object] = {"model": "tiny-chat", "training_file": upload(client, chat_jsonl(12))} | kwargs
    with pytest.raises(openai.BadRequestError) as err:
        client.fine_tuning.jobs.create(**body)  # type: ignore[arg-type]
    assert err.value.param == param and err.value.type == "invalid_request_error"
    if param == "model":
        assert err.value.code == "model_not_available"
        assert err.value.message.endswith(
            "Model gpt-4o-mini is not available for fine-tuning or does not exist."
        )
    if param == "training_file":
        assert err.value.message.endswith("invalid training_file: file-doesnotexist")


def test_missing_model_is_400_not_422(server: RunningServer, api_key: str) -> None:
    r = httpx.post(
        server.base_url + "/fine_tuning/jobs",
        json={"training_file": "file-x"},
        headers={"Authorization": f"Bearer {api_key}"},
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "model"


def test_files_of_wrong_purpose_or_other_project_are_refused(
    client: openai.OpenAI, server: RunningServer
) -> None:
    notes = client.files.create(file=("notes.txt", b"hello"), purpose="user_data").id
    with pytest.raises(openai.BadRequestError) as err:
        client.fine_tuning.jobs.create(model="tiny-chat", training_file=notes)
    assert err.value.param == "training_file"
    stranger = openai.OpenAI(base_url=server.base_url, api_key=new_project(server).key)
    theirs = upload(stranger, chat_jsonl(12))
    with pytest.raises(openai.BadRequestError):
        client.fine_tuning.jobs.create(model="tiny-chat", training_file=theirs)


def test_too_few_examples_fail_asynchronously(client: openai.OpenAI) -> None:
    job = client.fine_tuning.jobs.create(model="tiny-chat", training_file=upload(client, chat_jsonl(9)))
    failed = wait_for_status(client, job.id, {"failed", "queued"})
    assert failed.status == "failed" and failed.finished_at is not None  # type: ignore[attr-defined]
    error = failed.error  # type: ignore[attr-defined]
    assert (error.code, error.param) == ("invalid_n_examples", "training_file")
    assert error.message == "Training file has 9 example(s), but must have at least 10 examples"
    newest = next(iter(client.fine_tuning.jobs.list_events(job.id)))
    assert (newest.level, newest.message) == ("error", error.message)


def test_wrong_format_for_the_method_fails_with_invalid_training_file(client: openai.OpenAI) -> None:
    job = client.fine_tuning.jobs.create(model="tiny-chat", training_file=upload(client, dpo_jsonl(12)))
    failed = wait_for_status(client, job.id, {"failed", "queued"})
    error = failed.error  # type: ignore[attr-defined]
    assert failed.status == "failed" and error.code == "invalid_training_file"  # type: ignore[attr-defined]
    assert error.message.startswith(
        "The job failed due to an invalid training file. Invalid file format. Line 1"
    )
    assert "method 'supervised'" in error.message


def test_list_pagination_and_metadata_filter(client: openai.OpenAI) -> None:
    fid = upload(client, chat_jsonl(12))
    ids = [
        client.fine_tuning.jobs.create(
            model="tiny-chat", training_file=fid, metadata={"team": "a" if i % 2 else "b"}
        ).id
        for i in range(4)
    ]
    assert [j.id for j in client.fine_tuning.jobs.list(limit=1)] == list(reversed(ids))
    assert [j.id for j in client.fine_tuning.jobs.list(metadata={"team": "a"})] == [ids[3], ids[1]]
    last = client.fine_tuning.jobs.list(limit=10, after=ids[1])
    assert [j.id for j in last.data] == [ids[0]] and last.has_more is False


def test_list_filters_by_status_an_ftapi_extension(client: openai.OpenAI) -> None:
    fid = upload(client, chat_jsonl(12))
    kept, cancelled = (client.fine_tuning.jobs.create(model="tiny-chat", training_file=fid) for _ in range(2))
    client.fine_tuning.jobs.cancel(cancelled.id)
    only_cancelled = client.fine_tuning.jobs.list(limit=100, extra_query={"status": "cancelled"})
    assert cancelled.id in [j.id for j in only_cancelled] and kept.id not in [j.id for j in only_cancelled]
    assert {j.status for j in only_cancelled} == {"cancelled"}
    # `after` is found among all jobs: the page after a job of another status still works.
    after_kept = client.fine_tuning.jobs.list(after=kept.id, extra_query={"status": "cancelled"})
    assert cancelled.id not in [j.id for j in after_kept]  # created after `kept`: on an earlier page
    with pytest.raises(openai.BadRequestError) as err:
        client.fine_tuning.jobs.list(extra_query={"status": "done"})
    assert err.value.body["param"] == "status"  # type: ignore[index]
    assert "expected one of validating_files, queued, running" in err.value.message
    client.fine_tuning.jobs.cancel(kept.id)


def test_cancel_and_invalid_moves_are_400_without_retry(server: RunningServer, api_key: str) -> None:
    attempts: list[str] = []
    http = httpx.Client(event_hooks={"request": [lambda r: attempts.append(r.url.path)]})
    client = openai.OpenAI(
        base_url=server.base_url, api_key=api_key, http_client=http, _strict_response_validation=True
    )
    job = client.fine_tuning.jobs.create(model="tiny-chat", training_file=upload(client, chat_jsonl(12)))
    wait_for_status(client, job.id, {"queued"})
    with pytest.raises(openai.BadRequestError):
        client.fine_tuning.jobs.pause(job.id)
    cancelled = client.fine_tuning.jobs.cancel(job.id)
    assert cancelled.status == "cancelled" and cancelled.finished_at is not None
    attempts.clear()
    with pytest.raises(openai.BadRequestError):
        client.fine_tuning.jobs.cancel(job.id)
    assert len(attempts) == 1  # a 400, not a 409: the SDK does not retry
    time.sleep(0.5)
    assert client.fine_tuning.jobs.retrieve(job.id).status == "cancelled"
    with pytest.raises(openai.NotFoundError):
        client.fine_tuning.jobs.retrieve("ftjob-doesnotexist")


def test_checkpoints_of_a_job_that_has_none(client: openai.OpenAI) -> None:
    job = client.fine_tuning.jobs.create(model="tiny-chat", training_file=upload(client, chat_jsonl(12)))
    page = client.fine_tuning.jobs.checkpoints.list(job.id)
    assert (page.data, page.first_id, page.last_id, page.has_more) == ([], None, None, False)
    with pytest.raises(openai.BadRequestError) as err:
        client.fine_tuning.jobs.checkpoints.list(job.id, after="ftckpt_unknown")
    assert err.value.param == "after" and err.value.message.endswith("No such checkpoint: ftckpt_unknown")
    with pytest.raises(openai.NotFoundError):
        client.fine_tuning.jobs.checkpoints.list("ftjob-doesnotexist")
    client.fine_tuning.jobs.cancel(job.id)
