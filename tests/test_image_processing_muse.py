"""Tests for MuseImageProcessor: every input kind (good and bad), geometry, inverse, save/load."""

from __future__ import annotations

import json
import re

import numpy as np
import PIL.Image
import pytest
import torch
from transformers import BatchFeature
from transformers.image_processing_utils import BaseImageProcessor

from muse_hf.models.image_processing_muse import MuseImageProcessor

SIZE = 32
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


@pytest.fixture()
def proc() -> MuseImageProcessor:
    return MuseImageProcessor(size={"height": SIZE, "width": SIZE})


def _rgb_uint8(h: int = SIZE, w: int = SIZE, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _unit(proc: MuseImageProcessor, image: object, **kw: object) -> torch.Tensor:
    """Process and map back to [0, 1]: (B, 3, H, W)."""
    return proc.to_unit_range(proc(image, return_tensors="pt", **kw)["pixel_values"])


def test_defaults_follow_internvit() -> None:
    p = MuseImageProcessor()
    assert isinstance(p, BaseImageProcessor)
    assert p.size["height"] == 448 and p.size["width"] == 448
    assert tuple(p.image_mean) == (0.485, 0.456, 0.406)
    assert tuple(p.image_std) == (0.229, 0.224, 0.225)


def test_output_is_normalised_batchfeature(proc: MuseImageProcessor) -> None:
    image = _rgb_uint8()
    out = proc(PIL.Image.fromarray(image), return_tensors="pt")
    assert isinstance(out, BatchFeature)
    pv = out["pixel_values"]
    assert pv.shape == (1, 3, SIZE, SIZE) and pv.dtype == torch.float32
    expected = (torch.from_numpy(image).permute(2, 0, 1).float() / 255.0 - MEAN) / STD
    torch.testing.assert_close(pv[0], expected, atol=1e-5, rtol=0)
    np_out = proc(image, return_tensors="np")["pixel_values"]
    assert isinstance(np_out, np.ndarray) and np_out.shape == (1, 3, SIZE, SIZE)


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "I;16", "I", "F"])
def test_every_pil_mode(proc: MuseImageProcessor, mode: str) -> None:
    image = PIL.Image.new(mode, (48, 40))
    out = _unit(proc, image)
    assert out.shape == (1, 3, SIZE, SIZE)
    assert torch.isfinite(out).all()


def test_grey_and_16bit_values(proc: MuseImageProcessor) -> None:
    grey = np.full((SIZE, SIZE), 128, np.uint8)
    for image in (PIL.Image.fromarray(grey, "L"), grey, grey[None], torch.from_numpy(grey)):
        out = _unit(proc, image)
        torch.testing.assert_close(out, torch.full_like(out, 128 / 255), atol=1e-5, rtol=0)
    white16 = np.full((SIZE, SIZE), 65535, np.uint16)
    for image in (PIL.Image.fromarray(white16, "I;16"), white16):
        torch.testing.assert_close(_unit(proc, image), torch.ones(1, 3, SIZE, SIZE), atol=1e-5, rtol=0)
    mid_i = PIL.Image.fromarray(np.full((SIZE, SIZE), 32768, np.int32), "I")
    assert abs(float(_unit(proc, mid_i).mean()) - 32768 / 65535) < 1e-4


