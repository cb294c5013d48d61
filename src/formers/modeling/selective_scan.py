"""Mamba's selective scan in torch: h_t = exp(dt_t * A) * h_{t-1} + dt_t * B_t * x_t, y_t = C_t . h_t.

Shapes: x, dt [B, I, T] (I channels); A [I, N] (N state size, negative); B_, C [B, T, N]; the state
h [B, I, N] is float32. Each channel/state pair is an independent first-order linear recurrence, so a
prompt is scanned in parallel: the sequence is cut into chunks of `chunk` positions; inside a chunk a
log-depth doubling scan (Hillis-Steele over the affine maps h -> a*h + b) gives every position's state
from a zero start together with the cumulative decay since the chunk's start, which carries the state
left by the previous chunk in. No Python loop runs per token, memory is one chunk's [B, I, chunk, N].
Decoding one token is `selective_step`, the recurrence itself.

The per-position terms (exp(A dt), dt B x) are computed as transformers 4.45's slow path computes
them, so only the order of the additions differs from its token-by-token loop.
"""
from __future__ import annotations

import torch

SCAN_CHUNK = 64  # positions per chunk: bounds the scan's memory (cache-resident on CPUs), log2(chunk) steps each


def discretize(x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (decay exp(A dt) [B, I, T, N], input dt * B * x [B, I, T, N]), float32."""
    decay = torch.exp(A[None, :, None, :] * dt[:, :, :, None])
    inputs = (dt[:, :, :, None] * B[:, None, :, :].float()) * x[:, :, :, None].float()
    return decay, inputs


def _doubling_scan(decay: torch.Tensor, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inclusive scan over axis -2 of the maps h -> decay*h + inputs -> (product of decays, state from h=0).
    Without autograd it works in place on its (freshly made) arguments; with it, on new tensors."""
    length, step = decay.shape[-2], 1
    if not (decay.requires_grad or inputs.requires_grad):
        while step < length:
            inputs[..., step:, :].addcmul_(decay[..., step:, :], inputs[..., :-step, :].clone())
            decay[..., step:, :].mul_(decay[..., :-step, :].clone())
            step *= 2
        return decay, inputs
    while step < length:
        inputs = torch.cat([inputs[..., :step, :], inputs[..., step:, :] + decay[..., step:, :] * inputs[..., :-step, :]],
                           dim=-2)
        decay = torch.cat([decay[..., :step, :], decay[..., step:, :] * decay[..., :-step, :]], dim=-2)
        step *= 2
    return decay, inputs


def selective_scan(x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                   state: torch.Tensor | None = None, chunk: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Scan T positions from `state` (None: zeros) -> (y [B, I, T] in x's dtype, final state [B, I, N] float32);
    `chunk` defaults to SCAN_CHUNK (read at call time)."""
    length, chunk = x.shape[-1], chunk or SCAN_CHUNK
    outputs = []
    for start in range(0, length, chunk):
        part = slice(start, start + chunk)
        decay, inputs = discretize(x[:, :, part], dt[:, :, part], A, B[:, part])
        carried, states = _doubling_scan(decay, inputs)                  # [B, I, L, N] each
        if state is not None:
            states = states + carried * state[:, :, None, :].float()
        state = states[:, :, -1]
        outputs.append(torch.einsum("bitn,btn->bit", states.to(x.dtype), C[:, part]))
    return torch.cat(outputs, dim=-1), state


def selective_step(x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                   state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One position (T = 1) through the recurrence -> (y [B, I, 1], new state [B, I, N] float32)."""
    decay, inputs = discretize(x, dt, A, B)
    state = decay[:, :, 0] * state.float() + inputs[:, :, 0]
    return torch.matmul(state.to(x.dtype), C[:, 0, :, None]), state
