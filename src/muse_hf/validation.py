"""Shared checks that turn bad inputs into errors naming the thing, the file and the fix.

The lowest layer of the package (it imports nothing from ``muse_hf``), so the configs, the image processor, the
models, the pipeline, the data stream, the training loop and the demo all apply the same rules:

* :func:`check_known_keys` / :func:`unknown_key_message`: unknown keyword keys are refused with the closest
  known name (``'routnig' (did you mean 'routing'?)``), as the training arguments always did.
* :func:`load_image_pixels`: decode a (lazily opened) PIL image completely; a truncated or corrupt file raises
  :class:`ImageDecodeError` naming the file instead of PIL's ``OSError`` from deep inside PIL. The demo's
  upload check (``app.load_image_file``) and the training stream's skip rule (``muse_hf.data.streaming``)
  catch the same :data:`IMAGE_DECODE_ERRORS`.
* :func:`check_safetensors_file` / :func:`find_corrupt_safetensors`: a truncated or zero-filled
  ``*.safetensors`` file is found from its header and size, so loaders can say which file is broken and what to
  do instead of safetensors' bare ``incomplete metadata``.
"""

from __future__ import annotations

import difflib
import json
import os
import struct
import zlib
from collections.abc import Iterable
from pathlib import Path

import PIL.Image

__all__ = [
    "IMAGE_DECODE_ERRORS",
    "ImageDecodeError",
    "CorruptWeightsError",
    "check_known_keys",
    "check_safetensors_file",
    "find_corrupt_safetensors",
    "image_source",
    "load_image_pixels",
    "unknown_key_message",
]


# ---------------------------------------------------------------------------------------------- unknown keys
def unknown_key_message(key: str, known: Iterable[str]) -> str:
    """``'routnig' (did you mean 'routing'?)``: the key, quoted, with the closest known name when one is close."""
    close = difflib.get_close_matches(key, list(known), n=1)
    return f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else "")


def check_known_keys(keys: Iterable[str], known: Iterable[str], where: str, listed: Iterable[str] | None = None) -> None:
    """Refuse keys that ``known`` does not hold.

    Args:
        keys: The keys given.
        known: Every accepted key.
        where: What the keys were given to, for the message (e.g. ``"MuseTokenizerConfig.from_preset('tiny')"``).
        listed: The keys to list as valid in the message (default: ``known``).

    Raises:
        ValueError: naming every unknown key with its closest known name, and the valid keys.
    """
    known = set(known)
    unknown = [k for k in keys if k not in known]
    if unknown:
        names = ", ".join(unknown_key_message(k, known) for k in unknown)
        valid = ", ".join(sorted(set(listed) if listed is not None else known))
        raise ValueError(f"Unknown key{'s' if len(unknown) > 1 else ''} {names} for {where}. Valid keys: {valid}.")


# ---------------------------------------------------------------------------------------------- images
#: What PIL raises while decoding broken pixel data (a truncated PNG/JPEG, a corrupt zlib stream, ...).
IMAGE_DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    struct.error,
    zlib.error,
    IndexError,
)


class ImageDecodeError(ValueError):
    """An image's pixel data cannot be decoded (truncated or corrupt file); the message names the file."""


def image_source(image: PIL.Image.Image) -> str:
    """Where a PIL image came from, for messages: its file name, else its format (``"a PNG image"``)."""
    name = getattr(image, "filename", None)
    if name:
        return repr(os.fspath(name))
    return f"a {image.format} image" if getattr(image, "format", None) else "an image"


def load_image_pixels(image: PIL.Image.Image) -> PIL.Image.Image:
    """Decode ``image`` completely (``Image.load()``) and return it.

    ``PIL.Image.open`` reads only the header; a truncated or corrupt file fails later, wherever the pixels are
    first touched, with PIL's own ``OSError``. Call this first to get an error that names the file.

    Raises:
        ImageDecodeError: the pixel data cannot be decoded.
        PIL.Image.DecompressionBombError: left to the caller (it is a size policy, not a broken file).
    """
    try:
        image.load()
    except PIL.Image.DecompressionBombError:
        raise
    except IMAGE_DECODE_ERRORS as err:
        raise ImageDecodeError(
            f"{image_source(image)} could not be decoded ({err}): the file is truncated or corrupt. Re-export or "
            "re-download it (a partly copied or downloaded file looks like this)."
        ) from err
    return image


# ---------------------------------------------------------------------------------------------- safetensors
class CorruptWeightsError(OSError):
    """A weights file is truncated or corrupt; the message names the file and what to do."""


def check_safetensors_file(path: str | os.PathLike) -> str | None:
    """What is wrong with a ``.safetensors`` file, from its header and size, or None when it looks whole.

    Reads the 8-byte header length and the JSON header only (no tensor data); checks that every tensor's byte
    range lies inside the file.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                return f"it is {size} bytes long, shorter than a safetensors header"
            (header_len,) = struct.unpack("<Q", head)
            if header_len == 0 or 8 + header_len > size:
                return (
                    f"its header claims {header_len} bytes but the file is {size} bytes long (truncated or "
                    "zero-filled)"
                )
            header = json.loads(fh.read(header_len))
    except OSError as err:
        return f"it cannot be read ({err})"
    except (ValueError, UnicodeDecodeError):
        return "its header is not valid JSON (corrupt or zero-filled)"
    if not isinstance(header, dict):
        return "its header is not a JSON object (corrupt)"
    data_len = size - 8 - header_len
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2):
            return f"tensor {name!r} has no valid data_offsets in the header (corrupt)"
        if offsets[1] > data_len:
            return f"tensor {name!r} ends at byte {offsets[1]} of the data but the file holds {data_len} (truncated)"
    return None


def find_corrupt_safetensors(folder: str | os.PathLike, names: Iterable[str] | None = None) -> tuple[Path, str] | None:
    """The first broken ``.safetensors`` file in ``folder`` (``names``, or every ``*.safetensors``) and why."""
    root = Path(folder)
    if not root.is_dir():
        return None
    candidates = [root / n for n in names] if names is not None else sorted(root.glob("*.safetensors"))
    for file in candidates:
        if file.is_file():
            problem = check_safetensors_file(file)
            if problem is not None:
                return file, problem
    return None
