"""Serving throughput and latency: `formers serve` under concurrent streaming clients vs (a) sequential
formers `generate()` and (b) transformers 4.45.2 `generate()` on static padded batches of the same
requests, at every concurrency level in one run; and TTFT with a shared system prompt, cold vs prefix hit.

Workload (seeded): per concurrency level C, max(2C, 8) requests (capped by --max-requests; or --requests:
one count for every level, or one per level) with prompt lengths uniform in --prompt-range and output
lengths in --output-range (random token ids, EOS ignored, so every request produces exactly its length).
All requests of a level arrive at t=0 and C are kept in flight. Each level's prompts start with a token of
their own, so no level hits the server's prefix cache with an earlier level's prompts. Each side runs in
its own process, one after the other:

    python bench/serve.py            # the issue's sweep: C = 1 4 16 64, prompts 64-1024, outputs 16-256
    python bench/serve.py --requests 32 --concurrency 16 --prompt-range 64 512 --output-range 16 128
    python bench/serve.py --model formers/default --requests 8 --concurrency 1 4 \
        --prompt-range 16 128 --output-range 8 32   # a quick smoke run

The server serves every request of a level. The baselines take the same requests in the same order —
(a) one at a time, (b) in static batches of C — and stop starting new ones at a level once the next would
likely end past --sequential-budget / --static-budget seconds (at least one request / batch). (b) skips a
level outright when one batch of C is predicted, from the previous level's seconds per request, to take
longer than --static-max-batch (4.45.2 at C = 64 pads 64 prompts to ~1,000 tokens and copies its whole
growing cache every step: many minutes on a 2-core CPU); the table says so. Their throughput is over the
requests they ran (the table shows how many). These bounds apply only when the counts are automatic; with
--requests every request runs (give the three flags to bound them anyway). At the defaults the sweep takes
~12-15 minutes on an idle 2-core machine (estimated from CPU time of runs under load).

Reported per concurrency: output tok/s, TTFT and ITL p50/p99 (server: per streamed token, measured by
the client; generate(): the first token comes after the request's (batch's) prefill and everything run
before it, token times from a streamer, so a prefill is never run twice).
Targets (issue 14): at concurrency 16 >= 3x the throughput of (b); prefix-hit TTFT <= 15% of cold.
The last line is JSON (for bench-tools/run_quiet.py): serve_over_static / serve_over_sequential per level.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import collect, emit, smollm_checkpoint


def request_count(args, level: int) -> int:
    """Requests of the `level`-th concurrency level: --requests, else max(2C, 8) capped at --max-requests."""
    if args.requests is not None:
        return args.requests[level] if len(args.requests) > 1 else args.requests[0]
    return min(max(2 * args.concurrency[level], 8), args.max_requests)


def workload(args, level: int) -> list[tuple[list[int], int]]:
    """The requests of the `level`-th concurrency level: (prompt ids, output length)."""
    rng = random.Random(args.seed)
    count = request_count(args, level)
    jobs = [([rng.randrange(3, args.vocab) for _ in range(rng.randint(*args.prompt_range))],
             rng.randint(*args.output_range)) for _ in range(count)]
    return [([3 + level] + prompt[1:], n) for prompt, n in jobs]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(tokens: int, seconds: float, ttft: list[float], itl: list[float]) -> dict:
    return {"tok_s": tokens / seconds, "ttft_p50": percentile(ttft, 0.5), "ttft_p99": percentile(ttft, 0.99),
            "itl_p50": percentile(itl, 0.5), "itl_p99": percentile(itl, 0.99)}


# -- the server side: one process serving, this one loading it -------------------------------------
def worker_server(args) -> None:
    import torch

    from formers import AutoModelForCausalLM, AutoTokenizer
    from formers.serving import EngineConfig, LLMEngine
    from formers.serving.async_engine import AsyncEngine
    from formers.serving.http import app_for_engine, serve_forever

    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer or args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, torch_dtype=getattr(torch, args.dtype),
                                                 device_map=args.device)
    # KV pages for the highest level's requests at the longest prompt + output (a server sized for its load
    # never preempts), plus the shared-prefix test's
    longest = args.prompt_range[1] + args.output_range[1]
    blocks = args.kv_blocks or max(args.concurrency) * -(-longest // 16) + 2 * -(-(args.system_tokens + 32) // 16)
    config = EngineConfig(max_num_seqs=max(args.concurrency), max_batched_tokens=args.max_batched_tokens,
                          block_size=16, num_blocks=blocks)
    engine = AsyncEngine(LLMEngine(model, tokenizer, config))
    serve_forever(app_for_engine(engine, tokenizer, "bench"), port=args.port, log_level="warning")


async def _one(client, prompt: list[int], max_tokens: int, ttft: list, itl: list) -> int:
    start = time.perf_counter()
    last, tokens = None, 0
    stream = await client.completions.create(model="bench", prompt=prompt, max_tokens=max_tokens, temperature=0,
                                             logprobs=0, stream=True, extra_body={"ignore_eos": True})
    async for chunk in stream:  # logprobs=0: one chunk per token, so chunk times are token times
        count = len(chunk.choices[0].logprobs.tokens) if chunk.choices and chunk.choices[0].logprobs else 0
        if not count:
            continue
        now = time.perf_counter()
        if last is None:
            ttft.append(now - start)
        else:
            itl.append((now - last) / count)
        last, tokens = now, tokens + count
    return tokens


async def load(url: str, jobs: list[tuple[list[int], int]], concurrency: int) -> dict:
    import openai

    client = openai.AsyncOpenAI(base_url=url, api_key="none", max_retries=0, timeout=3600)
    semaphore, ttft, itl = asyncio.Semaphore(concurrency), [], []

    async def limited(prompt, max_tokens):
        async with semaphore:
            return await _one(client, prompt, max_tokens, ttft, itl)

    start = time.perf_counter()
    tokens = sum(await asyncio.gather(*(limited(p, n) for p, n in jobs)))
    elapsed = time.perf_counter() - start
    await client.close()
    return dict(summary(tokens, elapsed, ttft, itl), requests=len(jobs), of=len(jobs), seconds=elapsed)


async def prefix_ttft(url: str, args) -> dict:
    """TTFT of two requests sharing a --system-tokens prefix: the first computes it, the second hits."""
    import openai

    rng = random.Random(args.seed + 1)
    system = [rng.randrange(3, args.vocab) for _ in range(args.system_tokens)]
    client = openai.AsyncOpenAI(base_url=url, api_key="none", max_retries=0, timeout=3600)
    times = []
    for _ in range(2):
        ttft: list[float] = []
        await _one(client, system + [rng.randrange(3, args.vocab) for _ in range(16)], 2, ttft, [])
        times.append(ttft[0])
    await client.close()
    return {"cold_s": times[0], "hit_s": times[1], "hit_over_cold": times[1] / times[0]}


def run_server_side(args) -> dict:
    command = [sys.executable, __file__, "--worker", "server", *sys.argv[1:]]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{args.port}/v1"
    try:
        _wait_for(url, server)
        results = {str(c): asyncio.run(load(url, workload(args, i), c)) for i, c in enumerate(args.concurrency)}
        results["prefix"] = asyncio.run(prefix_ttft(url, args))
    finally:
        server.terminate()
        server.wait(60)
    return results


def _wait_for(url: str, server: subprocess.Popen) -> None:
    import urllib.request

    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited:\n{server.stderr.read()[-3000:]}")
        try:
            urllib.request.urlopen(url.removesuffix("/v1") + "/health", timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError("the server did not come up")


# -- generate() baselines ----------------------------------------------------------------------------
def worker_generate(args) -> None:
    """--worker formers: each request alone (a); --worker transformers: static padded batches of C (b)."""
    import torch

    lib = __import__(args.worker)
    folder = args.model
    if args.worker == "transformers" and folder == "formers/default":
        from formers.default_model import CHECKPOINT_DIR

        folder = str(CHECKPOINT_DIR)  # the bundled model's files, by path
    model = lib.AutoModelForCausalLM.from_pretrained(folder, torch_dtype=getattr(torch, args.dtype),
                                                     device_map=args.device)
    sequential = args.worker == "formers"
    budget = args.sequential_budget if sequential else args.static_budget
    results, per_request = {}, None  # seconds per request of the last level's batches
    for i, c in enumerate(args.concurrency):
        size, jobs = 1 if sequential else c, workload(args, i)
        predicted = per_request * size if per_request is not None else None
        if not sequential and args.static_max_batch is not None and predicted and predicted > args.static_max_batch:
            results[str(c)] = {"requests": 0, "of": len(jobs), "skipped": f"one batch of {c} predicted to take "
                               f"{predicted:.0f} s (> --static-max-batch {args.static_max_batch:.0f})"}
            continue
        results[str(c)] = _static_batches(model, jobs, size, args.device, budget)
        per_request = results[str(c)]["seconds"] / results[str(c)]["requests"]
    emit(results)


class _TokenClock:
    """A generate() streamer that only notes when each new token (after the prompt) came out."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._prompt_seen = False

    def put(self, _tokens) -> None:
        if self._prompt_seen:
            self.times.append(time.perf_counter())
        self._prompt_seen = True

    def end(self) -> None:
        pass


