"""Whisper's generate() for one 30 s window (short-form), as 4.45.2 computes it.

Steps: task prompt (<|startoftranscript|> [<|lang|> detected or given] [<|task|>] [<|notimestamps|>]),
Whisper's logits processors (suppress at begin, suppress, timestamp rules), the shared seq2seq decoding
over encoder states computed once, then 4.45's post-processing: trailing padding removed, timestamped
output cut into segments (only complete <|t0|> ... <|t1|><|t1'|> segments are kept, as 4.45 does), rows
right-padded with pad_token_id.
"""
from __future__ import annotations

import copy
from typing import Any

import torch

from ...errors import GenerationError
from ...generation.logits_process import (
    LogitsProcessor,
    LogitsProcessorList,
    SuppressTokensAtBeginLogitsProcessor,
    SuppressTokensLogitsProcessor,
)
from ...modeling_outputs import BaseModelOutput
from .fallback import WindowOptions, decode_window
from .languages import TASK_IDS, TO_LANGUAGE_CODE

NEG_INF = -float("inf")


class WhisperTimeStampLogitsProcessor(LogitsProcessor):
    """Timestamp grammar: timestamps come in pairs (except the first), never go back in time, the first
    generated token is a timestamp (<= max_initial_timestamp_index), and when the timestamps' total
    probability beats every text token a timestamp is forced. Vectorised over rows (no host sync)."""

    def __init__(self, generate_config, begin_index: int | None = None,
                 _detect_timestamp_from_logprob: bool | None = None):
        self.no_timestamps_token_id = generate_config.no_timestamps_token_id
        self.timestamp_begin = generate_config.no_timestamps_token_id + 1
        self.eos_token_id = generate_config.eos_token_id or generate_config.bos_token_id
        detect = _detect_timestamp_from_logprob
        self._detect_timestamp_from_logprob = detect if detect is not None else \
            getattr(generate_config, "_detect_timestamp_from_logprob", True)
        forced = len(generate_config.forced_decoder_ids or [])
        self.begin_index = begin_index or forced + 1
        self.max_initial_timestamp_index = getattr(generate_config, "max_initial_timestamp_index", None)

    def set_begin_index(self, begin_index: int) -> None:
        self.begin_index = begin_index

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        # Row conditions are [B, 1] masks applied to column slices (views), so no [B, vocab] mask is built:
        # this runs once per decoder step of every window.
        begin = self.timestamp_begin
        scores = scores.clone()
        scores[:, self.no_timestamps_token_id] = NEG_INF
        text, times = scores[:, :begin], scores[:, begin:]
        sampled = input_ids[:, self.begin_index:]
        length = sampled.shape[1]
        if length > 0:
            is_time = sampled >= begin
            last = is_time[:, -1]
            penultimate = is_time[:, -2] if length > 1 else torch.ones_like(last)
            times.masked_fill_((last & penultimate)[:, None], NEG_INF)
            scores[:, :self.eos_token_id].masked_fill_((last & ~penultimate)[:, None], NEG_INF)
            # no timestamp earlier than the last one (equal allowed only to close a pair)
            where = torch.where(is_time, torch.arange(length, device=scores.device), -1).amax(dim=1)
            latest = sampled.gather(1, where.clamp(min=0)[:, None])[:, 0]
            limit = torch.where(last & ~penultimate, latest, latest + 1) - begin
            offsets = torch.arange(times.shape[-1], device=scores.device)[None, :]
            times.masked_fill_((where >= 0)[:, None] & (offsets < limit[:, None]), NEG_INF)
        if input_ids.shape[1] == self.begin_index:
            text.fill_(NEG_INF)
            if self.max_initial_timestamp_index is not None:
                scores[:, begin + self.max_initial_timestamp_index + 1:] = NEG_INF
        if self._detect_timestamp_from_logprob:
            logprobs = torch.log_softmax(scores.float(), dim=-1)
            timestamp_mass = logprobs[:, begin:].logsumexp(dim=-1)
            best_text = logprobs[:, :begin].max(dim=-1).values
            text.masked_fill_((timestamp_mass > best_text)[:, None], NEG_INF)
        return scores


