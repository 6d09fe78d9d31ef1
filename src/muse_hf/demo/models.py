"""The demo's models: what it runs on (:class:`DemoModels`) and where they come from (:func:`load_demo_models`).

Each part is optional: a missing tokenizer, pipeline or teacher leaves a notice on the page that says how to get it.
Sources: explicit arguments, else the Space variables ``MUSE_DEMO_MODEL`` / ``MUSE_DEMO_PIPELINE`` /
``MUSE_DEMO_TEACHER``, else the quickstart's outputs (:data:`DEFAULT_TOKENIZER`, :data:`DEFAULT_PIPELINE`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from muse_hf.hub.cards import REPO_ROOT
from muse_hf.models.image_processing_muse import MuseImageProcessor
from muse_hf.models.modeling_muse import MuseTokenizerModel
from muse_hf.objectives import StructuralTeacher
from muse_hf.pipelines import MusePipeline

__all__ = [
    "DEFAULT_PIPELINE",
    "DEFAULT_TOKENIZER",
    "ENV_MODEL",
    "ENV_PIPELINE",
    "ENV_TEACHER",
    "DemoModels",
    "load_demo_models",
]

#: Where ``make quickstart`` writes the tiny tokenizer and pipeline; used when no --model / --pipeline is given.
DEFAULT_TOKENIZER = "outputs/quickstart/model"
DEFAULT_PIPELINE = "outputs/quickstart/pipeline"
#: Environment variables a Space sets instead of command-line flags.
ENV_MODEL, ENV_PIPELINE, ENV_TEACHER = "MUSE_DEMO_MODEL", "MUSE_DEMO_PIPELINE", "MUSE_DEMO_TEACHER"


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
    return p if p.is_absolute() or p.exists() else REPO_ROOT / p


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
