"""Real-photo check set: crops of the photographs that scikit-image ships (no download needed).

A tiny natural-image validation split for reconstruction (PSNR/SSIM), next to the synthetic scenes.
"""

from __future__ import annotations

from collections.abc import Sequence

import datasets
import numpy as np
import PIL.Image

__all__ = ["PHOTO_CAPTIONS", "photo_check_dataset", "photo_check_set"]

#: scikit-image sample photos (all bundled with the wheel) and a caption for each.
PHOTO_CAPTIONS: dict[str, str] = {
    "astronaut": "a photo of an astronaut in a spacesuit in front of a flag",
    "coffee": "a photo of a cup of coffee on a saucer",
    "chelsea": "a photo of a ginger cat",
    "rocket": "a photo of a rocket on a launch pad",
    "immunohistochemistry": "a microscope image of stained tissue",
    "hubble_deep_field": "a telescope image of many distant galaxies",
    "retina": "a photo of a human retina",
    "colorwheel": "a colour wheel",
    "camera": "a black and white photo of a man with a camera",
    "coins": "a black and white photo of old coins",
}
# crop = (centre x, centre y, side) as fractions of (width, height, the short side)
_CROPS: tuple[tuple[float, float, float], ...] = (
    (0.5, 0.5, 1.0),  # the whole photo (largest centred crop)
    (0.5, 0.5, 0.5),  # 2x zoom on the centre: finer texture
    (0.3, 0.3, 0.5),
    (0.7, 0.3, 0.5),
    (0.3, 0.7, 0.5),
    (0.7, 0.7, 0.5),
)


def _load_photo(name: str) -> np.ndarray:
    import skimage.data

    if name not in PHOTO_CAPTIONS:
        raise ValueError(f"unknown photo {name!r}; choose from {sorted(PHOTO_CAPTIONS)}")
    array = np.asarray(getattr(skimage.data, name)())
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    return np.ascontiguousarray(array[..., :3]).astype(np.uint8)  # (H, W, 3)


def _size_hw(image_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(image_size, int):
        h = w = image_size
    else:
        if len(image_size) != 2:
            raise ValueError(f"image_size must be an int or (height, width); got {image_size!r}")
        h, w = (int(v) for v in image_size)
    if h < 1 or w < 1:
        raise ValueError(f"image_size must be positive; got {image_size!r}")
    return h, w


def _crops(
    image_size: int | Sequence[int], names: Sequence[str] | None, crops_per_photo: int
) -> list[tuple[str, PIL.Image.Image]]:
    h, w = _size_hw(image_size)
    if not 1 <= crops_per_photo <= len(_CROPS):
        raise ValueError(f"crops_per_photo must be in [1, {len(_CROPS)}]; got {crops_per_photo}")
    out = []
    for name in names if names is not None else list(PHOTO_CAPTIONS):
        photo = PIL.Image.fromarray(_load_photo(name))
        pw, ph = photo.size
        for fx, fy, fs in _CROPS[:crops_per_photo]:
            # largest crop of aspect w/h inside the photo, scaled by fs
            scale = min(pw / w, ph / h) * fs
            cw, ch = w * scale, h * scale
            left = min(max(fx * pw - cw / 2, 0.0), pw - cw)
            top = min(max(fy * ph - ch / 2, 0.0), ph - ch)
            box = (left, top, left + cw, top + ch)
            out.append((name, photo.resize((w, h), PIL.Image.Resampling.LANCZOS, box=box)))
    return out


def photo_check_set(
    image_size: int | Sequence[int] = 64,
    names: Sequence[str] | None = None,
    crops_per_photo: int = 2,
) -> list[PIL.Image.Image]:
    """Crops of scikit-image's photos, resized to ``image_size``, as RGB PIL images.

    Args:
        image_size: Output size, an int (square) or ``(height, width)``.
        names: Photos to use (default: all of :data:`PHOTO_CAPTIONS`).
        crops_per_photo: 1 = the whole photo (largest centred crop), 2 = plus a 2x centre zoom, up to 6
            (plus four off-centre zooms).

    Returns:
        ``len(names) * crops_per_photo`` RGB images, deterministic.
    """
    return [image for _, image in _crops(image_size, names, crops_per_photo)]


def photo_check_dataset(
    image_size: int | Sequence[int] = 64,
    names: Sequence[str] | None = None,
    crops_per_photo: int = 2,
) -> datasets.Dataset:
    """The same crops as :func:`photo_check_set` as a ``datasets.Dataset`` (``image``, ``caption``, ``name``).

    It can be streamed with ``load_image_text_stream(photo_check_dataset(...), split=...)``.
    """
    items = _crops(image_size, names, crops_per_photo)
    return datasets.Dataset.from_dict(
        {
            "image": [image for _, image in items],
            "caption": [PHOTO_CAPTIONS[name] for name, _ in items],
            "name": [name for name, _ in items],
        },
        features=datasets.Features(
            {"image": datasets.Image(), "caption": datasets.Value("string"), "name": datasets.Value("string")}
        ),
    )
