"""Peak memory of one GGUF load, measured in a fresh process (run as a script; prints one JSON line).

    python -m tests.gguf.load_memory FILE.gguf [--keep-quantized] [--warmup TINY.gguf]

The baseline is the process's peak RSS (peak_mib: VmHWM, ru_maxrss's figure for this exec) after formers,
torch and the family are imported and, with --warmup, after one load of a tiny GGUF file, so code that
torch and formers initialise lazily on a first load is not charged to the file being measured. The
figure is the growth of the peak over that baseline, and its ratio to the file's size.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import time


def peak_mib() -> float:
    """The process's peak RSS: VmHWM where /proc has it, else ru_maxrss. Both count mapped file pages; ru_maxrss
    also keeps the peak of the process before exec (a child of a large pytest process starts at the parent's
    RSS), VmHWM belongs to the new address space only."""
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def load(path: str, keep_quantized: bool):
    import formers

    folder, name = os.path.split(os.path.abspath(path))
    return formers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, keep_quantized=keep_quantized)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("file")
    parser.add_argument("--keep-quantized", action="store_true")
    parser.add_argument("--warmup")
    args = parser.parse_args()
    import formers  # noqa: F401  (the imports are part of the baseline)
    from formers.quantization import quantized_memory_bytes

    imported = peak_mib()
    if args.warmup:
        load(args.warmup, args.keep_quantized)
    baseline = peak_mib()
    start = time.perf_counter()
    model = load(args.file, args.keep_quantized)
    seconds = time.perf_counter() - start
    grown = peak_mib() - baseline
    size = os.path.getsize(args.file) / 2**20
    print(json.dumps({"file_mib": round(size, 1), "peak_growth_mib": round(grown, 1), "ratio": round(grown / size, 3),
                      "model_mib": round(quantized_memory_bytes(model) / 2**20, 1), "baseline_mib": round(baseline), "imports_mib": round(imported),
                      "load_s": round(seconds, 1)}))


if __name__ == "__main__":
    main()
