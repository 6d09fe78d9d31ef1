"""The image-text and image-editing streams: :class:`ImageTextStream` and its loaders, with :class:`StreamOptions`.

:func:`load_image_text_stream` / :func:`load_edit_stream` open a source (:mod:`muse_hf.data.sources`: local shards,
webdataset tars, ``datasets`` objects or Hub ids) and return an :class:`ImageTextStream`, a torch ``IterableDataset``
that decodes every sample itself, guarded (:mod:`muse_hf.data.decoding`), and counts every skip by reason. How a
stream is read, shuffled, split across processes and guarded is one :class:`StreamOptions`, shared by both loaders and
by :func:`muse_hf.data.tensor_streams.load_tensor_stream`; the options' names also work as keyword arguments.

Shuffling: the shard order is permuted per epoch and seed (through ``datasets``' epoch-based shard shuffling) and
examples are mixed by a seeded shuffle buffer of ``shuffle_buffer`` raw (still encoded) rows kept by this class, per
worker. Batching, skip accounting across workers and exact resume: :mod:`muse_hf.data.dataloader`.
"""

from __future__ import annotations

import collections
import copy
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import datasets
import numpy as np
import PIL.Image
import torch
from torch.utils.data import get_worker_info

from muse_hf.data.decoding import DEFAULT_MAX_PIXELS, SKIP_REASONS, SkipSample, decode_image, extract_text, mask_array
from muse_hf.data.sources import (
    CAPTION_COLUMNS,
    EDIT_SOURCE_COLUMNS,
    EDIT_TARGET_COLUMNS,
    EDIT_TEXT_COLUMNS,
    IMAGE_COLUMNS,
    LABEL_COLUMNS,
    MASK_COLUMNS,
    prepare_stream,
    resolve_column,
)
from muse_hf.models.image_processing_muse import MuseImageProcessor

__all__ = [
    "END_KEY",
    "META_KEY",
    "STREAM_KEYWORDS",
    "ImageTextStream",
    "StreamOptions",
    "load_edit_stream",
    "load_image_text_stream",
]

#: Key of the meta record a stream attaches to each sample when batched by the ``StreamingDataLoader``.
META_KEY = "_meta"
#: Key that marks a stream's end-of-stream record (no sample, only the meta record).
END_KEY = "_end"


@dataclass(frozen=True)
class StreamOptions:
    """How a stream is read, shuffled, split across processes and guarded: the options every stream loader shares.

    Pass one as ``options=`` to :func:`load_image_text_stream`, :func:`load_edit_stream` or
    :func:`~muse_hf.data.tensor_streams.load_tensor_stream`. Keyword arguments named like a field (the loaders'
    earlier signature) still work and override the field, so ``load_edit_stream(path, options=opts, seed=2)`` changes
    only the seed; any other keyword argument of the image loaders joins ``load_kwargs``.

    Attributes:
        image_size: Square size of the default processor (``MuseImageProcessor(size=image_size or 448)``), used when
            no ``image_processor`` is given.
        extra_columns: Raw columns passed through unchanged (e.g. ``"index"``, ``"__key__"``).
        data_files: Forwarded to ``datasets.load_dataset`` (select shards of a folder / Hub repo).
        shuffle_buffer: Shuffle buffer size in rows (0 = keep the stored order); the shard order is shuffled too.
        seed: Shuffle seed (the same on every process, so that nodes get disjoint shards).
        max_pixels: Images with more pixels are skipped from their header (decompression-bomb guard).
        process_index / num_processes: This process's rank and the world size for ``split_dataset_by_node``.
            Default: ``accelerator``'s, else ``torch.distributed``'s when initialised, else a single process.
        accelerator: An ``accelerate.Accelerator`` (provides rank and world size).
        load_kwargs: More ``datasets.load_dataset`` arguments (``revision``, ``token``, ...).
    """

    image_size: int | None = None
    extra_columns: tuple[str, ...] = ()
    data_files: Any = None
    shuffle_buffer: int = 0
    seed: int = 0
    max_pixels: int = DEFAULT_MAX_PIXELS
    process_index: int | None = None
    num_processes: int | None = None
    accelerator: Any = None
    load_kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.shuffle_buffer < 0:
            raise ValueError(f"shuffle_buffer must be >= 0 (0 = no shuffling); got {self.shuffle_buffer}")
        if self.max_pixels < 1:
            raise ValueError(f"max_pixels must be >= 1; got {self.max_pixels}")
        object.__setattr__(self, "extra_columns", tuple(self.extra_columns))
        object.__setattr__(self, "load_kwargs", dict(self.load_kwargs))

    @classmethod
    def resolve(cls, options: StreamOptions | None, keywords: Mapping[str, Any]) -> StreamOptions:
        """``options`` (default: every field's default) with the loader's keyword arguments applied.

        A keyword in :data:`STREAM_KEYWORDS` replaces that field; any other one is added to ``load_kwargs``.
        """
        if options is not None and not isinstance(options, StreamOptions):
            raise TypeError(f"options must be a StreamOptions; got {type(options).__name__}")
        base = options if options is not None else cls()
        changes: dict[str, Any] = {k: v for k, v in keywords.items() if k in STREAM_KEYWORDS}
        extra = {k: v for k, v in keywords.items() if k not in STREAM_KEYWORDS}
        if extra:
            changes["load_kwargs"] = {**base.load_kwargs, **extra}
        return replace(base, **changes) if changes else base


