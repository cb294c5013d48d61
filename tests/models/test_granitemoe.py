"""GraniteMoE against 4.45.2: config defaults, router logits (float32) / aux loss / loss, stacked expert
weights mapped both ways, and each multiplier changing the logits (the family checks in test_families.py
run tests/models/cases/granitemoe.py)."""
from __future__ import annotations

import pytest
import torch
import transformers

import formers

from .cases.granite import MULTIPLIERS
from .cases.granitemoe import CASES
from .family_checks import build
from .moe_checks import assert_changes_logits, assert_config_defaults_equal, check_router_outputs


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return build(CASES["granitemoe-gqa-top2-multipliers"], tmp_path_factory.mktemp("granitemoe"))


def test_config_defaults_equal_4_45():
    assert_config_defaults_equal("GraniteMoeConfig", transformers.GraniteMoeConfig())
    assert "mlp_bias" not in formers.GraniteMoeConfig().to_dict()


@pytest.mark.parametrize("name", sorted(CASES))
def test_router_logits_aux_loss_and_loss_equal_4_45(tmp_path, name):
    check_router_outputs(build(CASES[name], tmp_path), num_moe_layers=2, tuple_layout=False)


def test_stacked_experts_map_to_one_gate_up_per_expert(folder):
    ours = formers.AutoModelForCausalLM.from_pretrained(folder)
    ref = transformers.AutoModelForCausalLM.from_pretrained(folder)
    moe, theirs = ours.model.layers[1].mlp, ref.model.layers[1].block_sparse_moe
    assert len(moe.experts) == theirs.input_linear.weight.shape[0] == 8
    for e, expert in enumerate(moe.experts):  # [gate; up] [2I, C] and down [C, I] of expert e
        assert torch.equal(expert.gate_up_proj.weight, theirs.input_linear.weight[e])
        assert torch.equal(expert.down_proj.weight, theirs.output_linear.weight[e])
    assert torch.equal(moe.gate.weight, theirs.router.layer.weight)


@pytest.mark.parametrize("field", sorted(MULTIPLIERS))
def test_each_multiplier_changes_the_logits(folder, field):
    config = formers.GraniteMoeConfig.from_pretrained(folder)
    config.update({field: 1.0})
    assert_changes_logits(folder, config)
