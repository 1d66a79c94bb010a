"""Choose the Executor implementation from the settings: the one place that knows them all."""

from __future__ import annotations

from api.dispatch.executor import Executor
from api.settings import Settings


def build_executor(settings: Settings) -> Executor:
    if settings.executor == "kubernetes":
        # Imported only here: the `kubernetes` client is an optional extra (`pip install ftapi[kubernetes]`).
        from api.dispatch.kubernetes import KubernetesConfig, KubernetesExecutor

        kubernetes = settings.kubernetes or KubernetesConfig()
        kubernetes = kubernetes.model_copy(update={"image": kubernetes.image or settings.trainer_image})
        return KubernetesExecutor(kubernetes, settings.cancel_grace_seconds)
    if settings.executor == "docker":
        # The `docker` SDK is an optional extra too (`pip install ftapi[docker]`).
        from api.dispatch.docker import DockerConfig, DockerExecutor

        docker = settings.docker or DockerConfig()
        docker = docker.model_copy(update={"image": docker.image or settings.trainer_image})
        return DockerExecutor(docker, settings.cancel_grace_seconds)
    from api.dispatch.local import LocalExecutor

    return LocalExecutor(settings.data_dir.resolve() / "runs")


def trainer_processes(settings: Settings) -> int:
    """Processes per trainer run: FTAPI_TRAINER_PROCESSES when set, else one per GPU the executor
    gives each run (0: one per GPU the trainer sees, for Docker's "all GPUs"), else one."""
    if settings.trainer_processes is not None:
        return settings.trainer_processes
    if settings.executor == "docker" and settings.docker is not None and settings.docker.gpus:
        return 0 if settings.docker.gpus < 0 else settings.docker.gpus
    if settings.executor == "kubernetes" and settings.kubernetes is not None and settings.kubernetes.gpus:
        return settings.kubernetes.gpus
    return 1
