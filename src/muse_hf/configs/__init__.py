"""Configs shipped inside the package, so that an installed wheel runs the quickstart and the ablation.

:data:`SHIPPED_CONFIGS` are byte-for-byte copies of the repository's ``configs/`` files of the same name (a test
checks it; edit both); the paper presets (``configs/tokenizer/muse-1b`` ...) stay in the repository only.
:func:`find_config` resolves ``configs/<name>`` to the shipped copy, else to a file under the current directory.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

__all__ = ["SHIPPED_CONFIGS", "config_path", "find_config"]

#: Names (relative to ``configs/``) of the configs shipped as package data.
SHIPPED_CONFIGS: tuple[str, ...] = ("tokenizer/tiny.yaml", "tokenizer/tiny-scratch.yaml", "umm/tiny.yaml")


def config_path(name: str) -> Path:
    """The shipped copy of a config, by its name under ``configs/`` (``"tokenizer/tiny.yaml"``).

    Args:
        name: One of :data:`SHIPPED_CONFIGS`, optionally prefixed with ``configs/``.

    Raises:
        ValueError: when ``name`` is not shipped with the package.
    """
    key = name.removeprefix("configs/")
    if key not in SHIPPED_CONFIGS:
        raise ValueError(f"{name!r} is not shipped with muse_hf; shipped configs: {', '.join(SHIPPED_CONFIGS)}.")
    return Path(str(files(__name__).joinpath(key)))


def find_config(relative: str) -> Path:
    """A config by its repository path (``configs/tokenizer/tiny.yaml``): the shipped copy, else ``./<relative>``.

    Raises:
        ValueError: when it is neither shipped nor under the current directory.
    """
    key = relative.removeprefix("configs/")
    if key in SHIPPED_CONFIGS:
        return config_path(key)
    candidate = Path.cwd() / relative
    if candidate.is_file():
        return candidate
    raise ValueError(
        f"{relative} is not shipped with muse_hf (shipped: {', '.join(SHIPPED_CONFIGS)}) and not found under "
        f"{Path.cwd()}; pass the path of the config file, or run from the repository root."
    )
