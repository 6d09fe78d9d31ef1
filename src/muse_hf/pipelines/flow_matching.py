"""Pure training pieces of the unified model: the flow-matching loss and the latent-scaling statistic.

Conventions (diffusers' ``FlowMatchEulerDiscreteScheduler``, which the pipeline samples with):
``x_t = (1 - sigma) * x_0 + sigma * noise``, the DiT predicts the velocity ``v = noise - x_0``, and its
``timestep`` input is ``sigma * num_train_timesteps * transformer.config.timestep_scale`` (exactly what
the pipeline passes at inference). Paper eq. 6: ``E || v_theta(x_t, t, c) - (x_1 - x_0) ||^2``.

Timesteps are sampled logit-normally (``sigma = sigmoid(n)``, ``n ~ N(mean, std)``, SD3's choice, used by
UniLIP/SANA), and 10% of the conditions are replaced by the unconditional one (the encoding of the empty
prompt) so classifier-free guidance works at inference.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.utils import BaseOutput
from torch import nn

from .condition import MuseCondition

__all__ = [
    "FlowMatchingOutput",
    "LatentScaling",
    "sample_logit_normal_sigmas",
    "flow_matching_loss",
    "compute_latent_scaling",
]


@dataclass
class FlowMatchingOutput(BaseOutput):
    """Output of :func:`flow_matching_loss`.

    Args:
        loss: scalar MSE between predicted and target velocity.
        model_pred: ``(B, c, h, w)`` predicted velocity.
        target: ``(B, c, h, w)`` ``noise - latents``.
        sigmas: ``(B,)`` sampled noise levels in (0, 1).
        dropped: ``(B,)`` bool, which conditions were replaced by the unconditional one.
    """

    loss: torch.Tensor
    model_pred: torch.Tensor
    target: torch.Tensor
    sigmas: torch.Tensor
    dropped: torch.Tensor


def sample_logit_normal_sigmas(
    batch_size: int,
    *,
    mean: float = 0.0,
    std: float = 1.0,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Noise levels ``sigmoid(N(mean, std))``, shape ``(batch_size,)``, strictly inside (0, 1)."""
    if std <= 0:
        raise ValueError(f"logit-normal std must be > 0, got {std}.")
    normal = torch.randn(batch_size, generator=generator, device=generator.device if generator else None)
    return torch.sigmoid(normal * std + mean).to(device)


def flow_matching_loss(
    transformer: nn.Module,
    connector: nn.Module,
    latents: torch.Tensor,
    cond: MuseCondition,
    *,
    uncond: MuseCondition | None = None,
    condition_dropout: float = 0.1,
    logit_mean: float = 0.0,
    logit_std: float = 1.0,
    num_train_timesteps: int = 1000,
    generator: torch.Generator | None = None,
    noise: torch.Tensor | None = None,
    sigmas: torch.Tensor | None = None,
) -> FlowMatchingOutput:
    """Flow-matching loss of the SANA DiT conditioned through the connector (paper eq. 6).

    Gradients reach whatever in ``transformer`` / ``connector`` (and, for the InternVL path, the learnable
    queries through ``cond.query_states``) requires grad: the training stages choose by freezing.

    Args:
        transformer: ``SanaTransformer2DModel`` (any DiT with its call signature).
        connector: :class:`~muse_hf.models.connector.MuseConnector`.
        latents: ``(B, c, h, w)`` target latents already normalised for the DiT
            (``vae.normalize_latents``).
        cond: the batch condition (from a condition encoder; editing samples carry ``reference_latents``).
        uncond: the unconditional condition (batch 1 or B), e.g. the encoding of ``""``. Required when
            ``condition_dropout > 0``.
        condition_dropout: probability of replacing a sample's condition with ``uncond`` (paper: 0.1).
        logit_mean: mean of the logit-normal timestep distribution.
        logit_std: std of the logit-normal timestep distribution.
        num_train_timesteps: the scheduler's ``num_train_timesteps`` (timestep = sigma * this).
        generator: RNG for dropout, timesteps and noise (reproducible steps).
        noise: optional fixed noise ``(B, c, h, w)``.
        sigmas: optional fixed noise levels ``(B,)`` in [0, 1].

    Returns:
        :class:`FlowMatchingOutput`.

    Raises:
        ValueError: bad shapes, a batch mismatch, or dropout without ``uncond``.
    """
    if latents.ndim != 4:
        raise ValueError(f"`latents` must be (B, c, h, w); got {tuple(latents.shape)}.")
    b = latents.shape[0]
    if len(cond) != b:
        raise ValueError(f"Condition batch {len(cond)} != latents batch {b}.")
    if not 0.0 <= condition_dropout < 1.0:
        raise ValueError(f"condition_dropout must be in [0, 1); got {condition_dropout}.")
    device = latents.device
    gen_device = generator.device if generator is not None else None

    dropped = torch.rand(b, generator=generator, device=gen_device).to(device) < condition_dropout
    if condition_dropout > 0:
        if uncond is None:
            raise ValueError("condition_dropout > 0 needs `uncond` (the encoding of the empty prompt).")
        if bool(dropped.any()):
            cond = cond.where(dropped, uncond.to(device))
    if sigmas is None:
        sigmas = sample_logit_normal_sigmas(b, mean=logit_mean, std=logit_std, generator=generator, device=device)
    sigmas = sigmas.to(device=device, dtype=torch.float32)
    if noise is None:
        noise = torch.randn(latents.shape, generator=generator, device=gen_device, dtype=torch.float32).to(device)
    s = sigmas.view(b, 1, 1, 1)
    noisy = (1.0 - s) * latents.float() + s * noise  # (B, c, h, w)
    target = noise - latents.float()

    enc = connector(**cond.connector_kwargs())
    dtype = next(transformer.parameters()).dtype
    timestep = sigmas * num_train_timesteps * float(getattr(transformer.config, "timestep_scale", 1.0))
    model_pred = transformer(
        noisy.to(dtype),
        encoder_hidden_states=enc.encoder_hidden_states.to(dtype),
        encoder_attention_mask=enc.encoder_attention_mask,
        timestep=timestep.to(dtype),
        return_dict=False,
    )[0].float()
    loss = F.mse_loss(model_pred, target)
    return FlowMatchingOutput(loss=loss, model_pred=model_pred, target=target, sigmas=sigmas, dropped=dropped)


