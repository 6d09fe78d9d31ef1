"""`unshuffle_factor`: the latent grid is the backbone grid divided by the factor, and bad values are refused."""

import pytest
import torch

from muse_hf.models import MuseTokenizerConfig, MuseTokenizerModel


@pytest.mark.parametrize("factor", [1, 2])
def test_latent_grid_follows_unshuffle_factor(factor: int) -> None:
    torch.manual_seed(0)
    config = MuseTokenizerConfig.from_preset("tiny", unshuffle_factor=factor)
    model = MuseTokenizerModel(config).eval()
    pixels = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = model(pixels, output_attentions=True)
    side = 64 // 4 // factor  # patch 4
    assert config.latent_grid == (side, side)
    assert out.latents.shape == (2, config.latent_channels, side, side)
    assert out.sample.shape == (2, 3, 64, 64)
    assert out.attentions[-1].shape[-1] == side * side
    assert model.adapter.proj.in_features == factor**2 * config.vision_config.hidden_size


def test_unshuffle_factor_is_validated() -> None:
    with pytest.raises(ValueError, match="unshuffle_factor"):
        MuseTokenizerConfig.from_preset("tiny", unshuffle_factor=3)
