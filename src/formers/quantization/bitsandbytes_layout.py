"""bitsandbytes layers in a family's own checkpoint layout (GPT-2, Bloom, Falcon, GPT-NeoX, Phi, ...).

A family with a KeyMap (loading/key_map.py) names its projections its own way, stores some transposed (GPT-2's
Conv1D) and fuses some (q/k/v in one tensor, gate and up in one). transformers 4.45 quantizes the checkpoint's own
layers, so its file holds one bitsandbytes state per fused tensor, in nn.Linear's [out, in] orientation even for
a Conv1D (it transposes before quantizing and not again at load). formers holds the parts as separate layers: at
save their states are joined into the checkpoint's layer, at load the checkpoint's layer is split into them.

Both directions work on output rows: a row of an int8 weight is its K values and its scale in `SCB`; a row of a
4-bit weight is K / 2 packed bytes and K / blocksize block scales (bitsandbytes packs and blocks the flattened
weight, so no block crosses a row when K is a multiple of the block size). Which rows go where is found by passing
row numbers through the key map itself (as it splits and joins biases), so every family's rule applies unchanged.
A layer that is only renamed keeps its state as it is. Double quantization (the block scales quantized again,
with one offset per tensor) is re-derived for a joined layer from its block scales, as bitsandbytes derives it when
it quantizes: a scale then moves by at most one step of that second quantization. A layer split from a joined one
keeps its block scales as the joined layer computes with them (float32, 3 bytes more per block of 64 weights than
the second quantization), so it computes what 4.45's joined layer computes.
"""
from __future__ import annotations

import functools
from typing import Iterable, Iterator

import torch
from torch import Tensor, nn

from ..errors import CheckpointError
from ..loading.key_map import KeyMap
from .package_configs import recorded_settings

_STAT_PREFIX = "weight."  # 4-bit statistics: weight.absmax, weight.quant_map, weight.quant_state.bitsandbytes__nf4, ...
_INT8_PARTS = ("SCB", "weight_format")


def _is_bitsandbytes_layer(module: nn.Module) -> bool:
    return type(module).__module__.startswith("bitsandbytes") and type(module).__name__ in (
        "Linear8bitLt", "Linear4bit")


