"""AsyncEngine: outputs reach asyncio callers, cancelling a consumer aborts its request and frees its
blocks at once, engine errors reach the requests without killing the loop, shutdown is clean."""
from __future__ import annotations

import asyncio
import threading
import time

import pytest
import torch

from formers import AutoModelForCausalLM, AutoTokenizer
from formers.default_model import DEFAULT_MODEL_NAME
from formers.errors import EngineOverloadedError, ServingError
from formers.serving import EngineConfig, LLMEngine, SamplingParams
from formers.serving.async_engine import AsyncEngine, EngineDeadError, EngineStepError

from .server_fixtures import hf  # noqa: F401 (fixture)


@pytest.fixture(scope="module")
def model_and_tokenizer():
    tokenizer = AutoTokenizer.from_pretrained(DEFAULT_MODEL_NAME)
    return AutoModelForCausalLM.from_pretrained(DEFAULT_MODEL_NAME, torch_dtype=torch.float32), tokenizer


@pytest.fixture
def engine(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    async_engine = AsyncEngine(LLMEngine(model, tokenizer, EngineConfig(max_num_seqs=8, num_blocks=512,
                                                                        max_waiting=4)))
    yield async_engine
    async_engine.shutdown()


GREEDY = dict(temperature=0.0, repetition_penalty=1.3)  # the default model's generation_config penalty
LONG = SamplingParams(max_tokens=400, temperature=0.0, ignore_eos=True)


async def _collect(engine, request_id, ids, params):
    return [out async for out in engine.generate(request_id, ids, params)]


async def _await(predicate, timeout=2.0):
    """Poll while the event loop stays alive (a closed loop would make the engine drop its requests)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


def _wait(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


def test_concurrent_generate_equals_transformers_greedy(engine, hf):
    prompts = ["The Python interpreter", "A list is", "def main():"]
    ids = [hf.prompt_ids(p) for p in prompts]

    async def run():
        return await asyncio.gather(*(_collect(engine, f"r{i}", p, SamplingParams(max_tokens=12, **GREEDY))
                                      for i, p in enumerate(ids)))

    for prompt_ids, outputs in zip(ids, asyncio.run(run())):
        assert outputs[-1].finished and all(not o.finished for o in outputs[:-1])
        assert outputs[-1].token_ids == hf.greedy(prompt_ids, 12)
        assert "".join(o.new_text for o in outputs) == outputs[-1].text


def test_cancelled_consumer_aborts_and_frees_blocks_at_once(engine):
    async def run():
        seen = asyncio.Event()

        async def consume():
            async for _out in engine.generate("long", [5, 6, 7] * 20, LONG):
                seen.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(seen.wait(), 30)
        assert engine.stats()["kv_blocks_used"] > 0
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await _await(lambda: engine.stats()["kv_blocks_used"] == 0 and engine.stats()["running"] == 0)

    asyncio.run(run())
    assert engine.stats()["finished"]["abort"] == 1
    assert engine.stats()["generation_tokens_total"] < 400


def test_closing_the_iterator_aborts(engine):
    async def run():
        stream = engine.generate("closed", [5, 6, 7], LONG)
        await stream.__anext__()
        await stream.aclose()
        await _await(lambda: engine.stats()["finished"]["abort"] == 1 and engine.stats()["kv_blocks_used"] == 0)

    asyncio.run(run())


def test_add_errors_reach_only_their_caller(engine):
    async def run():
        good = asyncio.create_task(_collect(engine, "good", [5, 6, 7], SamplingParams(max_tokens=8, **GREEDY)))
        with pytest.raises(ServingError, match="prompt_token_ids"):
            await _collect(engine, "bad", [10**9], SamplingParams(max_tokens=2))
        with pytest.raises(ServingError):
            await _collect(engine, "empty", [], SamplingParams(max_tokens=2))
        return await good

    assert asyncio.run(run())[-1].finish_reason in ("stop", "length")


def test_full_queue_raises_overloaded(engine):
    async def run():
        holders = []
        # in waves of max_waiting: a request waits until the next step admits it
        for wave, (key, target) in enumerate([("running", 4), ("running", 8), ("waiting", 4)]):
            holders += [asyncio.create_task(_collect(engine, f"h{wave}{i}", [5, 6, 7], LONG)) for i in range(4)]
            await asyncio.sleep(0)
            _wait(lambda: engine.stats()[key] == target, timeout=10)
        with pytest.raises(EngineOverloadedError):
            await _collect(engine, "one-too-many", [5, 6, 7], SamplingParams(max_tokens=2))
        for task in holders:
            task.cancel()
        await asyncio.gather(*holders, return_exceptions=True)

    asyncio.run(run())
    _wait(lambda: engine.stats()["kv_blocks_used"] == 0)


def test_step_error_fails_the_requests_in_flight_and_the_loop_goes_on(engine, monkeypatch):
    real_step, calls = engine.engine.step, {"n": 0}

    def failing_step():
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("boom")
        return real_step()

    monkeypatch.setattr(engine.engine, "step", failing_step)

    async def run():
        return await asyncio.gather(_collect(engine, "a", [5, 6, 7], LONG), _collect(engine, "b", [8, 9], LONG),
                                    return_exceptions=True)

    results = asyncio.run(run())
    assert all(isinstance(r, EngineStepError) and "boom" in str(r) for r in results), results
    assert engine.is_running and engine.stats()["kv_blocks_used"] == 0
    after = asyncio.run(_collect(engine, "c", [5, 6, 7], SamplingParams(max_tokens=4, **GREEDY)))
    assert after[-1].finished


def test_two_event_loops_share_one_engine(engine):
    results = {}

    def worker(name):
        results[name] = asyncio.run(_collect(engine, name, [5, 6, 7], SamplingParams(max_tokens=6, **GREEDY)))

    threads = [threading.Thread(target=worker, args=(f"t{i}",)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert [results[f"t{i}"][-1].token_ids for i in range(3)] == [results["t0"][-1].token_ids] * 3


def test_shutdown_fails_requests_in_flight_and_refuses_new_ones(engine):
    async def run():
        task = asyncio.create_task(_collect(engine, "inflight", [5, 6, 7], LONG))
        await asyncio.sleep(0)
        _wait(lambda: engine.stats()["running"] == 1)
        await asyncio.get_running_loop().run_in_executor(None, engine.shutdown)
        with pytest.raises(EngineDeadError):
            await task
        with pytest.raises(EngineDeadError):
            await _collect(engine, "late", [5, 6, 7], SamplingParams(max_tokens=2))

    asyncio.run(run())
    assert not engine.is_running and not engine._thread.is_alive()
