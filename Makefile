# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint openapi bench clean images screenshots

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Re-install only when the project's metadata changed: fast when the venv is current.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,train]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/ftapi serve  # 127.0.0.1:8000 unless FTAPI_HOST / FTAPI_PORT say otherwise

test: lint
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check api storage trainer serving tests bench
	$(BIN)/ruff format --check api storage trainer serving tests bench
	$(BIN)/mypy --strict --ignore-missing-imports api storage serving trainer/data

openapi: $(STAMP)
	$(BIN)/python -m api.openapi_dump openapi/openapi.yaml

# The README's dashboard screenshots, taken in Debian's chromium against a fresh `ftapi serve`.
screenshots: $(STAMP)
	$(BIN)/python -m tests.ui.screenshots docs/screenshots

# ftapi-api:dev and ftapi-trainer:dev from the Dockerfile. BASE_IMAGE=... (and TRAINER_BASE_IMAGE=...,
# default BASE_IMAGE) replace the official python:3.11-slim-bookworm base.
images:
	docker build --network host --target api -t ftapi-api:dev \
		$(if $(BASE_IMAGE),--build-arg BASE_IMAGE=$(BASE_IMAGE)) .
	docker build --network host --target trainer -t ftapi-trainer:dev \
		$(if $(BASE_IMAGE),--build-arg BASE_IMAGE=$(BASE_IMAGE)) \
		$(if $(or $(TRAINER_BASE_IMAGE),$(BASE_IMAGE)),--build-arg TRAINER_BASE_IMAGE=$(or $(TRAINER_BASE_IMAGE),$(BASE_IMAGE))) .

clean:
	rm -rf $(VENV) .pytest_cache
