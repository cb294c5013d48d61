"""Rotary position embeddings with every `rope_scaling` type of transformers 4.45.

Each type maps the config to (inv_freq [D/2], attention_scaling); cos/sin are computed in float32 and
scaled by attention_scaling, then cast to the activation dtype. "dynamic" recomputes inv_freq when a
position passes the longest seen so far, and resets once sequences are short again.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import nn

from ..errors import ConfigError
from ..kernels.step_ops import rotary_tables as kernel_rotary_tables

RopeParams = tuple[torch.Tensor, float]


def _rotary_dim(config: Any) -> int:
    return int(config.head_dim * partial_rotary_factor(config))


def partial_rotary_factor(config: Any) -> float:
    """Fraction of each head that rotates (Phi/Nemotron-style partial rotary; 1.0 for most families)."""
    return float(vars(config).get("partial_rotary_factor", 1.0))


def _inverse_frequencies(base: float, dim: int, device=None) -> torch.Tensor:
    return 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64, device=device).float() / dim))


def _default(config: Any, device=None, seq_len: int | None = None) -> RopeParams:
    return _inverse_frequencies(config.rope_theta, _rotary_dim(config), device), 1.0


def _linear(config: Any, device=None, seq_len: int | None = None) -> RopeParams:
    inv_freq, scale = _default(config, device)
    return inv_freq / config.rope_scaling["factor"], scale


def _dynamic(config: Any, device=None, seq_len: int | None = None) -> RopeParams:
    dim, max_pos = _rotary_dim(config), config.max_position_embeddings
    factor = config.rope_scaling["factor"]
    seq_len = seq_len if seq_len is not None and seq_len > max_pos else max_pos
    base = config.rope_theta * ((factor * seq_len / max_pos) - (factor - 1)) ** (dim / (dim - 2))
    return _inverse_frequencies(base, dim, device), 1.0


def _yarn(config: Any, device=None, seq_len: int | None = None) -> RopeParams:
    scaling, dim, base = config.rope_scaling, _rotary_dim(config), config.rope_theta
    factor, max_pos = scaling["factor"], config.max_position_embeddings
    attention_factor = scaling.get("attention_factor")
    if attention_factor is None:
        attention_factor = 0.1 * math.log(factor) + 1.0
    beta_fast, beta_slow = scaling.get("beta_fast") or 32, scaling.get("beta_slow") or 1

    def dim_for_rotations(rotations: float) -> float:  # which dimension turns `rotations` times over max_pos
        return (dim * math.log(max_pos / (rotations * 2 * math.pi))) / (2 * math.log(base))

    low = max(math.floor(dim_for_rotations(beta_fast)), 0)
    high = min(math.ceil(dim_for_rotations(beta_slow)), dim - 1)
    if low == high:
        high += 0.001
    ramp = ((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1).to(device)
    pos_freqs = base ** (torch.arange(0, dim, 2).float().to(device) / dim)
    extrapolation_weight = 1 - ramp
    inv_freq = (1.0 / (factor * pos_freqs)) * (1 - extrapolation_weight) + (1.0 / pos_freqs) * extrapolation_weight
    return inv_freq, attention_factor


def _longrope(config: Any, device=None, seq_len: int | None = None) -> RopeParams:
    """Per-dimension factors: the long ones when the context is extended past the original length (4.45's
    shared rule, `seq_len` None), or, given the current length `seq_len`, when it exceeds it (Phi3's rule)."""
    scaling, dim = config.rope_scaling, _rotary_dim(config)
    attention_factor = scaling.get("attention_factor")
    original = vars(config).get("original_max_position_embeddings")
    if original is not None:
        max_pos, expanded = original, config.max_position_embeddings
        factor = expanded / max_pos
    else:
        max_pos, factor = config.max_position_embeddings, scaling.get("factor")
        expanded = max_pos * factor
    if attention_factor is None:
        attention_factor = 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(max_pos))
    use_long = expanded > max_pos if seq_len is None else seq_len > max_pos
    ext = scaling["long_factor"] if use_long else scaling["short_factor"]
    ext_factors = torch.tensor(ext, dtype=torch.float32, device=device)
    exponent = torch.arange(0, dim, 2, dtype=torch.int64, device=device).float() / dim
    return 1.0 / (ext_factors * config.rope_theta ** exponent), attention_factor


def _llama3(config: Any, device=None, seq_len: int | None = None) -> RopeParams:
    inv_freq, scale = _default(config, device)
    scaling = config.rope_scaling
    factor, low_ff, high_ff = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
    old_context = scaling["original_max_position_embeddings"]
    low_freq_wavelen, high_freq_wavelen = old_context / low_ff, old_context / high_ff
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth = (old_context / wavelen - low_ff) / (high_ff - low_ff)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= high_freq_wavelen) & (wavelen <= low_freq_wavelen)
    return torch.where(medium, smoothed, scaled), scale


ROPE_INIT_FUNCTIONS: dict[str, Callable[..., RopeParams]] = {
    "default": _default, "linear": _linear, "dynamic": _dynamic,
    "yarn": _yarn, "longrope": _longrope, "llama3": _llama3,
}
# rope_type -> (required keys, optional keys) of config.rope_scaling
_ROPE_KEYS: dict[str, tuple[set[str], set[str]]] = {
    "default": (set(), set()),
    "linear": ({"factor"}, set()),
    "dynamic": ({"factor"}, {"original_max_position_embeddings"}),
    "yarn": ({"factor"}, {"attention_factor", "beta_fast", "beta_slow"}),
    "longrope": ({"short_factor", "long_factor"}, {"attention_factor", "factor", "original_max_position_embeddings"}),
    "llama3": ({"factor", "original_max_position_embeddings", "low_freq_factor", "high_freq_factor"}, set()),
}


