"""DoLa decoding (https://arxiv.org/abs/2309.03883): contrast the final layer's next-token distribution
with an early ("premature") layer's, read through the LM head from the hidden states.

The greedy/sample loop is shared (`decoding.decode`); only the logits change. The premature layer is
picked per step as the candidate with the largest Jensen-Shannon divergence from the final layer,
averaged over the batch (as transformers does), chosen on the device without a host sync.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ...errors import GenerationError
from ..decoding import decode
from .sample import start_batch


def candidate_layers(dola_layers: str | list[int], num_layers: int, tied_embeddings: bool) -> list[int]:
    """The premature layers DoLa may contrast with (hidden-state indices; 0 is the embedding output)."""
    if not tied_embeddings:
        start = 0
    else:  # with tied embeddings the embedding layer's early exit is the identity: skip it
        start = 2 if num_layers > 2 else (1 if num_layers == 2 else 0)
    if dola_layers == "low":
        if start == num_layers // 2:
            return [start]
        return list(range(start, num_layers // 2, 2)) if num_layers <= 40 else list(range(start, 20, 2))
    if dola_layers == "high":
        return (list(range(num_layers // 2, num_layers, 2)) if num_layers <= 40
                else list(range(num_layers - 20, num_layers, 2)))
    if isinstance(dola_layers, list):
        return [i for i in dola_layers if i < num_layers]
    raise GenerationError(f"`dola_layers` must be 'low', 'high' or a list of layer indices, got {dola_layers!r}")


def relative_top_filter(scores: torch.Tensor, baseline: torch.Tensor, relative_top: float = 0.1,
                        filter_value: float = -float("inf"), base_filter_value: float = -1e-3):
    """Log-softmax both; tokens below `relative_top` x the top probability get `filter_value` / `base_filter_value`."""
    scores = scores.log_softmax(dim=-1)
    baseline = baseline.log_softmax(dim=-1)
    threshold = scores.amax(dim=-1, keepdim=True) + math.log(relative_top)
    low = scores < threshold
    return scores.masked_fill(low, filter_value), baseline.masked_fill(low, base_filter_value)


def contrast(premature: torch.Tensor, final: torch.Tensor) -> torch.Tensor:
    """premature [L, B, V] (one per candidate layer), final [B, V] -> contrasted logits [B, V]."""
    if premature.shape[0] == 1:
        base = premature[0]
    else:
        mature_probs = F.softmax(final, dim=-1)
        premature_probs = F.softmax(premature, dim=-1)
        average = 0.5 * (mature_probs[None] + premature_probs)
        kl_mature = F.kl_div(F.log_softmax(final, dim=-1)[None], average, reduction="none").mean(-1)
        kl_premature = F.kl_div(F.log_softmax(premature, dim=-1), average, reduction="none").mean(-1)
        divergence = (0.5 * (kl_mature + kl_premature)).mean(-1)            # [L]
        base = premature.index_select(0, divergence.argmax().view(1))[0]
    final, base = relative_top_filter(final, base)
    return final - base


def run_dola(ctx, prompt, cache):
    model = ctx.model
    layers = candidate_layers(ctx.config.dola_layers, model.config.num_hidden_layers,
                              bool(model.config.tie_word_embeddings))
    lm_head = model.get_output_embeddings()
    if lm_head is None:
        raise GenerationError("DoLa decoding needs a model with output embeddings (an LM head)")

    def dola_logits(out):
        final = out.logits[:, -1, :].float()
        premature = torch.stack([lm_head(out.hidden_states[i][:, -1, :]).to(final) for i in layers])
        return final, contrast(premature, final)

    batch = start_batch(ctx, prompt, cache)  # transformers' DoLa does not expand for num_return_sequences
    sequences = decode(ctx, batch, logits_fn=dola_logits, needs_hidden_states=True)
    return ctx.recorder.decoder_only(sequences, batch.cache)
