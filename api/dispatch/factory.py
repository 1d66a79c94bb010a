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
