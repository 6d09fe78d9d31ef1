"""The embedded preset's CPU decoder (``decoder_type="patch"``) and backbone feature layers (``vision_feature_layer``)."""

from __future__ import annotations

import pytest
import torch

from muse_hf.models import MusePatchDecoder, MuseTokenizerConfig, MuseTokenizerModel, select_feature_layers

PATCH = {"hidden_size": 32, "num_layers": 2, "refine_channels": 8}


def tiny(**overrides) -> MuseTokenizerConfig:
    return MuseTokenizerConfig.from_preset("tiny", decoder_type="patch", decoder_config=dict(PATCH), **overrides)


def test_patch_decoder_maps_one_latent_cell_to_one_patch() -> None:
    dec = MusePatchDecoder(latent_channels=4, upsampling_factor=14, hidden_size=16, num_layers=1, refine_channels=0)
    z = torch.zeros(1, 4, 3, 3, requires_grad=True)
    out = dec(z)
    assert out.shape == (1, 3, 42, 42)
    out[0, :, 0:14, 14:28].sum().backward()  # a pixel patch depends on its cell's 3x3 neighbourhood only
    touched = z.grad.abs().sum(dim=(0, 1)) > 0
    assert touched[0].tolist() == [True, True, True] and touched[2].tolist() == [False, False, False]


def test_tokenizer_with_patch_decoder_reconstructs_at_input_size_and_round_trips(tmp_path) -> None:
    torch.manual_seed(0)
    model = MuseTokenizerModel(tiny()).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = model(x)
    assert out.sample.shape == x.shape and out.latents.shape == (2, 32, *model.config.latent_grid)
    assert isinstance(model.decoder, MusePatchDecoder)
    model.save_pretrained(tmp_path)
    again = MuseTokenizerModel.from_pretrained(tmp_path).eval()
    assert again.config.decoder_type == "patch"
    with torch.no_grad():
        assert torch.equal(again(x).sample, out.sample)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"decoder_type": "vqgan"}, "decoder_type"),
        ({"decoder_type": "patch", "decoder_config": {"decoder_block_types": ["ResBlock"]}}, "MusePatchDecoder"),
        ({"vision_feature_layer": 99}, "vision_feature_layer"),
        ({"vision_feature_layer": [1, 1]}, "vision_feature_layer"),
        ({"vision_feature_layer": []}, "vision_feature_layer"),
        ({"vision_feature_layer": [0], "placement": "replace_last"}, "replace_last"),
    ],
)
def test_bad_decoder_or_feature_layer_settings_are_refused(overrides, message) -> None:
    with pytest.raises(ValueError, match=message):
        MuseTokenizerConfig.from_preset("tiny", **overrides)


def test_feature_layers_are_normalised_hidden_states_concatenated() -> None:
    torch.manual_seed(0)
    model = MuseTokenizerModel(tiny(vision_feature_layer=[1, -1])).eval()
    width = model.config.vision_config.hidden_size
    assert model.adapter.proj.in_features == 4 * 2 * width  # 2x2 unshuffle x two layers
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        feats = model.vision_features(x)
        ref = model.vision_model(pixel_values=x, output_hidden_states=True)
        expected = torch.cat([model.vision_model.layernorm(ref.hidden_states[1]), ref.last_hidden_state], dim=-1)
        assert torch.allclose(feats, expected[:, 1:], atol=1e-6)
        assert torch.allclose(select_feature_layers(ref, [-1], model.vision_model.layernorm), ref.last_hidden_state)
        shared = model.encode(x, vision_features=feats).latents
        assert torch.allclose(shared, model.encode(x).latents, atol=1e-6)
        with pytest.raises(ValueError, match="vision_features"):
            model.encode(x, vision_features=feats[..., :width])
