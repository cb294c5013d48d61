"""Weights that stay quantized: llama.cpp's Q8_0 / Q4_0 kept (keep_quantized=True), full-precision checkpoints
quantized at load (TorchAoConfig int8 / int4), save and reload, memory, and 4.45's other quantization configs.

Tolerances. Q4_0 (and int4 from float) keeps its weights exactly: (q - 8) * scale + zero with the file's
own scales, so on the exact float32 kernel path logits differ from the dequantized model only by summation
order (atol 1e-4). Q8_0 is re-quantized to one int8 scale per row (torch's int8 kernel has no per-block
scales), which adds an error of the order of Q8_0's own. The default path rounds float32 activations to
bfloat16 for the kernels (linear.py explains why): logits within 2% of their range, greedy tokens identical.
"""
from __future__ import annotations

import importlib.util
import json

import pytest
import torch
from torch import nn

import formers
from formers.errors import ConfigError
from formers.quantization import QuantizedLinear, TorchAoConfig, linear, quantized_memory_bytes
from formers.quantization.embedding import QuantizedEmbedding

from .conftest import IDS

PROMPT = torch.tensor([[1, 403, 407, 261, 378]])


def logits(model, ids=IDS):
    with torch.no_grad():
        return model(ids).logits


def quantized_layers(model) -> list[QuantizedLinear]:
    return [m for m in model.modules() if isinstance(m, QuantizedLinear)]


def greedy(model) -> list[int]:
    out = model.generate(PROMPT, attention_mask=torch.ones_like(PROMPT), max_new_tokens=24, do_sample=False,
                         min_new_tokens=24, pad_token_id=0)
    return out[0].tolist()


@pytest.fixture
def exact_kernels(monkeypatch):
    """Run the int8/int4 kernels on float32 activations (exact, slow scalar code) instead of bfloat16."""
    monkeypatch.setattr(linear, "FP32_KERNEL_DTYPE", torch.float32)


@pytest.mark.parametrize("qtype,scheme,exact", [("Q4_0", "int4", False), ("Q8_0", "int8", False),
                                                ("Q4_0", "int4", True)])
def test_kept_gguf_weights_match_dequantized(stories_dir, stories_gguf, qtype, scheme, exact, monkeypatch):
    if exact:
        monkeypatch.setattr(linear, "FP32_KERNEL_DTYPE", torch.float32)
    file = stories_gguf(qtype)
    dequantized = formers.AutoModelForCausalLM.from_pretrained(stories_dir, gguf_file=file)
    kept = formers.AutoModelForCausalLM.from_pretrained(stories_dir, gguf_file=file, keep_quantized=True)
    layers = quantized_layers(kept)
    # q/k/v/o (64 columns) and the tied head are kept; gate/up (172 rows) do not fit the int4 kernel, down
    # (172 columns) no block; the embedding keeps the file's blocks and looks up the dequantized model's values
    assert len(layers) == (21 if scheme == "int4" else 31) and {m.scheme for m in layers} == {scheme}
    assert isinstance(kept.lm_head, QuantizedLinear) and isinstance(kept.model.embed_tokens, QuantizedEmbedding)
    assert torch.equal(kept.model.embed_tokens(IDS), dequantized.model.embed_tokens(IDS))
    expected = logits(dequantized)
    delta = (logits(kept) - expected).abs().max().item()
    span = (expected.max() - expected.min()).item()
    path = "float32 kernels" if exact else "bfloat16 activations"
    print(f"{qtype} kept vs dequantized ({path}): max |delta logits| = {delta:.3g} (logit range {span:.3g})")
    assert delta <= (1e-4 if exact and scheme == "int4" else 0.02 * span)
    if not exact:
        assert greedy(kept) == greedy(dequantized)
    assert kept.config.quantization_config["quant_method"] == "formers_gguf"


def test_kept_q4_0_weights_equal_dequantized_exactly(stories_dir, stories_gguf, exact_kernels):
    file = stories_gguf("Q4_0")
    dequantized = formers.AutoModelForCausalLM.from_pretrained(stories_dir, gguf_file=file)
    kept = formers.AutoModelForCausalLM.from_pretrained(stories_dir, gguf_file=file, keep_quantized=True)
    layer = kept.model.layers[2].self_attn.k_proj
    assert torch.equal(layer.dequantized_weight(), dequantized.model.layers[2].self_attn.k_proj.weight)


@pytest.mark.parametrize("quant_type,group_size", [("int8_weight_only", None), ("int4_weight_only", 32),
                                                   ("int4_weight_only", 128)])
