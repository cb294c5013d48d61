"""One rank of the tensor-parallel serving-engine test (launched by launch.py).

argv[1] is a JSON job {"checkpoints": {name: path}, "out": folder, "timeout": seconds}. For each checkpoint
every rank loads its shards with tp_plan="auto" and builds the same LLMEngine; rank 0 drives it through a
LeaderEngine (`drive`: requests added at pseudo-random steps, one aborted), the others `follow`. Rank 0
writes what each sequence produced to <out>/rank0.pt; the test runs `drive` on one process and compares.
"""
from __future__ import annotations

import json
import random
import sys
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from formers import AutoModelForCausalLM
from formers.distributed import current_group
from formers.serving import EngineConfig, LLMEngine, SamplingParams
from formers.serving.tp_engine import Channel, LeaderEngine, follow

# small pages and budgets: prompts are prefilled in chunks beside decode rows, and sequences get preempted
CONFIG = {"max_num_seqs": 4, "max_batched_tokens": 24, "block_size": 4, "num_blocks": 20}
ABORTED, ABORT_STEP = "r2", 6


def requests(vocab_size: int) -> list[tuple[str, list[int], SamplingParams]]:
    """Greedy, seeded and unseeded sampling (the engine's shared generator), penalties, n = 2, a shared prefix."""
    rng = random.Random(0)
    prefix = [rng.randrange(3, vocab_size) for _ in range(9)]
    kinds = [{"temperature": 0.0}, {"temperature": 0.9, "top_k": 20, "seed": 5},
             {"temperature": 1.0, "top_p": 0.9}, {"temperature": 0.7, "repetition_penalty": 1.3, "n": 2, "seed": 1}]
    out = []
    for i in range(8):
        prompt = ([] if i % 3 else prefix) + [rng.randrange(3, vocab_size) for _ in range(rng.randint(2, 20))]
        out.append((f"r{i}", prompt, SamplingParams(max_tokens=rng.randint(4, 12), **kinds[i % len(kinds)])))
    return out


def build_engine(model) -> LLMEngine:
    torch.manual_seed(0)  # the shared generator of unseeded requests: seeded alike on every rank
    return LLMEngine(model, None, EngineConfig(**CONFIG))


def drive(engine, vocab_size: int) -> dict[tuple[str, int], tuple[list[int], str | None]]:
    """Add the requests at pseudo-random steps, abort one; (request, index) -> (tokens, finish reason)."""
    rng = random.Random(1)
    pending = requests(vocab_size)
    results: dict[tuple[str, int], tuple[list[int], str | None]] = {}
    step = 0
    while pending or engine.has_unfinished_requests():
        while pending and rng.random() < 0.5:
            engine.add_request(*pending.pop(0))
        if step == ABORT_STEP:
            engine.abort(ABORTED)
        for out in engine.step():
            tokens, _ = results.get((out.request_id, out.index), ([], None))
            results[(out.request_id, out.index)] = (tokens + out.new_token_ids, out.finish_reason)
        step += 1
        assert step < 1000, "the engine did not finish"
    return results


def main() -> None:
    job = json.loads(Path(sys.argv[1]).read_text())
    dist.init_process_group("gloo", timeout=timedelta(seconds=job["timeout"]))
    torch.set_num_threads(1)
    info = current_group("engine_worker")
    results = {}
    for name, path in job["checkpoints"].items():
        model = AutoModelForCausalLM.from_pretrained(path, tp_plan="auto")
        engine, channel = build_engine(model), Channel(info, job["timeout"])
        if info.rank == 0:
            leader = LeaderEngine(engine, channel)
            results[name] = drive(leader, model.config.vocab_size)
            leader.close()
        else:
            follow(engine, channel)
    torch.save(results, Path(job["out"], f"rank{info.rank}.pt"))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
