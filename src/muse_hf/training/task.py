"""The contract between the shared Accelerate loop (:mod:`muse_hf.training.loop`) and what it trains.

A :class:`TrainingTask` supplies the modules, their parameter groups, the data stream, the per-step losses
and the final ``save_pretrained``. The loop supplies everything else: Accelerate set-up, optimisers and
schedules, gradient accumulation and clipping, non-finite skipping, EMA, checkpoints/resume, logging,
model card, Hub push. The tokenizer curriculum (:class:`~muse_hf.training.tokenizer.task.TokenizerTask`)
is one task; the unified-model stages are another, registered with
:func:`muse_hf.training.arguments.register_task`.

Contract for ``training_step``: ``StepOutput.losses[name]`` may only produce gradients in
``modules[name]`` (e.g. a generator's adversarial term must not write gradients into the
discriminator); every module in ``losses`` gets its own backward, clip and optimizer step.
"""

from __future__ import annotations

import abc
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch
from torch import nn

if TYPE_CHECKING:
    from accelerate import Accelerator

    from muse_hf.training.arguments import MuseTrainingArguments

__all__ = ["StepOutput", "BatchStream", "TrainingTask"]

logger = logging.getLogger(__name__)


@dataclass
class StepOutput:
    """What one ``training_step`` returns.

    Attributes:
        losses: ``{module name: scalar loss}`` to back-propagate, one per optimised module this step
            (a module missing here is not stepped, e.g. the discriminator before the GAN starts).
        logs: Detached scalars to log, e.g. ``{"loss/topology": ..., "loss/semantic": ...}``.
        num_samples: Samples in this (local) micro-batch.
    """

    losses: dict[str, torch.Tensor]
    logs: dict[str, torch.Tensor | float] = field(default_factory=dict)
    num_samples: int = 0


@runtime_checkable
class BatchStream(Protocol):
    """An endless, resumable stream of training batches for this process."""

    def __iter__(self) -> Iterator[dict[str, Any]]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    @property
    def num_skipped(self) -> int: ...


class TrainingTask(abc.ABC):
    """Supplies model, parameters, data and losses to :func:`muse_hf.training.loop.train`.

    Args:
        args: The stage's arguments (a task-specific subclass of ``MuseTrainingArguments``).
    """

    def __init__(self, args: MuseTrainingArguments) -> None:
        self.args = args

    @abc.abstractmethod
    def build(self, accelerator: Accelerator) -> None:
        """Build (or load ``args.init_from``) the modules, freeze what this stage does not train, and build
        the non-trained helpers (teachers, text embedders) in eval mode on ``accelerator.device``."""

    @abc.abstractmethod
    def modules(self) -> dict[str, nn.Module]:
        """Trained modules by name, unprepared; the first one is the main model (EMA, saving)."""

    @abc.abstractmethod
    def param_groups(self, name: str, module: nn.Module) -> list[dict[str, Any]]:
        """Optimizer groups for ``modules()[name]``: ``[{"name", "params", "lr_scale"[, "weight_decay"]}]``.
        Only parameters with ``requires_grad`` are optimised."""

    @abc.abstractmethod
    def train_stream(self, accelerator: Accelerator) -> BatchStream:
        """This process's endless, resumable batch stream."""

    @abc.abstractmethod
    def training_step(self, modules: dict[str, nn.Module], batch: dict[str, Any], step: int) -> StepOutput:
        """Compute the losses of one micro-batch with the prepared ``modules`` (call them, not the
        unprepared ones, so DDP synchronises gradients)."""

    @abc.abstractmethod
    def save_pretrained(
        self, accelerator: Accelerator, modules: dict[str, nn.Module], output_dir: str | os.PathLike
    ) -> None:
        """Write the final ``save_pretrained`` folder (call on every process; gather state under FSDP)."""

    def ema_module(self) -> nn.Module | None:
        """The module whose weights EMA tracks (default: the main module)."""
        return next(iter(self.modules().values()))

    def grad_norm_groups(self) -> dict[str, list[nn.Parameter]]:
        """Named parameter groups whose gradient norms are logged (default: each module's children)."""
        groups: dict[str, list[nn.Parameter]] = {}
        for mod_name, module in self.modules().items():
            for child_name, child in module.named_children():
                params = [p for p in child.parameters() if p.requires_grad]
                if params:
                    groups[f"{mod_name}.{child_name}"] = params
        return groups

    def evaluate(self, output_dir: str | os.PathLike) -> dict[str, float]:
        """Metrics of the saved model (main process; default: none)."""
        return {}

    def card_settings(self, summary: dict[str, Any]) -> dict[str, Any]:
        """The run's settings for a model card: the stage's arguments (Hub credentials left out, unset ones
        dropped) and the training summary without its metrics."""
        hidden = ("push_to_hub", "hub_model_id", "hub_private")
        return {
            **{k: v for k, v in self.args.to_dict().items() if v is not None and k not in hidden},
            **{k: v for k, v in summary.items() if k != "metrics"},
        }

    def write_model_card(
        self, output_dir: str | os.PathLike, metrics: dict[str, float], summary: dict[str, Any]
    ) -> None:
        """Write ``README.md`` into the saved folder (default: none, logged)."""
        logger.info("Task %s writes no model card for %s.", type(self).__name__, output_dir)
