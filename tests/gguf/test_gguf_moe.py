"""Mixture-of-experts GGUF files: Qwen2-MoE (llama.cpp's "qwen2moe", which transformers 4.45.2 also reads)
and Mixtral (written by llama.cpp as "llama" with experts). llama.cpp stacks a layer's experts into one
[experts, rows, cols] tensor and squeezes Qwen2-MoE's [1, hidden] shared-expert gate to a vector.

transformers 4.45.2 lists qwen2moe but reads none of its config (it builds the default 14B Qwen1.5-MoE) nor its
expert tensors, so logits are checked against the safetensors model; its tokenizer is checked against 4.45.2's
(test_gguf_tokenizer.py)."""
from __future__ import annotations

import shutil

import pytest
import torch

import formers
from formers.errors import CheckpointError
from tests.conftest import STORIES, build_oracle_checkpoint

from .conftest import IDS, UNTIED, gguf_of

MOE = {"qwen2_moe": ("qwen2moe", dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=128,
                                      shared_expert_intermediate_size=256)),
       "mixtral": ("llama", dict(num_local_experts=4, num_experts_per_tok=2))}


@pytest.fixture(scope="module")
def checkpoint_of(tmp_path_factory):
    """family -> the folder of its tiny oracle checkpoint, built once per module."""
    built = {}

    def build(family: str):
        if family not in built:
            folder = tmp_path_factory.mktemp(family)
            build_oracle_checkpoint(folder, family, base={**UNTIED, **MOE[family][1]})
            shutil.copy(STORIES / "tokenizer.model", folder)
            built[family] = folder
        return built[family]
    return build


@pytest.fixture(scope="module", params=sorted(MOE))
def moe_dir(request, checkpoint_of):
    return request.param, checkpoint_of(request.param)


@pytest.fixture(scope="module")
def qwen2moe_dir(checkpoint_of):
    return checkpoint_of("qwen2_moe")


def logits(model):
    with torch.no_grad():
        return model(IDS).logits


@pytest.mark.parametrize("qtype", ["F32", "Q8_0"])
def test_moe_file_equals_safetensors_model(moe_dir, qtype):
    family, folder = moe_dir
    file = gguf_of(folder, qtype, arch=MOE[family][0], name=family)
    ours = formers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=file)
    reference = formers.AutoModelForCausalLM.from_pretrained(folder)
    assert type(ours) is type(reference) and ours.config.model_type == family
    for field in ("num_experts", "num_local_experts", "num_experts_per_tok", "moe_intermediate_size",
                  "shared_expert_intermediate_size"):
        assert getattr(ours.config, field, None) == getattr(reference.config, field, None), field
    if qtype == "F32":
        torch.testing.assert_close(logits(ours), logits(reference), rtol=0, atol=1e-5)
    else:  # 2-D weights (attention, router, shared expert) in Q8_0, kept quantized: test_quantized.py's tolerance
        kept = formers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=file, keep_quantized=True)
        expected = logits(ours)
        span = float(expected.max() - expected.min())
        assert float((logits(kept) - expected).abs().max()) <= 0.02 * span


def test_transformers_445_reads_no_qwen2moe_config(qwen2moe_dir):
    """Why the checks above use the safetensors model: 4.45.2 renames the file's qwen2moe.* keys to qwen2_moe.*,
    which its table does not list, so it builds the default Qwen1.5-MoE-A2.7B config (14B parameters) instead
    of the file's."""
    import transformers

    folder = qwen2moe_dir
    file = gguf_of(folder, "F32", arch="qwen2moe", name="qwen2_moe")
    theirs = transformers.AutoConfig.from_pretrained(folder, gguf_file=file)
    ours = formers.AutoConfig.from_pretrained(folder, gguf_file=file)
    assert (ours.hidden_size, ours.num_experts) == (UNTIED["hidden_size"], 4)
    assert (theirs.hidden_size, theirs.num_experts) == (2048, 60)


def test_moe_file_with_missing_expert_count(qwen2moe_dir, tmp_path):
    """A qwen2moe file without its expert metadata cannot be mapped onto the checkpoint's experts."""
    import gguf

    folder = qwen2moe_dir
    from .convert import convert
    path = convert(folder, tmp_path / "m.gguf", "F32", arch="qwen2moe")
    reader = gguf.GGUFReader(path)
    assert reader.fields["qwen2moe.expert_count"].contents() == 4
    data = bytearray(path.read_bytes())
    at = data.index(b"qwen2moe.expert_count")
    data[at:at + len(b"qwen2moe")] = b"qwen2moX"  # the key no longer belongs to the architecture
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"m\.gguf: metadata key 'qwen2moe\.expert_count' is missing"):
        formers.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="m.gguf")
