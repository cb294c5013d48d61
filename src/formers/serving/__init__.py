"""Serving: a continuous-batching engine over a paged KV cache (beyond transformers 4.45).

`LLMEngine` (engine.py) is the core; `SamplingParams` (params.py) the per-request settings; the HTTP
server (http/) and the asyncio wrapper (async_engine.py) are built on them.
"""
from __future__ import annotations

from .engine import EngineConfig, LLMEngine, RequestOutput
from .params import SamplingParams
from .sampler import TokenLogprob

__all__ = ["EngineConfig", "LLMEngine", "RequestOutput", "SamplingParams", "TokenLogprob"]
