"""save_pretrained's folder switch off its main path: without an atomic exchange (rename aside, and the
recovery after a save killed between its two renames), in place where the folder cannot be renamed,
through a symlink, from inside the folder; and what a save keeps and refuses."""
from __future__ import annotations

import errno
import logging
import os
import subprocess

import pytest
import torch

import formers
from formers.errors import CheckpointError
from formers.loading import save as save_module
from formers.loading import swap

from .trainer.helpers import tiny_model, tiny_tokenizer

LOGGER = "formers.loading.save"


def _same_weights(folder, model) -> bool:
    loaded = formers.AutoModelForCausalLM.from_pretrained(folder).state_dict()
    return all(torch.equal(loaded[k], v) for k, v in model.state_dict().items())


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


@pytest.fixture
def models_and_folder(tmp_path):
    """Model a saved (sharded) into tmp_path/"live"/"model" beside a tokenizer and user files; model b."""
    a, b = tiny_model(seed=1), tiny_model(seed=2)
    target = tmp_path / "live" / "model"
    a.save_pretrained(target, max_shard_size="20KB")
    tiny_tokenizer().save_pretrained(target)
    (target / "notes.txt").write_text("mine")
    (target / "extra").mkdir()
    (target / "extra" / "data.txt").write_text("mine too")
    return a, b, target


def _kept_user_files(target) -> bool:
    return ((target / "notes.txt").read_text() == "mine" and (target / "extra" / "data.txt").read_text() == "mine too"
            and formers.AutoTokenizer.from_pretrained(target)("t5 t9")["input_ids"] == [5, 9])


def _names(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_rename_aside_when_no_atomic_exchange(models_and_folder, monkeypatch):
    a, b, target = models_and_folder
    monkeypatch.setattr(swap, "_renameat2", None)
    b.save_pretrained(target)  # one file: the shards of a must go
    assert _same_weights(target, b) and _kept_user_files(target)
    assert "model-00001-of-00005.safetensors" not in _names(target) and "model.safetensors" in _names(target)
    assert _names(target.parent) == ["model"]  # the renamed-aside previous folder was removed


def test_a_save_killed_between_its_two_renames_is_recovered_by_the_next(models_and_folder, monkeypatch):
    """The rename-aside fallback's window: the folder is absent, the previous one is kept aside, and a
    staging folder holds a half-written save. The next save puts the previous one back first."""
    a, b, target = models_and_folder
    dead = _dead_pid()
    kept = target.with_name(f".model.{swap.PREVIOUS}-{dead}-0000beef")
    os.rename(target, kept)
    staging = target.with_name(f".model.{swap.STAGING}-{dead}-0000cafe")
    staging.mkdir()
    (staging / "model.safetensors").write_bytes(b"half written")
    swap.recover_folder(target)
    assert _names(target.parent) == ["model"]
    assert _same_weights(target, a) and _kept_user_files(target)
    os.rename(target, kept)
    b.save_pretrained(target)  # recovers, then carries the user files of the recovered folder over
    assert _same_weights(target, b) and _kept_user_files(target) and _names(target.parent) == ["model"]


def test_work_folders_of_a_live_save_are_left_alone(models_and_folder):
    a, b, target = models_and_folder
    parent_pid = os.getppid()  # alive: stands for another process saving the same folder right now
    busy = target.with_name(f".model.{swap.STAGING}-{parent_pid}-0000d00d")
    busy.mkdir()
    b.save_pretrained(target)
    assert busy.is_dir() and _same_weights(target, b)


def test_in_place_when_the_folder_cannot_be_renamed(models_and_folder, monkeypatch, caplog):
    """A mount point cannot be renamed (EBUSY): the save falls back to writing in place, config.json
    removed first and written last, with a warning that it is not atomic."""
    a, b, target = models_and_folder

    def busy(staged, folder):
        raise OSError(errno.EBUSY, "Device or resource busy", str(folder))

    monkeypatch.setattr(save_module, "replace_folder", busy)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        b.save_pretrained(target)
    assert "not atomically" in caplog.text
    assert _same_weights(target, b) and _kept_user_files(target) and _names(target.parent) == ["model"]
    assert [n for n in _names(target) if n.startswith("model")] == ["model.safetensors"]


def test_in_place_when_no_sibling_folder_can_be_made(models_and_folder, monkeypatch, caplog):
    a, b, target = models_and_folder
    monkeypatch.setattr(save_module, "work_path", lambda folder, kind: folder.parent / "absent" / "staging")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        b.save_pretrained(target)
    assert "not atomically" in caplog.text
    assert _same_weights(target, b) and _kept_user_files(target)


def test_save_through_a_symlink_and_from_inside_the_folder(models_and_folder, monkeypatch):
    a, b, target = models_and_folder
    link = target.parent / "link"
    link.symlink_to(target, target_is_directory=True)
    b.save_pretrained(link)
    assert link.is_symlink() and _same_weights(target, b) and _kept_user_files(target)
    monkeypatch.chdir(target)
    a.save_pretrained(".")
    assert os.getcwd() == str(target) and _same_weights(".", a) and _kept_user_files(target)


def test_a_new_save_replaces_every_file_of_the_old_model(models_and_folder):
    a, b, target = models_and_folder
    (target / "pytorch_model.bin").write_bytes(b"an older format's weights")
    (target / ".config.json.1234-abcd.tmp").write_text("left by a killed in-place write")
    b.generation_config = None  # a save without a generation config must not keep a's
    b.save_pretrained(target)
    assert _names(target) == ["config.json", "extra", "model.safetensors", "notes.txt", "special_tokens_map.json",
                              "tokenizer.json", "tokenizer_config.json"]


@pytest.mark.parametrize("shard", [None, "20KB"])
def test_pytorch_bin_as_4_45_writes_it(models_and_folder, shard):
    """safe_serialization=False writes 4.45's pytorch_model.bin (its shard and index names) in place of the
    safetensors, which go; formers reads it back (weights_only) and so does 4.45.2, with the same logits."""
    import transformers

    a, b, target = models_and_folder
    b.save_pretrained(target, safe_serialization=False, **({"max_shard_size": shard} if shard else {}))
    weights = [name for name in _names(target) if name.startswith(("model", "pytorch_model"))]
    if shard:
        assert "pytorch_model.bin.index.json" in weights and len(weights) > 2
        assert all(name.startswith("pytorch_model-") for name in weights if name.endswith(".bin"))
    else:
        assert weights == ["pytorch_model.bin"]
    assert _same_weights(target, b) and _kept_user_files(target)
    ids = torch.tensor([[1, 5, 9, 3]])
    theirs = transformers.AutoModelForCausalLM.from_pretrained(target)
    with torch.no_grad():
        torch.testing.assert_close(theirs(ids).logits, b(ids).logits, rtol=0, atol=1e-6)
    a.save_pretrained(target)  # and back: the .bin files go
    assert not [name for name in _names(target) if name.startswith("pytorch_model")] and _same_weights(target, a)


def test_refusals(models_and_folder):
    a, b, target = models_and_folder
    with pytest.raises(CheckpointError, match="is a file"):
        b.save_pretrained(target / "notes.txt")
    assert _same_weights(target, a) and _kept_user_files(target)