def _language_id(config, language: str) -> int:
    key = language.lower()
    if key in config.lang_to_id:
        token = key
    elif key in TO_LANGUAGE_CODE:
        token = f"<|{TO_LANGUAGE_CODE[key]}|>"
    elif key in TO_LANGUAGE_CODE.values():
        token = f"<|{key}|>"
    else:
        raise GenerationError(f"generate(language={language!r}): not a Whisper language name or code")
    if token not in config.lang_to_id:
        raise GenerationError(f"generate(language={language!r}): {token} is not in generation_config.lang_to_id")
    return config.lang_to_id[token]


def detect_language(model, encoder_hidden: torch.Tensor, config) -> torch.Tensor:
    """[B] ids of the most likely language token after <|startoftranscript|>."""
    start = torch.full((encoder_hidden.shape[0], 1), config.decoder_start_token_id, dtype=torch.long,
                       device=encoder_hidden.device)
    with torch.no_grad():
        logits = model(encoder_outputs=BaseModelOutput(last_hidden_state=encoder_hidden),
                       decoder_input_ids=start, use_cache=False).logits[:, -1]
    allowed = torch.zeros(logits.shape[-1], dtype=torch.bool, device=logits.device)
    allowed[list(config.lang_to_id.values())] = True
    return logits.masked_fill(~allowed, NEG_INF).argmax(-1)


def init_tokens(model, encoder_hidden: torch.Tensor, config, language, task) -> torch.Tensor:
    """[B, P] task prompt; forced_decoder_ids from the config fill it when no language/task is given."""
    batch = encoder_hidden.shape[0]
    forced = config.forced_decoder_ids or getattr(model.config, "forced_decoder_ids", None)
    if language is not None or task is not None:
        forced = None
    prompt = [config.decoder_start_token_id]
    for position, (index, token) in enumerate(forced or [], start=1):
        if index != position:
            raise GenerationError(f"forced_decoder_ids {forced}: Whisper expects positions 1, 2, ... in order")
        prompt.append(token)
    config.forced_decoder_ids = None
    rows = [list(prompt) for _ in range(batch)]
    if language is not None:
        languages = [language] * batch if isinstance(language, str) else list(language)
        if len(languages) != batch:
            raise GenerationError(f"generate(language=...): {len(languages)} languages for a batch of {batch}")
        lang_ids = [_language_id(config, name) for name in languages]
    elif hasattr(config, "lang_to_id") and (len(prompt) <= 1 or prompt[1] is None):
        lang_ids = detect_language(model, encoder_hidden, config).tolist()
    else:
        lang_ids = None
    for index, row in enumerate(rows):
        if lang_ids is not None:
            row[1:2] = [lang_ids[index]]
        if task is not None:
            if task not in TASK_IDS:
                raise GenerationError(f"generate(task={task!r}): expected one of {', '.join(TASK_IDS)}")
            row.append(config.task_to_id[task])
        elif language is not None and hasattr(config, "task_to_id") and \
                not any(t in row for t in config.task_to_id.values()):
            row.append(config.task_to_id["transcribe"])
        no_ts = getattr(config, "no_timestamps_token_id", None)
        if not config.return_timestamps and no_ts is not None and row[-1] != no_ts:
            row.append(no_ts)
        elif config.return_timestamps and row[-1] == no_ts:
            row.pop()
        rows[index] = [t for t in row if t is not None]
    return torch.tensor(rows, dtype=torch.long, device=encoder_hidden.device)


def split_segments(tokens: torch.Tensor, timestamp_begin: int) -> list[torch.Tensor]:
    """4.45's segmenting of one window's tokens (its `_retrieve_segment`): the token pieces it keeps."""
    is_time = tokens >= timestamp_begin
    single_ending = is_time[-2:].tolist() == [False, True]
    cuts = (torch.where(is_time[:-1] & is_time[1:])[0] + 1).tolist()
    if not cuts:
        return [tokens]
    if single_ending:
        cuts.append(len(tokens))
    starts = [0] + cuts[:-1]
    return [tokens[start:end] for start, end in zip(starts, cuts)]


