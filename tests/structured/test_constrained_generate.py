"""generate(grammar=...) on real models: sampled JSON always validates, regex / EBNF outputs match,
without the grammar the same sampling does not produce valid JSON, and every decoding strategy the
grammar supports keeps it (beam search, per-row grammars, assisted and prompt-lookup decoding)."""
from __future__ import annotations

import json

import pytest
import torch

from formers.errors import GrammarError
from formers.structured import Grammar, GrammarLogitsProcessor

from .schemas import (
    EBNF,
    EBNF_AS_REGEX,
    MAX_NEW_TOKENS,
    PROMPTS,
    REGEX,
    SCHEMAS,
    matches,
    valid_json,
)

SAMPLING = dict(do_sample=True, temperature=1.0, top_k=0, max_new_tokens=MAX_NEW_TOKENS)


def _models(request, name):
    return request.getfixturevalue("default_model" if name == "default" else "stories_model")


def generate_texts(model, tokenizer, prompts: list[str], **kwargs) -> tuple[list[str], list[bool]]:
    """-> (decoded new text per row, whether the row ended with an EOS id)."""
    inputs = tokenizer(prompts, return_tensors="pt", padding=True)
    out = model.generate(**inputs, tokenizer=tokenizer, **kwargs)
    new = out[:, inputs["input_ids"].shape[1]:]
    eos = model.generation_config.eos_token_id
    eos = torch.tensor([eos] if isinstance(eos, int) else eos)
    ended = torch.isin(new, eos).any(-1).tolist()
    return [tokenizer.decode(row, skip_special_tokens=True) for row in new], ended


def sample_schema(model, tokenizer, prompt: str, schema: dict, n: int, seed: int = 0) -> list[str]:
    torch.manual_seed(seed)
    texts, ended = generate_texts(model, tokenizer, [prompt] * n, grammar=schema, **SAMPLING)
    assert all(ended), "a row hit max_new_tokens before the grammar closed it"
    return texts


@pytest.mark.parametrize("model_name,schema_name", [("stories", "nested"), ("stories", "scalars"),
                                                    ("stories", "pattern"), ("default", "nested")])
def test_sampled_json_validates(request, model_name, schema_name):
    model, tokenizer = _models(request, model_name)
    texts = sample_schema(model, tokenizer, PROMPTS[model_name], SCHEMAS[schema_name], n=20)
    bad = [t for t in texts if not valid_json(t, SCHEMAS[schema_name])]
    assert not bad, bad


@pytest.mark.slow
@pytest.mark.parametrize("model_name", ["default", "stories"])
@pytest.mark.parametrize("schema_name", sorted(SCHEMAS))
def test_sampled_json_validates_200(request, model_name, schema_name):
    model, tokenizer = _models(request, model_name)
    texts = []
    for seed in range(5):  # 5 batches of 40
        texts += sample_schema(model, tokenizer, PROMPTS[model_name], SCHEMAS[schema_name], n=40, seed=seed)
    assert len(texts) == 200
    bad = [t for t in texts if not valid_json(t, SCHEMAS[schema_name])]
    assert not bad, bad


@pytest.mark.parametrize("model_name", ["default", "stories"])
def test_without_grammar_the_model_does_not_write_valid_json(request, model_name):
    """The control: the same sampling with no grammar fails, so the tests above can fail."""
    model, tokenizer = _models(request, model_name)
    torch.manual_seed(0)
    texts, _ = generate_texts(model, tokenizer, [PROMPTS[model_name]] * 20, do_sample=True, temperature=1.0,
                              top_k=0, max_new_tokens=60)
    assert not any(valid_json(t, SCHEMAS["scalars"]) for t in texts)


@pytest.mark.parametrize("model_name", ["default", "stories"])
@pytest.mark.parametrize("grammar,pattern", [({"type": "regex", "value": REGEX}, REGEX),
                                             ({"type": "gbnf", "value": EBNF}, EBNF_AS_REGEX)], ids=["regex", "ebnf"])
def test_regex_and_ebnf(request, model_name, grammar, pattern):
    model, tokenizer = _models(request, model_name)
    torch.manual_seed(1)
    texts, ended = generate_texts(model, tokenizer, [PROMPTS[model_name]] * 20, grammar=grammar, **SAMPLING)
    assert all(ended) and all(matches(pattern, t) for t in texts), texts


