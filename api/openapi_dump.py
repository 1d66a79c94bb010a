"""Write the service's OpenAPI document: `python -m api.openapi_dump openapi/openapi.yaml`."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from api.app import create_app
from api.settings import Settings


def render() -> str:
    app = create_app(Settings(data_dir=Path("unused")))
    return str(yaml.safe_dump(app.openapi(), sort_keys=False, allow_unicode=True, width=100))


def main(argv: list[str]) -> None:
    text = render()
    if len(argv) > 1:
        Path(argv[1]).write_text(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main(sys.argv)
