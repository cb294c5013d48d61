"""Nemotron against 4.45.2: config defaults, LayerNorm1P and squared ReLU in bf16, bf16 greedy tokens against
4.45.2's cached generate(), what 4.45.2's forward does with caches (the reason for oracle_cache=False), its
ignored rope_scaling, and bf16/fp16 logits equal to the bit."""
from __future__ import annotations

import pytest
import torch
import transformers
from transformers.activations import ACT2FN
from transformers.models.nemotron.modeling_nemotron import NemotronLayerNorm1P

import formers
from formers.errors import ConfigError
from formers.modeling.activations import get_activation
from formers.models.nemotron.modeling_nemotron import LayerNorm1P

from .cases.nemotron import CASES
from .family_checks import build, max_diff, padded_batch


def test_config_defaults_equal_4_45():
    ours, theirs = formers.NemotronConfig().to_diff_dict(), transformers.NemotronConfig().to_diff_dict()
    ours.pop("formers_version", None)
    theirs.pop("transformers_version", None)
    assert ours == theirs
    assert formers.NemotronConfig(hidden_size=64, num_attention_heads=4).head_dim == 16


def test_unset_kv_heads_is_refused_by_name():
    with pytest.raises(TypeError):  # 4.45.2: num_heads // None
        transformers.NemotronForCausalLM(transformers.NemotronConfig(hidden_size=32, num_attention_heads=4,
                                                                     num_hidden_layers=1, vocab_size=16))
    with pytest.raises(ConfigError, match="num_key_value_heads"):
        formers.NemotronForCausalLM(formers.NemotronConfig(hidden_size=32, num_attention_heads=4,
                                                           num_hidden_layers=1, vocab_size=16))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_layernorm1p_and_relu2_equal_4_45(dtype):
    torch.manual_seed(0)
    theirs = NemotronLayerNorm1P(48, eps=1e-5).to(dtype)
    ours = LayerNorm1P(48, eps=1e-5).to(dtype)
    with torch.no_grad():
        theirs.weight.copy_(torch.randn(48) * 0.3)  # stored as w - 1: 1 + w rounds in bf16
        theirs.bias.copy_(torch.randn(48) * 0.1)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 5, 48).to(dtype) * 3
    assert torch.equal(ours(x), theirs(x))
    assert max_diff(ours(x), torch.nn.functional.layer_norm(x, (48,), ours.weight, ours.bias)) > 0.1  # the +1 matters
    assert torch.equal(get_activation("relu2")(x), ACT2FN["relu2"](x))


def test_bf16_greedy_equals_4_45_cached_generate(tmp_path):
    """4.45.2's generate() passes a cache and positions, so its cached bf16 decoding is the oracle here (the
    shared bf16 check would compare with its uncached recomputation, whose bf16 rounding differs)."""
    folder = build(CASES["nemotron-gqa-half-rotary"], tmp_path)
    ours = formers.AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.bfloat16)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.bfloat16)
    ids, mask = padded_batch()
    kwargs = dict(input_ids=ids, attention_mask=mask, pad_token_id=0, max_new_tokens=32, do_sample=False)
    assert torch.equal(ours.generate(**kwargs), theirs.generate(**kwargs))


def test_forward_cache_where_4_45_returns_none(tmp_path):
    """4.45.2's forward without a Cache object returns no cache; formers returns one (as the other families do)
    whose next step equals 4.45.2's full recomputation."""
    folder = build(CASES["nemotron-gqa-half-rotary"], tmp_path)
    ours = formers.AutoModelForCausalLM.from_pretrained(folder)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(folder)
    ids, mask = padded_batch(length=12)
    with torch.no_grad():
        assert theirs(ids[:, :11], attention_mask=mask[:, :11], use_cache=True).past_key_values is None
        past = ours(ids[:, :11], attention_mask=mask[:, :11], use_cache=True).past_key_values
        position = (mask.cumsum(-1) - 1).clamp(min=0)[:, -1:]
        step = ours(ids[:, 11:], attention_mask=mask, position_ids=position, past_key_values=past).logits
        positions = torch.cat([torch.arange(11).expand(3, 11), position], 1)
        full = theirs(ids, attention_mask=mask, position_ids=positions).logits[:, -1:]
    assert max_diff(step, full) <= 1e-5


def test_rope_scaling_is_kept_but_ignored_as_in_4_45(tmp_path):
    case = CASES["nemotron-gqa-half-rotary"]
    folder = build(type(case)(case.model_type, {"rope_scaling": {"type": "linear", "factor": 4.0}}), tmp_path)
    ours = formers.AutoModelForCausalLM.from_pretrained(folder)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(folder)
    assert ours.config.rope_scaling == theirs.config.rope_scaling == {"type": "linear", "factor": 4.0}
    ids, mask = padded_batch(length=16)
    with torch.no_grad():
        assert max_diff(ours(ids, attention_mask=mask).logits, theirs(ids, attention_mask=mask).logits, mask) <= 1e-5

