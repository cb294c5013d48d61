"""The config values a GGUF file states only through its tensors or in llama.cpp's own terms: each architecture's
`derive` step (architectures.py), run on the config.json-style dict being built."""
from __future__ import annotations

from typing import Any

from .reader import GGUFFile


def has_tensor(gguf: GGUFFile, name: str) -> bool:
    """Whether the file holds a tensor of this name (the derive steps ask about layer 0's for every layer)."""
    return any(t.name == name for t in gguf.tensors)


def gemma2_scalar(gguf: GGUFFile, config: dict[str, Any]) -> None:
    # llama.cpp scales Gemma2 scores by head_dim ** -0.5, the 27B model's (46 layers) by (hidden / heads) ** -0.5
    config["query_pre_attn_scalar"] = (config["hidden_size"] // config["num_attention_heads"]
                                       if config.get("num_hidden_layers") == 46 else config.get("head_dim", 256))


def partial_rotary(gguf: GGUFFile, config: dict[str, Any]) -> None:
    """partial_rotary_factor from `<arch>.rope.dimension_count`, the rotated dimensions of a head"""
    rotary = gguf.get(f"{gguf.architecture}.rope.dimension_count")
    if rotary is not None:
        config["partial_rotary_factor"] = rotary / (config["hidden_size"] // config["num_attention_heads"])


def stablelm_rotary(gguf: GGUFFile, config: dict[str, Any]) -> None:
    partial_rotary(gguf, config)
    config["use_qkv_bias"] = has_tensor(gguf, "blk.0.attn_q.bias")


def falcon_layout(gguf: GGUFFile, config: dict[str, Any]) -> None:
    # llama.cpp's falcon: the 7B layout (one norm, parallel attention, one shared kv head) or, with attn_norm_2,
    # the 40B "new decoder architecture" (two norms, num_kv_heads groups); no alibi
    kv_heads = config.get("num_kv_heads") or 1
    two_norms = has_tensor(gguf, "blk.0.attn_norm_2.weight")
    config.update(new_decoder_architecture=two_norms, multi_query=not two_norms and kv_heads == 1,
                  parallel_attn=True, alibi=False, num_kv_heads=kv_heads,
                  bias=has_tensor(gguf, "blk.0.attn_qkv.bias"))


def nemotron_layout(gguf: GGUFFile, config: dict[str, Any]) -> None:
    partial_rotary(gguf, config)
    config.update(attention_bias=has_tensor(gguf, "blk.0.attn_q.bias"), mlp_bias=has_tensor(gguf, "blk.0.ffn_up.bias"))


def gpt_neox_layout(gguf: GGUFFile, config: dict[str, Any]) -> None:
    partial_rotary(gguf, config)
    if "partial_rotary_factor" in config:
        config["rotary_pct"] = config.pop("partial_rotary_factor")  # GPT-NeoX's name for it (which 4.45 reads)
    config["attention_bias"] = has_tensor(gguf, "blk.0.attn_qkv.bias")


def mamba_layout(gguf: GGUFFile, config: dict[str, Any]) -> None:
    inner = gguf.get(f"{gguf.architecture}.ssm.inner_size")
    config.update(expand=inner / config["hidden_size"], use_conv_bias=has_tensor(gguf, "blk.0.ssm_conv1d.bias"),
                  use_bias=has_tensor(gguf, "blk.0.ssm_in.bias"))


def mamba2_layout(gguf: GGUFFile, config: dict[str, Any]) -> None:
    # Mamba's, and the head width: llama.cpp writes the head count as ssm.time_step_rank (dt has one value per head)
    mamba_layout(gguf, config)
    config["head_dim"] = gguf.get("mamba2.ssm.inner_size") // config["num_heads"]


def dbrx_sections(gguf: GGUFFile, config: dict[str, Any]) -> None:
    # DBRX's config keeps attention and feed-forward settings in sections of their own
    attention = {"kv_n_heads": config.pop("kv_n_heads", config["n_heads"]), "clip_qkv": config.pop("clip_qkv", None)}
    if "rope_theta" in config:
        attention["rope_theta"] = config.pop("rope_theta")
    config["attn_config"] = attention
    config["ffn_config"] = {name: config.pop(name) for name in ("ffn_hidden_size", "moe_num_experts", "moe_top_k")}


def t5_layout(gguf: GGUFFile, config: dict[str, Any]) -> None:
    # the feed-forward kind from its tensors (T5 v1.1 / Flan-T5: gated GELU; T5 v1.0: ReLU), as many decoder blocks
    # as the file holds
    config["feed_forward_proj"] = "gated-gelu" if has_tensor(gguf, "enc.blk.0.ffn_gate.weight") else "relu"
    config["num_decoder_layers"] = len({t.name.split(".")[2] for t in gguf.tensors if t.name.startswith("dec.blk.")})
    config["is_encoder_decoder"] = True


def jamba_layout(gguf: GGUFFile, config: dict[str, Any]) -> None:
    # which layers attend and which route to experts, from the tensors each layer has (Jamba's config states them as
    # a period and an offset); llama.cpp writes the kv head count per layer (0 for Mamba layers)
    layers = config["num_hidden_layers"]

    def period_and_offset(kind: str) -> tuple[int, int]:
        found = sorted({int(t.name.split(".")[1]) for t in gguf.tensors if t.name.split(".")[2:3] == [kind]})
        if not found:  # none: an offset no layer index reaches
            return layers + 1, layers
        return (found[1] - found[0] if len(found) > 1 else layers), found[0]

    config["attn_layer_period"], config["attn_layer_offset"] = period_and_offset("attn_q")
    config["expert_layer_period"], config["expert_layer_offset"] = period_and_offset("ffn_gate_inp")
    kv_heads = config.get("num_key_value_heads")
    if isinstance(kv_heads, list):
        config["num_key_value_heads"] = max(kv_heads) or config["num_attention_heads"]
    mamba = next((t.name.split(".")[1] for t in gguf.tensors if t.name.endswith("ssm_in.weight")), "0")
    config.update(mamba_expand=gguf.get("jamba.ssm.inner_size") // config["hidden_size"],
                  mamba_conv_bias=has_tensor(gguf, f"blk.{mamba}.ssm_conv1d.bias"),
                  mamba_proj_bias=has_tensor(gguf, f"blk.{mamba}.ssm_in.bias"))


def cohere_qk_norm(gguf: GGUFFile, config: dict[str, Any]) -> None:
    config["use_qk_norm"] = has_tensor(gguf, "blk.0.attn_q_norm.weight")  # Command R+


def falcon_qkv_groups(config: dict[str, Any]) -> tuple[int, int]:
    heads = config["num_attention_heads"]
    if config["new_decoder_architecture"]:
        return heads, config["num_kv_heads"]
    return heads, 1 if config["multi_query"] else heads
