"""Toolbox: the named tools an agent may call."""
from __future__ import annotations

from .parsing import AgentError
from .tools import Tool, get_tool_description_with_args


class Toolbox:
    """The tools of an agent, by name. `add_base_tools=True` adds the tools formers ships that make sense
    without a downloaded model: the Python interpreter (for JSON agents; code agents run code themselves)."""

    def __init__(self, tools: list[Tool], add_base_tools: bool = False, add_python_interpreter: bool = False) -> None:
        self._tools: dict[str, Tool] = {}
        for tool in tools:
            self.add_tool(tool)
        if add_base_tools:
            self.add_base_tools(add_python_interpreter=add_python_interpreter)

    def add_base_tools(self, add_python_interpreter: bool = False) -> None:
        from .default_tools import PythonInterpreterTool

        if add_python_interpreter and "python_interpreter" not in self._tools:
            self.add_tool(PythonInterpreterTool())

    @property
    def tools(self) -> dict[str, Tool]:
        return self._tools

    def show_tool_descriptions(self, tool_description_template: str | None = None) -> str:
        return "\n".join(get_tool_description_with_args(tool, tool_description_template) for tool in self._tools.values())

    def add_tool(self, tool: Tool) -> None:
        if not isinstance(tool, Tool):
            raise AgentError(f"Toolbox.add_tool: expected a Tool instance, got {type(tool).__name__} "
                             f"(decorate functions with @tool)")
        if tool.name in self._tools:
            raise AgentError(f"Error: tool '{tool.name}' already exists in the toolbox.")
        self._tools[tool.name] = tool

    def remove_tool(self, tool_name: str) -> None:
        if tool_name not in self._tools:
            raise AgentError(f"Error: tool {tool_name} not found in toolbox for removal, should be instead one of "
                             f"{list(self._tools)}.")
        del self._tools[tool_name]

    def update_tool(self, tool: Tool) -> None:
        if tool.name not in self._tools:
            raise AgentError(f"Error: tool {tool.name} not found in toolbox for update, should be instead one of "
                             f"{list(self._tools)}.")
        self._tools[tool.name] = tool

    def clear_toolbox(self) -> None:
        self._tools = {}

    def __repr__(self) -> str:
        return "Toolbox contents:\n" + "".join(f"\t{tool.name}: {tool.description}\n" for tool in self._tools.values())
