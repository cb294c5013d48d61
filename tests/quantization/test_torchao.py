"""TorchAoConfig's int8 schemes, which formers computes itself, against transformers 4.45.2 loading the same
checkpoint with the same TorchAoConfig through torchao 0.5.0 (the schemes 4.45's names stand for). torchao 0.5.0's
int4 layout does not run on this torch's CPU build (`_convert_weight_to_int4pack` has no CPU kernel), so its int4
values, scales and zero points are checked against torchao's own quantization functions, which do run here
(test_int4_values_equal_torchaos); tests/gguf/test_quantized.py checks the int4 kernel against those weights."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

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


@pytest.mark.parametrize("dtype,group_size", [(torch.bfloat16, 32), (torch.bfloat16, 64), (torch.float32, 32)])
def test_int4_values_equal_torchaos(folder, dtype, group_size):
    """int4_weight_only as torchao 0.5.0 quantizes each weight for 4.45 (its choose_qparams_affine and
    quantize_affine with int4_weight_only's settings, on the weight in the model's dtype): the same 4-bit values,
    scales and zero points, so the same dequantized weights (q - 8) * scale + zero."""
    from torchao.quantization.quant_primitives import (MappingType, ZeroPointDomain, choose_qparams_affine,
                                                       quantize_affine)

    ours = formers.AutoModelForCausalLM.from_pretrained(
        folder, torch_dtype=dtype, quantization_config=formers.TorchAoConfig("int4_weight_only", group_size=group_size))
    full = formers.AutoModelForCausalLM.from_pretrained(folder, torch_dtype=dtype)
    checked = 0
    for name, module in ours.named_modules():
        if isinstance(module, QuantizedLinear):
            weight = full.get_submodule(name).weight.detach()
            block = (1, group_size)
            scale, zero = choose_qparams_affine(weight, MappingType.ASYMMETRIC, block, torch.int32, 0, 15, 1e-6,
                                                None, torch.bfloat16, False, ZeroPointDomain.FLOAT)
            q = quantize_affine(weight, block, scale, zero, torch.int32, 0, 15, ZeroPointDomain.FLOAT)
            assert torch.equal(module.int4_values(), q), name
            stored_scale, stored_zero = (t.t() for t in module.scales_and_zeros.float().unbind(-1))  # [N, K / G]
            assert torch.equal(stored_scale, scale.float().reshape(stored_scale.shape)), name
            assert torch.equal(stored_zero, zero.float().reshape(stored_zero.shape)), name
            checked += 1
    assert checked == (14 if group_size == 32 else 12)  # (down_proj's 96 inputs are no multiple of 64: it stays)


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
    saved = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert saved["quantization_config"]["quant_type"] == quant_type
    reloaded = formers.AutoModelForCausalLM.from_pretrained(tmp_path / "saved")
    assert {m.scheme for m in reloaded.modules() if isinstance(m, QuantizedLinear)} == {
        "int8" if quant_type == SCHEMES[0] else "int8_dynamic"}
    with torch.no_grad():
        assert torch.equal(reloaded(IDS).logits, got)


@pytest.mark.parametrize("quant_type, dtype", [(SCHEMES[0], torch.float32), (SCHEMES[0], torch.bfloat16),
                                               (SCHEMES[1], torch.float32), (SCHEMES[1], torch.bfloat16)])
def test_int8_layers_decode_in_the_fused_step(folder, quant_type, dtype, monkeypatch):
    """int8 layers join the fused decode step (kernels/decode.py reads their int8 weights and row scales; the
    dynamic scheme's activations are quantized there as its module does, float32 ones only: bfloat16 keeps the
    module path): per-step scores equal the module path's (bfloat16 bit for bit, float32 within summation order)
    and, in float32, 4.45.2 + torchao's within 1e-5, greedy tokens identical."""
    from formers.kernels import decode, linear as kernel_linear

    if not kernel_linear.kernels_available() or dtype not in kernel_linear.kernel_dtypes():
        pytest.skip("formers' C++ kernels are not built here (or take no bfloat16 on this CPU)")
    ours = formers.AutoModelForCausalLM.from_pretrained(
        folder, quantization_config=formers.TorchAoConfig(quant_type), torch_dtype=dtype)
    greedy = dict(max_new_tokens=8, do_sample=False, pad_token_id=0, output_scores=True, return_dict_in_generate=True)
    stacked = []
    monkeypatch.setattr("formers.modeling.decoder.decode_stack",
                        lambda *a: (lambda out: stacked.append(out is not None) or out)(decode.decode_stack(*a)))
    fused = ours.generate(IDS, **greedy)
    fusable = not (quant_type == SCHEMES[1] and dtype == torch.bfloat16)
    # from the second decode step on, one call runs every layer (or none ever does)
    assert stacked[2:] and (all(stacked[2:]) if fusable else not any(stacked))
    monkeypatch.setattr("formers.modeling.decoder.decode_stack", lambda *a: None)
    monkeypatch.setattr("formers.modeling.decoder.decode_layer", lambda *a: None)
    modules = ours.generate(IDS, **greedy)
    assert torch.equal(fused.sequences, modules.sequences)
    for got, want in zip(fused.scores, modules.scores):
        torch.testing.assert_close(got, want, rtol=0, atol=0 if dtype == torch.bfloat16 else 1e-6)
    if dtype == torch.float32:
        _, theirs = load_both(folder, quant_type)
        oracle = theirs.generate(IDS, **greedy)
        assert torch.equal(fused.sequences, oracle.sequences)
        for got, want in zip(fused.scores, oracle.scores):
            torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("rows", [1, 3, 8, 40])
