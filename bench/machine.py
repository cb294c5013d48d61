"""What a bench figure needs beside it: the CPU model, a STREAM-like read bandwidth and the matmul peak.

The read bandwidth comes from ../shared/bench-tools/stream.c when it and gcc are present (the project's
reference probe), else from torch (sum over a 1 GiB tensor, a little below STREAM). Decode roofline =
bandwidth / weight bytes read per token.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import time
from pathlib import Path

STREAM_C = Path(__file__).resolve().parents[2] / "shared" / "bench-tools" / "stream.c"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def read_bandwidth_gbs(threads: int) -> tuple[float, str]:
    """(best read GB/s with `threads` threads, how it was measured)."""
    if STREAM_C.exists() and shutil.which("gcc"):
        binary = Path("/tmp") / f"formers-stream-{os.getuid()}"
        if not binary.exists():
            subprocess.run(["gcc", "-O3", "-march=native", "-fopenmp", str(STREAM_C), "-o", str(binary)], check=True)
        done = subprocess.run([str(binary), "1024", "10"], capture_output=True, text=True, check=True,
                              env={**os.environ, "OMP_NUM_THREADS": str(threads)})
        record = json.loads(done.stdout.strip().splitlines()[-1])
        return float(record["read_GBs_best"]), "stream.c read"
    import torch

    x = torch.ones(1 << 28)  # 1 GiB of float32
    best = float("inf")
    for _ in range(6):
        start = time.perf_counter()
        x.sum()
        best = min(best, time.perf_counter() - start)
    return x.numel() * 4 / best / 1e9, "torch sum"


def matmul_peak_gflops(dtype_name: str, size: int = 1024, repeats: int = 8) -> float:
    import torch

    dtype = getattr(torch, dtype_name)
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best / 1e9


def describe(threads: int) -> dict:
    bandwidth, method = read_bandwidth_gbs(threads)
    return {"cpu": cpu_model(), "threads": threads, "read_gbs": round(bandwidth, 1), "bandwidth_probe": method,
            "matmul_gflops": {d: round(matmul_peak_gflops(d), 1) for d in ("float32", "bfloat16")}}


if __name__ == "__main__":
    import torch

    print(json.dumps(describe(torch.get_num_threads())))
