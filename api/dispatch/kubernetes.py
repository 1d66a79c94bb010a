"""KubernetesExecutor: one `batch/v1` Job per trainer attempt, through the official `kubernetes` client.

Owns the Job manifest (built from `KubernetesConfig`), the per-job Secret that carries the job token,
and the mapping of Job/Pod status to `RunStatus`. The `kubernetes` package (an optional extra) is
imported only when an executor is built (api/dispatch/factory.py, `FTAPI_EXECUTOR=kubernetes`):
`Settings` holds a `KubernetesConfig` without it. Retries belong to the dispatcher (`backoffLimit: 0`):
a new attempt resumes from the newest checkpoint, so the Job itself never restarts the trainer.
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
from typing import TYPE_CHECKING, Any, Literal

import structlog
from pydantic import BaseModel, Field, SecretStr

from api.dispatch.executor import TRAINER_IMAGE, RunStatus
from trainer.spec import JobSpec

if TYPE_CHECKING:
    from kubernetes import client

log = structlog.get_logger()

CONTAINER = "trainer"
SPEC_ENV = "FTAPI_JOB_SPEC"
MANAGED_BY = {"app.kubernetes.io/managed-by": "ftapi"}
# A pod waiting for one of these will not start without someone changing the cluster or the config.
_STUCK_IMAGE = {"ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull"}
_STUCK_CONFIG = {"CreateContainerConfigError", "CreateContainerError"}
_TIMEOUT = 10  # seconds per API call: the dispatcher calls the executor from its loop


class Toleration(BaseModel):
    key: str | None = None
    operator: Literal["Equal", "Exists"] | None = None
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None

    def manifest(self) -> dict[str, Any]:
        fields = {
            "key": self.key,
            "operator": self.operator,
            "value": self.value,
            "effect": self.effect,
            "tolerationSeconds": self.toleration_seconds,
        }
        return {k: v for k, v in fields.items() if v is not None}


class KubernetesConfig(BaseModel):
    """How trainer Jobs are made. Environment: `FTAPI_KUBERNETES__<FIELD>` (maps and lists as JSON)."""

    namespace: str = "default"
    image: str | None = Field(default=None, description="The trainer image; default FTAPI_TRAINER_IMAGE.")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    image_pull_secrets: list[str] = Field(default_factory=list)
    service_account: str | None = None
    command: list[str] = Field(
        default_factory=lambda: ["python", "-m", "trainer", "run", "--spec-env", SPEC_ENV]
    )
    cpu_request: str | None = "1"
    cpu_limit: str | None = None
    memory_request: str | None = "4Gi"
    memory_limit: str | None = "8Gi"
    gpus: int = Field(default=0, ge=0, description="nvidia.com/gpu per trainer.")
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict, description="Extra plain environment for trainers.")
    env_from_secrets: list[str] = Field(
        default_factory=list,
        description="Secrets whose keys become trainer environment, e.g. one with AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY: storage credentials never go into the Job manifest.",
    )
    cache_dir: str = Field(default="/var/cache/ftapi", description="Base-model cache (an emptyDir).")
    active_deadline_seconds: int | None = Field(default=7 * 24 * 3600, ge=1)
    ttl_seconds_after_finished: int | None = Field(default=24 * 3600, ge=0)
    # Where the API server is: in-cluster service account, else kubeconfig, else api_url + token.
    api_url: str | None = None
    token: SecretStr | None = None
    verify_ssl: bool = True
    kubeconfig: str | None = None
    context: str | None = None


def api_client(config: KubernetesConfig) -> client.ApiClient:
    """An API client: explicit `api_url` (+ token) first, then in-cluster config, then kubeconfig."""
    from kubernetes import client
    from kubernetes import config as kube_config

    configuration = client.Configuration()
    if config.api_url:
        configuration.host = config.api_url
        configuration.verify_ssl = config.verify_ssl
        if config.token is not None:
            configuration.api_key = {"BearerToken": config.token.get_secret_value()}
            configuration.api_key_prefix = {"BearerToken": "Bearer"}
    else:
        try:
            kube_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except kube_config.ConfigException:
            kube_config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=config.kubeconfig, context=config.context, client_configuration=configuration
            )
    return client.ApiClient(configuration)


def dns_label(text: str, max_length: int = 63) -> str:
    """`text` as a DNS-1123 label; a short hash keeps distinct inputs distinct when it had to change."""
    clean = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    if clean == text and len(clean) <= max_length:
        return clean
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"{clean[: max_length - 9].rstrip('-')}-{digest}".lstrip("-")


def label_value(text: str) -> str:
    """A valid label value (≤ 63 characters, alphanumeric at both ends)."""
    clean = re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:63]
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", clean)


def job_name(job_id: str, attempt: int) -> str:
    return f"{dns_label(job_id, 52)}-{attempt}"


def trainer_spec(spec: JobSpec, config: KubernetesConfig) -> JobSpec:
    """The spec as the pod sees it: the pod's own model cache. Storage credentials are never in a
    spec (see runs.storage_credentials_env): they arrive in the per-job Secret, or from
    `env_from_secrets` as boto3's standard AWS_* variables."""
    return spec.model_copy(update={"cache_dir": config.cache_dir})


