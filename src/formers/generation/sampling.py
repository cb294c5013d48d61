"""Where sampling strategies get their randomness.

By default every draw goes through torch's RNG with the calls transformers 4.45 makes
(`torch.multinomial`, `torch.rand_like`), so `set_seed(s)` gives its tokens exactly. Beyond 4.45,
`generate(generator=...)` takes a `torch.Generator` (used for those same calls) or one seed per row
(ints, or Generators each drawn once for a seed). Per-row seeds make a row's draws a function of its
seed and step only: the uniform numbers come from a counter-based hash on the device, categorical
draws use the Gumbel-max (top-k) trick, so a row's output never depends on its neighbours.
"""
from __future__ import annotations

from typing import Sequence, Union

import torch

from ..errors import GenerationError

GeneratorArg = Union[None, torch.Generator, Sequence[Union[int, torch.Generator]], torch.Tensor]

_M31 = (1 << 31) - 1


def _mix(x: torch.Tensor) -> torch.Tensor:
    """A 31-bit integer hash on int64 tensors (products stay below 2**62: no overflow)."""
    x = x & _M31
    x = ((x ^ (x >> 16)) * 0x45D9F3B) & _M31
    x = ((x ^ (x >> 15)) * 0x2C1B3C6D) & _M31
    x = ((x ^ (x >> 13)) * 0x297A2D39) & _M31
    return x ^ (x >> 16)


class TokenSampler:
    """Draws for one generate() call; `rows` is the number of sequences decoded together."""

    def __init__(self, generator: GeneratorArg = None, rows: int = 1, device: torch.device | str = "cpu"):
        self.generator: torch.Generator | None = None
        self.seeds: torch.Tensor | None = None
        self._counter = 0
        if generator is None:
            return
        if isinstance(generator, torch.Generator):
            self.generator = generator
            return
        seeds = generator.tolist() if isinstance(generator, torch.Tensor) else list(generator)
        seeds = [int(torch.randint(0, 2**31 - 1, (1,), generator=g)) if isinstance(g, torch.Generator) else g
                 for g in seeds]
        if not all(isinstance(s, int) for s in seeds):
            raise GenerationError("generate(generator=...) takes a torch.Generator or a list of int seeds / "
                                  f"torch.Generators, one per row; got {generator!r}")
        if len(seeds) != rows:
            raise GenerationError(f"generate(generator=[...]) needs one seed per input row ({rows}), got {len(seeds)}")
        self.seeds = torch.tensor(seeds, dtype=torch.long, device=device) & _M31

    @property
    def per_row(self) -> bool:
        return self.seeds is not None

    def repeat_rows(self, times: int) -> None:
        """Rows were repeated (return sequences, beams): give each copy its own stream."""
        if self.seeds is not None and times > 1:
            copies = torch.arange(times, device=self.seeds.device).repeat(self.seeds.shape[0])
            self.seeds = _mix(self.seeds.repeat_interleave(times) * 0x9E3779B + copies)

    def select_rows(self, index: torch.Tensor) -> None:
        """Rows left the batch (assisted decoding): keep the seeds of `index`."""
        if self.seeds is not None:
            self.seeds = self.seeds[index.to(self.seeds.device)]

    def _keys(self, rows: int, device, index: torch.Tensor | None, stream: int) -> torch.Tensor:
        """One key per draw: hash(seed, stream, index). `index` [rows] or [rows, k] says which token of
        its row a draw is for (default: the call count, for strategies where rows move in lockstep);
        rows may be a multiple of the seeds (k draws per row, row-major)."""
        seeds = self.seeds.to(device)
        if rows != seeds.shape[0]:
            if rows % seeds.shape[0]:
                raise GenerationError(f"per-row seeds: {seeds.shape[0]} seeds for {rows} sampled rows")
            seeds = seeds.repeat_interleave(rows // seeds.shape[0])
        if index is None:
            self._counter += 1
            index = torch.full((rows,), self._counter, dtype=torch.long, device=device)
        base = _mix(_mix(seeds * 0x3C6EF37 + stream) + 0x61C88647)       # [rows]
        index = index.to(device)
        return _mix(base.view((rows,) + (1,) * (index.dim() - 1)) + index)

    @staticmethod
    def _uniform(keys: torch.Tensor, width: int) -> torch.Tensor:
        """float64 [*keys.shape, width] in (0, 1) from 31-bit keys."""
        cols = torch.arange(width, device=keys.device)
        hi = _mix(keys[..., None] ^ _mix(cols + 0x1B873593))
        lo = _mix(hi ^ 0x5BD1E995) >> 9
        return (hi.double() * 4194304.0 + lo.double() + 0.5) / 9007199254740992.0

    def multinomial(self, probs: torch.Tensor, num_samples: int = 1, index: torch.Tensor | None = None,
                    stream: int = 0) -> torch.Tensor:
        """Like torch.multinomial(probs, num_samples) without replacement: [N, num_samples] indices.
        `index` / `stream` key per-row draws (see `_keys`); torch's RNG ignores them."""
        if self.seeds is None:
            return torch.multinomial(probs, num_samples=num_samples, generator=self.generator)
        keys = self._keys(probs.shape[0], probs.device, index, stream)
        gumbel = -torch.log(-torch.log(self._uniform(keys, probs.shape[1])))
        return torch.topk(torch.log(probs.double()) + gumbel, num_samples, dim=-1).indices

    def rand_like(self, values: torch.Tensor, index: torch.Tensor | None = None, stream: int = 0) -> torch.Tensor:
        """Uniform [0, 1) numbers shaped like `values` [N, k]; per row, `index` [N, k] keys each number."""
        if self.seeds is None:
            return torch.rand(values.shape, dtype=values.dtype, device=values.device, generator=self.generator)
        if index is None:
            keys = self._keys(values.shape[0], values.device, None, stream)
            return self._uniform(keys, values[0].numel()).to(values.dtype).reshape(values.shape)
        keys = self._keys(values.shape[0], values.device, index, stream)
        return self._uniform(keys, 1)[..., 0].to(values.dtype)
