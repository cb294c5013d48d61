"""Agents (transformers 4.45's API): the Agent base, CodeAgent (plans and runs one program) and ManagedAgent;
the step-by-step ReAct agents are in react.py.

An agent's `llm_engine` is any callable `(messages, stop_sequences=..., grammar=...) -> str`. Each step is
recorded in `agent.logs` (a list of dicts: llm_output, rationale, tool_call, observation or error,
final_answer), from which the next prompt is rebuilt (`write_inner_memory_from_logs`).
"""
from __future__ import annotations

import logging
from typing import Any, Callable

from .default_tools import BASE_PYTHON_TOOLS, FinalAnswerTool
from .interpreter import LIST_SAFE_MODULES, evaluate_python_code
from .llm_engine import HfApiEngine, MessageRole
from .parsing import AgentExecutionError, AgentGenerationError, AgentParsingError, parse_code_blob, parse_json_tool_call
from .prompts import (DEFAULT_CODE_SYSTEM_PROMPT, DEFAULT_REACT_CODE_SYSTEM_PROMPT, MANAGED_AGENT_TASK,
                      MANAGED_AGENTS_INTRODUCTION)
from .toolbox import Toolbox
from .tools import DEFAULT_TOOL_DESCRIPTION_TEMPLATE, Tool, get_tool_description_with_args

logger = logging.getLogger("formers.agents")


def show_agents_descriptions(managed_agents: dict) -> str:
    lines = [MANAGED_AGENTS_INTRODUCTION] + [f"- {agent.name}: {agent.description}" for agent in managed_agents.values()]
    return "\n".join(lines)


