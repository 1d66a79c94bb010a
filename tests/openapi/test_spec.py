"""openapi/openapi.yaml is generated from the app; this fails when it is stale."""

from pathlib import Path

from api.openapi_dump import render

SPEC = Path(__file__).parents[2] / "openapi" / "openapi.yaml"


def test_openapi_yaml_is_current() -> None:
    assert SPEC.read_text() == render(), "openapi/openapi.yaml is stale: run `make openapi`"


def test_no_route_documents_a_422() -> None:
    assert "'422'" not in render() and '"422"' not in render()
