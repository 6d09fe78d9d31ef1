"""Batching the streams: :func:`make_dataloader` / :class:`StreamingDataLoader`, with skip accounting and resume.

How the skip counts (:data:`~muse_hf.data.decoding.SKIP_REASONS`) of an :class:`~muse_hf.data.streams.ImageTextStream`
reach the trainer:

* iterating the dataset directly in one process: ``dataset.skipped`` (a ``collections.Counter``) is updated live;
* through :func:`make_dataloader` (any ``num_workers``): each worker attaches to every sample it yields a small
  meta record ``(worker id, datasets state_dict, cumulative skip counts of that worker)``, plus one end-of-stream
  record after its last sample so trailing skips are not lost. The collate function gathers these records, and the
  loader (main process) keeps, per worker, the record of the last *consumed* batch. ``loader.skipped`` (also mirrored
  into ``dataset.skipped``) is the sum over workers plus the total of earlier epochs / the resumed checkpoint, so it
  is exact at the consumption point, independent of prefetching, and identical for 0 or N workers. Under several
  training processes each process counts its own shard; reduce them (e.g. ``accelerator.reduce``) for a global view.

Resume: ``loader.state_dict()`` stores, per worker, where the last batch handed out came from; ``load_state_dict``
makes the next iteration continue exactly after it: no sample of the epoch is repeated or lost and the order is the
one the uninterrupted run would have produced. Without a shuffle buffer the position is the
``datasets.IterableDataset.state_dict()`` (an O(1) jump). With one, it is the number of rows the buffer has emitted
in this pass: resuming re-reads this pass's raw rows up to there (no image decoding) to rebuild the buffer exactly
(``datasets``' own buffer resume loses the buffer and, for parquet streams in datasets 5.2, can repeat rows).
Resuming requires the same ``num_workers``, seed and buffer size.
"""

from __future__ import annotations

import collections
import copy
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from muse_hf.data.streams import END_KEY, META_KEY, ImageTextStream

__all__ = ["StreamingDataLoader", "collate_samples", "make_dataloader"]

logger = logging.getLogger(__name__)


