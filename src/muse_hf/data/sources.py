"""Open any supported source as a ``datasets`` stream, find its columns and split it across processes.

:func:`prepare_stream` opens local parquet folders, webdataset ``.tar`` shards, single files, in-memory ``datasets``
objects or Hub ids with ``datasets.load_dataset(..., streaming=True)``, resolves the role -> column mapping (the paper
corpora's names: ``image``/``jpg``/``png``/``webp``; ``caption``/``txt``/``json`` with a caption field/``prompt``;
the editing sets' source / target / instruction names), keeps only those columns, leaves images encoded (the streams
decode them, guarded) and splits the stream across processes with ``datasets.distributed.split_dataset_by_node``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets
import torch
from datasets.distributed import split_dataset_by_node

__all__ = [
    "CAPTION_COLUMNS",
    "EDIT_SOURCE_COLUMNS",
    "EDIT_TARGET_COLUMNS",
    "EDIT_TEXT_COLUMNS",
    "IMAGE_COLUMNS",
    "LABEL_COLUMNS",
    "MASK_COLUMNS",
    "prepare_stream",
    "resolve_column",
]

IMAGE_COLUMNS = ("image", "jpg", "jpeg", "png", "webp", "img", "image.jpg", "image.png")
CAPTION_COLUMNS = ("caption", "txt", "text", "prompt", "json", "captions", "caption.txt")
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


def resolve_column(
    features: datasets.Features | None,
    names: Sequence[str],
    explicit: str | None,
    candidates: Sequence[str],
    role: str,
    required: bool,
) -> str | None:
    """The column of ``role``: ``explicit`` (checked), else the first of ``candidates`` among ``names`` (any case),
    else, for a required image, the only ``datasets.Image`` column; a required role that is not found is an error."""
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


def prepare_stream(
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
    """Open ``path_or_id``, resolve its columns with ``resolve(features, names)`` (role -> column), keep those and
    ``needed``, leave the ``image_like`` roles' images encoded and split by node: ``(stream, role -> column)``."""
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
