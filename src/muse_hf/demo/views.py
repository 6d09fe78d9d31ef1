"""The demo's views: images made from model outputs (attention overlays, latent channels) and chat messages."""

from __future__ import annotations

from typing import Any

import gradio as gr
import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from matplotlib import colormaps
from PIL import ImageDraw

__all__ = [
    "DISPLAY_SIZE",
    "MAX_LATENT_CHANNELS_SHOWN",
    "attention_overlay",
    "chat_messages",
    "edit_messages",
    "fit_to_size",
    "latent_channel_view",
]

DISPLAY_SIZE = 256  # long side of attention overlays and latent views
MAX_LATENT_CHANNELS_SHOWN = 16


def fit_to_size(
    image: PIL.Image.Image, size: tuple[int, int]
) -> tuple[PIL.Image.Image, tuple[float, float, float, float]]:
    """Centre-crop ``image`` to the aspect of ``size`` = ``(H, W)`` and resize it (bicubic) to that size.

    Returns:
        The resized crop and the crop box ``(left, top, width, height)`` in the original image's pixels.
    """
    height, width = size
    w0, h0 = image.size
    scale = max(width / w0, height / h0)
    cw, ch = width / scale, height / scale  # crop size in original pixels
    left, top = (w0 - cw) / 2, (h0 - ch) / 2
    out = image.resize((width, height), PIL.Image.Resampling.BICUBIC, box=(left, top, left + cw, top + ch))
    return out, (left, top, cw, ch)


def _colormap(values: np.ndarray, name: str = "inferno") -> np.ndarray:
    """``(H, W)`` values in [0, 1] -> ``(H, W, 3)`` uint8 colours."""
    return (colormaps[name](np.clip(values, 0.0, 1.0))[..., :3] * 255).round().astype(np.uint8)


def _display_size(hw: tuple[int, int]) -> tuple[int, int]:
    h, w = hw
    scale = DISPLAY_SIZE / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def attention_overlay(
    view: PIL.Image.Image, attention: torch.Tensor, point: tuple[int, int] | None = None, alpha: float = 0.6
) -> PIL.Image.Image:
    """Blend one attention map over the image, like the paper's Figure 4.

    Args:
        view: the model-input image (``W x H``).
        attention: ``(h, w)`` weights over the token grid.
        point: ``(row, col)`` of the query token to mark, or ``None`` for the pooled query.
        alpha: heat-map opacity.

    Returns:
        A ``DISPLAY_SIZE``-long-side RGB image.
    """
    out_h, out_w = _display_size((view.size[1], view.size[0]))
    heat = attention.detach().float().cpu()[None, None]  # (1, 1, h, w)
    heat = F.interpolate(heat, size=(out_h, out_w), mode="bilinear", align_corners=False)[0, 0]
    heat = (heat - heat.min()) / (heat.max() - heat.min()).clamp_min(1e-12)
    base = np.asarray(view.resize((out_w, out_h), PIL.Image.Resampling.BICUBIC), dtype=np.float32)
    blended = (1 - alpha) * base + alpha * _colormap(heat.numpy()).astype(np.float32)
    image = PIL.Image.fromarray(blended.round().clip(0, 255).astype(np.uint8))
    if point is not None:
        gh, gw = attention.shape
        cy, cx = (point[0] + 0.5) * out_h / gh, (point[1] + 0.5) * out_w / gw
        r = max(4.0, 0.35 * out_h / gh)
        draw = ImageDraw.Draw(image)
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=(0, 255, 255), width=3)
        draw.line((cx - 2 * r, cy, cx + 2 * r, cy), fill=(0, 255, 255), width=1)
        draw.line((cx, cy - 2 * r, cx, cy + 2 * r), fill=(0, 255, 255), width=1)
    return image


def latent_channel_view(latents: torch.Tensor, max_channels: int = MAX_LATENT_CHANNELS_SHOWN) -> PIL.Image.Image:
    """Tile the first ``max_channels`` latent channels (each min-max normalised, viridis) into one image.

    Args:
        latents: ``(c, h, w)`` latents of one image.
        max_channels: channels shown.

    Returns:
        RGB image of a ``ceil(sqrt(n))``-column grid, each tile upscaled (nearest) to about 64 px.
    """
    lat = latents.detach().float().cpu()[:max_channels]  # (n, h, w)
    n, h, w = lat.shape
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    scale = max(1, 64 // max(h, w))
    th, tw, gap = h * scale, w * scale, 2
    canvas = np.full((rows * (th + gap) - gap, cols * (tw + gap) - gap, 3), 255, np.uint8)
    lo = lat.flatten(1).min(1).values[:, None, None]
    hi = lat.flatten(1).max(1).values[:, None, None]
    norm = ((lat - lo) / (hi - lo).clamp_min(1e-12)).numpy()
    for i in range(n):
        r, c = divmod(i, cols)
        tile = _colormap(np.kron(norm[i], np.ones((scale, scale))), "viridis")
        canvas[r * (th + gap) : r * (th + gap) + th, c * (tw + gap) : c * (tw + gap) + tw] = tile
    return PIL.Image.fromarray(canvas)


def edit_messages(session: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Chatbot messages for an edit session: the source image, then instruction / result pairs."""
    if not session:
        return []
    messages: list[dict[str, Any]] = [{"role": "user", "content": gr.Image(session["source"], format="png")}]
    for instruction, image in session["turns"]:
        messages.append({"role": "user", "content": instruction})
        messages.append({"role": "assistant", "content": gr.Image(image, format="png")})
    return messages


def chat_messages(session: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Chatbot messages for an Understand session: the image, then question / answer pairs."""
    if not session:
        return []
    messages: list[dict[str, Any]] = [{"role": "user", "content": gr.Image(session["source"], format="png")}]
    for question, answer in session["turns"]:
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return messages
