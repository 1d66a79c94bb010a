"""DockerExecutor without a container engine: the create arguments, the status mapping and what ftapi
does while the engine does not answer. Real containers: tests/api/test_docker_jobs.py."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import openai
import pytest

from api.dispatch.docker import (
    DockerConfig,
    DockerExecutor,
    container_name,
    create_kwargs,
    last_error_line,
    local_storage_user,
    redact,
    status_of,
)
from api.dispatch.executor import ExecutorUnavailable, RunNotStarted, RunStatus
from api.dispatch.factory import build_executor
from api.settings import Settings
from storage.config import LocalStoreConfig, S3StoreConfig
from tests.conftest import ADMIN_KEY
from tests.support.jobs import wait_for_status
from tests.support.sentiment import sentiment_sets, to_jsonl
from tests.support.server import run_server
from trainer.spec import BaseModelRef, Hyperparameters, JobSpec

TOKEN = "tok-" + "s3cr3t" * 5
S3_SECRET = "aws-" + "v3ry" * 6
STORE = S3StoreConfig(
    bucket="ftapi-bucket",
    endpoint_url="http://127.0.0.1:9000",
    access_key_id="AKIA-TEST",
    secret_access_key=S3_SECRET,  # type: ignore[arg-type]
)
NO_ENGINE = "unix:///nonexistent/ftapi-no-engine.sock"


def make_spec(storage: LocalStoreConfig | S3StoreConfig = STORE, attempt: int = 2) -> JobSpec:
    return JobSpec(
        job_id="ftjob-Abc123",
        attempt=attempt,
        base_model=BaseModelRef(id="tiny-chat", source="builtin:tiny-chat"),
        hyperparameters=Hyperparameters(n_epochs=1, batch_size=2, learning_rate=1e-3),
        storage=storage.without_credentials() if isinstance(storage, S3StoreConfig) else storage,
        training_file_key="files/x",
        output_prefix="jobs/p/ftjob-Abc123/",
        cache_dir="/host/data/models",
        report_url="http://127.0.0.1:8000",
    )


def test_create_kwargs_carry_labels_limits_and_secrets_only_in_the_environment() -> None:
    config = DockerConfig(
        image="registry.example/ftapi-trainer:1.2",
        network="ftapi_default",
        api_url="http://api:8000",
        s3_endpoint_url="http://minio:9000",
        cpus=1.5,
        memory="6g",
        gpus=1,
        env={"HF_HUB_OFFLINE": "1"},
        cache_volume="models",
    )
    env = {"FTAPI_JOB_TOKEN": TOKEN, **STORE.credentials_env()}
    kwargs = create_kwargs(make_spec(), env, config)
    assert kwargs["name"] == container_name("ftjob-Abc123", 2) == "ftapi-ftjob-Abc123-2"
    assert kwargs["labels"] == {
        "app.kubernetes.io/managed-by": "ftapi",
        "ftapi.job_id": "ftjob-Abc123",
        "ftapi.attempt": "2",
        "ftapi.secret_env": "AWS_ACCESS_KEY_ID,AWS_SECRET_ACCESS_KEY,FTAPI_JOB_TOKEN",
    }
    assert kwargs["image"] == "registry.example/ftapi-trainer:1.2" and kwargs["detach"] is True
    assert kwargs["command"] == ["python", "-m", "trainer", "run", "--spec-env", "FTAPI_JOB_SPEC"]
    assert kwargs["network_mode"] == "ftapi_default"
    assert (kwargs["mem_limit"], kwargs["memswap_limit"], kwargs["nano_cpus"]) == ("6g", "6g", 1_500_000_000)
    assert kwargs["device_requests"] == [{"driver": "nvidia", "count": 1, "capabilities": [["gpu"]]}]
    assert kwargs["stop_signal"] == "SIGTERM"
    assert kwargs["volumes"] == {"models": {"bind": "/var/lib/ftapi/models", "mode": "rw"}}
    assert "user" not in kwargs

    environment = kwargs["environment"]
    assert environment["FTAPI_JOB_TOKEN"] == TOKEN and environment["AWS_SECRET_ACCESS_KEY"] == S3_SECRET
    assert environment["HF_HUB_OFFLINE"] == "1"
    # The spec as the container sees it: its cache, the API and S3 at the container's addresses.
    spec = JobSpec.model_validate_json(environment["FTAPI_JOB_SPEC"])
    assert spec.cache_dir == "/var/lib/ftapi/models" and spec.report_url == "http://api:8000"
    assert isinstance(spec.storage, S3StoreConfig) and spec.storage.endpoint_url == "http://minio:9000"
    assert spec.storage.access_key_id is None and spec.storage.secret_access_key is None
    # Secrets nowhere but in their own variables: not in the spec, labels, command or name.
    visible = json.dumps({k: v for k, v in kwargs.items() if k != "environment"})
    visible += environment["FTAPI_JOB_SPEC"]
    assert TOKEN not in visible and S3_SECRET not in visible and "AKIA-TEST" not in visible


def test_defaults_need_no_limits_and_mount_local_storage_at_its_path(tmp_path: Path) -> None:
    config = DockerConfig()
    assert (config.image, config.network, config.keep_containers) == (None, "host", False)
    kwargs = create_kwargs(make_spec(LocalStoreConfig(root=tmp_path)), {}, config)
    assert kwargs["image"] == "ftapi-trainer:dev"  # the tag `make images` builds
    assert not {"mem_limit", "nano_cpus", "device_requests"} & set(kwargs)
    assert kwargs["volumes"][str(tmp_path)] == {"bind": str(tmp_path), "mode": "rw"}
    spec = JobSpec.model_validate_json(kwargs["environment"]["FTAPI_JOB_SPEC"])
    assert spec.report_url == "http://127.0.0.1:8000"  # unchanged without api_url (host network)
    assert create_kwargs(make_spec(), {}, DockerConfig(gpus=-1, user="1000:1000"))["user"] == "1000:1000"


def test_local_storage_the_image_user_cannot_read_runs_the_trainer_as_its_owner(tmp_path: Path) -> None:
    """A data directory made by `mktemp -d` (mode 0700, root's here) holds blobs of mode 0600: the
    image's uid 10001 cannot read them, so the container runs as the directory's owner, with the
    host's model cache and a HOME of its own. A directory of the image's user changes nothing."""
    import os
    import stat
    import tempfile

    data = Path(tempfile.mkdtemp(dir=tmp_path))
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    owner = f"{data.stat().st_uid}:{data.stat().st_gid}"
    if data.stat().st_uid == 10001:
        pytest.skip("these tests run as the image's own uid")
    assert local_storage_user(data) == owner
    kwargs = create_kwargs(make_spec(LocalStoreConfig(root=data)), {}, DockerConfig())
    assert kwargs["user"] == owner
    assert kwargs["volumes"] == {
        str(data): {"bind": str(data), "mode": "rw"},
        "/host/data/models": {"bind": "/host/data/models", "mode": "rw"},
    }
    environment = kwargs["environment"]
    assert environment["HOME"] == "/tmp/ftapi-home" and environment["HF_HOME"].startswith("/tmp/ftapi-home/")
    spec = JobSpec.model_validate_json(environment["FTAPI_JOB_SPEC"])
    assert spec.cache_dir == "/host/data/models"
    # An operator's FTAPI_DOCKER__USER wins; so does a directory the image's user owns.
    assert (
        create_kwargs(make_spec(LocalStoreConfig(root=data)), {}, DockerConfig(user="5:5"))["user"] == "5:5"
    )
    if os.geteuid() == 0:
        os.chown(data, 10001, 10001)
        assert local_storage_user(data) is None
        kwargs = create_kwargs(make_spec(LocalStoreConfig(root=data)), {}, DockerConfig())
        assert "user" not in kwargs and "HOME" not in kwargs["environment"]
        assert kwargs["volumes"]["ftapi-model-cache"] == {"bind": "/var/lib/ftapi/models", "mode": "rw"}
    with pytest.raises(RunNotStarted):
        local_storage_user(tmp_path / "missing")


TRACEBACK = """\
{"event": "loading", "level": "info"}
Traceback (most recent call last):
  File "/opt/venv/lib/python3.11/site-packages/trainer/run.py", line 10, in run
    raise ValueError("the training file has no assistant turn")
ValueError: the training file has no assistant turn
"""

MIB = 1 << 20


@pytest.mark.parametrize(
    ("state", "memory", "expected"),
    [
        ({"Status": "running", "Running": True}, None, RunStatus("running")),
        ({"Status": "created"}, None, RunStatus("running")),
        # podman while a stop is under way: the trainer is saving its checkpoint, not done.
        ({"Status": "stopping", "Running": False, "ExitCode": 0}, None, RunStatus("running")),
        ({"Status": "exited", "ExitCode": 0}, None, RunStatus("exited", 0)),
        (
            {"Status": "exited", "ExitCode": 1},
            None,
            RunStatus("exited", 1, "ValueError: the training file has no assistant turn"),
        ),
        # Over its --memory limit a container exits 137 with OOMKilled false here: still OOM.
        (
            {"Status": "exited", "ExitCode": 137, "OOMKilled": False},
            64 * MIB,
            RunStatus("exited", 137, "out of memory: the trainer exceeded its memory limit of 64 MiB"),
        ),
        (
            {"Status": "exited", "ExitCode": 137, "OOMKilled": True},
            None,
            RunStatus(
                "exited", 137, "out of memory: the trainer exceeded its memory limit of the machine's memory"
            ),
        ),
        (
            {"Status": "exited", "ExitCode": 137, "OOMKilled": False},
            None,
            RunStatus("exited", 137, "ValueError: the training file has no assistant turn"),
        ),
        ({"Status": "exited", "ExitCode": 143}, 6 << 30, RunStatus("exited", 143, "stopped by SIGTERM")),
        (
            {"Status": "exited", "ExitCode": 127, "Error": "exec: python: not found"},
            None,
            RunStatus("exited", 127, "the container engine reported: exec: python: not found"),
        ),
    ],
)
def test_container_state_maps_to_a_run_status(
    state: dict[str, object], memory: int | None, expected: RunStatus
) -> None:
    status = status_of(state, memory, TRACEBACK)
    assert (status.state, status.exit_code, status.detail) == (
        expected.state,
        expected.exit_code,
        expected.detail,
    )
    assert status.output == (TRACEBACK if status.state == "exited" else None)


def test_last_error_line_skips_progress_bars() -> None:
    assert last_error_line("step 1\n 10%|#   | 1/10\r 20%|##  | 2/10\n") == "20%|##  | 2/10"
    assert last_error_line("boom\nRuntimeError: CUDA error\n\n  \n") == "RuntimeError: CUDA error"
    assert last_error_line("") is None


def test_redact_removes_secret_values() -> None:
    assert (
        redact(f"token={TOKEN} key={S3_SECRET}", [TOKEN, S3_SECRET, ""]) == "token=[redacted] key=[redacted]"
    )


def test_settings_select_the_docker_executor_without_reaching_an_engine(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FTAPI_EXECUTOR", "docker")
    monkeypatch.setenv("FTAPI_DOCKER__URL", NO_ENGINE)
    monkeypatch.setenv("FTAPI_DOCKER__IMAGE", "ftapi-trainer:7")
    monkeypatch.setenv("FTAPI_DOCKER__MEMORY", "2g")
    monkeypatch.setenv("FTAPI_DOCKER__ENV", '{"HF_HUB_OFFLINE": "1"}')
    monkeypatch.setenv("FTAPI_CANCEL_GRACE_SECONDS", "12")
    executor = build_executor(Settings())
    assert isinstance(executor, DockerExecutor) and executor.grace_seconds == 12
    assert executor.config.image == "ftapi-trainer:7" and executor.config.memory == "2g"
    assert executor.config.env == {"HF_HUB_OFFLINE": "1"}


def test_one_trainer_image_setting_serves_both_container_executors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FTAPI_DOCKER__URL", NO_ENGINE)
    monkeypatch.setenv("FTAPI_TRAINER_IMAGE", "registry.example/ftapi-trainer:2.0")
    assert DockerExecutor(DockerConfig()).config.image == "ftapi-trainer:dev"  # built directly: the default
    monkeypatch.setenv("FTAPI_EXECUTOR", "docker")
    docker = build_executor(Settings())
    assert isinstance(docker, DockerExecutor) and docker.config.image == "registry.example/ftapi-trainer:2.0"
    monkeypatch.setenv("FTAPI_DOCKER__IMAGE", "ftapi-trainer:local")  # one executor's own image wins
    docker = build_executor(Settings())
    assert isinstance(docker, DockerExecutor) and docker.config.image == "ftapi-trainer:local"


def test_an_unreachable_engine_is_unavailable_not_a_crash() -> None:
    executor = DockerExecutor(DockerConfig(url=NO_ENGINE))
    with pytest.raises(ExecutorUnavailable, match="does not answer"):
        executor.ready()
    with pytest.raises(ExecutorUnavailable):
        executor.start(make_spec(), {"FTAPI_JOB_TOKEN": TOKEN})
    with pytest.raises(ExecutorUnavailable):
        executor.poll("docker:ftapi-ftjob-Abc123-1")


def test_jobs_stay_queued_while_the_engine_is_down(tmp_path: Path) -> None:
    env = {
        "FTAPI_API_KEY": ADMIN_KEY,
        "FTAPI_DISPATCH_INTERVAL_SECONDS": "0.2",
        "FTAPI_EXECUTOR": "docker",
        "FTAPI_DOCKER__URL": NO_ENGINE,
    }
    with run_server(tmp_path / "data", env) as srv:
        ready = httpx.get(srv.url + "/ready", timeout=30)
        assert ready.status_code == 503 and ready.json()["checks"]["executor"] == "unavailable"
        assert ready.json()["checks"]["database"] == "ok"
        client = openai.OpenAI(base_url=srv.base_url, api_key=ADMIN_KEY, _strict_response_validation=True)
        fid = client.files.create(file=("s.jsonl", to_jsonl(sentiment_sets()[0])), purpose="fine-tune").id
        job = client.fine_tuning.jobs.create(model="tiny-chat", training_file=fid)
        assert wait_for_status(client, job.id, {"queued"}, 30).status == "queued"
        time.sleep(1.5)
        assert client.fine_tuning.jobs.retrieve(job.id).status == "queued"
        lines = [json.loads(line) for line in srv.log_text().splitlines() if line.startswith("{")]
        down = [line for line in lines if line.get("event") == "executor.unavailable"]
        assert len(down) == 1 and "does not answer" in down[0]["reason"], down  # said once, with the reason


def test_the_sdk_accepts_the_create_kwargs() -> None:
    """The docker SDK's own check of `containers.create` arguments, and the host config it makes."""
    from docker.models.containers import _create_container_args

    config = DockerConfig(memory="64m", cpus=1, gpus=-1, user="1000:1000")
    kwargs = create_kwargs(make_spec(), {"FTAPI_JOB_TOKEN": TOKEN}, config)
    host = _create_container_args({**kwargs, "version": "1.41"})["host_config"]
    assert (host["Memory"], host["MemorySwap"], host["NanoCpus"]) == (64 << 20, 64 << 20, 10**9)
    assert host["NetworkMode"] == "host" and host["Binds"] == ["ftapi-model-cache:/var/lib/ftapi/models:rw"]
    assert host["DeviceRequests"][0]["Count"] == -1 and host["DeviceRequests"][0]["Driver"] == "nvidia"
