"""Encode-time benchmark of the MUSE tokenizer against two baselines (issue 2).

For each config three encoders share one backbone and differ only after it. Configs: the ``tiny`` and ``small``
presets, and ``paper-proportions`` -- the muse-1b layout shrunk to CPU size while keeping its ratios (24 backbone
layers, blocks at half the backbone width, 6 blocks on the 4x-fewer unshuffled tokens): the share of encode time
spent in the blocks, and so the muse/unilip ratio, depends on exactly these proportions.

* ``muse``    -- the MUSE tokenizer's inference path (Synergistic Blocks, fused SDPA, no attention map, no semantic
  stream), ``routing="decoupled"``.
* ``plain``   -- (a) the same model with the Synergistic Blocks swapped for plain pre-norm transformer blocks of
  equal width: one fused ``qkv`` projection, SDPA, and otherwise the same parts (RMSNorm, QK-RMSNorm, 2D RoPE,
  SwiGLU), so the ratio isolates the cost of the synergistic routing.
* ``unilip``  -- (b) UniLIP-style: same backbone, pixel-unshuffle + MLP projection to the latent, no blocks
  (the MUSE adapter -> norm -> to_latent with the block stack removed).

Timing: ``torch.no_grad()``, fp32, eval mode, warm-up runs, then round-robin repeats (so machine-load drift hits
all three alike); the minimum (and median) of the calling thread's CPU time is reported, wall time beside it.
Targets: muse/plain <= 1.02, muse/unilip <= 1.07 (the paper's 32/30 img/s).

Usage::

    python benchmarks/bench_encoder.py [--configs tiny small paper-proportions] [--repeats 30] [--threads 1]

Default: one thread -- on a shared 2-core machine two OpenMP threads contend with other jobs and become 4-10x
slower and very noisy.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from muse_hf.models import MuseTokenizerConfig, MuseTokenizerModel
from muse_hf.models.synergistic import SwiGLUMLP, apply_rotary_2d


class PlainBlock(nn.Module):
    """Standard pre-norm transformer block (fused qkv, SDPA) with the Synergistic Block's call signature."""

    def __init__(self, hidden_size: int, num_heads: int, intermediate_size: int, qkv_bias: bool, eps: float) -> None:
        super().__init__()
        self.num_heads, self.head_dim = num_heads, hidden_size // num_heads
        self.norm1 = nn.RMSNorm(hidden_size, eps=eps)
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size, bias=qkv_bias)
        self.q_norm = nn.RMSNorm(self.head_dim, eps=eps)
        self.k_norm = nn.RMSNorm(self.head_dim, eps=eps)
        self.o_proj = nn.Linear(hidden_size, hidden_size)
        self.norm2 = nn.RMSNorm(hidden_size, eps=eps)
        self.mlp = SwiGLUMLP(hidden_size, intermediate_size)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        output_attentions: bool = False,
        output_semantic: bool = False,
    ) -> tuple[torch.Tensor, None, None]:
        b, n, d = x.shape
        qkv = (
            self.qkv(self.norm1(x)).view(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        )  # (3, B, H, N, hd)
        q = apply_rotary_2d(self.q_norm(qkv[0]), cos, sin)
        k = apply_rotary_2d(self.k_norm(qkv[1]), cos, sin)
        out = F.scaled_dot_product_attention(q, k, qkv[2])  # (B, H, N, hd)
        x = x + self.o_proj(out.transpose(1, 2).reshape(b, n, d))
        return x + self.mlp(self.norm2(x)), None, None


# muse-1b proportions at CPU size: InternViT-300M is 24 layers x 1024 wide (16 heads) over 1024 tokens; MUSE adds
# 6 blocks of width 512 over 256 tokens. Here: 24 x 256 over 256 tokens (224 px, patch 14), 6 blocks of 128 over 64.
PAPER_PROPORTIONS = {
    "vision_config": {
        "hidden_size": 256,
        "num_hidden_layers": 24,
        "num_attention_heads": 4,
        "intermediate_size": 1024,
        "image_size": [224, 224],
        "patch_size": [14, 14],
    },
    "decoder_config": None,  # replaced by the tiny decoder below: the decoder is not timed
    "image_size": 224,
    "hidden_size": 128,
    "num_attention_heads": 2,
    "freeze_vision_backbone": False,
    "grad_scale": 1.0,
}
DEFAULT_BATCH = {"tiny": 8, "small": 2, "paper-proportions": 1}


def bench_config(name: str) -> MuseTokenizerConfig:
    """Preset (or the paper-proportions layout) in decoupled routing, append placement."""
    if name == "paper-proportions":
        overrides = dict(PAPER_PROPORTIONS, decoder_config=dict(MuseTokenizerConfig.from_preset("tiny").decoder_config))
        return MuseTokenizerConfig.from_preset("muse-1b", routing="decoupled", placement="append", **overrides)
    return MuseTokenizerConfig.from_preset(name, routing="decoupled", placement="append")


def build_variants(config: MuseTokenizerConfig) -> dict[str, MuseTokenizerModel]:
    """MUSE, plain-block and UniLIP-style encoders sharing the same backbone weights."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        muse = MuseTokenizerModel(config).eval()
    plain = copy.deepcopy(muse)
    plain.blocks = nn.ModuleList(
        PlainBlock(
            config.block_width,
            config.block_heads,
            config.block_intermediate_size,
            config.qkv_bias,
            config.rms_norm_eps,
        )
        for _ in range(config.num_synergistic_blocks)
    ).eval()
    unilip = copy.deepcopy(muse)
    unilip.blocks = nn.ModuleList()
    for model in (plain, unilip):
        model.decoder = nn.Identity()  # encode-only benchmark: drop the unused decoder weights
    return {"muse": muse, "plain": plain, "unilip": unilip}


def block_params(model: MuseTokenizerModel) -> int:
    return sum(p.numel() for p in model.blocks.parameters())


def count_flops(model: MuseTokenizerModel, x: torch.Tensor) -> int:
    """Matmul/attention FLOPs of one ``encode`` (torch's FlopCounterMode; elementwise ops are not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.encode(x)
    return counter.get_total_flops()


def time_encoders(
    models: dict[str, MuseTokenizerModel], x: torch.Tensor, warmup: int, repeats: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Per-call wall time and thread CPU time of ``model.encode(x)``, round-robin over the variants.

    With one intra-op thread all compute runs on the calling thread, so its CPU time is what the encoder costs,
    unaffected by the process being descheduled on a busy machine (wall time is reported beside it).
    """
    wall: dict[str, list[float]] = {name: [] for name in models}
    cpu: dict[str, list[float]] = {name: [] for name in models}
    with torch.no_grad():
        for _ in range(warmup):
            for model in models.values():
                model.encode(x)
        for _ in range(repeats):
            for name, model in models.items():  # round-robin: load drift affects every variant alike
                start_wall, start_cpu = time.perf_counter(), time.thread_time()
                model.encode(x)
                cpu[name].append(time.thread_time() - start_cpu)
                wall[name].append(time.perf_counter() - start_wall)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=["tiny", "small", "paper-proportions"])
    parser.add_argument(
        "--flops-configs",
        nargs="*",
        default=["muse-1b"],
        help="presets too big to time here: built on the meta device, FLOPs only (batch 1, preset image size)",
    )
    parser.add_argument("--batch-size", type=int, default=None, help=f"default per config: {DEFAULT_BATCH}")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (0: torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    print(
        f"torch {torch.__version__}, threads={torch.get_num_threads()}, fp32, no_grad, "
        f"median of {args.repeats} (after {args.warmup} warm-up)"
    )
    header = (
        f"{'config':<18}{'batch':>6}{'image':>7}{'muse ms':>10}{'plain ms':>10}{'unilip ms':>11}"
        f"{'muse/plain':>12}{'muse/unilip':>13}"
    )
    rows: dict[str, list[str]] = {"cpu-min": [], "cpu-median": [], "wall-median": []}
    for name in args.configs:
        config = bench_config(name)
        models = build_variants(config)
        h, w = config.image_hw
        batch = args.batch_size or DEFAULT_BATCH.get(name, 4)
        x = torch.randn(batch, 3, h, w)
        wall, cpu = time_encoders(models, x, args.warmup, args.repeats)
        for kind, times, reduce in (
            ("cpu-min", cpu, min),
            ("cpu-median", cpu, statistics.median),
            ("wall-median", wall, statistics.median),
        ):
            t = {k: reduce(v) * 1e3 for k, v in times.items()}
            rows[kind].append(
                f"{name:<18}{batch:>6}{h:>7}{t['muse']:>10.2f}{t['plain']:>10.2f}{t['unilip']:>11.2f}"
                f"{t['muse'] / t['plain']:>12.3f}{t['muse'] / t['unilip']:>13.3f}"
            )
        flops = {k: count_flops(m, x) for k, m in models.items()}
        print(
            f"[{name}] block params: muse {block_params(models['muse']) / 1e6:.2f}M (incl. v_itc, unused at "
            f"inference), plain {block_params(models['plain']) / 1e6:.2f}M; matmul GFLOPs per batch: "
            + ", ".join(f"{k} {v / 1e9:.3f}" for k, v in flops.items())
            + f"; FLOP ratios muse/plain {flops['muse'] / flops['plain']:.3f}, muse/unilip "
            f"{flops['muse'] / flops['unilip']:.3f}"
        )
    titles = {
        "cpu-min": "thread CPU time, minimum over repeats (primary: co-tenant noise only ever adds time)",
        "cpu-median": "thread CPU time, median",
        "wall-median": "wall-clock time, median",
    }
    for kind, title in titles.items():
        print(f"\nencode time per batch (ms), {title}")
        print(header)
        print("\n".join(rows[kind]))
    for name in args.flops_configs:
        config = bench_config(name)
        with torch.device("meta"):
            models = build_variants(config)
            x = torch.randn(1, 3, *config.image_hw)
        flops = {k: count_flops(m, x) for k, m in models.items()}
        print(
            f"\n[{name}, meta device, {config.image_hw[0]} px] matmul GFLOPs per image: "
            + ", ".join(f"{k} {v / 1e9:.1f}" for k, v in flops.items())
            + f"; muse/plain {flops['muse'] / flops['plain']:.3f}, muse/unilip {flops['muse'] / flops['unilip']:.3f}"
        )
    print("targets: muse/plain <= 1.02, muse/unilip <= 1.07 (paper: 32/30 img/s)")


if __name__ == "__main__":
    main()
