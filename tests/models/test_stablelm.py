"""StableLM against 4.45.2: config defaults, the per-head q/k LayerNorms (one module per head, under 4.45's
checkpoint names), the parallel block's single norm, bf16/fp16 logits equal to the bit, and the SinkCache."""
from __future__ import annotations

import pytest
import torch
import transformers

import formers

from .cases.stablelm import CASES
from .family_checks import build, max_diff, padded_batch


def test_config_defaults_equal_4_45():
    ours, theirs = formers.StableLmConfig().to_diff_dict(), transformers.StableLmConfig().to_diff_dict()
    ours.pop("formers_version", None)
    theirs.pop("transformers_version", None)
    assert ours == theirs
    assert formers.StableLmConfig(rope_scaling={"type": "linear", "factor": 2.0}).rope_scaling["rope_type"] == "linear"



def test_per_head_norms_load_by_head_and_save_under_4_45_names(tmp_path):
    folder = build(CASES["stablelm-qknorm-parallel-gqa-tied"], tmp_path)
    ours = formers.AutoModelForCausalLM.from_pretrained(folder)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(folder)
    attention, reference = ours.model.layers[1].self_attn, theirs.model.layers[1].self_attn
    assert len(attention.q_norm.norms) == 4 and len(attention.k_norm.norms) == 2
    for head in range(2):  # each head keeps its own weights (the build randomised them)
        assert torch.equal(attention.k_norm.norms[head].weight, reference.k_layernorm.norms[head].weight)
    assert not torch.equal(attention.q_norm.norms[0].weight, attention.q_norm.norms[1].weight)
    saved = set(ours._state_dict_for_saving())
    assert "model.layers.1.self_attn.q_layernorm.norms.3.weight" in saved
    assert not [key for key in saved if "post_attention_layernorm" in key]  # the parallel block has one norm


def test_parallel_block_sums_residual_first_in_bf16(tmp_path, monkeypatch):
    """h + attn + mlp, as 4.45 sums it: summing attn + mlp + h instead changes bf16 logits."""
    folder = build(CASES["stablelm-qknorm-parallel-gqa-tied"], tmp_path)
    ids, mask = padded_batch(length=16)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.bfloat16)
    from formers.modeling import decoder
    original = decoder.DecoderLayer.__init__

    def other_order(self, attention, mlp, norm, residual="sequential", branch_scale=1.0):
        original(self, attention, mlp, norm, "parallel" if residual == "parallel_residual_first" else residual,
                 branch_scale)
    monkeypatch.setattr(decoder.DecoderLayer, "__init__", other_order)
    ours = formers.AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.bfloat16)
    with torch.no_grad():
        assert max_diff(ours(ids, attention_mask=mask).logits, theirs(ids, attention_mask=mask).logits, mask) > 0


@pytest.mark.parametrize("name", ["stablelm-qkv-bias", "stablelm-mqa-qknorm-half-rotary"])
def test_sink_cache_greedy_equals_4_45(tmp_path, name):
    """4.45's SinkCache re-rotates kept keys on StableLM's partial rotary dims (`partial_rotation_size`)."""
    folder = build(CASES[name], tmp_path)
    ids = torch.randint(3, 128, (1, 12), generator=torch.Generator().manual_seed(0))
    ours = formers.AutoModelForCausalLM.from_pretrained(folder)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(folder)
    kwargs = dict(max_new_tokens=20, do_sample=False, pad_token_id=0)
    a = ours.generate(ids, past_key_values=formers.SinkCache(window_length=8, num_sink_tokens=2), **kwargs)
    b = theirs.generate(ids, past_key_values=transformers.SinkCache(window_length=8, num_sink_tokens=2), **kwargs)
    assert torch.equal(a, b)
