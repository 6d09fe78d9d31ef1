"""Old module paths kept importable after a move (a leaf helper: it imports nothing from ``muse_hf`` at import time).

A module that moved leaves a two-line alias at its old path::

    from muse_hf.compat import alias_module

    alias_module(__name__, "muse_hf.evaluation.geneval")

Importing the old path then warns once (``DeprecationWarning``) and hands out the new module object itself (it is
put in ``sys.modules`` under the old name too), so attribute reads, ``from old import name`` and
``monkeypatch.setattr("old.name", ...)`` all act on the one real module.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from collections.abc import Mapping
from types import ModuleType
from typing import Any

__all__ = ["MOVED_MODULES", "alias_module", "moved_attribute"]

#: Old module path -> new module path, for every module that moved (documentation and the import-graph test).
MOVED_MODULES: dict[str, str] = {
    "muse_hf.pipelines.geneval": "muse_hf.evaluation.geneval",
    "muse_hf.training.quickstart": "muse_hf.experiments.quickstart",
    "muse_hf.training.tokenizer_task": "muse_hf.training.tokenizer.task",
    "muse_hf.training.umm_task": "muse_hf.training.umm.task",
    "muse_hf.training.umm_cache": "muse_hf.training.umm.cache",
    "muse_hf.evaluation.ablation": "muse_hf.experiments.ablation",
}


def alias_module(old: str, new: str) -> ModuleType:
    """Make the module being imported as ``old`` an alias of ``new`` and warn that the old path is deprecated.

    Args:
        old: The old dotted module path (the alias module's ``__name__``).
        new: The dotted path the module moved to.

    Returns:
        The new module, which now also sits in ``sys.modules[old]``.
    """
    warnings.warn(
        f"{old} moved to {new}; import it from there (the old path is a deprecated alias and will be removed).",
        DeprecationWarning,
        stacklevel=3,
    )
    module = importlib.import_module(new)
    sys.modules[old] = module
    return module


def moved_attribute(module: str, name: str, moved: Mapping[str, str]) -> Any:
    """Resolve, for a module's ``__getattr__``, a public name that moved elsewhere, with a ``DeprecationWarning``.

    Args:
        module: The ``__name__`` of the module whose attribute is asked for.
        name: The attribute asked for.
        moved: Old attribute name -> ``"new.module:attribute"``.

    Raises:
        AttributeError: when ``name`` is not one of ``moved`` (the usual missing-attribute error).
    """
    if name not in moved:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    target, _, attribute = moved[name].partition(":")
    warnings.warn(
        f"{module}.{name} moved to {target}.{attribute}; import it from there (the old name is a deprecated alias).",
        DeprecationWarning,
        stacklevel=3,
    )
    return getattr(importlib.import_module(target), attribute)
