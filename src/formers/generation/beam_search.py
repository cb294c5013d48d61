"""Beam scorers with transformers 4.45's interface (`process` each step, `finalize` at the end).

`BeamSearchScorer` (beam search, beam sampling, group beam search) is vectorised over prompts and
candidates: the per-step choice of next beams and finished hypotheses is a few tensor ops on the
device (see `beam_store.py`), and `is_done` is the one host read per step. `BeamHypotheses` is the
list-based n-best list kept for the host-side constrained scorer and for API compatibility.
"""
from __future__ import annotations

from collections import UserDict
from typing import Any, Sequence

import torch

from ..errors import GenerationError
from .beam_store import FinishedBeams


class BeamScorer:
    """Abstract base of beam scorers; holds the settings every scorer validates and keeps."""

    def _init_settings(self, num_beams: int, device, length_penalty: float, do_early_stopping: bool | str,
                       num_beam_hyps_to_keep: int, num_beam_groups: int, max_length: int | None) -> None:
        check_beam_args(num_beams, num_beam_groups, do_early_stopping, max_length)
        self.num_beams = num_beams
        self.device = device
        self.length_penalty = length_penalty
        self.do_early_stopping = do_early_stopping
        self.num_beam_hyps_to_keep = num_beam_hyps_to_keep
        self.num_beam_groups = num_beam_groups
        self.group_size = num_beams // num_beam_groups
        self.max_length = max_length

    def process(self, input_ids: torch.LongTensor, next_scores: torch.FloatTensor, next_tokens: torch.LongTensor,
                next_indices: torch.LongTensor, **kwargs: Any) -> UserDict:
        raise NotImplementedError("This is an abstract method.")

    def finalize(self, input_ids: torch.LongTensor, next_scores: torch.FloatTensor, next_tokens: torch.LongTensor,
                 next_indices: torch.LongTensor, max_length: int, **kwargs: Any) -> torch.LongTensor:
        raise NotImplementedError("This is an abstract method.")


def check_beam_args(num_beams: Any, num_beam_groups: Any, early_stopping: Any, max_length: int | None) -> None:
    if not isinstance(num_beams, int) or num_beams <= 1:
        raise GenerationError(f"`num_beams` has to be an integer strictly greater than 1, but is {num_beams}. For "
                              "`num_beams` == 1, use greedy search instead.")
    if not isinstance(num_beam_groups, int) or num_beam_groups > num_beams or num_beams % num_beam_groups != 0:
        raise GenerationError("`num_beam_groups` has to be an integer smaller or equal than `num_beams` and "
                              f"`num_beams` has to be divisible by `num_beam_groups`, but is {num_beam_groups} with "
                              f"`num_beams` being {num_beams}.")
    if not isinstance(early_stopping, bool) and max_length is None:
        raise GenerationError("When `do_early_stopping` is set to a string, `max_length` must be defined: pass it to "
                              "the beam scorer.")


def _as_eos(eos_token_id: Any, device) -> torch.Tensor | None:
    if eos_token_id is None:
        return None
    if isinstance(eos_token_id, torch.Tensor):
        return eos_token_id.reshape(-1).to(device)
    return torch.tensor([eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id), device=device)


def _as_history(beam_indices: Any, device) -> torch.Tensor | None:
    """Beam-index histories as a tensor [rows, steps] (tuples of tuples are accepted, as in 4.45)."""
    if beam_indices is None or isinstance(beam_indices, torch.Tensor):
        return beam_indices
    rows = [[int(i) for i in row] for row in beam_indices]
    return torch.tensor(rows, dtype=torch.long, device=device).reshape(len(rows), -1)


