"""Assisted decoding (draft model, prompt lookup) against transformers 4.45.2 for one prompt, and beyond
4.45 for batches: each row's greedy output equals decoding it alone (and plain greedy decoding)."""
from __future__ import annotations

import pytest
import torch

import formers
from formers.errors import GenerationError

from .conftest import assert_same_outputs, generate_both, padded_batch

FULL = dict(max_new_tokens=10, pad_token_id=0, return_dict_in_generate=True, output_scores=True,
            output_logits=True)


def _prompt():
    return torch.randint(3, 128, (1, 12), generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize("kwargs", [
    dict(),
    dict(do_sample=True, top_k=5, temperature=0.7),
    dict(repetition_penalty=1.3, eos_token_id=list(range(10, 30)), output_hidden_states=True,
         output_attentions=True),
], ids=["greedy", "speculative", "processors_eos_hidden_states"])
def test_draft_model_single_prompt(llama_pair, draft_pair, kwargs):
    a, b = generate_both(llama_pair, _prompt(), seed=7, ours_kwargs=dict(assistant_model=draft_pair[0]),
                         ref_kwargs=dict(assistant_model=draft_pair[1]), **FULL, **kwargs)
    assert_same_outputs(a, b)


def test_draft_schedule_and_confidence(llama_pair, draft_pair):
    ours_draft, ref_draft = draft_pair
    try:
        for model in draft_pair:
            model.generation_config.num_assistant_tokens_schedule = "heuristic"
            model.generation_config.num_assistant_tokens = 3
            model.generation_config.assistant_confidence_threshold = 0.0
        for seed in (0, 1):  # the heuristic count carries over to the next call
            assert_same_outputs(*generate_both(llama_pair, _prompt(), seed=seed, do_sample=seed == 1,
                                               ours_kwargs=dict(assistant_model=ours_draft),
                                               ref_kwargs=dict(assistant_model=ref_draft), **FULL))
            assert ours_draft.generation_config.num_assistant_tokens == \
                ref_draft.generation_config.num_assistant_tokens
    finally:
        for model in draft_pair:
            model.generation_config.num_assistant_tokens_schedule = "constant"
            model.generation_config.num_assistant_tokens = 20
            model.generation_config.assistant_confidence_threshold = 0.4


@pytest.mark.parametrize("kwargs", [dict(prompt_lookup_num_tokens=3),
                                    dict(prompt_lookup_num_tokens=5, do_sample=True, max_matching_ngram_size=1)])
def test_prompt_lookup_single_prompt(llama_pair, kwargs):
    prompt = torch.tensor([[5, 6, 7, 8, 9, 10, 11, 12, 5, 6, 7, 8, 13, 5, 6]])
    assert_same_outputs(*generate_both(llama_pair, prompt, seed=4, **FULL, **kwargs))


def _noisy_copy(model):
    """The main model with slightly perturbed weights: a draft that agrees often but not always."""
    draft = type(model)(model.config)
    draft.load_state_dict(model.state_dict())
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in draft.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.001)
    draft.generation_config.assistant_confidence_threshold = 0.0  # a flat tiny model is never "confident"
    draft.generation_config.num_assistant_tokens = 5
    return draft.eval()


@pytest.mark.parametrize("how", ["draft", "lookup", "draft_eos"])
def test_batched_assisted_equals_each_row_alone(llama_pair, how):
    ours, ref = llama_pair
    ids, mask = padded_batch(rows=4, length=10, seed=5)
    kwargs = dict(max_new_tokens=20, pad_token_id=0)
    if how == "lookup":  # repetitive prompts give lookups something to find
        ids = torch.cat([ids[:, 5:], ids[:, 5:]], dim=1).masked_fill(mask == 0, 0)
        kwargs["prompt_lookup_num_tokens"] = 4
    else:
        kwargs["assistant_model"] = _noisy_copy(ours)
    if how == "draft_eos":
        kwargs["eos_token_id"] = list(range(40, 60))
    batched = ours.generate(ids, attention_mask=mask, **kwargs)
    eos = kwargs.get("eos_token_id", 2)
    for row in range(ids.shape[0]):
        real = ids[row][mask[row].bool()][None]
        alone = ours.generate(real, **kwargs)
        plain = ref.generate(real, max_new_tokens=20, pad_token_id=0, eos_token_id=eos)
        assert torch.equal(alone, plain)
        new = alone[0, real.shape[1]:]
        assert torch.equal(batched[row, 10:10 + len(new)], new)
        assert (batched[row, 10 + len(new):] == 0).all()


