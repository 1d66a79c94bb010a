"""Real model families served by vLLM, offline: for each architecture (tests/support/families.py),
`ftapi serve --engine vllm` serves that family's small random-init model, a LoRA job created with the
strict SDK trains on it, and the tuned adapter, loaded into the managed vLLM server, ends its answer
at the family's end-of-turn token (finish_reason "stop"), streamed and not, while the base model
runs on to max_tokens. (That `weight: 0` turns are not trained is checked exactly, on the mask, in
tests/trainer/test_masking.py: asking the tuned model what they answered does not tell, since a
model tuned with those turns trained answers the same here.)

One server and one vLLM server per family (vLLM serves one base model; about 40 s to start here),
started while the job trains: a job that finishes before vLLM is up waits for it (the servable
check answers 503 and the trainer retries).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.conftest import ADMIN_KEY
from tests.support.families import ANSWER, FAMILIES, family_entries, tune_family
from tests.support.vllm_serve import ServedWithVllm, serve_with_vllm, wait_for_engine

pytestmark = pytest.mark.slow

PROMPT = [{"role": "user", "content": "the product is good"}]


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("family-models-vllm")
    entries = family_entries(root, "lora")  # LoRA, as vLLM serves tuned models
    path = root / "models.json"
    path.write_text(json.dumps(entries))
    return path


@pytest.fixture(params=list(FAMILIES))
def served(
    request: pytest.FixtureRequest, catalogue: Path, tmp_path: Path
) -> Iterator[tuple[str, ServedWithVllm]]:
    name = request.param
    env = {
        "FTAPI_API_KEY": ADMIN_KEY,
        "FTAPI_MODELS_FILE": str(catalogue),
        "FTAPI_VLLM__BASE_MODEL": f"fam-{name}",
        "FTAPI_MAX_CONCURRENT_JOBS": "1",
        "FTAPI_DISPATCH_INTERVAL_SECONDS": "0.2",
    }
    with serve_with_vllm(tmp_path / "data", env, ready_timeout=240) as served:
        yield name, served


def test_family_lora_served_by_vllm_stops_at_end_of_turn(served: tuple[str, ServedWithVllm]) -> None:
    name, deployment = served
    client = openai.OpenAI(
        base_url=deployment.server.base_url, api_key=ADMIN_KEY, _strict_response_validation=True
    )
    tuned = tune_family(client, name, n_epochs=10, batch_size=12)
    wait_for_engine(deployment.server, timeout=60)  # up: the job's servable check needed it
    # Servable before succeeded: the adapter is in vLLM itself, and ftapi routes the model there.
    assert tuned in deployment.vllm_model_ids()
    assert client.models.retrieve(tuned).model_extra == {"served_by": "vllm"}

    def ask(model: str, messages: list[dict[str, str]]) -> openai.types.chat.ChatCompletion:
        return client.chat.completions.create(
            model=model,
            messages=messages,  # type: ignore[arg-type]
            max_completion_tokens=16,
            temperature=0,
        )

    reply = ask(tuned, PROMPT)
    choice = reply.choices[0]
    assert (choice.finish_reason, choice.message.content) == ("stop", ANSWER), name
    assert reply.usage is not None and reply.usage.completion_tokens <= 3  # the answer, then end-of-turn

    base = ask(f"fam-{name}", PROMPT).choices[0]
    assert base.finish_reason == "length", (name, base.message.content)  # random init: no end of turn

    stream = client.chat.completions.create(
        model=tuned,
        messages=PROMPT,  # type: ignore[arg-type]
        max_completion_tokens=16,
        temperature=0,
        stream=True,
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert (text, finish) == (ANSWER, ["stop"]), name
