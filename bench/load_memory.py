"""Peak RSS while loading a 135M-parameter fp32 checkpoint, formers vs transformers 4.45.2.

Target (issue 2): formers' loading adds at most 1.25x the checkpoint's bytes. Each library loads in a
fresh worker process; we report the RSS after imports, the peak during from_pretrained, and the
increase relative to the checkpoint size. Weights are memory-mapped, so loading alone touches little;
the peak is taken after one forward pass, which makes every weight resident.

    python bench/load_memory.py --gguf [Q4_0 Q8_0]

instead loads the same checkpoint's GGUF files (bench/gguf_weights.py) with keep_quantized=True, each in a
fresh process after a warm-up load of stories260K's file of the type (tests/gguf/load_memory.py measures),
against issue 12's target: peak RSS growth <= 1.2x the file.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (OUT, REPO, SMOLLM_SHAPE, collect, current_rss_bytes, emit, peak_rss_bytes,  # noqa: E402
                    smollm_checkpoint, stories_path)


def tiny_checkpoint() -> Path:
    folder = OUT / "tiny-llama"
    if not (folder / "config.json").exists():
        import transformers
        shape = {**SMOLLM_SHAPE, "num_hidden_layers": 1, "vocab_size": 256}
        transformers.LlamaForCausalLM(transformers.LlamaConfig(**shape)).save_pretrained(folder)
    return folder


def worker(library: str) -> None:
    import torch  # noqa: F401  (imports count toward the baseline, not the load)

    lib = __import__(library)
    folder = smollm_checkpoint()
    tiny = lib.AutoModelForCausalLM.from_pretrained(tiny_checkpoint())  # warm every lazy import first
    del tiny
    before = current_rss_bytes()
    start = time.perf_counter()
    model = lib.AutoModelForCausalLM.from_pretrained(folder)
    load_seconds = time.perf_counter() - start
    after_load = peak_rss_bytes()
    with torch.no_grad():  # a forward pass touches every weight: memory-mapped pages become resident
        logits = model(torch.arange(8)[None]).logits
    emit({"library": library, "load_s": load_seconds, "baseline": before, "after_load": after_load, "peak": peak_rss_bytes(),
          "checksum": float(logits.double().sum())})


def gguf_kept(qtypes: list[str]) -> None:
    """Peak RSS growth of keep_quantized GGUF loads, as a multiple of the file size (target <= 1.2)."""
    import json

    from gguf_weights import QTYPES, gguf_file

    sys.path.insert(0, str(REPO))
    from tests.gguf.convert import convert

    dtype_of = {qtype: dtype for dtype, qtype in QTYPES.items()}
    for qtype in qtypes:
        file = gguf_file(smollm_checkpoint(), dtype_of[qtype])
        warmup = OUT / f"stories260K.{qtype}.gguf"
        if not warmup.exists():
            convert(stories_path(), warmup, qtype)
        done = subprocess.run([sys.executable, "-m", "tests.gguf.load_memory", str(file), "--keep-quantized",
                               "--warmup", str(warmup)], cwd=REPO, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(done.stderr[-2000:])
        r = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{qtype} kept quantized: file {r['file_mib']} MiB, model {r['model_mib']} MiB, peak RSS growth "
              f"{r['peak_growth_mib']} MiB = {r['ratio']:.3f}x the file (target <= 1.2x); load {r['load_s']} s")


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        worker(sys.argv[2])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--gguf":
        gguf_kept(sys.argv[2:] or ["Q4_0", "Q8_0"])
        return
    folder = smollm_checkpoint()
    tiny_checkpoint()
    ckpt = sum(p.stat().st_size for p in folder.glob("*.safetensors"))
    print(f"checkpoint: {ckpt / 2**20:.0f} MiB of safetensors (fp32)")
    results = {}
    for library in ("transformers", "formers"):
        done = subprocess.run([sys.executable, __file__, "--worker", library], capture_output=True, text=True)
        results[library] = r = collect(done.stdout + done.stderr)
        added = r["peak"] - r["baseline"]
        print(f"{library:>12}: RSS after imports {r['baseline'] / 2**20:5.0f} MiB, peak after from_pretrained "
              f"{r['after_load'] / 2**20:5.0f} MiB, peak after a forward {r['peak'] / 2**20:5.0f} MiB; "
              f"added {added / 2**20:5.0f} MiB = {added / ckpt:.2f}x checkpoint; from_pretrained {r['load_s']:.2f} s")
    a, b = results["formers"]["checksum"], results["transformers"]["checksum"]
    assert abs(a - b) <= 1e-3 * max(1.0, abs(b)), f"the two libraries computed different logits ({a} vs {b})"


if __name__ == "__main__":
    main()
