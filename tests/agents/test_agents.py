"""Agents driven by scripted LLM engines: the same script gives the same tool calls, observations and final
answers as transformers 4.45.2's agents (the system prompts differ on purpose: formers words its own)."""
import pytest

import formers
from formers.agents import (AgentParsingError, CodeAgent, ManagedAgent, ReactCodeAgent, ReactJsonAgent, Tool,
                            Toolbox, get_clean_message_list, tool)
from formers.agents.tools import ToolError

reference = pytest.importorskip("transformers.agents")


class ScriptedEngine:
    """Returns the given outputs in order and records every call's messages and stop sequences."""

    def __init__(self, outputs):
        self.outputs = list(outputs)
        self.calls = []

    def __call__(self, messages, stop_sequences=None, grammar=None):
        self.calls.append({"messages": messages, "stop_sequences": stop_sequences, "grammar": grammar})
        return self.outputs.pop(0) if self.outputs else "Thought: no more script.\nAction:\n{\"action\": \"final_answer\", \"action_input\": {\"answer\": \"out of script\"}}"


def make_weather_tool(library):
    class WeatherTool(library.Tool):
        name = "weather"
        description = "Gives the temperature in a city."
        inputs = {"city": {"type": "string", "description": "the city"}}
        output_type = "string"

        def forward(self, city):
            return f"{len(city) * 3} degrees in {city}"

    return WeatherTool()


def _summary(logs):
    return [{key: str(step[key]) for key in ("tool_call", "observation", "final_answer", "error") if key in step}
            for step in logs[1:]]


JSON_SCRIPT = [
    'Thought: I look up the weather.\nAction:\n{\n  "action": "weather",\n  "action_input": {"city": "Paris"}\n}',
    "Thought: I forgot the format.\nNo action here.",
    'Thought: done.\nAction:\n{\n  "action": "final_answer",\n  "action_input": {"answer": "It is warm"}\n}',
]


def test_react_json_agent_matches_transformers():
    ours_engine, their_engine = ScriptedEngine(JSON_SCRIPT), ScriptedEngine(JSON_SCRIPT)
    ours = ReactJsonAgent(tools=[make_weather_tool(formers.agents)], llm_engine=ours_engine)
    theirs = reference.ReactJsonAgent(tools=[make_weather_tool(reference)], llm_engine=their_engine)
    assert ours.run("Weather in Paris?") == theirs.run("Weather in Paris?") == "It is warm"
    assert _summary(ours.logs)[0] == _summary(theirs.logs)[0]
    assert "observation" in ours.logs[1] and "15 degrees in Paris" in ours.logs[1]["observation"]
    assert isinstance(ours.logs[2]["error"], AgentParsingError)
    assert [call["stop_sequences"] for call in ours_engine.calls] == [call["stop_sequences"] for call in their_engine.calls]
    # the second prompt carries the first observation back to the LLM
    assert "15 degrees in Paris" in ours_engine.calls[1]["messages"][-1]["content"]


CODE_SCRIPT = [
    "Thought: get the weather.\nCode:\n```py\nreport = weather(city='Oslo')\nprint(report)\n```",
    "Thought: answer.\nCode:\n```py\nfinal_answer(report.upper())\n```",
]


def test_react_code_agent_matches_transformers():
    ours = ReactCodeAgent(tools=[make_weather_tool(formers.agents)], llm_engine=ScriptedEngine(CODE_SCRIPT))
    theirs = reference.ReactCodeAgent(tools=[make_weather_tool(reference)], llm_engine=ScriptedEngine(CODE_SCRIPT))
    assert ours.run("Weather in Oslo?") == theirs.run("Weather in Oslo?") == "12 DEGREES IN OSLO"
    assert _summary(ours.logs) == _summary(theirs.logs)


def test_react_code_agent_recovers_from_a_failing_snippet():
    script = ["Thought: x.\nCode:\n```py\nprint(undefined_name)\n```",
              "Thought: fix.\nCode:\n```py\nfinal_answer(6 * 7)\n```"]
    agent = ReactCodeAgent(tools=[], llm_engine=ScriptedEngine(script))
    assert agent.run("Compute") == 42
    assert "undefined_name" in str(agent.logs[1]["error"])


def test_code_agent_matches_transformers():
    script = ["Thought: loop.\nCode:\n```py\ntotal = 0\nfor i in range(5):\n    total += i\ntotal * 2\n```"]
    ours = CodeAgent(tools=[], llm_engine=ScriptedEngine(script))
    theirs = reference.CodeAgent(tools=[], llm_engine=ScriptedEngine(script))
    assert ours.run("Sum twice") == theirs.run("Sum twice") == 20


def test_max_iterations_asks_for_a_final_answer():
    looping = ['Thought: again.\nAction:\n{"action": "weather", "action_input": {"city": "Rome"}}'] * 3 + ["Rome is hot"]
    ours = ReactJsonAgent(tools=[make_weather_tool(formers.agents)], llm_engine=ScriptedEngine(looping), max_iterations=3)
    theirs = reference.ReactJsonAgent(tools=[make_weather_tool(reference)], llm_engine=ScriptedEngine(looping),
                                      max_iterations=3)
    assert ours.run("Rome?") == theirs.run("Rome?") == "Rome is hot"


