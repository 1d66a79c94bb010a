"""In-process inference with transformers and PEFT (see engine.py); torch loads on first use."""

from serving.transformers_engine.engine import TransformersEngine
from serving.transformers_engine.text import Choice

__all__ = ["Choice", "TransformersEngine"]
