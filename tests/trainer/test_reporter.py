"""HttpReporter against a real HTTP server: a trainer outlives an API restart, and stops when the API
refuses its reports."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from trainer.reporter import HttpReporter, ReportRejected


class Api:
    """A stand-in API on a fixed port, which can be started late (a restart) and answer any status."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.status = 200
        self.body = b'{"error": {"message": "no"}}'  # what it answers, whatever the status
        self.received: list[tuple[str, dict[str, Any], str]] = []
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                api.received.append((self.path, body, self.headers["Authorization"]))
                self.send_response(api.status)
                self.end_headers()
                self.wfile.write(api.body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def api() -> Iterator[Api]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    api = Api(port)
    yield api
    api.stop()


def test_a_report_waits_for_an_api_that_restarts(api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    reporter = HttpReporter(f"http://127.0.0.1:{api.port}", "ftjob-1", token="tok", retry_seconds=60)
    starter = threading.Timer(2.0, api.start)  # down for 2 s: beyond a few quick retries
    starter.start()
    began = time.monotonic()
    reporter.checkpoint(10, "jobs/p/ftjob-1/checkpoints/step-10/", {"train_loss": 1.0})
    assert time.monotonic() - began >= 2.0
    assert api.received == [
        (
            "/internal/v1/fine_tuning/jobs/ftjob-1/checkpoints",
            {
                "step": 10,
                "storage_prefix": "jobs/p/ftjob-1/checkpoints/step-10/",
                "metrics": {"train_loss": 1.0},
            },
            "Bearer tok",
        )
    ]
    err = capsys.readouterr().err
    assert "the API does not answer" in err and "retrying for up to 60 s" in err
    assert "the API answers again" in err


def test_a_refused_report_stops_at_once(api: Api) -> None:
    api.status = 409
    api.start()
    reporter = HttpReporter(f"http://127.0.0.1:{api.port}", "ftjob-1", token="tok", retry_seconds=60)
    with pytest.raises(ReportRejected, match="409"):
        reporter.emit("message", "hello")
    assert len(api.received) == 1


def test_an_api_that_stays_down_ends_the_wait(api: Api) -> None:
    reporter = HttpReporter(f"http://127.0.0.1:{api.port}", "ftjob-1", token="tok", retry_seconds=1.5)
    with pytest.raises(OSError):
        reporter.emit("message", "hello")


def test_server_errors_are_retried(api: Api) -> None:
    api.status = 503
    api.start()
    reporter = HttpReporter(f"http://127.0.0.1:{api.port}", "ftjob-1", token="tok", retry_seconds=60)
    threading.Timer(1.0, lambda: setattr(api, "status", 200)).start()
    reporter.emit("message", "hello")
    assert len(api.received) >= 2


def test_an_orphaned_local_trainer_does_not_wait(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its worker died (the trainer was re-parented): nobody will read the report, so no 10-minute wait."""
    reporter = HttpReporter(f"http://127.0.0.1:{api.port}", "ftjob-1", token="tok", retry_seconds=600)
    monkeypatch.setattr("os.getppid", lambda: 1)
    began = time.monotonic()
    with pytest.raises(OSError):
        reporter.emit("message", "hello")
    assert time.monotonic() - began < 60  # not the 600 s a living parent's trainer would wait


@pytest.mark.parametrize(
    ("body", "stops"),
    [
        (b'{"stop": true}', True),  # the job was paused (or resumed) while this step ran
        (b'{"stop": false}', False),
        (b"", False),  # an API from before answers were sent: 204, no body
        (b'{"error": {"message": "no"}}', False),
        (b"not json", False),
    ],
)
def test_an_answer_to_stop_reaches_the_run(api: Api, body: bytes, stops: bool) -> None:
    api.body = body
    api.start()
    asked: list[str] = []
    reporter = HttpReporter(
        f"http://127.0.0.1:{api.port}", "ftjob-1", token="tok", on_stop=lambda: asked.append("stop")
    )
    reporter.checkpoint(10, "jobs/p/ftjob-1/checkpoints/step-10/", {})
    reporter.emit("metrics", "Step 11/20", {"step": 11})
    assert asked == (["stop", "stop"] if stops else [])
