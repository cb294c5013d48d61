"""Contrastive search, DoLa, classifier-free guidance, watermarked generation and the full
`return_dict_in_generate` outputs against transformers 4.45.2 (left-padded batches, seeded sampling)."""
from __future__ import annotations

import pytest
import torch
import transformers

import formers

from ..conftest import STORIES
from .conftest import assert_same_outputs, generate_both, padded_batch

FULL = dict(max_new_tokens=10, pad_token_id=0, return_dict_in_generate=True, output_scores=True,
            output_logits=True)


@pytest.mark.parametrize("kwargs", [
    dict(penalty_alpha=0.6, top_k=4),
    dict(penalty_alpha=0.6, top_k=4, eos_token_id=list(range(5, 40)), repetition_penalty=1.2),
    dict(penalty_alpha=0.4, top_k=5, output_hidden_states=True, output_attentions=True),
])
def test_contrastive_search(llama_pair, kwargs):
    ids, mask = padded_batch()
    assert_same_outputs(*generate_both(llama_pair, ids, attention_mask=mask, **FULL, **kwargs))


def test_contrastive_low_memory_single_prompt(llama_pair):
    ids, _ = padded_batch(rows=1)  # transformers' low_memory path only handles one row
    assert_same_outputs(*generate_both(llama_pair, ids, penalty_alpha=0.3, top_k=3, low_memory=True, **FULL))


def test_contrastive_low_memory_batch_equals_batched_path(llama_pair):
    ours, _ = llama_pair
    ids, mask = padded_batch()
    kwargs = dict(attention_mask=mask, max_new_tokens=8, pad_token_id=0, penalty_alpha=0.5, top_k=3)
    assert torch.equal(ours.generate(ids, low_memory=True, **kwargs), ours.generate(ids, **kwargs))


@pytest.mark.parametrize("kwargs", [
    dict(dola_layers="low", repetition_penalty=1.2),
    dict(dola_layers="high"),
    dict(dola_layers=[0, 1], do_sample=True, top_k=10),
    dict(dola_layers=[1], eos_token_id=list(range(5, 40)), output_hidden_states=True),
])
def test_dola(llama_pair, kwargs):
    ids, mask = padded_batch()
    assert_same_outputs(*generate_both(llama_pair, ids, seed=5, attention_mask=mask, **FULL, **kwargs))


def test_dola_tied_embeddings_layer_choice(tied_pair):
    ids, mask = padded_batch()
    for layers in ("low", "high"):
        assert_same_outputs(*generate_both(tied_pair, ids, attention_mask=mask, dola_layers=layers, **FULL))


@pytest.mark.parametrize("kwargs", [
    dict(output_hidden_states=True, output_attentions=True),
    dict(do_sample=True, top_p=0.9, output_hidden_states=True),
    dict(do_sample=True, num_return_sequences=2, temperature=0.8),
])
def test_greedy_and_sample_full_outputs(llama_pair, kwargs):
    ids, mask = padded_batch()
    assert_same_outputs(*generate_both(llama_pair, ids, seed=9, attention_mask=mask, **FULL, **kwargs))


@pytest.mark.parametrize("use_cache", [True, False])
def test_classifier_free_guidance(llama_pair, use_cache):
    ids, _ = padded_batch(rows=2)
    negative = torch.tensor([[7, 8, 9, 10], [0, 0, 11, 12]])
    negative_mask = (negative != 0).long()
    kwargs = dict(guidance_scale=1.5, max_new_tokens=8, pad_token_id=0, use_cache=use_cache,
                  return_dict_in_generate=True, output_scores=True)
    assert_same_outputs(*generate_both(llama_pair, ids, negative_prompt_ids=negative,
                                       negative_prompt_attention_mask=negative_mask, **kwargs))
    assert_same_outputs(*generate_both(llama_pair, ids[:1], seed=3, do_sample=True, **kwargs))  # no negative prompt


@pytest.mark.parametrize("scheme", ["lefthash", "selfhash"])
def test_watermarked_generation(llama_pair, scheme):
    ids, mask = padded_batch(rows=2)
    a, b = generate_both(llama_pair, ids, attention_mask=mask, max_new_tokens=8, pad_token_id=0,
                         ours_kwargs=dict(watermarking_config=formers.WatermarkingConfig(seeding_scheme=scheme)),
                         ref_kwargs=dict(watermarking_config=transformers.WatermarkingConfig(seeding_scheme=scheme)))
    assert_same_outputs(a, b)


def test_prefix_allowed_tokens_fn(llama_pair):
    ids, mask = padded_batch()

    def allowed(batch_id, sent):
        return [5 + batch_id, 20, int(sent[-1]) % 50 + 3]
    assert_same_outputs(*generate_both(llama_pair, ids, attention_mask=mask, prefix_allowed_tokens_fn=allowed,
                                       num_beams=2, **FULL))


def test_streamers_follow_every_strategy_like_transformers():
    """TextIteratorStreamer text per strategy equals transformers' (stories260K: a real tokenizer)."""
    texts = {}
    for lib in (formers, transformers):
        tokenizer = lib.AutoTokenizer.from_pretrained(STORIES)
        model = lib.AutoModelForCausalLM.from_pretrained(STORIES)
        prompt = tokenizer("Once upon a time there was", return_tensors="pt")
        for name, kwargs in {"greedy": {}, "sample": dict(do_sample=True, top_k=20),
                             "contrastive": dict(penalty_alpha=0.6, top_k=4), "dola": dict(dola_layers="high"),
                             "lookup": dict(prompt_lookup_num_tokens=3),
                             "assisted": dict(assistant_model=model)}.items():
            streamer = lib.TextIteratorStreamer(tokenizer, skip_prompt=True)
            lib.set_seed(0)
            out = model.generate(**prompt, max_new_tokens=20, streamer=streamer, **kwargs)
            chunks = list(streamer)
            texts.setdefault(name, []).append((chunks, out))
    for name, ((ours, out_a), (theirs, out_b)) in texts.items():
        assert torch.equal(out_a, out_b), name
        assert "".join(ours) == "".join(theirs) and ours == theirs, name


