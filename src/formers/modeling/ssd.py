"""Mamba-2's state-space duality (SSD) kernels in plain torch: a chunked parallel scan for prompts and the
one-step recurrence for decoding. Both compute, per head h (of group g = h // (H / G)),

    state_t = exp(dt_t * A_h) * state_{t-1} + dt_t * x_t B_t^T        state [P, N]
    y_t     = state_t C_t                                              (the D skip is the caller's)

Shape legend: b batch, T time, H heads = G groups x R heads per group, P head dim, N state size,
c chunks of Q steps. Inputs are float32 (the scan's precision).

The chunked form (Dao & Gu 2024, "Transformers are SSMs", section 6) splits time into chunks: inside a
chunk the output is a masked, decay-weighted attention-like product (C B^T * L) x; across chunks only
each chunk's final state travels, through a short recurrence over c states. No Python loop over time.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def segment_decays(a: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """a [..., Q] -> [..., Q, Q] with out[i, j] = weights[i, j] * exp(a[j+1] + ... + a[i]) for i >= j and 0 above
    the diagonal (`weights` broadcastable to the output, None: ones).

    The sums run directly over the masked window rather than as a difference of two running sums, which would
    cancel catastrophically once the running sums grow large. At a 256-step chunk the output is the scan's
    largest tensor (heads x T x Q), so it is built in one allocation and updated in place: every extra pass or
    fresh allocation of that size costs as much as the scan's matmuls on a CPU."""
    length = a.shape[-1]
    strictly_lower = torch.ones(length, length, dtype=torch.bool, device=a.device).tril(-1)
    # [k, j] = a[k] for k > j; `a` made contiguous first, else the output copies its strides and the cumsum
    # below walks memory out of order (3x slower)
    decays = torch.where(strictly_lower, a.contiguous()[..., :, None], 0.0)
    decays = decays.cumsum_(dim=-2).exp_()  # exp(window sums) below the diagonal; 1 on and above it
    above = ~torch.ones_like(strictly_lower).tril(0)
    if decays.requires_grad:  # exp_'s result is saved for backward: no more in-place updates
        return decays.masked_fill(above, 0.0) if weights is None else decays * weights.masked_fill(above, 0.0)
    return decays.masked_fill_(above, 0.0) if weights is None else decays.mul_(weights.masked_fill(above, 0.0))


def ssd_chunked(x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                chunk_size: int, initial_state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """x [b, T, H, P], dt [b, T, H], A [H], B and C [b, T, G, N], initial_state [b, H, P, N] or None (zeros)
    -> (y [b, T, H, P], final state [b, H, P, N])."""
    batch, length, heads, head_dim = x.shape
    groups, state_size = B.shape[2], B.shape[3]
    per_group = heads // groups
    pad = (-length) % chunk_size  # padded steps have dt = 0: no decay, no input, the final state is kept

    def chunked(t: torch.Tensor) -> torch.Tensor:  # [b, T, ...] -> [b, c, Q, ...]
        t = F.pad(t, (0, 0) * (t.dim() - 2) + (0, pad))
        return t.reshape(batch, -1, chunk_size, *t.shape[2:])

    x = chunked((x * dt[..., None]).reshape(batch, length, groups, per_group, head_dim))  # [b, c, Q, G, R, P]
    a = chunked((dt * A).reshape(batch, length, groups, per_group)).permute(0, 1, 3, 4, 2)  # [b, c, G, R, Q]
    B, C = chunked(B), chunked(C)  # [b, c, Q, G, N]
    a_cum = a.cumsum(dim=-1)

    # 1. within each chunk: y_l = sum_{s <= l} (C_l . B_s) exp(a_{s+1} + ... + a_l) x_s dt_s
    scores = segment_decays(a, torch.einsum("bclgn,bcsgn->bcgls", C, B)[:, :, :, None])
    y = torch.einsum("bcgrls,bcsgrp->bclgrp", scores, x)

    # 2. each chunk's own final state (from its inputs only), then 3. carried across chunks
    decay_to_end = torch.exp(a_cum[..., -1:] - a_cum).permute(0, 1, 4, 2, 3)[..., None]  # [b, c, Q, G, R, 1]
    states = torch.einsum("bcsgn,bcsgrp->bcgrpn", B, x * decay_to_end)
    if initial_state is None:
        initial_state = states.new_zeros(batch, heads, head_dim, state_size)
    states = torch.cat([initial_state.reshape(batch, 1, groups, per_group, head_dim, state_size), states], dim=1)
    chunk_totals = F.pad(a_cum[..., -1], (0, 0, 0, 0, 1, 0)).permute(0, 2, 3, 1)  # [b, G, R, c + 1]
    carried = torch.einsum("bgrzc,bcgrpn->bzgrpn", segment_decays(chunk_totals), states)
    entering, final = carried[:, :-1], carried[:, -1]

    # 4. what the state entering each chunk contributes: y_l += exp(a_1 + ... + a_l) C_l . state
    decay_from_start = torch.exp(a_cum).permute(0, 1, 4, 2, 3)[..., None]  # [b, c, Q, G, R, 1]
    y = y + torch.einsum("bclgn,bcgrpn->bclgrp", C, entering) * decay_from_start
    y = y.reshape(batch, -1, heads, head_dim)[:, :length]
    return y, final.reshape(batch, heads, head_dim, state_size)


def ssd_step(state: torch.Tensor, x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
             C: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One time step: state [b, H, P, N] (float32; updated IN PLACE when contiguous; returned), x [b, H, P],
    dt [b, H], A [H], B and C [b, G, N] -> (y [b, H, P], state).

    Decoding is bound by memory traffic and the state is as large as a small weight per layer, so it is
    decayed and fed in place (two passes over it) and read once more for y, with no temporaries of its size."""
    batch, heads, head_dim, state_size = state.shape
    state = state.contiguous()
    groups = B.shape[1]
    per_group = heads // groups
    grouped = state.view(batch, groups, per_group, head_dim, state_size)
    dt = dt.reshape(batch, groups, per_group)
    grouped.mul_(torch.exp(dt * A.reshape(groups, per_group))[..., None, None])
    grouped.addcmul_(x.reshape(batch, groups, per_group, head_dim, 1), (dt[..., None] * B[:, :, None, :])[:, :, :, None, :])
    y = torch.einsum("bgrpn,bgn->bgrp", grouped, C)
    return y.reshape(batch, heads, head_dim), state
