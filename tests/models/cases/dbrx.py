from dataclasses import replace

from ..family_checks import Case

# DBRX names its fields its own way; attention and MoE settings live in the nested attn_config/ffn_config.
# Weights drawn 5x wider than DBRX's 0.02 so the experts' share of the logits is large enough for a wrong
# routing weight (p-norm) to show beyond 1e-5 (test_dbrx.py checks that it does)
BASE = dict(vocab_size=128, d_model=64, n_heads=4, n_layers=2, max_seq_len=256, bos_token_id=1, eos_token_id=2,
            initializer_range=0.1)


def dbrx(attn: dict, ffn: dict, **options) -> Case:
    return Case("dbrx", {"attn_config": attn, "ffn_config": {"ffn_hidden_size": 32, **ffn}}, base=BASE, **options)


CASES = {
    # fused Wqkv clamped to +-0.15 (the tiny model's projections reach ~2), top-2 of 4, L1-normalised weights
    "dbrx-gqa-clip-top2": dbrx({"kv_n_heads": 2, "clip_qkv": 0.15}, {"moe_num_experts": 4, "moe_top_k": 2},
                               bf16_greedy=True),
    # MHA, top-4 of 6 normalised by their 2-norm, another rope base
    "dbrx-mha-clip-top4-p2": dbrx({"kv_n_heads": 4, "clip_qkv": 0.3, "rope_theta": 500000.0},
                                  {"moe_num_experts": 6, "moe_top_k": 4, "moe_normalize_expert_weights": 2.0}),
    # no clamp, one KV head, top-1 of 4, weights not normalised. 4.45.2's eager DBRX attention crashes without
    # clip_qkv (it clamps with min=max=None): the oracle runs SDPA, and output_attentions (eager) is not compared
    "dbrx-mqa-noclip-top1": dbrx({"kv_n_heads": 1}, {"moe_num_experts": 4, "moe_top_k": 1,
                                                     "moe_normalize_expert_weights": None},
                                 oracle_attention="sdpa", outputs_check=False),
}

# bf16 and fp16 logits bit-equal to 4.45.2's (which keeps DBRX's logits in the model dtype; formers returns them
# as float32, the same values)
CASES = {name: replace(case, half_exact=True) for name, case in CASES.items()}