def test_per_row_grammars_in_one_batch(stories_model):
    model, tokenizer = stories_model
    prompts = ["Once upon a time", "The cat", "Lily went"]
    torch.manual_seed(2)
    grammars = [SCHEMAS["pattern"], {"type": "regex", "value": REGEX}, {"type": "ebnf", "value": EBNF}]
    texts, ended = generate_texts(model, tokenizer, prompts, grammar=grammars, **SAMPLING)
    assert all(ended)
    assert valid_json(texts[0], SCHEMAS["pattern"]) and matches(REGEX, texts[1]) and matches(EBNF_AS_REGEX, texts[2])


@pytest.mark.parametrize("do_sample", [False, True])
def test_beam_search_keeps_each_beams_grammar_state(stories_model, do_sample):
    model, tokenizer = stories_model
    torch.manual_seed(3)
    prompts = ["Once upon a time", "The dog"]
    texts, _ = generate_texts(model, tokenizer, prompts, grammar=[SCHEMAS["pattern"], SCHEMAS["scalars"]],
                              num_beams=4, num_return_sequences=3, do_sample=do_sample, max_new_tokens=MAX_NEW_TOKENS)
    assert all(valid_json(t, SCHEMAS["pattern"]) for t in texts[:3]), texts[:3]
    assert all(valid_json(t, SCHEMAS["scalars"]) for t in texts[3:]), texts[3:]


def test_response_format_and_explicit_processor(default_model):
    model, tokenizer = default_model
    torch.manual_seed(4)
    # any JSON object is unbounded: a row may be cut by max_new_tokens, every row that closed must parse
    texts, ended = generate_texts(model, tokenizer, [PROMPTS["default"]] * 4, response_format={"type": "json_object"},
                                  **SAMPLING)
    assert any(ended) and all(valid_json(t, {"type": "object"}) for t, e in zip(texts, ended) if e), texts
    fmt = {"type": "json_schema", "json_schema": {"name": "p", "schema": SCHEMAS["pattern"]}}
    texts, _ = generate_texts(model, tokenizer, [PROMPTS["default"]] * 4, response_format=fmt, **SAMPLING)
    assert all(valid_json(t, SCHEMAS["pattern"]) for t in texts), texts
    processor = GrammarLogitsProcessor(SCHEMAS["scalars"], tokenizer, eos_token_id=[0, 3])
    for _ in range(2):  # the same processor object serves two generate() calls
        texts, _ = generate_texts(model, tokenizer, [PROMPTS["default"]] * 4, logits_processor=[processor], **SAMPLING)
        assert all(valid_json(t, SCHEMAS["scalars"]) for t in texts), texts


def test_pydantic_model_and_function_schemas(stories_model):
    pydantic = pytest.importorskip("pydantic")
    model, tokenizer = stories_model

    class Pet(pydantic.BaseModel):
        kind: str = pydantic.Field(pattern="^(cat|dog)$")
        age: int = pydantic.Field(ge=0, le=20)

    def book(city: str, breakfast: bool) -> None:
        """Book a hotel.

        Args:
            city: Where. (choices: ["Paris", "Rome"])
            breakfast: With breakfast.
        """

    torch.manual_seed(5)
    texts, _ = generate_texts(model, tokenizer, ["Once"] * 4, grammar=Pet, **SAMPLING)
    assert all(Pet.model_validate_json(t) for t in texts)
    texts, _ = generate_texts(model, tokenizer, ["Once"] * 4, grammar=book, **SAMPLING)
    assert all(valid_json(t, json.loads(Grammar.json_schema(book).source)) for t in texts), texts


def test_refusals_name_the_problem(stories_model):
    model, tokenizer = stories_model
    inputs = tokenizer(["Once"], return_tensors="pt")
    with pytest.raises(GrammarError, match="tokenizer="):
        model.generate(**inputs, grammar=SCHEMAS["pattern"], max_new_tokens=4)
    with pytest.raises(GrammarError, match="group"):
        model.generate(**inputs, grammar=SCHEMAS["pattern"], tokenizer=tokenizer, num_beams=2, num_beam_groups=2,
                       diversity_penalty=1.0, max_new_tokens=4)
    with pytest.raises(GrammarError, match="not both"):
        model.generate(**inputs, grammar=SCHEMAS["pattern"], response_format={"type": "json_object"},
                       tokenizer=tokenizer, max_new_tokens=4)
    two = tokenizer(["Once", "Twice"], return_tensors="pt", padding=True)
    with pytest.raises(GrammarError, match="one prompt at a time"):
        model.generate(**two, grammar=SCHEMAS["pattern"], tokenizer=tokenizer, prompt_lookup_num_tokens=3,
                       max_new_tokens=4)
