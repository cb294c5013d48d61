"""Bad requests get the right HTTP status and an OpenAI error object, and the server keeps serving."""
from __future__ import annotations

import json

import pytest

from formers.serving.http import DEFAULT_MAX_BODY_BYTES

from .server_fixtures import DEFAULT_NAME, openai, served  # noqa: F401 (fixtures)

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"


def _assert_error(status: int, body, expected_status: int, code: str | None = None, param: str | None = None):
    assert status == expected_status, body
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code, error
    if param is not None:
        assert error["param"] == param, error


@pytest.fixture(autouse=True)
def still_serving(served):
    """After every error test: the server still answers a normal request."""
    yield
    result = served.client().completions.create(model=DEFAULT_NAME, prompt="ok", max_tokens=2, temperature=0)
    assert result.choices[0].finish_reason in ("stop", "length")


@pytest.mark.parametrize("body", [b"{not json", b'{"model": "x", "prompt": "a",', b"\xff\xfe"])
def test_malformed_json_is_400(served, body):
    status, error = served.raw("POST", COMPLETIONS, body, served.auth())
    _assert_error(status, error, 400, code="invalid_json")


def test_json_that_is_not_an_object_is_400(served):
    status, error = served.raw("POST", CHAT, b"[1, 2]", served.auth())
    _assert_error(status, error, 400)


def test_unknown_model_is_404(served):
    with pytest.raises(openai.NotFoundError) as caught:
        served.client().chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "hi"}])
    _assert_error(caught.value.status_code, caught.value.response.json(), 404, code="model_not_found", param="model")
    status, error = served.raw("GET", "/v1/models/gpt-9", headers=served.auth())
    _assert_error(status, error, 404, code="model_not_found")


def test_unknown_route_is_404_error_object(served):
    status, error = served.raw("GET", "/v1/nothing-here", headers=served.auth())
    _assert_error(status, error, 404)


@pytest.mark.parametrize("max_tokens", [-1, 0])
def test_non_positive_max_tokens_is_400(served, max_tokens):
    with pytest.raises(openai.BadRequestError) as caught:
        served.client().completions.create(model=DEFAULT_NAME, prompt="a", max_tokens=max_tokens)
    _assert_error(400, caught.value.response.json(), 400, param="max_tokens")


def test_over_long_prompt_is_400_context_length(served):
    long_prompt = "word " * 2000  # the default model takes 512 positions
    with pytest.raises(openai.BadRequestError) as caught:
        served.client().completions.create(model=DEFAULT_NAME, prompt=long_prompt, max_tokens=4)
    _assert_error(400, caught.value.response.json(), 400, code="context_length_exceeded")
    with pytest.raises(openai.BadRequestError) as caught:
        served.client().chat.completions.create(model=DEFAULT_NAME, messages=[{"role": "user", "content": long_prompt}])
    _assert_error(400, caught.value.response.json(), 400, code="context_length_exceeded")


def test_max_tokens_beyond_the_context_is_400(served):
    with pytest.raises(openai.BadRequestError) as caught:
        served.client().chat.completions.create(model=DEFAULT_NAME, messages=[{"role": "user", "content": "hi"}],
                                                max_completion_tokens=10_000)
    _assert_error(400, caught.value.response.json(), 400, code="context_length_exceeded",
                  param="max_completion_tokens")


