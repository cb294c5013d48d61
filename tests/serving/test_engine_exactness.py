"""Each request served inside a busy, changing batch gives exactly the tokens transformers 4.45.2's
generate() gives for it alone (fp32 greedy, and seeded sampling with temperature/top-k/top-p and a
repetition penalty): with and without prefix-cache hits, with chunked prefill, after preemptions, on
Llama, Qwen2 (biases), Gemma2 (softcaps, alternating windows) and Mistral (every layer windowed)."""
from __future__ import annotations

import pytest
import torch

from .engine_helpers import (
    make_engine,
    mixed_requests,
    model_pair,
    one_thread,
    reference,
    run_busy,
)

pytestmark = pytest.mark.usefixtures("one_thread")
_ = one_thread  # imported for pytest to find

# name -> engine settings, and the statistic that proves the setting was exercised
SETTINGS = {
    "roomy": ({"num_blocks": 256, "block_size": 4, "max_batched_tokens": 512}, None),
    "chunked": ({"num_blocks": 256, "block_size": 4, "max_batched_tokens": 7}, "chunked"),
    "preempting": ({"num_blocks": 14, "block_size": 4, "max_batched_tokens": 12}, "preemptions"),
    "no_prefix_cache": ({"num_blocks": 256, "block_size": 4, "max_batched_tokens": 64,
                         "enable_prefix_caching": False}, None),
}


def _check(family: str, setting: str, seed: int) -> dict:
    ours, theirs = model_pair(family)
    config, proof = SETTINGS[setting]
    engine = make_engine(ours, **config)
    requests = mixed_requests(seed, 8, ours.config.vocab_size)
    outputs = run_busy(engine, requests, seed)
    for request_id, prompt, params in requests:
        final = outputs[request_id][-1]
        assert final.finished and final.finish_reason in ("stop", "length")
        assert final.token_ids == reference(theirs, prompt, params), (family, setting, request_id)
        assert [t for out in outputs[request_id] for t in out.new_token_ids] == final.token_ids
    stats = engine.stats()
    assert stats["kv_blocks_used"] == 0 and stats["running"] == stats["waiting"] == 0
    if proof == "preemptions":
        assert stats["preemptions"] > 0
    if proof == "chunked":
        assert any(len(p) > config["max_batched_tokens"] for _, p, _ in requests)
    if setting == "no_prefix_cache":
        assert stats["prefix_cache_hits"] == 0
    return stats


@pytest.mark.parametrize("family", ["llama", "qwen2", "gemma2", "mistral"])
@pytest.mark.parametrize("setting", list(SETTINGS))
def test_busy_batch_matches_generate_alone(family, setting):
    _check(family, setting, seed=list(SETTINGS).index(setting) * 10 + len(family))


def test_prefix_cache_hits_are_counted_and_exact():
    ours, theirs = model_pair("llama")
    engine = make_engine(ours, num_blocks=64, block_size=4)
    requests = mixed_requests(3, 6, ours.config.vocab_size, shared_prefix=17)
    first, *rest = [r for i, r in enumerate(requests) if i % 3 == 0] + [r for i, r in enumerate(requests) if i % 3]
    run_busy(engine, [first])  # its full prompt blocks are now cached
    hits_before = engine.stats()["prefix_cache_hits"]
    outputs = run_busy(engine, rest)
    assert engine.stats()["prefix_cache_hits"] > hits_before
    sharing = [r for r in rest if r[1][:16] == first[1][:16]]
    assert sharing and all(outputs[rid][-1].cached_prompt_tokens >= 16 for rid, _, _ in sharing)
    for request_id, prompt, params in rest:
        assert outputs[request_id][-1].token_ids == reference(theirs, prompt, params)


