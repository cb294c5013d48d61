"""The OpenAI-compatible server through the real `openai` client: completions and chat (plain and
streamed), n > 1, logprobs, stop, seeds; texts, tokens and logprobs checked against transformers 4.45.2
on the same (default) checkpoint."""
from __future__ import annotations

import json

import pytest
import torch

from .server_fixtures import DEFAULT_NAME, hf, served  # noqa: F401 (fixtures)

PROMPTS = ["The Python interpreter", "A list is", "def main():", "To open a file, call"]


def test_models_lists_the_served_model(served):
    models = served.client().models.list()
    assert [m.id for m in models.data] == [DEFAULT_NAME]
    assert served.client().models.retrieve(DEFAULT_NAME).id == DEFAULT_NAME


def test_health(served):
    assert served.raw("GET", "/health") == (200, {"status": "ok"})


@pytest.mark.parametrize("prompt", PROMPTS[:2])
def test_completion_greedy_equals_transformers(served, hf, prompt):
    result = served.client().completions.create(model=DEFAULT_NAME, prompt=prompt, max_tokens=20, temperature=0)
    ids = hf.prompt_ids(prompt)
    expected = hf.greedy(ids, 20)
    choice = result.choices[0]
    assert choice.text == hf.text(expected)
    assert choice.finish_reason == ("stop" if len(expected) < 20 else "length")
    assert result.usage.prompt_tokens == len(ids)
    assert result.usage.completion_tokens == len(expected)
    assert result.usage.total_tokens == len(ids) + len(expected)


def test_completion_of_token_ids_and_several_prompts(served, hf):
    ids = [hf.prompt_ids(p) for p in PROMPTS[:3]]
    result = served.client().completions.create(model=DEFAULT_NAME, prompt=ids, max_tokens=8, temperature=0)
    assert [c.index for c in result.choices] == [0, 1, 2]
    for choice, prompt in zip(result.choices, ids):
        assert choice.text == hf.text(hf.greedy(prompt, 8))
    assert result.usage.prompt_tokens == sum(len(p) for p in ids)


def test_completion_echo(served, hf):
    result = served.client().completions.create(model=DEFAULT_NAME, prompt=PROMPTS[0], max_tokens=5, temperature=0,
                                                echo=True)
    ids = hf.prompt_ids(PROMPTS[0])
    assert result.choices[0].text == hf.tokenizer.decode(ids) + hf.text(hf.greedy(ids, 5))


def test_streamed_completion_with_usage_equals_plain(served):
    client = served.client()
    plain = client.completions.create(model=DEFAULT_NAME, prompt=PROMPTS[2], max_tokens=16, temperature=0)
    chunks = list(client.completions.create(model=DEFAULT_NAME, prompt=PROMPTS[2], max_tokens=16, temperature=0,
                                            stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == plain.choices[0].text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == plain.choices[0].finish_reason
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == plain.usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1])


def _chat_ids(hf, messages):
    return hf.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)


def test_chat_greedy_equals_transformers_with_template(served, hf):
    messages = [{"role": "system", "content": "You answer briefly."}, {"role": "user", "content": "What is a tuple?"}]
    result = served.client().chat.completions.create(model=DEFAULT_NAME, messages=messages, max_tokens=24,
                                                     temperature=0)
    ids = _chat_ids(hf, messages)
    expected = hf.greedy(ids, 24)
    message = result.choices[0].message
    assert message.role == "assistant" and message.content == hf.text(expected)
    assert message.tool_calls is None
    assert result.usage.prompt_tokens == len(ids) and result.usage.completion_tokens == len(expected)


