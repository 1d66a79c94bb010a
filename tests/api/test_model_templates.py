"""The catalogue checks each local model folder's chat template when it loads (no torch needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pydantic
import pytest

from api.catalogue import BaseModelEntry, Catalogue
from tests.support.families import trl_template


def model_folder(
    root: Path, name: str, template: str | None, eos: str, gen_eos: list[int] | None = None
) -> Path:
    folder = root / name
    folder.mkdir()
    config: dict[str, object] = {"eos_token": {"content": eos}, "bos_token": "<bos>"}
    if template is not None:
        config["chat_template"] = template
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    if gen_eos is not None:
        (folder / "generation_config.json").write_text(json.dumps({"eos_token_id": gen_eos}))
        added = [{"id": 1, "content": "<eos>"}, {"id": 107, "content": "<end_of_turn>"}]
        (folder / "tokenizer.json").write_text(json.dumps({"added_tokens": added}))
    return folder


def catalogue(tmp_path: Path, sources: dict[str, Path]) -> Catalogue:
    path = tmp_path / "models.json"
    path.write_text(
        json.dumps([{"id": k, "source": str(v), "base_learning_rate": 1e-4} for k, v in sources.items()])
    )
    return Catalogue.load(path)


def test_templates_are_checked_when_the_catalogue_loads(tmp_path: Path) -> None:
    cat = catalogue(
        tmp_path,
        {
            "qwen2.5": model_folder(tmp_path, "q25", trl_template("qwen2_5"), "<|im_end|>"),
            "qwen3": model_folder(tmp_path, "q3", trl_template("qwen3"), "<|im_end|>"),
            "gemma": model_folder(tmp_path, "g", trl_template("gemma"), "<eos>", gen_eos=[1, 107]),
            "gemma-no-eot": model_folder(tmp_path, "g2", trl_template("gemma"), "<eos>"),
            "no-template": model_folder(tmp_path, "none", None, "</s>"),
        },
    )
    assert cat.template("qwen2.5").problem is None and cat.template("qwen2.5").system_problem is None
    assert "not prefix-consistent" in (cat.template("qwen3").problem or "")
    assert cat.template("gemma").problem is None
    assert "System role not supported" in (cat.template("gemma").system_problem or "")
    # Gemma's turns end at <end_of_turn>; without it among the stop tokens a model never learns to stop.
    assert "never learn to stop" in (cat.template("gemma-no-eot").problem or "")
    assert cat.template("no-template").problem == "it has no chat template"
    assert len(cat.all()) == 5  # refused models stay listed (they still serve chat)


def test_builtin_and_hub_sources_are_not_checked_at_load(tmp_path: Path) -> None:
    cat = Catalogue.load(None)
    assert cat.template("tiny-chat").problem is None
    hub = catalogue(tmp_path, {"hub": Path("Qwen/Qwen2.5-0.5B-Instruct")})
    assert hub.template("hub").problem is None


def test_qlora_needs_lora_mode() -> None:
    with pytest.raises(pydantic.ValidationError, match="needs mode: lora"):
        BaseModelEntry(
            id="m", source="x", base_learning_rate=1e-4, mode="full", training={"quantization": "4bit"}
        )
