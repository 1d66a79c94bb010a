"""A model folder's chat template, special tokens and stop tokens, read without the ML stack.

The API checks at catalogue load that a base model's template can be trained (trainer.data.masking);
it must not import transformers for that, so this renders templates with jinja2 in the way
transformers' `apply_chat_template` does (sandboxed, trim_blocks/lstrip_blocks, loop controls, the
`tojson`/`raise_exception`/`strftime_now` helpers, `{% generation %}` as a plain block). The family
tests check that both renderings agree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension
from jinja2.sandbox import ImmutableSandboxedEnvironment

from trainer.data.masking import Message, Render

_SPECIAL_KEYS = ("bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token", "mask_token")


class _GenerationBlock(Extension):
    """`{% generation %}…{% endgeneration %}` renders its body: ftapi finds spans itself."""

    tags = {"generation"}

    def parse(self, parser: Any) -> nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

    def _body(self, caller: Any) -> str:
        return str(caller())


def _raise(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(
    x: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None, sort_keys: bool = False
) -> str:
    # Not jinja's own filter, which escapes HTML characters: templates expect plain JSON.
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def jinja_renderer(template: str, special_tokens: dict[str, str]) -> Render:
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[_GenerationBlock, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = _strftime_now
    compiled = env.from_string(template)

    def render(messages: list[Message], add_generation_prompt: bool) -> str:
        return compiled.render(
            messages=messages, add_generation_prompt=add_generation_prompt, **special_tokens
        )

    return render


@dataclass(frozen=True)
class ModelTemplate:
    template: str
    special_tokens: dict[str, str] = field(default_factory=dict)  # bos_token etc., as the template sees them
    stop_tokens: tuple[str, ...] = ()  # generation ends at any of these (eos and generation_config's eos ids)

    def renderer(self) -> Render:
        return jinja_renderer(self.template, self.special_tokens)


def _token_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return str(value["content"])  # a serialised AddedToken
    return None


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    return data if isinstance(data, dict) else {}


def read_model_template(folder: Path) -> ModelTemplate | None:
    """The default chat template of a Hugging Face model folder, or None if it has none."""
    config = _read_json(folder / "tokenizer_config.json")
    template: Any = None
    if (folder / "chat_template.jinja").is_file():
        template = (folder / "chat_template.jinja").read_text()
    elif "chat_template" in config:
        template = config["chat_template"]
    elif (folder / "chat_template.json").is_file():
        template = _read_json(folder / "chat_template.json").get("chat_template")
    if isinstance(template, list):  # named templates: the default one is what chat uses
        template = next((t.get("template") for t in template if t.get("name") == "default"), None)
    if not isinstance(template, str):
        return None
    special = {k: text for k in _SPECIAL_KEYS if (text := _token_text(config.get(k))) is not None}
    special.update(
        (k, text)
        for k, v in _read_json(folder / "special_tokens_map.json").items()
        if k in _SPECIAL_KEYS and k not in special and (text := _token_text(v)) is not None
    )
    return ModelTemplate(template, special, _stop_tokens(folder, special))


def _stop_tokens(folder: Path, special: dict[str, str]) -> tuple[str, ...]:
    stops = [special["eos_token"]] if "eos_token" in special else []
    eos_ids = _read_json(folder / "generation_config.json").get("eos_token_id")
    ids = {eos_ids} if isinstance(eos_ids, int) else set(eos_ids or [])
    if ids:
        added = _read_json(folder / "tokenizer.json").get("added_tokens") or []
        stops += [t["content"] for t in added if t.get("id") in ids and t["content"] not in stops]
    return tuple(stops)
