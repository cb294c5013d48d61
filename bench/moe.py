"""Mixture-of-experts decode speed: formers vs transformers 4.45.2 on the ~152M-parameter Mixtral shape of
common.FAMILY_SHAPES["mixtral"] (8 experts, top-2, 10 layers, 49k vocabulary), float32, greedy, EOS ignored.

Per batch size: decode tok/s from the median time between decode steps (a logits processor notes when each
step's logits arrive; median over `--repeats` greedy generate() calls of `--new-tokens` tokens), and
the weight bytes one decode step must read, counted with forward hooks on formers' experts: every dense
weight (attention, router, norms, LM head) plus the experts the step's tokens chose. 4.45.2 reads the same
experts (its loop calls idle experts on zero rows, which read no weights), so bytes / step time is each
library's effective weight bandwidth, and the ratio of bandwidths is the ratio of speeds.

Each library runs in its own worker process. The last line is a JSON summary.

    python bench/moe.py [--batches 1 8] [--prompt 64] [--new-tokens 32] [--repeats 3] [--threads 1 --cpu-clock]
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


def step_bytes(model, batch: int, prompt: int, device: str) -> float:
    """Mean weight bytes read per decode step by formers' `model`: dense weights + the chosen experts'."""
    import torch

    experts = {id(e): e for layer in model.model.layers for e in layer.mlp.experts}
    expert_bytes = {key: sum(p.numel() * p.element_size() for p in e.parameters()) for key, e in experts.items()}
    expert_params = {id(p) for e in experts.values() for p in e.parameters()}
    dense = sum(p.numel() * p.element_size() for p in model.parameters()
                if id(p) not in expert_params and p is not model.model.embed_tokens.weight)
    used: list[int] = []
    handles = [e.register_forward_hook(lambda module, args, out, key=key: used.append(key))
               for key, e in experts.items()]
    ids = torch.randint(3, model.config.vocab_size, (batch, prompt), generator=torch.Generator().manual_seed(batch))
    with torch.no_grad():
        out = model(ids.to(device), use_cache=True)
        past, token = out.past_key_values, out.logits[:, -1:].argmax(-1)
        used.clear()
        steps = 8
        for _ in range(steps):
            out = model(token, past_key_values=past, use_cache=True)
            past, token = out.past_key_values, out.logits[:, -1:].argmax(-1)
    for handle in handles:
        handle.remove()
    return dense + sum(expert_bytes[key] for key in used) / steps


class StepClock:
    """A logits processor that only notes when each step's logits arrive: the gaps are the decode steps."""

    def __init__(self, device: str, clock):
        self.device, self.clock, self.stamps = device, clock, []

    def __call__(self, input_ids, scores):
        if self.device != "cpu":
            import torch
            torch.cuda.synchronize()
        self.stamps.append(self.clock())
        return scores

    def gaps(self) -> list[float]:
        return [b - a for a, b in zip(self.stamps, self.stamps[1:])]


def decode_step_seconds(lib, model, ids, new_tokens: int, repeats: int, device: str, clock) -> float:
    """Median gap between decode steps over `repeats` greedy generate() calls (robust to a noisy neighbour)."""
    import torch

    clock_fn = clock
    kwargs = {"attention_mask": torch.ones_like(ids), "do_sample": False, "eos_token_id": None, "pad_token_id": 0}
    model.generate(ids, max_new_tokens=2, **kwargs)  # warm-up
    gaps: list[float] = []
    for _ in range(repeats):
        clock = StepClock(device, clock_fn)
        out = model.generate(ids, max_new_tokens=new_tokens, logits_processor=lib.LogitsProcessorList([clock]),
                             **kwargs)
        assert out.shape == (ids.shape[0], ids.shape[1] + new_tokens)
        gaps += clock.gaps()
    return sorted(gaps)[len(gaps) // 2]


def worker(library: str, batches: list[int], prompt: int, new_tokens: int, repeats: int, device: str,
           threads: int, cpu_clock: bool) -> None:
    import torch

    if threads:
        torch.set_num_threads(threads)

    lib = __import__(library)
    model = lib.AutoModelForCausalLM.from_pretrained(family_checkpoint("mixtral"), torch_dtype=torch.float32,
                                                     device_map=device).eval()
    results = {}
    for batch in batches:
        ids = torch.randint(3, model.config.vocab_size, (batch, prompt),
                            generator=torch.Generator().manual_seed(batch)).to(device)
        step_s = decode_step_seconds(lib, model, ids, new_tokens, repeats, device,
                                     time.process_time if cpu_clock else time.perf_counter)
        results[str(batch)] = {"decode_tok_s": batch / step_s, "step_ms": 1000 * step_s}
        if library == "formers":
            results[str(batch)]["step_weight_mb"] = step_bytes(model, batch, prompt, device) / 1e6
    emit({"library": library, "threads": torch.get_num_threads(), "batches": results})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--prompt", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads of both workers (0: torch's default)")
    parser.add_argument("--cpu-clock", action="store_true",
                        help="time steps by the worker's CPU time, not the wall clock (with --threads 1: a figure "
                             "that other processes on a loaded machine disturb far less)")
    parser.add_argument("--worker")
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.batches, args.prompt, args.new_tokens, args.repeats, args.device, args.threads,
               args.cpu_clock)
        return
    family_checkpoint("mixtral")
    records = {}
    for library in ("transformers", "formers"):
        command = [sys.executable, __file__, "--worker", library, "--batches", *map(str, args.batches), "--prompt",
                   str(args.prompt), "--new-tokens", str(args.new_tokens), "--repeats", str(args.repeats),
                   "--device", args.device, "--threads", str(args.threads), *(["--cpu-clock"] * args.cpu_clock)]
        done = subprocess.run(command, check=False, capture_output=True, text=True)
        records[library] = collect(done.stdout + done.stderr)
    ours, ref = records["formers"], records["transformers"]
    print(f"mixtral (~152M, 8 experts, top-2) float32 on {args.device}, threads {ours['threads']}, "
          f"prompt {args.prompt}, new tokens {args.new_tokens}, median step of {args.repeats} runs, "
          f"{'CPU' if args.cpu_clock else 'wall'} clock")
    print(f"{'batch':>5} {'formers tok/s':>14} {'4.45.2 tok/s':>13} {'ratio':>6} {'MB/step':>8} "
          f"{'formers GB/s':>13} {'4.45.2 GB/s':>12}")
    summary: dict = {"family": "mixtral", "threads": ours["threads"], "clock": "cpu" if args.cpu_clock else "wall",
                     "batches": {}}
    for batch in map(str, args.batches):
        a, b = ours["batches"][batch], ref["batches"][batch]
        mb = a["step_weight_mb"]
        row = {"formers_tok_s": round(a["decode_tok_s"], 2), "transformers_tok_s": round(b["decode_tok_s"], 2),
               "ratio": round(a["decode_tok_s"] / b["decode_tok_s"], 3), "step_weight_mb": round(mb, 1),
               "formers_gb_s": round(mb / a["step_ms"], 2), "transformers_gb_s": round(mb / b["step_ms"], 2)}
        summary["batches"][batch] = row
        print(f"{batch:>5} {row['formers_tok_s']:14.1f} {row['transformers_tok_s']:13.1f} {row['ratio']:5.2f}x "
              f"{mb:8.0f} {row['formers_gb_s']:13.1f} {row['transformers_gb_s']:12.1f}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
