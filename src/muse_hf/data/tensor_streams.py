"""Stored tensors as a stream: a parquet writer for rows of float32 tensors (and text) and their reader.

:class:`TensorShardWriter` / :func:`write_tensor_shard` store tensors of any shape (e.g. cached latents or unpadded
token states) as raw bytes plus their shape; :func:`load_tensor_stream` streams such shards as a
:class:`TensorRowStream`, an :class:`~muse_hf.data.streams.ImageTextStream` with the same shuffling, per-process
split, workers, skip counting and exact resume.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch

from muse_hf.data.decoding import SKIP_REASONS, SkipSample, extract_text
from muse_hf.data.sources import prepare_stream
from muse_hf.data.streams import ImageTextStream, StreamOptions
from muse_hf.models.image_processing_muse import MuseImageProcessor

__all__ = [
    "SHAPE_SUFFIX",
    "TENSOR_STREAM_KEYWORDS",
    "TensorRowStream",
    "TensorShardWriter",
    "load_tensor_stream",
    "write_tensor_shard",
]

#: Suffix of the column that holds a tensor column's shape in :func:`write_tensor_shard` files.
SHAPE_SUFFIX = "_shape"


class TensorShardWriter:
    """Write rows of float32 tensors (and text) as one parquet file that :func:`load_tensor_stream` reads.

    Each tensor column ``name`` becomes two columns: ``name`` (the raw little-endian float32 bytes) and
    ``name_shape`` (its shape), so tensors of different lengths (e.g. unpadded token states) share a column. Rows are
    written in row groups as they come (:meth:`write`), to a temporary name that :meth:`close` renames to ``path``,
    so an interrupted writer never leaves a half-written shard under ``path``. Use it as a context manager.

    Args:
        path: the ``.parquet`` file to write.
        tensor_columns: the row keys holding tensors; the other keys hold ``str`` / ``int`` values.
        text_columns: the string columns, used for the schema of a shard that receives no row (all its source
            samples were skipped).
    """

    def __init__(
        self, path: str | os.PathLike, tensor_columns: Sequence[str], text_columns: Sequence[str] = ()
    ) -> None:
        self.path = Path(path)
        self.tensor_columns = tuple(tensor_columns)
        self.text_columns = tuple(text_columns)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        self._writer: Any = None
        self.num_rows = 0

    def write(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Append ``rows`` (one row group)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not rows:
            return
        columns: dict[str, Any] = {}
        for key in rows[0]:
            values = [r[key] for r in rows]
            if key in self.tensor_columns:
                arrays = [v.detach().to("cpu", torch.float32).contiguous().numpy() for v in values]
                columns[key] = pa.array([a.astype("<f4", copy=False).tobytes() for a in arrays], pa.binary())
                columns[key + SHAPE_SUFFIX] = pa.array([list(a.shape) for a in arrays], pa.list_(pa.int32()))
            else:
                columns[key] = pa.array(values)
        table = pa.table(columns)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._tmp, table.schema)
        self._writer.write_table(table)
        self.num_rows += len(rows)

    def close(self) -> int:
        """Finish the file and move it to ``path``; returns the number of rows written."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self._writer is None:  # no row: an empty shard with the declared columns
            fields = [
                f
                for c in self.tensor_columns
                for f in (pa.field(c, pa.binary()), pa.field(c + SHAPE_SUFFIX, pa.list_(pa.int32())))
            ]
            fields += [pa.field(c, pa.string()) for c in self.text_columns]
            self._writer = pq.ParquetWriter(self._tmp, pa.schema(fields))
        self._writer.close()
        os.replace(self._tmp, self.path)
        return self.num_rows

    def abort(self) -> None:
        """Drop the temporary file (after an error)."""
        if self._writer is not None:
            self._writer.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> TensorShardWriter:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_tensor_shard(
    path: str | os.PathLike,
    rows: Sequence[Mapping[str, Any]],
    tensor_columns: Sequence[str],
    text_columns: Sequence[str] = (),
) -> int:
    """Write ``rows`` with one :class:`TensorShardWriter`; returns the number of rows written."""
    with TensorShardWriter(path, tensor_columns, text_columns) as writer:
        writer.write(rows)
    return writer.num_rows


