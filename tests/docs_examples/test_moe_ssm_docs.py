"""v4.45 model_doc examples of the MoE and state-space families (Mixtral, Qwen2-MoE, OLMoE, GraniteMoE,
DBRX, Mamba, FalconMamba, Jamba) run with `transformers` -> `formers` on tiny random checkpoints written by
4.45.2 (stories260K tokenizer, vocabulary 512) and print what 4.45.2 prints for the same snippet (seeded
sampling included). Odd-shaped configs: logits within 1e-5 of 4.45.2's."""
from __future__ import annotations

import pytest
import torch

from ..conftest import build_oracle_checkpoint
from .doc_runner import add_stories_tokenizer, run_both

ATTN = dict(vocab_size=512, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=256, bos_token_id=1, eos_token_id=2)
SHAPES = {
    "mixtral": dict(ATTN, num_local_experts=4, num_experts_per_tok=2),
    "qwen2_moe": dict(ATTN, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=24,
                      shared_expert_intermediate_size=40),
    "olmoe": dict(ATTN, num_experts=4, num_experts_per_tok=2),
    "granitemoe": dict(ATTN, num_local_experts=4, num_experts_per_tok=2, embedding_multiplier=2.0,
                       logits_scaling=3.0, residual_multiplier=0.5, attention_multiplier=0.2),
    "dbrx": dict(vocab_size=512, d_model=32, n_heads=4, n_layers=2, max_seq_len=256,
                 attn_config=dict(kv_n_heads=2, clip_qkv=8.0), ffn_config=dict(ffn_hidden_size=48, moe_num_experts=4,
                                                                               moe_top_k=2),
                 bos_token_id=1, eos_token_id=2),
    "mamba": dict(vocab_size=512, hidden_size=32, state_size=8, num_hidden_layers=2, bos_token_id=1,
                  eos_token_id=2, pad_token_id=0),
    "falcon_mamba": dict(vocab_size=512, hidden_size=32, state_size=8, num_hidden_layers=2, bos_token_id=1,
                         eos_token_id=2, pad_token_id=0),
    "jamba": dict(ATTN, num_experts=4, num_experts_per_tok=2, attn_layer_period=2, attn_layer_offset=1,
                  expert_layer_period=2, expert_layer_offset=1, mamba_d_state=8, mamba_dt_rank=4,
                  use_mamba_kernels=False, pad_token_id=0),
}


def _folder(tmp_path_factory, model_type: str, chat: bool = False, **overrides):
    folder = tmp_path_factory.mktemp(model_type)
    build_oracle_checkpoint(folder, model_type, base=SHAPES[model_type], **overrides)
    return add_stories_tokenizer(folder, chat_template=chat)


MIXTRAL_BASE = '''
from transformers import AutoModelForCausalLM, AutoTokenizer
model = AutoModelForCausalLM.from_pretrained("mistralai/Mixtral-8x7B-v0.1", device_map="auto")
tokenizer = AutoTokenizer.from_pretrained("mistralai/Mixtral-8x7B-v0.1")
prompt = "My favourite condiment is"
model_inputs = tokenizer([prompt], return_tensors="pt").to("cpu")
generated_ids = model.generate(**model_inputs, max_new_tokens=100, do_sample=True)
print(tokenizer.batch_decode(generated_ids)[0])
'''

MIXTRAL_CHAT = '''
from transformers import AutoModelForCausalLM, AutoTokenizer
model = AutoModelForCausalLM.from_pretrained("mistralai/Mixtral-8x7B-Instruct-v0.1", device_map="auto")
tokenizer = AutoTokenizer.from_pretrained("mistralai/Mixtral-8x7B-Instruct-v0.1")
messages = [
    {"role": "user", "content": "What is your favourite condiment?"},
    {"role": "assistant", "content": "Well, I'm quite partial to a good squeeze of fresh lemon juice."},
    {"role": "user", "content": "Do you have mayonnaise recipes?"}
]
model_inputs = tokenizer.apply_chat_template(messages, return_tensors="pt").to("cpu")
generated_ids = model.generate(model_inputs, max_new_tokens=100, do_sample=True)
print(tokenizer.batch_decode(generated_ids)[0])
'''

