"""Decode and prefill speed of formers vs transformers 4.45.2 on a ~135M-parameter model of a family
(default: a SmolLM-135M-shaped Llama; `--family gemma2|phi3|gpt2|mixtral` for the others, see common.FAMILY_SHAPES;
mixtral: ~150M total parameters, 8 experts, top-2).

Each (library, dtype) runs in its own worker process so peak RSS is that library's alone; all
workers run in this one invocation, on the same checkpoint and prompts, and the driver prints
formers/transformers ratios. EOS is ignored so every run produces exactly --new-tokens tokens.

    python bench/generate.py [--family llama] [--batches 1 8] [--dtypes float32 bfloat16] [--prompt 128] [--new-tokens 128]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import FAMILY_SHAPES, collect, emit, family_checkpoint, peak_rss_bytes  # noqa: E402


def worker(library: str, dtype_name: str, batches: list[int], prompt: int, new_tokens: int, repeats: int,
           device: str, family: str) -> None:
    import torch

    lib = __import__(library)
    folder = family_checkpoint(family)
    dtype = getattr(torch, dtype_name)
    model = lib.AutoModelForCausalLM.from_pretrained(folder, torch_dtype=dtype, device_map=device)
    results = {}
    for batch in batches:
        ids = torch.randint(3, model.config.vocab_size, (batch, prompt), generator=torch.Generator().manual_seed(batch)).to(device)
        mask = torch.ones_like(ids)
        kwargs = dict(attention_mask=mask, do_sample=False, eos_token_id=None, pad_token_id=0)

        def timed(n: int) -> float:
            if device != "cpu":
                torch.cuda.synchronize()
            start = time.perf_counter()
            out = model.generate(ids, max_new_tokens=n, **kwargs)
            if device != "cpu":
                torch.cuda.synchronize()
            elapsed = time.perf_counter() - start
            assert out.shape == (batch, prompt + n)
            return elapsed

        timed(2)  # warm-up
        prefill = min(timed(1) for _ in range(repeats))
        full = min(timed(new_tokens) for _ in range(repeats))
        results[str(batch)] = {
            "prefill_tok_s": batch * prompt / prefill,
            "decode_tok_s": batch * (new_tokens - 1) / max(full - prefill, 1e-9),
            "total_s": full,
        }
    emit({"library": library, "dtype": dtype_name, "peak_rss_mb": peak_rss_bytes() / 2**20, "batches": results,
          "device": torch.cuda.get_device_name() if device != "cpu" else "cpu"})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--prompt", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--family", default="llama", choices=sorted(FAMILY_SHAPES))
    parser.add_argument("--worker", nargs=2, metavar=("LIBRARY", "DTYPE"))
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker, args.batches, args.prompt, args.new_tokens, args.repeats, args.device, args.family)
        return
    family_checkpoint(args.family)
    import torch
    print(f"{args.family} (~135M), torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"prompt {args.prompt}, "
          f"new tokens {args.new_tokens} (EOS ignored), best of {args.repeats}")
    summary = {"family": args.family, "ratios": {}}
    for dtype in args.dtypes:
        records = {}
        for library in ("transformers", "formers"):
            command = [sys.executable, __file__, "--worker", library, dtype, "--batches", *map(str, args.batches),
                       "--prompt", str(args.prompt), "--new-tokens", str(args.new_tokens),
                       "--repeats", str(args.repeats), "--device", args.device, "--family", args.family]
            done = subprocess.run(command, capture_output=True, text=True)
            records[library] = collect(done.stdout + done.stderr)
        ours, ref = records["formers"], records["transformers"]
        print(f"\n== {dtype} on {ours['device']} ==  peak RSS: formers {ours['peak_rss_mb']:.0f} MB, "
              f"transformers {ref['peak_rss_mb']:.0f} MB")
        print(f"{'batch':>5} {'metric':>14} {'formers':>10} {'transformers':>13} {'ratio':>7}")
        for batch in map(str, args.batches):
            for metric in ("decode_tok_s", "prefill_tok_s"):
                a, b = ours["batches"][batch][metric], ref["batches"][batch][metric]
                print(f"{batch:>5} {metric:>14} {a:10.1f} {b:13.1f} {a / b:6.2f}x")
                summary["ratios"][f"{dtype}/b{batch}/{metric}"] = [round(a, 2), round(b, 2), round(a / b, 3)]
    print(json.dumps(summary))  # last line: what ../shared/bench-tools/run_quiet.py records


if __name__ == "__main__":
    main()
