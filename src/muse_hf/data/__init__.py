"""muse_hf.data: the embedded synthetic scenes, the scikit-image photo check set, and robust streaming loaders.

* :func:`build_shapes_dataset` writes the deterministic synthetic scenes (parquet shards + dataset card);
  ``muse-hf build-data`` / ``python -m muse_hf.data`` is its CLI. :data:`LABEL_NAMES` / :func:`zero_shot_prompts`
  give the class names and prompts for zero-shot evaluation. Modules: ``scenes`` (scene specification, sampling,
  rendering), ``captions`` (labels, captions, edits), ``plain_scenes`` (GenEval-style scenes, the held-out split),
  ``shapes`` (the parquet writer; it re-exports the other three).
* :func:`photo_check_set` returns crops of scikit-image's photos for reconstruction checks on natural images.
* :func:`load_image_text_stream` / :func:`load_edit_stream` stream (local shards, webdataset tars or Hub ids) with
  decoding guarded and skips counted, both configured by one :class:`StreamOptions`; :func:`make_dataloader` batches
  them with workers, skip accounting and exact resume (``state_dict`` / ``load_state_dict``). Modules: ``decoding``,
  ``sources``, ``streams``, ``tensor_streams``, ``dataloader`` (``streaming`` re-exports them).

Names are resolved lazily so that building the synthetic data does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY: dict[str, str] = {
    **dict.fromkeys(["PHOTO_CAPTIONS", "photo_check_dataset", "photo_check_set"], "photos"),
    **dict.fromkeys(["COLOURS", "SHAPES", "SceneOptions", "render_scene", "sample_scene"], "scenes"),
    **dict.fromkeys(["LABEL_NAMES", "ZERO_SHOT_TEMPLATES", "label_of", "zero_shot_prompts"], "captions"),
    **dict.fromkeys(["build_shapes_dataset", "shapes_features"], "shapes"),
    **dict.fromkeys(["DEFAULT_MAX_PIXELS", "SKIP_REASONS", "decode_image"], "decoding"),
    **dict.fromkeys(["ImageTextStream", "StreamOptions", "load_edit_stream", "load_image_text_stream"], "streams"),
    **dict.fromkeys(
        ["TensorRowStream", "TensorShardWriter", "load_tensor_stream", "write_tensor_shard"], "tensor_streams"
    ),
    **dict.fromkeys(["StreamingDataLoader", "collate_samples", "make_dataloader"], "dataloader"),
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_LAZY))
