"""The step layout: decode rows ordered longest first and cut into buckets of similar length (bounded
padding), one gather index covering every page read, fresh prompt chunks reading no pages; and a busy
batch whose decode rows really span several buckets still equals transformers 4.45.2's generate()."""
from __future__ import annotations

import random

import pytest
import torch

from formers.serving import SamplingParams
from formers.serving import layout as layout_module
from formers.serving.blocks import NO_BLOCK
from formers.serving.layout import BUCKET_FILL, build_layout, flat_order
from formers.serving.scheduler import Sequence

from .engine_helpers import make_engine, model_pair, one_thread, reference, run_busy

_ = one_thread  # imported for pytest to find


def _sequence(name: str, length: int, computed: int, blocks: list[int]) -> Sequence:
    seq = Sequence(name, 0, length, list(range(3, 3 + length)), SamplingParams(), 0, None, None)
    seq.blocks, seq.num_computed = blocks, computed
    return seq


def test_decode_rows_are_bucketed_longest_first_and_chunks_follow():
    block, num_blocks, kv_heads = 4, 64, 2
    rng = random.Random(0)
    free = list(range(num_blocks))
    rng.shuffle(free)
    decode = []
    for i, length in enumerate([5, 40, 9, 38, 21, 6]):  # one new token each
        pages = -(-length // block)
        decode.append((_sequence(f"d{i}", length, length - 1, [free.pop() for _ in range(pages)]), 1))
    fresh = (_sequence("fresh", 7, 0, [free.pop(), free.pop()]), 7)
    cached = (_sequence("cached", 12, 8, [free.pop() for _ in range(3)]), 4)  # a prefix hit: reads its pages
    rows = flat_order(decode + [fresh, cached], block, views=False)
    assert [seq.num_computed for seq, _ in rows[:6]] == sorted((s.num_computed for s, _ in decode), reverse=True)
    assert [seq.request_id for seq, _ in rows[6:]] == ["fresh", "cached"]

    layout, sample_index = build_layout(rows, block, num_blocks, kv_heads, torch.device("cpu"), views=False)
    assert layout.positions.shape[0] == 6 + 7 + 4 and sample_index == [0, 1, 2, 3, 4, 5, 12, 16]
    covered = [t for g in layout.groups for t in range(g.start, g.start + g.rows * g.length)]
    assert covered == list(range(17))
    buckets = [g for g in layout.groups if g.length == 1]
    assert len(buckets) > 1 and sum(g.rows for g in buckets) == 6
    for g in buckets:  # every row of a bucket needs at least BUCKET_FILL of the pages the bucket reads
        pages = g.key_positions.shape[1] // block
        needs = [-(-(int(q) + 1) // block) for q in g.query_positions[:, 0]]
        assert max(needs) == pages and min(needs) >= BUCKET_FILL * pages
    fresh_group, cached_group = layout.groups[-2:]
    assert fresh_group.key_positions is None and fresh_group.length == 7
    assert cached_group.key_positions.shape == (1, 3 * block)
    # the gather index lists (head * num_blocks + page) for each read group: rows x heads x pages
    read = sum(g.rows * g.key_positions.shape[1] // block for g in layout.groups if g.key_positions is not None)
    assert layout.gather_index.shape[0] == read * kv_heads
    seq = rows[0][0]
    first = buckets[0]
    pages = first.key_positions.shape[1] // block
    assert layout.gather_index[:pages].tolist() == seq.blocks[:pages]
    assert layout.gather_index[pages:2 * pages].tolist() == [num_blocks + b for b in seq.blocks[:pages]]


def test_freed_window_pages_are_masked_out():
    seq = _sequence("w", 13, 12, [NO_BLOCK, NO_BLOCK, 5, 6])
    layout, _ = build_layout([(seq, 1)], 4, 8, 1, torch.device("cpu"), views=False)
    keys = layout.groups[0].key_positions[0].tolist()
    assert keys[:8] == [-1] * 8 and keys[8:13] == list(range(8, 13)) and keys[13:] == [-1] * 3


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("in_place", [True, False])
def test_decode_paths_in_a_busy_batch_equal_generate(monkeypatch, in_place):
    """in_place: consecutive pages read as views of the store; else (placement defeated) every decode row
    goes through the gather, in several buckets per step."""
    ours, theirs = model_pair("llama")
    seen = []
    original = layout_module.build_layout

    def spy(rows, *args):
        built = original(rows, *args)
        seen.append((sum(g.span is not None for g in built[0].groups),
                     sum(g.length == 1 and g.span is None for g in built[0].groups)))
        return built

    monkeypatch.setattr("formers.serving.engine.build_layout", spy)
    if not in_place:
        monkeypatch.setattr(layout_module, "_in_place", lambda seq, block_size: False)
    rng = random.Random(7)
    requests = []
    for i in range(10):  # prompts from 2 to 56 tokens: decode rows of very different lengths
        prompt = [1] + [rng.randint(3, ours.config.vocab_size - 1) for _ in range(1 + 6 * i)]
        params = SamplingParams(max_tokens=12, temperature=0.0) if i % 2 else \
            SamplingParams(max_tokens=12, temperature=0.9, top_k=30, seed=50 + i)
        requests.append((f"r{i}", prompt, params))
    engine = make_engine(ours, num_blocks=256, block_size=4, max_batched_tokens=96)
    outputs = run_busy(engine, requests, seed=3)
    views, buckets = max(v for v, _ in seen), max(b for _, b in seen)
    assert (views >= 5 and buckets == 0) if in_place else (views == 0 and buckets >= 3)
    for request_id, prompt, params in requests:
        assert outputs[request_id][-1].token_ids == reference(theirs, prompt, params), request_id


def test_block_placement_keeps_sequences_consecutive():
    from formers.serving.blocks import BlockManager

    blocks = BlockManager(32, 4)
    a = blocks.allocate(3, room=5)
    b = blocks.allocate(2, room=5)
    assert a == [0, 1, 2] and b == [8, 9]  # b starts past a's growth room
    assert blocks.allocate(2, after=a[-1]) == [3, 4]  # a grows in place
    assert blocks.allocate(1, after=b[-1]) == [10]
    blocks.register(10, b"k")
    blocks.release([10])  # cached, unheld: b growing again does not evict it while never-cached blocks remain
    grown = blocks.allocate(1, after=9)
    assert grown != [10] and blocks.cached == {b"k": 10}
    run = blocks.allocate(6, room=100)  # no run of 106 blocks: any consecutive 6
    assert run == list(range(run[0], run[0] + 6))
    assert blocks.num_used == sum(1 for r in blocks.ref_counts if r) == 3 + 2 + 2 + 1 + 6
