"""Regenerate the README's dashboard screenshots: `make screenshots` (or
`python -m tests.ui.screenshots docs/screenshots`).

Starts its own `ftapi serve` (tiny-chat, trainers on), does what a person would in Chromium (upload
files, create a job in the form, wait for it to succeed, ask the playground) and saves full-page
PNGs of the job page, a file's validation report and the playground. About a minute or two here.
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.support.browser import chromium
from tests.support.sentiment import SYSTEM
from tests.ui import flows


def file_report(page: Page, out: Path) -> None:
    flows.go(page, "Files")
    flows.choose_file(page, "train.jsonl", flows.training_data()[0])
    flows.uploaded_id(page, "train.jsonl")
    flows.choose_file(page, "reviews-draft.jsonl", flows.bad_training_file())
    expect(page.locator("#problems-table")).to_be_visible()
    page.screenshot(path=out / "file-report.png", full_page=True)


def job_page(page: Page, out: Path) -> str:
    train_id, valid_id = flows.upload_training_files(page, "reviews-")
    flows.create_job(page, train_id, valid_id, epochs="6", suffix="reviews")
    flows.job_id_from_url(page)
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=1_800_000)
    expect(page.locator("#evaluation-table")).to_be_visible()
    page.wait_for_timeout(500)  # the last poll's redraw
    # Show the overlap warning near the top of the event log (it scrolls to the newest events).
    page.locator(".log-wrap").evaluate(
        "wrap => { wrap.scrollTop = wrap.querySelector('li.level-warn').offsetTop - 40; }"
    )
    page.screenshot(path=out / "job.png", full_page=True)
    return page.locator("#fine-tuned-model").inner_text()


def playground(page: Page, out: Path) -> None:
    page.locator("#summary").get_by_role("link", name="Try it").click()
    page.get_by_label("System message").fill(SYSTEM)
    page.get_by_label("Prompt").fill("the delivery was awful and the app horrible")
    page.get_by_label("Max tokens").fill("12")
    page.get_by_role("button", name="Send to both").click()
    for side in ("left", "right"):
        expect(page.locator(f"#{side}-answer")).to_have_attribute(
            "data-done", re.compile("."), timeout=120_000
        )
    page.screenshot(path=out / "playground.png", full_page=True)


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix="ftapi-screenshots-") as tmp,
        flows.dashboard_server(Path(tmp), "sk-screenshots-admin") as server,
        chromium() as browser,
    ):
        page = browser.new_page()
        flows.sign_in(page, server.url, flows.create_key(server, "demo"))
        file_report(page, out)
        job_page(page, out)
        playground(page, out)
    for name in ("file-report.png", "job.png", "playground.png"):
        print(out / name)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshots"))
