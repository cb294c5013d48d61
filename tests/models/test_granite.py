"""Granite against 4.45.2: config defaults, and each of the four multipliers changing the logits (so the
family checks, which pass, would catch any one of them ignored); bf16/fp16 logits equal to the bit."""
from __future__ import annotations

import pytest
import torch
import transformers

import formers

from .cases.granite import CASES, MULTIPLIERS
from .family_checks import build, max_diff, padded_batch


def test_config_defaults_equal_4_45():
    ours, theirs = formers.GraniteConfig().to_diff_dict(), transformers.GraniteConfig().to_diff_dict()
    ours.pop("formers_version", None)
    theirs.pop("transformers_version", None)
    assert ours == theirs
    assert formers.GraniteConfig(hidden_size=64, num_attention_heads=4).head_dim == 16


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return build(CASES["granite-gqa-multipliers"], tmp_path_factory.mktemp("granite"))


@pytest.mark.parametrize("field", sorted(MULTIPLIERS))
def test_each_multiplier_bites(folder, field):
    ids, mask = padded_batch(length=16)
    reference = transformers.AutoModelForCausalLM.from_pretrained(folder)
    ours = formers.AutoModelForCausalLM.from_pretrained(folder)
    without = formers.AutoModelForCausalLM.from_pretrained(folder, **{field: 1.0})
    with torch.no_grad():
        expected = reference(ids, attention_mask=mask).logits
        assert max_diff(ours(ids, attention_mask=mask).logits, expected, mask) <= 1e-5
        # 5x the family checks' 1e-5 (the scale change is small in this tiny model: logits are divided by 8)
        assert max_diff(without(ids, attention_mask=mask).logits, expected, mask) > 5e-5

