"""GenerationConfig against transformers 4.45.2: defaults, json files, validation, modes."""
from __future__ import annotations

import json
import re
import warnings

import pytest
import transformers

from formers.errors import ConfigError, GenerationError
from formers.generation import GenerationConfig, GenerationMode


def _quiet(factory, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return factory(*args, **kwargs)


def test_defaults_match_key_by_key():
    ours, theirs = GenerationConfig().to_dict(), transformers.GenerationConfig().to_dict()
    assert list(ours) == list(theirs)
    for key in theirs:
        assert ours[key] == theirs[key], key
    assert GenerationConfig().to_json_string() == transformers.GenerationConfig().to_json_string()


CONFIGS = [
    dict(max_new_tokens=12, do_sample=True, temperature=0.7, top_p=0.9, top_k=20, eos_token_id=[2, 3]),
    dict(num_beams=4, num_return_sequences=2, length_penalty=0.8, early_stopping="never", pad_token_id=0),
    dict(bad_words_ids=[[1], [2, 3]], sequence_bias={(4,): 1.0}, suppress_tokens=[5], custom_field="kept"),
    dict(cache_implementation="static", bos_token_id=1, output_scores=True, return_dict_in_generate=True),
    dict(watermarking_config={"bias": 2.5, "seeding_scheme": "selfhash"}, do_sample=True),
]


@pytest.mark.parametrize("kwargs", CONFIGS)
def test_to_dict_and_json_match(kwargs):
    kw_theirs = {k: v for k, v in kwargs.items() if k != "cache_implementation"}  # 4.45 needs a cache_config
    ours = GenerationConfig(**kwargs)
    theirs = transformers.GenerationConfig(**kw_theirs)
    if "cache_implementation" in kwargs:
        theirs.cache_implementation = kwargs["cache_implementation"]
    ours_json, theirs_json = json.loads(ours.to_json_string()), json.loads(theirs.to_json_string())
    assert ours_json == theirs_json
    assert json.loads(ours.to_json_string(use_diff=False)) == json.loads(theirs.to_json_string(use_diff=False))
    assert repr(ours).startswith("GenerationConfig {")


@pytest.mark.parametrize("kwargs", CONFIGS)
def test_json_round_trip_and_transformers_reads_our_file(tmp_path, kwargs):
    ours = GenerationConfig(**kwargs)
    ours.save_pretrained(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["generation_config.json"]  # no temp file left behind
    again = GenerationConfig.from_pretrained(tmp_path)
    assert again == ours and again.to_json_string() == ours.to_json_string()
    if "cache_implementation" not in kwargs:
        theirs = transformers.GenerationConfig.from_pretrained(tmp_path)
        mine = again.to_dict()
        for key, value in theirs.to_dict().items():
            if key == "watermarking_config" and value is not None:
                value = value.to_dict()
            assert mine[key] == value, key
        assert set(mine) == set(theirs.to_dict())


def test_from_pretrained_reads_transformers_file_and_kwargs(tmp_path):
    transformers.GenerationConfig(max_length=33, eos_token_id=[1, 2], top_k=3, do_sample=True).save_pretrained(
        tmp_path, config_file_name="gen.json")
    ours, unused = GenerationConfig.from_pretrained(tmp_path, "gen.json", top_p=0.5, foo=1, return_unused_kwargs=True)
    theirs, theirs_unused = transformers.GenerationConfig.from_pretrained(tmp_path, "gen.json", top_p=0.5, foo=1,
                                                                          return_unused_kwargs=True)
    assert ours.to_dict() == theirs.to_dict() and unused == theirs_unused
    assert ours._original_object_hash == hash(ours)


def test_from_pretrained_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="generation_config.json"):
        GenerationConfig.from_pretrained(tmp_path)


def test_from_dict_update_and_unknown_kwargs():
    ours = GenerationConfig.from_dict({"top_k": 3, "do_sample": True, "my_flag": 1}, top_p=0.3)
    theirs = transformers.GenerationConfig.from_dict({"top_k": 3, "do_sample": True, "my_flag": 1}, top_p=0.3)
    assert ours.to_dict() == theirs.to_dict()
    assert ours.update(top_k=7, nope=2) == theirs.update(top_k=7, nope=2) == {"nope": 2}
    assert ours.top_k == 7 and ours.my_flag == 1


def test_from_model_config():
    model_config = transformers.LlamaConfig(bos_token_id=5, eos_token_id=[6, 7], pad_token_id=0,
                                            output_hidden_states=True)
    ours, theirs = GenerationConfig.from_model_config(model_config), transformers.GenerationConfig.from_model_config(
        model_config)
    assert ours.to_dict() == theirs.to_dict()
    assert ours.return_dict_in_generate is True and ours.eos_token_id == [6, 7]


def test_equality_ignores_metadata():
    a, b = GenerationConfig(top_k=3), GenerationConfig(top_k=3, transformers_version="4.0.0")
    assert a == b and hash(a) == hash(b) and a != GenerationConfig(top_k=4) and a != "x"


# Cases where 4.45 raises ValueError (or TypeError on a wrong type): we raise ConfigError.
INVALID = [
    dict(early_stopping="sometimes"),
    dict(max_new_tokens=0),
    dict(num_return_sequences=2),
    dict(num_beams=2, num_return_sequences=3),
    dict(num_beams=2, force_words_ids=[[1]], do_sample=True),
    dict(num_beams=4, constraints=[], num_beam_groups=2, diversity_penalty=1.0),
    dict(num_beams=4, num_beam_groups=2, do_sample=True, diversity_penalty=1.0),
    dict(num_beams=4, num_beam_groups=3, diversity_penalty=1.0),
    dict(num_beams=4, num_beam_groups=2),
    dict(cache_implementation="paged"),
    dict(cache_config={"nbits": 4}),
    dict(logits_processor=[]),
    dict(streamer=object()),
    dict(watermarking_config={"seeding_scheme": "nope"}),
    dict(watermarking_config={"greenlist_ratio": 2.0}),
]


@pytest.mark.parametrize("kwargs", INVALID, ids=[re.sub(r" at 0x[0-9a-f]+", "", str(k)) for k in INVALID])  # no addresses
def test_invalid_configs_raise_where_transformers_raises(kwargs):
    with pytest.raises(ValueError):
        _quiet(transformers.GenerationConfig, **kwargs)
    with pytest.raises(ConfigError):
        _quiet(GenerationConfig, **kwargs)


@pytest.mark.parametrize("field,value", [
    ("max_new_tokens", "ten"), ("max_length", 1.5), ("temperature", "hot"), ("top_k", [3]),
    ("eos_token_id", "2"), ("bad_words_ids", [1, 2]), ("stop_strings", 3), ("do_sample", "yes"),
    ("generation_kwargs", []),
])
def test_wrong_types_name_the_field(tmp_path, field, value):
    (tmp_path / "generation_config.json").write_text(json.dumps({field: value}))
    with pytest.raises(ConfigError, match=f"`{field}`"):
        GenerationConfig.from_pretrained(tmp_path)
    with pytest.raises(ConfigError, match=f"`{field}`"):
        GenerationConfig(**{field: value})


def test_invalid_json_file(tmp_path):
    (tmp_path / "generation_config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not a valid JSON"):
        GenerationConfig.from_pretrained(tmp_path)


WARNS = [
    dict(temperature=0.5), dict(top_p=0.9), dict(min_p=0.1), dict(typical_p=0.5), dict(top_k=3),
    dict(epsilon_cutoff=0.1), dict(eta_cutoff=0.1), dict(early_stopping=True), dict(num_beam_groups=2),
    dict(diversity_penalty=0.5), dict(length_penalty=0.7), dict(constraints=[]), dict(output_scores=True),
    dict(pad_token_id=-1), dict(num_beams=2, dola_layers="low"), dict(top_k=3, penalty_alpha=0.5),
    dict(do_sample=True, temperature=0.5), dict(),
]


@pytest.mark.parametrize("kwargs", WARNS, ids=[str(k) for k in WARNS])
def test_warnings_match_transformers(kwargs):
    with warnings.catch_warnings(record=True) as theirs:
        warnings.simplefilter("always")
        transformers.GenerationConfig(**kwargs)
    with warnings.catch_warnings(record=True) as ours:
        warnings.simplefilter("always")
        GenerationConfig(**kwargs)
    theirs = [w for w in theirs if issubclass(w.category, UserWarning)]
    assert [w.category for w in ours] == [w.category for w in theirs]
    for name in kwargs:  # each warning names the flag at fault
        if theirs and name in str(theirs[0].message):
            assert any(name in str(w.message) for w in ours)


def test_save_refuses_invalid_config(tmp_path):
    config = _quiet(GenerationConfig, temperature=0.5)
    with pytest.raises(ConfigError, match="temperature"):
        config.save_pretrained(tmp_path)
    theirs = _quiet(transformers.GenerationConfig, temperature=0.5)
    with pytest.raises(ValueError):
        theirs.save_pretrained(tmp_path)


MODES = [
    dict(), dict(do_sample=True), dict(num_beams=3), dict(num_beams=3, do_sample=True),
    dict(num_beams=4, num_beam_groups=2, diversity_penalty=1.0), dict(num_beams=2, force_words_ids=[[1]]),
    dict(penalty_alpha=0.6, top_k=4), dict(prompt_lookup_num_tokens=3), dict(dola_layers="high"),
    dict(do_sample=True, dola_layers=[1, 2]),
]


@pytest.mark.parametrize("kwargs", MODES, ids=[str(m) for m in MODES])
def test_generation_mode(kwargs):
    ours = _quiet(GenerationConfig, **kwargs).get_generation_mode()
    theirs = _quiet(transformers.GenerationConfig, **kwargs).get_generation_mode()
    assert ours == theirs and ours.value == theirs.value and isinstance(ours, GenerationMode)
    assert ours == theirs.value  # str enum


def test_generation_mode_assistant_errors():
    config = GenerationConfig(num_beams=2)
    with pytest.raises(ValueError):
        transformers.GenerationConfig(num_beams=2).get_generation_mode(assistant_model=object())
    with pytest.raises(GenerationError, match="assisted"):
        config.get_generation_mode(assistant_model=object())
    assert GenerationConfig().get_generation_mode(object()) == GenerationMode.ASSISTED_GENERATION


def test_mode_members_match():
    from transformers.generation.configuration_utils import GenerationMode as HFMode
    assert {m.name: m.value for m in GenerationMode} == {m.name: m.value for m in HFMode}