class TensorRowStream(ImageTextStream):
    """An :class:`ImageTextStream` over rows of stored tensors (:func:`write_tensor_shard`) instead of images.

    Shuffling, epochs, per-process splitting, DataLoader workers, skip counting and exact resume are the image
    streams' own. A row whose stored bytes do not match its stored shape is skipped and counted as ``bad_tensor_row``;
    an empty text is skipped as ``missing_caption`` / ``missing_instruction``.
    """

    def __init__(
        self,
        hf_dataset: datasets.IterableDataset,
        tensor_roles: Mapping[str, str],
        text_roles: Mapping[str, str],
        shuffle_buffer: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(hf_dataset, MuseImageProcessor(), {}, text_roles, shuffle_buffer=shuffle_buffer, seed=seed)
        self.tensor_roles = dict(tensor_roles)

    def _process(self, ex: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for role, col in self.text_roles.items():
            text = extract_text(ex.get(col))
            if not text:
                raise SkipSample(f"missing_{role}" if f"missing_{role}" in SKIP_REASONS else "missing_caption")
            out[role] = text
        for role, col in self.tensor_roles.items():
            data, shape = ex.get(col), ex.get(col + SHAPE_SUFFIX)
            if data is None or shape is None or len(data) != 4 * int(np.prod(shape, dtype=np.int64)):
                raise SkipSample("bad_tensor_row")
            out[role] = torch.from_numpy(np.frombuffer(data, dtype="<f4").reshape([int(s) for s in shape]).copy())
        return out

    def __repr__(self) -> str:
        return f"TensorRowStream(tensors={self.tensor_roles}, texts={self.text_roles}, num_shards={self.num_shards})"


#: The :class:`~muse_hf.data.streams.StreamOptions` fields a tensor stream uses (the others concern images / sources).
TENSOR_STREAM_KEYWORDS: frozenset[str] = frozenset(
    {"shuffle_buffer", "seed", "process_index", "num_processes", "accelerator"}
)


def load_tensor_stream(
    files: Sequence[str | os.PathLike],
    tensor_columns: Sequence[str],
    text_columns: Sequence[str] = (),
    *,
    split: str = "train",
    options: StreamOptions | None = None,
    **keywords: Any,
) -> TensorRowStream:
    """Stream the rows of :func:`write_tensor_shard` files (e.g. cached latents) like an image stream.

    Args:
        files: the parquet shards, in order (one ``datasets`` shard each: workers and processes split by file).
        tensor_columns: tensor columns to decode (``torch.float32`` tensors of the stored shapes).
        text_columns: text columns to pass through (an empty one skips the row).
        split: the split name given to ``datasets``.
        options: a :class:`~muse_hf.data.streams.StreamOptions`; its ``shuffle_buffer`` / ``seed`` /
            ``process_index`` / ``num_processes`` / ``accelerator`` apply as in
            :func:`~muse_hf.data.streams.load_image_text_stream` (the image and source options must stay at their
            defaults).
        **keywords: those five fields by name (they override ``options``).

    Returns:
        A :class:`TensorRowStream`; batch it with :func:`~muse_hf.data.dataloader.make_dataloader` (equal shapes are
        stacked, unequal ones stay a list of tensors).
    """
    unknown = sorted(set(keywords) - TENSOR_STREAM_KEYWORDS)
    if unknown:
        raise TypeError(f"load_tensor_stream() got unexpected keyword argument(s) {unknown}")
    opts = StreamOptions.resolve(options, keywords)
    defaults = StreamOptions()
    unused = [
        f.name
        for f in fields(StreamOptions)
        if f.name not in TENSOR_STREAM_KEYWORDS and getattr(opts, f.name) != getattr(defaults, f.name)
    ]
    if unused:
        raise ValueError(f"load_tensor_stream reads stored tensors: the stream options {unused} do not apply")
    if not files:
        raise ValueError("load_tensor_stream needs at least one shard file.")
    missing = [str(f) for f in files if not Path(f).is_file()]
    if missing:
        raise ValueError(f"tensor shards not found: {missing}")
    ds = datasets.load_dataset("parquet", data_files={split: [str(f) for f in files]}, split=split, streaming=True)
    columns = [*tensor_columns, *(c + SHAPE_SUFFIX for c in tensor_columns), *text_columns]

    def resolve(features: datasets.Features | None, names: Sequence[str]) -> dict[str, str | None]:
        absent = [c for c in columns if names and c not in names]
        if absent:
            raise ValueError(f"the tensor shards lack columns {absent}; they have {list(names)}")
        return {c: c for c in columns}

    hf, _ = prepare_stream(
        ds, split, None, {}, (), (), opts.process_index, opts.num_processes, opts.accelerator, resolve
    )
    return TensorRowStream(
        hf,
        {c: c for c in tensor_columns},
        {c: c for c in text_columns},
        shuffle_buffer=opts.shuffle_buffer,
        seed=opts.seed,
    )
