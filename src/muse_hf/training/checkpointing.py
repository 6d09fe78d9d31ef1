"""Crash-safe training checkpoints on top of ``accelerator.save_state`` / ``load_state``.

A checkpoint is written into ``<output_dir>/.tmp-checkpoint-<step>``; only when every process has finished
writing does the main process add a ``COMPLETE`` marker and atomically rename the folder to
``checkpoint-<step>``. A run killed mid-save therefore leaves at most a ``.tmp-*`` folder (removed on the
next save) and ``--resume_from_checkpoint latest`` only ever sees complete checkpoints. Rotation
(``checkpoints_total_limit``) deletes the oldest complete checkpoints only after the new one is complete.

Besides accelerate's own files (model/optimizer/scheduler/RNG states), a checkpoint holds:
``training_state.json`` (step, counters; main process), ``process_state_<rank>.pt`` (per-process state such
as the data stream position, loaded with ``weights_only=True``) and tensor bundles
(e.g. EMA weights), stored as ``extra_<name>.safetensors``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from muse_hf.validation import find_corrupt_safetensors

__all__ = [
    "CHECKPOINT_PREFIX",
    "COMPLETE_MARKER",
    "CheckpointError",
    "LoadedCheckpoint",
    "checkpoint_step",
    "list_checkpoints",
    "latest_checkpoint",
    "save_checkpoint",
    "load_checkpoint",
]

logger = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "checkpoint-"
TMP_PREFIX = ".tmp-checkpoint-"
COMPLETE_MARKER = "COMPLETE"
TRAINING_STATE = "training_state.json"
EXTRA_PREFIX = "extra_"  # extra tensor bundles: extra_<name>.safetensors (accelerate owns model*.safetensors)
# Test hook: "<step>:<seconds>" makes save_checkpoint sleep after accelerate wrote its files into the
# temporary folder (i.e. mid-write), printing a line to stderr first, so a test can SIGKILL it there.
DEBUG_PAUSE_ENV = "MUSE_HF_DEBUG_SAVE_PAUSE"
_STEP_RE = re.compile(rf"^{re.escape(CHECKPOINT_PREFIX)}(\d+)$")


def checkpoint_step(path: str | os.PathLike) -> int:
    """The step number of a ``checkpoint-<step>`` folder.

    Raises:
        ValueError: if the name does not follow the pattern.
    """
    match = _STEP_RE.match(Path(path).name)
    if not match:
        raise ValueError(f"{str(path)!r} is not a '{CHECKPOINT_PREFIX}<step>' folder.")
    return int(match.group(1))


def list_checkpoints(output_dir: str | os.PathLike, complete_only: bool = True) -> list[Path]:
    """Checkpoint folders under ``output_dir`` sorted by step (only complete ones by default)."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and _STEP_RE.match(p.name)]
    if complete_only:
        found = [p for p in found if (p / COMPLETE_MARKER).is_file()]
    return sorted(found, key=checkpoint_step)


def latest_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    """The complete checkpoint with the highest step, or None."""
    found = list_checkpoints(output_dir)
    return found[-1] if found else None


