"""On CUDA, per-step processors and stopping criteria never synchronize with the host.

Skipped without a GPU. Construction (which may copy config lists to the device) and the first call
(which builds cached masks) happen before sync checking starts.
"""
from __future__ import annotations

import warnings

import pytest
import torch

from formers.generation import GenerationConfig, build_logits_processor, build_stopping_criteria
from formers.generation import logits_process as fm

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CONFIGS = [
    dict(do_sample=True, temperature=0.7, top_k=20, top_p=0.9, min_p=0.05),
    dict(do_sample=True, top_p=0.5, min_p=0.1, typical_p=0.8, epsilon_cutoff=3e-3, eta_cutoff=1e-3, num_beams=2),
    dict(repetition_penalty=1.3, no_repeat_ngram_size=3, min_new_tokens=4, min_length=30,
         bad_words_ids=[[5], [3, 4], [2], [1, 2, 3]], sequence_bias={(7,): 1.5, (1, 8): -2.0}),
    dict(forced_bos_token_id=4, forced_eos_token_id=[2], max_length=40, remove_invalid_values=True,
         exponential_decay_length_penalty=(1, 1.5), suppress_tokens=[9, 10], begin_suppress_tokens=[11],
         renormalize_logits=True, encoder_repetition_penalty=1.2, encoder_no_repeat_ngram_size=2),
]


@pytest.mark.parametrize("kwargs", CONFIGS)
def test_processors_and_criteria_do_not_sync(kwargs):
    device = torch.device("cuda")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        config = GenerationConfig(eos_token_id=[2, 3], max_time=60.0, **kwargs)
    eos = torch.tensor([2, 3], device=device)
    ids = torch.randint(0, 12, (4, 10), device=device)
    processors = build_logits_processor(config, 10, eos, device, encoder_input_ids=ids.clone())
    criteria = build_stopping_criteria(config, eos_token_id=eos, max_position_embeddings=64)
    scores = torch.randn(4, 97, device=device)
    processors(ids, scores)
    criteria(ids, scores)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            out = processors(ids, scores)
            done = criteria(ids, scores)
            ids = torch.cat([ids, torch.argmax(out, dim=-1, keepdim=True)], dim=-1)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert out.shape == scores.shape and done.device.type == "cuda" and done.dtype == torch.bool


def test_bad_words_with_device_eos_do_not_sync():
    device = torch.device("cuda")
    eos = torch.tensor([6], device=device)
    proc = fm.NoBadWordsLogitsProcessor([[5], [6], [2, 5]], eos)  # eos ids are never read on the host
    ids = torch.randint(0, 12, (4, 6), device=device)
    scores = torch.randn(4, 97, device=device)
    first = proc(ids, scores)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        again = proc(ids, scores)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.equal(first, again)
    assert torch.isneginf(first[:, 5]).all() and not torch.isneginf(first[:, 6]).any()


def test_hamming_and_prefix_free_processors_do_not_sync():
    device = torch.device("cuda")
    proc = fm.HammingDiversityLogitsProcessor(0.5, num_beams=4, num_beam_groups=2)
    current = torch.randint(0, 97, (8,), device=device)
    scores = torch.randn(4, 97, device=device)
    ids = torch.randint(0, 97, (4, 3), device=device)
    proc(ids, scores, current_tokens=current, beam_group_idx=1)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = fm.LogitsProcessorList([proc])(ids, scores, current_tokens=current, beam_group_idx=1)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert out.shape == scores.shape