class BeamSearchScorer(BeamScorer):
    """Standard (and group / sampling) beam search scoring, on the device."""

    def __init__(self, batch_size: int, num_beams: int, device: torch.device | str, length_penalty: float = 1.0,
                 do_early_stopping: bool | str = False, num_beam_hyps_to_keep: int = 1, num_beam_groups: int = 1,
                 max_length: int | None = None):
        self._init_settings(num_beams, device, length_penalty, do_early_stopping, num_beam_hyps_to_keep,
                            num_beam_groups, max_length)
        self.batch_size = batch_size
        self._finished = FinishedBeams(batch_size * num_beam_groups, self.group_size, device)
        self._done = torch.zeros(batch_size * num_beam_groups, dtype=torch.bool, device=device)

    @property
    def is_done(self) -> torch.Tensor:
        return self._done.all()

    def _penalised(self, scores: torch.Tensor, generated_len: int) -> torch.Tensor:
        return scores.to(torch.float64) / (generated_len ** self.length_penalty)

    def _best_attainable(self, best: torch.Tensor, cur_len: int, prompt_len: int) -> torch.Tensor:
        best = best.to(torch.float64)
        if self.do_early_stopping == "never" and self.length_penalty > 0.0:
            if self.max_length <= prompt_len:
                raise GenerationError("max_length is not larger than the decoder prompt length")
            return best / (self.max_length - prompt_len) ** self.length_penalty
        return best / (cur_len - prompt_len) ** self.length_penalty

    def process(self, input_ids: torch.LongTensor, next_scores: torch.FloatTensor, next_tokens: torch.LongTensor,
                next_indices: torch.LongTensor, pad_token_id: int | torch.Tensor | None = None,
                eos_token_id: int | Sequence[int] | torch.Tensor | None = None, beam_indices: Any = None,
                group_index: int = 0, decoder_prompt_len: int = 0) -> UserDict:
        """Pick the next `group_size` beams per prompt from the sorted candidates [B, 2 * group_size]; candidates
        ending in EOS within the top `group_size` become finished hypotheses."""
        gs, device = self.group_size, input_ids.device
        if input_ids.shape[0] != self.batch_size * gs:
            raise GenerationError(f"A beam size of {input_ids.shape[0]} is used as the input, but a beam size of "
                                  f"{gs} is expected by the beam scorer.")
        cur_len = input_ids.shape[-1] + 1
        batch, cands = next_tokens.shape
        eos = _as_eos(eos_token_id, device)
        slots = torch.arange(batch, device=device) * self.num_beam_groups + group_index
        done = self._done[slots]                                                        # [B]
        is_eos = torch.isin(next_tokens, eos) if eos is not None else torch.zeros_like(next_tokens, dtype=torch.bool)
        rank = torch.arange(cands, device=device)
        # next beams: the first `gs` non-EOS candidates in rank order
        order = torch.sort(torch.where(is_eos, rank + cands, rank), dim=-1).indices[:, :gs]
        source = torch.arange(batch, device=device)[:, None] * gs + next_indices.gather(1, order)
        fill = pad_token_id if pad_token_id is not None else 0
        beam_scores = torch.where(done[:, None], 0.0, next_scores.gather(1, order))
        beam_tokens = torch.where(done[:, None], torch.as_tensor(fill, device=device), next_tokens.gather(1, order))
        beam_sources = torch.where(done[:, None], 0, source)
        # finished: EOS candidates ranked within the top `gs`, for prompts not done yet
        if eos is not None:
            top = slice(0, gs)
            finished = is_eos[:, top] & ~done[:, None]
            src = torch.arange(batch, device=device)[:, None] * gs + next_indices[:, top]   # [B, gs]
            history = _as_history(beam_indices, device)
            if history is not None:
                history = torch.cat([history[src], src[..., None]], dim=-1)
            self._finished.add(slots, self._penalised(next_scores[:, top], cur_len - decoder_prompt_len), finished,
                               input_ids[src], history)
        full = self._finished.count[slots] >= gs
        if self.do_early_stopping is True:
            now_done = full
        else:
            now_done = full & (self._finished.worst()[slots] >= self._best_attainable(
                next_scores.amax(dim=-1), cur_len, decoder_prompt_len))
        self._done[slots] = done | now_done
        return UserDict({"next_beam_scores": beam_scores.reshape(-1), "next_beam_tokens": beam_tokens.reshape(-1),
                         "next_beam_indices": beam_sources.reshape(-1)})

    def finalize(self, input_ids: torch.LongTensor, final_beam_scores: torch.FloatTensor,
                 final_beam_tokens: torch.LongTensor, final_beam_indices: torch.LongTensor, max_length: int,
                 pad_token_id: int | torch.Tensor | None = None,
                 eos_token_id: int | Sequence[int] | torch.Tensor | None = None, beam_indices: Any = None,
                 decoder_prompt_len: int = 0) -> UserDict:
        """Add the open beams of unfinished prompts, then return the `num_beam_hyps_to_keep` best per prompt:
        sequences padded with `pad_token_id` and ended by the first EOS id where it fits."""
        device = input_ids.device
        slots_total, gs = self._done.shape[0], self.group_size
        open_slots = torch.arange(slots_total, device=device)
        rows = open_slots[:, None] * gs + torch.arange(gs, device=device)                  # [S, gs]
        history = _as_history(beam_indices, device)
        self._finished.add(open_slots, self._penalised(final_beam_scores.view(slots_total, gs),
                                                       input_ids.shape[-1] - decoder_prompt_len),
                           (~self._done)[:, None].expand(-1, gs), input_ids[rows],
                           history[rows] if history is not None else None)
        keep = self.num_beam_hyps_to_keep
        scores, tokens, lengths, hist, hist_len = self._finished.best(self.num_beam_groups, keep)
        return assemble(tokens, lengths, scores, hist if history is not None else None, hist_len, max_length,
                        pad_token_id, _as_eos(eos_token_id, device))


