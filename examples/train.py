#!/usr/bin/env python
"""Train MUSE with Accelerate: one entry point for every stage.

    accelerate launch examples/train.py --config configs/tokenizer/muse-1b/stage1.yaml [--key value ...]
    python examples/train.py --config configs/tokenizer/tiny.yaml            # the embedded CPU curriculum
    python examples/train.py --config configs/tokenizer/tiny.yaml --help     # every argument, typed

The loop lives in ``muse_hf.training`` (importable, tested); this script only hands it the command line.
"""

import sys

from muse_hf.training import main

if __name__ == "__main__":
    sys.exit(main())
