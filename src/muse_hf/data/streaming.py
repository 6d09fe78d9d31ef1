"""Streaming image-text (and image-editing) loaders over ``datasets`` streaming, robust to bad samples.

``load_image_text_stream`` opens local parquet folders, webdataset ``.tar`` shards, single files, in-memory
``datasets`` objects or Hub ids with ``datasets.load_dataset(..., streaming=True)``, maps the paper corpora's column
names (``image``/``jpg``/``png``/``webp``; ``caption``/``txt``/``json`` with a caption field/``prompt``), shuffles
with a buffer, splits across processes with ``datasets.distributed.split_dataset_by_node`` and decodes every image
itself, guarded:

* the image header is read first (a PNG's IHDR directly, anything else through the lazy ``PIL.Image.open``);
  zero-size images and images above ``max_pixels`` (decompression bombs) are skipped **before** any pixel is
  decoded;
* undecodable, truncated and empty images, missing/empty captions and masks that cannot be read are skipped too.

Every skip is **counted by reason** (:data:`SKIP_REASONS`). How the counts reach the trainer:

* iterating the dataset directly in one process: ``dataset.skipped`` (a ``collections.Counter``) is updated live;
* through :func:`make_dataloader` (any ``num_workers``): each worker attaches to every sample it yields a small
  meta record ``(worker id, datasets state_dict, cumulative skip counts of that worker)``, plus one end-of-stream
  record after its last sample so trailing skips are not lost. The collate function gathers these records, and the
  loader (main process) keeps, per worker, the record of the last *consumed* batch. ``loader.skipped`` (also mirrored
  into ``dataset.skipped``) is the sum over workers plus the total of earlier epochs / the resumed checkpoint, so it
  is exact at the consumption point, independent of prefetching, and identical for 0 or N workers. Under several
  training processes each process counts its own shard; reduce them (e.g. ``accelerator.reduce``) for a global view.

Shuffling: the shard order is permuted per epoch and seed (through ``datasets``' epoch-based shard shuffling) and
examples are mixed by a seeded shuffle buffer of ``shuffle_buffer`` raw (still encoded) rows kept by this class, per
worker.

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
import io
import json
import logging
import os
import struct
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import PIL.Image
import torch
from datasets.distributed import split_dataset_by_node
from torch.utils.data import DataLoader, get_worker_info

from muse_hf.models.image_processing_muse import MuseImageProcessor
from muse_hf.validation import IMAGE_DECODE_ERRORS, PNG_SIGNATURE

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "SHAPE_SUFFIX",
    "SKIP_REASONS",
    "ImageTextStream",
    "SkipSample",
    "StreamingDataLoader",
    "TensorRowStream",
    "TensorShardWriter",
    "collate_samples",
    "decode_image",
    "load_edit_stream",
    "load_image_text_stream",
    "load_tensor_stream",
    "make_dataloader",
    "write_tensor_shard",
]

logger = logging.getLogger(__name__)

#: Images with more pixels than this are skipped from their header (8000 x 8000).
DEFAULT_MAX_PIXELS = 64_000_000
#: Reasons a sample is skipped (keys of ``dataset.skipped`` / ``loader.skipped``).
SKIP_REASONS: tuple[str, ...] = (
    "missing_image",  # the image column is absent or None
    "empty_file",  # zero bytes
    "undecodable",  # not an image PIL can identify / broken header
    "truncated",  # header fine, pixel data broken
    "zero_size",  # width or height is 0
    "too_large",  # more than max_pixels (checked from the header) or a PIL decompression bomb
    "unprocessable",  # decoded, but the image processor rejected it
    "bad_mask",  # the mask cannot be decoded
    "missing_caption",  # caption absent / empty / whitespace (image-text streams)
    "missing_instruction",  # instruction absent / empty (edit streams)
    "bad_tensor_row",  # a stored tensor's bytes do not match its stored shape (tensor streams, e.g. cached latents)
)

IMAGE_COLUMNS = ("image", "jpg", "jpeg", "png", "webp", "img", "image.jpg", "image.png")
CAPTION_COLUMNS = ("caption", "txt", "text", "prompt", "json", "captions", "caption.txt")
TEXT_FIELDS = (
    "caption",
    "text",
    "prompt",
    "txt",
    "long_caption",
    "short_caption",
    "recaption",
    "instruction",
)
LABEL_COLUMNS = ("label", "cls", "class", "labels")
MASK_COLUMNS = ("mask", "instance_mask", "segmentation", "seg")
EDIT_SOURCE_COLUMNS = ("source_image", "input_image", "original_image", "src_image", "image_before", "input")
EDIT_TARGET_COLUMNS = (
    "target_image",
    "output_image",
    "edited_image",
    "edit_image",
    "tgt_image",
    "image_after",
    "output",
)
EDIT_TEXT_COLUMNS = (
    "instruction",
    "edit_instruction",
    "edit_prompt",
    "prompt",
    "text",
    "txt",
    "caption",
    "json",
)

_META = "_meta"
_END = "_end"


class SkipSample(Exception):
    """Raised internally for a sample that must be skipped; ``reason`` is one of :data:`SKIP_REASONS`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# ------------------------------------------------------------------------------------------------------ decoding
