"""The server under concurrent load: 32 streaming clients, clients that go away mid-stream, a soak,
back-pressure when the waiting queue is full."""
from __future__ import annotations

import asyncio
import os
import random
import threading
import time

import pytest

from .server_fixtures import DEFAULT_NAME, SCRIPTED_NAME, hf, openai, scripted_server, served  # noqa: F401

TOPICS = ["lists", "dicts", "sets", "tuples", "strings", "files", "sockets", "threads", "classes", "modules",
          "exceptions", "decorators", "generators", "iterators", "the GIL", "asyncio"]


async def _stream_completion(client, prompt: str, max_tokens: int, **kwargs) -> tuple[str, str, int]:
    stream = await client.completions.create(model=DEFAULT_NAME, prompt=prompt, max_tokens=max_tokens, stream=True,
                                             stream_options={"include_usage": True}, **kwargs)
    text, reason, tokens = "", None, None
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].text
            reason = chunk.choices[0].finish_reason or reason
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
    return text, reason, tokens


def test_32_concurrent_streams_equal_transformers_greedy(served, hf):
    prompts = [f"Python {topic} are" if i % 2 else f"In Python, {topic}" for i, topic in enumerate(TOPICS * 2)]
    lengths = [8 + (i * 7) % 17 for i in range(32)]  # 8..24 tokens: requests leave the batch at different steps

    async def run():
        client = served.async_client()
        try:
            return await asyncio.gather(*(_stream_completion(client, p, n, temperature=0)
                                          for p, n in zip(prompts, lengths)))
        finally:
            await client.close()

    results = asyncio.run(run())
    for prompt, n, (text, reason, tokens) in zip(prompts, lengths, results):
        expected = hf.greedy(hf.prompt_ids(prompt), n)
        assert text == hf.text(expected), prompt
        assert reason == ("stop" if len(expected) < n else "length")
        assert tokens == len(expected)
    after = served.wait_idle()
    assert after["formers_kv_blocks_used"] == 0


def _blocks_used(served) -> float:
    return served.metrics()["formers_kv_blocks_used"]


def test_client_disconnect_mid_stream_aborts_and_frees_blocks(served):
    baseline = served.wait_idle()
    client = served.client()
    stream = client.completions.create(model=DEFAULT_NAME, prompt="A long story about Python: " * 8, max_tokens=400,
                                       temperature=0, stream=True, extra_body={"ignore_eos": True})
    received = 0
    for chunk in stream:
        received += 1
        if received == 3:
            break
    during = served.metrics()
    assert during["formers_num_requests_running"] == 1 and during["formers_kv_blocks_used"] > 0
    stream.close()  # the client goes away with ~397 tokens still to generate
    deadline = time.monotonic() + 5.0
    while (_blocks_used(served) > baseline["formers_kv_blocks_used"]) and time.monotonic() < deadline:
        time.sleep(0.02)
    after = served.metrics()
    assert after["formers_kv_blocks_used"] == baseline["formers_kv_blocks_used"]
    assert after["formers_num_requests_running"] == 0
    aborted = after['formers_engine_requests_finished_total{finish_reason="abort"}']
    assert aborted == baseline.get('formers_engine_requests_finished_total{finish_reason="abort"}', 0) + 1
    generated = after["formers_generation_tokens_total"] - baseline["formers_generation_tokens_total"]
    assert generated < 400, "the request ran to the end instead of being aborted"


def test_async_client_cancelled_mid_stream_frees_blocks(served):
    baseline = served.wait_idle()

    async def run():
        client = served.async_client()
        seen = asyncio.Event()

        async def consume():
            stream = await client.chat.completions.create(
                model=DEFAULT_NAME, messages=[{"role": "user", "content": "Tell me everything."}], max_tokens=400,
                temperature=0, stream=True, extra_body={"ignore_eos": True})
            async for _chunk in stream:
                seen.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(seen.wait(), 30)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.close()

    asyncio.run(run())
    after = served.wait_idle(timeout=5.0)
    assert after["formers_kv_blocks_used"] == baseline["formers_kv_blocks_used"]
    assert after["formers_generation_tokens_total"] - baseline["formers_generation_tokens_total"] < 400


def test_non_streaming_client_that_disconnects_is_aborted(served):
    import http.client
    import json

    baseline = served.wait_idle()
    connection = http.client.HTTPConnection(served.server.host, served.server.port, timeout=60)
    body = {"model": DEFAULT_NAME, "prompt": "Once upon a time", "max_tokens": 400, "ignore_eos": True}
    connection.request("POST", "/v1/completions", body=json.dumps(body).encode(), headers=served.auth())
    deadline = time.monotonic() + 10
    while served.metrics()["formers_num_requests_running"] == 0:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    connection.close()
    after = served.wait_idle(timeout=5.0)
    assert after["formers_kv_blocks_used"] == baseline["formers_kv_blocks_used"]
    assert after["formers_generation_tokens_total"] - baseline["formers_generation_tokens_total"] < 400


