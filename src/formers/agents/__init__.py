"""Agents and tools (transformers 4.45's `transformers.agents` API), with a sandboxed interpreter and
engines that can constrain the LLM's output with a grammar."""
from .agent_types import AgentAudio, AgentImage, AgentText
from .agents import Agent, CodeAgent, ManagedAgent
from .react import ReactAgent, ReactCodeAgent, ReactJsonAgent
from .default_tools import FinalAnswerTool, PythonInterpreterTool
from .interpreter import InterpreterError, SandboxLimits, evaluate_python_code
from .llm_engine import HfApiEngine, MessageRole, OpenAIServerEngine, TransformersEngine, get_clean_message_list
from .monitoring import stream_to_gradio
from .search import DuckDuckGoSearchTool, VisitWebpageTool
from .parsing import (AgentError, AgentExecutionError, AgentGenerationError, AgentMaxIterationsError,
                      AgentParsingError)
from .toolbox import Toolbox
from .tools import PipelineTool, Tool, ToolCollection, launch_gradio_demo, load_tool, tool

__all__ = [
    "Agent", "AgentAudio", "AgentError", "AgentExecutionError", "AgentGenerationError", "AgentImage",
    "AgentMaxIterationsError", "AgentParsingError", "AgentText", "CodeAgent", "DuckDuckGoSearchTool", "FinalAnswerTool", "HfApiEngine",
    "InterpreterError", "ManagedAgent", "MessageRole", "OpenAIServerEngine", "PipelineTool", "PythonInterpreterTool",
    "ReactAgent", "ReactCodeAgent", "ReactJsonAgent", "SandboxLimits", "Tool", "ToolCollection", "Toolbox",
    "TransformersEngine", "VisitWebpageTool", "evaluate_python_code", "get_clean_message_list", "launch_gradio_demo", "load_tool",
    "stream_to_gradio", "tool",
]
