"""Every processor and warper against transformers 4.45.2 on the same random logits."""
from __future__ import annotations

import math

import pytest
import torch
import transformers.generation.logits_process as hf

import formers.generation.logits_process as fm
from formers.errors import GenerationError

B, V = 4, 97


def _inputs(seed: int = 0, length: int = 12):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(B, V, generator=g) * 3
    ids = torch.randint(0, 12, (B, length), generator=g)  # small id range -> many repeats and n-gram hits
    ids[0, -4:] = ids[0, :4]                                # an explicit repeated 4-gram
    return ids, scores


def assert_same(ours: torch.Tensor, theirs: torch.Tensor, tol: float = 1e-6) -> None:
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
    assert torch.equal(torch.isneginf(ours), torch.isneginf(theirs))
    assert torch.equal(torch.isposinf(ours), torch.isposinf(theirs))
    assert torch.equal(torch.isnan(ours), torch.isnan(theirs))
    finite = torch.isfinite(theirs)
    if finite.any():
        assert (ours[finite] - theirs[finite]).abs().max().item() <= tol


CASES = [
    ("TemperatureLogitsWarper", [dict(temperature=t) for t in (0.5, 1.0, 1.7)]),
    ("TopKLogitsWarper", [dict(top_k=k) for k in (1, 5, 50, 200)] + [dict(top_k=3, min_tokens_to_keep=7),
                                                                         dict(top_k=5, filter_value=-10.0)]),
    ("TopPLogitsWarper", [dict(top_p=p) for p in (0.0, 0.1, 0.5, 0.9, 1.0)] + [
        dict(top_p=0.1, min_tokens_to_keep=5), dict(top_p=0.3, filter_value=-100.0)]),
    ("MinPLogitsWarper", [dict(min_p=p) for p in (0.0, 0.05, 0.3, 1.0)] + [
        dict(min_p=0.5, min_tokens_to_keep=4), dict(min_p=0.2, filter_value=-5.0)]),
    ("TypicalLogitsWarper", [dict(mass=m) for m in (0.2, 0.5, 0.9, 0.99)] + [dict(mass=0.2, min_tokens_to_keep=6)]),
    ("EpsilonLogitsWarper", [dict(epsilon=e) for e in (1e-4, 3e-3, 0.05)] + [dict(epsilon=0.2, min_tokens_to_keep=9)]),
    ("EtaLogitsWarper", [dict(epsilon=e) for e in (1e-4, 3e-3, 0.05)] + [dict(epsilon=0.2, min_tokens_to_keep=9)]),
    ("RepetitionPenaltyLogitsProcessor", [dict(penalty=p) for p in (0.5, 1.0, 1.3, 2.0)]),
    ("MinLengthLogitsProcessor", [dict(min_length=m, eos_token_id=e) for m in (0, 12, 13, 30)
                                  for e in (3, [3, 5], torch.tensor([7, 96]))]),
    ("MinNewTokensLengthLogitsProcessor", [dict(prompt_length_to_skip=p, min_new_tokens=n, eos_token_id=[2, 4])
                                           for p, n in ((10, 1), (10, 2), (10, 3), (0, 12), (5, 0))]),
    ("NoRepeatNGramLogitsProcessor", [dict(ngram_size=n) for n in (1, 2, 3, 4, 12, 13, 14, 20)]),
    ("NoBadWordsLogitsProcessor", [
        dict(bad_words_ids=[[5]], eos_token_id=None),
        dict(bad_words_ids=[[5], [3, 4], [1, 2, 3], [7, 8, 9, 10]], eos_token_id=None),
        dict(bad_words_ids=[[5], [6], [2, 5]], eos_token_id=5),
        dict(bad_words_ids=[[5]], eos_token_id=5),
        dict(bad_words_ids=[[5], [6], [2, 5]], eos_token_id=torch.tensor([6, 5])),
        dict(bad_words_ids=[[i, j] for i in range(12) for j in range(3)], eos_token_id=[0]),
    ]),
    ("SequenceBiasLogitsProcessor", [
        dict(sequence_bias={(5,): 2.5, (3, 4): -1.5, (1, 2, 3): 10.0, (2, 4): 1.25, (9, 4): -0.75}),
        dict(sequence_bias=[[[5], 2.5], [[3, 4], -1.5], [[6, 7, 8, 9, 10, 11, 1, 2, 3, 4, 5, 6, 7], 4.0]]),
    ]),
    ("ForcedBOSTokenLogitsProcessor", [dict(bos_token_id=b) for b in (0, 42)]),
    ("ForcedEOSTokenLogitsProcessor", [dict(max_length=m, eos_token_id=e) for m in (12, 13, 14)
                                       for e in (3, [3, 90], torch.tensor([1]))]),
    ("InfNanRemoveLogitsProcessor", [dict()]),
    ("ExponentialDecayLengthPenalty", [dict(exponential_decay_length_penalty=(s, f), eos_token_id=[3, 8],
                                            input_ids_seq_length=p) for s, f, p in
                                       ((0, 1.5, 5), (2, 1.1, 8), (5, 2.0, 4), (100, 1.5, 1))]),
    ("LogitNormalization", [dict()]),
    ("SuppressTokensLogitsProcessor", [dict(suppress_tokens=[1, 5, 96]), dict(suppress_tokens=[])]),
    ("SuppressTokensAtBeginLogitsProcessor", [dict(begin_suppress_tokens=[1, 5], begin_index=i) for i in (11, 12)]),
    ("EncoderRepetitionPenaltyLogitsProcessor", [dict(penalty=p) for p in (0.7, 1.5)]),
    ("EncoderNoRepeatNGramLogitsProcessor", [dict(encoder_ngram_size=n) for n in (1, 2, 3, 13)]),
    ("ClassifierFreeGuidanceLogitsProcessor", [dict(guidance_scale=1.5)]),
]
PARAMS = [(name, kw) for name, kws in CASES for kw in kws]


