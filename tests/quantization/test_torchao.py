"""TorchAoConfig("int8_weight_only"), which formers computes itself, against transformers 4.45.2 loading the same
checkpoint with the same TorchAoConfig through torchao 0.5.0 (the scheme 4.45's name stands for). torchao 0.5.0's
int4 layout does not run on this torch's CPU build (`_convert_weight_to_int4pack` has no CPU kernel), so int4 has
no oracle here; tests/gguf/test_quantized.py checks it against its own dequantized weights."""
from __future__ import annotations

import pytest
import torch

import formers
from formers.quantization import QuantizedLinear, linear
from tests.conftest import build_oracle_checkpoint

torchao = pytest.importorskip("torchao", reason="torchao is not installed (it comes with the test extra)")

IDS = torch.tensor([[1, 5, 9, 33, 7, 64, 3], [1, 90, 12, 4, 77, 21, 50]])


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    import transformers

    folder = build_oracle_checkpoint(tmp_path_factory.mktemp("torchao"), "qwen2", tie_word_embeddings=False)
    ours = formers.AutoModelForCausalLM.from_pretrained(
        folder, quantization_config=formers.TorchAoConfig("int8_weight_only"))
    theirs = transformers.AutoModelForCausalLM.from_pretrained(
        folder, quantization_config=transformers.TorchAoConfig("int8_weight_only"), torch_dtype=torch.float32,
        device_map="cpu")
    return ours, theirs


def test_int8_values_and_scales_equal_torchaos(models):
    ours, theirs = models
    checked = 0
    for name, module in ours.named_modules():
        if isinstance(module, QuantizedLinear):
            stored = theirs.get_submodule(name).weight.layout_tensor
            assert torch.equal(module.weight, stored.int_data), name
            assert torch.equal(module.weight_scale, stored.scale.float()), name
            checked += 1
    assert checked == 14


def test_int8_logits_and_tokens_equal_4_45(models, monkeypatch):
    """With float32 activations in the prefill kernel (formers' default rounds them to bfloat16 there, for speed:
    `linear.FP32_KERNEL_DTYPE`) the logits equal 4.45.2's; decoding (formers' int8 GEMV) is float32 anyway."""
    ours, theirs = models
    monkeypatch.setattr(linear, "FP32_KERNEL_DTYPE", torch.float32)
    with torch.no_grad():
        got, want = ours(IDS).logits, theirs(IDS).logits
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    greedy = dict(max_new_tokens=10, do_sample=False, pad_token_id=0)
    assert torch.equal(ours.generate(IDS[:1], **greedy), theirs.generate(IDS[:1], **greedy))
