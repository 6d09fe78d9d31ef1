"""Gradient cosine between the semantic and reconstruction objectives per routing mode (paper Table 4 "Cos Sim").

On the ``tiny`` tokenizer, for ``shared``, ``soft`` and ``decoupled`` routing, over 8 seeded batches of the embedded
synthetic scenes (``muse_hf.data.build_shapes_dataset``; random images + captions from a fixed vocabulary when the
data module is unavailable), computes the cosine similarity between the gradient of the semantic NCE loss
(against the packaged all-MiniLM-L6-v2 caption embeddings) and the gradient of the reconstruction loss (MSE + L1)
on the shared synergistic-block parameters, and prints mean +- std as a markdown table.

``--train_steps 0`` (default) measures at initialisation, where ``soft`` has exactly the ``shared`` architecture
and weights (its penalty only acts through training). ``--train_steps N`` first trains each variant N steps
(AdamW, reconstruction + 0.5 * NCE, plus the soft penalty for ``soft``) on the same batches.

Usage::

    python benchmarks/gradient_cosine.py [--batches 8] [--batch_size 16] [--train_steps 0]
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import tempfile
import time

import numpy as np
import torch

from muse_hf.models import MuseTokenizerConfig, MuseTokenizerModel
from muse_hf.models.image_processing_muse import MuseImageProcessor
from muse_hf.objectives import (
    LogitScale,
    ReconstructionLoss,
    default_param_groups,
    gradient_conflict,
    load_text_embedder,
    semantic_nce_loss,
    shared_block_parameters,
    soft_routing_penalty,
)

ROUTINGS = ("shared", "soft", "decoupled")
_WORDS = (
    ["red", "green", "blue", "yellow"],
    ["circle", "square", "triangle", "star"],
    ["left of", "above", "right of"],
)


def load_batches(num_batches: int, batch_size: int, image_size: int, seed: int) -> tuple[list, str]:
    """``num_batches`` lists of (PIL image, caption); the source used is returned as a description."""
    try:
        from muse_hf.data import build_shapes_dataset
    except ImportError:
        try:
            from muse_hf.data.shapes import build_shapes_dataset
        except ImportError:
            build_shapes_dataset = None
    n = num_batches * batch_size
    if build_shapes_dataset is not None:
        import datasets

        with tempfile.TemporaryDirectory() as tmp:
            build_shapes_dataset(tmp, num_train=n, num_val=1, image_size=image_size, seed=seed, overwrite=True)
            ds = datasets.load_dataset(tmp, split="train").select(range(n))
            rows = [(r["image"].convert("RGB"), r["caption"]) for r in ds]
        source = f"embedded synthetic scenes (build_shapes_dataset, seed {seed}, {image_size} px)"
    else:
        from PIL import Image

        rng = np.random.default_rng(seed)
        rows = []
        for _ in range(n):
            colour, shape, rel = (str(rng.choice(w)) for w in _WORDS)
            other = f"{rng.choice(_WORDS[0])} {rng.choice(_WORDS[1])}"
            image = Image.fromarray(rng.integers(0, 256, (image_size, image_size, 3), dtype=np.uint8))
            rows.append((image, f"a {colour} {shape} {rel} a {other}"))
        source = f"random images + captions from a fixed vocabulary (seed {seed}; muse_hf.data unavailable)"
    return [rows[i * batch_size : (i + 1) * batch_size] for i in range(num_batches)], source


def losses_for(model, logit_scale, recon, pixels, text, captions) -> dict[str, torch.Tensor]:
    # output_attentions=True: eager attention in the blocks, as in training with the topology loss; it is also
    # required by the soft penalty, whose double backward the fused SDPA kernels do not implement
    out = model(pixels, output_attentions=True, output_semantic=True)
    return {
        "semantic": semantic_nce_loss(out.semantic_embeds, text, logit_scale, captions=captions),
        "reconstruction": recon(out.sample, pixels)["loss"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train_steps", type=int, default=0, help="train each variant this many steps first")
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    start = time.time()

    base = MuseTokenizerConfig.from_preset("tiny")
    processor = MuseImageProcessor(size={"height": base.image_size, "width": base.image_size})
    batches, source = load_batches(args.batches, args.batch_size, base.image_size, args.seed)
    embedder = load_text_embedder()
    data = []
    for rows in batches:
        images, captions = zip(*rows)
        pixels = processor(list(images), return_tensors="pt")["pixel_values"]  # (B, 3, H, W)
        data.append((pixels, embedder.embed(list(captions)), list(captions)))

    results: dict[str, dict[str, list[float]]] = {}
    for routing in ROUTINGS:
        torch.manual_seed(args.seed)
        config = MuseTokenizerConfig.from_preset("tiny", routing=routing)
        model = MuseTokenizerModel(config)
        logit_scale = LogitScale()
        recon = ReconstructionLoss(  # [0, 1] pixel space, as the released MUSE_Loss (muse_loss.py:137-152)
            l2_weight=1.0, l1_weight=1.0, input_mean=list(processor.image_mean), input_std=list(processor.image_std)
        )
        if args.train_steps:
            params = [p for p in model.parameters() if p.requires_grad] + list(logit_scale.parameters())
            opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.05, betas=(0.9, 0.98))
            for step in range(args.train_steps):
                pixels, text, captions = data[step % len(data)]
                losses = losses_for(model, logit_scale, recon, pixels, text, captions)
                total = losses["reconstruction"] + 0.5 * losses["semantic"]
                if routing == "soft":
                    total = total + soft_routing_penalty(
                        shared_block_parameters(model),
                        losses["semantic"],
                        losses["reconstruction"],
                        weight=config.soft_penalty_weight,
                    )
                opt.zero_grad(set_to_none=True)
                total.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
        groups = {"blocks": shared_block_parameters(model), **default_param_groups(model)}
        per_group: dict[str, list[float]] = {g: [] for g in groups}
        for pixels, text, captions in data:
            result = gradient_conflict(model, losses_for(model, logit_scale, recon, pixels, text, captions), groups)
            for g in groups:
                per_group[g].append(result.cos(g, "semantic", "reconstruction"))
        results[routing] = per_group

    def fmt(values: list[float]) -> str:
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):+.4f} ± {std:.4f}"

    when = "at initialisation" if not args.train_steps else f"after {args.train_steps} training steps"
    print(f"\nData: {source}; {args.batches} batches x {args.batch_size}; text: packaged all-MiniLM-L6-v2; {when}.")
    print("cos(grad semantic NCE, grad reconstruction MSE+L1), mean ± std over batches:\n")
    cols = ["blocks", "values", "mlp", "topology"]
    print("| routing | all block params | values (v_sem, v_itc, o_proj) | mlp | topology (q/k_topo, qk-norm) |")
    print("|---|---|---|---|---|")
    for routing in ROUTINGS:
        cells = [fmt(results[routing][c]) if c in results[routing] else "n/a" for c in cols]
        print(f"| {routing} | " + " | ".join(cells) + " |")
    cmd = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv if argv is not None else sys.argv[1:])])
    print(f"\nCommand: `{cmd}`  ({time.time() - start:.0f} s after imports on this machine)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
