"""GPT-NeoX against 4.45.2: config defaults and aliases, 4.45's eager numerics in half precision, and
checkpoints that still carry the old attention buffers."""
from __future__ import annotations

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

import formers
import formers.models.gpt_neox.modeling_gpt_neox as neox
from formers.modeling.attention import eager_attention

from .cases.gpt_neox import NEOX_BASE
from .family_checks import Case, build, max_diff, padded_batch


def test_config_defaults_and_rotary_aliases_equal_4_45():
    ours, theirs = formers.GPTNeoXConfig().to_diff_dict(), transformers.GPTNeoXConfig().to_diff_dict()
    ours.pop("formers_version", None)
    theirs.pop("transformers_version", None)
    assert ours == theirs
    kwargs = dict(rotary_pct=0.5, partial_rotary_factor=1.0, rotary_emb_base=500, rope_theta=7.0)
    a, b = formers.GPTNeoXConfig(**kwargs), transformers.GPTNeoXConfig(**kwargs)
    assert (a.partial_rotary_factor, a.rope_theta) == (b.partial_rotary_factor, b.rope_theta) == (0.5, 500)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_eager_logits_equal_4_45(tmp_path, dtype, monkeypatch):
    """12-dim heads (scale 1/sqrt(12) is not a power of two): 4.45 scales inside baddbmm and takes the softmax in
    half precision; formers' NeoX kernel gives the same bits, the shared eager kernel does not."""
    folder = build(Case("gpt_neox", {"hidden_size": 48, "rotary_pct": 0.5}, base=NEOX_BASE), tmp_path)
    ours = formers.AutoModelForCausalLM.from_pretrained(folder, torch_dtype=dtype, attn_implementation="eager")
    theirs = transformers.AutoModelForCausalLM.from_pretrained(folder, torch_dtype=dtype, attn_implementation="eager")
    ids, mask = padded_batch(length=16)
    with torch.no_grad():
        reference = theirs(ids, attention_mask=mask).logits
        assert max_diff(ours(ids, attention_mask=mask).logits, reference, mask) == 0
        monkeypatch.setattr(neox, "neox_eager_attention", eager_attention)  # a model built with the shared kernel
        shared = formers.AutoModelForCausalLM.from_pretrained(folder, torch_dtype=dtype, attn_implementation="eager")
        assert max_diff(shared(ids, attention_mask=mask).logits, reference, mask) > 0
        greedy = dict(attention_mask=mask, max_new_tokens=24, do_sample=False, pad_token_id=0)
        monkeypatch.undo()
        assert torch.equal(ours.generate(ids, **greedy), theirs.generate(ids, **greedy))


def test_old_checkpoint_buffers_are_skipped(tmp_path, caplog):
    folder = build(Case("gpt_neox", {}, base=NEOX_BASE), tmp_path)
    weights = load_file(folder / "model.safetensors")
    for layer in range(NEOX_BASE["num_hidden_layers"]):  # what Pythia's files still hold
        prefix = f"gpt_neox.layers.{layer}.attention."
        weights[prefix + "bias"] = torch.ones(1, 1, 8, 8, dtype=torch.bool).tril()
        weights[prefix + "masked_bias"] = torch.tensor(-1e9)
        weights[prefix + "rotary_emb.inv_freq"] = torch.ones(2)
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    model = formers.AutoModelForCausalLM.from_pretrained(folder)
    assert "not used" not in caplog.text
    reference = transformers.AutoModelForCausalLM.from_pretrained(folder)
    ids, mask = padded_batch(length=10)
    with torch.no_grad():
        assert max_diff(model(ids, attention_mask=mask).logits, reference(ids, attention_mask=mask).logits, mask) <= 1e-5
