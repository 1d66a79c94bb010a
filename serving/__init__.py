"""Serving tuned and base models behind the OpenAI chat API.

`engine.InferenceEngine` is the contract every engine meets (vLLM over HTTP, transformers in
process); `registry.ServingRegistry` picks the engine for a model, puts its weights from storage into
the local cache (`cache.WeightsCache`) and forwards chat requests. Never imports `api`.
"""
