"""Structural and mask-affinity teachers (issue 3, item 1)."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import (
    CLIPConfig,
    CLIPModel,
    CLIPVisionConfig,
    CLIPVisionModel,
    Dinov2Config,
    Dinov2Model,
    Dinov2WithRegistersConfig,
    Dinov2WithRegistersModel,
    DINOv3ViTConfig,
    DINOv3ViTModel,
)

from muse_hf.objectives import MaskAffinityTeacher, StructuralTeacher, interpolate_attention

TINY = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    patch_size=2,
    image_size=32,
)

TEACHERS = {
    "dinov3": (DINOv3ViTConfig, DINOv3ViTModel, dict(num_register_tokens=4)),
    "dinov2": (Dinov2Config, Dinov2Model, {}),
    "dinov2_registers": (Dinov2WithRegistersConfig, Dinov2WithRegistersModel, dict(num_register_tokens=3)),
    "clip": (CLIPVisionConfig, CLIPVisionModel, {}),
}


@pytest.fixture(scope="module")
def saved_teachers(tmp_path_factory) -> dict[str, str]:
    torch.manual_seed(0)
    paths = {}
    for name, (config_cls, model_cls, extra) in TEACHERS.items():
        path = tmp_path_factory.mktemp(name)
        model_cls(config_cls(**TINY, **extra)).save_pretrained(path)
        paths[name] = str(path)
    return paths


@pytest.mark.parametrize("name", list(TEACHERS))
@pytest.mark.parametrize(
    "teacher_grid,student_grid",
    [((14, 14), (8, 8)), ((16, 16), (8, 8)), ((37, 37), (8, 8)), ((12, 20), (6, 10))],
)
def test_rows_sum_to_one_at_student_grid(saved_teachers, name, teacher_grid, student_grid):
    torch.manual_seed(1)
    size = (teacher_grid[0] * TINY["patch_size"], teacher_grid[1] * TINY["patch_size"])
    teacher = StructuralTeacher.from_pretrained(saved_teachers[name], image_size=size)
    assert teacher.model.config._attn_implementation == "eager"
    images = torch.rand(2, 3, 40, 64)
    attn = teacher(images, grid_size=student_grid)
    n = student_grid[0] * student_grid[1]
    assert attn.shape == (2, 1, n, n)
    assert attn.dtype == torch.float32
    assert (attn >= 0).all()
    torch.testing.assert_close(attn.sum(-1), torch.ones(2, 1, n), atol=1e-5, rtol=0)
    assert not attn.requires_grad


@pytest.mark.parametrize("name", ["dinov3", "dinov2_registers", "dinov2", "clip"])
def test_prefix_tokens_dropped_on_both_axes(saved_teachers, name):
    """Same grid for teacher and student: output = the model's patch-to-patch block, renormalised, heads averaged."""
    torch.manual_seed(2)
    teacher = StructuralTeacher.from_pretrained(saved_teachers[name], layers=(0, -1), average_heads=False)
    images = torch.rand(1, 3, 16, 24)  # 8x12 patches of size 2
    out = teacher(images, grid_size=(8, 12))
    assert out.shape == (1, 4, 96, 96)
    x = (images - teacher.image_mean) / teacher.image_std
    extra = {"interpolate_pos_encoding": True} if name == "clip" else {}
    attentions = teacher.model(pixel_values=x, output_attentions=True, **extra).attentions
    prefix = attentions[0].shape[-1] - 96
    assert prefix == 1 + TEACHERS[name][2].get("num_register_tokens", 0)
    expected = []
    for layer in (0, -1):
        block = attentions[layer][..., prefix:, prefix:]
        expected.append(block / block.sum(-1, keepdim=True))
    torch.testing.assert_close(out, torch.stack(expected).mean(0), atol=1e-5, rtol=1e-4)


def test_layer_list_and_head_options(saved_teachers):
    teacher = StructuralTeacher.from_pretrained(
        saved_teachers["dinov3"], layers=(0, 1), average_heads=False, layer_reduction="none", image_size=24
    )
    maps = teacher(torch.rand(2, 3, 32, 48), grid_size=(4, 6))
    assert isinstance(maps, list) and len(maps) == 2
    assert all(m.shape == (2, 4, 24, 24) for m in maps)
    assert not torch.allclose(maps[0], maps[1])
    # image_size=24 sets the shorter side: 32x48 -> 24x36 -> a 12x18 teacher grid (aspect kept)
    assert teacher._input_size(32, 48) == (24, 36)


def test_preprocessor_config_stats_and_clip_defaults(saved_teachers, tmp_path):
    path = saved_teachers["dinov2"]
    with open(f"{path}/preprocessor_config.json", "w") as f:
        json.dump({"image_mean": [0.1, 0.2, 0.3], "image_std": [0.4, 0.5, 0.6]}, f)
    teacher = StructuralTeacher.from_pretrained(path)
    torch.testing.assert_close(teacher.image_std.flatten(), torch.tensor([0.4, 0.5, 0.6]))
    clip = StructuralTeacher.from_pretrained(saved_teachers["clip"])
    assert abs(float(clip.image_mean.flatten()[0]) - 0.48145466) < 1e-6
    # a full CLIP checkpoint loads its vision tower
    full = tmp_path / "clip_full"
    text = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64, vocab_size=99)
    CLIPModel(CLIPConfig(text_config=text, vision_config=dict(TINY))).save_pretrained(full)
    teacher = StructuralTeacher.from_pretrained(full)
    assert type(teacher.model).__name__ == "CLIPVisionModel"
    assert teacher(torch.rand(1, 3, 32, 32), grid_size=4).shape == (1, 1, 16, 16)


