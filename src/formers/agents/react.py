"""ReAct agents (transformers 4.45's API): think, act, observe, until a final answer or `max_iterations`.

ReactJsonAgent acts with one JSON tool call per step; ReactCodeAgent with a Python snippet run in the
sandbox, whose variables persist across steps. `planning_interval` adds periodic fact and plan revisions.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator

from .agent_types import AgentAudio, AgentImage
from .agents import Agent, CodeMixin, show_agents_descriptions
from .interpreter import evaluate_python_code
from .llm_engine import MessageRole
from .parsing import AgentError, AgentExecutionError, AgentMaxIterationsError, AgentParsingError, parse_code_blob
from .prompts import (DEFAULT_REACT_CODE_SYSTEM_PROMPT, DEFAULT_REACT_JSON_SYSTEM_PROMPT, FINAL_ANSWER_SYSTEM_PROMPT,
                      PLAN_UPDATE_FINAL_PLAN_REDACTION, PROMPTS_FOR_INITIAL_PLAN, PROMPTS_FOR_PLAN_UPDATE,
                      SUPPORTED_PLAN_TYPES, SYSTEM_PROMPT_FACTS, SYSTEM_PROMPT_FACTS_UPDATE, USER_PROMPT_FACTS_UPDATE)
from .tools import DEFAULT_TOOL_DESCRIPTION_TEMPLATE, Tool


class ReactAgent(Agent):
    """Think-act-observe loop shared by the JSON and code ReAct agents (with optional periodic planning)."""

    def __init__(self, tools: list[Tool], llm_engine: Callable | None = None,
                 system_prompt: str = DEFAULT_REACT_CODE_SYSTEM_PROMPT,
                 tool_description_template: str = DEFAULT_TOOL_DESCRIPTION_TEMPLATE, grammar: dict | None = None,
                 plan_type: str = SUPPORTED_PLAN_TYPES[0], planning_interval: int | None = None, **kwargs) -> None:
        if plan_type not in SUPPORTED_PLAN_TYPES:
            raise AgentError(f"plan_type {plan_type!r} is not supported; expected one of {SUPPORTED_PLAN_TYPES}")
        super().__init__(tools=tools, llm_engine=llm_engine, system_prompt=system_prompt,
                         tool_description_template=tool_description_template, grammar=grammar, **kwargs)
        self.planning_interval = planning_interval
        self.plan_type = plan_type

    def provide_final_answer(self, task: str) -> str:
        self.prompt = [{"role": MessageRole.SYSTEM, "content": FINAL_ANSWER_SYSTEM_PROMPT}]
        self.prompt += self.write_inner_memory_from_logs()[1:]
        self.prompt.append({"role": MessageRole.USER,
                            "content": f"Based on the above, please provide an answer to the following user "
                                       f"request:\n{task}"})
        try:
            return self.llm_engine(self.prompt)
        except Exception as error:  # noqa: BLE001
            return f"Error in generating final llm output: {error}."

    def run(self, task: str, stream: bool = False, reset: bool = True, **kwargs):
        """Run until a final answer or `max_iterations` steps; `stream=True` yields each step's log as it ends."""
        self.start_task(task, kwargs)
        if reset:
            self.initialize_for_run()
        else:
            self.logs.append({"task": task})
        return self.stream_run(task) if stream else self.direct_run(task)

    def stream_run(self, task: str) -> Iterator:
        final_answer = None
        for iteration in range(self.max_iterations):
            final_answer = self.one_iteration(task, iteration)
            yield self.logs[-1]
            if final_answer is not None:
                break
        if final_answer is None:
            final_answer = self.give_up(task)
            yield self.logs[-1]
        yield final_answer

    def direct_run(self, task: str):
        for iteration in range(self.max_iterations):
            final_answer = self.one_iteration(task, iteration)
            if final_answer is not None:
                return final_answer
        return self.give_up(task)

    def one_iteration(self, task: str, iteration: int):
        try:
            if self.planning_interval is not None and iteration % self.planning_interval == 0:
                self.planning_step(task, is_first_step=iteration == 0, iteration=iteration)
            step_logs = self.step()
        except AgentError as error:
            self.logger.error("%s", error)
            self.logs[-1]["error"] = error
            step_logs = self.logs[-1]
        for callback in self.step_callbacks:
            callback(step_logs)
        return step_logs.get("final_answer")

    def give_up(self, task: str):
        step_log: dict[str, Any] = {"error": AgentMaxIterationsError("Reached max iterations.")}
        self.logs.append(step_log)
        step_log["final_answer"] = self.provide_final_answer(task)
        return step_log["final_answer"]

    def planning_step(self, task: str, is_first_step: bool = False, iteration: int | None = None) -> None:
        """Write (first step) or revise the facts and the plan, recorded in the logs the LLM sees."""
        tools = self._toolbox.show_tool_descriptions(self.tool_description_template)
        agents = show_agents_descriptions(self.managed_agents) if self.managed_agents else ""
        prompts_initial, prompts_update = PROMPTS_FOR_INITIAL_PLAN[self.plan_type], PROMPTS_FOR_PLAN_UPDATE[self.plan_type]
        if is_first_step:
            facts = self.llm_engine([{"role": MessageRole.SYSTEM, "content": SYSTEM_PROMPT_FACTS},
                                     {"role": MessageRole.USER, "content": f"Here is the task:\n```\n{task}\n```\nNow begin!"}])
            user = prompts_initial["user"].format(task=task, tool_descriptions=tools, managed_agents_descriptions=agents,
                                                  answer_facts=facts)
            plan = self.llm_engine([{"role": MessageRole.SYSTEM, "content": prompts_initial["system"]},
                                    {"role": MessageRole.USER, "content": user}], stop_sequences=["<end_plan>"])
            plan_text = f"Here is the plan of action that I will follow to solve the task:\n```\n{plan}\n```"
            facts_text = f"Here are the facts that I know so far:\n```\n{facts}\n```"
        else:
            memory = self.write_inner_memory_from_logs(summary_mode=False)
            facts = self.llm_engine([{"role": MessageRole.SYSTEM, "content": SYSTEM_PROMPT_FACTS_UPDATE}] + memory
                                    + [{"role": MessageRole.USER, "content": USER_PROMPT_FACTS_UPDATE}])
            user = prompts_update["user"].format(task=task, tool_descriptions=tools, managed_agents_descriptions=agents,
                                                 facts_update=facts, remaining_steps=self.max_iterations - (iteration or 0))
            plan = self.llm_engine([{"role": MessageRole.SYSTEM, "content": prompts_update["system"].format(task=task)}]
                                   + memory + [{"role": MessageRole.USER, "content": user}], stop_sequences=["<end_plan>"])
            plan_text = PLAN_UPDATE_FINAL_PLAN_REDACTION.format(task=task, plan_update=plan)
            facts_text = f"Here is the updated list of the facts that I know:\n```\n{facts}\n```"
        self.logs.append({"plan": plan_text, "facts": facts_text})

    def begin_step(self) -> dict[str, Any]:
        memory = self.write_inner_memory_from_logs()
        self.prompt = list(memory)
        step_logs: dict[str, Any] = {"agent_memory": list(memory)}
        self.logs.append(step_logs)
        step_logs["llm_output"] = self.call_engine(self.prompt, ["<end_action>", "Observation:"])
        return step_logs