def test_chat_stream_with_usage_equals_plain(served):
    client = served.client()
    messages = [{"role": "user", "content": [{"type": "text", "text": "How do I sort a list?"}]}]
    plain = client.chat.completions.create(model=DEFAULT_NAME, messages=messages, max_completion_tokens=20,
                                           temperature=0)
    chunks = list(client.chat.completions.create(model=DEFAULT_NAME, messages=messages, max_completion_tokens=20,
                                                 temperature=0, stream=True,
                                                 stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    assert chunks[-2].choices[0].finish_reason == plain.choices[0].finish_reason
    assert chunks[-1].usage.model_dump()["prompt_tokens"] == plain.usage.prompt_tokens
    assert chunks[-1].usage.completion_tokens == plain.usage.completion_tokens


def test_chat_stream_without_include_usage_has_no_usage_chunk(served):
    chunks = list(served.client().chat.completions.create(
        model=DEFAULT_NAME, messages=[{"role": "user", "content": "hi"}], max_tokens=4, temperature=0, stream=True))
    assert all(c.choices for c in chunks) and all(c.usage is None for c in chunks)


def test_seeded_sampling_reproduces_and_equals_transformers(served, hf):
    client = served.client()
    kwargs = dict(model=DEFAULT_NAME, prompt=PROMPTS[1], max_tokens=16, temperature=0.9)
    first = client.completions.create(seed=1234, **kwargs).choices[0].text
    assert client.completions.create(seed=1234, **kwargs).choices[0].text == first
    others = {client.completions.create(seed=s, **kwargs).choices[0].text for s in (1, 2, 3)}
    assert others - {first}, "different seeds all gave the seed-1234 text"
    expected = hf.sample(hf.prompt_ids(PROMPTS[1]), 16, seed=1234, temperature=0.9)
    assert first == hf.text(expected)


def test_n_choices_differ_reproduce_and_stream_alike(served):
    client = served.client()
    kwargs = dict(model=DEFAULT_NAME, messages=[{"role": "user", "content": "Name a module."}], max_tokens=12,
                  temperature=1.0, seed=7, n=3)
    result = client.chat.completions.create(**kwargs)
    texts = [c.message.content for c in result.choices]
    assert [c.index for c in result.choices] == [0, 1, 2]
    assert len(set(texts)) > 1
    assert 3 <= result.usage.completion_tokens <= 36
    streamed = {0: "", 1: "", 2: ""}
    finished = set()
    for chunk in client.chat.completions.create(stream=True, **kwargs):
        for choice in chunk.choices:
            streamed[choice.index] += choice.delta.content or ""
            if choice.finish_reason:
                finished.add(choice.index)
    assert finished == {0, 1, 2}
    assert [streamed[i] for i in range(3)] == texts


def test_completion_logprobs_equal_transformers(served, hf):
    result = served.client().completions.create(model=DEFAULT_NAME, prompt=PROMPTS[3], max_tokens=10, temperature=0,
                                                logprobs=3)
    logprobs = result.choices[0].logprobs
    ids = hf.prompt_ids(PROMPTS[3])
    new_ids = hf.greedy(ids, 10)
    reference = hf.logprobs(ids, new_ids)
    assert logprobs.tokens == [hf.tokenizer.decode([t]) for t in new_ids]
    chosen = reference.gather(1, torch.tensor(new_ids)[:, None])[:, 0]
    assert torch.allclose(torch.tensor(logprobs.token_logprobs), chosen, atol=1e-4)
    for top, row in zip(logprobs.top_logprobs, reference):
        values, top_ids = row.topk(3)
        assert list(top) == [hf.tokenizer.decode([t]) for t in top_ids.tolist()]
        assert torch.allclose(torch.tensor(list(top.values())), values, atol=1e-4)
    offsets = [0] + [len(t) for t in logprobs.tokens[:-1]]
    assert logprobs.text_offset == list(torch.tensor(offsets).cumsum(0).tolist())


def test_chat_logprobs_and_top_logprobs(served):
    client = served.client()
    kwargs = dict(model=DEFAULT_NAME, messages=[{"role": "user", "content": "What is pip?"}], max_tokens=8,
                  temperature=0)
    result = client.chat.completions.create(logprobs=True, top_logprobs=2, **kwargs)
    content = result.choices[0].logprobs.content
    assert len(content) == result.usage.completion_tokens
    assert "".join(t.token for t in content) == result.choices[0].message.content
    for entry in content:
        assert len(entry.top_logprobs) == 2
        assert entry.logprob == pytest.approx(entry.top_logprobs[0].logprob)  # greedy took the best
        assert entry.bytes == list(entry.token.encode())
    streamed = [t for c in client.chat.completions.create(logprobs=True, top_logprobs=2, stream=True, **kwargs)
                if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content]
    assert [t.token for t in streamed] == [t.token for t in content]
    assert [t.logprob for t in streamed] == pytest.approx([t.logprob for t in content], abs=1e-4)
    assert client.chat.completions.create(**kwargs).choices[0].logprobs is None


@pytest.mark.parametrize("stream", [False, True])
def test_stop_string_cuts_the_text(served, stream):
    client = served.client()
    kwargs = dict(model=DEFAULT_NAME, prompt=PROMPTS[0], max_tokens=24, temperature=0)
    full = client.completions.create(**kwargs).choices[0].text
    words = full.split(" ")
    assert len(words) > 4, full
    stop = " " + words[3]
    expected = full[:full.index(stop)]
    if stream:
        chunks = list(client.completions.create(stop=[stop, "never-appears"], stream=True, **kwargs))
        text = "".join(c.choices[0].text for c in chunks)
        reason = chunks[-1].choices[0].finish_reason
    else:
        choice = client.completions.create(stop=stop, **kwargs).choices[0]
        text, reason = choice.text, choice.finish_reason
    assert (text, reason) == (expected, "stop")


def test_logit_bias_and_top_p(served):
    client = served.client()
    kwargs = dict(model=DEFAULT_NAME, prompt=PROMPTS[0], max_tokens=8, temperature=0)
    greedy = client.completions.create(logprobs=0, **kwargs).choices[0]
    first = served.tokenizer.convert_tokens_to_ids(served.tokenizer.tokenize(greedy.logprobs.tokens[0]))
    banned = client.completions.create(logit_bias={str(first[0]): -100}, **kwargs).choices[0].text
    assert not banned.startswith(greedy.logprobs.tokens[0])
    forced = client.completions.create(logit_bias={"42": 100}, **kwargs)
    assert forced.usage.completion_tokens == 8
    assert forced.choices[0].text == served.tokenizer.decode([42] * 8, skip_special_tokens=True)
    narrow = client.completions.create(model=DEFAULT_NAME, prompt=PROMPTS[0], max_tokens=8, temperature=1.5,
                                       top_p=0.01, seed=3).choices[0].text
    assert narrow == greedy.text  # top_p this small keeps only the best token: sampling is greedy


def test_presence_and_frequency_penalties_equal_reference(served, hf):
    """Reference: greedy over transformers' logits minus OpenAI's penalties on the output so far."""
    presence, frequency = 1.5, 0.7
    result = served.client().completions.create(model=DEFAULT_NAME, prompt=PROMPTS[0], max_tokens=12, temperature=0,
                                                presence_penalty=presence, frequency_penalty=frequency,
                                                extra_body={"repetition_penalty": 1.0})  # not the model's 1.3
    ids = hf.prompt_ids(PROMPTS[0])
    out: list[int] = []
    with torch.no_grad():
        for _ in range(12):
            logits = hf.model(torch.tensor([ids + out])).logits[0, -1].float()
            counts = torch.bincount(torch.tensor(out, dtype=torch.long), minlength=logits.shape[0]).float()
            token = int(torch.argmax(logits - frequency * counts - presence * (counts > 0).float()))
            out.append(token)
            if token == hf.tokenizer.eos_token_id:
                break
    assert result.choices[0].text == hf.text(out)
    plain = served.client().completions.create(model=DEFAULT_NAME, prompt=PROMPTS[0], max_tokens=12, temperature=0)
    assert plain.choices[0].text != result.choices[0].text  # the penalties changed something here


def test_metrics_exposition(served):
    served.client().completions.create(model=DEFAULT_NAME, prompt="x", max_tokens=2, temperature=0)
    values = served.metrics()
    for name in ("formers_num_requests_running", "formers_num_requests_waiting", "formers_kv_blocks_used",
                 "formers_kv_blocks_total", "formers_prefix_cache_hit_rate", "formers_generation_tokens_total",
                 "formers_time_to_first_token_seconds_count", "formers_inter_token_latency_seconds_count"):
        assert name in values, name
    assert values["formers_kv_blocks_total"] == 512
    assert values["formers_generation_tokens_total"] >= 2
    assert values["formers_time_to_first_token_seconds_count"] >= 1
    assert values['formers_time_to_first_token_seconds_bucket{le="+Inf"}'] == \
        values["formers_time_to_first_token_seconds_count"]
    status, text = served.raw("GET", "/metrics")
    assert "# TYPE formers_time_to_first_token_seconds histogram" in text


def test_prefix_cache_hits_show_in_usage_and_metrics(served):
    client = served.client()
    system = "You are a helpful assistant who knows the Python standard library very well. " * 3
    before = served.metrics()["formers_prefix_cache_hits_total"]
    for question in ("What is os?", "What is sys?"):
        result = client.chat.completions.create(model=DEFAULT_NAME, max_tokens=2, temperature=0, messages=[
            {"role": "system", "content": system}, {"role": "user", "content": question}])
    assert result.usage.prompt_tokens_details.cached_tokens >= 32
    assert served.metrics()["formers_prefix_cache_hits_total"] > before
    assert json.loads(result.model_dump_json())["usage"]["prompt_tokens_details"]["cached_tokens"] > 0


def test_streamed_completion_of_several_prompts_with_n(served):
    """Choice i*n + j is prompt i's j-th sample; streamed chunks add up to the non-streamed choices."""
    client = served.client()
    kwargs = dict(model=DEFAULT_NAME, prompt=PROMPTS[:2], max_tokens=6, n=2, temperature=1.0, seed=11)
    plain = client.completions.create(**kwargs)
    assert [c.index for c in plain.choices] == [0, 1, 2, 3]
    texts = {i: "" for i in range(4)}
    reasons = {}
    for chunk in client.completions.create(stream=True, **kwargs):
        for choice in chunk.choices:
            texts[choice.index] += choice.text
            if choice.finish_reason:
                reasons[choice.index] = choice.finish_reason
    assert [texts[i] for i in range(4)] == [c.text for c in plain.choices]
    assert [reasons[i] for i in range(4)] == [c.finish_reason for c in plain.choices]
    single = client.completions.create(model=DEFAULT_NAME, prompt=PROMPTS[1], max_tokens=6, n=2, temperature=1.0,
                                       seed=11)
    assert [c.text for c in single.choices] == [c.text for c in plain.choices[2:]]  # seeds per choice, not per call
