"""Servers for the HTTP tests, started once per test session on 127.0.0.1 on a free port.

- `default_server()`: the bundled default model (fp32) behind the API key `API_KEY`.
- `scripted_server()`: a 1-layer Llama whose greedy reply is fixed ("Let me check." then a Hermes tool
  call), built by transformers 4.45.2 with hand-set weights, and a chat template that renders tools:
  the end-to-end check of tool calling through the real engine without a model trained for it.
- `oracle()`: transformers 4.45.2 on the default checkpoint, the reference for texts and logprobs.

Each is cached, so test modules that import these fixtures share one server; threads are daemons and
stop with the process.
"""
from __future__ import annotations

import atexit
import functools
import http.client
import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

pytest.importorskip("fastapi")
pytest.importorskip("sse_starlette")
openai = pytest.importorskip("openai")

from formers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402
from formers.default_model import CHECKPOINT_DIR, DEFAULT_MODEL_NAME  # noqa: E402
from formers.serving import EngineConfig, LLMEngine  # noqa: E402
from formers.serving.async_engine import AsyncEngine  # noqa: E402
from formers.serving.http import BackgroundServer, app_for_engine  # noqa: E402

API_KEY = "test-secret-key"
DEFAULT_NAME = "formers-default"
SCRIPTED_NAME = "scripted-tools"
SCRIPT = ["<go>", "Let me check.", "<tool_call>", '{"name": "get_weather", "arguments": {"city": "Paris"}}',
          "</tool_call>", "<eos>"]
TOOL_TEMPLATE = ("{% for m in messages %}{{ m['role'] }} {{ m['content'] }} {% endfor %}"
                 "{% if tools %}{% for t in tools %}tool {{ t['function']['name'] }} {% endfor %}{% endif %}"
                 "{% if add_generation_prompt %}<go>{% endif %}")


@dataclass
class Served:
    """A running server and what the tests need to talk to it."""

    server: BackgroundServer
    engine: AsyncEngine
    tokenizer: Any
    model_name: str
    api_key: str | None

    @property
    def base_url(self) -> str:
        return self.server.url + "/v1"

    def client(self, **kwargs: Any) -> "openai.OpenAI":
        return openai.OpenAI(base_url=self.base_url, api_key=self.api_key or "none", max_retries=0, **kwargs)

    def async_client(self, **kwargs: Any) -> "openai.AsyncOpenAI":
        return openai.AsyncOpenAI(base_url=self.base_url, api_key=self.api_key or "none", max_retries=0, **kwargs)

    def raw(self, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """One plain HTTP request (for bodies the openai client cannot send): (status, parsed JSON or text)."""
        connection = http.client.HTTPConnection(self.server.host, self.server.port, timeout=60)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            data = response.read().decode()
        finally:
            connection.close()
        try:
            return response.status, json.loads(data)
        except json.JSONDecodeError:
            return response.status, data

    def auth(self, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}", "Content-Type": "application/json", **extra}

    def metrics(self) -> dict[str, float]:
        """/metrics parsed: {"name{labels}": value}."""
        status, text = self.raw("GET", "/metrics")
        assert status == 200, text
        values = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                values[name] = float(value)
        return values

    def wait_idle(self, timeout: float = 10.0) -> dict[str, float]:
        """Metrics once nothing runs or waits (fails after `timeout`)."""
        deadline = time.monotonic() + timeout
        while True:
            values = self.metrics()
            if values["formers_num_requests_running"] == 0 and values["formers_num_requests_waiting"] == 0:
                return values
            assert time.monotonic() < deadline, f"the server did not go idle: {values}"
            time.sleep(0.05)


def _start(model: Any, tokenizer: Any, name: str, api_key: str | None, config: EngineConfig) -> Served:
    engine = AsyncEngine(LLMEngine(model, tokenizer, config))
    server = BackgroundServer(app_for_engine(engine, tokenizer, name, api_key=api_key)).start()
    atexit.register(server.stop, 10.0)
    return Served(server, engine, tokenizer, name, api_key)


@functools.cache
def default_server() -> Served:
    tokenizer = AutoTokenizer.from_pretrained(DEFAULT_MODEL_NAME)
    model = AutoModelForCausalLM.from_pretrained(DEFAULT_MODEL_NAME, torch_dtype=torch.float32)
    config = EngineConfig(max_num_seqs=16, max_batched_tokens=512, num_blocks=512)
    return _start(model, tokenizer, DEFAULT_NAME, API_KEY, config)


def build_scripted_checkpoint(folder: Path) -> Path:
    """A Llama (by transformers 4.45.2) whose greedy next token after SCRIPT[i] is SCRIPT[i + 1]
    (cyclically; unknown words lead to "<go>"): one-hot embeddings, attention and MLP outputs zeroed so
    the residual stream is the embedding, and an lm_head that maps each one-hot to its successor."""
    import transformers
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    backend = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.decoder = decoders.Fuse()
    backend.add_tokens([AddedToken(p, normalized=False) for p in SCRIPT if p != "<eos>"])
    backend.add_special_tokens([AddedToken("<eos>", normalized=False)])
    ids = [backend.token_to_id(p) for p in SCRIPT]
    vocab = backend.get_vocab_size()
    folder.mkdir(parents=True, exist_ok=True)
    backend.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<eos>", "unk_token": "[UNK]",
        "chat_template": TOOL_TEMPLATE, "model_max_length": 4096}))
    eos = backend.token_to_id("<eos>")
    config = transformers.LlamaConfig(vocab_size=vocab, hidden_size=16, intermediate_size=16, num_hidden_layers=1,
                                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=4096,
                                      tie_word_embeddings=False, bos_token_id=eos, eos_token_id=eos)
    model = transformers.LlamaForCausalLM(config)
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.fill_(1.0 if "norm" in name else 0.0)
        model.model.embed_tokens.weight[:, :vocab] = torch.eye(vocab)
        successors = {i: ids[(k + 1) % len(ids)] for k, i in enumerate(ids)} | {0: ids[0]}
        for token, successor in successors.items():
            model.lm_head.weight[successor, token] = 10.0
    model.save_pretrained(folder)
    return folder


