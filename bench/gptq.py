"""GPTQ checkpoint decode speed on the CPU: formers (weights dequantized at load; or `keep_quantized=True`: Q4_0
blocks, formers' decoding kernels) vs transformers 4.45.2 through optimum + auto-gptq (its CPU path), on a
SmolLM-135M-shaped Llama whose block layers are symmetric 4-bit GPTQ (group 64, the usual sym=True kind; random
codes written by tests/quantization/gptq_writer.py: speed does not depend on them). float32 activations, batch
1, greedy, EOS ignored; also the peak RSS of each worker process.

    python bench/gptq.py [--prompt 128] [--new-tokens 32] [--rounds 3]

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


def checkpoint() -> Path:
    """The 4-bit GPTQ folder of the SmolLM-135M shape, written once under bench/out."""
    folder = REPO / "bench" / "out" / "smollm135m-gptq-4bit-g64-sym"
    if not (folder / "config.json").exists():
        sys.path.insert(0, str(REPO))
        from tests.quantization.gptq_writer import gptq_checkpoint

        staging = folder.with_name(folder.name + ".partial")
        if staging.exists():
            import shutil

            shutil.rmtree(staging)
        gptq_checkpoint(smollm_checkpoint(), staging, bits=4, group_size=64, act_order=False, symmetric=True)
        staging.rename(folder)
    return folder


def worker(impl: str, args) -> None:
    import torch

    library, options = IMPLS[impl]
    lib = __import__(library)
    model = lib.AutoModelForCausalLM.from_pretrained(checkpoint(), torch_dtype=torch.float32, **options).eval()
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
    parser.add_argument("--impl", nargs="+", default=list(IMPLS), choices=list(IMPLS))
    parser.add_argument("--prompt", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="worker processes per implementation, alternated")
    parser.add_argument("--worker", default=None)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args)
        return
    import json

    import torch
    from machine import describe

    machine = describe(torch.get_num_threads())
    checkpoint()
    print(f"GPTQ 4-bit g64 sym, SmolLM-135M shape, {machine['cpu']}, threads {machine['threads']}, read bandwidth "
          f"{machine['read_gbs']} GB/s ({machine['bandwidth_probe']}); prompt {args.prompt}, new tokens "
          f"{args.new_tokens}, {args.rounds} round(s)")
    runs: dict[str, list[dict]] = {impl: [] for impl in args.impl}
    for _ in range(args.rounds):
        for impl in args.impl:
            done = subprocess.run([sys.executable, __file__, "--worker", impl, "--prompt", str(args.prompt),
                                   "--new-tokens", str(args.new_tokens)], capture_output=True, text=True)
            runs[impl].append(collect(done.stdout + done.stderr))
    summary = {"machine": machine, "prompt": args.prompt, "new_tokens": args.new_tokens, "results": {}}
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
