"""`python -m trainer run (--spec SPEC.json | --spec-env VAR) [--events EVENTS.jsonl]`;
`python -m trainer base-model`. `--spec-env` reads the spec's JSON from an environment variable (how
the Kubernetes executor hands it to the pod)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

from trainer import distributed
from trainer.reporter import HttpReporter, JsonlReporter, Reporter, SilentReporter
from trainer.spec import JobSpec
from trainer.stop import STOPPED_EXIT_CODE, Stopped, StopRequest
from trainer.tracking import Tracking


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer")
    sub = parser.add_subparsers(dest="command", required=True)
    run_p = sub.add_parser("run", help="Run one fine-tuning job from its spec.")
    source = run_p.add_mutually_exclusive_group(required=True)
    source.add_argument("--spec", type=Path, help="The job spec, a JSON file.")
    source.add_argument("--spec-env", metavar="VAR", help="Read the job spec's JSON from this variable.")
    run_p.add_argument("--events", type=Path, help="Append events to this JSONL file.")
    base_p = sub.add_parser(
        "base-model", help="Print where a catalogue source loads from (builds tiny-chat)."
    )
    base_p.add_argument("--source", required=True)
    base_p.add_argument("--cache-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "base-model":
        from trainer.tiny import resolve_base_model

        print(resolve_base_model(args.source, args.cache_dir))
        return 0
    if args.spec_env:
        text = os.environ.get(args.spec_env)
        if not text:
            parser.error(f"--spec-env: the environment variable {args.spec_env} is not set")
        spec = JobSpec.model_validate_json(text)
    else:
        spec = JobSpec.model_validate_json(args.spec.read_text())
    # Several processes for this job: become torchrun (does not return), or be one of its ranks.
    distributed.relaunch_under_torchrun(spec, list(sys.argv[1:] if argv is None else argv))
    stop = StopRequest(spec.stop_grace_seconds)
    stop.install()  # before the heavy imports: a cancel during start-up exits at once
    reporter: Reporter
    if not distributed.is_main():
        reporter = SilentReporter()
    elif spec.report_url and not args.events:
        reporter = HttpReporter(spec.report_url, spec.job_id, on_stop=stop.ask)
    elif args.events or args.spec:
        reporter = JsonlReporter(args.events or args.spec.with_suffix(".events.jsonl"))
    else:
        parser.error("a spec without report_url from --spec-env needs --events")
    from trainer.run import run

    try:
        # The job's experiment trackers (W&B, MLflow), closed with the run's outcome; like every
        # report they are rank 0's, or a run of N processes would log N runs.
        trackers = Tracking(spec, reporter) if distributed.is_main() else contextlib.nullcontext(reporter)
        with trackers as tracked:
            summary = run(spec, tracked, stop)
    except Stopped as exc:
        print(f"trainer: {exc}", file=sys.stderr)
        return STOPPED_EXIT_CODE
    if distributed.is_main():
        json.dump(summary, sys.stdout)
        sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
