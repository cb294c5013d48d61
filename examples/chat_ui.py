"""A browser chat with a model or an agent, streamed as it is generated (needs `pip install 'gradio<5.50'`).

    python examples/chat_ui.py                      # chat with the bundled default model
    python examples/chat_ui.py --model PATH_OR_ID   # another local/cached checkpoint
    python examples/chat_ui.py --agent              # a ReactJsonAgent on the model, its output held to the
                                                    # agent's action format by a grammar
"""
import argparse

from formers import AutoModelForCausalLM, AutoTokenizer, ReactJsonAgent, TransformersEngine, pipeline
from formers.agents.chat_ui import agent_chat_ui, model_chat_ui
from formers.default_model import DEFAULT_MODEL_NAME


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL_NAME)
    parser.add_argument("--agent", action="store_true")
    parser.add_argument("--port", type=int, default=7860)
    args = parser.parse_args()
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model)
    if args.agent:
        from formers.agents.llm_engine import DEFAULT_JSONAGENT_REGEX_GRAMMAR

        engine = TransformersEngine(pipeline("text-generation", model=model, tokenizer=tokenizer), max_new_tokens=96)
        page = agent_chat_ui(ReactJsonAgent(tools=[], llm_engine=engine, grammar=DEFAULT_JSONAGENT_REGEX_GRAMMAR))
    else:
        page = model_chat_ui(model, tokenizer)
    page.launch(server_name="127.0.0.1", server_port=args.port)


if __name__ == "__main__":
    main()
