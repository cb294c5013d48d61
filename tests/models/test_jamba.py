"""Jamba against transformers 4.45.2 (its torch slow path, use_mamba_kernels=False): config defaults, fp32
logits on a left-padded batch (eager and SDPA) for a hybrid MoE layout and a dense one, router logits and
aux loss, the cache step by step, greedy / beam / seeded sampling, assisted decoding, the rollback of a
state cache, and a save round trip that 4.45.2 loads.

Two 4.45.2 defects are shown, and formers does the right thing instead:
- a cached forward of several tokens (chunked prefill, assisted decoding) restarts the Mamba layers' conv
  from zeros while continuing the SSM state: its logits differ from the whole-sequence forward;
- `output_router_logits=True` on a model without MoE layers raises (its loss indexes an empty tuple).
"""
from __future__ import annotations

import pytest
import torch
import transformers
from transformers.models.jamba.modeling_jamba import (
    HybridMambaAttentionDynamicCache as OracleCache,
)

import formers
from formers.errors import CacheError, ConfigError
from formers.generation.context import GenerationContext
from formers.models.jamba.modeling_jamba import HybridMambaAttentionDynamicCache

from .family_checks import (
    Case,
    build,
    check_greedy,
    check_sampling,
    check_streamer_and_stop_strings,
    load_pair,
    max_diff,
    padded_batch,
)

BASE = dict(vocab_size=128, hidden_size=32, intermediate_size=48, num_hidden_layers=4, num_attention_heads=4,
            num_key_value_heads=2, attn_layer_period=2, attn_layer_offset=1, expert_layer_period=2,
            expert_layer_offset=0, num_experts=4, num_experts_per_tok=2, mamba_d_state=5, mamba_d_conv=4,
            mamba_expand=2, use_mamba_kernels=False, pad_token_id=0, bos_token_id=1, eos_token_id=2)
