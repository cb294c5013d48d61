"""Test-side stand-in for llama.cpp's convert_hf_to_gguf.py: writes a Hugging Face folder (config.json,
model.safetensors, tokenizer.model or vocab.json + merges.txt) as a GGUF file with the `gguf` package's
GGUFWriter. Its name table and Q/K permutation are written here from llama.cpp's conventions, separately
from formers' loader, so a wrong mapping on either side shows up as a logits mismatch.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import gguf
import numpy as np
import torch
from safetensors.torch import load_file

LAYER = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm", "self_attn.q_proj": "attn_q",
         "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
         "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
         # mixture of experts (Qwen2-MoE, Mixtral): experts stacked by stack_experts() before naming
         "mlp.gate": "ffn_gate_inp", "mlp.experts.gate_proj": "ffn_gate_exps", "mlp.experts.up_proj": "ffn_up_exps",
         "mlp.experts.down_proj": "ffn_down_exps", "mlp.shared_expert.gate_proj": "ffn_gate_shexp",
         "mlp.shared_expert.up_proj": "ffn_up_shexp", "mlp.shared_expert.down_proj": "ffn_down_shexp",
         "mlp.shared_expert_gate": "ffn_gate_inp_shexp", "block_sparse_moe.gate": "ffn_gate_inp",
         "block_sparse_moe.experts.w1": "ffn_gate_exps", "block_sparse_moe.experts.w2": "ffn_down_exps",
         "block_sparse_moe.experts.w3": "ffn_up_exps"}
LAYERS = {"gemma2": {**LAYER, "post_attention_layernorm": "post_attention_norm",
                    "pre_feedforward_layernorm": "ffn_norm", "post_feedforward_layernorm": "post_ffw_norm"},
          "phi3": {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
                   "self_attn.qkv_proj": "attn_qkv", "self_attn.o_proj": "attn_output",
                   "mlp.gate_up_proj": "ffn_up", "mlp.down_proj": "ffn_down"},
          "starcoder2": {**LAYER, "mlp.c_fc": "ffn_up", "mlp.c_proj": "ffn_down"},
          "gpt2": {"ln_1": "attn_norm", "attn.c_attn": "attn_qkv", "attn.c_proj": "attn_output", "ln_2": "ffn_norm",
                   "mlp.c_fc": "ffn_up", "mlp.c_proj": "ffn_down"}}
LAYERS["phi2"] = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
                  "self_attn.v_proj": "attn_v", "self_attn.dense": "attn_output", "mlp.fc1": "ffn_up",
                  "mlp.fc2": "ffn_down"}
LAYERS["starcoder"] = LAYERS["gpt2"]
LAYERS["olmoe"] = {**LAYER, "self_attn.q_norm": "attn_q_norm", "self_attn.k_norm": "attn_k_norm"}
LAYERS["granitemoe"] = {**LAYER, "block_sparse_moe.router.layer": "ffn_gate_inp",
                        "block_sparse_moe.output_linear": "ffn_down_exps"}  # (input_linear: split in convert())
LAYERS["command-r"] = {**LAYER, "self_attn.q_norm": "attn_q_norm", "self_attn.k_norm": "attn_k_norm"}
LAYERS["bloom"] = {"input_layernorm": "attn_norm", "self_attention.query_key_value": "attn_qkv",
                   "self_attention.dense": "attn_output", "post_attention_layernorm": "ffn_norm",
                   "mlp.dense_h_to_4h": "ffn_up", "mlp.dense_4h_to_h": "ffn_down"}
LAYERS["falcon"] = {**LAYERS["bloom"], "ln_attn": "attn_norm", "ln_mlp": "attn_norm_2"}
LAYERS["gptneox"] = {**LAYERS["bloom"], "attention.query_key_value": "attn_qkv", "attention.dense": "attn_output"}
GPT2_TOP = {"transformer.wte": "token_embd", "transformer.wpe": "position_embd", "transformer.ln_f": "output_norm",
            "lm_head": "output"}
BLOOM_TOP = {"transformer.word_embeddings": "token_embd", "transformer.word_embeddings_layernorm": "token_embd_norm",
             "transformer.ln_f": "output_norm", "lm_head": "output"}
# llama.cpp reorders these architectures' Q/K rows for its rope
ROPE_PERMUTED = ("llama", "granite", "granitemoe", "olmo")
GPT2_CONV1D = ("attn_qkv", "attn_output", "ffn_up", "ffn_down")
TOP = {"model.embed_tokens": "token_embd", "model.norm": "output_norm", "lm_head": "output"}
K_QUANTS = ("Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K")
# byte offsets of the fp16 scales inside a block (random bytes there could be inf/nan)
FP16_FIELDS = {"Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0], "Q2_K": [80, 82],
               "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208],
               **{name: [0] for name in ("IQ1_S", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S", "IQ4_NL",
                                         "IQ4_XS")}, "IQ1_M": []}
RANDOM_BLOCK_TYPES = K_QUANTS + tuple(name for name in FP16_FIELDS if name.startswith("IQ"))  # no package quantizer


def gguf_name(key: str, arch: str = "llama") -> str:
    stem, _, leaf = key.rpartition(".")
    if stem.endswith("block_sparse_moe.input_linear"):  # (GraniteMoE's: split in two by convert())
        return f"blk.{stem.split('.')[2]}.input_linear.{leaf}"
    top = GPT2_TOP if arch in ("gpt2", "starcoder") else BLOOM_TOP if arch in ("bloom", "falcon") else \
        {**TOP, "model.final_layernorm": "output_norm"} if arch == "phi2" else \
        {"gpt_neox.embed_in": "token_embd", "gpt_neox.final_layer_norm": "output_norm", "embed_out": "output"} \
        if arch == "gptneox" else TOP
    if stem in top:
        return f"{top[stem]}.{leaf}"
    _, _, index, rest = stem.split(".", 3)  # model.layers.<i>.<rest> or transformer.h.<i>.<rest>
    return f"blk.{index}.{LAYERS.get(arch, LAYER)[rest]}.{leaf}"


def stack_experts(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`...experts.<j>.<proj>.weight` for every j -> one `...experts.<proj>.weight` [experts, rows, cols]
    (llama.cpp's layout of a mixture-of-experts layer)."""
    out, groups = {}, {}
    for key, tensor in tensors.items():
        match = re.fullmatch(r"(.*\.experts)\.(\d+)\.(\w+)\.weight", key)
        if match is None:
            out[key] = tensor
        else:
            groups.setdefault(f"{match[1]}.{match[3]}.weight", {})[int(match[2])] = tensor
    for key, experts in groups.items():
        out[key] = torch.stack([experts[j] for j in sorted(experts)])
    return out