def _static_batches(model, jobs, size: int, device: str, budget: float | None) -> dict:
    """The jobs in batches of `size` (left-padded to the batch's longest prompt, run to its longest output),
    in order, until the next batch would likely end past `budget` seconds (at least one batch)."""
    import torch

    clock, ttft, itl, tokens, done = 0.0, [], [], 0, 0
    for first in range(0, len(jobs), size):
        if budget is not None and done and clock + clock / (first // size) > budget:
            break
        batch = jobs[first:first + size]
        width = max(len(p) for p, _ in batch)
        ids = torch.tensor([[0] * (width - len(p)) + p for p, _ in batch], device=device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p, _ in batch], device=device)
        longest = max(n for _, n in batch)
        streamer = _TokenClock()
        _sync(device)
        start = time.perf_counter()
        model.generate(ids, attention_mask=mask, max_new_tokens=longest, min_new_tokens=longest, do_sample=False,
                       eos_token_id=None, pad_token_id=0, streamer=streamer)
        _sync(device)
        total = time.perf_counter() - start
        first_token = streamer.times[0] - start
        ttft += [clock + first_token] * len(batch)
        itl += [(total - first_token) / max(longest - 1, 1)] * len(batch)
        clock += total
        tokens += sum(n for _, n in batch)  # tokens the requests asked for; padding rows' extra work is waste
        done += len(batch)
    return dict(summary(tokens, clock, ttft, itl), requests=done, of=len(jobs), seconds=clock)


