"""Streaming an agent's steps to a gradio chat (gradio is an optional dependency)."""
from __future__ import annotations

from typing import Iterator

from .agent_types import AgentAudio, AgentImage, AgentText


def _chat_message():
    try:
        from gradio import ChatMessage
    except ImportError as error:
        raise ImportError("stream_to_gradio needs gradio: pip install gradio") from error
    return ChatMessage


def pull_message(step_log: dict) -> Iterator:
    """The chat messages that show one step: thought, tool call, observation, error."""
    ChatMessage = _chat_message()
    if step_log.get("rationale"):
        yield ChatMessage(role="assistant", content=step_log["rationale"])
    if step_log.get("tool_call"):
        call = step_log["tool_call"]
        content = call["tool_arguments"]
        if call["tool_name"] == "code interpreter":
            content = f"```py\n{content}\n```"
        yield ChatMessage(role="assistant", content=str(content),
                          metadata={"title": f"🛠️ Used tool {call['tool_name']}"})
    if step_log.get("observation"):
        yield ChatMessage(role="assistant", content=f"```\n{step_log['observation']}\n```")
    if step_log.get("error"):
        yield ChatMessage(role="assistant", content=str(step_log["error"]), metadata={"title": "💥 Error"})


def stream_to_gradio(agent, task: str, **kwargs) -> Iterator:
    """Run `agent` on `task` and yield gradio ChatMessages as the steps finish, then the final answer."""
    ChatMessage = _chat_message()
    final = None
    for item in agent.run(task, stream=True, **kwargs):
        if isinstance(item, dict):
            yield from pull_message(item)
        final = item
    if isinstance(final, AgentText):
        yield ChatMessage(role="assistant", content=f"**Final answer:**\n```\n{final.to_string()}\n```")
    elif isinstance(final, AgentImage):
        yield ChatMessage(role="assistant", content={"path": final.to_string(), "mime_type": "image/png"})
    elif isinstance(final, AgentAudio):
        yield ChatMessage(role="assistant", content={"path": final.to_string(), "mime_type": "audio/wav"})
    else:
        yield ChatMessage(role="assistant", content=str(final))
