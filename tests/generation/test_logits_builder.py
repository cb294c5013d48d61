"""build_logits_processor vs transformers' `GenerationMixin._get_logits_processor` (order, classes, scores)."""
from __future__ import annotations

import warnings

import pytest
import torch
import transformers
import transformers.generation.logits_process as hf

import formers.generation.logits_process as fm
from formers.errors import GenerationError
from formers.generation import GenerationConfig, LogitsProcessorList, build_logits_processor

from .test_logits_process import assert_same

V = 97


@pytest.fixture(scope="module")
def hf_model():
    config = transformers.LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                      num_attention_heads=4, num_key_value_heads=2, vocab_size=V)
    return transformers.LlamaForCausalLM(config)


def _theirs(model, kwargs, prompt_len, eos, user=None, encoder_ids=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        config = transformers.GenerationConfig(**kwargs)
    config._eos_token_tensor = eos
    return model._get_logits_processor(
        generation_config=config, input_ids_seq_length=prompt_len, encoder_input_ids=encoder_ids,
        prefix_allowed_tokens_fn=None, logits_processor=user if user is not None else hf.LogitsProcessorList(),
        device="cpu", model_kwargs={"use_cache": True})


def _ours(kwargs, prompt_len, eos, user=None, encoder_ids=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        config = GenerationConfig(**kwargs)
    return build_logits_processor(config, prompt_len, eos, "cpu", user, encoder_input_ids=encoder_ids)


CONFIGS = [
    dict(),
    dict(do_sample=True),
    dict(do_sample=True, top_k=0),
    dict(do_sample=True, temperature=0.7, top_k=20, top_p=0.9),
    dict(do_sample=True, temperature=1.3, top_k=0, top_p=1.0, min_p=0.05),
    dict(do_sample=True, typical_p=0.8, epsilon_cutoff=3e-3, eta_cutoff=1e-3),
    dict(do_sample=True, top_p=0.5, num_beams=3),
    dict(do_sample=True, top_p=0.5, min_p=0.1, num_beams=3, eos_token_id=[2, 3]),
    dict(repetition_penalty=1.3, no_repeat_ngram_size=2),
    dict(min_new_tokens=3, min_length=15, eos_token_id=2),
    dict(bad_words_ids=[[5], [3, 4], [2]], sequence_bias={(7,): 1.5, (1, 8): -2.0}),
    dict(forced_bos_token_id=4, forced_eos_token_id=[2], max_length=13, remove_invalid_values=True),
    dict(exponential_decay_length_penalty=(1, 1.5), suppress_tokens=[9, 10], begin_suppress_tokens=[11]),
    dict(begin_suppress_tokens=[11], forced_bos_token_id=4),
    dict(encoder_repetition_penalty=1.2, encoder_no_repeat_ngram_size=2),
    dict(do_sample=True, temperature=0.8, top_k=7, repetition_penalty=1.1, renormalize_logits=True,
         min_new_tokens=2, bad_words_ids=[[6]], no_repeat_ngram_size=3),
    dict(num_beams=4, num_beam_groups=2, diversity_penalty=0.5),
]


@pytest.mark.parametrize("kwargs", CONFIGS, ids=[str(i) for i in range(len(CONFIGS))])
@pytest.mark.parametrize("prompt_len", [1, 12])
def test_same_processors_and_scores(hf_model, kwargs, prompt_len):
    eos = torch.tensor([2]) if "eos_token_id" not in kwargs else torch.tensor(
        [kwargs["eos_token_id"]] if isinstance(kwargs["eos_token_id"], int) else kwargs["eos_token_id"])
    enc = torch.randint(0, 12, (4, 9), generator=torch.Generator().manual_seed(1))
    theirs = _theirs(hf_model, kwargs, prompt_len, eos, encoder_ids=enc)
    ours = _ours(kwargs, prompt_len, eos, encoder_ids=enc)
    assert [type(p).__name__ for p in ours] == [type(p).__name__ for p in theirs]
    if any(isinstance(p, hf.HammingDiversityLogitsProcessor) for p in theirs):
        return  # needs beam-group kwargs; covered in test_logits_process
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 12, (4, 12), generator=g)
    scores = torch.randn(4, V, generator=g) * 3
    for length in (1, 2, 12):
        assert_same(ours(ids[:, :length], scores.clone()), theirs(ids[:, :length], scores.clone()))


def test_no_eos_skips_eos_processors(hf_model):
    kwargs = dict(min_new_tokens=3, min_length=5)
    assert [type(p).__name__ for p in _ours(kwargs, 4, None)] == [
        type(p).__name__ for p in _theirs(hf_model, kwargs, 4, None)] == []


def test_user_processors_are_merged_before_warpers(hf_model):
    kwargs = dict(do_sample=True, top_k=5, repetition_penalty=1.2)
    theirs = _theirs(hf_model, kwargs, 3, torch.tensor([2]),
                     user=hf.LogitsProcessorList([hf.SuppressTokensLogitsProcessor([1])]))
    ours = _ours(kwargs, 3, torch.tensor([2]), user=LogitsProcessorList([fm.SuppressTokensLogitsProcessor([1])]))
    assert [type(p).__name__ for p in ours] == [type(p).__name__ for p in theirs]


def test_user_processor_of_a_built_type_raises(hf_model):
    kwargs = dict(repetition_penalty=1.2)
    with pytest.raises(ValueError):
        _theirs(hf_model, kwargs, 3, None, user=hf.LogitsProcessorList([hf.RepetitionPenaltyLogitsProcessor(1.5)]))
    with pytest.raises(GenerationError, match="RepetitionPenaltyLogitsProcessor"):
        _ours(kwargs, 3, None, user=LogitsProcessorList([fm.RepetitionPenaltyLogitsProcessor(1.5)]))


def test_forced_decoder_ids_raise(hf_model):
    with pytest.raises(ValueError):
        _theirs(hf_model, dict(forced_decoder_ids=[[1, 2]]), 3, None)
    with pytest.raises(GenerationError, match="forced_decoder_ids"):
        _ours(dict(forced_decoder_ids=[[1, 2]]), 3, None)


@pytest.mark.parametrize("kwargs,field", [
    (dict(watermarking_config={"bias": 2.0}), "watermarking_config"),
    (dict(guidance_scale=1.5), "guidance_scale"),
    (dict(encoder_repetition_penalty=1.2), "encoder_input_ids"),
    (dict(exponential_decay_length_penalty=(1, 1.5)), "exponential_decay_length_penalty"),
])
def test_unimplemented_or_unbuildable_rows_name_the_field(kwargs, field):
    with pytest.raises(GenerationError, match=field):
        _ours(kwargs, 3, None)


def test_eos_tensor_on_device_is_exempt_without_host_read(monkeypatch):
    """The accelerator path of NoBadWords (eos ids not read on the host) gives the same scores."""
    import formers.generation.ngram_process as ngram

    ids = torch.randint(0, 12, (4, 6), generator=torch.Generator().manual_seed(0))
    scores = torch.randn(4, V)
    expected = hf.NoBadWordsLogitsProcessor([[5], [6], [2, 5]], torch.tensor([6]))(ids, scores.clone())
    monkeypatch.setattr(ngram, "host_ids", lambda ids: None)
    proc = fm.NoBadWordsLogitsProcessor([[5], [6], [2, 5]], torch.tensor([6]))
    assert proc._eos_exempt is not None
    assert_same(proc(ids, scores.clone()), expected)
