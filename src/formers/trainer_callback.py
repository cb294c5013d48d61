"""Trainer callbacks with transformers' names: hooks that watch training and may stop it.

A callback overrides the events it cares about; each receives (args, state, control, **kwargs) and
may set `control.should_training_stop`: as in transformers, the loop finishes that step's logging,
evaluation and scheduled save, runs `on_epoch_end`, and ends (no extra checkpoint).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_EVENTS = ("on_init_end", "on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end", "on_step_begin",
           "on_step_end", "on_evaluate", "on_predict", "on_save", "on_log")


@dataclass
class TrainerControl:
    should_training_stop: bool = False
    should_epoch_stop: bool = False
    should_save: bool = False
    should_evaluate: bool = False
    should_log: bool = False


class TrainerCallback:
    """Base class: every event is a no-op until overridden."""

    def on_init_end(self, args, state, control, **kwargs: Any): ...
    def on_train_begin(self, args, state, control, **kwargs: Any): ...
    def on_train_end(self, args, state, control, **kwargs: Any): ...
    def on_epoch_begin(self, args, state, control, **kwargs: Any): ...
    def on_epoch_end(self, args, state, control, **kwargs: Any): ...
    def on_step_begin(self, args, state, control, **kwargs: Any): ...
    def on_step_end(self, args, state, control, **kwargs: Any): ...
    def on_evaluate(self, args, state, control, **kwargs: Any): ...
    def on_predict(self, args, state, control, **kwargs: Any): ...
    def on_save(self, args, state, control, **kwargs: Any): ...
    def on_log(self, args, state, control, **kwargs: Any): ...


class CallbackHandler:
    """Calls an event on every callback in order; a callback may return a new control object."""

    def __init__(self, callbacks: list[TrainerCallback] | None):
        self.callbacks: list[TrainerCallback] = []
        for callback in callbacks or []:
            self.add_callback(callback)

    def add_callback(self, callback: TrainerCallback | type[TrainerCallback]) -> None:
        self.callbacks.append(callback() if isinstance(callback, type) else callback)

    def call_event(self, event: str, args, state, control: TrainerControl, **kwargs: Any) -> TrainerControl:
        assert event in _EVENTS, event
        for callback in self.callbacks:
            result = getattr(callback, event)(args, state, control, **kwargs)
            if result is not None:
                control = result
        return control