def whisper_generate(model, input_features: torch.Tensor | None, generation_config=None, *,
                     logits_processor: LogitsProcessorList | None = None, return_timestamps: bool | None = None,
                     task: str | None = None, language: str | list[str] | None = None,
                     is_multilingual: bool | None = None, prompt_ids: torch.Tensor | None = None,
                     temperature: float | None = None, return_segments: bool = False,
                     attention_mask: torch.Tensor | None = None, **kwargs: Any):
    """Whisper generation -> sequences [B, T]: one 30 s window per row (prompt included in the output), or
    long-form sequential decoding over longer features (longform.py; only the generated text)."""
    base = generation_config if generation_config is not None else model.generation_config
    config = copy.deepcopy(base)
    kwargs = config.update(**kwargs)
    encoder_outputs = kwargs.pop("encoder_outputs", None)
    window = 2 * model.config.max_source_positions
    long_form = encoder_outputs is None and input_features is not None and input_features.shape[-1] > window
    if encoder_outputs is None and input_features is None:
        raise GenerationError("generate(): pass `input_features` (log-mel features) or `encoder_outputs`")
    known_language = language if language is not None else getattr(config, "language", None)
    if long_form and (known_language is not None or not hasattr(config, "lang_to_id")):
        # no language to detect: the windows are encoded by the long-form loop, not once more here
        encoder_outputs = BaseModelOutput(last_hidden_state=input_features.new_zeros(
            input_features.shape[0], 1, model.config.d_model))
    elif encoder_outputs is None:
        encoder_outputs = model.get_encoder()(input_features[..., :window], return_dict=True)
    elif not isinstance(encoder_outputs, BaseModelOutput):
        encoder_outputs = BaseModelOutput(*encoder_outputs)
    hidden = encoder_outputs.last_hidden_state
    options, return_token_timestamps = _window_options(model, config, kwargs, temperature)
    if return_timestamps is None:
        return_timestamps = getattr(config, "return_timestamps", None)
    if long_form:
        if return_timestamps is False:
            raise GenerationError(f"generate(): {input_features.shape[-1]} feature frames (> 30 s) is decoded "
                                  "long-form, which needs the timestamp tokens: pass return_timestamps=True")
        return_timestamps = True

    if return_timestamps is None:
        return_timestamps = getattr(config, "return_timestamps", None)
    if return_timestamps and getattr(config, "no_timestamps_token_id", None) is None:
        raise GenerationError("generate(return_timestamps=True): generation_config has no `no_timestamps_token_id`")
    config.return_timestamps = return_timestamps
    if is_multilingual is not None:
        config.is_multilingual = is_multilingual
    if getattr(config, "is_multilingual", True) is False and (task is not None or language is not None):
        raise GenerationError("generate(task=/language=): this is an English-only Whisper (is_multilingual=False)")
    for name, value, table in (("language", language, "lang_to_id"), ("task", task, "task_to_id")):
        if value is not None and not hasattr(config, table):
            raise GenerationError(f"generate({name}=...): generation_config has no `{table}`")
    language = language if language is not None else getattr(config, "language", None)
    task = task if task is not None else getattr(config, "task", None)

    prompt = init_tokens(model, hidden, config, language, task)
    user_ids = kwargs.pop("decoder_input_ids", None)
    if user_ids is not None:
        prompt = user_ids
    elif prompt_ids is not None and not long_form:
        prompt = torch.cat([prompt_ids.to(prompt.device)[None].expand(prompt.shape[0], -1), prompt], dim=-1)
    kwargs.pop("decoder_attention_mask", None)
    if config.suppress_tokens is not None and getattr(config, "prev_sot_token_id", None) is None:
        # 4.45 takes <|startofprev|> as the next-to-last suppressed id when the config does not name it
        config.prev_sot_token_id = config.suppress_tokens[-2] if len(config.suppress_tokens) > 1 else None
    max_positions = model.config.max_target_positions
    if (config.max_new_tokens or 0) + prompt.shape[-1] > max_positions:
        raise GenerationError(f"generate(): the decoder prompt ({prompt.shape[-1]} tokens incl. start/prompt tokens) "
                              f"plus max_new_tokens={config.max_new_tokens} exceeds the model's "
                              f"max_target_positions={max_positions}")

    processors: list[LogitsProcessor] = []
    begin = prompt.shape[-1]
    if config.begin_suppress_tokens is not None:
        processors.append(SuppressTokensAtBeginLogitsProcessor(config.begin_suppress_tokens, begin, hidden.device))
        config.begin_suppress_tokens = None
    if config.suppress_tokens is not None:
        processors.append(SuppressTokensLogitsProcessor(config.suppress_tokens, hidden.device))
        config.suppress_tokens = None
    if return_timestamps is True:  # 4.45: the pipeline's "word" leaves timestamps out of the grammar
        processors.append(WhisperTimeStampLogitsProcessor(config, begin_index=begin))
    processors += list(logits_processor or [])

    for key in ("do_sample", "temperature", "num_beams"):
        kwargs.pop(key, None)
    processors = LogitsProcessorList(processors)
    if long_form:
        from .longform import generate_long_form
        return generate_long_form(model, input_features, attention_mask, config, prompt, processors, kwargs,
                                  return_segments, options, prompt_ids=prompt_ids)
    return _short_form(model, hidden, prompt, config, processors, kwargs, options, return_segments,
                       return_token_timestamps)


