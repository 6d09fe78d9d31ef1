"""The demo's input checks: uploads, text and numbers are refused with a message the user sees (:class:`Refused`).

Uploads are decoded completely (:func:`load_image_file`: size, format and pixel limits) before any model runs;
:class:`SafeImage` is a ``gr.Image`` whose uploads go through that check.
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import PIL.Image
import PIL.ImageOps

from muse_hf.validation import IMAGE_DECODE_ERRORS

__all__ = [
    "ALLOWED_FORMATS",
    "MAX_GUIDANCE",
    "MAX_IMAGE_SIDE",
    "MAX_NEW_TOKENS",
    "MAX_PROMPT_CHARS",
    "MAX_SEED",
    "MAX_STEPS",
    "MAX_UPLOAD_BYTES",
    "Refused",
    "SafeImage",
    "check_number",
    "check_text",
    "image_key",
    "load_image_file",
    "require_image",
    "to_rgb",
]

MAX_UPLOAD_BYTES = 20 * 1024 * 1024  # 20 MB per file (also gradio's own upload cap)
MAX_IMAGE_SIDE = 4096  # pixels per side
ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF")
MAX_PROMPT_CHARS = 500
MAX_STEPS = 100
MAX_GUIDANCE = 20.0
MAX_NEW_TOKENS = 256
MAX_SEED = 2**32 - 1

logger = logging.getLogger("muse_demo")


class Refused(gr.Error):
    """A request the demo refuses (bad upload, empty prompt, missing model): the user sees ``message``; the server
    log gets one line, not the traceback gradio prints for every ``gr.Error``."""

    def __init__(self, message: str) -> None:
        super().__init__(message, print_exception=False)
        logger.info("refused: %s", " ".join(str(message).split()))


def image_key(image: PIL.Image.Image) -> str:
    """Content hash of an RGB image (identifies the source of a multi-turn session)."""
    return hashlib.sha1(image.tobytes() + repr(image.size).encode()).hexdigest()


def to_rgb(image: PIL.Image.Image) -> PIL.Image.Image:
    """EXIF-orient and convert any PIL mode to RGB (alpha composited on white, 16-bit/float rescaled)."""
    image = PIL.ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = PIL.Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return PIL.Image.alpha_composite(white, rgba).convert("RGB")
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        arr = np.asarray(image, dtype=np.float32)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / max(hi - lo, 1e-6) * 255.0
        return PIL.Image.fromarray(arr.round().astype(np.uint8)).convert("RGB")
    return image.convert("RGB")


def load_image_file(path: str | os.PathLike[str], name: str | None = None) -> PIL.Image.Image:
    """Open an uploaded file as an RGB image, refusing anything that is not a sane image.

    Checks, before decoding pixels: file size (``MAX_UPLOAD_BYTES``), that PIL recognises the content (a text
    file renamed ``.png`` is refused), the format (``ALLOWED_FORMATS``), the dimensions (``MAX_IMAGE_SIDE``; a
    decompression bomb such as a 20000x20000 PNG of a few hundred bytes is refused from its header), then
    decodes (a truncated file is refused).

    Args:
        path: the uploaded file.
        name: the name the user gave it (for messages).

    Returns:
        The decoded RGB image.

    Raises:
        gr.Error: with a message for the user saying what is wrong and what to upload instead.
    """
    path = Path(path)
    name = name or path.name
    try:
        size = path.stat().st_size
    except OSError as err:
        raise Refused(f"The upload {name!r} could not be read ({err}); please upload it again.") from err
    if size == 0:
        raise Refused(f"{name!r} is empty (0 bytes); upload a PNG, JPEG or WebP image.")
    if size > MAX_UPLOAD_BYTES:
        raise Refused(f"{name!r} is {size / 2**20:.1f} MB; the limit is {MAX_UPLOAD_BYTES // 2**20} MB.")
    too_large = (
        f"{name!r} is too large: images may be at most {MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE} pixels. "
        "Resize it and upload again."
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PIL.Image.DecompressionBombWarning)
            image = PIL.Image.open(path)
            if image.format not in ALLOWED_FORMATS:
                raise Refused(f"{name!r} is a {image.format} file; upload one of {', '.join(ALLOWED_FORMATS)}.")
            width, height = image.size
            if width < 1 or height < 1:
                raise Refused(f"{name!r} has no pixels ({width}x{height}).")
            if width > MAX_IMAGE_SIDE or height > MAX_IMAGE_SIDE:
                raise Refused(too_large + f" (it is {width}x{height})")
            image.load()
    except (PIL.Image.DecompressionBombError, PIL.Image.DecompressionBombWarning) as err:
        raise Refused(too_large) from err
    except PIL.UnidentifiedImageError as err:
        raise Refused(
            f"{name!r} is not an image that can be decoded (is it another kind of file renamed to an image "
            f"extension?). Upload a {', '.join(ALLOWED_FORMATS[:3])} image."
        ) from err
    except IMAGE_DECODE_ERRORS as err:  # the rules muse_hf.validation shares with the image processor and the stream
        raise Refused(f"{name!r} could not be decoded ({err}); the file may be truncated or corrupt.") from err
    return to_rgb(image)


class SafeImage(gr.Image):
    """``gr.Image`` whose uploads go through :func:`load_image_file` (clear errors instead of PIL tracebacks).

    It renders as the stock image component (``is_template``) and passes an RGB ``PIL.Image`` to handlers.
    """

    is_template = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("type", "pil")
        kwargs.setdefault("format", "png")
        kwargs.setdefault("sources", ["upload", "clipboard"])
        super().__init__(*args, **kwargs)

    def get_config(self, cls: type | None = None) -> dict[str, Any]:  # noqa: D102
        # gradio reads the component's props from its class's __init__ signature: use gr.Image's.
        return super().get_config(cls or gr.Image)

    def preprocess(self, payload: Any) -> PIL.Image.Image | None:  # noqa: D102
        if payload is None:
            return None
        if payload.path is None:
            if payload.url and payload.url.startswith("data:"):  # base64 upload: decode to a file first
                from gradio import processing_utils

                path = processing_utils.save_base64_to_cache(payload.url, cache_dir=self.GRADIO_CACHE)
                return load_image_file(path)
            raise Refused("No image file was received; please upload the image again.")
        return load_image_file(payload.path, name=payload.orig_name)


def check_text(text: Any, what: str, max_chars: int = MAX_PROMPT_CHARS) -> str:
    """A non-empty string of at most ``max_chars`` characters (stripped), else ``gr.Error``."""
    if not isinstance(text, str) or not text.strip():
        raise Refused(f"Please enter {'an' if what[:1].lower() in 'aeiou' else 'a'} {what}.")
    text = text.strip()
    if len(text) > max_chars:
        raise Refused(f"The {what} is {len(text)} characters long; the limit is {max_chars}.")
    return text


def check_number(value: Any, what: str, low: float, high: float, integer: bool = False) -> float | int:
    """``value`` as a number in ``[low, high]`` (an int when ``integer``), else ``gr.Error``."""
    try:
        number = float(value)
    except (TypeError, ValueError) as err:
        raise Refused(f"{what} must be a number; got {value!r}.") from err
    if not np.isfinite(number) or not low <= number <= high:
        raise Refused(f"{what} must be between {low:g} and {high:g}; got {value!r}.")
    if integer:
        if number != int(number):
            raise Refused(f"{what} must be a whole number; got {value!r}.")
        return int(number)
    return number


def require_image(image: PIL.Image.Image | None, what: str = "an image") -> PIL.Image.Image:
    """The image, or ``gr.Error`` asking for one."""
    if image is None:
        raise Refused(f"Please upload {what} first.")
    return image
