"""ftapi's own assistant mask, for every family's real template (read from the installed TRL).

The expected spans are worked out here from the rendered text and the family's known turn format
(the assistant's content as the template writes it, then the family's end-of-turn token), not by
the code under test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.families import FAMILIES, Family, build_family, trl_template
from trainer.data.masking import UntrainableTemplate, assistant_spans, check_template, tokenize
from trainer.data.templates import jinja_renderer, read_model_template

SYSTEM = {"role": "system", "content": "Answer in one word."}
CHAT: list[dict[str, Any]] = [
    {"role": "user", "content": "Is the sky blue?"},
    {
        "role": "assistant",
        "content": " Maybe so. ",
        "weight": 0,
    },  # not trained: an example of what not to say
    {"role": "user", "content": "Yes or no?"},
    {"role": "assistant", "content": "Yes."},
    {"role": "user", "content": "And grass?"},
    {"role": "assistant", "content": "Green, usually.", "weight": 1},
]


@pytest.fixture(scope="module")
def family_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("families")
    return {name: build_family(name, root / name) for name in FAMILIES}


def conversation(family: Family) -> list[dict[str, Any]]:
    return ([SYSTEM] if family.supports_system else []) + CHAT


def expected_spans(text: str, family: Family, messages: list[dict[str, Any]]) -> list[tuple[int, int]]:
    """Character spans of trained assistant turns, by searching the rendered text in order."""
    spans, pos = [], 0
    for m in messages:
        if m["role"] != "assistant":
            continue
        piece = family.content(m["content"]) + family.end_of_turn
        start = text.index(piece, pos)
        pos = start + len(piece)
        if m.get("weight") != 0:
            spans.append((start, pos))
    return spans


@pytest.mark.parametrize("name", list(FAMILIES))
def test_mask_is_exactly_the_trained_assistant_turns(name: str, family_dirs: dict[str, Path]) -> None:
    from transformers import AutoTokenizer, GenerationConfig

    from trainer.sft_rows import ChatEncoder, stop_tokens

    family = FAMILIES[name]
    tokenizer = AutoTokenizer.from_pretrained(family_dirs[name])
    stops = stop_tokens(tokenizer, GenerationConfig.from_pretrained(family_dirs[name]))
    assert family.end_of_turn in stops
    messages = conversation(family)
    text = tokenizer.apply_chat_template(messages, tokenize=False)

    ids, mask = ChatEncoder(tokenizer, 512, stops)(messages)

    assert len(ids) == len(mask)
    assert tokenizer.decode(ids) == text  # nothing lost or added by tokenizing in pieces
    # Each run of trained tokens, with the character range it covers in the rendered text.
    runs, cursor, current = [], 0, None
    for token_id, bit in zip(ids, mask, strict=True):
        width = len(tokenizer.decode([token_id]))
        if bit and current is None:
            current = cursor
        if not bit and current is not None:
            runs.append((current, cursor))
            current = None
        cursor += width
    if current is not None:
        runs.append((current, cursor))
    want = expected_spans(text, family, messages)
    assert runs == want
    assert [text[a:b] for a, b in runs] == [
        family.content("Yes.") + family.end_of_turn,
        family.content("Green, usually.") + family.end_of_turn,
    ]
    assert "Maybe so" not in "".join(text[a:b] for a, b in runs)  # the weight-0 turn


@pytest.mark.parametrize("name", list(FAMILIES))
def test_the_api_renders_and_checks_templates_as_transformers_renders_them(
    name: str, family_dirs: dict[str, Path]
) -> None:
    """The API reads the folder without transformers; its rendering must be transformers' own."""
    from transformers import AutoTokenizer

    family = FAMILIES[name]
    tokenizer = AutoTokenizer.from_pretrained(family_dirs[name])
    template = read_model_template(family_dirs[name])
    assert template is not None
    assert family.end_of_turn in template.stop_tokens
    messages = conversation(family)
    for n in range(1, len(messages) + 1):
        for prompt in (False, True):
            want = tokenizer.apply_chat_template(messages[:n], tokenize=False, add_generation_prompt=prompt)
            assert template.renderer()(messages[:n], prompt) == want
    assert check_template(template.renderer(), template.stop_tokens).supports_system is family.supports_system


