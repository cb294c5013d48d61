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

Each measurement runs in its own worker process. The last line is a JSON summary.

    python bench/mamba2.py [--prompt 2048] [--contexts 128 512 2048] [--new-tokens 16] [--device cpu]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import collect, emit, family_checkpoint


def _sync(device: str) -> None:
    if device != "cpu":
        import torch
        torch.cuda.synchronize()


def _load(library: str, family: str, device: str):
    import torch
    lib = __import__(library)
    model = lib.AutoModelForCausalLM.from_pretrained(family_checkpoint(family), torch_dtype=torch.float32,
                                                     device_map=device)
    return model.eval()


def prefill_worker(library: str, prompt: int, runs: int, warm_up: bool, device: str) -> None:
    import torch
    model = _load(library, "mamba2", device)
    ids = torch.randint(3, model.config.vocab_size, (1, prompt), generator=torch.Generator().manual_seed(0)).to(device)
    times = []
    with torch.no_grad():
        for _ in range(runs + warm_up):
            _sync(device)
            start = time.perf_counter()
            model(ids)
            _sync(device)
            times.append(time.perf_counter() - start)
    emit({"prefill_tok_s": prompt / min(times[warm_up:]), "runs": runs, "warm_up": warm_up})


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


def decode_worker(library: str, family: str, contexts: list[int], new_tokens: int, device: str) -> None:
    import torch
    model = _load(library, family, device)
    lib = __import__(library)
    results = {}
    for context in contexts:
        ids = torch.randint(3, model.config.vocab_size, (1, context), generator=torch.Generator().manual_seed(1)).to(device)
        clock = StepClock(device)
        model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens + 1, do_sample=False,
                       eos_token_id=None, pad_token_id=0, logits_processor=lib.LogitsProcessorList([clock]))
        results[str(context)] = clock.ms_per_step()
    emit({"decode_ms_per_token": results})


def run_worker(*args: str) -> dict:
    done = subprocess.run([sys.executable, __file__, "--worker", *args], check=False, capture_output=True, text=True)
    return collect(done.stdout + done.stderr)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompt", type=int, default=2048)
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
        kind, library, *rest = args.worker
        if kind == "prefill":
            reference = library == "transformers"
            prefill_worker(library, args.prompt, args.ref_prefill_runs if reference else args.repeats, not reference,
                           args.device)
        else:
            decode_worker(library, rest[0], args.contexts, args.new_tokens, args.device)
        return
    import torch
    family_checkpoint("mamba2"), family_checkpoint("llama")
    print(f"mamba2 (~151M) vs llama (~135M), torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"device {args.device}, worker threads {args.threads or 'default'}")
    common = ["--device", args.device, "--repeats", str(args.repeats), "--threads", str(args.threads),
              "--ref-prefill-runs", str(args.ref_prefill_runs)]
    summary: dict = {"prefill_prompt": args.prompt}
    if "prefill" not in args.skip:
        rates = {lib: run_worker("prefill", lib, "--prompt", str(args.prompt), *common)["prefill_tok_s"]
                 for lib in ("transformers", "formers")}
        ratio = rates["formers"] / rates["transformers"]
        print(f"prefill, prompt {args.prompt}: formers {rates['formers']:.0f} tok/s, "
              f"transformers {rates['transformers']:.0f} tok/s, {ratio:.2f}x")
        summary["prefill_tok_s"] = {**rates, "ratio": round(ratio, 3)}
    if "decode" not in args.skip:
        contexts = ["--contexts", *map(str, args.contexts), "--new-tokens", str(args.new_tokens)]
        rows = {family: run_worker("decode", "formers", family, *contexts, *common)["decode_ms_per_token"]
                for family in ("mamba2", "llama")}
        print(f"{'context':>8} {'mamba2 ms/tok':>14} {'llama ms/tok':>13}")
        for context in map(str, args.contexts):
            print(f"{context:>8} {rows['mamba2'][context]:14.2f} {rows['llama'][context]:13.2f}")
        summary["decode_ms_per_token"] = rows
        at = ["--contexts", str(args.ref_context), "--new-tokens", str(args.new_tokens)]
        ms = {lib: run_worker("decode", lib, "mamba2", *at, *common)["decode_ms_per_token"][str(args.ref_context)]
              for lib in ("transformers", "formers")}
        rates = {lib: 1000 / value for lib, value in ms.items()}
        ratio = rates["formers"] / rates["transformers"]
        print(f"decode at context {args.ref_context}: formers {rates['formers']:.1f} tok/s, "
              f"transformers {rates['transformers']:.1f} tok/s, {ratio:.2f}x")
        summary["decode_tok_s"] = {"context": args.ref_context, **{k: round(v, 2) for k, v in rates.items()},
                                   "ratio": round(ratio, 3)}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