def decode_image(
    value: Any,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    draft_size: tuple[int, int] | None = None,
) -> PIL.Image.Image:
    """Decode one stored image, guarded.

    Args:
        value: ``{"bytes": ..., "path": ...}`` (``datasets.Image(decode=False)``), raw ``bytes``, or a PIL image.
        max_pixels: Skip images with more pixels, judged from the header before decoding.
        draft_size: ``(width, height)`` hint for JPEG draft decoding (decode at a reduced scale >= this size).

    Returns:
        The fully loaded PIL image (original mode).

    Raises:
        SkipSample: with the reason (see :data:`SKIP_REASONS`).
    """
    if value is None:
        raise SkipSample("missing_image")
    if isinstance(value, PIL.Image.Image):
        return _check_size(value, max_pixels)
    data: bytes | None
    if isinstance(value, Mapping):
        data, path = value.get("bytes"), value.get("path")
        if data is None and path:
            try:
                data = Path(path).read_bytes()
            except OSError:
                raise SkipSample("undecodable") from None
    elif isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
    else:
        raise SkipSample("undecodable")
    if data is None:
        raise SkipSample("missing_image")
    if len(data) == 0:
        raise SkipSample("empty_file")
    png_size = _png_header_size(data)
    if png_size is not None:  # PIL must reach the first IDAT chunk to open a PNG: judge a header-only bomb first
        _check_dims(*png_size, max_pixels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PIL.Image.DecompressionBombWarning)
        try:
            image = PIL.Image.open(io.BytesIO(data))  # lazy: reads the header only
        except PIL.Image.DecompressionBombError:
            raise SkipSample("too_large") from None
        except (*IMAGE_DECODE_ERRORS, TypeError):  # the rules muse_hf.validation shares with the processor/app
            raise SkipSample("undecodable") from None
        _check_size(image, max_pixels)
        if draft_size is not None and image.format == "JPEG":
            image.draft("RGB", draft_size)
        try:
            image.load()
        except PIL.Image.DecompressionBombError:
            raise SkipSample("too_large") from None
        except (*IMAGE_DECODE_ERRORS, MemoryError):
            raise SkipSample("truncated") from None
    return image


def _check_size(image: PIL.Image.Image, max_pixels: int) -> PIL.Image.Image:
    _check_dims(*image.size, max_pixels)
    return image


