"""Loaded models, touched only from the worker thread: one object per base, adapters by name, LRUs."""

from __future__ import annotations

import gc
import uuid
from collections import OrderedDict
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serving.errors import UpstreamError
from serving.models import LocalModel


@dataclass
class Target:
    """A loaded model ready to generate: `scope()` switches the shared PEFT model to it."""

    model: Any
    tokenizer: Any
    context: int
    scope: Callable[[], AbstractContextManager[Any]] = nullcontext


@dataclass
class _Base:
    model: Any  # a PeftModel once an adapter was loaded onto it
    tokenizer: Any
    context: int
    adapters: set[str] = field(default_factory=set)


@dataclass
class _Tuned:
    """A LoRA adapter on a base (`base_path` set) or a full model (`target` set)."""

    weights_dir: Path | None
    adapter: str = ""
    base_path: str = ""
    tokenizer: Any = None
    target: Target | None = None


class ModelStore:
    """Loaded models, touched only from the worker thread: one object per base, adapters by name, LRUs."""

    def __init__(self, device: str, max_adapters: int, max_full: int) -> None:
        self.device = device
        self.max_adapters = max_adapters
        self.max_full = max_full
        self.bases: dict[str, _Base] = {}
        self.base_names: dict[str, str] = {}  # served name of a base model → its base_path
        self.adapters: OrderedDict[str, _Tuned] = OrderedDict()  # least recently used first
        self.full: OrderedDict[str, _Tuned] = OrderedDict()

    def target(self, model: LocalModel) -> Target:
        if model.kind == "full":
            return self._full(model)
        base = self._base(model.base_path)
        if model.kind == "base":
            self.base_names[model.name] = model.base_path
            if base.adapters:
                return Target(base.model, base.tokenizer, base.context, base.model.disable_adapter)
            return Target(base.model, base.tokenizer, base.context)
        tuned = self._adapter(model, base)
        base.model.set_adapter(tuned.adapter)
        return Target(base.model, tuned.tokenizer, base.context)

    def unload(self, name: str) -> None:
        if name in self.adapters:
            self._drop_adapter(name)
        elif name in self.full:
            del self.full[name]
        elif name in self.base_names:  # its adapters go with it; they load again when asked for
            path = self.base_names.pop(name)
            for other in [n for n, t in self.adapters.items() if t.base_path == path]:
                del self.adapters[other]
            self.bases.pop(path, None)
        else:
            return
        gc.collect()

    def clear(self) -> None:
        self.bases.clear()
        self.base_names.clear()
        self.adapters.clear()
        self.full.clear()
        gc.collect()

    def _base(self, path: str) -> _Base:
        if path not in self.bases:
            model, context = self._load_model(path)
            self.bases[path] = _Base(model, _load_tokenizer(path), context)
        return self.bases[path]

    def _adapter(self, model: LocalModel, base: _Base) -> _Tuned:
        tuned = self.adapters.get(model.name)
        if (
            tuned is not None
            and tuned.weights_dir == model.weights_dir
            and tuned.base_path == model.base_path
        ):
            self.adapters.move_to_end(model.name)
            return tuned
        if tuned is not None:
            self._drop_adapter(model.name)
        if model.weights_dir is None:
            raise UpstreamError(f"The model `{model.name}` has no adapter weights.")
        from peft import PeftModel

        # PEFT keeps adapters in module dicts keyed by name, where "." and ":" are not allowed.
        key = "a" + uuid.uuid4().hex[:16]
        if isinstance(base.model, PeftModel):
            base.model.load_adapter(str(model.weights_dir), adapter_name=key)
        else:
            base.model = PeftModel.from_pretrained(base.model, str(model.weights_dir), adapter_name=key)
        base.model.eval()
        base.adapters.add(key)
        tokenizer = (
            _load_tokenizer(model.weights_dir) if _has_tokenizer(model.weights_dir) else base.tokenizer
        )
        tuned = _Tuned(model.weights_dir, key, model.base_path, tokenizer)
        self.adapters[model.name] = tuned
        while len(self.adapters) > self.max_adapters:
            self._drop_adapter(next(iter(self.adapters)))
        return tuned

    def _drop_adapter(self, name: str) -> None:
        tuned = self.adapters.pop(name)
        base = self.bases.get(tuned.base_path)
        if base is not None and tuned.adapter in base.adapters:
            base.model.delete_adapter(tuned.adapter)
            base.adapters.discard(tuned.adapter)
            if not base.adapters:  # a PeftModel without adapters cannot generate: back to the plain model
                base.model = base.model.unload()

    def _full(self, model: LocalModel) -> Target:
        tuned = self.full.get(model.name)
        if tuned is None or tuned.target is None or tuned.weights_dir != model.weights_dir:
            self.full.pop(model.name, None)
            while len(self.full) >= self.max_full:  # make room before loading a whole model
                self.full.popitem(last=False)
                gc.collect()
            loaded, context = self._load_model(model.model_path)
            own = model.weights_dir if _has_tokenizer(model.weights_dir) else None
            tokenizer = _load_tokenizer(own or model.base_path)
            tuned = _Tuned(model.weights_dir, target=Target(loaded, tokenizer, context))
            self.full[model.name] = tuned
        self.full.move_to_end(model.name)
        assert tuned.target is not None
        return tuned.target

    def _load_model(self, path: str) -> tuple[Any, int]:
        from transformers import AutoModelForCausalLM

        # Paths come from the weights cache, already checked to hold safetensors and no remote code.
        model: Any = AutoModelForCausalLM.from_pretrained(
            path, local_files_only=True, use_safetensors=True, dtype="auto", trust_remote_code=False
        )
        model.to(self.device).eval()
        return model, int(getattr(model.config, "max_position_embeddings", None) or 2048)


def _has_tokenizer(weights_dir: Path | None) -> bool:
    # The trainer saves the tokenizer it trained with (chat template included) next to tuned weights.
    return weights_dir is not None and (weights_dir / "tokenizer_config.json").exists()


def _load_tokenizer(path: str | Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
