"""The `ftapi` command: serve, worker, keys, db, validate, models, estimate, projects, migrate-from-openai."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from api.estimate_cli import estimate_command, projects_list
from api.settings import Settings

app = typer.Typer(
    help="ftapi: a self-hosted fine-tuning service that speaks the OpenAI API.", no_args_is_help=True
)
keys_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
models_app = typer.Typer(help="Base models kept in ftapi's own storage.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(db_app, name="db")
app.add_typer(models_app, name="models")


def _settings(**overrides: Any) -> Settings:
    # Flags given on the command line win over FTAPI_* variables, which win over defaults.
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


async def _bootstrap_key(settings: Settings) -> str | None:
    """With no key configured and none stored, create one for the default project (shown once)."""
    from api.auth import DEFAULT_PROJECT_NAME, count_keys, create_key, ensure_project
    from api.db.session import create_engine, session_factory

    engine = create_engine(settings.resolved_database_url)
    try:
        async with session_factory(engine)() as session:
            await ensure_project(session, DEFAULT_PROJECT_NAME)
            key = None
            if settings.api_key is None and await count_keys(session) == 0:
                key = await create_key(session, DEFAULT_PROJECT_NAME)
            await session.commit()
            return key
    finally:
        await engine.dispose()


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (FTAPI_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (FTAPI_PORT).")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Database and local blobs (FTAPI_DATA_DIR).")] = None,
    engine: Annotated[
        str | None,
        typer.Option(help="Chat engine: transformers (in process) or vllm (FTAPI_ENGINE, FTAPI_VLLM__*)."),
    ] = None,
) -> None:
    """Run the API service."""
    import uvicorn

    from api.app import create_app
    from api.db.migrate import upgrade
    from api.logging import configure_logging

    settings = _settings(host=host, port=port, data_dir=data_dir, engine=engine)
    configure_logging(settings.log_format, settings.log_level)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url)
    if settings.engine == "vllm" and settings.vllm.url is None:
        from serving.vllm_env import default_env_dir, ensure_vllm_env, is_installed

        env_dir = settings.vllm.env_dir or default_env_dir()
        if not is_installed(env_dir):
            typer.echo(f"Installing vLLM into {env_dir} (about 2 minutes and 3.5 GB, once)...", err=True)
        ensure_vllm_env(env_dir)
    key = asyncio.run(_bootstrap_key(settings))
    if key is not None:
        typer.echo(
            f"\nCreated an API key for the default project (shown only once):\n\n    {key}\n\n"
            f"  export OPENAI_BASE_URL=http://{settings.host}:{settings.port}/v1 OPENAI_API_KEY={key}\n",
            err=True,
        )
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )


@app.command()
def worker(
    data_dir: Annotated[Path | None, typer.Option(help="Data directory (FTAPI_DATA_DIR).")] = None,
) -> None:
    """Run the job dispatcher alone (set FTAPI_INTERNAL_URL to an API replica trainers can reach)."""
    from api.db.migrate import upgrade
    from api.dispatch.worker import run_worker
    from api.logging import configure_logging

    settings = _settings(data_dir=data_dir)
    configure_logging(settings.log_format, settings.log_level)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_worker(settings))


@keys_app.command("create")
def keys_create(
    project: Annotated[str, typer.Option(help="Project name (created if missing).")] = "default",
    data_dir: Annotated[Path | None, typer.Option(help="Data directory (FTAPI_DATA_DIR).")] = None,
) -> None:
    """Create an API key; prints the key alone on stdout."""
    from api.auth import create_key
    from api.db.migrate import upgrade
    from api.db.session import create_engine, session_factory

    settings = _settings(data_dir=data_dir)
    upgrade(settings.resolved_database_url)

    async def run() -> str:
        engine = create_engine(settings.resolved_database_url)
        try:
            async with session_factory(engine)() as session:
                key = await create_key(session, project)
                await session.commit()
                return key
        finally:
            await engine.dispose()

    typer.echo(asyncio.run(run()))


@db_app.command("upgrade")
def db_upgrade(data_dir: Annotated[Path | None, typer.Option()] = None) -> None:
    """Apply database migrations (done automatically by `serve`)."""
    from api.db.migrate import upgrade

    upgrade(_settings(data_dir=data_dir).resolved_database_url)


@models_app.command("import")
def models_import(
    folder: Annotated[Path, typer.Argument(help="A local Hugging Face model folder (safetensors weights).")],
    name: Annotated[str, typer.Option(help="The model id jobs and chat will use (owner/name allowed).")],
    mode: Annotated[str | None, typer.Option(help="lora (default) or full fine-tuning.")] = None,
    max_length: Annotated[
        int | None, typer.Option(help="Token limit per example (default: up to 2048).")
    ] = None,
    base_learning_rate: Annotated[
        float | None, typer.Option(help="Times learning_rate_multiplier (default 1e-4 LoRA, 1e-5 full).")
    ] = None,
    batch_size: Annotated[int | None, typer.Option(help="The default batch size (8).")] = None,
    lora_r: Annotated[int | None, typer.Option(help="LoRA rank (16); alpha follows it.")] = None,
) -> None:
    """Upload a model folder into storage (safetensors, configs, tokenizer) and offer it in the catalogue."""
    from pydantic import ValidationError

    from api.model_import import ImportRefused, import_model
    from storage import StorageError

    options = {
        "mode": mode,
        "max_length": max_length,
        "base_learning_rate": base_learning_rate,
        "default_batch_size": batch_size,
        "lora_r": lora_r,
    }
    try:
        imported = asyncio.run(import_model(_settings(), folder, name, options))
    except (ImportRefused, StorageError) as exc:
        typer.echo(f"ftapi models import: {exc}", err=True)
        raise typer.Exit(code=1) from None
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        typer.echo(f"ftapi models import: {problems}", err=True)
        raise typer.Exit(code=1) from None
    entry = imported.entry
    typer.echo(json.dumps(entry.model_dump(), indent=2))
    typer.echo(
        f"Imported {entry.id} ({entry.source}); running servers offer it within "
        "FTAPI_CATALOGUE_REFRESH_SECONDS (30 s).",
        err=True,
    )
    if imported.template.problem is not None:
        typer.echo(
            f"Warning: it can be served but not fine-tuned here: {imported.template.problem}", err=True
        )
    elif imported.template.system_problem is not None:
        typer.echo(f"Note: {imported.template.system_problem}", err=True)


@app.command()
def validate(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="A .jsonl training file.")],
    method: Annotated[
        str | None, typer.Option(help="Expected format: supervised (chat) or dpo (preference).")
    ] = None,
    tokenizer: Annotated[
        str | None, typer.Option(help="tokenizer.json (or a directory holding one) for exact token counts.")
    ] = None,
    max_tokens: Annotated[int | None, typer.Option(help="Flag examples longer than this.")] = None,
    max_problems: Annotated[int, typer.Option(help="How many problems to list.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Validate a training file offline, like the service does. Exit code 1 when it has problems."""
    from trainer.data.parallel import validate_file_parallel
    from trainer.data.validate import load_tokenizer

    fmt = {"supervised": "chat", "dpo": "preference", None: None}.get(method)
    if method is not None and fmt is None:
        raise typer.BadParameter("method must be 'supervised' or 'dpo'", param_hint="--method")
    report = validate_file_parallel(
        file,
        expected_format=fmt,
        tokenizer=load_tokenizer(tokenizer) if tokenizer else None,
        max_tokens=max_tokens,
        max_problems=max_problems,
    )
    if as_json:
        json.dump(report.to_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        typer.echo(report.format_text())
    raise typer.Exit(code=0 if report.ok else 1)


# ftapi estimate, ftapi projects list (api/estimate_cli.py).
projects_app = typer.Typer(
    help="Projects (their ids are what checkpoint permissions take).", no_args_is_help=True
)
app.add_typer(projects_app, name="projects")
app.command("estimate")(estimate_command)
projects_app.command("list")(projects_list)


@app.command("migrate-from-openai")
def migrate_from_openai(
    source_api_key: Annotated[
        str, typer.Option(envvar="OPENAI_API_KEY", help="A key of the source (OPENAI_API_KEY).")
    ],
    model: Annotated[
        str | None,
        typer.Option(help="The base model here for every source job (unless --map says otherwise)."),
    ] = None,
    map_: Annotated[
        list[str] | None,
        typer.Option(
            "--map", help="SOURCE_MODEL_PATTERN=TARGET_MODEL (fnmatch; repeatable; first match wins)."
        ),
    ] = None,
    source_base_url: Annotated[
        str, typer.Option(help="Any OpenAI-compatible API, e.g. another ftapi's /v1.")
    ] = "https://api.openai.com/v1",
    base_url: Annotated[
        str | None, typer.Option(help="This ftapi's API (default: http://FTAPI_HOST:FTAPI_PORT/v1).")
    ] = None,
    api_key: Annotated[
        str | None, typer.Option(envvar="FTAPI_API_KEY", help="A key of the project here (FTAPI_API_KEY).")
    ] = None,
    job: Annotated[list[str] | None, typer.Option(help="Only these source jobs (repeatable).")] = None,
    include_failed: Annotated[
        bool, typer.Option(help="Also copy jobs that failed or were cancelled.")
    ] = False,
    dry_run: Annotated[bool, typer.Option(help="Report what would be created; create nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Recreate another OpenAI-compatible service's fine-tuning jobs here (files, method and
    hyperparameters, suffix, seed, metadata) and report what could not be carried over. Re-running
    creates nothing twice."""
    try:
        import openai
    except ImportError:
        typer.echo("migrate-from-openai needs the openai package: pip install 'ftapi[migrate]'", err=True)
        raise typer.Exit(code=2) from None
    from api.migrate import Migration, Plan, format_text, parse_mapping, summary

    try:
        mapping = parse_mapping(map_ or [])
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--map") from None
    if model is None and not mapping:
        raise typer.BadParameter("give --model (and/or --map)", param_hint="--model")
    settings = _settings()
    if not api_key:
        raise typer.BadParameter(
            "a key of the project here is needed (FTAPI_API_KEY)", param_hint="--api-key"
        )
    target_url = base_url or f"http://{settings.host}:{settings.port}/v1"
    plan = Plan(
        model=model, mapping=mapping, include_failed=include_failed, only=set(job or []), dry_run=dry_run
    )
    source = openai.OpenAI(base_url=source_base_url, api_key=source_api_key)
    target = openai.OpenAI(base_url=target_url, api_key=api_key)
    reports = Migration(source, target, plan, source_base_url).run()
    if as_json:
        json.dump(summary(reports), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        typer.echo(format_text(reports))


if __name__ == "__main__":
    app()
