"""`torch.compile(model.generate, fullgraph=True)` (llm_optims.md's "compile entire generate function"):
formers vs transformers 4.45.2, each in its own worker process (separate compile caches), same run.

Model: stories260K (tests/data), greedy, 16 new tokens, the generation config carrying every
setting (as the doc asks). Reported per library: the uncompiled call, the first compiled call (the
compile), the second call (a recompile shows here) and the steady compiled call (best of --repeats),
and whether the compiled output equals the uncompiled one.

    python bench/compile_generate.py [--new-tokens 16] [--repeats 5]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import collect, emit, stories_path  # noqa: E402

STORIES = stories_path()
PROMPT = "Relativity states "


def worker(library: str, new_tokens: int, repeats: int) -> None:
    import torch

    lib = __import__(library)
    if library == "transformers":
        lib.logging.set_verbosity_error()
    tokenizer = lib.AutoTokenizer.from_pretrained(STORIES)
    model = lib.AutoModelForCausalLM.from_pretrained(STORIES)
    model.generation_config.update(max_new_tokens=new_tokens, pad_token_id=0)
    inputs = tokenizer(PROMPT, return_tensors="pt")

    def timed(generate) -> tuple[float, torch.Tensor]:
        start = time.perf_counter()
        out = generate(**inputs)
        return time.perf_counter() - start, out

    for _ in range(3):  # warm-up (lazy imports, allocator)
        timed(model.generate)
    eager_s, expected = min((timed(model.generate) for _ in range(repeats)), key=lambda r: r[0])
    compiled = torch.compile(model.generate, fullgraph=True)
    first_s, first = timed(compiled)
    second_s, _ = timed(compiled)
    steady_s = min(timed(compiled)[0] for _ in range(repeats))
    emit({"eager_ms": eager_s * 1e3, "compile_s": first_s, "second_ms": second_s * 1e3,
          "steady_ms": steady_s * 1e3, "same_tokens": bool(torch.equal(first, expected))})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--worker", choices=["formers", "transformers"])
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.new_tokens, args.repeats)
        return
    results = {}
    for library in ("formers", "transformers"):
        with tempfile.TemporaryDirectory() as cache:  # a cold inductor cache: the first call really compiles
            run = subprocess.run([sys.executable, __file__, "--worker", library, "--new-tokens", str(args.new_tokens),
                                  "--repeats", str(args.repeats)], capture_output=True, text=True, check=False,
                                 env={**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache})
        results[library] = collect(run.stdout + run.stderr)
    ours, theirs = results["formers"], results["transformers"]
    print(f"stories260K, {args.new_tokens} new tokens, greedy, torch.compile(model.generate, fullgraph=True)")
    print(f"{'':<26}{'formers':>12}{'transformers':>14}{'transformers/formers':>22}")
    for key, label in (("eager_ms", "uncompiled call (ms)"), ("compile_s", "first call: compile (s)"),
                       ("second_ms", "second call (ms)"), ("steady_ms", "steady call (ms)")):
        print(f"{label:<26}{ours[key]:>12.1f}{theirs[key]:>14.1f}{theirs[key] / ours[key]:>21.2f}x")
    print(f"compiled tokens == uncompiled: formers {ours['same_tokens']}, transformers {theirs['same_tokens']}")
    print(f"speed-up of compiling, steady vs uncompiled: formers {ours['eager_ms'] / ours['steady_ms']:.2f}x, "
          f"transformers {theirs['eager_ms'] / theirs['steady_ms']:.2f}x")


if __name__ == "__main__":
    main()