def _debug_pause(step: int) -> None:
    spec = os.environ.get(DEBUG_PAUSE_ENV)
    if not spec:
        return
    at, _, seconds = spec.partition(":")
    if int(at) == step:
        print(f"[muse_hf] debug pause inside save_checkpoint at step {step}", file=sys.stderr, flush=True)
        time.sleep(float(seconds or 60))


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_checkpoint(
    accelerator: Any,
    output_dir: str | os.PathLike,
    step: int,
    training_state: dict[str, Any],
    process_state: dict[str, Any] | None = None,
    tensors: dict[str, dict[str, torch.Tensor]] | None = None,
    total_limit: int | None = None,
) -> Path:
    """Write a complete checkpoint for ``step`` atomically; call on every process.

    Args:
        accelerator: The run's ``accelerate.Accelerator`` (its prepared objects are saved by ``save_state``).
        output_dir: The run's output dir; the checkpoint lands in ``output_dir/checkpoint-<step>``.
        step: Optimizer step just completed.
        training_state: JSON-serialisable run state (written by the main process).
        process_state: This process's own state (e.g. data stream position); plain containers of tensors,
            numbers and strings (loadable with ``torch.load(weights_only=True)``).
        tensors: Named tensor bundles written as ``extra_<name>.safetensors`` by the main process (e.g. EMA).
        total_limit: Keep at most this many complete checkpoints (oldest deleted after the new one is complete).

    Returns:
        The final checkpoint folder.
    """
    root = Path(output_dir)
    final = root / f"{CHECKPOINT_PREFIX}{step}"
    tmp = root / f"{TMP_PREFIX}{step}"
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        for stale in root.glob(f"{TMP_PREFIX}*"):  # leftovers of a run killed mid-save
            shutil.rmtree(stale, ignore_errors=True)
        tmp.mkdir()
    accelerator.wait_for_everyone()

    accelerator.save_state(str(tmp))
    if process_state is not None:
        torch.save(process_state, tmp / f"process_state_{accelerator.process_index}.pt")
    if accelerator.is_main_process:
        for name, bundle in (tensors or {}).items():
            save_file(
                {k: v.detach().contiguous().cpu() for k, v in bundle.items()},
                str(tmp / f"{EXTRA_PREFIX}{name}.safetensors"),
            )
        state = {**training_state, "step": step, "num_processes": accelerator.num_processes}
        (tmp / TRAINING_STATE).write_text(json.dumps(state, indent=2, sort_keys=True))
    _debug_pause(step)
    accelerator.wait_for_everyone()

    if accelerator.is_main_process:
        marker = tmp / COMPLETE_MARKER
        with open(marker, "w") as fh:
            fh.write(json.dumps({"step": step, "time": time.time()}))
            fh.flush()
            os.fsync(fh.fileno())
        _fsync_dir(tmp)
        if final.exists():  # e.g. re-saving a step after resuming from an earlier checkpoint
            old = root / f".old-{final.name}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        _fsync_dir(root)
        if total_limit is not None:
            complete = list_checkpoints(root)
            for old_ckpt in complete[: max(0, len(complete) - total_limit)]:
                logger.info("Removing old checkpoint %s (checkpoints_total_limit=%d)", old_ckpt, total_limit)
                shutil.rmtree(old_ckpt, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


class CheckpointError(ValueError):
    """A checkpoint cannot be restored; the message names it (and the broken file) and how to resume instead."""


def _unrestorable(ckpt: Path, what: str) -> CheckpointError:
    step = checkpoint_step(ckpt) if _STEP_RE.match(ckpt.name) else None
    older = [p.name for p in list_checkpoints(ckpt.parent) if p != ckpt and (step is None or checkpoint_step(p) < step)]
    aside = ckpt.parent / f"damaged-{ckpt.name}"
    return CheckpointError(
        f"Checkpoint {ckpt} is marked complete but cannot be restored: {what}. If a file in it was damaged after it "
        f"was written (disk, copy), resume from the one before it: `mv {ckpt} {aside}` and rerun with "
        "--resume_from_checkpoint latest, or pass --resume_from_checkpoint <an older checkpoint-N folder> "
        f"(complete ones here: {older or 'none'}; see docs/recovery.md). If the model or optimizer set-up changed "
        "since it was written, resume with the arguments it was written with."
    )


class LoadedCheckpoint(dict):
    """What :func:`load_checkpoint` returns: ``training_state``, ``process_state``, ``tensors``, ``path``."""


def load_checkpoint(accelerator: Any, path: str | os.PathLike) -> LoadedCheckpoint:
    """Restore accelerate's state from a complete checkpoint and return the extra state saved with it.

    Args:
        accelerator: The run's accelerator, with the same objects prepared as when saving.
        path: A ``checkpoint-<step>`` folder.

    Returns:
        ``LoadedCheckpoint`` with ``training_state`` (dict), ``process_state`` (dict or None when this
        process has none, e.g. the number of processes changed), ``tensors`` ({name: {key: tensor}}),
        ``path``.

    Raises:
        ValueError: if the folder is not a complete checkpoint.
        CheckpointError: a complete checkpoint cannot be restored (a damaged file: named, with how to resume from
            an earlier checkpoint instead).
    """
    ckpt = Path(path)
    if not (ckpt / COMPLETE_MARKER).is_file():
        raise ValueError(
            f"{str(ckpt)!r} is not a complete checkpoint (no {COMPLETE_MARKER} marker: it was interrupted while "
            "being written). Use --resume_from_checkpoint latest to pick the newest complete one."
        )
    damaged = find_corrupt_safetensors(ckpt)  # every rank checks the same files, so all ranks stop together
    if damaged is not None:
        raise _unrestorable(ckpt, f"{damaged[0].name} is not a complete safetensors file ({damaged[1]})")
    try:
        accelerator.load_state(str(ckpt))
        training_state = json.loads((ckpt / TRAINING_STATE).read_text())
    except Exception as err:  # noqa: BLE001 - torch.load / pickle / JSON errors of a damaged file, named below
        raise _unrestorable(ckpt, f"{type(err).__name__}: {err}") from err
    proc_file = ckpt / f"process_state_{accelerator.process_index}.pt"
    process_state = None
    if proc_file.is_file() and training_state.get("num_processes") == accelerator.num_processes:
        process_state = torch.load(proc_file, map_location="cpu", weights_only=True)
    else:
        logger.warning(
            "Checkpoint %s was written by %s processes, this run has %d: per-process state (the data stream "
            "position) is not restored and the stream restarts from its beginning (samples may repeat).",
            ckpt,
            training_state.get("num_processes"),
            accelerator.num_processes,
        )
    tensors = {
        p.stem[len(EXTRA_PREFIX) :]: load_file(str(p)) for p in sorted(ckpt.glob(f"{EXTRA_PREFIX}*.safetensors"))
    }
    return LoadedCheckpoint(training_state=training_state, process_state=process_state, tensors=tensors, path=ckpt)
