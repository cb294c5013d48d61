"""The saving side of tests/test_atomic_save.py: a process that imports torch and formers once, sets up
two versions "a" and "b" of something saved, then forks children that save them in a loop until the
test kills them (SIGKILL) at a random moment. Forking pays the import cost once for all kills.

Run as `python -m tests.atomic_save_child <mode> <work folder>` with mode model, trainer or cache.
Protocol, one line each way on stdin/stdout:
    child -> test  "ready <seconds one save takes>"
    test -> child  "fork <a|b>"   (first version to save)   child -> test  "<pid>", "started" as the
                                  first save begins, "saved <seconds>" per completed save, "reaped <status>"
    test -> child  "once <a|b>"   (one complete save, then the child exits 0)   same answers
    test -> child  "quit"
"""
from __future__ import annotations

import itertools
import os
import sys
import time
import traceback
from pathlib import Path

import torch

torch.set_num_threads(1)  # forking is safe only while torch has started no worker threads

from formers import DataCollatorForLanguageModeling, Trainer, TrainingArguments  # noqa: E402
from formers.cache.dynamic import DynamicCache  # noqa: E402
from formers.cache.io import save_cache  # noqa: E402

from tests.trainer.helpers import tiny_model, tiny_tokenizer, token_rows  # noqa: E402

OTHER = {"a": "b", "b": "a"}


# --- model: save_pretrained of model a (one file) / model b (sharded) into a folder that also holds a
#     tokenizer and user files ----------------------------------------------------------------------------
def model_versions():
    a = tiny_model(seed=1, rope_theta=10000.0)
    b = tiny_model(seed=2, rope_theta=20000.0)
    b.generation_config.max_length = 33
    return {"a": lambda folder: a.save_pretrained(folder),
            "b": lambda folder: b.save_pretrained(folder, max_shard_size="20KB")}


def model_setup(work: Path, save) -> Path:
    save["a"](work / "ref_a")
    save["b"](work / "ref_b")
    target = work / "live" / "model"
    save["a"](target)
    tiny_tokenizer().save_pretrained(target)
    (target / "notes.txt").write_text("user notes, not part of any save\n")
    (target / "extra").mkdir()
    (target / "extra" / "data.txt").write_text("a user subfolder\n")
    return target


# --- trainer: 4 steps, a checkpoint every step, save_total_limit=2 (re-saves and rotations) ------------------
def trainer_run(output_dir: Path, limit: int | None = 2) -> None:
    tokenizer = tiny_tokenizer()
    args = TrainingArguments(output_dir=str(output_dir), max_steps=4, save_steps=1, save_total_limit=limit,
                             per_device_train_batch_size=4, report_to="none", disable_tqdm=True)
    Trainer(model=tiny_model(seed=0), args=args, train_dataset=token_rows(16), tokenizer=tokenizer,
            data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False)).train()


# --- cache: save_cache of cache a / cache b to one file ---------------------------------------------------------
def cache_versions():
    caches = {}
    for seed, name in ((1, "a"), (2, "b")):
        generator = torch.Generator().manual_seed(seed)
        cache = DynamicCache()
        for layer in range(2):
            keys, values = torch.randn(2, 1, 4, 256, 64, generator=generator)
            cache.update(keys, values, layer)
        caches[name] = cache
    return {name: (lambda path, cache=cache: save_cache(cache, path)) for name, cache in caches.items()}


def setup(mode: str, work: Path):
    """(target, save(version)) after writing references under `work` and version "a" at the target."""
    if mode == "model":
        save = model_versions()
        target = model_setup(work, save)
        return target, lambda version: save[version](target)
    if mode == "trainer":
        trainer_run(work / "ref", limit=None)
        target = work / "live" / "out"
        return target, lambda version: trainer_run(target)
    save = cache_versions()
    save["a"](work / "ref_a.safetensors")
    save["b"](work / "ref_b.safetensors")
    target = work / "live" / "cache.safetensors"
    target.parent.mkdir()
    save["a"](target)
    return target, lambda version: save[version](target)


def seconds_per_save(save) -> float:
    start = time.perf_counter()
    for version in "baba":
        save(version)
    return (time.perf_counter() - start) / 4


def child(save, first: str, once: bool) -> None:
    report = os.dup(1)
    os.dup2(2, 1)  # nothing but the reports below reaches the protocol pipe
    os.write(report, b"started\n")
    try:
        for version in itertools.islice(itertools.cycle((first, OTHER[first])), 1 if once else None):
            start = time.perf_counter()
            save(version)
            os.write(report, f"saved {time.perf_counter() - start:.6f}\n".encode())  # one atomic pipe write
    except BaseException:  # noqa: BLE001 - report anything, then die with a code the test recognises
        traceback.print_exc()
        os._exit(3)
    os._exit(0)


def main() -> None:
    mode, work = sys.argv[1], Path(sys.argv[2])
    target, save = setup(mode, work)
    per_save = seconds_per_save(save)  # leaves version "a" (model, cache) at the target
    print(f"ready {per_save:.6f}", flush=True)
    for line in sys.stdin:
        command, *rest = line.split()
        if command == "quit":
            return
        pid = os.fork()
        if pid == 0:
            child(save, rest[0], once=command == "once")
        os.write(1, f"{pid}\n".encode())  # one write: the child reports on the same pipe
        _, status = os.waitpid(pid, 0)
        os.write(1, f"reaped {status}\n".encode())


if __name__ == "__main__":
    main()
