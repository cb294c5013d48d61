"""OLMo against 4.45.2: config defaults and rope rules, q/k/v clamping, parameter-free norms, and the
dynamic rope state 4.45 keeps after a long sequence."""
from __future__ import annotations

import pytest
import torch
import transformers

import formers
from formers.errors import ConfigError

from .cases.olmo import CASES
from .family_checks import build, max_diff, padded_batch


def test_config_defaults_equal_4_45():
    ours, theirs = formers.OlmoConfig().to_diff_dict(), transformers.OlmoConfig().to_diff_dict()
    ours.pop("formers_version", None)
    theirs.pop("transformers_version", None)
    assert ours == theirs


@pytest.mark.parametrize("scaling", [{"rope_type": "linear", "factor": 2.0}, {"type": "linear", "factor": 2},
                                     {"type": "yarn", "factor": 2.0}, {"type": "linear", "factor": 2.0, "x": 1}])
def test_rope_scaling_rules_as_4_45(scaling):
    with pytest.raises(ValueError):
        transformers.OlmoConfig(rope_scaling=dict(scaling))
    with pytest.raises(ConfigError, match="rope_scaling"):
        formers.OlmoConfig(rope_scaling=dict(scaling))


def test_norms_have_no_parameters_and_clip_bites(tmp_path):
    folder = build(CASES["olmo-mha-clip-qkv"], tmp_path)
    ours = formers.AutoModelForCausalLM.from_pretrained(folder)
    assert not [name for name in ours.state_dict() if "norm" in name]
    unclipped = transformers.AutoModelForCausalLM.from_pretrained(folder, clip_qkv=None)
    clipped = transformers.AutoModelForCausalLM.from_pretrained(folder)
    ids, mask = padded_batch(length=16)
    with torch.no_grad():
        reference = clipped(ids, attention_mask=mask).logits
        assert max_diff(ours(ids, attention_mask=mask).logits, reference, mask) <= 1e-5
        assert max_diff(unclipped(ids, attention_mask=mask).logits, reference, mask) > 1e-3


def test_dynamic_rope_keeps_grown_frequencies_as_4_45(tmp_path):
    """After a sequence past max_position_embeddings (16), 4.45's OLMo keeps the grown base for later short
    inputs (the shared rope utils reset it); formers does the same."""
    folder = build(CASES["olmo-dynamic"], tmp_path)
    ours, theirs = formers.AutoModelForCausalLM.from_pretrained(folder), \
        transformers.AutoModelForCausalLM.from_pretrained(folder)
    fresh = transformers.AutoModelForCausalLM.from_pretrained(folder)
    long_ids = torch.randint(3, 128, (1, 24), generator=torch.Generator().manual_seed(5))
    short = long_ids[:, :8]
    with torch.no_grad():
        assert max_diff(ours(long_ids).logits, theirs(long_ids).logits) <= 1e-5
        after = theirs(short).logits
        assert max_diff(ours(short).logits, after) <= 1e-5
        assert max_diff(fresh(short).logits, after) > 1e-4  # the kept state really changes the output
