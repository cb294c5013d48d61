"""Writes GPTQ checkpoints in auto-gptq's layout from random codes, zero points and float16 scales of a model's
block layers (tests/quantization/test_gptq.py; bench/prequantized.py). What such a folder means is what 4.45.2 + optimum
+ auto-gptq compute from it, however its bits were chosen."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def _pack(codes: torch.Tensor, bits: int, dim: int) -> torch.Tensor:
    """Codes -> int32 words along `dim`, a little-endian stream of `bits`-bit fields (auto-gptq's packing)."""
    codes = codes.movedim(dim, -1).to(torch.int64)
    fields = codes.unflatten(-1, (-1, 32))  # 32 codes fill `bits` words exactly
    stream = ((fields.unsqueeze(-1) >> torch.arange(bits)) & 1).flatten(-2)  # [..., groups of 32, 32 * bits]
    words = (stream.unflatten(-1, (bits, 32)) << torch.arange(32)).sum(-1).flatten(-2)
    return torch.where(words >= 2 ** 31, words - 2 ** 32, words).to(torch.int32).movedim(-1, dim).contiguous()


def gptq_checkpoint(folder: Path, out: Path, bits: int, group_size: int, act_order: bool, seed: int = 0,
                    symmetric: bool = False) -> Path:
    """`folder`'s model with every linear layer of its blocks replaced by random GPTQ parts; returns `out`.
    symmetric: every zero point 2^(bits - 1), as GPTQ's sym=True writes them. Layers with fewer outputs than one
    packed word of zero points (an MoE router) stay in full precision, listed out of `modules_in_block_to_quantize`
    as GPTQ checkpoints of MoE models leave them."""
    import transformers
    from transformers.pytorch_utils import Conv1D

    reference = transformers.AutoModelForCausalLM.from_pretrained(folder)
    generator = torch.Generator().manual_seed(seed)
    state = load_file(folder / "model.safetensors")
    blocks = ("model.layers.", "transformer.h.")
    quantized, kept = set(), set()
    for name, module in reference.named_modules():
        if not name.startswith(blocks) or not isinstance(module, (torch.nn.Linear, Conv1D)):
            continue
        outputs, inputs = (module.weight.shape[1], module.weight.shape[0]) if isinstance(module, Conv1D) \
            else module.weight.shape
        in_block = name.split(".", 3)[-1]  # "self_attn.q_proj" of "model.layers.0.self_attn.q_proj"
        if outputs % 32:
            kept.add(in_block)
            continue
        quantized.add(in_block)
        groups = inputs // group_size
        codes = torch.randint(0, 2 ** bits, (inputs, outputs), generator=generator)
        # stored zero points (true zero - 1); with act-order also the top value, which auto-gptq reads as 2^bits
        zeros = torch.randint(0, 2 ** bits - (0 if act_order else 1), (groups, outputs), generator=generator)
        if symmetric:
            zeros = torch.full_like(zeros, 2 ** (bits - 1) - 1)
        g_idx = torch.arange(inputs, dtype=torch.int32) // group_size
        if act_order:
            g_idx = g_idx[torch.randperm(inputs, generator=generator)]
        del state[f"{name}.weight"]
        state.update({f"{name}.qweight": _pack(codes, bits, 0), f"{name}.qzeros": _pack(zeros, bits, 1),
                      # weights of about the same size whatever the bits (real GPTQ scales shrink with more bits)
                      f"{name}.scales": ((torch.rand(groups, outputs, generator=generator) * 0.02 + 0.004)
                                         * 16 / 2 ** bits).half(),
                      f"{name}.g_idx": g_idx})
        if f"{name}.bias" in state:
            state[f"{name}.bias"] = state[f"{name}.bias"].half()  # auto-gptq keeps float16 biases
    shutil.copytree(folder, out)
    save_file(state, out / "model.safetensors", metadata={"format": "pt"})
    config = json.loads((out / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "gptq", "bits": bits, "group_size": group_size,
                                     "desc_act": act_order, "sym": symmetric, "damp_percent": 0.1,
                                     "true_sequential": True, "static_groups": False}
    if kept:
        config["quantization_config"]["modules_in_block_to_quantize"] = [sorted(quantized)]
    (out / "config.json").write_text(json.dumps(config))
    return out