def collate_samples(samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Batch stream samples: tensors are stacked ``(B, ...)`` (a list when their shapes differ, e.g. unpadded token
    states), ints become a long tensor, the rest lists.

    Meta / end-of-stream records of :class:`ImageTextStream` (when batched by :class:`StreamingDataLoader`) are
    collected under ``"_meta"`` and excluded from the batch.
    """
    metas = [s[META_KEY] for s in samples if META_KEY in s]
    real = [s for s in samples if not s.get(END_KEY)]
    batch: dict[str, Any] = {}
    if real:
        for key in real[0]:
            if key == META_KEY:
                continue
            values = [s[key] for s in real]
            first = values[0]
            if isinstance(first, torch.Tensor):
                same = all(v.shape == first.shape for v in values)
                batch[key] = torch.stack(values) if same else values  # (B, ...) or B tensors
            elif isinstance(first, (bool, np.bool_)) or not isinstance(first, (int, np.integer)):
                batch[key] = values
            else:
                batch[key] = torch.as_tensor(values, dtype=torch.long)  # (B,)
    if metas:
        batch[META_KEY] = metas
    return batch


class StreamingDataLoader:
    """A ``torch.utils.data.DataLoader`` over an :class:`ImageTextStream` with skip accounting and exact resume.

    Iterate it like a DataLoader; read ``skipped`` for the counts so far, ``state_dict()`` / ``load_state_dict()``
    to checkpoint and resume (see the module docstring). Each full pass advances ``epoch`` (reshuffling when the
    stream shuffles); iterating again after stopping a pass early continues that pass where it stopped. Already split per process: do not pass it through ``accelerator.prepare``; move batches to
    the device yourself.
    """

    def __init__(
        self,
        dataset: ImageTextStream,
        batch_size: int,
        num_workers: int = 0,
        *,
        drop_last: bool = False,
        pin_memory: bool = False,
        prefetch_factor: int | None = None,
        timeout: float = 0,
        multiprocessing_context: Any = None,
    ) -> None:
        if not isinstance(dataset, ImageTextStream):
            raise ValueError(
                f"make_dataloader needs an ImageTextStream (from load_image_text_stream / load_edit_stream); got "
                f"{type(dataset).__name__}"
            )
        if batch_size < 1 or num_workers < 0:
            raise ValueError(f"need batch_size >= 1 and num_workers >= 0; got {batch_size}, {num_workers}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.drop_last = drop_last
        self._loader_kwargs = {
            "pin_memory": pin_memory,
            "timeout": timeout,
            "multiprocessing_context": multiprocessing_context,
        }
        if num_workers > 0 and prefetch_factor is not None:
            self._loader_kwargs["prefetch_factor"] = prefetch_factor
        self.epoch = 0
        self._base: collections.Counter[str] = collections.Counter(dataset.skipped)
        self._worker_counts: dict[int, dict[str, int]] = {}
        self._worker_states: dict[int, dict] = {}
        self._resume: dict[int, dict] = {}
        self._next_worker = 0  # whose batch comes next (the DataLoader's round robin)
        self._done: set[int] = set()  # workers whose last batch has been handed out this epoch
        self._active: object | None = None
        if num_workers > dataset.num_shards:
            logger.warning(
                "num_workers=%d > dataset shards=%d: %d workers will idle; write more shards.",
                num_workers, dataset.num_shards, num_workers - dataset.num_shards,
            )  # fmt: skip

    @property
    def skipped(self) -> collections.Counter[str]:
        """Skipped samples by reason, up to the last batch handed out (all epochs, all workers, this process)."""
        total = collections.Counter(self._base)
        for counts in self._worker_counts.values():
            total.update(counts)
        return total

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if self._worker_states:  # the previous pass stopped early: continue it (no sample is handed out twice)
            self.load_state_dict(self.state_dict())
        ds = self.dataset
        token = self._active = object()  # a newer pass owns the dataset's flags; an abandoned one must not reset them
        ds.set_epoch(self.epoch)
        ds._resume = dict(self._resume) if self._resume else None
        ds._emit_meta = True
        loader = DataLoader(
            ds,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            collate_fn=collate_samples,
            drop_last=False,  # partial batches are dropped below, after their meta records are read
            **self._loader_kwargs,
        )
        workers = max(1, self.num_workers)
        pending: dict[int, collections.deque] = {w: collections.deque() for w in range(workers)}
        source = iter(loader)
        finished = False
        try:
            # Emit batches in the DataLoader's own order (round robin over the workers, each leaving the cycle
            # after its last batch), restarted at the worker whose turn it was at the checkpoint: a resumed run then
            # hands out exactly the batches the uninterrupted run would have.
            while len(self._done) < workers:
                w = self._next_worker
                if w in self._done:
                    self._next_worker = (w + 1) % workers
                    continue
                while not pending[w]:
                    batch = next(source, None)
                    if batch is None:
                        raise RuntimeError(f"DataLoader worker {w} stopped without its end-of-stream record")
                    metas = batch.pop(META_KEY)
                    pending[metas[0][0]].append((batch, metas))
                batch, metas = pending[w].popleft()
                for wid, state, counts, *_ in metas:
                    if state is not None:
                        self._worker_states[wid] = state
                    self._worker_counts[wid] = counts
                if _is_last(metas):
                    self._done.add(w)
                self._next_worker = (w + 1) % workers
                ds.skipped = self.skipped
                n = _batch_len(batch)
                if n == 0 or (self.drop_last and n < self.batch_size):
                    continue
                yield batch
            finished = True
        finally:
            del source
            if self._active is token:
                ds._emit_meta = False
                ds._resume = None
            if finished:  # epoch boundary: fold worker counts into the base, start the next epoch fresh
                self._base = self.skipped
                self._worker_counts, self._worker_states, self._resume = {}, {}, {}
                self._done, self._next_worker = set(), 0
                self.epoch += 1
                ds.skipped = collections.Counter(self._base)

    def state_dict(self) -> dict[str, Any]:
        """Checkpoint: epoch, per-worker positions as of the last batch handed out, turn order, skip counts."""
        states = dict(self._resume)
        states.update(self._worker_states)
        return {
            "epoch": self.epoch,
            "num_workers": self.num_workers,
            "batch_size": self.batch_size,
            "worker_states": copy.deepcopy(states),
            "next_worker": self._next_worker,
            "done_workers": sorted(self._done),
            "skipped": dict(self.skipped),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume: the next iteration continues right after the last batch of the checkpoint."""
        states = {int(k): v for k, v in dict(state.get("worker_states") or {}).items()}
        workers = max(1, self.num_workers)
        if states and int(state.get("num_workers", self.num_workers)) != self.num_workers:
            raise ValueError(
                f"the checkpoint was taken with num_workers={state.get('num_workers')}, this loader has "
                f"num_workers={self.num_workers}; resume with the same number (each worker resumes its own shards)."
            )
        if any(k >= workers for k in states):
            raise ValueError(f"checkpoint has worker ids {sorted(states)} but this loader has {workers} worker(s)")
        if states and int(state.get("batch_size", self.batch_size)) != self.batch_size:
            raise ValueError(
                f"the checkpoint was taken with batch_size={state.get('batch_size')}, this loader has "
                f"batch_size={self.batch_size}; resume with the same batch size."
            )
        self.epoch = int(state.get("epoch", 0))
        self._resume = copy.deepcopy(states)
        self._worker_states, self._worker_counts = {}, {}
        self._next_worker = int(state.get("next_worker", 0)) % workers
        self._done = {int(w) for w in state.get("done_workers", [])}
        self._base = collections.Counter(state.get("skipped") or {})
        self.dataset.skipped = collections.Counter(self._base)


def _is_last(metas: Sequence[tuple]) -> bool:
    return any(len(m) > 3 and m[3] for m in metas)


def _batch_len(batch: Mapping[str, Any]) -> int:
    for value in batch.values():
        return len(value)
    return 0


def make_dataloader(
    dataset: ImageTextStream,
    batch_size: int,
    num_workers: int = 0,
    *,
    drop_last: bool = False,
    pin_memory: bool = False,
    prefetch_factor: int | None = None,
    timeout: float = 0,
    multiprocessing_context: Any = None,
) -> StreamingDataLoader:
    """Batch an :class:`ImageTextStream` with ``num_workers`` DataLoader workers (each streams its own shards).

    Args:
        dataset: From :func:`load_image_text_stream` / :func:`load_edit_stream`.
        batch_size: Samples per batch.
        num_workers: DataLoader worker processes (at most ``dataset.num_shards`` do work).
        drop_last: Drop partial batches (each worker's last one).
        pin_memory / prefetch_factor / timeout / multiprocessing_context: As ``torch.utils.data.DataLoader``.

    Returns:
        A :class:`StreamingDataLoader`: batches ``{"pixel_values": (B, 3, H, W), "caption": list[str],
        "label": (B,) long, "mask": (B, H, W) long, ...}``, plus ``skipped``, ``state_dict()``,
        ``load_state_dict()``.
    """
    return StreamingDataLoader(
        dataset,
        batch_size,
        num_workers,
        drop_last=drop_last,
        pin_memory=pin_memory,
        prefetch_factor=prefetch_factor,
        timeout=timeout,
        multiprocessing_context=multiprocessing_context,
    )
