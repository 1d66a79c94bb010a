"""Reads what W&B wrote for an offline run: the records of its `run-<id>.wandb` file.

The file is a LevelDB-style log (a 7-byte ":W&B" header, then 32 KiB blocks of records, each with a
7-byte header: CRC, length, kind; a record may span blocks), each record a protobuf `Record` of
W&B's own schema, which the installed `wandb` package ships. No upload, no server.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_BLOCK = 32768
_HEADER = 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def _chunks(data: bytes) -> Iterator[bytes]:
    assert data[:4] == b":W&B", "not a W&B run file"
    pos, pending = _HEADER, b""
    while pos + _HEADER <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _HEADER:  # a block's tail too short for a header is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + _HEADER])
        if kind == 0 and length == 0:
            pos += left
            continue
        chunk = data[pos + _HEADER : pos + _HEADER + length]
        pos += _HEADER + length
        if kind == _FULL:
            yield chunk
        elif kind == _FIRST:
            pending = chunk
        elif kind == _MIDDLE:
            pending += chunk
        elif kind == _LAST:
            yield pending + chunk


def _value(item: Any) -> Any:
    return json.loads(item.value_json)


def _key(item: Any) -> str:
    return "/".join(item.nested_key) if item.nested_key else item.key


@dataclass
class OfflineRun:
    run_id: str
    project: str
    tags: list[str]
    config: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)  # one row per logged step (with _step)
    summary: dict[str, Any] = field(default_factory=dict)
    exit_code: int | None = None


def read_offline_run(run_file: Path) -> OfflineRun:
    from wandb.proto import wandb_internal_pb2

    run: OfflineRun | None = None
    config: dict[str, Any] = {}
    history: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    exit_code = None
    for chunk in _chunks(run_file.read_bytes()):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(chunk)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            run = OfflineRun(r.run_id, r.project, list(r.tags), {})
            config |= {_key(i): _value(i) for i in r.config.update}
        elif kind == "config":
            config |= {_key(i): _value(i) for i in record.config.update}
        elif kind == "history":
            history.append({_key(i): _value(i) for i in record.history.item})
        elif kind == "summary":
            summary |= {_key(i): _value(i) for i in record.summary.update}
        elif kind == "exit":
            exit_code = record.exit.exit_code
    assert run is not None, f"no run record in {run_file}"
    run.config = {k: v.get("value", v) if isinstance(v, dict) else v for k, v in config.items()}
    run.history, run.summary, run.exit_code = history, summary, exit_code
    return run
