"""Unified-model training throughput with and without ``cache_latents``, side by side in one run.

Both runs train the same stage: ``configs/umm/tiny.yaml``'s stage 2 (connector + full DiT, generation/editing
mixture) from scratch, on the same data, tokenizer and text encoder, one after the other in this process. Uncached,
every step decodes and preprocesses images, encodes them with the frozen tokenizer and encodes the captions with the
frozen text encoder; cached, the step reads stored latents and token states (``muse_hf.training.umm.cache``). The
figure is the training loop's own ``train/samples_per_s`` over the second half of the steps (the first half warms
up); the cache build is timed on its own (it happens once per data set and model pair) with the cache's size on disk.

Defaults: a fresh synthetic set (``--num_train`` rows at 64 px, 30% GenEval-style plain scenes), the ``tiny``
tokenizer preset with random weights (the encoding cost does not depend on training) unless ``--tokenizer`` names a
saved one, and the packaged all-MiniLM-L6-v2 text encoder.

Usage::

    python benchmarks/bench_umm_cache.py [--steps 40] [--batch_size 16] [--num_train 2000] [--threads 2]
        [--tokenizer outputs/quickstart/model] [--data outputs/data/shapes-64] [--output_dir /tmp/bench_umm_cache]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]


def _stage_args(config: Path, overrides: dict[str, Any]) -> Any:
    """Stage 2 of the curriculum ``config``, started from scratch (no ``init_from``), with ``overrides``."""
    from muse_hf.training.arguments import load_stage_arguments

    stage2 = next(a for a in load_stage_arguments(config, validate=False) if a.stage_name == "stage2")
    args = dataclasses.replace(stage2, init_from=None, **overrides)
    args.validate()
    return args


def _last_rate(output_dir: Path) -> float:
    log = output_dir / "logs" / "train_log.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return float(records[-1]["train/samples_per_s"])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run both modes; prints a table and returns the numbers."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=str(REPO / "configs/umm/tiny.yaml"))
    parser.add_argument("--data", default=None, help="a local data set (default: build a fresh synthetic one)")
    parser.add_argument("--num_train", type=int, default=2000, help="rows of the fresh synthetic set")
    parser.add_argument("--tokenizer", default=None, help="a saved MUSE tokenizer (default: tiny preset, random)")
    parser.add_argument("--steps", type=int, default=40, help="training steps per mode (half of them warm up)")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--output_dir", default=None, help="scratch folder (default: a temporary one, removed)")
    ns = parser.parse_args(argv)
    if ns.steps < 2 or ns.steps % 2:
        parser.error("--steps must be an even number >= 2 (the first half warms up)")
    if ns.threads:
        torch.set_num_threads(ns.threads)

    from accelerate import Accelerator

    from muse_hf.data import build_shapes_dataset
    from muse_hf.models import MuseTokenizerConfig, MuseTokenizerModel
    from muse_hf.training.loop import train
    from muse_hf.training.umm.task import UMMTask

    scratch = Path(ns.output_dir) if ns.output_dir else Path(tempfile.mkdtemp(prefix="bench_umm_cache_"))
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        data = Path(ns.data) if ns.data else scratch / "data"
        if ns.data is None and not data.exists():
            build_shapes_dataset(data, num_train=ns.num_train, num_val=8, image_size=64, plain_fraction=0.3,
                                 num_proc=1)  # fmt: skip
        tokenizer = ns.tokenizer
        if tokenizer is None:
            tokenizer = str(scratch / "tokenizer")
            torch.manual_seed(0)
            model = MuseTokenizerModel(MuseTokenizerConfig.from_preset("tiny", scaling_factor=1.5))
            model.save_pretrained(tokenizer)
        common = {
            "train_data": str(data), "tokenizer_name_or_path": tokenizer, "max_train_steps": ns.steps,
            "logging_steps": ns.steps // 2, "checkpointing_steps": 10 * ns.steps, "report_to": "none",
            "train_batch_size": ns.batch_size, "build_synthetic_data": False, "evaluate_at_end": False,
            "push_to_hub": False, "overwrite_output_dir": True,
        }  # fmt: skip

        # The cache build, on its own.
        build_args = _stage_args(Path(ns.config), {**common, "output_dir": str(scratch / "build"),
                                                   "cache_latents": True})  # fmt: skip
        task = UMMTask(build_args)
        accelerator = Accelerator(cpu=not torch.cuda.is_available())
        task.build(accelerator)
        t0 = time.perf_counter()
        parts = task.prepare_cache(accelerator)
        build_s = time.perf_counter() - t0
        cache_mb = sum(f.stat().st_size for p in parts.values() for f in p.files) / 2**20
        rows = {name: p.num_rows for name, p in parts.items()}
        del task

        results: dict[str, Any] = {"cache_build_s": build_s, "cache_mb": cache_mb, "cache_rows": rows}
        for mode, cached in (("uncached", False), ("cached", True)):
            out = scratch / mode
            args = _stage_args(Path(ns.config), {**common, "output_dir": str(out), "cache_latents": cached})
            t0 = time.perf_counter()
            train(args)
            results[mode] = {"samples_per_s": _last_rate(out), "wall_s": time.perf_counter() - t0}
    finally:
        if ns.output_dir is None:
            shutil.rmtree(scratch, ignore_errors=True)

    speedup = results["cached"]["samples_per_s"] / results["uncached"]["samples_per_s"]
    results["speedup"] = speedup
    print(f"\nUMM stage-2 training, batch {ns.batch_size}, {ns.steps} steps per mode (rate over the last "
          f"{ns.steps // 2}), threads {torch.get_num_threads()}")  # fmt: skip
    print(f"{'mode':<10} {'samples/s':>10} {'stage wall s':>13}")
    for mode in ("uncached", "cached"):
        print(f"{mode:<10} {results[mode]['samples_per_s']:>10.1f} {results[mode]['wall_s']:>13.1f}")
    print(f"speedup {speedup:.2f}x; cache build {build_s:.1f} s for {rows} rows, {cache_mb:.1f} MiB on disk "
          f"({sum(rows.values()) / max(build_s, 1e-9):.0f} rows/s)")  # fmt: skip
    return results


if __name__ == "__main__":
    main()