def _soak(served, requests: int, concurrency: int, seed: int) -> None:
    """`requests` mixed requests (streamed or not, chat or completion, greedy or seeded) with at most
    `concurrency` in flight: every one must finish, and KV usage must return to its baseline."""
    rng = random.Random(seed)
    jobs = [(rng.choice(TOPICS), rng.randint(2, 24), rng.random() < 0.5, rng.random() < 0.5, rng.randint(0, 3))
            for _ in range(requests)]
    baseline = served.wait_idle()

    async def one(client, semaphore, topic, max_tokens, stream, chat, seed):
        async with semaphore:
            kwargs = dict(model=DEFAULT_NAME, max_tokens=max_tokens, temperature=0.8, seed=seed)
            if chat:
                messages = [{"role": "user", "content": f"Explain {topic}."}]
                if not stream:
                    return (await client.chat.completions.create(messages=messages, **kwargs)).choices[0].finish_reason
                reasons = [c.choices[0].finish_reason async for c in
                           await client.chat.completions.create(messages=messages, stream=True, **kwargs)
                           if c.choices]
                return reasons[-1]
            if not stream:
                return (await client.completions.create(prompt=f"About {topic}:", **kwargs)).choices[0].finish_reason
            return (await _stream_completion(client, f"About {topic}:", max_tokens, temperature=0.8, seed=seed))[1]

    async def run():
        client = served.async_client()
        semaphore = asyncio.Semaphore(concurrency)
        try:
            return await asyncio.gather(*(one(client, semaphore, *job) for job in jobs))
        finally:
            await client.close()

    reasons = asyncio.run(run())
    assert len(reasons) == requests and all(r in ("stop", "length") for r in reasons), reasons
    after = served.wait_idle()
    assert after["formers_kv_blocks_used"] == baseline["formers_kv_blocks_used"]
    finished = sum(after.get(f'formers_requests_finished_total{{finish_reason="{r}"}}', 0) for r in ("stop", "length"))
    before = sum(baseline.get(f'formers_requests_finished_total{{finish_reason="{r}"}}', 0) for r in ("stop", "length"))
    assert finished - before == requests


def test_soak_100_requests_at_concurrency_16(served):
    _soak(served, requests=100, concurrency=16, seed=0)


@pytest.mark.slow
def test_soak_500_requests_at_concurrency_16_rss_returns(served):
    psutil = pytest.importorskip("psutil")
    process = psutil.Process(os.getpid())
    _soak(served, requests=100, concurrency=16, seed=1)  # warm-up: allocator pools, caches
    rss = process.memory_info().rss
    _soak(served, requests=500, concurrency=16, seed=2)
    assert process.memory_info().rss - rss < 64 * 2**20


def test_full_waiting_queue_answers_429_and_recovers():
    """max_num_seqs=1, max_waiting=1: one request runs, one waits, the third is refused with 429."""
    server = scripted_server(max_num_seqs=1, max_waiting=1)
    client = server.client()
    long = dict(model=SCRIPTED_NAME, prompt="go", max_tokens=3000, temperature=0, stream=True,
                extra_body={"ignore_eos": True})
    stop = threading.Event()

    def hold(stream):
        for _chunk in stream:
            if stop.is_set():
                break
        stream.close()

    def wait_for(series: str) -> None:
        deadline = time.monotonic() + 10
        while server.metrics()[series] < 1:
            assert time.monotonic() < deadline, f"{series} stayed 0"
            time.sleep(0.01)

    threads = []
    try:
        for series in ("formers_num_requests_running", "formers_num_requests_waiting"):
            stream = client.completions.create(**long)
            threads.append(threading.Thread(target=hold, args=(stream,), daemon=True))
            threads[-1].start()
            wait_for(series)
        with pytest.raises(openai.RateLimitError) as caught:
            client.completions.create(model=SCRIPTED_NAME, prompt="go", max_tokens=2)
        error = caught.value.response.json()["error"]
        assert caught.value.status_code == 429 and error["code"] == "engine_overloaded"
        assert caught.value.response.headers["retry-after"] == "1"
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    server.wait_idle()
    assert client.completions.create(model=SCRIPTED_NAME, prompt="go", max_tokens=2).choices[0].text
