"""Runs a v4.45 documentation snippet twice, as written (transformers 4.45.2, the oracle) and with
`transformers` -> `formers`, on local tiny checkpoints in place of hub ids; returns what each printed
plus the names it left behind, so a test can compare both runs."""
from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
from pathlib import Path

import torch

DATA = Path(__file__).parents[1] / "data"
STORIES = DATA / "stories260K"
GPT2 = DATA / "tokenizers" / "gpt2"
CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")


def run(script: str, library: str, hub_ids: dict[str, Path], seed: int = 0,
        max_new_tokens: int | None = 12) -> tuple[str, dict]:
    """Execute `script` with `transformers` -> `library` and each hub id -> its folder (seeded first);
    `max_new_tokens=N` / `max_length=N` in the snippet are capped so the tiny models run fast."""
    code = script.replace("transformers", library)
    if max_new_tokens is not None:
        code = re.sub(r"max_new_tokens=\d+", f"max_new_tokens={max_new_tokens}", code)
    for hub_id, folder in hub_ids.items():
        code = code.replace(hub_id, str(folder))
    torch.manual_seed(seed)
    printed, scope = io.StringIO(), {}
    with contextlib.redirect_stdout(printed):
        exec(compile(code, f"<{library} doc example>", "exec"), scope)
    return printed.getvalue(), scope


def run_both(script: str, hub_ids: dict[str, Path], seed: int = 0, **kwargs) -> tuple[tuple[str, dict], tuple[str, dict]]:
    return run(script, "transformers", hub_ids, seed, **kwargs), run(script, "formers", hub_ids, seed, **kwargs)


def add_stories_tokenizer(folder: Path, chat_template: bool = False) -> Path:
    """Copy the vendored stories260K Llama-style tokenizer (vocabulary 512) beside a checkpoint."""
    for name in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(STORIES / name, folder / name)
    if chat_template:
        config = json.loads((folder / "tokenizer_config.json").read_text())
        (folder / "tokenizer_config.json").write_text(json.dumps({**config, "chat_template": CHAT_TEMPLATE}))
    return folder
