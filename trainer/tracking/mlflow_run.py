"""The job's run in an MLflow tracking server, through MLflow's client (no global active run). A
resumed attempt finds the run it started before by the `ftapi.job_id` tag and continues it."""

from __future__ import annotations

import os
import time
from typing import Any

from trainer.spec import JobSpec, MlflowIntegration

JOB_TAG = "ftapi.job_id"
_STATUS = {"succeeded": "FINISHED", "failed": "FAILED", "stopped": "KILLED"}


class MlflowTracker:
    label = "MLflow"

    def __init__(self, integration: MlflowIntegration, spec: JobSpec) -> None:
        self.integration = integration
        self.spec = spec
        self._client: Any = None
        self._run_id = ""

    def start(self, config: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        # MLflow retries an unreachable server for minutes by default; every call here blocks a
        # training step, so fail fast (the tracker is then dropped) unless the operator said otherwise.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
        # MLflow prints run URLs on stdout, where the trainer writes its summary: the event has it.
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        from mlflow.entities import Param
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        i = self.integration
        client = MlflowClient(tracking_uri=i.tracking_uri)
        experiment = client.get_experiment_by_name(i.experiment)
        if experiment is None:
            try:
                experiment_id = client.create_experiment(i.experiment)
            except MlflowException:  # another job created it meanwhile
                experiment = client.get_experiment_by_name(i.experiment)
                if experiment is None:
                    raise
                experiment_id = experiment.experiment_id
        else:
            if experiment.lifecycle_stage != "active":
                raise RuntimeError(f"the MLflow experiment {i.experiment!r} is deleted")
            experiment_id = experiment.experiment_id
        found = client.search_runs(
            [experiment_id], filter_string=f"tags.`{JOB_TAG}` = '{self.spec.job_id}'", max_results=1
        )
        if found:
            run_id = found[0].info.run_id
            client.update_run(run_id, status="RUNNING")
        else:
            run = client.create_run(
                experiment_id,
                run_name=i.run_name or self.spec.job_id,
                tags={JOB_TAG: self.spec.job_id, "ftapi.base_model": self.spec.base_model.id},
            )
            run_id = run.info.run_id
            client.log_batch(run_id, params=[Param(k, str(v)) for k, v in sorted(config.items())])
        self._client, self._run_id = client, run_id
        data = {
            "integration": "mlflow",
            "experiment_id": experiment_id,
            "run_id": run_id,
            "url": f"{i.tracking_uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}",
        }
        return f"MLflow run {run_id} started in experiment {i.experiment}", data

    def log(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, v, now, step) for k, v in sorted(metrics.items())]
        self._client.log_batch(self._run_id, metrics=batch)

    def summary(self, values: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, v, now, 0) for k, v in sorted(values.items())]
        self._client.log_batch(self._run_id, metrics=batch)

    def finish(self, outcome: str) -> None:
        self._client.set_terminated(self._run_id, status=_STATUS.get(outcome, "FAILED"))
