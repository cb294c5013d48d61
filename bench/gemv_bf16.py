"""bfloat16 GEMV microbenchmark: formers' dot-product kernel (AVX512_BF16, bfloat16 inputs) against its widening
path (the same weights with float32 inputs: every weight widened to float32, then an fma) and torch's F.linear.

Each figure streams the weights from memory, as a decode step does: the timed loop cycles through enough
copies of the weight to overflow the last-level cache, held on transparent huge pages as formers' decode holds
them (kernels/decode.py pack_for_decoding). Prints GB/s of weights read and ns per weight.

    python bench/gemv_bf16.py [--threads 1 2] [--rows 1 8] [--seconds 0.3]
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from formers.kernels import build
from formers.kernels.decode import _huge_page_block

SHAPES = [(576, 576), (1536, 576), (576, 1536), (49152, 576)]  # (N out, K in): attention, MLP up/down, LM head
STREAM_BYTES = 128 << 20  # copies of a weight cycled through: four times this CPU kind's 32 MiB L3


def seconds_per_call(fn, weights: list[torch.Tensor], budget: float) -> float:
    """Best of three: mean seconds of one call over a loop of about `budget` seconds, cycling the weights."""
    for w in weights:
        fn(w)
    start, calls = time.perf_counter(), 0
    while time.perf_counter() - start < budget / 10:
        fn(weights[calls % len(weights)])
        calls += 1
    calls = max(len(weights), calls * 10)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for i in range(calls):
            fn(weights[i % len(weights)])
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--seconds", type=float, default=0.3)
    args = parser.parse_args()
    kernels = build.load()
    assert kernels is not None, "formers' C++ kernels could not be built here"
    print(f"kernels isa {kernels.isa()}, torch {torch.__version__}")
    print(f"{'threads':>7} {'M':>2} {'N x K':>12} {'path':>9} {'GB/s':>7} {'ns/weight':>9} {'us/call':>8}")
    with torch.no_grad():
        for threads in args.threads:
            torch.set_num_threads(threads)
            for n, k in SHAPES:
                copies = max(2, -(-STREAM_BYTES // (n * k * 2)))
                block = _huge_page_block(copies * n * k * 2).view(torch.bfloat16).view(copies, n, k)
                block.copy_(torch.randn(1, n, k).bfloat16().expand(copies, n, k))
                weights = list(block)
                for m in args.rows:
                    x = torch.randn(m, k).bfloat16()
                    xf = x.float()
                    paths = {"new bf16": lambda w: kernels.gemv(x, w, None),
                             "old widen": lambda w: kernels.gemv(xf, w, None),
                             "torch": lambda w: F.linear(x, w)}
                    for name, fn in paths.items():
                        t = seconds_per_call(fn, weights, args.seconds)
                        print(f"{threads:>7} {m:>2} {f'{n}x{k}':>12} {name:>9} {n * k * 2 / t / 1e9:>7.1f} "
                              f"{t / (n * k) * 1e9:>9.4f} {t * 1e6:>8.1f}", flush=True)
                del weights, block


if __name__ == "__main__":
    main()
