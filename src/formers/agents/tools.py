"""Tools an agent can call: the `Tool` base class, the `@tool` decorator and the helpers around them.

A tool declares `name`, `description`, `inputs` ({argument: {"type", "description"}}) and `output_type`
and implements `forward`; these are checked when the tool is built so that a mistake shows at once,
not in the middle of an agent run. Loading tools from the Hub is refused: a Hub tool is code that
would run on this machine, and formers never runs code from a download.
"""
from __future__ import annotations

import inspect
from functools import lru_cache, wraps
from typing import Any, Callable

from ..errors import FormersError
from .agent_types import handle_agent_inputs, handle_agent_outputs

AUTHORIZED_TYPES = ["string", "integer", "number", "boolean", "image", "audio", "any", "array", "object", "null"]

DEFAULT_TOOL_DESCRIPTION_TEMPLATE = """
- {{ tool.name }}: {{ tool.description }}
    Takes inputs: {{tool.inputs}}
    Returns an output of type: {{tool.output_type}}
"""


class ToolError(FormersError, ValueError):
    """A tool is declared wrongly (missing attribute, unknown input type, forward() not matching inputs)."""


class Tool:
    """Base class of agent tools. Subclass it, set the four class attributes and write `forward`.

    `setup()` runs once before the first call (load a model there, not in `__init__`).
    """

    name: str
    description: str
    inputs: dict[str, dict[str, Any]]
    output_type: str
    check_forward_signature = True  # off for wrappers whose forward takes **kwargs

    def __init__(self, *args, **kwargs) -> None:
        self.is_initialized = False

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        original_init = cls.__init__

        @wraps(original_init)
        def checked_init(self, *args, **kwargs):
            original_init(self, *args, **kwargs)
            if type(self) is cls:  # the most derived __init__ checks once everything is set
                self.validate_arguments()

        cls.__init__ = checked_init

    def validate_arguments(self) -> None:
        """Raise ToolError when an attribute is missing or `forward` does not take exactly `inputs`."""
        for attribute, expected in (("name", str), ("description", str), ("inputs", dict), ("output_type", str)):
            if not isinstance(getattr(self, attribute, None), expected):
                raise ToolError(f"Tool {type(self).__name__}: set the attribute `{attribute}` to a {expected.__name__}")
        for input_name, spec in self.inputs.items():
            if not isinstance(spec, dict) or "type" not in spec or "description" not in spec:
                raise ToolError(f"Tool {self.name!r}: input {input_name!r} needs a 'type' and a 'description'")
            types = spec["type"] if isinstance(spec["type"], list) else [spec["type"]]
            unknown = [t for t in types if t not in AUTHORIZED_TYPES]
            if unknown:
                raise ToolError(f"Tool {self.name!r}: input {input_name!r} has type {unknown[0]!r}; "
                                f"expected one of {AUTHORIZED_TYPES}")
        if self.output_type not in AUTHORIZED_TYPES:
            raise ToolError(f"Tool {self.name!r}: output_type {self.output_type!r} is not one of {AUTHORIZED_TYPES}")
        if self.check_forward_signature:
            parameters = set(inspect.signature(self.forward).parameters) - {"args", "kwargs"}
            if parameters != set(self.inputs):
                raise ToolError(f"Tool {self.name!r}: forward() takes {sorted(parameters)} but `inputs` declares "
                                f"{sorted(self.inputs)}; they must match")

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"Write forward() in your subclass of Tool ({type(self).__name__})")

    def setup(self) -> None:
        """Expensive preparation run before the first call."""
        self.is_initialized = True

    def __call__(self, *args, **kwargs):
        if not self.is_initialized:
            self.setup()
        args, kwargs = handle_agent_inputs(*args, **kwargs)
        return handle_agent_outputs(self.forward(*args, **kwargs), self.output_type)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={getattr(self, 'name', None)!r})"

    @classmethod
    def from_hub(cls, repo_id: str, *args, **kwargs) -> "Tool":
        raise ToolError(f"Tool.from_hub({repo_id!r}): a Hub tool is remote code; formers never executes code "
                        f"from a download. Define the tool locally (subclass Tool or use @tool).")

    @staticmethod
    def from_space(space_id: str, *args, **kwargs) -> "Tool":
        raise ToolError(f"Tool.from_space({space_id!r}) needs the network service of a Space, which formers does "
                        f"not call; wrap your own client in a Tool subclass")

    @staticmethod
    def from_langchain(langchain_tool) -> "Tool":
        """Wrap a LangChain tool (its `name`, `description`, `args` and `run`)."""
        inputs = {key: {"type": "string" if value.get("type") is None else _json_type(value.get("type")),
                        "description": value.get("description", value.get("title", key))}
                  for key, value in langchain_tool.args.items()}
        attributes = {"name": langchain_tool.name, "description": langchain_tool.description, "inputs": inputs,
                      "output_type": "string"}
        wrapper = type("LangChainToolWrapper", (_KeywordTool,), attributes)()
        wrapper.run_function = lambda **arguments: langchain_tool.run(arguments)
        return wrapper

    @staticmethod
    def from_gradio(gradio_tool) -> "Tool":
        """Wrap a gradio_tools tool (its `name`, `description` and `run(query)`)."""
        attributes = {"name": gradio_tool.name, "description": gradio_tool.description,
                      "inputs": {"query": {"type": "string", "description": "The input for the tool"}},
                      "output_type": "string"}
        wrapper = type("GradioToolWrapper", (_KeywordTool,), attributes)()
        wrapper.run_function = lambda query: gradio_tool.run(query)
        return wrapper


