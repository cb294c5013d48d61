"""Loading and saving checkpoints: formats, sharding, dtype/device, hub cache, atomicity, bad input."""
from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys

import pytest
import torch
import transformers

import formers
from formers.models.registry import FAMILIES
from formers.errors import CheckpointError, ConfigError, HubFileNotFoundError, UnknownModelTypeError, \
    UnsafeCheckpointError


def _logits(model, seed=0):
    ids = torch.randint(3, 128, (2, 9), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return model(ids).logits


@pytest.mark.parametrize("tied", [False, True])
def test_save_round_trip_loads_in_both_libraries(tiny_checkpoint, tmp_path, tied):
    model = formers.AutoModelForCausalLM.from_pretrained(tiny_checkpoint("llama", tie_word_embeddings=tied))
    model.save_pretrained(tmp_path / "saved")
    names = sorted(p.name for p in (tmp_path / "saved").iterdir())
    assert names == ["config.json", "generation_config.json", "model.safetensors"]
    again = formers.AutoModelForCausalLM.from_pretrained(tmp_path / "saved")
    oracle = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "saved")
    assert torch.equal(_logits(model), _logits(again))
    assert (_logits(model) - _logits(oracle)).abs().max() <= 1e-5


def test_sharded_save_and_load(tiny_checkpoint, tmp_path):
    model = formers.AutoModelForCausalLM.from_pretrained(tiny_checkpoint("qwen2"))
    model.save_pretrained(tmp_path / "sharded", max_shard_size="40KB")
    index = json.loads((tmp_path / "sharded" / "model.safetensors.index.json").read_text())
    shards = set(index["weight_map"].values())
    assert len(shards) > 2 and not (tmp_path / "sharded" / "model.safetensors").exists()
    for loader in (formers.AutoModelForCausalLM, transformers.AutoModelForCausalLM):
        assert (_logits(loader.from_pretrained(tmp_path / "sharded")) - _logits(model)).abs().max() <= 1e-5
    model.save_pretrained(tmp_path / "sharded")  # re-save unsharded: stale shards must go
    assert sorted(p.name for p in (tmp_path / "sharded").iterdir()) == [
        "config.json", "generation_config.json", "model.safetensors"]


def test_interrupted_save_keeps_the_previous_model(tiny_checkpoint, tmp_path, monkeypatch):
    """An exception mid-save (here in the third shard) leaves the previous model whole and no leftovers;
    tests/test_atomic_save.py kills real processes at random points."""
    first = formers.AutoModelForCausalLM.from_pretrained(tiny_checkpoint("llama", seed=1))
    second = formers.AutoModelForCausalLM.from_pretrained(tiny_checkpoint("llama", seed=2))
    target = tmp_path / "model"
    first.save_pretrained(target, max_shard_size="40KB")
    before = sorted(p.name for p in target.iterdir())

    from formers.loading import weights_writer
    real_save_file = weights_writer.save_file
    calls = {"n": 0}

    def dying_save_file(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("killed mid-save")
        return real_save_file(*args, **kwargs)

    monkeypatch.setattr(weights_writer, "save_file", dying_save_file)
    with pytest.raises(KeyboardInterrupt):
        second.save_pretrained(target, max_shard_size="40KB")
    assert calls["n"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # the staging folder is gone
    assert sorted(p.name for p in target.iterdir()) == before
    again = formers.AutoModelForCausalLM.from_pretrained(target)
    assert torch.equal(_logits(again), _logits(first))


def test_torch_dtype_and_device_map(tiny_checkpoint):
    folder = tiny_checkpoint("llama")
    assert formers.AutoModelForCausalLM.from_pretrained(folder).dtype == torch.float32
    bf16 = formers.AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.bfloat16, device_map="cpu")
    assert bf16.dtype == torch.bfloat16 and bf16.device.type == "cpu"
    auto = formers.AutoModelForCausalLM.from_pretrained(folder, torch_dtype="auto", device_map="auto")
    assert auto.dtype == torch.float32  # the oracle saved float32 and says so in config.json
    for strategy in ("sequential", "balanced", "balanced_low_0"):  # accelerate's names: one device here
        placed = formers.AutoModelForCausalLM.from_pretrained(folder, device_map=strategy)
        assert placed.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="device_map: expected None, 'auto', 'sequential'"):
        formers.AutoModelForCausalLM.from_pretrained(folder, device_map="everywhere")
    with pytest.raises(ConfigError, match="torch_dtype"):
        formers.AutoModelForCausalLM.from_pretrained(folder, torch_dtype="float33")


def test_bin_checkpoint_loads_only_safely(tiny_checkpoint, tmp_path):
    folder = tiny_checkpoint("llama")
    model = formers.AutoModelForCausalLM.from_pretrained(folder)
    binary = tmp_path / "bin"
    binary.mkdir()
    shutil.copy(folder / "config.json", binary)
    torch.save(transformers.AutoModelForCausalLM.from_pretrained(folder).state_dict(), binary / "pytorch_model.bin")
    assert torch.equal(_logits(formers.AutoModelForCausalLM.from_pretrained(binary)), _logits(model))

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"model.embed_tokens.weight": Evil()}, binary / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="weights_only"):
        formers.AutoModelForCausalLM.from_pretrained(binary)


def test_trust_remote_code_is_refused(tiny_checkpoint):
    folder = tiny_checkpoint("llama")
    for loader in (formers.AutoModelForCausalLM, formers.AutoConfig, formers.LlamaForCausalLM):
        with pytest.raises(UnsafeCheckpointError, match="never executes code"):
            loader.from_pretrained(folder, trust_remote_code=True)


def test_truncated_safetensors_is_named(tiny_checkpoint):
    folder = tiny_checkpoint("llama")
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1000])
    with pytest.raises(CheckpointError, match=r"model\.safetensors: truncated"):
        formers.AutoModelForCausalLM.from_pretrained(folder)


