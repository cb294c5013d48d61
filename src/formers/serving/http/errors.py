"""Errors in OpenAI's error-object shape, and the handlers that turn every failure into one.

OpenAI clients read `{"error": {"message", "type", "param", "code"}}` and map the HTTP status to an
exception class (400 BadRequestError, 401 AuthenticationError, 404 NotFoundError, 413, 429
RateLimitError, 5xx InternalServerError), so the status matters as much as the body.
"""
from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger("formers.serving.http")

_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 404: "invalid_request_error",
          405: "invalid_request_error", 413: "invalid_request_error", 429: "rate_limit_exceeded",
          500: "server_error", 503: "server_error"}


class APIError(Exception):
    """An error the server answers with: HTTP status + OpenAI error object."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 type_: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.type = type_ or _TYPES.get(status, "invalid_request_error")
        self.headers = headers

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


def _validation_error(exc: RequestValidationError) -> APIError:
    """FastAPI's 422 becomes OpenAI's 400; the first problem names its field (`param`)."""
    errors = exc.errors()
    if not errors:
        return bad_request("invalid request body")
    first = errors[0]
    if first.get("type") == "json_invalid":
        return bad_request(f"the request body is not valid JSON: {first.get('ctx', {}).get('error', first['msg'])}",
                           code="invalid_json")
    location = [str(part) for part in first.get("loc", ()) if part != "body"]
    param = ".".join(location) or None
    detail = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body') or 'body'}: {e['msg']}"
                       for e in errors[:5])
    return bad_request(f"invalid request: {detail}", param=param, code="invalid_value")


def install_error_handlers(app: FastAPI) -> None:
    """Every error leaves the server as an OpenAI error object (and is counted in the app's metrics);
    unexpected ones are logged and answered 500."""

    def answer(request: Request, error: APIError) -> JSONResponse:
        request.app.state.server.metrics.request_failed(error.status)
        return error.response()

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return answer(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return answer(request, _validation_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = "not_found" if exc.status_code == 404 else None
        return answer(request, APIError(exc.status_code, str(exc.detail), code=code, headers=exc.headers))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error while serving a request")
        return answer(request, APIError(500, f"internal server error: {type(exc).__name__}: {exc}"))