def test_batched_assisted_takes_several_tokens_per_forward(llama_pair):
    ours, _ = llama_pair
    ids, mask = padded_batch(rows=3, length=10, seed=6)
    calls = []
    hook = ours.register_forward_hook(lambda *args: calls.append(1))
    try:
        out = ours.generate(ids, attention_mask=mask, max_new_tokens=24, pad_token_id=0, eos_token_id=None,
                            assistant_model=_noisy_copy(ours))
    finally:
        hook.remove()
    assert out.shape[1] == 10 + 24
    assert len(calls) <= 24 / 3  # a close draft: about three tokens per verification


def test_per_row_seeds_do_not_depend_on_neighbours(llama_pair):
    ours, _ = llama_pair
    ids, mask = padded_batch(rows=3)
    kwargs = dict(do_sample=True, max_new_tokens=12, pad_token_id=0, top_k=20)
    together = ours.generate(ids, attention_mask=mask, generator=[11, 22, 33], **kwargs)
    alone = ours.generate(ids[2:], attention_mask=mask[2:], generator=[33], **kwargs)
    assert torch.equal(together[2:], alone)
    other = ours.generate(ids, attention_mask=mask, generator=[11, 99, 33], **kwargs)
    assert torch.equal(other[[0, 2]], together[[0, 2]]) and not torch.equal(other[1], together[1])
    with pytest.raises(GenerationError, match="one seed per input row"):
        ours.generate(ids, attention_mask=mask, generator=[1, 2], **kwargs)
    for assisted in (dict(prompt_lookup_num_tokens=3), dict(assistant_model=_noisy_copy(ours))):
        together = ours.generate(ids, attention_mask=mask, generator=[11, 22, 33], **kwargs, **assisted)
        alone = ours.generate(ids[2:], attention_mask=mask[2:], generator=[33], **kwargs, **assisted)
        assert torch.equal(together[2, :alone.shape[1]], alone[0])


def test_generator_object_reproduces(llama_pair):
    ours, _ = llama_pair
    ids, mask = padded_batch()
    kwargs = dict(attention_mask=mask, do_sample=True, max_new_tokens=8, pad_token_id=0)
    first = ours.generate(ids, generator=torch.Generator().manual_seed(5), **kwargs)
    second = ours.generate(ids, generator=torch.Generator().manual_seed(5), **kwargs)
    seeded = ours.generate(ids, generator=[torch.Generator().manual_seed(s) for s in (1, 2, 3)], **kwargs)
    assert torch.equal(first, second) and seeded.shape == first.shape


def test_assisted_refusals(llama_pair, draft_pair):
    ours, _ = llama_pair
    prompt = _prompt()
    with pytest.raises(GenerationError, match="num_return_sequences"):
        ours.generate(prompt, assistant_model=draft_pair[0], do_sample=True, num_return_sequences=2,
                      max_new_tokens=3, pad_token_id=0)
    with pytest.raises(GenerationError, match="use_cache"):
        ours.generate(prompt, prompt_lookup_num_tokens=2, use_cache=False, max_new_tokens=3, pad_token_id=0)
    with pytest.raises(GenerationError, match="greedy search and sampling"):
        ours.generate(prompt, prompt_lookup_num_tokens=2, num_beams=2, max_new_tokens=3, pad_token_id=0)
