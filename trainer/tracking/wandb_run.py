"""The job's run in Weights & Biases (W&B's cloud, a self-hosted server via `base_url`, or offline
files). The run's id is the job's id, so a resumed attempt continues the same run."""

from __future__ import annotations

from typing import Any

from trainer.spec import JobSpec, WandbIntegration


class WandbTracker:
    label = "W&B"

    def __init__(self, integration: WandbIntegration, spec: JobSpec) -> None:
        self.integration = integration
        self.spec = spec
        self._run: Any = None

    def start(self, config: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        import wandb

        i = self.integration
        # OpenAI tags its runs the same way (with its own prefix).
        tags = [*i.tags, "ftapi/finetune", f"ftapi/{self.spec.base_model.id}", f"ftapi/{self.spec.job_id}"]
        settings = wandb.Settings(
            mode=i.mode,
            base_url=i.base_url or "https://api.wandb.ai",
            console="off",  # the trainer's output is kept with the job already
            x_disable_stats=True,  # no system-metrics sampling on a busy training host
            silent=True,
        )
        self._run = wandb.init(
            project=i.project,
            entity=i.entity,
            name=i.name or self.spec.job_id,
            id=self.spec.job_id,
            resume="allow",
            tags=[t[:64] for t in tags],
            config=config,
            dir=i.dir,
            settings=settings,
        )
        where = f"{i.entity}/{i.project}" if i.entity else i.project
        data = {"integration": "wandb", "project": i.project, "run_id": self._run.id, "mode": i.mode}
        if i.mode == "online" and self._run.url:
            data["url"] = self._run.url
        return f"W&B run {self._run.id} started in project {where}", data

    def log(self, metrics: dict[str, float], step: int) -> None:
        self._run.log(metrics, step=step)

    def summary(self, values: dict[str, float]) -> None:
        self._run.summary.update(values)

    def finish(self, outcome: str) -> None:
        self._run.finish(exit_code=0 if outcome == "succeeded" else 1)
