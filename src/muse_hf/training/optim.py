"""Optimiser, learning-rate schedule, gradient-norm and EMA helpers of the shared training loop."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

__all__ = [
    "SCHEDULER_NAMES",
    "build_optimizer",
    "grouped_parameters",
    "build_lr_scheduler",
    "group_grad_norms",
    "build_ema",
    "ema_tensors",
    "load_ema_tensors",
]


def _no_decay_by_shape(name: str, param: nn.Parameter) -> bool:
    return param.ndim < 2  # biases, norms, scales


def grouped_parameters(
    named_parameters: Iterable[tuple[str, nn.Parameter]],
    part_of: Callable[[str], str],
    lr_scales: Mapping[str, float] | None = None,
    no_decay: Callable[[str, nn.Parameter], bool] = _no_decay_by_shape,
) -> list[dict[str, Any]]:
    """Optimizer groups of a task (:meth:`~muse_hf.training.task.TrainingTask.param_groups`): one per part of the
    model, split into a decayed group and a ``.no_decay`` one (``weight_decay`` 0), in the parameters' order.

    Args:
        named_parameters: ``module.named_parameters()``.
        part_of: parameter name -> the part it belongs to (the group name).
        lr_scales: part -> learning-rate multiplier (default 1).
        no_decay: ``(name, parameter) -> True`` for parameters without weight decay (default: ``ndim < 2``).

    Returns:
        ``[{"name", "params", "lr_scale"[, "weight_decay"]}]`` as :func:`build_optimizer` takes them.
    """
    groups: dict[str, dict[str, Any]] = {}
    for name, param in named_parameters:
        part = part_of(name)
        exempt = no_decay(name, param)
        key = f"{part}{'.no_decay' if exempt else ''}"
        group = groups.setdefault(key, {"name": key, "params": [], "lr_scale": (lr_scales or {}).get(part, 1.0)})
        if exempt:
            group["weight_decay"] = 0.0
        group["params"].append(param)
    return list(groups.values())


def _transformers_scheduler_names() -> set[str]:
    from transformers.trainer_utils import SchedulerType

    return {s.value for s in SchedulerType} - {"reduce_lr_on_plateau", "greedy"}


SCHEDULER_NAMES: frozenset[str] = frozenset(_transformers_scheduler_names() | {"piecewise_constant"})


def build_optimizer(
    param_groups: Sequence[dict[str, Any]],
    learning_rate: float,
    betas: tuple[float, float],
    eps: float,
    weight_decay: float,
) -> torch.optim.AdamW:
    """AdamW over named parameter groups with per-group learning rates.

    Args:
        param_groups: ``[{"name": str, "params": [Parameter], "lr_scale": float (default 1),
            "weight_decay": float (optional)}]``. Parameters with ``requires_grad=False`` are dropped;
            empty groups are dropped.
        learning_rate: Peak learning rate; each group gets ``learning_rate * lr_scale``.
        betas: AdamW betas.
        eps: AdamW epsilon.
        weight_decay: Default weight decay for groups without their own.

    Returns:
        ``torch.optim.AdamW`` whose groups keep their ``name``.

    Raises:
        ValueError: when no group has a trainable parameter, or a parameter is in two groups.
    """
    groups: list[dict[str, Any]] = []
    seen: set[int] = set()
    for group in param_groups:
        params = [p for p in group["params"] if p.requires_grad]
        for p in params:
            if id(p) in seen:
                raise ValueError(f"A parameter appears in two optimizer groups (second: {group.get('name')!r}).")
            seen.add(id(p))
        if not params:
            continue
        groups.append(
            {
                "params": params,
                "name": group.get("name", f"group{len(groups)}"),
                "lr": learning_rate * float(group.get("lr_scale", 1.0)),
                "weight_decay": float(group.get("weight_decay", weight_decay)),
            }
        )
    if not groups:
        raise ValueError("No trainable parameters: every parameter group is empty or frozen for this stage.")
    return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, eps=eps, weight_decay=weight_decay)


def build_lr_scheduler(
    name: str,
    optimizer: torch.optim.Optimizer,
    num_warmup_steps: int,
    num_training_steps: int,
    min_lr_ratio: float = 0.0,
    step_rules: str | None = None,
) -> torch.optim.lr_scheduler.LRScheduler:
    """Warmup + decay schedule from transformers (or diffusers' ``piecewise_constant`` step decay).

    Step counts are in scheduler steps (the loop multiplies by the number of processes, as accelerate steps
    a prepared scheduler once per process).

    Args:
        name: A transformers ``SchedulerType`` value or ``piecewise_constant``.
        optimizer: The optimizer (per-group learning rates are each scaled by the schedule).
        num_warmup_steps: Linear warmup length.
        num_training_steps: Total length.
        min_lr_ratio: Floor for ``cosine_with_min_lr`` / ``cosine_warmup_with_min_lr``.
        step_rules: diffusers step rules for ``piecewise_constant``.

    Raises:
        ValueError: for an unknown name.
    """
    if name not in SCHEDULER_NAMES:
        raise ValueError(f"Unknown lr scheduler {name!r}; choose one of {sorted(SCHEDULER_NAMES)}.")
    if name == "piecewise_constant":
        from diffusers.optimization import get_scheduler as diffusers_get_scheduler

        return diffusers_get_scheduler(name, optimizer, step_rules=step_rules)
    from transformers import get_scheduler

    kwargs = {"min_lr_rate": min_lr_ratio} if "min_lr" in name else None
    return get_scheduler(
        name,
        optimizer,
        num_warmup_steps=num_warmup_steps,
        num_training_steps=num_training_steps,
        scheduler_specific_kwargs=kwargs,
    )


@torch.no_grad()
def group_grad_norms(groups: dict[str, Iterable[nn.Parameter]]) -> dict[str, torch.Tensor]:
    """L2 norm of the current gradients of each named parameter group (parameters without grad skipped).

    Returns:
        ``{group: scalar tensor}``; a group whose parameters all lack gradients is omitted.
    """
    norms: dict[str, torch.Tensor] = {}
    for name, params in groups.items():
        grads = [p.grad.detach().float() for p in params if p.grad is not None]
        if grads:
            norms[name] = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    return norms


def build_ema(
    model: nn.Module,
    decay: float,
    update_after_step: int = 0,
    use_warmup: bool = False,
    power: float = 2.0 / 3.0,
) -> Any:
    """diffusers ``EMAModel`` over all of ``model``'s parameters (frozen ones stay equal to the model's)."""
    from diffusers.training_utils import EMAModel

    config = getattr(model, "config", None)
    return EMAModel(
        model.parameters(),
        decay=decay,
        update_after_step=update_after_step,
        use_ema_warmup=use_warmup,
        power=power,
        model_cls=type(model) if config is not None else None,
        model_config=config,
    )


_EMA_SCALARS = (
    "decay",
    "min_decay",
    "optimization_step",
    "update_after_step",
    "use_ema_warmup",
    "inv_gamma",
    "power",
)


def ema_tensors(ema: Any, model: nn.Module) -> dict[str, torch.Tensor]:
    """EMA shadow weights keyed by ``model``'s parameter names, plus its counters under ``__ema__.<field>``."""
    names = [n for n, _ in model.named_parameters()]
    out = {name: t.detach() for name, t in zip(names, ema.shadow_params, strict=True)}
    for key in _EMA_SCALARS:
        out[f"__ema__.{key}"] = torch.tensor(float(getattr(ema, key)), dtype=torch.float64)
    return out


def load_ema_tensors(ema: Any, model: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Inverse of :func:`ema_tensors` (shadow weights copied in place, counters restored).

    Raises:
        ValueError: when the saved names do not match the model's parameters.
    """
    names = [n for n, _ in model.named_parameters()]
    missing = [n for n in names if n not in tensors]
    if missing:
        raise ValueError(f"EMA state does not match the model: {len(missing)} parameters missing, e.g. {missing[:3]}.")
    with torch.no_grad():
        for name, shadow in zip(names, ema.shadow_params, strict=True):
            shadow.copy_(tensors[name].to(shadow.device, shadow.dtype))
    for key in _EMA_SCALARS:
        value = tensors[f"__ema__.{key}"].item()
        current = getattr(ema, key)
        setattr(ema, key, type(current)(value) if current is not None else value)