@functools.cache
def scripted_folder() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="formers-scripted-"))
    atexit.register(shutil.rmtree, folder, True)
    return build_scripted_checkpoint(folder / "model")


def scripted_server(max_num_seqs: int = 8, max_waiting: int = 64) -> Served:
    return _scripted_server(max_num_seqs, max_waiting)


@functools.cache
def _scripted_server(max_num_seqs: int, max_waiting: int) -> Served:
    folder = scripted_folder()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float32)
    config = EngineConfig(max_num_seqs=max_num_seqs, max_batched_tokens=256, num_blocks=1024,
                          max_waiting=max_waiting)
    return _start(model, tokenizer, SCRIPTED_NAME, None, config)


@dataclass
class Oracle:
    model: Any
    tokenizer: Any

    def prompt_ids(self, text: str) -> list[int]:
        return self.tokenizer(text)["input_ids"]

    def greedy(self, ids: list[int], max_new_tokens: int) -> list[int]:
        out = self.model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                  max_new_tokens=max_new_tokens, do_sample=False,
                                  pad_token_id=self.tokenizer.pad_token_id)
        return out[0, len(ids):].tolist()

    def sample(self, ids: list[int], max_new_tokens: int, seed: int, temperature: float) -> list[int]:
        torch.manual_seed(seed)
        out = self.model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                  max_new_tokens=max_new_tokens, do_sample=True, temperature=temperature, top_k=0,
                                  top_p=1.0, pad_token_id=self.tokenizer.pad_token_id)
        return out[0, len(ids):].tolist()

    def text(self, new_ids: list[int]) -> str:
        return self.tokenizer.decode(new_ids, skip_special_tokens=True)

    def logprobs(self, ids: list[int], new_ids: list[int]) -> torch.Tensor:
        """[len(new_ids), V] log-softmax of the logits that chose each new token."""
        with torch.no_grad():
            logits = self.model(torch.tensor([ids + new_ids])).logits[0].float()
        return torch.log_softmax(logits, dim=-1)[len(ids) - 1: len(ids) - 1 + len(new_ids)]


@functools.cache
def oracle() -> Oracle:
    transformers = pytest.importorskip("transformers")
    tokenizer = transformers.AutoTokenizer.from_pretrained(CHECKPOINT_DIR)
    model = transformers.AutoModelForCausalLM.from_pretrained(CHECKPOINT_DIR, torch_dtype=torch.float32).eval()
    return Oracle(model, tokenizer)


@pytest.fixture(scope="session")
def served() -> Served:
    return default_server()


@pytest.fixture(scope="session")
def scripted() -> Served:
    return scripted_server()


@pytest.fixture(scope="session")
def hf() -> Oracle:
    return oracle()