def assemble(tokens: torch.Tensor, lengths: torch.Tensor, scores: torch.Tensor, history: torch.Tensor | None,
             history_lengths: torch.Tensor | None, max_length: int | None, pad_token_id: Any,
             eos: torch.Tensor | None) -> UserDict:
    """The output ids [R, min(longest + 1, max_length)]: each hypothesis, its first-EOS end where it fits, pads."""
    longest = int(lengths.max())
    width = min(longest + 1, max_length) if max_length is not None else longest + 1
    if pad_token_id is None and int(lengths.min()) != longest:
        raise GenerationError("`pad_token_id` has to be defined to pad beam hypotheses of different lengths")
    fill = pad_token_id if pad_token_id is not None else 0
    cols = torch.arange(width, device=tokens.device)
    body = _fit(tokens, width)
    out = torch.where(cols < lengths[:, None], body, torch.as_tensor(fill, device=tokens.device))
    if eos is not None:
        out = torch.where((cols == lengths[:, None]) & (lengths[:, None] < width), eos[0], out)
    indices = None
    if history is not None:
        indices = torch.where(cols < history_lengths[:, None], _fit(history, width), -1)
    return UserDict({"sequences": out, "sequence_scores": scores.to(torch.float32), "beam_indices": indices})


def _fit(t: torch.Tensor, width: int) -> torch.Tensor:
    return t[:, :width] if t.shape[1] >= width else torch.nn.functional.pad(t, (0, width - t.shape[1]))


class BeamHypotheses:
    """n-best list of finished hypotheses (Python list; used by the constrained scorer)."""

    def __init__(self, num_beams: int, length_penalty: float, early_stopping: bool | str,
                 max_length: int | None = None):
        self.length_penalty = length_penalty
        self.early_stopping = early_stopping
        self.max_length = max_length
        self.num_beams = num_beams
        self.beams: list[tuple[float, torch.Tensor, Any]] = []
        self.worst_score = 1e9
        if not isinstance(early_stopping, bool) and max_length is None:
            raise GenerationError("When `do_early_stopping` is set to a string, `max_length` must be defined.")

    def __len__(self) -> int:
        return len(self.beams)

    def add(self, hyp: torch.LongTensor, sum_logprobs: float, beam_indices: Any = None,
            generated_len: int | None = None) -> None:
        """Insert if there is room or it beats the worst kept hypothesis (which then leaves)."""
        length = generated_len if generated_len is not None else hyp.shape[-1]
        score = sum_logprobs / (length ** self.length_penalty)
        if len(self) < self.num_beams or score > self.worst_score:
            self.beams.append((score, hyp, beam_indices))
            if len(self) > self.num_beams:
                ranked = sorted((s, i) for i, (s, _, _) in enumerate(self.beams))
                del self.beams[ranked[0][1]]
                self.worst_score = ranked[1][0]
            else:
                self.worst_score = min(score, self.worst_score)

    def is_done(self, best_sum_logprobs: float, cur_len: int, decoder_prompt_len: int = 0) -> bool:
        """True once full and no open beam can still beat the worst kept hypothesis."""
        if len(self) < self.num_beams:
            return False
        if self.early_stopping is True:
            return True
        if self.early_stopping == "never" and self.length_penalty > 0.0:
            if self.max_length <= decoder_prompt_len:
                raise GenerationError("max_length is not larger than decoder prompt length")
            best = best_sum_logprobs / (self.max_length - decoder_prompt_len) ** self.length_penalty
        else:
            best = best_sum_logprobs / (cur_len - decoder_prompt_len) ** self.length_penalty
        return self.worst_score >= best