def _needs_encoder_ids(name: str) -> bool:
    return name.startswith("Encoder")


@pytest.mark.parametrize("name,kwargs", PARAMS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(PARAMS)])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_transformers(name, kwargs, seed):
    ids, scores = _inputs(seed)
    if name == "InfNanRemoveLogitsProcessor":
        scores[0, 3], scores[1, 4], scores[2, 5] = math.nan, math.inf, -math.inf
    if name == "ClassifierFreeGuidanceLogitsProcessor":
        ids = ids[:2]
    kw_theirs = dict(kwargs)
    kw_ours = dict(kwargs)
    if _needs_encoder_ids(name):
        enc = torch.randint(0, 12, (B, 9), generator=torch.Generator().manual_seed(seed + 7))
        key = "encoder_input_ids"
        kw_theirs[key] = kw_ours[key] = enc
    theirs = getattr(hf, name)(**kw_theirs)(ids, scores.clone())
    ours = getattr(fm, name)(**kw_ours)(ids, scores.clone())
    assert_same(ours, theirs)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision(dtype):
    ids, scores = _inputs(3)
    scores = scores.to(dtype)
    for name, kwargs in [("TopPLogitsWarper", dict(top_p=0.6)), ("TopKLogitsWarper", dict(top_k=10)),
                         ("MinPLogitsWarper", dict(min_p=0.1)), ("RepetitionPenaltyLogitsProcessor",
                                                                  dict(penalty=1.2)),
                         ("NoBadWordsLogitsProcessor", dict(bad_words_ids=[[5], [3, 4]], eos_token_id=None)),
                         ("InfNanRemoveLogitsProcessor", {})]:
        assert_same(getattr(fm, name)(**kwargs)(ids, scores.clone()),
                    getattr(hf, name)(**kwargs)(ids, scores.clone()), tol=1e-2)


def test_ties_top_k_and_min_p():
    ids, _ = _inputs(0)
    scores = torch.zeros(B, V)
    scores[:, :10] = 1.0  # ten tied top scores
    for name, kwargs in [("TopKLogitsWarper", dict(top_k=3)), ("MinPLogitsWarper", dict(min_p=0.5)),
                         ("TopPLogitsWarper", dict(top_p=0.05)), ("MinPLogitsWarper",
                                                                  dict(min_p=0.9, min_tokens_to_keep=2))]:
        assert_same(getattr(fm, name)(**kwargs)(ids, scores.clone()), getattr(hf, name)(**kwargs)(ids, scores.clone()))


def test_hamming_diversity():
    g = torch.Generator().manual_seed(0)
    batch, beams, groups = 2, 6, 3
    sub = beams // groups
    current = torch.randint(0, 5, (batch * beams,), generator=g)
    scores = torch.randn(batch * sub, V, generator=g)
    ids = torch.randint(0, V, (batch * sub, 4), generator=g)
    ours = fm.HammingDiversityLogitsProcessor(0.7, beams, groups)
    theirs = hf.HammingDiversityLogitsProcessor(0.7, beams, groups)
    for group in range(groups):
        assert_same(ours(ids, scores.clone(), current, group), theirs(ids, scores.clone(), current, group))


def test_prefix_constrained():
    ids, scores = _inputs(0)

    def allowed(batch_id, sent):
        return [batch_id, int(sent[-1]) + 1, 50]

    assert_same(fm.PrefixConstrainedLogitsProcessor(allowed, 2)(ids, scores.clone()),
                hf.PrefixConstrainedLogitsProcessor(allowed, 2)(ids, scores.clone()))


def test_processor_list_forwards_kwargs():
    current = torch.tensor([1, 2, 3, 4])
    ids, scores = _inputs(0)
    scores = scores[:2]
    proc = fm.LogitsProcessorList([fm.TemperatureLogitsWarper(2.0), fm.HammingDiversityLogitsProcessor(0.5, 4, 2)])
    ref = hf.LogitsProcessorList([hf.TemperatureLogitsWarper(2.0), hf.HammingDiversityLogitsProcessor(0.5, 4, 2)])
    assert_same(proc(ids[:2], scores.clone(), current_tokens=current, beam_group_idx=1),
                ref(ids[:2], scores.clone(), current_tokens=current, beam_group_idx=1))
    with pytest.raises(ValueError, match="current_tokens"):
        proc(ids[:2], scores.clone())


