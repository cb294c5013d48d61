"""Every family of the family runner (tests/models/cases: learned positions, ALiBi, parallel residuals,
partial and interleaved rotary, q/k norms, MoE, windows, rope scalings) serves greedy requests inside a
busy batch with chunked prefill and a preemption exactly as formers' generate() runs each alone (which
tests/models holds equal to transformers 4.45.2's)."""
from __future__ import annotations

import importlib
import pkgutil
import tempfile
from pathlib import Path

import pytest
import torch

import formers
from formers.serving import EngineConfig, LLMEngine

from ..models import cases as cases_package
from ..models.family_checks import build
from .engine_helpers import mixed_requests, one_thread, run_busy

pytestmark = pytest.mark.usefixtures("one_thread")
_ = one_thread


def _first_case_of_each_family() -> dict:
    """One case per family module (all of them would take a minute; the first is each family's main layout)."""
    found = {}
    for module in pkgutil.iter_modules(cases_package.__path__):
        name, case = next(iter(importlib.import_module(f"{cases_package.__name__}.{module.name}").CASES.items()))
        found[name] = case
    found["falcon-rw-alibi"] = importlib.import_module(f"{cases_package.__name__}.falcon").CASES["falcon-rw-alibi"]
    return found


CASES = _first_case_of_each_family()


@pytest.mark.parametrize("name", sorted(CASES))
def test_family_greedy_in_a_busy_batch(name):
    folder = build(CASES[name], Path(tempfile.mkdtemp(prefix=f"serving_{name}_")))
    model = formers.AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float32).eval()
    engine = LLMEngine(model, None, EngineConfig(num_blocks=16, block_size=4, max_batched_tokens=10))
    limit = engine.max_model_len or 1 << 30  # keep prompt + output inside the position table
    requests = []
    for request_id, prompt, params in mixed_requests(1, 5, model.config.vocab_size):
        prompt = prompt[:max(2, limit // 2)]
        max_tokens = max(1, min(params.max_tokens, limit - len(prompt) - 1))
        requests.append((request_id, prompt, params.replace(temperature=0.0, repetition_penalty=1.0,
                                                            max_tokens=max_tokens)))
    outputs = run_busy(engine, requests)
    for request_id, prompt, params in requests:
        ids = torch.tensor([prompt])
        expected = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=params.max_tokens,
                                  do_sample=False, pad_token_id=0)[0, len(prompt):]
        assert outputs[request_id][-1].token_ids == expected.tolist(), request_id
    assert engine.stats()["kv_blocks_used"] == 0
