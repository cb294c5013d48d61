"""Phi3 against 4.45.2: config defaults and rope rules, LongRoPE's short/long switch by the attended length,
the cache refill when generation crosses `original_max_position_embeddings`, the fused checkpoint keys, and
`sliding_window` having no effect outside flash attention."""
from __future__ import annotations

import pytest
import safetensors.torch
import torch
import transformers

import formers
from formers.errors import ConfigError

from ..host_reads import count_reads
from .cases.phi3 import BASE, CASES, LONGROPE
from .family_checks import Case, build, load_pair, max_diff, padded_batch

CROSSING = Case("phi3", {**BASE, "original_max_position_embeddings": 20, "rope_scaling": LONGROPE})


def test_config_defaults_equal_4_45():
    ours, theirs = formers.Phi3Config().to_diff_dict(), transformers.Phi3Config().to_diff_dict()
    ours.pop("formers_version", None)
    theirs.pop("transformers_version", None)
    assert ours == {**theirs, "tie_word_embeddings": False}  # 4.45 leaves its base class's default out of the diff
    assert transformers.Phi3Config().tie_word_embeddings is False


@pytest.mark.parametrize("alias", ["su", "yarn", "longrope"])
def test_longrope_aliases_as_4_45(alias):
    """Older checkpoints name longrope "su" or "yarn": both configs rewrite `type` and add no other key (a
    fourth key would make 4.45.2 refuse the saved config)."""
    shape = dict(hidden_size=64, num_attention_heads=4)  # head_dim 16: 8 factors
    ours = formers.Phi3Config(rope_scaling={**LONGROPE, "type": alias}, **shape)
    theirs = transformers.Phi3Config(rope_scaling={**LONGROPE, "type": alias}, **shape)
    assert ours.rope_scaling == theirs.rope_scaling == LONGROPE


@pytest.mark.parametrize("scaling", [
    {**LONGROPE, "rope_type": "longrope"},  # a fourth field
    {"rope_type": "longrope", "short_factor": [1.0] * 48, "long_factor": [1.0] * 48},  # no `type`
    {**LONGROPE, "type": "linear"},
    {**LONGROPE, "short_factor": [1.0] * 8},  # 4.45's default head_dim is 96: 48 factors
])
def test_rope_scaling_rules_as_4_45(scaling):
    with pytest.raises(ValueError):
        transformers.Phi3Config(rope_scaling=dict(scaling))
    with pytest.raises(ConfigError, match="rope_scaling"):
        formers.Phi3Config(rope_scaling=dict(scaling))


def test_fused_projections_stay_fused_and_save_as_loaded(tmp_path):
    folder = build(CASES["phi3-gqa-longrope"], tmp_path / "ckpt")
    ours = formers.AutoModelForCausalLM.from_pretrained(folder)
    attention, mlp = ours.model.layers[0].self_attn, ours.model.layers[0].mlp
    assert attention.qkv_proj.out_features == 64 + 32 + 32 and attention.qkv_sizes == (64, 32, 32)
    assert mlp.gate_up_proj.out_features == 2 * 96
    ours.save_pretrained(tmp_path / "saved")
    saved = safetensors.torch.load_file(tmp_path / "saved" / "model.safetensors")
    original = safetensors.torch.load_file(folder / "model.safetensors")
    assert sorted(saved) == sorted(original)
    assert "model.layers.0.self_attn.qkv_proj.weight" in saved and "model.layers.0.mlp.gate_up_proj.weight" in saved
    assert all(torch.equal(saved[key], original[key]) for key in original)


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_long_factors_past_the_original_length(tmp_path, implementation):
    """40 positions > 20: the long factors and the attention scaling; through a cache, each step picks the factors
    by the cached plus new length, as 4.45's forward does (the keys cached before the switch stay as they are)."""
    ours, ref = load_pair(build(CROSSING, tmp_path), attn_implementation=implementation)
    ids, mask = (t[1:] for t in padded_batch(length=40))  # both rows padded: positions lag the attended length
    short = transformers.AutoModelForCausalLM.from_pretrained(
        build(Case("phi3", {**BASE, "original_max_position_embeddings": 64, "rope_scaling": LONGROPE}),
              tmp_path / "short"), attn_implementation=implementation)
    with torch.no_grad():
        expected = ref(ids, attention_mask=mask).logits
        assert max_diff(ours(ids, attention_mask=mask).logits, expected, mask) <= 1e-5
        assert max_diff(short(ids, attention_mask=mask).logits, expected, mask) > 1e-3  # the factors matter
        cache_a = ours(ids[:, :16], attention_mask=mask[:, :16]).past_key_values
        cache_b = ref(ids[:, :16], attention_mask=mask[:, :16]).past_key_values
        for t in range(16, 26):
            pos = (mask[:, :t + 1].cumsum(-1) - 1)[:, -1:]
            a = ours(ids[:, t:t + 1], attention_mask=mask[:, :t + 1], position_ids=pos, past_key_values=cache_a)
            b = ref(ids[:, t:t + 1], attention_mask=mask[:, :t + 1], position_ids=pos, past_key_values=cache_b)
            assert max_diff(a.logits, b.logits) <= 1e-5
            cache_a, cache_b = a.past_key_values, b.past_key_values