def build_secret(name: str, labels: dict[str, str], env: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "labels": labels},
        "type": "Opaque",
        "stringData": dict(env),
    }


def build_job(
    spec: JobSpec,
    config: KubernetesConfig,
    *,
    name: str,
    attempt: int,
    secret_name: str,
    secret_keys: list[str],
    grace_seconds: float,
) -> dict[str, Any]:
    """The Job manifest for one attempt. Secrets appear only as references."""
    labels = {**MANAGED_BY, "ftapi.job_id": label_value(spec.job_id), "ftapi.attempt": str(attempt)}
    env: list[dict[str, Any]] = [
        {"name": SPEC_ENV, "value": trainer_spec(spec, config).model_dump_json()},
        *({"name": k, "value": v} for k, v in sorted(config.env.items())),
        *(
            {"name": key, "valueFrom": {"secretKeyRef": {"name": secret_name, "key": key}}}
            for key in secret_keys
        ),
    ]
    requests = {"cpu": config.cpu_request, "memory": config.memory_request}
    limits = {"cpu": config.cpu_limit, "memory": config.memory_limit}
    if config.gpus:
        limits["nvidia.com/gpu"] = str(config.gpus)
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": config.image or TRAINER_IMAGE,
        "imagePullPolicy": config.image_pull_policy,
        "command": list(config.command),
        "env": env,
        "resources": {
            key: {k: v for k, v in values.items() if v is not None}
            for key, values in (("requests", requests), ("limits", limits))
            if any(v is not None for v in values.values())
        },
        "volumeMounts": [{"name": "cache", "mountPath": config.cache_dir}],
    }
    if config.env_from_secrets:
        container["envFrom"] = [{"secretRef": {"name": s}} for s in config.env_from_secrets]
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        # The trainer saves a checkpoint on SIGTERM (cancel, pause, eviction, node drain): give it the
        # same time a cancel gives it.
        "terminationGracePeriodSeconds": max(1, math.ceil(grace_seconds)),
        "containers": [container],
        "volumes": [{"name": "cache", "emptyDir": {}}],
    }
    if config.service_account:
        pod_spec["serviceAccountName"] = config.service_account
    if config.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": s} for s in config.image_pull_secrets]
    if config.node_selector:
        pod_spec["nodeSelector"] = dict(config.node_selector)
    if config.tolerations:
        pod_spec["tolerations"] = [t.manifest() for t in config.tolerations]
    job_spec: dict[str, Any] = {
        "backoffLimit": 0,  # ftapi owns retries: a new attempt resumes from the newest checkpoint
        "template": {"metadata": {"labels": labels}, "spec": pod_spec},
    }
    if config.active_deadline_seconds is not None:
        job_spec["activeDeadlineSeconds"] = config.active_deadline_seconds
    if config.ttl_seconds_after_finished is not None:
        job_spec["ttlSecondsAfterFinished"] = config.ttl_seconds_after_finished
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": config.namespace, "labels": labels},
        "spec": job_spec,
    }


def parse_handle(handle: str) -> tuple[str, str]:
    kind, _, rest = handle.partition(":")
    namespace, _, name = rest.partition("/")
    if kind != "k8s" or not namespace or not name:
        raise ValueError(f"not a Kubernetes run handle: {handle!r}")
    return namespace, name


