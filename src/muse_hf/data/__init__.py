"""muse_hf.data: the embedded synthetic scenes, the scikit-image photo check set, and robust streaming loaders.

* :func:`build_shapes_dataset` writes the deterministic synthetic scenes (parquet shards + dataset card);
  ``muse-hf build-data`` / ``python -m muse_hf.data`` is its CLI. :data:`LABEL_NAMES` / :func:`zero_shot_prompts`
  give the class names and prompts for zero-shot evaluation.
* :func:`photo_check_set` returns crops of scikit-image's photos for reconstruction checks on natural images.
* :func:`load_image_text_stream` / :func:`load_edit_stream` stream (local shards, webdataset tars or Hub ids) with
  decoding guarded and skips counted; :func:`make_dataloader` batches them with workers, skip accounting and exact
  resume (``state_dict`` / ``load_state_dict``).
"""

from muse_hf.data.photos import PHOTO_CAPTIONS, photo_check_dataset, photo_check_set
from muse_hf.data.shapes import (
    COLOURS,
    LABEL_NAMES,
    SHAPES,
    ZERO_SHOT_TEMPLATES,
    SceneOptions,
    build_shapes_dataset,
    label_of,
    render_scene,
    sample_scene,
    shapes_features,
    zero_shot_prompts,
)
from muse_hf.data.streaming import (
    DEFAULT_MAX_PIXELS,
    SKIP_REASONS,
    ImageTextStream,
    StreamingDataLoader,
    collate_samples,
    decode_image,
    load_edit_stream,
    load_image_text_stream,
    make_dataloader,
)

__all__ = [
    "COLOURS",
    "DEFAULT_MAX_PIXELS",
    "LABEL_NAMES",
    "PHOTO_CAPTIONS",
    "SHAPES",
    "SKIP_REASONS",
    "ZERO_SHOT_TEMPLATES",
    "ImageTextStream",
    "SceneOptions",
    "StreamingDataLoader",
    "build_shapes_dataset",
    "collate_samples",
    "decode_image",
    "label_of",
    "load_edit_stream",
    "load_image_text_stream",
    "make_dataloader",
    "photo_check_dataset",
    "photo_check_set",
    "render_scene",
    "sample_scene",
    "shapes_features",
    "zero_shot_prompts",
]
