#!/bin/sh
# Prepares either image's base (both Dockerfile targets run it): a python3 >= 3.11 with venv
# (installed from the distribution only when the base lacks one), a virtual environment in /opt/venv
# (root-owned: the user cannot change the installed code), the non-root user ftapi (uid/gid 10001)
# and the directories it writes.
set -eux
if ! python3 -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3.11 python3.11-venv ca-certificates
    rm -rf /var/lib/apt/lists/*
    ln -sf "$(command -v python3.11)" /usr/local/bin/python3
fi
python3 -m venv /opt/venv
groupadd --system --gid 10001 ftapi
useradd --system --uid 10001 --gid 10001 --home-dir /home/ftapi --create-home --shell /usr/sbin/nologin ftapi
mkdir -p /home/ftapi/.cache/huggingface /var/lib/ftapi/serving/weights /var/lib/ftapi/runs /var/lib/ftapi/models
chown -R 10001:10001 /home/ftapi /var/lib/ftapi