CASES = {
    # layers: mamba+MoE, attention+MLP, mamba+MoE, attention+MLP; GQA 4/2 heads, odd d_state
    "moe": Case("jamba", {}, base=BASE),
    # dense: every feed-forward an MLP; attention at layer 2 of 3, conv kernel 3, MQA, biases, tied head; weights
    # drawn 10x wider than 0.02 (at 0.02 the tied head echoes the last token: greedy was one repeated token)
    "dense": Case("jamba", {"num_experts": 1, "num_hidden_layers": 3, "attn_layer_period": 3, "attn_layer_offset": 2,
                            "mamba_d_conv": 3, "num_key_value_heads": 1, "mamba_proj_bias": True,
                            "tie_word_embeddings": True, "mamba_dt_rank": 3, "initializer_range": 0.2},
                  base=BASE, seed=1),
    # MoE on every layer with top-1 routing, attention first
    "moe-top1": Case("jamba", {"expert_layer_period": 1, "num_experts_per_tok": 1, "attn_layer_offset": 0,
                               "num_hidden_layers": 3}, base=BASE, seed=2),
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return {name: build(case, tmp_path_factory.mktemp(name)) for name, case in CASES.items()}


@pytest.fixture(scope="module")
def pairs(folders):
    return {name: load_pair(folder) for name, folder in folders.items()}


def test_config_defaults_equal_4_45():
    ours = formers.AutoConfig.for_model("jamba").to_diff_dict()
    theirs = transformers.AutoConfig.for_model("jamba").to_diff_dict()
    ours.pop("formers_version", None)
    theirs.pop("transformers_version", None)
    assert ours.pop("tie_word_embeddings") == theirs.pop("tie_word_embeddings", False)
    assert ours == theirs
    config = formers.JambaConfig(num_hidden_layers=6, attn_layer_period=3, attn_layer_offset=1, hidden_size=40,
                                 num_attention_heads=4)
    oracle = transformers.JambaConfig(num_hidden_layers=6, attn_layer_period=3, attn_layer_offset=1, hidden_size=40,
                                      num_attention_heads=4)
    assert config.layers_block_type == oracle.layers_block_type
    assert config.layers_num_experts == oracle.layers_num_experts and config.mamba_dt_rank == 3
    with pytest.raises(ConfigError, match="attn_layer_offset"):
        formers.JambaConfig(attn_layer_period=2, attn_layer_offset=2)


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_logits_parity_on_a_padded_batch(folders, name, implementation):
    ours, ref = load_pair(folders[name], attn_implementation=implementation)
    kinds = ["mamba" if type(layer).__name__ == "JambaMambaLayer" else "attention" for layer in ours.model.layers]
    assert kinds == ref.config.layers_block_type and {"mamba", "attention"} <= set(kinds)
    ids, mask = padded_batch(length=16)
    with torch.no_grad():
        a, b = ours(ids, attention_mask=mask), ref(ids, attention_mask=mask)
    assert a.logits.shape == b.logits.shape and max_diff(a.logits, b.logits, mask) <= 1e-5


@pytest.mark.parametrize("name", ["moe", "moe-top1"])
def test_router_logits_aux_loss_outputs_and_embeds(pairs, name):
    ours, ref = pairs[name]
    ids, mask = padded_batch(length=10)
    labels = ids.masked_fill(mask == 0, -100)
    kwargs = dict(attention_mask=mask, labels=labels, output_router_logits=True, output_hidden_states=True,
                  output_attentions=True, use_cache=False)
    with torch.no_grad():
        a, b = ours(ids, **kwargs), ref(ids, **kwargs)
    assert len(a.router_logits) == len(b.router_logits) == sum(n > 1 for n in ref.config.layers_num_experts)
    assert max(max_diff(x, y) for x, y in zip(a.router_logits, b.router_logits)) <= 1e-5
    assert abs(a.aux_loss.item() - b.aux_loss.item()) <= 1e-6 and abs(a.loss.item() - b.loss.item()) <= 1e-5
    assert len(a.hidden_states) == len(b.hidden_states)
    assert max(max_diff(x, y, mask) for x, y in zip(a.hidden_states, b.hidden_states)) <= 1e-5
    assert len(a.attentions) == len(b.attentions) == ref.config.layers_block_type.count("attention")
    assert max(max_diff(x.transpose(1, 2), y.transpose(1, 2), mask) for x, y in zip(a.attentions, b.attentions)) <= 1e-5
    embeds = ref.get_input_embeddings()(ids)
    with torch.no_grad():
        assert max_diff(ours(inputs_embeds=embeds, attention_mask=mask).logits,
                        ref(inputs_embeds=embeds, attention_mask=mask).logits, mask) <= 1e-5


def test_dense_model_router_logits_4_45_defect(pairs):
    """4.45.2 raises on output_router_logits=True when no layer is MoE; formers returns no logits, aux loss 0."""
    ours, ref = pairs["dense"]
    ids, mask = padded_batch(length=8)
    with pytest.raises(IndexError):
        ref(ids, attention_mask=mask, output_router_logits=True)
    out = ours(ids, attention_mask=mask, output_router_logits=True)
    assert out.router_logits == () and out.aux_loss == 0


def test_cache_step_by_step_as_4_45(pairs):
    """4.45's manual loop: prefill into its cache, then one token at a time; states and keys agree."""
    ours, ref = pairs["moe"]
    ids, mask = padded_batch(length=16)
    cache_b = OracleCache(ref.config, 3, dtype=torch.float32)
    with torch.no_grad():
        a = ours(ids[:, :10], attention_mask=mask[:, :10], use_cache=True)
        ref(ids[:, :10], attention_mask=mask[:, :10], past_key_values=cache_b, cache_position=torch.arange(10))
        cache_a = a.past_key_values
        assert isinstance(cache_a, HybridMambaAttentionDynamicCache) and cache_a.get_seq_length() == 10
        for t in range(10, 16):
            position = torch.tensor([t])
            a = ours(ids[:, t:t + 1], attention_mask=mask[:, :t + 1], past_key_values=cache_a, cache_position=position)
            b = ref(ids[:, t:t + 1], attention_mask=mask[:, :t + 1], past_key_values=cache_b, cache_position=position)
            assert max_diff(a.logits, b.logits) <= 1e-5
    for layer, kind in enumerate(ref.config.layers_block_type):
        pairs_ = ((cache_a.conv_states, cache_b.conv_states), (cache_a.ssm_states, cache_b.ssm_states)) \
            if kind == "mamba" else ((cache_a.key_cache, cache_b.key_cache), (cache_a.value_cache, cache_b.value_cache))
        for x, y in pairs_:
            assert x[layer].shape == y[layer].shape and max_diff(x[layer], y[layer]) <= 1e-5


@pytest.mark.parametrize("name", ["moe", "dense"])
def test_several_cached_tokens_equal_the_full_forward_4_45_defect(pairs, name):
    """A cached forward of 6 tokens continues every layer. 4.45.2's restarts the Mamba conv from zeros (and keeps
    the SSM state), so its chunked logits drift from its own full forward; formers' equal it."""
    ours, ref = pairs[name]
    ids, mask = padded_batch(length=16)
    with torch.no_grad():
        full = ref(ids, attention_mask=mask, use_cache=False).logits
        first = ours(ids[:, :10], attention_mask=mask[:, :10], use_cache=True)
        rest = ours(ids[:, 10:], attention_mask=mask, past_key_values=first.past_key_values)
        cache = OracleCache(ref.config, 3, dtype=torch.float32)
        oracle = [ref(ids[:, :10], attention_mask=mask[:, :10], past_key_values=cache, cache_position=torch.arange(10)),
                  ref(ids[:, 10:], attention_mask=mask, past_key_values=cache, cache_position=torch.arange(10, 16))]
    assert max_diff(torch.cat([first.logits, rest.logits], 1), full, mask) <= 1e-5
    assert max_diff(torch.cat([o.logits for o in oracle], 1), full, mask) > 1e-4


@pytest.mark.parametrize("name", sorted(CASES))
def test_greedy_beam_and_sampling_equal_4_45(folders, pairs, name):
    check_greedy(folders[name], CASES[name])  # 32 tokens on a padded batch of 3
    check_sampling(folders[name], CASES[name])
    ours, ref = pairs[name]
    ids, mask = padded_batch()
    kwargs = dict(input_ids=ids, attention_mask=mask, pad_token_id=0, max_new_tokens=16, num_beams=4,
                  num_return_sequences=2, do_sample=False, return_dict_in_generate=True, output_scores=True)
    a, b = ours.generate(**kwargs), ref.generate(**kwargs)
    # the scores too: this tiny model's tokens barely depend on the Mamba states that beams must reorder
    assert torch.equal(a.sequences, b.sequences) and max_diff(a.sequences_scores, b.sequences_scores) <= 1e-6


def test_streamer_and_stop_strings_as_4_45(pairs):
    ours, ref = pairs["moe"]
    ids, mask = padded_batch(rows=1)
    check_streamer_and_stop_strings(ours, ref, ids, mask)


def test_generate_makes_the_hybrid_cache_and_continues_it(pairs, caplog):
    ours, ref = pairs["moe"]
    ids, mask = padded_batch()
    kwargs = dict(attention_mask=mask, pad_token_id=0, max_new_tokens=10, do_sample=False)
    out = ours.generate(ids, return_dict_in_generate=True, **kwargs)
    cache = out.past_key_values
    assert isinstance(cache, HybridMambaAttentionDynamicCache) and cache.get_seq_length() == out.sequences.shape[1] - 1
    assert torch.equal(ours.generate(ids, cache_implementation="static", **kwargs), out.sequences)
    assert "is ignored" in caplog.text
    # continue the returned cache by one token: the same logits as the whole sequence without a cache
    longer = torch.cat([out.sequences, torch.full((3, 1), 5)], dim=1)
    longer_mask = torch.cat([mask, torch.ones(3, longer.shape[1] - mask.shape[1], dtype=mask.dtype)], dim=1)
    with torch.no_grad():
        step = ours(longer[:, -2:-1], attention_mask=longer_mask[:, :-1], past_key_values=cache).logits
        whole = ref(longer[:, :-1], attention_mask=longer_mask[:, :-1], use_cache=False).logits[:, -1:]
    assert max_diff(step, whole) <= 1e-5
    with pytest.raises(CacheError, match="HybridMambaAttentionDynamicCache"):
        ours(ids, past_key_values=formers.DynamicCache())


def test_assisted_decoding_and_overshoot_rollback(pairs, monkeypatch):
    """A Jamba draft (its cache rolled back to checkpoints) gives greedy's tokens; off the CPU decode() checks
    "all done?" every 8 steps and rewinds the returned cache past the overshoot steps."""
    ours, _ = pairs["moe"]
    draft, _ = pairs["dense"]
    ids, mask = padded_batch()
    for row in range(3):
        kwargs = dict(input_ids=ids[row:row + 1], attention_mask=mask[row:row + 1], pad_token_id=0,
                      max_new_tokens=20, do_sample=False)
        assert torch.equal(ours.generate(**kwargs, assistant_model=draft), ours.generate(**kwargs))
    kwargs = dict(attention_mask=mask, pad_token_id=0, max_new_tokens=30, do_sample=False)
    free = ours.generate(ids, **kwargs)
    eos = [int(free[row, 13 + row]) for row in range(3)]
    every_step = ours.generate(ids, eos_token_id=eos, return_dict_in_generate=True, **kwargs)
    monkeypatch.setattr(GenerationContext, "sync_every", lambda self, device: 8)
    batched = ours.generate(ids, eos_token_id=eos, return_dict_in_generate=True, **kwargs)
    assert torch.equal(batched.sequences, every_step.sequences)
    a, b = every_step.past_key_values, batched.past_key_values
    assert a.get_seq_length() == b.get_seq_length() == every_step.sequences.shape[1] - 1
    assert all(torch.equal(x, y) for x, y in zip(a.ssm_states + a.key_cache, b.ssm_states + b.key_cache))


def test_cache_snapshot_restore_and_rows(pairs):
    ours, _ = pairs["moe"]
    ids, mask = padded_batch(length=12)
    with torch.no_grad():
        cache = ours(ids[:, :8], attention_mask=mask[:, :8], use_cache=True).past_key_values
        saved = cache.snapshot()
        first = ours(ids[:, 8:], attention_mask=mask, past_key_values=cache).logits
        cache.restore(saved)
        assert cache.get_seq_length() == 8
        assert torch.equal(ours(ids[:, 8:], attention_mask=mask, past_key_values=cache).logits, first)
        with pytest.raises(CacheError, match="cannot forget"):
            cache.crop(8)
        cache.batch_select_indices(torch.tensor([2]))
        assert cache.batch_size == 1 and cache.key_cache[1].shape[0] == 1
        cache.reset()
    assert cache.get_seq_length() == 0 and not cache.has_previous_state and cache.key_cache[1].shape[2] == 0


@pytest.mark.parametrize("name", ["moe", "dense"])
def test_save_round_trip_loads_in_4_45(folders, name, tmp_path):
    ours = formers.AutoModelForCausalLM.from_pretrained(folders[name])
    ours.save_pretrained(tmp_path)
    ref, again = (transformers.AutoModelForCausalLM.from_pretrained(f) for f in (folders[name], tmp_path))
    assert type(again) is type(ref) and sorted(again.state_dict()) == sorted(ref.state_dict())
    ids, mask = padded_batch(length=10)
    with torch.no_grad():
        assert max_diff(again(ids, attention_mask=mask).logits, ref(ids, attention_mask=mask).logits) == 0
    assert type(formers.AutoModel.from_pretrained(tmp_path)).__name__ == "JambaModel"


def test_gradients_equal_4_45(folders):
    """Training: the loss with the router's aux term and every parameter's gradient match 4.45's."""
    ours, ref = load_pair(folders["moe"])
    ids, mask = padded_batch(length=12)
    labels = ids.masked_fill(mask == 0, -100)
    for model in (ours, ref):
        model.train()
        model(ids, attention_mask=mask, labels=labels, output_router_logits=True, use_cache=False).loss.backward()
    theirs = {name: param.grad for name, param in ref.named_parameters()}
    ours_grads = ours.key_map(ours.config).to_checkpoint({n: p.grad for n, p in ours.named_parameters()}, ours.config)
    assert sorted(ours_grads) == sorted(theirs)
    assert max(max_diff(ours_grads[name], theirs[name]) for name in theirs) <= 1e-5
