"""Structural Topology Alignment loss (paper §4.2, eq. 4)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

__all__ = ["HEAD_REDUCTIONS", "topology_alignment_loss"]

HEAD_REDUCTIONS: tuple[str, ...] = ("mean", "per_head")


def _as_layers(attentions: torch.Tensor | Sequence[torch.Tensor], name: str) -> list[torch.Tensor]:
    """Normalises a tensor or a sequence of tensors to a list of ``(B, H, N, N)`` tensors."""
    layers = [attentions] if isinstance(attentions, torch.Tensor) else list(attentions)
    if not layers:
        raise ValueError(f"{name} is empty; pass at least one (B, heads, N, N) attention tensor.")
    for i, attn in enumerate(layers):
        if not isinstance(attn, torch.Tensor) or attn.ndim != 4 or attn.shape[-1] != attn.shape[-2]:
            shape = tuple(attn.shape) if isinstance(attn, torch.Tensor) else type(attn).__name__
            raise ValueError(f"{name}[{i}] must be a (B, heads, N, N) attention tensor, got {shape}.")
    return layers


def topology_alignment_loss(
    student_attentions: torch.Tensor | Sequence[torch.Tensor],
    teacher_attentions: torch.Tensor | Sequence[torch.Tensor],
    eps: float = 1e-8,
    head_reduction: Literal["mean", "per_head"] = "per_head",
) -> torch.Tensor:
    """KL(teacher || student) between attention maps, averaged over layers, query tokens and batch.

    ``KL = sum_k t_k (log t_k - log s_k)`` per query row, computed in the log domain with both distributions
    clamped at ``eps`` (so zeros in either never give ``inf``/``nan``); identical inputs give exactly 0.
    The teacher is treated as a constant (no gradient reaches it). Computed in float32, also under autocast.

    Head handling (``head_reduction``):

    * ``"mean"`` -- the authors' released code (``PanqiYang1/MUSE muse/models/muse_vit.py:491-496``): the student
      map is averaged over its heads first and one KL per query row compares the teacher (its heads averaged
      too) with that mean map; ``F.kl_div(..., reduction="batchmean") / N`` there is this same mean over batch
      and query rows.
    * ``"per_head"`` -- one KL per student head (a 1-head teacher is broadcast to all heads, a teacher whose head
      count differs is first averaged over its heads), averaged over heads: the paper's eq. 4 reading ("averaged
      over layers and heads"). Every head is pulled to the teacher, not only their mean.

    Layer handling: one teacher tensor is used for every student layer; a sequence must have one tensor per
    student layer (the released code supervises the last block only).

    Args:
        student_attentions: ``(B, H_s, N, N)`` or a sequence of them (one per topology layer, e.g.
            ``MuseEncoderOutput.attentions``); rows sum to 1.
        teacher_attentions: ``(B, H_t, N, N)`` or a sequence of them (rows sum to 1), on the same token grid.
        eps: probability floor before taking logs.
        head_reduction: ``"mean"`` (released code) or ``"per_head"`` (see above).

    Returns:
        Scalar float32 loss.
    """
    if head_reduction not in HEAD_REDUCTIONS:
        raise ValueError(f"head_reduction must be one of {HEAD_REDUCTIONS}, got {head_reduction!r}.")
    students = _as_layers(student_attentions, "student_attentions")
    teachers = _as_layers(teacher_attentions, "teacher_attentions")
    if len(teachers) == 1:
        teachers = teachers * len(students)
    if len(teachers) != len(students):
        raise ValueError(
            f"Got {len(teachers)} teacher attention layers for {len(students)} student layers; pass one teacher "
            "tensor (shared by all layers) or one per student layer."
        )
    losses = []
    for i, (student, teacher) in enumerate(zip(students, teachers)):
        if teacher.shape[0] != student.shape[0] or teacher.shape[-1] != student.shape[-1]:
            raise ValueError(
                f"Layer {i}: teacher attention {tuple(teacher.shape)} does not match student {tuple(student.shape)} "
                "in batch size or token count; interpolate the teacher to the student's grid "
                "(StructuralTeacher(images, grid_size=model.config.latent_grid))."
            )
        teacher = teacher.detach().float()
        if teacher.shape[1] not in (1, student.shape[1]) or head_reduction == "mean":
            teacher = teacher.mean(dim=1, keepdim=True)  # (B, 1, N, N)
        student = student.float()
        if head_reduction == "mean":
            student = student.mean(dim=1, keepdim=True)  # (B, 1, N, N): released muse_vit.py:492
        with torch.autocast(device_type=student.device.type, enabled=False):  # float32 even under autocast
            log_ratio = teacher.clamp_min(eps).log() - student.clamp_min(eps).log()  # (B, H, N, N) broadcast
            kl_rows = (teacher * log_ratio).sum(dim=-1)  # (B, H, N) one KL per query token
        losses.append(kl_rows.mean())
    return torch.stack(losses).mean()
