"""Arguments of the MUSE tokenizer curriculum (:class:`TokenizerTrainingArguments`, ``task: tokenizer``).

The task itself is :class:`muse_hf.training.tokenizer.task.TokenizerTask`; both are found through
:data:`muse_hf.training.arguments.TASK_REGISTRY`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from transformers import PreTrainedConfig

from muse_hf.models.configuration_muse import PRESETS, MuseTokenizerConfig
from muse_hf.training.arguments import MuseTrainingArguments
from muse_hf.validation import check_known_keys

__all__ = ["TokenizerTrainingArguments"]


@dataclass
class TokenizerTrainingArguments(MuseTrainingArguments):
    """Arguments of the MUSE tokenizer curriculum (paper §5.1, appendix E.1; DESIGN §2)."""

    # --- model ---
    model_preset: str = "tiny"
    """MuseTokenizerConfig.from_preset name when building from scratch (tiny, small, muse-1b, muse-3b)."""
    model_overrides: dict[str, Any] = field(default_factory=dict)
    """MuseTokenizerConfig fields to override (e.g. grad_scale, spectral_filter_alpha, routing)."""
    vision_model_name_or_path: str | None = None
    """An InternVL ``-hf`` checkpoint whose vision tower initialises the backbone (e.g. OpenGVLab/InternVL3-1B-hf)."""
    decoder_name_or_path: str | None = None
    """A diffusers AutoencoderDC checkpoint whose decoder initialises ours (mit-han-lab/dc-ae-f32c32-sana-1.1-diffusers)."""
    freeze_vision_backbone: bool | None = None
    """Freeze vision_model this stage (None: the model config's ``freeze_vision_backbone``)."""
    backbone_lr_multiplier: float = 1.0
    """Learning-rate multiplier of vision_model when it is trained (authors: 0.5 in stage 3)."""

    # --- loss weights (0 switches an objective off and freezes what only it trains) ---
    topology_weight: float = 1.0
    semantic_weight: float = 0.0
    reconstruction_weight: float = 1.0
    recon_l1_weight: float = 1.0
    recon_l2_weight: float = 1.0
    """Pixel L1/L2 weights; both terms are computed in [0, 1] pixel space (released muse_loss.py:137-152)."""
    perceptual_weight: float = 0.0
    """Weight of the released LPIPS + ConvNeXt term (authors: 1.1 in stages 1-2, 2.0 in stage 3). When its networks
    cannot be loaded the stage logs one line and trains with the term off."""
    perceptual_model: str | None = None
    """ConvNeXt ImageNet classifier (id or folder) of the perceptual term, e.g. facebook/convnext-small-224."""
    perceptual_lpips: str | None = "vgg"
    """LPIPS backbone of the perceptual term (torchmetrics; torchvision weights from torch's hub cache): vgg
    (released), alex, squeeze, or null for none (then perceptual_lpips_weight must be 0)."""
    perceptual_lpips_weight: float = 1.0
    """Released ``lpips-convnext_s-1.0-0.1``: LPIPS weight inside the perceptual term."""
    perceptual_convnext_weight: float = 0.1
    """Released ``lpips-convnext_s-1.0-0.1``: ConvNeXt-logit MSE weight inside the perceptual term."""
    soft_penalty_weight: float | None = None
    """Weight of the gradient-cosine penalty of ``routing: soft`` (a loss weight, so a training argument). None: the
    value a model config saved before the move carries, else 0.1."""
    gan_weight: float = 0.0
    gan_start_step: int = 0
    gan_adaptive_weight: bool = False
    lecam_weight: float = 0.0
    lecam_decay: float = 0.999
    """EMA decay of the LeCam logit statistics (released muse_loss.py:66)."""
    discriminator_lr: float | None = None
    """Discriminator learning rate (None: learning_rate)."""
    discriminator_channels: int = 64
    discriminator_layers: int = 3

    # --- teacher / text ---
    teacher: str = "mask_affinity"
    """``mask_affinity`` (offline default, needs instance masks) or a ViT checkpoint for StructuralTeacher
    (e.g. facebook/dinov3-vith16plus-pretrain-lvd1689m)."""
    teacher_layers: list[int] = field(default_factory=lambda: [-1])
    topology_head_reduction: Literal["mean", "per_head"] = "mean"
    """``mean``: KL between the teacher and the head-averaged student map (released muse_vit.py:491-496);
    ``per_head``: one KL per student head, averaged (the paper's eq. 4 wording)."""
    text_encoder: str | None = None
    """None: the packaged all-MiniLM-L6-v2; else a CLIP/SigLIP/sentence-transformers id or path."""
    logit_scale_init: float = 1.0 / 0.07
    nce_gather: bool = True

    # --- data columns ---
    image_column: str | None = None
    caption_column: str | None = None

    cache_frozen_features: bool = False
    """Remember, per training image, what the frozen backbone computes when it is also the structural teacher (the
    teacher's attention and the backbone features) and each caption's text embedding, so that later epochs skip
    both frozen networks; exact (the cached tensors are the ones the networks return), in memory, shared by the
    stages of one process. Worth it when the data set is seen for several epochs (the embedded default)."""
    frozen_feature_cache_max_samples: int = 16384
    """Images the cache keeps (about 0.2 MB each for DINOv2-S at 112 px); beyond it, images are recomputed."""

    # --- final evaluation / monitoring ---
    evaluate_at_end: bool = False
    gradient_probe_steps: int = 0
    """Every this many optimizer steps, log the cosines between the objectives' gradients on the synergistic
    blocks (``grad_cos/<a>|<b>``; the released training hook does this every log step). 0 = off."""

    def validate(self, produced_by_earlier_stage: frozenset[str] = frozenset()) -> None:  # noqa: D102
        super().validate(produced_by_earlier_stage)
        weights = {
            "topology_weight": self.topology_weight,
            "semantic_weight": self.semantic_weight,
            "reconstruction_weight": self.reconstruction_weight,
            "recon_l1_weight": self.recon_l1_weight,
            "recon_l2_weight": self.recon_l2_weight,
            "perceptual_weight": self.perceptual_weight,
            "gan_weight": self.gan_weight,
            "lecam_weight": self.lecam_weight,
            "perceptual_lpips_weight": self.perceptual_lpips_weight,
            "perceptual_convnext_weight": self.perceptual_convnext_weight,
            "gradient_probe_steps": self.gradient_probe_steps,
            "frozen_feature_cache_max_samples": self.frozen_feature_cache_max_samples,
        }
        for name, value in weights.items():
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}.")
        if self.topology_weight == self.semantic_weight == self.reconstruction_weight == 0:
            raise ValueError(
                "All of topology_weight, semantic_weight and reconstruction_weight are 0: nothing to train."
            )
        if self.gan_weight > 0 and self.reconstruction_weight == 0:
            raise ValueError("gan_weight > 0 needs reconstruction_weight > 0 (the GAN acts on reconstructions).")
        if self.perceptual_weight > 0:
            if self.perceptual_lpips_weight + self.perceptual_convnext_weight <= 0:
                raise ValueError(
                    "perceptual_weight > 0 needs perceptual_lpips_weight or perceptual_convnext_weight > 0."
                )
            if self.perceptual_convnext_weight > 0 and not self.perceptual_model:
                raise ValueError(
                    "perceptual_weight > 0 needs perceptual_model (a ConvNeXt ImageNet classifier id or path, e.g. "
                    "facebook/convnext-small-224), or perceptual_convnext_weight 0."
                )
            if self.perceptual_lpips_weight > 0 and self.perceptual_lpips not in ("vgg", "alex", "squeeze"):
                raise ValueError(
                    f"perceptual_lpips={self.perceptual_lpips!r}: choose vgg (released), alex or squeeze, or set "
                    "perceptual_lpips_weight 0."
                )
        if not 0.0 <= self.lecam_decay < 1.0:
            raise ValueError(f"lecam_decay must be in [0, 1), got {self.lecam_decay}.")
        if self.backbone_lr_multiplier <= 0:
            raise ValueError(f"backbone_lr_multiplier must be > 0, got {self.backbone_lr_multiplier}.")
        if self.gan_start_step < 0:
            raise ValueError(f"gan_start_step must be >= 0, got {self.gan_start_step}.")
        if self.init_from is None:
            if self.model_preset not in PRESETS:
                raise ValueError(f"model_preset={self.model_preset!r} is unknown; choose one of {sorted(PRESETS)}.")
        if self.model_overrides:  # refused here, before anything is built, with the closest field's name
            fields = {f.name for f in dataclasses.fields(MuseTokenizerConfig)}
            own = fields - {f.name for f in dataclasses.fields(PreTrainedConfig)}
            check_known_keys(self.model_overrides, fields, "model_overrides (fields of MuseTokenizerConfig)", own)
