"""Cohere against 4.45.2: config defaults, its float32 bias-free LayerNorm (block and per-head q/k shapes), bf16
and fp16 logits equal to the bit (float32 rotary, h + attn + mlp summation, logit scale after the float cast), and the
q/k norm weights' shapes and checkpoint names."""
from __future__ import annotations

import pytest
import torch
import transformers
from transformers.models.cohere.modeling_cohere import CohereLayerNorm as TheirLayerNorm

import formers
from formers.models.cohere.modeling_cohere import CohereLayerNorm

from .cases.cohere import CASES
from .family_checks import build, max_diff, padded_batch


def test_config_defaults_equal_4_45():
    ours, theirs = formers.CohereConfig().to_diff_dict(), transformers.CohereConfig().to_diff_dict()
    theirs.setdefault("tie_word_embeddings", True)  # 4.45 omits it at its default; formers always writes it
    ours.pop("formers_version", None)
    theirs.pop("transformers_version", None)
    assert ours == theirs


@pytest.mark.parametrize("shape", [(48,), (4, 12)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_layernorm_equals_4_45(shape, dtype):
    torch.manual_seed(0)
    theirs = TheirLayerNorm(shape, eps=1e-5).to(dtype)
    with torch.no_grad():
        theirs.weight.copy_(torch.randn(shape))
    ours = CohereLayerNorm(shape, eps=1e-5).to(dtype)
    ours.load_state_dict(theirs.state_dict())
    x = (torch.randn(2, 5, *shape) * 3 + 1).to(dtype)
    assert torch.equal(ours(x), theirs(x))
    assert "bias" not in dict(ours.named_parameters())



def test_qk_norm_weights_per_head_and_logit_scale_bites(tmp_path):
    folder = build(CASES["cohere-qknorm-bias-untied"], tmp_path)
    ours = formers.AutoModelForCausalLM.from_pretrained(folder)
    attention = ours.model.layers[0].self_attn
    assert attention.q_norm.weight.shape == (4, 16) and attention.k_norm.weight.shape == (2, 16)
    saved = set(ours._state_dict_for_saving())
    assert {"model.layers.0.self_attn.q_norm.weight", "model.layers.0.self_attn.k_norm.weight"} <= saved
    assert not any(key.startswith("model.layers.0.post_attention_layernorm") for key in saved)  # one norm per layer
    unscaled = formers.AutoModelForCausalLM.from_pretrained(folder, logit_scale=1.0)
    ids, mask = padded_batch(length=8)
    with torch.no_grad():
        a, b = ours(ids, attention_mask=mask).logits, unscaled(ids, attention_mask=mask).logits
    assert max_diff(a, b * 0.3) <= 1e-6 and max_diff(a, b) > 1e-3
