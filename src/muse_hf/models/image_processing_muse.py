"""Image processor for the MUSE tokenizer.

``MuseImageProcessor`` turns anything that can reasonably be an image (PIL images of any mode, NumPy arrays,
torch tensors, lists and batches of them) into normalised ``pixel_values`` of shape ``(B, 3, H, W)``, and
``postprocess`` turns the tokenizer's decoded samples back into images.

Conversion rules (documented once, applied to every input kind):

* **Value range.** Integer images are read on their natural scale: ``bool`` as {0, 1}, ``uint8`` / other integer
  types holding values in [0, 255] as 8-bit, ``uint16`` (and PIL ``I;16*``) as 16-bit. Float images must be finite;
  a float image whose values lie in [0, 1] is taken as unit range, one whose values lie in [0, 255] (with a value
  above 1) as 8-bit scale. Anything else is rejected. PIL mode ``I`` (32-bit int) is 16-bit scale when a value
  exceeds 255, else 8-bit. Internally every image becomes float32 on the 0..255 scale so ``do_rescale`` /
  ``rescale_factor`` (1/255) keep their usual transformers meaning.
* **Channels.** With ``do_convert_rgb=True`` (default) grey images are repeated to RGB, palette/CMYK/YCbCr/LAB/HSV
  images go through PIL's RGB conversion, and **alpha is composited on a white background** (``LA``, ``PA``,
  ``RGBA``, palette images with transparency, and 2-/4-channel arrays, which are read as grey+alpha / RGB+alpha).
* **Layout.** Arrays: ``(H, W)``, ``(H, W, C)`` or ``(C, H, W)`` with C in {1, 2, 3, 4}; a 4-D array or tensor is a
  batch ``(B, H, W, C)`` / ``(B, C, H, W)``. When both ends could be channels (e.g. ``(3, 4, 3)``) NumPy inputs are
  read channels-last (PIL's convention) and torch inputs channels-first (torch's convention); pass
  ``input_data_format`` to force either.
* **Geometry.** With ``size={"height", "width"}`` and ``do_center_crop=True`` (default) an image is resized so it
  covers the target while keeping its aspect ratio, then centre-cropped (``crop_size`` defaults to ``size``). With
  ``do_center_crop=False`` it is stretched to the target. ``{"shortest_edge": s}`` resizes the short side to ``s``.
  Resizing runs in torch (``interpolate`` with antialiasing), so float inputs keep full precision.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from transformers.image_processing_base import ImageProcessingMixin  # noqa: F401  (diffusers looks this name up)
from transformers.image_processing_utils import BaseImageProcessor, BatchFeature, get_size_dict
from transformers.image_utils import (
    IMAGENET_DEFAULT_MEAN,
    IMAGENET_DEFAULT_STD,
    ChannelDimension,
    PILImageResampling,
    SizeDict,
)
from transformers.processing_utils import ImagesKwargs, Unpack

from ..validation import load_image_pixels

__all__ = ["MuseImageProcessor"]

# PIL resampling filter -> torch.nn.functional.interpolate mode. Lanczos/Hamming have no torch counterpart and
# use antialiased bicubic (the closest smooth kernel); box uses area averaging.
_RESAMPLE_TO_TORCH: dict[int, str] = {
    int(PILImageResampling.NEAREST): "nearest-exact",
    int(PILImageResampling.BILINEAR): "bilinear",
    int(PILImageResampling.BICUBIC): "bicubic",
    int(PILImageResampling.LANCZOS): "bicubic",
    int(PILImageResampling.HAMMING): "bicubic",
    int(PILImageResampling.BOX): "area",
}
_FLOAT_TOL = 1e-3  # float images may overshoot [0, 1] / [0, 255] by this much (resampling ringing)


def _describe(obj: Any) -> str:
    return type(obj).__module__ + "." + type(obj).__qualname__


class MuseImageProcessor(BaseImageProcessor):
    r"""Resize / centre-crop / rescale / normalise images for ``MuseTokenizerModel``.

    Defaults follow InternViT (the InternVL3 vision tower): 448x448, bicubic, ImageNet mean/std
    (0.485, 0.456, 0.406) / (0.229, 0.224, 0.225). The ``tiny`` preset uses ``size=64``.

    Args:
        size: Target size, ``{"height": int, "width": int}`` (an int means a square) or ``{"shortest_edge": int}``.
        resample: PIL resampling filter used for resizing (``BICUBIC`` by default; ``BILINEAR``, ``NEAREST``,
            ``BOX`` also map to torch exactly).
        do_center_crop: Cover-resize then centre-crop to ``crop_size`` (default ``size``), keeping aspect ratio.
        do_rescale / rescale_factor: Multiply the 0..255-scale image by ``rescale_factor`` (1/255).
        do_normalize / image_mean / image_std: ``(x - mean) / std`` per channel.
        do_convert_rgb: Convert every input to 3-channel RGB (alpha composited on white).

    Example:
        >>> proc = MuseImageProcessor(size={"height": 64, "width": 64})
        >>> batch = proc(PIL.Image.new("RGBA", (80, 60)), return_tensors="pt")
        >>> batch["pixel_values"].shape
        torch.Size([1, 3, 64, 64])
    """

    model_input_names = ["pixel_values"]
    valid_kwargs = ImagesKwargs

    resample = PILImageResampling.BICUBIC
    image_mean = IMAGENET_DEFAULT_MEAN
    image_std = IMAGENET_DEFAULT_STD
    size = {"height": 448, "width": 448}
    default_to_square = True
    crop_size = None  # None -> same as size
    do_resize = True
    do_center_crop = True
    do_rescale = True
    rescale_factor = 1 / 255
    do_normalize = True
    do_convert_rgb = True

    def __init__(self, **kwargs: Unpack[ImagesKwargs]) -> None:
        super().__init__(**kwargs)
        self._set_attributes(**kwargs)

    # ------------------------------------------------------------------ transformers plumbing
    def _validate_preprocess_kwargs(self, crop_size: SizeDict | None = None, **kwargs: Any) -> None:
        """Validate kwargs; ``crop_size=None`` means "same as ``size``" so it never fails the crop check."""
        super()._validate_preprocess_kwargs(crop_size=crop_size or _crop_from_size(kwargs.get("size")), **kwargs)

    def _prepare_image_like_inputs(
        self,
        images: Any,
        *args: Any,
        expected_ndims: int = 3,
        do_convert_rgb: bool | None = None,
        input_data_format: str | ChannelDimension | None = None,
        **kwargs: Any,
    ) -> list[torch.Tensor]:
        """Flatten the input structure and convert each image to a float32 ``(C, H, W)`` tensor on the 0..255 scale."""
        items = _flatten_images(images)
        convert = True if do_convert_rgb is None else bool(do_convert_rgb)
        fmt = ChannelDimension(input_data_format) if input_data_format is not None else None
        return [self.process_image(item, do_convert_rgb=convert, input_data_format=fmt) for item in items]

    def process_image(
        self,
        image: Any,
        do_convert_rgb: bool = True,
        input_data_format: ChannelDimension | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        """Convert one image (PIL / NumPy / torch, already un-batched) to float32 ``(C, H, W)`` on the 0..255 scale.

        Raises:
            ValueError: if ``image`` is not an image (wrong type or rank, zero size, non-finite or out-of-range
                values).
        """
        if isinstance(image, PIL.Image.Image):
            return _pil_to_tensor(image, do_convert_rgb)
        if isinstance(image, np.ndarray):
            return _array_to_tensor(image, do_convert_rgb, input_data_format, channels_first_default=False)
        if isinstance(image, torch.Tensor):
            return _array_to_tensor(image, do_convert_rgb, input_data_format, channels_first_default=True)
        raise ValueError(
            f"MuseImageProcessor cannot read an object of type {_describe(image)} as an image; pass a PIL.Image, "
            "a numpy array or a torch tensor (or a list of them)."
        )

    def to_pil(self, images: Any, input_data_format: str | ChannelDimension | None = None) -> list[PIL.Image.Image]:
        """Read ``images`` by this processor's rules (value range, channels, layout, batches) into RGB ``uint8``
        PIL images at their own size, without resizing or normalising.

        For callers that need images rather than ``pixel_values`` (the pipeline's reference images): whatever
        ``__call__`` accepts is accepted here, and whatever it refuses is refused with the same message.

        Args:
            images: PIL / NumPy / torch image, a 4-D batch, or a (nested) list of them.
            input_data_format: Force channels-first or channels-last reading of arrays.

        Returns:
            One RGB image per input image (8-bit; float inputs are rounded).

        Raises:
            ValueError: not an image (see :meth:`process_image`), or a truncated/corrupt file (naming it).
        """
        fmt = ChannelDimension(input_data_format) if input_data_format is not None else None
        out = []
        for item in _flatten_images(images):
            rgb = self.process_image(item, do_convert_rgb=True, input_data_format=fmt)  # (3, H, W), 0..255
            array = rgb.round().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()  # (H, W, 3)
            out.append(PIL.Image.fromarray(np.ascontiguousarray(array)))
        return out

    def _preprocess(
        self,
        images: list[torch.Tensor],
        do_resize: bool,
        size: SizeDict,
        resample: PILImageResampling | int | None,
        do_center_crop: bool,
        crop_size: SizeDict | None,
        do_rescale: bool,
        rescale_factor: float,
        do_normalize: bool,
        image_mean: float | Sequence[float] | None,
        image_std: float | Sequence[float] | None,
        return_tensors: str | None = None,
        device: str | torch.device | None = None,
        **kwargs: Any,
    ) -> BatchFeature:
        """Resize / crop / rescale / normalise prepared images and stack them to ``(B, C, H, W)``."""
        out: list[torch.Tensor] = []
        for image in images:  # (C, H, W) float32, 0..255 scale
            if do_resize:
                image = self.resize(image, size=size, resample=resample, cover=do_center_crop)
            if do_center_crop:
                image = self.center_crop(image, crop_size or _crop_from_size(size))
            if do_rescale:
                image = image * rescale_factor
            if do_normalize:
                image = self.normalize(image, image_mean, image_std)
            out.append(image)
        shapes = {tuple(t.shape) for t in out}
        if len(shapes) > 1:
            raise ValueError(
                f"Processed images have different shapes {sorted(shapes)}; enable do_resize with a fixed "
                "{'height', 'width'} size (or do_center_crop) so a batch can be stacked."
            )
        pixel_values = torch.stack(out)  # (B, C, H, W)
        if device is not None:
            pixel_values = pixel_values.to(device)
        if return_tensors in ("np", "numpy"):
            return BatchFeature(data={"pixel_values": pixel_values.cpu().numpy()}, tensor_type="np")
        return BatchFeature(data={"pixel_values": pixel_values}, tensor_type="pt")

    # ------------------------------------------------------------------ geometric / photometric ops
    def resize(  # type: ignore[override]
        self,
        image: torch.Tensor,
        size: SizeDict | dict[str, int],
        resample: PILImageResampling | int | None = None,
        cover: bool = False,
        **kwargs: Any,
    ) -> torch.Tensor:
        """Resize a ``(C, H, W)`` float image.

        Args:
            image: ``(C, H, W)`` float tensor.
            size: ``{"height", "width"}`` or ``{"shortest_edge"}``.
            resample: PIL filter (mapped to a torch interpolation mode).
            cover: With ``{"height", "width"}``, keep the aspect ratio and scale so the image covers the target
                (to be centre-cropped afterwards); otherwise stretch to exactly the target.

        Returns:
            The resized ``(C, h, w)`` tensor, clamped to the input's value range.
        """
        size = size if isinstance(size, SizeDict) else SizeDict(**get_size_dict(size))
        _, h, w = image.shape
        if size.height is not None and size.width is not None:
            if cover:
                scale = max(size.height / h, size.width / w)
                new_h, new_w = max(size.height, round(h * scale)), max(size.width, round(w * scale))
            else:
                new_h, new_w = size.height, size.width
        elif size.shortest_edge is not None:
            scale = size.shortest_edge / min(h, w)
            new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
        else:
            raise ValueError(f"size must have 'height' and 'width' or 'shortest_edge'; got {dict(size)}.")
        if (new_h, new_w) == (h, w):
            return image
        key = int(resample) if resample is not None else int(PILImageResampling.BICUBIC)
        if key not in _RESAMPLE_TO_TORCH:
            raise ValueError(f"Unsupported resample filter {resample!r}; use a PILImageResampling value.")
        mode = _RESAMPLE_TO_TORCH[key]
        lo, hi = float(image.min()), float(image.max())
        extra = {"antialias": True, "align_corners": False} if mode in ("bilinear", "bicubic") else {}
        resized = F.interpolate(image[None], size=(new_h, new_w), mode=mode, **extra)[0]
        return resized.clamp_(lo, hi)  # bicubic overshoot must not leave the input's range

    def center_crop(self, image: torch.Tensor, size: SizeDict | dict[str, int], **kwargs: Any) -> torch.Tensor:  # type: ignore[override]
        """Centre-crop a ``(C, H, W)`` tensor to ``size`` (zero-padding first if it is smaller)."""
        size = size if isinstance(size, SizeDict) else SizeDict(**get_size_dict(size))
        th, tw = size.height, size.width
        if th is None or tw is None:
            raise ValueError(f"crop_size must have 'height' and 'width'; got {dict(size)}.")
        _, h, w = image.shape
        if h < th or w < tw:
            ph, pw = max(0, th - h), max(0, tw - w)
            image = F.pad(image, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
            _, h, w = image.shape
        top, left = (h - th) // 2, (w - tw) // 2
        return image[:, top : top + th, left : left + tw]

    def normalize(  # type: ignore[override]
        self, image: torch.Tensor, mean: float | Sequence[float], std: float | Sequence[float], **kwargs: Any
    ) -> torch.Tensor:
        """``(image - mean) / std`` per channel on a ``(C, H, W)`` or ``(B, C, H, W)`` tensor."""
        m, s = self._stats(image, mean, std)
        return (image - m) / s

    def process_mask(self, mask: np.ndarray | torch.Tensor | PIL.Image.Image) -> torch.Tensor:
        """Apply this processor's geometry (resize, centre crop) to a label / instance mask, nearest-neighbour.

        Args:
            mask: ``(H, W)`` integer mask (PIL ``L``/``I``/``P`` image, array or tensor) aligned with the image.

        Returns:
            ``(h, w)`` long tensor aligned with the processed ``pixel_values``.
        """
        if isinstance(mask, PIL.Image.Image):
            mask = np.array(mask)  # a writable copy (np.asarray of a PIL image is read-only)
        values = torch.as_tensor(mask)
        if values.ndim != 2 or 0 in values.shape:
            raise ValueError(f"A mask must be a non-empty (H, W) array; got shape {tuple(values.shape)}.")
        if values.is_floating_point() or values.is_complex():
            raise ValueError(f"A mask must hold integer ids; got dtype {values.dtype}.")
        out = values.to(torch.float64)[None]  # (1, H, W); float64 keeps ids up to 2**53 exact
        if self.do_resize:
            out = self.resize(out, size=self.size, resample=PILImageResampling.NEAREST, cover=self.do_center_crop)
        if self.do_center_crop:
            out = self.center_crop(out, self.crop_size or _crop_from_size(self.size))
        return out[0].round().to(torch.long)  # (h, w)

    # ------------------------------------------------------------------ inverse direction
    @staticmethod
    def _stats(
        ref: torch.Tensor, mean: float | Sequence[float], std: float | Sequence[float]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        m = torch.as_tensor(mean, dtype=ref.dtype, device=ref.device).reshape(-1, 1, 1)
        s = torch.as_tensor(std, dtype=ref.dtype, device=ref.device).reshape(-1, 1, 1)
        return m, s

    def to_unit_range(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Undo normalisation: processor space -> ``[0, 1]`` (clamped). Shape kept: ``(..., 3, H, W)``.

        Use it to hand the model's inputs or outputs to teachers and metrics that expect ``[0, 1]`` images.
        """
        if not isinstance(pixel_values, torch.Tensor):
            raise ValueError(f"to_unit_range expects a torch.Tensor, got {_describe(pixel_values)}.")
        x = pixel_values
        if self.do_normalize:
            m, s = self._stats(x, self.image_mean, self.image_std)
            x = x * s + m
        elif not self.do_rescale:
            x = x * self.rescale_factor
        return x.clamp(0.0, 1.0)

    def from_unit_range(self, images01: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`to_unit_range`: ``[0, 1]`` images ``(..., 3, H, W)`` -> processor space."""
        if not isinstance(images01, torch.Tensor):
            raise ValueError(f"from_unit_range expects a torch.Tensor, got {_describe(images01)}.")
        x = images01
        if self.do_normalize:
            m, s = self._stats(x, self.image_mean, self.image_std)
            return (x - m) / s
        return x if self.do_rescale else x / self.rescale_factor

    def postprocess(
        self,
        sample: torch.Tensor | np.ndarray,
        output_type: Literal["pil", "np", "pt"] = "pil",
    ) -> list[PIL.Image.Image] | np.ndarray | torch.Tensor:
        """Turn decoded samples (processor space) into images.

        Args:
            sample: ``(B, 3, H, W)`` or ``(3, H, W)`` tensor/array in the normalised pixel space.
            output_type: ``"pil"`` -> list of RGB ``PIL.Image``; ``"np"`` -> float32 ``(B, H, W, 3)`` in [0, 1]
                (diffusers' convention); ``"pt"`` -> float32 ``(B, 3, H, W)`` tensor in [0, 1].

        Returns:
            The images in the requested format, denormalised and clamped to [0, 1].
        """
        if isinstance(sample, np.ndarray):
            sample = torch.from_numpy(sample)
        if not isinstance(sample, torch.Tensor):
            raise ValueError(f"postprocess expects a torch.Tensor or numpy array, got {_describe(sample)}.")
        if sample.ndim == 3:
            sample = sample[None]
        if sample.ndim != 4 or sample.shape[1] not in (1, 3):
            raise ValueError(f"postprocess expects (B, 3, H, W) or (3, H, W); got shape {tuple(sample.shape)}.")
        if output_type not in ("pil", "np", "pt"):
            raise ValueError(f"output_type must be 'pil', 'np' or 'pt'; got {output_type!r}.")
        images = self.to_unit_range(sample.detach().float().cpu())  # (B, 3, H, W) in [0, 1]
        if output_type == "pt":
            return images
        array = images.permute(0, 2, 3, 1).numpy()  # (B, H, W, 3)
        if output_type == "np":
            return array
        as_uint8 = (array * 255.0).round().astype(np.uint8)
        return [PIL.Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a) for a in as_uint8]


# ---------------------------------------------------------------------- input conversion helpers
def _crop_from_size(size: SizeDict | None) -> SizeDict | None:
    """The crop implied by ``size`` when ``crop_size`` is unset: the target itself (or a square of the short edge)."""
    if size is None:
        return None
    if size.height is not None and size.width is not None:
        return SizeDict(height=size.height, width=size.width)
    if size.shortest_edge is not None:
        return SizeDict(height=size.shortest_edge, width=size.shortest_edge)
    return None


def _flatten_images(images: Any) -> list[Any]:
    """Flatten (nested) lists / tuples and split 4-D batches into single images."""
    if isinstance(images, (str, bytes, os.PathLike)):
        raise ValueError(
            f"MuseImageProcessor got a {type(images).__name__} ({str(images)[:60]!r}); paths, URLs and bytes are not "
            "decoded here. Open the file with PIL.Image.open(...) and pass the image."
        )
    if isinstance(images, (list, tuple)):
        if len(images) == 0:
            raise ValueError("MuseImageProcessor got an empty list of images; pass at least one image.")
        flat: list[Any] = []
        for item in images:
            flat.extend(_flatten_images(item))
        return flat
    if isinstance(images, (np.ndarray, torch.Tensor)):
        if images.ndim == 4:
            if images.shape[0] == 0:
                raise ValueError(f"Got an empty batch of shape {tuple(images.shape)}; pass at least one image.")
            return list(images)
        if images.ndim not in (2, 3):
            raise ValueError(
                f"An image array must have rank 2 (H, W), 3 (H, W, C) / (C, H, W) or 4 (a batch); got rank "
                f"{images.ndim} with shape {tuple(images.shape)}."
            )
        return [images]
    if isinstance(images, PIL.Image.Image):
        return [images]
    if isinstance(images, Iterable) and not isinstance(images, dict):
        return _flatten_images(list(images))
    raise ValueError(
        f"MuseImageProcessor cannot read an object of type {_describe(images)} as an image; pass a PIL.Image, a "
        "numpy array, a torch tensor, or a list of them."
    )


def _pil_to_tensor(image: PIL.Image.Image, do_convert_rgb: bool) -> torch.Tensor:
    """PIL image (any mode) -> float32 ``(C, H, W)`` on the 0..255 scale."""
    if image.width == 0 or image.height == 0:
        raise ValueError(f"Got a zero-size image ({image.width}x{image.height}); images must be at least 1x1.")
    load_image_pixels(image)  # a truncated file: an error naming it, not PIL's OSError from np.asarray below
    mode = image.mode
    if mode == "1":
        image, mode = image.convert("L"), "L"
    elif mode == "P" or mode == "PA":
        has_alpha = mode == "PA" or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
        mode = image.mode
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        image, mode = image.convert("RGB"), "RGB"
    elif mode in ("La", "RGBa"):  # premultiplied alpha
        image = image.convert("LA" if mode == "La" else "RGBA")
        mode = image.mode
    elif mode == "RGBX":
        image, mode = image.convert("RGB"), "RGB"
    if mode.startswith("I;16"):
        array = np.asarray(image).astype(np.float32) * (255.0 / 65535.0)
    elif mode == "I":
        raw = np.asarray(image).astype(np.float64)
        if raw.size and (raw.min() < 0 or raw.max() > 65535):
            raise ValueError(f"PIL mode 'I' image has values in [{raw.min()}, {raw.max()}], outside 0..65535.")
        scale = 255.0 / 65535.0 if raw.size and raw.max() > 255 else 1.0
        array = (raw * scale).astype(np.float32)
    elif mode == "F":
        return _array_to_tensor(np.asarray(image), do_convert_rgb, ChannelDimension.LAST, False)
    elif mode in ("L", "LA", "RGB", "RGBA"):
        array = np.asarray(image).astype(np.float32)
    else:
        try:
            array = np.asarray(image.convert("RGB")).astype(np.float32)
        except (ValueError, OSError) as err:
            raise ValueError(f"Cannot convert a PIL image of mode {mode!r} to RGB: {err}") from err
    if array.ndim == 2:
        array = array[:, :, None]
    return _channels_to_rgb(torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1), do_convert_rgb)


def _array_to_tensor(
    array: np.ndarray | torch.Tensor,
    do_convert_rgb: bool,
    input_data_format: ChannelDimension | None,
    channels_first_default: bool,
) -> torch.Tensor:
    """NumPy array / tensor ``(H, W)``, ``(H, W, C)`` or ``(C, H, W)`` -> float32 ``(C, H, W)`` on the 0..255 scale."""
    kind = "tensor" if isinstance(array, torch.Tensor) else "array"
    shape = tuple(array.shape)
    if array.ndim not in (2, 3):
        raise ValueError(
            f"An image {kind} must have rank 2 (H, W) or 3 (H, W, C) / (C, H, W) (rank 4 for a batch); got "
            f"shape {shape}."
        )
    if 0 in shape:
        raise ValueError(f"Got a zero-size image {kind} of shape {shape}; images must be at least 1x1.")
    if isinstance(array, torch.Tensor):
        if array.is_complex():
            raise ValueError(f"Got a complex-valued tensor of dtype {array.dtype}; images must be real.")
        t = array.detach().cpu()
        is_float, is_bool = t.is_floating_point(), t.dtype == torch.bool
        bits16 = t.dtype == torch.uint16
        values = t.to(torch.float64)
    else:
        if array.dtype.kind not in "biuf":
            raise ValueError(f"Got a numpy array of dtype {array.dtype}; images must be bool, integer or float.")
        is_float, is_bool, bits16 = array.dtype.kind == "f", array.dtype.kind == "b", array.dtype == np.uint16
        values = torch.from_numpy(np.ascontiguousarray(array).astype(np.float64))
    # --- value range -> 0..255 scale
    if is_float:
        if not torch.isfinite(values).all():
            raise ValueError(f"Image {kind} of shape {shape} contains NaN or inf values; clean it before processing.")
        lo, hi = float(values.min()), float(values.max())
        if lo >= -_FLOAT_TOL and hi <= 1.0 + _FLOAT_TOL:
            values = values.clamp(0.0, 1.0) * 255.0
        elif lo >= -_FLOAT_TOL and hi <= 255.0 + _FLOAT_TOL:
            values = values.clamp(0.0, 255.0)
        else:
            raise ValueError(
                f"Float image values lie in [{lo:.4g}, {hi:.4g}]; expected [0, 1] (unit range) or [0, 255]. "
                "Undo any normalisation before passing the image (see MuseImageProcessor.to_unit_range)."
            )
    elif is_bool:
        values = values * 255.0
    elif bits16:
        values = values * (255.0 / 65535.0)
    else:
        lo, hi = float(values.min()), float(values.max())
        if lo < 0 or hi > 255:
            raise ValueError(
                f"Integer image values lie in [{lo:.0f}, {hi:.0f}]; expected 0..255 (use uint16 for 16-bit data)."
            )
    values = values.to(torch.float32)
    # --- layout -> (C, H, W)
    if values.ndim == 2:
        values = values[None]
    else:
        first_ok, last_ok = shape[0] in (1, 2, 3, 4), shape[-1] in (1, 2, 3, 4)
        if input_data_format is not None:
            channels_first = input_data_format == ChannelDimension.FIRST
        elif first_ok and last_ok:
            channels_first = channels_first_default
        elif first_ok or last_ok:
            channels_first = first_ok
        else:
            raise ValueError(
                f"Cannot find a channel axis in image {kind} of shape {shape}: the first or last dimension must be "
                "1, 2, 3 or 4 channels."
            )
        if channels_first and not first_ok or not channels_first and not last_ok:
            raise ValueError(f"Image {kind} of shape {shape} has no 1-4 channel axis where input_data_format says.")
        if not channels_first:
            values = values.permute(2, 0, 1)
    return _channels_to_rgb(values.contiguous(), do_convert_rgb)


def _channels_to_rgb(image: torch.Tensor, do_convert_rgb: bool) -> torch.Tensor:
    """``(C, H, W)`` float 0..255 with C in 1..4 -> RGB, compositing alpha (C = 2 or 4) onto white."""
    if not do_convert_rgb:
        return image
    c = image.shape[0]
    if c in (2, 4):
        alpha = image[-1:] / 255.0
        image = image[:-1] * alpha + 255.0 * (1.0 - alpha)
        c -= 1
    if c == 1:
        image = image.expand(3, -1, -1)
    return image.contiguous()
