"""Latency of ``MusePipeline`` against diffusers' ``SanaPipeline`` with the same DiT, steps and resolution.

Both pipelines get the *same* ``SanaTransformer2DModel`` object and the same ``FlowMatchEulerDiscreteScheduler``
configuration. ``SanaPipeline`` needs a Gemma2 text encoder and a DC-AE; to compare the denoising loops exactly it is
given MusePipeline's own conditioning (connector output) as ``prompt_embeds`` / ``negative_prompt_embeds`` and returns
latents, so the only difference between the two loops is the pipeline code around the DiT.

Measured per run (classifier-free guidance on, batch ``--batch``):

* ``loop``: from the first DiT call to the end of the last scheduler step (callback timestamps; the device is
  synchronised in the callback, identically for both pipelines), and ``per step`` = loop / steps;
* ``end-to-end``: the whole ``__call__``. For MusePipeline that includes the condition encoder, the connector and the
  tokenizer decode to PIL images; for SanaPipeline (pre-computed embeddings, latent output) it is the loop plus
  set-up.

Runs of the two pipelines alternate (A, B, A, B, ...) after warm-up so that machine-load drift hits both alike; the
report gives medians and the ratio MusePipeline / SanaPipeline of the loop (target <= 1.05).

Usage::

    python benchmarks/bench_pipeline.py                       # tiny DiT, 64 px, 20 steps, CPU
    python benchmarks/bench_pipeline.py --config sana-600m --device cuda --dtype bfloat16 --steps 20
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from diffusers import FlowMatchEulerDiscreteScheduler, SanaPipeline, SanaTransformer2DModel
from transformers import BertConfig, BertModel, BertTokenizerFast

from muse_hf.models.configuration_muse import MuseTokenizerConfig
from muse_hf.models.connector import MuseConnector
from muse_hf.models.image_processing_muse import MuseImageProcessor
from muse_hf.models.modeling_muse import MuseTokenizerModel
from muse_hf.pipelines import MusePipeline

warnings.filterwarnings("ignore", message=".*torchvision.*")

# DiT / connector / tokenizer shapes per config. `sana-600m` is SANA-0.6B's DiT (Sana_600M) on the muse-1b tokenizer
# (448 px -> 16x16x32 latents, the paper's MUSE-1B pairing); `tiny` is a CPU-sized DiT on the tiny tokenizer.
CONFIGS: dict[str, dict[str, Any]] = {
    "tiny": {
        "tokenizer_preset": "tiny",
        "dit": dict(
            num_attention_heads=4,
            attention_head_dim=32,
            num_layers=4,
            num_cross_attention_heads=4,
            cross_attention_head_dim=32,
            cross_attention_dim=128,
            caption_channels=128,
            mlp_ratio=2.5,
        ),
        "connector": dict(num_queries=16, num_layers=2, hidden_size=128, num_attention_heads=4),
    },
    "sana-600m": {
        "tokenizer_preset": "muse-1b",
        "dit": dict(
            num_attention_heads=36,
            attention_head_dim=32,
            num_layers=28,
            num_cross_attention_heads=16,
            cross_attention_head_dim=72,
            cross_attention_dim=1152,
            caption_channels=2304,
            mlp_ratio=2.5,
        ),
        "connector": dict(num_queries=256, num_layers=6, hidden_size=896, num_attention_heads=14),
    },
}


def _text_encoder(device: torch.device, dtype: torch.dtype) -> tuple[torch.nn.Module, Any, str]:
    """The packaged all-MiniLM-L6-v2 BERT when installed, else a random BERT of its shape with a tiny vocab."""
    try:
        from muse_hf.pipelines import load_default_text_encoder

        model, tok = load_default_text_encoder()
        name = "all-MiniLM-L6-v2 (packaged)"
    except ImportError:
        folder = Path(tempfile.mkdtemp())
        words = (
            "a an the red green blue yellow purple orange circle square triangle star cross diamond left right "
            "of above below two three objects on white background with and".split()
        )
        (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
        tok = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"))
        model = BertModel(
            BertConfig(
                vocab_size=len(tok),
                hidden_size=384,
                num_hidden_layers=6,
                num_attention_heads=12,
                intermediate_size=1536,
            )
        )
        name = "random BERT with MiniLM-L6 shape (package not installed)"
    return _place(model, device, dtype), tok, name


def _place(module: Any, device: torch.device, dtype: torch.dtype) -> Any:
    module = module.to(device)
    return (module if dtype == torch.float32 else module.to(dtype)).eval()


def build(config: str, device: torch.device, dtype: torch.dtype) -> tuple[MusePipeline, SanaPipeline, dict[str, Any]]:
    """Both pipelines on one DiT."""
    torch.manual_seed(0)
    spec = CONFIGS[config]
    vae = _place(MuseTokenizerModel(MuseTokenizerConfig.from_preset(spec["tokenizer_preset"])), device, dtype)
    h, w = vae.config.image_hw
    grid = vae.config.latent_grid
    dit = _place(
        SanaTransformer2DModel(
            in_channels=vae.config.latent_channels,
            out_channels=vae.config.latent_channels,
            sample_size=grid[0],
            patch_size=1,
            **spec["dit"],
        ),
        device,
        dtype,
    )
    mllm, tok, text_name = _text_encoder(device, dtype)
    connector = _place(
        MuseConnector(
            condition_dim=mllm.config.hidden_size, caption_channels=spec["dit"]["caption_channels"], **spec["connector"]
        ),
        device,
        dtype,
    )
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    muse = MusePipeline(
        mllm=mllm,
        processor=tok,
        connector=connector,
        transformer=dit,
        scheduler=scheduler,
        vae=vae,
        image_processor=MuseImageProcessor(size={"height": h, "width": w}),
    )
    # SanaPipeline derives its latent factor from the DC-AE (32 without one): ask it for grid*32 px.
    sana = SanaPipeline(
        tokenizer=None,
        text_encoder=None,
        vae=None,
        transformer=dit,
        scheduler=FlowMatchEulerDiscreteScheduler.from_config(scheduler.config),
    )
    for p in (muse, sana):
        p.set_progress_bar_config(disable=True)
    info = {
        "config": config,
        "image_size": [h, w],
        "latent": [vae.config.latent_channels, *grid],
        "dit_params_M": round(sum(p.numel() for p in dit.parameters()) / 1e6, 2),
        "connector_params_M": round(sum(p.numel() for p in connector.parameters()) / 1e6, 2),
        "tokenizer_params_M": round(sum(p.numel() for p in vae.parameters()) / 1e6, 2),
        "text_encoder": text_name,
        "sana_size_px": [grid[0] * 32, grid[1] * 32],
    }
    return muse, sana, info


class StepClock:
    """First-DiT-call and per-step-end timestamps (device synchronised) of one pipeline call."""

    def __init__(self, pipe: Any, device: torch.device) -> None:
        self.device, self.marks, self.start = device, [], None
        pipe.transformer.register_forward_pre_hook(self._pre)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _pre(self, module: Any, args: Any) -> None:
        if self.start is None:
            self._sync()
            self.start = time.perf_counter()

    def callback(self, pipe: Any, step: int, t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        self._sync()
        self.marks.append(time.perf_counter())
        return {}

    def reset(self) -> None:
        self.marks, self.start = [], None


def timed(fn: Callable[[], Any], clock: StepClock) -> dict[str, float]:
    clock.reset()
    clock._sync()
    t0 = time.perf_counter()
    fn()
    clock._sync()
    total = time.perf_counter() - t0
    loop = clock.marks[-1] - clock.start
    steps = [clock.marks[0] - clock.start] + [b - a for a, b in zip(clock.marks, clock.marks[1:])]
    return {"end_to_end_s": total, "loop_s": loop, "step_ms": [1000 * x for x in steps]}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", choices=sorted(CONFIGS), default="tiny")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--guidance_scale", type=float, default=4.5)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    ap.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)

    muse, sana, info = build(args.config, device, dtype)
    prompts = ["a red circle left of a blue square"] * args.batch
    with torch.no_grad():
        embeds, mask, neg_embeds, neg_mask = muse.encode_prompt(prompts, do_classifier_free_guidance=True)
    grid = info["latent"][1:]
    muse_clock, sana_clock = StepClock(muse, device), StepClock(sana, device)
    common = dict(num_inference_steps=args.steps, guidance_scale=args.guidance_scale)

    def run_muse() -> Any:
        return muse(
            prompts,
            generator=torch.Generator(device).manual_seed(0),
            output_type="pil",
            callback_on_step_end=muse_clock.callback,
            **common,
        )

    def run_sana() -> Any:
        return sana(
            negative_prompt=None,
            prompt_embeds=embeds,
            prompt_attention_mask=mask,
            negative_prompt_embeds=neg_embeds,
            negative_prompt_attention_mask=neg_mask,
            height=grid[0] * 32,
            width=grid[1] * 32,
            use_resolution_binning=False,
            output_type="latent",
            generator=torch.Generator(device).manual_seed(0),
            callback_on_step_end=sana_clock.callback,
            **common,
        )

    # Same conditioning + same noise + same scheduler => the two loops must produce the same latents.
    with torch.no_grad():
        a = muse(prompts, generator=torch.Generator(device).manual_seed(0), output_type="latent", **common).images
        b = run_sana().images
    max_diff = float((a.float() - b.float()).abs().max())

    for _ in range(args.warmup):
        run_muse(), run_sana()
    runs: dict[str, list[dict[str, float]]] = {"muse": [], "sana": []}
    for _ in range(args.repeats):
        runs["muse"].append(timed(run_muse, muse_clock))
        runs["sana"].append(timed(run_sana, sana_clock))

    def med(name: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[name])

    result = {
        **info,
        "device": str(device)
        + (
            f" ({torch.cuda.get_device_name(device)})"
            if device.type == "cuda"
            else f" ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
        ),
        "dtype": args.dtype,
        "steps": args.steps,
        "batch": args.batch,
        "guidance_scale": args.guidance_scale,
        "repeats": args.repeats,
        "torch": torch.__version__,
        "latents_max_abs_diff_muse_vs_sana": max_diff,
        **{
            name: {
                "per_step_ms": statistics.median(x for r in runs[name] for x in r["step_ms"]),
                "min_per_step_ms": min(x for r in runs[name] for x in r["step_ms"]),
                "min_loop_s": min(r["loop_s"] for r in runs[name]),
                "loop_s": med(name, "loop_s"),
                "end_to_end_s": med(name, "end_to_end_s"),
                "runs_loop_s": [r["loop_s"] for r in runs[name]],
                "runs_end_to_end_s": [r["end_to_end_s"] for r in runs[name]],
            }
            for name in ("muse", "sana")
        },
    }
    # Paired ratio: each MusePipeline run against the SanaPipeline run right after it (same machine state).
    result["per_run_loop_ratios"] = [m["loop_s"] / s["loop_s"] for m, s in zip(runs["muse"], runs["sana"])]
    result["loop_ratio_muse_over_sana"] = statistics.median(result["per_run_loop_ratios"])

    print(
        f"MusePipeline vs SanaPipeline | {args.config} DiT ({info['dit_params_M']} M params), {info['image_size']} px"
        f" -> latents {info['latent']}, {args.steps} steps, CFG {args.guidance_scale}, batch {args.batch}, "
        f"{result['device']}, {args.dtype}"
    )
    print(f"  same latents from both loops: max |diff| = {max_diff:.2e}")
    print(
        f"  {'':8s}{'per step (ms)':>15s}{'min step (ms)':>15s}{'loop (s)':>10s}{'min loop (s)':>14s}"
        f"{'end-to-end (s)':>16s}   (medians unless 'min'; steps pooled over runs)"
    )
    for name in ("muse", "sana"):
        r = result[name]
        print(
            f"  {name:8s}{r['per_step_ms']:15.2f}{r['min_per_step_ms']:15.2f}{r['loop_s']:10.3f}{r['min_loop_s']:14.3f}"
            f"{r['end_to_end_s']:16.3f}"
        )
    result["min_loop_ratio_muse_over_sana"] = result["muse"]["min_loop_s"] / result["sana"]["min_loop_s"]
    print(f"  min-loop ratio muse/sana = {result['min_loop_ratio_muse_over_sana']:.3f}")
    print(
        f"  loop ratio muse/sana (median of paired runs) = {result['loop_ratio_muse_over_sana']:.3f} "
        "(target <= 1.05); per run: " + ", ".join(f"{x:.3f}" for x in result["per_run_loop_ratios"])
    )
    print(
        "  (muse end-to-end includes text encoder + connector + tokenizer decode to PIL; sana's is loop + set-up"
        " on pre-computed embeddings, latent output)"
    )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
