"""Starcoder2 against 4.45.2: config defaults, and `sliding_window` having no effect outside flash attention."""
from __future__ import annotations

import pytest
import torch
import transformers

import formers

from .cases.starcoder2 import CASES
from .family_checks import build, max_diff, padded_batch


def test_config_defaults_equal_4_45():
    ours, theirs = formers.Starcoder2Config().to_diff_dict(), transformers.Starcoder2Config().to_diff_dict()
    ours.pop("formers_version", None)
    theirs.pop("transformers_version", None)
    assert ours == {**theirs, "tie_word_embeddings": True}  # tied by default, as 4.45's base config
    assert transformers.Starcoder2Config().sliding_window is None


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_window_is_ignored_as_in_4_45(tmp_path, implementation, monkeypatch):
    folder = build(CASES["starcoder2-gqa-window-tied"], tmp_path)
    ids, mask = padded_batch(length=16)
    ours = formers.AutoModelForCausalLM.from_pretrained(folder, attn_implementation=implementation)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(folder, attn_implementation=implementation)
    unwindowed = transformers.AutoModelForCausalLM.from_pretrained(folder, attn_implementation=implementation,
                                                                   sliding_window=None)
    with torch.no_grad():
        reference = theirs(ids, attention_mask=mask).logits
        assert max_diff(reference, unwindowed(ids, attention_mask=mask).logits) == 0  # 4.45 ignores the window
        assert max_diff(ours(ids, attention_mask=mask).logits, reference, mask) <= 1e-5
        # a formers that honoured the window (5 < 16 tokens) would differ: the family checks would catch it
        monkeypatch.setattr(formers.Starcoder2Config, "layer_sliding_window", lambda self, idx: self.sliding_window)
        windowed = formers.AutoModelForCausalLM.from_pretrained(folder, attn_implementation=implementation)
        assert max_diff(windowed(ids, attention_mask=mask).logits, reference, mask) > 1e-3


def test_unbiased_layout_has_no_biases_and_checkpoint_names(tmp_path):
    folder = build(CASES["starcoder2-mha-unbiased-untied-linear"], tmp_path)
    model = formers.AutoModelForCausalLM.from_pretrained(folder)
    linear_biases = [name for name, _ in model.named_parameters() if name.endswith("bias") and "layernorm" not in name
                     and not name.startswith("model.norm")]
    assert linear_biases == []
    saved = set(model._state_dict_for_saving())
    assert "model.layers.0.mlp.c_fc.weight" in saved and "model.layers.0.mlp.c_proj.weight" in saved