def rope_type_of(config: Any) -> str:
    scaling = getattr(config, "rope_scaling", None)
    return "default" if scaling is None else scaling.get("rope_type", scaling.get("type"))


def standardize_rope_scaling(config: Any) -> None:
    """As 4.45's configs do: copy an older checkpoint's `rope_scaling["type"]` to "rope_type", then validate."""
    scaling = getattr(config, "rope_scaling", None)
    if scaling is not None and "type" in scaling:
        scaling["rope_type"] = scaling["type"]
    validate_rope_scaling(config)


def validate_rope_scaling(config: Any) -> None:
    """Raise ConfigError naming the missing `rope_scaling` key or the unknown rope_type."""
    scaling = config.rope_scaling
    if scaling is None:
        return
    rope_type = rope_type_of(config)
    if rope_type not in _ROPE_KEYS:
        raise ConfigError(f"config field 'rope_scaling': unknown rope_type {rope_type!r}; "
                          f"expected one of {sorted(_ROPE_KEYS)}")
    required, _ = _ROPE_KEYS[rope_type]
    missing = required - set(scaling)
    if missing:
        raise ConfigError(f"config field 'rope_scaling' (rope_type {rope_type!r}) is missing keys {sorted(missing)}")
    if rope_type == "longrope":
        half = _rotary_dim(config) // 2
        for key in ("short_factor", "long_factor"):
            if len(scaling[key]) != half:
                raise ConfigError(f"config field 'rope_scaling.{key}': expected a list of {half} numbers, "
                                  f"got {len(scaling[key])}")


class RotaryEmbedding(nn.Module):
    """position_ids [B, T] -> (cos, sin) [B, T, Drot] in the dtype of `like`."""

    def __init__(self, config: Any, device=None, interleaved: bool = False):
        super().__init__()
        self.config = config
        self.interleaved = interleaved
        self.rope_type = rope_type_of(config)
        self.init_fn = ROPE_INIT_FUNCTIONS[self.rope_type]
        device = device or torch.device("cpu")
        with torch.device(device):  # real tables even when the model is being built on `meta`
            inv_freq, self.attention_scaling = self.init_fn(config, device)
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.original_inv_freq = inv_freq
        self.max_seq_len_cached = self.original_max_seq_len = config.max_position_embeddings

    def _dynamic_update(self, position_ids: torch.Tensor) -> None:
        seq_len = int(position_ids.max()) + 1  # one host sync; only the "dynamic" type needs it
        if seq_len > self.max_seq_len_cached:
            inv_freq, self.attention_scaling = self.init_fn(self.config, position_ids.device, seq_len=seq_len)
            self.inv_freq = inv_freq
            self.max_seq_len_cached = seq_len
        if seq_len < self.original_max_seq_len < self.max_seq_len_cached:
            self.inv_freq = self.original_inv_freq.to(position_ids.device)
            self.max_seq_len_cached = self.original_max_seq_len

    @torch.no_grad()
    def forward(self, like: torch.Tensor, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.rope_type == "dynamic":
            self._dynamic_update(position_ids)
        return rotary_tables(like, position_ids, self.inv_freq, self.attention_scaling, self.interleaved)


def rotary_tables(like: torch.Tensor, position_ids: torch.Tensor, inv_freq: torch.Tensor, attention_scaling: float,
                  interleaved: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """position_ids [B, T], inv_freq [Drot/2] -> (cos, sin) [B, T, Drot] in float32, scaled, cast to like's dtype."""
    native = kernel_rotary_tables(like, position_ids, inv_freq, attention_scaling, interleaved)  # decoding on CPU
    if native is not None:
        return native
    with torch.autocast(device_type=like.device.type if like.device.type != "mps" else "cpu", enabled=False):
        freqs = position_ids[:, :, None].float() * inv_freq.float()[None, None, :]  # [B, T, Drot/2]
        # halves layout [f0..fn, f0..fn] pairs dim i with i + Drot/2; interleaved [f0, f0, f1, f1, ...]
        # pairs neighbours (GPT-J, Cohere)
        angles = freqs.repeat_interleave(2, dim=-1) if interleaved else torch.cat((freqs, freqs), dim=-1)
        cos, sin = angles.cos(), angles.sin()
    if attention_scaling != 1.0:
        cos, sin = cos * attention_scaling, sin * attention_scaling
    return cos.to(like.dtype), sin.to(like.dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


def rotate_pairs(x: torch.Tensor) -> torch.Tensor:
    """(x0, x1, x2, x3, ...) -> (-x1, x0, -x3, x2, ...): the interleaved counterpart of rotate_half."""
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack((-odd, even), dim=-1).flatten(-2)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, interleaved: bool = False) -> torch.Tensor:
    """x [B, H, T, D]; cos/sin [B, T, Drot]. Rotates the first Drot dims (all of them unless partial)."""
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    rotate = rotate_pairs if interleaved else rotate_half
    rot_dim = cos.shape[-1]
    if rot_dim == x.shape[-1]:
        return x * cos + rotate(x) * sin
    rotated, passed = x[..., :rot_dim], x[..., rot_dim:]
    return torch.cat((rotated * cos + rotate(rotated) * sin, passed), dim=-1)
