"""Smaller pieces against transformers 4.45.2: confidence / deprecated criteria, output classes, embeds-only
prompts and cache handling in the beam and contrastive paths (token healing: test_token_healing.py)."""
from __future__ import annotations

import pytest
import torch
import transformers
import transformers.generation as hg
import transformers.generation.stopping_criteria as hs

import formers
import formers.generation as fg
from formers.generation import stopping_criteria as fs

from .conftest import assert_same_outputs, generate_both, padded_batch


def test_confidence_criteria():
    generator = torch.Generator().manual_seed(0)
    scores = (torch.randn(3, 11, generator=generator) * 3,)
    ids = torch.randint(0, 11, (3, 4), generator=generator)
    for threshold in (0.05, 0.2, 0.5):
        ours = fs.ConfidenceCriteria(threshold)(ids, scores)
        assert ours.dtype == torch.bool and ours.shape == (3,)
        assert bool(ours[0]) == bool(hs.ConfidenceCriteria(threshold)(ids[:1], scores))  # 4.45: row 0 only


def test_validate_stopping_criteria():
    checked = fs.validate_stopping_criteria(fs.StoppingCriteriaList(), 9)
    assert checked.max_length == 9 == hs.validate_stopping_criteria(hs.StoppingCriteriaList(), 9).max_length
    with pytest.warns(UserWarning, match="max_length"):
        fs.validate_stopping_criteria(fs.StoppingCriteriaList([fs.MaxLengthCriteria(5)]), 9)


def test_public_names_and_aliases():
    ours_only = {"build_logits_processor", "build_stopping_criteria", "AsyncTextIteratorStreamer", "BaseStreamer"}
    for name in set(fg.__all__) - ours_only:
        assert hasattr(hg, name), name  # every other exported name is a transformers.generation name
    assert fg.GreedySearchDecoderOnlyOutput is fg.GenerateDecoderOnlyOutput
    assert fg.BeamSampleDecoderOnlyOutput is fg.GenerateBeamDecoderOnlyOutput
    for name in ("BeamSearchScorer", "PhrasalConstraint", "WatermarkDetector", "StopStringCriteria",
                 "UnbatchedClassifierFreeGuidanceLogitsProcessor", "GenerateBeamDecoderOnlyOutput"):
        assert getattr(formers, name) is getattr(fg, name)


def test_embeds_only_prompt_with_beams(llama_pair):
    ours, _ = llama_pair
    ids, mask = padded_batch()
    embeds = ours.get_input_embeddings()(ids).detach()
    kwargs = dict(attention_mask=mask, max_new_tokens=6, pad_token_id=0, num_beams=3, return_dict_in_generate=True,
                  output_scores=True)
    assert_same_outputs(*generate_both(llama_pair, None, inputs_embeds=embeds, **kwargs))


@pytest.mark.parametrize("kwargs", [dict(num_beams=3), dict(penalty_alpha=0.5, top_k=3)])
def test_returned_cache_forms(llama_pair, kwargs):
    ids, mask = padded_batch()
    base = dict(attention_mask=mask, max_new_tokens=5, pad_token_id=0, return_dict_in_generate=True, **kwargs)
    a, b = generate_both(llama_pair, ids, **base)
    assert isinstance(a.past_key_values, tuple)  # legacy tuples by default, as 4.45
    assert torch.allclose(a.past_key_values[1][0], b.past_key_values[1][0], atol=1e-5)
    a, _ = generate_both(llama_pair, ids, return_legacy_cache=False, **base)
    assert isinstance(a.past_key_values, formers.DynamicCache)


def test_beam_search_without_cache(llama_pair):
    ids, mask = padded_batch()
    assert_same_outputs(*generate_both(llama_pair, ids, attention_mask=mask, max_new_tokens=5, pad_token_id=0,
                                       num_beams=2, use_cache=False))


def test_accelerator_style_lazy_stop_check_gives_the_same_result(llama_pair, monkeypatch):
    """On accelerators the loop asks "all done?" every 8 steps and trims the overshoot: same output."""
    from formers.generation.context import GenerationContext

    ours, _ = llama_pair
    ids, mask = padded_batch()
    kwargs = dict(attention_mask=mask, max_new_tokens=20, pad_token_id=0, eos_token_id=list(range(5, 60)),
                  return_dict_in_generate=True, output_scores=True, return_legacy_cache=False)
    every_step = ours.generate(ids, **kwargs)
    monkeypatch.setattr(GenerationContext, "sync_every", lambda self, device: 8)
    lazy = ours.generate(ids, **kwargs)
    assert torch.equal(lazy.sequences, every_step.sequences) and len(lazy.scores) == len(every_step.scores)
    assert lazy.past_key_values.get_seq_length() == every_step.past_key_values.get_seq_length()


def test_async_streamer_with_generate_in_a_thread():
    import asyncio

    from ..conftest import STORIES
    if not STORIES.exists():
        pytest.skip("stories260K is absent")
    tokenizer = formers.AutoTokenizer.from_pretrained(STORIES)
    model = formers.AutoModelForCausalLM.from_pretrained(STORIES)
    prompt = tokenizer("Once upon a time", return_tensors="pt")

    async def main():
        streamer = fg.AsyncTextIteratorStreamer(tokenizer, skip_prompt=True, timeout=30.0)
        loop = asyncio.get_running_loop()
        job = loop.run_in_executor(None, lambda: model.generate(**prompt, max_new_tokens=16, streamer=streamer,
                                                                prompt_lookup_num_tokens=3))
        chunks = [chunk async for chunk in streamer]
        return chunks, await job

    chunks, out = asyncio.run(main())
    assert "".join(chunks) == tokenizer.decode(out[0, prompt.input_ids.shape[1]:])
