"""Rows that advance by different numbers of tokens per step, in shared columns (assisted decoding).

All rows write into the same columns so one forward pass (and one cache) serves them all. When row r
accepts n_r of the candidates and the longest accepts m, r's columns n_r..m-1 of that step become
*holes*: masked out of attention (mask 0) and skipped when the row's tokens are read back, while each
row's position ids keep counting only its real tokens. So a row's keys, values and positions are those
it would have alone; only masked columns differ. Finished rows are retired from the batch.

Host bookkeeping: `width` (columns in use), per-row real lengths and generated counts as Python lists
(they come back from the one host read per verification step).
"""
from __future__ import annotations

import torch


class RaggedBatch:
    def __init__(self, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor | None, max_new: int,
                 fill: torch.Tensor | int):
        rows, width = prompt_ids.shape
        device = prompt_ids.device
        self.fill = fill
        self.prompt = prompt_ids
        self.prompt_width = width
        self.max_new = max_new
        capacity = width + max_new + 1
        self.ids = torch.full((rows, capacity), 0, dtype=torch.long, device=device)
        self.ids[:, width:] = fill
        self.ids[:, :width] = prompt_ids
        self.mask = torch.zeros((rows, capacity), dtype=torch.long, device=device)
        self.mask[:, :width] = prompt_mask if prompt_mask is not None else 1
        self.pos = torch.zeros((rows, capacity), dtype=torch.long, device=device)
        self.pos[:, :width] = (self.mask[:, :width].cumsum(-1) - 1).masked_fill(self.mask[:, :width] == 0, 1)
        self.width = width
        self.real_len = self.mask[:, :width].sum(-1)                 # [R] real tokens per row (device)
        self.real_host: list[int] = self.real_len.tolist()
        self.generated_host = [0] * rows
        self.origin: list[int] = list(range(rows))                    # active row -> input row
        self.has_holes = False
        self.padded = prompt_mask is not None
        self._filler = False
        self.finished: dict[int, torch.Tensor] = {}                  # input row -> generated tokens

    @property
    def rows(self) -> int:
        return self.ids.shape[0]

    @property
    def device(self) -> torch.device:
        return self.ids.device

    def budget(self) -> list[int]:
        """Tokens each active row may still generate."""
        return [self.max_new - g for g in self.generated_host]

    def ensure(self, extra: int) -> None:
        """Room for `extra` more columns (holes make the column count outgrow max_length)."""
        need = self.width + extra
        if need <= self.ids.shape[1]:
            return
        grow = max(need, self.ids.shape[1] * 3 // 2) - self.ids.shape[1]
        pad = lambda t, v: torch.nn.functional.pad(t, (0, grow), value=v)  # noqa: E731
        self.ids, self.mask, self.pos = pad(self.ids, 0), pad(self.mask, 0), pad(self.pos, 0)
        self.ids[:, self.ids.shape[1] - grow:] = self.fill

    def write(self, tokens: torch.Tensor, start_offset: int = 0, counts: torch.Tensor | None = None) -> None:
        """Put candidate tokens [R, n] in the columns after `width` (+ offset), counting positions on; with
        `counts`, row r's columns from counts[r] on are filler (masked out)."""
        n = tokens.shape[1]
        if n == 0:
            return
        self.ensure(start_offset + n + 1)
        cols = slice(self.width + start_offset, self.width + start_offset + n)
        self.ids[:, cols] = tokens
        steps = torch.arange(n, device=self.device)
        self.mask[:, cols] = 1 if counts is None else (steps[None, :] < counts[:, None]).long()
        self._filler = counts is not None
        self.pos[:, cols] = self.real_len[:, None] + start_offset + steps

    def mask_upto(self, end: int) -> torch.Tensor | None:
        """The attention mask [R, end], or None while every column so far is real (plain causal attention)."""
        return self.mask[:, :end] if self.padded or self.has_holes or self._filler else None

    def tokens(self, extra: int = 0, counts_host: list[int] | None = None) -> torch.Tensor:
        """The rows' tokens through `width + extra` columns as processors see them: without holes or filler
        (real tokens right-aligned, pads on the left) when there are any; else the columns as they are.
        `counts_host`: real columns among the `extra` ones, per row (default: all)."""
        end = self.width + extra
        filler = counts_host is not None and any(c < extra for c in counts_host)
        if not self.has_holes and not filler:
            return self.ids[:, :end]
        real_extra = [min(c, extra) for c in counts_host] if counts_host is not None else [extra] * self.rows
        keep = max(r + e for r, e in zip(self.real_host, real_extra))
        order = torch.sort(self.mask[:, :end], dim=-1, stable=True).indices
        packed = self.ids[:, :end].gather(1, order).masked_fill(self.mask[:, :end].gather(1, order) == 0, self.fill)
        return packed[:, end - keep:]

    def commit(self, accepted: torch.Tensor, accepted_host: list[int], bonus: torch.Tensor) -> int:
        """Row r keeps its first accepted[r] candidates and then `bonus[r]`; -> m, the most accepted.
        The bonus goes to the common column width + m, r's columns in between become holes."""
        m = max(accepted_host)
        self.ensure(m + 1)
        cols = self.width + torch.arange(m + 1, device=self.device)
        hole = torch.arange(m + 1, device=self.device)[None, :] >= accepted[:, None]     # [R, m+1]
        hole[:, m] = False
        self.mask[:, cols] = (~hole).long()
        self.ids[:, self.width + m] = bonus
        self.pos[:, self.width + m] = self.real_len + accepted
        if any(a != m for a in accepted_host):
            self.has_holes = True
        self._filler = False
        self.real_len = self.real_len + accepted + 1
        self.real_host = [r + a + 1 for r, a in zip(self.real_host, accepted_host)]
        self.generated_host = [g + a + 1 for g, a in zip(self.generated_host, accepted_host)]
        self.width += m + 1
        return m

    def generated(self, row: int) -> torch.Tensor:
        """Active row `row`'s generated tokens (holes skipped)."""
        mask = self.mask[row, self.prompt_width:self.width].bool()
        return self.ids[row, self.prompt_width:self.width][mask]

    def retire(self, done_host: list[bool]) -> torch.Tensor | None:
        """Move finished rows out; -> index of the rows kept (None when nothing changed)."""
        if not any(done_host):
            return None
        for row, done in enumerate(done_host):
            if done:
                self.finished[self.origin[row]] = self.generated(row)
        keep = [row for row, done in enumerate(done_host) if not done]
        index = torch.tensor(keep, dtype=torch.long, device=self.device)
        self.ids, self.mask, self.pos = self.ids[index], self.mask[index], self.pos[index]
        self.real_len = self.real_len[index]
        self.real_host = [self.real_host[r] for r in keep]
        self.generated_host = [self.generated_host[r] for r in keep]
        self.origin = [self.origin[r] for r in keep]
        return index

    def output(self) -> torch.Tensor:
        """[B, P + longest generation]: each input row's prompt, its tokens, then fill."""
        for row in range(self.rows):
            self.finished[self.origin[row]] = self.generated(row)
        longest = max(len(t) for t in self.finished.values())
        out = torch.full((self.prompt.shape[0], self.prompt_width + longest), 0, dtype=torch.long,
                         device=self.device)
        out[:, self.prompt_width:] = self.fill
        out[:, :self.prompt_width] = self.prompt
        for row, tokens in self.finished.items():
            out[row, self.prompt_width:self.prompt_width + len(tokens)] = tokens
        return out
