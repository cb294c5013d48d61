"""Run a bench while other processes keep some cores busy: the shared-machine case of the CPU decode issue.

On a 2-core machine where another process holds one core, libraries whose worker threads wait for each
other at every operator (OpenMP barriers) fall to a fraction of their idle speed. This starts `--spinners`
processes that each burn one core in a tight loop (at normal priority), runs the command, stops them and
prints the command's output unchanged, so its JSON last line is what run_quiet.py records.

    python bench/busy.py --spinners 1 -- python bench/generate.py --impl formers transformers llama.cpp \
        --dtypes float32 --batches 1 --rounds 1
"""
from __future__ import annotations

import argparse
import multiprocessing
import subprocess
import sys
import time


def _spin() -> None:
    x = 0
    while True:
        x += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spinners", type=int, default=1, help="busy-loop processes, one core each")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the bench command, after --")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the bench command after --")
    spinners = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(args.spinners)]
    for process in spinners:
        process.start()
    time.sleep(0.5)  # let them reach full speed before the bench starts its own threads
    try:
        print(f"{args.spinners} busy-loop process(es) hold a core each while the bench runs", flush=True)
        result = subprocess.run(command)
    finally:
        for process in spinners:
            process.terminate()
    sys.exit(result.returncode)


if __name__ == "__main__":
    main()
