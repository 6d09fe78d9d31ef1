"""muse_hf.training: the shared Accelerate training loop, its task contract and the tokenizer curriculum.

* :func:`train` / :func:`run_stages` / :func:`main` - the loop (``examples/train.py`` calls ``main``);
* :class:`TrainingTask`, :class:`StepOutput` - what a task (tokenizer now, unified model later) supplies;
* :class:`MuseTrainingArguments`, :class:`TokenizerTrainingArguments`, :func:`load_stage_arguments`,
  :func:`register_task` - typed YAML + CLI arguments;
* :func:`save_checkpoint`, :func:`load_checkpoint`, :func:`latest_checkpoint` - crash-safe checkpoints;
* :class:`TokenizerTask` (:mod:`muse_hf.training.tokenizer`), :class:`UMMTask` / :class:`UMMTrainingArguments`
  (:mod:`muse_hf.training.umm`) - the two curricula.

``run_quickstart`` moved to :mod:`muse_hf.experiments.quickstart` (the old name here is a deprecated alias).

Names are imported lazily so ``import muse_hf.training`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

from muse_hf.compat import moved_attribute

_LAZY: dict[str, str] = {
    "train": "muse_hf.training.loop",
    "run_stages": "muse_hf.training.loop",
    "main": "muse_hf.training.loop",
    "TrainResult": "muse_hf.training.loop",
    "TrainingDivergedError": "muse_hf.training.loop",
    "build_task": "muse_hf.training.loop",
    "TrainingTask": "muse_hf.training.task",
    "StepOutput": "muse_hf.training.task",
    "BatchStream": "muse_hf.training.task",
    "MuseTrainingArguments": "muse_hf.training.arguments",
    "TokenizerTrainingArguments": "muse_hf.training.tokenizer.arguments",
    "load_stage_arguments": "muse_hf.training.arguments",
    "register_task": "muse_hf.training.arguments",
    "save_checkpoint": "muse_hf.training.checkpointing",
    "load_checkpoint": "muse_hf.training.checkpointing",
    "latest_checkpoint": "muse_hf.training.checkpointing",
    "list_checkpoints": "muse_hf.training.checkpointing",
    "EndlessLoader": "muse_hf.training.stream",
    "TokenizerTask": "muse_hf.training.tokenizer.task",
    "UMMTask": "muse_hf.training.umm.task",
    "UMMTrainingArguments": "muse_hf.training.umm.arguments",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    return moved_attribute(__name__, name, {"run_quickstart": "muse_hf.experiments.quickstart:run_quickstart"})


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_LAZY))