def _short_form(model, hidden, prompt, config, processors, kwargs, options, return_segments: bool,
                return_token_timestamps: bool):
    """One window per row: 4.45's segments of each row (prompt included), joined and right-padded."""
    from .longform import _segments
    rows = decode_window(model, hidden, prompt, config, processors, kwargs, options, [False] * prompt.shape[0],
                         keep_prompt=True)
    timestamp_begin = getattr(config, "no_timestamps_token_id", model.config.vocab_size) + 1
    frames = 2 * model.config.max_source_positions
    kept = [[] if row.skip else _segments(row.tokens, timestamp_begin, 0.0, frames, 0.02, row.token_timestamps)[0]
            for row in rows]
    joined = [torch.cat([s["tokens"] for s in pieces]) if pieces else prompt.new_zeros(0) for pieces in kept]
    out = torch.full((len(joined), max(len(r) for r in joined)), config.pad_token_id, dtype=torch.long,
                     device=prompt.device)
    for index, row in enumerate(joined):
        out[index, : len(row)] = row
    if config.max_new_tokens is None and config.max_length is None:
        out = torch.cat([out, out.new_full((out.shape[0], 1), config.eos_token_id)], dim=-1)
    if return_segments:
        return {"sequences": out, "segments": kept}
    if return_token_timestamps:
        return {"sequences": out, "token_timestamps": torch.stack([row.token_timestamps for row in rows])}
    return out


def _window_options(model, config, kwargs: dict, temperature) -> tuple[WindowOptions, bool]:
    """Fallback, no-speech, conditioning and token-timestamp settings (arguments over generation_config)."""
    def setting(name: str):
        value = kwargs.pop(name, None)
        return value if value is not None else getattr(config, name, None)

    temperatures = list(temperature) if isinstance(temperature, (list, tuple)) else [temperature]
    options = WindowOptions(temperatures, setting("compression_ratio_threshold"), setting("logprob_threshold"),
                            setting("no_speech_threshold"), bool(setting("condition_on_prev_tokens")))
    beams = kwargs.get("num_beams", config.num_beams) > 1
    if options.logprob_threshold is not None and beams:
        raise GenerationError("generate(logprob_threshold=..., num_beams>1) is not implemented in formers yet")
    if options.no_speech_threshold is not None and options.logprob_threshold is None:
        raise GenerationError("generate(no_speech_threshold=...) needs logprob_threshold as well: a window is "
                              "skipped as silence only when its average log-probability is also below it")
    condition_type = kwargs.pop("prompt_condition_type", None) or "first-segment"
    if condition_type not in ("first-segment", "all-segments"):
        raise GenerationError(f"generate(prompt_condition_type={condition_type!r}): expected 'first-segment' or "
                              "'all-segments'")
    if condition_type == "all-segments" and not options.condition_on_prev_tokens:
        raise GenerationError("generate(prompt_condition_type='all-segments') needs condition_on_prev_tokens=True")
    config.prompt_condition_type = condition_type
    num_frames = kwargs.pop("num_frames", None)
    return_token_timestamps = bool(kwargs.pop("return_token_timestamps", None))
    if return_token_timestamps:
        heads = getattr(config, "alignment_heads", None)
        if heads is None:
            raise GenerationError("generate(return_token_timestamps=True): generation_config has no "
                                  "`alignment_heads` ([layer, head] pairs of the cross-attention used for alignment)")
        if beams:
            raise GenerationError("generate(return_token_timestamps=True, num_beams>1) is not implemented in formers")
        options.alignment = {"alignment_heads": heads, "median_filter_width": model.config.median_filter_width,
                             "num_frames": num_frames}
    return options, return_token_timestamps
