"""Structured output in the serving engine (SamplingParams.grammar): each constrained request, served
inside a busy batch of unconstrained ones, equals formers' `generate(grammar=...)` of it alone (greedy
and seeded sampling, n > 1), also after a preemption, with a prefix-cache hit and when its matcher is
lost and rebuilt from the generated tokens; outputs validate; bad grammars are refused at add time."""
from __future__ import annotations

import json
import re

import jsonschema
import pytest
import torch

import formers
from formers.default_model import CHECKPOINT_DIR
from formers.errors import ServingError
from formers.serving import SamplingParams

from .engine_helpers import make_engine, mixed_requests, one_thread  # noqa: F401 (fixture)

SCHEMA = {"type": "object", "properties": {
    "name": {"type": "string", "maxLength": 8},
    "age": {"type": "integer", "minimum": 0, "maximum": 120},
    "tags": {"type": "array", "maxItems": 2, "items": {"enum": ["a", "b", "c"]}}},
    "required": ["name", "age", "tags"]}
REGEX = r"(yes|no), [0-9]{2,3} (apples|pears)\."
EBNF = 'root ::= "SELECT " col (", " col)? " FROM t;"\ncol ::= "id" | "name"'
PROMPTS = ["A person as JSON:", "Once upon a time", "The answer is"]


@pytest.fixture(scope="module")
def default():
    tokenizer = formers.AutoTokenizer.from_pretrained(CHECKPOINT_DIR)
    model = formers.AutoModelForCausalLM.from_pretrained(CHECKPOINT_DIR, torch_dtype=torch.float32).eval()
    return model, tokenizer


def alone(model, tokenizer, prompt: list[int], params: SamplingParams, index: int = 0) -> list[int]:
    """generate(grammar=...) of one continuation alone (continuation i of n is seeded with seed + i)."""
    kwargs = {"max_new_tokens": params.max_tokens, "repetition_penalty": params.repetition_penalty,
              "grammar": params.grammar, "tokenizer": tokenizer}
    if params.greedy:
        kwargs.update(do_sample=False)
    else:
        kwargs.update(do_sample=True, temperature=params.temperature, top_k=params.top_k, top_p=params.top_p)
        torch.manual_seed(params.seed + index)
    ids = torch.tensor([prompt])
    return model.generate(ids, attention_mask=torch.ones_like(ids), **kwargs)[0, len(prompt):].tolist()


def structured_requests(tokenizer) -> list[tuple[str, list[int], SamplingParams]]:
    common = {"max_tokens": 48, "repetition_penalty": 1.0}
    return [
        ("json-greedy", tokenizer(PROMPTS[0]).input_ids, SamplingParams(temperature=0.0, grammar=SCHEMA, **common)),
        ("json-seeded", tokenizer(PROMPTS[1]).input_ids,
         SamplingParams(temperature=1.0, top_k=0, seed=11, n=2, grammar=SCHEMA, **common)),
        ("regex", tokenizer(PROMPTS[2]).input_ids,
         SamplingParams(temperature=0.9, top_p=0.95, seed=5, grammar={"type": "regex", "value": REGEX}, **common)),
        ("ebnf", tokenizer(PROMPTS[0]).input_ids,
         SamplingParams(temperature=0.0, grammar={"type": "ebnf", "value": EBNF}, **common)),
        ("any-json", tokenizer(PROMPTS[2]).input_ids,
         SamplingParams(temperature=1.0, top_k=0, seed=3, grammar={"type": "json_object"}, **common)),
    ]


def run(engine, requests, drop_matchers_at: int | None = None) -> dict[tuple[str, int], object]:
    """Interleave the requests with unconstrained traffic; -> final RequestOutput per (request, index)."""
    traffic = mixed_requests(seed=1, count=8, vocab=engine.vocab_size, max_tokens=20)
    queue = [item for pair in zip(traffic, requests + [None] * len(traffic)) for item in pair if item is not None]
    finals, steps = {}, 0
    while queue or engine.has_unfinished_requests():
        if queue and steps % 2 == 0:
            engine.add_request(*queue.pop(0))
        if steps == drop_matchers_at:
            engine.grammars._matchers.clear()  # as if lost: the next mask replays the generated tokens
        for out in engine.step():
            if out.finished:
                finals[(out.request_id, out.index)] = out
        steps += 1
    return finals


def check_equal_to_generate(default, requests, finals) -> None:
    model, tokenizer = default
    for rid, prompt, params in requests:
        for i in range(params.n):
            out = finals[(rid, i)]
            assert out.token_ids == alone(model, tokenizer, prompt, params, i), (rid, i, out.text)


