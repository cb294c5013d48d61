"""Classifier-free guidance with a negative prompt, run as its own stream through the model."""
from __future__ import annotations

import torch

from ..cache import DynamicCache
from .logits_base import LogitsProcessor


class UnbatchedClassifierFreeGuidanceLogitsProcessor(LogitsProcessor):
    """scores <- log_softmax(uncond) + guidance_scale * (log_softmax(scores) - log_softmax(uncond)).

    The unconditional logits come from running the model on `unconditional_ids` (default: the prompt's
    last token), then on each generated token, with its own cache. Positions follow the cache length,
    as transformers does (the negative prompt's mask only hides its padding).
    """

    def __init__(self, guidance_scale: float, model, unconditional_ids: torch.LongTensor | None = None,
                 unconditional_attention_mask: torch.LongTensor | None = None, use_cache: bool | None = True):
        self.guidance_scale = guidance_scale
        self.model = model
        self.unconditional_context = {
            "input_ids": unconditional_ids, "attention_mask": unconditional_attention_mask,
            "use_cache": use_cache, "past_key_values": None, "first_pass": True,
        }

    def get_unconditional_logits(self, input_ids: torch.LongTensor) -> torch.FloatTensor:
        ctx = self.unconditional_context
        if ctx["first_pass"]:
            if ctx["input_ids"] is None:
                ctx["input_ids"] = input_ids[:, -1:]
            if ctx["attention_mask"] is None:
                ctx["attention_mask"] = torch.ones_like(ctx["input_ids"], dtype=torch.long)
            if ctx["use_cache"]:
                ctx["past_key_values"] = DynamicCache()
            ctx["first_pass"] = False
            ids = ctx["input_ids"]
        else:
            ctx["attention_mask"] = torch.cat(
                [ctx["attention_mask"], torch.ones_like(input_ids[:, -1:], dtype=torch.long)], dim=1)
            last = input_ids[:, -1:]
            ids = last if ctx["use_cache"] else torch.cat([ctx["input_ids"], last], dim=1)
            ctx["input_ids"] = ids
        out = self.model(ids, attention_mask=ctx["attention_mask"], use_cache=bool(ctx["use_cache"]),
                         past_key_values=ctx["past_key_values"], return_dict=True, num_logits_to_keep=1)
        return out.logits

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        scores = torch.log_softmax(scores, dim=-1)
        if self.guidance_scale == 1:
            return scores
        unconditional = torch.log_softmax(self.get_unconditional_logits(input_ids)[:, -1], dim=-1)
        return self.guidance_scale * (scores - unconditional) + unconditional
