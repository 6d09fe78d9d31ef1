"""The embedded synthetic scenes dataset: deterministic shapes with colour, texture, size, position and count.

Every sample is a small scene of 1-4 objects (6 shapes x 6 colours x 3 sizes, plain or textured) on a plain or
textured background, with:

* ``image``: the scene (PNG), ``caption``: a sentence naming every object and its relation to the main one,
* ``label``: class of the *main* object (the largest; ``objects[0]``) as ``"{colour} {shape}"`` (see ``LABEL_NAMES``),
* ``mask``: instance mask (PNG, mode ``L``): 0 = background, ``i + 1`` = visible pixels of ``objects[i]``,
* ``objects``: per object ``shape, colour, texture, size, bbox [x0, y0, x1, y1] (visible pixels, inclusive),
  centre [x, y]``,
* an editing pair: ``source_image`` (the same PNG as ``image``), ``instruction``, ``target_image``, ``edit_type``
  (``recolour`` / ``move`` / ``add`` / ``remove``) and ``target_objects``. The target is rendered from the same scene
  specification with one object changed, so it differs from the source only where that object was or is.

Colour alone does not segment these scenes (DESIGN section 4): objects can be striped / checkered / dotted (two colours
inside one instance), neighbours can share a colour and touch, objects can occlude each other, and backgrounds can be
striped, checkered, graded or noisy in muted colours. So attention-segmentation mIoU measures structure.

Everything is drawn with NumPy from a per-sample ``numpy.random.Generator`` seeded with ``(seed, split, index)``, so
the same seed gives byte-identical shards regardless of sharding.

Optionally (``plain_fraction``) a share of the rows are GenEval-style *plain scenes* (:func:`sample_plain_scene`): the
distribution the unified model's GenEval-style scorer (:mod:`muse_hf.evaluation.geneval`) draws its prompts from, with
the scorer's phrasing. A fixed, hash-chosen quarter of those object sets is held out for scoring
(:func:`held_out_contents`): the scorer's prompts use only them, training scenes never, and no training caption is a
held-out prompt (:func:`held_out_prompts`).

This module is the parquet writer (:func:`build_shapes_dataset`, one sample by :func:`make_sample`) and the public
face of the scenes: the scene specification, sampling and rendering live in :mod:`muse_hf.data.scenes`, labels,
captions and edits in :mod:`muse_hf.data.captions`, plain scenes and the held-out split in
:mod:`muse_hf.data.plain_scenes`; their public names are importable from here as before.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import re
import shutil
import struct
import time
import zlib
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from muse_hf.compat import moved_attribute
from muse_hf.data.captions import (
    LABEL_NAMES,
    ZERO_SHOT_TEMPLATES,
    label_of,
    make_caption,
    make_edit,
    non_geneval_caption,
    zero_shot_prompts,
)
from muse_hf.data.plain_scenes import (
    HELD_OUT_FRACTION,
    PLAIN_BACKGROUND,
    PLAIN_CATEGORIES,
    PLAIN_OPTIONS,
    clear_relation,
    content_key,
    held_out_contents,
    held_out_prompts,
    is_held_out,
    plain_object,
    plain_prompt,
    plain_spots,
    sample_plain_scene,
)
from muse_hf.data.scenes import (
    BACKGROUND_PALETTE,
    BACKGROUNDS,
    COLOURS,
    SHAPES,
    SIZES,
    TEXTURES,
    Background,
    Scene,
    SceneObject,
    SceneOptions,
    object_records,
    render_background,
    render_scene,
    sample_scene,
)
from muse_hf.validation import PNG_SIGNATURE

__all__ = [
    "BACKGROUND_PALETTE",
    "BACKGROUNDS",
    "COLOURS",
    "HELD_OUT_FRACTION",
    "LABEL_NAMES",
    "PLAIN_BACKGROUND",
    "PLAIN_CATEGORIES",
    "PLAIN_OPTIONS",
    "SHAPES",
    "SIZES",
    "TEXTURES",
    "ZERO_SHOT_TEMPLATES",
    "Background",
    "Scene",
    "SceneObject",
    "build_shapes_dataset",
    "built_settings",
    "clear_relation",
    "content_key",
    "held_out_contents",
    "held_out_prompts",
    "is_held_out",
    "label_of",
    "plain_object",
    "plain_prompt",
    "plain_spots",
    "render_scene",
    "sample_plain_scene",
    "sample_scene",
    "shapes_features",
    "zero_shot_prompts",
]

SPLITS: tuple[str, ...] = ("train", "validation")
_SPLIT_CODE = {"train": 0, "validation": 1}
_PNG_LEVEL = 1  # fastest zlib level; for these flat images it is also about the smallest


# ------------------------------------------------------------------------------------------------------------ dataset
def shapes_features() -> datasets.Features:
    """The ``datasets.Features`` of the synthetic scenes."""
    obj = {
        "shape": datasets.Value("string"),
        "colour": datasets.Value("string"),
        "texture": datasets.Value("string"),
        "size": datasets.Value("string"),
        "bbox": datasets.List(datasets.Value("int32"), length=4),
        "centre": datasets.List(datasets.Value("float32"), length=2),
    }
    return datasets.Features(
        {
            "index": datasets.Value("int64"),
            "image": datasets.Image(),
            "caption": datasets.Value("string"),
            "label": datasets.ClassLabel(names=LABEL_NAMES),
            "mask": datasets.Image(),
            "objects": datasets.List(obj),
            "background": datasets.Value("string"),
            "source_image": datasets.Image(),
            "instruction": datasets.Value("string"),
            "target_image": datasets.Image(),
            "edit_type": datasets.Value("string"),
            "target_objects": datasets.List(obj),
        }
    )


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def _png(array: np.ndarray) -> bytes:
    """Encode an (H, W) or (H, W, 3) uint8 array as PNG (8-bit grey / RGB, filter 0, zlib level 1).

    A minimal writer of the PNG spec for exactly these two layouts: about 3x faster than PIL's encoder on
    64 px images (per-call overhead dominates there), deterministic, and read back bit-exactly by any PNG
    decoder (the tests decode with PIL).
    """
    if array.dtype != np.uint8 or not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)):
        raise ValueError(f"_png encodes (H, W) or (H, W, 3) uint8 arrays; got {array.shape} {array.dtype}")
    h, w = array.shape[:2]
    channels = 1 if array.ndim == 2 else 3
    rows = np.empty((h, 1 + w * channels), np.uint8)  # each scanline: filter byte 0 + raw pixels
    rows[:, 0] = 0
    rows[:, 1:] = array.reshape(h, w * channels)
    header = struct.pack(">IIBBBBB", w, h, 8, 0 if channels == 1 else 2, 0, 0, 0)
    return (
        PNG_SIGNATURE
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(rows.tobytes(), _PNG_LEVEL))
        + _png_chunk(b"IEND", b"")
    )


def make_sample(
    index: int, split: str, seed: int, image_size: int, options: SceneOptions, plain_fraction: float = 0.0
) -> dict[str, Any]:
    """Generate sample ``index`` of ``split`` (pure function of its arguments).

    With probability ``plain_fraction`` (drawn from the sample's own stream, so the other samples do not change) the
    sample is a GenEval-style plain scene (:func:`sample_plain_scene`, never a held-out object set) captioned with
    its prompt, and its editing pair is drawn with :data:`PLAIN_OPTIONS`. A regular sample whose drawn caption is a
    held-out GenEval-style prompt (a medium plain single object, "a red circle") is captioned
    "there is a red circle in the picture" instead.
    """
    plain_rng = np.random.default_rng([seed, _SPLIT_CODE[split], index, 1])
    if plain_fraction > 0 and plain_rng.random() < plain_fraction:
        _, caption, scene = sample_plain_scene(plain_rng, image_size, held_out=False)
        rng, options = plain_rng, PLAIN_OPTIONS
    else:
        rng = np.random.default_rng([seed, _SPLIT_CODE[split], index])
        scene = sample_scene(rng, image_size, options)
        caption = make_caption(scene, rng)
        if caption in held_out_prompts():
            caption = non_geneval_caption(scene)
    background = render_background(scene.background, image_size)
    image, mask = render_scene(scene, background)
    edit_type, instruction, target_scene = make_edit(scene, rng, options)
    target, target_mask = render_scene(target_scene, background)
    image_png = _png(image)
    main_obj = scene.objects[0]
    return {
        "index": index,
        "image": {"bytes": image_png, "path": None},
        "caption": caption,
        "label": label_of(main_obj.colour, main_obj.shape),
        "mask": {"bytes": _png(mask), "path": None},
        "objects": object_records(scene, mask),
        "background": scene.background.kind,
        "source_image": {"bytes": image_png, "path": None},
        "instruction": instruction,
        "target_image": {"bytes": _png(target), "path": None},
        "edit_type": edit_type,
        "target_objects": object_records(target_scene, target_mask),
    }


def _write_shard(job: tuple[str, int, int, int, int, SceneOptions, str, float]) -> int:
    """Generate rows ``[lo, hi)`` of a split and write them as one parquet shard; returns the Arrow bytes."""
    split, lo, hi, seed, image_size, opts, path, plain_fraction = job
    features = shapes_features()
    rows = [make_sample(i, split, seed, image_size, opts, plain_fraction) for i in range(lo, hi)]
    table = datasets.Dataset.from_dict({name: [r[name] for r in rows] for name in features}, features=features)
    table.to_parquet(path)
    return int(table.data.nbytes)


def _shard_bounds(n: int, num_shards: int) -> list[tuple[int, int]]:
    edges = [round(i * n / num_shards) for i in range(num_shards + 1)]
    return [(edges[i], edges[i + 1]) for i in range(num_shards)]


def _num_shards(n: int, max_shard_rows: int, min_shards: int) -> int:
    return max(1, min(n, max(min_shards, math.ceil(n / max_shard_rows))))


def build_shapes_dataset(
    out_dir: str | Path,
    num_train: int = 10_000,
    num_val: int = 1_000,
    image_size: int = 64,
    seed: int = 0,
    *,
    max_shard_rows: int = 2_500,
    min_shards: int = 4,
    options: SceneOptions | None = None,
    overwrite: bool = False,
    num_proc: int = 1,
    plain_fraction: float = 0.0,
) -> dict[str, Any]:
    """Write the synthetic scenes as parquet shards plus a ``README.md`` dataset card.

    Layout: ``out_dir/data/{split}-{i:05d}-of-{n:05d}.parquet`` and ``out_dir/README.md`` (YAML front matter with
    ``configs`` / ``data_files``, ``dataset_info`` features and splits, license). ``datasets.load_dataset(out_dir,
    streaming=True)`` reads it, and ``DatasetDict.push_to_hub`` / ``huggingface_hub.upload_folder`` can publish it.

    Args:
        out_dir: Output folder (created).
        num_train: Samples in the ``train`` split.
        num_val: Samples in the ``validation`` split (0 to omit it).
        image_size: Image side in pixels (>= 32; objects and textures scale with it).
        seed: Master seed. Same seed and arguments -> byte-identical files.
        max_shard_rows: Rows per shard at most.
        min_shards: At least this many shards per split (for DataLoader workers / ``split_dataset_by_node``).
        options: Scene distribution knobs (:class:`SceneOptions`).
        overwrite: Replace an existing dataset in ``out_dir`` (otherwise an existing one is an error).
        num_proc: Worker processes (one shard per task); the output is identical for any value.
        plain_fraction: Expected share of GenEval-style plain scenes (:func:`sample_plain_scene`: 1-3 plain medium
            objects, separated, white background, captioned with the GenEval-style prompt, with their own editing
            pairs), the distribution the unified model is scored on. Their object sets are never the held-out ones
            (:func:`held_out_contents`), and no caption of any sample is a held-out prompt (:func:`held_out_prompts`).
            0 keeps every other sample byte-identical to a build without plain scenes.

    Returns:
        Summary: ``{"out_dir", "splits": {split: {"num_examples", "files"}}, "seconds", "samples_per_second"}``.
    """
    opts = options or SceneOptions()
    opts.validate()
    if image_size < 32:
        raise ValueError(f"image_size must be >= 32 so the smallest objects stay recognisable; got {image_size}")
    if num_train < 1 or num_val < 0:
        raise ValueError(f"need num_train >= 1 and num_val >= 0; got num_train={num_train}, num_val={num_val}")
    if max_shard_rows < 1 or min_shards < 1:
        raise ValueError(f"max_shard_rows and min_shards must be >= 1; got {max_shard_rows}, {min_shards}")
    if not 0.0 <= plain_fraction <= 1.0:
        raise ValueError(f"plain_fraction must be in [0, 1]; got {plain_fraction}")
    out = Path(out_dir)
    data_dir = out / "data"
    if data_dir.exists() and any(data_dir.iterdir()):
        if not overwrite:
            raise ValueError(f"{data_dir} already holds files; pass overwrite=True (CLI: --overwrite) to replace them.")
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    features = shapes_features()
    t0 = time.perf_counter()
    summary: dict[str, Any] = {"out_dir": str(out), "splits": {}}
    jobs = []
    for split, n in (("train", num_train), ("validation", num_val)):
        if n == 0:
            continue
        shards = _num_shards(n, max_shard_rows, min_shards)
        summary["splits"][split] = {"num_examples": n, "num_bytes": 0, "files": []}
        for k, (lo, hi) in enumerate(_shard_bounds(n, shards)):
            path = data_dir / f"{split}-{k:05d}-of-{shards:05d}.parquet"
            jobs.append((split, lo, hi, seed, image_size, opts, str(path), float(plain_fraction)))
            summary["splits"][split]["files"].append(str(path.relative_to(out)))
    bars_were_disabled = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()  # one "Creating parquet" bar per shard is noise
    try:
        if num_proc > 1:
            ctx = multiprocessing.get_context("spawn")
            with ctx.Pool(min(num_proc, len(jobs)), initializer=datasets.disable_progress_bars) as pool:
                sizes = pool.map(_write_shard, jobs, chunksize=1)
        else:
            sizes = [_write_shard(job) for job in jobs]
    finally:
        if not bars_were_disabled:
            datasets.enable_progress_bars()
    for job, nbytes in zip(jobs, sizes):
        summary["splits"][job[0]]["num_bytes"] += nbytes
    _write_card(out, summary, features, image_size, seed, opts, plain_fraction)
    seconds = time.perf_counter() - t0
    total = num_train + num_val
    summary.update(seconds=seconds, samples_per_second=total / max(seconds, 1e-9))
    return summary


def built_settings(out_dir: str | Path) -> dict[str, Any] | None:
    """The generation settings recorded in a built set's ``README.md`` (``None`` when it has none, e.g. another
    dataset). Sets built before ``plain_fraction`` existed report ``plain_fraction`` 0."""
    readme = Path(out_dir) / "README.md"
    if not readme.is_file():
        return None
    found = re.search(r"^Generation settings: `(\{.*\})`\.$", readme.read_text(encoding="utf-8"), re.MULTILINE)
    if found is None:
        return None
    return {"plain_fraction": 0.0, **json.loads(found.group(1))}


def _write_card(
    out: Path,
    summary: dict[str, Any],
    features: datasets.Features,
    image_size: int,
    seed: int,
    opts: SceneOptions,
    plain_fraction: float = 0.0,
) -> None:
    """README.md with YAML front matter that ``datasets`` and the Hub understand."""
    import yaml
    from huggingface_hub import DatasetCard

    split_dict = datasets.SplitDict()
    for split, info in summary["splits"].items():
        split_dict.add(datasets.SplitInfo(name=split, num_bytes=info["num_bytes"], num_examples=info["num_examples"]))
    # DatasetInfo._to_yaml_dict is the serialisation datasets itself uses for dataset cards (push_to_hub).
    info_yaml = datasets.DatasetInfo(features=features, splits=split_dict)._to_yaml_dict()
    n_total = sum(v["num_examples"] for v in summary["splits"].values())
    size_cat = "n<1K" if n_total < 1_000 else "1K<n<10K" if n_total < 10_000 else "10K<n<100K"
    meta = {
        "license": "cc0-1.0",
        "pretty_name": "MUSE synthetic scenes",
        "task_categories": ["text-to-image", "image-to-text", "image-classification", "image-segmentation"],
        "tags": ["synthetic", "muse_hf", "image-editing"],
        "size_categories": [size_cat],
        "configs": [
            {
                "config_name": "default",
                "data_files": [{"split": split, "path": f"data/{split}-*.parquet"} for split in summary["splits"]],
            }
        ],
        "dataset_info": info_yaml,
    }
    front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, width=1000)
    settings = json.dumps(
        {"image_size": image_size, "seed": seed, **opts.__dict__, "plain_fraction": plain_fraction}, sort_keys=True
    )
    plain = (
        f"""
