"""QuantoConfig through the installed quanto package, against transformers 4.45.2 loading the same checkpoint
with the same QuantoConfig (its quanto integration runs on CPU)."""
from __future__ import annotations

import pytest
import torch

import formers
from formers.errors import CheckpointError, ConfigError
from tests.conftest import build_oracle_checkpoint

quanto = pytest.importorskip("quanto", reason="quanto is not installed (it comes with the test extra)")

IDS = torch.tensor([[1, 5, 9, 33, 7, 64, 3], [1, 90, 12, 4, 77, 21, 50]])


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """An untied Llama and a tied Qwen2 (biases on q/k/v)."""
    return {"llama": build_oracle_checkpoint(tmp_path_factory.mktemp("quanto_llama"), "llama",
                                             tie_word_embeddings=False),
            "qwen2": build_oracle_checkpoint(tmp_path_factory.mktemp("quanto_qwen2"), "qwen2",
                                             tie_word_embeddings=True)}


def load_both(folder, settings: dict, **kwargs):
    """formers' and 4.45.2's models of `folder` loaded with QuantoConfig(**settings)."""
    import transformers

    ours = formers.AutoModelForCausalLM.from_pretrained(
        folder, quantization_config=formers.QuantoConfig(**settings), **kwargs)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(
        folder, quantization_config=transformers.QuantoConfig(**settings), **kwargs)
    return ours, theirs


@pytest.mark.parametrize("family", ["llama", "qwen2"])
@pytest.mark.parametrize("weights", ["int8", "int4", "int2", "float8"])
def test_quanto_layers_equal_transformers(checkpoints, family, weights):
    folder = checkpoints[family]
    ours, theirs = load_both(folder, dict(weights=weights))
    layer = ours.model.layers[0]
    assert type(layer.self_attn.q_proj) is quanto.QLinear and type(layer.mlp.down_proj) is quanto.QLinear
    assert layer.self_attn.q_proj.weight.qtype is getattr(quanto, f"q{weights}")
    assert type(theirs.model.layers[0].self_attn.q_proj) is quanto.QLinear
    assert type(ours.lm_head) is not quanto.QLinear and ours.lm_head.weight.dtype == torch.float32
    assert ours.config.quantization_config.to_dict() == theirs.config.quantization_config.to_dict() == {
        "quant_method": "quanto", "weights": weights, "activations": None, "modules_to_not_convert": None}
    with torch.no_grad():
        full = formers.AutoModelForCausalLM.from_pretrained(folder)(IDS).logits
        got, want = ours(IDS).logits, theirs(IDS).logits
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)  # (equal here: the same quanto ops on both sides)
    assert float((got - full).abs().max()) > 1e-4  # the weights really are quantized
    greedy = dict(max_new_tokens=12, do_sample=False, pad_token_id=0)
    assert torch.equal(ours.generate(IDS[:1], **greedy), theirs.generate(IDS[:1], **greedy))


def test_bfloat16_dict_form_and_modules_to_not_convert(checkpoints):
    settings = {"weights": "int8", "modules_to_not_convert": ["lm_head", "mlp"]}
    ours, theirs = load_both(checkpoints["llama"], settings, torch_dtype=torch.bfloat16)
    from_dict = formers.AutoModelForCausalLM.from_pretrained(
        checkpoints["llama"], quantization_config={"quant_method": "quanto", **settings}, torch_dtype=torch.bfloat16)
    for model in (ours, from_dict):
        assert type(model.model.layers[1].self_attn.o_proj) is quanto.QLinear
        assert type(model.model.layers[1].mlp.up_proj) is not quanto.QLinear
        assert model.model.layers[1].mlp.up_proj.weight.dtype == torch.bfloat16
    with torch.no_grad():
        got, want = ours(IDS).logits, theirs(IDS).logits
        assert torch.equal(from_dict(IDS).logits, got)
    # bfloat16 logits (|logit| < 1 here): one bfloat16 step at most (measured: equal)
    torch.testing.assert_close(got.float(), want.float(), rtol=0, atol=2 ** -8)
    greedy = dict(max_new_tokens=8, do_sample=False, pad_token_id=0)
    assert torch.equal(ours.generate(IDS[:1], **greedy), theirs.generate(IDS[:1], **greedy))


