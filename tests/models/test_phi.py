"""Phi against 4.45.2: config defaults, the float32 scores of its eager kernel in bf16, and `qk_layernorm` with
several heads (where 4.45.2 crashes; formers normalizes head by head, checked against a per-head oracle)."""
from __future__ import annotations

import pytest
import torch
import transformers
from torch import nn

import formers

from .cases.phi import CASES
from .family_checks import Case, build, load_pair, max_diff, padded_batch


def test_config_defaults_equal_4_45():
    ours, theirs = formers.PhiConfig().to_diff_dict(), transformers.PhiConfig().to_diff_dict()
    ours.pop("formers_version", None)
    theirs.pop("transformers_version", None)
    assert ours == {**theirs, "tie_word_embeddings": False}  # 4.45 leaves its base class's default out of the diff
    assert transformers.PhiConfig().tie_word_embeddings is False


def test_bf16_eager_scores_in_float32_as_4_45(tmp_path):
    """4.45's eager path multiplies float32 queries and keys (phi-2 overflows in half precision): the same bf16
    logits; the shared eager kernel (bf16 scores) would be off by a bf16 step."""
    ours, ref = load_pair(build(CASES["phi-gqa-partial-half"], tmp_path), attn_implementation="eager",
                          torch_dtype=torch.bfloat16)
    ids, mask = padded_batch(length=16)
    with torch.no_grad():
        assert max_diff(ours(ids, attention_mask=mask).logits, ref(ids, attention_mask=mask).logits, mask) == 0


class PerHead(nn.Module):
    """Applies a LayerNorm sized head_dim to each head of a flat projection [B, T, H * D]."""

    def __init__(self, norm: nn.LayerNorm):
        super().__init__()
        self.norm = norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.unflatten(-1, (-1, self.norm.normalized_shape[0]))).flatten(-2)


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_qk_layernorm_per_head_with_several_heads(tmp_path, implementation):
    folder = build(Case("phi", {"qk_layernorm": True}), tmp_path)  # 4 query heads, 2 KV heads of 16
    ours, ref = load_pair(folder, attn_implementation=implementation)
    ids, mask = padded_batch(length=16)
    with pytest.raises(RuntimeError, match="normalized_shape"), torch.no_grad():
        ref(ids, attention_mask=mask)
    for layer in ref.model.layers:
        layer.self_attn.q_layernorm = PerHead(layer.self_attn.q_layernorm)
        layer.self_attn.k_layernorm = PerHead(layer.self_attn.k_layernorm)
    unnormed = transformers.AutoModelForCausalLM.from_pretrained(folder, attn_implementation=implementation,
                                                                 qk_layernorm=False)
    with torch.no_grad():
        expected = ref(ids, attention_mask=mask).logits
        assert max_diff(ours(ids, attention_mask=mask).logits, expected, mask) <= 1e-5
        assert max_diff(unnormed(ids, attention_mask=mask).logits, expected, mask) > 1e-3  # the norms matter
    tokens = dict(input_ids=ids[:, :12], attention_mask=mask[:, :12], pad_token_id=0, max_new_tokens=16,
                  do_sample=False)
    assert torch.equal(ours.generate(**tokens), ref.generate(**tokens))