class _Rows:
    """One layer's quantized state as tensors indexed by output row (see the module doc), and back."""

    def __init__(self, name: str, parts: dict[str, Tensor]):
        self.name, self.parts = name, parts
        self.int8 = "SCB" in parts
        if self.int8:
            self.count = parts["weight"].shape[0]
            return
        from bitsandbytes.functional import QuantState

        self.state = QuantState.from_dict({k[len(_STAT_PREFIX):]: v for k, v in parts.items() if k != "weight"},
                                          device=parts["weight"].device)
        self.count, self.K = self.state.shape

    def __len__(self) -> int:
        return self.count

    @functools.cached_property
    def rows(self) -> dict[str, Tensor]:
        weight = self.parts["weight"]
        if self.int8:
            return {"weight": weight, "SCB": self.parts["SCB"].float()}
        from bitsandbytes.functional import dequantize_blockwise

        state, N, K = self.state, self.count, self.K
        if K % 2 or K % state.blocksize:
            raise CheckpointError(f"bitsandbytes layer {self.name!r}: its {K} inputs are not a multiple of its block "
                                  f"size {state.blocksize}, so its 4-bit blocks cannot be parted by rows")
        absmax = state.absmax
        if state.nested:
            absmax = dequantize_blockwise(state.absmax, state.state2) + state.offset
        return {"weight": weight.reshape(-1).view(torch.uint8).reshape(N, K // 2),
                "absmax": absmax.float().reshape(N, K // state.blocksize)}

    @staticmethod
    def parts_of(pieces: list["_Rows"], index: Tensor, nest: bool) -> dict[str, Tensor]:
        """The state of the layer made of rows `index` of the pieces' rows laid end to end, keyed as bitsandbytes
        saves it; `nest`: its block scales double-quantized (else kept in float32)."""
        first = pieces[0]
        rows = {key: torch.cat([piece.rows[key] for piece in pieces])[index] for key in first.rows}
        if first.int8:
            return {"weight": rows["weight"], "SCB": rows["SCB"], "weight_format": torch.tensor(0, dtype=torch.uint8)}
        from bitsandbytes.functional import QuantState, quantize_blockwise

        state, absmax = first.state, rows["absmax"].reshape(-1)
        nested = {}
        if nest:  # as bitsandbytes' quantize_4bit(compress_statistics=True) derives it
            offset = absmax.mean()
            absmax, second = quantize_blockwise(absmax - offset, blocksize=256)
            nested = dict(offset=offset, state2=second)
        joined = QuantState(absmax=absmax, shape=torch.Size([rows["weight"].shape[0], first.K]), dtype=state.dtype,
                            blocksize=state.blocksize, code=state.code, quant_type=state.quant_type, **nested)
        weight = rows["weight"].reshape(-1).view(first.parts["weight"].dtype).reshape(-1, 1)
        return {"weight": weight, **{_STAT_PREFIX + k: v for k, v in joined.as_dict(packed=True).items()}}


def _layer_parts(state: dict[str, Tensor], layer: str) -> dict[str, Tensor]:
    """The saved parts of bitsandbytes layer `layer` (its bias aside), keyed below the layer."""
    head = layer + "."
    return {key[len(head):]: value for key, value in state.items()
            if key.startswith(head) and (key[len(head):] in ("weight", *_INT8_PARTS)
                                         or key[len(head):].startswith(_STAT_PREFIX))}


def _identity(index: Tensor, rows: int) -> bool:
    return index.numel() == rows and torch.equal(index, torch.arange(rows))


# --- saving: formers' layers -> the checkpoint's ----------------------------------------------------------------
def to_checkpoint(model: nn.Module, state: dict[str, Tensor], key_map: KeyMap) -> dict[str, Tensor]:
    """`key_map.to_checkpoint` of a state dict that holds bitsandbytes layers: their states joined, split or renamed
    into the checkpoint's layers (see the module doc), every other tensor mapped as usual."""
    layers = [name for name, module in model.named_modules() if _is_bitsandbytes_layer(module)]
    parts = {name: _layer_parts(state, name) for name in layers}
    taken = {f"{name}.{part}" for name in layers for part in parts[name]}
    rest = {key: value for key, value in state.items() if key not in taken}
    # each layer's rows numbered from its own base: the numbers that reach a checkpoint tensor say whose rows it holds
    rows = {name: _Rows(name, parts[name]) for name in layers}
    bases, probes, base = [], {}, 0
    for name in layers:
        probes[f"{name}.weight"] = torch.arange(base, base + len(rows[name]))
        bases.append(base)
        base += len(rows[name])
    try:
        mapped = key_map.to_checkpoint(probes, model.config)
    except CheckpointError as error:
        raise CheckpointError(f"save_pretrained: {type(model).__name__}'s checkpoints store some bitsandbytes layers "
                              f"as one tensor; quantize all of its parts or none of them ({error})") from None
    out = key_map.to_checkpoint(rest, model.config)
    starts = torch.tensor(bases)
    double = bool(recorded_settings(model.config).get("bnb_4bit_use_double_quant"))
    for key, numbers in mapped.items():
        owners = torch.searchsorted(starts, numbers, right=True) - 1
        layer = key[:-len(".weight")]
        first = layers[int(owners[0])]
        if bool((owners == owners[0]).all()) and _identity(numbers - bases[int(owners[0])], len(rows[first])):
            saved = parts[first]  # renamed only: the state as bitsandbytes gave it
        else:  # joined: the rows of the layers it holds, in the order the key map joins them
            held = owners.unique()
            pieces = [rows[layers[owner]] for owner in held.tolist()]
            shift = torch.zeros(len(layers), dtype=torch.long)  # a layer's row number -> its place among the pieces
            shift[held] = torch.tensor([0, *[len(piece) for piece in pieces[:-1]]]).cumsum(0) - starts[held]
            saved = _Rows.parts_of(pieces, numbers + shift[owners], nest=double)
        out.update({f"{layer}.{part}": value for part, value in saved.items()})
    return out


# --- loading: the checkpoint's layers -> formers' ---------------------------------------------------------------
def to_model(tensors: Iterable[tuple[str, Tensor]], key_map: KeyMap, config, needed: set[str],
             storage: torch.dtype) -> Iterator[tuple[str, Tensor]]:
    """`key_map.to_model` of a checkpoint saved with bitsandbytes layers (`needed`: the parts each one has, below
    its name; `storage`: its weights' dtype): each layer's parts are gathered, then renamed or split into formers'
    layers (see the module doc); every other tensor is mapped as usual."""
    pending: dict[str, dict[str, Tensor]] = {}
    for key, value in tensors:
        if key.endswith(".weight_format"):  # bitsandbytes' record of its int8 layout; the CPU layout is row-major
            continue
        layer, part = next(((key[:-len(p) - 1], p) for p in needed if key.endswith("." + p)), (None, ""))
        if layer is None or (part == "weight" and value.dtype != storage and layer not in pending):
            yield from key_map.to_model([(key, value)], config)
            continue
        got = pending.setdefault(layer, {})
        got[part] = value
        if needed <= got.keys():
            yield from _layer_to_model(layer, pending.pop(layer), key_map, config)
    for layer, got in pending.items():  # incomplete: as they are (PrequantizedLayers names what is missing)
        yield from key_map.to_model([(f"{layer}.{part}", value) for part, value in got.items()], config)


def _layer_to_model(layer: str, parts: dict[str, Tensor], key_map: KeyMap, config) -> Iterator[tuple[str, Tensor]]:
    rows = _Rows(layer, parts)
    for name, index in key_map.to_model([(f"{layer}.weight", torch.arange(len(rows)))], config):
        target = name[:-len(".weight")]
        saved = parts if _identity(index, len(rows)) else _Rows.parts_of([rows], index, nest=False)
        yield from ((f"{target}.{part}", value) for part, value in saved.items())
