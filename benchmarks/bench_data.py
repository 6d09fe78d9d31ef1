"""Is the data loader ever the bottleneck? Streaming-loader throughput beside the tiny model's training rate (issue 4).

Loader: ``load_image_text_stream`` over local parquet shards of the synthetic scenes (rendered at the measured
resolution) -> guarded PNG decode -> ``MuseImageProcessor`` -> ``make_dataloader`` batches of 32 with 0 and 2 worker
processes, at 64 and 256 px. Samples/s over whole batches after a warm-up batch (worker start-up excluded).

Model: ``MuseTokenizerModel`` from ``MuseTokenizerConfig.from_preset("tiny")`` (``image_size`` overridden for 256 px),
one training step = forward + reconstruction MSE + backward + AdamW step at batch 32, timed after warm-up steps.

Printed: both rates and their ratio (loader samples/s / training samples/s); target >= 3, i.e. the loader could feed
three such trainers. Everything shares this machine's CPU cores, so both sides are measured under the same load;
with workers the loader also competes with the main process for them.

Usage::

    python benchmarks/bench_data.py [--sizes 64 256] [--workers 0 2] [--batches 8] [--steps 2] [--threads 1]

Default one torch thread in this process (as benchmarks/bench_encoder.py): on a shared 2-core machine, two OpenMP
threads contend with other jobs and small tensor ops (the image processor's) become several times slower and noisy.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import datasets
import torch

from muse_hf.data import build_shapes_dataset, load_image_text_stream, make_dataloader
from muse_hf.models.image_processing_muse import MuseImageProcessor

BATCH = 32


def loader_rate(data_dir: Path, size: int, workers: int, batches: int) -> float:
    """Samples/s of decode + preprocess + collate through ``make_dataloader`` (first batch excluded)."""
    proc = MuseImageProcessor(size={"height": size, "width": size})
    stream = load_image_text_stream(data_dir, "train", proc, shuffle_buffer=64, seed=0)
    loader = make_dataloader(stream, batch_size=BATCH, num_workers=workers, drop_last=True)
    it = iter(loader)
    next(it)  # warm-up: worker start-up, first shard open
    start, n = time.perf_counter(), 0
    for _ in range(batches):
        batch = next(it, None)
        if batch is None:
            break
        n += batch["pixel_values"].shape[0]
    elapsed = time.perf_counter() - start
    del it
    if n == 0:
        raise RuntimeError(f"the {size}px dataset is too small for {batches} batches")
    return n / elapsed


def train_rate(size: int, steps: int) -> float | None:
    """Samples/s of the tiny model's training step (forward + MSE + backward + AdamW) at batch 32."""
    try:
        from muse_hf.models import MuseTokenizerConfig, MuseTokenizerModel
    except ImportError as err:  # the model lands in another issue
        print(f"  (model unavailable: {err})")
        return None
    torch.manual_seed(0)
    config = MuseTokenizerConfig.from_preset("tiny", image_size=size)
    model = MuseTokenizerModel(config).train()
    optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)

    def step(x: torch.Tensor) -> None:
        recon = model(x).sample
        loss = torch.nn.functional.mse_loss(recon, x)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()

    step(torch.randn(4, 3, size, size))  # warm-up (small batch: cheap at 256 px)
    x = torch.randn(BATCH, 3, size, size)
    start = time.perf_counter()
    for _ in range(steps):
        step(x)
    return BATCH * steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--batches", type=int, default=8, help="timed loader batches per setting")
    parser.add_argument("--steps", type=int, default=2, help="timed training steps per size")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads of this process (DataLoader workers always use 1)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    datasets.disable_progress_bars()
    print(f"torch threads: {torch.get_num_threads()}, batch {BATCH}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            data_dir = Path(tmp) / f"shapes{size}"
            t0 = time.perf_counter()
            n = BATCH * (args.batches + 2)
            build_shapes_dataset(data_dir, num_train=n, num_val=0, image_size=size, seed=0, min_shards=4)
            print(f"{size}px: built {n} samples in {time.perf_counter() - t0:.1f} s")
            train = train_rate(size, args.steps)
            print(f"{size}px: tiny model training: " + (f"{train:.1f} samples/s" if train else "n/a"))
            for workers in args.workers:
                rate = loader_rate(data_dir, size, workers, args.batches)
                rows.append((size, workers, rate, train))
                print(f"{size}px: loader, {workers} workers: {rate:.1f} samples/s")
    print()
    print("| px | workers | loader samples/s | tiny train samples/s | ratio (target >= 3) |")
    print("|---:|---:|---:|---:|---:|")
    for size, workers, rate, train in rows:
        ratio = f"{rate / train:.1f}" if train else "n/a"
        train_s = f"{train:.1f}" if train else "n/a"
        print(f"| {size} | {workers} | {rate:.1f} | {train_s} | {ratio} |")


if __name__ == "__main__":
    main()
