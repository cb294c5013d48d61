"""Tensor-parallel decode speed: one process vs 2 gloo ranks (tp_plan="auto") on this machine's CPUs.

A ~135M Llama (SmolLM-135M's width and depth, but 8 query / 4 KV heads so 2 ranks divide it; random
weights, fp32) decodes 64 greedy tokens after an 8-token prompt. Rows: one process with 2 threads and
with 1 thread, and 2 ranks with 1 thread each (the fair split of 2 cores). Each rank pays two collectives
per layer per token; on 2 CPU cores expect no speed-up: the point of the row is its cost, and that tokens
match the one-process run. On a GPU machine run it with --device cuda (NCCL, one GPU per rank).

    python bench/tp.py [--new-tokens 64] [--device cpu|cuda] [--ranks 2]
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, REPO, collect, emit  # noqa: E402

SHAPE = dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=8,
             num_key_value_heads=4, vocab_size=49152, max_position_embeddings=2048, tie_word_embeddings=True,
             bos_token_id=1, eos_token_id=2)


def checkpoint() -> Path:
    folder = OUT / "tp-llama-135m-shaped"
    if not (folder / "config.json").exists():
        import torch
        from formers import AutoConfig, AutoModelForCausalLM

        torch.manual_seed(0)
        AutoModelForCausalLM.from_config(AutoConfig.for_model("llama", **SHAPE)).save_pretrained(folder)
    return folder


def worker(args) -> None:
    import torch
    import torch.distributed as dist
    from formers import AutoModelForCausalLM

    torch.set_num_threads(args.threads)
    tp = os.environ.get("WORLD_SIZE") is not None
    if tp:
        dist.init_process_group("nccl" if args.device == "cuda" else "gloo", timeout=timedelta(seconds=120))
        if args.device == "cuda":
            torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    device = f"cuda:{os.environ.get('LOCAL_RANK', 0)}" if args.device == "cuda" else "cpu"
    model = AutoModelForCausalLM.from_pretrained(args.path, device_map=device, **({"tp_plan": "auto"} if tp else {}))
    ids = torch.tensor([[1, 400, 73, 2900, 15, 801, 44, 9]], device=device)
    kwargs = dict(do_sample=False, pad_token_id=0)
    model.generate(ids, max_new_tokens=4, min_new_tokens=4, **kwargs)  # warm-up
    timings = []
    for new in (1, args.new_tokens):  # prefill + 1 token, then the same + decode: the difference is decode
        if args.device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = model.generate(ids, max_new_tokens=new, min_new_tokens=new, **kwargs)
        if args.device == "cuda":
            torch.cuda.synchronize()
        timings.append(time.perf_counter() - start)
    decode = timings[1] - timings[0]
    if not tp or dist.get_rank() == 0:
        emit({"tok_s": (args.new_tokens - 1) / decode, "tokens": out[0].tolist()})
    if tp:
        dist.destroy_process_group()


def launch(args, ranks: int | None, threads: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", "--path", str(args.path), "--threads", str(threads),
           "--new-tokens", str(args.new_tokens), "--device", args.device]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": str(threads)}
    if ranks is None:
        return collect(subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    procs = [subprocess.Popen(cmd, env={**env, "RANK": str(r), "LOCAL_RANK": str(r), "WORLD_SIZE": str(ranks),
                                        "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in range(ranks)]
    outputs = [p.communicate() for p in procs]
    for p, (_, err) in zip(procs, outputs):
        if p.returncode:
            raise RuntimeError(err[-3000:])
    return collect(outputs[0][0])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--path", type=Path)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--ranks", type=int, default=2)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    args.path = checkpoint()
    rows = ([("1 process, 2 threads", None, 2), ("1 process, 1 thread", None, 1)] if args.device == "cpu"
            else [("1 process, 1 GPU", None, 1)])
    rows.append((f"tp_plan='auto', {args.ranks} ranks x 1 thread" + (" (NCCL)" if args.device == "cuda" else " (gloo)"),
                 args.ranks, 1))
    results = {}
    for label, ranks, threads in rows:
        results[label] = launch(args, ranks, threads)
        print(f"{label:45s} {results[label]['tok_s']:8.1f} tok/s", flush=True)
    same = len({tuple(r["tokens"]) for r in results.values()}) == 1
    print(f"greedy tokens identical across rows: {same}; load average {os.getloadavg()[0]:.1f}")
    OUT.mkdir(exist_ok=True)
    (OUT / f"tp-{args.device}.json").write_text(json.dumps({k: v["tok_s"] for k, v in results.items()}, indent=1))
    print(json.dumps({"tok_s": {k: round(v["tok_s"], 2) for k, v in results.items()}, "tokens_identical": same,
                      "new_tokens": args.new_tokens, "device": args.device}))  # run_quiet.py reads the last line


if __name__ == "__main__":
    main()
