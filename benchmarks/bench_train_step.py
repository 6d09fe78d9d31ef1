"""Where a tiny training step's time goes, beside what this machine's matmuls can do (issue 5's time budget).

Model: ``MuseTokenizerModel`` from ``MuseTokenizerConfig.from_preset("tiny")`` (64 px). One step = encode with topology
attention and the semantic embedding, decode, a stand-in loss (MSE + mean attention + mean semantic embedding, so
every path the quickstart trains gets a gradient), backward, AdamW step. Also timed alone (forward + backward of a
mean): the InternVL vision tower, the DC-AE decoder, and the whole encoder. The matmul line is ``torch.mm`` on the
vision tower's MLP shape (tokens x hidden @ hidden x 4*hidden) and on a 1024^2 square, in GFLOP/s, so a step time can
be read against the machine rather than against another machine's number.

Each figure is the mean of ``--repeats`` runs after ``--warmup`` runs, measured in one process, one after another.

Usage::

    python benchmarks/bench_train_step.py [--batch_sizes 16 32] [--threads 2] [--repeats 4]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from muse_hf import MuseTokenizerConfig, MuseTokenizerModel


def mean_time(fn: Callable[[], object], repeats: int, warmup: int) -> float:
    """Mean wall seconds of ``fn`` over ``repeats`` calls after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def matmul_gflops(m: int, k: int, n: int, repeats: int = 20) -> float:
    """GFLOP/s of ``(m, k) @ (k, n)`` in fp32."""
    a, b = torch.randn(m, k), torch.randn(k, n)
    seconds = mean_time(lambda: a @ b, repeats, warmup=3)
    return 2.0 * m * k * n / seconds / 1e9


def step_breakdown(batch_size: int, repeats: int, warmup: int) -> dict[str, float]:
    """Seconds per full training step and per component (forward + backward) at ``batch_size``."""
    torch.manual_seed(0)
    config = MuseTokenizerConfig.from_preset("tiny")
    model = MuseTokenizerModel(config)
    size = config.image_size
    pixels = torch.randn(batch_size, 3, size, size)  # (B, 3, H, W)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def full_step() -> None:
        enc = model.encode(pixels, output_attentions=True, output_semantic=True)
        sample = model.decode(enc.latents, output_size=(size, size)).sample  # (B, 3, H, W)
        loss = (sample - pixels).pow(2).mean() + enc.semantic_embeds.pow(2).mean()
        loss = loss + sum(a.float().mean() for a in enc.attentions if a is not None)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def vision() -> None:
        model.vision_model(pixel_values=pixels).last_hidden_state.mean().backward()

    latent_shape = model.encode(pixels[:1]).latents.shape[1:]  # (c, h, w)

    def decoder() -> None:
        latents = torch.randn(batch_size, *latent_shape)
        model.decode(latents, output_size=(size, size)).sample.mean().backward()

    def encoder() -> None:
        enc = model.encode(pixels, output_attentions=True, output_semantic=True)
        (enc.latents.mean() + enc.semantic_embeds.mean()).backward()

    return {
        "step": mean_time(full_step, repeats, warmup),
        "vision_tower": mean_time(vision, repeats, warmup),
        "encoder": mean_time(encoder, repeats, warmup),
        "decoder": mean_time(decoder, repeats, warmup),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    config = MuseTokenizerConfig.from_preset("tiny")
    tokens = (config.image_size // config.vision_config.patch_size[0]) ** 2
    hidden = config.vision_config.hidden_size
    print(
        f"matmul GFLOP/s: vision MLP shape ({32 * tokens}x{hidden} @ {hidden}x{4 * hidden}) "
        f"{matmul_gflops(32 * tokens, hidden, 4 * hidden):.1f}; 1024^2 {matmul_gflops(1024, 1024, 1024):.1f}"
    )
    print("| batch | step s | vision tower f+b s | encoder f+b s | decoder f+b s | vision share of step |")
    print("|---:|---:|---:|---:|---:|---:|")
    for batch_size in args.batch_sizes:
        t = step_breakdown(batch_size, args.repeats, args.warmup)
        print(
            f"| {batch_size} | {t['step']:.3f} | {t['vision_tower']:.3f} | {t['encoder']:.3f} | {t['decoder']:.3f} "
            f"| {t['vision_tower'] / t['step']:.0%} |"
        )


if __name__ == "__main__":
    main()
