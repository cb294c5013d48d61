"""OpenAIServerEngine against formers' own OpenAI-compatible server (real openai client, real HTTP): the
agent engine returns the served model's greedy reply, stop sequences applied."""
import pytest

pytest.importorskip("fastapi")
from formers.agents import OpenAIServerEngine  # noqa: E402

from ..serving.server_fixtures import DEFAULT_NAME, default_server  # noqa: E402


def test_engine_returns_the_served_reply_with_stops_applied():
    served = default_server()
    messages = [{"role": "user", "content": "What is a list in Python?"}]
    reference = served.client().chat.completions.create(model=DEFAULT_NAME, messages=messages, max_tokens=24,
                                                        temperature=0.0).choices[0].message.content
    engine = OpenAIServerEngine(DEFAULT_NAME, api_base=served.base_url, api_key=served.api_key, max_tokens=24,
                                temperature=0.0)
    assert engine(messages) == reference
    stop_word = reference.split()[2]
    stopped = engine(messages, stop_sequences=[stop_word])
    assert stop_word not in stopped and reference.startswith(stopped.rstrip())
