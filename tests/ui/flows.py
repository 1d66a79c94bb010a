"""What a person does in the dashboard, step by step, for the browser tests and the screenshots.

Each step drives the page as a user would (labels, buttons, drag and drop) and waits for what the
user would wait for; nothing here calls the API behind the page's back.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.support.sentiment import SYSTEM, sentiment_sets, to_jsonl
from tests.support.server import RunningServer, run_server

TRAINING_CATALOGUE = [
    {"id": "tiny-chat", "source": "builtin:tiny-chat", "max_length": 512, "base_learning_rate": 5e-3}
]
OVERLAP = 5  # validation examples copied from the training file: the job warns about them


def training_data() -> tuple[bytes, bytes]:
    """The sentiment task's 60 training examples, and a validation file of 10 held-out examples
    plus OVERLAP training examples."""
    train, held_out = sentiment_sets(n_train=60, n_test=10)
    return to_jsonl(train), to_jsonl(held_out + train[:OVERLAP])


def bad_training_file() -> bytes:
    """A chat file whose line 3 has no assistant message and line 5 is not JSON."""
    train, _ = sentiment_sets(n_train=6, n_test=0)
    lines = to_jsonl(train).splitlines()
    lines[2] = json.dumps(
        {"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "hi"}]}
    ).encode()
    lines[4] = b'{"messages": [ oops'
    return b"\n".join(lines) + b"\n"


@contextmanager
def dashboard_server(data_dir: Path, admin_key: str) -> Iterator[RunningServer]:
    """`ftapi serve` that runs trainers one at a time with the offline tiny-chat."""
    data_dir.mkdir(parents=True, exist_ok=True)
    models = data_dir / "models.json"
    models.write_text(json.dumps(TRAINING_CATALOGUE))
    env = {
        "FTAPI_API_KEY": admin_key,
        "FTAPI_MAX_CONCURRENT_JOBS": "1",
        "FTAPI_MODELS_FILE": str(models),
        "FTAPI_DISPATCH_INTERVAL_SECONDS": "0.2",
        "FTAPI_SWEEP_INTERVAL_SECONDS": "1",
    }
    with run_server(data_dir / "server", env) as server:
        yield server


def create_key(server: RunningServer, project: str | None = None) -> str:
    """A key of a new project, made as an operator does: `ftapi keys create --project NAME`.
    (A subprocess, also because Playwright's sync API owns this thread's event loop.)"""
    made = subprocess.run(
        [
            sys.executable,
            "-m",
            "api.cli",
            "keys",
            "create",
            "--project",
            project or "ui-" + secrets.token_hex(4),
        ],
        env={**os.environ, **server.env},
        capture_output=True,
        text=True,
        check=True,
    )
    return made.stdout.strip().splitlines()[-1]


def sign_in(page: Page, url: str, key: str) -> None:
    page.goto(url)
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("navigation", name="Main")).to_be_visible()


def go(page: Page, link: str) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name=link, exact=True).click()


def drop_file(page: Page, name: str, content: bytes) -> None:
    """Drag a file from the desktop onto the drop zone (a real `drop` event with a DataTransfer)."""
    transfer = page.evaluate_handle(
        """([name, text]) => {
            const dt = new DataTransfer();
            dt.items.add(new File([text], name, {type: "application/jsonl"}));
            return dt;
        }""",
        [name, content.decode()],
    )
    page.locator("#dropzone").dispatch_event("drop", {"dataTransfer": transfer})


def choose_file(page: Page, name: str, content: bytes) -> None:
    """Pick a file in the file chooser (the keyboard path to the same upload)."""
    page.locator("#file-input").set_input_files(
        files=[{"name": name, "mimeType": "application/jsonl", "buffer": content}]
    )


def uploaded_id(page: Page, name: str, timeout: float = 60_000) -> str:
    row = page.locator("#upload-progress").get_by_text(re.compile(rf"^{re.escape(name)}: uploaded as file-"))
    expect(row).to_be_visible(timeout=timeout)
    return row.inner_text().rsplit(" ", 1)[-1]


def upload_training_files(page: Page, prefix: str = "") -> tuple[str, str]:
    """Upload training_data() on the Files page; the ids of the training and validation files."""
    go(page, "Files")
    ids = []
    for name, content in zip(("train.jsonl", "valid.jsonl"), training_data(), strict=True):
        choose_file(page, prefix + name, content)
        ids.append(uploaded_id(page, prefix + name))
    return ids[0], ids[1]


def create_job(
    page: Page, training: str, validation: str, *, epochs: str, suffix: str, batch_size: str = "10"
) -> None:
    """Fill the Create job form. Batches of 10 of the 60 examples: 6 steps an epoch, few enough
    for a shared 2-core machine (a metrics row every 10 steps and at each epoch's end)."""
    go(page, "Create job")
    page.get_by_label("Training file").select_option(training)
    page.get_by_label(re.compile("^Validation file")).select_option(validation)
    page.get_by_label("n epochs").fill(epochs)
    page.get_by_label("batch size").fill(batch_size)
    page.get_by_label(re.compile("^Suffix")).fill(suffix)
    page.get_by_role("button", name="Create job").click()


def job_id_from_url(page: Page) -> str:
    page.wait_for_url(re.compile(r"#/jobs/ftjob-"))
    return page.url.rsplit("/", 1)[-1]


def chart_points(page: Page) -> int:
    return int(page.locator("#loss-chart").get_attribute("data-points") or 0)
