"""Prints the requirements of pyproject.toml (the project's own plus the extras named as arguments),
so an image installs its dependencies in a layer that only a change of pins rebuilds."""

import sys
import tomllib

with open("pyproject.toml", "rb") as f:
    project = tomllib.load(f)["project"]
extras = project["optional-dependencies"]
print("\n".join(project["dependencies"] + [req for name in sys.argv[1:] for req in extras[name]]))
