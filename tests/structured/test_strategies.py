"""The grammar processor's state bookkeeping under each strategy, checked against a stateless reference
processor that replays every row's tokens on a fresh matcher each step (obviously right, slow):
beam search must pick the same beams, assisted / prompt-lookup greedy decoding the same tokens as
plain greedy decoding. Also: EOS is allowed exactly when the grammar accepts, masks are computed on
the worker thread during the forward pass, stop strings, and the tool-call helper."""
from __future__ import annotations

import json
import threading

import pytest
import torch
import xgrammar as xgr

from formers.generation.logits_base import LogitsProcessor
from formers.structured import (
    Grammar,
    GrammarLogitsProcessor,
    generate_tool_call,
    parse_tool_calls,
)
from formers.structured.bitmask import apply_token_bitmask
from formers.structured.compiler import compile_grammar

from .schemas import MAX_NEW_TOKENS, REGEX, SCHEMAS, matches, valid_json


class ReplayGrammarProcessor(LogitsProcessor):
    """Reference: each call builds every row's matcher from scratch from the tokens after the prompt."""

    def __init__(self, grammar, tokenizer, vocab_size: int, eos: list[int]):
        self.compiled = compile_grammar(Grammar.from_spec(grammar), tokenizer, vocab_size, tuple(sorted(eos)))
        self.prompt_width = None

    def __call__(self, input_ids, scores):
        if self.prompt_width is None:
            self.prompt_width = input_ids.shape[1]
        bitmask = xgr.allocate_token_bitmask(input_ids.shape[0], scores.shape[-1])
        for r, row in enumerate(input_ids[:, self.prompt_width:].tolist()):
            matcher = xgr.GrammarMatcher(self.compiled)
            if all(matcher.accept_token(t) for t in row) and not matcher.is_terminated():
                matcher.fill_next_token_bitmask(bitmask, r)
        return apply_token_bitmask(scores, bitmask)


def _run(model, tokenizer, prompts, **kwargs):
    inputs = tokenizer(prompts, return_tensors="pt", padding=True)
    out = model.generate(**inputs, tokenizer=tokenizer, **kwargs)
    return out, [tokenizer.decode(r, skip_special_tokens=True) for r in out[:, inputs["input_ids"].shape[1]:]]


def test_beam_search_equals_replay_reference(stories_model):
    model, tokenizer = stories_model
    kwargs = dict(num_beams=4, num_return_sequences=2, max_new_tokens=MAX_NEW_TOKENS, do_sample=False)
    ours, texts = _run(model, tokenizer, ["Once upon a time"], grammar=SCHEMAS["nested"], **kwargs)
    ref = ReplayGrammarProcessor(SCHEMAS["nested"], tokenizer, model.config.vocab_size, [2])
    theirs, _ = _run(model, tokenizer, ["Once upon a time"], logits_processor=[ref], **kwargs)
    assert torch.equal(ours, theirs)
    assert all(valid_json(t, SCHEMAS["nested"]) for t in texts), texts


@pytest.mark.parametrize("assist", ["prompt_lookup", "draft_model"])
def test_assisted_greedy_equals_plain_greedy(stories_model, default_model, assist):
    """Drafts are checked against the matcher and rolled back when rejected: greedy output is unchanged."""
    model, tokenizer = stories_model
    prompt = ['{"code": "AB-123", "tags": ["ab", "cd"]} Once upon a time']  # something for lookup to copy
    plain, texts = _run(model, tokenizer, prompt, grammar=SCHEMAS["pattern"], max_new_tokens=MAX_NEW_TOKENS)
    extra = dict(prompt_lookup_num_tokens=4) if assist == "prompt_lookup" else dict(assistant_model=model)
    if assist == "draft_model":
        model.generation_config.num_assistant_tokens = 5
    assisted, _ = _run(model, tokenizer, prompt, grammar=SCHEMAS["pattern"], max_new_tokens=MAX_NEW_TOKENS, **extra)
    assert torch.equal(plain, assisted)
    assert valid_json(texts[0], SCHEMAS["pattern"])


def test_assisted_sampling_with_a_draft_stays_valid(stories_model):
    model, tokenizer = stories_model
    torch.manual_seed(6)
    for _ in range(3):
        _, texts = _run(model, tokenizer, ["Once upon a time"], grammar=SCHEMAS["scalars"], assistant_model=model,
                        do_sample=True, temperature=1.0, top_k=0, max_new_tokens=MAX_NEW_TOKENS)
        assert valid_json(texts[0], SCHEMAS["scalars"]), texts


def test_eos_exactly_when_the_grammar_accepts(stories_model):
    model, tokenizer = stories_model
    out = model.generate(**tokenizer(["Once"], return_tensors="pt"), grammar={"type": "regex", "value": "[0-9]{3}x?"},
                         tokenizer=tokenizer, do_sample=True, max_new_tokens=20, output_scores=True,
                         return_dict_in_generate=True)
    eos = 2
    finite_eos = [bool(torch.isfinite(s[0, eos])) for s in out.scores]
    text_before = [tokenizer.decode(out.sequences[0, 2:2 + i]) for i in range(len(out.scores))]
    assert finite_eos == [matches("[0-9]{3}x?", t) for t in text_before]
    assert out.sequences[0, -1] == eos  # and the row finished with it


def test_masks_are_computed_on_the_worker_thread(stories_model, monkeypatch):
    model, tokenizer = stories_model
    threads = []
    original = GrammarLogitsProcessor._compute

    def spy(self, generated):
        threads.append(threading.current_thread().name)
        return original(self, generated)

    monkeypatch.setattr(GrammarLogitsProcessor, "_compute", spy)
    _, texts = _run(model, tokenizer, ["Once"], grammar={"type": "regex", "value": REGEX}, max_new_tokens=40)
    assert matches(REGEX, texts[0])
    assert threads and all(name.startswith("formers-grammar-mask") for name in threads)


def test_stop_strings_end_a_constrained_row(stories_model):
    model, tokenizer = stories_model
    _, full = _run(model, tokenizer, ["Once"], grammar=SCHEMAS["scalars"], max_new_tokens=MAX_NEW_TOKENS)
    _, stopped = _run(model, tokenizer, ["Once"], grammar=SCHEMAS["scalars"], max_new_tokens=MAX_NEW_TOKENS,
                      stop_strings=['"size"'])
    assert valid_json(full[0], SCHEMAS["scalars"])
    assert stopped[0].endswith('"size"') and full[0].startswith(stopped[0])


def get_weather(city: str, unit: str = "celsius") -> str:
    """Get the weather.

    Args:
        city: The city name.
        unit: The unit. (choices: ["celsius", "fahrenheit"])
    """
    return city


def get_time(zone: str) -> str:
    """Get the time.

    Args:
        zone: A time zone.
    """
    return zone


def test_generate_tool_call_is_a_valid_call(default_model):
    model, tokenizer = default_model
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    for name in ("get_weather", None):
        torch.manual_seed(7)
        call = generate_tool_call(model, tokenizer, messages, [get_weather, get_time], tool_name=name,
                                  do_sample=True, temperature=1.0, top_k=0, max_new_tokens=120)
        assert call["name"] in (("get_weather",) if name else ("get_weather", "get_time"))
        params = Grammar.json_schema(get_weather if call["name"] == "get_weather" else get_time).source
        assert valid_json(json.dumps(call["arguments"]), json.loads(params))
        assert parse_tool_calls(json.dumps(call)) == ("", [call])
