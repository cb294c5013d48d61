"""`model.dequantize()`: a quantized model's linear layers back to full-precision ones (4.45's PreTrainedModel API).

4.45 implements it for bitsandbytes' layers: each Linear4bit / Linear8bitLt becomes an nn.Linear holding the weight
bitsandbytes dequantizes, cast to the model's dtype, its bias kept; the other methods raise NotImplementedError and
an unquantized model raises ValueError. formers does the same and also dequantizes its own int8 / int4 / GGUF-block
layers and GGUF embeddings (TorchAoConfig, `keep_quantized=True`; a tied head is tied to the table again) and
hqq's layers (4.45 has no dequantize for HQQ: the weight hqq's own `dequantize` gives, which its forward uses). Two
differences: 4.45.2 stops on an 8-bit layer on a CPU (it goes through bitsandbytes' CUDA-only matrix-layout
functions), where formers takes bitsandbytes' CPU dequantization (int8 x row scale / 127); and 4.45 leaves
`quantization_config` in the model's config, so a folder saved afterwards claims quantized layers it does not hold:
formers drops it, and save_pretrained writes a full-precision model.
"""
from __future__ import annotations

from torch import Tensor, nn

from .bitsandbytes import canonical_4bit_layers
from .embedding import QuantizedEmbedding
from .linear import QuantizedLinear
from .package_configs import recorded_settings


def _full_precision_weight(module: nn.Module) -> Tensor | None:
    """The weight a quantized linear layer (or GGUF embedding) computes with, as float; None for any other module."""
    if isinstance(module, (QuantizedLinear, QuantizedEmbedding)):
        return module.dequantized_weight()
    if type(module).__name__ == "HQQLinear" and type(module).__module__.startswith("hqq"):
        return module.dequantize()  # hqq's own: what its forward multiplies by
    kind = type(module).__name__ if type(module).__module__.startswith("bitsandbytes") else None
    if kind == "Linear4bit":
        from bitsandbytes.functional import dequantize_4bit

        return dequantize_4bit(module.weight.data, module.weight.quant_state)
    if kind == "Linear8bitLt":
        from bitsandbytes.functional import int8_vectorwise_dequant

        scales = getattr(module.weight, "SCB", None)
        return int8_vectorwise_dequant(module.weight.data, module.state.SCB if scales is None else scales)
    return None


def dequantize_model(model: nn.Module) -> nn.Module:
    """Replace every quantized linear layer of `model` by a full-precision one, in place; returns the model."""
    from ..modeling.layers import Embedding, Linear  # (modeling imports this package)

    recorded = recorded_settings(model.config)
    if not recorded:
        raise ValueError("You need to first quantize your model in order to dequantize it")
    method = recorded.get("quant_method")
    if method not in ("bitsandbytes", "torchao", "formers_gguf", "hqq"):
        raise NotImplementedError(f"{method} has no implementation of `dequantize`: its layers stay as they are")
    dtype = model.dtype
    with canonical_4bit_layers(model):  # bitsandbytes' CPU-repacked 4-bit layers in their saved layout
        replacements = {name: _full_precision_weight(module) for name, module in model.named_modules()}
    for name, weight in replacements.items():
        if weight is None:
            continue
        module = model.get_submodule(name)
        if isinstance(module, QuantizedEmbedding):
            plain = Embedding(module.num_embeddings, module.embedding_dim, device="meta")
        else:
            plain = Linear(module.in_features, module.out_features, bias=module.bias is not None, device="meta")
            if module.bias is not None:
                plain.bias = nn.Parameter(module.bias.detach().to(dtype))
        plain.weight = nn.Parameter(weight.to(dtype))
        model.set_submodule(name, plain)
    if getattr(model.config, "tie_word_embeddings", False) and hasattr(model, "tie_weights"):
        model.tie_weights()  # a tied head shares the table again (each was dequantized on its own)
    del model.config.quantization_config
    model.is_quantized = model.is_loaded_in_4bit = model.is_loaded_in_8bit = False
    return model