@dataclass
class LatentScaling:
    """Latent statistics for the DiT: ``z_dit = (z - shift_factor) * scaling_factor`` has mean 0, std 1.

    Args:
        scaling_factor: ``1 / std`` of the latents.
        shift_factor: mean of the latents.
        num_images: images seen.
        num_values: latent values seen.
    """

    scaling_factor: float
    shift_factor: float
    num_images: int
    num_values: int


@torch.no_grad()
def compute_latent_scaling(
    vae: nn.Module,
    dataloader: Iterable[Mapping[str, Any] | torch.Tensor],
    *,
    max_batches: int | None = None,
    pixel_key: str = "pixel_values",
    use_shift: bool = True,
    apply: bool = False,
) -> LatentScaling:
    """Measure ``scaling_factor`` / ``shift_factor`` of a tokenizer's latents over a dataset.

    Args:
        vae: ``MuseTokenizerModel`` (``encode(pixel_values).latents``).
        dataloader: yields batches: dicts with ``pixel_key`` ``(B, 3, H, W)`` (normalised by
            ``MuseImageProcessor``) or bare tensors.
        max_batches: stop after this many batches.
        pixel_key: key of the pixels in dict batches.
        use_shift: also centre the latents (``shift_factor`` = mean; else 0 and the scale uses the RMS).
        apply: write the result into ``vae.config`` (then ``vae.save_pretrained`` stores it).

    Returns:
        :class:`LatentScaling`.

    Raises:
        ValueError: the dataloader yielded nothing, a batch lacks ``pixel_key``, or the latents are constant.
    """
    device = next(vae.parameters()).device
    dtype = next(vae.parameters()).dtype
    total = total_sq = 0.0
    count = images = 0
    was_training = vae.training
    vae.eval()
    for i, batch in enumerate(dataloader):
        if max_batches is not None and i >= max_batches:
            break
        if isinstance(batch, Mapping):
            if pixel_key not in batch:
                raise ValueError(f"Batch has no {pixel_key!r} (keys: {sorted(batch)}); set pixel_key=.")
            pixels = batch[pixel_key]
        else:
            pixels = batch
        z = vae.encode(pixels.to(device=device, dtype=dtype)).latents.double()  # (B, c, h, w)
        total += float(z.sum())
        total_sq += float((z * z).sum())
        count += z.numel()
        images += z.shape[0]
    vae.train(was_training)
    if count == 0:
        raise ValueError("The dataloader yielded no batches; cannot measure latent statistics.")
    mean = total / count if use_shift else 0.0
    var = max(total_sq / count - mean * mean, 0.0)
    if var <= 1e-20:
        raise ValueError("The latents are constant (zero variance); cannot compute a scaling factor.")
    result = LatentScaling(scaling_factor=1.0 / math.sqrt(var), shift_factor=mean, num_images=images, num_values=count)
    if apply:
        vae.config.scaling_factor = result.scaling_factor
        vae.config.shift_factor = result.shift_factor
    return result
