"""LLMEngine: continuous batching over a paged KV cache.

    engine = LLMEngine(model, tokenizer, EngineConfig(max_num_seqs=64))
    engine.add_request("a", tokenizer("Hello").input_ids, SamplingParams(max_tokens=32, temperature=0))
    while engine.has_unfinished_requests():
        for out in engine.step():   # RequestOutput per sequence that advanced (or finished) this step
            print(out.request_id, out.new_text)

Requests join and leave between steps; each step runs the model once over every scheduled token
(flat [1, N]: decode tokens and prefill chunks together, each at its own position) through the
family's own modules, with `StepCache` as the cache, then samples every row in one pass. The engine is
not thread-safe: drive it from one thread (the async engine owns that loop).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import count
from typing import Any

import torch

from ..errors import EngineOverloadedError, ServingError
from ..modeling.decoder import DecoderForCausalLM, DecoderModel
from ..tokenization.detokenize import IncrementalDetokenizer
from .blocks import BlockManager
from .grammar import SequenceGrammars
from .layout import build_layout, flat_order
from .paged_cache import PagedKVStore, StepCache
from .params import SamplingParams
from .sampler import TokenLogprob, sample
from .scheduler import Scheduler, Sequence

DEFAULT_KV_MEMORY = 1 << 30  # bytes of pages when neither num_blocks nor kv_memory is given


@dataclass
class EngineConfig:
    """Capacity of the engine; `num_blocks` (pages) wins over `kv_memory` (bytes for all pages)."""

    max_num_seqs: int = 64
    max_batched_tokens: int = 2048
    block_size: int = 16
    num_blocks: int | None = None
    kv_memory: int | None = None
    max_waiting: int = 1024
    enable_prefix_caching: bool = True

    def __post_init__(self) -> None:
        for name in ("max_num_seqs", "max_batched_tokens", "block_size", "max_waiting"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ServingError(f"EngineConfig.{name}: expected an int >= 1, got {value!r}")
        for name in ("num_blocks", "kv_memory"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ServingError(f"EngineConfig.{name}: expected an int >= 1 or None, got {value!r}")


@dataclass
class RequestOutput:
    """What one step produced for one sequence of a request (`index`: which of its n continuations)."""

    request_id: str
    new_token_ids: list[int]
    new_text: str
    token_ids: list[int]
    text: str
    finished: bool
    finish_reason: str | None  # "stop", "length", "abort" or None while running
    new_logprobs: list[TokenLogprob] | None
    prompt_tokens: int
    cached_prompt_tokens: int
    index: int = 0


@dataclass
class _Counters:
    steps: int = 0
    prompt_tokens: int = 0      # prompt tokens of admitted requests
    computed_tokens: int = 0    # tokens run through the model (prefill, recompute and decode)
    generated_tokens: int = 0
    finished: dict[str, int] = field(default_factory=lambda: {"stop": 0, "length": 0, "abort": 0})


class LLMEngine:
    """Serves many requests at once on one decoder model (see the module docstring)."""

    def __init__(self, model, tokenizer: Any = None, config: EngineConfig | None = None):
        self.model, self.tokenizer = model.eval(), tokenizer
        self.config = config = config or EngineConfig()
        base = _decoder_of(model)
        self.layers = list(base.layers)
        attn = self.layers[0].self_attn
        shapes = {(layer.self_attn.num_kv_heads, layer.self_attn.head_dim) for layer in self.layers}
        if len(shapes) != 1:
            raise ServingError(f"LLMEngine: layers with different KV shapes {sorted(shapes)} are not supported yet")
        self.windows = [layer.self_attn.sliding_window for layer in self.layers]
        self.causal_when_unmasked = [_unmasked_is_causal(layer.self_attn) for layer in self.layers]
        free_window = max(self.windows) if all(w is not None for w in self.windows) else None
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype
        self.vocab_size = model.config.vocab_size
        self.max_model_len = vars(model.config).get("max_position_embeddings")
        per_block = PagedKVStore.bytes_per_block(len(self.layers), config.block_size, attn.num_kv_heads,
                                                 attn.head_dim, self.dtype)
        num_blocks = config.num_blocks or max(1, (config.kv_memory or self._default_kv_memory(per_block)) // per_block)
        self.store = PagedKVStore(len(self.layers), num_blocks, config.block_size, attn.num_kv_heads,
                                  attn.head_dim, self.dtype, self.device)
        self.block_manager = BlockManager(num_blocks, config.block_size, config.enable_prefix_caching)
        self.scheduler = Scheduler(self.block_manager, config.max_num_seqs, config.max_batched_tokens, free_window)
        self.eos_ids = _eos_ids(model)
        self.grammars = SequenceGrammars(tokenizer, self.vocab_size, self.eos_ids, self.device)
        # requests without a seed share one generator, seeded from torch's global RNG (torch.manual_seed
        # before building the engine makes a whole run, in the same arrival order, repeatable)
        self._fallback_generator = torch.Generator(self.device)
        self._fallback_generator.manual_seed(int(torch.randint(0, 2**62, (1,))))
        self._arrivals = count()
        self._sequences: dict[str, list[Sequence]] = {}
        self._pending: list[RequestOutput] = []  # abort notices returned by the next step()
        self.counters = _Counters()

    def _default_kv_memory(self, per_block: int) -> int:
        longest = min(self.max_model_len or 2048, 2048)
        return min(DEFAULT_KV_MEMORY, self.config.max_num_seqs * (-(-longest // self.config.block_size)) * per_block)

    # --- requests -------------------------------------------------------------------------------
    def add_request(self, request_id: str, prompt_token_ids: list[int], params: SamplingParams | None = None) -> None:
        """Queue a request; raises ServingError (bad input, can never fit) or EngineOverloadedError (queue full)."""
        params = params or SamplingParams()
        params.validate(self.vocab_size)
        if request_id in self._sequences:
            raise ServingError(f"add_request: request_id {request_id!r} is already running")
        prompt = [int(t) for t in prompt_token_ids]
        if not prompt:
            raise ServingError("add_request: prompt_token_ids is empty (a prompt needs at least one token)")
        if min(prompt) < 0 or max(prompt) >= self.vocab_size:
            raise ServingError(f"add_request: prompt_token_ids must lie in [0, {self.vocab_size}), got a token "
                               f"{min(prompt) if min(prompt) < 0 else max(prompt)}")
        if params.stop and self.tokenizer is None:
            raise ServingError("SamplingParams.stop: stop strings need the engine to have a tokenizer")
        self._check_fits(len(prompt), params)
        self.grammars.check(params)
        if len(self.scheduler.waiting) + params.n > self.config.max_waiting:
            raise EngineOverloadedError(f"add_request: the waiting queue is full ({self.config.max_waiting} "
                                        "requests, EngineConfig.max_waiting); retry later")
        arrival = next(self._arrivals)
        seqs = [self._sequence(request_id, i, prompt, params, arrival) for i in range(params.n)]
        self._sequences[request_id] = seqs
        self.scheduler.waiting.extend(seqs)
        self.counters.prompt_tokens += len(prompt) * params.n

    def _check_fits(self, prompt_len: int, params: SamplingParams) -> None:
        if self.max_model_len is not None and prompt_len >= self.max_model_len:
            raise ServingError(f"add_request: the prompt has {prompt_len} tokens; this model takes at most "
                               f"{self.max_model_len} positions (max_position_embeddings), prompt plus output")
        total = prompt_len + params.max_tokens
        if self.max_model_len is not None:
            total = min(total, self.max_model_len)
        if self.scheduler.free_window is not None:
            total = min(total, self.scheduler.free_window + self.config.max_batched_tokens + self.config.block_size)
        needed = -(-total // self.config.block_size)
        if needed > self.block_manager.num_blocks:
            raise ServingError(f"add_request: prompt ({prompt_len} tokens) plus max_tokens ({params.max_tokens}) "
                               f"needs {needed} KV blocks of {self.config.block_size}, but the engine has only "
                               f"{self.block_manager.num_blocks} (EngineConfig.num_blocks / kv_memory)")

    def _sequence(self, request_id: str, index: int, prompt: list[int], params: SamplingParams,
                  arrival: int) -> Sequence:
        generator = None
        if params.seed is not None:
            generator = torch.Generator(self.device)
            generator.manual_seed(params.seed + index)
        detokenizer = IncrementalDetokenizer(self.tokenizer, skip_special_tokens=True) if self.tokenizer else None
        return Sequence(request_id, index, len(prompt), list(prompt), params, arrival, generator, detokenizer)

    def abort(self, request_id: str) -> None:
        """Stop a request now and free its pages; the next step() reports it finished with "abort"."""
        for seq in self._sequences.pop(request_id, []):
            if seq.finish_reason is not None:  # a sibling that already finished (n > 1)
                continue
            if seq in self.scheduler.running:
                self.scheduler.running.remove(seq)
            elif seq in self.scheduler.waiting:
                self.scheduler.waiting.remove(seq)
            self.scheduler.free(seq)
            seq.finish_reason = "abort"
            self.counters.finished["abort"] += 1
            self._pending.append(self._output(seq, [], None))

    def reset_prefix_cache(self) -> None:
        """Forget every cached prefix (pages in use stay valid; later requests recompute their prompts)."""
        self.block_manager.reset_prefix_cache()

    def has_unfinished_requests(self) -> bool:
        return bool(self.scheduler.running or self.scheduler.waiting or self._pending)

    def stats(self) -> dict[str, Any]:
        blocks, c = self.block_manager, self.counters
        return {
            "running": len(self.scheduler.running), "waiting": len(self.scheduler.waiting),
            "kv_blocks_used": blocks.num_used, "kv_blocks_total": blocks.num_blocks,
            "kv_block_size": self.config.block_size,
            "prefix_cache_queries": blocks.queries, "prefix_cache_hits": blocks.hits,
            "prompt_tokens": c.prompt_tokens, "computed_tokens": c.computed_tokens,
            "generated_tokens": c.generated_tokens, "preemptions": self.scheduler.num_preemptions,
            "steps": c.steps, "finished": dict(c.finished),
        }

    # --- one step ---------------------------------------------------------------------------------
    @torch.no_grad()
    def step(self) -> list[RequestOutput]:
        """Run one forward over the scheduled tokens; return an output per sequence that advanced."""
        outputs, self._pending = self._pending, []
        schedule = self.scheduler.schedule()
        if not schedule.rows:
            return outputs
        self.counters.steps += 1
        base = _decoder_of(self.model)
        views = not base.has_score_bias  # ALiBi-style biases need every row's mask
        rows = flat_order(schedule.rows, self.config.block_size, views)
        layout, sample_index = build_layout(rows, self.config.block_size, self.store.num_blocks,
                                            self.store.kv_heads, self.device, views)
        ids = torch.tensor([t for seq, n in rows for t in seq.ids[seq.num_computed:seq.num_computed + n]],
                           dtype=torch.long, device=self.device)
        positions = layout.positions
        bias = (lambda keys, dtype: base.score_bias(None, keys, dtype)) if base.has_score_bias else None
        cache = StepCache(self.store, layout, self.windows, bias, self.causal_when_unmasked)
        hidden = base(input_ids=ids[None], position_ids=positions[None], past_key_values=cache, use_cache=True,
                      cache_position=positions, output_attentions=False, output_hidden_states=False,
                      return_dict=True)
        sampling = [seq for seq, n in rows if n == seq.remaining]
        for seq, n in rows:
            seq.num_computed += n
            self.scheduler.register_full_blocks(seq)
        self.counters.computed_tokens += ids.shape[0]
        if not sampling:
            return outputs
        last = hidden.last_hidden_state[0, torch.tensor(sample_index, device=self.device)]
        logits = self.model.final_logits(self.model.lm_head(last)).float()
        penalized = any(s.params.repetition_penalty != 1.0 or s.params.presence_penalty or s.params.frequency_penalty
                        for s in sampling)
        histories = [s.history.view(s.ids, self.device) if penalized else None for s in sampling]
        drawn = sample(logits, [s.params for s in sampling], histories, [s.prompt_len for s in sampling],
                       [s.generator for s in sampling], self._fallback_generator, self.grammars.bitmask(sampling))
        for seq, token, logprob in zip(sampling, drawn.tokens, drawn.logprobs):
            outputs.append(self._advance(seq, token, logprob))
        return outputs

    def _advance(self, seq: Sequence, token: int, logprob: TokenLogprob | None) -> RequestOutput:
        """Append a sampled token, update text and stop state; finished sequences give back their pages."""
        seq.ids.append(token)
        self.counters.generated_tokens += 1
        params, generated = seq.params, len(seq.ids) - seq.prompt_len
        if seq.detokenizer is not None:
            seq.text = seq.detokenizer.add([token])
        grammar_done = self.grammars.advance(seq)
        stopped_by_id = (token in self.eos_ids and not params.ignore_eos) or token in params.stop_token_ids
        if stopped_by_id or grammar_done or (params.stop and self._cut_at_stop(seq)):
            seq.finish_reason = "stop"
        elif generated >= params.max_tokens or (self.max_model_len and len(seq.ids) >= self.max_model_len):
            seq.finish_reason = "length"
        if seq.finish_reason is not None:
            self._finish(seq)
        return self._output(seq, [token], [logprob] if logprob is not None else None)

    def _cut_at_stop(self, seq: Sequence) -> bool:
        """Truncate the text before the first stop string that appeared in the newest text."""
        longest = max(len(s) for s in seq.params.stop)
        start = max(0, seq.sent_text - longest)
        hits = [i for i in (seq.text.find(s, start) for s in seq.params.stop) if i >= 0]
        if not hits:
            return False
        seq.text = seq.text[:min(hits)]
        return True

    def _finish(self, seq: Sequence) -> None:
        self.scheduler.running.remove(seq)
        self.scheduler.free(seq)
        self.counters.finished[seq.finish_reason] += 1
        siblings = self._sequences.get(seq.request_id, [])
        if all(s.finish_reason is not None for s in siblings):
            self._sequences.pop(seq.request_id, None)

    def _output(self, seq: Sequence, new_ids: list[int], logprobs: list[TokenLogprob] | None) -> RequestOutput:
        """New text is held back while it may still turn out to start a stop string or an unfinished character."""
        text, end = seq.text, len(seq.text)
        if seq.finish_reason is None:
            if seq.params.stop:
                end -= max(len(s) for s in seq.params.stop) - 1
            while end > 0 and text[end - 1] == "\ufffd":
                end -= 1
        new_text = text[seq.sent_text:end] if end > seq.sent_text else ""
        seq.sent_text = max(seq.sent_text, end)
        return RequestOutput(seq.request_id, new_ids, new_text, list(seq.output_ids), text[:seq.sent_text]
                             if seq.finish_reason is None else text, seq.finish_reason is not None,
                             seq.finish_reason, logprobs, seq.prompt_len, seq.cached_prompt_tokens or 0, seq.index)


def _decoder_of(model) -> DecoderModel:
    """The decoder stack (`model.model`) of a causal LM built from the shared decoder blocks."""
    if not isinstance(model, DecoderForCausalLM):
        raise ServingError(f"LLMEngine: {type(model).__name__} is not a decoder-only model of the shared "
                           "decoder (DecoderForCausalLM); it cannot be served yet")
    return model.model


def _unmasked_is_causal(attn) -> bool:
    """Whether this attention's kernel (SDPA, no family kernel, no softcap it would have to apply) reads a
    missing mask as causal, so a fresh prompt chunk may skip building one."""
    spec = attn.spec
    return attn.implementation == "sdpa" and spec.sdpa_kernel is None \
        and (spec.softcap is None or spec.sdpa_ignores_softcap)


def _eos_ids(model) -> set[int]:
    """End-of-sequence ids from the model's generation config (else its config)."""
    config = getattr(model, "generation_config", None)
    eos = getattr(config, "eos_token_id", None) if config is not None else None
    if eos is None:
        eos = vars(model.config).get("eos_token_id")
    if eos is None:
        return set()
    return {int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])}