def test_quantize_float_checkpoint_at_load(llama_dir, quant_type, group_size, tmp_path, exact_kernels):
    kwargs = {} if group_size is None else {"group_size": group_size}
    config = TorchAoConfig(quant_type, **kwargs)
    model = formers.AutoModelForCausalLM.from_pretrained(llama_dir, quantization_config=config)
    layers = quantized_layers(model)
    assert len(layers) == 14 and isinstance(model.lm_head, nn.Linear)  # 7 per layer; the head is skipped
    # each weight is within half a quantization step of the original ...
    reference = formers.AutoModelForCausalLM.from_pretrained(llama_dir)
    for name, module in model.named_modules():
        if isinstance(module, QuantizedLinear):
            original = reference.get_submodule(name).weight.detach()
            error = (module.dequantized_weight() - original).abs()
            if group_size is None:  # int8: step = max |w| of the row / 127
                step = original.abs().amax(dim=1, keepdim=True) / 127
            else:  # int4: step = (max - min) of the group / 15
                groups = original.view(original.shape[0], -1, group_size)
                step = ((groups.amax(-1) - groups.amin(-1)) / 15).repeat_interleave(group_size, dim=1)
            assert bool((error <= 0.5 * step * 1.001 + 1e-7).all()), name
    # ... and the kernels compute with exactly the weights the module reports
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, QuantizedLinear):
                reference.get_submodule(name).weight.copy_(module.dequantized_weight())
    torch.testing.assert_close(logits(model), logits(reference), rtol=0, atol=1e-4)
    # save -> reload keeps the layers quantized and the logits identical
    model.save_pretrained(tmp_path / "q")
    saved = json.loads((tmp_path / "q" / "config.json").read_text())["quantization_config"]
    assert saved == config.to_dict()
    reloaded = formers.AutoModelForCausalLM.from_pretrained(tmp_path / "q")
    assert len(quantized_layers(reloaded)) == 14
    torch.testing.assert_close(logits(reloaded), logits(model), rtol=0, atol=0)


def test_kept_gguf_save_and_reload(stories_dir, stories_gguf, tmp_path):
    kept = formers.AutoModelForCausalLM.from_pretrained(stories_dir, gguf_file=stories_gguf("Q4_0"),
                                                        keep_quantized=True)
    kept.save_pretrained(tmp_path / "kept")
    reloaded = formers.AutoModelForCausalLM.from_pretrained(tmp_path / "kept")
    assert len(quantized_layers(reloaded)) == len(quantized_layers(kept))
    torch.testing.assert_close(logits(reloaded), logits(kept), rtol=0, atol=0)


def test_bfloat16_activations(llama_dir):
    model = formers.AutoModelForCausalLM.from_pretrained(llama_dir, torch_dtype=torch.bfloat16,
                                                         quantization_config=TorchAoConfig("int4_weight_only",
                                                                                           group_size=64))
    assert model.model.layers[0].mlp.up_proj.scales_and_zeros.dtype == torch.bfloat16
    full = formers.AutoModelForCausalLM.from_pretrained(llama_dir)
    assert (logits(model).float() - logits(full)).abs().max() < 0.5


def test_memory_figures(llama_dir):
    full = formers.AutoModelForCausalLM.from_pretrained(llama_dir)
    sizes = {"fp32": quantized_memory_bytes(full)}
    for quant_type in ("int8_weight_only", "int4_weight_only"):
        model = formers.AutoModelForCausalLM.from_pretrained(llama_dir, quantization_config=TorchAoConfig(
            quant_type, group_size=32))
        sizes[quant_type] = quantized_memory_bytes(model)
    linear = sum(m.weight.numel() for n, m in full.named_modules() if isinstance(m, nn.Linear) and n != "lm_head")
    rest = sizes["fp32"] - 4 * linear
    print(f"model bytes: {sizes} (of which fp32 outside quantized linears: {rest})")
    assert sizes["int8_weight_only"] - rest == pytest.approx(linear * (1 + 0), rel=0.02)  # 1 byte/weight + scales
    assert sizes["int4_weight_only"] - rest == pytest.approx(linear * (0.5 + 8 / 32), rel=0.02)  # + 2 fp32 / 32


@pytest.mark.parametrize("name,package", [("GPTQConfig", "auto_gptq"), ("AwqConfig", "awq")])
def test_foreign_quantization_configs(llama_dir, name, package):
    config = getattr(formers, name)(bits=4)
    installed = importlib.util.find_spec(package) is not None
    reason = "is installed, but formers does not drive it" if installed else "which is not installed"
    with pytest.raises(ConfigError, match=rf"{name}: .*the {package} package.*{reason}.*TorchAoConfig"):
        formers.AutoModelForCausalLM.from_pretrained(llama_dir, quantization_config=config)


def test_foreign_quantization_in_config_json(llama_dir, tmp_path):
    folder = tmp_path / "gptq"
    folder.mkdir()
    data = json.loads((llama_dir / "config.json").read_text())
    data["quantization_config"] = {"quant_method": "gptq", "bits": 4}
    (folder / "config.json").write_text(json.dumps(data))
    (folder / "model.safetensors").symlink_to(llama_dir / "model.safetensors")
    with pytest.raises(ConfigError, match="GPTQConfig: it needs the auto_gptq package"):
        formers.AutoModelForCausalLM.from_pretrained(folder)


def test_keep_quantized_needs_a_gguf_file(llama_dir):
    with pytest.raises(ConfigError, match="keep_quantized=True.*gguf_file"):
        formers.AutoModelForCausalLM.from_pretrained(llama_dir, keep_quantized=True)


def test_bad_torchao_arguments():
    with pytest.raises(ConfigError, match="quant_type"):
        TorchAoConfig("int2_weight_only")
    with pytest.raises(ConfigError, match="group_size"):
        TorchAoConfig("int4_weight_only", group_size=48)