QWEN2_MOE_CHAT = '''
from transformers import AutoModelForCausalLM, AutoTokenizer
device = "cpu"
model = AutoModelForCausalLM.from_pretrained("Qwen/Qwen1.5-MoE-A2.7B-Chat", device_map="auto")
tokenizer = AutoTokenizer.from_pretrained("Qwen/Qwen1.5-MoE-A2.7B-Chat")
prompt = "Give me a short introduction to large language model."
messages = [{"role": "user", "content": prompt}]
text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
model_inputs = tokenizer([text], return_tensors="pt").to(device)
generated_ids = model.generate(model_inputs.input_ids, max_new_tokens=512, do_sample=True)
generated_ids = [output_ids[len(input_ids):] for input_ids, output_ids in zip(model_inputs.input_ids, generated_ids)]
response = tokenizer.batch_decode(generated_ids, skip_special_tokens=True)[0]
print(response)
'''

OLMOE_DOCSTRING = '''
from transformers import AutoTokenizer, OlmoeForCausalLM
model = OlmoeForCausalLM.from_pretrained("allenai/OLMoE-1B-7B-0924")
tokenizer = AutoTokenizer.from_pretrained("allenai/OLMoE-1B-7B-0924")
prompt = "Hey, are you conscious? Can you talk to me?"
inputs = tokenizer(prompt, return_tensors="pt")
generate_ids = model.generate(inputs.input_ids, max_length=30)
print(tokenizer.batch_decode(generate_ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)[0])
'''

GRANITEMOE_USAGE = '''
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
model_path = "ibm/PowerMoE-3b"
tokenizer = AutoTokenizer.from_pretrained(model_path)
model = AutoModelForCausalLM.from_pretrained(model_path, device_map="auto")
model.eval()
prompt = "Write a code to find the maximum value in a list of numbers."
input_tokens = tokenizer(prompt, return_tensors="pt")
output = model.generate(**input_tokens, max_new_tokens=100)
output = tokenizer.batch_decode(output)
for i in output:
    print(i)
'''

DBRX_CHAT = '''
from transformers import DbrxForCausalLM, AutoTokenizer
import torch
tokenizer = AutoTokenizer.from_pretrained("databricks/dbrx-instruct", token="YOUR_HF_TOKEN")
model = DbrxForCausalLM.from_pretrained(
    "databricks/dbrx-instruct",
    device_map="auto",
    torch_dtype=torch.float32,
    token="YOUR_HF_TOKEN",
    attn_implementation="sdpa",
    )
input_text = "What does it take to build a great LLM?"
messages = [{"role": "user", "content": input_text}]
input_ids = tokenizer.apply_chat_template(messages, return_dict=True, tokenize=True, add_generation_prompt=True, return_tensors="pt").to("cpu")
outputs = model.generate(**input_ids, max_new_tokens=200)
print(tokenizer.decode(outputs[0]))
'''

MAMBA_USAGE = '''
from transformers import MambaConfig, MambaForCausalLM, AutoTokenizer
import torch
tokenizer = AutoTokenizer.from_pretrained("state-spaces/mamba-130m-hf")
model = MambaForCausalLM.from_pretrained("state-spaces/mamba-130m-hf")
input_ids = tokenizer("Hey how are you doing?", return_tensors= "pt")["input_ids"]
out = model.generate(input_ids, max_new_tokens=10)
print(tokenizer.batch_decode(out))
'''

FALCON_MAMBA_USAGE = '''
from transformers import FalconMambaForCausalLM, AutoTokenizer
import torch
tokenizer = AutoTokenizer.from_pretrained("tiiuae/falcon-mamba-7b")
model = FalconMambaForCausalLM.from_pretrained("tiiuae/falcon-mamba-7b")
input_ids = tokenizer("Hey how are you doing?", return_tensors= "pt")["input_ids"]
out = model.generate(input_ids, max_new_tokens=10)
print(tokenizer.batch_decode(out))
'''

