"""Cached training inputs of the unified model (``cache_latents: true``), as diffusers' training examples cache.

The tokenizer (``vae``) and the condition encoder (``mllm``) are frozen in every UMM stage, so their outputs are a
function of the data alone. With ``cache_latents`` each training image is encoded once (normalised DiT-space latents,
``vae.normalize_latents(vae.encode(x).latents)``) and each caption / instruction once (the text encoder's token
states, unpadded), and the connector and DiT train from these stored tensors; no image is decoded and neither frozen
model runs during the steps (the empty prompt of classifier-free guidance is still encoded once).

Layout, beside the data set (a hidden folder, so ``datasets``' default data-file patterns never pick the cache up
as data)::

    <data_dir>/.muse_cache/<key>/gen/manifest.json
    <data_dir>/.muse_cache/<key>/gen/train-00000-of-00004.parquet   (one cache shard per source shard)
    <data_dir>/.muse_cache/<key>/edit/...

``<key>`` hashes the tokenizer's config and weights (its ``scaling_factor`` / ``shift_factor`` included), the
condition encoder's config, weights, tokenizer and ``max_length``, and the image processor's settings
(:func:`cache_key`): a changed model never reads a stale cache. Each part's ``manifest.json`` records the source
shards (name, size, modification time) and split/columns; when they no longer match, the part is rebuilt. Shards
are parquet files of :func:`muse_hf.data.write_tensor_shard` rows, read with :func:`muse_hf.data.load_tensor_stream`:
the image streams' shuffling, epochs, per-process split, workers, skip counting and exact resume apply unchanged.
Because cache shards map one to one onto source shards and keep their row order, an unshuffled (or equally seeded)
cached run sees the same samples in the same order as the uncached one.

Robustness: samples the image stream skips while building (undecodable images, empty captions, ...) are counted by
reason into the manifest and logged. A cache shard that is missing, truncated or unreadable (its size or parquet
footer does not match the manifest) is rebuilt from its source shard with a warning naming both; a row whose stored
bytes do not match its shape is skipped at training time and counted as ``bad_tensor_row``. Shards are written under
a temporary name and renamed, and the manifest is written last, so an interrupted build is resumed shard by shard.

Several processes build disjoint shards (shard ``i`` by process ``i % num_processes``) and then meet at a barrier.
Only the text-condition path can be cached: with an InternVL ``mllm`` the learnable queries pass through the frozen
LLM, so the condition changes with every step.
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import pyarrow.parquet as pq
import torch
from torch.nn.utils.rnn import pad_sequence

from muse_hf.data import TensorShardWriter, load_edit_stream, load_image_text_stream, make_dataloader
from muse_hf.pipelines import MuseCondition

__all__ = [
    "CACHE_DIRNAME",
    "CACHE_FORMAT",
    "CachedPart",
    "cache_key",
    "default_cache_root",
    "prepare_cached_part",
    "source_shards",
    "stack_condition",
]

logger = logging.getLogger(__name__)

#: Folder (inside the data set folder) that holds the caches; hidden from ``datasets``' data-file patterns.
CACHE_DIRNAME = ".muse_cache"
#: Version of the cache layout; part of the key.
CACHE_FORMAT = 1
#: Tensor / text columns of each part's shards.
PART_COLUMNS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "gen": (("latents", "condition"), ("caption",)),
    "edit": (("target_latents", "source_latents", "condition"), ("instruction",)),
}
_VOLATILE_CONFIG_KEYS = {"transformers_version", "architectures", "torch_dtype", "dtype", "_diffusers_version"}


# ---------------------------------------------------------------------------------------------------------- the key
def _config_json(config: Any) -> str:
    """A config as canonical JSON without the keys that change when the same model is saved elsewhere."""
    values = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    kept = {k: v for k, v in values.items() if not k.startswith("_") and k not in _VOLATILE_CONFIG_KEYS}
    return json.dumps(kept, sort_keys=True, default=str)


def _hash_module(h: Any, module: torch.nn.Module) -> None:
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())


def _tokenizer_fingerprint(tokenizer: Any) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        return backend.to_str()
    return json.dumps(sorted(tokenizer.get_vocab().items()))


def cache_key(vae: torch.nn.Module, condition_encoder: Any, image_processor: Any) -> str:
    """Hash of everything the cached tensors depend on besides the data.

    Args:
        vae: the frozen MUSE tokenizer (config incl. ``scaling_factor`` / ``shift_factor``, and weights).
        condition_encoder: the frozen :class:`~muse_hf.pipelines.TextConditionEncoder` (its model's config and
            weights, its tokenizer and ``max_length``).
        image_processor: the processor that turns images into the tokenizer's inputs (size, normalisation).

    Returns:
        20 hex characters; equal for the same models saved and reloaded anywhere, different after any weight change.
    """
    h = hashlib.blake2b(digest_size=10)
    h.update(f"muse_hf umm cache v{CACHE_FORMAT}".encode())
    h.update(_config_json(vae.config).encode())
    _hash_module(h, vae)
    model = condition_encoder.model
    h.update(type(model).__name__.encode())
    h.update(_config_json(model.config).encode())
    _hash_module(h, model)
    h.update(_tokenizer_fingerprint(condition_encoder.tokenizer).encode())
    h.update(str(getattr(condition_encoder, "max_length", None)).encode())
    h.update(_config_json(image_processor).encode())
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------------------- sources
def default_cache_root(data: str | os.PathLike) -> Path:
    """``<data folder>/.muse_cache`` (``<folder of the file>/.muse_cache`` for a single-file data set).

    Raises:
        ValueError: ``data`` is not a local path (a Hub id): give ``cache_dir`` and download the data set first.
    """
    path = Path(data).expanduser()
    if not path.exists():
        raise ValueError(
            f"cache_latents needs a local data set, but {str(data)!r} is not a local path. Download it first "
            "(e.g. `huggingface-cli download --repo-type dataset <id> --local-dir <folder>`) and train from the folder."
        )
    return (path if path.is_dir() else path.parent) / CACHE_DIRNAME


def source_shards(data: str | os.PathLike, split: str) -> list[Path]:
    """The files of ``split`` in a local data set, in the order ``datasets`` streams them.

    Raises:
        ValueError: ``data`` is not local, or has no files for ``split``.
    """

    path = Path(data).expanduser()
    default_cache_root(path)  # the "not local" error
    if path.is_file():
        return [path.resolve()]
    files = datasets.load_dataset_builder(str(path)).config.data_files or {}
    if split not in files or not files[split]:
        raise ValueError(f"{path} has no files for split {split!r} (splits: {sorted(files)}).")
    return [Path(str(f)).resolve() for f in files[split]]


def _fingerprint(files: Sequence[Path]) -> list[list[Any]]:
    out = []
    for f in files:
        st = f.stat()
        out.append([str(f), int(st.st_size), int(st.st_mtime_ns)])
    return out


# ---------------------------------------------------------------------------------------------------------- parts
@dataclass
class CachedPart:
    """One built part of the cache (``gen`` or ``edit``).

    Args:
        name: ``"gen"`` or ``"edit"``.
        directory: its folder.
        files: the cache shards, in source order.
        num_rows: rows over all shards.
        skipped: source samples skipped while building, by reason.
        rebuilt: shard files (re)built by this call (empty when the cache was complete).
    """

    name: str
    directory: Path
    files: list[Path]
    num_rows: int
    skipped: dict[str, int] = field(default_factory=dict)
    rebuilt: list[str] = field(default_factory=list)

    @property
    def tensor_columns(self) -> tuple[str, ...]:
        return PART_COLUMNS[self.name][0]

    @property
    def text_columns(self) -> tuple[str, ...]:
        return PART_COLUMNS[self.name][1]


def _shard_problem(path: Path, entry: dict[str, Any] | None) -> str | None:
    """Why a cache shard cannot be used as recorded (``None`` when it can)."""

    if entry is None:
        return "it is not in the manifest"
    if not path.is_file():
        return "it is missing"
    size = path.stat().st_size
    if size != int(entry["bytes"]):
        return f"it has {size} bytes but the manifest records {entry['bytes']} (truncated or overwritten)"
    try:
        rows = pq.read_metadata(path).num_rows
    except Exception as err:  # pyarrow raises several types for a damaged footer
        return f"its parquet footer cannot be read ({type(err).__name__}: {err})"
    if rows != int(entry["rows"]):
        return f"it holds {rows} rows but the manifest records {entry['rows']}"
    return None


def prepare_cached_part(
    name: str,
    *,
    root: Path,
    source: str | os.PathLike,
    split: str,
    columns: dict[str, str | None],
    image_processor: Any,
    encode_latents: Callable[[list[torch.Tensor]], list[torch.Tensor]],
    encode_text: Callable[[list[str]], Any],
    batch_size: int = 64,
    process_index: int = 0,
    num_processes: int = 1,
    barrier: Callable[[], None] | None = None,
) -> CachedPart:
    """Build (or check and reuse) one part of the cache; every process calls it and gets the same result.

    Args:
        name: ``"gen"`` (image-caption pairs) or ``"edit"`` (editing pairs).
        root: the key folder (``<cache root>/<cache_key(...)>``).
        source: the local data set (folder or file) the part is built from.
        split: its split.
        columns: explicit column names (``image``/``caption`` or ``source``/``target``/``instruction``; ``None`` =
            auto-detected, as the image streams do).
        image_processor: turns images into the tokenizer's inputs (the same one the uncached run uses).
        encode_latents: ``[(B_i, 3, H, W), ...] -> [(B_i, c, h, w), ...]`` normalised DiT-space latents.
        encode_text: ``list[str] -> MuseCondition`` (``hidden_states`` (B, L, D), ``attention_mask`` (B, L)).
        batch_size: images per encoding batch.
        process_index / num_processes: this process and the world size (shard ``i`` is built by ``i % world``).
        barrier: waits for all processes (``accelerator.wait_for_everyone``); required when ``num_processes > 1``.

    Returns:
        The :class:`CachedPart`.

    Raises:
        ValueError: unknown part, non-local data, or missing columns (from the image streams).
    """
    if name not in PART_COLUMNS:
        raise ValueError(f"unknown cache part {name!r}; expected one of {sorted(PART_COLUMNS)}")
    if num_processes > 1 and barrier is None:
        raise ValueError("prepare_cached_part with several processes needs a barrier (accelerator.wait_for_everyone).")
    sources = source_shards(source, split)
    directory = Path(root) / name
    manifest_path = directory / "manifest.json"
    header = {"format": CACHE_FORMAT, "part": name, "split": split, "columns": columns,
              "sources": _fingerprint(sources)}  # fmt: skip
    manifest: dict[str, Any] = {}
    if manifest_path.is_file():
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, ValueError):
            manifest = {}
    same_source = all(manifest.get(k) == v for k, v in header.items())
    if manifest and not same_source:
        logger.warning("The %s cache in %s was built from other data (source shards, split or columns changed); "
                       "rebuilding it.", name, directory)  # fmt: skip
    entries = {e["file"]: e for e in manifest.get("shards", [])} if same_source else {}
    n = len(sources)
    names = [f"{split}-{i:05d}-of-{n:05d}.parquet" for i in range(n)]
    todo = []
    for i, fname in enumerate(names):
        problem = _shard_problem(directory / fname, entries.get(fname))
        if problem is not None:
            if entries:  # a complete manifest existed: this shard was damaged afterwards
                logger.warning("Cache shard %s is unusable: %s. Rebuilding it from %s.", directory / fname, problem,
                               sources[i])  # fmt: skip
            todo.append(i)
    if todo and process_index == 0:
        logger.info("Building the %s cache (%d of %d shards) in %s", name, len(todo), n, directory)
    for i in todo:
        if i % num_processes == process_index:
            rows, skipped = _build_shard(name, directory / names[i], sources[i], split, columns, image_processor,
                                         encode_latents, encode_text, batch_size)  # fmt: skip
            size = (directory / names[i]).stat().st_size
            sidecar = {"file": names[i], "source": str(sources[i]), "rows": rows, "bytes": size, "skipped": skipped}
            (directory / f".{names[i]}.json").write_text(json.dumps(sidecar))
    if barrier is not None:
        barrier()
    if todo and process_index == 0:
        shards = []
        for i, fname in enumerate(names):
            sidecar = directory / f".{fname}.json"
            if i in todo:
                shards.append(json.loads(sidecar.read_text()))
                sidecar.unlink()
            else:
                shards.append(entries[fname])
        manifest = {**header, "shards": shards}
        tmp = manifest_path.with_name(f".manifest.json.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(manifest, indent=1))
        os.replace(tmp, manifest_path)
    if barrier is not None:
        barrier()
    manifest = json.loads(manifest_path.read_text())
    skipped: collections.Counter[str] = collections.Counter()
    for e in manifest["shards"]:
        skipped.update(e.get("skipped") or {})
    part = CachedPart(name, directory, [directory / f for f in names], sum(int(e["rows"]) for e in manifest["shards"]),
                      dict(skipped), [names[i] for i in todo])  # fmt: skip
    if todo and process_index == 0:
        logger.info("The %s cache holds %d rows in %d shards; %d source samples were skipped while building it (%s).",
                    name, part.num_rows, n, sum(skipped.values()), dict(skipped) or "none")  # fmt: skip
    return part


def _build_shard(
    name: str,
    target: Path,
    source: Path,
    split: str,
    columns: dict[str, str | None],
    image_processor: Any,
    encode_latents: Callable[[list[torch.Tensor]], list[torch.Tensor]],
    encode_text: Callable[[list[str]], Any],
    batch_size: int,
) -> tuple[int, dict[str, int]]:
    """Encode one source shard into one cache shard; returns (rows written, skipped samples by reason)."""

    if name == "gen":
        stream = load_image_text_stream(
            str(source), split=split, image_processor=image_processor, image_column=columns.get("image"),
            caption_column=columns.get("caption"), with_label=False, with_mask=False, process_index=0,
            num_processes=1,
        )  # fmt: skip
    else:
        stream = load_edit_stream(
            str(source), split=split, image_processor=image_processor, source_column=columns.get("source"),
            target_column=columns.get("target"), instruction_column=columns.get("instruction"), process_index=0,
            num_processes=1,
        )  # fmt: skip
    loader = make_dataloader(stream, batch_size)
    tensor_columns, text_columns = PART_COLUMNS[name]
    with torch.no_grad(), TensorShardWriter(target, tensor_columns, text_columns) as writer:
        for batch in loader:
            if name == "gen":
                (latents,) = encode_latents([batch["pixel_values"]])
                texts = list(batch["caption"])
                tensors = {"latents": latents}
            else:
                target_lat, source_lat = encode_latents([batch["target_pixel_values"], batch["source_pixel_values"]])
                texts = list(batch["instruction"])
                tensors = {"target_latents": target_lat, "source_latents": source_lat}
            cond = encode_text(texts)
            mask = cond.attention_mask.bool()  # (B, L)
            rows = []
            for i, text in enumerate(texts):
                row = {k: v[i].float().cpu() for k, v in tensors.items()}
                row["condition"] = cond.hidden_states[i][mask[i]].float().cpu()  # (L_i, D) real tokens only
                row[text_columns[0]] = text
                rows.append(row)
            writer.write(rows)  # one row group per encoding batch
    return writer.num_rows, dict(loader.skipped)


def stack_condition(states: torch.Tensor | Sequence[torch.Tensor], device: torch.device | str | None = None) -> Any:
    """Right-pad cached token states ``[(L_i, D), ...]`` (or a stacked ``(B, L, D)``) into a ``MuseCondition``.

    Returns:
        ``MuseCondition(hidden_states (B, max L_i, D), attention_mask (B, max L_i) long)``.
    """

    seqs = list(states.unbind(0)) if isinstance(states, torch.Tensor) else list(states)
    lengths = torch.tensor([s.shape[0] for s in seqs])
    hidden = pad_sequence(seqs, batch_first=True)  # (B, L, D)
    mask = (torch.arange(hidden.shape[1])[None] < lengths[:, None]).long()  # (B, L)
    return MuseCondition(hidden.to(device), mask.to(device))
