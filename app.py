#!/usr/bin/env python
"""MUSE demo: a Gradio app (and Hugging Face Space) for the MUSE tokenizer and unified model.

Tabs:
    Reconstruct  upload an image -> the tokenizer's reconstruction, PSNR / SSIM, a view of the latent channels.
    Structure    the student's topology attention beside a structural teacher's, for a clicked point or the
                 pooled query (paper Fig. 4). Teacher: instance masks of a synthetic scene (mask affinity),
                 else a ``--teacher`` ViT (e.g. DINOv3) for any photo, else the student alone (and why).
    Generate     prompt, steps, guidance, seed -> image.
    Edit         image + instruction, multi-turn (each instruction edits the latest result).
    Understand   chat about an image; only when the pipeline's ``mllm`` can see images (InternVL).

Run locally (defaults: the quickstart outputs, see ``DEFAULT_TOKENIZER`` / ``DEFAULT_PIPELINE``)::

    make quickstart && python app.py
    python app.py --model PATH_OR_ID --pipeline PATH_OR_ID [--teacher PATH_OR_ID] [--host 127.0.0.1 --port 7860]

As a Space, ``app.py`` runs with no arguments and reads ``MUSE_DEMO_MODEL``, ``MUSE_DEMO_PIPELINE`` and
``MUSE_DEMO_TEACHER`` (Space variables); ``python -m muse_hf.hub space USER/NAME --model ... --pipeline ...``
publishes it. Tests build the app in-process with :func:`build_demo` or start this file as a subprocess.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

APP_DIR = Path(__file__).resolve().parent
# A Space (or a checkout without `pip install -e .`) ships the package sources next to app.py.
try:
    import muse_hf  # noqa: F401
except ImportError:  # pragma: no cover - exercised on Spaces only
    sys.path.insert(0, str(APP_DIR / "src"))

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import PIL.Image  # noqa: E402
import PIL.ImageOps  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from muse_hf.validation import IMAGE_DECODE_ERRORS  # noqa: E402

# ------------------------------------------------------------------------------------------------ settings
#: Where ``make quickstart`` writes the tiny tokenizer and pipeline; used when no --model / --pipeline is given.
DEFAULT_TOKENIZER = "outputs/quickstart/model"
DEFAULT_PIPELINE = "outputs/quickstart/pipeline"
#: Environment variables a Space sets instead of command-line flags.
ENV_MODEL, ENV_PIPELINE, ENV_TEACHER = "MUSE_DEMO_MODEL", "MUSE_DEMO_PIPELINE", "MUSE_DEMO_TEACHER"

MAX_UPLOAD_BYTES = 20 * 1024 * 1024  # 20 MB per file (also gradio's own upload cap)
MAX_IMAGE_SIDE = 4096  # pixels per side
ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF")
MAX_PROMPT_CHARS = 500
MAX_STEPS = 100
MAX_GUIDANCE = 20.0
MAX_NEW_TOKENS = 256
MAX_SEED = 2**32 - 1
DISPLAY_SIZE = 256  # long side of attention overlays and latent views
MAX_LATENT_CHANNELS_SHOWN = 16
CONCURRENCY_LIMIT = 1  # tokenizer events; pipeline events always run one at a time (scheduler state)
QUEUE_MAX_SIZE = 32
#: Small model outputs (e.g. 64 px) are shown scaled up with visible pixels instead of as a thumbnail.
DEMO_CSS = """
.pixelated img { image-rendering: pixelated; width: 100% !important; height: 100% !important; object-fit: contain; }
"""

logger = logging.getLogger("muse_demo")


# ------------------------------------------------------------------------------------------------ input checks
class Refused(gr.Error):
    """A request the demo refuses (bad upload, empty prompt, missing model): the user sees ``message``; the server
    log gets one line, not the traceback gradio prints for every ``gr.Error``."""

    def __init__(self, message: str) -> None:
        super().__init__(message, print_exception=False)
        logger.info("refused: %s", " ".join(str(message).split()))


def _image_key(image: PIL.Image.Image) -> str:
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


# ------------------------------------------------------------------------------------------------ models
@dataclass
class DemoModels:
    """What the demo runs on; any part may be missing (the page then says how to get it).

    Attributes:
        tokenizer: the ``MuseTokenizerModel`` (the pipeline's ``vae`` when only a pipeline is given).
        image_processor: its ``MuseImageProcessor``.
        pipeline: the ``MusePipeline``.
        teacher: a ``StructuralTeacher`` for the Structure tab.
        sources: where each part came from, for the page header.
        notices: why a part is missing and how to get it.
    """

    tokenizer: Any = None
    image_processor: Any = None
    pipeline: Any = None
    teacher: Any = None
    sources: dict[str, str] = field(default_factory=dict)
    notices: dict[str, str] = field(default_factory=dict)

    @property
    def can_chat(self) -> bool:
        """Whether the pipeline's ``mllm`` can see images (the Understand tab is shown)."""
        return self.pipeline is not None and bool(self.pipeline.condition_encoder.supports_images)

    @property
    def device(self) -> torch.device:
        module = self.tokenizer if self.tokenizer is not None else self.pipeline
        return module.device if module is not None else torch.device("cpu")

    @property
    def native_size(self) -> tuple[int, int]:
        """``(H, W)`` the tokenizer works at: the image processor's size, else the config's image size."""
        size = getattr(self.image_processor, "size", None) or {}
        if "height" in size and "width" in size:
            return int(size["height"]), int(size["width"])
        return tuple(int(v) for v in self.tokenizer.config.image_hw)  # type: ignore[return-value]


def _resolve(explicit: Any, env: str, default: str | None) -> tuple[Any, bool]:
    """(source, user_given): an explicit value, else the environment variable, else the default path."""
    if explicit is not None:
        return explicit, True
    if os.environ.get(env):
        return os.environ[env], True
    return default, False


def _default_path(path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() or p.exists() else APP_DIR / p


def load_demo_models(
    model: Any = None,
    pipeline: Any = None,
    teacher: Any = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    teacher_image_size: int | None = 224,
) -> DemoModels:
    """Load the tokenizer, pipeline and teacher the demo uses.

    Each of ``model`` / ``pipeline`` / ``teacher`` may be a local folder, a Hub id, an already loaded object
    or ``None``. ``None`` falls back to the ``MUSE_DEMO_*`` environment variables, then (model and pipeline)
    to the quickstart outputs; a missing *default* only leaves a notice on the page, while a source the user
    named that fails to load raises.

    Args:
        model: ``MuseTokenizerModel`` source.
        pipeline: ``MusePipeline`` source.
        teacher: ``StructuralTeacher`` source (a transformers ViT such as DINOv3 / DINOv2), optional.
        device: default CUDA when available, else CPU.
        dtype: weights dtype.
        teacher_image_size: shorter side the teacher sees images at (``None``: the tokenizer's size).

    Returns:
        The :class:`DemoModels`.

    Raises:
        ValueError: a named source could not be loaded (the message says which and why).
    """
    from muse_hf.models.image_processing_muse import MuseImageProcessor
    from muse_hf.models.modeling_muse import MuseTokenizerModel
    from muse_hf.pipelines import MusePipeline

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    models = DemoModels()

    pipe_src, pipe_given = _resolve(pipeline, ENV_PIPELINE, DEFAULT_PIPELINE)
    if isinstance(pipe_src, MusePipeline):
        models.pipeline, models.sources["pipeline"] = pipe_src, type(pipe_src).__name__ + " object"
    elif pipe_given or _default_path(pipe_src).exists():
        src = str(pipe_src) if pipe_given else str(_default_path(pipe_src))
        try:
            models.pipeline = MusePipeline.from_pretrained(src, dtype=dtype)
        except (OSError, ValueError, KeyError) as err:
            raise ValueError(f"Could not load the pipeline {src!r}: {err}") from err
        models.sources["pipeline"] = src
    else:
        models.notices["pipeline"] = (
            f"No pipeline found at `{DEFAULT_PIPELINE}`. Run `make quickstart` to train the tiny one, or start "
            "the demo with `python app.py --pipeline PATH_OR_HUB_ID`."
        )
    if models.pipeline is not None:
        models.pipeline.to(device)
        models.pipeline.set_progress_bar_config(disable=True)

    tok_src, tok_given = _resolve(model, ENV_MODEL, DEFAULT_TOKENIZER)
    if isinstance(tok_src, MuseTokenizerModel):
        models.tokenizer, models.sources["tokenizer"] = tok_src, type(tok_src).__name__ + " object"
    elif tok_given or _default_path(tok_src).exists():
        src = str(tok_src) if tok_given else str(_default_path(tok_src))
        try:
            models.tokenizer = MuseTokenizerModel.from_pretrained(src, dtype=dtype)
        except (OSError, ValueError, KeyError) as err:
            raise ValueError(f"Could not load the tokenizer {src!r}: {err}") from err
        try:
            models.image_processor = MuseImageProcessor.from_pretrained(src)
        except (OSError, ValueError):  # folder saved without preprocessor_config.json
            models.image_processor = None
        models.sources["tokenizer"] = src
    elif models.pipeline is not None:
        models.tokenizer = models.pipeline.vae
        models.image_processor = models.pipeline.muse_image_processor
        models.sources["tokenizer"] = "the pipeline's `vae`"
    else:
        models.notices["tokenizer"] = (
            f"No tokenizer found at `{DEFAULT_TOKENIZER}`. Run `make quickstart` to train the tiny one, or start "
            "the demo with `python app.py --model PATH_OR_HUB_ID`."
        )
    if models.tokenizer is not None:
        models.tokenizer.to(device).eval()
        if models.image_processor is None:
            h, w = models.tokenizer.config.image_hw
            models.image_processor = MuseImageProcessor(size={"height": int(h), "width": int(w)})

    teacher_src, _ = _resolve(teacher, ENV_TEACHER, None)
    if teacher_src is not None:
        from muse_hf.objectives import StructuralTeacher

        if isinstance(teacher_src, StructuralTeacher):
            models.teacher, models.sources["teacher"] = teacher_src, type(teacher_src).__name__ + " object"
        else:
            try:
                models.teacher = StructuralTeacher.from_pretrained(str(teacher_src), image_size=teacher_image_size)
            except (OSError, ValueError) as err:
                raise ValueError(f"Could not load the structural teacher {teacher_src!r}: {err}") from err
            models.sources["teacher"] = str(teacher_src)
        models.teacher.to(device)
    return models


# ------------------------------------------------------------------------------------------------ rendering
def fit_to_size(
    image: PIL.Image.Image, size: tuple[int, int]
) -> tuple[PIL.Image.Image, tuple[float, float, float, float]]:
    """Centre-crop ``image`` to the aspect of ``size`` = ``(H, W)`` and resize it (bicubic) to that size.

    Returns:
        The resized crop and the crop box ``(left, top, width, height)`` in the original image's pixels.
    """
    height, width = size
    w0, h0 = image.size
    scale = max(width / w0, height / h0)
    cw, ch = width / scale, height / scale  # crop size in original pixels
    left, top = (w0 - cw) / 2, (h0 - ch) / 2
    out = image.resize((width, height), PIL.Image.Resampling.BICUBIC, box=(left, top, left + cw, top + ch))
    return out, (left, top, cw, ch)


def _colormap(values: np.ndarray, name: str = "inferno") -> np.ndarray:
    """``(H, W)`` values in [0, 1] -> ``(H, W, 3)`` uint8 colours."""
    from matplotlib import colormaps

    return (colormaps[name](np.clip(values, 0.0, 1.0))[..., :3] * 255).round().astype(np.uint8)


def _display_size(hw: tuple[int, int]) -> tuple[int, int]:
    h, w = hw
    scale = DISPLAY_SIZE / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def attention_overlay(
    view: PIL.Image.Image, attention: torch.Tensor, point: tuple[int, int] | None = None, alpha: float = 0.6
) -> PIL.Image.Image:
    """Blend one attention map over the image, like the paper's Figure 4.

    Args:
        view: the model-input image (``W x H``).
        attention: ``(h, w)`` weights over the token grid.
        point: ``(row, col)`` of the query token to mark, or ``None`` for the pooled query.
        alpha: heat-map opacity.

    Returns:
        A ``DISPLAY_SIZE``-long-side RGB image.
    """
    out_h, out_w = _display_size((view.size[1], view.size[0]))
    heat = attention.detach().float().cpu()[None, None]  # (1, 1, h, w)
    heat = F.interpolate(heat, size=(out_h, out_w), mode="bilinear", align_corners=False)[0, 0]
    heat = (heat - heat.min()) / (heat.max() - heat.min()).clamp_min(1e-12)
    base = np.asarray(view.resize((out_w, out_h), PIL.Image.Resampling.BICUBIC), dtype=np.float32)
    blended = (1 - alpha) * base + alpha * _colormap(heat.numpy()).astype(np.float32)
    image = PIL.Image.fromarray(blended.round().clip(0, 255).astype(np.uint8))
    if point is not None:
        from PIL import ImageDraw

        gh, gw = attention.shape
        cy, cx = (point[0] + 0.5) * out_h / gh, (point[1] + 0.5) * out_w / gw
        r = max(4.0, 0.35 * out_h / gh)
        draw = ImageDraw.Draw(image)
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=(0, 255, 255), width=3)
        draw.line((cx - 2 * r, cy, cx + 2 * r, cy), fill=(0, 255, 255), width=1)
        draw.line((cx, cy - 2 * r, cx, cy + 2 * r), fill=(0, 255, 255), width=1)
    return image


def latent_channel_view(latents: torch.Tensor, max_channels: int = MAX_LATENT_CHANNELS_SHOWN) -> PIL.Image.Image:
    """Tile the first ``max_channels`` latent channels (each min-max normalised, viridis) into one image.

    Args:
        latents: ``(c, h, w)`` latents of one image.
        max_channels: channels shown.

    Returns:
        RGB image of a ``ceil(sqrt(n))``-column grid, each tile upscaled (nearest) to about 64 px.
    """
    lat = latents.detach().float().cpu()[:max_channels]  # (n, h, w)
    n, h, w = lat.shape
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    scale = max(1, 64 // max(h, w))
    th, tw, gap = h * scale, w * scale, 2
    canvas = np.full((rows * (th + gap) - gap, cols * (tw + gap) - gap, 3), 255, np.uint8)
    lo = lat.flatten(1).min(1).values[:, None, None]
    hi = lat.flatten(1).max(1).values[:, None, None]
    norm = ((lat - lo) / (hi - lo).clamp_min(1e-12)).numpy()
    for i in range(n):
        r, c = divmod(i, cols)
        tile = _colormap(np.kron(norm[i], np.ones((scale, scale))), "viridis")
        canvas[r * (th + gap) : r * (th + gap) + th, c * (tw + gap) : c * (tw + gap) + tw] = tile
    return PIL.Image.fromarray(canvas)


# ------------------------------------------------------------------------------------------------ the demo
ProgressFn = Callable[..., Any]


def _no_progress(*args: Any, **kwargs: Any) -> None:
    return None


class MuseDemo:
    """The demo's computations, independent of the UI (each method is one tab's action).

    Args:
        models: what to run on (see :func:`load_demo_models`).
    """

    def __init__(self, models: DemoModels) -> None:
        self.models = models
        self._scene_renderer = _scene_renderer()

    # -------------------------------------------------------------- shared
    def _need(self, part: str) -> Any:
        value = getattr(self.models, part)
        if value is None:
            raise Refused(self.models.notices.get(part, f"No {part} is loaded."))
        return value

    def prepare(
        self, image: PIL.Image.Image
    ) -> tuple[torch.Tensor, PIL.Image.Image, tuple[float, float, float, float]]:
        """Fit an image to the tokenizer's size; returns ``pixel_values`` ``(1, 3, H, W)``, the view and crop box."""
        tokenizer = self._need("tokenizer")
        view, box = fit_to_size(image, self.models.native_size)
        h, w = self.models.native_size
        pixel_values = self.models.image_processor(view, size={"height": h, "width": w}, return_tensors="pt")[
            "pixel_values"
        ].to(device=tokenizer.device, dtype=tokenizer.dtype)  # (1, 3, H, W)
        return pixel_values, view, box

    # -------------------------------------------------------------- Reconstruct
    @torch.no_grad()
    def reconstruct(
        self, image: PIL.Image.Image | None, progress: ProgressFn = _no_progress
    ) -> tuple[PIL.Image.Image, PIL.Image.Image, PIL.Image.Image, dict[str, Any]]:
        """Encode and decode an image.

        Returns:
            The model input (fitted to the tokenizer's size), its reconstruction (same size), the latent-channel
            view, and metrics: ``psnr_db``, ``ssim``, ``latent_shape`` ``[c, h, w]``, ``image_size`` ``[H, W]``,
            ``compression``, ``seconds``.
        """
        from muse_hf.evaluation.metrics import psnr, ssim

        image = require_image(image)
        tokenizer = self._need("tokenizer")
        progress(0.1, desc="Encoding")
        start = time.perf_counter()
        pixel_values, view, _ = self.prepare(image)
        latents = tokenizer.encode(pixel_values).latents  # (1, c, h, w)
        progress(0.5, desc="Decoding")
        sample = tokenizer.decode(latents, output_size=tuple(pixel_values.shape[-2:])).sample  # (1, 3, H, W)
        seconds = time.perf_counter() - start
        processor = self.models.image_processor
        target = processor.to_unit_range(pixel_values.float().cpu())  # (1, 3, H, W) in [0, 1]
        recon = processor.postprocess(sample.float().cpu(), output_type="pt")  # (1, 3, H, W) in [0, 1]
        metrics = {
            "psnr_db": round(float(psnr(recon, target)[0]), 3),
            "ssim": round(float(ssim(recon, target)[0]), 4),
            "latent_shape": list(latents.shape[1:]),
            "image_size": list(pixel_values.shape[-2:]),
            "compression": int(tokenizer.config.spatial_compression_ratio),
            "seconds": round(seconds, 3),
        }
        progress(0.9, desc="Rendering")
        recon_image = processor.postprocess(sample.float().cpu(), output_type="pil")[0]
        return view, recon_image, latent_channel_view(latents[0]), metrics

    # -------------------------------------------------------------- Structure
    @property
    def topology_layers(self) -> list[int]:
        """Block indices whose attention the tokenizer can return."""
        tokenizer = self.models.tokenizer
        return list(tokenizer.config.topology_layers) if tokenizer is not None else []

    def sample_scene(self, seed: int) -> tuple[PIL.Image.Image, dict[str, Any]]:
        """A synthetic scene at the tokenizer's size with its instance mask (for the mask-affinity teacher).

        Returns:
            The image and a state ``{"key": content hash, "mask": (H, W) uint8, "caption": str}``.
        """
        if self._scene_renderer is None:
            raise Refused("The synthetic scene renderer (muse_hf.data.shapes) is not available in this install.")
        seed = check_number(seed, "Seed", 0, MAX_SEED, integer=True)
        image, mask, caption = self._scene_renderer(seed, max(32, min(self.models.native_size)))
        return image, {"key": _image_key(image), "mask": mask, "caption": caption}

    @torch.no_grad()
    def structure(
        self,
        image: PIL.Image.Image | None,
        query: str,
        x: float,
        y: float,
        layer: int | None,
        scene: dict[str, Any] | None = None,
        progress: ProgressFn = _no_progress,
    ) -> tuple[PIL.Image.Image, PIL.Image.Image | None, str]:
        """The student's topology attention beside the teacher's for one query (paper Fig. 4).

        Args:
            image: the image.
            query: ``"point"`` (the token under ``(x, y)``) or ``"pooled"`` (mean over all query tokens: the
                attention each token receives, a CLS-like summary).
            x: horizontal position of the point as a fraction of the image width, in [0, 1].
            y: vertical position as a fraction of the height, in [0, 1].
            layer: the synergistic block (one of the tokenizer's ``topology_layers``; default the last).
            scene: the state of :meth:`sample_scene`; its mask is used when ``image`` is that scene.

        Returns:
            Student overlay, teacher overlay (``None`` without a teacher) and a Markdown note on what is shown.
        """
        from muse_hf.objectives import MaskAffinityTeacher, topology_alignment_loss

        image = require_image(image)
        tokenizer = self._need("tokenizer")
        if query not in ("point", "pooled"):
            raise Refused(f"Query must be 'point' or 'pooled'; got {query!r}.")
        x = check_number(x, "x", 0.0, 1.0)
        y = check_number(y, "y", 0.0, 1.0)
        layers = self.topology_layers
        if not layers:
            raise Refused("This tokenizer has no topology layers (config.topology_layers is empty).")
        layer = layers[-1] if layer is None else int(check_number(layer, "Layer", min(layers), max(layers), True))
        if layer not in layers:
            raise Refused(f"Layer {layer} has no topology attention; choose one of {layers}.")
        progress(0.1, desc="Student attention")
        pixel_values, view, box = self.prepare(image)
        enc = tokenizer.encode(pixel_values, output_attentions=True)
        grid = tuple(enc.latents.shape[-2:])  # (h, w)
        student = enc.attentions[layers.index(layer)].float().mean(dim=1, keepdim=True)  # (1, 1, N, N)

        row = col = None
        if query == "point":  # the clicked pixel of the original image -> its cell of the fitted crop
            left, top, cw, ch = box
            fx = min(max((x * image.size[0] - left) / cw, 0.0), 1.0 - 1e-6)
            fy = min(max((y * image.size[1] - top) / ch, 0.0), 1.0 - 1e-6)
            row, col = int(fy * grid[0]), int(fx * grid[1])

        def select(attn: torch.Tensor) -> torch.Tensor:  # (1, 1, N, N) -> (h, w)
            rows = attn[0, 0]  # (N, N)
            picked = rows[row * grid[1] + col] if row is not None else rows.mean(dim=0)  # (N,)
            return picked.reshape(grid)

        point = (row, col) if row is not None else None
        student_img = attention_overlay(view, select(student), point)
        what = (
            f"token ({row}, {col}) of the {grid[0]}x{grid[1]} grid"
            if point
            else "the pooled query (mean over all tokens)"
        )
        note = [f"**Student**: block {layer} of the synergistic stack, heads averaged, {what}."]

        progress(0.5, desc="Teacher attention")
        teacher = None
        if scene and scene.get("key") == _image_key(image) and scene.get("mask") is not None:
            left, top, cw, ch = box  # the same crop as the image, nearest so instance ids stay ids
            mask_img = PIL.Image.fromarray(np.asarray(scene["mask"], np.uint8)).resize(
                (view.size[0], view.size[1]), PIL.Image.Resampling.NEAREST, box=(left, top, left + cw, top + ch)
            )
            mask = torch.from_numpy(np.array(mask_img, dtype=np.int64))  # (H, W)
            teacher = MaskAffinityTeacher()(mask[None], grid)  # (1, 1, N, N)
            note.append(
                "**Teacher**: mask affinity from the synthetic scene's instance masks (the training teacher "
                "for the embedded data): each token attends uniformly to its own object."
            )
        elif self.models.teacher is not None:
            images01 = self.models.image_processor.to_unit_range(pixel_values.float())
            teacher = self.models.teacher(images01.to(self.models.device), grid_size=grid)  # (1, heads|1, N, N)
            teacher = teacher.float().mean(dim=1, keepdim=True)
            note.append(
                f"**Teacher**: `{self.models.sources.get('teacher')}` attention (last layer, heads averaged, "
                "interpolated to the student's grid)."
            )
        else:
            note.append(
                "**No teacher shown**: the mask-affinity teacher needs instance masks, which an uploaded photo does "
                "not have (use *Sample a synthetic scene*), and no structural teacher was configured (start the "
                "demo with `--teacher facebook/dinov2-small` or another DINO checkpoint)."
            )
        teacher_img = None
        if teacher is not None:
            teacher = teacher.to(student.device)
            teacher_img = attention_overlay(view, select(teacher), point)
            kl = float(topology_alignment_loss(student, teacher))
            note.append(f"Topology KL(teacher ‖ student), mean over all query tokens: **{kl:.4f}** nats.")
        return student_img, teacher_img, "\n\n".join(note)

    # -------------------------------------------------------------- Generate / Edit / Understand
    def _pipeline_call(
        self, prompt: str, image: PIL.Image.Image | None, steps: Any, guidance: Any, seed: Any, progress: ProgressFn
    ) -> PIL.Image.Image:
        pipe = self._need("pipeline")
        steps = check_number(steps, "Steps", 1, MAX_STEPS, integer=True)
        guidance = check_number(guidance, "Guidance", 0.0, MAX_GUIDANCE)
        seed = check_number(seed, "Seed", 0, MAX_SEED, integer=True)
        generator = torch.Generator(device="cpu").manual_seed(seed)
        progress((0, steps), desc="Denoising", unit="steps")

        def on_step(pipeline: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            progress((step + 1, steps), desc="Denoising", unit="steps")
            return {}

        try:
            out = pipe(
                prompt,
                image=image,
                num_inference_steps=steps,
                guidance_scale=guidance,
                generator=generator,
                callback_on_step_end=on_step,
                output_type="pil",
            )
        except ValueError as err:  # the pipeline's own input checks
            raise Refused(str(err)) from err
        return out.images[0]

    def generate(
        self, prompt: str, steps: Any, guidance: Any, seed: Any, progress: ProgressFn = _no_progress
    ) -> PIL.Image.Image:
        """Text-to-image at the tokenizer's native size."""
        prompt = check_text(prompt, "prompt")
        return self._pipeline_call(prompt, None, steps, guidance, seed, progress)

    def edit(
        self,
        image: PIL.Image.Image | None,
        instruction: str,
        steps: Any,
        guidance: Any,
        seed: Any,
        session: dict[str, Any] | None,
        progress: ProgressFn = _no_progress,
    ) -> tuple[PIL.Image.Image, list[dict[str, Any]], dict[str, Any]]:
        """One turn of multi-turn editing: edit the latest image of the session (a new upload starts over).

        Returns:
            The edited image, the conversation as chatbot messages and the new session state
            ``{"key": source hash, "source": image, "turns": [(instruction, image), ...]}``.
        """
        image = require_image(image, "an image to edit")
        instruction = check_text(instruction, "edit instruction")
        key = _image_key(image)
        if not session or session.get("key") != key:
            session = {"key": key, "source": image, "turns": []}
        current = session["turns"][-1][1] if session["turns"] else session["source"]
        edited = self._pipeline_call(instruction, current, steps, guidance, seed, progress)
        session = {**session, "turns": [*session["turns"], (instruction, edited)]}
        return edited, edit_messages(session), session

    def understand(
        self,
        image: PIL.Image.Image | None,
        question: str,
        max_new_tokens: Any,
        session: dict[str, Any] | None,
        progress: ProgressFn = _no_progress,
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Answer a question about the image with the pipeline's MLLM (each question is answered on its own).

        Returns:
            The conversation as chatbot messages and the session state.
        """
        pipe = self._need("pipeline")
        if not self.models.can_chat:
            raise Refused(f"This pipeline's mllm ({type(pipe.mllm).__name__}) cannot see images, so it cannot chat.")
        image = require_image(image, "an image to ask about")
        question = check_text(question, "question")
        max_new_tokens = check_number(max_new_tokens, "Max new tokens", 1, MAX_NEW_TOKENS, integer=True)
        key = _image_key(image)
        if not session or session.get("key") != key:
            session = {"key": key, "source": image, "turns": []}
        progress(0.2, desc="Generating the answer")
        try:
            answer = pipe.chat(image, question, max_new_tokens=max_new_tokens)
        except ValueError as err:
            raise Refused(str(err)) from err
        session = {**session, "turns": [*session["turns"], (question, answer or "(empty answer)")]}
        return chat_messages(session), session


def edit_messages(session: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Chatbot messages for an edit session: the source image, then instruction / result pairs."""
    if not session:
        return []
    messages: list[dict[str, Any]] = [{"role": "user", "content": gr.Image(session["source"], format="png")}]
    for instruction, image in session["turns"]:
        messages.append({"role": "user", "content": instruction})
        messages.append({"role": "assistant", "content": gr.Image(image, format="png")})
    return messages


def chat_messages(session: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Chatbot messages for an Understand session: the image, then question / answer pairs."""
    if not session:
        return []
    messages: list[dict[str, Any]] = [{"role": "user", "content": gr.Image(session["source"], format="png")}]
    for question, answer in session["turns"]:
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return messages


def _scene_renderer() -> Callable[[int, int], tuple[PIL.Image.Image, np.ndarray, str]] | None:
    """``render(seed, size) -> (image, mask, caption)`` from the synthetic-scenes data module, if installed."""
    try:
        from muse_hf.data.shapes import make_caption, render_scene, sample_scene
    except ImportError as err:  # the data module is optional for the demo
        logger.warning("Synthetic scenes unavailable (%s); the Structure tab works on uploads only.", err)
        return None

    def render(seed: int, size: int) -> tuple[PIL.Image.Image, np.ndarray, str]:
        rng = np.random.default_rng(seed)
        scene = sample_scene(rng, size=size)
        image, mask = render_scene(scene)  # (S, S, 3) uint8, (S, S) uint8
        return PIL.Image.fromarray(image), mask, make_caption(scene, rng)

    return render


def _example_photos() -> list[str]:
    """A few scikit-image sample photos written as PNGs (for gr.Examples)."""
    try:
        import skimage.data
    except ImportError:
        return []
    folder = Path(tempfile.gettempdir()) / "muse_demo_examples"
    folder.mkdir(exist_ok=True)
    paths = []
    for name in ("astronaut", "coffee", "chelsea"):
        path = folder / f"{name}.png"
        if not path.exists():
            PIL.Image.fromarray(getattr(skimage.data, name)()).save(path)
        paths.append(str(path))
    return paths


# ------------------------------------------------------------------------------------------------ UI
def _header(models: DemoModels) -> str:
    lines = [
        "# MUSE — unified visual tokenizer and multimodal model",
        "Reconstruct images, inspect the Synergistic Blocks' attention topology, generate, edit"
        + (" and ask questions." if models.can_chat else "."),
    ]
    for part in ("tokenizer", "pipeline", "teacher"):
        if part in models.sources:
            lines.append(f"- **{part}**: `{models.sources[part]}`")
    if models.notices:
        lines.append("")
        lines += [f"> ⚠️ {notice}" for notice in models.notices.values()]
    return "\n".join(lines)


def build_demo(
    model: Any = None,
    pipeline: Any = None,
    teacher: Any = None,
    *,
    models: DemoModels | None = None,
    device: str | None = None,
    concurrency_limit: int = CONCURRENCY_LIMIT,
    queue_max_size: int = QUEUE_MAX_SIZE,
) -> gr.Blocks:
    """Build the demo.

    Args:
        model: tokenizer source (path, Hub id or ``MuseTokenizerModel``), see :func:`load_demo_models`.
        pipeline: pipeline source (path, Hub id or ``MusePipeline``).
        teacher: structural teacher source, optional.
        models: already loaded models (then ``model`` / ``pipeline`` / ``teacher`` are ignored).
        device: device for loading.
        concurrency_limit: events of the tokenizer tabs run at most this many at a time; pipeline events
            (Generate, Edit, Understand) share one queue and run one at a time.
        queue_max_size: requests waiting beyond this are refused.

    Returns:
        The ``gr.Blocks`` app with its queue configured; serve it with :func:`launch_demo` (``.launch()`` works
        too, without the upload cap and CSS).
    """
    models = models or load_demo_models(model, pipeline, teacher, device=device)
    demo_logic = MuseDemo(models)
    has_tok, has_pipe = models.tokenizer is not None, models.pipeline is not None
    native = models.native_size if has_tok else None
    examples = _example_photos()
    tok_queue = {"concurrency_limit": concurrency_limit, "concurrency_id": "tokenizer"}
    pipe_queue = {"concurrency_limit": 1, "concurrency_id": "pipeline"}

    def missing(part: str) -> gr.Markdown:
        return gr.Markdown(f"> ⚠️ {models.notices.get(part, '')}", visible=part in models.notices)

    with gr.Blocks(title="MUSE demo", analytics_enabled=False) as demo:
        gr.Markdown(_header(models), elem_id="header")
        with gr.Tabs():
            # ---------------------------------------------------------------- Reconstruct
            with gr.Tab("Reconstruct", id="reconstruct"):
                missing("tokenizer")
                gr.Markdown(
                    "Encode an image to MUSE latents and decode it back"
                    + (f" (at {native[0]}x{native[1]}: the image is centre-cropped and resized)." if native else ".")
                )
                with gr.Row():
                    rec_in = SafeImage(label="Image", elem_id="reconstruct-input", height=320)
                    with gr.Column():
                        rec_view = gr.Image(
                            label="Model input",
                            type="pil",
                            format="png",
                            interactive=False,
                            height=200,
                            elem_id="reconstruct-view",
                            elem_classes="pixelated",
                        )
                        rec_out = gr.Image(
                            label="Reconstruction",
                            type="pil",
                            format="png",
                            interactive=False,
                            height=200,
                            elem_id="reconstruct-output",
                            elem_classes="pixelated",
                        )
                    with gr.Column():
                        rec_latent = gr.Image(
                            label="Latent channels (first 16, each min-max normalised)",
                            type="pil",
                            format="png",
                            interactive=False,
                            height=240,
                            elem_classes="pixelated",
                        )
                        rec_metrics = gr.JSON(label="Metrics", elem_id="reconstruct-metrics")
                rec_btn = gr.Button("Reconstruct", variant="primary", interactive=has_tok, elem_id="reconstruct-button")
                if examples:
                    gr.Examples(examples, inputs=rec_in, label="scikit-image photos")

                def do_reconstruct(image: PIL.Image.Image | None, progress: gr.Progress = gr.Progress()) -> tuple:
                    return demo_logic.reconstruct(image, progress)

                rec_btn.click(
                    do_reconstruct,
                    rec_in,
                    [rec_view, rec_out, rec_latent, rec_metrics],
                    api_name="reconstruct",
                    **tok_queue,
                )

            # ---------------------------------------------------------------- Structure
            with gr.Tab("Structure", id="structure"):
                missing("tokenizer")
                gr.Markdown(
                    "Click a point on the image to see where that token attends in the student (a "
                    "synergistic block's topology stream) and in the structural teacher; or choose the "
                    "pooled query. *Sample a synthetic scene* gives an image with instance masks, whose "
                    "mask-affinity attention is the teacher the embedded model was trained against."
                )
                scene_state = gr.State(None)
                with gr.Row():
                    with gr.Column():
                        st_in = SafeImage(label="Image (click a point)", elem_id="structure-input", height=320)
                        with gr.Row():
                            st_query = gr.Radio(["point", "pooled"], value="point", label="Query")
                            layers = demo_logic.topology_layers
                            st_layer = gr.Dropdown(
                                layers or [0], value=(layers or [0])[-1], label="Block", interactive=bool(layers)
                            )
                        with gr.Row():
                            st_x = gr.Slider(
                                0, 1, value=0.5, step=0.01, label="x (fraction of width)", elem_id="structure-x"
                            )
                            st_y = gr.Slider(
                                0, 1, value=0.5, step=0.01, label="y (fraction of height)", elem_id="structure-y"
                            )
                        with gr.Row():
                            st_seed = gr.Number(0, label="Scene seed", precision=0, minimum=0, maximum=MAX_SEED)
                            st_scene_btn = gr.Button(
                                "Sample a synthetic scene",
                                interactive=has_tok and demo_logic._scene_renderer is not None,
                            )
                        st_btn = gr.Button("Show attention", variant="primary", interactive=has_tok)
                    st_student = gr.Image(
                        label="Student (MUSE topology)",
                        type="pil",
                        format="png",
                        interactive=False,
                        height=320,
                        elem_id="structure-student",
                    )
                    st_teacher = gr.Image(
                        label="Teacher",
                        type="pil",
                        format="png",
                        interactive=False,
                        height=320,
                        elem_id="structure-teacher",
                    )
                st_note = gr.Markdown(elem_id="structure-note")
                if examples:
                    gr.Examples(examples, inputs=st_in, label="scikit-image photos")
                st_inputs = [st_in, st_query, st_x, st_y, st_layer, scene_state]
                st_outputs = [st_student, st_teacher, st_note]

                def do_structure(image, query, x, y, layer, scene, progress: gr.Progress = gr.Progress()) -> tuple:
                    return demo_logic.structure(image, query, x, y, layer, scene, progress)

                def do_scene(seed: Any) -> tuple[PIL.Image.Image, dict[str, Any], str]:
                    image, state = demo_logic.sample_scene(seed)
                    return image, state, f"Scene: *{state['caption']}*"

                def on_select(image: PIL.Image.Image | None, evt: gr.SelectData) -> tuple[float, float, str]:
                    image = require_image(image)
                    px, py = evt.index[0], evt.index[1]
                    return (
                        round(min(max(px / image.size[0], 0.0), 1.0), 4),
                        round(min(max(py / image.size[1], 0.0), 1.0), 4),
                        "point",
                    )

                st_btn.click(do_structure, st_inputs, st_outputs, api_name="structure", **tok_queue)
                st_scene_btn.click(
                    do_scene, st_seed, [st_in, scene_state, st_note], api_name="scene", **tok_queue
                ).then(do_structure, st_inputs, st_outputs, api_visibility="private", **tok_queue)
                st_in.select(on_select, st_in, [st_x, st_y, st_query], api_visibility="private", **tok_queue).then(
                    do_structure, st_inputs, st_outputs, api_visibility="private", **tok_queue
                )

            # ---------------------------------------------------------------- Generate
            with gr.Tab("Generate", id="generate"):
                missing("pipeline")
                with gr.Row():
                    with gr.Column():
                        gen_prompt = gr.Textbox(
                            label="Prompt",
                            value="a red circle left of a blue square",
                            max_length=MAX_PROMPT_CHARS,
                            lines=2,
                        )
                        gen_steps = gr.Slider(1, MAX_STEPS, value=20, step=1, label="Steps")
                        gen_guidance = gr.Slider(0, MAX_GUIDANCE, value=4.5, step=0.5, label="Guidance scale")
                        gen_seed = gr.Number(0, label="Seed", precision=0, minimum=0, maximum=MAX_SEED)
                        gen_btn = gr.Button("Generate", variant="primary", interactive=has_pipe)
                    gen_out = gr.Image(
                        label="Generated",
                        type="pil",
                        format="png",
                        interactive=False,
                        height=320,
                        elem_classes="pixelated",
                    )

                def do_generate(prompt, steps, guidance, seed, progress: gr.Progress = gr.Progress()):
                    return demo_logic.generate(prompt, steps, guidance, seed, progress)

                gen_btn.click(
                    do_generate,
                    [gen_prompt, gen_steps, gen_guidance, gen_seed],
                    gen_out,
                    api_name="generate",
                    **pipe_queue,
                )

            # ---------------------------------------------------------------- Edit
            with gr.Tab("Edit", id="edit"):
                missing("pipeline")
                gr.Markdown(
                    "Each instruction edits the latest result; uploading another image starts a new conversation."
                )
                edit_state = gr.State(None)
                with gr.Row():
                    with gr.Column():
                        edit_in = SafeImage(label="Image to edit", height=256)
                        edit_instr = gr.Textbox(
                            label="Instruction", value="make the circle green", max_length=MAX_PROMPT_CHARS
                        )
                        with gr.Row():
                            edit_steps = gr.Slider(1, MAX_STEPS, value=20, step=1, label="Steps")
                            edit_guidance = gr.Slider(0, MAX_GUIDANCE, value=4.5, step=0.5, label="Guidance")
                            edit_seed = gr.Number(0, label="Seed", precision=0, minimum=0, maximum=MAX_SEED)
                        with gr.Row():
                            edit_btn = gr.Button("Edit", variant="primary", interactive=has_pipe)
                            edit_reset = gr.Button("New conversation")
                    with gr.Column():
                        edit_out = gr.Image(
                            label="Latest result",
                            type="pil",
                            format="png",
                            interactive=False,
                            height=256,
                            elem_classes="pixelated",
                        )
                        edit_chat = gr.Chatbot(label="Conversation", height=320)

                def do_edit(image, instruction, steps, guidance, seed, session, progress: gr.Progress = gr.Progress()):
                    return demo_logic.edit(image, instruction, steps, guidance, seed, session, progress)

                def do_edit_reset() -> tuple[None, list, None]:
                    return None, [], None

                edit_btn.click(
                    do_edit,
                    [edit_in, edit_instr, edit_steps, edit_guidance, edit_seed, edit_state],
                    [edit_out, edit_chat, edit_state],
                    api_name="edit",
                    **pipe_queue,
                )
                edit_reset.click(do_edit_reset, None, [edit_out, edit_chat, edit_state], api_name="edit_reset")

            # ---------------------------------------------------------------- Understand
            if models.can_chat:
                with gr.Tab("Understand", id="understand"):
                    chat_state = gr.State(None)
                    with gr.Row():
                        with gr.Column():
                            chat_in = SafeImage(label="Image", height=256)
                            chat_q = gr.Textbox(
                                label="Question", value="What is in this image?", max_length=MAX_PROMPT_CHARS
                            )
                            chat_tokens = gr.Slider(1, MAX_NEW_TOKENS, value=64, step=1, label="Max new tokens")
                            chat_btn = gr.Button("Ask", variant="primary")
                        chat_log = gr.Chatbot(label="Conversation", height=400)

                    def do_understand(image, question, max_new_tokens, session, progress: gr.Progress = gr.Progress()):
                        return demo_logic.understand(image, question, max_new_tokens, session, progress)

                    chat_btn.click(
                        do_understand,
                        [chat_in, chat_q, chat_tokens, chat_state],
                        [chat_log, chat_state],
                        api_name="understand",
                        **pipe_queue,
                    )
    demo.queue(default_concurrency_limit=concurrency_limit, max_size=queue_max_size)
    return demo


# ------------------------------------------------------------------------------------------------ CLI
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line arguments of ``python app.py``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help=f"tokenizer folder or Hub id (default: ${ENV_MODEL} or {DEFAULT_TOKENIZER})")
    parser.add_argument(
        "--pipeline", help=f"pipeline folder or Hub id (default: ${ENV_PIPELINE} or {DEFAULT_PIPELINE})"
    )
    parser.add_argument(
        "--teacher", help=f"structural teacher (DINOv3/DINOv2/CLIP ViT) folder or Hub id (${ENV_TEACHER})"
    )
    parser.add_argument("--teacher_image_size", type=int, default=224, help="shorter side the teacher sees")
    parser.add_argument("--host", default=None, help="server name (default: gradio's, 127.0.0.1 locally)")
    parser.add_argument("--port", type=int, default=None, help="server port (default: gradio's, 7860)")
    parser.add_argument("--device", default=None, help="cuda / cpu (default: cuda when available)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument(
        "--concurrency", type=int, default=CONCURRENCY_LIMIT, help="tokenizer events run at most this many at a time"
    )
    parser.add_argument("--num_threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--share", action="store_true", help="create a public gradio.live link")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Load the models and serve the demo until interrupted."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    try:
        models = load_demo_models(
            args.model,
            args.pipeline,
            args.teacher,
            device=args.device,
            dtype=getattr(torch, args.dtype),
            teacher_image_size=args.teacher_image_size,
        )
    except ValueError as err:
        raise SystemExit(f"error: {err}") from err
    for notice in models.notices.values():
        logger.warning(notice)
    demo = build_demo(models=models, concurrency_limit=args.concurrency)
    launch_demo(demo, server_name=args.host, server_port=args.port, share=args.share or None)


def launch_demo(demo: gr.Blocks, attempts: int = 3, **launch_kwargs: Any) -> Any:
    """``demo.launch`` with the demo's upload cap and CSS, retried when gradio cannot reach its own server in time.

    Right after starting, gradio checks its local URL with a 3 s timeout and gives up with "localhost is not
    accessible" when a busy machine answers more slowly; the server is then closed and started again.

    Args:
        demo: the app from :func:`build_demo`.
        attempts: launches to try.
        **launch_kwargs: forwarded to ``gr.Blocks.launch`` (``server_name``, ``server_port``,
            ``prevent_thread_lock``, ...).

    Returns:
        What ``launch`` returns.
    """
    launch_kwargs = {"max_file_size": MAX_UPLOAD_BYTES, "show_error": True, "css": DEMO_CSS, **launch_kwargs}
    for attempt in range(1, attempts + 1):
        try:
            return demo.launch(**launch_kwargs)
        except ValueError as err:
            if "localhost is not accessible" not in str(err) or attempt == attempts:
                raise
            logger.warning(
                "gradio did not reach its own server in time (busy machine?); retrying (%d/%d)", attempt, attempts
            )
            demo.close()
    return None


if __name__ == "__main__":
    main()
