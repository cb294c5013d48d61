"""Session-wide tiny models for the generation parity tests (each built once by the oracle), and helpers
that run the same generate() call through formers and transformers and compare every output."""
from __future__ import annotations

import logging
import warnings

import pytest
import torch
import transformers

import formers

from ..conftest import build_oracle_checkpoint


def _load(folder):
    return (formers.AutoModelForCausalLM.from_pretrained(folder),
            transformers.AutoModelForCausalLM.from_pretrained(folder))


@pytest.fixture(scope="session")
def llama_pair(tmp_path_factory):
    """(formers model, transformers model) of one tiny Llama (vocab 128, 2 layers)."""
    return _load(build_oracle_checkpoint(tmp_path_factory.mktemp("gen_llama"), "llama"))


@pytest.fixture(scope="session")
def draft_pair(tmp_path_factory):
    """A smaller Qwen2 draft with the same vocabulary, for assisted decoding."""
    folder = build_oracle_checkpoint(tmp_path_factory.mktemp("gen_draft"), "qwen2", seed=1, num_hidden_layers=1,
                                     hidden_size=32, intermediate_size=48)
    return _load(folder)


@pytest.fixture(scope="session")
def tied_pair(tmp_path_factory):
    """A 4-layer Llama with tied embeddings (DoLa's layer selection differs)."""
    folder = build_oracle_checkpoint(tmp_path_factory.mktemp("gen_tied"), "llama", num_hidden_layers=4,
                                     tie_word_embeddings=True)
    return _load(folder)


def padded_batch(rows: int = 3, length: int = 12, seed: int = 3):
    """Left-padded prompts [rows, length] (pad 0) and their mask."""
    torch.manual_seed(seed)
    ids = torch.randint(3, 128, (rows, length))
    mask = torch.ones_like(ids)
    if rows > 1:
        mask[1, :3] = 0
    if rows > 2:
        mask[2, :7] = 0
    return ids.masked_fill(mask == 0, 0), mask


def generate_both(pair, ids, seed: int = 0, ours_kwargs=None, ref_kwargs=None, **kwargs):
    """The same call through both libraries, each after seeding its RNG identically."""
    ours, ref = pair
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            formers.set_seed(seed)
            a = ours.generate(ids, **kwargs, **(ours_kwargs or {}))
            transformers.set_seed(seed)
            b = ref.generate(ids, **kwargs, **(ref_kwargs or {}))
        finally:
            logging.disable(logging.NOTSET)
    return a, b


def _close(x, y) -> bool:
    return x.shape == y.shape and torch.allclose(x, y, atol=1e-5, equal_nan=True) and \
        torch.equal(torch.isinf(x), torch.isinf(y))


def assert_same_outputs(a, b) -> None:
    """Identical sequences; scores, logits, beam data, hidden states and attentions within 1e-5."""
    if isinstance(b, torch.Tensor):
        assert torch.equal(a, b), f"\n{a}\n{b}"
        return
    assert type(a).__name__ == type(b).__name__
    assert torch.equal(a.sequences, b.sequences), f"\n{a.sequences}\n{b.sequences}"
    for name in ("sequences_scores", "beam_indices"):
        theirs = getattr(b, name, None)
        if theirs is None:
            assert getattr(a, name, None) is None, name
        else:
            assert _close(getattr(a, name).to(theirs.dtype), theirs), f"{name}\n{getattr(a, name)}\n{theirs}"
    for name in ("scores", "logits"):
        theirs = getattr(b, name)
        if theirs is None:
            assert getattr(a, name) is None, name
            continue
        ours = getattr(a, name)
        assert len(ours) == len(theirs), name
        assert all(_close(x, y) for x, y in zip(ours, theirs)), name
    for name in ("hidden_states", "attentions"):
        theirs = getattr(b, name)
        if theirs is None:
            assert getattr(a, name) is None, name
            continue
        ours = getattr(a, name)
        assert len(ours) == len(theirs), name
        for step_a, step_b in zip(ours, theirs):
            assert len(step_a) == len(step_b) and all(_close(x, y) for x, y in zip(step_a, step_b)), name
