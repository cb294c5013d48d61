"""The serving engine over a tensor-parallel model (serving/tp_engine.py) in a real 2-rank gloo group: rank 0's
LeaderEngine, fed requests at changing steps (chunked prefill beside decode, preemption, an abort, prefix
hits, n = 2, greedy / seeded / unseeded sampling), gives every sequence the same tokens and finish reason as
the same engine on the whole model in one process, for Llama with GQA, Qwen2 with biases, Gemma2 (sliding
windows, soft-capping) and Qwen2-MoE (shared expert)."""
from __future__ import annotations

import pytest

from formers import AutoModelForCausalLM

from ..conftest import build_oracle_checkpoint
from . import launch
from .engine_worker import ABORTED, build_engine, drive
from .tp_cases import CASES

FAMILIES = ("llama-gqa", "qwen2-biases", "gemma2", "qwen2_moe-shared-expert")


@pytest.fixture(scope="module")
def group_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("tp_engine")
    paths = {}
    for name in FAMILIES:
        kind, overrides, base, _ = CASES[name]
        paths[name] = str(build_oracle_checkpoint(root / name, kind, base=base, **overrides))
    (root / "run").mkdir()
    ranks = launch.run({"checkpoints": paths}, root / "run", worker=launch.WORKER.parent / "engine_worker.py")
    return paths, ranks[0]


@pytest.mark.parametrize("name", FAMILIES)
def test_tensor_parallel_engine_equals_one_process(group_run, name):
    paths, leader = group_run
    model = AutoModelForCausalLM.from_pretrained(paths[name])
    engine = build_engine(model)
    single = drive(engine, model.config.vocab_size)
    assert leader[name] == single
    reasons = {reason for _, reason in single.values()}
    assert single[(ABORTED, 0)][1] == "abort" and "length" in reasons, reasons  # the abort was replayed
    assert len(single) == 10  # 8 requests, two with n = 2
    stats = engine.stats()
    assert stats["preemptions"] > 0 and stats["prefix_cache_hits"] > 0, stats
    print(f"{name}: {stats['steps']} steps, {stats['preemptions']} preemptions, "
          f"{stats['prefix_cache_hits']} prefix-cache hits")
