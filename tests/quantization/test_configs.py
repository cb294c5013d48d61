"""The quantization configs against transformers 4.45.2's: the same arguments give the same dict (what a
config.json holds), the same JSON, and the same inputs are refused; a 4.45 dict reads back to itself."""
from __future__ import annotations

import json

import pytest
import torch

import formers
from formers.errors import ConfigError

transformers = pytest.importorskip("transformers")

CASES = [
    ("BitsAndBytesConfig", dict(load_in_8bit=True)),
    ("BitsAndBytesConfig", dict(load_in_8bit=True, llm_int8_threshold=10.0, llm_int8_skip_modules=["lm_head"],
                                llm_int8_enable_fp32_cpu_offload=True)),
    ("BitsAndBytesConfig", dict(load_in_4bit=True)),
    ("BitsAndBytesConfig", dict(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                bnb_4bit_compute_dtype=torch.bfloat16)),
    ("BitsAndBytesConfig", dict(load_in_4bit=True, bnb_4bit_compute_dtype="float16",
                                bnb_4bit_quant_storage="bfloat16")),
    ("BitsAndBytesConfig", dict()),
    ("GPTQConfig", dict(bits=4, dataset="c4", tokenizer=None)),
    ("GPTQConfig", dict(bits=4, use_exllama=False)),
    ("GPTQConfig", dict(bits=8, group_size=-1, desc_act=True, dataset=["some text", "more text"], damp_percent=0.01)),
    ("GPTQConfig", dict(bits=4, disable_exllama=True)),
    ("AwqConfig", dict(bits=4)),
    ("AwqConfig", dict(bits=4, version="GEMV", zero_point=False, group_size=64)),
    ("AqlmConfig", dict()),
    ("AqlmConfig", dict(in_group_size=8, num_codebooks=2, nbits_per_codebook=8,
                        linear_weights_not_to_quantize=["lm_head.weight"])),
    ("EetqConfig", dict(weights="int8")),
    ("EetqConfig", dict(modules_to_not_convert=["lm_head"])),
    ("FbgemmFp8Config", dict()),
    ("FbgemmFp8Config", dict(activation_scale_ub=1000.0, modules_to_not_convert=["lm_head"])),
    ("QuantoConfig", dict(weights="int4")),
    ("QuantoConfig", dict(weights="int8", activations="float8", modules_to_not_convert=["lm_head"])),
    ("HqqConfig", dict()),
    ("HqqConfig", dict(nbits=8, group_size=64, quant_zero=False, quant_scale=False, axis=0)),
    ("HqqConfig", dict(nbits=4, group_size=64, quant_scale=True, axis=1)),
    ("HqqConfig", dict(nbits=3, offload_meta=True, quant_zero=True)),
    ("HqqConfig", dict(dynamic_config={"self_attn.q_proj": dict(nbits=4, group_size=64),
                                       "mlp.down_proj": dict(nbits=2, group_size=16, quant_zero=True)})),
    ("TorchAoConfig", dict(quant_type="int4_weight_only", group_size=32)),
    ("TorchAoConfig", dict(quant_type="int8_weight_only", modules_to_not_convert=["lm_head"])),
    ("TorchAoConfig", dict(quant_type="int8_dynamic_activation_int8_weight")),
]

REFUSED = [
    ("BitsAndBytesConfig", dict(load_in_8bit=True, load_in_4bit=True)),
    ("BitsAndBytesConfig", dict(load_in_8bit=1)),
    ("BitsAndBytesConfig", dict(llm_int8_threshold=6)),
    ("BitsAndBytesConfig", dict(llm_int8_skip_modules="lm_head")),
    ("BitsAndBytesConfig", dict(bnb_4bit_compute_dtype=3)),
    ("BitsAndBytesConfig", dict(bnb_4bit_quant_storage="int4")),
    ("GPTQConfig", dict(bits=5)),
    ("GPTQConfig", dict(bits=4, group_size=0)),
    ("GPTQConfig", dict(bits=4, damp_percent=1.5)),
    ("GPTQConfig", dict(bits=4, dataset="ptb")),
    ("GPTQConfig", dict(bits=4, dataset=3)),
    ("GPTQConfig", dict(bits=4, use_exllama=True, disable_exllama=True)),
    ("GPTQConfig", dict(bits=4, exllama_config={"max_input_len": 10})),
    ("AwqConfig", dict(backend="vllm")),
    ("AwqConfig", dict(version="marlin")),
    ("AqlmConfig", dict(num_codebooks=1.0)),
    ("AqlmConfig", dict(linear_weights_not_to_quantize="lm_head.weight")),
    ("EetqConfig", dict(weights="int4")),
    ("QuantoConfig", dict(weights="int3")),
    ("QuantoConfig", dict(activations="int4")),
    ("HqqConfig", dict(axis=2)),
    ("TorchAoConfig", dict(quant_type="int3_weight_only")),
    ("TorchAoConfig", dict(quant_type="int8_weight_only", group_size=32)),
]