def test_missing_shard_is_named(tiny_checkpoint, tmp_path):
    formers.AutoModelForCausalLM.from_pretrained(tiny_checkpoint("llama")).save_pretrained(
        tmp_path / "m", max_shard_size="40KB")
    shard = sorted((tmp_path / "m").glob("model-*.safetensors"))[1]
    shard.unlink()
    with pytest.raises(CheckpointError, match=shard.name):
        formers.AutoModelForCausalLM.from_pretrained(tmp_path / "m")


def test_config_field_of_wrong_type_is_named(tiny_checkpoint):
    folder = tiny_checkpoint("llama")
    config = json.loads((folder / "config.json").read_text())
    config["hidden_size"] = "sixty-four"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=r"config\.json.*'hidden_size': expected int, got str"):
        formers.AutoModelForCausalLM.from_pretrained(folder)


def test_unknown_model_type_is_named(tiny_checkpoint):
    folder = tiny_checkpoint("llama")
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "hyperllama"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnknownModelTypeError, match="'hyperllama' is not supported.*llama"):
        formers.AutoModelForCausalLM.from_pretrained(folder)


def test_missing_and_unexpected_keys_are_reported(tiny_checkpoint, tmp_path, caplog):
    from safetensors.torch import load_file, save_file
    folder = tiny_checkpoint("llama")
    state = load_file(folder / "model.safetensors")
    state.pop("model.layers.1.mlp.up_proj.weight")
    state["model.layers.1.mlp.extra.weight"] = torch.zeros(2)
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    with caplog.at_level(logging.WARNING, logger="formers"):
        model = formers.AutoModelForCausalLM.from_pretrained(folder)
    assert "model.layers.1.mlp.extra.weight" in caplog.text and "model.layers.1.mlp.up_proj.weight" in caplog.text
    assert not model.model.layers[1].mlp.up_proj.weight.is_meta
    state["model.layers.0.mlp.up_proj.weight"] = torch.zeros(3, 3)
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"'model.layers.0.mlp.up_proj.weight' has shape \(3, 3\)"):
        formers.AutoModelForCausalLM.from_pretrained(folder)


def _fake_hub_cache(cache_dir, repo_id, folder, revision="0123456789abcdef0123456789abcdef01234567"):
    """The on-disk layout huggingface_hub itself writes: models--org--name/{refs,snapshots}."""
    repo = cache_dir / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    shutil.copytree(folder, repo / "snapshots" / revision)


def test_hub_id_served_offline_from_cache(tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = tiny_checkpoint("mistral", sliding_window=4)
    _fake_hub_cache(tmp_path / "hub", "someone/tiny-mistral", folder)
    model = formers.AutoModelForCausalLM.from_pretrained("someone/tiny-mistral", cache_dir=tmp_path / "hub")
    reference = formers.AutoModelForCausalLM.from_pretrained(folder)
    assert torch.equal(_logits(model), _logits(reference))
    with pytest.raises(HubFileNotFoundError, match=r"'config.json' of repo 'someone/absent'"):
        formers.AutoModelForCausalLM.from_pretrained("someone/absent", cache_dir=tmp_path / "hub")


def test_config_round_trip_keeps_unknown_keys_and_aliases(tiny_checkpoint, tmp_path):
    folder = tiny_checkpoint("qwen2")
    data = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**data, "my_extra_key": 1}))
    config = formers.AutoConfig.from_pretrained(folder, rms_norm_eps=1e-5)
    assert config.my_extra_key == 1 and config.rms_norm_eps == 1e-5 and type(config).__name__ == "Qwen2Config"
    config.save_pretrained(tmp_path)
    theirs = transformers.AutoConfig.from_pretrained(tmp_path)
    ours = transformers.AutoConfig.from_pretrained(folder, rms_norm_eps=1e-5)
    theirs_dict = theirs.to_diff_dict()
    for key, value in ours.to_diff_dict().items():
        if key not in ("transformers_version", "_name_or_path"):
            assert theirs_dict.get(key) == value, key
    assert formers.AutoConfig.from_pretrained(tmp_path).my_extra_key == 1
    llama = formers.LlamaConfig(hidden_size=64, num_attention_heads=4)
    assert llama.head_dim == 16 and llama.num_key_value_heads == 4
    with pytest.raises(ConfigError, match="rope_scaling"):
        formers.LlamaConfig(rope_scaling={"rope_type": "yarn"})


def test_src_never_imports_transformers(tiny_checkpoint):
    folder = tiny_checkpoint("llama")
    code = (
        "import sys, torch, formers\n"
        f"m = formers.AutoModelForCausalLM.from_pretrained({str(folder)!r})\n"
        "m.generate(torch.tensor([[1, 5, 6]]), max_new_tokens=3, pad_token_id=0)\n"
        "formers.AutoConfig, formers.DynamicCache, formers.GenerationConfig\n"
        "bad = [n for n in sys.modules if n == 'transformers' or n.startswith('transformers.')]\n"
        "assert not bad, bad\n"
        "print('clean')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and "clean" in done.stdout, done.stderr


@pytest.mark.parametrize("name", sorted(f"{family.stem}Config" for family in FAMILIES.values()))
def test_config_defaults_equal_transformers(name):
    """Every registered family's config: same fields and defaults as 4.45.2's class of that name."""
    reference = getattr(transformers, name)()
    ours, theirs = getattr(formers, name)().to_diff_dict(), reference.to_diff_dict()
    theirs.setdefault("tie_word_embeddings", reference.tie_word_embeddings)  # formers always writes it
    ours.pop("formers_version", None)
    theirs.pop("transformers_version", None)
    assert ours == theirs