A share of about {plain_fraction:.0%} of the rows are GenEval-style plain scenes (the distribution the unified model is
scored on): 1-3 plain medium objects with distinct shapes and colours, separated, on a white background, captioned
with the scorer's own phrasing ("a red circle", "a photo of a green star", "two objects on a white background: a red
circle and a blue square", "a blue square left of a red circle"), with editing pairs of the same kind. In these rows
every object is medium, so `label` is the first-named object rather than the strictly largest.
"""
        if plain_fraction > 0
        else ""
    )
    held = (
        f"Held out for scoring: {HELD_OUT_FRACTION:.0%} of the GenEval-style object sets, chosen by a keyed hash "
        "(`muse_hf.data.shapes.held_out_contents`), are never drawn as plain scenes, and no caption is one of their "
        "prompts (`held_out_prompts`)."
    )
    body = f"""
# MUSE synthetic scenes

Deterministic synthetic scenes generated by `muse_hf.data.build_shapes_dataset` (command:
`muse-hf build-data --output_dir DIR --num_train N --num_val M --image_size S --seed K [--plain_fraction F]`). They let the MUSE tokenizer
and unified model train and be measured on a CPU with no network.

Generation settings: `{settings}`.

## Content

Each row is a {image_size}x{image_size} scene of 1-4 objects: {len(SHAPES)} shapes ({", ".join(SHAPES)}) x
{len(COLOURS)} colours ({", ".join(COLOURS)}) x 3 sizes, plain or {", ".join(TEXTURES[1:])}, on plain, graded,
striped, checkered or noisy backgrounds.
{plain}
{held}

