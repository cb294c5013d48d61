"""Decode speed on the CPU of checkpoints quantized by GPTQ or AWQ: formers (weights dequantized at load; or
`keep_quantized=True`: llama.cpp blocks, formers' decoding kernels) vs transformers 4.45.2 through optimum +
auto-gptq (its CPU path; 4.45.2 runs AWQ only on a GPU), on a SmolLM-135M-shaped Llama whose block layers are
symmetric 4-bit GPTQ (group 64, the usual sym=True kind: kept as Q4_0) or 4-bit AWQ (group 64: SmolLM's 576
inputs are no multiple of AutoAWQ's default 128; kept as Q8_0). Random codes written by
tests/quantization/gptq_writer.py / awq_writer.py: speed does not depend on them. float32 activations, batch 1,
greedy, EOS ignored; also the peak RSS of each worker process.

    python bench/prequantized.py [--format gptq|awq] [--prompt 128] [--new-tokens 32] [--rounds 3]

The last line is a JSON summary (what ../shared/bench-tools/run_quiet.py records).
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import collect, emit, peak_rss_bytes, smollm_checkpoint  # noqa: E402

IMPLS = {"formers": ("formers", {}), "formers-kept": ("formers", {"keep_quantized": True}),
         "transformers": ("transformers", {"device_map": "cpu"})}


FOLDERS = {"gptq": "smollm135m-gptq-4bit-g64-sym", "awq": "smollm135m-awq-4bit-g64"}


def checkpoint(form: str) -> Path:
    """The 4-bit GPTQ or AWQ folder of the SmolLM-135M shape, written once under bench/out."""
    folder = REPO / "bench" / "out" / FOLDERS[form]
    if not (folder / "config.json").exists():
        sys.path.insert(0, str(REPO))
        from tests.quantization.awq_writer import awq_checkpoint
        from tests.quantization.gptq_writer import gptq_checkpoint

        staging = folder.with_name(folder.name + ".partial")
        if staging.exists():
            import shutil

            shutil.rmtree(staging)
        if form == "gptq":
            gptq_checkpoint(smollm_checkpoint(), staging, bits=4, group_size=64, act_order=False, symmetric=True)
        else:
            awq_checkpoint(smollm_checkpoint(), staging, group_size=64)
        staging.rename(folder)
    return folder


def worker(impl: str, args) -> None:
    import torch

    library, options = IMPLS[impl]
    lib = __import__(library)
    model = lib.AutoModelForCausalLM.from_pretrained(checkpoint(args.format), torch_dtype=torch.float32,
                                                     **options).eval()
    ids = torch.randint(3, model.config.vocab_size, (1, args.prompt), generator=torch.Generator().manual_seed(1))
    kwargs = {"attention_mask": torch.ones_like(ids), "do_sample": False, "eos_token_id": None, "pad_token_id": 0}

    def timed(new_tokens: int) -> float:
        start = time.perf_counter()
        model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, **kwargs)
        return time.perf_counter() - start

    timed(2)  # warm-up
    prefill = min(timed(1) for _ in range(2))
    full = min(timed(args.new_tokens) for _ in range(2))
    emit({"impl": impl, "prefill_tok_s": args.prompt / prefill,
          "decode_tok_s": (args.new_tokens - 1) / max(full - prefill, 1e-9),
          "peak_rss_mb": peak_rss_bytes() / 2 ** 20})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--format", default="gptq", choices=list(FOLDERS))
    parser.add_argument("--impl", nargs="+", default=None, choices=list(IMPLS),
                        help="default: all (for AWQ, formers' two: 4.45.2 loads AWQ only on a GPU)")
    parser.add_argument("--prompt", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="worker processes per implementation, alternated")
    parser.add_argument("--worker", default=None)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args)
        return
    args.impl = args.impl or [impl for impl in IMPLS if args.format == "gptq" or impl != "transformers"]
    import json

    import torch
    from machine import describe

    machine = describe(torch.get_num_threads())
    checkpoint(args.format)
    print(f"{FOLDERS[args.format]} (SmolLM-135M shape), {machine['cpu']}, threads {machine['threads']}, read bandwidth "
          f"{machine['read_gbs']} GB/s ({machine['bandwidth_probe']}); prompt {args.prompt}, new tokens "
          f"{args.new_tokens}, {args.rounds} round(s)")
    runs: dict[str, list[dict]] = {impl: [] for impl in args.impl}
    for _ in range(args.rounds):
        for impl in args.impl:
            done = subprocess.run([sys.executable, __file__, "--worker", impl, "--format", args.format, "--prompt",
                                   str(args.prompt), "--new-tokens", str(args.new_tokens)],
                                  capture_output=True, text=True)
            runs[impl].append(collect(done.stdout + done.stderr))
    summary = {"format": args.format, "machine": machine, "prompt": args.prompt, "new_tokens": args.new_tokens,
               "results": {}}
    print(f"{'impl':>13} {'decode tok/s (median; runs)':>34} {'prefill tok/s':>13} {'RSS MB':>7}")
    for impl, records in runs.items():
        decode = [r["decode_tok_s"] for r in records]
        prefill = statistics.median(r["prefill_tok_s"] for r in records)
        rss = max(r["peak_rss_mb"] for r in records)
        print(f"{impl:>13} {statistics.median(decode):8.2f} ({', '.join(f'{d:.2f}' for d in decode)}) "
              f"{prefill:13.1f} {rss:7.0f}")
        summary["results"][impl] = {"decode_tok_s": [round(d, 2) for d in decode], "prefill_tok_s": round(prefill, 1),
                                    "decode_median": round(statistics.median(decode), 2), "peak_rss_mb": round(rss)}
    theirs = summary["results"].get("transformers")
    for impl in ("formers", "formers-kept"):
        if theirs and impl in summary["results"]:
            print(f"  {impl} / transformers: decode "
                  f"{summary['results'][impl]['decode_median'] / theirs['decode_median']:.1f}x")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
