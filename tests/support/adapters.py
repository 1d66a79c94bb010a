"""Real tuned weights for serving tests: tiny-chat trained on the sentiment task by our own trainer.

`train_sentiment(workdir, mode)` runs `python -m trainer run` (as the executor does) against a local
blob store under `workdir/blobs` and returns where the model landed, as storage key and directory.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from storage.config import LocalStoreConfig
from tests.support.sentiment import sentiment_sets, to_jsonl
from trainer.spec import BaseModelRef, Hyperparameters, JobSpec


@dataclass(frozen=True)
class TrainedModel:
    store_root: Path  # a LocalBlobStore root
    weights_prefix: str  # storage prefix of the saved adapter (lora) or whole model (full)
    cache_dir: Path  # where tiny-chat was built; base_path below lives in it

    @property
    def weights_dir(self) -> Path:
        return self.store_root / self.weights_prefix


def train_sentiment(workdir: Path, mode: Literal["lora", "full"] = "lora") -> TrainedModel:
    train, _ = sentiment_sets()
    store_root = workdir / "blobs"
    (store_root / "files/p").mkdir(parents=True, exist_ok=True)
    (store_root / "files/p/train.jsonl").write_bytes(to_jsonl(train))
    lr, epochs = (5e-3, 40) if mode == "lora" else (1e-3, 20)
    spec = JobSpec(
        job_id=f"ftjob-{mode}",
        base_model=BaseModelRef(id="tiny-chat", source="builtin:tiny-chat", max_length=256),
        mode=mode,
        hyperparameters=Hyperparameters(n_epochs=epochs, batch_size=8, learning_rate=lr),
        storage=LocalStoreConfig(root=store_root),
        training_file_key="files/p/train.jsonl",
        output_prefix=f"jobs/p/ftjob-{mode}/",
        cache_dir=str(workdir / "cache"),
        logging_steps=50,
    )
    spec_path = workdir / f"spec-{mode}.json"
    spec_path.write_text(spec.model_dump_json())
    done = subprocess.run(
        [sys.executable, "-m", "trainer", "run", "--spec", str(spec_path), "--events", str(workdir / "ev")],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return TrainedModel(store_root, spec.output_prefix + "model/", workdir / "cache")
