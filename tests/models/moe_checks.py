"""Checks the MoE family tests (OLMoE, GraniteMoE, DBRX) share: config defaults, router outputs and the loss
against transformers 4.45.2, and 'this quirk changes the logits' (so the family checks, which pass, would
catch it being ignored)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import transformers

import formers

from .family_checks import load_pair, max_diff, padded_batch


def assert_config_defaults_equal(name: str, theirs: transformers.PretrainedConfig) -> None:
    """formers.<name>() and the oracle's default config write the same config.json fields."""
    ours = getattr(formers, name)().to_diff_dict()
    theirs = theirs.to_diff_dict()
    ours.pop("formers_version", None)
    theirs.pop("transformers_version", None)
    assert ours == theirs


def check_router_outputs(folder: Path, num_moe_layers: int, oracle_attention: str | None = None,
                         tuple_layout: bool = True) -> None:
    """Router logits of every layer, the load-balancing aux loss and the loss (with the aux term) equal
    4.45.2's, with padding masked out of the aux loss and without a mask; the tuple layout too where 4.45.2
    has one (its OLMoE and GraniteMoE base models leave the router logits out of their tuples, so their
    return_dict=False path with router logits crashes)."""
    ours, ref = load_pair(folder, oracle_attention)
    ids, mask = padded_batch(length=10)
    labels = ids.masked_fill(mask == 0, -100)
    for kwargs in ({"attention_mask": mask, "labels": labels}, {}):
        with torch.no_grad():
            a = ours(ids, output_router_logits=True, **kwargs)
            b = ref(ids, output_router_logits=True, **kwargs)
        assert len(a.router_logits) == len(b.router_logits) == num_moe_layers
        assert all(x.shape == y.shape and x.dtype == y.dtype for x, y in zip(a.router_logits, b.router_logits))
        assert max(max_diff(x, y) for x, y in zip(a.router_logits, b.router_logits)) <= 1e-5
        assert abs(a.aux_loss.item() - b.aux_loss.item()) <= 1e-5 and a.aux_loss.item() > 0
        if "labels" in kwargs:
            assert abs(a.loss.item() - b.loss.item()) <= 1e-5
            with torch.no_grad():  # the aux term is in the loss
                assert a.loss.item() != pytest.approx(ours(ids, **kwargs).loss.item(), abs=1e-9)
    with torch.no_grad():
        assert ours(ids, attention_mask=mask).router_logits is None
        a = ours(ids, attention_mask=mask, labels=ids, output_router_logits=True, return_dict=False)
        if not tuple_layout:
            return
        b = ref(ids, attention_mask=mask, labels=ids, output_router_logits=True, return_dict=False)
    assert len(a) == len(b) == 5  # (loss, aux_loss, logits, cache, router_logits)
    assert abs(a[1].item() - b[1].item()) <= 1e-5 and max_diff(a[4][-1], b[4][-1]) <= 1e-5


def assert_changes_logits(folder: Path, changed: formers.PretrainedConfig, oracle_attention: str | None = None,
                          threshold: float = 5e-5) -> None:
    """formers matches the oracle on `folder`, and the same weights under the `changed` config do not (by
    more than `threshold`, 5x the family checks' 1e-5)."""
    ours, ref = load_pair(folder, oracle_attention)
    other = formers.AutoModelForCausalLM.from_pretrained(folder, config=changed)
    ids, mask = padded_batch(length=16)
    with torch.no_grad():
        expected = ref(ids, attention_mask=mask).logits
        assert max_diff(ours(ids, attention_mask=mask).logits, expected, mask) <= 1e-5
        assert max_diff(other(ids, attention_mask=mask).logits, expected, mask) > threshold
