"""`tiny-chat`: the offline base model ftapi builds itself, deterministically, with no download.

A small Llama (hidden 128, 2 layers, 4 heads) with a byte-level BPE tokenizer trained locally on
generated text and a ChatML-style chat template. It exists so that the service, the tests and a
newcomer's demo run anywhere; real users configure hub models. Built once into a cache directory
(atomically: a finished build is renamed into place) and reused.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from pathlib import Path

TINY_CHAT = "tiny-chat"
BUILD_VERSION = "1"  # bump when the recipe changes: a cached build with another version is rebuilt

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]

# ChatML, as Qwen and many others use it. It has no {% generation %} markers and ignores `weight`:
# ftapi computes the assistant mask itself for every template (trainer/data/masking.py). Builds
# cached before this template lost its markers render the same text, so the version stays.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + (message['content'] or '') + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

_WORDS = (
    "the a an is was it this that good bad great awful fine okay product service order delivery "
    "price quality love hate like dislike never always very really not so quite happy sad angry "
    "fast slow late early broken works perfect terrible amazing average refund support staff food "
    "movie book phone app update label positive negative neutral answer question please thanks"
).split()


def _corpus(seed: int = 0, n: int = 4000) -> list[str]:
    """Deterministic text for the tokenizer: sentences, JSON snippets, chat markup."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 16)))
        lines.append(words.capitalize() + rng.choice([".", "!", "?"]))
        lines.append(json.dumps({"label": rng.choice(["positive", "negative", "neutral"])}))
    return lines


def _build_tokenizer(out: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=2048,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|pad|>",
        unk_token=None,
        additional_special_tokens=["<|im_start|>", "<|endoftext|>"],
        model_max_length=512,
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out)


def _build_model(out: Path, vocab_size: int, pad_id: int, eos_id: int) -> None:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=128,
        intermediate_size=512,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        pad_token_id=pad_id,
        eos_token_id=eos_id,
        bos_token_id=None,
    )
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=eos_id, pad_token_id=pad_id)
    model.save_pretrained(out, safe_serialization=True)


def build_tiny_chat(cache_dir: Path) -> Path:
    """Return the directory of the tiny-chat model, building it first if needed."""
    target = Path(cache_dir) / f"{TINY_CHAT}-v{BUILD_VERSION}"
    if (target / "ftapi-build.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tiny-chat-", dir=target.parent))
    try:
        from transformers import AutoTokenizer

        _build_tokenizer(tmp)
        tok = AutoTokenizer.from_pretrained(tmp)
        _build_model(tmp, len(tok), tok.pad_token_id, tok.eos_token_id)
        (tmp / "ftapi-build.json").write_text(json.dumps({"model": TINY_CHAT, "version": BUILD_VERSION}))
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / "ftapi-build.json").exists():  # not a concurrent builder that won
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_base_model(source: str, cache_dir: Path) -> str:
    """A catalogue `source` as something `from_pretrained` (or vLLM's --model) loads."""
    if source == f"builtin:{TINY_CHAT}":
        return str(build_tiny_chat(cache_dir))
    return source  # a local directory or a hub id (hub downloads only where the network allows)
