"""Decoding strategies: formers vs transformers 4.45.2 on a SmolLM-135M-shaped Llama (random weights).

1. Decode tok/s of greedy, sampling, beam search (4 beams) and contrastive search, each library in
   its own worker process, same checkpoint and prompt, EOS ignored (every run makes --new-tokens).
2. Host reads per decoding step in formers' generate(), counted by wrapping the Tensor methods
   that copy device values to the host (item, __bool__, tolist, cpu, int/float, numpy), and inside
   the logits processors alone.
3. Assisted decoding on a repetitive prompt: prompt lookup, and a draft model (the same weights in
   bfloat16: with random weights no smaller model agrees with the main one, cut layers included),
   for 1 and 4 rows (transformers refuses batches): tokens per forward pass of the main model and
   tok/s against plain greedy, outputs checked equal to greedy.

    python bench/strategies.py [--new-tokens 64] [--prompt 64] [--repeats 2]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import collect, emit, smollm_checkpoint  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.host_reads import count_reads  # noqa: E402

STRATEGIES = {
    "greedy": dict(do_sample=False),
    "sample": dict(do_sample=True, top_k=50, top_p=0.95, temperature=0.8),
    "beam4": dict(num_beams=4),
    "contrastive": dict(penalty_alpha=0.6, top_k=4),
}


def prompt_ids(rows: int, length: int, repetitive: bool = False):
    import torch

    generator = torch.Generator().manual_seed(rows * 7 + length)
    if not repetitive:
        return torch.randint(3, 49152, (rows, length), generator=generator)
    unit = torch.randint(3, 49152, (rows, 16), generator=generator)
    return unit.repeat(1, -(-length // 16))[:, :length]


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def worker(library: str, prompt: int, new_tokens: int, repeats: int) -> None:
    import torch

    lib = __import__(library)
    model = lib.AutoModelForCausalLM.from_pretrained(smollm_checkpoint())
    ids = prompt_ids(1, prompt)
    base = dict(attention_mask=torch.ones_like(ids), eos_token_id=None, pad_token_id=0)
    record = {"library": library, "decode_tok_s": {}, "reads_per_step": {}, "assisted": {}}
    for name, kwargs in STRATEGIES.items():
        def run(n, kwargs=kwargs):
            lib.set_seed(0)
            return model.generate(ids, max_new_tokens=n, **base, **kwargs)
        full = best_time(lambda: run(new_tokens), repeats)
        prefill = best_time(lambda: run(1), repeats)
        record["decode_tok_s"][name] = (new_tokens - 1) / max(full - prefill, 1e-9)
        if library == "formers":
            with count_reads() as counts:
                run(new_tokens)
            record["reads_per_step"][name] = sum(counts.values()) / new_tokens
    if library == "formers":
        record["reads_in_processors"] = processor_reads(lib)
    record["assisted"] = assisted(lib, model, prompt, new_tokens, repeats)
    emit(record)


def processor_reads(lib) -> int:
    import torch

    from formers.generation import build_logits_processor

    config = lib.GenerationConfig(do_sample=True, temperature=0.7, top_k=50, top_p=0.9, min_p=0.05,
                                  repetition_penalty=1.2, no_repeat_ngram_size=3, min_new_tokens=5,
                                  bad_words_ids=[[5], [6, 7]], sequence_bias={(9,): 1.0})
    processors = build_logits_processor(config, 16, torch.tensor([2]), "cpu")
    ids, scores = torch.randint(3, 49152, (1, 32)), torch.randn(1, 49152)
    processors(ids, scores)
    with count_reads() as counts:
        processors(ids, scores)
    return sum(counts.values())


def assisted(lib, model, prompt: int, new_tokens: int, repeats: int) -> dict:
    """Tokens per main-model forward and tok/s vs plain greedy, for prompt lookup and a bfloat16 self-draft."""
    import torch

    draft = lib.AutoModelForCausalLM.from_pretrained(smollm_checkpoint(), torch_dtype=torch.bfloat16)
    draft.generation_config.assistant_confidence_threshold = 0.0
    draft.generation_config.num_assistant_tokens = 6
    calls = []
    model.register_forward_hook(lambda *args: calls.append(1))
    out = {}
    for rows in (1, 4):
        if lib.__name__ == "transformers" and rows > 1:
            continue  # 4.45 refuses assisted decoding for batches
        ids = prompt_ids(rows, prompt, repetitive=True)
        # an EOS id this model all but never emits: 4.45's prompt lookup crashes with eos_token_id=None
        base = dict(attention_mask=torch.ones_like(ids), eos_token_id=49151, pad_token_id=0, max_new_tokens=new_tokens)
        greedy = model.generate(ids, **base)
        plain = best_time(lambda: model.generate(ids, **base), repeats)
        for name, kwargs in {"lookup": dict(prompt_lookup_num_tokens=10),
                             "draft": dict(assistant_model=draft)}.items():
            calls.clear()
            result = model.generate(ids, **base, **kwargs)
            forwards = len(calls)
            seconds = best_time(lambda: model.generate(ids, **base, **kwargs), repeats)
            out[f"{name}/{rows}"] = {"tokens_per_forward": new_tokens / forwards,  # per row; rows share a pass
                                     "speedup_vs_greedy": plain / seconds, "tok_s": rows * new_tokens / seconds,
                                     "equals_greedy": bool(torch.equal(result, greedy))}
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompt", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--worker")
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.prompt, args.new_tokens, args.repeats)
        return
    smollm_checkpoint()
    import torch
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, prompt {args.prompt}, new tokens "
          f"{args.new_tokens} (EOS ignored), best of {args.repeats}, batch 1 unless noted")
    records = {}
    for library in ("transformers", "formers"):
        command = [sys.executable, __file__, "--worker", library, "--prompt", str(args.prompt),
                   "--new-tokens", str(args.new_tokens), "--repeats", str(args.repeats)]
        done = subprocess.run(command, capture_output=True, text=True)
        records[library] = collect(done.stdout + done.stderr)
    ours, ref = records["formers"], records["transformers"]
    print(f"\n{'strategy':>12} {'formers tok/s':>14} {'transformers':>13} {'ratio':>7} {'formers reads/step':>19}")
    for name in STRATEGIES:
        a, b = ours["decode_tok_s"][name], ref["decode_tok_s"][name]
        print(f"{name:>12} {a:14.1f} {b:13.1f} {a / b:6.2f}x {ours['reads_per_step'][name]:19.2f}")
    print(f"\nhost reads inside the logits processors (9 processors, one step): {ours['reads_in_processors']}")
    print("\nassisted decoding, repetitive prompt (draft: the same weights in bfloat16)")
    print(f"{'mode/rows':>10} {'lib':>13} {'tok/row/fwd':>12} {'tok/s':>8} {'vs greedy':>10} {'== greedy':>10}")
    for lib_name, record in (("formers", ours), ("transformers", ref)):
        for key, value in record["assisted"].items():
            print(f"{key:>10} {lib_name:>13} {value['tokens_per_forward']:12.2f} {value['tok_s']:8.1f} "
                  f"{value['speedup_vs_greedy']:9.2f}x {str(value['equals_greedy']):>10}")


if __name__ == "__main__":
    main()
