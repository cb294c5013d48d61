"""OpenAI-compatible HTTP server over the serving engine (FastAPI + uvicorn + sse-starlette).

Needs the `serve` extra (`pip install 'formers[serve]'`). From the shell, on the bundled model, offline:

    formers serve                       # http://127.0.0.1:8000, loopback only unless --host says otherwise
    curl http://127.0.0.1:8000/v1/completions -H 'Content-Type: application/json' \\
         -d '{"model": "formers/default", "prompt": "A list is", "max_tokens": 16}'

or with the openai client: `OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="-").chat.completions.create(
model="formers/default", messages=[{"role": "user", "content": "hi"}])`.

From Python: `app_for_engine(AsyncEngine(LLMEngine(model, tokenizer)), tokenizer, name)` builds the app;
`BackgroundServer(app).start()` runs it on a thread (port 0: a free one), `serve_forever` in the foreground.

Routes: GET /v1/models, POST /v1/completions, POST /v1/chat/completions, GET /health, GET /metrics.
"""
from __future__ import annotations

from .app import DEFAULT_MAX_BODY_BYTES, app_for_engine, build_app
from .server import BackgroundServer, serve_forever
from .state import ServerState

__all__ = ["DEFAULT_MAX_BODY_BYTES", "BackgroundServer", "ServerState", "app_for_engine", "build_app",
           "serve_forever"]
