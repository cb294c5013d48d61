"""A ReactJsonAgent on the bundled default model: with a grammar every action parses and the run calls its
tool and ends with an answer; without the grammar the same model does not write a parsable action."""
import pytest

from formers import AutoModelForCausalLM, AutoTokenizer, ReactJsonAgent, Tool, TransformersEngine, pipeline
from formers.agents import AgentParsingError
from formers.default_model import DEFAULT_MODEL_NAME

pytest.importorskip("xgrammar", reason="grammar-constrained engines need the structured extra")


class WeatherTool(Tool):
    name = "weather"
    description = "Gives the temperature in a city."
    inputs = {"city": {"type": "string", "description": "the city"}}
    output_type = "string"

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, city):
        self.calls.append(city)
        return f"{len(city) * 3} degrees in {city}"


def _action_grammar(action: str) -> dict:
    """A bounded thought, then one JSON action naming `action` with a short string argument."""
    return {"type": "regex",
            "value": ('Thought: [a-z ]{1,16}\\nAction:\\n\\{\\n    "action": "' + action
                      + '",\\n    "action_input": "[A-Za-z]{1,8}"\\n\\}\\n<end_action>')}


# The default model reads 512 positions: a short system prompt keeps the whole chat inside them.
SHORT_PROMPT = "Use the tools: <<tool_descriptions>>\nReply as Thought: then Action: with a JSON blob."


@pytest.fixture(scope="module")
def engine():
    tokenizer = AutoTokenizer.from_pretrained(DEFAULT_MODEL_NAME)
    model = AutoModelForCausalLM.from_pretrained(DEFAULT_MODEL_NAME)
    return TransformersEngine(pipeline("text-generation", model=model, tokenizer=tokenizer), max_new_tokens=160)


def test_grammar_makes_every_action_parse_and_the_tool_get_called(engine):
    weather = WeatherTool()

    def switch_to_answer(step_logs):
        agent.grammar = _action_grammar("final_answer")

    agent = ReactJsonAgent(tools=[weather], llm_engine=engine, grammar=_action_grammar("weather"), max_iterations=3,
                           system_prompt=SHORT_PROMPT,
                           step_callbacks=[switch_to_answer])
    answer = agent.run("What is the weather in Paris?")
    steps = agent.logs[1:]
    assert not any("error" in step for step in steps)
    assert steps[0]["tool_call"]["tool_name"] == "weather" and len(weather.calls) == 1
    assert steps[0]["observation"] == f"{len(weather.calls[0]) * 3} degrees in {weather.calls[0]}"
    assert steps[1]["tool_call"]["tool_name"] == "final_answer"
    assert isinstance(answer, str) and answer == steps[1]["tool_call"]["tool_arguments"]


def test_without_the_grammar_the_model_does_not_write_actions(engine):
    agent = ReactJsonAgent(tools=[WeatherTool()], llm_engine=engine, max_iterations=1,
                           system_prompt=SHORT_PROMPT)
    agent.run("What is the weather in Paris?")
    assert any(isinstance(step.get("error"), AgentParsingError) for step in agent.logs[1:])
