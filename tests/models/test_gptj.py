"""GPT-J against 4.45.2: config defaults and aliases, eager by default (4.45 refuses SDPA), and 4.45's
half-precision numerics (rotary frequencies rounded to the model dtype, float32 q/k and cached keys, the score
divisor rounded to the model dtype)."""
from __future__ import annotations

import pytest
import torch
import transformers

import formers
import formers.models.gptj.modeling_gptj as gptj
from formers.errors import ConfigError

from .cases.gptj import CASES, GPTJ_BASE
from .family_checks import Case, build, max_diff, padded_batch


def test_config_defaults_and_aliases_equal_4_45():
    ours, theirs = formers.GPTJConfig().to_diff_dict(), transformers.GPTJConfig().to_diff_dict()
    ours.pop("formers_version", None)
    theirs.pop("transformers_version", None)
    assert ours == theirs
    a, b = formers.GPTJConfig(hidden_size=32, num_attention_heads=2), transformers.GPTJConfig(hidden_size=32,
                                                                                             num_attention_heads=2)
    assert (a.n_embd, a.n_head, a.max_position_embeddings) == (b.n_embd, b.n_head, b.max_position_embeddings)


def test_eager_by_default_and_sdpa_refused_by_4_45(tmp_path):
    folder = build(CASES["gptj"], tmp_path)
    assert formers.AutoModelForCausalLM.from_pretrained(folder).config._attn_implementation == "eager"
    assert transformers.AutoModelForCausalLM.from_pretrained(folder).config._attn_implementation == "eager"
    with pytest.raises(ValueError, match="scaled_dot_product_attention"):
        transformers.AutoModelForCausalLM.from_pretrained(folder, attn_implementation="sdpa")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_logits_and_cache_equal_4_45(tmp_path, dtype, monkeypatch):
    folder = build(CASES["gptj-6-heads-full-rotary-tied"], tmp_path)
    ours = formers.AutoModelForCausalLM.from_pretrained(folder, torch_dtype=dtype)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(folder, torch_dtype=dtype)
    ids, mask = padded_batch(length=16)
    with torch.no_grad():
        a, b = ours(ids, attention_mask=mask, use_cache=True), theirs(ids, attention_mask=mask, use_cache=True)
        assert max_diff(a.logits, b.logits, mask) == 0
        assert [t.dtype for t in a.past_key_values[0]] == [t.dtype for t in b.past_key_values[0]] == [torch.float32,
                                                                                                       dtype]
        # the score divisor sqrt(8) rounded to the model dtype is part of it
        unrounded = gptj._score_divisor.__wrapped__
        monkeypatch.setattr(gptj, "_score_divisor", lambda head_dim, _: unrounded(head_dim, torch.float32))
        assert max_diff(ours(ids, attention_mask=mask).logits, b.logits, mask) > 0


def test_bf16_frequencies_rounded_as_4_45(tmp_path, monkeypatch):
    folder = build(CASES["gptj-6-heads-full-rotary-tied"], tmp_path)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.bfloat16)
    unrounded = gptj._frequencies.__wrapped__
    monkeypatch.setattr(gptj, "_frequencies", lambda dim, _: unrounded(dim, torch.float32))
    ours = formers.AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.bfloat16)
    ids, mask = padded_batch(length=16)
    with torch.no_grad():
        assert max_diff(ours(ids, attention_mask=mask).logits, theirs(ids, attention_mask=mask).logits, mask) > 0


def test_rotary_dim_none_needs_one_head():
    with pytest.raises(ConfigError, match="rotary_dim"):
        formers.GPTJForCausalLM(formers.GPTJConfig(**{**GPTJ_BASE, "rotary_dim": None}))


def test_old_checkpoint_buffers_are_skipped(tmp_path, caplog):
    from safetensors.torch import load_file, save_file
    folder = build(CASES["gptj"], tmp_path)
    weights = load_file(folder / "model.safetensors")
    for layer in range(GPTJ_BASE["n_layer"]):  # what the original GPT-J files hold
        weights[f"transformer.h.{layer}.attn.bias"] = torch.ones(1, 1, 8, 8, dtype=torch.bool).tril()
        weights[f"transformer.h.{layer}.attn.masked_bias"] = torch.tensor(-1e9)
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    formers.AutoModelForCausalLM.from_pretrained(folder)
    assert "not used" not in caplog.text


def test_bf16_static_cache_runs_where_4_45_fails(tmp_path):
    """4.45's static cache cannot store GPT-J's float32 keys in a bf16 model (index_copy_ dtype error); formers'
    stores them rounded to bf16. On this checkpoint (the default 0.02 init scale) that gives 4.45's dynamic-cache
    tokens; at the family cases' 0.2 the rounded keys flip a near-tie at the last steps."""
    folder = build(Case("gptj", {}, base=GPTJ_BASE, oracle_attention="eager"), tmp_path)
    ours = formers.AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.bfloat16)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.bfloat16)
    ids, mask = padded_batch()
    kwargs = dict(attention_mask=mask, max_new_tokens=16, do_sample=False, pad_token_id=0)
    with pytest.raises(RuntimeError, match="same dtype"):
        theirs.generate(ids, cache_implementation="static", **kwargs)
    assert torch.equal(ours.generate(ids, cache_implementation="static", **kwargs), theirs.generate(ids, **kwargs))
