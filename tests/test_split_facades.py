"""The modules split for size keep their old import paths: every public name they had still imports from there.

``muse_hf.data.shapes`` (now also ``scenes`` / ``captions`` / ``plain_scenes``), ``muse_hf.data.streaming`` (now
``decoding`` / ``sources`` / ``streams`` / ``tensor_streams`` / ``dataloader``) and ``muse_hf.evaluation.evaluate``
(now also ``inputs`` / ``batch_metrics`` / ``probes``) re-export what moved; the names below are the public names each
had before the split (its module-level logger aside).
"""

from __future__ import annotations

import importlib

import pytest

OLD_PUBLIC_NAMES: dict[str, tuple[str, ...]] = {
    "muse_hf.data.shapes": (
        "BACKGROUNDS",
        "BACKGROUND_PALETTE",
        "Background",
        "COLOURS",
        "HELD_OUT_FRACTION",
        "LABEL_NAMES",
        "PLAIN_BACKGROUND",
        "PLAIN_CATEGORIES",
        "PLAIN_OPTIONS",
        "SHAPES",
        "SIZES",
        "SPLITS",
        "Scene",
        "SceneObject",
        "SceneOptions",
        "TEXTURES",
        "ZERO_SHOT_TEMPLATES",
        "build_shapes_dataset",
        "built_settings",
        "clear_relation",
        "content_key",
        "held_out_contents",
        "held_out_prompts",
        "is_held_out",
        "label_of",
        "make_caption",
        "make_edit",
        "make_sample",
        "plain_object",
        "plain_prompt",
        "plain_spots",
        "render_scene",
        "sample_plain_scene",
        "sample_scene",
        "shapes_features",
        "zero_shot_prompts",
    ),
    "muse_hf.data.streaming": (
        "CAPTION_COLUMNS",
        "DEFAULT_MAX_PIXELS",
        "EDIT_SOURCE_COLUMNS",
        "EDIT_TARGET_COLUMNS",
        "EDIT_TEXT_COLUMNS",
        "IMAGE_COLUMNS",
        "ImageTextStream",
        "LABEL_COLUMNS",
        "MASK_COLUMNS",
        "SHAPE_SUFFIX",
        "SKIP_REASONS",
        "SkipSample",
        "StreamingDataLoader",
        "TEXT_FIELDS",
        "TensorRowStream",
        "TensorShardWriter",
        "collate_samples",
        "decode_image",
        "load_edit_stream",
        "load_image_text_stream",
        "load_tensor_stream",
        "make_dataloader",
        "write_tensor_shard",
    ),
    "muse_hf.evaluation.evaluate": (
        "evaluate_tokenizer",
        "gradient_probe",
        "measure_throughput",
    ),
}
#: Where the moved names live now (each façade's names come from these modules or the façade itself).
NEW_HOMES: dict[str, tuple[str, ...]] = {
    "muse_hf.data.shapes": ("muse_hf.data.scenes", "muse_hf.data.captions", "muse_hf.data.plain_scenes"),
    "muse_hf.data.streaming": (
        "muse_hf.data.decoding",
        "muse_hf.data.sources",
        "muse_hf.data.streams",
        "muse_hf.data.tensor_streams",
        "muse_hf.data.dataloader",
    ),
    "muse_hf.evaluation.evaluate": ("muse_hf.evaluation.batch_metrics", "muse_hf.evaluation.probes"),
}


@pytest.mark.parametrize("module", sorted(OLD_PUBLIC_NAMES))
def test_old_path_keeps_every_public_name(module: str) -> None:
    old = importlib.import_module(module)
    missing = [name for name in OLD_PUBLIC_NAMES[module] if not hasattr(old, name)]
    assert not missing, f"{module} lost {missing}"
    homes = [importlib.import_module(m) for m in NEW_HOMES[module]]
    moved = [name for name in OLD_PUBLIC_NAMES[module] if any(hasattr(h, name) for h in homes)]
    assert moved, f"nothing of {module} moved to {NEW_HOMES[module]}"
    for name in moved:  # a re-export is the moved object itself, not a copy
        for home in homes:
            if hasattr(home, name):
                assert getattr(old, name) is getattr(home, name), f"{module}.{name} is not {home.__name__}.{name}"