@pytest.mark.parametrize("path,body,param", [
    (COMPLETIONS, {"model": DEFAULT_NAME, "prompt": "a", "temperature": "hot"}, "temperature"),
    (COMPLETIONS, {"model": DEFAULT_NAME, "prompt": "a", "n": "two"}, "n"),
    (COMPLETIONS, {"model": DEFAULT_NAME, "prompt": 42}, "prompt"),
    (COMPLETIONS, {"model": DEFAULT_NAME, "prompt": "a", "stream": "yes"}, "stream"),
    (COMPLETIONS, {"model": DEFAULT_NAME, "prompt": "a", "top_p": 1.5}, "top_p"),
    (COMPLETIONS, {"model": DEFAULT_NAME, "prompt": "a", "logit_bias": {"abc": 1}}, "logit_bias"),
    (COMPLETIONS, {"model": DEFAULT_NAME, "prompt": []}, "prompt"),
    (COMPLETIONS, {"prompt": "a"}, "model"),
    (CHAT, {"model": DEFAULT_NAME, "messages": "hi"}, "messages"),
    (CHAT, {"model": DEFAULT_NAME, "messages": []}, "messages"),
    (CHAT, {"model": DEFAULT_NAME, "messages": [{"role": "wizard", "content": "hi"}]}, None),
    (CHAT, {"model": DEFAULT_NAME, "messages": [{"role": "user", "content": "hi"}], "seed": 1.5}, "seed"),
])
def test_bad_types_and_ranges_are_400(served, path, body, param):
    status, error = served.raw("POST", path, json.dumps(body).encode(), served.auth())
    _assert_error(status, error, 400)
    if param is not None:
        assert error["error"]["param"].split(".")[0] == param, error


def test_out_of_vocabulary_ids_are_400(served):
    with pytest.raises(openai.BadRequestError) as caught:
        served.client().completions.create(model=DEFAULT_NAME, prompt="a", max_tokens=2, logit_bias={"999999": 5})
    _assert_error(400, caught.value.response.json(), 400, param="logit_bias")
    with pytest.raises(openai.BadRequestError) as caught:
        served.client().completions.create(model=DEFAULT_NAME, prompt=[5, 999999], max_tokens=2)
    _assert_error(400, caught.value.response.json(), 400, param="prompt")


def test_top_logprobs_without_logprobs_is_400(served):
    with pytest.raises(openai.BadRequestError) as caught:
        served.client().chat.completions.create(model=DEFAULT_NAME, messages=[{"role": "user", "content": "hi"}],
                                                top_logprobs=2)
    _assert_error(400, caught.value.response.json(), 400, param="top_logprobs")


def test_oversize_body_is_413(served):
    body = json.dumps({"model": DEFAULT_NAME, "prompt": "x" * (DEFAULT_MAX_BODY_BYTES + 10)}).encode()
    status, error = served.raw("POST", COMPLETIONS, body, served.auth())
    _assert_error(status, error, 413, code="request_too_large")


def test_oversize_chunked_body_is_413(served):
    """No Content-Length: the limit holds on the bytes actually received."""
    import http.client

    connection = http.client.HTTPConnection(served.server.host, served.server.port, timeout=60)
    chunk = b"x" * (1 << 20)
    connection.request("POST", COMPLETIONS, body=iter([chunk] * 5), headers=served.auth(), encode_chunked=True)
    response = connection.getresponse()
    status, body = response.status, json.loads(response.read())
    connection.close()
    _assert_error(status, body, 413, code="request_too_large")


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-key"}, {"Authorization": "Basic abc"}])
def test_missing_or_wrong_api_key_is_401(served, headers):
    status, error = served.raw("POST", COMPLETIONS, json.dumps({"model": DEFAULT_NAME, "prompt": "a"}).encode(),
                               {"Content-Type": "application/json", **headers})
    _assert_error(status, error, 401, code="invalid_api_key")


def test_wrong_api_key_through_the_client(served):
    client = openai.OpenAI(base_url=served.base_url, api_key="not-the-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        client.models.list()
    _assert_error(401, caught.value.response.json(), 401, code="invalid_api_key")


def test_health_and_metrics_need_no_key(served):
    assert served.raw("GET", "/health")[0] == 200
    assert served.raw("GET", "/metrics")[0] == 200


def test_errors_are_counted_in_metrics(served):
    before = served.metrics().get('formers_request_errors_total{status="401"}', 0)
    served.raw("GET", "/v1/models")
    assert served.metrics()['formers_request_errors_total{status="401"}'] == before + 1
