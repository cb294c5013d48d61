"""Writes AWQ checkpoints in AutoAWQ's "gemm" layout from random codes, zero points and float16 scales of a model's
block layers (tests/quantization/test_awq.py; bench/prequantized.py). What such a folder means is what AutoAWQ's own
unpacking (`awq.utils.packing_utils.dequantize_gemm`) computes from it, however its bits were chosen."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

PACKING_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)  # the output column that each 4-bit field of a word holds, low field first


def pack(codes: torch.Tensor) -> torch.Tensor:
    """4-bit codes [rows, outputs] -> int32 words [rows, outputs / 8], eight outputs per word in AWQ's order."""
    columns = codes.to(torch.int64).unflatten(-1, (-1, 8))[..., list(PACKING_ORDER)]
    words = (columns << torch.arange(0, 32, 4)).sum(-1)
    return torch.where(words >= 2 ** 31, words - 2 ** 32, words).to(torch.int32)


def awq_checkpoint(folder: Path, out: Path, group_size: int, seed: int = 0, version: str = "gemm") -> Path:
    """`folder`'s model with every linear layer of its blocks replaced by random 4-bit AWQ parts; returns `out`.
    Layers whose outputs do not fill a packed word or whose inputs are no multiple of the group (an MoE router)
    stay in full precision, named in `modules_to_not_convert` as AWQ checkpoints of MoE models name them."""
    import transformers

    reference = transformers.AutoModelForCausalLM.from_pretrained(folder)
    generator = torch.Generator().manual_seed(seed)
    state = load_file(folder / "model.safetensors")
    kept = set()
    for name, module in reference.named_modules():
        if not name.startswith(("model.layers.", "transformer.h.")) or not isinstance(module, torch.nn.Linear):
            continue
        outputs, inputs = module.weight.shape
        if outputs % 8 or inputs % group_size:
            kept.add(name.rpartition(".")[2])
            continue
        groups = inputs // group_size
        del state[f"{name}.weight"]
        state.update({f"{name}.qweight": pack(torch.randint(0, 16, (inputs, outputs), generator=generator)),
                      f"{name}.qzeros": pack(torch.randint(0, 16, (groups, outputs), generator=generator)),
                      f"{name}.scales": (torch.rand(groups, outputs, generator=generator) * 0.02 + 0.004).half()})
        if f"{name}.bias" in state:
            state[f"{name}.bias"] = state[f"{name}.bias"].half()  # AutoAWQ keeps float16 biases
    shutil.copytree(folder, out)
    save_file(state, out / "model.safetensors", metadata={"format": "pt"})
    config = json.loads((out / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "awq", "bits": 4, "group_size": group_size, "zero_point": True,
                                     "version": version, "modules_to_not_convert": sorted(kept) or None}
    (out / "config.json").write_text(json.dumps(config))
    return out