def test_bad_settings_activations_and_saving_are_refused(checkpoints, tmp_path):
    import transformers

    with pytest.raises(ConfigError, match="QuantoConfig weights: expected one of"):
        formers.QuantoConfig(weights="int3")
    with pytest.raises(ConfigError, match="QuantoConfig activations"):
        formers.QuantoConfig(activations="int4")
    with pytest.raises(ValueError, match="quantizing the activations"):  # 4.45.2 refuses it too
        transformers.AutoModelForCausalLM.from_pretrained(
            checkpoints["llama"], quantization_config=transformers.QuantoConfig(activations="int8"))
    with pytest.raises(ConfigError, match="activations='int8'.*not supported"):
        formers.AutoModelForCausalLM.from_pretrained(
            checkpoints["llama"], quantization_config=formers.QuantoConfig(activations="int8"))
    model = formers.AutoModelForCausalLM.from_pretrained(checkpoints["llama"],
                                                         quantization_config=formers.QuantoConfig())
    with pytest.raises(CheckpointError, match="layout of quanto layers"):
        model.save_pretrained(tmp_path / "saved")
    assert not (tmp_path / "saved").exists()


@pytest.mark.parametrize("name", ["gpt2", "dbrx-gqa-clip-top2", "granitemoe-gqa-top2-multipliers", "bloom"])
def test_layers_4_45_does_not_hold_as_linear_stay_as_they_are(name, tmp_path):
    """GPT-2's Conv1D projections and DBRX / GraniteMoE experts (stacked tensors in 4.45) are not nn.Linear under
    4.45, so its quanto integration leaves them unquantized; formers, whose layers there are linears, does the
    same (Bloom: 4.45's fused query_key_value is three linears here, quantized per output row alike)."""
    from tests.models.family_checks import build, max_diff, padded_batch
    from tests.models.test_families import CASES

    folder = build(CASES[name], tmp_path)
    ours, theirs = load_both(folder, dict(weights="int8"))
    count = {model: sum(type(m) is quanto.QLinear for m in model.modules()) for model in (ours, theirs)}
    assert count[theirs] == {"gpt2": 0, "bloom": 8}.get(name, 6 if name.startswith("dbrx") else 10)
    assert count[ours] == (12 if name == "bloom" else count[theirs])
    ids, mask = padded_batch(length=10)
    with torch.no_grad():
        assert max_diff(ours(ids, attention_mask=mask).logits, theirs(ids, attention_mask=mask).logits, mask) <= 1e-5


def test_a_layer_quanto_cannot_quantize_is_named(tmp_path):
    """Qwen2-MoE's [1, hidden] shared-expert gate has one output row: quanto refuses it (4.45.2 stops there too)."""
    from tests.models.family_checks import build
    from tests.models.test_families import CASES

    folder = build(CASES["qwen2_moe-top1-mlp-only-mqa-tied"], tmp_path)
    with pytest.raises(ConfigError, match=r"cannot quantize model\.layers\.1\.mlp\.shared_expert_gate \(weight \[1, 64\]\)"
                                          r".*modules_to_not_convert"):
        formers.AutoModelForCausalLM.from_pretrained(folder, quantization_config=formers.QuantoConfig())
    ours, theirs = load_both(folder, dict(modules_to_not_convert=["lm_head", "shared_expert_gate"]))
    assert type(ours.model.layers[1].mlp.shared_expert_gate) is not quanto.QLinear
    assert type(ours.model.layers[1].mlp.shared_expert.up_proj) is quanto.QLinear
    with torch.no_grad():
        torch.testing.assert_close(ours(IDS).logits, theirs(IDS).logits, rtol=0, atol=1e-5)
