"""`formers serve --tensor-parallel-size 2` as a real process (rank 0 + one gloo rank it starts) on the bundled
model, through the `openai` client: completions and chat, greedy and seeded sampling, plain and streamed,
several at once, token for token equal to one-process `generate()`; an idle rank spends no CPU; a killed
rank makes the server exit with an error naming it."""
from __future__ import annotations

import concurrent.futures
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from formers import AutoModelForCausalLM, AutoTokenizer
from formers.default_model import DEFAULT_MODEL_NAME
from formers.structured.grammar import Grammar

from .launch import free_port

openai = pytest.importorskip("openai")
pytest.importorskip("fastapi")

NAME = "tp-default"
PROMPTS = ["The Python interpreter", "A list is", "def main():"]
CHAT = [{"role": "user", "content": "What is a tuple?"}]


@contextlib.contextmanager
def serving(*extra: str):
    """(process, client) of a 2-rank server starting up; every rank is killed at the end whatever happened."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "formers", "serve", "--tensor-parallel-size", "2", "--port", str(port),
         "--served-model-name", NAME, "--kv-blocks", "64", "--max-num-seqs", "4", "--log-level", "warning", *extra],
        env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="-", max_retries=0, timeout=60)
    try:
        yield process, client
    finally:
        followers = _children(process.pid) if process.poll() is None else []
        for pid in followers:
            _kill(pid)
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)


@pytest.fixture(scope="module")
def server():
    with serving() as (process, client):
        yield process, client


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _wait_up(process, client) -> None:
    deadline = time.monotonic() + 120
    while True:
        try:
            client.models.list()
            return
        except openai.APIConnectionError:
            assert process.poll() is None, process.stdout.read()
            assert time.monotonic() < deadline, "formers serve --tensor-parallel-size 2 did not come up"
            time.sleep(0.2)


@pytest.fixture(scope="module")
def reference():
    """One-process generate() on the same checkpoint: greedy / seeded-sampling new ids of a prompt's ids."""
    tokenizer = AutoTokenizer.from_pretrained(DEFAULT_MODEL_NAME)
    model = AutoModelForCausalLM.from_pretrained(DEFAULT_MODEL_NAME, torch_dtype=torch.float32)

    def generate(ids: list[int], max_new_tokens: int, seed: int | None = None, temperature: float = 1.0, **extra):
        kwargs = {"do_sample": False} if seed is None else \
            {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0}
        kwargs.update(extra)
        if seed is not None:
            torch.manual_seed(seed)
        out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                             max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id, **kwargs)
        return out[0, len(ids):].tolist()

    def logprobs_of(ids: list[int], pieces: list[str]) -> list[tuple[int, float]]:
        """For each returned token string: (id, log-probability) of the most likely vocabulary entry that
        decodes to it, after the prompt and the ids before it (fp32 log-softmax, teacher-forced)."""
        by_piece: dict[str, list[int]] = {}
        for token in range(model.config.vocab_size):
            by_piece.setdefault(tokenizer.decode([token]), []).append(token)
        chosen = []
        with torch.no_grad():
            for piece in pieces:
                logits = model(torch.tensor([ids + [t for t, _ in chosen]])).logits[0, -1]
                scores = torch.log_softmax(logits.float(), dim=-1)
                best = max(by_piece[piece], key=lambda t: scores[t].item())
                chosen.append((best, scores[best].item()))
        return chosen

    def prompt_logprobs(ids: list[int]) -> list[float]:
        with torch.no_grad():
            scores = torch.log_softmax(model(torch.tensor([ids])).logits[0, :-1].float(), dim=-1)
        return scores.gather(1, torch.tensor(ids[1:])[:, None])[:, 0].tolist()

    return tokenizer, generate, logprobs_of, prompt_logprobs


@pytest.mark.parametrize("argv,message", [
    (["--tp", "0"], "--tensor-parallel-size: expected an integer >= 1, got 0"),
    (["--tp", "2", "--tp-timeout", "0"], "--tp-timeout: expected a number of seconds > 0"),
    (["--tp", "2", "--device", "mps"], "tensor-parallel serving runs on cpu (gloo) or cuda (NCCL), got 'mps'"),
])
def test_bad_arguments_are_refused_before_any_rank_starts(argv, message, capsys):
    from formers.cli import main

    assert main(["serve", *argv]) == 2
    assert message in capsys.readouterr().err


def test_tp_alias():
    from formers.cli import build_parser

    assert build_parser().parse_args(["serve", "--tp", "4"]).tensor_parallel_size == 4
    assert build_parser().parse_args(["serve"]).tensor_parallel_size == 1


def _pieces(tokenizer, ids: list[int]) -> list[str]:
    return [tokenizer.decode([t]) for t in ids]


