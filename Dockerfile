# ftapi images. Two targets:
#
#   api      `ftapi serve` (API replicas) and `ftapi worker` with the Kubernetes executor.
#            No torch, no vLLM: run it with FTAPI_ENGINE=vllm against a vLLM service
#            (FTAPI_VLLM__URL) and a catalogue of hub models (FTAPI_MODELS_FILE). The in-process
#            transformers engine (the default engine, and the fallback for full fine-tunes and
#            builtin models such as tiny-chat) imports torch, which this image does not have.
#   trainer  `python -m trainer run` (one fine-tuning job): the training stack, `pip install '.[train]'`
#            with torch pinned in pyproject.toml. It also carries the `ftapi` command and the `docker`
#            SDK, so it serves as the worker image of a single machine (deploy/compose.yaml: trainers
#            as containers of this same image through the engine's socket, or as local subprocesses).
#
#   docker build --target api     -t ftapi-api:dev .       (or: make images)
#   docker build --target trainer -t ftapi-trainer:dev .
#
# Build args:
#   BASE_IMAGE          base of both targets; default the official python:3.11-slim-bookworm. Any
#                       Debian/Ubuntu image with python3 >= 3.11 and its venv module works (python3,
#                       not python; pip may be "externally managed": everything goes into /opt/venv).
#   TRAINER_BASE_IMAGE  base of the trainer; default BASE_IMAGE (`make images` passes both, for
#                       builders that do not expand one global ARG in another). PyPI's Linux torch
#                       wheels carry their own CUDA runtime, so the default base trains on GPUs too
#                       (the host needs the NVIDIA driver and container toolkit). For a CUDA base
#                       image, e.g. nvidia/cuda:12.4.1-runtime-ubuntu22.04, python3.11 is installed
#                       from the distribution when the base has no python3 >= 3.11.
#
# Both targets run as the non-root user `ftapi` (uid/gid 10001) with HOME=/home/ftapi; the caches
# (HF_HOME, XDG_CACHE_HOME) and FTAPI_DATA_DIR=/var/lib/ftapi belong to that user. No secret is baked
# in: credentials come from the environment at run time (deploy/.env.example, a Kubernetes Secret).

ARG BASE_IMAGE=python:3.11-slim-bookworm
ARG TRAINER_BASE_IMAGE=${BASE_IMAGE}


# ---------------------------------------------------------------------------------------------------
# api: the service and the worker (no ML stack)
# ---------------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS api-base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    HOME=/home/ftapi \
    XDG_CACHE_HOME=/home/ftapi/.cache \
    HF_HOME=/home/ftapi/.cache/huggingface \
    FTAPI_DATA_DIR=/var/lib/ftapi \
    FTAPI_HOST=0.0.0.0 \
    FTAPI_PORT=8000 \
    FTAPI_LOG_FORMAT=json

COPY deploy/image/ /opt/ftapi-image/
RUN /opt/ftapi-image/prepare-base.sh

WORKDIR /opt/ftapi

# Dependencies first, from pyproject.toml alone, so a code (or README) change does not reinstall them: the
# service's own plus the `kubernetes` extra (the worker's Kubernetes executor).
COPY pyproject.toml ./
RUN python3 /opt/ftapi-image/requirements.py kubernetes > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

FROM api-base AS api

COPY api ./api
COPY storage ./storage
COPY serving ./serving
COPY trainer ./trainer
COPY README.md ./
RUN pip install '.[kubernetes]' && rm -rf build ./*.egg-info

USER 10001:10001
WORKDIR /home/ftapi
EXPOSE 8000
# `ftapi worker` for the worker (Kubernetes executor).
CMD ["ftapi", "serve"]


# ---------------------------------------------------------------------------------------------------
# trainer: the training container (and the worker of a single-machine deployment)
# ---------------------------------------------------------------------------------------------------
FROM ${TRAINER_BASE_IMAGE} AS trainer-base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    HOME=/home/ftapi \
    XDG_CACHE_HOME=/home/ftapi/.cache \
    HF_HOME=/home/ftapi/.cache/huggingface \
    FTAPI_DATA_DIR=/var/lib/ftapi \
    FTAPI_LOG_FORMAT=json

COPY deploy/image/ /opt/ftapi-image/
RUN /opt/ftapi-image/prepare-base.sh

WORKDIR /opt/ftapi

# The service's dependencies plus the `train` extra (torch==2.13.0 and the TRL stack) and the `docker`
# extra (the compose worker starts trainer containers with it), from pyproject.toml alone: the
# multi-GB layer is rebuilt only when the pins change.
COPY pyproject.toml ./
RUN python3 /opt/ftapi-image/requirements.py train docker > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

FROM trainer-base AS trainer

COPY api ./api
COPY storage ./storage
COPY serving ./serving
COPY trainer ./trainer
COPY README.md ./
RUN pip install '.[train,docker]' && rm -rf build ./*.egg-info

USER 10001:10001
WORKDIR /home/ftapi
# Executors give the whole command: `python -m trainer run --spec FILE` (the compose worker: `ftapi worker`).
CMD ["python", "-m", "trainer", "--help"]
