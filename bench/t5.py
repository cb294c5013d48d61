"""T5-small-shaped translation-style decoding, formers vs transformers 4.45.2.

A random-weight T5 of t5-small's shape (d_model 512, d_ff 2048, 6 + 6 layers, 8 heads of 64, vocab 32128,
ReLU feed-forward, tied embeddings), built once by the oracle. Each measurement: greedy generation of
`--new-tokens` tokens (forced with min_new_tokens, so every row runs to the end) from a batch of
`--source`-token inputs ending in EOS, as a translation call does; tok/s = rows x new tokens / seconds
(best of `--repeats` after a warm-up). Workers run in their own processes, alternating the two libraries
for `--rounds` rounds; the summary holds the median of each library's rounds. The last line is JSON.

    python bench/t5.py [--batches 1 4] [--source 24] [--new-tokens 32] [--rounds 3] [--repeats 2]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, collect, emit
from machine import cpu_model

T5_SMALL_SHAPE = {"vocab_size": 32128, "d_model": 512, "d_kv": 64, "d_ff": 2048, "num_layers": 6,
                  "num_decoder_layers": 6, "num_heads": 8, "feed_forward_proj": "relu", "tie_word_embeddings": True,
                  "decoder_start_token_id": 0, "pad_token_id": 0, "eos_token_id": 1}


def t5_checkpoint() -> Path:
    folder = OUT / "t5-small-shaped"
    if (folder / "config.json").exists():
        return folder
    import torch
    import transformers

    torch.manual_seed(0)
    transformers.T5ForConditionalGeneration(transformers.T5Config(**T5_SMALL_SHAPE)).save_pretrained(folder)
    return folder


def worker(library: str, batches: list[int], source: int, new_tokens: int, repeats: int) -> None:
    import torch
    lib = __import__(library)
    model = lib.AutoModelForSeq2SeqLM.from_pretrained(t5_checkpoint(), torch_dtype=torch.float32).eval()
    rates = {}
    for batch in batches:
        ids = torch.randint(2, 32000, (batch, source), generator=torch.Generator().manual_seed(batch))
        ids[:, -1] = 1  # EOS ends each source sentence
        mask = torch.ones_like(ids)
        times = []
        for _ in range(repeats + 1):  # the first call warms up
            start = time.perf_counter()
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens,
                                 min_new_tokens=new_tokens, do_sample=False, num_beams=1)
            times.append(time.perf_counter() - start)
        assert out.shape == (batch, new_tokens + 1), out.shape  # start token + new tokens
        rates[str(batch)] = batch * new_tokens / min(times[1:])
    emit({"tok_s": rates, "threads": torch.get_num_threads(), "torch": torch.__version__})


def run_worker(library: str, args) -> dict:
    command = [sys.executable, __file__, "--worker", library, "--batches", *map(str, args.batches),
               "--source", str(args.source), "--new-tokens", str(args.new_tokens), "--repeats", str(args.repeats)]
    done = subprocess.run(command, check=False, capture_output=True, text=True)
    return collect(done.stdout + done.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--source", type=int, default=24)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--worker")
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.batches, args.source, args.new_tokens, args.repeats)
        return
    t5_checkpoint()
    runs: dict[str, list[dict]] = {"formers": [], "transformers": []}
    for _ in range(args.rounds):
        for library, records in runs.items():  # alternating processes
            records.append(run_worker(library, args))
            print(library, json.dumps(records[-1]["tok_s"]), flush=True)
    summary = {lib: {b: statistics.median(r["tok_s"][b] for r in records) for b in map(str, args.batches)}
               for lib, records in runs.items()}
    ratio = {b: summary["formers"][b] / summary["transformers"][b] for b in summary["formers"]}
    for batch, factor in ratio.items():
        print(f"batch {batch}: formers {summary['formers'][batch]:.1f} tok/s, transformers 4.45.2 "
              f"{summary['transformers'][batch]:.1f} tok/s, ratio {factor:.2f}x")
    print(json.dumps({"bench": "t5-small-shaped greedy translation", "source_tokens": args.source,
                      "new_tokens": args.new_tokens, "tok_s": summary, "ratio": ratio, "rounds": args.rounds,
                      "cpu": cpu_model(), "threads": runs["formers"][0]["threads"],
                      "torch": runs["formers"][0]["torch"]}))


if __name__ == "__main__":
    main()
