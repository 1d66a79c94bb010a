"""The dashboard's static files as `ftapi serve` hands them out (the pages are tested in tests/ui)."""

from __future__ import annotations

import httpx
import pytest

from tests.support.server import RunningServer


@pytest.fixture
def http(server: RunningServer) -> httpx.Client:
    return httpx.Client(base_url=server.url)


def test_root_and_ui_redirect_to_the_dashboard(http: httpx.Client) -> None:
    for path in ("/", "/ui"):
        r = http.get(path)
        assert (r.status_code, r.headers["location"]) == (307, "/ui/")


def test_pages_are_served_with_a_same_origin_policy_and_no_key(http: httpx.Client) -> None:
    page = http.get("/ui/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="js/main.js">' in page.text
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "connect-src 'self'" in policy
    module = http.get("/ui/js/main.js")
    assert module.status_code == 200 and "javascript" in module.headers["content-type"]
    assert http.get("/ui/js/main.js", headers={"if-none-match": module.headers["etag"]}).status_code == 304
    licence = http.get("/ui/vendor/uplot/LICENSE")
    assert licence.status_code == 200 and "MIT License" in licence.text


def test_an_unknown_asset_is_a_404_and_v1_still_needs_a_key(http: httpx.Client) -> None:
    assert http.get("/ui/js/nope.js").status_code == 404
    r = http.get("/v1/models")
    assert r.status_code == 401 and r.json()["error"]["type"] == "invalid_request_error"
