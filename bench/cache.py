"""KV-cache classes side by side: formers vs transformers 4.45.2, same process, same checkpoint.

Model: SmolLM-135M's shape (30 layers, hidden 576, 9 heads / 3 kv heads of 64, vocab 49152) as a
*Mistral* with sliding_window=1024, random fp32 weights, so the sliding-window caches really slide at
context 2048. Built once under bench/out/.

Reported, for contexts 128 and 2048 (batch 1, greedy, EOS ignored):
  - decode tok/s per cache class (time between the first and the last streamed token), formers vs
    transformers where 4.45 can run that class on CPU; "n/a" otherwise, with the reason;
  - QuantizedCache(int4) vs DynamicCache at 2048: formers' native backend (blocks quantized once,
    attention on the packed codes) against 4.45's QuantizedCache on `quanto` (its default backend,
    which dequantizes the whole history every step); plus formers' QuantoQuantizedCache, the same
    4.45 algorithm on the same package, as a like-for-like row;
  - time to first token for a 1,000-token shared prefix + 24-token suffix, cold vs a prefilled prefix
    cache (formers: `fork()`, transformers: `copy.deepcopy`).

    python bench/cache.py [--threads N] [--contexts 128 2048] [--new-tokens 24] [--repeats 3]
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, SMOLLM_SHAPE  # noqa: E402

WINDOW = 1024
QUANT = dict(nbits=4, residual_length=128, q_group_size=64)


def mistral_checkpoint() -> Path:
    folder = OUT / "smollm135m-shaped-mistral-w1024"
    if (folder / "config.json").exists():
        return folder
    import transformers

    torch.manual_seed(0)
    transformers.MistralForCausalLM(transformers.MistralConfig(**{**SMOLLM_SHAPE, "max_position_embeddings": 4096}, sliding_window=WINDOW,
                                                               head_dim=64)).save_pretrained(folder)
    return folder


class Clock:
    """A streamer that timestamps every token generate() emits (the first put is the prompt)."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def put(self, value) -> None:
        self.times.append(time.perf_counter())

    def end(self) -> None:
        pass


def cache_rows(lib, name: str, model):
    """(cache class label, generate kwargs) this library can run on CPU, or (label, reason) when not."""
    ours = name == "formers"
    rows = [("DynamicCache", {}), ("StaticCache", {"cache_implementation": "static"})]
    rows.append(("SlidingWindowCache", {"cache_implementation": "sliding_window"}) if ours else
                ("SlidingWindowCache", "4.45's SlidingWindowCache.__init__ fails (StaticCache.__init__ without config)"))
    rows.append(("HybridCache", {"cache_implementation": "hybrid"}) if ours else
                ("HybridCache", "4.45: Mistral has no HybridCache support"))
    rows.append(("SinkCache", {"past_key_values": lambda: lib.SinkCache(window_length=WINDOW, num_sink_tokens=4)}))
    # 4.45's generate() refuses cache_implementation="quantized" for Mistral; a cache passed in is taken
    quanto = {"past_key_values": lambda: lib.QuantoQuantizedCache(lib.QuantizedCacheConfig(backend="quanto", **QUANT))}
    rows.append(("QuantizedCache int4", {"cache_implementation": "quantized", "cache_config": dict(QUANT)}
                 if ours else quanto))
    rows.append(("QuantoQuantized int4", quanto))
    rows.append(("OffloadedCache", {"cache_implementation": "offloaded"}) if ours else
                ("OffloadedCache", "4.45's OffloadedCache requires CUDA"))
    rows.append(("OffloadedStaticCache", {"cache_implementation": "offloaded_static"}) if ours else
                ("OffloadedStaticCache", "4.45's generate() passes layer_device_map, which it rejects"))
    return rows


def decode_rate(model, ids, new_tokens: int, kwargs: dict) -> tuple[float, float]:
    """(decode tok/s, time to first token s) for one greedy generate() call."""
    kwargs = {k: (v() if callable(v) else v) for k, v in kwargs.items()}
    clock = Clock()
    start = time.perf_counter()
    out = model.generate(ids, max_new_tokens=new_tokens, do_sample=False, eos_token_id=None, pad_token_id=0,
                         streamer=clock, **kwargs)
    assert out.shape[1] == ids.shape[1] + new_tokens
    first, last = clock.times[1], clock.times[-1]
    return (new_tokens - 1) / (last - first), first - start