def group_qkv(w: np.ndarray, heads: int, kv_heads: int) -> np.ndarray:
    """llama.cpp's row order of Bloom's / Falcon's fused qkv: the checkpoint's per-kv-head [queries, k, v] blocks
    regrouped as all queries, all keys, all values."""
    per_kv = w.reshape(kv_heads, heads // kv_heads + 2, -1, *w.shape[1:])
    q, k, v = per_kv[:, :-2], per_kv[:, -2], per_kv[:, -1]
    return np.concatenate([q.reshape(-1, *w.shape[1:]), k.reshape(-1, *w.shape[1:]), v.reshape(-1, *w.shape[1:])])


def permute(w: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's Q/K row order for its rope: per head, the two halves interleaved."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def random_blocks(rows: int, cols: int, qtype: str, rng: np.random.Generator) -> np.ndarray:
    """Random ggml blocks (uint8 [rows, bytes per row]) whose fp16 scales are small finite numbers."""
    block, size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[qtype]]
    raw = rng.integers(0, 256, (rows * cols // block, size), dtype=np.uint8)
    for offset in FP16_FIELDS[qtype]:
        scales = (rng.standard_normal(raw.shape[0]) * 0.02).astype(np.float16)
        raw[:, offset:offset + 2] = scales.view(np.uint8).reshape(-1, 2)
    if qtype == "IQ1_M":  # its fp16 scale is the top nibbles of the four uint16 sub-block scales at byte 48
        bits = (rng.standard_normal(raw.shape[0]) * 0.02).astype(np.float16).view(np.uint16).astype(np.uint16)
        scales = raw[:, 48:56].copy().view(np.uint16)
        for i in range(4):
            scales[:, i] = (scales[:, i] & 0x0FFF) | (((bits >> (4 * i)) & 0xF) << 12)
        raw[:, 48:56] = scales.view(np.uint8)
    return raw.reshape(rows, -1)


def encode(array: np.ndarray, qtype: str, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """(data, type) for one tensor: 2-D weights whose rows fit whole blocks get `qtype`; others stay F32."""
    kind = gguf.GGMLQuantizationType[qtype]
    block, _ = gguf.GGML_QUANT_SIZES[kind]
    if array.ndim != 2 or array.shape[1] % block or qtype == "F32":
        return array.astype(np.float32), "F32"
    if qtype in RANDOM_BLOCK_TYPES:
        return random_blocks(*array.shape, qtype, rng), qtype
    return gguf.quants.quantize(array.astype(np.float32), kind), qtype


def add_encoded(writer: gguf.GGUFWriter, name: str, array: np.ndarray, qtype: str,
                rng: np.random.Generator) -> None:
    data, kind = encode(array, "F32" if name.endswith("_norm.weight") else qtype, rng)  # (llama.cpp keeps norms F32)
    writer.add_tensor(name, data, raw_dtype=gguf.GGMLQuantizationType[kind])


def new_writer(out: Path, arch: str, name: str, **metadata) -> gguf.GGUFWriter:
    """A writer of architecture `arch` with its general.name and each `key=value` written by add_<key>(value)."""
    writer = gguf.GGUFWriter(str(out), arch)
    writer.add_name(name)
    for key, value in metadata.items():
        getattr(writer, f"add_{key}")(value)
    return writer


def write_out(writer: gguf.GGUFWriter, out: Path) -> Path:
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def write_tokenizer(writer: gguf.GGUFWriter, folder: Path, pre: str = "default", add_bos: bool = False) -> None:
    if (folder / "tokenizer.model").exists():
        import sentencepiece

        sp = sentencepiece.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
        size = sp.get_piece_size()
        types = [3 if sp.is_control(i) else 2 if sp.is_unknown(i) else 6 if sp.is_byte(i) else 1 for i in range(size)]
        writer.add_tokenizer_model("llama")
        writer.add_token_list([sp.id_to_piece(i) for i in range(size)])
        writer.add_token_scores([sp.get_score(i) for i in range(size)])
        writer.add_token_types(types)
        writer.add_bos_token_id(sp.bos_id())
        writer.add_eos_token_id(sp.eos_id())
        writer.add_unk_token_id(sp.unk_id())
        writer.add_add_bos_token(True)
        writer.add_add_eos_token(False)
    else:
        vocab = json.loads((folder / "vocab.json").read_text())
        tokens = sorted(vocab, key=vocab.get)
        lines = (folder / "merges.txt").read_text(encoding="utf-8").split("\n")
        merges = [line for line in lines[1:] if line]
        config = json.loads((folder / "tokenizer_config.json").read_text())
        special = {v["content"] for v in config.get("added_tokens_decoder", {}).values()}
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(pre)
        writer.add_token_list(tokens)
        writer.add_token_merges(merges)
        writer.add_token_types([3 if t in special else 1 for t in tokens])
        eos = vocab[config["eos_token"]]
        writer.add_bos_token_id(eos)
        writer.add_eos_token_id(eos)
        writer.add_add_bos_token(add_bos)


def tokenizer_only(folder: Path, out: Path, arch: str, pre: str = "default", chat_template: str | None = None,
                   name: str | None = None) -> Path:
    """A GGUF file holding only `folder`'s tokenizer (enough for AutoTokenizer; 4.45.2 also needs a name)."""
    writer = gguf.GGUFWriter(str(out), arch)
    if name is not None:
        writer.add_name(name)
    write_tokenizer(writer, folder, pre)
    if chat_template is not None:
        writer.add_chat_template(chat_template)
    return write_out(writer, out)


def llama3_rope_divisors(config: dict, head_dim: int) -> torch.Tensor:
    """llama.cpp's rope_freqs for a llama3 rope_scaling: 1, factor, or the smooth blend per frequency."""
    scaling, base = config["rope_scaling"], config.get("rope_theta", 10000.0)
    factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
    old_context = scaling["original_max_position_embeddings"]
    divisors = []
    for i in range(0, head_dim, 2):
        wavelength = 2 * math.pi * base ** (i / head_dim)
        if wavelength < old_context / high:
            divisors.append(1.0)
        elif wavelength > old_context / low:
            divisors.append(factor)
        else:
            smooth = (old_context / wavelength - low) / (high - low)
            divisors.append(1 / ((1 - smooth) / factor + smooth))
    return torch.tensor(divisors, dtype=torch.float32)


MAMBA_LAYER = {"norm": "attn_norm", "mixer.in_proj": "ssm_in", "mixer.conv1d": "ssm_conv1d", "mixer.x_proj": "ssm_x",
               "mixer.dt_proj": "ssm_dt", "mixer.out_proj": "ssm_out", "mixer.norm": "ssm_norm"}
MAMBA_TOP = {"backbone.embeddings.weight": "token_embd.weight", "backbone.norm_f.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}


def convert_mamba(folder: Path, out: Path, qtype: str, name: str, seed: int = 0, arch: str = "mamba") -> Path:
    """llama.cpp's layout of a Mamba (arch "mamba"), Falcon-Mamba ("falcon_mamba": written as mamba with
    ssm.dt_b_c_rms) or Mamba2 ("mamba2") checkpoint: metadata under <arch>.ssm.* (Mamba2's head count as
    time_step_rank), A stored as -exp(A_log) in blk.<i>.ssm_a and D in blk.<i>.ssm_d (names without a suffix;
    Mamba2's both as [heads, 1]), the conv weight squeezed to [channels, kernel]; Mamba2's dt_bias as ssm_dt.bias and
    its gated norm's weight as [groups, width / groups]."""
    config = json.loads((folder / "config.json").read_text())
    two = arch == "mamba2"
    rng = np.random.default_rng(seed)
    writer = new_writer(out, "mamba" if arch == "falcon_mamba" else arch, name, context_length=2 ** 20,
                        embedding_length=config["hidden_size"], feed_forward_length=0, head_count=0,
                        block_count=config["num_hidden_layers"], ssm_conv_kernel=config["conv_kernel"],
                        ssm_inner_size=int(config["expand"] * config["hidden_size"]),
                        ssm_state_size=config["state_size"],
                        ssm_time_step_rank=config["num_heads"] if two else config["time_step_rank"],
                        layer_norm_rms_eps=config["layer_norm_epsilon"])
    if two:
        writer.add_ssm_group_count(config["n_groups"])
    if arch == "falcon_mamba":  # llama.cpp's mark of Falcon-Mamba's B / C / dt norms
        writer.add_ssm_dt_b_c_rms(True)
    write_tokenizer(writer, folder)
    column = (lambda a: a.reshape(-1, 1)) if two else (lambda a: a)
    for key, tensor in load_file(folder / "model.safetensors").items():
        array = tensor.to(torch.float32).numpy()
        if key in MAMBA_TOP:
            target = MAMBA_TOP[key]
        else:
            _, _, index, rest = key.split(".", 3)  # backbone.layers.<i>.<rest>
            stem, _, leaf = rest.rpartition(".")
            if rest == "mixer.A_log":
                target, array = f"blk.{index}.ssm_a", column(-np.exp(array))
            elif rest == "mixer.D":
                target, array = f"blk.{index}.ssm_d", column(array)
            elif rest == "mixer.dt_bias":
                target = f"blk.{index}.ssm_dt.bias"
            else:
                target = f"blk.{index}.{MAMBA_LAYER[stem]}.{leaf}"
            if rest == "mixer.conv1d.weight":
                array = np.ascontiguousarray(array.squeeze(1))
            if rest == "mixer.norm.weight":
                array = np.ascontiguousarray(array.reshape(config["n_groups"], -1))
        add_encoded(writer, target, array, qtype, rng)
    return write_out(writer, out)


DBRX_LAYER = {"norm_attn_norm.norm_1": "attn_norm", "norm_attn_norm.attn.Wqkv": "attn_qkv",
              "norm_attn_norm.attn.out_proj": "attn_output", "norm_attn_norm.norm_2": "attn_output_norm",
              "ffn.router.layer": "ffn_gate_inp"}
DBRX_EXPERTS = {"ffn.experts.mlp.w1": "ffn_gate_exps", "ffn.experts.mlp.v1": "ffn_up_exps",
                "ffn.experts.mlp.w2": "ffn_down_exps"}
DBRX_TOP = {"transformer.wte.weight": "token_embd.weight", "transformer.norm_f.weight": "output_norm.weight",
            "lm_head.weight": "output.weight"}


def convert_dbrx(folder: Path, out: Path, qtype: str, name: str, seed: int = 0) -> Path:
    """llama.cpp's layout of a DBRX checkpoint: its sectioned config as flat dbrx.* keys, the experts' [E * I, H]
    blocks stacked as [E, I, H] (w2 transposed to [E, H, I]), the fused qkv as stored."""
    config = json.loads((folder / "config.json").read_text())
    attention, ffn = config["attn_config"], config["ffn_config"]
    experts = ffn.get("moe_num_experts", 4)
    rng = np.random.default_rng(seed)
    writer = new_writer(out, "dbrx", name, context_length=config["max_seq_len"], embedding_length=config["d_model"],
                        block_count=config["n_layers"], feed_forward_length=ffn["ffn_hidden_size"],
                        head_count=config["n_heads"], head_count_kv=attention["kv_n_heads"],
                        rope_freq_base=attention.get("rope_theta", 10000.0), clamp_kqv=attention["clip_qkv"],
                        layer_norm_eps=1e-5, expert_count=experts, expert_used_count=ffn["moe_top_k"])
    write_tokenizer(writer, folder)
    for key, tensor in load_file(folder / "model.safetensors").items():
        array = tensor.to(torch.float32).numpy()
        if key in DBRX_TOP:
            add_encoded(writer, DBRX_TOP[key], array, qtype, rng)
            continue
        _, _, index, rest = key.split(".", 3)  # transformer.blocks.<i>.<rest>
        stem, _, leaf = rest.rpartition(".")
        if rest in DBRX_EXPERTS:
            array = array.reshape(experts, -1, array.shape[-1])
            if rest.endswith("w2"):
                array = np.ascontiguousarray(array.transpose(0, 2, 1))
            add_encoded(writer, f"blk.{index}.{DBRX_EXPERTS[rest]}.weight", array, qtype, rng)
        else:
            add_encoded(writer, f"blk.{index}.{DBRX_LAYER[stem]}.{leaf}", array, qtype, rng)
    return write_out(writer, out)


T5_SUBLAYERS = {"encoder": {"layer.0.layer_norm": "attn_norm", "layer.1.layer_norm": "ffn_norm",
                              "layer.1.DenseReluDense": "ffn"},
                "decoder": {"layer.0.layer_norm": "attn_norm", "layer.1.layer_norm": "cross_attn_norm",
                            "layer.2.layer_norm": "ffn_norm", "layer.2.DenseReluDense": "ffn"}}
T5_FFN = {"wi_0": "gate", "wi_1": "up", "wi": "up", "wo": "down"}


def t5_gguf_name(key: str) -> str | None:
    """llama.cpp's name of a T5 checkpoint tensor (None: a tied copy of the shared embedding)."""
    top = {"shared.weight": "token_embd.weight", "lm_head.weight": "output.weight",
           "encoder.final_layer_norm.weight": "enc.output_norm.weight",
           "decoder.final_layer_norm.weight": "dec.output_norm.weight"}
    if key in top:
        return top[key]
    if key.endswith("embed_tokens.weight"):
        return None
    stack, _, index, rest = key.split(".", 3)  # encoder.block.<i>.<rest>
    prefix = f"{stack[:3]}.blk.{index}"
    sublayer, _, module = rest.rpartition(".")[0].rpartition(".")
    if module in ("q", "k", "v", "o"):
        kind = "attn" if sublayer == "layer.0.SelfAttention" else "cross_attn"
        return f"{prefix}.{kind}_{module}.weight"
    if module == "relative_attention_bias":
        return f"{prefix}.attn_rel_b.weight"
    if module in T5_FFN:
        return f"{prefix}.ffn_{T5_FFN[module]}.weight"
    return f"{prefix}.{T5_SUBLAYERS[stack][rest.rpartition('.')[0]]}.weight"


def convert_t5(folder: Path, out: Path, qtype: str, name: str, seed: int = 0) -> Path:
    """llama.cpp's layout of a T5 checkpoint: t5.* metadata, encoder and decoder blocks as enc.blk.<i> / dec.blk.<i>,
    the shared embedding as token_embd (its tied copies left out), the head as output when it is its own."""
    config = json.loads((folder / "config.json").read_text())
    rng = np.random.default_rng(seed)
    writer = new_writer(out, "t5", name, context_length=512, embedding_length=config["d_model"],
                        feed_forward_length=config["d_ff"], block_count=config["num_layers"],
                        head_count=config["num_heads"], key_length=config["d_kv"], value_length=config["d_kv"],
                        layer_norm_eps=config["layer_norm_epsilon"],
                        relative_attn_buckets_count=config["relative_attention_num_buckets"],
                        decoder_start_token_id=config["decoder_start_token_id"])
    write_tokenizer(writer, folder)
    for key, tensor in load_file(folder / "model.safetensors").items():
        target = t5_gguf_name(key)
        if target is not None:
            add_encoded(writer, target, tensor.to(torch.float32).numpy(), qtype, rng)
    return write_out(writer, out)


JAMBA_LAYER = {"input_layernorm": "attn_norm", "pre_ff_layernorm": "ffn_norm", "self_attn.q_proj": "attn_q",
               "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
               "mamba.in_proj": "ssm_in", "mamba.conv1d": "ssm_conv1d", "mamba.x_proj": "ssm_x",
               "mamba.dt_proj": "ssm_dt", "mamba.dt_layernorm": "ssm_dt_norm", "mamba.b_layernorm": "ssm_b_norm",
               "mamba.c_layernorm": "ssm_c_norm", "mamba.out_proj": "ssm_out", "feed_forward.router": "ffn_gate_inp",
               "feed_forward.experts.gate_proj": "ffn_gate_exps", "feed_forward.experts.up_proj": "ffn_up_exps",
               "feed_forward.experts.down_proj": "ffn_down_exps", "feed_forward.gate_proj": "ffn_gate",
               "feed_forward.up_proj": "ffn_up", "feed_forward.down_proj": "ffn_down"}


def convert_jamba(folder: Path, out: Path, qtype: str, name: str, seed: int = 0) -> Path:
    """llama.cpp's layout of a Jamba checkpoint: jamba.* metadata with the kv head count per layer (0 for Mamba
    layers), the experts stacked, Mamba's A stored as -exp(A_log) and its conv weight squeezed."""
    config = json.loads((folder / "config.json").read_text())
    layers = config["num_hidden_layers"]
    attends = [i % config["attn_layer_period"] == config["attn_layer_offset"] for i in range(layers)]
    rng = np.random.default_rng(seed)
    writer = new_writer(out, "jamba", name, context_length=config["max_position_embeddings"],
                        embedding_length=config["hidden_size"], feed_forward_length=config["intermediate_size"],
                        block_count=layers, head_count=config["num_attention_heads"],
                        head_count_kv=[config["num_key_value_heads"] if a else 0 for a in attends],
                        ssm_conv_kernel=config["mamba_d_conv"],
                        ssm_inner_size=config["mamba_expand"] * config["hidden_size"],
                        ssm_state_size=config["mamba_d_state"], ssm_time_step_rank=config["mamba_dt_rank"],
                        layer_norm_rms_eps=config["rms_norm_eps"], expert_count=config["num_experts"],
                        expert_used_count=config["num_experts_per_tok"])
    write_tokenizer(writer, folder)
    top = {"model.embed_tokens.weight": "token_embd.weight", "model.final_layernorm.weight": "output_norm.weight",
           "lm_head.weight": "output.weight"}
    for key, tensor in stack_experts(load_file(folder / "model.safetensors")).items():
        array = tensor.to(torch.float32).numpy()
        if key in top:
            add_encoded(writer, top[key], array, qtype, rng)
            continue
        _, _, index, rest = key.split(".", 3)  # model.layers.<i>.<rest>
        if rest == "mamba.A_log":
            target, array = f"blk.{index}.ssm_a", -np.exp(array)
        elif rest == "mamba.D":
            target = f"blk.{index}.ssm_d"
        else:
            stem, _, leaf = rest.rpartition(".")
            target = f"blk.{index}.{JAMBA_LAYER[stem]}.{leaf}"
        if rest == "mamba.conv1d.weight":
            array = np.ascontiguousarray(array.squeeze(1))
        add_encoded(writer, target, array, qtype, rng)
    return write_out(writer, out)


def convert(folder: Path, out: Path, qtype: str = "F32", arch: str = "llama", name: str = "tiny",
            seed: int = 0, chat_template: str | None = None, tokenizer_folder: Path | None = None) -> Path:
    if arch in ("mamba", "mamba2", "falcon_mamba"):
        return convert_mamba(folder, out, qtype, name, seed, arch)
    if arch == "dbrx":
        return convert_dbrx(folder, out, qtype, name, seed)
    if arch == "t5":
        return convert_t5(folder, out, qtype, name, seed)
    if arch == "jamba":
        return convert_jamba(folder, out, qtype, name, seed)
    config = json.loads((folder / "config.json").read_text())
    if arch in ("gpt2", "starcoder"):  # GPT-2's own field names (GPTBigCode's too)
        config = {**config, "hidden_size": config["n_embd"], "num_hidden_layers": config["n_layer"],
                  "num_attention_heads": config["n_head"], "max_position_embeddings": config["n_positions"],
                  "intermediate_size": config.get("n_inner") or 4 * config["n_embd"],
                  "norm_epsilon": config["layer_norm_epsilon"]}
    if "layer_norm_eps" in config:  # StableLM
        config["norm_epsilon"] = config["layer_norm_eps"]
    if arch == "nemotron":
        config["norm_epsilon"] = config["norm_eps"]
    if arch == "bloom":
        config = {**config, "num_hidden_layers": config["n_layer"], "num_attention_heads": config["n_head"]}
    if arch == "gptneox":
        config = {**config, "norm_epsilon": config["layer_norm_eps"]}
    if arch in ("bloom", "falcon"):
        config = {**config, "norm_epsilon": config["layer_norm_epsilon"],
                  "intermediate_size": 4 * config["hidden_size"], "max_position_embeddings": 2048}
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(str(out), arch)
    writer.add_name(name)
    heads = config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads") or heads
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    if arch == "falcon":  # the checkpoint's layout (llama.cpp reads 7B's one shared kv head, or 40B's groups)
        kv_heads = config["num_kv_heads"] if config["new_decoder_architecture"] else 1 if config["multi_query"] \
            else heads
    if arch == "starcoder":
        kv_heads = 1 if config["multi_query"] else heads
    if arch not in ("gpt2", "gptneox"):  # (llama.cpp writes no kv head count for these)
        writer.add_head_count_kv(kv_heads)
    if arch == "gptneox":
        writer.add_parallel_residual(config["use_parallel_residual"])
        writer.add_rope_dimension_count(int(config["rotary_pct"] * head_dim))
    if "norm_epsilon" in config:  # LayerNorm families (Starcoder2)
        writer.add_layer_norm_eps(config["norm_epsilon"])
    elif arch == "olmo":  # OLMo's norms have no weights and a fixed epsilon
        writer.add_layer_norm_eps(1e-5)
        if config.get("clip_qkv") is not None:
            writer.add_clamp_kqv(config["clip_qkv"])
    else:
        writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    if arch == "command-r":
        writer.add_logit_scale(config["logit_scale"])
    if arch in ("granite", "granitemoe"):
        writer.add_attention_scale(config["attention_multiplier"])
        writer.add_embedding_scale(config["embedding_multiplier"])
        writer.add_residual_scale(config["residual_multiplier"])
        writer.add_logit_scale(config["logits_scaling"])
    if arch.startswith("gemma"):
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    if arch == "gemma2":
        writer.add_sliding_window(config["sliding_window"])
        writer.add_attn_logit_softcapping(config["attn_logit_softcapping"])
        writer.add_final_logit_softcapping(config["final_logit_softcapping"])
    writer.add_rope_freq_base(config.get("rope_theta", 10000.0))
    if arch == "llama":
        writer.add_rope_dimension_count(head_dim)
    if arch == "stablelm":
        writer.add_rope_dimension_count(int(config["partial_rotary_factor"] * head_dim))
    if arch in ("nemotron", "phi2"):  # as llama.cpp counts it: from the hidden size
        writer.add_rope_dimension_count(int(config["partial_rotary_factor"] * config["hidden_size"]) // heads)
    experts = config.get("num_experts") or config.get("num_local_experts")
    if experts:
        writer.add_expert_count(experts)
        writer.add_expert_used_count(config["num_experts_per_tok"])
    if arch == "qwen2moe":
        writer.add_expert_feed_forward_length(config["moe_intermediate_size"])
        writer.add_expert_shared_feed_forward_length(config["shared_expert_intermediate_size"])
    write_tokenizer(writer, tokenizer_folder or folder)
    if config.get("pad_token_id") is not None:
        writer.add_pad_token_id(config["pad_token_id"])
    if chat_template is not None:
        writer.add_chat_template(chat_template)
    tensors = stack_experts(load_file(folder / "model.safetensors"))
    scaling = config.get("rope_scaling") or {}
    if scaling.get("rope_type") == "llama3":  # llama.cpp keeps Llama 3.1 scaling as per-frequency divisors
        tensors["rope_freqs.weight"] = llama3_rope_divisors(config, head_dim)
    if arch == "gpt2":  # llama.cpp writes GPT-2's tied head as its own output tensor
        tensors = {k: v for k, v in tensors.items() if not k.endswith(".attn.bias")}
        tensors["lm_head.weight"] = tensors["transformer.wte.weight"]
    if arch == "bloom":  # and Bloom's, as llama.cpp's converter does
        tensors["lm_head.weight"] = tensors["transformer.word_embeddings.weight"]
    for key, tensor in tensors.items():
        array = tensor.to(torch.float32).numpy()
        target = key if key == "rope_freqs.weight" else gguf_name(key, arch)
        conv1d = target.startswith("blk.") and target.split(".")[2] in GPT2_CONV1D and key.endswith("weight")
        if arch == "gpt2" and conv1d:
            array = np.ascontiguousarray(array.T)  # HF's Conv1D [in, out] -> llama.cpp's [out, in]
        if target.endswith("ffn_gate_inp_shexp.weight"):
            array = array.reshape(-1)  # llama.cpp squeezes the shared expert's [1, hidden] gate
        if (arch.startswith("gemma") or arch == "nemotron") and key.endswith("norm.weight"):
            array = array + 1  # llama.cpp stores Gemma's and Nemotron's norm weights as 1 + w
        if arch in ("bloom", "falcon", "gptneox") and ".attn_qkv." in target:
            array = group_qkv(array, heads, kv_heads if arch == "falcon" else heads)
        if arch in ROPE_PERMUTED and ".attn_q." in target:
            array = permute(array, heads)
        elif arch in ROPE_PERMUTED and ".attn_k." in target:
            array = permute(array, kv_heads)
        if key.endswith("block_sparse_moe.input_linear.weight"):  # [E, 2 I, H]: llama.cpp's gate and up halves
            gate, up = np.split(array, 2, axis=1)
            add_encoded(writer, target.replace("input_linear", "ffn_gate_exps"), gate, qtype, rng)
            add_encoded(writer, target.replace("input_linear", "ffn_up_exps"), up, qtype, rng)
            continue
        add_encoded(writer, target, array, qtype, rng)
    return write_out(writer, out)
