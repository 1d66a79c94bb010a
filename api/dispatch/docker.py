"""DockerExecutor: one container per trainer attempt on this machine's container engine, through the
Docker Engine API with the `docker` SDK (podman's Docker-compatible API works too).

Owns the container's create arguments (built from `DockerConfig`), the mapping of container states
to `RunStatus` (out of memory, the trainer's last error line), stopping and removing containers, and
the tail of a container's output. The `docker` package (an optional extra) is imported only when an
executor is built (api/dispatch/factory.py, `FTAPI_EXECUTOR=docker`). Containers are named after the
job and attempt and labelled with both, so a worker that restarts finds (adopts) its runs by name,
and one attempt never has two containers.

Secrets (the job token, storage credentials) reach the trainer as environment variables: the engine
keeps them in the container's config, where `docker inspect` shows them to whoever may use the
engine. They are never put in labels, the command or a log line, and are removed from the output
tail before ftapi keeps it.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from pydantic import BaseModel, Field

from api.dispatch.executor import TRAINER_IMAGE, ExecutorUnavailable, RunNotStarted, RunStatus
from storage.config import LocalStoreConfig, S3StoreConfig
from trainer.spec import JobSpec

if TYPE_CHECKING:
    from docker import DockerClient
    from docker.models.containers import Container

log = structlog.get_logger()

SPEC_ENV = "FTAPI_JOB_SPEC"
MANAGED_BY = {"app.kubernetes.io/managed-by": "ftapi"}
SECRET_NAMES_LABEL = "ftapi.secret_env"  # the names (never the values) of the secret variables
OUTPUT_LINES = 2000  # of a finished container's output, kept in storage
EVENT_LINES = 20  # of those, in the job's event when a run fails
_TIMEOUT = 30  # seconds per engine call
# Container states in which the trainer may still run. podman's "stopping" (SIGTERM sent, the trainer
# saving its checkpoint) shows exit code 0; taken for an exit, the container was removed mid-save
# (seen here: a paused job lost the checkpoint of its stop).
_ALIVE = ("created", "running", "restarting", "paused", "stopping", "initialized", "configured")
_OOM_EXIT = 137  # 128 + SIGKILL: the kernel's OOM killer (or a forced stop)
IMAGE_USER = 10001  # the trainer image's uid and gid (Dockerfile: USER 10001:10001)
# Where a trainer running as another uid keeps its caches: the image's HOME belongs to IMAGE_USER.
_OTHER_USER_HOME = "/tmp/ftapi-home"
_ERROR_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b.*")


class DockerConfig(BaseModel):
    """How trainer containers are made. Environment: `FTAPI_DOCKER__<FIELD>` (maps as JSON)."""

    url: str | None = Field(
        default=None, description="The engine's API, e.g. unix:///run/podman.sock; default DOCKER_HOST."
    )
    image: str | None = Field(default=None, description="The trainer image; default FTAPI_TRAINER_IMAGE.")
    command: list[str] = Field(
        default_factory=lambda: ["python", "-m", "trainer", "run", "--spec-env", SPEC_ENV]
    )
    network: str = Field(
        default="host",
        description="The containers' network mode: `host` (they reach 127.0.0.1 services), `bridge`, "
        "or a network's name (e.g. the compose project's).",
    )
    api_url: str | None = Field(
        default=None, description="The API as a trainer container reaches it; default FTAPI_INTERNAL_URL."
    )
    s3_endpoint_url: str | None = Field(
        default=None, description="The S3 endpoint as a trainer container reaches it; default ftapi's own."
    )
    cpus: float | None = Field(default=None, gt=0, description="CPU limit per trainer (like --cpus).")
    memory: str | None = Field(default=None, description="Memory limit per trainer (like --memory 8g).")
    gpus: int = Field(default=0, ge=-1, description="NVIDIA GPUs per trainer; -1 for all.")
    env: dict[str, str] = Field(default_factory=dict, description="Extra plain environment for trainers.")
    cache_volume: str = Field(
        default="ftapi-model-cache", description="Named volume for base models, shared by trainers."
    )
    cache_dir: str = Field(default="/var/lib/ftapi/models", description="Where that volume is mounted.")
    user: str | None = Field(default=None, description="uid[:gid] to run as; default the image's (10001).")
    keep_containers: bool = Field(
        default=False, description="Keep finished containers (debugging); normally they are removed."
    )


def container_name(job_id: str, attempt: int) -> str:
    clean = re.sub(r"[^a-zA-Z0-9_.-]+", "-", job_id)
    return f"ftapi-{clean}-{attempt}"


def container_spec(spec: JobSpec, config: DockerConfig, own_cache: bool = False) -> JobSpec:
    """The spec as the container sees it: its model cache (the shared volume, unless `own_cache`:
    then the host's cache, mounted at its path), and the API and storage at the addresses the
    container reaches. Storage credentials are never in it (they arrive as AWS_* variables)."""
    update: dict[str, Any] = {} if own_cache else {"cache_dir": config.cache_dir}
    if config.api_url:
        update["report_url"] = config.api_url
    if isinstance(spec.storage, S3StoreConfig) and config.s3_endpoint_url:
        update["storage"] = spec.storage.model_copy(update={"endpoint_url": config.s3_endpoint_url})
    return spec.model_copy(update=update)


def local_storage_user(root: Path) -> str | None:
    """The `uid:gid` a trainer container must run as to use local storage at `root`, or None when
    the image's own user may. The API writes blobs mode 0600 under its own uid, so only the owner
    of the data directory (root, for a `mktemp -d` directory of root's) reads and writes them: a
    container running as the image's uid 10001 failed every attempt with PermissionError. Raises
    RunNotStarted when the directory cannot be inspected at all."""
    try:
        st = os.stat(root)
    except OSError as exc:
        raise RunNotStarted(f"the local storage directory cannot be read ({exc.strerror})") from None
    if st.st_uid == IMAGE_USER:
        return None
    return f"{st.st_uid}:{st.st_gid}"


def create_kwargs(spec: JobSpec, env: dict[str, str], config: DockerConfig) -> dict[str, Any]:
    """Arguments of `client.containers.create` for one attempt. Secrets go into `environment` only."""
    labels = {
        **MANAGED_BY,
        "ftapi.job_id": spec.job_id,
        "ftapi.attempt": str(spec.attempt),
        SECRET_NAMES_LABEL: ",".join(sorted(env)),
    }
    volumes: dict[str, dict[str, str]] = {}
    user = config.user
    plain_env = dict(config.env)
    own_cache = False
    if isinstance(spec.storage, LocalStoreConfig):
        # Local storage is visible only when mounted: at the same path, so the spec's keys hold.
        root = str(spec.storage.root)
        volumes[root] = {"bind": root, "mode": "rw"}
        if user is None and (user := local_storage_user(spec.storage.root)) is not None:
            # Running as the data directory's owner, the trainer is what a local one is: it uses
            # the host's model cache (the volume's files belong to the image's user) and a HOME
            # of its own (the image's belongs to the image's user).
            own_cache = True
            cache = os.path.expanduser(spec.cache_dir)
            volumes[cache] = {"bind": cache, "mode": "rw"}
            home = {"HOME": _OTHER_USER_HOME, "XDG_CACHE_HOME": f"{_OTHER_USER_HOME}/.cache"}
            home["HF_HOME"] = f"{_OTHER_USER_HOME}/.cache/huggingface"
            plain_env = {**home, **plain_env}
    if not own_cache:
        volumes[config.cache_volume] = {"bind": config.cache_dir, "mode": "rw"}
    kwargs: dict[str, Any] = {
        "image": config.image or TRAINER_IMAGE,
        "command": list(config.command),
        "name": container_name(spec.job_id, spec.attempt),
        "labels": labels,
        "environment": {
            **plain_env,
            SPEC_ENV: container_spec(spec, config, own_cache).model_dump_json(),
            **env,
        },
        "network_mode": config.network,
        "volumes": volumes,
        "stop_signal": "SIGTERM",
        "detach": True,
    }
    if config.memory:
        kwargs["mem_limit"] = config.memory
        kwargs["memswap_limit"] = config.memory  # no swap on top: over the limit is out of memory
    if config.cpus:
        kwargs["nano_cpus"] = int(config.cpus * 1e9)
    if config.gpus:
        kwargs["device_requests"] = [{"driver": "nvidia", "count": config.gpus, "capabilities": [["gpu"]]}]
    if user:
        kwargs["user"] = user
    return kwargs


def last_error_line(output: str) -> str | None:
    """The line that explains a failed run: the last exception line of a traceback, else the last
    non-empty line (progress bars and carriage-return updates skipped)."""
    lines = [line.rsplit("\r", 1)[-1].strip() for line in output.splitlines()]
    lines = [line for line in lines if line]
    for line in reversed(lines):
        if _ERROR_LINE.match(line):
            return line[:500]
    return lines[-1][:500] if lines else None


def redact(text: str, secrets: list[str]) -> str:
    for value in sorted(secrets, key=len, reverse=True):
        if len(value) >= 4:
            text = text.replace(value, "[redacted]")
    return text


def status_of(state: dict[str, Any], memory_limit: int | None, output: str) -> RunStatus:
    """Map a container's `State` (from inspect) to a RunStatus. `memory_limit` in bytes, if any."""
    if state.get("Running") or state.get("Status") in _ALIVE:
        return RunStatus("running")
    code = int(state.get("ExitCode") or 0)
    tail = output or None
    if code == 0:
        return RunStatus("exited", 0, output=tail)
    if state.get("OOMKilled") or (code == _OOM_EXIT and memory_limit):
        # Here (podman, cgroup v1/v2 hybrids) a container over its limit exits 137 with OOMKilled false.
        limit = _human_bytes(memory_limit) if memory_limit else "the machine's memory"
        detail = f"out of memory: the trainer exceeded its memory limit of {limit}"
        return RunStatus("exited", code, detail, tail)
    if code == 143:
        return RunStatus("exited", code, "stopped by SIGTERM", tail)
    if state.get("Error"):
        return RunStatus("exited", code, f"the container engine reported: {state['Error']}", tail)
    return RunStatus("exited", code, last_error_line(output), tail)


def _human_bytes(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            value = n / size
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n} bytes"


def parse_handle(handle: str) -> str:
    kind, _, name = handle.partition(":")
    if kind != "docker" or not name:
        raise ValueError(f"not a Docker run handle: {handle!r}")
    return name


class DockerExecutor:
    """Runs each trainer attempt as a container. Handles are `docker:<container name>`."""

    def __init__(self, config: DockerConfig, grace_seconds: float = 30.0) -> None:
        self.config = config if config.image else config.model_copy(update={"image": TRAINER_IMAGE})
        self.grace_seconds = grace_seconds
        self._client: DockerClient | None = None
        self._lock = threading.Lock()
        self._stopping: set[str] = set()

    # -- the engine -----------------------------------------------------------------------------

    def _docker(self) -> DockerClient:
        """The engine's client, made on first use: ftapi starts (and says why it cannot run jobs)
        while the engine is down."""
        import docker

        with self._lock:
            if self._client is None:
                try:
                    if self.config.url:
                        self._client = docker.DockerClient(base_url=self.config.url, timeout=_TIMEOUT)
                    else:
                        self._client = docker.from_env(timeout=_TIMEOUT)
                except docker.errors.DockerException as exc:
                    raise self._unavailable(exc) from None
            return self._client

    def _unavailable(self, exc: BaseException) -> ExecutorUnavailable:
        where = self.config.url or "DOCKER_HOST"
        reason = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        return ExecutorUnavailable(f"the container engine ({where}) does not answer: {reason}")

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """An engine call; a connection failure becomes ExecutorUnavailable."""
        import requests

        try:
            return fn(*args, **kwargs)
        except requests.exceptions.ConnectionError as exc:
            with self._lock:
                self._client = None
            raise self._unavailable(exc) from None

    def ready(self) -> None:
        self._call(self._docker().ping)

    # -- the Executor protocol ------------------------------------------------------------------

    def start(self, spec: JobSpec, env: dict[str, str]) -> str:
        import docker

        client = self._docker()
        image = self.config.image
        try:
            self._call(client.images.get, image)
        except docker.errors.ImageNotFound:
            raise RunNotStarted(
                f"trainer image {image} not found on the container engine: build it with "
                "`make images` or set FTAPI_TRAINER_IMAGE"
            ) from None
        kwargs = create_kwargs(spec, env, self.config)
        for host_path in kwargs["volumes"]:
            if host_path.startswith("/"):  # a bind mount: the host's model cache may not exist yet
                os.makedirs(host_path, exist_ok=True)
        name = kwargs["name"]
        self._remove_unrecorded(client, name, spec)
        try:
            container = self._call(client.containers.create, **kwargs)
            self._call(container.start)
        except docker.errors.ImageNotFound:
            raise RunNotStarted(f"trainer image {image} not found on the container engine") from None
        except docker.errors.APIError as exc:
            self._remove(client, name)
            # The engine's explanation (a bad network name, an unknown device driver) is actionable;
            # it never echoes the environment.
            raise RunNotStarted(
                f"the trainer container could not be started: {exc.explanation or exc}"
            ) from None
        handle = f"docker:{name}"
        log.info("docker.container_started", job_id=spec.job_id, attempt=spec.attempt, handle=handle)
        return handle

    def poll(self, handle: str) -> RunStatus:
        import docker

        name = parse_handle(handle)
        client = self._docker()
        try:
            container = self._call(client.containers.get, name)
        except docker.errors.NotFound:
            self._stopping.discard(handle)
            return RunStatus("lost", detail="the trainer container is gone")
        except docker.errors.APIError as exc:
            # The engine could not say now (podman answers 500 while it removes a container):
            # unknown, not over. The next poll asks again.
            raise ExecutorUnavailable(f"the container engine could not inspect {name}: {exc}") from None
        state = container.attrs.get("State") or {}
        memory = (container.attrs.get("HostConfig") or {}).get("Memory") or None
        status = status_of(state, memory, "")
        if status.state == "running":
            return status
        status = status_of(state, memory, self._output(container))
        if not self.config.keep_containers:
            self._remove(client, name)
        self._stopping.discard(handle)
        log.info("docker.container_exited", handle=handle, exit_code=status.exit_code, detail=status.detail)
        return status

    def cancel(self, handle: str, grace_seconds: float) -> None:
        """SIGTERM now (the trainer saves a checkpoint and exits 143); the engine kills it after
        `grace_seconds`; then the container is removed. Returns at once: the wait runs in a thread."""
        import docker

        if handle in self._stopping:
            return  # asked once: it is saving its checkpoint
        name = parse_handle(handle)
        client = self._docker()
        try:
            container = self._call(client.containers.get, name)
        except docker.errors.NotFound:
            return
        self._stopping.add(handle)
        timeout = max(1, round(grace_seconds))

        def stop() -> None:
            try:
                container.stop(timeout=timeout)
            except Exception as exc:  # gone already, or the engine went away: poll() will tell
                log.warning("docker.stop_failed", handle=handle, error=type(exc).__name__)
            if not self.config.keep_containers:
                self._remove(client, name)

        threading.Thread(target=stop, name=f"stop-{name}", daemon=True).start()
        log.info("docker.container_stopping", handle=handle, grace_seconds=timeout)

    # -- helpers --------------------------------------------------------------------------------

    def _output(self, container: Container) -> str:
        """The tail of the container's output with the values of its secret variables removed."""
        try:
            raw = self._call(container.logs, tail=OUTPUT_LINES)
        except Exception as exc:
            log.warning("docker.logs_failed", container=container.name, error=type(exc).__name__)
            return ""
        text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)
        names = set(((container.labels or {}).get(SECRET_NAMES_LABEL) or "").split(","))
        env = (container.attrs.get("Config") or {}).get("Env") or []
        secrets = [v for k, _, v in (item.partition("=") for item in env) if k in names]
        return redact(text, secrets)

    def _remove_unrecorded(self, client: DockerClient, name: str, spec: JobSpec) -> None:
        """A container with this attempt's name exists: a worker died between creating it and
        recording its handle, so nobody watches it and its job token is unknown. Remove it: one
        attempt has one container."""
        import docker

        try:
            old = self._call(client.containers.get, name)
        except docker.errors.NotFound:
            return
        log.warning("docker.container_exists", job_id=spec.job_id, attempt=spec.attempt, name=name)
        self._call(old.remove, force=True)

    def _remove(self, client: DockerClient, name: str) -> None:
        import docker

        try:
            self._call(client.api.remove_container, name, force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # already being removed
                log.warning("docker.remove_failed", name=name, error=str(exc.explanation or exc)[:200])
