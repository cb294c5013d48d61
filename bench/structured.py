"""Constrained vs unconstrained decode speed on a SmolLM-135M-shaped Llama (random weights, fp32), and the
grammar mask's cost per token.

The grammars force the full length (a JSON string of at least 4,000 characters; a JSON array of at
least 1,000 integers), so every run decodes exactly --new-tokens tokens, like the unconstrained run
(EOS ignored). The tokenizer is GPT-2's (tests/data), its 50,257 ids cut to the model's 49,152 logits.
Reported per batch size: tok/s of each run, constrained / unconstrained ratio, the worker thread's
mask time per token (sync the matchers + fill the bitmask, overlapped with the forward) and the
main thread's processor time per token (join + apply the bitmask: what the overlap leaves exposed).

    python bench/structured.py [--batches 1 4] [--new-tokens 64] [--repeats 3] [--device cpu]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, smollm_checkpoint

GRAMMARS = {
    "json-string": {"type": "object", "properties": {"text": {"type": "string", "minLength": 4000}},
                    "required": ["text"]},
    "json-int-array": {"type": "array", "items": {"type": "integer"}, "minItems": 1000},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    import torch

    import formers
    from formers.structured import GrammarLogitsProcessor

    timings = {"worker": 0.0, "main": 0.0}

    class TimedProcessor(GrammarLogitsProcessor):
        def _compute(self, generated):
            start = time.perf_counter()
            super()._compute(generated)
            timings["worker"] += time.perf_counter() - start

        def __call__(self, input_ids, scores):
            start = time.perf_counter()
            out = super().__call__(input_ids, scores)
            timings["main"] += time.perf_counter() - start
            return out

    model = formers.AutoModelForCausalLM.from_pretrained(smollm_checkpoint(), device_map=args.device).eval()
    tokenizer = formers.AutoTokenizer.from_pretrained(REPO / "tests" / "data" / "tokenizers" / "gpt2")
    vocab = model.config.vocab_size
    print(f"# torch threads {torch.get_num_threads()}, load {os.getloadavg()}, device {args.device}", flush=True)
    results = {}
    for batch in args.batches:
        ids = torch.randint(3, 40000, (batch, 32), generator=torch.Generator().manual_seed(batch)).to(args.device)

        def run(processors) -> float:
            if args.device != "cpu":
                torch.cuda.synchronize()
            start = time.perf_counter()
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=args.new_tokens,
                                 do_sample=True, eos_token_id=2 if processors else None, pad_token_id=0,
                                 logits_processor=processors)
            if args.device != "cpu":
                torch.cuda.synchronize()
            assert out.shape[1] == 32 + args.new_tokens
            return time.perf_counter() - start

        run([])  # warm-up
        plain = min(run([]) for _ in range(args.repeats))
        row = {"unconstrained_tok_s": round(batch * args.new_tokens / plain, 1)}
        for name, schema in GRAMMARS.items():
            processor = TimedProcessor(schema, tokenizer, eos_token_id=2, vocab_size=vocab)
            run([processor])  # warm-up (compiles once)
            best = float("inf")
            for _ in range(args.repeats):
                timings.update(worker=0.0, main=0.0)
                elapsed = run([processor])
                if elapsed < best:
                    best, worker, main_thread = elapsed, timings["worker"], timings["main"]
            steps = args.new_tokens
            row[name] = {"tok_s": round(batch * steps / best, 1), "ratio": round(plain / best, 3),
                         "mask_us_per_step": round(worker / steps * 1e6, 1),
                         "exposed_us_per_step": round(main_thread / steps * 1e6, 1)}
        results[f"batch{batch}"] = row
        print(f"batch {batch}: {row}", flush=True)
    print(f"# load after {os.getloadavg()}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
