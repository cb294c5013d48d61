"""Tensor-parallel inference in a real 2-rank gloo process group (subprocesses on 127.0.0.1, launch.py)
against the same model in one process and against transformers 4.45.2 (the oracle): fp32 logits within
1e-5, greedy / beam / seeded-sampling tokens identical on every rank and to one process."""
from __future__ import annotations

import pytest
import torch

from formers import AutoModelForCausalLM
from formers.errors import DistributedError

from ..conftest import build_oracle_checkpoint
from . import launch
from .tp_cases import CASES, IDS, MASK, run_cases

SAVED = ("llama-mqa-tied-odd-vocab-biases", "gemma2", "qwen2_moe-shared-expert")  # save_pretrained from 2 ranks
REFUSED = {  # name -> (overrides, what the message names)
    "heads-3": ({"hidden_size": 48, "num_attention_heads": 3, "num_key_value_heads": 3}, "num_attention_heads (3)"),
    "intermediate-97": ({"intermediate_size": 97}, "intermediate size (97)"),
}


def save_one_rank_slices(source, target):
    """A checkpoint as rank 0 of 2 holds it (each tensor sliced by the plan), under the whole model's config:
    what saving one rank's state_dict would write."""
    import shutil

    from safetensors.torch import save_file

    from formers import AutoConfig
    from formers.distributed import RankInfo, shard_model
    from formers.distributed.reader import slice_tensor
    from formers.loading.safetensors import load_mmap

    shutil.copytree(source, target)
    with torch.device("meta"):
        meta = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(source))
    slices = shard_model(meta, "auto", RankInfo(0, 2, "gloo"))
    tensors = {k: slice_tensor(t, slices[k]).contiguous() if k in slices else t
               for k, t in load_mmap(source / "model.safetensors").items()}
    save_file(tensors, target / "model.safetensors", metadata={"format": "pt"})
    return target


@pytest.fixture(scope="module")
def group_run(tmp_path_factory):
    """Build every checkpoint, run them all in one 2-rank group; return (paths, per-rank results)."""
    root = tmp_path_factory.mktemp("tp")
    paths = {name: build_oracle_checkpoint(root / name, kind, base=base, **over)
             for name, (kind, over, base, _) in CASES.items()}
    refused = {name: build_oracle_checkpoint(root / name, "llama", **over) for name, (over, _) in REFUSED.items()}
    refused["one-rank-slices"] = save_one_rank_slices(paths["llama-gqa"], root / "one-rank-slices")
    job = {"kind": "parity", "checkpoints": {n: (str(p), CASES[n][3]) for n, p in paths.items()},
           "refused": {n: str(p) for n, p in refused.items()}, "save": {n: str(root / "saved" / n) for n in SAVED},
           "mismatched": [str(paths["llama-gqa"]), str(paths["qwen2-biases"])]}
    (root / "run").mkdir()
    return paths, launch.run(job, root / "run"), root / "saved"


@pytest.mark.parametrize("name", SAVED)
def test_save_pretrained_from_two_ranks_writes_the_whole_model(group_run, name):
    """Rank 0 writes the gathered model: the same tensors under the same keys as the checkpoint it loaded."""
    from formers.loading.safetensors import load_mmap

    paths, _, saved = group_run
    original, written = load_mmap(paths[name] / "model.safetensors"), load_mmap(saved / name / "model.safetensors")
    assert sorted(written) == sorted(original)
    for key, tensor in original.items():
        assert torch.equal(written[key], tensor), key


@pytest.mark.parametrize("name", list(CASES))
def test_matches_one_process_and_oracle(group_run, name):
    import transformers

    paths, ranks, _ = group_run
    single = run_cases(AutoModelForCausalLM.from_pretrained(paths[name]), CASES[name][3])
    oracle = transformers.AutoModelForCausalLM.from_pretrained(paths[name])
    with torch.no_grad():
        oracle_logits = oracle(input_ids=IDS, attention_mask=MASK, use_cache=False).logits
    for rank, results in enumerate(ranks):
        got = results[name]
        for key in ("logits", "cached_logits", "attentions"):
            delta = (got[key] - single[key]).abs().max().item()
            assert delta <= 1e-5, f"{name} rank {rank} {key}: max |tp - one process| = {delta}"
        delta = (got["logits"] - oracle_logits).abs().max().item()
        assert delta <= 1e-5, f"{name} rank {rank}: max |tp - 4.45.2| = {delta}"
        print(f"{name} rank {rank}: max |tp - one process| {(got['logits'] - single['logits']).abs().max():.2e}, "
              f"max |tp - 4.45.2| {delta:.2e}")
        for key in single:
            if key.endswith("logits") or key == "attentions":
                continue
            assert torch.equal(got[key], single[key]), f"{name} rank {rank} {key}: {got[key]} vs {single[key]}"
    assert torch.equal(ranks[0][name]["logits"], ranks[1][name]["logits"]), "ranks must see identical logits"


@pytest.mark.parametrize("name", list(REFUSED))
def test_world_size_that_does_not_divide_is_refused(group_run, name):
    _, ranks, _ = group_run
    for results in ranks:
        kind, message = results["refused"][name]
        assert kind == "ConfigError" and REFUSED[name][1] in message and "world size (2)" in message, message


def test_checkpoint_of_one_ranks_slices_is_refused(group_run):
    """Sliced again, rank 1 would read past rank 0's rows and get tensors of the right local shape."""
    _, ranks, _ = group_run
    for results in ranks:
        kind, message = results["refused"]["one-rank-slices"]
        assert kind == "CheckpointError" and "saved under another plan" in message, message
        assert "has shape (64, 64)" in message and "expects (128, 64)" in message, message


def test_ranks_that_load_different_models_are_refused(group_run):
    _, ranks, _ = group_run
    for results in ranks:
        kind, message = results["refused"]["mismatched"]
        assert kind == "DistributedError" and "ranks [1] differ from rank 0" in message, message


def test_without_a_process_group(tiny_checkpoint):
    with pytest.raises(DistributedError, match="init_process_group"):
        AutoModelForCausalLM.from_pretrained(tiny_checkpoint("llama"), tp_plan="auto")