def test_dynamic_int8_products_equal_the_int32_matmul(rows):
    """The dynamic scheme sums its integer products in float32 kernels where every partial sum stays an exact
    float32 integer: they equal torch's int32 matmul, and a row past that bound (all 127 against weights of 127,
    K odd, where float32 sums do round) takes the int32 matmul."""
    torch.manual_seed(rows)
    k = 1537
    weight = torch.randint(-128, 128, (48, k), dtype=torch.int8)
    weight[0] = 127
    layer = QuantizedLinear.int8(weight, torch.rand(48) + 0.1, dynamic_activations=True)
    q = torch.randint(-127, 128, (rows, k)).float()
    saturated = torch.full((1, k), 127.0)
    with torch.no_grad():
        for x in (q, torch.cat([q, saturated])):
            want = torch.matmul(x.to(torch.int32), weight.t().to(torch.int32))
            assert torch.equal(layer._integer_products(x), want)
    assert int(F.linear(saturated, weight.float())[0, 0]) != 127 * 127 * k  # the case the bound keeps from float32


@pytest.mark.parametrize("rows", [1, 3, 8])
def test_dynamic_int8_decoding_kernel_equals_the_schemes_torch_ops(rows):
    """Decoding rows of the dynamic scheme take the C++ kernel that the fused decode step runs: its outputs equal
    the scheme's torch ops bit for bit, with a row past the float32 bound too (every |x| equal, so every q is
    +-127 with K = 1537: the kernel's int32 sums)."""
    from formers.kernels import linear as kernel_linear

    if not kernel_linear.kernels_available():
        pytest.skip("formers' C++ kernels are not built here")
    torch.manual_seed(rows)
    k = 1537
    weight = torch.randint(-128, 128, (48, k), dtype=torch.int8)
    layer = QuantizedLinear.int8(weight, torch.rand(48) + 0.1, torch.randn(48), dynamic_activations=True)
    x = torch.randn(rows, k)
    saturated = torch.where(torch.randn(1, k) > 0, 3.0, -3.0)
    with torch.no_grad():
        for batch in (x, torch.cat([x[:rows - 1], saturated])):
            got = kernel_linear.small_batch_dynamic_int8_linear(batch, layer.weight, layer.weight_scale, layer.bias)
            assert got is not None and torch.equal(got, layer._dynamic_int8_linear(batch))
            assert torch.equal(layer(batch), got)


@pytest.mark.parametrize("quant_type, settings", [("int4_weight_only", {"group_size": 32}),
                                                  ("int8_weight_only", {}),
                                                  ("int8_dynamic_activation_int8_weight", {})])
def test_quantized_model_saves_as_pytorch_bin(folder, quant_type, settings, tmp_path):
    """save_pretrained(safe_serialization=False), as 4.45's torchao guide writes it: pytorch_model.bin of plain
    tensors, which reloads (weights_only) into the same quantized layers and logits."""
    ours = formers.AutoModelForCausalLM.from_pretrained(
        folder, quantization_config=formers.TorchAoConfig(quant_type, **settings))
    ours.save_pretrained(tmp_path / "saved", safe_serialization=False)
    assert (tmp_path / "saved" / "pytorch_model.bin").exists()
    assert not (tmp_path / "saved" / "model.safetensors").exists()
    reloaded = formers.AutoModelForCausalLM.from_pretrained(tmp_path / "saved")
    for model in (ours, reloaded):  # the config object, as 4.45 keeps it
        assert isinstance(model.config.quantization_config, formers.TorchAoConfig)
        assert model.config.quantization_config.to_dict() == ours.config.quantization_config.to_dict()
    assert [m.scheme for m in reloaded.modules() if isinstance(m, QuantizedLinear)] == [
        m.scheme for m in ours.modules() if isinstance(m, QuantizedLinear)]
    with torch.no_grad():
        assert torch.equal(reloaded(IDS).logits, ours(IDS).logits)
