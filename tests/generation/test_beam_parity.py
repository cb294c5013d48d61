"""Beam search, beam sampling, group beam search and constrained beam search against transformers 4.45.2:
identical sequences, sequences_scores, beam_indices and per-step scores on a left-padded batch."""
from __future__ import annotations

import pytest
import torch
import transformers

import formers
from formers.errors import GenerationError
from formers.generation import BaseStreamer

from .conftest import assert_same_outputs, generate_both, padded_batch

EOS_MANY = list(range(5, 40))  # many EOS ids: hypotheses finish at different steps
FULL = dict(max_new_tokens=12, pad_token_id=0, return_dict_in_generate=True, output_scores=True,
            output_logits=True)


@pytest.mark.parametrize("kwargs", [
    dict(num_beams=4),
    dict(num_beams=4, eos_token_id=EOS_MANY),
    dict(num_beams=4, num_return_sequences=3, length_penalty=0.5, eos_token_id=EOS_MANY),
    dict(num_beams=3, early_stopping=True, eos_token_id=EOS_MANY, length_penalty=-1.0),
    dict(num_beams=4, early_stopping="never", eos_token_id=EOS_MANY, length_penalty=2.0),
    dict(num_beams=4, eos_token_id=EOS_MANY, repetition_penalty=1.3, no_repeat_ngram_size=2),
], ids=["plain", "eos", "n_best", "early", "never", "processors"])
def test_beam_search(llama_pair, kwargs):
    ids, mask = padded_batch()
    assert_same_outputs(*generate_both(llama_pair, ids, attention_mask=mask, **FULL, **kwargs))


@pytest.mark.parametrize("kwargs", [
    dict(num_beams=3, eos_token_id=EOS_MANY),
    dict(num_beams=4, top_k=10, temperature=0.8, num_return_sequences=2),
])
def test_beam_sample_seeded(llama_pair, kwargs):
    ids, mask = padded_batch()
    assert_same_outputs(*generate_both(llama_pair, ids, seed=11, attention_mask=mask, do_sample=True, **FULL,
                                       **kwargs))


@pytest.mark.parametrize("kwargs", [
    dict(num_beams=4, num_beam_groups=2, diversity_penalty=1.0, eos_token_id=EOS_MANY),
    dict(num_beams=6, num_beam_groups=3, diversity_penalty=0.5, num_return_sequences=4),
])
def test_group_beam_search(llama_pair, kwargs):
    ids, mask = padded_batch()
    assert_same_outputs(*generate_both(llama_pair, ids, attention_mask=mask, **FULL, **kwargs))


@pytest.mark.parametrize("kwargs", [
    dict(num_beams=4, force_words_ids=[[17, 18]]),
    dict(num_beams=4, force_words_ids=[[17, 18], [[40, 41], [50], [60, 61, 62]]], eos_token_id=list(range(5, 30))),
    dict(num_beams=3, force_words_ids=[[[40, 41], [40, 42]]], num_return_sequences=2, length_penalty=0.7),
])
def test_constrained_beam_search(llama_pair, kwargs):
    ids, mask = padded_batch()
    assert_same_outputs(*generate_both(llama_pair, ids, attention_mask=mask, **FULL, **kwargs))


def test_constraint_objects(llama_pair):
    ids, mask = padded_batch(rows=2)
    a, b = generate_both(
        llama_pair, ids, attention_mask=mask, num_beams=4, **FULL,
        ours_kwargs=dict(constraints=[formers.PhrasalConstraint([9, 10]),
                                      formers.DisjunctiveConstraint([[20, 21], [22]])]),
        ref_kwargs=dict(constraints=[transformers.PhrasalConstraint([9, 10]),
                                     transformers.DisjunctiveConstraint([[20, 21], [22]])]))
    assert_same_outputs(a, b)
    assert all(9 in row.tolist() for row in a.sequences)


def test_beam_plain_tensor_and_transition_scores(llama_pair):
    ids, mask = padded_batch()
    kwargs = dict(attention_mask=mask, max_new_tokens=8, pad_token_id=0, num_beams=4, num_return_sequences=2,
                  eos_token_id=EOS_MANY)
    assert_same_outputs(*generate_both(llama_pair, ids, **kwargs))  # return_dict_in_generate=False: the ids
    a, b = generate_both(llama_pair, ids, return_dict_in_generate=True, output_scores=True, **kwargs)
    ours, ref = llama_pair
    for normalize in (False, True):
        x = ours.compute_transition_scores(a.sequences, a.scores, a.beam_indices, normalize_logits=normalize)
        y = ref.compute_transition_scores(b.sequences, b.scores, b.beam_indices, normalize_logits=normalize)
        assert torch.allclose(x, y, atol=1e-5)


def test_transition_scores_without_beams(llama_pair):
    ids, mask = padded_batch()
    a, b = generate_both(llama_pair, ids, seed=2, attention_mask=mask, max_new_tokens=6, pad_token_id=0,
                         do_sample=True, top_k=8, return_dict_in_generate=True, output_scores=True)
    ours, ref = llama_pair
    for normalize in (False, True):
        x = ours.compute_transition_scores(a.sequences, a.scores, normalize_logits=normalize)
        y = ref.compute_transition_scores(b.sequences, b.scores, normalize_logits=normalize)
        assert torch.allclose(x, y, atol=1e-5, equal_nan=True)


def test_beam_scorer_public_api_matches():
    torch.manual_seed(0)
    batch, beams, vocab, length = 2, 3, 11, 5
    ids = torch.randint(0, vocab, (batch * beams, length))
    scores, tokens = torch.topk(torch.randn(batch, beams * vocab), 2 * beams)
    args = (ids, scores, tokens % vocab, tokens // vocab)
    mine = formers.BeamSearchScorer(batch, beams, "cpu", num_beam_hyps_to_keep=2)
    theirs = transformers.BeamSearchScorer(batch, beams, "cpu", num_beam_hyps_to_keep=2)
    a = mine.process(*args, pad_token_id=0, eos_token_id=[int(tokens[0, 0] % vocab)])
    b = theirs.process(*args, pad_token_id=0, eos_token_id=[int(tokens[0, 0] % vocab)])
    for key in ("next_beam_scores", "next_beam_tokens", "next_beam_indices"):
        assert torch.equal(a[key], b[key])
    ids = torch.cat([ids[a["next_beam_indices"]], a["next_beam_tokens"][:, None]], dim=-1)
    fa = mine.finalize(ids, a["next_beam_scores"], None, None, max_length=10, pad_token_id=0, eos_token_id=1)
    fb = theirs.finalize(ids, b["next_beam_scores"], None, None, max_length=10, pad_token_id=0, eos_token_id=1)
    assert torch.equal(fa["sequences"], fb["sequences"])
    assert torch.allclose(fa["sequence_scores"], fb["sequence_scores"])


def test_beam_scorer_validation():
    for bad in (dict(num_beams=1), dict(num_beams=4, num_beam_groups=3)):
        args = dict(batch_size=1, device="cpu", **bad)
        with pytest.raises(ValueError):
            transformers.BeamSearchScorer(**args)
        with pytest.raises(GenerationError, match="num_beam"):
            formers.BeamSearchScorer(**args)


class _Quiet(BaseStreamer):
    def put(self, value):
        pass

    def end(self):
        pass


def test_streamer_with_beams_is_refused(llama_pair):
    ours, _ = llama_pair
    with pytest.raises(GenerationError, match="streamer"):
        ours.generate(torch.tensor([[5, 6]]), num_beams=2, max_new_tokens=2, pad_token_id=0,
                      streamer=_Quiet())
