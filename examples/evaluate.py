#!/usr/bin/env python
"""Evaluate a MUSE tokenizer: PSNR, SSIM, rFID, zero-shot, linear probe, attention mIoU, gradient cosine, throughput.

Every number is written beside an untrained model of the same config and a trivial baseline.

    python examples/evaluate.py --model outputs/quickstart/model --data outputs/quickstart/data \
        --split validation --out outputs/eval [--max_samples 256] [--rfid_weights pt_inception-2015-12-05-6726825d.pth]

Writes ``metrics.json``, ``report.md``, ``reconstruction_grid.png``, ``attention_maps.png`` and
``metrics_bars.png`` into ``--out``. See ``muse_hf.cli.evaluate_main`` (also ``muse-hf evaluate``) for every option.
"""

from __future__ import annotations

import sys

from muse_hf.cli import evaluate_main as main

if __name__ == "__main__":
    sys.exit(main())
