"""Guarded decoding of stored samples and the skip rules of every stream.

:func:`decode_image` reads an image's header first (a PNG's IHDR directly, anything else through the lazy
``PIL.Image.open``): zero-size images and images above ``max_pixels`` (decompression bombs) are skipped **before** any
pixel is decoded; undecodable, truncated and empty images are skipped too. A skipped sample raises
:class:`SkipSample` with one of :data:`SKIP_REASONS`, which the streams count. :func:`extract_text` finds a caption in
a string / bytes / JSON value, :func:`mask_array` turns a mask image into instance ids.
"""

from __future__ import annotations

import io
import json
import struct
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image

from muse_hf.validation import IMAGE_DECODE_ERRORS, PNG_SIGNATURE

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "SKIP_REASONS",
    "TEXT_FIELDS",
    "SkipSample",
    "decode_image",
    "extract_text",
    "mask_array",
]

#: Images with more pixels than this are skipped from their header (8000 x 8000).
DEFAULT_MAX_PIXELS = 64_000_000
#: Reasons a sample is skipped (keys of ``dataset.skipped`` / ``loader.skipped``).
SKIP_REASONS: tuple[str, ...] = (
    "missing_image",  # the image column is absent or None
    "empty_file",  # zero bytes
    "undecodable",  # not an image PIL can identify / broken header
    "truncated",  # header fine, pixel data broken
    "zero_size",  # width or height is 0
    "too_large",  # more than max_pixels (checked from the header) or a PIL decompression bomb
    "unprocessable",  # decoded, but the image processor rejected it
    "bad_mask",  # the mask cannot be decoded
    "missing_caption",  # caption absent / empty / whitespace (image-text streams)
    "missing_instruction",  # instruction absent / empty (edit streams)
    "bad_tensor_row",  # a stored tensor's bytes do not match its stored shape (tensor streams, e.g. cached latents)
)

#: Fields of a JSON / dict caption value that hold the text, in order of preference.
TEXT_FIELDS = (
    "caption",
    "text",
    "prompt",
    "txt",
    "long_caption",
    "short_caption",
    "recaption",
    "instruction",
)


class SkipSample(Exception):
    """Raised internally for a sample that must be skipped; ``reason`` is one of :data:`SKIP_REASONS`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def decode_image(
    value: Any,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    draft_size: tuple[int, int] | None = None,
) -> PIL.Image.Image:
    """Decode one stored image, guarded.

    Args:
        value: ``{"bytes": ..., "path": ...}`` (``datasets.Image(decode=False)``), raw ``bytes``, or a PIL image.
        max_pixels: Skip images with more pixels, judged from the header before decoding.
        draft_size: ``(width, height)`` hint for JPEG draft decoding (decode at a reduced scale >= this size).

    Returns:
        The fully loaded PIL image (original mode).

    Raises:
        SkipSample: with the reason (see :data:`SKIP_REASONS`).
    """
    if value is None:
        raise SkipSample("missing_image")
    if isinstance(value, PIL.Image.Image):
        return _check_size(value, max_pixels)
    data: bytes | None
    if isinstance(value, Mapping):
        data, path = value.get("bytes"), value.get("path")
        if data is None and path:
            try:
                data = Path(path).read_bytes()
            except OSError:
                raise SkipSample("undecodable") from None
    elif isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
    else:
        raise SkipSample("undecodable")
    if data is None:
        raise SkipSample("missing_image")
    if len(data) == 0:
        raise SkipSample("empty_file")
    png_size = _png_header_size(data)
    if png_size is not None:  # PIL must reach the first IDAT chunk to open a PNG: judge a header-only bomb first
        _check_dims(*png_size, max_pixels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PIL.Image.DecompressionBombWarning)
        try:
            image = PIL.Image.open(io.BytesIO(data))  # lazy: reads the header only
        except PIL.Image.DecompressionBombError:
            raise SkipSample("too_large") from None
        except (*IMAGE_DECODE_ERRORS, TypeError):  # the rules muse_hf.validation shares with the processor/app
            raise SkipSample("undecodable") from None
        _check_size(image, max_pixels)
        if draft_size is not None and image.format == "JPEG":
            image.draft("RGB", draft_size)
        try:
            image.load()
        except PIL.Image.DecompressionBombError:
            raise SkipSample("too_large") from None
        except (*IMAGE_DECODE_ERRORS, MemoryError):
            raise SkipSample("truncated") from None
    return image


def _check_size(image: PIL.Image.Image, max_pixels: int) -> PIL.Image.Image:
    _check_dims(*image.size, max_pixels)
    return image


def _check_dims(width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise SkipSample("zero_size")
    if width * height > max_pixels:
        raise SkipSample("too_large")


def _png_header_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from a PNG's IHDR chunk, or None when ``data`` does not start like a PNG."""
    if len(data) < 24 or not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def extract_text(value: Any) -> str | None:
    """A caption from a string, bytes, JSON string / dict (``caption``/``text``/``prompt``...) or list of them."""
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                return text or None
        else:
            return text or None
    if isinstance(value, Mapping):
        for key in TEXT_FIELDS:
            found = extract_text(value.get(key)) if key in value else None
            if found:
                return found
        return None
    if isinstance(value, (list, tuple)):
        for item in value:
            found = extract_text(item)
            if found:
                return found
    return None


def mask_array(image: PIL.Image.Image) -> np.ndarray:
    """Instance/label ids ``(H, W)`` from a mask image; colour-coded masks map each colour to one id."""
    if image.mode == "P":
        return np.asarray(image).astype(np.int64)
    array = np.asarray(image)
    if array.ndim == 3:  # colour-coded: keep the partition
        rgb = array[..., :3].astype(np.int64)
        return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    return array.astype(np.int64)
