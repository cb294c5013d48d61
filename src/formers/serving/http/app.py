"""The FastAPI app: OpenAI routes, /health, /metrics, API-key and body-size guards, OpenAI errors."""
from __future__ import annotations

import contextlib
import hmac
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse

from .chat import create_chat_completion
from .completions import create_completion
from .errors import APIError, install_error_handlers
from .protocol import ChatCompletionRequest, CompletionRequest
from .runner import sampling_defaults
from .state import ServerState

DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024


def build_app(state: ServerState, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
              shutdown_engine: bool = True) -> FastAPI:
    """An app serving `state.engine` (an AsyncEngine). `shutdown_engine`: stop the engine with the app."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        if shutdown_engine:
            state.engine.shutdown()

    app = FastAPI(title="formers OpenAI-compatible server", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.server = state
    install_error_handlers(app)
    _add_routes(app, state)
    app.add_middleware(GuardMiddleware, api_key=state.api_key, max_body_bytes=max_body_bytes,
                       metrics=state.metrics)
    return app


def _add_routes(app: FastAPI, state: ServerState) -> None:
    @app.get("/health")
    async def health() -> Any:
        if not state.engine.is_running:
            raise APIError(503, "the serving engine is not running", code="engine_unavailable")
        return {"status": "ok"}

    @app.get("/metrics")
    async def metrics() -> PlainTextResponse:
        text = state.metrics.render(state.engine.stats())
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    def model_card() -> dict:
        return {"id": state.model_name, "object": "model", "created": state.created, "owned_by": "formers",
                "max_model_len": state.max_model_len}

    @app.get("/v1/models")
    async def list_models() -> dict:
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{model:path}")
    async def retrieve_model(model: str) -> dict:
        state.check_model(model)
        return model_card()

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request) -> Any:
        return await create_completion(state, body, request)

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
        return await create_chat_completion(state, body, request)


class GuardMiddleware:
    """ASGI middleware: 401 for /v1/* without the API key (when one is set), 413 for a body larger than
    `max_body_bytes` (declared or streamed; the body is read here once and replayed to the app)."""

    def __init__(self, app: Any, api_key: str | None, max_body_bytes: int, metrics: Any):
        self.app, self.api_key, self.max_body_bytes, self.metrics = app, api_key, max_body_bytes, metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        if self.api_key is not None and scope["path"].startswith("/v1/") and not self._authorised(headers):
            return await self._refuse(APIError(401, "Incorrect or missing API key: send `Authorization: Bearer "
                                                    "<key>` with the key the server was started with.",
                                               code="invalid_api_key"), scope, receive, send)
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        too_large = APIError(413, f"the request body is larger than the server's limit of {self.max_body_bytes} "
                                  f"bytes", code="request_too_large")
        declared = headers.get(b"content-length", b"").decode("latin-1")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            return await self._refuse(too_large, scope, receive, send)
        body, more, messages = 0, True, []
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away while sending
            body += len(message.get("body", b""))
            if body > self.max_body_bytes:
                return await self._refuse(too_large, scope, receive, send)
            messages.append(message)
            more = message.get("more_body", False)
        return await self.app(scope, _replay(messages, receive), send)

    def _authorised(self, headers: dict) -> bool:
        given = headers.get(b"authorization", b"").decode("latin-1")
        scheme, _, token = given.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self.api_key.encode())

    async def _refuse(self, error: APIError, scope: dict, receive: Any, send: Any) -> None:
        self.metrics.request_failed(error.status)
        await error.response()(scope, receive, send)


def _replay(messages: list[dict], receive: Any):
    """A `receive` that hands out the buffered body first, then defers to the real one (disconnects)."""
    pending = list(messages)

    async def replay() -> dict:
        return pending.pop(0) if pending else await receive()

    return replay


def app_for_engine(engine: Any, tokenizer: Any, model_name: str, api_key: str | None = None,
                   **app_kwargs: Any) -> FastAPI:
    """The app for an AsyncEngine (limits read from its LLMEngine: context length, vocabulary size; the
    default sampling settings from its model's generation_config)."""
    core = engine.engine
    max_model_len = core.max_model_len if core.max_model_len is not None else tokenizer.model_max_length
    state = ServerState(engine=engine, tokenizer=tokenizer, model_name=model_name, max_model_len=int(max_model_len),
                        vocab_size=int(core.vocab_size), api_key=api_key, grammars=core.grammars,
                        sampling_defaults=sampling_defaults(core.model.generation_config))
    return build_app(state, **app_kwargs)


__all__ = ["build_app", "app_for_engine", "GuardMiddleware", "DEFAULT_MAX_BODY_BYTES"]
