"""The Gradio demo as a package (``app.py`` at the repository root is its thin entry point, also on a Space).

* :mod:`muse_hf.demo.inputs` - checks of uploads, text and numbers (:class:`Refused`, :func:`load_image_file`);
* :mod:`muse_hf.demo.models` - :class:`DemoModels`, :func:`load_demo_models`;
* :mod:`muse_hf.demo.views` - attention overlays, latent channel views, chat messages;
* :mod:`muse_hf.demo.session` - :class:`MuseDemo`, the tabs' computations;
* :mod:`muse_hf.demo.ui` - :func:`build_demo`, :func:`launch_demo`, :func:`main`.
"""

from muse_hf.demo.inputs import (
    ALLOWED_FORMATS,
    MAX_GUIDANCE,
    MAX_IMAGE_SIDE,
    MAX_NEW_TOKENS,
    MAX_PROMPT_CHARS,
    MAX_SEED,
    MAX_STEPS,
    MAX_UPLOAD_BYTES,
    Refused,
    SafeImage,
    check_number,
    check_text,
    load_image_file,
    require_image,
    to_rgb,
)
from muse_hf.demo.models import (
    DEFAULT_PIPELINE,
    DEFAULT_TOKENIZER,
    ENV_MODEL,
    ENV_PIPELINE,
    ENV_TEACHER,
    DemoModels,
    load_demo_models,
)
from muse_hf.demo.session import MuseDemo
from muse_hf.demo.ui import CONCURRENCY_LIMIT, DEMO_CSS, QUEUE_MAX_SIZE, build_demo, launch_demo, main, parse_args
from muse_hf.demo.views import (
    DISPLAY_SIZE,
    MAX_LATENT_CHANNELS_SHOWN,
    attention_overlay,
    chat_messages,
    edit_messages,
    fit_to_size,
    latent_channel_view,
)

__all__ = [
    "ALLOWED_FORMATS",
    "CONCURRENCY_LIMIT",
    "DEFAULT_PIPELINE",
    "DEFAULT_TOKENIZER",
    "DEMO_CSS",
    "DISPLAY_SIZE",
    "ENV_MODEL",
    "ENV_PIPELINE",
    "ENV_TEACHER",
    "MAX_GUIDANCE",
    "MAX_IMAGE_SIDE",
    "MAX_LATENT_CHANNELS_SHOWN",
    "MAX_NEW_TOKENS",
    "MAX_PROMPT_CHARS",
    "MAX_SEED",
    "MAX_STEPS",
    "MAX_UPLOAD_BYTES",
    "QUEUE_MAX_SIZE",
    "DemoModels",
    "MuseDemo",
    "Refused",
    "SafeImage",
    "attention_overlay",
    "build_demo",
    "chat_messages",
    "check_number",
    "check_text",
    "edit_messages",
    "fit_to_size",
    "latent_channel_view",
    "launch_demo",
    "load_demo_models",
    "load_image_file",
    "main",
    "parse_args",
    "require_image",
    "to_rgb",
]
