"""Decode and prefill speed of formers vs transformers 4.45.2 vs llama.cpp on a ~135M-parameter model
(default: a SmolLM-135M-shaped Llama; `--family gemma2|phi3|gpt2|mixtral` for the others, see common.FAMILY_SHAPES;
`--shape smollm-360m` for the 360M Llama shape).

Each (implementation, dtype) runs in its own worker process, so peak RSS is that library's alone; `--rounds`
repeats the whole set, alternating the processes, and the driver prints every run and the median. EOS is
ignored so every run produces exactly --new-tokens tokens.

    python bench/generate.py [--impl formers transformers llama.cpp] [--dtypes float32 bfloat16 int8 int4] \
        [--gguf] [--batches 1 8] [--prompt 128] [--new-tokens 128] [--rounds 3]

dtypes: float32 / bfloat16 load the safetensors checkpoint (with --gguf, formers loads the GGUF F32 / BF16
file instead); int8 / int4 are the GGUF Q8_0 / Q4_0 files, which formers keeps quantized
(keep_quantized=True); ao-int8 / ao-int8-dynamic load the safetensors checkpoint with
TorchAoConfig("int8_weight_only" / "int8_dynamic_activation_int8_weight"), float32 activations (transformers
through torchao, formers with its own kernels). llama.cpp (llama-cpp-python, a bench-only extra: see
bench/README.md) always reads the GGUF file of the dtype, written once by bench/gguf_weights.py with the writer formers' tests use; it
runs batch 1 only. The roofline of a dtype is the measured read bandwidth divided by the bytes of its
weights read per token (the GGUF tensor bytes: every matrix once, the tied head counted once). A prefill's
"of peak" is its FLOPs (prefill_flops_per_token: projections, causal attention, the head once) per second over
the measured matmul peak of the dtype (a 1024^3 GEMM), for float32 and bfloat16 (bfloat16: the higher of its probe
and float32's, since a CPU without bfloat16 instructions computes it in float32).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import FAMILY_SHAPES, SHAPES, collect, emit, family_checkpoint, peak_rss_bytes  # noqa: E402

IMPLS = ("formers", "transformers", "llama.cpp")
DTYPES = ("float32", "bfloat16", "int8", "int4", "ao-int8", "ao-int8-dynamic")
TORCHAO = {"ao-int8": "int8_weight_only", "ao-int8-dynamic": "int8_dynamic_activation_int8_weight"}


def _runs(impl: str, dtype: str, batches: list[int]) -> list[int]:
    """The batch sizes `impl` runs for `dtype` (transformers has no kept-quantized GGUF path, llama.cpp runs batch
    1 and no torchao scheme)."""
    if (impl == "transformers" and dtype in ("int8", "int4")) or (impl == "llama.cpp" and dtype in TORCHAO):
        return []
    return [b for b in batches if b == 1] if impl == "llama.cpp" else batches


def _rate(tokens: int, seconds: float) -> float:
    """tokens / seconds; nan when the decode time came out non-positive (a loaded machine timed prefill longer
    than the whole run), rather than an absurd figure."""
    return tokens / seconds if seconds > 0 else float("nan")


def _torch_worker(library: str, dtype_name: str, args, checkpoint: Path) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    lib = __import__(library)
    kwargs = {}
    if dtype_name in ("int8", "int4") or (args.gguf and library == "formers"):
        from gguf_weights import gguf_file

        kwargs = {"gguf_file": str(gguf_file(checkpoint, dtype_name))}
        if dtype_name in ("int8", "int4"):
            kwargs["keep_quantized"] = True
    if dtype_name in TORCHAO:
        kwargs = {"quantization_config": lib.TorchAoConfig(TORCHAO[dtype_name]), "device_map": "cpu"}
    dtype = torch.float32 if dtype_name in ("int8", "int4", *TORCHAO) else getattr(torch, dtype_name)
    model = lib.AutoModelForCausalLM.from_pretrained(checkpoint, torch_dtype=dtype, **kwargs)
    results = {}
    for batch in _runs(library, dtype_name, args.batches):
        ids = torch.randint(3, model.config.vocab_size, (batch, args.prompt), generator=torch.Generator().manual_seed(batch))
        options = dict(attention_mask=torch.ones_like(ids), do_sample=False, eos_token_id=None, pad_token_id=0)

        def timed(n: int) -> float:
            start = time.perf_counter()
            out = model.generate(ids, max_new_tokens=n, **options)
            elapsed = time.perf_counter() - start
            assert out.shape == (batch, args.prompt + n)
            return elapsed

        timed(2)  # warm-up (also builds formers' kernels on a machine's first run)
        prefill = min(timed(1) for _ in range(args.repeats))
        full = min(timed(args.new_tokens) for _ in range(args.repeats))
        results[str(batch)] = {"prefill_tok_s": batch * args.prompt / prefill,
                               "decode_tok_s": _rate(batch * (args.new_tokens - 1), full - prefill)}
    return results


def _llama_cpp_worker(dtype_name: str, args, checkpoint: Path) -> dict:
    import numpy as np
    from llama_cpp import Llama
    from gguf_weights import gguf_file

    llm = Llama(model_path=str(gguf_file(checkpoint, dtype_name)), n_ctx=args.prompt + args.new_tokens + 8,
                n_batch=args.prompt, n_threads=args.threads, n_threads_batch=args.threads, verbose=False)
    rng = np.random.default_rng(1)
    prompt = rng.integers(3, llm.n_vocab(), args.prompt).tolist()

    vocab = llm.n_vocab()

    def next_token() -> int:  # greedy over the last position's logits (the only row llama.cpp keeps)
        return int(np.argmax(np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(vocab,))))

    def timed(n: int) -> tuple[float, float]:
        """(prefill seconds, seconds for all n tokens): greedy, one eval per new token."""
        llm.reset()
        start = time.perf_counter()
        llm.eval(prompt)
        token = next_token()
        prefilled = time.perf_counter()
        for _ in range(n - 1):
            llm.eval([token])
            token = next_token()
        return prefilled - start, time.perf_counter() - start

    timed(2)
    prefill = min(timed(1)[0] for _ in range(args.repeats))
    full = min(timed(args.new_tokens)[1] for _ in range(args.repeats))
    return {"1": {"prefill_tok_s": args.prompt / prefill,
                  "decode_tok_s": _rate(args.new_tokens - 1, full - prefill)}}


def worker(impl: str, dtype_name: str, args) -> None:
    checkpoint = family_checkpoint(args.family, args.shape)
    if impl == "llama.cpp":
        results = _llama_cpp_worker(dtype_name, args, checkpoint)
    else:
        results = _torch_worker(impl, dtype_name, args, checkpoint)
    emit({"impl": impl, "dtype": dtype_name, "peak_rss_mb": peak_rss_bytes() / 2**20, "batches": results})


def weight_bytes(checkpoint: Path, dtype_name: str) -> int:
    """Bytes of weights one decode step reads: the GGUF file's tensors (the tied head once)."""
    import gguf

    from gguf_weights import gguf_file

    return sum(int(t.n_bytes) for t in gguf.GGUFReader(str(gguf_file(checkpoint, dtype_name))).tensors)


