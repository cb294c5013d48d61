"""StopStringCriteria against transformers 4.45.2: stop strings spanning 1-3 tokens, found only inside the
prompt, or overlapping EOS, on real tokenizers (GPT-2 byte-level BPE; stories260K and Llama-2 SentencePiece)."""
from __future__ import annotations

import pytest
import torch
import transformers
import transformers.generation.stopping_criteria as hf

import formers
from formers.errors import GenerationError
from formers.generation import StopStringCriteria

from ..conftest import STORIES
from ..tokenization.conftest import shared_dir

TEXTS = ["Hello world, this is the end. Stop!", "The end", "stopping now", "It's a trap...\n\nok", "xyz!!!",
         "sing a song of the ring", "unstoppable", "abc.\n", "The cat sat on the mat."]
STOPS = [["stop"], [".\n", "The end"], ["a"], ["ing", " the"], ["\n\n"], ["!!!", "xyz"], ["cat sat on"]]


@pytest.fixture(scope="module", params=["gpt2", "stories260K", "llama2"])
def tokenizer(request):
    return transformers.AutoTokenizer.from_pretrained(shared_dir(request.param))


def _prefixes(tokenizer):
    seqs = []
    for text in TEXTS:
        ids = tokenizer(text, add_special_tokens=False).input_ids
        seqs += [ids[:cut] for cut in range(1, len(ids) + 1)]
    generator = torch.Generator().manual_seed(0)
    for _ in range(100):
        length = int(torch.randint(1, 10, (1,), generator=generator))
        seqs.append(torch.randint(0, len(tokenizer), (length,), generator=generator).tolist())
    return seqs


@pytest.mark.parametrize("stops", STOPS, ids=[repr(s)[:24] for s in STOPS])
def test_same_verdict_as_transformers_on_every_prefix(tokenizer, stops):
    ours, theirs = StopStringCriteria(tokenizer, stops), hf.StopStringCriteria(tokenizer, stops)
    seqs = _prefixes(tokenizer)
    longest = max(len(s) for s in seqs)
    batch = torch.tensor([[0] * (longest - len(s)) + s for s in seqs])  # left-padded: one call for all
    verdict = ours(batch, None)
    assert verdict.dtype == torch.bool and verdict.shape == (len(seqs),)
    assert torch.equal(verdict, theirs(batch, None))
    assert bool(verdict.any())


def test_spans_of_one_two_and_three_tokens(tokenizer):
    """The stop string fires on the token that completes it, however many tokens it spans."""
    for text, stop in (("I said stop", "stop"), ("the cat sat on", "cat sat on"), ("abc.\n", ".\n")):
        ids = tokenizer(text, add_special_tokens=False).input_ids
        criterion = StopStringCriteria(tokenizer, [stop])
        fired = [bool(criterion(torch.tensor([ids[:cut]]), None)) for cut in range(1, len(ids) + 1)]
        assert fired[-1] and not any(fired[:-1]), (text, fired)
        span = len(tokenizer(stop, add_special_tokens=False).input_ids)
        assert 1 <= span <= 3 or stop == "cat sat on"


def test_needs_a_tokenizer_and_sensible_strings(tokenizer):
    with pytest.raises(GenerationError, match="tokenizer"):
        formers.generation.build_stopping_criteria(formers.GenerationConfig(stop_strings="x"))
    with pytest.raises(GenerationError):
        StopStringCriteria(tokenizer, [""])


@pytest.fixture(scope="module")
def stories():
    return [(lib, lib.AutoTokenizer.from_pretrained(STORIES), lib.AutoModelForCausalLM.from_pretrained(STORIES))
            for lib in (formers, transformers)]


@pytest.mark.parametrize("case", ["one_token", "several_tokens", "only_in_prompt", "with_eos"])
def test_generate_with_stop_strings_matches_transformers(stories, case):
    outs = []
    for lib, tokenizer, model in stories:
        prompt = tokenizer(["Once upon a time, there was a little girl named Lily."], return_tensors="pt")
        free = model.generate(**prompt, max_new_tokens=24, do_sample=False)
        text = tokenizer.decode(free[0, prompt.input_ids.shape[1]:])
        stop = {"one_token": text.split()[3], "several_tokens": " ".join(text.split()[4:6]),
                "only_in_prompt": "little girl named", "with_eos": tokenizer.decode(free[0, -1:])}[case]
        kwargs = dict(eos_token_id=int(free[0, -1])) if case == "with_eos" else {}
        out = model.generate(**prompt, max_new_tokens=24, stop_strings=stop, tokenizer=tokenizer, **kwargs)
        outs.append((out, free))
    (a, free_a), (b, _) = outs
    assert torch.equal(a, b)
    if case == "only_in_prompt":
        assert torch.equal(a, free_a)  # never fires on the prompt alone
    elif case != "with_eos":
        assert a.shape[1] < free_a.shape[1]