class Agent:
    """Shared state and helpers of every agent; subclasses implement `run`."""

    wants_python_interpreter_tool = False  # add_base_tools adds the interpreter tool (agents that cannot run code)

    def __init__(self, tools: list[Tool] | Toolbox, llm_engine: Callable | None = None,
                 system_prompt: str = DEFAULT_REACT_CODE_SYSTEM_PROMPT, tool_description_template: str | None = None,
                 additional_args: dict | None = None, max_iterations: int = 6, tool_parser: Callable | None = None,
                 add_base_tools: bool = False, verbose: int = 0, grammar: dict[str, str] | None = None,
                 managed_agents: list | None = None, step_callbacks: list[Callable] | None = None,
                 monitor_metrics: bool = True) -> None:
        self.agent_name = type(self).__name__
        self.llm_engine = llm_engine if llm_engine is not None else HfApiEngine()
        self.system_prompt_template = system_prompt
        self.tool_description_template = tool_description_template or DEFAULT_TOOL_DESCRIPTION_TEMPLATE
        self.additional_args = additional_args or {}
        self.max_iterations = max_iterations
        self.tool_parser = tool_parser or parse_json_tool_call
        self.grammar = grammar
        self.step_callbacks = list(step_callbacks or [])
        self.logger = logger
        self.managed_agents = {agent.name: agent for agent in managed_agents} if managed_agents else None
        if isinstance(tools, Toolbox):
            self._toolbox = tools
            if add_base_tools:
                tools.add_base_tools(add_python_interpreter=self.wants_python_interpreter_tool)
        else:
            self._toolbox = Toolbox(tools, add_base_tools=add_base_tools,
                                    add_python_interpreter=self.wants_python_interpreter_tool)
        if "final_answer" not in self._toolbox.tools:
            self._toolbox.add_tool(FinalAnswerTool())
        self.system_prompt = self.format_system_prompt()
        self.prompt: list[dict[str, str]] | None = None
        self.logs: list[dict[str, Any]] = []
        self.task: str | None = None
        self.state: dict[str, Any] = {}
        self.logger.setLevel({0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG))

    @property
    def toolbox(self) -> Toolbox:
        return self._toolbox

    def format_system_prompt(self) -> str:
        prompt = self.system_prompt_template.replace(
            "<<tool_descriptions>>", self._toolbox.show_tool_descriptions(self.tool_description_template))
        prompt = prompt.replace("<<tool_names>>", ", ".join(f"'{name}'" for name in self._toolbox.tools))
        agents = show_agents_descriptions(self.managed_agents) if self.managed_agents else ""
        prompt = prompt.replace("<<managed_agents_descriptions>>", agents)
        if hasattr(self, "authorized_imports"):
            prompt = prompt.replace("<<authorized_imports>>", str(self.authorized_imports))
        return prompt

    def initialize_for_run(self) -> None:
        self.token_count = 0
        self.system_prompt = self.format_system_prompt()
        self.logs = [{"system_prompt": self.system_prompt, "task": self.task}]
        self.logger.info("======== New task ========\n%s", self.task)

    def start_task(self, task: str, kwargs: dict) -> None:
        self.task = task + (f"\nYou have been provided with these initial arguments: {kwargs}." if kwargs else "")
        self.state = dict(kwargs)

    def write_inner_memory_from_logs(self, summary_mode: bool = False) -> list[dict[str, str]]:
        """The chat the LLM sees: system prompt, task, then each step's output and observation or error."""
        first = self.logs[0]
        memory = [] if summary_mode else [{"role": MessageRole.SYSTEM, "content": first["system_prompt"]}]
        memory.append({"role": MessageRole.USER, "content": "Task: " + first["task"]})
        for index, step in enumerate(self.logs[1:]):
            if "llm_output" in step and not summary_mode:
                memory.append({"role": MessageRole.ASSISTANT, "content": step["llm_output"].strip()})
            if "facts" in step:
                memory.append({"role": MessageRole.ASSISTANT, "content": "[FACTS LIST]:\n" + step["facts"].strip()})
            if "plan" in step and not summary_mode:
                memory.append({"role": MessageRole.ASSISTANT, "content": "[PLAN]:\n" + step["plan"].strip()})
            if "tool_call" in step and summary_mode:
                memory.append({"role": MessageRole.ASSISTANT,
                               "content": f"[STEP {index} TOOL CALL]: {step['tool_call']}".strip()})
            if "task" in step:
                memory.append({"role": MessageRole.USER, "content": "New task:\n" + step["task"]})
            if "error" in step:
                content = (f"[OUTPUT OF STEP {index}] -> Error:\n{step['error']}\nNow let's retry: take care not to "
                           f"repeat previous errors! If you have retried several times, try a completely different "
                           f"approach.\n")
                memory.append({"role": MessageRole.TOOL_RESPONSE, "content": content})
            elif "observation" in step:
                memory.append({"role": MessageRole.TOOL_RESPONSE,
                               "content": f"[OUTPUT OF STEP {index}] -> Observation:\n{step['observation']}"})
        return memory

    def get_succinct_logs(self) -> list[dict]:
        return [{key: value for key, value in log.items() if key != "agent_memory"} for log in self.logs]

    def extract_action(self, llm_output: str, split_token: str) -> tuple[str, str]:
        """(rationale, action) around the last `split_token` of the output."""
        parts = llm_output.split(split_token)
        if len(parts) < 2:
            raise AgentParsingError(f"Error: No '{split_token}' token provided in your output.\nYour output:\n"
                                    f"{llm_output}\n. Be sure to include an action, prefaced with '{split_token}'!")
        return parts[-2].strip(), parts[-1].strip()

    def execute_tool_call(self, tool_name: str, arguments: dict | str) -> Any:
        """Call a tool (or managed agent) by name; string arguments naming state variables are replaced."""
        available = {**self.toolbox.tools, **(self.managed_agents or {})}
        if tool_name not in available:
            raise AgentExecutionError(f"Error: unknown tool {tool_name}, should be instead one of {list(available)}.")
        try:
            if isinstance(arguments, str):
                return available[tool_name](arguments)
            if isinstance(arguments, dict):
                resolved = {key: self.state.get(value, value) if isinstance(value, str) else value
                            for key, value in arguments.items()}
                return available[tool_name](**resolved)
            raise AgentExecutionError(f"Arguments passed to tool should be a dict or string: got a "
                                      f"{type(arguments).__name__}.")
        except AgentExecutionError:
            raise
        except Exception as error:  # noqa: BLE001 - shown to the LLM so it can correct the call
            if tool_name in self.toolbox.tools:
                description = get_tool_description_with_args(available[tool_name])
                raise AgentExecutionError(f"Error in tool call execution: {error}\nYou should only use this tool with "
                                          f"a correct input.\nAs a reminder, this tool's description is the "
                                          f"following:\n{description}") from error
            raise AgentExecutionError(f"Error in calling team member: {error}\nYou should only ask this team member "
                                      f"with a correct request.\nAs a reminder, this team member's description is "
                                      f"the following:\n{available[tool_name]}") from error

    def call_engine(self, messages: list[dict], stop_sequences: list[str]) -> str:
        extra = {"grammar": self.grammar} if self.grammar is not None else {}
        try:
            return self.llm_engine(messages, stop_sequences=stop_sequences, **extra)
        except Exception as error:  # noqa: BLE001
            raise AgentGenerationError(f"Error in generating llm output: {error}.") from error

    def run_code(self, code: str, custom_tools: dict) -> Any:
        tools = {**BASE_PYTHON_TOOLS, **self.toolbox.tools, **(self.managed_agents or {})}
        return evaluate_python_code(code, static_tools=tools, custom_tools=custom_tools, state=self.state,
                                    authorized_imports=self.authorized_imports)

    def run(self, task: str, **kwargs):
        raise NotImplementedError


