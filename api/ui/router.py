"""Serves the dashboard's static files under /ui (same origin as /v1, so no CORS) and sends / there.

The pages are plain ES modules shipped in the package (api/ui/static): no build step, no CDN. They
hold no server state and call only /v1 with the user's key, so this module only hands out files.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import RedirectResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC_DIR = Path(__file__).parent / "static"
PREFIX = "/ui"

# The pages load only their own files and talk only to this origin; uPlot sets inline styles.
_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    # Cheap revalidation (ETag) instead of stale modules after an upgrade.
    "cache-control": "no-cache",
}

router = APIRouter(include_in_schema=False)


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse(PREFIX + "/", status_code=307)


@router.get(PREFIX)
async def ui_without_slash() -> RedirectResponse:
    return RedirectResponse(PREFIX + "/", status_code=307)


class _DashboardFiles(StaticFiles):
    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(_HEADERS)
        return response


def install_ui(app: FastAPI) -> None:
    app.include_router(router)
    app.mount(PREFIX, _DashboardFiles(directory=STATIC_DIR, html=True), name="ui")
