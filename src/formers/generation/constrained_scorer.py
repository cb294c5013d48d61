"""ConstrainedBeamSearchScorer: beam search whose beams must fulfil `Constraint`s (transformers 4.45).

Constraints are Python objects stepped token by token (the public `Constraint` API), so this scorer
works on the host: each step reads the candidates once (`tolist`) and sorts beams into "banks" by
constraint progress, exactly as transformers does. Use the vectorised `BeamSearchScorer` when there
are no constraints.
"""
from __future__ import annotations

from collections import UserDict
from typing import Any

import numpy as np
import torch

from ..errors import GenerationError
from .beam_constraints import Constraint, ConstraintListState
from .beam_search import BeamHypotheses, BeamScorer, assemble


class ConstrainedBeamSearchScorer(BeamScorer):
    def __init__(self, batch_size: int, num_beams: int, constraints: list[Constraint], device: torch.device | str,
                 length_penalty: float = 1.0, do_early_stopping: bool | str = False, num_beam_hyps_to_keep: int = 1,
                 num_beam_groups: int = 1, max_length: int | None = None):
        self._init_settings(num_beams, device, length_penalty, do_early_stopping, num_beam_hyps_to_keep,
                            num_beam_groups, max_length)
        self.constraints = constraints
        self._beam_hyps = [BeamHypotheses(num_beams, length_penalty, do_early_stopping, max_length)
                           for _ in range(batch_size)]
        self._done = [False] * batch_size

    @property
    def is_done(self) -> bool:
        return all(self._done)

    def make_constraint_states(self, n: int) -> list[ConstraintListState]:
        return [ConstraintListState([c.copy() for c in self.constraints]) for _ in range(n)]

    def check_completes_constraints(self, sequence: list[int]) -> bool:
        state = self.make_constraint_states(1)[0]
        state.reset(sequence)
        return state.completed

    def process(self, input_ids: torch.LongTensor, next_scores: torch.FloatTensor, next_tokens: torch.LongTensor,
                next_indices: torch.LongTensor, scores_for_all_vocab: torch.FloatTensor,
                pad_token_id: Any = None, eos_token_id: Any = None, beam_indices: Any = None,
                decoder_prompt_len: int = 0) -> UserDict:
        cur_len = input_ids.shape[-1] + 1
        size = self.group_size
        if input_ids.shape[0] // size != len(self._beam_hyps):
            raise GenerationError(f"A beam size of {input_ids.shape[0]} is used as the input, but a beam size of "
                                  f"{size} is expected by the beam scorer.")
        eos = _eos_list(eos_token_id)
        tokens_host, indices_host = next_tokens.tolist(), next_indices.tolist()
        out_scores = torch.zeros((len(self._beam_hyps), size), dtype=next_scores.dtype, device=input_ids.device)
        out_tokens = torch.zeros((len(self._beam_hyps), size), dtype=next_tokens.dtype, device=input_ids.device)
        out_indices = torch.zeros((len(self._beam_hyps), size), dtype=next_indices.dtype, device=input_ids.device)
        ids_host = input_ids.tolist()
        for b, hyps in enumerate(self._beam_hyps):
            if self._done[b]:
                out_tokens[b] = pad_token_id if pad_token_id is not None else 0
                continue
            picked = []
            for rank, (token, index) in enumerate(zip(tokens_host[b], indices_host[b])):
                row = b * size + index
                if token in eos:
                    if rank >= size or not self.check_completes_constraints(ids_host[row]):
                        continue
                    history = tuple(beam_indices[row]) + (row,) if beam_indices is not None else None
                    hyps.add(input_ids[row].clone(), next_scores[b, rank].item(), beam_indices=history,
                             generated_len=cur_len - decoder_prompt_len)
                else:
                    picked.append((rank, token, row))
                if len(picked) == size:
                    break
            if len(picked) < size:
                raise GenerationError(f"At most {size} tokens in {next_tokens[b]} can be equal to `eos_token_id`")
            ranks = torch.tensor([p[0] for p in picked], device=input_ids.device)
            beam_scores = next_scores[b].index_select(0, ranks)
            beam_tokens = torch.tensor([p[1] for p in picked], device=input_ids.device)
            beam_rows = torch.tensor([p[2] for p in picked], device=input_ids.device)
            out_scores[b], out_tokens[b], out_indices[b] = self.step_sentence_constraint(
                b, input_ids, scores_for_all_vocab, beam_scores, beam_tokens, beam_rows)
            self._done[b] = self._done[b] or hyps.is_done(next_scores[b].max().item(), cur_len, decoder_prompt_len)
        return UserDict({"next_beam_scores": out_scores.view(-1), "next_beam_tokens": out_tokens.view(-1),
                         "next_beam_indices": out_indices.view(-1)})

    def step_sentence_constraint(self, batch_idx: int, input_ids: torch.LongTensor, vocab_scores: torch.FloatTensor,
                                 sent_beam_scores: torch.FloatTensor, sent_beam_tokens: torch.LongTensor,
                                 sent_beam_indices: torch.LongTensor, push_progress: bool = False):
        """Mix the top-k beams with beams forced one token further along a constraint, then keep the best of
        each progress "bank" in turn (highest progress first), `num_beams` in all."""
        size = sent_beam_indices.shape[0]
        start = batch_idx * size
        rows = input_ids[start:start + size]
        token_scores = vocab_scores[start:start + size]
        full = torch.cat([input_ids[sent_beam_indices], sent_beam_tokens[:, None]], dim=-1)
        seen_seqs = full.tolist()
        topk_states = self.make_constraint_states(size)
        advance_states = self.make_constraint_states(size)
        new_states, new_rows, new_tokens, new_scores = [], [], [], []
        for seq_idx, pre_seq in enumerate(rows.tolist()):
            topk_states[seq_idx].reset(seen_seqs[seq_idx])
            advance_state = advance_states[seq_idx]
            advance_state.reset(pre_seq)
            if advance_state.completed:
                continue
            for token in advance_state.advance():
                state = advance_state.copy(stateful=True)
                state.add(token)
                seq = pre_seq + [token]
                if seq not in seen_seqs:
                    seen_seqs.append(seq)
                    new_rows.append(start + seq_idx)
                    new_tokens.append(token)
                    new_scores.append(token_scores[seq_idx, token])
                    new_states.append(state)
        if not new_rows:
            return sent_beam_scores, sent_beam_tokens, sent_beam_indices
        device = sent_beam_indices.device
        all_tokens = torch.cat([sent_beam_tokens, torch.tensor(new_tokens, device=device)])
        all_scores = torch.cat([sent_beam_scores, torch.stack(new_scores)])
        banks = torch.tensor([s.get_bank() for s in topk_states + new_states], device=device)
        order = (banks * 100 + all_scores).sort(descending=True).indices
        rank_in_bank, counter, current = [], -1, None
        for bank in banks[order].tolist():  # round-robin over banks: each bank's best, then each's second...
            counter = counter + 1 if bank == current else 0
            current = bank
            rank_in_bank.append(counter)
        order = order[torch.from_numpy(np.argsort(rank_in_bank, kind="mergesort")).to(device)][:size]
        all_rows = torch.cat([sent_beam_indices, torch.tensor(new_rows, device=device)])
        return all_scores[order], all_tokens[order], all_rows[order]

    def finalize(self, input_ids: torch.LongTensor, final_beam_scores: torch.FloatTensor,
                 final_beam_tokens: torch.LongTensor, final_beam_indices: torch.LongTensor, max_length: int,
                 pad_token_id: Any = None, eos_token_id: Any = None, beam_indices: Any = None,
                 decoder_prompt_len: int = 0) -> UserDict:
        """Add open beams (those fulfilling the constraints; the best others if too few do), then assemble."""
        scores_host = final_beam_scores.tolist()
        length = input_ids.shape[-1] - decoder_prompt_len
        for b, hyps in enumerate(self._beam_hyps):
            if self._done[b]:
                continue
            rows = range(b * self.num_beams, (b + 1) * self.num_beams)
            fulfilled = [r for r in rows if self.check_completes_constraints(input_ids[r].tolist())]
            for r in fulfilled:
                hyps.add(input_ids[r], scores_host[r], beam_indices=beam_indices[r] if beam_indices is not None
                         else None, generated_len=length)
            if len(fulfilled) < self.num_beam_hyps_to_keep:
                for r in rows:
                    if r not in fulfilled:
                        hyps.add(input_ids[r], scores_host[r], generated_len=length)
        keep = self.num_beam_hyps_to_keep
        best = [sorted(h.beams, key=lambda x: x[0])[::-1][:keep] for h in self._beam_hyps]
        best = [hyp for group in best for hyp in group]
        device = input_ids.device
        lengths = torch.tensor([len(h[1]) for h in best], device=device)
        width = int(lengths.max())
        tokens = torch.stack([torch.nn.functional.pad(h[1], (0, width - len(h[1]))) for h in best])
        scores = torch.tensor([h[0] for h in best], dtype=torch.float64, device=device)
        history = hist_len = None
        if best and best[0][2] is not None:
            paths = [[int(i) for i in (() if h[2] is None else h[2])] for h in best]
            hist_width = max(len(path) for path in paths)
            history = torch.tensor([path + [-1] * (hist_width - len(path)) for path in paths], device=device)
            hist_len = torch.tensor([len(path) for path in paths], device=device)
        return assemble(tokens, lengths, scores, history, hist_len, max_length, pad_token_id,
                        None if eos_token_id is None else torch.tensor(_eos_list(eos_token_id), device=device))


def _eos_list(eos_token_id: Any) -> list[int]:
    if eos_token_id is None:
        return []
    if isinstance(eos_token_id, torch.Tensor):
        return eos_token_id.reshape(-1).tolist()
    return [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)
