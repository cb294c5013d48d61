"""Saves that lose nothing: a process killed (SIGKILL) at a random moment while saving over an earlier
save leaves the earlier save or the new one, whole -- never neither, never a mix.

tests/atomic_save_child.py imports once and forks a child per kill that saves version "a" and "b" in
turn; here each child is killed after a random delay within about two saves, and the folder is checked
with formers (and, every few kills, with transformers 4.45.2) before the next child starts.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import formers
from formers.cache.io import load_cache
from formers.trainer_utils import sorted_checkpoints

ROOT = Path(__file__).resolve().parents[1]


class Saver:
    """The forking child process of atomic_save_child.py, driven line by line."""

    def __init__(self, mode: str, work: Path):
        self.log = work / "child.log"
        self.process = subprocess.Popen([sys.executable, "-m", "tests.atomic_save_child", mode, str(work)],
                                        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=open(self.log, "w"), text=True, bufsize=1)
        ready, seconds = self._read().split()
        assert ready == "ready"
        self.seconds_per_save = float(seconds)
        self.history = [(self.seconds_per_save, 1)]  # (seconds a child spent saving, saves it completed)

    def _read(self) -> str:
        line = self.process.stdout.readline()
        assert line, f"the saving process died:\n{self.log.read_text()}"
        return line.strip()

    def _start(self, command: str) -> int:
        self.process.stdin.write(command + "\n")
        lines = {self._read(), self._read()}  # the pid (from the parent) and "started" (the child), any order
        assert "started" in lines, lines
        return int((lines - {"started"}).pop())

    def _reaped(self, seconds_saving: float) -> int:
        """The child's exit status. The saves it completed in `seconds_saving` update `seconds_per_save`:
        time spent over saves completed, across the last kills, follows the machine's load without the
        bias of timing only the saves that finished before their kill."""
        completed = 0
        while (line := self._read()).startswith("saved "):
            completed += 1
        self.history.append((seconds_saving, completed))
        recent = self.history[-12:]
        self.seconds_per_save = sum(s for s, _ in recent) / max(1, sum(n for _, n in recent))
        return int(line.split()[1])

    def kill_after(self, first: str, delay: float) -> None:
        """Start saving `first` then the other version, in a loop; SIGKILL it after `delay` seconds."""
        pid = self._start(f"fork {first}")
        start = time.perf_counter()
        time.sleep(delay)
        os.kill(pid, signal.SIGKILL)
        status = self._reaped(time.perf_counter() - start)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, \
            f"the saving child ended by itself (status {status}):\n{self.log.read_text()}"

    def save_once(self, version: str) -> None:
        self._start(f"once {version}")
        assert self._reaped(0.0) == 0, self.log.read_text()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.write("quit\n")
            self.process.stdin.close()
        self.process.wait(timeout=10)


@pytest.fixture
def saver(tmp_path):
    started = []

    def start(mode: str) -> Saver:
        started.append(Saver(mode, tmp_path))
        return started[-1]
    yield start
    for saver_process in started:
        try:
            saver_process.close()
        except (OSError, subprocess.TimeoutExpired):  # it died, or hangs on a child: end it
            saver_process.process.kill()
            saver_process.process.wait()


def _leftovers(parent: Path, keep: str) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name != keep)


def _kill_loop(saver: Saver, kills: int, check, span: float = 2.2, interrupted_at_least: int = 0) -> dict[str, int]:
    """Kill `kills` saving children, each after a random delay of up to `span` saves, and more (up to twice as
    many) until `interrupted_at_least` kills have landed inside a save: how many do depends on how long this
    machine's saves take from one to the next. After each kill `check(kill)` returns the version the target holds
    and whether the kill interrupted a save, or raises (the target holds neither version whole). Returns the
    counts; fails at the end, quoting the first errors, if any kill left neither version."""
    rng = random.Random(16)
    found = {"a": 0, "b": 0, "neither": 0, "interrupted": 0}
    errors = []
    current = "a"
    kill = 0
    while kill < kills or (found["interrupted"] < interrupted_at_least and kill < 2 * kills):
        saver.kill_after(OTHER[current], rng.uniform(0, span * saver.seconds_per_save))
        try:
            current, interrupted = check(kill)
        except Exception as error:  # noqa: BLE001 - counted, and reported below
            errors.append(f"kill {kill}: {type(error).__name__}: {error}")
            current, interrupted = "neither", True
        found[current] += 1
        found["interrupted"] += interrupted
        current = "a" if current == "neither" else current
        kill += 1
    print(f"{kill} kills: {found}; {saver.seconds_per_save * 1000:.1f} ms per save")
    assert not errors, f"{len(errors)} of {kill} kills left neither version whole: {found}\n" + "\n".join(errors[:3])
    return found


OTHER = {"a": "b", "b": "a"}


# --- save_pretrained ----------------------------------------------------------------------------------------------
def _model_identity(folder: Path, refs: dict, carried: dict[str, bytes], oracle: bool) -> str:
    """Which reference model the folder holds: weights, config, generation config and file list all agree."""
    model = formers.AutoModelForCausalLM.from_pretrained(folder)
    state = model.state_dict()
    matches = [name for name, ref in refs.items()
               if state.keys() == ref["state"].keys() and all(torch.equal(state[k], ref["state"][k]) for k in state)]
    assert len(matches) == 1, f"the weights in {folder} are neither model a's nor model b's"
    name = matches[0]
    ref = refs[name]
    assert model.config.rope_theta == ref["rope_theta"], "config.json of one model beside the other's weights"
    assert model.generation_config.max_length == ref["max_length"], "a mixed generation_config.json"
    names = {p.name for p in folder.iterdir()}
    assert names == ref["files"] | {r.split("/")[0] for r in carried}, f"files {sorted(names)} are not model {name}'s"
    for relative, content in carried.items():
        assert (folder / relative).read_bytes() == content, f"{relative} changed"
    if oracle:
        import transformers
        theirs = transformers.AutoModelForCausalLM.from_pretrained(folder).state_dict()
        assert all(torch.equal(theirs[k], ref["state"][k]) for k in ref["state"])
    return name


def test_save_pretrained_killed_at_random_moments_keeps_one_whole_model(saver, tmp_path):
    process = saver("model")
    refs = {}
    for name in "ab":
        model = formers.AutoModelForCausalLM.from_pretrained(tmp_path / f"ref_{name}")
        refs[name] = {"state": model.state_dict(), "rope_theta": model.config.rope_theta,
                      "max_length": model.generation_config.max_length,
                      "files": {p.name for p in (tmp_path / f"ref_{name}").iterdir()}}
    assert len(refs["b"]["files"]) > len(refs["a"]["files"]) + 2  # b is sharded, a is not: stale shards go
    target = tmp_path / "live" / "model"
    carried = {p.name: p.read_bytes() for p in target.iterdir() if p.is_file() and p.name not in refs["a"]["files"]}
    assert {"tokenizer.json", "tokenizer_config.json", "notes.txt"} <= set(carried)  # tokenizer and user files
    carried["extra/data.txt"] = (target / "extra" / "data.txt").read_bytes()  # a user subfolder

    def check(kill: int):
        interrupted = bool(_leftovers(target.parent, "model"))  # the killed save's staging folder
        return _model_identity(target, refs, carried, oracle=kill % 12 == 0), interrupted

    found = _kill_loop(process, 60, check)
    assert found["a"] >= 5 and found["b"] >= 5, found  # kills landed before and after the switch
    assert found["interrupted"] >= 20, found  # and inside saves
    process.save_once("b")  # a complete save removes what the killed ones left
    assert _leftovers(target.parent, "model") == []
    assert _model_identity(target, refs, carried, oracle=True) == "b"
    import transformers
    for library in (formers, transformers):  # the tokenizer saved into the folder survived every save
        assert library.AutoTokenizer.from_pretrained(target)("t5 t9")["input_ids"] == [5, 9]


# --- Trainer checkpoints -----------------------------------------------------------------------------------------
_PATH_DEPENDENT = ("training_args.json", "trainer_state.json")  # they name the output folder


def _checkpoint_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.name not in _PATH_DEPENDENT}


def test_trainer_checkpoints_killed_at_random_moments_stay_complete(saver, tmp_path):
    """Each child trains 4 steps from scratch, saving every step with save_total_limit=2, into an output
    folder that already holds checkpoint-3 and checkpoint-4 of the same run: it re-saves them over
    themselves and rotates checkpoint-1/2 out. After every kill each listed checkpoint must be whole and
    byte-equal to the reference run's, and checkpoint-4 must still be there."""
    process = saver("trainer")
    reference = {p.name: _checkpoint_files(p) for p in sorted_checkpoints(tmp_path / "ref")}
    assert list(reference) == [f"checkpoint-{step}" for step in range(1, 5)]
    target = tmp_path / "live" / "out"

    def check(kill: int):
        interrupted = any(p.name.startswith(("tmp-", ".")) for p in target.iterdir())
        checkpoints = sorted_checkpoints(target)
        assert checkpoints[-1].name == "checkpoint-4", [p.name for p in checkpoints]
        for checkpoint in checkpoints:
            assert _checkpoint_files(checkpoint) == reference[checkpoint.name], f"{checkpoint.name} differs"
            state = json.loads((checkpoint / "trainer_state.json").read_text())
            assert state["global_step"] == int(checkpoint.name.split("-")[1])
        return ("a" if len(checkpoints) == 2 else "b"), interrupted  # b: killed while rotating one out

    found = _kill_loop(process, 20, check, span=1.1, interrupted_at_least=8)  # one run holds four checkpoint saves
    assert found["interrupted"] >= 8, found
    process.save_once("a")
    assert sorted(p.name for p in target.iterdir() if p.is_dir()) == ["checkpoint-3", "checkpoint-4"]


# --- save_cache -------------------------------------------------------------------------------------------------
def test_save_cache_killed_at_random_moments_keeps_one_whole_file(saver, tmp_path):
    process = saver("cache")
    refs = {name: load_file(tmp_path / f"ref_{name}.safetensors") for name in "ab"}
    target = tmp_path / "live" / "cache.safetensors"

    def check(kill: int):
        interrupted = bool(_leftovers(target.parent, target.name))  # the killed save's temporary file
        cache = load_cache(target)
        tensors = {f"{kind}.{layer}": getattr(cache, f"{kind}_cache")[layer] for kind in ("key", "value")
                   for layer in range(len(cache))}
        matches = [name for name, ref in refs.items()
                   if tensors.keys() == ref.keys() and all(torch.equal(tensors[k], ref[k]) for k in ref)]
        assert len(matches) == 1, "the cache file holds neither cache a nor cache b"
        return matches[0], interrupted

    found = _kill_loop(process, 30, check)
    assert found["a"] >= 3 and found["b"] >= 3 and found["interrupted"] >= 8, found
    process.save_once("b")
    assert _leftovers(target.parent, target.name) == []
