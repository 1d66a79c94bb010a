"""`ftapi estimate` and `ftapi projects list`: the estimate the API gives (POST
/v1/fine_tuning/jobs/estimate) for a local file and a base model of this deployment's catalogue,
with the throughput history from its database; and the project ids checkpoint permissions take."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from api.settings import Settings


def _settings(data_dir: Path | None) -> Settings:
    return Settings(data_dir=data_dir) if data_dir is not None else Settings()


def estimate_command(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="A .jsonl training file.")],
    model: Annotated[
        str, typer.Option(help="A base model of the catalogue (FTAPI_MODELS_FILE).")
    ] = "tiny-chat",
    method: Annotated[str, typer.Option(help="supervised or dpo.")] = "supervised",
    n_epochs: Annotated[int | None, typer.Option(help="Default: auto.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Default: auto.")] = None,
    learning_rate_multiplier: Annotated[float | None, typer.Option(help="Default: auto.")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Data directory (FTAPI_DATA_DIR).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the estimate as JSON.")] = False,
) -> None:
    """Estimate a job before training: tokens, steps, resolved `auto` values and a duration from the
    throughput this deployment measured for the model ("unknown" without history). Starts nothing."""
    from api.catalogue import BaseModelEntry, Catalogue, load_catalogue
    from api.db.migrate import upgrade
    from api.db.session import create_engine, session_factory
    from api.fine_tuning.estimate import estimate_from_report, measured_throughput
    from api.models.resolver import ModelResolver
    from storage.factory import build_store
    from trainer.data.parallel import validate_file_parallel
    from trainer.data.validate import load_tokenizer

    if method not in ("supervised", "dpo"):
        raise typer.BadParameter("method must be 'supervised' or 'dpo'", param_hint="--method")
    settings = _settings(data_dir)

    async def base_entry() -> BaseModelEntry | None:  # models imported into storage count too
        store = build_store(settings.store_config)
        try:
            return (await load_catalogue(settings.models_file, store)).get(model)
        finally:
            await store.close()

    entry = asyncio.run(base_entry())
    if entry is None:
        raise typer.BadParameter(f"{model} is not a base model of the catalogue", param_hint="--model")
    upgrade(settings.resolved_database_url)

    async def run() -> Any:
        store = build_store(settings.store_config)
        try:
            resolver = ModelResolver(Catalogue([entry]), (settings.data_dir / "models").resolve(), store)
            tokenizer_path = Path(await resolver.base_path(entry)) / "tokenizer.json"
        finally:
            await store.close()
        report = validate_file_parallel(
            file,
            expected_format="preference" if method == "dpo" else "chat",
            tokenizer=load_tokenizer(tokenizer_path) if tokenizer_path.is_file() else None,
            max_problems=1,
        )
        if not report.ok:
            return report
        engine = create_engine(settings.resolved_database_url)
        try:
            async with session_factory(engine)() as session:
                throughput = await measured_throughput(session, entry.id)
        finally:
            await engine.dispose()
        requested: dict[str, Any] = {
            "n_epochs": n_epochs or "auto",
            "batch_size": batch_size or "auto",
            "learning_rate_multiplier": learning_rate_multiplier or "auto",
        }
        return estimate_from_report(
            model=model,
            entry=entry,
            method=method,
            requested=requested,
            report=report,
            throughput=throughput,
        )

    result = asyncio.run(run())
    if not hasattr(result, "total_steps"):  # the file has problems: the validator's report says which
        typer.echo(result.format_text(), err=True)
        raise typer.Exit(code=1)
    if as_json:
        json.dump(result.model_dump(), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    hp = result.hyperparameters
    counted = "counted" if result.tokens_counted else "estimated as bytes / 4"
    typer.echo(
        f"{result.n_examples} examples, {result.tokens_per_epoch} tokens per epoch ({counted})\n"
        f"n_epochs={hp['n_epochs']} batch_size={hp['batch_size']} "
        f"learning_rate_multiplier={hp['learning_rate_multiplier']}"
        + (f" beta={hp['beta']}" if "beta" in hp else "")
        + f"\n{result.steps_per_epoch} steps per epoch, {result.total_steps} steps, "
        f"{result.trained_tokens} trained tokens\n"
        f"estimated duration: {result.estimated_duration} ({result.throughput.source})"
    )


def projects_list(
    data_dir: Annotated[Path | None, typer.Option(help="Data directory (FTAPI_DATA_DIR).")] = None,
) -> None:
    """List projects: id and name (checkpoint permissions take project ids)."""
    from sqlalchemy import select

    from api.db.migrate import upgrade
    from api.db.session import create_engine, session_factory
    from api.db.tables import ProjectRow

    settings = _settings(data_dir)
    upgrade(settings.resolved_database_url)

    async def run() -> list[tuple[str, str]]:
        engine = create_engine(settings.resolved_database_url)
        try:
            async with session_factory(engine)() as session:
                rows = await session.execute(select(ProjectRow.id, ProjectRow.name).order_by(ProjectRow.name))
                return [(r.id, r.name) for r in rows]
        finally:
            await engine.dispose()

    for project_id, name in asyncio.run(run()):
        typer.echo(f"{project_id}\t{name}")
