"""DBRX against 4.45.2: DbrxConfig with its nested DbrxAttentionConfig/DbrxFFNConfig (defaults, json layout,
sections read from a DBRX folder, refused fields), router outputs (4.45 reports softmax probabilities as
router logits) / aux loss / loss, and its quirks changing the logits: clip_qkv and the p-norm of the expert
weights (the family checks in test_families.py run tests/models/cases/dbrx.py)."""
from __future__ import annotations

import pytest
import torch
import transformers

import formers
from formers.errors import ConfigError
from formers.models.dbrx.configuration_dbrx import DbrxAttentionConfig, DbrxFFNConfig

from .cases.dbrx import CASES
from .family_checks import build, padded_batch
from .moe_checks import assert_changes_logits, assert_config_defaults_equal, check_router_outputs


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return build(CASES["dbrx-mha-clip-top4-p2"], tmp_path_factory.mktemp("dbrx"))


def test_config_defaults_equal_4_45():
    assert_config_defaults_equal("DbrxConfig", transformers.DbrxConfig())
    config = formers.DbrxConfig()
    assert isinstance(config.attn_config, DbrxAttentionConfig) and isinstance(config.ffn_config, DbrxFFNConfig)
    assert (config.hidden_size, config.num_attention_heads, config.num_key_value_heads) == (2048, 16, 1)


def test_nested_configs_as_4_45(folder):
    fields = dict(d_model=64, attn_config={"clip_qkv": 8.0, "kv_n_heads": 2, "rope_theta": 5e5},
                  ffn_config={"moe_top_k": 2, "moe_normalize_expert_weights": None, "ffn_act_fn": {"name": "gelu"}})
    ours, theirs = formers.DbrxConfig(**fields), transformers.DbrxConfig(**fields)
    a, b = ours.to_diff_dict(), theirs.to_diff_dict()  # nested: the fields off their defaults, "model_type": ""
    a.pop("formers_version", None), b.pop("transformers_version", None)
    assert a == b and ours.num_key_value_heads == 2 and ours.hidden_act == "gelu"
    assert formers.DbrxConfig(**ours.to_diff_dict()) == ours
    # a section read from a DBRX folder (4.45.2's own section from_pretrained refuses its attn_implementation)
    oracle = transformers.DbrxConfig.from_pretrained(folder).to_diff_dict()
    for section, cls in (("attn_config", DbrxAttentionConfig), ("ffn_config", DbrxFFNConfig)):
        assert cls.from_pretrained(folder).to_diff_dict() == oracle[section]


@pytest.mark.parametrize("fields, message", [({"attn_config": {"n_heads": 2}}, "attn_config.*n_heads"),
                                             ({"ffn_config": {"top_k": 2}}, "ffn_config.*top_k"),
                                             ({"tie_word_embeddings": True}, "tie_word_embeddings")])
def test_refused_fields_as_4_45(fields, message):
    with pytest.raises(ValueError):
        transformers.DbrxConfig(**fields)
    with pytest.raises(ConfigError, match=message):
        formers.DbrxConfig(**fields)


@pytest.mark.parametrize("name", sorted(CASES))
def test_router_logits_aux_loss_and_loss_equal_4_45(tmp_path, name):
    check_router_outputs(build(CASES[name], tmp_path), num_moe_layers=2, oracle_attention=CASES[name].oracle_attention)


def test_router_logits_are_probabilities_as_4_45(folder):
    model = formers.AutoModelForCausalLM.from_pretrained(folder)
    ids, _ = padded_batch(length=6)
    with torch.no_grad():
        routers = model(ids, output_router_logits=True).router_logits
    assert all(torch.allclose(r.sum(-1), torch.ones(r.shape[0])) and (r >= 0).all() for r in routers)


@pytest.mark.parametrize("section, change", [("ffn_config", {"moe_normalize_expert_weights": 1.0}),
                                             ("ffn_config", {"moe_normalize_expert_weights": None}),
                                             ("attn_config", {"clip_qkv": None})])
def test_quirk_changes_the_logits(folder, section, change):
    config = formers.DbrxConfig.from_pretrained(folder)
    getattr(config, section).update(change)
    assert_changes_logits(folder, config)
