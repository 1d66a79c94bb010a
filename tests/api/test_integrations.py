"""Jobs' `integrations` end to end: a real ftapi server whose trainers report to W&B (offline mode:
the run's files on disk are read back) and to a real MLflow tracking server (read over its REST
API); bad integrations are refused with a 400 naming the field; a tracker that fails at run time
is a warn event and the job still succeeds."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from storage.config import LocalStoreConfig
from tests.conftest import ADMIN_KEY, TRAINING_CATALOGUE, new_project
from tests.support.jobs import events_oldest_first, wait_for_status
from tests.support.mlflow_server import metric_history, mlflow_api, run_mlflow_server
from tests.support.sentiment import sentiment_sets, to_jsonl
from tests.support.server import RunningServer, run_server
from tests.support.wandb_files import read_offline_run
from trainer.reporter import JsonlReporter
from trainer.spec import BaseModelRef, Hyperparameters, JobSpec, MlflowIntegration
from trainer.tracking import Tracking

pytestmark = pytest.mark.slow
STEPS = 20  # 60 examples, batch 6, 2 epochs; the trainer logs every 10 steps


@pytest.fixture(scope="module")
def mlflow_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with run_mlflow_server(tmp_path_factory.mktemp("mlflow")) as uri:
        yield uri


@pytest.fixture(scope="module")
def wandb_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("wandb")


@pytest.fixture(scope="module")
def tracked_server(
    tmp_path_factory: pytest.TempPathFactory,
    mlflow_uri: str,
    wandb_dir: Path,
) -> Iterator[RunningServer]:
    models = tmp_path_factory.mktemp("catalogue") / "models.json"
    models.write_text(json.dumps(TRAINING_CATALOGUE))
    extra = {
        "FTAPI_API_KEY": ADMIN_KEY,
        "FTAPI_DISPATCH_INTERVAL_SECONDS": "0.2",
        "FTAPI_MAX_CONCURRENT_JOBS": "1",
        "FTAPI_MODELS_FILE": str(models),
        "FTAPI_WANDB__MODE": "offline",
        "FTAPI_WANDB__DIR": str(wandb_dir),
        "FTAPI_WANDB__BASE_URL": "http://127.0.0.1:9",  # a self-hosted W&B; offline mode never calls it
        "FTAPI_MLFLOW__TRACKING_URI": mlflow_uri,
    }
    # Started beside the MLflow server, which keeps a busy machine busier: more time to come up.
    with run_server(tmp_path_factory.mktemp("tracked"), extra, ready_timeout=240) as srv:
        yield srv


@pytest.fixture
def client(tracked_server: RunningServer) -> openai.OpenAI:
    key = new_project(tracked_server).key
    return openai.OpenAI(base_url=tracked_server.base_url, api_key=key, _strict_response_validation=True)


def _files(client: openai.OpenAI) -> tuple[str, str]:
    train, valid = sentiment_sets()
    tid = client.files.create(file=("train.jsonl", to_jsonl(train)), purpose="fine-tune").id
    vid = client.files.create(file=("valid.jsonl", to_jsonl(valid)), purpose="fine-tune").id
    return tid, vid


def test_a_job_reports_metrics_config_and_evaluation_to_wandb_and_mlflow(
    client: openai.OpenAI, mlflow_uri: str, wandb_dir: Path
) -> None:
    tid, vid = _files(client)
    job = client.fine_tuning.jobs.create(
        model="tiny-chat",
        training_file=tid,
        validation_file=vid,
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2, "batch_size": 6}}},
        integrations=[
            {"type": "wandb", "wandb": {"project": "sentiment", "name": "run-a", "tags": ["team-x"]}},
            {"type": "mlflow", "mlflow": {"experiment": "sentiment-exp", "run_name": "run-b"}},  # type: ignore[list-item]
        ],
    )
    # The job object lists the W&B integration in OpenAI's shape (a strict client parses it).
    assert [i.type for i in job.integrations or []] == ["wandb"]
    assert job.integrations and job.integrations[0].wandb.project == "sentiment"
    done = wait_for_status(client, job.id, {"succeeded", "failed", "cancelled"}, timeout=600)
    assert done.status == "succeeded", done.error
    events = events_oldest_first(client, job.id)
    assert not [e.message for e in events if e.level == "warn" and "integration" in e.message]
    started = {
        (e.data or {}).get("integration"): e.data
        for e in events
        if e.message.endswith(("sentiment", "sentiment-exp"))
    }
    assert set(started) == {"wandb", "mlflow"}, [e.message for e in events]
    metrics = [e.data for e in events if e.type == "metrics" and e.data]
    steps = sorted({int(m["step"]) for m in metrics if "train_loss" in m})
    assert steps == [10, STEPS]
    losses = {int(m["step"]): m["train_loss"] for m in metrics if "train_loss" in m}

    # W&B, offline: the run's own file, as W&B wrote it.
    run_files = list(wandb_dir.glob(f"wandb/offline-run-*-{job.id}/run-{job.id}.wandb"))
    assert len(run_files) == 1, list(wandb_dir.rglob("*"))
    run = read_offline_run(run_files[0])
    assert run.run_id == job.id and run.project == "sentiment"
    assert {"team-x", "ftapi/finetune", f"ftapi/{job.id}"} <= set(run.tags)
    assert run.config["n_epochs"] == 2 and run.config["batch_size"] == 6
    assert run.config["learning_rate"] == pytest.approx(5e-3) and run.config["total_steps"] == STEPS
    by_step = {int(row["_step"]): row for row in run.history}
    assert {s: by_step[s]["train_loss"] for s in steps} == pytest.approx(losses)
    assert "full_valid_loss" in by_step[STEPS] and "train_mean_token_accuracy" in by_step[10]
    assert 0 <= run.summary["evaluation/tuned/exact_match"] <= 1
    assert "evaluation/base/loss" in run.summary and run.summary["final/steps"] == STEPS
    assert run.exit_code == 0

    # MLflow: the tracking server's REST API.
    run_id = started["mlflow"]["run_id"]  # type: ignore[index]
    got = mlflow_api(mlflow_uri, "GET", "runs/get", params={"run_id": run_id})["run"]
    assert got["info"]["status"] == "FINISHED" and got["info"]["run_name"] == "run-b"
    params = {p["key"]: p["value"] for p in got["data"]["params"]}
    assert params["n_epochs"] == "2" and params["batch_size"] == "6" and params["base_model"] == "tiny-chat"
    assert metric_history(mlflow_uri, run_id, "train_loss") == pytest.approx(losses)
    assert set(metric_history(mlflow_uri, run_id, "full_valid_loss")) == {10, STEPS}
    latest = {m["key"]: m["value"] for m in got["data"]["metrics"]}
    assert 0 <= latest["evaluation/tuned/exact_match"] <= 1 and latest["final/steps"] == STEPS
    tags = {t["key"]: t["value"] for t in got["data"]["tags"]}
    assert tags["ftapi.job_id"] == job.id


def test_a_failing_integration_is_a_warn_event_and_training_goes_on(
    client: openai.OpenAI, mlflow_uri: str
) -> None:
    """The MLflow experiment was deleted on the tracking server: the run cannot be created there."""
    experiment = mlflow_api(mlflow_uri, "POST", "experiments/create", json={"name": "deleted-exp"})
    mlflow_api(mlflow_uri, "POST", "experiments/delete", json={"experiment_id": experiment["experiment_id"]})
    tid, _ = _files(client)
    job = client.fine_tuning.jobs.create(
        model="tiny-chat",
        training_file=tid,
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1, "batch_size": 6}}},
        integrations=[{"type": "mlflow", "mlflow": {"experiment": "deleted-exp"}}],  # type: ignore[list-item]
    )
    done = wait_for_status(client, job.id, {"succeeded", "failed", "cancelled"}, timeout=600)
    assert done.status == "succeeded", done.error
    warns = [e for e in events_oldest_first(client, job.id) if e.level == "warn"]
    assert len(warns) == 1, [e.message for e in warns]
    assert warns[0].message.startswith("The MLflow integration could not start")
    assert "deleted" in warns[0].message and (warns[0].data or {}).get("integration") == "MLflow"


@pytest.mark.parametrize(
    ("integrations", "param"),
    [
        ([{"type": "comet", "comet": {"project": "x"}}], "integrations.0.type"),
        ([{"type": "wandb", "wandb": {"project": "a"}}, {"wandb": {"project": "b"}}], "integrations.1.type"),
        ([{"type": "wandb", "wandb": {"name": "no project"}}], "integrations.0.wandb.project"),
        ([{"type": "wandb", "wandb": {"project": "p", "tags": ["x" * 65]}}], "integrations.0.wandb.tags"),
        ([{"type": "wandb"}], "integrations.0.wandb"),
        # Where MLflow is, is the operator's setting: a job cannot point trainers elsewhere.
        (
            [{"type": "mlflow", "mlflow": {"experiment": "e", "tracking_uri": "http://169.254.169.254"}}],
            "integrations.0.mlflow.tracking_uri",
        ),
        ([{"type": "wandb", "wandb": {"project": "p"}}] * 6, "integrations"),
    ],
)
def test_bad_integrations_are_refused(
    client: openai.OpenAI, integrations: list[dict[str, object]], param: str
) -> None:
    tid = client.files.create(file=("t.jsonl", to_jsonl(sentiment_sets()[0])), purpose="fine-tune").id
    before = len(client.fine_tuning.jobs.list().data)
    with pytest.raises(openai.BadRequestError) as err:
        client.fine_tuning.jobs.create(model="tiny-chat", training_file=tid, integrations=integrations)  # type: ignore[arg-type]
    assert err.value.param == param, err.value.message
    assert len(client.fine_tuning.jobs.list().data) == before


def test_a_tracker_failing_mid_run_is_dropped_with_one_warning(mlflow_uri: str, tmp_path: Path) -> None:
    """The trainer's side alone (no training): the run is deleted on the MLflow server while the
    job reports; the next write fails, the user is warned once, the job's own events go on."""
    spec = JobSpec(
        job_id="ftjob-midrun",
        base_model=BaseModelRef(id="tiny-chat", source="builtin:tiny-chat"),
        hyperparameters=Hyperparameters(n_epochs=1, batch_size=2, learning_rate=1e-3),
        storage=LocalStoreConfig(root=tmp_path),
        training_file_key="unused",
        output_prefix="unused/",
        integrations=[MlflowIntegration(experiment="mid-run", tracking_uri=mlflow_uri)],
    )
    path = tmp_path / "events.jsonl"
    with Tracking(spec, JsonlReporter(path)) as tracking:
        tracking.start()
        run_id = json.loads(path.read_text().splitlines()[0])["data"]["run_id"]
        tracking.emit("metrics", "Step 1/3", {"step": 1, "total_steps": 3, "train_loss": 2.0})
        mlflow_api(mlflow_uri, "POST", "runs/delete", json={"run_id": run_id})
        for step in (2, 3):
            tracking.emit("metrics", f"Step {step}/3", {"step": step, "total_steps": 3, "train_loss": 1.0})
        tracking.complete({"train_loss": 1.5, "trained_tokens": 10, "steps": 3})
    records = [json.loads(line) for line in path.read_text().splitlines()]
    warns = [r["message"] for r in records if r["level"] == "warn"]
    assert len(warns) == 1 and warns[0].startswith("The MLflow integration failed to record metrics"), warns
    assert [r["data"]["step"] for r in records if r["type"] == "metrics"] == [1, 2, 3]
    assert records[-1]["type"] == "complete"
    assert metric_history(mlflow_uri, run_id, "train_loss") == {1: 2.0}
