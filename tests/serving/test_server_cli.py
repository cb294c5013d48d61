"""`formers serve`: arguments, and a real process serving the bundled model with no arguments but a port."""
from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from formers.cli import _byte_size, build_parser

from .server_fixtures import openai  # noqa: F401 (skips without the serve/test extras)


def test_serve_defaults_bind_loopback():
    args = build_parser().parse_args(["serve"])
    assert (args.model, args.host, args.port, args.api_key) == (None, "127.0.0.1", 8000, None)
    assert (args.max_num_seqs, args.max_batched_tokens, args.kv_blocks, args.kv_memory) == (64, 2048, None, None)


def test_kv_blocks_and_kv_memory_exclude_each_other(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--kv-blocks", "10", "--kv-memory", "1GiB"])
    assert "not allowed with argument" in capsys.readouterr().err


@pytest.mark.parametrize("text,expected", [("1024", 1024), ("2GiB", 2 << 30), ("512MB", 512 * 10**6),
                                           ("1.5kib", 1536), ("3gb", 3 * 10**9)])
def test_byte_sizes(text, expected):
    assert _byte_size(text) == expected


@pytest.mark.parametrize("text", ["", "lots", "5 parsecs", "GiB"])
def test_bad_byte_sizes(text):
    with pytest.raises(argparse.ArgumentTypeError, match="expected a size"):
        _byte_size(text)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_formers_serve_process_serves_the_bundled_model():
    port = _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen([sys.executable, "-m", "formers", "serve", "--port", str(port), "--api-key", "k",
                                "--kv-blocks", "64", "--max-num-seqs", "4", "--log-level", "warning"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k", max_retries=0)
        deadline = time.monotonic() + 120
        while True:
            try:
                models = client.models.list()
                break
            except openai.APIConnectionError:
                assert process.poll() is None, process.stdout.read()
                assert time.monotonic() < deadline, "formers serve did not come up"
                time.sleep(0.2)
        assert [m.id for m in models.data] == ["formers/default"]
        result = client.chat.completions.create(model="formers/default", max_tokens=4,
                                                messages=[{"role": "user", "content": "hi"}])
        assert result.usage.completion_tokens >= 1
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0]
    # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal it caught
    assert process.returncode in (0, -signal.SIGTERM), output
    assert "Traceback" not in output, output
