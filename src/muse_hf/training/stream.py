"""The loop's endless, resumable batch stream on top of ``muse_hf.data``'s ``StreamingDataLoader``.

``StreamingDataLoader`` does one epoch per iteration, counts skipped samples and checkpoints its exact
position (per worker); this wrapper only loops it forever so the trainer can draw ``next(batch)`` across
epoch boundaries, and exposes the :class:`~muse_hf.training.task.BatchStream` protocol.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

__all__ = ["EndlessLoader"]


class EndlessLoader:
    """Cycle a resumable, epoch-counting loader (``muse_hf.data.StreamingDataLoader``) forever.

    Args:
        loader: Has ``__iter__`` (one epoch), ``state_dict()``, ``load_state_dict()`` and ``skipped`` (a
            ``Counter`` of skipped samples by reason).

    Raises:
        ValueError: (while iterating) when two passes in a row yield no batch - the data (this process's
            shard) is smaller than one batch.
    """

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def __iter__(self) -> Iterator[dict[str, Any]]:
        empty_passes = 0
        while True:
            got = False
            for batch in self.loader:
                got = True
                yield batch
            # A pass resumed exactly at an epoch's end is legitimately empty; two in a row are not.
            empty_passes = 0 if got else empty_passes + 1
            if empty_passes >= 2:
                raise ValueError(
                    f"The training data yielded no full batch of {getattr(self.loader, 'batch_size', '?')} in an "
                    "epoch: the dataset (this process's shard of it) is smaller than one batch. Lower "
                    "train_batch_size or add data."
                )

    def state_dict(self) -> dict[str, Any]:
        """The loader's position (saved with each checkpoint, per process)."""
        return self.loader.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume right after the last batch of the checkpoint."""
        self.loader.load_state_dict(state)

    @property
    def num_skipped(self) -> int:
        """Samples skipped so far (undecodable, empty caption, too large, ...), this process."""
        return int(sum(self.loader.skipped.values()))
