"""What the Trainer shows and records: a tqdm bar (loss, learning rate, tokens/s) and a JSON-lines
log in output_dir, one object per `Trainer.log` call, appended across resumed runs."""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

LOG_FILE_NAME = "trainer_log.jsonl"


class TrainingProgress:
    def __init__(self, output_dir: str | os.PathLike | None, total_steps: int, initial_step: int, initial_tokens: int,
                 disable_bar: bool):
        self.path = Path(output_dir) / LOG_FILE_NAME if output_dir is not None else None  # None: no log file
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._bar = None
        if not disable_bar:
            from tqdm.auto import tqdm
            self._bar = tqdm(total=total_steps, initial=initial_step, dynamic_ncols=True, desc="train")
        self._tokens_at_last = initial_tokens
        self._since = time.perf_counter()

    def write(self, record: dict[str, Any]) -> None:
        """Append one record (non-finite floats become null, so every line is valid JSON)."""
        if self.path is None:
            return
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(clean) + "\n")

    def tokens_per_second(self, tokens_seen: int) -> float:
        """Throughput since the previous call (the previous logging step); `tokens_seen` is the running total."""
        now = time.perf_counter()
        rate = (tokens_seen - self._tokens_at_last) / max(now - self._since, 1e-9)
        self._tokens_at_last, self._since = tokens_seen, now
        return rate

    def step(self) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def show(self, loss: float, learning_rate: float, tokens_per_second: float) -> None:
        if self._bar is not None:
            self._bar.set_postfix(loss=f"{loss:.4f}", lr=f"{learning_rate:.2e}", tok_s=f"{tokens_per_second:.0f}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
