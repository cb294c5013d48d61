"""Gradio chat pages that stream a model's reply or an agent's steps (gradio is an optional dependency).

`model_chat_ui(model, tokenizer)` streams generated text token by token through TextIteratorStreamer;
`agent_chat_ui(agent)` streams an agent's thoughts, tool calls and observations with `stream_to_gradio`.
Both return a `gradio.Blocks`; call `.launch()` on it (it binds 127.0.0.1 unless told otherwise).
"""
from __future__ import annotations

import threading
from typing import Any, Iterator

from .monitoring import stream_to_gradio


def _gradio():
    try:
        import gradio
    except ImportError as error:
        raise ImportError("The chat UI needs gradio: pip install 'gradio<5.50'") from error
    return gradio


def _page(title: str, respond) -> Any:
    gradio = _gradio()
    with gradio.Blocks(title=title, analytics_enabled=False) as page:
        gradio.Markdown(f"## {title}")
        chatbot = gradio.Chatbot(type="messages", elem_id="chatbot", height=420)
        message = gradio.Textbox(placeholder="Type a message and press Enter", elem_id="message", show_label=False)
        message.submit(respond, [message, chatbot], [chatbot, message])
    return page


def model_chat_ui(model, tokenizer, max_new_tokens: int = 64, title: str = "formers chat", **generate_kwargs) -> Any:
    """A chat page over `model.generate`, using the tokenizer's chat template when it has one."""
    from ..generation.streamers import TextIteratorStreamer

    def respond(text: str, history: list[dict]) -> Iterator:
        history = [{"role": turn["role"], "content": turn["content"]} for turn in history]
        history.append({"role": "user", "content": text})
        if getattr(tokenizer, "chat_template", None):
            inputs = tokenizer.apply_chat_template(history, add_generation_prompt=True, return_tensors="pt",
                                                   return_dict=True)
        else:
            inputs = tokenizer(text, return_tensors="pt")
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=120)
        worker = threading.Thread(target=model.generate, kwargs={**inputs, "streamer": streamer,
                                                                 "max_new_tokens": max_new_tokens, **generate_kwargs})
        worker.start()
        reply = {"role": "assistant", "content": ""}
        history.append(reply)
        for chunk in streamer:
            reply["content"] += chunk
            yield history, ""
        worker.join()
        yield history, ""

    return _page(title, respond)


def agent_chat_ui(agent, title: str = "formers agent", **run_kwargs) -> Any:
    """A chat page that runs `agent` on each message and streams its steps and final answer."""

    def respond(text: str, history: list) -> Iterator:
        history = list(history) + [{"role": "user", "content": text}]
        yield history, ""
        for message in stream_to_gradio(agent, text, **run_kwargs):
            history.append(message)
            yield history, ""

    return _page(title, respond)