def _generate(model, ids, mask, **kwargs):
    out = model.generate(input_ids=ids, attention_mask=mask, pad_token_id=0, output_scores=True,
                         return_dict_in_generate=True, **kwargs)
    return out.sequences, torch.stack(out.scores, 1)


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
@pytest.mark.parametrize("padded", [False, True])
def test_greedy_crossing_the_original_length_equals_4_45(tmp_path, padded, implementation, monkeypatch):
    """Prompt 12, 20 new tokens, original length 20: at 21 positions 4.45 drops its cache and feeds the whole
    sequence with the long factors; formers refills there too and gives the same tokens and scores. The factors
    follow the attended length, not the positions (which lag it by the padding in both padded rows)."""
    ours, ref = load_pair(build(CROSSING, tmp_path), attn_implementation=implementation)
    ids, mask = (t[1:] for t in padded_batch()) if padded else padded_batch(rows=1)
    forwards = []
    original_forward = ours.forward
    monkeypatch.setattr(ours, "forward", lambda *a, **k: forwards.append(k["input_ids"].shape[1]) or
                        original_forward(*a, **k))
    tokens_a, scores_a = _generate(ours, ids, mask, max_new_tokens=20, do_sample=False)
    tokens_b, scores_b = _generate(ref, ids, mask, max_new_tokens=20, do_sample=False)
    assert torch.equal(tokens_a, tokens_b) and max_diff(scores_a, scores_b) <= 1e-5
    assert forwards == [12] + [1] * 8 + [21] + [1] * 10  # one refill, where 4.45 refills

    monkeypatch.setattr(formers.Phi3ForCausalLM, "needs_cache_refill", lambda self, cached, total: False)
    _, stale = _generate(ours, ids, mask, max_new_tokens=20, do_sample=False)
    assert max_diff(stale[:, :9], scores_b[:, :9]) <= 1e-5
    assert max_diff(stale[:, 9:], scores_b[:, 9:]) > 1e-3  # without the refill: short-rotated keys after 20


def test_sampling_crossing_the_original_length_equals_4_45(tmp_path):
    ours, ref = load_pair(build(CROSSING, tmp_path))
    ids, mask = padded_batch()
    kwargs = dict(max_new_tokens=24, do_sample=True, top_k=20, temperature=0.8)
    formers.set_seed(7)
    tokens_a, _ = _generate(ours, ids, mask, **kwargs)
    transformers.set_seed(7)
    tokens_b, _ = _generate(ref, ids, mask, **kwargs)
    assert torch.equal(tokens_a, tokens_b)


def _reorder_tuples(past_key_values, beam_idx):
    return tuple(tuple(t.index_select(0, beam_idx.to(t.device)) for t in layer) for layer in past_key_values)


