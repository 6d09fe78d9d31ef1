#!/usr/bin/env python
"""The paper's ablations at small scale: Table 3 (objectives) and Table 4 (gradient routing), with Figure 2a/2d.

Trains Baseline / Semantic / Topology / Full (decoupled routing) and Naive Shared / Soft / Two-Stream (full objective)
under one budget, data set and seed list (the Full run serves both tables), evaluates each with
``muse_hf.evaluation.evaluate_tokenizer`` and logs the semantic-vs-reconstruction gradient cosine during training.

    python examples/ablation.py --quick                  # 7 variants x 3 seeds, 32 px, 60 steps: <= 15 min, 2 cores
    python examples/ablation.py                          # 7 variants x 3 seeds, 64 px, 150 steps: <= 90 min
    python examples/ablation.py --quick --variants shared,full --seeds 0,1 --max_train_steps 4   # a smoke run

Writes ``ablation.md``, ``ablation.json`` and ``gradient_cosine.png`` into ``--out`` (default
``outputs/ablation-quick`` / ``outputs/ablation``); finished runs are reused when re-run with the same settings.
The ablation lives in ``muse_hf.experiments.ablation`` (variants / runner / summary / report); this script only hands
the command line to its parser, ``muse_hf.cli.ablation_main`` (also ``muse-hf ablation``), which lists every option.
"""

from __future__ import annotations

import sys

from muse_hf.cli import ablation_main as main

if __name__ == "__main__":
    sys.exit(main())
