"""On a CUDA machine: formers vs transformers 4.45.2 on the GPU — fp32 logits on a left-padded batch,
greedy tokens (rows finishing early on EOS, which exercises the loop's deferred stop check) and bf16
greedy tokens, for each family. Prints one line per check; exits non-zero on a mismatch."""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import build_oracle_checkpoint  # noqa: E402

import formers  # noqa: E402
import transformers  # noqa: E402

CASES = [("llama", {}), ("llama", {"rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                   "high_freq_factor": 4.0, "original_max_position_embeddings": 32}}),
         ("mistral", {"sliding_window": 6}), ("qwen2", {})]


def main() -> int:
    device = sys.argv[1] if len(sys.argv) > 1 else "cuda"
    torch.manual_seed(0)
    ids = torch.randint(3, 128, (3, 14), device=device)
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    mask[2, :8] = 0
    ids = ids.masked_fill(mask == 0, 0)
    failures = 0
    for model_type, overrides in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            folder = build_oracle_checkpoint(Path(tmp), model_type, **overrides)
            for dtype in (torch.float32, torch.bfloat16):
                ours = formers.AutoModelForCausalLM.from_pretrained(folder, torch_dtype=dtype, device_map=device)
                ref = transformers.AutoModelForCausalLM.from_pretrained(folder, torch_dtype=dtype).to(device)
                with torch.no_grad():
                    diff = (ours(ids, attention_mask=mask).logits - ref(ids, attention_mask=mask).logits)
                    diff = diff[mask.bool()].abs().max().item()
                first = ref.generate(ids, attention_mask=mask, max_new_tokens=6, pad_token_id=0)
                eos = [int(first[0, 16]), int(first[2, 18])]
                kwargs = dict(attention_mask=mask, max_new_tokens=32, pad_token_id=0, eos_token_id=eos)
                a, b = ours.generate(ids, **kwargs), ref.generate(ids, **kwargs)
                same = a.shape == b.shape and torch.equal(a, b)
                ok = same and diff <= 1e-5 if dtype == torch.float32 else True  # bf16: reported, not judged
                failures += not ok
                print(f"{'ok ' if ok else 'BAD'} {model_type:8} {str(overrides)[:40]:42} {str(dtype):15} "
                      f"max|dlogits| {diff:.2e}  greedy equal {same} shape {tuple(a.shape)} vs {tuple(b.shape)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