#: The :class:`StreamOptions` fields the loaders also take as keyword arguments (``load_kwargs`` is their ``**rest``).
STREAM_KEYWORDS: frozenset[str] = frozenset(f.name for f in fields(StreamOptions)) - {"load_kwargs"}


# ------------------------------------------------------------------------------------------------------ dataset
class ImageTextStream(torch.utils.data.IterableDataset):
    """A torch ``IterableDataset`` over a ``datasets`` stream, decoding and preprocessing each sample, guarded.

    Build it with :func:`load_image_text_stream` or :func:`load_edit_stream`. Yields dicts with
    ``image_roles`` keys -> ``(3, H, W)`` float tensors, ``text_roles`` keys -> str, optionally ``label`` (int, -1
    when absent in a row), ``mask`` ((H, W) long, aligned with the first image role) and raw ``extra_columns``.

    Attributes:
        skipped: ``collections.Counter`` reason -> count (see the module docstring for how workers report).
        hf_dataset: The underlying ``datasets.IterableDataset`` (after column selection and node split).
    """

    def __init__(
        self,
        hf_dataset: datasets.IterableDataset,
        image_processor: MuseImageProcessor,
        image_roles: Mapping[str, str],
        text_roles: Mapping[str, str],
        label_column: str | None = None,
        mask_column: str | None = None,
        extra_columns: Sequence[str] = (),
        max_pixels: int = DEFAULT_MAX_PIXELS,
        shuffle_buffer: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if max_pixels < 1:
            raise ValueError(f"max_pixels must be >= 1; got {max_pixels}")
        if shuffle_buffer < 0:
            raise ValueError(f"shuffle_buffer must be >= 0 (0 = no shuffling); got {shuffle_buffer}")
        self.shuffle_buffer = int(shuffle_buffer)
        self.seed = int(seed)
        self.epoch = 0
        self.hf_dataset = hf_dataset
        self.image_processor = image_processor
        self.image_roles = dict(image_roles)
        self.text_roles = dict(text_roles)
        self.label_column = label_column
        self.mask_column = mask_column
        self.extra_columns = tuple(extra_columns)
        self.max_pixels = int(max_pixels)
        self.skipped: collections.Counter[str] = collections.Counter()
        self._emit_meta = False  # set by StreamingDataLoader
        self._resume: dict[int, dict] | None = None
        self._last_state: dict[str, Any] | None = None  # position after the last sample of a direct iteration
        size = image_processor.size
        h, w = size.get("height") or size.get("shortest_edge"), size.get("width") or size.get("shortest_edge")
        self._draft = (int(w), int(h)) if image_processor.do_resize and h and w else None

    # ---------------------------------------------------------------------------------------------- iteration
    @property
    def num_shards(self) -> int:
        """Shards of the underlying stream (DataLoader workers beyond this stay idle)."""
        return int(self.hf_dataset.num_shards)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch: reseeds the shard order and the shuffle buffer (when shuffling)."""
        self.epoch = int(epoch)
        self.hf_dataset.set_epoch(self._hf_epoch(self.epoch))

    def _hf_epoch(self, epoch: int) -> int:
        # datasets permutes the shard order with np.random.default_rng(epoch) for any epoch != 0; fold the seed in
        return 1 + epoch + self.seed * 1_000_003 if self.shuffle_buffer else epoch

    def _raw_rows(self, wid: int, resume: Mapping[str, Any] | None) -> Iterator[tuple[dict, Any]]:
        """Raw rows of this worker's part of the epoch, after the resume point, each with a state getter."""
        epoch = int(resume["epoch"]) if resume is not None else self.epoch
        hf = self.hf_dataset
        hf.set_epoch(self._hf_epoch(epoch))
        if not self.shuffle_buffer:
            hf.load_state_dict(None if resume is None else resume["hf"])  # None clears an earlier starting state
            for ex in hf:
                yield ex, lambda: {"epoch": epoch, "hf": hf.state_dict()}
            return
        hf.load_state_dict(None)
        done = 0 if resume is None else int(resume["emitted"])
        rng = np.random.default_rng([self.seed, epoch, wid])
        for emitted, ex in enumerate(_buffer_shuffle(iter(hf), self.shuffle_buffer, rng), start=1):
            if emitted > done:  # rows before the resume point are replayed without decoding
                yield ex, lambda n=emitted: {"epoch": epoch, "emitted": n}

    def _process(self, ex: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        texts = {}
        for role, col in self.text_roles.items():
            text = extract_text(ex.get(col))
            if not text:
                raise SkipSample(f"missing_{role}" if f"missing_{role}" in SKIP_REASONS else "missing_caption")
            texts[role] = text
        images = [decode_image(ex.get(col), self.max_pixels, self._draft) for col in self.image_roles.values()]
        mask = None
        if self.mask_column is not None:
            raw = ex.get(self.mask_column)
            if raw is not None:
                try:
                    mask_img = decode_image(raw, self.max_pixels)
                except SkipSample:
                    raise SkipSample("bad_mask") from None
                mask = mask_array(mask_img)
                if mask.shape != (images[0].height, images[0].width):
                    mask = np.asarray(
                        PIL.Image.fromarray(mask.astype(np.int32), "I").resize(images[0].size, PIL.Image.NEAREST)
                    ).astype(np.int64)
        try:
            pixel_values = self.image_processor(images, return_tensors="pt")["pixel_values"]  # (n, 3, H, W)
            if mask is not None:
                out["mask"] = self.image_processor.process_mask(mask)  # (H, W) long
        except ValueError:
            raise SkipSample("unprocessable") from None
        for i, role in enumerate(self.image_roles):
            out[role] = pixel_values[i]
        out.update(texts)
        if self.label_column is not None:
            label = ex.get(self.label_column)
            out["label"] = -1 if label is None else int(label)
        for col in self.extra_columns:
            out[col] = ex.get(col)
        return out

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        wid = 0 if info is None else info.id
        resume, self._resume = self._resume, None  # consumed once (in this process's copy)
        emit = self._emit_meta
        local: collections.Counter[str] = collections.Counter()
        state_of = None
        for ex, state_of in self._raw_rows(wid, None if resume is None else resume.get(wid)):
            try:
                sample = self._process(ex)
            except SkipSample as skip:
                local[skip.reason] += 1
                if not emit:
                    self.skipped[skip.reason] += 1
                continue
            if emit:
                sample[META_KEY] = (wid, state_of(), dict(local))
            else:
                self._last_state = state_of()
            yield sample
        if emit:  # end-of-stream record: trailing skips, and the worker leaves the round robin
            yield {META_KEY: (wid, None if state_of is None else state_of(), dict(local), True), END_KEY: True}

    # ---------------------------------------------------------------------------------------------- resume
    def state_dict(self) -> dict[str, Any]:
        """Position after the last sample yielded by direct (single-process, loader-less) iteration.

        With a DataLoader use :meth:`StreamingDataLoader.state_dict` instead (it knows the worker states).
        """
        workers = {} if self._last_state is None else {0: copy.deepcopy(self._last_state)}
        return {"epoch": self.epoch, "worker_states": workers, "skipped": dict(self.skipped)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Make the next direct iteration continue after the sample at which ``state`` was taken."""
        workers = dict(state.get("worker_states") or {})
        self._resume = {int(k): v for k, v in workers.items()} or None
        self.set_epoch(int(state.get("epoch", 0)))
        self.skipped = collections.Counter(state.get("skipped") or {})

    def __repr__(self) -> str:
        return (
            f"ImageTextStream(images={self.image_roles}, texts={self.text_roles}, label={self.label_column!r}, "
            f"mask={self.mask_column!r}, num_shards={self.num_shards}, skipped={dict(self.skipped)})"
        )


def _buffer_shuffle(rows: Iterator[dict], size: int, rng: np.random.Generator) -> Iterator[dict]:
    """Seeded shuffle buffer: once ``size`` rows are held, each new row replaces a random one, which is emitted."""
    buffer: list[dict] = []
    for row in rows:
        if len(buffer) < size:
            buffer.append(row)
            continue
        j = int(rng.integers(size))
        out, buffer[j] = buffer[j], row
        yield out
    while buffer:
        j = int(rng.integers(len(buffer)))
        buffer[j], buffer[-1] = buffer[-1], buffer[j]
        yield buffer.pop()


def load_image_text_stream(
    path_or_id: str | os.PathLike | datasets.Dataset | datasets.IterableDataset | datasets.DatasetDict,
    split: str = "train",
    image_processor: MuseImageProcessor | None = None,
    *,
    columns: Mapping[str, str | None] | None = None,
    image_column: str | None = None,
    caption_column: str | None = None,
    label_column: str | None = None,
    mask_column: str | None = None,
    with_label: bool = True,
    with_mask: bool = True,
    options: StreamOptions | None = None,
    **keywords: Any,
) -> ImageTextStream:
    """Stream image-text pairs as ``{"pixel_values", "caption", "label"?, "mask"?}``.

    Args:
        path_or_id: Local dataset folder (parquet / webdataset shards, with or without a README card), a single
            ``.parquet`` / ``.tar`` file, a Hub dataset id, or a ``datasets`` (Iterable)Dataset(Dict).
        split: Split to stream.
        image_processor: Turns images into ``pixel_values``; default ``MuseImageProcessor(size=image_size or 448)``.
        columns: Role -> column mapping (roles ``image``, ``caption``, ``label``, ``mask``); overrides auto-detection.
        image_column / caption_column / label_column / mask_column: Same, one role at a time.
        with_label / with_mask: Emit ``label`` / ``mask`` when the dataset has such a column.
        options: How the stream is read, shuffled, split and guarded (:class:`StreamOptions`: ``image_size``,
            ``extra_columns``, ``data_files``, ``shuffle_buffer``, ``seed``, ``max_pixels``, ``process_index``,
            ``num_processes``, ``accelerator``, ``load_kwargs``).
        **keywords: :class:`StreamOptions` fields by name (they override ``options``); any other keyword is a
            ``datasets.load_dataset`` argument (``revision``, ``token``, ...).

    Returns:
        An :class:`ImageTextStream` (a torch ``IterableDataset``); batch it with
        :func:`~muse_hf.data.dataloader.make_dataloader`.
    """
    opts = StreamOptions.resolve(options, keywords)
    processor = image_processor or MuseImageProcessor(size=opts.image_size or 448)
    explicit = {"image": image_column, "caption": caption_column, "label": label_column, "mask": mask_column}
    for key, value in (columns or {}).items():
        if key not in explicit:
            raise ValueError(f"unknown column role {key!r}; roles are {sorted(explicit)}")
        explicit[key] = value

    def resolve(features: datasets.Features | None, names: Sequence[str]) -> dict[str, str | None]:
        return {
            "image": resolve_column(features, names, explicit["image"], IMAGE_COLUMNS, "image", True),
            "caption": resolve_column(features, names, explicit["caption"], CAPTION_COLUMNS, "caption", True),
            "label": resolve_column(features, names, explicit["label"], LABEL_COLUMNS, "label", False)
            if with_label
            else None,
            "mask": resolve_column(features, names, explicit["mask"], MASK_COLUMNS, "mask", False)
            if with_mask
            else None,
        }

    ds, cols = prepare_stream(
        path_or_id, split, opts.data_files, opts.load_kwargs, opts.extra_columns, ("image", "mask"),
        opts.process_index, opts.num_processes, opts.accelerator, resolve,
    )  # fmt: skip
    return ImageTextStream(
        ds,
        processor,
        image_roles={"pixel_values": cols["image"]},
        text_roles={"caption": cols["caption"]},
        label_column=cols["label"],
        mask_column=cols["mask"],
        extra_columns=opts.extra_columns,
        max_pixels=opts.max_pixels,
        shuffle_buffer=opts.shuffle_buffer,
        seed=opts.seed,
    )


def load_edit_stream(
    path_or_id: str | os.PathLike | datasets.Dataset | datasets.IterableDataset | datasets.DatasetDict,
    split: str = "train",
    image_processor: MuseImageProcessor | None = None,
    *,
    source_column: str | None = None,
    target_column: str | None = None,
    instruction_column: str | None = None,
    options: StreamOptions | None = None,
    **keywords: Any,
) -> ImageTextStream:
    """Stream editing pairs as ``{"source_pixel_values", "target_pixel_values", "instruction"}``.

    Column names are auto-detected (``source_image``/``input_image``/...; ``target_image``/``output_image``/
    ``edited_image``/...; ``instruction``/``edit_instruction``/``prompt``/...) unless given. ``options`` /
    ``**keywords`` (a :class:`StreamOptions` and its fields by name), the skip counting and resume work as in
    :func:`load_image_text_stream` (a missing instruction is counted as ``missing_instruction``).
    """
    opts = StreamOptions.resolve(options, keywords)
    processor = image_processor or MuseImageProcessor(size=opts.image_size or 448)

    def resolve(features: datasets.Features | None, names: Sequence[str]) -> dict[str, str | None]:
        return {
            "source": resolve_column(features, names, source_column, EDIT_SOURCE_COLUMNS, "source", True),
            "target": resolve_column(features, names, target_column, EDIT_TARGET_COLUMNS, "target", True),
            "instruction": resolve_column(features, names, instruction_column, EDIT_TEXT_COLUMNS, "instruction", True),
        }

    ds, cols = prepare_stream(
        path_or_id, split, opts.data_files, opts.load_kwargs, opts.extra_columns, ("source", "target"),
        opts.process_index, opts.num_processes, opts.accelerator, resolve,
    )  # fmt: skip
    return ImageTextStream(
        ds,
        processor,
        image_roles={"source_pixel_values": cols["source"], "target_pixel_values": cols["target"]},
        text_roles={"instruction": cols["instruction"]},
        extra_columns=opts.extra_columns,
        max_pixels=opts.max_pixels,
        shuffle_buffer=opts.shuffle_buffer,
        seed=opts.seed,
    )