def test_outputs_equal_one_process_generate(server, reference):
    process, client = server
    tokenizer, generate, logprobs_of, prompt_logprobs = reference
    greedy = {p: generate(tokenizer(p).input_ids, 16) for p in PROMPTS}  # while the server starts
    sampled = generate(tokenizer(PROMPTS[1]).input_ids, 16, seed=1234, temperature=0.9)
    chat_ids = tokenizer.apply_chat_template(CHAT, add_generation_prompt=True, tokenize=True)
    chat_greedy = generate(chat_ids, 20)
    chat_json = generate(chat_ids, 20, grammar=Grammar.any_json(), tokenizer=tokenizer)  # pickled to rank 1
    _wait_up(process, client)
    # a client that goes away mid-stream: rank 0 aborts its request, and rank 1 must do the same
    stream = client.completions.create(model=NAME, prompt=PROMPTS[0], max_tokens=400, temperature=0, stream=True,
                                       extra_body={"ignore_eos": True})
    for _ in zip(range(3), stream):
        pass
    stream.close()

    def complete(prompt: str, **kwargs):
        return client.completions.create(model=NAME, prompt=prompt, max_tokens=16, logprobs=0, **kwargs).choices[0]

    with concurrent.futures.ThreadPoolExecutor(4) as pool:  # in one batch on the ranks
        jobs = {p: pool.submit(complete, p, temperature=0) for p in PROMPTS}
        seeded = pool.submit(complete, PROMPTS[1], temperature=0.9, seed=1234)
        chat = pool.submit(client.chat.completions.create, model=NAME, messages=CHAT, max_tokens=20, temperature=0,
                           logprobs=True)
        structured = pool.submit(client.chat.completions.create, model=NAME, messages=CHAT, max_tokens=20,
                                 temperature=0, logprobs=True, response_format={"type": "json_object"})
    for prompt, job in jobs.items():
        choice = job.result()
        assert choice.logprobs.tokens == _pieces(tokenizer, greedy[prompt]), prompt
        assert choice.text == tokenizer.decode(greedy[prompt], skip_special_tokens=True)
    assert seeded.result().logprobs.tokens == _pieces(tokenizer, sampled)
    message = chat.result().choices[0]
    assert [t.token for t in message.logprobs.content] == _pieces(tokenizer, chat_greedy)
    assert message.message.content == tokenizer.decode(chat_greedy, skip_special_tokens=True)
    assert [t.token for t in structured.result().choices[0].logprobs.content] == _pieces(tokenizer, chat_json)

    # unseeded sampling draws from the engine's shared generator, seeded alike on both ranks: had rank 1
    # drawn other tokens, its embedding shard would have been fed other ids and rank 0's logits would be wrong
    unseeded = client.completions.create(model=NAME, prompt=PROMPTS[2], max_tokens=16, temperature=1.0,
                                         logprobs=0).choices[0].logprobs
    expected = logprobs_of(tokenizer(PROMPTS[2]).input_ids, unseeded.tokens)
    assert max(abs(got - want) for got, (_, want) in zip(unseeded.token_logprobs, expected)) < 1e-4

    # prompt logprobs: one forward outside the engine's steps, run on both ranks (AsyncEngine.call)
    ids = tokenizer(PROMPTS[0]).input_ids
    echoed = client.completions.create(model=NAME, prompt=PROMPTS[0], max_tokens=1, temperature=0, echo=True,
                                       logprobs=1).choices[0].logprobs.token_logprobs
    assert echoed[0] is None
    assert max(abs(a - b) for a, b in zip(echoed[1:len(ids)], prompt_logprobs(ids))) < 1e-4

    streamed = client.completions.create(model=NAME, prompt=PROMPTS[1], max_tokens=16, temperature=0.9, seed=1234,
                                         stream=True)
    assert "".join(c.choices[0].text for c in streamed if c.choices) == tokenizer.decode(sampled,
                                                                                         skip_special_tokens=True)
    streamed = client.chat.completions.create(model=NAME, messages=CHAT, max_tokens=20, temperature=0, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == \
        tokenizer.decode(chat_greedy, skip_special_tokens=True)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def test_idle_rank_sleeps_and_a_killed_rank_stops_the_server(server):
    process, client = server
    _wait_up(process, client)
    (follower,) = _children(process.pid)
    before = _cpu_seconds(follower)
    time.sleep(3.0)  # idle: rank 1 waits in a collective, woken by rank 0's heartbeat
    idle = _cpu_seconds(follower) - before
    assert idle < 0.3, f"the idle rank used {idle:.2f} s of CPU in 3 s"
    _kill(follower)
    killed_at = time.monotonic()
    output = process.communicate(timeout=30)[0]
    elapsed = time.monotonic() - killed_at
    assert process.returncode == 2, output
    assert "formers: error:" in output and "rank 1 of 2" in output, output
    assert elapsed < 15, f"the server took {elapsed:.1f} s to stop"
    print(f"idle rank CPU {idle:.3f} s in 3 s; server stopped {elapsed:.1f} s after rank 1 was killed")


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists() and Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] != "Z":
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@pytest.mark.slow  # two more servers (~30 s on 2 busy cores)
def test_sigterm_stops_every_rank_and_a_hung_rank_times_out():
    with serving() as (process, client):
        _wait_up(process, client)
        (follower,) = _children(process.pid)
        assert client.completions.create(model=NAME, prompt=PROMPTS[0], max_tokens=4).usage.completion_tokens == 4
        process.terminate()
        output = process.communicate(timeout=30)[0]
        assert process.returncode == -signal.SIGTERM and "error" not in output.lower(), output  # rank 1 got STOP
        assert _wait_gone(follower, 10), "rank 1 outlived rank 0's graceful shutdown"
    with serving("--tp-timeout", "4") as (process, client):
        _wait_up(process, client)
        (follower,) = _children(process.pid)
        os.kill(follower, signal.SIGSTOP)  # alive but stuck: only the collective timeout can tell
        stopped_at = time.monotonic()
        output = process.communicate(timeout=60)[0]
        elapsed = time.monotonic() - stopped_at
        assert process.returncode == 2 and "Timed out" in output and "rank 0 of 2" in output, output
        assert elapsed < 4 + 15, f"the server took {elapsed:.1f} s to stop"
        assert _wait_gone(follower, 10), "the stuck rank was not killed"
        print(f"a stuck rank stopped the server after {elapsed:.1f} s (--tp-timeout 4)")