def prefill_flops_per_token(checkpoint: Path, prompt: int) -> float:
    """Multiply-add FLOPs (x2) per prompt token of a Llama prefill: the layers' projections, the causal attention
    products (on average (prompt + 1) / 2 keys a query) and the LM head once for the last position."""
    config = json.loads((checkpoint / "config.json").read_text())
    hidden, layers, heads = config["hidden_size"], config["num_hidden_layers"], config["num_attention_heads"]
    head_dim = hidden // heads
    kv = config.get("num_key_value_heads", heads) * head_dim
    projections = hidden * (2 * hidden + 2 * kv) + 3 * hidden * config["intermediate_size"]
    attention = 2 * heads * head_dim * (prompt + 1) / 2  # q.k and p.v per key
    return 2 * (layers * (projections + attention) + hidden * config["vocab_size"] / prompt)


def matmul_peak(probes: dict[str, float], dtype: str) -> float | None:
    """The matmul peak a prefill of `dtype` is measured against: its dtype's GEMM probe; for bfloat16 the higher of
    its probe and float32's (a CPU without a bfloat16 product, AVX2, computes bfloat16 in float32 in every
    implementation, while torch's bfloat16 GEMM there runs at ~1 GFLOP/s)."""
    if dtype == "bfloat16":
        return max(probes.get("bfloat16", 0.0), probes.get("float32", 0.0)) or None
    return probes.get(dtype)


