"""The dashboard in a real headless Chromium against a real `ftapi serve` that trains tiny-chat.

A person signs in, uploads files (drag and drop, the file chooser, a big file through the Uploads
API) and reads their validation reports, creates a job in the form, watches its curve grow and its
status reach succeeded, sees the overlap warning and the evaluation table, compares base and tuned
answers in the playground and cancels a second job. Another project's key sees none of it.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from playwright.sync_api import BrowserContext, FileChooser, Page, expect

from tests.support.browser import CHROMIUM, chromium
from tests.support.data import big_jsonl
from tests.support.sentiment import SYSTEM
from tests.support.server import RunningServer
from tests.ui import flows

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is installed by .ci/run"),
]
ADMIN_KEY = "sk-test-admin-" + secrets.token_hex(8)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with flows.dashboard_server(tmp_path_factory.mktemp("dashboard"), ADMIN_KEY) as srv:
        yield srv


@pytest.fixture(scope="module")
def browser() -> Iterator[BrowserContext]:
    with chromium() as context:
        yield context


@pytest.fixture
def page(browser: BrowserContext) -> Iterator[Page]:
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("dialog", lambda dialog: dialog.accept())  # "Cancel this job?" and the like: yes
    yield page
    page.close()
    assert not errors, f"the page threw: {errors}"


def sdk(server: RunningServer, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=key)


def test_root_redirects_to_the_dashboard_and_a_wrong_key_is_refused(
    server: RunningServer, page: Page
) -> None:
    page.goto(server.url)
    assert page.url == server.url + "/ui/"
    page.get_by_label("API key").fill("sk-wrong")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("That key was not accepted.")
    expect(page.get_by_role("navigation", name="Main")).to_be_hidden()


def test_files_page_uploads_and_renders_validation_reports(server: RunningServer, page: Page) -> None:
    key = flows.create_key(server)
    flows.sign_in(page, server.url, key)
    flows.go(page, "Files")
    train, _ = flows.training_data()

    flows.drop_file(page, "train.jsonl", train)
    fid = flows.uploaded_id(page, "train.jsonl")
    report = page.locator("#validation-report")
    expect(report.get_by_role("status")).to_have_text(re.compile(r"^Valid: 60 examples, chat format\."))
    quality = page.locator("#quality-table")
    expect(quality.get_by_role("row", name="Examples")).to_contain_text("60")
    expect(quality.get_by_role("row", name="Exact duplicates")).to_be_visible()
    expect(page.locator(f'#files-table tr[data-file="{fid}"]')).to_contain_text("train.jsonl")

    flows.choose_file(page, "bad.jsonl", flows.bad_training_file())
    refused = page.locator("#upload-progress .upload-row").filter(has_text="bad.jsonl: refused")
    expect(refused.get_by_role("alert")).to_contain_text("Line 3, example 3")
    expect(report.get_by_role("status")).to_contain_text("Invalid: 2 problems in")
    expect(report.get_by_role("status")).to_contain_text("nothing was stored")
    rows = page.locator("#problems-table tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0).locator("td").nth(0)).to_have_text("3")
    expect(rows.nth(0).locator("td").nth(1)).to_have_text("3")
    expect(rows.nth(1).locator("td").nth(0)).to_have_text("5")
    expect(page.locator("#problem-counts li")).not_to_have_count(0)
    expect(page.locator("#files-table")).not_to_contain_text("bad.jsonl")

    # Over 4 MiB: parts through the Uploads API, the bar filling up to the file's size.
    big = big_jsonl(5 * 1024 * 1024)
    with page.expect_response(lambda r: r.url.endswith("/complete") and "/v1/uploads/" in r.url) as done:
        flows.choose_file(page, "big.jsonl", big)
    assert done.value.ok
    big_id = flows.uploaded_id(page, "big.jsonl")
    bar = page.get_by_role("progressbar", name="Uploading big.jsonl")
    assert bar.get_attribute("max") == str(len(big)) and bar.evaluate("b => b.value") == len(big)
    expect(page.locator(f'#files-table tr[data-file="{big_id}"]')).to_be_visible()

    page.locator(f'#files-table tr[data-file="{big_id}"]').get_by_role(
        "button", name="Delete big.jsonl"
    ).click()
    expect(page.locator(f'#files-table tr[data-file="{big_id}"]')).to_have_count(0)
    with pytest.raises(openai.NotFoundError):
        sdk(server, key).files.retrieve(big_id)


@pytest.mark.timeout(1800)  # a few minutes alone; much longer while other work loads the machine
def test_a_job_from_the_form_to_the_playground(server: RunningServer, page: Page) -> None:
    key = flows.create_key(server)
    client = sdk(server, key)
    flows.sign_in(page, server.url, key)
    train_id, valid_id = flows.upload_training_files(page)

    # An error names its field: it is shown next to that field, which gets the focus.
    flows.create_job(page, train_id, valid_id, epochs="0", suffix="ui")
    epochs = page.get_by_label("n epochs")
    expect(page.locator("#n_epochs-error")).to_contain_text("n_epochs")
    expect(epochs).to_have_attribute("aria-invalid", "true")
    expect(epochs).to_be_focused()
    # Long enough that, on a quiet machine too, the page polls several times while it trains
    # (3 epochs ended between two polls in CI-like conditions, so the curve never "grew").
    epochs.fill("20")
    page.get_by_role("button", name="Create job").click()
    job_id = flows.job_id_from_url(page)

    # The curve grows while the job runs (points arrive by polling, without a reload).
    seen: set[int] = set()
    etas: list[str] = []
    deadline = time.monotonic() + 1200
    status = ""
    while len(seen) < 2 and time.monotonic() < deadline:
        status = page.locator("#job-status").inner_text()
        if status in ("succeeded", "failed", "cancelled"):
            break
        if status == "running" and flows.chart_points(page) > 0:
            seen.add(flows.chart_points(page))
            etas.append(page.locator("#fact-eta dd").inner_text())
        page.wait_for_timeout(300)
    assert len(seen) >= 2, f"the loss chart did not grow while running ({status}): {sorted(seen)}"
    # Once two steps are known, the time left is estimated from their pace.
    assert any(re.fullmatch(r"about \d.*", eta) for eta in etas), etas

    # Pause (the trainer saves a checkpoint and exits), then resume from it.
    page.get_by_role("button", name="Pause").click()
    expect(page.locator("#job-status")).to_have_text("paused")
    expect(page.get_by_role("button", name="Pause")).to_have_count(0)
    page.get_by_role("button", name="Resume").click()
    expect(page.locator("#job-status")).to_have_text(re.compile("^(queued|running)$"))
    expect(page.get_by_role("button", name="Resume")).to_have_count(0)

    # A second job, queued behind the first or started after it, cancelled from its page.
    second = client.fine_tuning.jobs.create(model="tiny-chat", training_file=train_id, suffix="second")
    page.goto(f"{server.url}/ui/#/jobs/{second.id}")
    page.get_by_role("button", name="Cancel").click()
    expect(page.locator("#job-status")).to_have_text("cancelled", timeout=60_000)
    expect(page.get_by_role("button", name="Cancel")).to_have_count(0)
    assert client.fine_tuning.jobs.retrieve(second.id).status == "cancelled"

    page.goto(f"{server.url}/ui/#/jobs/{job_id}")
    expect(page.locator("#job-status")).to_have_text("succeeded", timeout=1_200_000)
    done = client.fine_tuning.jobs.retrieve(job_id)
    assert done.fine_tuned_model
    expect(page.locator("#fine-tuned-model")).to_have_text(done.fine_tuned_model)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    page.locator("#summary").get_by_role("button", name=f"Copy: {done.fine_tuned_model}").click()
    expect(
        page.locator("#summary").get_by_role("button", name=f"Copy: {done.fine_tuned_model}")
    ).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == done.fine_tuned_model
    expect(page.locator("#fact-progress")).to_contain_text(re.compile(r"step (\d+) / \1"))
    final_points = flows.chart_points(page)
    assert final_points >= max(seen)

    warning = page.locator("#event-log li.level-warn")
    expect(warning).to_contain_text(
        f"{flows.OVERLAP} of 15 validation examples also appear in the training file"
    )
    expect(page.locator("#event-log li").last).to_contain_text("The job has successfully completed")
    expect(page.locator("#event-log")).to_contain_text("Fine-tuning job resumed from the checkpoint at step")

    evaluation = page.locator("#evaluation-table")
    expect(evaluation.locator("tbody tr")).to_have_count(2)
    expect(evaluation.locator("tbody tr").nth(0).locator("th")).to_have_text("tiny-chat")
    expect(evaluation.locator("tbody tr").nth(1).locator("th")).to_have_text(done.fine_tuned_model)
    expect(page.get_by_role("button", name="Download evaluation.csv")).to_be_visible()
    with page.expect_download() as download:
        page.get_by_role("button", name="Download step_metrics.csv").click()
    assert download.value.suggested_filename == "step_metrics.csv"
    csv_text = Path(download.value.path()).read_text()
    assert csv_text.startswith("step,train_loss,")

    checkpoints = page.locator("#checkpoints-table tbody tr")
    expect(checkpoints.first).to_contain_text(done.fine_tuned_model)
    expect(page.get_by_role("row", name=re.compile(":ckpt-step-")).first).to_be_visible()

    # The playground: the same prompt to base and tuned, streamed side by side.
    page.locator("#summary").get_by_role("link", name="Try it").click()
    expect(page.get_by_label(re.compile("^Right model"))).to_have_value(done.fine_tuned_model)
    expect(page.get_by_label(re.compile("^Left model"))).to_have_value("tiny-chat")
    prompt = "the delivery was awful and the app horrible"
    page.get_by_label("System message").fill(SYSTEM)
    page.get_by_label("Prompt").fill(prompt)
    page.get_by_label("Max tokens").fill("12")
    with page.expect_response(lambda r: "/v1/chat/completions" in r.url) as answered:
        page.get_by_role("button", name="Send to both").click()
    assert answered.value.headers["content-type"].startswith("text/event-stream")
    expect(page.locator("#left-answer")).to_have_attribute("data-done", "true", timeout=120_000)
    expect(page.locator("#right-answer")).to_have_attribute("data-done", "true", timeout=120_000)
    shown = {side: page.locator(f"#{side}-answer .answer-text").inner_text() for side in ("left", "right")}
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]
    for side, model in (("left", "tiny-chat"), ("right", done.fine_tuned_model)):
        expect(page.locator(f"#{side}-answer h3")).to_have_text(model)
        reply = client.chat.completions.create(
            model=model,
            messages=messages,
            temperature=0,
            max_completion_tokens=12,  # type: ignore[arg-type]
        )
        assert shown[side] == reply.choices[0].message.content, side

    # The jobs list shows both jobs; the models page lists the tuned model with its engine.
    flows.go(page, "Jobs")
    expect(page.locator(f'#jobs-table tr[data-job="{job_id}"]')).to_contain_text("succeeded")
    expect(page.locator(f'#jobs-table tr[data-job="{second.id}"]')).to_contain_text("cancelled")
    page.get_by_label("Status").select_option("cancelled")
    expect(page.locator(f'#jobs-table tr[data-job="{job_id}"]')).to_have_count(0)
    expect(page.locator(f'#jobs-table tr[data-job="{second.id}"]')).to_be_visible()
    flows.go(page, "Models")
    expect(page.locator(f'tr[data-model="{done.fine_tuned_model}"]')).to_contain_text("transformers")

    # Delete (confirmed in the dialog): the row goes and the model stops answering.
    page.get_by_role("button", name=f"Delete {done.fine_tuned_model}").click()
    expect(page.locator(f'tr[data-model="{done.fine_tuned_model}"]')).to_have_count(0)
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve(done.fine_tuned_model)
    expect(page.locator('tr[data-model="tiny-chat"]')).to_be_visible()


def test_jobs_appear_without_reload_and_filter_by_metadata(server: RunningServer, page: Page) -> None:
    key = flows.create_key(server)
    client = sdk(server, key)
    flows.sign_in(page, server.url, key)
    expect(page.get_by_text("No jobs yet.")).to_be_visible()
    train, _ = flows.training_data()
    fid = client.files.create(file=("t.jsonl", train), purpose="fine-tune").id
    tagged = client.fine_tuning.jobs.create(model="tiny-chat", training_file=fid, metadata={"team": "search"})
    other = client.fine_tuning.jobs.create(model="tiny-chat", training_file=fid, metadata={"team": "ads"})
    for job in (tagged, other):  # free the trainer for the other tests
        client.fine_tuning.jobs.cancel(job.id)
    expect(page.locator(f'#jobs-table tr[data-job="{other.id}"]')).to_be_visible(timeout=20_000)
    page.get_by_label(re.compile("^Metadata")).fill("team=search")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator(f'#jobs-table tr[data-job="{tagged.id}"]')).to_be_visible()
    expect(page.locator(f'#jobs-table tr[data-job="{other.id}"]')).to_have_count(0)


def test_another_projects_key_sees_none_of_the_jobs(server: RunningServer, page: Page) -> None:
    client = sdk(server, flows.create_key(server))
    train, _ = flows.training_data()
    fid = client.files.create(file=("t.jsonl", train), purpose="fine-tune").id
    job = client.fine_tuning.jobs.create(model="tiny-chat", training_file=fid)
    client.fine_tuning.jobs.cancel(job.id)

    stranger = flows.create_key(server, "ui-stranger")
    flows.sign_in(page, server.url, stranger)
    expect(page.get_by_text("No jobs yet.")).to_be_visible()
    page.goto(f"{server.url}/ui/#/jobs/{job.id}")
    expect(page.get_by_role("alert")).to_contain_text(job.id)
    flows.go(page, "Files")
    expect(page.get_by_text("No files yet.")).to_be_visible()


def test_keyboard_and_phone_width(server: RunningServer, browser: BrowserContext) -> None:
    page = browser.new_page()
    page.set_viewport_size({"width": 390, "height": 844})
    # Listening from the start: Playwright turns on file-chooser interception asynchronously, and
    # an `expect_file_chooser` armed just before the key press can miss the first chooser.
    choosers: list[FileChooser] = []
    page.on("filechooser", lambda chooser: choosers.append(chooser))
    try:
        flows.sign_in(page, server.url, flows.create_key(server))
        skip = page.get_by_role("link", name="Skip to content")
        skip.focus()
        for _ in range(4):  # the brand, Jobs, Create job, then Files
            page.keyboard.press("Tab")
        expect(page.get_by_role("link", name="Files", exact=True)).to_be_focused()
        page.keyboard.press("Enter")
        expect(page.get_by_role("heading", name="Files", exact=True)).to_be_visible()
        expect(page.locator("main")).to_be_focused()  # a new page moves the focus to its content
        page.keyboard.press("Tab")
        expect(page.get_by_label("Purpose")).to_be_focused()
        page.keyboard.press("Tab")
        expect(page.get_by_role("button", name="choose files")).to_be_focused()
        page.keyboard.press("Enter")
        for _ in range(50):
            if choosers:
                break
            page.wait_for_timeout(100)
        assert len(choosers) == 1 and choosers[0].is_multiple()
        skip.focus()
        page.keyboard.press("Enter")
        expect(page.locator("main")).to_be_focused()
        assert page.url.endswith("#/files")
        for route in ("#/files", "#/new", "#/playground", "#/models", "#/jobs"):
            page.goto(f"{server.url}/ui/{route}")
            page.locator("main h1").wait_for()
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"{route} is {width} px wide on a 390 px phone"
    finally:
        page.close()


def test_polling_pauses_while_the_tab_is_hidden(server: RunningServer, page: Page) -> None:
    flows.sign_in(page, server.url, flows.create_key(server))
    expect(page.get_by_text("No jobs yet.")).to_be_visible()
    polls: list[float] = []
    page.on("request", lambda r: polls.append(time.monotonic()) if "/v1/fine_tuning/jobs" in r.url else None)
    page.wait_for_timeout(9_000)
    visible = len(polls)
    assert 2 <= visible <= 4, f"{visible} list requests in 9 s while visible (one every 4 s expected)"
    page.evaluate(
        """() => {
            Object.defineProperty(document, "visibilityState", {value: "hidden", configurable: true});
            document.dispatchEvent(new Event("visibilitychange"));
        }"""
    )
    page.wait_for_timeout(500)  # a request already under way may still finish
    hidden_from = len(polls)
    page.wait_for_timeout(9_000)
    assert len(polls) == hidden_from, "the jobs list kept polling in a hidden tab"
    page.evaluate(
        """() => {
            Object.defineProperty(document, "visibilityState", {value: "visible", configurable: true});
            document.dispatchEvent(new Event("visibilitychange"));
        }"""
    )
    page.wait_for_timeout(1_000)
    assert len(polls) > hidden_from, "coming back to the tab did not refresh at once"
