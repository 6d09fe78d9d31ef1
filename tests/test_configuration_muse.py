"""MuseTokenizerConfig: presets, derived values, JSON round trip, validation messages."""

from __future__ import annotations

import json

import pytest
from transformers import InternVLVisionConfig

from muse_hf.models import PRESETS, MuseTokenizerConfig


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_build_and_have_consistent_shapes(name: str) -> None:
    cfg = MuseTokenizerConfig.from_preset(name)
    assert cfg.model_type == "muse_tokenizer"
    assert isinstance(cfg.vision_config, InternVLVisionConfig)
    assert cfg.spatial_compression_ratio == cfg.patch_size * cfg.unshuffle_factor
    h, w = cfg.image_hw
    assert cfg.latent_grid == (h // cfg.spatial_compression_ratio, w // cfg.spatial_compression_ratio)
    assert cfg.decoder_config["latent_channels"] == cfg.latent_channels
    assert cfg.semantic_layers == [cfg.num_synergistic_blocks - 1]


def test_paper_preset_shapes() -> None:
    cfg = MuseTokenizerConfig.from_preset("muse-1b")
    assert (cfg.num_synergistic_blocks, cfg.hidden_size, cfg.num_attention_heads, cfg.latent_channels) == (
        6,
        512,
        8,
        32,
    )
    assert cfg.vision_config.hidden_size == 1024 and cfg.vision_config.num_hidden_layers == 24
    assert cfg.latent_grid == (16, 16)  # 448 px / patch 14 / 2 -> 256 tokens, the paper's N
    assert cfg.topology_layers == [5]  # authors' code: topology on the last block
    assert cfg.decoder_upsampling_factor == 32  # DC-AE f32: 16x16 -> 512 px, resized back to 448
    assert MuseTokenizerConfig.from_preset("muse-3b").vision_config.hidden_size == 1024
    tiny = MuseTokenizerConfig.from_preset("tiny")
    assert tiny.topology_layers == [0, 1] and tiny.latent_grid == (8, 8)


def test_preset_rules_follow_overrides() -> None:
    cfg = MuseTokenizerConfig.from_preset("muse-1b", num_synergistic_blocks=4)
    assert cfg.topology_layers == [3] and cfg.semantic_layers == [3]
    cfg = MuseTokenizerConfig.from_preset("tiny", num_synergistic_blocks=3, topology_layers=[-1, 0])
    assert cfg.topology_layers == [0, 2]


def test_json_round_trip(tmp_path) -> None:
    cfg = MuseTokenizerConfig.from_preset("tiny", routing="two_stream", spectral_filter_alpha=0.1, grad_scale=0.5)
    cfg.save_pretrained(tmp_path)
    loaded = MuseTokenizerConfig.from_pretrained(tmp_path)
    assert loaded.to_dict() == cfg.to_dict()
    assert loaded.routing == "two_stream" and loaded.spectral_filter_alpha == 0.1
    assert isinstance(loaded.vision_config, InternVLVisionConfig)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"routing": "bogus"}, "routing"),
        ({"placement": "middle"}, "placement"),
        ({"num_attention_heads": 3}, "num_attention_heads"),
        ({"num_attention_heads": 64}, "head dim"),  # 128 / 64 = 2: not a multiple of 4 (2D RoPE)
        ({"image_size": 60}, "image_size"),
        ({"topology_layers": [2]}, "topology_layers"),
        ({"semantic_layers": [-3]}, "semantic_layers"),
        ({"placement": "replace_last", "num_synergistic_blocks": 5}, "num_synergistic_blocks"),
        ({"decoder_config": {"latent_channels": 16}}, "latent_channels"),
        ({"decoder_config": {"no_such_kwarg": 1}}, "decoder_config"),
        ({"grad_scale": -1.0}, "grad_scale"),
        ({"spectral_filter_alpha": -0.5}, "spectral_filter_alpha"),
        ({"num_synergistic_blocks": 0}, "num_synergistic_blocks"),
    ],
)
def test_validation_names_the_field(overrides: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        MuseTokenizerConfig.from_preset("tiny", **overrides)


def test_unknown_preset() -> None:
    with pytest.raises(ValueError, match="Unknown preset"):
        MuseTokenizerConfig.from_preset("huge")


def test_from_preset_refuses_unknown_keys_but_from_pretrained_tolerates_them(tmp_path) -> None:
    """A misspelt field used to build a decoupled config with a stray `routnig` attribute."""
    with pytest.raises(ValueError, match=r"Unknown key 'routnig' \(did you mean 'routing'\?\)"):
        MuseTokenizerConfig.from_preset("tiny", routnig="shared")
    with pytest.raises(ValueError, match=r"'hiden_size' \(did you mean 'hidden_size'\?\) for the vision_config"):
        MuseTokenizerConfig.from_preset("tiny", vision_config={"hiden_size": 64})
    # a saved config from another version may carry keys this one does not know: loading keeps working
    MuseTokenizerConfig.from_preset("tiny").save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**saved, "future_field": 1}))
    assert MuseTokenizerConfig.from_pretrained(tmp_path).routing == "decoupled"


def test_replace_last_uses_backbone_width_and_heads() -> None:
    cfg = MuseTokenizerConfig.from_preset("tiny", placement="replace_last")
    assert cfg.block_width == cfg.vision_config.hidden_size
    assert cfg.block_heads == cfg.vision_config.num_attention_heads
    bad = dict(PRESETS["tiny"]["vision_config"], num_attention_heads=3)
    with pytest.raises(ValueError, match="vision_config.num_attention_heads"):
        MuseTokenizerConfig.from_preset("tiny", placement="replace_last", vision_config=bad)