def _check_dims(width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise SkipSample("zero_size")
    if width * height > max_pixels:
        raise SkipSample("too_large")


def _png_header_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from a PNG's IHDR chunk, or None when ``data`` does not start like a PNG."""
    if len(data) < 24 or not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def _extract_text(value: Any) -> str | None:
    """A caption from a string, bytes, JSON string / dict (``caption``/``text``/``prompt``...) or list of them."""
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                return text or None
        else:
            return text or None
    if isinstance(value, Mapping):
        for key in TEXT_FIELDS:
            found = _extract_text(value.get(key)) if key in value else None
            if found:
                return found
        return None
    if isinstance(value, (list, tuple)):
        for item in value:
            found = _extract_text(item)
            if found:
                return found
    return None


def _mask_array(image: PIL.Image.Image) -> np.ndarray:
    """Instance/label ids ``(H, W)`` from a mask image; colour-coded masks map each colour to one id."""
    if image.mode == "P":
        return np.asarray(image).astype(np.int64)
    array = np.asarray(image)
    if array.ndim == 3:  # colour-coded: keep the partition
        rgb = array[..., :3].astype(np.int64)
        return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    return array.astype(np.int64)


# ------------------------------------------------------------------------------------------------------ opening
def _open_hf_stream(source: Any, split: str, data_files: Any = None, **load_kwargs: Any) -> datasets.IterableDataset:
    """Any supported source -> a ``datasets.IterableDataset`` of ``split``."""
    if isinstance(source, datasets.IterableDataset):
        return source
    if isinstance(source, datasets.Dataset):
        return source.to_iterable_dataset(num_shards=max(1, min(len(source), 8)))
    if isinstance(source, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        if split not in source:
            raise ValueError(f"split {split!r} not found; available splits: {sorted(source)}")
        return _open_hf_stream(source[split], split)
    if not isinstance(source, (str, os.PathLike)):
        raise ValueError(
            f"path_or_id must be a local folder/file, a Hub dataset id or a datasets (Iterable)Dataset; "
            f"got {type(source).__name__}"
        )
    path = Path(source).expanduser()
    try:
        if path.is_file():
            suffix = "".join(path.suffixes[-2:]) if path.suffix == ".gz" else path.suffix
            builder = {
                ".parquet": "parquet",
                ".tar": "webdataset",
                ".arrow": "arrow",
                ".jsonl": "json",
                ".json": "json",
            }
            if suffix not in builder:
                raise ValueError(f"cannot stream file {path}: expected one of {sorted(builder)}")
            ds = datasets.load_dataset(
                builder[suffix], data_files={split: str(path)}, split=split, streaming=True, **load_kwargs
            )
        elif path.is_dir():
            ds = datasets.load_dataset(str(path), data_files=data_files, split=split, streaming=True, **load_kwargs)
        else:
            ds = datasets.load_dataset(str(source), data_files=data_files, split=split, streaming=True, **load_kwargs)
    except (FileNotFoundError, ConnectionError) as err:
        raise ValueError(
            f"cannot open dataset {str(source)!r} (split {split!r}): {err}. Give an existing local folder/file or a "
            "reachable Hub id (offline: build the embedded data with `muse-hf build-data`)."
        ) from err
    if not isinstance(ds, datasets.IterableDataset):
        raise ValueError(f"expected a streaming split from {source!r}, got {type(ds).__name__}")
    return ds


def _resolve(
    features: datasets.Features | None,
    names: Sequence[str],
    explicit: str | None,
    candidates: Sequence[str],
    role: str,
    required: bool,
) -> str | None:
    if explicit is not None:
        if names and explicit not in names:
            raise ValueError(f"{role} column {explicit!r} not in the dataset's columns {list(names)}")
        return explicit
    lowered = {n.lower(): n for n in names}
    for cand in candidates:
        if cand in lowered:
            return lowered[cand]
    if required:
        if features is not None and role == "image":
            images = [n for n, f in features.items() if isinstance(f, datasets.Image)]
            if len(images) == 1:
                return images[0]
        raise ValueError(
            f"cannot find the {role} column among {list(names)}; pass it explicitly "
            f"(e.g. columns={{'{role}': '<name>'}}). Looked for: {list(candidates)}"
        )
    return None


def _node(process_index: int | None, num_processes: int | None, accelerator: Any) -> tuple[int, int]:
    if accelerator is not None:
        return int(accelerator.process_index), int(accelerator.num_processes)
    if process_index is not None or num_processes is not None:
        rank, world = int(process_index or 0), int(num_processes or 1)
    elif torch.distributed.is_available() and torch.distributed.is_initialized():
        rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    else:
        rank, world = 0, 1
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"need 0 <= process_index < num_processes; got process_index={rank}, num_processes={world}")
    return rank, world


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
            text = _extract_text(ex.get(col))
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
                mask = _mask_array(mask_img)
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
                sample[_META] = (wid, state_of(), dict(local))
            else:
                self._last_state = state_of()
            yield sample
        if emit:  # end-of-stream record: trailing skips, and the worker leaves the round robin
            yield {_META: (wid, None if state_of is None else state_of(), dict(local), True), _END: True}

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


def _prepare(
    path_or_id: Any,
    split: str,
    data_files: Any,
    load_kwargs: Mapping[str, Any],
    needed: Sequence[str],
    image_like: Sequence[str],
    process_index: int | None,
    num_processes: int | None,
    accelerator: Any,
    resolve: Any,
) -> tuple[datasets.IterableDataset, dict[str, Any]]:
    ds = _open_hf_stream(path_or_id, split, data_files, **load_kwargs)
    names = list(ds.column_names or [])
    cols = resolve(ds.features, names)
    keep = [c for c in dict.fromkeys(v for v in cols.values() if v) if not names or c in names]
    for extra in needed:
        if names and extra not in names:
            raise ValueError(f"extra column {extra!r} not in the dataset's columns {names}")
        if extra not in keep:
            keep.append(extra)
    if names:
        ds = ds.select_columns(keep)
    features = ds.features
    for key in image_like:  # decode ourselves, guarded (never let datasets decode and crash the stream)
        col = cols.get(key)
        if col and features is not None and isinstance(features.get(col), datasets.Image):
            ds = ds.cast_column(col, datasets.Image(decode=False))
    rank, world = _node(process_index, num_processes, accelerator)
    if world > 1:
        ds = split_dataset_by_node(ds, rank=rank, world_size=world)
    return ds, cols


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
    extra_columns: Sequence[str] = (),
    image_size: int | None = None,
    data_files: Any = None,
    shuffle_buffer: int = 0,
    seed: int = 0,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    process_index: int | None = None,
    num_processes: int | None = None,
    accelerator: Any = None,
    **load_kwargs: Any,
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
        extra_columns: Raw columns passed through unchanged (e.g. ``"index"``, ``"__key__"``).
        image_size: Square size of the default processor.
        data_files: Forwarded to ``datasets.load_dataset`` (select shards of a folder / Hub repo).
        shuffle_buffer: Shuffle buffer size in rows (0 = keep the stored order); the shard order is shuffled too.
        seed: Shuffle seed (the same on every process, so that nodes get disjoint shards).
        max_pixels: Images with more pixels are skipped from their header (decompression-bomb guard).
        process_index / num_processes: This process's rank and the world size for ``split_dataset_by_node``.
            Default: ``accelerator``'s, else ``torch.distributed``'s when initialised, else a single process.
        accelerator: An ``accelerate.Accelerator`` (provides rank and world size).
        **load_kwargs: More ``datasets.load_dataset`` arguments (``revision``, ``token``, ...).

    Returns:
        An :class:`ImageTextStream` (a torch ``IterableDataset``); batch it with :func:`make_dataloader`.
    """
    if shuffle_buffer < 0:
        raise ValueError(f"shuffle_buffer must be >= 0 (0 = no shuffling); got {shuffle_buffer}")
    processor = image_processor or MuseImageProcessor(size=image_size or 448)
    explicit = {"image": image_column, "caption": caption_column, "label": label_column, "mask": mask_column}
    for key, value in (columns or {}).items():
        if key not in explicit:
            raise ValueError(f"unknown column role {key!r}; roles are {sorted(explicit)}")
        explicit[key] = value

    def resolve(features: datasets.Features | None, names: Sequence[str]) -> dict[str, str | None]:
        return {
            "image": _resolve(features, names, explicit["image"], IMAGE_COLUMNS, "image", True),
            "caption": _resolve(features, names, explicit["caption"], CAPTION_COLUMNS, "caption", True),
            "label": _resolve(features, names, explicit["label"], LABEL_COLUMNS, "label", False)
            if with_label
            else None,
            "mask": _resolve(features, names, explicit["mask"], MASK_COLUMNS, "mask", False) if with_mask else None,
        }

    ds, cols = _prepare(
        path_or_id, split, data_files, load_kwargs, extra_columns, ("image", "mask"),
        process_index, num_processes, accelerator, resolve,
    )  # fmt: skip
    return ImageTextStream(
        ds,
        processor,
        image_roles={"pixel_values": cols["image"]},
        text_roles={"caption": cols["caption"]},
        label_column=cols["label"],
        mask_column=cols["mask"],
        extra_columns=extra_columns,
        max_pixels=max_pixels,
        shuffle_buffer=shuffle_buffer,
        seed=seed,
    )


def load_edit_stream(
    path_or_id: str | os.PathLike | datasets.Dataset | datasets.IterableDataset | datasets.DatasetDict,
    split: str = "train",
    image_processor: MuseImageProcessor | None = None,
    *,
    source_column: str | None = None,
    target_column: str | None = None,
    instruction_column: str | None = None,
    extra_columns: Sequence[str] = (),
    image_size: int | None = None,
    data_files: Any = None,
    shuffle_buffer: int = 0,
    seed: int = 0,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    process_index: int | None = None,
    num_processes: int | None = None,
    accelerator: Any = None,
    **load_kwargs: Any,
) -> ImageTextStream:
    """Stream editing pairs as ``{"source_pixel_values", "target_pixel_values", "instruction"}``.

    Column names are auto-detected (``source_image``/``input_image``/...; ``target_image``/``output_image``/
    ``edited_image``/...; ``instruction``/``edit_instruction``/``prompt``/...) unless given. Every other argument,
    the skip counting and resume work as in :func:`load_image_text_stream` (a missing instruction is counted as
    ``missing_instruction``).
    """
    if shuffle_buffer < 0:
        raise ValueError(f"shuffle_buffer must be >= 0 (0 = no shuffling); got {shuffle_buffer}")
    processor = image_processor or MuseImageProcessor(size=image_size or 448)

    def resolve(features: datasets.Features | None, names: Sequence[str]) -> dict[str, str | None]:
        return {
            "source": _resolve(features, names, source_column, EDIT_SOURCE_COLUMNS, "source", True),
            "target": _resolve(features, names, target_column, EDIT_TARGET_COLUMNS, "target", True),
            "instruction": _resolve(features, names, instruction_column, EDIT_TEXT_COLUMNS, "instruction", True),
        }

    ds, cols = _prepare(
        path_or_id, split, data_files, load_kwargs, extra_columns, ("source", "target"),
        process_index, num_processes, accelerator, resolve,
    )  # fmt: skip
    return ImageTextStream(
        ds,
        processor,
        image_roles={"source_pixel_values": cols["source"], "target_pixel_values": cols["target"]},
        text_roles={"instruction": cols["instruction"]},
        extra_columns=extra_columns,
        max_pixels=max_pixels,
        shuffle_buffer=shuffle_buffer,
        seed=seed,
    )


# ------------------------------------------------------------------------------------------------ stored tensors
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
            text = _extract_text(ex.get(col))
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


def load_tensor_stream(
    files: Sequence[str | os.PathLike],
    tensor_columns: Sequence[str],
    text_columns: Sequence[str] = (),
    *,
    split: str = "train",
    shuffle_buffer: int = 0,
    seed: int = 0,
    process_index: int | None = None,
    num_processes: int | None = None,
    accelerator: Any = None,
) -> TensorRowStream:
    """Stream the rows of :func:`write_tensor_shard` files (e.g. cached latents) like an image stream.

    Args:
        files: the parquet shards, in order (one ``datasets`` shard each: workers and processes split by file).
        tensor_columns: tensor columns to decode (``torch.float32`` tensors of the stored shapes).
        text_columns: text columns to pass through (an empty one skips the row).
        split: the split name given to ``datasets``.
        shuffle_buffer / seed / process_index / num_processes / accelerator: as :func:`load_image_text_stream`.

    Returns:
        A :class:`TensorRowStream`; batch it with :func:`make_dataloader` (equal shapes are stacked, unequal ones
        stay a list of tensors).
    """
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

    hf, _ = _prepare(ds, split, None, {}, (), (), process_index, num_processes, accelerator, resolve)
    return TensorRowStream(
        hf, {c: c for c in tensor_columns}, {c: c for c in text_columns}, shuffle_buffer=shuffle_buffer, seed=seed
    )


# ------------------------------------------------------------------------------------------------------ batching
def collate_samples(samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Batch stream samples: tensors are stacked ``(B, ...)`` (a list when their shapes differ, e.g. unpadded token
    states), ints become a long tensor, the rest lists.

    Meta / end-of-stream records of :class:`ImageTextStream` (when batched by :class:`StreamingDataLoader`) are
    collected under ``"_meta"`` and excluded from the batch.
    """
    metas = [s[_META] for s in samples if _META in s]
    real = [s for s in samples if not s.get(_END)]
    batch: dict[str, Any] = {}
    if real:
        for key in real[0]:
            if key == _META:
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
        batch[_META] = metas
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
                    metas = batch.pop(_META)
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
