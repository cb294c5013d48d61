"""How a family's checkpoint keys map onto formers' module names, both ways.

formers builds every dense family from the same modules (`model.layers.N.self_attn.q_proj`, ...).
Checkpoints name them their own way (GPT-2's `transformer.h.N.attn.c_attn`), fuse some (q/k/v in one
tensor, gate and up in one) and store some transposed (GPT-2's Conv1D). A family's `KeyMap` states
these differences declaratively; loading applies it tensor by tensor (memory-mapped tensors stay
views where no split or transpose is needed) and `save_pretrained` applies the reverse, so a saved
folder has the checkpoint's own keys and loads in transformers again.

Patterns are dotted key templates below the base-model prefix; `{name}` matches one key segment and
carries over to the other side (`"h.{L}.ln_1.{P}"` <-> `"layers.{L}.input_layernorm.{P}"`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable, Iterable, Iterator

import torch

from ..errors import CheckpointError

Tensor = torch.Tensor


@lru_cache(maxsize=None)
def _compile(pattern: str) -> re.Pattern:
    parts = re.split(r"(\{\w+\})", pattern)
    regex = "".join(f"(?P<{p[1:-1]}>[^.]+)" if p.startswith("{") else re.escape(p) for p in parts)
    return re.compile(regex + "$")


def _match(pattern: str, key: str) -> dict[str, str] | None:
    found = _compile(pattern).match(key)
    return found.groupdict() if found else None


@dataclass(frozen=True)
class Fused:
    """One checkpoint tensor that holds several formers tensors (split at load, joined at save).

    `split(tensor, config, fields)` returns the parts in the order of `parts`; `join(parts, config,
    fields)` is its inverse. `fields` are the placeholder values of the match (e.g. {"L": "3", "P": "bias"}).
    """

    checkpoint: str
    parts: tuple[str, ...]
    split: Callable[[Tensor, Any, dict], list[Tensor]]
    join: Callable[[list[Tensor], Any, dict], Tensor]


def split_sizes(sizes: Callable[[Any], list[int]], dim: int = 0) -> tuple[Callable, Callable]:
    """(split, join) for parts laid end to end along `dim`, sized `sizes(config)`."""
    def split(tensor: Tensor, config, fields) -> list[Tensor]:
        return [part.contiguous() for part in torch.split(tensor, sizes(config), dim=dim)]

    def join(parts: list[Tensor], config, fields) -> Tensor:
        return torch.cat(parts, dim=dim)
    return split, join


def split_per_head(num_heads: Callable[[Any], int], parts: int = 3) -> tuple[Callable, Callable]:
    """(split, join) for fused projections laid out head by head, [h0: q k v, h1: q k v, ...] (GPT-NeoX,
    Bloom, multi-head GPTBigCode), into `parts` tensors laid out [all heads of q], [all of k], ..."""
    def split(tensor: Tensor, config, fields) -> list[Tensor]:
        heads = num_heads(config)
        grouped = tensor.reshape(heads, parts, -1, *tensor.shape[1:])  # [H, parts, D, (in)]
        return [grouped[:, i].reshape(-1, *tensor.shape[1:]).contiguous() for i in range(parts)]

    def join(pieces: list[Tensor], config, fields) -> Tensor:
        heads = num_heads(config)
        grouped = torch.stack([p.reshape(heads, -1, *p.shape[1:]) for p in pieces], dim=1)
        return grouped.reshape(-1, *pieces[0].shape[1:])
    return split, join


@dataclass(frozen=True)
class KeyMap:
    """A family's checkpoint layout (see the module docstring).

    prefix: the checkpoint's base-model prefix ("model", "transformer", "gpt_neox"); formers' is "model".
    renames: (checkpoint pattern, formers pattern) pairs for keys below the prefix.
    head_renames: the same for keys outside the base model ("embed_out.weight" -> "lm_head.weight").
    fused: checkpoint tensors that hold several formers tensors.
    transposed: checkpoint patterns stored [in, out] (Conv1D) rather than nn.Linear's [out, in].
    ignored: checkpoint patterns (below the prefix) that are not weights and are skipped.
    """

    prefix: str = "model"
    renames: tuple[tuple[str, str], ...] = ()
    head_renames: tuple[tuple[str, str], ...] = ()
    fused: tuple[Fused, ...] = ()
    transposed: tuple[str, ...] = field(default=())
    ignored: tuple[str, ...] = ()  # checkpoint patterns dropped at load (stale buffers such as GPT-2's attn.bias)

    # --- loading: checkpoint -> formers -------------------------------------------------------------
    def to_model(self, tensors: Iterable[tuple[str, Tensor]], config) -> Iterator[tuple[str, Tensor]]:
        """Rename, transpose and split checkpoint tensors into formers' names (base model keys come
        back with the "model." prefix when the checkpoint had its own prefix, bare otherwise)."""
        for key, tensor in tensors:
            inner, prefixed = self._strip(key)
            if any(_match(p, inner) is not None for p in self.ignored):
                continue
            if not prefixed and (renamed := self._rename(inner, self.head_renames)) is not None:
                yield renamed, tensor
                continue
            yield from ((("model." if prefixed else "") + name, part)
                        for name, part in self._inner_to_model(inner, tensor, config))

    def _strip(self, key: str) -> tuple[str, bool]:
        head = self.prefix + "."
        return (key[len(head):], True) if key.startswith(head) else (key, False)

    def _inner_to_model(self, key: str, tensor: Tensor, config) -> list[tuple[str, Tensor]]:
        if self._transposed(key) and tensor.dim() == 2:
            tensor = tensor.t().contiguous()  # one copy at load; a strided weight would slow every matmul
        for fused in self.fused:
            fields = _match(fused.checkpoint, key)
            if fields is not None:
                if hasattr(tensor, "split_rows"):  # GGUF blocks kept quantized (gguf/tensors.py QuantizedBlocks)
                    parts = tensor.split_rows(lambda rows: fused.split(rows, config, fields))
                else:
                    parts = fused.split(tensor, config, fields)
                return [(name.format(**fields), part) for name, part in zip(fused.parts, parts)]
        renamed = self._rename(key, self.renames)
        return [(key if renamed is None else renamed, tensor)]

    @staticmethod
    def _rename(key: str, pairs: Iterable[tuple[str, str]], reverse: bool = False) -> str | None:
        for checkpoint, ours in pairs:
            source, target = (ours, checkpoint) if reverse else (checkpoint, ours)
            fields = _match(source, key)
            if fields is not None:
                return target.format(**fields)
        return None

    # --- saving: formers -> checkpoint ----------------------------------------------------------------
    def to_checkpoint(self, state: dict[str, Tensor], config) -> dict[str, Tensor]:
        """formers' state dict -> the checkpoint's keys and layout (the inverse of `to_model`)."""
        out: dict[str, Tensor] = {}
        groups: dict[tuple[int, str, bool], dict[int, Tensor]] = {}  # (rule, checkpoint key, prefixed) -> parts
        for key, tensor in state.items():
            target = self.checkpoint_key(key)
            if target is not None:
                out[target] = self._maybe_transpose(target, tensor)
                continue
            prefixed = key.startswith("model.")  # one part of a fused tensor
            rule_idx, fused, part_idx = self._fused_part(key[len("model."):] if prefixed else key)
            groups.setdefault((rule_idx, fused, prefixed), {})[part_idx] = tensor
        for (rule_idx, target, prefixed), parts in groups.items():
            rule = self.fused[rule_idx]
            if len(parts) != len(rule.parts):
                raise CheckpointError(f"save: checkpoint tensor {target!r} joins {list(rule.parts)}; only "
                                      f"{len(parts)} of them are in the state dict")
            joined = rule.join([parts[i] for i in range(len(rule.parts))], config, _match(rule.checkpoint, target))
            out[self._with_prefix(target, prefixed)] = self._maybe_transpose(self._with_prefix(target, prefixed),
                                                                              joined)
        return out

    def checkpoint_key(self, key: str) -> str | None:
        """The checkpoint key formers' `key` is saved under; None where it is one part of a fused tensor."""
        prefixed = key.startswith("model.")
        inner = key[len("model."):] if prefixed else key
        if not prefixed and (head := self._rename(inner, self.head_renames, reverse=True)) is not None:
            return head
        if self._fused_part(inner) is not None:
            return None
        return self._with_prefix(self._rename(inner, self.renames, reverse=True) or inner, prefixed)

    def stores_transposed(self, key: str) -> bool:
        """Whether the checkpoint stores the tensor `key` (a checkpoint key) [in, out] (Conv1D)."""
        return self._transposed(self._strip(key)[0])

    def _transposed(self, inner: str) -> bool:
        return any(_match(p, inner) is not None for p in self.transposed)

    def moves_whole_rows(self, key: str, rows: int, config) -> bool:
        """Whether `to_model` passes the checkpoint tensor `key` ([rows, ...]) on whole or as sets of its rows (a
        fused projection's split, probed on the row numbers), so that a layout keeping each row's bytes together
        (llama.cpp blocks) survives the mapping; not where it transposes, drops or splits otherwise."""
        inner, _ = self._strip(key)
        if self.stores_transposed(key) or any(_match(p, inner) is not None for p in self.ignored):
            return False
        for fused in self.fused:
            fields = _match(fused.checkpoint, inner)
            if fields is not None:
                try:
                    parts = fused.split(torch.arange(rows).unsqueeze(1), config, fields)
                except (RuntimeError, ValueError, IndexError):
                    return False
                return all(part.dim() == 2 and part.shape[1] == 1 for part in parts)
        return True

    def _fused_part(self, key: str) -> tuple[int, str, int] | None:
        """(rule index, checkpoint key, part index) when `key` is one part of a fused checkpoint tensor."""
        for rule_idx, rule in enumerate(self.fused):
            for part_idx, part in enumerate(rule.parts):
                fields = _match(part, key)
                if fields is not None:
                    return rule_idx, rule.checkpoint.format(**fields), part_idx
        return None

    def _with_prefix(self, name: str, prefixed: bool) -> str:
        return f"{self.prefix}.{name}" if prefixed else name

    def _maybe_transpose(self, key: str, tensor: Tensor) -> Tensor:
        """`tensor` in the layout the checkpoint stores `key` (a checkpoint key) in."""
        if tensor.dim() == 2 and self.stores_transposed(key):
            return tensor.t().contiguous()
        return tensor