def test_trl_trains_on_the_mask_and_nothing_else(family_dirs: dict[str, Path], tmp_path: Path) -> None:
    """Pre-tokenized rows reach TRL as labels: -100 wherever the mask is 0, the token elsewhere."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig

    from trainer.sft import LengthGroupedSFTTrainer
    from trainer.sft_rows import ChatEncoder, stop_tokens

    folder = family_dirs["llama3"]  # no pad token: TRL pads with eos
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    chat = ChatEncoder(tokenizer, 512, stop_tokens(tokenizer, model.generation_config))
    rows = chat.rows([CHAT, CHAT[:4]])
    trainer = LengthGroupedSFTTrainer(
        model=model,
        args=SFTConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to=[], max_length=512),
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
    )
    for row, prepared in zip(rows, trainer.train_dataset, strict=True):
        assert prepared["input_ids"] == row["input_ids"]
        assert prepared["labels"] == [
            t if m else -100 for t, m in zip(row["input_ids"], row["assistant_masks"], strict=True)
        ]


def test_a_template_that_rewrites_earlier_turns_is_refused() -> None:
    """Qwen3's template renders the last assistant turn with an empty <think> block and earlier ones
    without: the turn's tokens change once a later message exists."""
    render = jinja_renderer(trl_template("qwen3"), {"eos_token": "<|im_end|>"})
    with pytest.raises(UntrainableTemplate, match="not prefix-consistent"):
        check_template(render, ["<|im_end|>"])


def test_a_template_without_an_end_of_turn_token_is_refused() -> None:
    render = jinja_renderer(
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n\n{% endfor %}"
        "{% if add_generation_prompt %}assistant: {% endif %}",
        {"eos_token": "</s>"},
    )
    with pytest.raises(UntrainableTemplate, match="never learn to stop"):
        check_template(render, ["</s>"])


def test_a_template_that_refuses_system_is_trainable_without_system() -> None:
    render = jinja_renderer(trl_template("gemma"), {"bos_token": "<bos>"})
    assert check_template(render, ["<end_of_turn>"]).supports_system is False
    with pytest.raises(UntrainableTemplate, match="System role not supported"):
        assistant_spans([SYSTEM, *CHAT], render, ["<end_of_turn>"])


def test_pieces_are_tokenized_apart_and_weight_zero_is_masked() -> None:
    render = jinja_renderer(
        "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}</s>{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}",
        {},
    )
    rendered = assistant_spans(CHAT[:4], render, ["</s>"])
    assert [rendered.text[a:b] for a, b in rendered.spans] == ["Yes.</s>"]
    ids, mask = tokenize(rendered, lambda piece: [ord(c) for c in piece])
    assert "".join(chr(i) for i, m in zip(ids, mask, strict=True) if m) == "Yes.</s>"
    assert "".join(map(chr, ids)) == rendered.text


# tiny-chat's ChatML with transformers' own {% generation %} markers around trained turns (the way
# tiny-chat trained before ftapi computed masks itself): ftapi's mask must give the same rows.
MARKED_CHATML = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- if message.get('weight') is not none and message['weight'] == 0 %}"
    "{{- message['content'] + '<|im_end|>' }}"
    "{%- else %}"
    "{% generation %}{{- message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{%- endif %}"
    "{{- '\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def test_tiny_chat_rows_are_what_transformers_generation_markers_gave(tmp_path: Path) -> None:
    from transformers import AutoTokenizer, GenerationConfig

    from tests.support.sentiment import sentiment_sets
    from trainer.sft_rows import ChatEncoder, stop_tokens
    from trainer.tiny import build_tiny_chat

    folder = build_tiny_chat(tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    chat = ChatEncoder(tokenizer, 512, stop_tokens(tokenizer, GenerationConfig.from_pretrained(folder)))
    marked = AutoTokenizer.from_pretrained(folder)
    marked.chat_template = MARKED_CHATML
    train, _ = sentiment_sets()
    for messages in [r["messages"] for r in train] + [CHAT, [SYSTEM, *CHAT[:4]]]:
        want = marked.apply_chat_template(
            messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
        )
        assert chat(messages) == (list(want["input_ids"]), list(want["assistant_masks"]))
