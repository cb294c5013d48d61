"""Tokenizer files: read tokenizer_config.json / special_tokens_map.json / tokenizer.json (or
tokenizer.model) into constructor arguments, and write them back with `save_pretrained`.

Loading follows transformers 4.45: `added_tokens_decoder` in the config wins; otherwise (older repos)
special_tokens_map.json, added_tokens.json and tokenizer.json's `added_tokens` are used. Saving writes
every file to a temporary name first and renames it into place, so a crash never leaves half a file.
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, Tokenizer

from ..errors import HubFileNotFoundError, TokenizerError, UnsafeCheckpointError
from ..loading.hub import resolve_file
from .special_tokens import SPECIAL_TOKENS_ATTRIBUTES

CONFIG_FILE = "tokenizer_config.json"
SPECIAL_MAP_FILE = "special_tokens_map.json"
TOKENIZER_FILE = "tokenizer.json"
SPM_FILE = "tokenizer.model"
ADDED_TOKENS_FILE = "added_tokens.json"
BPE_VOCAB_FILE, BPE_MERGES_FILE = "vocab.json", "merges.txt"
_HUB_ONLY_KWARGS = ("force_download", "resume_download", "proxies", "_commit_hash", "user_agent", "_from_auto",
                    "_from_pipeline", "gguf_file")


def _read_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, json.JSONDecodeError) as exc:
        raise TokenizerError(f"cannot read {str(path)!r}: {exc}") from exc


def _added_token(value: Any, where: str) -> AddedToken:
    if isinstance(value, AddedToken):
        return value
    if isinstance(value, dict) and "content" in value:
        fields = {k: v for k, v in value.items() if k != "__type" and k != "id"}
        try:
            return AddedToken(**fields)
        except TypeError as exc:
            raise TokenizerError(f"{where}: bad AddedToken fields {sorted(fields)}: {exc}") from exc
    raise TokenizerError(f"{where}: expected an AddedToken dict with 'content', got {value!r}")


def _revive_added_tokens(obj: Any) -> Any:
    """Turn {"__type": "AddedToken", ...} dicts (as saved by transformers) back into AddedToken objects."""
    if isinstance(obj, dict) and obj.get("__type") == "AddedToken":
        return _added_token(obj, CONFIG_FILE)
    if isinstance(obj, (list, tuple)):
        return [_revive_added_tokens(o) for o in obj]
    if isinstance(obj, dict):
        return {k: _revive_added_tokens(v) for k, v in obj.items()}
    return obj


def _legacy_added_tokens(init_kwargs: dict, user_kwargs: dict, files: dict,
                         backend: Tokenizer | None) -> dict[int, AddedToken]:
    """Repos without `added_tokens_decoder`: special_tokens_map.json, added_tokens.json, tokenizer.json."""
    decoder: dict[int, AddedToken] = {}
    if files.get("special_map") is not None:
        for key, value in _read_json(files["special_map"]).items():
            if user_kwargs.get(key):
                continue  # an explicit argument wins over the file
            if isinstance(value, dict):
                value = _added_token({**value, "special": True}, SPECIAL_MAP_FILE)
            elif key == "additional_special_tokens" and isinstance(value, list):
                merged = list(init_kwargs.pop("additional_special_tokens", None) or [])
                for token in value:
                    token = _added_token({**token, "special": True}, SPECIAL_MAP_FILE) \
                        if isinstance(token, dict) else token
                    if token not in merged:
                        merged.append(token)
                value = merged
            init_kwargs[key] = value
    if files.get("added_tokens") is not None:
        specials = {str(init_kwargs[k]) for k in SPECIAL_TOKENS_ATTRIBUTES[:-1] if init_kwargs.get(k) is not None}
        specials |= {str(t) for t in init_kwargs.get("additional_special_tokens") or []}
        for content, index in _read_json(files["added_tokens"]).items():
            special = content in specials
            decoder[int(index)] = AddedToken(content, rstrip=False, lstrip=False, normalized=not special,
                                             special=special)
    if backend is not None:  # tokenizer.json's "added_tokens", as already parsed by the backend
        decoder.update(backend.get_added_tokens_decoder())
    return decoder


def load_pretrained(cls, path_or_repo_id: str | os.PathLike, *init_inputs: Any, **kwargs: Any):
    """Resolve the tokenizer files of a folder or hub repo and construct `cls` from them."""
    if kwargs.pop("trust_remote_code", False):
        raise UnsafeCheckpointError(f"{str(path_or_repo_id)!r}: trust_remote_code=True is not supported; formers "
                                    "never runs code shipped with a checkpoint")
    hub = {k: kwargs.pop(k, None) for k in ("revision", "cache_dir", "token")}
    hub["token"] = hub["token"] if hub["token"] is not None else kwargs.pop("use_auth_token", None)
    hub["local_files_only"] = bool(kwargs.pop("local_files_only", False))
    subfolder = kwargs.pop("subfolder", None) or ""
    tokenizer_class = kwargs.pop("_tokenizer_class", None)
    for name in _HUB_ONLY_KWARGS:
        kwargs.pop(name, None)

    def fetch(filename: str) -> Path | None:
        name = f"{subfolder.rstrip('/')}/{filename}" if subfolder else filename
        return resolve_file(path_or_repo_id, name, required=False, **hub)

    files = {"config": fetch(CONFIG_FILE), "tokenizer": fetch(TOKENIZER_FILE), "spm": fetch(SPM_FILE),
             "special_map": fetch(SPECIAL_MAP_FILE), "added_tokens": fetch(ADDED_TOKENS_FILE),
             "bpe_vocab": fetch(BPE_VOCAB_FILE), "bpe_merges": fetch(BPE_MERGES_FILE)}
    has_bpe = files["bpe_vocab"] is not None and files["bpe_merges"] is not None
    if files["tokenizer"] is None and files["spm"] is None and not has_bpe:
        raise HubFileNotFoundError(f"{str(path_or_repo_id)!r} has neither {TOKENIZER_FILE}, {SPM_FILE} nor "
                                   f"{BPE_VOCAB_FILE} + {BPE_MERGES_FILE}; cannot build a tokenizer from it")
    backend = _load_backend(files["tokenizer"])
    init_kwargs = _read_json(files["config"]) if files["config"] is not None else {}
    if not isinstance(init_kwargs, dict):
        raise TokenizerError(f"{str(files['config'])!r} must hold a JSON object")
    init_kwargs = dict(init_kwargs)
    init_kwargs.pop("tokenizer_class", None)
    saved_inputs = init_kwargs.pop("init_inputs", ())
    init_inputs = init_inputs or tuple(saved_inputs)
    for stale in ("tokenizer_file", "vocab_file", "merges_file", "special_tokens_map_file", "auto_map"):
        init_kwargs.pop(stale, None)
    user_kwargs = dict(kwargs)
    init_kwargs.update(kwargs)

    if "added_tokens_decoder" in init_kwargs:
        raw = init_kwargs["added_tokens_decoder"] or {}
        if isinstance(raw, dict) and all(isinstance(v, AddedToken) for v in raw.values()):
            decoder = {int(k): v for k, v in raw.items()}
        elif isinstance(raw, dict):
            decoder = {int(k): _added_token(v, f"{CONFIG_FILE} added_tokens_decoder[{k}]") for k, v in raw.items()}
        else:
            raise TokenizerError(f"{CONFIG_FILE}: added_tokens_decoder must be an object of id -> token")
    else:
        decoder = _legacy_added_tokens(init_kwargs, user_kwargs, files, backend)
    init_kwargs["added_tokens_decoder"] = decoder
    init_kwargs = _revive_added_tokens(init_kwargs)
    by_content = {str(tok): tok for tok in decoder.values()}
    for key in SPECIAL_TOKENS_ATTRIBUTES[:-1]:
        value = init_kwargs.get(key)
        if by_content and value is not None and not isinstance(value, AddedToken):
            init_kwargs[key] = by_content.get(str(value), value)
    if files["spm"] is not None:
        init_kwargs["vocab_file"] = str(files["spm"])
    elif has_bpe:
        init_kwargs["vocab_file"], init_kwargs["merges_file"] = str(files["bpe_vocab"]), str(files["bpe_merges"])
    init_kwargs["name_or_path"] = str(path_or_repo_id)
    tokenizer_file = str(files["tokenizer"]) if files["tokenizer"] is not None else None
    return cls(*init_inputs, tokenizer_file=tokenizer_file, _tokenizer_class=tokenizer_class, _backend=backend,
               _via_from_pretrained=True, **init_kwargs)


def _load_backend(path: Path | None) -> Tokenizer | None:
    if path is None:
        return None
    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # the Rust loader raises a bare Exception
        raise TokenizerError(f"cannot load tokenizer file {str(path)!r}: {exc}") from exc


# -- saving -------------------------------------------------------------------------------------
def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _atomic_copy(source: Path, target: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _jsonable_tokens(obj: Any, type_field: bool) -> Any:
    if isinstance(obj, AddedToken):
        state = obj.__getstate__()
        if type_field:
            state["__type"] = "AddedToken"
        else:
            state.pop("special", None)
        return state
    if isinstance(obj, (list, tuple)):
        return [_jsonable_tokens(o, type_field) for o in obj]
    if isinstance(obj, dict):
        return {k: _jsonable_tokens(v, type_field) for k, v in obj.items()}
    return obj


def tokenizer_config_dict(tok: Any) -> dict[str, Any]:
    """The tokenizer_config.json content for `tok` (same keys transformers writes)."""
    config = copy.deepcopy(tok.init_kwargs)
    for key in set(tok.init_kwargs) | {"model_max_length", "clean_up_tokenization_spaces"}:
        if key.startswith("_") or key == "added_tokens_decoder":
            continue
        value = getattr(tok, key, None) if hasattr(tok, key) else config.get(key)
        if not callable(value):
            config[key] = value
    config.update(tok.special_tokens_map)
    if isinstance(tok.chat_template, dict):
        config["chat_template"] = [{"name": k, "template": v} for k, v in tok.chat_template.items()]
    elif tok.chat_template is not None:
        config["chat_template"] = tok.chat_template
    if tok.init_inputs:
        config["init_inputs"] = list(tok.init_inputs)
    for private in ("vocab_file", "merges_file", "tokenizer_file", "name_or_path", "special_tokens_map_file",
                    "device_map"):
        config.pop(private, None)
    config = _jsonable_tokens(config, type_field=True)
    config["added_tokens_decoder"] = {str(i): t.__getstate__() for i, t in sorted(tok.added_tokens_decoder.items())}
    config["tokenizer_class"] = tok._profile.name
    return config


def _save_bpe_files(tok: Any, directory: Path, filename_prefix: str | None) -> list[str]:
    """vocab.json + merges.txt of a BPE backend (what the slow GPT-2 tokenizer reads), moved into place."""
    if json.loads(tok.backend_tokenizer.model.__getstate__()).get("type") != "BPE":
        return []
    written = []
    with tempfile.TemporaryDirectory(dir=directory, prefix=".bpe-") as staging:
        for produced in tok.backend_tokenizer.model.save(staging, filename_prefix):
            target = directory / Path(produced).name
            os.replace(produced, target)
            written.append(str(target))
    return written


def save_pretrained(tok: Any, save_directory: str | os.PathLike, legacy_format: bool | None = None,
                    filename_prefix: str | None = None) -> tuple[str, ...]:
    """Write the tokenizer files into `save_directory`; returns their paths."""
    directory = Path(save_directory)
    if directory.is_file():
        raise TokenizerError(f"save_pretrained: {str(directory)!r} is a file, expected a directory")
    if legacy_format is True and not (tok._profile.sentencepiece and tok.vocab_file) \
            and not tok._profile.saves_bpe_files:
        raise TokenizerError("save_pretrained(legacy_format=True) needs a SentencePiece tokenizer.model to copy; "
                             "this tokenizer only has the tokenizer.json format")
    directory.mkdir(parents=True, exist_ok=True)
    prefix = f"{filename_prefix}-" if filename_prefix else ""
    config_path, map_path = directory / f"{prefix}{CONFIG_FILE}", directory / f"{prefix}{SPECIAL_MAP_FILE}"
    dump = lambda obj: json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"  # noqa: E731
    _atomic_write(config_path, dump(tokenizer_config_dict(tok)))
    _atomic_write(map_path, dump(_jsonable_tokens(tok.special_tokens_map_extended, type_field=False)))
    written = [str(config_path), str(map_path)]
    vocab_file = Path(tok.vocab_file) if tok.vocab_file else None
    if legacy_format is not False and tok._profile.sentencepiece and vocab_file is not None and vocab_file.is_file():
        target = directory / f"{prefix}{SPM_FILE}"
        if vocab_file.resolve() != target.resolve():
            _atomic_copy(vocab_file, target)
        written.append(str(target))
    if legacy_format is not False and tok._profile.saves_bpe_files:
        written += _save_bpe_files(tok, directory, filename_prefix)
    if legacy_format is not True:
        tokenizer_path = directory / f"{prefix}{TOKENIZER_FILE}"
        _atomic_write(tokenizer_path, tok.backend_tokenizer.to_str(pretty=True))
        written.append(str(tokenizer_path))
    return tuple(written)
