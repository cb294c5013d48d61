"""BitsAndBytesConfig through the installed bitsandbytes package (CPU backend).

transformers 4.45.2 cannot be the oracle here: on a CPU-only machine with bitsandbytes 0.50 it stops in its
backend check (the first test shows it). The reference is 4.45.2's full-precision model with bitsandbytes'
own Linear8bitLt / Linear4bit swapped in by hand for every linear but the head, which is what 4.45's
integration builds on a machine where it runs."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import formers
from formers.errors import CheckpointError, ConfigError
from tests.conftest import build_oracle_checkpoint

bnb = pytest.importorskip("bitsandbytes", reason="bitsandbytes is not installed (it comes with the test extra)")

IDS = torch.tensor([[1, 5, 9, 33, 7, 64, 3], [1, 90, 12, 4, 77, 21, 50]])
SETTINGS = {
    "int8": dict(load_in_8bit=True),
    "nf4": dict(load_in_4bit=True, bnb_4bit_quant_type="nf4"),
    "fp4-double": dict(load_in_4bit=True, bnb_4bit_use_double_quant=True),
    "nf4-bf16-storage": dict(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_quant_storage="bfloat16",
                             bnb_4bit_compute_dtype="bfloat16"),
}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return build_oracle_checkpoint(tmp_path_factory.mktemp("bnb"), "llama", tie_word_embeddings=False,
                                   intermediate_size=128)  # bitsandbytes' CPU 4-bit path needs K % 64 == 0


def reference(folder, settings: dict):
    """4.45.2's float32 model with bitsandbytes' layers put in by hand (all linears except the head; GPT-2's Conv1D
    layers too, their weights transposed to nn.Linear's orientation before quantizing, as 4.45's integration does)."""
    import transformers
    from transformers.pytorch_utils import Conv1D

    model = transformers.AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float32)
    head = model.get_output_embeddings()
    for name, module in list(model.named_modules()):
        if not isinstance(module, (torch.nn.Linear, Conv1D)) or module is head:  # (4.45: subclasses too)
            continue
        has_bias = module.bias is not None
        weight = module.weight.data.t().contiguous() if isinstance(module, Conv1D) else module.weight.data
        outputs, inputs = weight.shape
        if settings.get("load_in_8bit"):
            layer = bnb.nn.Linear8bitLt(inputs, outputs, has_bias, has_fp16_weights=False, threshold=6.0)
            layer.weight = bnb.nn.Int8Params(weight, requires_grad=False, has_fp16_weights=False)
        else:
            kind, double = settings.get("bnb_4bit_quant_type", "fp4"), settings.get("bnb_4bit_use_double_quant", False)
            compute = getattr(torch, settings.get("bnb_4bit_compute_dtype", "float32"))
            storage = getattr(torch, settings.get("bnb_4bit_quant_storage", "uint8"))
            layer = bnb.nn.Linear4bit(inputs, outputs, has_bias, compute_dtype=compute, compress_statistics=double,
                                      quant_type=kind, quant_storage=storage)
            layer.weight = bnb.nn.Params4bit(weight, requires_grad=False, compress_statistics=double, quant_type=kind,
                                             quant_storage=storage)
        if has_bias:
            layer.bias = torch.nn.Parameter(module.bias.data, requires_grad=False)
        model.set_submodule(name, layer.to("cpu"))
    return model.eval()


def test_transformers_445_stops_on_this_machine(checkpoint):
    """Why the reference is built by hand (listed in the README's "differs on purpose")."""
    import transformers

    with pytest.raises(AttributeError, match="frozenset"):
        transformers.AutoModelForCausalLM.from_pretrained(
            checkpoint, quantization_config=transformers.BitsAndBytesConfig(load_in_4bit=True), device_map="cpu")


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_bitsandbytes_layers_equal_the_packages_own(checkpoint, name):
    settings = SETTINGS[name]
    ours = formers.AutoModelForCausalLM.from_pretrained(
        checkpoint, quantization_config=formers.BitsAndBytesConfig(**settings))
    theirs = reference(checkpoint, settings)
    expected_type = bnb.nn.Linear8bitLt if settings.get("load_in_8bit") else bnb.nn.Linear4bit
    assert type(ours.model.layers[0].self_attn.q_proj) is expected_type
    assert type(ours.model.layers[1].mlp.down_proj) is expected_type
    assert not isinstance(ours.lm_head, expected_type) and ours.lm_head.weight.dtype == torch.float32
    stored = getattr(torch, settings.get("bnb_4bit_quant_storage", "uint8"))  # 4-bit pairs viewed as this dtype
    assert ours.model.layers[0].mlp.up_proj.weight.dtype == (torch.int8 if settings.get("load_in_8bit") else stored)
    recorded = ours.config.quantization_config  # the config object, as 4.45 keeps it
    assert isinstance(recorded, formers.BitsAndBytesConfig) and recorded.quant_method == "bitsandbytes"
    assert recorded.load_in_8bit == ours.is_loaded_in_8bit == bool(settings.get("load_in_8bit"))
    with torch.no_grad():
        full = formers.AutoModelForCausalLM.from_pretrained(checkpoint)(IDS).logits
        got, want = ours(IDS).logits, theirs(IDS).logits
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    assert float((got - full).abs().max()) > 1e-4  # the weights really are quantized
    greedy = dict(max_new_tokens=12, do_sample=False)
    assert torch.equal(ours.generate(IDS[:1], **greedy), theirs.generate(IDS[:1], **greedy))


def test_older_spelling_and_memory_footprint(checkpoint):
    full = formers.AutoModelForCausalLM.from_pretrained(checkpoint)
    model = formers.AutoModelForCausalLM.from_pretrained(checkpoint, load_in_8bit=True)
    assert type(model.model.layers[0].self_attn.q_proj) is bnb.nn.Linear8bitLt
    linear = sum(m.weight.numel() for n, m in full.named_modules() if type(m).__name__ == "Linear" and n != "lm_head")
    saved = full.get_memory_footprint() - model.get_memory_footprint()
    assert saved >= 3 * linear - 4 * sum(m.out_features for m in model.modules() if type(m) is bnb.nn.Linear8bitLt)
    with pytest.raises(ConfigError, match="inside quantization_config"):
        formers.AutoModelForCausalLM.from_pretrained(checkpoint, load_in_4bit=True,
                                                     quantization_config=formers.BitsAndBytesConfig(load_in_4bit=True))


def test_dict_form_and_skip_modules(checkpoint):
    model = formers.AutoModelForCausalLM.from_pretrained(
        checkpoint, quantization_config={"quant_method": "bitsandbytes", "load_in_8bit": True,
                                         "llm_int8_skip_modules": ["lm_head", "mlp"]})
    assert type(model.model.layers[0].self_attn.o_proj) is bnb.nn.Linear8bitLt
    assert model.model.layers[0].mlp.gate_proj.weight.dtype == torch.float32


def test_bad_settings_are_refused(checkpoint):
    with pytest.raises(ConfigError, match="load_in_4bit and load_in_8bit are both True"):
        formers.BitsAndBytesConfig(load_in_8bit=True, load_in_4bit=True)
    with pytest.raises(ConfigError, match="bnb_4bit_quant_type: expected one of \\['fp4', 'nf4'\\], got 'int3'"):
        formers.BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="int3")
    with pytest.raises(ConfigError, match="set load_in_8bit=True or load_in_4bit=True"):
        formers.AutoModelForCausalLM.from_pretrained(checkpoint, quantization_config=formers.BitsAndBytesConfig())
    config = formers.BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype="bfloat16")
    assert config.bnb_4bit_compute_dtype is torch.bfloat16 and config.to_dict()["bnb_4bit_compute_dtype"] == "bfloat16"
    assert config.quantization_method() == "fp4"


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal dtype, shape and bytes (4-bit pairs stored as bfloat16 can read as NaN, which torch.equal calls
    unequal)."""
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a.reshape(-1).view(torch.uint8),
                                                                     b.reshape(-1).view(torch.uint8))


def _repacked(model) -> bool:
    """Whether bitsandbytes repacked the model's 4-bit layers for its AVX512_BF16 CPU kernel (at the first forward)."""
    return any(getattr(getattr(m.weight, "quant_state", None), "packing_format_for_cpu", False)
               for m in model.modules() if isinstance(m, bnb.nn.Linear4bit))


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_saved_layers_reload_as_they_were(checkpoint, name, tmp_path):
    """save_pretrained writes each layer's state as bitsandbytes gives it (the layout 4.45 writes: the reference's
    state dict, key for key and value for value), and the folder reloads into the same layers and logits.
    On an AVX512_BF16 CPU the forward before the save has bitsandbytes repack the 4-bit layers for its kernel,
    which computes with each block's scale rounded to bfloat16: the file then holds those scales, in block order
    (bitsandbytes' own unpacking leaves them transposed; formers does not run it), and the model keeps computing
    what it computed before the save."""
    settings = SETTINGS[name]
    ours = formers.AutoModelForCausalLM.from_pretrained(
        checkpoint, quantization_config=formers.BitsAndBytesConfig(**settings))
    with torch.no_grad():
        got = ours(IDS).logits
    ours.save_pretrained(tmp_path / "saved")
    saved = load_file(tmp_path / "saved" / "model.safetensors")
    theirs = reference(checkpoint, settings)
    expected = theirs.state_dict()
    assert saved.keys() == expected.keys()
    double = settings.get("bnb_4bit_use_double_quant", False)
    repacked = _repacked(ours)
    if repacked and double:  # the statistics re-derived from the bfloat16 scales, as bitsandbytes' own unpacking does
        with torch.no_grad():
            theirs(IDS)
        expected = theirs.state_dict()
    elif repacked:
        expected = {key: value.bfloat16().float() if key.endswith(".absmax") else value
                    for key, value in expected.items()}
    assert all(same_bits(saved[key], expected[key]) for key in saved)
    import transformers  # config.json's quantization_config: 4.45's dict of the same settings

    assert json.loads((tmp_path / "saved" / "config.json").read_text())["quantization_config"] == json.loads(
        transformers.BitsAndBytesConfig(**settings).to_json_string(use_diff=False))
    with torch.no_grad():
        assert torch.equal(ours(IDS).logits, got)  # saving left the layers as they were
    reloaded = formers.AutoModelForCausalLM.from_pretrained(tmp_path / "saved")
    assert type(reloaded.model.layers[1].mlp.down_proj) is type(ours.model.layers[1].mlp.down_proj)
    greedy = dict(max_new_tokens=8, do_sample=False)
    with torch.no_grad():
        again = reloaded(IDS).logits
    if repacked and double:  # double quantization of bfloat16 scales does not give them back exactly
        torch.testing.assert_close(again, got, rtol=0, atol=3e-3)  # measured 1.7e-3 of logits up to 0.63
    else:
        assert torch.equal(again, got)
        assert torch.equal(reloaded.generate(IDS[:1], **greedy), ours.generate(IDS[:1], **greedy))


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_folder_saved_by_4_45_loads(checkpoint, name, tmp_path):
    """transformers 4.45.2's save_pretrained of the reference model, with the quantization_config its own
    BitsAndBytesConfig writes, loads into bitsandbytes' layers with the reference's logits and tokens."""
    import transformers

    theirs = reference(checkpoint, SETTINGS[name])
    theirs.save_pretrained(tmp_path / "saved")
    config_file = tmp_path / "saved" / "config.json"
    config = json.loads(config_file.read_text())
    config["quantization_config"] = transformers.BitsAndBytesConfig(**SETTINGS[name]).to_dict()
    config_file.write_text(json.dumps(config))
    ours = formers.AutoModelForCausalLM.from_pretrained(tmp_path / "saved")
    expected_type = bnb.nn.Linear8bitLt if SETTINGS[name].get("load_in_8bit") else bnb.nn.Linear4bit
    assert type(ours.model.layers[0].self_attn.q_proj) is expected_type
    with torch.no_grad():
        torch.testing.assert_close(ours(IDS).logits, theirs(IDS).logits, rtol=0, atol=1e-5)
    greedy = dict(max_new_tokens=8, do_sample=False)
    assert torch.equal(ours.generate(IDS[:1], **greedy), theirs.generate(IDS[:1], **greedy))


def test_bitsandbytes_config_without_its_layers_is_named(checkpoint, tmp_path):
    """A config.json that says bitsandbytes over full-precision weights: the error names the layer and parts."""
    full = formers.AutoModelForCausalLM.from_pretrained(checkpoint)
    full.config.quantization_config = formers.BitsAndBytesConfig(load_in_8bit=True).to_dict()
    full.save_pretrained(tmp_path / "saved")
    with pytest.raises(CheckpointError, match=r"layer 'model\.layers\.\d\.\S+' lacks \['SCB'\]"):
        formers.AutoModelForCausalLM.from_pretrained(tmp_path / "saved")