class ReactJsonAgent(ReactAgent):
    """Each step: a thought and one JSON tool call, executed, its output observed."""

    wants_python_interpreter_tool = True

    def __init__(self, tools: list[Tool], llm_engine: Callable | None = None,
                 system_prompt: str = DEFAULT_REACT_JSON_SYSTEM_PROMPT,
                 tool_description_template: str = DEFAULT_TOOL_DESCRIPTION_TEMPLATE, grammar: dict | None = None,
                 planning_interval: int | None = None, **kwargs) -> None:
        super().__init__(tools=tools, llm_engine=llm_engine, system_prompt=system_prompt,
                         tool_description_template=tool_description_template, grammar=grammar,
                         planning_interval=planning_interval, **kwargs)

    def step(self) -> dict[str, Any]:
        step_logs = self.begin_step()
        rationale, action = self.extract_action(step_logs["llm_output"], "Action:")
        try:
            tool_name, arguments = self.tool_parser(action)
        except Exception as error:  # noqa: BLE001
            raise AgentParsingError(f"Could not parse the given action: {error}.") from error
        step_logs["rationale"] = rationale
        step_logs["tool_call"] = {"tool_name": tool_name, "tool_arguments": arguments}
        if tool_name == "final_answer":
            answer = arguments
            if isinstance(arguments, dict) and "answer" in arguments:
                answer = arguments["answer"]
                if isinstance(answer, str) and answer in self.state:
                    answer = self.state[answer]
            step_logs["final_answer"] = answer
            return step_logs
        observation = self.execute_tool_call(tool_name, arguments if arguments is not None else {})
        if isinstance(observation, (AgentImage, AgentAudio)):
            name = "image.png" if isinstance(observation, AgentImage) else "audio.mp3"
            self.state[name] = observation
            step_logs["observation"] = f"Stored '{name}' in memory."
        else:
            step_logs["observation"] = str(observation).strip()
        return step_logs


class ReactCodeAgent(CodeMixin, ReactAgent):
    """Each step: a thought and a Python snippet run in the sandbox; variables persist across steps."""

    def __init__(self, tools: list[Tool], llm_engine: Callable | None = None,
                 system_prompt: str = DEFAULT_REACT_CODE_SYSTEM_PROMPT,
                 tool_description_template: str = DEFAULT_TOOL_DESCRIPTION_TEMPLATE, grammar: dict | None = None,
                 additional_authorized_imports: list[str] | None = None, planning_interval: int | None = None,
                 **kwargs) -> None:
        super().__init__(tools=tools, llm_engine=llm_engine, system_prompt=system_prompt,
                         tool_description_template=tool_description_template, grammar=grammar,
                         planning_interval=planning_interval, **kwargs)
        self.python_evaluator = evaluate_python_code
        self.custom_tools: dict[str, Callable] = {}
        self.set_imports(additional_authorized_imports)

    def step(self) -> dict[str, Any]:
        step_logs = self.begin_step()
        llm_output = step_logs["llm_output"]
        try:
            rationale, raw_code = self.extract_action(llm_output, "Code:")
        except AgentParsingError:
            rationale, raw_code = llm_output, llm_output
        try:
            code = parse_code_blob(raw_code)
        except ValueError as error:
            raise AgentParsingError(f"Error in code parsing: {error}. Make sure to provide correct code") from error
        step_logs["rationale"] = rationale
        step_logs["tool_call"] = {"tool_name": "code interpreter", "tool_arguments": code}
        try:
            result = self.run_code(code, custom_tools=self.custom_tools)
        except Exception as error:  # noqa: BLE001
            raise AgentExecutionError(f"Code execution failed due to the following error:\n{error}") from error
        observation = "Print outputs:\n" + self.state["print_outputs"]
        if result is not None:
            observation += "Last output from code snippet:\n" + str(result)[:100000]
        step_logs["observation"] = observation
        if any(line.startswith("final_answer") for line in code.split("\n")):
            step_logs["final_answer"] = result
        return step_logs