class _KeywordTool(Tool):
    """A tool whose forward passes its arguments to a wrapped callable."""

    check_forward_signature = False

    def forward(self, *args, **kwargs):
        return self.run_function(*args, **kwargs)


def _json_type(value: str) -> str:
    return {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}.get(value, value)


class PipelineTool(Tool):
    """A tool backed by a formers pipeline (`pipeline(task, model)`); `inputs` map to the pipeline's arguments.

    Set `task` and `default_checkpoint` (a local folder or cached repo) as class attributes, or pass `model`.
    """

    task: str | None = None
    default_checkpoint: str | None = None
    check_forward_signature = False

    def __init__(self, model: Any = None, **pipeline_kwargs) -> None:
        super().__init__()
        self.model = model if model is not None else self.default_checkpoint
        self.pipeline_kwargs = pipeline_kwargs
        self.pipeline = None

    def validate_arguments(self) -> None:
        super().validate_arguments()
        if self.task is None or self.model is None:
            raise ToolError(f"PipelineTool {type(self).__name__}: set `task` and `default_checkpoint` (or pass model=)")

    def setup(self) -> None:
        from ..pipelines import pipeline

        self.pipeline = pipeline(self.task, model=self.model, **self.pipeline_kwargs)
        self.is_initialized = True

    def forward(self, *args, **kwargs):
        return self.pipeline(*args, **kwargs)


def get_tool_description_with_args(tool: Tool, description_template: str | None = None) -> str:
    """The tool rendered with a Jinja template (the default lists name, description, inputs and output type)."""
    return _compiled(description_template or DEFAULT_TOOL_DESCRIPTION_TEMPLATE).render(tool=tool)


@lru_cache
def _compiled(template: str):
    import jinja2.sandbox

    return jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True).from_string(template)


def tool(tool_function: Callable) -> Tool:
    """Turn a function with type hints and an `Args:` docstring into a Tool instance.

    The name, description, inputs and output type come from the function's JSON schema
    (`formers.get_json_schema`), so the docstring must describe every argument and the return type hint
    is required.
    """
    from ..tokenization.json_schema import get_json_schema

    schema = get_json_schema(tool_function)["function"]
    if "return" not in schema:
        raise ToolError(f"@tool {tool_function.__name__}: add a return type hint, the tool's output type comes from it")
    attributes = {
        "name": schema["name"], "description": schema["description"],
        "inputs": schema["parameters"]["properties"], "output_type": schema["return"]["type"],
    }

    def forward(self, *args, **kwargs):
        return tool_function(*args, **kwargs)

    signature = inspect.signature(tool_function)
    self_parameter = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    forward.__signature__ = signature.replace(parameters=[self_parameter, *signature.parameters.values()])
    forward.__doc__ = tool_function.__doc__
    attributes["forward"] = forward
    return type(f"{schema['name'].capitalize()}Tool", (Tool,), attributes)()


def load_tool(task_or_repo_id: str, model_repo_id: str | None = None, token: str | None = None, **kwargs) -> Tool:
    """4.45 downloads and runs a tool's code from the Hub; formers refuses that (it never runs downloaded code).

    The tools that ship with formers are available by name: "python_interpreter" and "final_answer".
    """
    from .default_tools import FinalAnswerTool, PythonInterpreterTool

    local = {"python_interpreter": PythonInterpreterTool, "final_answer": FinalAnswerTool}
    if task_or_repo_id in local:
        return local[task_or_repo_id](**kwargs)
    raise ToolError(f"load_tool({task_or_repo_id!r}): loading a tool from the Hub runs its code, which formers "
                    f"refuses; available built-in tools: {sorted(local)}. Define other tools with @tool or a Tool "
                    f"subclass.")


class ToolCollection:
    """4.45 loads every Space of a Hub collection as a tool; that needs remote code, so formers refuses it."""

    def __init__(self, collection_slug: str, token: str | None = None) -> None:
        raise ToolError(f"ToolCollection({collection_slug!r}): Hub tools are remote code; formers does not load them")


def launch_gradio_demo(tool_class: type[Tool]) -> None:
    """Serve one tool as a small gradio app (gradio must be installed)."""
    try:
        import gradio
    except ImportError as error:
        raise ToolError("launch_gradio_demo needs gradio: pip install gradio") from error
    instance = tool_class()
    components = {"string": gradio.Textbox, "integer": gradio.Number, "number": gradio.Number,
                  "image": gradio.Image, "audio": gradio.Audio}
    inputs = [components.get(spec["type"], gradio.Textbox)(label=name) for name, spec in instance.inputs.items()]
    output = components.get(instance.output_type, gradio.Textbox)(label="Output")
    gradio.Interface(fn=lambda *args: instance(*args), inputs=inputs, outputs=output, title=instance.name,
                     description=instance.description).launch()
