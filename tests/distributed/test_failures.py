"""A rank that dies mid-step makes its peer fail fast with formers' error; plans that cannot split a model
are refused before any weight is read (shard_model on a meta model, for a rank of a pretend world)."""
from __future__ import annotations


import pytest
import torch

from formers import AutoConfig, AutoModelForCausalLM
from formers.distributed import RankInfo, shard_model
from formers.errors import ConfigError

from ..conftest import TINY, build_oracle_checkpoint
from . import launch

GROUP_TIMEOUT = 10  # init_process_group(timeout=...) of the workers


def test_killed_rank_makes_the_other_fail_fast(tmp_path):
    path = build_oracle_checkpoint(tmp_path / "llama", "llama")
    (tmp_path / "run").mkdir()
    returncode, err, elapsed = launch.kill_one_rank({"kind": "kill", "path": str(path), "timeout": GROUP_TIMEOUT},
                                                    tmp_path / "run", GROUP_TIMEOUT)
    assert returncode != 0
    assert "DistributedError" in err and "a peer rank has died" in err and "rank 0 of 2" in err, err[-2000:]
    assert elapsed < GROUP_TIMEOUT + 30


def _meta_model(**overrides):
    config = AutoConfig.for_model("llama", **{**TINY, **overrides})
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


def test_plan_refusals():
    with pytest.raises(ConfigError, match=r"num_key_value_heads \(3\) and the world size \(2\)"):
        shard_model(_meta_model(num_attention_heads=6, num_key_value_heads=3, hidden_size=96), "auto",
                    RankInfo(0, 2, "gloo"))
    with pytest.raises(ConfigError, match=r"num_attention_heads \(4\) is not divisible by the world size \(8\)"):
        shard_model(_meta_model(), "auto", RankInfo(0, 8, "gloo"))
    with pytest.raises(ConfigError, match="tp_plan: expected one of"):
        shard_model(_meta_model(), "colwise", RankInfo(0, 2, "gloo"))


def test_kv_heads_fewer_than_ranks_are_replicated():
    """4 query heads, 2 KV heads, 4 ranks: rank r keeps query head r and KV head r // 2."""
    for rank in range(4):
        model = _meta_model(num_attention_heads=4, num_key_value_heads=2, intermediate_size=96)
        slices = shard_model(model, "auto", RankInfo(rank, 4, "gloo"))
        dim = TINY["hidden_size"] // 4
        attn = model.model.layers[0].self_attn
        assert (attn.num_heads, attn.num_kv_heads) == (1, 1)
        assert slices["model.layers.0.self_attn.q_proj.weight"].rows == ((rank * dim, (rank + 1) * dim),)
        kv = rank // 2
        assert slices["model.layers.0.self_attn.k_proj.weight"].rows == ((kv * dim, (kv + 1) * dim),)
        assert slices["model.layers.0.self_attn.o_proj.weight"].cols == (rank * dim, (rank + 1) * dim)
        assert model.config._tp_local_kv_heads == 1 and "_tp_local_kv_heads" not in model.config.to_dict()
