"""An endless, resumable batch stream over a (streaming) ``torch.utils.data.IterableDataset``.

Resuming must not repeat the samples already seen in the current epoch. Two ways, chosen by ``mode``:

* ``"state"``: the dataset's own ``state_dict()`` (``datasets`` >= 3 streaming datasets and our wrappers
  have one) is saved at the checkpoint and loaded on resume, so nothing is re-read. Needs
  ``num_workers=0`` (with workers the state lives in the worker processes). ``datasets`` documents that a
  shuffle buffer's content is lost on resume, so this is exact only without one.
* ``"skip"``: the number of batches consumed in the current epoch is saved and, on resume, the same
  (deterministically shuffled) epoch is replayed with that many batches skipped. Always exact, at the cost
  of re-reading the skipped samples.

``"auto"`` picks ``state`` when the dataset supports it and ``num_workers == 0``, else ``skip``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from torch.utils.data import DataLoader, IterableDataset

__all__ = ["ResumableBatches"]


class ResumableBatches:
    """Cycle a ``DataLoader`` over ``dataset`` forever, epoch after epoch, with a resumable position.

    Args:
        dataset: An iterable dataset; ``set_epoch(epoch)`` is called on it before each epoch when it has one
            (reshuffling per epoch); ``num_skipped`` (an int attribute/property), when present, is reported as
            the count of undecodable samples it dropped.
        batch_size: Samples per batch (the last partial batch of an epoch is dropped).
        collate_fn: Batch collation (default: torch's).
        num_workers: DataLoader workers.
        mode: ``"auto"``, ``"state"`` or ``"skip"`` (see module docstring).
        pin_memory: Forwarded to the DataLoader.

    Raises:
        ValueError: for an unknown mode, ``state`` without dataset support, or a dataset that yields no
            full batch in an epoch.
    """

    def __init__(
        self,
        dataset: IterableDataset,
        batch_size: int,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        num_workers: int = 0,
        mode: str = "auto",
        pin_memory: bool = False,
    ) -> None:
        if mode not in ("auto", "state", "skip"):
            raise ValueError(f"mode must be 'auto', 'state' or 'skip', got {mode!r}.")
        has_state = callable(getattr(dataset, "state_dict", None)) and callable(getattr(dataset, "load_state_dict", None))
        if mode == "state" and not has_state:
            raise ValueError(f"mode='state' needs a dataset with state_dict/load_state_dict; {type(dataset).__name__} has none.")
        if mode == "state" and num_workers > 0:
            raise ValueError("mode='state' needs num_workers=0 (worker processes hold the dataset state); use 'skip'.")
        if mode == "auto":
            mode = "state" if has_state and num_workers == 0 else "skip"
        self.dataset = dataset
        self.batch_size = batch_size
        self.collate_fn = collate_fn
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.mode = mode
        self.epoch = 0
        self.batches_in_epoch = 0
        self._skip_on_next_iter = 0

    @property
    def num_skipped(self) -> int:
        """Samples the dataset dropped as undecodable/invalid (0 when it does not count them)."""
        return int(getattr(self.dataset, "num_skipped", 0) or 0)

    def _loader(self) -> DataLoader:
        return DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            collate_fn=self.collate_fn,
            num_workers=self.num_workers,
            drop_last=True,
            pin_memory=self.pin_memory,
            persistent_workers=False,
        )

    def __iter__(self) -> Iterator[Any]:
        while True:
            if hasattr(self.dataset, "set_epoch"):
                self.dataset.set_epoch(self.epoch)
            skip, self._skip_on_next_iter = self._skip_on_next_iter, 0
            yielded = False
            for batch in self._loader():
                if skip:
                    skip -= 1
                    continue
                yielded = True
                self.batches_in_epoch += 1
                yield batch
            if not yielded and self.batches_in_epoch == 0:
                raise ValueError(
                    f"The training data yielded no full batch of {self.batch_size} in epoch {self.epoch}: the dataset "
                    "(this process's shard of it) is smaller than one batch. Lower train_batch_size or add data."
                )
            self.epoch += 1
            self.batches_in_epoch = 0

    def state_dict(self) -> dict[str, Any]:
        """Position in the stream (plain containers; saved with the checkpoint)."""
        state: dict[str, Any] = {"mode": self.mode, "epoch": self.epoch, "batches_in_epoch": self.batches_in_epoch}
        if self.mode == "state":
            state["dataset"] = self.dataset.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume at ``state`` (call before iterating)."""
        self.epoch = int(state["epoch"])
        self.batches_in_epoch = int(state["batches_in_epoch"])
        if self.mode == "state" and state.get("mode") == "state":
            self.dataset.load_state_dict(state["dataset"])
        else:
            self._skip_on_next_iter = self.batches_in_epoch