def _sync(device: str) -> None:
    if device not in (None, "cpu"):
        import torch

        torch.cuda.synchronize()


def run_worker(kind: str) -> dict:
    command = [sys.executable, __file__, "--worker", kind, *sys.argv[1:]]
    done = subprocess.run(command, check=False, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{kind} worker failed:\n{done.stderr[-3000:]}")
    return collect(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="default: a SmolLM-135M-shaped random Llama")
    parser.add_argument("--tokenizer", default=None, help="for a model folder without one (default: the "
                        "bundled model's; token ids are random anyway)")
    parser.add_argument("--requests", type=int, nargs="+", default=None, help="one count, or one per level "
                        "(default: max(2C, 8) per level C, capped at --max-requests)")
    parser.add_argument("--max-requests", type=int, default=64)
    parser.add_argument("--static-budget", type=float, default=None, help="seconds of (b) per level (default: "
                        "45 with automatic counts, unbounded with --requests)")
    parser.add_argument("--static-max-batch", type=float, default=None, help="skip (b) at a level whose one "
                        "batch is predicted (from the last level's seconds per request) to take longer (default: "
                        "300 with automatic counts, never with --requests)")
    parser.add_argument("--sequential-budget", type=float, default=None, help="seconds of (a) per level "
                        "(default: 20 with automatic counts, unbounded with --requests)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--prompt-range", type=int, nargs=2, default=[64, 1024])
    parser.add_argument("--output-range", type=int, nargs=2, default=[16, 256])
    parser.add_argument("--system-tokens", type=int, default=1000)
    parser.add_argument("--max-batched-tokens", type=int, default=2048)
    parser.add_argument("--kv-blocks", type=int, default=None, help="KV pages of 16 tokens (default: enough for "
                        "the highest level's requests at the longest prompt + output)")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", choices=["server", "formers", "transformers"], default=None)
    args = parser.parse_args()
    if args.model is None:
        args.model = str(smollm_checkpoint())
        args.tokenizer = args.tokenizer or "formers/default"
    if args.requests is not None and len(args.requests) not in (1, len(args.concurrency)):
        parser.error("--requests: give one count or one per --concurrency level")
    if args.requests is None:
        args.static_budget = 45.0 if args.static_budget is None else args.static_budget
        args.sequential_budget = 20.0 if args.sequential_budget is None else args.sequential_budget
        args.static_max_batch = 300.0 if args.static_max_batch is None else args.static_max_batch
    args.vocab = _vocab_size(args.model)
    if args.worker == "server":
        return worker_server(args)
    if args.worker is not None:
        return worker_generate(args)
    start = time.perf_counter()
    served = run_server_side(args)
    sequential, static = run_worker("formers"), run_worker("transformers")
    report(args, served, sequential, static, time.perf_counter() - start)


def _vocab_size(model: str) -> int:
    from formers import AutoConfig

    return min(AutoConfig.from_pretrained(model).vocab_size, 4096)  # ids every tokenizer here can decode


def _ratio(served: dict, baseline: dict) -> float | None:
    return served["tok_s"] / baseline["tok_s"] if "tok_s" in baseline else None


def _times(ratio: float | None) -> str:
    return "not run" if ratio is None else f"{ratio:.2f}x"


def report(args, served: dict, sequential: dict, static: dict, seconds: float) -> None:
    print(f"{'conc':>5} {'side':>22} {'requests':>9} {'tok/s':>9} {'TTFT p50':>9} {'p99':>8} {'ITL p50':>8} "
          f"{'p99':>8}")
    for c in map(str, args.concurrency):
        for side, r in (("formers serve", served[c]), ("formers generate() seq", sequential[c]),
                        ("4.45.2 static batches", static[c])):
            if "skipped" in r:
                print(f"{c:>5} {side:>22} {'0/' + str(r['of']):>9}   not run: {r['skipped']}")
                continue
            print(f"{c:>5} {side:>22} {str(r['requests']) + '/' + str(r['of']):>9} {r['tok_s']:9.1f} "
                  f"{r['ttft_p50']:9.3f} {r['ttft_p99']:8.3f} {r['itl_p50']:8.4f} {r['itl_p99']:8.4f}")
    prefix = served["prefix"]
    print(f"shared {args.system_tokens}-token prefix: cold TTFT {prefix['cold_s']:.3f}s, hit {prefix['hit_s']:.3f}s "
          f"({prefix['hit_over_cold']:.1%} of cold; target <= 15%)")
    ratios = {c: _ratio(served[str(c)], static[str(c)]) for c in args.concurrency}
    over_sequential = {c: _ratio(served[str(c)], sequential[str(c)]) for c in args.concurrency}
    print("throughput formers serve / 4.45.2 static batches: "
          + ", ".join(f"c={c}: {_times(r)}" for c, r in ratios.items()) + " (target at c=16: >= 3x)")
    print("throughput formers serve / sequential formers generate(): "
          + ", ".join(f"c={c}: {_times(r)}" for c, r in over_sequential.items()))
    print(f"whole run: {seconds:.0f} s")
    print(json.dumps({"served": served, "sequential": sequential, "static": static, "serve_over_static": ratios,
                      "serve_over_sequential": over_sequential, "prefix_hit_over_cold": prefix["hit_over_cold"],
                      "seconds": seconds}))


if __name__ == "__main__":
    main()