class CodeMixin:
    """Authorised imports for the agents that write code."""

    def set_imports(self, additional_authorized_imports: list[str] | None) -> None:
        self.additional_authorized_imports = list(additional_authorized_imports or [])
        self.authorized_imports = sorted(set(LIST_SAFE_MODULES) | set(self.additional_authorized_imports))
        self.system_prompt = self.format_system_prompt()


class CodeAgent(CodeMixin, Agent):
    """Writes one program for the whole task and runs it once in the sandbox."""

    def __init__(self, tools: list[Tool], llm_engine: Callable | None = None,
                 system_prompt: str = DEFAULT_CODE_SYSTEM_PROMPT,
                 tool_description_template: str = DEFAULT_TOOL_DESCRIPTION_TEMPLATE, grammar: dict | None = None,
                 additional_authorized_imports: list[str] | None = None, **kwargs) -> None:
        super().__init__(tools=tools, llm_engine=llm_engine, system_prompt=system_prompt,
                         tool_description_template=tool_description_template, grammar=grammar, **kwargs)
        self.python_evaluator = evaluate_python_code
        self.set_imports(additional_authorized_imports)

    def parse_code_blob(self, result: str) -> str:
        return parse_code_blob(result)

    def run(self, task: str, return_generated_code: bool = False, **kwargs):
        self.start_task(task, kwargs)
        self.initialize_for_run()
        self.prompt = [{"role": MessageRole.SYSTEM, "content": self.system_prompt},
                       {"role": MessageRole.USER, "content": "Task: " + self.task}]
        llm_output = self.call_engine(self.prompt, ["<end_action>"])
        if return_generated_code:
            return llm_output
        try:
            rationale, code = self.extract_action(llm_output, "Code:")
        except AgentParsingError:
            rationale, code = "", llm_output
        try:
            code = self.parse_code_blob(code)
        except ValueError as error:
            return f"Error in code parsing: {error}. Be sure to provide correct code"
        self.logger.info("=== Agent thoughts:\n%s\n>>> Agent is executing the code below:\n%s", rationale, code)
        try:
            return self.run_code(code, custom_tools={})
        except Exception as error:  # noqa: BLE001 - 4.45 returns the error text as the run's output
            return f"Error in execution: {error}. Be sure to provide correct code."


class ManagedAgent:
    """An agent another agent can call like a tool, with a `request` string."""

    def __init__(self, agent: Agent, name: str, description: str, additional_prompting: str | None = None,
                 provide_run_summary: bool = False) -> None:
        self.agent = agent
        self.name = name
        self.description = description
        self.additional_prompting = additional_prompting
        self.provide_run_summary = provide_run_summary

    def write_full_task(self, task: str) -> str:
        full_task = MANAGED_AGENT_TASK.format(name=self.name, task=task)
        return full_task + ("\n" + self.additional_prompting if self.additional_prompting else "")

    def __call__(self, request: str, **kwargs):
        output = self.agent.run(self.write_full_task(request), **kwargs)
        if not self.provide_run_summary:
            return output
        lines = [f"Here is the final answer from your managed agent '{self.name}':", str(output), "",
                 "For more detail, find below a summary of this agent's work:",
                 f"SUMMARY OF WORK FROM AGENT '{self.name}':"]
        for message in self.agent.write_inner_memory_from_logs(summary_mode=True):
            content = str(message["content"])
            if len(content) >= 1000 and "[FACTS LIST]" not in content:
                content = content[:1000] + "\n(...Step was truncated because too long)..."
            lines.append(content + "\n---")
        lines.append(f"END OF SUMMARY OF WORK FROM AGENT '{self.name}'.")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"ManagedAgent(name={self.name!r}, description={self.description!r})"