JAMBA_USAGE = '''
from transformers import AutoModelForCausalLM, AutoTokenizer
import torch
model = AutoModelForCausalLM.from_pretrained("ai21labs/Jamba-v0.1", torch_dtype=torch.float32, use_mamba_kernels=False)
tokenizer = AutoTokenizer.from_pretrained("ai21labs/Jamba-v0.1")
input_ids = tokenizer("In the recent Super Bowl LVIII,", return_tensors='pt').to(model.device)["input_ids"]
outputs = model.generate(input_ids, max_new_tokens=216)
print(tokenizer.batch_decode(outputs))
'''

CASES = {
    "mixtral_base": ("mixtral", MIXTRAL_BASE, "mistralai/Mixtral-8x7B-v0.1"),
    "mixtral_chat": ("mixtral", MIXTRAL_CHAT, "mistralai/Mixtral-8x7B-Instruct-v0.1"),
    "qwen2_moe_chat": ("qwen2_moe", QWEN2_MOE_CHAT, "Qwen/Qwen1.5-MoE-A2.7B-Chat"),
    "olmoe_docstring": ("olmoe", OLMOE_DOCSTRING, "allenai/OLMoE-1B-7B-0924"),
    "granitemoe_usage": ("granitemoe", GRANITEMOE_USAGE, "ibm/PowerMoE-3b"),
    "dbrx_chat": ("dbrx", DBRX_CHAT, "databricks/dbrx-instruct"),
    "mamba_usage": ("mamba", MAMBA_USAGE, "state-spaces/mamba-130m-hf"),
    "falcon_mamba_usage": ("falcon_mamba", FALCON_MAMBA_USAGE, "tiiuae/falcon-mamba-7b"),
    "jamba_usage": ("jamba", JAMBA_USAGE, "ai21labs/Jamba-v0.1"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_doc_example_prints_what_4_45_prints(case, tmp_path_factory):
    model_type, script, hub_id = CASES[case]
    folder = _folder(tmp_path_factory, model_type, chat="chat" in case)
    (theirs, _), (ours, _) = run_both(script, {hub_id: folder})
    assert theirs.strip() and ours == theirs


ODD_SHAPES = {
    "jamba_attention_every_layer": ("jamba", dict(attn_layer_period=1, attn_layer_offset=0)),
    "jamba_experts_every_layer": ("jamba", dict(expert_layer_period=1, expert_layer_offset=0)),
    "mixtral_sliding_window": ("mixtral", dict(sliding_window=4)),
    "mamba_no_conv_bias_rank": ("mamba", dict(use_conv_bias=False, time_step_rank=5, conv_kernel=3)),
    "falcon_mamba_no_conv_bias": ("falcon_mamba", dict(use_conv_bias=False, time_step_rank=3)),
    "qwen2_moe_sparse_step": ("qwen2_moe", dict(decoder_sparse_step=2, mlp_only_layers=[1], norm_topk_prob=True)),
    # one head per group: 4.45.2's prefill reads group h % G, formers h // (H / G) (tests/models/test_mamba2.py)
    "mamba2_groups_no_norm": ("mamba2", dict(n_groups=2, num_heads=2, head_dim=16, rms_norm=False)),
}
MAMBA2 = dict(vocab_size=512, hidden_size=16, num_heads=4, head_dim=16, state_size=8, num_hidden_layers=2,
              expand=2, chunk_size=16, time_step_min=1e-9, bos_token_id=1, eos_token_id=2, pad_token_id=0)


@pytest.mark.parametrize("case", sorted(ODD_SHAPES))
def test_odd_shaped_checkpoint_logits_equal_4_45(case, tmp_path):
    import transformers

    import formers
    model_type, fields = ODD_SHAPES[case]
    base = MAMBA2 if model_type == "mamba2" else SHAPES[model_type]
    build_oracle_checkpoint(tmp_path, model_type, base=base, **fields)
    ids = torch.randint(3, 512, (2, 13), generator=torch.Generator().manual_seed(0))
    theirs = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    ours = formers.AutoModelForCausalLM.from_pretrained(tmp_path)
    with torch.no_grad():
        expected, got = theirs(ids).logits, ours(ids).logits
    assert (got - expected).abs().max().item() <= 1e-5
    greedy = dict(max_new_tokens=6, do_sample=False)
    assert ours.generate(ids, **greedy).tolist() == theirs.generate(ids, **greedy).tolist()
