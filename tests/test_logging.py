"""formers.logging / formers.utils.logging: the verbosity functions really change what formers prints."""
from __future__ import annotations

import logging as std_logging

import pytest

import formers
from formers import logging_utils
from formers.utils import logging


@pytest.fixture(autouse=True)
def fresh_library_logger(monkeypatch):
    """Each test starts unconfigured and leaves "formers" as it found it (propagating, no handler)."""
    monkeypatch.delenv("FORMERS_VERBOSITY", raising=False)
    logging_utils._reset_root()
    yield
    logging_utils.reset_format()
    logging_utils._reset_root()


def emit_all(name: str = "formers.test") -> None:
    log = std_logging.getLogger(name)
    log.debug("debug-message")
    log.info("info-message")
    log.warning("warning-message")
    log.error("error-message")


def printed(capsys) -> str:
    return capsys.readouterr().err


def test_both_import_paths_are_the_same_module():
    from formers.utils import get_json_schema

    assert formers.logging is logging
    assert formers.utils.get_json_schema is get_json_schema is formers.get_json_schema
    assert formers.logging.INFO == std_logging.INFO and formers.logging.WARN == std_logging.WARNING


@pytest.mark.parametrize("setter, shown, hidden", [
    ("set_verbosity_error", ["error-message"], ["warning-message", "info-message", "debug-message"]),
    ("set_verbosity_warning", ["error-message", "warning-message"], ["info-message", "debug-message"]),
    ("set_verbosity_info", ["warning-message", "info-message"], ["debug-message"]),
    ("set_verbosity_debug", ["info-message", "debug-message"], []),
])
def test_verbosity_changes_what_is_printed(capsys, setter, shown, hidden):
    getattr(formers.logging, setter)()
    emit_all()
    err = printed(capsys)
    assert all(m in err for m in shown), err
    assert not any(m in err for m in hidden), err


def test_default_is_warning_and_get_verbosity_follows(capsys):
    assert logging.get_verbosity() == logging.WARNING
    logging.set_verbosity(logging.ERROR)
    assert logging.get_verbosity() == logging.ERROR
    emit_all()
    assert "warning-message" not in printed(capsys)


def test_env_variable_sets_the_default(capsys, monkeypatch):
    monkeypatch.setenv("FORMERS_VERBOSITY", "info")
    assert logging.get_verbosity() == logging.INFO
    emit_all()
    assert "info-message" in printed(capsys)


def test_bad_env_value_is_reported(capsys, monkeypatch):
    monkeypatch.setenv("FORMERS_VERBOSITY", "loud")
    assert logging.get_verbosity() == logging.WARNING
    assert "FORMERS_VERBOSITY='loud'" in printed(capsys)


def test_default_handler_can_be_turned_off_and_on(capsys):
    logging.set_verbosity_info()
    logging.disable_default_handler()
    emit_all()
    assert "info-message" not in printed(capsys)  # only Python's last-resort handler (warnings and up) is left
    logging.enable_default_handler()
    emit_all()
    assert "info-message" in printed(capsys)


def test_explicit_format_and_reset(capsys):
    logging.enable_explicit_format()
    emit_all()
    assert "[WARNING|test_logging.py:" in printed(capsys)
    logging.reset_format()
    emit_all()
    assert printed(capsys).splitlines()[0] == "warning-message"


def test_propagation(caplog, capsys):
    logger = logging.get_logger("formers.test")
    assert logger is std_logging.getLogger("formers.test")
    with caplog.at_level(std_logging.WARNING):
        emit_all()
        assert "warning-message" not in caplog.text  # not propagated by default (no doubles under basicConfig)
        logging.enable_propagation()
        emit_all()
        assert "warning-message" in caplog.text
    logging.disable_propagation()


def test_library_messages_obey_verbosity(capsys, tmp_path):
    """A real formers warning: AutoTokenizer on an unknown tokenizer_class logs one; set_verbosity_error hides it."""
    import json
    import shutil

    from .tokenization.conftest import shared_dir

    shutil.copy(shared_dir("stories260K") / "tokenizer.json", tmp_path / "tokenizer.json")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "NoSuchTokenizer"}))
    logging.set_verbosity_warning()
    formers.AutoTokenizer.from_pretrained(tmp_path)
    assert "NoSuchTokenizer" in printed(capsys)
    logging.set_verbosity_error()
    formers.AutoTokenizer.from_pretrained(tmp_path)
    assert "NoSuchTokenizer" not in printed(capsys)


def test_progress_bar_flag():
    logging.disable_progress_bar()
    assert not logging.is_progress_bar_enabled()
    logging.enable_progress_bar()
    assert logging.is_progress_bar_enabled()


def test_utils_helpers():
    import transformers.utils as oracle

    import formers.utils as utils

    assert utils.is_torch_available() and utils.is_sentencepiece_available() and not utils.is_torchdynamo_compiling()
    assert utils.ModelOutput is formers.modeling_outputs.ModelOutput
    for name in ("CONFIG_NAME", "GENERATION_CONFIG_NAME", "WEIGHTS_NAME", "WEIGHTS_INDEX_NAME", "SAFE_WEIGHTS_NAME",
                 "SAFE_WEIGHTS_INDEX_NAME"):
        assert getattr(utils, name) == getattr(oracle, name), name
    assert [s.value for s in utils.PaddingStrategy] == [s.value for s in oracle.PaddingStrategy]
    assert utils.is_flash_attn_2_available() == oracle.is_flash_attn_2_available()
