"""Each rank of a 2-rank tensor-parallel load holds about its half of the weights: the increase of its peak
RSS over its pre-load baseline (load plus one forward pass, which touches every weight) is at most 0.6x
the increase of a one-process load of the same ~210 MB float32 checkpoint."""
from __future__ import annotations

import pytest
import torch

from formers import AutoConfig, AutoModelForCausalLM

from . import launch

SHAPE = dict(vocab_size=8192, hidden_size=1024, intermediate_size=2816, num_hidden_layers=3, num_attention_heads=8,
             num_key_value_heads=4, max_position_embeddings=256, tie_word_embeddings=False)


@pytest.mark.slow  # writes and loads a ~210 MB checkpoint three times
def test_each_rank_holds_about_its_share(tmp_path):
    config = AutoConfig.for_model("llama", **SHAPE)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(tmp_path / "model")
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    del model
    job = {"kind": "rss", "path": str(tmp_path / "model")}
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    (one,) = launch.run({**job, "tp": False}, tmp_path / "one", world_size=1)
    two = launch.run({**job, "tp": True}, tmp_path / "two", world_size=2)
    single = one["peak"] - one["baseline"]
    # every weight but the embedding rows no token looked up (16% here) is paged in by the forward pass
    assert single > 0.75 * size, f"one process grew {single / 2**20:.0f} MiB for {size / 2**20:.0f} MiB of weights"
    for rank, result in enumerate(two):
        grown = result["peak"] - result["baseline"]
        print(f"rank {rank}: +{grown / 2**20:.0f} MiB vs one process +{single / 2**20:.0f} MiB "
              f"({grown / single:.2f}x) for {size / 2**20:.0f} MiB of weights")
        assert grown <= 0.6 * single, f"rank {rank} grew {grown / single:.2f}x the one-process figure"
        assert (result["logits"] - one["logits"]).abs().max().item() <= 1e-5