def prefix_ttft(lib, name: str, model, repeats: int = 3) -> tuple[float, float]:
    """(cold, warm) seconds to the first token for a 1,000-token prefix + 24-token suffix."""
    generator = torch.Generator().manual_seed(7)
    prefix = torch.randint(3, 49152, (1, 1000), generator=generator)
    prompts = [torch.cat([prefix, torch.randint(3, 49152, (1, 24), generator=generator)], dim=1) for _ in range(repeats)]
    kwargs = dict(max_new_tokens=1, do_sample=False, eos_token_id=None, pad_token_id=0)

    def timed(fn) -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    cold = min(timed(lambda p=p: model.generate(p, **kwargs)) for p in prompts)
    with torch.no_grad():
        shared = model(prefix, past_key_values=lib.DynamicCache(), use_cache=True).past_key_values
    duplicate = (lambda c: c.fork()) if name == "formers" else copy.deepcopy
    warm = min(timed(lambda p=p: model.generate(p, past_key_values=duplicate(shared), **kwargs)) for p in prompts)
    return cold, warm


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--contexts", type=int, nargs="+", default=[128, 2048])
    parser.add_argument("--new-tokens", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3, help="rounds over all configurations (best counts)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import transformers

    import formers

    transformers.logging.set_verbosity_error()
    folder = mistral_checkpoint()
    libraries = {"formers": formers, "transformers": transformers}
    models = {name: lib.AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float32)
              for name, lib in libraries.items()}
    print(f"checkpoint: {folder.name} (SmolLM-135M shape as Mistral, window {WINDOW}), fp32, batch 1, "
          f"{torch.get_num_threads()} threads, {args.new_tokens} new tokens, best of {args.repeats} rounds")
    results: dict[tuple[str, str, int], float | str] = {}
    for name in libraries:
        decode_rate(models[name], torch.tensor([[5, 6, 7]]), 2, {})  # warm-up
    for repeat in range(args.repeats):  # rounds over every configuration; the best round counts (noise)
        for context in args.contexts:
            ids = torch.randint(3, 49152, (1, context), generator=torch.Generator().manual_seed(context))
            for name, lib in libraries.items():
                for label, kwargs in cache_rows(lib, name, models[name]):
                    if isinstance(kwargs, str):
                        results[(label, name, context)] = f"n/a ({kwargs})"
                        continue
                    rate, _ = decode_rate(models[name], ids, args.new_tokens, kwargs)
                    results[(label, name, context)] = max(rate, results.get((label, name, context), 0.0))
    labels = [label for label, _ in cache_rows(formers, "formers", models["formers"])]
    print(f"\n{'decode tok/s':<22}" + "".join(f"{f'ctx {c}: formers':>18}{'transformers':>14}{'ratio':>8}"
                                            for c in args.contexts))
    for label in labels:
        line = f"{label:<22}"
        notes = []
        for context in args.contexts:
            ours, theirs = results[(label, "formers", context)], results[(label, "transformers", context)]
            if isinstance(theirs, str):
                line += f"{ours:>18.2f}{'n/a':>14}{'':>8}"
                notes.append(theirs[5:-1])
            else:
                line += f"{ours:>18.2f}{theirs:>14.2f}{ours / theirs:>7.2f}x"
        print(line + (f"   [{notes[0]}]" if notes else ""))
    if 2048 in args.contexts:
        dynamic = {n: results[("DynamicCache", n, 2048)] for n in libraries}
        print("\nint4 quantized cache vs DynamicCache decode speed at 2048 (same library): "
              f"formers native {results[('QuantizedCache int4', 'formers', 2048)] / dynamic['formers']:.2f}x, "
              f"formers quanto {results[('QuantoQuantized int4', 'formers', 2048)] / dynamic['formers']:.2f}x, "
              f"transformers 4.45.2 quanto "
              f"{results[('QuantizedCache int4', 'transformers', 2048)] / dynamic['transformers']:.2f}x")
    print("\ntime to first token, 1,000-token shared prefix + 24-token suffix (best of 3):")
    for name, lib in libraries.items():
        cold, warm = prefix_ttft(lib, name, models[name])
        print(f"  {name:<13} cold {cold * 1000:8.1f} ms   prefilled prefix {warm * 1000:8.1f} ms   "
              f"({cold / warm:.1f}x faster)")


if __name__ == "__main__":
    main()
