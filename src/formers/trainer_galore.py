"""GaLore optimizers (arXiv:2403.03507) for the Trainer, from the `galore-torch` package, as 4.45 builds them.

    TrainingArguments(optim="galore_adamw", optim_target_modules=["attn", "mlp"],
                      optim_args="rank=64, update_proj_gap=200, scale=0.25, proj_type=std")

The weights of the linear layers that `optim_target_modules` names get their gradients projected onto a
low-rank subspace (refreshed every `update_proj_gap` steps); every other parameter gets the plain update.
`optim_target_modules` is a regex that must match a module's full name, or a list of names, substrings of
names or regexes, or "all-linear". As in transformers 4.45, only `lr` reaches the GaLore optimizer (its own
betas/eps/weight_decay defaults apply). The `_layerwise` variants step each parameter from a gradient hook
during backward (one optimizer and schedule per parameter, no gradient accumulation, no DDP/FSDP).
"""
from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

from .errors import ConfigError

GALORE_OPTIMIZERS = ("galore_adamw", "galore_adamw_8bit", "galore_adafactor", "galore_adamw_layerwise",
                     "galore_adamw_8bit_layerwise", "galore_adafactor_layerwise")
_DEFAULTS = {"rank": (int, 128), "update_proj_gap": (int, 200), "scale": (float, 0.25), "proj_type": (str, "std")}


def parse_optim_args(text: str | None) -> dict[str, str]:
    """"a=1, b=x" -> {"a": "1", "b": "x"} (TrainingArguments.optim_args)."""
    out = {}
    for item in (text or "").replace(" ", "").split(","):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"TrainingArguments.optim_args={text!r}: expected 'key=value' pairs separated by commas")
        out[key] = value
    return out


def is_target(targets: str | list[str], name: str) -> bool:
    """Whether the module called `name` is one `optim_target_modules` names (4.45's matching rules)."""
    if isinstance(targets, str):
        return re.fullmatch(targets, name) is not None
    return any(t == name or t in name or re.fullmatch(t, name) is not None for t in targets)


def _optimizer_classes():
    try:
        from galore_torch import GaLoreAdafactor, GaLoreAdamW, GaLoreAdamW8bit
    except ImportError as exc:
        raise ConfigError("TrainingArguments.optim='galore_*' needs the galore-torch package: "
                          "pip install galore-torch==1.0") from exc
    return {"galore_adamw": GaLoreAdamW, "galore_adamw_8bit": GaLoreAdamW8bit, "galore_adafactor": GaLoreAdafactor}


def galore_parameter_groups(model: nn.Module, args) -> list[dict[str, Any]]:
    """[{"params": other parameters}, {"params": targeted linear weights, rank, update_proj_gap, scale,
    proj_type}]."""
    targets = args.optim_target_modules
    if targets is None:
        raise ConfigError(f"TrainingArguments.optim={args.optim!r} needs optim_target_modules (module names, a "
                          "regex or 'all-linear')")
    if not isinstance(targets, (str, list)):
        raise ConfigError(f"TrainingArguments.optim_target_modules: expected a regex, a list of names or "
                          f"'all-linear', got {targets!r}")
    all_linear = isinstance(targets, str) and targets.replace("_", "-") == "all-linear"
    chosen = [(name, module.weight) for name, module in model.named_modules()
              if isinstance(module, nn.Linear) and (all_linear or is_target(targets, name))]
    if not chosen:
        raise ConfigError(f"TrainingArguments.optim_target_modules={targets!r}: matches no linear layer of "
                          f"{type(model).__name__}")
    options = parse_optim_args(args.optim_args)
    galore = {}
    for key, (kind, default) in _DEFAULTS.items():
        value = options.pop(key, default)
        try:
            galore[key] = kind(value)
        except ValueError:
            raise ConfigError(f"TrainingArguments.optim_args: {key}={value!r}: expected a {kind.__name__}") from None
    if options:
        raise ConfigError(f"TrainingArguments.optim_args: unknown keys {sorted(options)} for GaLore; expected "
                          f"some of {sorted(_DEFAULTS)}")
    chosen_ids = {id(p) for _, p in chosen}
    others = [p for p in model.parameters() if id(p) not in chosen_ids]
    return [{"params": others}, {"params": [p for _, p in chosen], **galore}]


