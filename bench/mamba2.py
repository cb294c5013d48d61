"""Mamba-2 (~151M, mamba2-130m's layer; common.FAMILY_SHAPES["mamba2"]) beside transformers 4.45.2 and a Llama of
the same size (the SmolLM-135M shape):

  prefill: tok/s of one forward over a `--prompt`-token prompt (batch 1), formers vs transformers 4.45.2;
           4.45.2's torch path materialises [chunks, chunk, chunk, heads, state] products (~6.4 GB at 2048
           tokens; minutes per forward on a CPU), so it runs `--ref-prefill-runs` times (default once, no
           warm-up: at that length the first call's overhead is noise); formers contracts them with einsum;
  decode:  median ms per generated token (batch 1, greedy) after a context of each `--contexts` length for
           formers' Mamba2 and formers' Llama (a state-space model's step does not grow with the context,
           attention's does), and formers' vs 4.45.2's Mamba2 at context `--ref-context` (4.45.2's prefill
           at longer contexts takes minutes; its decode step does not depend on the context either).

`--layers N` builds (once, with the oracle) a checkpoint of the same layer shape with N Mamba-2 layers, and a
Llama with the same share of the full shapes' layers (30 Llama layers per 20 Mamba-2 layers, rounded); both
libraries load the same checkpoint. Every layer costs the same, so the per-layer comparison is the full
model's with the embedding and LM head weighing more (both libraries run them). It exists because 4.45.2's
prefill at 2048 tokens costs ~18 s CPU and ~10 GB per layer on a 2-core machine: 20 layers take minutes.
Each worker reports its peak RSS (VmHWM).

Each measurement runs in its own worker process. The last line is a JSON summary.

    python bench/mamba2.py [--prompt 2048] [--layers N] [--contexts 128 512 2048] [--new-tokens 16] [--device cpu]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import FAMILY_SHAPES, OUT, collect, emit, family_checkpoint, peak_rss_bytes

FULL_LAYERS = {family: FAMILY_SHAPES[family][1]["num_hidden_layers"] for family in ("mamba2", "llama")}


def layer_counts(mamba2_layers: int | None) -> dict[str, int]:
    """Layers of each family: the full shapes', or `mamba2_layers` and the Llama's same share of its own."""
    if mamba2_layers is None:
        return dict(FULL_LAYERS)
    share = mamba2_layers / FULL_LAYERS["mamba2"]
    return {"mamba2": mamba2_layers, "llama": max(1, round(share * FULL_LAYERS["llama"]))}


def checkpoint(family: str, layers: int) -> Path:
    """The full-shape checkpoint of `family`, or one of the same layer shape with `layers` layers (built once)."""
    if layers == FULL_LAYERS[family]:
        return family_checkpoint(family)
    folder = OUT / f"{family}-135m-shaped-{layers}-layers"
    if not (folder / "config.json").exists():
        import torch
        import transformers

        model_type, shape = FAMILY_SHAPES[family]
        torch.manual_seed(0)
        config = transformers.AutoConfig.for_model(model_type, **dict(shape, num_hidden_layers=layers))
        transformers.AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    return folder


def _sync(device: str) -> None:
    if device != "cpu":
        import torch
        torch.cuda.synchronize()


def _load(library: str, folder: str, device: str):
    import torch
    lib = __import__(library)
    model = lib.AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float32, device_map=device)
    return model.eval()


def prefill_worker(library: str, folder: str, prompt: int, runs: int, warm_up: bool, device: str) -> None:
    import torch
    model = _load(library, folder, device)
    ids = torch.randint(3, model.config.vocab_size, (1, prompt), generator=torch.Generator().manual_seed(0)).to(device)
    times = []
    with torch.no_grad():
        for _ in range(runs + warm_up):
            _sync(device)
            start = time.perf_counter()
            model(ids)
            _sync(device)
            times.append(time.perf_counter() - start)
    emit({"prefill_tok_s": prompt / min(times[warm_up:]), "runs": runs, "warm_up": warm_up,
          "peak_rss_gb": round(peak_rss_bytes() / 2**30, 2)})


class StepClock:
    """A logits processor that only notes when each step's logits arrive: the gaps between calls are the
    decode steps (the first call follows the prefill)."""

    def __init__(self, device: str):
        self.device, self.stamps = device, []

    def __call__(self, input_ids, scores):
        _sync(self.device)
        self.stamps.append(time.perf_counter())
        return scores

    def ms_per_step(self) -> float:
        gaps = [b - a for a, b in zip(self.stamps, self.stamps[1:])]
        return 1000 * sorted(gaps)[len(gaps) // 2]  # median: robust to a noisy neighbour


def decode_worker(library: str, folder: str, contexts: list[int], new_tokens: int, device: str) -> None:
    import torch
    model = _load(library, folder, device)
    lib = __import__(library)
    results = {}
    for context in contexts:
        ids = torch.randint(3, model.config.vocab_size, (1, context), generator=torch.Generator().manual_seed(1)).to(device)
        clock = StepClock(device)
        model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens + 1, do_sample=False,
                       eos_token_id=None, pad_token_id=0, logits_processor=lib.LogitsProcessorList([clock]))
        results[str(context)] = clock.ms_per_step()
    emit({"decode_ms_per_token": results, "peak_rss_gb": round(peak_rss_bytes() / 2**30, 2)})


def run_worker(*args: str) -> dict:
    done = subprocess.run([sys.executable, __file__, "--worker", *args], check=False, capture_output=True, text=True)
    return collect(done.stdout + done.stderr)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompt", type=int, default=2048)
    parser.add_argument("--layers", type=int, default=None,
                        help=f"Mamba-2 layers (default: the full shape's {FULL_LAYERS['mamba2']}); see the docstring")
    parser.add_argument("--contexts", type=int, nargs="+", default=[128, 512, 2048])
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2, help="formers prefill runs (after one warm-up)")
    parser.add_argument("--ref-prefill-runs", type=int, default=1, help="4.45.2 prefill runs (no warm-up)")
    parser.add_argument("--ref-context", type=int, default=128, help="context of the 4.45.2 decode comparison")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["prefill", "decode"])
    parser.add_argument("--worker", nargs="+")
    args = parser.parse_args()
    if args.worker:
        if args.threads:
            import torch
            torch.set_num_threads(args.threads)
        kind, library, folder = args.worker
        if kind == "prefill":
            reference = library == "transformers"
            prefill_worker(library, folder, args.prompt, args.ref_prefill_runs if reference else args.repeats,
                           not reference, args.device)
        else:
            decode_worker(library, folder, args.contexts, args.new_tokens, args.device)
        return
    import torch
    layers = layer_counts(args.layers)
    folders = {family: str(checkpoint(family, count)) for family, count in layers.items()}
    print(f"mamba2 ({layers['mamba2']} layers of mamba2-130m's shape; {FULL_LAYERS['mamba2']}: ~151M) vs llama "
          f"({layers['llama']} layers of SmolLM-135M's; {FULL_LAYERS['llama']}: ~135M), torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, device {args.device}, worker threads {args.threads or 'default'}")
    if args.layers is not None:
        print("  fewer layers than the full shapes: every layer costs the same, so per-layer ratios hold; the "
              "embedding and LM head (run by both libraries) weigh more than in the full model")
    common = ["--device", args.device, "--repeats", str(args.repeats), "--threads", str(args.threads),
              "--ref-prefill-runs", str(args.ref_prefill_runs)]
    summary: dict = {"prefill_prompt": args.prompt, "layers": layers}
    if "prefill" not in args.skip:
        results = {lib: run_worker("prefill", lib, folders["mamba2"], "--prompt", str(args.prompt), *common)
                   for lib in ("transformers", "formers")}
        rates = {lib: result["prefill_tok_s"] for lib, result in results.items()}
        peaks = {lib: result["peak_rss_gb"] for lib, result in results.items()}
        ratio = rates["formers"] / rates["transformers"]
        print(f"prefill, prompt {args.prompt}: formers {rates['formers']:.0f} tok/s, "
              f"transformers {rates['transformers']:.0f} tok/s, {ratio:.2f}x; peak RSS of the workers: "
              f"formers {peaks['formers']:.2f} GB, transformers {peaks['transformers']:.2f} GB")
        summary["prefill_tok_s"] = {**rates, "ratio": round(ratio, 3)}
        summary["prefill_peak_rss_gb"] = peaks
    if "decode" not in args.skip:
        contexts = ["--contexts", *map(str, args.contexts), "--new-tokens", str(args.new_tokens)]
        rows = {family: run_worker("decode", "formers", folders[family], *contexts, *common)["decode_ms_per_token"]
                for family in ("mamba2", "llama")}
        print(f"{'context':>8} {'mamba2 ms/tok':>14} {'llama ms/tok':>13}")
        for context in map(str, args.contexts):
            print(f"{context:>8} {rows['mamba2'][context]:14.2f} {rows['llama'][context]:13.2f}")
        summary["decode_ms_per_token"] = rows
        at = ["--contexts", str(args.ref_context), "--new-tokens", str(args.new_tokens)]
        ms = {lib: run_worker("decode", lib, folders["mamba2"], *at, *common)["decode_ms_per_token"]
              [str(args.ref_context)] for lib in ("transformers", "formers")}
        rates = {lib: 1000 / value for lib, value in ms.items()}
        ratio = rates["formers"] / rates["transformers"]
        print(f"decode at context {args.ref_context}: formers {rates['formers']:.1f} tok/s, "
              f"transformers {rates['transformers']:.1f} tok/s, {ratio:.2f}x")
        summary["decode_tok_s"] = {"context": args.ref_context, **{k: round(v, 2) for k, v in rates.items()},
                                   "ratio": round(ratio, 3)}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
