"""Host syncs per decoding step, counted on CPU by wrapping the Tensor methods that read device values.

Greedy, sampling, beam and contrastive search read the device once per step ("every row done?");
processors and stopping criteria never do; assisted decoding reads per verification step, not per token.
"""
from __future__ import annotations

import warnings

import pytest
import torch

from formers.generation import GenerationConfig, build_logits_processor, build_stopping_criteria

from ..host_reads import count_reads

STEPS = 24


@pytest.mark.parametrize("kwargs,per_step", [
    (dict(), 1),
    (dict(do_sample=True, temperature=0.7, top_k=20, top_p=0.9, min_p=0.05, repetition_penalty=1.2,
          no_repeat_ngram_size=3, sequence_bias={(5,): -1.0}, bad_words_ids=[[7, 8]], min_new_tokens=3), 1),
    (dict(num_beams=4), 1),
    (dict(penalty_alpha=0.6, top_k=4), 1),
    (dict(prompt_lookup_num_tokens=3), 2),
])
def test_reads_per_step(llama_pair, kwargs, per_step):
    ours, _ = llama_pair
    ids = torch.randint(3, 128, (2, 10), generator=torch.Generator().manual_seed(0))  # unpadded: no mask
    ours.generate(ids, max_new_tokens=2, eos_token_id=None, pad_token_id=0, **kwargs)  # warm-up
    with count_reads() as counts:
        ours.generate(ids, max_new_tokens=STEPS, eos_token_id=None, pad_token_id=0, **kwargs)
    setup = 2  # pad-token checks on the prompt, once
    assert sum(counts.values()) <= setup + per_step * STEPS, dict(counts)


def test_processors_and_criteria_never_read(llama_pair):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        config = GenerationConfig(do_sample=True, temperature=0.7, top_k=20, top_p=0.9, min_p=0.05, typical_p=0.9,
                                  epsilon_cutoff=1e-3, eta_cutoff=1e-3, repetition_penalty=1.3,
                                  no_repeat_ngram_size=3, min_length=30, bad_words_ids=[[5], [3, 4]],
                                  sequence_bias={(7,): 1.5}, suppress_tokens=[9], max_length=40,
                                  exponential_decay_length_penalty=(1, 1.5), max_time=60.0, eos_token_id=[2, 3])
    eos = torch.tensor([2, 3])
    processors = build_logits_processor(config, 10, eos, "cpu")
    criteria = build_stopping_criteria(config, eos_token_id=eos, max_position_embeddings=64)
    ids, scores = torch.randint(0, 90, (4, 12)), torch.randn(4, 97)
    processors(ids, scores)  # first call builds cached masks
    with count_reads() as counts:
        for _ in range(3):
            processors(ids, scores)
            criteria(ids, scores)
    assert sum(counts.values()) == 0, dict(counts)