def test_alpha_is_composited_on_white(proc: MuseImageProcessor) -> None:
    rgba = np.zeros((SIZE, SIZE, 4), np.uint8)
    rgba[..., 0] = 255  # red
    rgba[: SIZE // 2, :, 3] = 255  # top opaque, bottom transparent
    for image in (PIL.Image.fromarray(rgba, "RGBA"), rgba, torch.from_numpy(rgba).permute(2, 0, 1)):
        out = _unit(proc, image)[0]
        torch.testing.assert_close(
            out[:, : SIZE // 2], torch.tensor([1.0, 0, 0]).view(3, 1, 1).expand(3, SIZE // 2, SIZE)
        )
        torch.testing.assert_close(out[:, SIZE // 2 :], torch.ones(3, SIZE // 2, SIZE))
    la = PIL.Image.fromarray(np.stack([np.zeros((SIZE, SIZE)), np.full((SIZE, SIZE), 0)], -1).astype(np.uint8), "LA")
    torch.testing.assert_close(_unit(proc, la), torch.ones(1, 3, SIZE, SIZE))


def test_dtypes_and_layouts_agree(proc: MuseImageProcessor) -> None:
    image = _rgb_uint8()
    ref = _unit(proc, image)
    variants = [
        PIL.Image.fromarray(image),
        image.transpose(2, 0, 1),  # CHW uint8
        image.astype(np.float32) / 255.0,  # HWC float [0, 1]
        image.astype(np.float64),  # HWC float [0, 255]
        torch.from_numpy(image).permute(2, 0, 1),  # CHW uint8 tensor
        torch.from_numpy(image).permute(2, 0, 1).float() / 255.0,  # CHW float tensor
        torch.from_numpy(image).permute(2, 0, 1).to(torch.bfloat16) / 255.0,
        (image.astype(np.uint16) * 257),  # 16-bit
    ]
    for v in variants:
        atol = 5e-3 if isinstance(v, torch.Tensor) and v.dtype == torch.bfloat16 else 1e-5
        torch.testing.assert_close(_unit(proc, v), ref, atol=atol, rtol=0)


def test_ambiguous_layout_and_override(proc: MuseImageProcessor) -> None:
    arr = np.zeros((3, 4, 3), np.uint8)
    arr[0] = 255  # as HWC: first row white; as CHW: red channel
    hwc = _unit(proc, arr)  # numpy defaults to channels-last
    chw = _unit(proc, arr, input_data_format="channels_first")
    assert not torch.allclose(hwc, chw)
    torch.testing.assert_close(chw[0, :, 0, 0], torch.tensor([1.0, 0.0, 0.0]), atol=1e-5, rtol=0)
    torch.testing.assert_close(_unit(proc, torch.from_numpy(arr)), chw)  # torch defaults to channels-first


def test_lists_and_batches(proc: MuseImageProcessor) -> None:
    batch = torch.rand(3, 3, 20, 24, generator=torch.Generator().manual_seed(0))
    assert proc(batch)["pixel_values"].shape == (3, 3, SIZE, SIZE)
    mixed = [PIL.Image.new("RGB", (64, 48)), np.zeros((10, 10), np.uint8), batch, [batch[0]]]
    assert proc(mixed)["pixel_values"].shape == (6, 3, SIZE, SIZE)
    assert proc(np.zeros((2, 16, 16, 3), np.uint8))["pixel_values"].shape == (2, 3, SIZE, SIZE)


def test_resize_center_crop_and_stretch(proc: MuseImageProcessor) -> None:
    wide = np.zeros((SIZE, 3 * SIZE, 3), np.uint8)
    wide[:, SIZE : 2 * SIZE] = 255  # white middle third
    cropped = _unit(proc, wide)
    assert float(cropped.min()) > 0.99  # centre crop keeps only the white middle
    stretched = _unit(proc, wide, do_center_crop=False)
    assert float(stretched[..., 0].max()) < 0.01 and float(stretched[..., SIZE // 2].min()) > 0.99
    assert proc(wide, size={"height": 16, "width": 24})["pixel_values"].shape == (1, 3, 16, 24)
    assert proc(wide, size={"shortest_edge": 16})["pixel_values"].shape == (1, 3, 16, 16)
    assert proc(wide, do_center_crop=False, size={"shortest_edge": 16})["pixel_values"].shape == (
        1,
        3,
        16,
        48,
    )
    bilinear = proc(_rgb_uint8(64, 64), resample=PIL.Image.Resampling.BILINEAR)["pixel_values"]
    bicubic = proc(_rgb_uint8(64, 64))["pixel_values"]
    assert bilinear.shape == bicubic.shape and not torch.allclose(bilinear, bicubic)
    # bicubic overshoot is clamped to the input's range
    un = proc.to_unit_range(bicubic)
    assert float(un.min()) >= 0.0 and float(un.max()) <= 1.0


@pytest.mark.parametrize(
    "bad, needle",
    [
        ([], "empty list"),
        ("photo.png", "PIL.Image.open"),
        (b"\x89PNG", "PIL.Image.open"),
        (42, "cannot read"),
        ({"image": 1}, "cannot read"),
        ([PIL.Image.new("RGB", (4, 4)), object()], "cannot read"),
        (np.zeros(7, np.uint8), "rank"),
        (np.zeros((1, 2, 3, 4, 5), np.uint8), "rank"),
        (np.zeros((0, 8, 3), np.uint8), "zero-size"),
        (torch.zeros(3, 8, 0), "zero-size"),
        (np.zeros((0, 8, 8, 3), np.uint8), "empty batch"),
        (np.full((8, 8, 3), np.nan, np.float32), "NaN"),
        (torch.tensor([[1.0, float("inf")], [0.0, 0.0]]), "NaN or inf"),
        (np.full((8, 8, 3), -2.0, np.float32), "expected [0, 1]"),
        (np.full((8, 8, 3), 300, np.int32), "0..255"),
        (np.zeros((8, 8, 7), np.uint8), "channel axis"),
        (np.array([["a"]]), "dtype"),
        (PIL.Image.new("RGB", (0, 0)), "zero-size"),
    ],
)
def test_rejects_non_images(proc: MuseImageProcessor, bad: object, needle: str) -> None:
    with pytest.raises(ValueError, match=re.escape(needle)):
        proc(bad)


def test_truncated_file_is_named_not_a_pil_oserror(proc: MuseImageProcessor, tmp_path) -> None:
    """PIL.Image.open reads only the header; the broken pixel data used to surface as PIL's OSError."""
    from muse_hf.validation import ImageDecodeError

    PIL.Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    data = (tmp_path / "a.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    image = PIL.Image.open(tmp_path / "cut.png")
    with pytest.raises(ImageDecodeError, match=r"cut\.png.*truncated or corrupt"):
        proc(image)
    with pytest.raises(ValueError, match=r"cut\.png"):  # ImageDecodeError is the documented ValueError
        proc.to_pil([image])


def test_to_pil_reads_by_the_same_rules(proc: MuseImageProcessor) -> None:
    grey16 = np.full((6, 5), 65535, np.uint16)  # 2-D, 16-bit: white
    unit = torch.full((2, 3, 4, 4), 0.5)  # a batch of float tensors in [0, 1]
    rgba = PIL.Image.new("RGBA", (3, 2), (255, 0, 0, 0))  # transparent: composited on white
    images = proc.to_pil([grey16, unit, rgba])
    assert [im.mode for im in images] == ["RGB"] * 4 and [im.size for im in images] == [(5, 6), (4, 4), (4, 4), (3, 2)]
    assert images[0].getpixel((0, 0)) == (255, 255, 255) and images[1].getpixel((0, 0)) == (128, 128, 128)
    assert images[3].getpixel((0, 0)) == (255, 255, 255)
    rgb = _rgb_uint8(seed=1)
    np.testing.assert_array_equal(np.asarray(proc.to_pil(rgb)[0]), rgb)  # 8-bit RGB round-trips exactly
    with pytest.raises(ValueError, match="NaN"):
        proc.to_pil(np.full((4, 4, 3), np.nan, np.float32))


def test_postprocess_inverts_preprocess(proc: MuseImageProcessor) -> None:
    image = _rgb_uint8(seed=3)
    pv = proc(image)["pixel_values"]
    pil = proc.postprocess(pv, output_type="pil")
    assert isinstance(pil, list) and pil[0].mode == "RGB" and pil[0].size == (SIZE, SIZE)
    np.testing.assert_array_equal(np.asarray(pil[0]), image)
    arr = proc.postprocess(pv, output_type="np")
    assert arr.shape == (1, SIZE, SIZE, 3) and arr.dtype == np.float32
    pt = proc.postprocess(pv[0], output_type="pt")  # unbatched input accepted
    assert pt.shape == (1, 3, SIZE, SIZE)
    torch.testing.assert_close(pt, torch.from_numpy(arr).permute(0, 3, 1, 2))
    wild = proc.postprocess(torch.randn(2, 3, 8, 8) * 10, output_type="pt")
    assert float(wild.min()) == 0.0 and float(wild.max()) == 1.0  # clamped
    with pytest.raises(ValueError, match="output_type"):
        proc.postprocess(pv, output_type="latent")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="shape"):
        proc.postprocess(torch.zeros(2, 5, 8, 8))


def test_unit_range_helpers_are_inverse(proc: MuseImageProcessor) -> None:
    x01 = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(proc.to_unit_range(proc.from_unit_range(x01)), x01)
    with pytest.raises(ValueError, match="torch.Tensor"):
        proc.to_unit_range(np.zeros((1, 3, 4, 4)))  # type: ignore[arg-type]


def test_process_mask_follows_image_geometry(proc: MuseImageProcessor) -> None:
    """A mask drawn like the image ends up where the image's content ends up (cover-resize + crop, nearest)."""
    mask = np.zeros((40, 120), np.int64)
    mask[:, 40:80] = 3  # middle third
    mask[:, 80:] = 70_000  # ids beyond uint16 survive
    image = np.zeros((40, 120, 3), np.uint8)
    image[:, 40:80] = 255
    out = proc.process_mask(mask)
    assert out.shape == (SIZE, SIZE) and out.dtype == torch.long
    assert set(out.unique().tolist()) == {3}  # the centre crop keeps the middle third only
    assert float(_unit(proc, image).min()) > 0.95  # image: the same crop (antialiasing softens its border)
    stretched = MuseImageProcessor(size=SIZE, do_center_crop=False).process_mask(mask)
    assert set(stretched.unique().tolist()) == {0, 3, 70_000}
    assert stretched[0, 0] == 0 and stretched[0, SIZE // 2] == 3 and stretched[0, -1] == 70_000
    pil = proc.process_mask(PIL.Image.fromarray(np.full((10, 10), 5, np.uint8)))
    assert torch.equal(pil, torch.full((SIZE, SIZE), 5))
    with pytest.raises(ValueError, match="integer ids"):
        proc.process_mask(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        proc.process_mask(np.zeros((4, 4, 3), np.uint8))


def test_save_pretrained_round_trip(tmp_path, proc: MuseImageProcessor) -> None:
    custom = MuseImageProcessor(
        size={"height": 64, "width": 48},
        image_mean=[0.5] * 3,
        image_std=[0.5] * 3,
        resample=PIL.Image.Resampling.BILINEAR,
        do_center_crop=False,
    )
    custom.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert config["image_processor_type"] == "MuseImageProcessor"
    assert config["size"] == {"height": 64, "width": 48}
    loaded = MuseImageProcessor.from_pretrained(tmp_path)
    assert loaded.to_dict() == custom.to_dict()
    image = _rgb_uint8(50, 70)
    torch.testing.assert_close(loaded(image)["pixel_values"], custom(image)["pixel_values"], atol=0, rtol=0)
    assert loaded(image)["pixel_values"].shape == (1, 3, 64, 48)
    # and a size override at load time
    assert MuseImageProcessor.from_pretrained(tmp_path, size=16).size["height"] == 16