class KubernetesExecutor:
    """Runs each trainer attempt as a Kubernetes Job. Handles are `k8s:<namespace>/<job-name>`."""

    def __init__(
        self, config: KubernetesConfig, grace_seconds: float = 30.0, api: client.ApiClient | None = None
    ) -> None:
        from kubernetes import client

        self.config = config if config.image else config.model_copy(update={"image": TRAINER_IMAGE})
        self.grace_seconds = grace_seconds
        self._api = api or api_client(config)
        self._batch = client.BatchV1Api(self._api)
        self._core = client.CoreV1Api(self._api)
        self._cancelled: set[str] = set()

    def start(self, spec: JobSpec, env: dict[str, str]) -> str:
        from kubernetes.client.exceptions import ApiException

        namespace = self.config.namespace
        name = job_name(spec.job_id, spec.attempt)
        try:
            return self._create(spec, env, name)
        except ApiException as exc:
            if exc.status != 409:
                raise
        # A worker died between creating this attempt's Job and recording its handle: that Job is
        # an orphan nobody watches. Stop it and start under a fresh name.
        log.warning("kubernetes.job_exists", job_id=spec.job_id, name=name)
        self.cancel(f"k8s:{namespace}/{name}", 0)
        return self._create(spec, env, f"{name}-{secrets.token_hex(3)}")

    def _create(self, spec: JobSpec, env: dict[str, str], name: str) -> str:
        from kubernetes import client

        namespace = self.config.namespace
        labels = {**MANAGED_BY, "ftapi.job_id": label_value(spec.job_id), "ftapi.attempt": str(spec.attempt)}
        secret_name = f"{name}-env"
        secret = client.V1Secret.from_dict(build_secret(secret_name, labels, env))
        assert secret is not None
        self._core.create_namespaced_secret(namespace, secret, _request_timeout=_TIMEOUT)
        manifest = build_job(
            spec,
            self.config,
            name=name,
            attempt=spec.attempt,
            secret_name=secret_name,
            secret_keys=sorted(env),
            grace_seconds=self.grace_seconds,
        )
        body = client.V1Job.from_dict(manifest)
        assert body is not None
        try:
            job = self._batch.create_namespaced_job(namespace, body, _request_timeout=_TIMEOUT)
        except Exception:
            self._ignore_missing(self._core.delete_namespaced_secret, secret_name, namespace)
            raise
        assert job.metadata is not None
        owner = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "name": name,
            "uid": job.metadata.uid,
            "blockOwnerDeletion": True,
        }
        # The Secret goes when the Job goes (TTL, cancel, or by hand): owned by it.
        self._core.patch_namespaced_secret(
            secret_name,
            namespace,
            {"metadata": {"ownerReferences": [owner]}},
            _content_type="application/merge-patch+json",
            _request_timeout=_TIMEOUT,
        )
        handle = f"k8s:{namespace}/{name}"
        log.info("kubernetes.job_created", job_id=spec.job_id, handle=handle)
        return handle

    def poll(self, handle: str) -> RunStatus:
        from kubernetes.client.exceptions import ApiException

        namespace, name = parse_handle(handle)
        try:
            job = self._batch.read_namespaced_job(name, namespace, _request_timeout=_TIMEOUT)
        except ApiException as exc:
            if exc.status == 404:
                self._cancelled.discard(handle)
                return RunStatus("lost", detail="the Kubernetes Job is gone")
            raise
        status = job.status
        conditions = {c.type: c for c in (status.conditions or []) if c.status == "True"} if status else {}
        if "Complete" in conditions:
            return RunStatus("exited", exit_code=0)
        if "Failed" in conditions:
            return self._failure(namespace, name, job, conditions["Failed"].reason)
        if job.metadata is None or job.metadata.deletion_timestamp is None:
            stuck = self._stuck(namespace, name)
            if stuck is not None:
                # It would wait for its deadline: end it now, ftapi decides about another attempt.
                self._delete_job(namespace, name, grace=0)
                return stuck
        return RunStatus("running")

    def cancel(self, handle: str, grace_seconds: float) -> None:
        if handle in self._cancelled:
            return  # asked once: the pod is saving its checkpoint; the Job goes once it has
        namespace, name = parse_handle(handle)
        grace = max(0, math.ceil(grace_seconds))
        # Pods first, with the grace: SIGTERM, the trainer checkpoints and exits (143), SIGKILL after
        # `grace`. Deleting the Job then stops the controller from making another pod; Foreground
        # keeps the Job (and its Secret) until the pod is gone.
        for pod in self._pods(namespace, name):
            if pod.metadata.deletion_timestamp is None:
                self._ignore_missing(
                    self._core.delete_namespaced_pod, pod.metadata.name, namespace, grace_period_seconds=grace
                )
        self._delete_job(namespace, name)
        self._cancelled.add(handle)
        log.info("kubernetes.job_cancelled", handle=handle, grace_seconds=grace)

    # -- status ---------------------------------------------------------------------------------

    def _pods(self, namespace: str, name: str) -> list[Any]:
        pods = self._core.list_namespaced_pod(
            namespace, label_selector=f"job-name={name}", _request_timeout=_TIMEOUT
        )
        items: list[Any] = list(pods.items or [])
        items.sort(
            key=lambda p: p.metadata.creation_timestamp.timestamp() if p.metadata.creation_timestamp else 0
        )
        return items

    def _stuck(self, namespace: str, name: str) -> RunStatus | None:
        for pod in self._pods(namespace, name):
            for cs in (pod.status.container_statuses or []) if pod.status else []:
                waiting = cs.state.waiting if cs.state else None
                if waiting is None:
                    continue
                message = f"{waiting.reason}: {waiting.message}" if waiting.message else waiting.reason
                if waiting.reason in _STUCK_IMAGE:
                    image = _container(pod).image or cs.image
                    return RunStatus(
                        "exited", detail=f"the trainer image {image} could not be pulled ({message})"
                    )
                if waiting.reason in _STUCK_CONFIG:
                    return RunStatus(
                        "exited", detail=f"the trainer container could not be created ({message})"
                    )
        return None

    def _failure(self, namespace: str, name: str, job: Any, reason: str | None) -> RunStatus:
        pods = self._pods(namespace, name)
        pod = pods[-1] if pods else None
        terminated = None
        if pod is not None and pod.status is not None:
            for cs in pod.status.container_statuses or []:
                if cs.name == CONTAINER and cs.state is not None and cs.state.terminated is not None:
                    terminated = cs.state.terminated
        exit_code = terminated.exit_code if terminated is not None else None
        if reason == "DeadlineExceeded":
            deadline = job.spec.active_deadline_seconds
            return RunStatus("exited", exit_code, f"the Job ran past its active deadline of {deadline} s")
        if pod is not None and pod.status is not None and pod.status.reason == "Evicted":
            return RunStatus(
                "exited", exit_code, f"the pod was evicted: {pod.status.message or 'no reason given'}"
            )
        if terminated is not None and terminated.reason == "OOMKilled":
            limits = (_container(pod).resources.limits if _container(pod).resources else None) or {}
            limit = limits.get("memory", "unset")
            return RunStatus(
                "exited", exit_code, f"out of memory: the trainer exceeded its memory limit of {limit}"
            )
        if terminated is not None:
            detail = terminated.reason if terminated.reason and terminated.reason != "Error" else None
            return RunStatus("exited", exit_code, detail)
        return RunStatus("exited", None, f"the Kubernetes Job failed ({reason or 'no reason given'})")

    # -- calls ----------------------------------------------------------------------------------

    def _delete_job(self, namespace: str, name: str, grace: int | None = None) -> None:
        self._ignore_missing(
            self._batch.delete_namespaced_job,
            name,
            namespace,
            propagation_policy="Foreground",
            grace_period_seconds=grace,
        )

    @staticmethod
    def _ignore_missing(call: Any, *args: Any, **kwargs: Any) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            call(*args, _request_timeout=_TIMEOUT, **kwargs)
        except ApiException as exc:
            if exc.status != 404:
                raise


def _container(pod: Any) -> Any:
    for container in pod.spec.containers:
        if container.name == CONTAINER:
            return container
    return pod.spec.containers[0]
