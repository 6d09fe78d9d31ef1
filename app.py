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

The app is the package :mod:`muse_hf.demo` (inputs / models / views / session / ui); this file is its entry point
(``python app.py``, and the file a Space runs) and re-exports the package's names.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

APP_DIR = Path(__file__).resolve().parent
# A Space (or a checkout without `pip install -e .`) ships the package sources next to app.py.
try:
    import muse_hf  # noqa: F401
except ImportError:  # pragma: no cover - exercised on Spaces only
    sys.path.insert(0, str(APP_DIR / "src"))

import muse_hf.demo as demo  # noqa: E402
from muse_hf.demo import build_demo, launch_demo, load_demo_models, main  # noqa: E402

__all__ = ["build_demo", "launch_demo", "load_demo_models", "main"]


def __getattr__(name: str) -> Any:
    # every other name of the demo (MuseDemo, load_image_file, DISPLAY_SIZE, ...) is the package's
    return getattr(demo, name)


if __name__ == "__main__":
    main()
