"""OLMoE against 4.45.2: config defaults, router logits / aux loss / loss, and its quirks changing the logits:
the full-width q/k norms (applied before the clamp), clip_qkv and norm_topk_prob (the family checks in
test_families.py run tests/models/cases/olmoe.py)."""
from __future__ import annotations

import pytest
import transformers

import formers

from .cases.olmoe import CASES
from .family_checks import build
from .moe_checks import assert_changes_logits, assert_config_defaults_equal, check_router_outputs


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return build(CASES["olmoe-mha-top4-norm-clip"], tmp_path_factory.mktemp("olmoe"))


def test_config_defaults_equal_4_45():
    assert_config_defaults_equal("OlmoeConfig", transformers.OlmoeConfig())
    config = formers.OlmoeConfig()
    assert (config.num_experts, config.num_experts_per_tok, config.norm_topk_prob) == (64, 8, False)


@pytest.mark.parametrize("name", sorted(CASES))
def test_router_logits_aux_loss_and_loss_equal_4_45(tmp_path, name):
    check_router_outputs(build(CASES[name], tmp_path), num_moe_layers=2, tuple_layout=False)


def test_q_k_norms_are_full_width(folder):
    attention = formers.AutoModelForCausalLM.from_pretrained(folder).model.layers[0].self_attn
    assert attention.q_norm.weight.shape == (64,) and attention.k_norm.weight.shape == (64,)  # H*D, Hkv*D


@pytest.mark.parametrize("change", [{"norm_topk_prob": False}, {"clip_qkv": None}, {"clip_qkv": 0.05}])
def test_quirk_changes_the_logits(folder, change):
    config = formers.OlmoeConfig.from_pretrained(folder)
    config.update(change)
    assert_changes_logits(folder, config)
