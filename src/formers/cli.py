"""`formers` command line: generate text from a prompt, chat with a model (streaming tokens), or serve it over HTTP."""
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
    _add_serve_parser(commands)
    return parser


def _add_serve_parser(commands) -> None:
    serve = commands.add_parser("serve", help="OpenAI-compatible HTTP server (needs formers[serve])")
    serve.add_argument("--model", default=None, help="local folder or hub id; default: the bundled model")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--served-model-name", default=None, help="the name clients pass as `model` "
                       "(default: --model)")
    serve.add_argument("--api-key", default=None, help="require `Authorization: Bearer KEY` on /v1/*")
    serve.add_argument("--max-num-seqs", type=int, default=64, help="sequences in the running batch at most")
    serve.add_argument("--max-batched-tokens", type=int, default=2048, help="tokens per engine step at most")
    serve.add_argument("--max-waiting", type=int, default=1024, help="queued requests before 429")
    kv = serve.add_mutually_exclusive_group()
    kv.add_argument("--kv-blocks", type=int, default=None, help="KV cache pages (16 tokens each)")
    kv.add_argument("--kv-memory", type=_byte_size, default=None, help="memory for KV pages, e.g. 2GiB or 512MB")
    serve.add_argument("--device", default=None, help="cpu, cuda or auto (default: cpu)")
    serve.add_argument("--dtype", default=None, help="float32, bfloat16, float16 or auto (default: float32)")
    serve.add_argument("--log-level", default="info")
    serve.add_argument("--tensor-parallel-size", "--tp", type=int, default=1, help="serve one model split over N "
                       "processes of this host (tp_plan='auto'; gloo on CPU, NCCL with --device cuda)")
    serve.add_argument("--tp-timeout", type=float, default=60.0, help="seconds a tensor-parallel rank waits for the "
                       "others before failing (default: 60)")


def _byte_size(text: str) -> int:
    units = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}
    number = text.strip().lower().rstrip("bigmk")
    unit = text.strip().lower()[len(number):]
    try:
        return int(float(number) * units[unit])
    except (ValueError, KeyError):
        raise argparse.ArgumentTypeError(f"expected a size like 2GiB, 512MB or a byte count, got {text!r}") from None


def _load(args, **model_kwargs):
    from . import AutoModelForCausalLM, AutoTokenizer
    from .default_model import DEFAULT_MODEL_NAME

    if args.model is None:
        args.model = DEFAULT_MODEL_NAME  # bundled package data: works offline on a fresh install
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, torch_dtype=args.dtype, device_map=args.device,
                                                 **model_kwargs)
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


def run_serve(args) -> None:
    """Load the model, start the engine thread and serve until interrupted."""
    try:
        from .serving.http import app_for_engine, serve_forever
    except ImportError as exc:
        raise FormersError(f"`formers serve` needs the serve extra (pip install 'formers[serve]'): {exc}") from None
    from .serving import LLMEngine
    from .serving.async_engine import AsyncEngine

    if args.tensor_parallel_size != 1:
        from .serving.tp_serve import serve_tensor_parallel
        return serve_tensor_parallel(args)
    model, tokenizer = _load(args)
    engine = AsyncEngine(LLMEngine(model, tokenizer, _engine_config(args)))
    app = app_for_engine(engine, tokenizer, args.served_model_name or args.model, api_key=args.api_key)
    serve_forever(app, host=args.host, port=args.port, log_level=args.log_level)


def _engine_config(args):
    from .serving import EngineConfig

    return EngineConfig(max_num_seqs=args.max_num_seqs, max_batched_tokens=args.max_batched_tokens,
                        max_waiting=args.max_waiting, num_blocks=args.kv_blocks, kv_memory=args.kv_memory)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        {"generate": run_generate, "chat": run_chat, "serve": run_serve}[args.command](args)
    except FormersError as exc:
        print(f"formers: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
