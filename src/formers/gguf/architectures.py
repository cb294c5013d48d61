"""What each llama.cpp architecture means in transformers' terms: the family (`model_type`), the config
fields its metadata keys hold, and how its tensors are named and laid out.

llama.cpp writes `<arch>.block_count`, `<arch>.attention.head_count`, ... and tensors named
`blk.<i>.attn_q.weight`, ...; `ArchSpec` lists the renames for one architecture (layouts.py computes the config
values a file states only through its tensors; config.py builds the config.json-style dict).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable

import torch

from ..errors import CheckpointError
from . import layouts
from .reader import GGUFFile

# metadata key (after "<arch>.") -> config field, shared by every architecture below
_COMMON_FIELDS = {
    "context_length": "max_position_embeddings", "block_count": "num_hidden_layers",
    "feed_forward_length": "intermediate_size", "embedding_length": "hidden_size",
    "attention.head_count": "num_attention_heads", "attention.head_count_kv": "num_key_value_heads",
    "rope.freq_base": "rope_theta", "vocab_size": "vocab_size",
}
_RMS = {"attention.layer_norm_rms_epsilon": "rms_norm_eps"}
# per-layer tensor names (blk.<i>.<name>) -> names below model.layers.<i>
_LLAMA_LAYER = {
    "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
}
_GEMMA2_LAYER = {**_LLAMA_LAYER, "post_attention_norm": "post_attention_layernorm",
                 "ffn_norm": "pre_feedforward_layernorm", "post_ffw_norm": "post_feedforward_layernorm"}
_PHI3_LAYER = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
               "attn_qkv": "self_attn.qkv_proj", "attn_output": "self_attn.o_proj",
               "ffn_up": "mlp.gate_up_proj", "ffn_down": "mlp.down_proj"}
_ATTENTION_LAYER = {k: v for k, v in _LLAMA_LAYER.items() if not k.startswith("ffn_") or k == "ffn_norm"}
_STARCODER2_LAYER = {**_ATTENTION_LAYER, "ffn_up": "mlp.c_fc", "ffn_down": "mlp.c_proj"}
_GEMMA_FIELDS = {**_COMMON_FIELDS, **_RMS, "attention.key_length": "head_dim"}
# mixture-of-experts layers: llama.cpp stacks the experts of a layer into one [experts, rows, cols] tensor
# (`ffn_gate_exps`, ...); "{}" in the transformers name stands for the expert index
_EXPERTS = {"ffn_gate_inp": "mlp.gate", "ffn_gate_exps": "mlp.experts.{}.gate_proj",
            "ffn_up_exps": "mlp.experts.{}.up_proj", "ffn_down_exps": "mlp.experts.{}.down_proj"}
_QWEN2MOE_LAYER = {**_LLAMA_LAYER, **_EXPERTS,
                   "ffn_gate_shexp": "mlp.shared_expert.gate_proj", "ffn_up_shexp": "mlp.shared_expert.up_proj",
                   "ffn_down_shexp": "mlp.shared_expert.down_proj", "ffn_gate_inp_shexp": "mlp.shared_expert_gate"}
_MIXTRAL_LAYER = {**_ATTENTION_LAYER, "ffn_gate_inp": "block_sparse_moe.gate",
                  "ffn_gate_exps": "block_sparse_moe.experts.{}.w1", "ffn_down_exps": "block_sparse_moe.experts.{}.w2",
                  "ffn_up_exps": "block_sparse_moe.experts.{}.w3"}
_MOE_FIELDS = {"expert_count": "num_experts", "expert_used_count": "num_experts_per_tok",
               "expert_feed_forward_length": "moe_intermediate_size",
               "expert_shared_feed_forward_length": "shared_expert_intermediate_size"}
_GRANITE_SCALES = {"attention.scale": "attention_multiplier", "embedding_scale": "embedding_multiplier",
                   "residual_scale": "residual_multiplier", "logit_scale": "logits_scaling"}
GLOBAL_TENSORS = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
IGNORED_TENSORS = ("rope_freqs.weight",)  # llama.cpp's precomputed llama3 rope factors; rebuilt from the config


@dataclass(frozen=True)
class ArchSpec:
    model_type: str
    fields: dict[str, str]
    layer_tensors: dict[str, str]
    permuted_qk: bool = False  # llama.cpp interleaves Q/K rows for its "normal" rope; undone at load
    norm_offset: float = 0.0  # llama.cpp stores Gemma's norm weights as (1 + w); HF stores w
    extra: dict[str, Any] = field(default_factory=dict)  # fixed config values the file does not state
    derive: Callable[[GGUFFile, dict[str, Any]], None] | None = None  # config values computed from the file
    global_tensors: dict[str, str] = field(default_factory=lambda: dict(GLOBAL_TENSORS))
    layer_prefix: str = "model.layers"
    conv1d: tuple[str, ...] = ()  # layer tensors HF stores [in, out] (GPT-2's Conv1D); llama.cpp stores [out, in]
    row_vectors: tuple[str, ...] = ()  # [1, n] weights llama.cpp squeezes to [n] (Qwen2-MoE's shared expert gate)
    required: tuple[str, ...] = ()  # metadata keys (after "<arch>.") without which the tensors cannot be mapped
    # layer tensor name after "blk.<i>." ("ssm_a", "ssm_conv1d.weight"): llama.cpp's value -> the checkpoint's
    converted: dict[str, Callable[[torch.Tensor], torch.Tensor]] = field(default_factory=dict)
    # (heads, kv heads) of a fused attn_qkv whose rows llama.cpp writes as all queries, then keys, then values, where
    # the checkpoint interleaves them per kv head (Bloom: [q, k, v] per head; Falcon: the group's queries, k, v)
    grouped_qkv: Callable[[dict[str, Any]], tuple[int, int]] | None = None
    # encoder-decoder files (T5): "enc.blk.<i>.x" / "dec.blk.<i>.x" -> "<stack prefix>.<i>.<layer_tensors['enc.x']>"
    stacks: dict[str, str] = field(default_factory=dict)
    # layer tensors llama.cpp cut out of one checkpoint tensor (they share its name in layer_tensors), with their
    # place in it: joined back along the rows (dim -2) once all have been read
    joined: dict[str, int] = field(default_factory=dict)


_GPT2_FIELDS = {"context_length": "n_positions", "embedding_length": "n_embd", "block_count": "n_layer",
                "feed_forward_length": "n_inner", "attention.head_count": "n_head",
                "attention.layer_norm_epsilon": "layer_norm_epsilon", "vocab_size": "vocab_size"}
_GPT2_LAYER = {"attn_norm": "ln_1", "attn_qkv": "attn.c_attn", "attn_output": "attn.c_proj", "ffn_norm": "ln_2",
               "ffn_up": "mlp.c_fc", "ffn_down": "mlp.c_proj"}
_GPT2_GLOBAL = {"token_embd": "transformer.wte", "position_embd": "transformer.wpe", "output_norm": "transformer.ln_f",
                "output": "lm_head"}

_BLOOM_FIELDS = {"embedding_length": "hidden_size", "block_count": "n_layer", "attention.head_count": "n_head",
                 "attention.layer_norm_epsilon": "layer_norm_epsilon", "vocab_size": "vocab_size"}
_BLOOM_LAYER = {"attn_norm": "input_layernorm", "attn_qkv": "self_attention.query_key_value",
                "attn_output": "self_attention.dense", "ffn_norm": "post_attention_layernorm",
                "ffn_up": "mlp.dense_h_to_4h", "ffn_down": "mlp.dense_4h_to_h"}
_BLOOM_GLOBAL = {"token_embd": "transformer.word_embeddings",
                 "token_embd_norm": "transformer.word_embeddings_layernorm", "output_norm": "transformer.ln_f",
                 "output": "lm_head"}
_FALCON_FIELDS = {"context_length": "max_position_embeddings", "embedding_length": "hidden_size",
                  "block_count": "num_hidden_layers", "attention.head_count": "num_attention_heads",
                  "attention.head_count_kv": "num_kv_heads", "attention.layer_norm_epsilon": "layer_norm_epsilon",
                  "rope.freq_base": "rope_theta", "vocab_size": "vocab_size"}
_FALCON_LAYER = {k: v for k, v in _BLOOM_LAYER.items() if k != "ffn_norm"}  # one norm before both branches
_FALCON_GLOBAL = {k: v for k, v in _BLOOM_GLOBAL.items() if k != "token_embd_norm"}
_FALCON_TWO_NORMS_LAYER = {**_FALCON_LAYER, "attn_norm": "ln_attn", "attn_norm_2": "ln_mlp"}


def _t5_layers(gated: bool) -> dict[str, str]:
    """Both T5 stacks' layer tensors, prefixed "enc." / "dec." (the decoder's feed-forward sublayer comes after its
    cross-attention one); the up projection is wi_1 beside a gate (wi_0), else wi."""
    names = {}
    for stack, ff in (("enc", 1), ("dec", 2)):
        layer = {"attn_norm": "layer.0.layer_norm", "attn_rel_b": "layer.0.SelfAttention.relative_attention_bias",
                 **{f"attn_{p}": f"layer.0.SelfAttention.{p}" for p in "qkvo"}, "ffn_norm": f"layer.{ff}.layer_norm",
                 "ffn_gate": f"layer.{ff}.DenseReluDense.wi_0",
                 "ffn_up": f"layer.{ff}.DenseReluDense.{'wi_1' if gated else 'wi'}",
                 "ffn_down": f"layer.{ff}.DenseReluDense.wo"}
        if stack == "dec":
            layer.update({"cross_attn_norm": "layer.1.layer_norm",
                          **{f"cross_attn_{p}": f"layer.1.EncDecAttention.{p}" for p in "qkvo"}})
        names.update({f"{stack}.{kind}": name for kind, name in layer.items()})
    return names


ARCHITECTURES: dict[str, ArchSpec] = {
    "llama": ArchSpec("llama", {**_COMMON_FIELDS, **_RMS, "rope.dimension_count": "head_dim"}, _LLAMA_LAYER,
                      permuted_qk=True),
    "qwen2": ArchSpec("qwen2", {**_COMMON_FIELDS, **_RMS}, _LLAMA_LAYER),
    "qwen2moe": ArchSpec("qwen2_moe", {**_COMMON_FIELDS, **_RMS, **_MOE_FIELDS}, _QWEN2MOE_LAYER,
                         row_vectors=("ffn_gate_inp_shexp",), required=("expert_count", "expert_used_count")),
    "gemma": ArchSpec("gemma", _GEMMA_FIELDS, _LLAMA_LAYER, norm_offset=1.0),
    "gemma2": ArchSpec("gemma2", {**_GEMMA_FIELDS, "attention.sliding_window": "sliding_window",
                                  "attn_logit_softcapping": "attn_logit_softcapping",
                                  "final_logit_softcapping": "final_logit_softcapping"}, _GEMMA2_LAYER, norm_offset=1.0,
                       derive=layouts.gemma2_scalar),
    "stablelm": ArchSpec("stablelm", {**_COMMON_FIELDS, "attention.layer_norm_epsilon": "layer_norm_eps"},
                         _LLAMA_LAYER, derive=layouts.stablelm_rotary),
    "gpt2": ArchSpec("gpt2", _GPT2_FIELDS, _GPT2_LAYER, global_tensors=_GPT2_GLOBAL, layer_prefix="transformer.h",
                     conv1d=("attn_qkv", "attn_output", "ffn_up", "ffn_down")),
    "phi3": ArchSpec("phi3", {**_COMMON_FIELDS, **_RMS, "attention.sliding_window": "sliding_window",
                              "rope.scaling.original_context_length": "original_max_position_embeddings"}, _PHI3_LAYER),
    "starcoder2": ArchSpec("starcoder2", {**_COMMON_FIELDS, "attention.layer_norm_epsilon": "norm_epsilon"},
                           _STARCODER2_LAYER),
    "granite": ArchSpec("granite", {**_COMMON_FIELDS, **_RMS, **_GRANITE_SCALES}, _LLAMA_LAYER, permuted_qk=True),
    # GraniteMoE: llama.cpp splits each layer's input_linear experts [E, 2 I, H] into gate and up halves
    "granitemoe": ArchSpec("granitemoe", {**_COMMON_FIELDS, **_RMS, **_GRANITE_SCALES,
                                          "expert_count": "num_local_experts",
                                          "expert_used_count": "num_experts_per_tok"},
                           {**_ATTENTION_LAYER, "ffn_gate_inp": "block_sparse_moe.router.layer",
                            "ffn_gate_exps": "block_sparse_moe.input_linear",
                            "ffn_up_exps": "block_sparse_moe.input_linear",
                            "ffn_down_exps": "block_sparse_moe.output_linear"},
                           permuted_qk=True, joined={"ffn_gate_exps": 0, "ffn_up_exps": 1},
                           required=("expert_count", "expert_used_count")),
    "olmo": ArchSpec("olmo", {**_COMMON_FIELDS, "attention.clamp_kqv": "clip_qkv"}, _LLAMA_LAYER, permuted_qk=True),
    # llama.cpp's starcoder is GPTBigCode with one shared kv head (the only layout it runs); nn.Linear, not Conv1D
    "starcoder": ArchSpec("gpt_bigcode", _GPT2_FIELDS, _GPT2_LAYER, global_tensors=_GPT2_GLOBAL,
                          layer_prefix="transformer.h",
                          derive=lambda gguf, config: config.update(
                              multi_query=gguf.get("starcoder.attention.head_count_kv", 1) == 1)),
    "gptneox": ArchSpec("gpt_neox", {**{k: v for k, v in _COMMON_FIELDS.items() if k != "attention.head_count_kv"},
                                     "attention.layer_norm_epsilon": "layer_norm_eps",
                                     "use_parallel_residual": "use_parallel_residual"},
                        {**_BLOOM_LAYER, "attn_qkv": "attention.query_key_value", "attn_output": "attention.dense"},
                        global_tensors={"token_embd": "gpt_neox.embed_in", "output_norm": "gpt_neox.final_layer_norm",
                                        "output": "embed_out"}, layer_prefix="gpt_neox.layers",
                        grouped_qkv=lambda config: (config["num_attention_heads"],) * 2,
                        derive=layouts.gpt_neox_layout),
    "olmoe": ArchSpec("olmoe", {**_COMMON_FIELDS, **_RMS, "expert_count": "num_experts",
                                "expert_used_count": "num_experts_per_tok"},
                      {**_ATTENTION_LAYER, **_EXPERTS, "attn_q_norm": "self_attn.q_norm",
                       "attn_k_norm": "self_attn.k_norm"},
                      required=("expert_count", "expert_used_count")),
    "phi2": ArchSpec("phi", {**_COMMON_FIELDS, "attention.layer_norm_epsilon": "layer_norm_eps"},
                     {"attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
                      "attn_v": "self_attn.v_proj", "attn_output": "self_attn.dense", "ffn_up": "mlp.fc1",
                      "ffn_down": "mlp.fc2"},
                     global_tensors={**GLOBAL_TENSORS, "output_norm": "model.final_layernorm"},
                     derive=layouts.partial_rotary),
    "nemotron": ArchSpec("nemotron", {**_COMMON_FIELDS, "attention.layer_norm_epsilon": "norm_eps"},
                         {k: v for k, v in _LLAMA_LAYER.items() if k != "ffn_gate"}, norm_offset=1.0,
                         derive=layouts.nemotron_layout),  # llama.cpp stores LayerNorm1P's weights as 1 + w
    "command-r": ArchSpec("cohere", {**_COMMON_FIELDS, "attention.layer_norm_epsilon": "layer_norm_eps",
                                      "logit_scale": "logit_scale"},
                          {**_LLAMA_LAYER, "attn_q_norm": "self_attn.q_norm", "attn_k_norm": "self_attn.k_norm"},
                          derive=layouts.cohere_qk_norm),
    # llama.cpp stores A = -exp(A_log) and the depthwise conv's [channels, 1, kernel] weight squeezed
    "mamba": ArchSpec("mamba", {"embedding_length": "hidden_size", "block_count": "num_hidden_layers",
                                "ssm.conv_kernel": "conv_kernel", "ssm.state_size": "state_size",
                                "ssm.time_step_rank": "time_step_rank", "vocab_size": "vocab_size",
                                "attention.layer_norm_rms_epsilon": "layer_norm_epsilon"},
                      {"attn_norm": "norm", "ssm_in": "mixer.in_proj", "ssm_conv1d": "mixer.conv1d",
                       "ssm_x": "mixer.x_proj", "ssm_dt": "mixer.dt_proj", "ssm_a": "mixer.A_log", "ssm_d": "mixer.D",
                       "ssm_out": "mixer.out_proj"},
                      global_tensors={"token_embd": "backbone.embeddings", "output_norm": "backbone.norm_f",
                                      "output": "lm_head"}, layer_prefix="backbone.layers", derive=layouts.mamba_layout,
                      converted={"ssm_a": lambda a: torch.log(-a), "ssm_conv1d.weight": lambda w: w.unsqueeze(1)},
                      required=("ssm.inner_size",)),
    # Mamba2 as llama.cpp writes it: A and D as [heads, 1] columns, the gated norm's weight as [groups, width / groups]
    "mamba2": ArchSpec("mamba2", {"embedding_length": "hidden_size", "block_count": "num_hidden_layers",
                                  "ssm.conv_kernel": "conv_kernel", "ssm.state_size": "state_size",
                                  "ssm.group_count": "n_groups", "ssm.time_step_rank": "num_heads",
                                  "vocab_size": "vocab_size", "attention.layer_norm_rms_epsilon": "layer_norm_epsilon"},
                       {"attn_norm": "norm", "ssm_in": "mixer.in_proj", "ssm_conv1d": "mixer.conv1d",
                        "ssm_dt.bias": "mixer.dt_bias", "ssm_a": "mixer.A_log", "ssm_d": "mixer.D",
                        "ssm_norm": "mixer.norm", "ssm_out": "mixer.out_proj"},
                       global_tensors={"token_embd": "backbone.embeddings", "output_norm": "backbone.norm_f",
                                       "output": "lm_head"}, layer_prefix="backbone.layers",
                       derive=layouts.mamba2_layout,
                       converted={"ssm_a": lambda a: torch.log(-a).reshape(-1), "ssm_d": lambda d: d.reshape(-1),
                                  "ssm_conv1d.weight": lambda w: w.unsqueeze(1),
                                  "ssm_norm.weight": lambda w: w.reshape(-1)},
                       required=("ssm.inner_size", "ssm.time_step_rank", "ssm.group_count")),
    # DBRX: llama.cpp stacks the experts' [E * I, H] blocks as [E, I, H] (w2 as [E, H, I]); fused qkv as stored
    "dbrx": ArchSpec("dbrx", {"context_length": "max_seq_len", "embedding_length": "d_model", "block_count": "n_layers",
                              "attention.head_count": "n_heads", "attention.head_count_kv": "kv_n_heads",
                              "attention.clamp_kqv": "clip_qkv", "rope.freq_base": "rope_theta",
                              "feed_forward_length": "ffn_hidden_size", "expert_count": "moe_num_experts",
                              "expert_used_count": "moe_top_k", "vocab_size": "vocab_size"},
                     {"attn_norm": "norm_attn_norm.norm_1", "attn_qkv": "norm_attn_norm.attn.Wqkv",
                      "attn_output": "norm_attn_norm.attn.out_proj", "attn_output_norm": "norm_attn_norm.norm_2",
                      "ffn_gate_inp": "ffn.router.layer", "ffn_gate_exps.weight": "ffn.experts.mlp.w1",
                      "ffn_up_exps.weight": "ffn.experts.mlp.v1", "ffn_down_exps.weight": "ffn.experts.mlp.w2"},
                     global_tensors={"token_embd": "transformer.wte", "output_norm": "transformer.norm_f",
                                     "output": "lm_head"}, layer_prefix="transformer.blocks",
                     derive=layouts.dbrx_sections,
                     converted={"ffn_gate_exps.weight": lambda w: w.reshape(-1, w.shape[-1]),
                                "ffn_up_exps.weight": lambda w: w.reshape(-1, w.shape[-1]),
                                "ffn_down_exps.weight": lambda w: w.transpose(1, 2).reshape(-1, w.shape[1])},
                     required=("feed_forward_length", "expert_count", "expert_used_count")),
    # T5 (v1.0's ReLU feed-forward; T5_GATED below): encoder and decoder blocks under enc.blk / dec.blk
    "t5": ArchSpec("t5", {"embedding_length": "d_model", "feed_forward_length": "d_ff", "block_count": "num_layers",
                          "attention.head_count": "num_heads", "attention.key_length": "d_kv",
                          "attention.layer_norm_epsilon": "layer_norm_epsilon",
                          "attention.relative_buckets_count": "relative_attention_num_buckets",
                          "decoder_start_token_id": "decoder_start_token_id", "vocab_size": "vocab_size"},
                   _t5_layers(gated=False),
                   global_tensors={"token_embd": "shared", "enc.output_norm": "encoder.final_layer_norm",
                                   "dec.output_norm": "decoder.final_layer_norm", "output": "lm_head"},
                   stacks={"enc": "encoder.block", "dec": "decoder.block"}, derive=layouts.t5_layout),
    # Jamba: attention and Mamba layers (Mamba's A and conv stored as for "mamba"), dense and expert feed-forwards
    "jamba": ArchSpec("jamba", {**_COMMON_FIELDS, **_RMS, "ssm.conv_kernel": "mamba_d_conv",
                                "ssm.state_size": "mamba_d_state", "ssm.time_step_rank": "mamba_dt_rank",
                                "expert_count": "num_experts", "expert_used_count": "num_experts_per_tok"},
                      {**_ATTENTION_LAYER, "ffn_norm": "pre_ff_layernorm", "ssm_in": "mamba.in_proj",
                       "ssm_conv1d": "mamba.conv1d", "ssm_x": "mamba.x_proj", "ssm_dt": "mamba.dt_proj",
                       "ssm_dt_norm": "mamba.dt_layernorm", "ssm_b_norm": "mamba.b_layernorm",
                       "ssm_c_norm": "mamba.c_layernorm", "ssm_a": "mamba.A_log", "ssm_d": "mamba.D",
                       "ssm_out": "mamba.out_proj", "ffn_gate_inp": "feed_forward.router",
                       "ffn_gate_exps": "feed_forward.experts.{}.gate_proj",
                       "ffn_up_exps": "feed_forward.experts.{}.up_proj",
                       "ffn_down_exps": "feed_forward.experts.{}.down_proj", "ffn_gate": "feed_forward.gate_proj",
                       "ffn_up": "feed_forward.up_proj", "ffn_down": "feed_forward.down_proj"},
                      global_tensors={**GLOBAL_TENSORS, "output_norm": "model.final_layernorm"},
                      derive=layouts.jamba_layout,
                      converted={"ssm_a": lambda a: torch.log(-a), "ssm_conv1d.weight": lambda w: w.unsqueeze(1)},
                      required=("ssm.inner_size",)),
    "bloom": ArchSpec("bloom", _BLOOM_FIELDS, _BLOOM_LAYER, global_tensors=_BLOOM_GLOBAL, layer_prefix="transformer.h",
                      grouped_qkv=lambda config: (config["n_head"], config["n_head"])),
    "falcon": ArchSpec("falcon", _FALCON_FIELDS, _FALCON_LAYER, derive=layouts.falcon_layout,
                       global_tensors=_FALCON_GLOBAL, layer_prefix="transformer.h",
                       grouped_qkv=layouts.falcon_qkv_groups),
}
# falcon files with attn_norm_2 (Falcon-40B's layout) name their norms otherwise
FALCON_TWO_NORMS = ArchSpec("falcon", _FALCON_FIELDS, _FALCON_TWO_NORMS_LAYER, derive=layouts.falcon_layout,
                            global_tensors=_FALCON_GLOBAL, layer_prefix="transformer.h",
                            grouped_qkv=layouts.falcon_qkv_groups)


# T5 v1.1 / Flan-T5 files: a gated feed-forward (ffn_gate beside ffn_up)
T5_GATED = replace(ARCHITECTURES["t5"], layer_tensors=_t5_layers(gated=True))
# llama.cpp writes Falcon-Mamba as "mamba" with mamba.ssm.dt_b_c_rms (its weightless B / C / dt norms; their eps,
# which the file does not state, stays FalconMambaConfig's)
FALCON_MAMBA = replace(ARCHITECTURES["mamba"], model_type="falcon_mamba")
# llama.cpp writes Mixtral as "llama" with experts (llama.expert_count)
MIXTRAL = ArchSpec("mixtral", {**_COMMON_FIELDS, **_RMS, "expert_count": "num_local_experts",
                               "expert_used_count": "num_experts_per_tok"}, _MIXTRAL_LAYER, permuted_qk=True)


def arch_spec(gguf: GGUFFile) -> tuple[str, ArchSpec]:
    """(architecture as written in the file, its spec); an architecture formers cannot map is an error."""
    arch = gguf.architecture
    if arch == "llama" and gguf.get("llama.expert_count"):
        return arch, MIXTRAL
    if arch == "falcon" and layouts.has_tensor(gguf, "blk.0.attn_norm_2.weight"):
        return arch, FALCON_TWO_NORMS
    if arch == "mamba" and gguf.get("mamba.ssm.dt_b_c_rms"):
        return arch, FALCON_MAMBA
    if arch == "t5" and layouts.has_tensor(gguf, "enc.blk.0.ffn_gate.weight"):
        return arch, T5_GATED
    spec = ARCHITECTURES.get(arch)
    if spec is None:
        raise CheckpointError(f"{gguf.path}: GGUF architecture {arch!r} is not supported; formers loads "
                              f"{', '.join(sorted(ARCHITECTURES))}")
    return arch, spec


def model_type_of(gguf: GGUFFile) -> str:
    """The transformers family: llama.cpp writes Mistral models as "llama"; as transformers 4.45 does, only a
    file whose general.name is exactly "mistral" loads as the Mistral family (others as Llama, which is
    also right for Mistral models without a sliding window)."""
    arch, spec = arch_spec(gguf)
    if arch == "llama" and gguf.get("general.name") == "mistral":
        return "mistral"
    return spec.model_type
