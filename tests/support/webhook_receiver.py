"""A webhook receiver for tests, run as its own process: records every request (headers and the
exact body) as a JSON line, and answers 500 to the first `--fail-first` requests of each
`webhook-id`, then 200 (so a test sees the sender retry).

    python -m tests.support.webhook_receiver --port P --log FILE [--fail-first N]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from tests.support.moto_server import free_port, stop


def serve(port: int, log: Path, fail_first: int) -> None:
    seen: Counter[str] = Counter()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0)).decode()
            msg_id = self.headers.get("webhook-id") or ""
            seen[msg_id] += 1
            status = 500 if seen[msg_id] <= fail_first else 200
            record = {
                "path": self.path,
                "headers": dict(self.headers.items()),
                "body": body,
                "status": status,
            }
            with open(log, "a") as f:
                f.write(json.dumps(record) + "\n")
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def do_GET(self) -> None:  # readiness
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


@contextmanager
def run_receiver(log: Path, fail_first: int = 0, port: int | None = None) -> Iterator[str]:
    """Yields the receiver's URL (a POST to any path is recorded)."""
    port = port or free_port()
    cmd = [sys.executable, "-m", "tests.support.webhook_receiver", "--port", str(port), "--log", str(log)]
    proc = subprocess.Popen([*cmd, "--fail-first", str(fail_first)])
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.HTTPError:
                assert proc.poll() is None and time.monotonic() < deadline, "the receiver did not start"
                time.sleep(0.1)
        yield url
    finally:
        stop(proc, grace=5)


def received(log: Path) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def wait_for_received(log: Path, count: int, status: int = 200, timeout: float = 60) -> list[dict[str, Any]]:
    """Every recorded request, once `count` of them were answered with `status`."""
    deadline = time.monotonic() + timeout
    while True:
        records = received(log)
        if sum(r["status"] == status for r in records) >= count:
            return records
        assert time.monotonic() < deadline, f"only {len(records)} requests received: {records}"
        time.sleep(0.2)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--fail-first", type=int, default=0)
    args = parser.parse_args()
    serve(args.port, args.log, args.fail_first)
