"""Shared pieces of the engine tests: tiny (formers, transformers) model pairs built once by the oracle,
a busy-batch driver, and the reference run of one request alone through transformers 4.45.2's generate()."""
from __future__ import annotations

import functools
import random
import tempfile
from pathlib import Path

import pytest
import torch
import transformers

import formers
from formers.serving import EngineConfig, LLMEngine, SamplingParams

from ..conftest import build_oracle_checkpoint

# family -> build_oracle_checkpoint overrides (Gemma2: softcaps and alternating windows; Mistral: every layer
# windowed, so pages behind the window are freed)
FAMILIES = {"llama": {}, "qwen2": {}, "gemma2": {"sliding_window": 8}, "mistral": {"sliding_window": 8}}


@pytest.fixture(scope="module", autouse=False)
def one_thread():
    """Tiny models run fastest on one thread (and do not fight other processes for cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@functools.cache
def model_pair(family: str):
    """(formers model, reference model) of one tiny fp32 checkpoint, both in eval mode. The reference is
    transformers 4.45.2, except for Gemma2: 4.45.2's HybridCache is wrong for prompts shorter than the
    window (README, deliberate differences), so there it is formers' generate(), which equals 4.45.2's
    cache-free generation (tested in tests/models)."""
    if family == "default":
        from formers.default_model import CHECKPOINT_DIR as folder
    else:
        folder = build_oracle_checkpoint(Path(tempfile.mkdtemp(prefix=f"serving_{family}_")), family,
                                         **FAMILIES[family])
    ours = formers.AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float32).eval()
    if family == "gemma2":
        return ours, ours
    theirs = transformers.AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float32).eval()
    return ours, theirs


def reference(model, prompt: list[int], params: SamplingParams, pad: int = 0) -> list[int]:
    """Tokens transformers' generate() gives for this request alone (seeded through torch.manual_seed)."""
    kwargs = {"max_new_tokens": params.max_tokens, "pad_token_id": pad,
              "repetition_penalty": params.repetition_penalty}  # explicit: the model's config may set one
    if params.greedy:
        kwargs.update(do_sample=False)
    else:
        kwargs.update(do_sample=True, temperature=params.temperature, top_k=params.top_k, top_p=params.top_p,
                      min_p=params.min_p or None)
    if params.seed is not None:
        torch.manual_seed(params.seed)
    ids = torch.tensor([prompt])
    out = model.generate(ids, attention_mask=torch.ones_like(ids), **kwargs)
    return out[0, len(prompt):].tolist()


def mixed_requests(seed: int, count: int, vocab: int, shared_prefix: int = 13, max_tokens: int = 14):
    """Requests of random lengths, every third sharing a prefix; alternately greedy and seeded sampling."""
    rng = random.Random(seed)
    prefix = [1] + [rng.randint(3, vocab - 1) for _ in range(shared_prefix - 1)]
    requests = []
    for i in range(count):
        prompt = [1] + [rng.randint(3, vocab - 1) for _ in range(rng.randint(2, 30))]
        if i % 3 == 0:
            prompt = prefix + prompt[1:4]
        settings = {"max_tokens": rng.randint(3, max_tokens), "logprobs": 1}
        if i % 2:
            settings.update(temperature=0.0)
        else:
            settings.update(temperature=0.8, top_k=20, top_p=0.9, repetition_penalty=1.3, seed=1000 + i)
        requests.append((f"r{i}", prompt, SamplingParams(**settings)))
    return requests


def run_busy(engine: LLMEngine, requests, seed: int = 0, max_steps: int = 10_000) -> dict[str, list]:
    """Add requests at random steps while stepping; returns request id -> every RequestOutput it got."""
    rng = random.Random(seed)
    pending = list(requests)
    outputs: dict[str, list] = {}
    steps = 0
    while pending or engine.has_unfinished_requests():
        while pending and rng.random() < 0.5:
            engine.add_request(*pending.pop(0))
        for out in engine.step():
            outputs.setdefault(out.request_id, []).append(out)
        steps += 1
        assert steps < max_steps, "the engine did not finish"
    return outputs


def make_engine(model, tokenizer=None, **config) -> LLMEngine:
    return LLMEngine(model, tokenizer, EngineConfig(**config))