def create_galore_optimizer(model: nn.Module, args, group=None) -> torch.optim.Optimizer:
    layerwise = args.optim.endswith("_layerwise")
    if group is not None and (layerwise or group.fsdp):
        raise ConfigError(f"TrainingArguments.optim={args.optim!r}: GaLore needs whole weight matrices and one "
                          "optimizer step per update; it runs on one process or under DDP (not FSDP), and its "
                          "layer-wise variants on one process only")
    if layerwise and args.gradient_accumulation_steps != 1:
        raise ConfigError(f"TrainingArguments.optim={args.optim!r} steps inside backward; it needs "
                          f"gradient_accumulation_steps=1, got {args.gradient_accumulation_steps}")
    cls = _optimizer_classes()[args.optim.removesuffix("_layerwise")]
    kwargs: dict[str, Any] = {"lr": args.learning_rate}
    if "adafactor" in args.optim:
        kwargs.update(scale_parameter=False, relative_step=False)
    groups = galore_parameter_groups(model, args)
    if not layerwise:
        return cls(groups, **kwargs)
    per_parameter = {}
    for group_ in groups:
        extra = {k: v for k, v in group_.items() if k != "params"}
        for param in group_["params"]:
            per_parameter[param] = cls([{"params": [param], **extra}], **kwargs)

    def step_parameter(param: torch.Tensor) -> None:
        if param.grad is not None:
            per_parameter[param].step()
            per_parameter[param].zero_grad(set_to_none=True)

    for param in per_parameter:
        if param.requires_grad:
            param.register_post_accumulate_grad_hook(step_parameter)
    return LayerWiseDummyOptimizer(per_parameter, args.learning_rate)


class LayerWiseDummyOptimizer(torch.optim.Optimizer):
    """Stands in for the per-parameter optimizers that step from gradient hooks; its own step does nothing."""

    def __init__(self, optimizer_dict: dict, lr: float):
        self.optimizer_dict = optimizer_dict
        super().__init__([torch.zeros(1, 1)], {"lr": lr})

    def zero_grad(self, set_to_none: bool = True) -> None:
        pass

    def step(self, closure=None) -> None:
        pass


class LayerWiseDummyScheduler(LRScheduler):
    """Stands in for the per-parameter schedules; reports the first parameter's learning rate."""

    def __init__(self, optimizer: LayerWiseDummyOptimizer, schedulers: dict):
        self.schedulers = schedulers
        super().__init__(optimizer)

    def get_lr(self) -> list[float]:
        first = next(iter(self.schedulers.values()), None)
        return first.get_last_lr()[:1] if first is not None else [group["lr"] for group in self.optimizer.param_groups]


def layerwise_scheduler(optimizer: LayerWiseDummyOptimizer, args, num_training_steps: int) -> LayerWiseDummyScheduler:
    """One schedule per parameter's optimizer, stepped from the same gradient hook after its update."""
    from .optimization import get_scheduler

    schedulers = {param: get_scheduler(args.lr_scheduler_type, opt,
                                       num_warmup_steps=args.get_warmup_steps(num_training_steps),
                                       num_training_steps=num_training_steps,
                                       scheduler_specific_kwargs=args.lr_scheduler_kwargs)
                  for param, opt in optimizer.optimizer_dict.items()}
    for param, scheduler in schedulers.items():
        if param.requires_grad:
            param.register_post_accumulate_grad_hook(lambda _p, s=scheduler: s.step())
    return LayerWiseDummyScheduler(optimizer, schedulers)


# --- checkpoints: GaLore keeps a projector object per targeted weight in the optimizer state -------------
def optimizer_state_for_saving(optimizer: torch.optim.Optimizer) -> dict:
    """optimizer.state_dict() with each GaLore projector reduced to its matrix (its settings are its param
    group's), so the checkpoint loads with torch.load(weights_only=True); the live state is untouched."""
    state = optimizer.state_dict()
    plain = {}
    for key, entry in state["state"].items():
        projector = entry.get("projector")
        if projector is not None and not isinstance(projector, dict):
            entry = {**entry, "projector": {"ortho_matrix": projector.ortho_matrix}}
        plain[key] = entry
    return {**state, "state": plain}


def restore_projectors(optimizer: torch.optim.Optimizer) -> None:
    """After load_state_dict: rebuild each GaLore projector from its param group's settings and its matrix."""
    for group in optimizer.param_groups:
        for param in group["params"]:
            saved = optimizer.state.get(param, {}).get("projector")
            if isinstance(saved, dict):
                from galore_torch.galore_projector import GaLoreProjector

                projector = GaLoreProjector(group["rank"], update_proj_gap=group["update_proj_gap"],
                                            scale=group["scale"], proj_type=group["proj_type"])
                projector.ortho_matrix = saved["ortho_matrix"]
                optimizer.state[param]["projector"] = projector
