"""TorchAoConfig's int8 schemes, which formers computes itself, against transformers 4.45.2 loading the same
checkpoint with the same TorchAoConfig through torchao 0.5.0 (the schemes 4.45's names stand for). torchao 0.5.0's
int4 layout does not run on this torch's CPU build (`_convert_weight_to_int4pack` has no CPU kernel), so int4 has
no oracle here; tests/gguf/test_quantized.py checks it against its own dequantized weights."""
from __future__ import annotations

import json

import pytest
import torch

import formers
from formers.quantization import QuantizedLinear
from tests.conftest import build_oracle_checkpoint

torchao = pytest.importorskip("torchao", reason="torchao is not installed (it comes with the test extra)")

IDS = torch.tensor([[1, 5, 9, 33, 7, 64, 3], [1, 90, 12, 4, 77, 21, 50]])
SCHEMES = ["int8_weight_only", "int8_dynamic_activation_int8_weight"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return build_oracle_checkpoint(tmp_path_factory.mktemp("torchao"), "qwen2", tie_word_embeddings=False)


def load_both(folder, quant_type: str):
    import transformers

    ours = formers.AutoModelForCausalLM.from_pretrained(folder, quantization_config=formers.TorchAoConfig(quant_type))
    theirs = transformers.AutoModelForCausalLM.from_pretrained(
        folder, quantization_config=transformers.TorchAoConfig(quant_type), torch_dtype=torch.float32,
        device_map="cpu")
    return ours, theirs


@pytest.mark.parametrize("quant_type", SCHEMES)
def test_int8_values_and_scales_equal_torchaos(folder, quant_type):
    ours, theirs = load_both(folder, quant_type)
    checked = 0
    for name, module in ours.named_modules():
        if isinstance(module, QuantizedLinear):
            weight = theirs.get_submodule(name).weight
            stored = (weight.original_weight_tensor if quant_type != SCHEMES[0] else weight).layout_tensor
            assert torch.equal(module.weight, stored.int_data), name
            assert torch.equal(module.weight_scale, stored.scale.float()), name
            checked += 1
    assert checked == 14


@pytest.mark.parametrize("quant_type", SCHEMES)
def test_int8_logits_and_tokens_equal_4_45(folder, quant_type, tmp_path):
    """int8_weight_only with float32 activations as they are (prefill: the widened weight through torch's float32
    GEMM, then the row scales; decoding: formers' int8 GEMV); the dynamic scheme quantizes every input row as
    torchao does. Saved and reloaded, the layers keep their scheme."""
    ours, theirs = load_both(folder, quant_type)
    with torch.no_grad():
        full = formers.AutoModelForCausalLM.from_pretrained(folder)(IDS).logits
        got, want = ours(IDS).logits, theirs(IDS).logits
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)  # measured: 0.0 and 1.5e-7
    assert float((got - full).abs().max()) > 1e-4  # the weights (and activations) really are quantized
    greedy = dict(max_new_tokens=10, do_sample=False, pad_token_id=0)
    assert torch.equal(ours.generate(IDS[:1], **greedy), theirs.generate(IDS[:1], **greedy))
    ours.save_pretrained(tmp_path / "saved")
    assert json.loads((tmp_path / "saved" / "config.json").read_text())["quantization_config"]["quant_type"] == quant_type
    reloaded = formers.AutoModelForCausalLM.from_pretrained(tmp_path / "saved")
    assert {m.scheme for m in reloaded.modules() if isinstance(m, QuantizedLinear)} == {
        "int8" if quant_type == SCHEMES[0] else "int8_dynamic"}
    with torch.no_grad():
        assert torch.equal(reloaded(IDS).logits, got)
