"""Deprecated alias: the unified-model task moved to :mod:`muse_hf.training.umm.task` (its arguments to
:mod:`muse_hf.training.umm.arguments`); ``muse-hf compute-scaling`` replaces ``python -m muse_hf.training.umm_task``.
"""

import sys

from muse_hf.compat import alias_module

_task = alias_module("muse_hf.training.umm_task", "muse_hf.training.umm.task")

if __name__ == "__main__":
    sys.exit(_task.main())
