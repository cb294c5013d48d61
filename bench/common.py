"""Shared bench helpers: the SmolLM-135M-shaped checkpoint (random weights) and RSS probes."""
from __future__ import annotations

import json
import resource
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"
REPO = Path(__file__).resolve().parents[1]


def stories_path() -> Path:
    """The real tiny stories260K model: the copy vendored in tests/data, else ../shared beside the repo."""
    vendored = REPO / "tests" / "data" / "stories260K"
    return vendored if vendored.is_dir() else REPO.parent / "shared" / "models" / "stories260K"
SMOLLM_SHAPE = dict(
    hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
    vocab_size=49152, max_position_embeddings=2048, rope_theta=10000.0, rms_norm_eps=1e-5,
    tie_word_embeddings=True, bos_token_id=1, eos_token_id=2,
)


def smollm_checkpoint() -> Path:
    """Build (once) a random-weight Llama checkpoint of SmolLM-135M's shape with the oracle, in fp32."""
    folder = OUT / "smollm135m-shaped"
    if (folder / "config.json").exists():
        return folder
    import torch
    import transformers

    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**SMOLLM_SHAPE))
    model.save_pretrained(folder)
    return folder


# ~135M-parameter shapes of other families (vocabularies trimmed to SmolLM's so sizes stay comparable)
FAMILY_SHAPES = {
    "llama": ("llama", SMOLLM_SHAPE),
    "gemma2": ("gemma2", dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                              num_key_value_heads=3, head_dim=64, query_pre_attn_scalar=64, vocab_size=49152,
                              bos_token_id=1, eos_token_id=2, pad_token_id=0)),
    "phi3": ("phi3", dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                          num_key_value_heads=3, vocab_size=49152, bos_token_id=1, eos_token_id=2, pad_token_id=0)),
    "gpt2": ("gpt2", dict(vocab_size=49152, bos_token_id=1, eos_token_id=2)),  # GPT-2 small's 768 x 12 layers
    # mamba2-130m's layer (768 wide, 24 heads x 64, one group, state 128), 20 layers and an untied head (4.45.2
    # cannot save a tied Mamba2): ~151M parameters
    "mamba2": ("mamba2", dict(hidden_size=768, num_hidden_layers=20, num_heads=24, head_dim=64, n_groups=1,
                              state_size=128, expand=2, chunk_size=256, vocab_size=49152, bos_token_id=1,
                              eos_token_id=2, pad_token_id=0)),
    # ~152M total parameters (8 experts of 1.18M per layer), ~57M active per token (top-2)
    "mixtral": ("mixtral", dict(hidden_size=512, intermediate_size=768, num_hidden_layers=10, num_attention_heads=8,
                                num_key_value_heads=4, num_local_experts=8, num_experts_per_tok=2, vocab_size=49152,
                                bos_token_id=1, eos_token_id=2, pad_token_id=0)),
}


# other Llama shapes (`shape=` of family_checkpoint): SmolLM-360M's
SHAPES = {"smollm-360m": dict(SMOLLM_SHAPE, hidden_size=960, intermediate_size=2560, num_hidden_layers=32,
                              num_attention_heads=15, num_key_value_heads=5)}


def family_checkpoint(family: str, shape: str | None = None) -> Path:
    """Build (once) a random-weight checkpoint of `family` at ~135M parameters with the oracle, in fp32
    (`shape`: a Llama of another size from SHAPES instead)."""
    if shape is not None:
        folder = OUT / f"{shape}-shaped"
        if not (folder / "config.json").exists():
            import torch
            import transformers

            torch.manual_seed(0)
            transformers.LlamaForCausalLM(transformers.LlamaConfig(**SHAPES[shape])).save_pretrained(folder)
        return folder
    if family == "llama":
        return smollm_checkpoint()
    folder = OUT / f"{family}-135m-shaped"
    if (folder / "config.json").exists():
        return folder
    import torch
    import transformers

    model_type, shape = FAMILY_SHAPES[family]
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(transformers.AutoConfig.for_model(model_type, **shape))
    model.save_pretrained(folder)
    return folder


def peak_rss_bytes() -> int:
    """This process's own high-water RSS (VmHWM; ru_maxrss would include the parent's from before exec)."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def current_rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize()


def emit(record: dict) -> None:
    """Workers print one JSON line; the driver collects it."""
    print("RESULT " + json.dumps(record), flush=True)
    sys.stdout.flush()


def collect(output: str) -> dict:
    for line in output.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"worker printed no result:\n{output[-3000:]}")