| column | content |
|---|---|
| `image` | the scene (PNG) |
| `caption` | names every object as "[size] [texture] colour shape" with its relation to the main object |
| `label` | class of the main (largest) object, "colour shape" ({len(LABEL_NAMES)} classes) |
| `mask` | instance mask PNG: 0 background, i+1 = visible pixels of `objects[i]` |
| `objects` | shape, colour, texture, size, visible bbox [x0, y0, x1, y1] (inclusive), centre [x, y] |
| `background` | background kind |
| `source_image`, `instruction`, `target_image`, `edit_type`, `target_objects` | an editing pair: recolour / move / add / remove one object; the target differs from the source only where the edited object was or is |

Colour alone does not segment these scenes: objects can be textured (two colours inside one instance), neighbours
can share a colour and touch, objects occlude each other, and backgrounds are often textured. Attention-segmentation
mIoU against `mask` therefore measures structure.

## Use

```python
from datasets import load_dataset
ds = load_dataset("PATH_OR_REPO", streaming=True, split="train")
```

License: CC0-1.0 (generated data, no third-party content).
"""
    DatasetCard(f"---\n{front}---\n{body}").save(out / "README.md")


# ------------------------------------------------------------------------------------------------------------ CLI


def __getattr__(name: str) -> Any:
    # ``main`` (the ``build-data`` parser) is ``muse_hf.cli.build_data_main`` (``muse-hf build-data``).
    return moved_attribute(__name__, name, {"main": "muse_hf.cli:build_data_main"})
