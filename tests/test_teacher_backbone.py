"""The embedded default's one-pass shortcut: when the structural teacher *is* the frozen backbone (DINOv2-S both),
``teacher(..., return_patch_tokens=True)`` gives the teacher map and the backbone features, and encoding with those
features equals encoding from pixels."""

from __future__ import annotations

import pytest
import torch

from muse_hf.models import MuseImageProcessor, MuseTokenizerModel
from muse_hf.objectives import StructuralTeacher
from muse_hf.training.tokenizer.feature_cache import teacher_is_frozen_backbone


def _pair(offline_env):
    torch.manual_seed(0)
    model = MuseTokenizerModel.from_pretrained_components("dinov2-s-offline", preset="tiny-dinov2", image_size=112)
    model.eval()
    teacher = StructuralTeacher.from_pretrained("dinov2-s-offline")
    return model, teacher, MuseImageProcessor(size={"height": 112, "width": 112})


def test_one_pass_equals_two(offline_env) -> None:
    model, teacher, processor = _pair(offline_env)
    assert teacher_is_frozen_backbone(teacher, model, processor)
    mean = torch.tensor(processor.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(processor.image_std).view(1, 3, 1, 1)
    pixels = (torch.rand(2, 3, 112, 112) - mean) / std  # normalised, as the processor returns them
    grid = model.config.latent_grid
    unit = processor.to_unit_range(pixels)
    with torch.no_grad():
        layers = model.config.feature_layers
        assert layers == [4, -1]  # the preset reads a shallow layer beside the output
        attention, features = teacher(unit, grid_size=grid, return_patch_tokens=True, feature_layers=layers)
        assert torch.allclose(attention, teacher(unit, grid_size=grid))
        shared = model.encode(pixels, output_attentions=True, vision_features=features)
        own = model.encode(pixels, output_attentions=True)
    assert features.shape == (2, grid[0] * grid[1], 2 * 384)
    assert torch.allclose(shared.latents, own.latents, atol=1e-4)
    assert torch.allclose(shared.attentions[-1], own.attentions[-1], atol=1e-5)


def test_shortcut_refused_when_not_the_same_network(offline_env) -> None:
    model, teacher, processor = _pair(offline_env)
    model.vision_model.requires_grad_(True)  # a trainable backbone drifts from the teacher
    assert not teacher_is_frozen_backbone(teacher, model, processor)
    model.vision_model.requires_grad_(False)
    with torch.no_grad():
        model.vision_model.encoder.layer[3].attention.q_proj.weight[0, 0] += 1e-3
    assert not teacher_is_frozen_backbone(teacher, model, processor)


def test_vision_features_shape_is_checked(offline_env) -> None:
    model, _, _ = _pair(offline_env)
    with pytest.raises(ValueError, match="vision_features"):
        model.encode(torch.zeros(1, 3, 112, 112), vision_features=torch.zeros(1, 10, 384))


def test_preset_image_size_wins_over_the_offline_default(offline_env) -> None:
    model = MuseTokenizerModel.from_pretrained_components("dinov2-s-offline", preset="tiny-dinov2")
    assert model.config.image_size == 112 and model.config.latent_grid == (8, 8)
    model = MuseTokenizerModel.from_pretrained_components("dinov2-s-offline", preset="tiny-dinov2", image_size=224)
    assert model.config.image_size == 224


def test_shortcut_holds_for_any_teacher_layers_but_not_another_input_size(offline_env) -> None:
    model, _, processor = _pair(offline_env)
    several = StructuralTeacher.from_pretrained("dinov2-s-offline", layers=(-3, -2, -1))
    assert teacher_is_frozen_backbone(several, model, processor)  # the shared pass runs every layer anyway
    bigger = StructuralTeacher.from_pretrained("dinov2-s-offline", image_size=224)
    assert not teacher_is_frozen_backbone(bigger, model, processor)  # another input: other features