def test_processors_do_not_modify_inputs():
    ids, scores = _inputs(0)
    original = scores.clone()
    for name, kwargs in PARAMS:
        if _needs_encoder_ids(name) or name == "ClassifierFreeGuidanceLogitsProcessor":
            continue
        getattr(fm, name)(**kwargs)(ids, scores)
        assert torch.equal(scores, original), name


BAD_ARGS = [
    ("TemperatureLogitsWarper", dict(temperature=0.0)), ("TemperatureLogitsWarper", dict(temperature=-1.0)),
    ("TemperatureLogitsWarper", dict(temperature=1)),
    ("TopKLogitsWarper", dict(top_k=0)), ("TopKLogitsWarper", dict(top_k=2.0)),
    ("TopPLogitsWarper", dict(top_p=1.5)), ("TopPLogitsWarper", dict(top_p=-0.1)),
    ("TopPLogitsWarper", dict(top_p=0.5, min_tokens_to_keep=0)),
    ("MinPLogitsWarper", dict(min_p=1.5)), ("MinPLogitsWarper", dict(min_p=0.5, min_tokens_to_keep=0)),
    ("TypicalLogitsWarper", dict(mass=1.0)), ("TypicalLogitsWarper", dict(mass=0.0)),
    ("TypicalLogitsWarper", dict(mass=0.5, min_tokens_to_keep=0)),
    ("EpsilonLogitsWarper", dict(epsilon=0.0)), ("EpsilonLogitsWarper", dict(epsilon=1.0)),
    ("EpsilonLogitsWarper", dict(epsilon=0.1, min_tokens_to_keep=0)),
    ("EtaLogitsWarper", dict(epsilon=1.0)), ("EtaLogitsWarper", dict(epsilon=0.1, min_tokens_to_keep=0)),
    ("RepetitionPenaltyLogitsProcessor", dict(penalty=0.0)), ("RepetitionPenaltyLogitsProcessor", dict(penalty=2)),
    ("MinLengthLogitsProcessor", dict(min_length=-1, eos_token_id=1)),
    ("MinNewTokensLengthLogitsProcessor", dict(prompt_length_to_skip=-1, min_new_tokens=1, eos_token_id=1)),
    ("MinNewTokensLengthLogitsProcessor", dict(prompt_length_to_skip=1, min_new_tokens=-1, eos_token_id=1)),
    ("NoRepeatNGramLogitsProcessor", dict(ngram_size=0)),
    ("NoBadWordsLogitsProcessor", dict(bad_words_ids=[])), ("NoBadWordsLogitsProcessor", dict(bad_words_ids=[1])),
    ("NoBadWordsLogitsProcessor", dict(bad_words_ids=[[-1]])),
    ("SequenceBiasLogitsProcessor", dict(sequence_bias={})),
    ("SequenceBiasLogitsProcessor", dict(sequence_bias={5: 1.0})),
    ("SequenceBiasLogitsProcessor", dict(sequence_bias={(5,): 1})),
    ("SequenceBiasLogitsProcessor", dict(sequence_bias={(-5,): 1.0})),
    ("SequenceBiasLogitsProcessor", dict(sequence_bias=[[[5], 1]])),
    ("ForcedEOSTokenLogitsProcessor", dict(max_length=5, eos_token_id=-1)),
    ("ForcedEOSTokenLogitsProcessor", dict(max_length=5, eos_token_id=torch.tensor([1.0]))),
    ("ExponentialDecayLengthPenalty", dict(exponential_decay_length_penalty=(1, 1.1), eos_token_id=[-2],
                                           input_ids_seq_length=1)),
    ("HammingDiversityLogitsProcessor", dict(diversity_penalty=0.0, num_beams=4, num_beam_groups=2)),
    ("HammingDiversityLogitsProcessor", dict(diversity_penalty=1.0, num_beams=1, num_beam_groups=2)),
    ("HammingDiversityLogitsProcessor", dict(diversity_penalty=1.0, num_beams=4, num_beam_groups=1)),
    ("HammingDiversityLogitsProcessor", dict(diversity_penalty=1.0, num_beams=2, num_beam_groups=3)),
    ("ClassifierFreeGuidanceLogitsProcessor", dict(guidance_scale=1.0)),
]


@pytest.mark.parametrize("name,kwargs", BAD_ARGS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(BAD_ARGS)])
def test_invalid_arguments_raise_like_transformers(name, kwargs):
    with pytest.raises(ValueError):
        getattr(hf, name)(**kwargs)
    with pytest.raises(GenerationError):
        getattr(fm, name)(**kwargs)


def test_sequence_bias_out_of_vocab_raises_on_first_call():
    ids, scores = _inputs(0)
    with pytest.raises(GenerationError, match="vocabulary size"):
        fm.SequenceBiasLogitsProcessor({(V + 3,): 1.0})(ids, scores)
