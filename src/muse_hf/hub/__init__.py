"""Model cards and Hugging Face Hub publishing for MUSE tokenizers and pipelines.

* :mod:`muse_hf.hub.cards` - :func:`render_model_card` / :func:`write_model_card` (used by training: every
  ``save_pretrained`` folder gets a ``README.md``), :func:`load_metrics`, :func:`detect_kind`;
* :mod:`muse_hf.hub.upload` - :func:`push_to_hub` (fails fast with :class:`HubUnavailableError` before touching
  anything when the Hub cannot be written to), :func:`push_space`, :func:`check_hub_access`.

Command line: ``muse-hf card|push|space ...`` (:mod:`muse_hf.cli`; ``python -m muse_hf.hub`` still works).

Example:
    >>> card = render_model_card("tokenizer", "outputs/quickstart/model")
    >>> card.data.pipeline_tag
    'image-feature-extraction'
    >>> push_to_hub("outputs/quickstart/model", "me/muse-tiny-tokenizer")  # needs network + token
"""

from __future__ import annotations

from typing import Any

from muse_hf.compat import moved_attribute
from muse_hf.hub.cards import (
    CARD_KINDS,
    CardKind,
    MetricRow,
    detect_kind,
    eval_results_from_metrics,
    load_metrics,
    render_model_card,
    template_dir,
    write_model_card,
)
from muse_hf.hub.upload import (
    DEFAULT_IGNORE_PATTERNS,
    HubUnavailableError,
    check_hub_access,
    push_space,
    push_to_hub,
)

__all__ = [
    "CARD_KINDS",
    "DEFAULT_IGNORE_PATTERNS",
    "CardKind",
    "HubUnavailableError",
    "MetricRow",
    "check_hub_access",
    "detect_kind",
    "eval_results_from_metrics",
    "load_metrics",
    "push_space",
    "push_to_hub",
    "render_model_card",
    "template_dir",
    "write_model_card",
]


def __getattr__(name: str) -> Any:
    # ``muse_hf.hub.main`` (the old ``python -m muse_hf.hub`` parser) is now ``muse_hf.cli.hub_main``.
    return moved_attribute(__name__, name, {"main": "muse_hf.cli:hub_main"})