def _print_ratios(results: dict, dtype: str, args) -> None:
    """formers' median decode speed over each other implementation's, per batch (the issue's targets: >= 1 vs
    llama.cpp at batch 1, >= 1.5 vs transformers at batch 8)."""
    for batch in args.batches:
        ours = results.get(f"formers/{dtype}/b{batch}")
        for other in ("transformers", "llama.cpp"):
            theirs = results.get(f"{other}/{dtype}/b{batch}")
            if ours and theirs:
                print(f"  formers / {other}, batch {batch}: decode {ours['decode_median'] / theirs['decode_median']:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--impl", nargs="+", default=["transformers", "formers"], choices=IMPLS)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"], choices=DTYPES)
    parser.add_argument("--gguf", action="store_true", help="formers loads float32/bfloat16 from the GGUF file too")
    parser.add_argument("--prompt", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2, help="best of this many generate() calls per worker")
    parser.add_argument("--rounds", type=int, default=1, help="worker processes per (impl, dtype), alternated")
    parser.add_argument("--threads", type=int, default=None, help="threads of every implementation (default: torch's)")
    parser.add_argument("--family", default="llama", choices=sorted(FAMILY_SHAPES))
    parser.add_argument("--shape", default=None, choices=sorted(SHAPES), help="another Llama shape (smollm-360m)")
    parser.add_argument("--worker", nargs=2, metavar=("IMPL", "DTYPE"))
    args = parser.parse_args()
    import torch

    args.threads = args.threads or torch.get_num_threads()
    if args.worker:
        worker(*args.worker, args)
        return
    from machine import describe

    checkpoint = family_checkpoint(args.family, args.shape)
    machine = describe(args.threads)
    print(f"{args.shape or args.family}, torch {torch.__version__}, {machine['cpu']}, threads {args.threads}, "
          f"read bandwidth {machine['read_gbs']} GB/s ({machine['bandwidth_probe']}), matmul peak "
          f"{machine['matmul_gflops']['float32']} GFLOP/s fp32 / {machine['matmul_gflops']['bfloat16']} bf16; "
          f"prompt {args.prompt}, new tokens {args.new_tokens} (EOS ignored), best of {args.repeats}, "
          f"{args.rounds} round(s)")
    records: dict[tuple[str, str], list[dict]] = {}
    for _ in range(args.rounds):
        for dtype in args.dtypes:
            for impl in args.impl:
                if not _runs(impl, dtype, args.batches):
                    continue
                command = [sys.executable, __file__, "--worker", impl, dtype, "--batches", *map(str, args.batches),
                           "--prompt", str(args.prompt), "--new-tokens", str(args.new_tokens),
                           "--repeats", str(args.repeats), "--family", args.family, "--threads", str(args.threads)]
                if args.shape:
                    command += ["--shape", args.shape]
                if args.gguf:
                    command.append("--gguf")
                done = subprocess.run(command, capture_output=True, text=True)
                records.setdefault((impl, dtype), []).append(collect(done.stdout + done.stderr))
    summary = {"shape": args.shape or args.family, "machine": machine, "prompt": args.prompt,
               "new_tokens": args.new_tokens, "gguf": args.gguf, "results": {}}
    flops = prefill_flops_per_token(checkpoint, args.prompt) if args.family == "llama" else None
    for dtype in args.dtypes:
        per_token = weight_bytes(checkpoint, dtype) if args.family == "llama" and dtype not in TORCHAO else None
        peak = matmul_peak(machine["matmul_gflops"], dtype) if flops else None
        roofline = machine["read_gbs"] * 1e9 / per_token if per_token else None
        line = f"\n== {dtype}"
        if per_token:
            line += f": {per_token / 1e6:.0f} MB of weights per token, roofline {roofline:.1f} tok/s"
        print(line)
        if peak:
            line = f"   prefill: {flops / 1e6:.0f} MFLOP per prompt token, matmul peak {peak} GFLOP/s"
            print(line)
        print(f"{'impl':>13} {'batch':>5} {'decode tok/s (median; runs)':>34} {'GB/s':>6} {'roofline':>8} "
              f"{'prefill tok/s':>13} {'of peak':>7} {'RSS MB':>7}")
        for impl in args.impl:
            for batch in map(str, _runs(impl, dtype, args.batches)):
                runs = records.get((impl, dtype), [])
                decode = [r["batches"][batch]["decode_tok_s"] for r in runs]
                prefill = [r["batches"][batch]["prefill_tok_s"] for r in runs]
                med = statistics.median(decode)
                gbs = med * per_token / 1e9 / int(batch) if per_token else float("nan")
                frac = med / int(batch) / roofline if roofline else float("nan")
                prefill_med = statistics.median(prefill)
                of_peak = prefill_med * flops / 1e9 / peak if peak else float("nan")
                print(f"{impl:>13} {batch:>5} {med:8.1f} ({', '.join(f'{d:.1f}' for d in decode)}) "
                      f"{gbs:6.1f} {frac:7.0%} {prefill_med:13.1f} {of_peak:7.0%} "
                      f"{max(r['peak_rss_mb'] for r in runs):7.0f}")
                summary["results"][f"{impl}/{dtype}/b{batch}"] = {
                    "decode_tok_s": [round(d, 2) for d in decode], "decode_median": round(med, 2),
                    "prefill_tok_s": [round(p, 1) for p in prefill], "weight_gbs": round(gbs, 2),
                    "roofline_fraction": round(frac, 3), "prefill_peak_fraction": round(of_peak, 3)}
        _print_ratios(summary["results"], dtype, args)
    print(json.dumps(summary))  # last line: what ../shared/bench-tools/run_quiet.py records


if __name__ == "__main__":
    main()
