"""The deployment files (Dockerfile, deploy/compose.yaml, deploy/kubernetes/), checked statically.

No image is built, no container started and no cluster reached here: the Kubernetes base is rendered
with `kubectl kustomize` and every object validated against the schema of the `kubernetes` Python
client (tests/support/kubernetes_schema.py); the compose file is interpolated as Compose does and
validated against the official compose-spec JSON schema (vendored in tests/deploy/schemas/, see the
README there); the Dockerfile is parsed for its targets, users and build arguments. The settings the
files set are loaded into `api.settings.Settings`, so a misspelled FTAPI_* name fails here instead of
being ignored by the service.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import types
import typing
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic import BaseModel

from api.settings import Settings
from tests.support.kubernetes_schema import ManifestError, validate_manifest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUSTOMIZE_DIR = DEPLOY / "kubernetes"
COMPOSE_FILE = DEPLOY / "compose.yaml"
ENV_EXAMPLE = DEPLOY / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE_SCHEMA = Path(__file__).parent / "schemas" / "compose-spec.json"
EXECUTOR_SOURCE = ROOT / "api" / "dispatch" / "kubernetes.py"

SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|API_KEY|ACCESS_KEY|PRIVATE_KEY|CREDENTIAL", re.I)
WEIGHTS_PATH = "/var/lib/ftapi/serving/weights"  # FTAPI_DATA_DIR (the images' /var/lib/ftapi)/serving/weights


# --- shared helpers -----------------------------------------------------------------------------


def setting_exists(variable: str) -> bool:
    """Whether `FTAPI_A__B` names a field of Settings (nested models through `__`)."""
    model: type[BaseModel] = Settings
    parts = variable.removeprefix("FTAPI_").lower().split("__")
    for index, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return False
        if index == len(parts) - 1:
            return True
        nested = [t for t in _types_in(field.annotation) if isinstance(t, type) and issubclass(t, BaseModel)]
        if not nested:
            return False
        model = nested[0]
    return False


def _types_in(annotation: Any) -> list[Any]:
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return [t for arg in typing.get_args(annotation) for t in _types_in(arg)]
    return [annotation]


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings as a process with exactly these FTAPI_* variables would build them."""
    for name in [n for n in os.environ if n.startswith("FTAPI_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        if name.startswith("FTAPI_"):
            monkeypatch.setenv(name, value)
    return Settings()


def ftapi_variables(text: str) -> set[str]:
    return set(re.findall(r"\bFTAPI_[A-Z0-9_]*[A-Z0-9]", text))


# --- Kubernetes ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: `kubectl kustomize deploy/kubernetes` renders the base")
    result = subprocess.run(
        [kubectl, "kustomize", str(KUSTOMIZE_DIR)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name} is not in the rendered base"
    return matches[0]


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def config_data(objects: list[dict[str, Any]]) -> dict[str, str]:
    return find(objects, "ConfigMap", "ftapi-config")["data"]


def test_every_rendered_object_matches_the_kubernetes_schema(rendered: list[dict[str, Any]]) -> None:
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in rendered)
    for obj in rendered:
        validate_manifest(obj)
    assert {k for k, _ in kinds} >= {
        "Namespace",
        "ConfigMap",
        "Deployment",
        "Service",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "PersistentVolumeClaim",
    }
    namespace = find(rendered, "Namespace", "ftapi")["metadata"]["name"]
    assert all(o["metadata"].get("namespace") == namespace for o in rendered if o["kind"] != "Namespace")


def test_the_schema_check_catches_a_misspelled_field(rendered: list[dict[str, Any]]) -> None:
    broken = json.loads(json.dumps(find(rendered, "Deployment", "ftapi-api")))
    container(broken)["readinesProbe"] = container(broken).pop("readinessProbe")
    with pytest.raises(ManifestError, match="readinesProbe"):
        validate_manifest(broken)


def test_no_secret_values_in_the_base(rendered: list[dict[str, Any]]) -> None:
    assert [o["metadata"]["name"] for o in rendered if o["kind"] == "Secret"] == []
    kustomization = yaml.safe_load((KUSTOMIZE_DIR / "kustomization.yaml").read_text())
    assert "secret.example.yaml" not in kustomization.get("resources", [])
    assert "secretGenerator" not in kustomization
    for key in config_data(rendered):
        assert not SECRET_NAME.search(key) or key.endswith("ENV_FROM_SECRETS"), key
    # The example validates too, and holds placeholders only.
    examples = [d for d in yaml.safe_load_all((KUSTOMIZE_DIR / "secret.example.yaml").read_text()) if d]
    for secret in examples:
        validate_manifest(secret)
        for key, value in secret["stringData"].items():
            assert value == "" or "CHANGE-ME" in value, f"{key} in secret.example.yaml looks real"


def test_api_probes_point_at_health_and_ready(rendered: list[dict[str, Any]]) -> None:
    from api.ops import router

    routes = {getattr(r, "path", None) for r in router.routes}
    assert {"/health", "/ready"} <= routes
    api = find(rendered, "Deployment", "ftapi-api")
    assert api["spec"]["replicas"] == 2
    c = container(api)
    assert c["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/health"
    port = {p["name"]: p["containerPort"] for p in c["ports"]}[c["readinessProbe"]["httpGet"]["port"]]
    env = {e["name"]: e["value"] for e in c["env"]}
    assert port == int(env["FTAPI_PORT"]) and env["FTAPI_HOST"] == "0.0.0.0"
    service = find(rendered, "Service", "ftapi-api")
    assert service["spec"]["selector"].items() <= api["spec"]["template"]["metadata"]["labels"].items()
    assert c["command"] == ["ftapi", "serve"]
    assert api["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


def executor_permissions() -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) for each API call the Kubernetes executor makes."""
    verbs = {"create": "create", "read": "get", "list": "list", "delete": "delete", "patch": "patch"}
    verbs |= {"replace": "update", "watch": "watch"}
    groups = {"job": ("batch", "jobs"), "secret": ("", "secrets"), "pod": ("", "pods")}
    # What the README promises the worker may do (watch too, for a watch-based executor), then what
    # the executor's code calls today.
    needed = {("batch", "jobs", v) for v in ("create", "get", "list", "watch", "delete")}
    needed |= {("", "secrets", v) for v in ("create", "get", "list", "watch", "delete")}
    needed |= {("", "pods", v) for v in ("get", "list", "delete")}
    if EXECUTOR_SOURCE.exists():
        calls = re.findall(
            r"\b(create|read|list|delete|patch|replace)_namespaced_(job|secret|pod)\b",
            EXECUTOR_SOURCE.read_text(),
        )
        assert calls, "the executor makes no namespaced calls: has it changed its client?"
        needed |= {(*groups[kind], verbs[verb]) for verb, kind in calls}
    return needed


def test_worker_role_grants_what_the_executor_needs(rendered: list[dict[str, Any]]) -> None:
    worker = find(rendered, "Deployment", "ftapi-worker")
    account = worker["spec"]["template"]["spec"]["serviceAccountName"]
    find(rendered, "ServiceAccount", account)
    bindings = [
        b
        for b in rendered
        if b["kind"] == "RoleBinding"
        and any(s["kind"] == "ServiceAccount" and s["name"] == account for s in b["subjects"])
    ]
    assert bindings, f"no RoleBinding for the ServiceAccount {account}"
    granted = set()
    for binding in bindings:
        assert binding["roleRef"]["kind"] == "Role"
        role = find(rendered, "Role", binding["roleRef"]["name"])
        for rule in role["rules"]:
            granted |= {
                (g, r, v) for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]
            }
    missing = executor_permissions() - granted
    assert not missing, f"the worker's Role lacks {sorted(missing)}"
    assert not any("*" in grant for grant in granted), "no wildcards"
    # blockOwnerDeletion on the Secret's owner reference needs update on jobs/finalizers where the
    # OwnerReferencesPermissionEnforcement admission plugin is on.
    if "blockOwnerDeletion" in (EXECUTOR_SOURCE.read_text() if EXECUTOR_SOURCE.exists() else ""):
        assert ("batch", "jobs/finalizers", "update") in granted


def test_worker_and_api_settings_load(
    rendered: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = config_data(rendered)
    namespace = find(rendered, "Namespace", "ftapi")["metadata"]["name"]
    worker = container(find(rendered, "Deployment", "ftapi-worker"))
    assert worker["command"] == ["ftapi", "worker"]
    worker_env = data | {e["name"]: e["value"] for e in worker["env"]}
    settings = settings_from(worker_env, monkeypatch)
    assert settings.executor == "kubernetes"
    kube = settings.kubernetes
    assert kube is not None
    assert kube.namespace == namespace
    examples = {
        d["metadata"]["name"] for d in yaml.safe_load_all((KUSTOMIZE_DIR / "secret.example.yaml").read_text())
    }
    assert set(kube.env_from_secrets) <= examples
    assert settings.max_concurrent_jobs >= 1 and settings.storage_backend == "s3"
    assert settings.internal_url == "http://ftapi-api:8000"
    api_env = data | {
        e["name"]: e["value"] for e in container(find(rendered, "Deployment", "ftapi-api"))["env"]
    }
    api = settings_from(api_env, monkeypatch)
    assert api.max_concurrent_jobs == 0 and api.engine == "vllm"
    assert api.vllm.url == "http://ftapi-vllm:8000"
    find(rendered, "Service", "ftapi-vllm")


def test_catalogue_configmap_serves_the_vllm_base(rendered: list[dict[str, Any]], tmp_path: Path) -> None:
    from api.catalogue import Catalogue

    models = find(rendered, "ConfigMap", "ftapi-models")["data"]["models.yaml"]
    (tmp_path / "models.yaml").write_text(models)
    catalogue = Catalogue.load(tmp_path / "models.yaml")
    data = config_data(rendered)
    entry = catalogue.get(data["FTAPI_VLLM__BASE_MODEL"])
    assert entry is not None and entry.mode == "lora"
    assert entry.lora.r <= int(data["FTAPI_VLLM__MAX_LORA_RANK"])
    assert data["FTAPI_MODELS_FILE"] == "/etc/ftapi/models.yaml"


def test_vllm_loads_adapters_from_the_shared_volume(rendered: list[dict[str, Any]]) -> None:
    vllm = find(rendered, "Deployment", "ftapi-vllm")
    c = container(vllm)
    assert c["image"].startswith("vllm/vllm-openai:")
    assert "--enable-lora" in c["args"]
    assert (
        c["args"][c["args"].index("--max-lora-rank") + 1]
        == config_data(rendered)["FTAPI_VLLM__MAX_LORA_RANK"]
    )
    env = {e["name"]: e for e in c["env"]}
    assert env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"]["value"] == "True"
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert c["readinessProbe"]["httpGet"]["path"] == "/health"

    def weights_claim(deployment: dict[str, Any]) -> tuple[str, str]:
        spec = deployment["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        for mount in spec["containers"][0]["volumeMounts"]:
            claim = volumes[mount["name"]].get("persistentVolumeClaim")
            if claim:
                return claim["claimName"], mount["mountPath"]
        raise AssertionError("no PersistentVolumeClaim mounted")

    api_claim = weights_claim(find(rendered, "Deployment", "ftapi-api"))
    assert weights_claim(vllm) == api_claim == ("ftapi-weights", WEIGHTS_PATH)
    pvc = find(rendered, "PersistentVolumeClaim", "ftapi-weights")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]


# --- compose ------------------------------------------------------------------------------------

_VARIABLE = re.compile(r"\$(?:\$|\{(?P<braced>[^}]*)\}|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))")


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's interpolation: $VAR, ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error},
    ${VAR?error}, ${VAR:+other}, and $$ for a literal $."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        if match.group("plain"):
            return env.get(match.group("plain"), "")
        name, op, arg = re.fullmatch(
            r"([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])(.*))?", match.group("braced")
        ).groups()
        current = env.get(name)
        unset_or_empty = current is None or (current == "" and op and op.startswith(":"))
        if op in ("-", ":-"):
            return arg if unset_or_empty else current  # type: ignore[return-value]
        if op in ("?", ":?"):
            if unset_or_empty:
                raise ValueError(f"required variable {name}: {arg}")
            return current  # type: ignore[return-value]
        if op in ("+", ":+"):
            return "" if unset_or_empty else arg
        return current or ""

    return _VARIABLE.sub(substitute, value)


def env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return interpolate(yaml.safe_load(COMPOSE_FILE.read_text()), env_example())


def dockerfile_stages() -> dict[str, tuple[str, list[tuple[str, str]]]]:
    """name -> (FROM image, [(INSTRUCTION, arguments)]) with continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stages: dict[str, tuple[str, list[tuple[str, str]]]] = {}
    current: list[tuple[str, str]] | None = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, args = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            match = re.fullmatch(r"(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?", args.strip(), re.I)
            assert match, line
            current = []
            stages[match.group(2) or f"stage{len(stages)}"] = (match.group(1), current)
        elif current is not None:
            current.append((instruction, args.strip()))
        else:
            stages.setdefault("<global>", ("", []))[1].append((instruction, args.strip()))
    return stages


def test_compose_file_matches_the_compose_spec(compose: dict[str, Any]) -> None:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)
    broken = json.loads(json.dumps(compose))
    broken["services"]["api"]["healthcheck"]["intervall"] = "10s"
    assert not validator.is_valid(broken), "the schema must reject an unknown key"


def test_compose_secrets_come_from_the_env_file() -> None:
    raw = COMPOSE_FILE.read_text()
    documented = env_example()
    referenced = {
        re.match(r"[A-Za-z_][A-Za-z0-9_]*", m.group("braced") or m.group("plain")).group(0)  # type: ignore[union-attr]
        for m in _VARIABLE.finditer(raw)
        if m.group(0) != "$$"
    }
    assert referenced <= set(documented), (
        f"undocumented in deploy/.env.example: {referenced - set(documented)}"
    )
    for service, spec in yaml.safe_load(raw)["services"].items():
        for key, value in (spec.get("environment") or {}).items():
            if SECRET_NAME.search(key):
                assert "${" in str(value), f"{service}: {key} is written inline; take it from deploy/.env"
        assert "env_file" not in spec or spec["env_file"] != ".env.example"
    with pytest.raises(ValueError, match="POSTGRES_PASSWORD"):
        interpolate(yaml.safe_load(raw), {})
    for name, value in documented.items():
        if SECRET_NAME.search(name) and not name.endswith("_USER"):
            assert value == "" or value.startswith("change-me"), f"{name} in .env.example looks real"


def test_compose_services_fit_the_dockerfile_and_each_other(compose: dict[str, Any]) -> None:
    stages = dockerfile_stages()
    services = compose["services"]
    for name, spec in services.items():
        build = spec.get("build")
        if build:
            assert (
                COMPOSE_FILE.parent / build["context"] / build.get("dockerfile", "Dockerfile")
            ).resolve() == DOCKERFILE
            assert build["target"] in stages, f"{name}: no stage {build['target']} in the Dockerfile"
        for volume in spec.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume["source"]
            if not source.startswith((".", "/")):
                assert source in (compose.get("volumes") or {}), f"{name}: volume {source} is not declared"
        for config in spec.get("configs", []):
            assert config["source"] in compose["configs"]
        for dependency in spec.get("depends_on", {}):
            assert dependency in services, f"{name} depends on the unknown service {dependency}"
    assert services["api"]["build"]["target"] == "api" and services["api"]["image"] == "ftapi-api:dev"
    assert (
        services["worker"]["build"]["target"] == "trainer"
        and services["worker"]["image"] == "ftapi-trainer:dev"
    )
    assert services["worker"]["command"] == ["ftapi", "worker"]
    assert services["postgres"]["image"] == "postgres:15" and "healthcheck" in services["postgres"]
    for name in ("api", "vllm"):
        assert "/health" in " ".join(services[name]["healthcheck"]["test"]), name


def test_compose_vllm_shares_the_weights_volume(compose: dict[str, Any]) -> None:
    services = compose["services"]
    vllm = services["vllm"]
    assert vllm["image"].startswith("vllm/vllm-openai:") and vllm["profiles"] == ["gpu"]
    assert "--enable-lora" in vllm["command"]
    assert vllm["environment"]["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    devices = vllm["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert f"weights:{WEIGHTS_PATH}" in services["api"]["volumes"]
    assert f"weights:{WEIGHTS_PATH}:ro" in vllm["volumes"]
    rank = vllm["command"][vllm["command"].index("--max-lora-rank") + 1]
    assert services["api"]["environment"]["FTAPI_VLLM__MAX_LORA_RANK"] == rank


def test_compose_settings_load(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from api.catalogue import Catalogue

    services = compose["services"]
    api = settings_from(services["api"]["environment"], monkeypatch)
    assert api.engine == "vllm" and api.vllm.url == "http://vllm:8000" and api.max_concurrent_jobs == 0
    assert api.storage_backend == "s3" and api.s3 is not None and api.s3.endpoint_url == "http://minio:9000"
    assert api.resolved_database_url.startswith("postgresql://ftapi:")
    worker = settings_from(services["worker"]["environment"], monkeypatch)
    assert worker.internal_url == "http://api:8000" and worker.max_concurrent_jobs >= 1
    (tmp_path / "models.yaml").write_text(compose["configs"]["models"]["content"])
    assert Catalogue.load(tmp_path / "models.yaml").get(api.vllm.base_model or "") is not None


def test_compose_config_with_the_compose_cli() -> None:
    """The real parser, where the compose plugin is installed (not on this project's machines)."""
    docker = shutil.which("docker")
    probe = (
        subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30) if docker else None
    )
    if probe is None or probe.returncode != 0:
        pytest.skip("`docker compose` is not installed; the compose-spec schema check above stands in for it")
    result = subprocess.run(
        [
            docker,
            "compose",
            "-f",
            str(COMPOSE_FILE),
            "--env-file",
            str(ENV_EXAMPLE),
            "--profile",
            "gpu",
            "config",
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


# --- Dockerfile, Makefile, settings -------------------------------------------------------------


def test_dockerfile_targets_run_as_a_non_root_user() -> None:
    stages = dockerfile_stages()
    assert {"api", "trainer"} <= set(stages)
    global_args = dict(a.partition("=")[::2] for i, a in stages["<global>"][1] if i == "ARG")
    assert global_args["BASE_IMAGE"] == "python:3.11-slim-bookworm"
    assert global_args["TRAINER_BASE_IMAGE"] == "${BASE_IMAGE}"

    def chain(name: str) -> list[str]:
        image, _ = stages[name]
        return ([*chain(image)] if image in stages else [image]) + [name]

    assert chain("api")[0] == "${BASE_IMAGE}" and chain("trainer")[0] == "${TRAINER_BASE_IMAGE}"
    for target in ("api", "trainer"):
        instructions = [i for stage in chain(target)[1:] for i in stages[stage][1]]
        users = [args for instruction, args in instructions if instruction == "USER"]
        assert users, f"{target}: no USER"
        assert users[-1].split(":")[0] not in ("root", "0"), f"{target} runs as {users[-1]}"
        env = " ".join(args for instruction, args in instructions if instruction == "ENV")
        assert "HF_HOME=" in env and "VIRTUAL_ENV=/opt/venv" in env
    assert "pip install '.[train,docker]'" in DOCKERFILE.read_text()


def test_dockerfile_bakes_in_no_secret() -> None:
    for stage, (_, instructions) in dockerfile_stages().items():
        for instruction, args in instructions:
            if instruction not in ("ARG", "ENV"):
                continue
            pairs = re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=(\"[^\"]*\"|'[^']*'|\S*)", args)
            if not pairs and instruction == "ENV":  # the legacy `ENV NAME value` form
                name, _, value = args.partition(" ")
                pairs = [(name, value)]
            for name, value in pairs:
                assert not (SECRET_NAME.search(name) and value.strip("\"'")), f"{stage}: {instruction} {name}"
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", "data", ".git", ".env", ".pytest_cache"} <= set(ignored)


def test_make_images_builds_both_targets() -> None:
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")

    def dry_run(*args: str) -> str:
        return subprocess.run(
            [make, "-n", "-C", str(ROOT), "images", *args],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout

    plain = dry_run()
    assert "--target api -t ftapi-api:dev" in plain and "--target trainer -t ftapi-trainer:dev" in plain
    assert plain.count("--network host") == 2 and "--build-arg" not in plain
    based = dry_run("BASE_IMAGE=debian-py:1")
    assert based.count("--build-arg BASE_IMAGE=debian-py:1") == 2
    assert "--build-arg TRAINER_BASE_IMAGE=debian-py:1" in based
    cuda = dry_run("BASE_IMAGE=debian-py:1", "TRAINER_BASE_IMAGE=cuda:2")
    assert "--build-arg TRAINER_BASE_IMAGE=cuda:2" in cuda


def test_every_ftapi_variable_in_the_deploy_files_is_a_setting() -> None:
    files = [p for p in DEPLOY.rglob("*") if p.is_file()] + [DOCKERFILE]
    found = {(name, str(p.relative_to(ROOT))) for p in files for name in ftapi_variables(p.read_text())}
    assert len(found) > 20
    unknown = sorted((name, where) for name, where in found if not setting_exists(name))
    assert not unknown, f"not ftapi settings (Settings ignores unknown FTAPI_* variables): {unknown}"


@pytest.mark.parametrize(
    ("variable", "exists"),
    [
        ("FTAPI_S3__BUCKET", True),
        ("FTAPI_VLLM__URL", True),
        ("FTAPI_ENGINE", True),
        ("FTAPI_S3__BUKET", False),
        ("FTAPI_VLLM", True),
        ("FTAPI_ENGINE__X", False),
        ("FTAPI_NOPE", False),
    ],
)
def test_setting_lookup(variable: str, exists: bool) -> None:
    assert setting_exists(variable) is exists