@pytest.mark.parametrize("beams", [dict(num_return_sequences=2), dict(num_beam_groups=2, diversity_penalty=1.0)])
def test_beam_search_crossing_the_original_length(tmp_path, monkeypatch, beams):
    """4.45.2's refill hands its cache back as tuples, and its Phi3 has no `_reorder_cache` for tuples: its beam
    search raises there. Given the plain tuple reorder it lacks, it agrees with formers, which needs none."""
    ours, ref = load_pair(build(CROSSING, tmp_path))
    ids, mask = padded_batch()
    kwargs = dict(input_ids=ids, attention_mask=mask, pad_token_id=0, max_new_tokens=16, num_beams=4,
                  do_sample=False, **beams)
    with pytest.raises(NotImplementedError, match="_reorder_cache"):
        ref.generate(**kwargs)
    monkeypatch.setattr(type(ref), "_reorder_cache", staticmethod(_reorder_tuples), raising=False)
    assert torch.equal(ours.generate(**kwargs), ref.generate(**kwargs))


@pytest.mark.parametrize("strategy", [dict(penalty_alpha=0.6, top_k=4), dict(prompt_lookup_num_tokens=3),
                                      dict(dola_layers="high")])
def test_other_strategies_crossing_the_original_length_equal_4_45(tmp_path, strategy):
    """Contrastive search, prompt lookup (assisted: the refill may come with several candidate tokens) and DoLa
    refill where 4.45's do: same tokens and same logits at every step."""
    ours, ref = load_pair(build(CROSSING, tmp_path))
    ids, mask = padded_batch(rows=1 if "prompt_lookup_num_tokens" in strategy else 3)
    kwargs = dict(input_ids=ids, attention_mask=mask, pad_token_id=0, max_new_tokens=20, do_sample=False,
                  output_logits=True, return_dict_in_generate=True, **strategy)
    a, b = ours.generate(**kwargs), ref.generate(**kwargs)
    assert torch.equal(a.sequences, b.sequences) and len(a.logits) == len(b.logits)
    assert max(max_diff(x, y) for x, y in zip(a.logits, b.logits)) <= 1e-5


def test_crossing_reads_the_device_once_per_step_as_other_families(tmp_path):
    """The factor choice happens on the device and the refill is decided from host counters: no extra reads."""
    ours = formers.AutoModelForCausalLM.from_pretrained(build(CROSSING, tmp_path))
    ids = torch.randint(3, 128, (2, 10), generator=torch.Generator().manual_seed(0))  # unpadded: no mask
    ours.generate(ids, max_new_tokens=2, eos_token_id=None, pad_token_id=0)  # warm-up
    with count_reads() as counts:
        ours.generate(ids, max_new_tokens=24, eos_token_id=None, pad_token_id=0)  # crosses 20 at step 11
    assert sum(counts.values()) <= 2 + 24, dict(counts)  # the pad checks once, "all rows done?" per step


def test_no_refill_without_rope_scaling_or_when_the_prompt_is_past_it(tmp_path):
    ours = formers.AutoModelForCausalLM.from_pretrained(build(CROSSING, tmp_path))
    assert ours.needs_cache_refill(20, 21) and not ours.needs_cache_refill(21, 22)
    assert not ours.needs_cache_refill(0, 21)  # the prefill itself
    assert not formers.AutoModelForCausalLM.from_pretrained(build(CASES["phi3-mha-window"], tmp_path / "plain")) \
        .needs_cache_refill(20, 21)


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_window_is_ignored_as_in_4_45(tmp_path, implementation, monkeypatch):
    folder = build(CASES["phi3-mha-window"], tmp_path)
    ids, mask = padded_batch(length=16)
    ours, theirs = load_pair(folder, attn_implementation=implementation)
    unwindowed = transformers.AutoModelForCausalLM.from_pretrained(folder, attn_implementation=implementation,
                                                                   sliding_window=None)
    with torch.no_grad():
        reference = theirs(ids, attention_mask=mask).logits
        assert max_diff(reference, unwindowed(ids, attention_mask=mask).logits) == 0  # 4.45 ignores the window
        assert max_diff(ours(ids, attention_mask=mask).logits, reference, mask) <= 1e-5
        # a formers that honoured the window (5 < 16 tokens) would differ: the family checks would catch it
        monkeypatch.setattr(formers.Phi3Config, "layer_sliding_window", lambda self, idx: self.sliding_window)
        windowed = formers.AutoModelForCausalLM.from_pretrained(folder, attn_implementation=implementation)
        assert max_diff(windowed(ids, attention_mask=mask).logits, reference, mask) > 1e-3
