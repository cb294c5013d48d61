"""`formers` command line: generate text from a prompt, or chat with a model, streaming tokens."""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from .errors import FormersError


def _add_sampling_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="local folder or hub id (served from the HF cache offline); "
                        "default: the model bundled with formers (formers/default)")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=None, help="sample at this temperature (default: greedy)")
    parser.add_argument("--top-p", type=float, default=None, help="nucleus sampling threshold (implies sampling)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--device", default=None, help="cpu, cuda or auto (default: cpu)")
    parser.add_argument("--dtype", default=None, help="float32, bfloat16, float16 or auto (default: float32)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="formers", description="Generate text with formers.")
    commands = parser.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("generate", help="continue a prompt, streaming the new text")
    _add_sampling_args(gen)
    gen.add_argument("prompt", help="text to continue")
    chat = commands.add_parser("chat", help="multi-turn chat (uses the tokenizer's chat template)")
    _add_sampling_args(chat)
    chat.add_argument("--system", default=None, help="system message")
    return parser


def _load(args):
    from . import AutoModelForCausalLM, AutoTokenizer
    from .default_model import DEFAULT_MODEL_NAME

    if args.model is None:
        args.model = DEFAULT_MODEL_NAME  # bundled package data: works offline on a fresh install
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, torch_dtype=args.dtype, device_map=args.device)
    return model, tokenizer


def _generation_kwargs(args, tokenizer) -> dict:
    sample = args.temperature is not None or args.top_p is not None
    kwargs = {"max_new_tokens": args.max_new_tokens, "do_sample": sample}
    if tokenizer.pad_token_id is None and tokenizer.eos_token_id is not None:
        kwargs["pad_token_id"] = tokenizer.eos_token_id
    if args.temperature is not None:
        kwargs["temperature"] = args.temperature
    if args.top_p is not None:
        kwargs["top_p"] = args.top_p
    if args.seed is not None:
        from .trainer_utils import set_seed
        set_seed(args.seed)
    return kwargs


def run_generate(args) -> None:
    from .generation.streamers import TextStreamer

    model, tokenizer = _load(args)
    inputs = tokenizer(args.prompt, return_tensors="pt").to(model.device)
    print(args.prompt, end="", flush=True)
    streamer = TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    model.generate(**inputs, streamer=streamer, **_generation_kwargs(args, tokenizer))


def run_chat(args) -> None:
    """Each turn re-renders the conversation but only the new part runs: the cache is reused."""
    from .cache import DynamicCache
    from .generation.streamers import TextStreamer

    model, tokenizer = _load(args)
    if tokenizer.chat_template is None:
        raise FormersError(f"the tokenizer of {args.model!r} has no chat_template; `formers chat` needs one "
                           f"(use `formers generate` for plain continuation)")
    messages = [{"role": "system", "content": args.system}] if args.system else []
    cache, cached_ids = DynamicCache(), None
    kwargs = _generation_kwargs(args, tokenizer)
    while True:
        try:
            user = input("you> ")
        except EOFError:
            print()
            return
        if not user.strip():
            continue
        messages.append({"role": "user", "content": user})
        inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                               return_dict=True).to(model.device)
        _keep_common_prefix(cache, cached_ids, inputs["input_ids"])
        print("assistant> ", end="", flush=True)
        streamer = TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        output = model.generate(**inputs, past_key_values=cache, streamer=streamer, **kwargs)
        cached_ids = output[:, : cache.get_seq_length()]
        reply = tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        messages.append({"role": "assistant", "content": reply})


def _keep_common_prefix(cache, cached_ids, input_ids) -> None:
    """The re-rendered conversation may tokenize the last reply differently from how it was generated:
    keep only the cached positions whose ids match the new prompt (and leave at least one to run)."""
    if cached_ids is None:
        return
    length = min(cached_ids.shape[1], input_ids.shape[1] - 1)
    mismatch = (cached_ids[0, :length] != input_ids[0, :length]).nonzero()
    cache.crop(int(mismatch[0, 0]) if len(mismatch) else length)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        {"generate": run_generate, "chat": run_chat}[args.command](args)
    except FormersError as exc:
        print(f"formers: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
