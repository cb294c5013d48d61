"""OpenAI-compatible HTTP server over the serving engine (FastAPI + uvicorn + sse-starlette).

Needs the `serve` extra: `pip install formers[serve]`. Entry points: `formers serve` (cli.py),
`app_for_engine(AsyncEngine(LLMEngine(...)), tokenizer, name)`, and `BackgroundServer` to run an app
on a thread.
"""
from __future__ import annotations

from .app import DEFAULT_MAX_BODY_BYTES, app_for_engine, build_app
from .server import BackgroundServer, serve_forever
from .state import ServerState

__all__ = ["DEFAULT_MAX_BODY_BYTES", "app_for_engine", "build_app", "BackgroundServer", "serve_forever",
           "ServerState"]