def test_missing_teacher_fails_fast_with_instructions(tmp_path):
    with pytest.raises(OSError, match="hf download"):
        StructuralTeacher.from_pretrained("facebook/dinov3-vits16-pretrain-lvd1689m", local_files_only=True)
    with pytest.raises(OSError, match="MaskAffinityTeacher"):
        StructuralTeacher.from_pretrained(tmp_path / "missing")


def test_teacher_stays_frozen_and_in_eval(saved_teachers):
    teacher = StructuralTeacher.from_pretrained(saved_teachers["dinov3"])
    teacher.train()
    assert not teacher.model.training
    assert all(not p.requires_grad for p in teacher.parameters())


def test_bad_inputs_raise(saved_teachers):
    teacher = StructuralTeacher.from_pretrained(saved_teachers["dinov2"])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        teacher(torch.randn(1, 3, 16, 16) * 3, grid_size=4)
    with pytest.raises(ValueError, match="B, 3, H, W"):
        teacher(torch.rand(3, 16, 16), grid_size=4)
    with pytest.raises(ValueError, match="out of range"):
        StructuralTeacher.from_pretrained(saved_teachers["dinov2"], layers=(5,))


def test_interpolation_preserves_block_structure():
    """Quadrant attention on 16x16 resized to 8x12 keeps most mass in the query's own quadrant (chance: 1/4).

    Bilinear filtering blurs one cell across each quadrant border, so border tokens keep a little less.
    """

    def quadrant_ids(h: int, w: int) -> torch.Tensor:
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        return ((ys >= h // 2).long() * 2 + (xs >= w // 2).long()).flatten()

    src = quadrant_ids(16, 16)
    attn = (src[:, None] == src[None, :]).float()
    attn = (attn / attn.sum(-1, keepdim=True))[None, None]  # (1, 1, 256, 256)
    out = interpolate_attention(attn, (16, 16), (8, 12))
    dst = quadrant_ids(8, 12)
    own = ((dst[:, None] == dst[None, :]).float() * out[0, 0]).sum(-1)  # (96,)
    assert own.min() > 0.7 and own.mean() > 0.9
    torch.testing.assert_close(out.sum(-1), torch.ones(1, 1, 96))
    # identity when the grids match
    torch.testing.assert_close(interpolate_attention(attn, (16, 16), (16, 16)), attn)


def test_mask_affinity_majority_vote_and_uniform_rows():
    masks = torch.zeros(1, 4, 6, dtype=torch.long)
    masks[0, :2, :2] = 7  # token (0,0) of a 2x3 grid (cells are 2x2 pixels)
    masks[0, 0, 2] = 7  # one pixel of cell (0,1): minority -> background
    masks[0, 2:, 2:] = 3  # cells (1,1) and (1,2)
    attn = MaskAffinityTeacher()(masks, grid_size=(2, 3))
    assert attn.shape == (1, 1, 6, 6)
    labels = MaskAffinityTeacher.grid_labels(masks, (2, 3))
    assert labels.tolist() == [[7, 0, 0, 0, 3, 3]]
    expected = torch.tensor(
        [
            [1, 0, 0, 0, 0, 0],
            [0, 1 / 3, 1 / 3, 1 / 3, 0, 0],
            [0, 1 / 3, 1 / 3, 1 / 3, 0, 0],
            [0, 1 / 3, 1 / 3, 1 / 3, 0, 0],
            [0, 0, 0, 0, 1 / 2, 1 / 2],
            [0, 0, 0, 0, 1 / 2, 1 / 2],
        ]
    )
    torch.testing.assert_close(attn[0, 0], expected)


def test_mask_affinity_non_divisible_grid_and_errors():
    torch.manual_seed(3)
    masks = torch.randint(0, 4, (2, 30, 50))
    attn = MaskAffinityTeacher()(masks, grid_size=(8, 8))
    torch.testing.assert_close(attn.sum(-1), torch.ones(2, 1, 64))
    with pytest.raises(ValueError, match="integer"):
        MaskAffinityTeacher()(masks.float(), grid_size=(8, 8))
    with pytest.raises(ValueError, match="smaller"):
        MaskAffinityTeacher()(masks[:, :4, :4], grid_size=(8, 8))


def test_rows_renormalised_over_patches_before_resampling_as_released():
    """PanqiYang1/MUSE muse/models/muse_vit.py:345-347: slice the patch block, average heads, renormalise the rows,
    then 4D-interpolate (and renormalise again). A stub ViT whose rows give very different mass to the CLS token."""
    from types import SimpleNamespace

    from muse_hf.objectives import normalize_attention_rows

    gen = torch.Generator().manual_seed(3)
    n = 8 * 12
    logits = torch.randn(1, 2, n + 1, n + 1, generator=gen)
    logits[..., 0] += torch.linspace(-4.0, 4.0, n + 1).view(1, 1, -1)  # CLS mass from ~0 to ~all, row by row
    attn = logits.softmax(-1)

    class _StubViT(torch.nn.Module):
        config = SimpleNamespace(num_hidden_layers=1, patch_size=2, num_register_tokens=0)

        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))

        def forward(self, pixel_values, output_attentions, return_dict):  # noqa: ANN001
            return SimpleNamespace(attentions=(attn,))

    teacher = StructuralTeacher(_StubViT(), image_mean=(0.5,) * 3, image_std=(0.5,) * 3)
    out = teacher(torch.rand(1, 3, 16, 24), grid_size=(4, 6))
    block = attn[..., 1:, 1:].mean(1, keepdim=True)  # (1, 1, 96, 96), rows sum to < 1
    expected = interpolate_attention(normalize_attention_rows(block), (8, 12), (4, 6))
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-5)
    unnormalised_first = interpolate_attention(block, (8, 12), (4, 6))
    assert (out - unnormalised_first).abs().max() > 1e-3  # the order matters when the prefix mass varies per row
