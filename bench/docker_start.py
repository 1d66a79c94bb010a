"""Job start overhead of the Docker executor next to the local executor, in one run.

    eval "$(/work/shared/tools/container-engine.sh)"     # here; elsewhere any Docker engine
    make images                                          # ftapi-trainer:dev
    .venv/bin/python -m bench.docker_start [--image ftapi-trainer:dev --repeat 3]

Each side runs a real `ftapi serve` (S3 storage on moto's server for both, so only the executor
differs) and a 1-epoch tiny-chat LoRA job, timed as bench/job_start.py says: create → queued →
running → trainer up → first metrics. tiny-chat is built beforehand on both sides (the local data dir
and the containers' model-cache volume), so neither pays for building it. Sides alternate; the median
of the repeats is printed, with the trainer image's size.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import tempfile
from pathlib import Path
from typing import Any

CACHE_VOLUME = "ftapi-bench-model-cache"


def warm_cache(client: Any, image: str) -> None:
    """Build tiny-chat into the containers' model-cache volume, as the local side has it on disk."""
    client.containers.run(
        image,
        [
            "python",
            "-m",
            "trainer",
            "base-model",
            "--source",
            "builtin:tiny-chat",
            "--cache-dir",
            "/var/lib/ftapi/models",
        ],
        volumes={CACHE_VOLUME: {"bind": "/var/lib/ftapi/models", "mode": "rw"}},
        environment={"HF_HUB_OFFLINE": "1"},
        network_mode="host",
        remove=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--image", default="ftapi-trainer:dev")
    parser.add_argument("--repeat", type=int, default=3, help="Runs per side; the median counts.")
    args = parser.parse_args()

    import docker

    from bench.job_start import MARKS, link_models, time_job_start
    from tests.conftest import s3_env
    from tests.support.moto_server import run_moto_server
    from trainer.tiny import build_tiny_chat

    client = docker.from_env(timeout=120)
    image = client.images.get(args.image)
    size_mb = image.attrs["Size"] / 1e6
    warm_cache(client, args.image)
    models = Path(tempfile.gettempdir()) / "ftapi-bench-models"
    build_tiny_chat(models)

    results: dict[str, list[dict[str, float]]] = {"local": [], "docker": []}
    with run_moto_server() as endpoint, tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.repeat):
            for side in ("local", "docker") if round_ % 2 == 0 else ("docker", "local"):
                data = Path(tmp) / f"{side}-{round_}"
                link_models(data, models)
                env = s3_env(endpoint, "bench-" + secrets.token_hex(4))
                if side == "docker":
                    env |= {
                        "FTAPI_EXECUTOR": "docker",
                        "FTAPI_DOCKER__IMAGE": args.image,
                        "FTAPI_DOCKER__NETWORK": "host",
                        "FTAPI_DOCKER__CACHE_VOLUME": CACHE_VOLUME,
                        "FTAPI_DOCKER__ENV": json.dumps({"HF_HUB_OFFLINE": "1"}),
                    }
                marks = time_job_start(data, env, finish=True)
                results[side].append(marks)
                print(side, json.dumps({k: round(v, 2) for k, v in marks.items()}), flush=True)

    report: dict[str, Any] = {"image": args.image, "image_size_mb": round(size_mb), "repeat": args.repeat}
    for side, runs in results.items():
        report[side] = {m: round(statistics.median(r[m] for r in runs), 2) for m in MARKS}
    report["docker_minus_local"] = {m: round(report["docker"][m] - report["local"][m], 2) for m in MARKS}
    report["docker_over_local"] = {m: round(report["docker"][m] / report["local"][m], 2) for m in MARKS}
    print(f"trainer image {args.image}: {size_mb:,.0f} MB")
    print(f"{'seconds after create':<22}" + "".join(f"{m:>15}" for m in MARKS))
    for side in ("local", "docker", "docker_minus_local", "docker_over_local"):
        print(f"{side:<22}" + "".join(f"{report[side][m]:>15.2f}" for m in MARKS))
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    (out / "docker_start.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