def _plain(value):
    """A 4.45 dict as JSON sees it (its enums become their values, dtypes their names)."""
    return json.loads(json.dumps(value, default=str))


def _reference(name, kwargs, monkeypatch):
    if name == "AwqConfig":  # 4.45 builds an AwqConfig only where CUDA is (formers builds it anywhere)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    config = getattr(transformers, name)(**kwargs)
    data = config.to_dict()
    if name == "TorchAoConfig":  # 4.45 also copies its table of torchao functions, which no JSON can hold
        data.pop("_STR_TO_METHOD")
    return config, _plain(data)


@pytest.mark.parametrize("name,kwargs", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_dict_equals_4_45s(name, kwargs, monkeypatch):
    reference, expected = _reference(name, kwargs, monkeypatch)
    ours = getattr(formers, name)(**kwargs)
    assert _plain(ours.to_dict()) == expected
    if name in ("BitsAndBytesConfig", "HqqConfig") and "dynamic_config" not in kwargs:
        # the classes 4.45 gives a diff against their defaults (4.45's raises a KeyError for per-layer settings)
        assert ours.to_json_string() == reference.to_json_string()
    assert ours.to_json_string(use_diff=False) == json.dumps(expected, indent=2, sort_keys=True) + "\n"
    if name == "TorchAoConfig":
        assert repr(ours) == repr(reference)
    # a config.json's dict (4.45's, or ours) reads back to the same config
    again = type(ours).from_dict(dict(expected))
    assert _plain(again.to_dict()) == expected


@pytest.mark.parametrize("name,kwargs", REFUSED, ids=[f"{n}-{i}" for i, (n, _) in enumerate(REFUSED)])
def test_refused_where_4_45_refuses(name, kwargs, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises((ValueError, TypeError)):
        getattr(transformers, name)(**kwargs)
    with pytest.raises(ConfigError, match=name.removesuffix("Config")):
        getattr(formers, name)(**kwargs)


def test_bitsandbytes_flags_and_update():
    ours, reference = formers.BitsAndBytesConfig(load_in_8bit=True), transformers.BitsAndBytesConfig(load_in_8bit=True)
    with pytest.raises(ConfigError, match="both True"):
        ours.load_in_4bit = True
    with pytest.raises(ValueError):
        reference.load_in_4bit = True
    for config in (ours, reference):
        config.load_in_8bit = False
        config.load_in_4bit = True
    assert ours.quantization_method() == reference.quantization_method() == "fp4"
    assert ours.update(bnb_4bit_quant_type="nf4", unknown=1) == reference.update(bnb_4bit_quant_type="nf4",
                                                                                 unknown=1) == {"unknown": 1}
    assert _plain(ours.to_dict()) == _plain(reference.to_dict())
    assert _plain(dict(ours)) == _plain(dict(reference))
    config, unused = formers.QuantoConfig.from_dict({"weights": "int4"}, return_unused_kwargs=True,
                                                    activations="int8", other=2)
    assert (config.weights, config.activations, unused) == ("int4", "int8", {"other": 2})


def test_gptq_optimum_dicts():
    for kwargs in (dict(bits=4), dict(bits=4, use_exllama=False)):
        ours, reference = formers.GPTQConfig(**kwargs), transformers.GPTQConfig(**kwargs)
        assert _plain(ours.to_dict_optimum()) == _plain(reference.to_dict_optimum())
    saved = {"bits": 4, "disable_exllama": True, "group_size": 32}
    assert (_plain(formers.GPTQConfig.from_dict_optimum(dict(saved)).to_dict())
            == _plain(transformers.GPTQConfig.from_dict_optimum(dict(saved)).to_dict()))


def test_compressed_tensors_dict_reads_back():
    """4.45 parses these with the compressed_tensors package; formers keeps the dicts as a config.json holds them."""
    groups = {"group_0": {"targets": ["Linear"], "weights": {"num_bits": 8, "type": "int", "symmetric": True}}}
    config = formers.CompressedTensorsConfig(config_groups=groups, ignore=["lm_head"])
    data = config.to_dict()
    assert data["quantization_config"]["config_groups"] == groups and data["sparsity_config"] is None
    assert data["quantization_config"]["quant_method"] == "compressed-tensors"
    assert formers.CompressedTensorsConfig.from_dict(data).to_dict() == data
    assert formers.CompressedTensorsConfig().to_dict() == {"quantization_config": None, "sparsity_config": None}


def test_module_path_of_4_45():
    from formers.utils.quantization_config import BitsAndBytesConfig, QuantizationConfigMixin, QuantizationMethod

    assert isinstance(BitsAndBytesConfig(load_in_8bit=True), QuantizationConfigMixin)
    assert {method.value for method in QuantizationMethod} == {
        method.value for method in transformers.utils.quantization_config.QuantizationMethod}