def test_stream_run_yields_each_step_then_the_answer():
    agent = ReactCodeAgent(tools=[make_weather_tool(formers.agents)], llm_engine=ScriptedEngine(CODE_SCRIPT))
    items = list(agent.run("Weather in Oslo?", stream=True))
    assert [type(item) for item in items[:2]] == [dict, dict]
    assert items[-1] == "12 DEGREES IN OSLO"


def test_managed_agent_is_called_like_a_tool():
    worker = ReactJsonAgent(tools=[make_weather_tool(formers.agents)], llm_engine=ScriptedEngine(JSON_SCRIPT))
    managed = ManagedAgent(agent=worker, name="meteo", description="Knows the weather.")
    boss_script = ['Thought: delegate.\nAction:\n{"action": "meteo", "action_input": {"request": "Paris?"}}',
                   'Thought: ok.\nAction:\n{"action": "final_answer", "action_input": {"answer": "delegated"}}']
    boss = ReactJsonAgent(tools=[], llm_engine=ScriptedEngine(boss_script), managed_agents=[managed])
    assert "meteo: Knows the weather." in boss.system_prompt
    assert boss.run("What is the weather?") == "delegated"
    assert boss.logs[1]["observation"] == "It is warm"
    assert "You are 'meteo'" in worker.logs[0]["task"]


def test_grammar_is_passed_to_the_engine():
    engine = ScriptedEngine(JSON_SCRIPT[2:])
    grammar = {"type": "regex", "value": "Thought: .+"}
    ReactJsonAgent(tools=[], llm_engine=engine, grammar=grammar).run("x")
    assert engine.calls[0]["grammar"] == grammar


def test_tool_decorator_matches_transformers():
    def get_travel_duration(start: str, destination: str, hours: int = 2) -> str:
        """Estimates a travel duration.

        Args:
            start: where the travel starts
            destination: where it ends
            hours: a guess in hours
        """
        return f"{start}->{destination}: {hours}h"

    ours, theirs = tool(get_travel_duration), reference.tool(get_travel_duration)
    for attribute in ("name", "description", "inputs", "output_type"):
        assert getattr(ours, attribute) == getattr(theirs, attribute)
    # (calling 4.45.2's instance needs Pillow for its output wrapping; the function itself is the reference)
    assert ours(start="A", destination="B") == get_travel_duration("A", "B") == "A->B: 2h"
    assert type(ours).__name__ == type(theirs).__name__


def test_badly_declared_tools_are_refused():
    class NoForwardMatch(Tool):
        name = "bad"
        description = "x"
        inputs = {"query": {"type": "string", "description": "q"}}
        output_type = "string"

        def forward(self, other):
            return other

    with pytest.raises(ToolError, match="forward"):
        NoForwardMatch()

    class UnknownType(NoForwardMatch):
        inputs = {"other": {"type": "tensor", "description": "q"}}

    with pytest.raises(ToolError, match="tensor"):
        UnknownType()

    def no_return_hint(x: int):
        """Doc.

        Args:
            x: a number
        """

    with pytest.raises(ToolError, match="return type"):
        tool(no_return_hint)


def test_toolbox_operations():
    box = Toolbox([make_weather_tool(formers.agents)])
    assert "weather: Gives the temperature" in repr(box)
    with pytest.raises(formers.agents.AgentError, match="already exists"):
        box.add_tool(make_weather_tool(formers.agents))
    box.remove_tool("weather")
    assert box.tools == {}


def test_load_tool_refuses_hub_code():
    with pytest.raises(ToolError, match="runs its code"):
        formers.load_tool("m-ric/text-to-image")
    assert formers.load_tool("python_interpreter")(code="1 + 1") == "2"


def test_clean_message_list_matches_transformers():
    from transformers.agents.llm_engine import get_clean_message_list as theirs

    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "a"},
                {"role": "user", "content": "b"}, {"role": "tool-response", "content": "c"}]
    conversions = {"tool-response": "user"}
    assert get_clean_message_list(messages, conversions) == theirs(messages, conversions)
    with pytest.raises(ValueError, match="role"):
        get_clean_message_list([{"role": "robot", "content": "x"}])


def test_top_level_names():
    for name in ("ReactCodeAgent", "ReactJsonAgent", "CodeAgent", "ManagedAgent", "Tool", "tool", "Toolbox",
                 "TransformersEngine", "HfApiEngine", "load_tool", "stream_to_gradio", "PipelineTool"):
        assert getattr(formers, name) is getattr(formers.agents, name)


def test_visit_webpage_matches_transformers_on_a_local_page():
    import http.server
    import threading

    pytest.importorskip("markdownify")
    page = b"<html><body><h1>Title</h1><p>Some <b>bold</b> text.</p>\n\n\n\n<ul><li>one</li></ul></body></html>"

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        from transformers.agents.search import VisitWebpageTool as TheirTool

        ours = formers.agents.VisitWebpageTool()(url=url)
        assert ours == TheirTool()(url=url)
        assert "# Title" in ours or "Title\n=====" in ours
        assert formers.agents.VisitWebpageTool()(url="http://127.0.0.1:1/").startswith("Error fetching the webpage")
    finally:
        server.shutdown()
