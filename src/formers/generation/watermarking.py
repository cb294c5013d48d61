"""Watermarking (https://arxiv.org/abs/2306.04634): a bias on a pseudo-random "green" token list at
each step, and the detector that counts green tokens afterwards.

The green list of a context is `torch.randperm(vocab)` drawn from a torch.Generator seeded by a hash
of the context, exactly as transformers 4.45 draws it, so text watermarked by either library is
detected by both. That draw is host work by nature (one generator per context): each step reads the
few context ids once for the whole batch, and green lists are cached per seed.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import GenerationError
from .configuration_utils import WatermarkingConfig
from .logits_base import LogitsProcessor

logger = logging.getLogger(__name__)

_TABLE_SIZE = 1_000_003
_SELFHASH_CANDIDATES = 40


class WatermarkLogitsProcessor(LogitsProcessor):
    """Add `bias` to the green tokens of each row; "lefthash" seeds by the previous token, "selfhash" by the
    candidate token and its context (keeping the top-40 candidates that are green under their own seed)."""

    def __init__(self, vocab_size: int, device: torch.device | str, greenlist_ratio: float = 0.25,
                 bias: float = 2.0, hashing_key: int = 15485863, seeding_scheme: str = "lefthash",
                 context_width: int = 1):
        if seeding_scheme not in ("selfhash", "lefthash"):
            raise GenerationError(f"`seeding_scheme` has to be one of ['selfhash', 'lefthash'], but found "
                                  f"{seeding_scheme!r}")
        if not 0.0 < greenlist_ratio < 1.0:
            raise GenerationError(f"`greenlist_ratio` has be in range between 0.0 and 1.0, exclusively, but found "
                                  f"{greenlist_ratio}")
        self.vocab_size = vocab_size
        self.greenlist_size = int(vocab_size * greenlist_ratio)
        self.bias = bias
        self.seeding_scheme = seeding_scheme
        self.hash_key = hashing_key
        self.context_width = context_width
        self.rng = torch.Generator(device=device)
        self.rng.manual_seed(hashing_key)
        self.table_size = _TABLE_SIZE
        self.fixed_table = torch.randperm(self.table_size, generator=self.rng, device=device)
        self._greenlists: OrderedDict[int, torch.Tensor] = OrderedDict()

    # -- seeds and green lists ----------------------------------------------------------------------
    def _seeds(self, contexts: torch.Tensor) -> list[int]:
        """contexts [n, >=1] -> one generator seed per row (4.45's hash, int64 wrap-around included)."""
        contexts = contexts[:, -self.context_width:]
        if self.seeding_scheme == "selfhash":
            table = self.fixed_table.to(contexts.device)
            a = table[contexts % self.table_size] + 1
            b = table[contexts[:, -1:] % self.table_size] + 1
            raw = (self.hash_key * a * b).min(dim=-1).values.tolist()
        else:
            raw = [self.hash_key * last for last in contexts[:, -1].tolist()]
        return [seed % (2**64 - 1) for seed in raw]

    def _greenlist(self, seed: int, device: torch.device) -> torch.Tensor:
        cached = self._greenlists.get(seed)
        if cached is None:
            self.rng.manual_seed(seed)
            cached = torch.randperm(self.vocab_size, device=device, generator=self.rng)[:self.greenlist_size]
            self._greenlists[seed] = cached
            if len(self._greenlists) > 256:
                self._greenlists.popitem(last=False)
        else:
            self._greenlists.move_to_end(seed)
        return cached

    def _get_greenlist_ids(self, input_seq: torch.LongTensor) -> torch.LongTensor:
        """Green ids [greenlist_size] for one context (the last token(s) of `input_seq` [L])."""
        return self._greenlist(self._seeds(input_seq.reshape(1, -1))[0], input_seq.device)

    def _selfhash_greens(self, input_seq: torch.Tensor, order: torch.Tensor) -> list[int]:
        """Of the top candidates `order` [40], those green under their own seed."""
        candidates = order[:_SELFHASH_CANDIDATES]
        contexts = torch.cat([input_seq.expand(len(candidates), -1), candidates[:, None]], dim=-1)
        greens = []
        for seed, token in zip(self._seeds(contexts), candidates.tolist()):
            if bool((self._greenlist(seed, input_seq.device) == token).any()):
                greens.append(token)
        return greens

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if input_ids.shape[-1] < self.context_width:
            logger.warning("`input_ids` should have at least `%d` tokens but has %d. The seeding will be skipped "
                           "for this generation step!", self.context_width, input_ids.shape[-1])
            return scores
        rows, cols = [], []
        if self.seeding_scheme == "selfhash":
            order = scores.sort(dim=-1, descending=True).indices
            for row in range(input_ids.shape[0]):
                greens = self._selfhash_greens(input_ids[row], order[row])
                rows.extend([row] * len(greens))
                cols.append(torch.tensor(greens, dtype=torch.long, device=scores.device))
        else:
            for row, seed in enumerate(self._seeds(input_ids)):
                green = self._greenlist(seed, input_ids.device)
                rows.extend([row] * len(green))
                cols.append(green.to(scores.device))
        bias = torch.zeros_like(scores)
        if rows:
            bias[torch.tensor(rows, device=scores.device), torch.cat(cols)] = self.bias
        return scores + bias


@dataclass
class WatermarkDetectorOutput:
    """Per-row detection results (numpy arrays of shape [batch])."""

    num_tokens_scored: np.ndarray | None = None
    num_green_tokens: np.ndarray | None = None
    green_fraction: np.ndarray | None = None
    z_score: np.ndarray | None = None
    p_value: np.ndarray | None = None
    prediction: np.ndarray | None = None
    confidence: np.ndarray | None = None


class WatermarkDetector:
    """Counts green tokens in generated ids with the settings used to generate them; z-test on the count.

    `ignore_repeated_ngrams=True` scores each distinct n-gram once (transformers 4.45 intends this but
    keys its counter by tensor identity, so it scores every occurrence).
    """

    def __init__(self, model_config: Any, device: str | torch.device,
                 watermarking_config: WatermarkingConfig | dict[str, Any], ignore_repeated_ngrams: bool = False,
                 max_cache_size: int = 128):
        if isinstance(watermarking_config, WatermarkingConfig):
            watermarking_config = watermarking_config.to_dict()
        self.bos_token_id = model_config.bos_token_id
        self.greenlist_ratio = watermarking_config["greenlist_ratio"]
        self.ignore_repeated_ngrams = ignore_repeated_ngrams
        self.processor = WatermarkLogitsProcessor(vocab_size=model_config.vocab_size, device=device,
                                                  **watermarking_config)
        self._verdicts: OrderedDict[tuple[int, ...], bool] = OrderedDict()
        self._max_cache = max_cache_size

    def _is_green(self, ngram: tuple[int, ...], device: torch.device) -> bool:
        if ngram in self._verdicts:
            self._verdicts.move_to_end(ngram)
            return self._verdicts[ngram]
        selfhash = self.processor.seeding_scheme == "selfhash"
        prefix = torch.tensor(ngram if selfhash else ngram[:-1], device=device)
        verdict = bool((self.processor._get_greenlist_ids(prefix) == ngram[-1]).any())
        self._verdicts[ngram] = verdict
        if len(self._verdicts) > self._max_cache:
            self._verdicts.popitem(last=False)
        return verdict

    def _score_ngrams_in_passage(self, input_ids: torch.LongTensor) -> tuple[np.ndarray, np.ndarray]:
        n = self.processor.context_width + 1 - int(self.processor.seeding_scheme == "selfhash")
        scored = np.zeros(input_ids.shape[0])
        green = np.zeros(input_ids.shape[0])
        for row, ids in enumerate(input_ids.tolist()):
            ngrams = [tuple(ids[i:i + n]) for i in range(len(ids) - n + 1)]
            if self.ignore_repeated_ngrams:
                ngrams = list(dict.fromkeys(ngrams))
            scored[row] = len(ngrams)
            green[row] = sum(self._is_green(ngram, input_ids.device) for ngram in ngrams)
        return scored, green

    def _compute_z_score(self, green_token_count: np.ndarray, total_num_tokens: np.ndarray) -> np.ndarray:
        expected = self.greenlist_ratio
        return (green_token_count - expected * total_num_tokens) / np.sqrt(
            total_num_tokens * expected * (1 - expected))

    def _compute_pval(self, x: np.ndarray, loc: float = 0, scale: float = 1) -> np.ndarray:
        """One-sided p-value from an erf-free approximation of the normal CDF (as 4.45)."""
        z = (x - loc) / scale
        return 1 - (0.5 * (1 + np.sign(z) * (1 - np.exp(-2 * z**2 / np.pi))))

    def __call__(self, input_ids: torch.LongTensor, z_threshold: float = 3.0,
                 return_dict: bool = False) -> WatermarkDetectorOutput | np.ndarray:
        """Predictions [batch] (z-score > `z_threshold`), or every statistic with `return_dict=True`."""
        if bool(input_ids[0, 0] == self.bos_token_id):
            input_ids = input_ids[:, 1:]
        if input_ids.shape[-1] - self.processor.context_width < 1:
            raise GenerationError(f"WatermarkDetector: must have at least 1 token to score after the first "
                                  f"min_prefix_len={self.processor.context_width} tokens required by the seeding "
                                  "scheme")
        scored, green = self._score_ngrams_in_passage(input_ids)
        z_score = self._compute_z_score(green, scored)
        prediction = z_score > z_threshold
        if not return_dict:
            return prediction
        p_value = self._compute_pval(z_score)
        return WatermarkDetectorOutput(num_tokens_scored=scored, num_green_tokens=green, green_fraction=green / scored,
                                       z_score=z_score, p_value=p_value, prediction=prediction,
                                       confidence=1 - p_value)