def test_sliding_window_pages_are_freed():
    """Mistral with every layer windowed (8): a long generation holds about window/block_size pages."""
    from formers.serving import SamplingParams

    ours, theirs = model_pair("mistral")
    engine = make_engine(ours, num_blocks=64, block_size=4, max_batched_tokens=8)
    prompt = list(range(3, 40))
    params = SamplingParams(max_tokens=40, temperature=0.0, ignore_eos=True)
    engine.add_request("long", prompt, params)
    peak, tokens = 0, []
    while engine.has_unfinished_requests():
        for out in engine.step():
            tokens = out.token_ids
        peak = max(peak, engine.stats()["kv_blocks_used"])
    assert peak <= (8 + 8) // 4 + 2  # the window plus one chunk, rounded out to pages
    eos, theirs.generation_config.eos_token_id = theirs.generation_config.eos_token_id, None  # ignore_eos
    try:
        assert tokens == reference(theirs, prompt, params)
    finally:
        theirs.generation_config.eos_token_id = eos


def test_logprobs_equal_log_softmax_of_generate_logits():
    ours, theirs = model_pair("qwen2")
    from formers.serving import SamplingParams

    engine = make_engine(ours, num_blocks=64, block_size=4, max_batched_tokens=16)
    prompts = {"a": [1, 5, 9, 22, 7, 3, 44, 8, 9], "b": [1, 17, 18], "c": list(range(1, 25))}
    params = SamplingParams(max_tokens=6, temperature=0.0, logprobs=3)
    outputs = run_busy(engine, [(k, p, params) for k, p in prompts.items()])
    for request_id, prompt in prompts.items():
        got = [lp for out in outputs[request_id] for lp in out.new_logprobs]
        ids = torch.tensor([prompt])
        ref = theirs.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, do_sample=False,
                              output_logits=True, return_dict_in_generate=True, pad_token_id=0)
        assert [lp.token_id for lp in got] == ref.sequences[0, len(prompt):].tolist()
        for lp, logits in zip(got, ref.logits):
            expected = torch.log_softmax(logits[0].float(), dim=-1)
            assert abs(lp.logprob - expected[lp.token_id].item()) < 1e-5
            values, indices = expected.topk(3)
            assert list(lp.top) == indices.tolist()
            assert max(abs(a - b) for a, b in zip(lp.top.values(), values.tolist())) < 1e-5


def test_n_continuations_use_seed_plus_index():
    ours, theirs = model_pair("llama")
    from formers.serving import SamplingParams

    engine = make_engine(ours, num_blocks=64, block_size=4)
    params = SamplingParams(n=3, max_tokens=8, temperature=1.0, seed=7)
    engine.add_request("n", [1, 10, 11, 12, 13, 14, 15], params)
    finals = {}
    while engine.has_unfinished_requests():
        for out in engine.step():
            if out.finished:
                finals[out.index] = out.token_ids
    assert sorted(finals) == [0, 1, 2]
    stats = engine.stats()  # the prompt's full pages were computed once and shared by the other two
    assert stats["prefix_cache_hits"] >= 2 and stats["computed_tokens"] <= 7 + 2 * 3 + sum(map(len, finals.values()))
    for index, tokens in finals.items():
        assert tokens == reference(theirs, [1, 10, 11, 12, 13, 14, 15], params.replace(n=1, seed=7 + index))


def test_prefix_keys_cover_the_whole_prefix():
    """A block whose tokens equal a cached block at another position (or after another prefix) is no hit."""
    from formers.serving import SamplingParams

    ours, theirs = model_pair("llama")
    engine = make_engine(ours, num_blocks=64, block_size=4)
    params = SamplingParams(max_tokens=5, temperature=0.0)
    first = [1, 20, 21, 22, 30, 31, 32, 33, 40, 41]
    run_busy(engine, [("first", first, params)])
    moved = [30, 31, 32, 33, 50, 51]          # block 1 of `first`, now at position 0
    other_head = [1, 60, 61, 62, 30, 31, 32, 33, 70]  # same second block after another first block
    outputs = run_busy(engine, [("moved", moved, params), ("other_head", other_head, params)])
    assert engine.stats()["prefix_cache_hits"] == 0
    for request_id, prompt in (("moved", moved), ("other_head", other_head)):
        assert outputs[request_id][-1].cached_prompt_tokens == 0
        assert outputs[request_id][-1].token_ids == reference(theirs, prompt, params)
