"""Tensor-parallel inference over torch.distributed (gloo on CPU, NCCL on GPUs).

    torchrun --nproc-per-node 2 script.py
        from formers.distributed import init_from_env
        init_from_env()                       # or torch.distributed.init_process_group(...)
        model = AutoModelForCausalLM.from_pretrained(path, tp_plan="auto")
        model.generate(...)                   # same tokens on every rank, and as one process

plan.py says how each block is split, reader.py reads a rank's slices, layers.py holds the vocabulary-
parallel layers and the per-block all-reduce hooks, group.py the process-group checks and collectives.
"""
from .group import RankInfo, current_group, init_from_env
from .load import load_tensor_parallel
from .plan import TP_PLANS, Slice, shard_model

__all__ = ["RankInfo", "current_group", "init_from_env", "load_tensor_parallel", "TP_PLANS", "Slice", "shard_model"]
