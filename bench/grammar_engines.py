"""Which grammar engine formers' structured output is built on: xgrammar vs llguidance, measured.

For each tokenizer (the bundled default model's 4k byte-level BPE, GPT-2's 50k byte-level BPE and
stories260K's 512-piece SentencePiece) and each grammar (a nested JSON schema with arrays, enums,
numbers, optional fields and a string pattern; any JSON), the script:

- compiles the grammar (cold, once: both engines also cache per tokenizer),
- walks a valid document token by token (the document's own tokenization) and, at every position,
  times the computation of the next-token bitmask into a preallocated int32 row, then advances the
  matcher with the document's token,
- repeats the walk and reports the median over walks of the mean and p99 per-token mask time.

Both engines are fed the same tokenizer.json (the formers tokenizer's backend). One thread, CPU.

    python bench/grammar_engines.py [--walks 5]
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOKENIZERS = {
    "default-4k": REPO / "src" / "formers" / "default_model" / "checkpoint",
    "gpt2-50k": REPO / "tests" / "data" / "tokenizers" / "gpt2",
    "stories-512": REPO / "tests" / "data" / "stories260K",
}
SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer", "minimum": 0},
        "score": {"type": "number"},
        "role": {"enum": ["admin", "user", "guest"]},
        "email": {"type": "string", "pattern": "^[a-z]+@[a-z]+\\.com$"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "address": {"type": "object", "properties": {"city": {"type": "string"}, "zip": {"type": "string"}},
                    "required": ["city"]},
        "active": {"type": "boolean"},
    },
    "required": ["name", "age", "role", "tags", "address"],
}
DOCUMENT = {
    "name": "Ada Lovelace, Countess of Lovelace", "age": 36, "score": 98.25, "role": "admin",
    "email": "ada@analytical.com", "tags": ["mathematics", "poetry of science", "engines"],
    "address": {"city": "London", "zip": "W1"}, "active": True,
}


def _time_walk(fill, accept, tokens: list[int]) -> list[float]:
    times = []
    for token in tokens:
        start = time.perf_counter()
        fill()
        times.append(time.perf_counter() - start)
        if not accept(token):
            raise RuntimeError(f"engine rejected token {token} of the valid document")
    return times


def xgrammar_walks(backend_json: str, vocab: dict, eos: int, kind: str, tokens: list[int], walks: int):
    import xgrammar as xgr

    meta = xgr.TokenizerInfo._detect_metadata_from_hf(backend_json)
    encoded = [""] * len(vocab)
    for piece, index in vocab.items():
        encoded[index] = piece
    info = xgr.TokenizerInfo(encoded, meta["vocab_type"], vocab_size=len(vocab), stop_token_ids=[eos],
                             add_prefix_space=meta["add_prefix_space"])
    compiler = xgr.GrammarCompiler(info, max_threads=1, cache_enabled=False)
    start = time.perf_counter()
    compiled = compiler.compile_json_schema(SCHEMA) if kind == "schema" else compiler.compile_builtin_json_grammar()
    compile_s = time.perf_counter() - start
    bitmask = xgr.allocate_token_bitmask(1, len(vocab))
    per_walk = []
    for _ in range(walks):
        matcher = xgr.GrammarMatcher(compiled)
        per_walk.append(_time_walk(lambda: matcher.fill_next_token_bitmask(bitmask, 0), matcher.accept_token, tokens))
        assert matcher.accept_token(eos) and matcher.is_terminated()
    return compile_s, per_walk


def llguidance_walks(backend_json: str, vocab: dict, eos: int, kind: str, tokens: list[int], walks: int):
    import llguidance
    import llguidance.torch as llt

    lltok = llguidance.LLTokenizer(backend_json, n_vocab=len(vocab), eos_token=eos)
    start = time.perf_counter()
    grammar = llguidance.LLMatcher.grammar_from_json_schema(SCHEMA if kind == "schema" else {})
    first = llguidance.LLMatcher(lltok, grammar, log_level=0)  # llguidance compiles lazily inside the matcher
    compile_s = time.perf_counter() - start
    if first.is_error():
        raise RuntimeError(first.get_error())
    bitmask = llt.allocate_token_bitmask(1, len(vocab))
    per_walk = []
    for _ in range(walks):
        matcher = llguidance.LLMatcher(lltok, grammar, log_level=0)
        per_walk.append(_time_walk(lambda: llt.fill_next_token_bitmask(matcher, bitmask, 0), matcher.consume_token,
                                   tokens))
        assert matcher.consume_token(eos) and matcher.is_stopped()
    return compile_s, per_walk


def summarise(compile_s: float, per_walk: list[list[float]]) -> dict:
    means = [statistics.fmean(w) * 1e6 for w in per_walk]
    p99s = [sorted(w)[int(0.99 * (len(w) - 1))] * 1e6 for w in per_walk]
    return {"compile_ms": round(compile_s * 1e3, 2), "mask_us_mean": round(statistics.median(means), 1),
            "mask_us_p99": round(statistics.median(p99s), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--walks", type=int, default=5)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    from importlib.metadata import version

    import torch

    from formers import AutoTokenizer

    torch.set_num_threads(1)
    print(f"# {platform.machine()}, xgrammar {version('xgrammar')}, llguidance {version('llguidance')}")
    rows = {}
    for tok_name, folder in TOKENIZERS.items():
        tokenizer = AutoTokenizer.from_pretrained(folder)
        backend_json = tokenizer.backend_tokenizer.to_str()
        vocab = tokenizer.get_vocab()
        for kind in ("schema", "any-json"):
            text = json.dumps(DOCUMENT)
            tokens = tokenizer.encode(text, add_special_tokens=False)
            if tokenizer.convert_ids_to_tokens(tokens[0]) == "\u2581":  # SentencePiece's prefix space: not JSON
                tokens = tokens[1:]
            for engine, walk in (("xgrammar", xgrammar_walks), ("llguidance", llguidance_walks)):
                stats = summarise(*walk(backend_json, vocab, tokenizer.eos_token_id, kind, tokens, args.walks))
                rows[f"{tok_name}/{kind}/{engine}"] = stats
                print(f"{tok_name:12s} {kind:9s} {engine:10s} tokens={len(tokens):3d} {stats}", flush=True)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
