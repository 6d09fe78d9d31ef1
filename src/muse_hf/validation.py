"""Shared checks that turn bad inputs into errors naming the thing, the file and the fix.

The lowest layer of the package (it imports nothing from ``muse_hf``), so the configs, the image processor, the
models, the pipeline, the data stream, the training loop and the demo all apply the same rules:

* :func:`check_known_keys` / :func:`unknown_key_message`: unknown keyword keys are refused with the closest
  known name (``'routnig' (did you mean 'routing'?)``), as the training arguments always did.
* :func:`load_image_pixels`: decode a (lazily opened) PIL image completely; a truncated or corrupt file raises
  :class:`ImageDecodeError` naming the file instead of PIL's ``OSError`` from deep inside PIL. The demo's
  upload check (``app.load_image_file``) and the training stream's skip rule (``muse_hf.data.decoding``)
  catch the same :data:`IMAGE_DECODE_ERRORS`.
* :func:`check_safetensors_file` / :func:`find_corrupt_safetensors` / :func:`corrupt_weights_error`: a truncated
  or zero-filled ``*.safetensors`` file is found from its header and size, so loaders can say which file is broken
  and what to do instead of safetensors' bare ``incomplete metadata``.
* :func:`check_pipeline_component`: a pipeline folder missing a component folder is reported as such (diffusers
  hands the component's loader the pipeline root, whose error then blames the root).
* :func:`is_hub_id` / :func:`hub_offline`: the one place that tells a Hub repo id from a local path and reads the
  Hub's offline switch (training arguments, evaluation CLI, model cards).
"""

from __future__ import annotations

import difflib
import json
import os
import re
import struct
import zlib
from collections.abc import Iterable
from pathlib import Path

import PIL.Image
from huggingface_hub import constants as hub_constants

__all__ = [
    "IMAGE_DECODE_ERRORS",
    "PNG_SIGNATURE",
    "ImageDecodeError",
    "CorruptWeightsError",
    "check_known_keys",
    "check_pipeline_component",
    "check_safetensors_file",
    "corrupt_weights_error",
    "find_corrupt_safetensors",
    "image_source",
    "load_image_pixels",
    "hub_offline",
    "is_hub_id",
    "unknown_key_message",
]

#: The eight bytes every PNG file starts with (the synthetic scenes' encoder and the stream's size check).
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------------------------- unknown keys
def unknown_key_message(key: str, known: Iterable[str]) -> str:
    """``'routnig' (did you mean 'routing'?)``: the key, quoted, with the closest known name when one is close."""
    close = difflib.get_close_matches(key, list(known), n=1)
    return f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else "")


def check_known_keys(
    keys: Iterable[str], known: Iterable[str], where: str, listed: Iterable[str] | None = None
) -> None:
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
            if header_len == 0:
                return "its header length is 0 (the file is zero-filled or was never written)"
            if 8 + header_len > size:
                return (
                    f"its header claims {header_len} bytes but the file is {size} bytes long (truncated or zero-filled)"
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


def corrupt_weights_error(
    source: str | os.PathLike, err: BaseException, subfolder: str | None = None
) -> CorruptWeightsError:
    """The error to raise when loading weights from ``source`` failed inside safetensors with ``err``.

    Names the broken file (a local folder, or the Hub cache's copy of a repo) and the fix.
    """
    local = Path(source) / subfolder if subfolder else Path(source)
    found: tuple[Path, str] | None = None
    from_hub = not Path(source).exists()
    if local.is_dir():
        found = find_corrupt_safetensors(local)
    elif local.is_file():
        problem = check_safetensors_file(local)
        found = (local, problem) if problem else None
    elif from_hub:
        from huggingface_hub import try_to_load_from_cache

        name = f"{subfolder}/model.safetensors" if subfolder else "model.safetensors"
        try:
            cached = try_to_load_from_cache(os.fspath(source), name)
        except Exception:  # noqa: BLE001 - not a repo id: nothing to point at
            cached = None
        if isinstance(cached, str):
            problem = check_safetensors_file(cached)
            found = (Path(cached), problem) if problem else None
    what = (
        f"{found[0]} is not a complete safetensors file: {found[1]}"
        if found
        else (f"A weights file of {os.fspath(local)!r} could not be read")
    )
    fix = (
        "Download it again: from_pretrained(..., force_download=True)."
        if from_hub
        else "Copy or save the model again (save_pretrained). A training stage's final model can be rewritten from "
        'its newest checkpoint (docs/recovery.md, "A corrupt file").'
    )
    return CorruptWeightsError(
        f"{what} (safetensors: {err}). It was cut off or overwritten while being written, copied or downloaded. {fix}"
    )


def check_pipeline_component(path: str | os.PathLike, class_name: str, subfolder: str | None = None) -> None:
    """Refuse a pipeline folder given where one of its components was expected.

    diffusers loads a component from ``<pipeline>/<name>/`` when that folder exists and otherwise hands the
    pipeline root itself to the component's ``from_pretrained``, whose error then reads "no file named
    config.json found in <pipeline root>". Called first by our components' ``from_pretrained``.

    Args:
        path: What ``from_pretrained`` was given.
        class_name: The loading class (``MuseConnector``, ``MuseTokenizerModel``), looked up in model_index.json.
        subfolder: ``from_pretrained``'s ``subfolder``.

    Raises:
        OSError: ``path`` is a pipeline folder (``model_index.json``) without that component's ``config.json``;
            the message names the missing folder (or says to pass ``subfolder`` when it is there).
    """
    root = Path(path)
    folder = root / subfolder if subfolder else root
    index_file = root / "model_index.json"
    if not root.is_dir() or (folder / "config.json").is_file() or not index_file.is_file():
        return
    try:
        index = json.loads(index_file.read_text())
    except (OSError, ValueError):
        return
    names = (
        [subfolder]
        if subfolder
        else [k for k, v in index.items() if isinstance(v, list) and len(v) == 2 and v[1] == class_name]
    )
    name = names[0] if names else "<component>"
    if not subfolder and (root / name / "config.json").is_file():
        raise OSError(
            f"{root} is a pipeline folder (it has model_index.json); its {class_name} is in {name}/. Load it with "
            f"{class_name}.from_pretrained({os.fspath(root)!r}, subfolder={name!r}), or load the whole pipeline."
        )
    raise OSError(
        f"The pipeline folder {root} has no {name}/ folder with a config.json for its {class_name} component (it is "
        f"listed in model_index.json). The folder is incomplete - an interrupted save, copy or upload: save the "
        f"pipeline again with save_pretrained, or copy {name}/ over from where the pipeline was saved."
    )


# ---------------------------------------------------------------------------------------------- Hub ids
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def is_hub_id(value: object) -> bool:
    """Whether ``value`` is a string shaped like a Hub repo id (``owner/name``) rather than a local path.

    Only the shape is checked; callers that must prefer an existing local folder of that name check it first.
    """
    return isinstance(value, str) and bool(_HUB_ID.match(value)) and not value.startswith((".", "/", "~"))


def hub_offline() -> bool:
    """Whether Hub access is switched off (``HF_HUB_OFFLINE`` in the environment or in ``huggingface_hub``)."""
    env = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}
    return env or bool(hub_constants.HF_HUB_OFFLINE)