def test_structured_requests_in_a_busy_batch_equal_generate(default, one_thread):  # noqa: F811
    model, tokenizer = default
    engine = make_engine(model, tokenizer, max_num_seqs=6, max_batched_tokens=64, num_blocks=256)
    requests = structured_requests(tokenizer)
    finals = run(engine, requests)
    check_equal_to_generate(default, requests, finals)
    for i in range(2):
        assert finals[("json-seeded", i)].finish_reason == "stop"
        jsonschema.validate(json.loads(finals[("json-seeded", i)].text), SCHEMA)
    assert finals[("json-seeded", 0)].token_ids != finals[("json-seeded", 1)].token_ids  # a matcher per choice
    jsonschema.validate(json.loads(finals[("json-greedy", 0)].text), SCHEMA)
    assert re.fullmatch(REGEX, finals[("regex", 0)].text)
    assert re.fullmatch(r"SELECT (id|name)(, (id|name))? FROM t;", finals[("ebnf", 0)].text)
    assert isinstance(json.loads(finals[("any-json", 0)].text), dict)


def test_preemption_prefix_hits_and_lost_matchers_keep_it_exact(default, one_thread):  # noqa: F811
    model, tokenizer = default
    # few pages: sequences are preempted and recomputed; the repeated prompts hit the prefix cache
    engine = make_engine(model, tokenizer, max_num_seqs=6, max_batched_tokens=16, block_size=4, num_blocks=20)
    requests = structured_requests(tokenizer)[:2] + [
        ("json-again", tokenizer(PROMPTS[0]).input_ids, SamplingParams(temperature=0.0, max_tokens=48,
                                                                       repetition_penalty=1.0, grammar=SCHEMA))]
    finals = run(engine, requests, drop_matchers_at=14)
    assert engine.scheduler.num_preemptions > 0
    assert finals[("json-again", 0)].cached_prompt_tokens > 0
    check_equal_to_generate(default, requests, finals)


def test_a_completed_grammar_finishes_the_sequence_even_with_ignore_eos(default):
    model, tokenizer = default
    engine = make_engine(model, tokenizer, num_blocks=64)
    params = SamplingParams(temperature=0.0, max_tokens=40, ignore_eos=True, grammar={"type": "regex", "value": "ok"})
    engine.add_request("r", tokenizer("Say ok:").input_ids, params)
    outs = [out for _ in range(50) for out in engine.step()]
    final = outs[-1]
    assert final.finished and final.finish_reason == "stop" and final.text == "ok"
    assert final.token_ids[-1] in engine.eos_ids and len(final.token_ids) < 40
    assert engine.stats()["kv_blocks_used"] == 0


def test_bad_grammars_are_refused_when_added(default):
    model, tokenizer = default
    engine = make_engine(model, tokenizer, num_blocks=64)
    with pytest.raises(ServingError, match=r"SamplingParams\.grammar: .*does not compile"):
        engine.add_request("bad", [1, 2, 3], SamplingParams(grammar={"type": "object", "properties": 3}))
    with pytest.raises(ServingError, match=r"SamplingParams\.grammar: .*response_format"):
        SamplingParams(grammar={"type": "json_schema"})
    with pytest.raises(ServingError, match=r"SamplingParams\.grammar: .*grammar= takes"):
        SamplingParams(grammar=42)
    assert SamplingParams(grammar={"type": "text"}).grammar is None
    bare = make_engine(model, None, num_blocks=64)
    with pytest.raises(ServingError, match="needs the engine to have a tokenizer"):
        bare.add_request("x", [1, 2, 3], SamplingParams(grammar=SCHEMA))
    assert not engine.has_unfinished_requests() and not bare.has_unfinished_requests()


def test_generate_batch_takes_grammar_and_response_format(default):
    model, tokenizer = default
    format_ = {"type": "json_schema", "json_schema": {"name": "p", "schema": SCHEMA}}
    prompts = [PROMPTS[0], PROMPTS[1]]
    for settings in ({"grammar": SCHEMA}, {"response_format": format_}):
        results = model.generate_batch(prompts, tokenizer=tokenizer, progress_bar=False, max_new_tokens=48,
                                       do_sample=False, repetition_penalty=1.0, **settings)
        for prompt, result in zip(prompts, results):
            ids = tokenizer(prompt).input_ids
            assert result.token_ids == alone(model, tokenizer, ids, SamplingParams(
                temperature=0.0, max_tokens=48, repetition_penalty=1.0, grammar=SCHEMA))
            jsonschema.validate(json.loads(result.text), SCHEMA)
