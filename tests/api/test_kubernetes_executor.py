"""KubernetesExecutor against a fake Kubernetes API server (tests/support/fake_kubernetes.py: no
cluster runs here), and once through a real `ftapi serve` dispatcher with FTAPI_EXECUTOR=kubernetes."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from api.dispatch.kubernetes import (
    KubernetesConfig,
    KubernetesExecutor,
    Toleration,
    build_job,
    dns_label,
    job_name,
)
from storage.config import S3StoreConfig
from tests.conftest import ADMIN_KEY, TRAINING_CATALOGUE, new_project
from tests.support.fake_kubernetes import FakeKubernetes, run_fake_kubernetes
from tests.support.jobs import wait_for_status
from tests.support.kubernetes_schema import (
    ManifestError,
    check_dns1123_name,
    check_label_value,
    validate_manifest,
)
from tests.support.sentiment import sentiment_sets, to_jsonl
from tests.support.server import run_server
from trainer.spec import BaseModelRef, Hyperparameters, JobSpec

NS = "training"
TOKEN = "tok-" + "s3cr3t" * 5
S3_SECRET = "aws-" + "v3ry" * 6


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeKubernetes]:
    with run_fake_kubernetes() as server:
        yield server


def config(fake: FakeKubernetes) -> KubernetesConfig:
    return KubernetesConfig(
        namespace=NS,
        image="registry.example/ftapi-trainer:1.2",
        service_account="ftapi-trainer",
        cpu_request="2",
        memory_request="6Gi",
        memory_limit="12Gi",
        gpus=1,
        node_selector={"nvidia.com/gpu.present": "true"},
        tolerations=[Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")],
        env={"HF_HUB_OFFLINE": "1"},
        env_from_secrets=["ftapi-s3"],
        active_deadline_seconds=3600,
        ttl_seconds_after_finished=600,
        api_url=fake.url,
        token="cluster-token",  # type: ignore[arg-type]
    )


@pytest.fixture
def executor(fake: FakeKubernetes) -> KubernetesExecutor:
    return KubernetesExecutor(config(fake), grace_seconds=45)


STORE = S3StoreConfig(bucket="ftapi-bucket", access_key_id="AKIA-TEST", secret_access_key=S3_SECRET)  # type: ignore[arg-type]


def make_spec(job_id: str, attempt: int = 1) -> JobSpec:
    return JobSpec(
        job_id=job_id,
        attempt=attempt,
        base_model=BaseModelRef(id="tiny-chat", source="builtin:tiny-chat"),
        hyperparameters=Hyperparameters(n_epochs=1, batch_size=2, learning_rate=1e-3),
        storage=STORE.without_credentials(),  # as runs.build_spec writes it
        training_file_key="files/x",
        output_prefix=f"jobs/p/{job_id}/",
        report_url="http://ftapi.internal:8000",
    )


def start(executor: KubernetesExecutor, job_id: str) -> tuple[str, str]:
    # As runs.start_run calls it: the job token and the storage credentials travel as secrets.
    handle = executor.start(make_spec(job_id), {"FTAPI_JOB_TOKEN": TOKEN, **STORE.credentials_env()})
    return handle, handle.split("/", 1)[1]


def test_start_creates_a_valid_job_and_secret(executor: KubernetesExecutor, fake: FakeKubernetes) -> None:
    handle, name = start(executor, "ftjob-Start1")
    assert handle == f"k8s:{NS}/{name}" and name == job_name("ftjob-Start1", 1)
    check_dns1123_name(name)
    job = fake.jobs[(NS, name)]
    manifest = {k: v for k, v in job.items() if k != "status"}
    manifest["metadata"] = {k: v for k, v in job["metadata"].items() if k not in ("uid", "creationTimestamp")}
    validate_manifest(manifest)
    text = json.dumps(job)
    assert (
        TOKEN not in text and S3_SECRET not in text and "**********" not in text and "AKIA-TEST" not in text
    )

    labels = job["metadata"]["labels"]
    assert labels == {
        "app.kubernetes.io/managed-by": "ftapi",
        "ftapi.job_id": "ftjob-Start1",
        "ftapi.attempt": "1",
    }
    assert job["spec"]["template"]["metadata"]["labels"] == labels
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["activeDeadlineSeconds"] == 3600 and job["spec"]["ttlSecondsAfterFinished"] == 600
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["terminationGracePeriodSeconds"] == 45
    assert pod["serviceAccountName"] == "ftapi-trainer"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    (container,) = pod["containers"]
    assert container["image"] == "registry.example/ftapi-trainer:1.2"
    assert container["command"][-2:] == ["--spec-env", "FTAPI_JOB_SPEC"]
    assert container["resources"] == {
        "requests": {"cpu": "2", "memory": "6Gi"},
        "limits": {"memory": "12Gi", "nvidia.com/gpu": "1"},
    }
    assert container["envFrom"] == [{"secretRef": {"name": "ftapi-s3"}}]
    env = {e["name"]: e for e in container["env"]}
    assert env["FTAPI_JOB_TOKEN"] == {
        "name": "FTAPI_JOB_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": f"{name}-env", "key": "FTAPI_JOB_TOKEN"}},
    }
    assert env["HF_HUB_OFFLINE"]["value"] == "1"
    spec = JobSpec.model_validate_json(env["FTAPI_JOB_SPEC"]["value"])
    assert spec.job_id == "ftjob-Start1" and spec.report_url == "http://ftapi.internal:8000"
    assert isinstance(spec.storage, S3StoreConfig)
    assert spec.storage.bucket == "ftapi-bucket" and spec.storage.secret_access_key is None
    assert spec.storage.access_key_id is None and spec.cache_dir == "/var/cache/ftapi"

    secret = fake.secrets[(NS, f"{name}-env")]
    assert secret["stringData"] == {"FTAPI_JOB_TOKEN": TOKEN, **STORE.credentials_env()}
    assert secret["metadata"]["labels"] == labels
    (owner,) = secret["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("Job", name, job["metadata"]["uid"])
    validate_manifest(secret | {"metadata": {"name": secret["metadata"]["name"], "labels": labels}})
    auth = {r.headers.get("authorization") for r in fake.calls("POST")}
    assert auth == {"Bearer cluster-token"}


def test_running_then_succeeded(executor: KubernetesExecutor, fake: FakeKubernetes) -> None:
    handle, name = start(executor, "ftjob-ok")
    assert executor.poll(handle).state == "running"  # pending
    fake.run(NS, name)
    assert executor.poll(handle).state == "running"
    fake.succeed(NS, name)
    status = executor.poll(handle)
    assert (status.state, status.exit_code) == ("exited", 0)


def test_oom_names_the_memory_limit(executor: KubernetesExecutor, fake: FakeKubernetes) -> None:
    handle, name = start(executor, "ftjob-oom")
    fake.run(NS, name)
    fake.fail(NS, name, exit_code=137, reason="OOMKilled")
    status = executor.poll(handle)
    assert (status.state, status.exit_code) == ("exited", 137)
    assert status.detail and "out of memory" in status.detail and "12Gi" in status.detail


def test_trainer_error_exit_code(executor: KubernetesExecutor, fake: FakeKubernetes) -> None:
    handle, name = start(executor, "ftjob-err")
    fake.fail(NS, name, exit_code=3)
    status = executor.poll(handle)
    assert (status.state, status.exit_code, status.detail) == ("exited", 3, None)


def test_evicted(executor: KubernetesExecutor, fake: FakeKubernetes) -> None:
    handle, name = start(executor, "ftjob-evict")
    fake.fail(
        NS, name, 137, "Error", pod_reason="Evicted", pod_message="The node was low on resource: memory."
    )
    status = executor.poll(handle)
    assert (
        status.state == "exited"
        and status.detail
        and "evicted" in status.detail
        and "low on" in status.detail
    )


@pytest.mark.parametrize("reason", ["ImagePullBackOff", "ErrImagePull"])
def test_image_pull_failure_names_the_image(
    executor: KubernetesExecutor, fake: FakeKubernetes, reason: str
) -> None:
    handle, name = start(executor, f"ftjob-pull-{reason.lower()}")
    fake.waiting(NS, name, reason, 'Back-off pulling image "registry.example/ftapi-trainer:1.2"')
    status = executor.poll(handle)
    assert status.state == "exited" and status.exit_code is None
    assert status.detail and "registry.example/ftapi-trainer:1.2" in status.detail and reason in status.detail
    # A stuck pod would wait for the deadline: the executor ends the Job itself.
    assert (NS, name) not in fake.jobs
    assert executor.poll(handle).state == "lost"


def test_deadline_exceeded(executor: KubernetesExecutor, fake: FakeKubernetes) -> None:
    handle, name = start(executor, "ftjob-late")
    fake.run(NS, name)
    fake.deadline_exceeded(NS, name)
    status = executor.poll(handle)
    assert status.state == "exited" and status.detail and "deadline of 3600 s" in status.detail


def test_cancel_deletes_the_pod_with_grace_then_the_job(
    executor: KubernetesExecutor, fake: FakeKubernetes
) -> None:
    handle, name = start(executor, "ftjob-stop")
    fake.run(NS, name)
    pod_name = fake.job_pod(NS, name)["metadata"]["name"]
    before = len(fake.requests)
    executor.cancel(handle, 12.5)
    deletes = [r for r in fake.requests[before:] if r.method == "DELETE"]
    assert [(r.path.rsplit("/", 1)[1], r.query) for r in deletes] == [
        (pod_name, {"gracePeriodSeconds": "13"}),
        (name, {"propagationPolicy": "Foreground"}),
    ]
    assert (NS, name) not in fake.jobs and (NS, f"{name}-env") not in fake.secrets  # owned: collected
    executor.cancel(handle, 12.5)  # idempotent: no error, no second round of calls
    assert len([r for r in fake.requests[before:] if r.method == "DELETE"]) == 2
    KubernetesExecutor(config(fake)).cancel(handle, 5)  # another worker, the Job already gone: no error
    assert executor.poll(handle).state == "lost"


def test_lost_when_the_job_is_gone(executor: KubernetesExecutor, fake: FakeKubernetes) -> None:
    handle, name = start(executor, "ftjob-gone")
    del fake.jobs[(NS, name)]
    status = executor.poll(handle)
    assert status.state == "lost" and status.detail


def test_a_leftover_job_of_the_same_attempt_is_replaced(
    executor: KubernetesExecutor, fake: FakeKubernetes
) -> None:
    _, name = start(executor, "ftjob-again")
    _, other = start(executor, "ftjob-again")
    assert other.startswith(name + "-") and (NS, name) not in fake.jobs and (NS, other) in fake.jobs
    check_dns1123_name(other)


@pytest.mark.parametrize("job_id", ["ftjob-abc", "ftjob-" + "x" * 80, "FTJOB_Upper.Case", "ftjob-ünïcode"])
def test_names_and_labels_are_valid(job_id: str) -> None:
    name = job_name(job_id, 12)
    check_dns1123_name(name)
    assert len(name) <= 63 and job_name(job_id, 12) == name
    assert dns_label("ftjob-abc") == "ftjob-abc"
    manifest = build_job(
        make_spec(job_id, 12),
        KubernetesConfig(),
        name=name,
        attempt=12,
        secret_name=name + "-env",
        secret_keys=["FTAPI_JOB_TOKEN"],
        grace_seconds=30,
    )
    validate_manifest(manifest)
    check_label_value(manifest["metadata"]["labels"]["ftapi.job_id"])


def test_schema_validator_rejects_bad_manifests() -> None:
    good = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "b"}}
    validate_manifest(good)
    bad = [
        good | {"dta": {}},  # unknown field
        {"apiVersion": "apps/v1", "kind": "Job", "metadata": {"name": "j"}},  # wrong group
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "j"},
            "spec": {"template": {"spec": {"containers": [{"image": "i"}]}}},  # container name missing
        },
        good | {"metadata": {"name": "Not_DNS"}},
    ]
    for manifest in bad:
        with pytest.raises(ManifestError):
            validate_manifest(manifest)


def test_dispatcher_fails_an_oom_job(tmp_path: Path, fake: FakeKubernetes) -> None:
    """A real `ftapi serve` with FTAPI_EXECUTOR=kubernetes against the fake: OOM → the job fails."""
    models = tmp_path / "models.json"
    models.write_text(json.dumps(TRAINING_CATALOGUE))
    env = {
        "FTAPI_API_KEY": ADMIN_KEY,
        "FTAPI_DISPATCH_INTERVAL_SECONDS": "0.2",
        "FTAPI_MODELS_FILE": str(models),
        "FTAPI_MAX_JOB_ATTEMPTS": "1",
        "FTAPI_EXECUTOR": "kubernetes",
        "FTAPI_KUBERNETES__API_URL": fake.url,
        "FTAPI_KUBERNETES__NAMESPACE": "ftapi-e2e",
        "FTAPI_KUBERNETES__MEMORY_LIMIT": "3Gi",
        "FTAPI_KUBERNETES__NODE_SELECTOR": '{"pool": "training"}',
    }
    with run_server(tmp_path / "srv", env) as server:
        project = new_project(server)
        client = openai.OpenAI(
            base_url=server.base_url, api_key=project.key, _strict_response_validation=True
        )
        train, _ = sentiment_sets()
        fid = client.files.create(file=("train.jsonl", to_jsonl(train)), purpose="fine-tune").id
        job = client.fine_tuning.jobs.create(model="tiny-chat", training_file=fid)

        deadline = time.monotonic() + 60
        while not [k for k, j in fake.jobs.items() if j["metadata"]["labels"].get("ftapi.job_id") == job.id]:
            assert time.monotonic() < deadline, server.log_text()[-3000:]
            time.sleep(0.1)
        ((namespace, name),) = [
            k for k, j in fake.jobs.items() if j["metadata"]["labels"].get("ftapi.job_id") == job.id
        ]
        k8s_job = fake.jobs[(namespace, name)]
        assert namespace == "ftapi-e2e"
        assert k8s_job["metadata"]["labels"]["ftapi.attempt"] == "1"
        assert k8s_job["spec"]["template"]["spec"]["nodeSelector"] == {"pool": "training"}
        assert wait_for_status(client, job.id, {"running"}, timeout=30).status == "running"

        fake.run(namespace, name)
        fake.fail(namespace, name, exit_code=137, reason="OOMKilled")
        done = wait_for_status(client, job.id, {"succeeded", "failed", "cancelled"}, timeout=30)
        assert done.status == "failed" and done.error is not None
        assert "out of memory" in done.error.message and "3Gi" in done.error.message, done.error


def test_specs_never_carry_storage_credentials() -> None:
    """pydantic masks a SecretStr as '**********' in JSON: a spec with credentials would hand every
    trainer a wrong secret. They travel as AWS_* secrets beside the job token instead."""
    from api.dispatch.runs import storage_credentials_env, trainer_storage
    from api.settings import Settings

    settings = Settings(storage_backend="s3", s3=STORE)
    stored = trainer_storage(settings)
    assert isinstance(stored, S3StoreConfig) and stored.bucket == "ftapi-bucket"
    assert "AKIA" not in stored.model_dump_json() and "*****" not in stored.model_dump_json()
    assert storage_credentials_env(settings) == {
        "AWS_ACCESS_KEY_ID": "AKIA-TEST",
        "AWS_SECRET_ACCESS_KEY": S3_SECRET,
    }
    assert storage_credentials_env(Settings()) == {}


def test_the_trainer_image_setting_reaches_the_job(
    fake: FakeKubernetes, monkeypatch: pytest.MonkeyPatch
) -> None:
    from api.dispatch.factory import build_executor
    from api.settings import Settings

    monkeypatch.setenv("FTAPI_EXECUTOR", "kubernetes")
    monkeypatch.setenv("FTAPI_KUBERNETES__API_URL", fake.url)
    monkeypatch.setenv("FTAPI_TRAINER_IMAGE", "registry.example/ftapi-trainer:2.0")
    executor = build_executor(Settings())
    assert isinstance(executor, KubernetesExecutor)
    assert executor.config.image == "registry.example/ftapi-trainer:2.0"
