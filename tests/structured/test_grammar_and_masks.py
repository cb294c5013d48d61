"""Grammar specs, the compile cache, the bitmask op and the per-row matcher bookkeeping (no model)."""
from __future__ import annotations

import json

import pytest
import torch
import xgrammar as xgr

from formers.errors import GrammarError
from formers.structured import Grammar, GrammarLogitsProcessor
from formers.structured.bitmask import apply_token_bitmask
from formers.structured.compiler import compile_grammar, compiler_for
from formers.structured.matchers import RowMatchers

SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}


def weather(city: str, days: int = 1) -> str:
    """Forecast.

    Args:
        city: The city.
        days: How many days.
    """
    return city


def test_spec_spellings():
    assert Grammar.from_spec(SCHEMA) == Grammar("json_schema", json.dumps(SCHEMA))
    assert Grammar.from_spec({"type": "json", "value": SCHEMA}) == Grammar.json_schema(SCHEMA)
    assert Grammar.from_spec({"type": "regex", "value": "a+"}) == Grammar("regex", "a+")
    assert Grammar.from_spec({"type": "gbnf", "value": 'root ::= "x"'}) == Grammar("ebnf", 'root ::= "x"')
    params = json.loads(Grammar.from_spec(weather).source)
    assert params["required"] == ["city"] and set(params["properties"]) == {"city", "days"}
    pydantic = pytest.importorskip("pydantic")

    class Item(pydantic.BaseModel):
        name: str
        count: int

    assert json.loads(Grammar.from_spec(Item).source)["required"] == ["name", "count"]


def test_response_format():
    assert Grammar.from_response_format({"type": "text"}) is None
    assert Grammar.from_response_format({"type": "json_object"}) == Grammar.any_json()
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": SCHEMA}}
    assert Grammar.from_response_format(fmt) == Grammar.json_schema(SCHEMA)
    with pytest.raises(GrammarError, match="json_schema"):
        Grammar.from_response_format({"type": "json_schema"})
    with pytest.raises(GrammarError, match="response_format"):
        Grammar.from_response_format({"type": "yaml"})


def test_bad_specs_name_the_argument(gpt2_tokenizer):
    with pytest.raises(GrammarError, match="grammar="):
        Grammar.from_spec(42)
    with pytest.raises(GrammarError, match="does not compile"):
        compile_grammar(Grammar.ebnf("root ::= ("), gpt2_tokenizer, 50257, (50256,))


def test_compiled_once_per_tokenizer_and_grammar(gpt2_tokenizer):
    compiler = compiler_for(gpt2_tokenizer, 50257, (50256,))
    before = compiler.compile_count
    first = compile_grammar(Grammar.regex("[0-9]{3}"), gpt2_tokenizer, 50257, (50256,))
    again = compile_grammar(Grammar.from_spec({"type": "regex", "value": "[0-9]{3}"}), gpt2_tokenizer, 50257, (50256,))
    assert first is again and compiler.compile_count == before + 1


def test_bitmask_matches_reference():
    gen = torch.Generator().manual_seed(0)
    vocab = 77
    bitmask = torch.randint(-2**31, 2**31 - 1, (3, (vocab + 31) // 32), dtype=torch.int32, generator=gen)
    scores = torch.randn(3, vocab, generator=gen)
    out = apply_token_bitmask(scores, bitmask)
    for r in range(3):
        for t in range(vocab):
            allowed = (int(bitmask[r, t // 32]) >> (t % 32)) & 1
            assert out[r, t].item() == (scores[r, t].item() if allowed else float("-inf"))


def _row_masks(matchers: RowMatchers, vocab: int) -> torch.Tensor:
    bitmask = xgr.allocate_token_bitmask(len(matchers.rows), vocab)
    matchers.fill(bitmask)
    return apply_token_bitmask(torch.zeros(len(matchers.rows), vocab), bitmask) == 0


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False)


def test_matchers_follow_extend_fork_and_rollback(gpt2_tokenizer):
    tok = gpt2_tokenizer
    compiled = compile_grammar(Grammar.regex("(ab|cd)+"), tok, 50257, (50256,))
    a, b, c, d = (_ids(tok, ch)[0] for ch in "abcd")
    rows = RowMatchers([compiled, compiled], xgr.GrammarMatcher)
    rows.sync([[a], [c]])
    masks = _row_masks(rows, 50257)
    assert masks[0, b] and not masks[0, d] and masks[1, d] and not masks[1, b]
    # beam reorder: both rows now continue row 1's "c" (a fork), one of them with "d"
    rows.sync([[c, d], [c]])
    masks = _row_masks(rows, 50257)
    assert masks[0, a] and masks[0, 50256] and masks[1, d] and not masks[1, 50256]
    # a rejected draft token kills the row (mask all ones), rolling back revives it
    rows.sync([[c, d, b], [c, d]])
    assert rows.rows[0].rejected == b and _row_masks(rows, 50257)[0].all()
    rows.sync([[c, d], [c, d, a]])
    masks = _row_masks(rows, 50257)
    assert rows.rows[0].rejected is None and masks[0, a] and not masks[0, b] and masks[1, b]


def test_processor_masks_eos_until_accepting(gpt2_tokenizer):
    tok = gpt2_tokenizer
    processor = GrammarLogitsProcessor({"type": "regex", "value": "yes|no"}, tok)
    prompt = torch.tensor([[10, 11]])
    scores = processor(prompt, torch.zeros(1, 50257))
    allowed = torch.isfinite(scores[0]).nonzero().flatten().tolist()
    texts = {tok.decode([t]) for t in allowed}
    assert texts and all("yes".startswith(t) or "no".startswith(t) for t in texts) and 50256 not in allowed
    done = torch.cat([prompt, torch.tensor([_ids(tok, "yes")])], dim=1)
    assert torch.isfinite(processor(done, torch.zeros(1, 50257))[0]).nonzero().flatten().tolist() == [50256]


def test_processor_rows_follow_their_prompts_grammar(gpt2_tokenizer):
    """Per-prompt grammars repeat over a prompt's beams / return sequences; None leaves a prompt free."""
    processor = GrammarLogitsProcessor([{"type": "regex", "value": "yes"}, None], gpt2_tokenizer)
    scores = torch.randn(4, 50257)  # 2 prompts x 2 sequences each
    out = processor(torch.tensor([[5], [5], [6], [6]]), scores)
    assert torch.equal(out[2:], scores[2:])
    yes = _ids(gpt2_tokenizer, "yes")[0]
    assert torch.isfinite(out[:2, yes]).all() and torch.isfinite(out[:2]).sum(-1).tolist() == [
        torch.isfinite(out[0]).sum().item()] * 2
    assert torch.isfinite(out[0]).sum() < 50
    with pytest.raises(GrammarError, match="3 rows"):
        GrammarLogitsProcessor([Grammar.regex("a"), Grammar.regex("b")], gpt2_tokenizer)(torch.zeros(3, 1, dtype=torch.long), scores[:3])
