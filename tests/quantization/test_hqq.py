"""HqqConfig through the hqq package on the CPU, against transformers 4.45.2 + hqq on the same checkpoint.

4.45.2 refuses HQQ without CUDA (validate_environment) but its integration runs on the CPU once that check is
passed, so the reference here is 4.45.2's own loading with `torch.cuda.is_available` answering True during the
load only: the same layers quantized with the same parameters, the same logits and greedy tokens."""
from __future__ import annotations

import pytest
import torch

import formers
from formers.errors import CheckpointError, ConfigError
from tests.conftest import build_oracle_checkpoint

hqq = pytest.importorskip("hqq", reason="hqq is not installed (it comes with the test extra)")
from hqq.core.quantize import HQQLinear  # noqa: E402

IDS = torch.tensor([[1, 5, 9, 33, 7, 64, 3], [1, 90, 12, 4, 77, 21, 50]])
SETTINGS = {
    "default": dict(),  # 4 bits, groups of 64 along axis 0, zero points quantized
    "8bit-axis1": dict(nbits=8, group_size=64, quant_zero=False, quant_scale=False, axis=1),
    "2bit-g16": dict(nbits=2, group_size=16, axis=1),
    "3bit-scale": dict(nbits=3, group_size=32, quant_scale=True, axis=0),
    "skip": dict(nbits=4, group_size=64, axis=1, skip_modules=["lm_head", "mlp.down_proj"]),
}
FAMILIES = {
    "llama": dict(tie_word_embeddings=False, intermediate_size=128),
    "phi": dict(intermediate_size=128),  # checkpoint names differ from formers' (dense, fc1, fc2)
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return {family: build_oracle_checkpoint(tmp_path_factory.mktemp(family), family, **overrides)
            for family, overrides in FAMILIES.items()}


def reference(folder, settings: dict, dtype: torch.dtype = torch.float32):
    import transformers

    real = torch.cuda.is_available
    torch.cuda.is_available = lambda: True  # 4.45.2's check only; hqq's layers are built on the CPU
    try:
        return transformers.AutoModelForCausalLM.from_pretrained(
            folder, quantization_config=transformers.HqqConfig(**settings), torch_dtype=dtype, device_map="cpu")
    finally:
        torch.cuda.is_available = real


def _quantized(model) -> list[tuple[int, int]]:
    """(out, in) features of the HQQ layers, in module order."""
    return [tuple(m.meta["shape"]) for m in model.modules() if isinstance(m, HQQLinear)]


def _check_equal(ours, theirs, atol: float) -> None:
    assert _quantized(ours) == _quantized(theirs) and _quantized(ours)
    with torch.no_grad():
        got, want = ours(IDS).logits.float(), theirs(IDS).logits.float()
    torch.testing.assert_close(got, want, rtol=0, atol=atol)
    greedy = dict(max_new_tokens=8, do_sample=False, pad_token_id=0)
    assert torch.equal(ours.generate(IDS[:1], **greedy), theirs.generate(IDS[:1], **greedy))


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_logits_and_tokens_equal_4_45(folders, family, name):
    settings = SETTINGS[name]
    ours = formers.AutoModelForCausalLM.from_pretrained(folders[family],
                                                        quantization_config=formers.HqqConfig(**settings))
    theirs = reference(folders[family], settings)
    _check_equal(ours, theirs, atol=1e-5)  # measured 0.0 for every case here
    assert ours.is_quantized and ours.quantization_method == "hqq" and ours.is_hqq_quantized
    with torch.no_grad():
        full = formers.AutoModelForCausalLM.from_pretrained(folders[family])(IDS).logits
        assert float((ours(IDS).logits - full).abs().max()) > 1e-4  # the weights really are quantized


def test_bfloat16_and_per_layer_settings(folders):
    """dynamic_config by 4.45's tags (Phi's checkpoint names: self_attn.dense, mlp.fc1), a tag left out stays in
    full precision; bfloat16 as the compute dtype."""
    dynamic = {"self_attn.q_proj": dict(nbits=4, group_size=64), "self_attn.dense": dict(nbits=8, group_size=64),
               "mlp.fc1": dict(nbits=2, group_size=16)}
    settings = dict(dynamic_config=dynamic)
    ours = formers.AutoModelForCausalLM.from_pretrained(folders["phi"], torch_dtype=torch.bfloat16,
                                                        quantization_config=formers.HqqConfig(**settings))
    theirs = reference(folders["phi"], settings, torch.bfloat16)
    assert len(_quantized(ours)) == 3 * 2  # q_proj, dense, fc1 of both layers; k, v and fc2 not in the config
    _check_equal(ours, theirs, atol=1e-2)  # bfloat16 logits: one step of their rounding


def test_not_saved_and_fused_layers_refused(folders, tmp_path):
    ours = formers.AutoModelForCausalLM.from_pretrained(folders["llama"], quantization_config=formers.HqqConfig())
    with pytest.raises(CheckpointError, match="hqq"):
        ours.save_pretrained(tmp_path / "saved")
    falcon = build_oracle_checkpoint(tmp_path / "falcon", "falcon", base=dict(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, vocab_size=128))
    with pytest.raises(ConfigError, match=r"HqqConfig: .*query_key_value|HqqConfig: .*fused"):
        formers.AutoModelForCausalLM.from_pretrained(falcon, quantization_config=formers.HqqConfig())


def test_without_the_package_the_error_names_it(folders, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "hqq", None)  # None: Python's mark of a module that is not there
    with pytest.raises(ConfigError, match="HqqConfig: it needs the hqq package, which is not installed"):
        formers.AutoModelForCausalLM.from_pretrained(folders["llama"], quantization_config=formers.HqqConfig())


def test_dequantize_gives_the_layers_hqq_computes_with(folders):
    """4.45 has no dequantize for HQQ; formers puts in plain layers holding hqq's own dequantized weights."""
    ours = formers.AutoModelForCausalLM.from_pretrained(folders["llama"], quantization_config=formers.HqqConfig())
    with torch.no_grad():
        expected = ours(IDS).logits
        ours.dequantize()
        got = ours(IDS).logits
    assert not any(isinstance(m, HQQLinear) for m in ours.modules())
    assert not hasattr(ours.config, "quantization_config") and not ours.is_quantized
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
