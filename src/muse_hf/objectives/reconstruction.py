"""Reconstruction objective (paper §5.1; the authors' ``MUSE_Loss``): pixel L2 (+ L1) and a perceptual term in
[0, 1] pixel space, and a hinge GAN with LeCam.

* :class:`ReconstructionLoss` - weighted L2 + L1 + perceptual, all on images brought back to [0, 1] (the
  released ``PanqiYang1/MUSE muse/losses/muse_loss.py:137-164`` un-normalises inputs and reconstructions and
  clamps both to [0, 1] before every term).
* :class:`LPIPSConvNeXtLoss` - the released perceptual term ``lpips-convnext_s-1.0-0.1``
  (``muse/models/perceptual_loss.py``): ``(1.0 * LPIPS-VGG + 0.1 * MSE of ConvNeXt-S ImageNet logits) / 1.1``.
  :func:`load_perceptual_loss` builds it or, when its networks are not on this machine, logs one line and
  returns ``None`` (the term is then off, never a silent zero).
* :class:`PerceptualLoss` - an alternative: distance between unit-normalised feature maps of a frozen
  transformers vision model loaded by id/path (e.g. ConvNeXt ``facebook/convnext-tiny-224``), stages averaged.
* :class:`PatchDiscriminator` - PatchGAN (pix2pix/VQGAN style), spectral norm optional.
* :func:`hinge_d_loss`, :func:`hinge_g_loss`, :class:`LeCamEMA` (LeCam regulariser, Tseng et al. 2021).
* :class:`AdversarialLoss` - ties them together: off before ``start_step``, optional VQGAN adaptive weight.

Size: one responsibility, the reconstruction objective (pixel, perceptual and adversarial terms and their weighting).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from muse_hf.objectives.teachers import load_image_stats, missing_offline

__all__ = [
    "ReconstructionLoss",
    "LPIPSConvNeXtLoss",
    "load_perceptual_loss",
    "PerceptualLoss",
    "PatchDiscriminator",
    "hinge_d_loss",
    "hinge_g_loss",
    "LeCamEMA",
    "AdversarialLoss",
    "adaptive_adversarial_weight",
    "DEFAULT_PERCEPTUAL_MODEL",
    "DEFAULT_CONVNEXT_CLASSIFIER",
]

logger = logging.getLogger(__name__)

DEFAULT_PERCEPTUAL_MODEL = "facebook/convnext-tiny-224"
# The released term uses torchvision's ConvNeXt-S ImageNet classifier (perceptual_loss.py:36-39); this is the
# transformers port of the original ConvNeXt-S ImageNet-1k classifier (same architecture, other training run).
DEFAULT_CONVNEXT_CLASSIFIER = "facebook/convnext-small-224"
_IMAGENET_MEAN = (0.485, 0.456, 0.406)  # PanqiYang1/MUSE muse/models/perceptual_loss.py:9-10
_IMAGENET_STD = (0.229, 0.224, 0.225)
_LPIPS_WEIGHTS = {"vgg": "VGG16_Weights", "alex": "AlexNet_Weights", "squeeze": "SqueezeNet1_1_Weights"}


def _hub_unavailable(model_id_or_path: str, hub_kwargs: dict) -> bool:
    """True when ``model_id_or_path`` is neither a local folder nor cached while working offline."""
    import huggingface_hub

    if os.path.isdir(model_id_or_path):
        return False
    if not (hub_kwargs.get("local_files_only") or huggingface_hub.constants.HF_HUB_OFFLINE):
        return False
    try:
        cached = huggingface_hub.try_to_load_from_cache(
            model_id_or_path, "config.json", cache_dir=hub_kwargs.get("cache_dir"), revision=hub_kwargs.get("revision")
        )
    except ValueError:  # not a repo id (e.g. a missing local path)
        return True
    return not isinstance(cached, str)


def _load_lpips(net: str) -> nn.Module:
    """torchmetrics' LPIPS network (the linear heads ship with torchmetrics) on torchvision's ImageNet backbone.

    Never downloads: the backbone weights must already be in torch's hub cache.

    Raises:
        OSError: one line naming what is missing and how to get it.
    """
    if net not in _LPIPS_WEIGHTS:
        raise ValueError(f"LPIPS network must be one of {sorted(_LPIPS_WEIGHTS)}, got {net!r}.")
    try:
        import torchvision
    except ImportError as err:
        raise OSError(
            f"LPIPS-{net} needs torchvision (not installed): `pip install torchvision`, with its ImageNet {net} "
            "weights in torch's hub cache."
        ) from err
    import torch.hub

    url = getattr(torchvision.models, _LPIPS_WEIGHTS[net]).DEFAULT.url
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
    if not cached.is_file():
        raise OSError(
            f"LPIPS-{net} needs torchvision's ImageNet backbone weights at {cached} (not there; nothing is downloaded "
            f"here): fetch {url} where there is network and copy it there (or set TORCH_HOME)."
        )
    from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

    return _LPIPSNetwork(LearnedPerceptualImagePatchSimilarity(net_type=net, normalize=True).net)


class _LPIPSNetwork(nn.Module):
    """torchmetrics' LPIPS network called on [0, 1] images (it rescales them to [-1, 1] itself)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, prediction01: torch.Tensor, target01: torch.Tensor) -> torch.Tensor:
        return self.net(prediction01, target01, normalize=True)  # (B, 1, 1, 1)


class LPIPSConvNeXtLoss(nn.Module):
    """The released perceptual term ``lpips-convnext_s-{w_lpips}-{w_convnext}``.

    ``(w_lpips * LPIPS(pred, target) + w_convnext * MSE(ConvNeXt(pred), ConvNeXt(target))) / (w_lpips + w_convnext)``
    as in ``PanqiYang1/MUSE muse/models/perceptual_loss.py:41-89`` (weights 1.0 / 0.1 there): LPIPS-VGG on the
    images as they are, the ConvNeXt term on the ImageNet classifier's logits after an antialiased bilinear
    resize to 224 and ImageNet normalisation (``perceptual_loss.py:75-80``). A part whose weight is 0 is not
    loaded. Every network is frozen and stays in eval mode.

    Args:
        convnext_model: transformers ``*ForImageClassification`` checkpoint (id or folder) with ImageNet logits,
            default ``facebook/convnext-small-224`` (the released code: torchvision's ConvNeXt-S), or a module
            mapping normalised ``(B, 3, 224, 224)`` images to logits (an object with ``.logits`` or a tensor).
        lpips: ``"vgg"`` (released), ``"alex"`` or ``"squeeze"`` for torchmetrics' LPIPS on torchvision's
            ImageNet backbone (must already be in torch's hub cache: nothing is downloaded), or a module
            ``(pred, target) -> distances`` taking [0, 1] images.
        lpips_weight: ``w_lpips`` (released 1.0).
        convnext_weight: ``w_convnext`` (released 0.1).
        resize: ConvNeXt input size (released 224).
        **hub_kwargs: forwarded to ``from_pretrained`` (``revision``, ``cache_dir``, ``local_files_only``).

    Raises:
        OSError: a needed network cannot be loaded; one line per missing part, saying how to get it.
    """

    def __init__(
        self,
        convnext_model: str | os.PathLike | nn.Module | None = DEFAULT_CONVNEXT_CLASSIFIER,
        lpips: str | nn.Module | None = "vgg",
        lpips_weight: float = 1.0,
        convnext_weight: float = 0.1,
        resize: int = 224,
        **hub_kwargs,
    ) -> None:
        super().__init__()
        if min(lpips_weight, convnext_weight) < 0 or lpips_weight + convnext_weight <= 0:
            raise ValueError(
                "lpips_weight and convnext_weight must be >= 0 with a positive sum, "
                f"got {lpips_weight}, {convnext_weight}."
            )
        self.lpips_weight, self.convnext_weight, self.resize = float(lpips_weight), float(convnext_weight), int(resize)
        problems: list[str] = []
        self.lpips: nn.Module | None = None
        if self.lpips_weight > 0:
            if isinstance(lpips, nn.Module):
                self.lpips = lpips
            elif lpips is None:
                problems.append("lpips_weight > 0 but no LPIPS network was given (lpips=None)")
            else:
                try:
                    self.lpips = _load_lpips(str(lpips))
                except OSError as err:
                    problems.append(str(err))
        self.convnext: nn.Module | None = None
        if self.convnext_weight > 0:
            if isinstance(convnext_model, nn.Module):
                self.convnext = convnext_model
            else:
                try:
                    name = str(convnext_model or DEFAULT_CONVNEXT_CLASSIFIER)
                    self.convnext = self._load_classifier(name, hub_kwargs)
                except OSError as err:
                    problems.append(str(err))
        if problems:
            raise OSError("; ".join(problems))
        for part in (self.lpips, self.convnext):
            if part is not None:
                part.eval().requires_grad_(False)
        self.register_buffer("image_mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), False)
        self.register_buffer("image_std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), False)

    @staticmethod
    def _load_classifier(name: str, hub_kwargs: dict) -> nn.Module:
        import transformers

        repo = name if "/" in name and not os.path.isabs(name) else DEFAULT_CONVNEXT_CLASSIFIER
        hint = (
            f"the ConvNeXt classifier {name!r} is not on this machine: `hf download {repo} --local-dir "
            "weights/convnext` where there is network and pass that folder as perceptual_model"
        )
        if _hub_unavailable(name, hub_kwargs):
            raise OSError(hint)
        try:
            model, info = transformers.AutoModelForImageClassification.from_pretrained(
                name, output_loading_info=True, **hub_kwargs
            )
        except (OSError, ValueError) as err:
            raise OSError(f"{hint} ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})") from err
        missing = sorted(info.get("missing_keys") or [])
        if missing:
            raise OSError(
                f"{name!r} has no trained classification head (missing {missing[:2]}); the released term "
                "compares ImageNet logits: pass a *ForImageClassification checkpoint such as "
                f"{DEFAULT_CONVNEXT_CLASSIFIER}"
            )
        return model

    def train(self, mode: bool = True) -> LPIPSConvNeXtLoss:
        """The feature networks always stay in eval mode (released ``perceptual_loss.py:62``)."""
        super().train(False)
        return self

    def _logits(self, images01: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(images01, size=self.resize, mode="bilinear", align_corners=False, antialias=True)
        out = self.convnext((x - self.image_mean) / self.image_std)
        return out.logits if hasattr(out, "logits") else out

    def forward(self, prediction01: torch.Tensor, target01: torch.Tensor) -> torch.Tensor:
        """Perceptual distance of ``(B, 3, H, W)`` images in [0, 1] (gradients flow through ``prediction01``).

        Returns:
            Scalar loss.
        """
        pred, tgt = prediction01.float(), target01.float()
        total = pred.new_zeros(())
        if self.lpips is not None:
            total = total + self.lpips_weight * self.lpips(pred, tgt).mean()
        if self.convnext is not None:
            with torch.no_grad():
                tgt_logits = self._logits(tgt)
            total = total + self.convnext_weight * F.mse_loss(self._logits(pred), tgt_logits)
        return total / (self.lpips_weight + self.convnext_weight)


def load_perceptual_loss(
    convnext_model: str | os.PathLike | nn.Module | None = DEFAULT_CONVNEXT_CLASSIFIER,
    lpips: str | nn.Module | None = "vgg",
    lpips_weight: float = 1.0,
    convnext_weight: float = 0.1,
    **hub_kwargs,
) -> LPIPSConvNeXtLoss | None:
    """:class:`LPIPSConvNeXtLoss`, or ``None`` with one logged warning line when its networks cannot be loaded.

    Training uses this so that a machine without the perceptual networks (offline, no torchvision) trains with the
    term visibly off rather than failing or silently adding zero.

    Returns:
        The loss module, or ``None``.
    """
    try:
        return LPIPSConvNeXtLoss(convnext_model, lpips, lpips_weight, convnext_weight, **hub_kwargs)
    except OSError as err:
        logger.warning("Perceptual term OFF (its networks cannot be loaded): %s", " ".join(str(err).split()))
        return None


class PerceptualLoss(nn.Module):
    """Feature-space distance through a frozen transformers vision model (LPIPS-style, without learned weights).

    The model is loaded with ``AutoModel.from_pretrained`` and run with ``output_hidden_states=True``; the
    chosen hidden states (``(B, C, h, w)`` stage maps for ConvNets like ConvNeXt, ``(B, L, C)`` tokens for
    ViTs) are unit-normalised over channels and compared with mean squared error, averaged over the stages.

    Args:
        model_id_or_path: Hub id or local folder (default ConvNeXt-T, ``facebook/convnext-tiny-224``).
        layers: indices into ``hidden_states`` (default: every stage after the embeddings).
        image_mean: mean the model expects on [0, 1] images (default: its ``preprocessor_config.json`` or
            ImageNet).
        image_std: std likewise.
        **hub_kwargs: forwarded to ``from_pretrained`` (``revision``, ``cache_dir``, ``local_files_only``).

    Raises:
        OSError: the weights cannot be found (e.g. offline without a local copy); the message says how to
            get them.
    """

    def __init__(
        self,
        model_id_or_path: str | os.PathLike = DEFAULT_PERCEPTUAL_MODEL,
        layers: Sequence[int] | None = None,
        image_mean: Sequence[float] | None = None,
        image_std: Sequence[float] | None = None,
        **hub_kwargs,
    ) -> None:
        super().__init__()
        import transformers

        name = str(model_id_or_path)
        repo = (
            name if "/" in name and not os.path.isabs(name) and not name.startswith(".") else DEFAULT_PERCEPTUAL_MODEL
        )
        message = (
            f"The perceptual loss network {name!r} could not be loaded: its weights are not on this machine. "
            f"Download them where there is network access, e.g. `hf download {repo} --local-dir weights/perceptual`, "
            "copy the folder here and pass its path as perceptual_model=..., or turn the term off with "
            "perceptual_weight=0."
        )
        if missing_offline(name, hub_kwargs):
            raise OSError(message)
        try:
            model = transformers.AutoModel.from_pretrained(name, **hub_kwargs)
        except (OSError, ValueError) as err:
            raise OSError(f"{message}\n({err})") from err
        self.model = model.eval().requires_grad_(False)
        self.layers = tuple(layers) if layers is not None else None
        if image_mean is None or image_std is None:
            mean, std = load_image_stats(name, model.config.model_type, **hub_kwargs)
            image_mean = image_mean if image_mean is not None else mean
            image_std = image_std if image_std is not None else std
        self.register_buffer("image_mean", torch.tensor(image_mean, dtype=torch.float32).view(1, 3, 1, 1), False)
        self.register_buffer("image_std", torch.tensor(image_std, dtype=torch.float32).view(1, 3, 1, 1), False)

    def train(self, mode: bool = True) -> PerceptualLoss:
        """The feature network always stays in eval mode."""
        super().train(False)
        return self

    def _features(self, images01: torch.Tensor) -> list[torch.Tensor]:
        x = (images01 - self.image_mean) / self.image_std
        hidden = self.model(pixel_values=x, output_hidden_states=True, return_dict=True).hidden_states
        layers = self.layers if self.layers is not None else range(1, len(hidden))
        return [hidden[i] for i in layers]

    def forward(self, prediction01: torch.Tensor, target01: torch.Tensor) -> torch.Tensor:
        """Perceptual distance between two image batches.

        Args:
            prediction01: ``(B, 3, H, W)`` images in [0, 1] (gradients flow through).
            target01: ``(B, 3, H, W)`` reference images in [0, 1].

        Returns:
            Scalar loss.
        """
        with torch.no_grad():
            target_feats = self._features(target01.float())
        losses = []
        for p, t in zip(self._features(prediction01.float()), target_feats):
            channel_dim = 1 if p.ndim == 4 else -1
            losses.append(F.mse_loss(F.normalize(p, dim=channel_dim), F.normalize(t, dim=channel_dim)))
        return torch.stack(losses).mean()


class ReconstructionLoss(nn.Module):
    """Pixel reconstruction loss in [0, 1] pixel space: ``l2_weight * MSE + l1_weight * L1 + perceptual_weight * P``.

    As the authors' ``MUSE_Loss`` (``PanqiYang1/MUSE muse/losses/muse_loss.py:137-164``): both the reconstruction
    and the target are taken back to [0, 1] with the image processor's mean/std (``x * std + mean``) and clamped to
    [0, 1] before every term (the clamp also stops the gradient of pixels the decoder pushes past 0 or 1, as there).
    The released stages use L2 only (``reconstruction_loss: "l2"``) plus the perceptual term.

    Args:
        l2_weight: weight of the mean squared error.
        l1_weight: weight of the mean absolute error.
        perceptual_weight: weight of the perceptual term (0 = off; released: 1.1 in stages 1-2, 2.0 in stage 3).
        perceptual_model: a ready perceptual module called on [0, 1] images (e.g. from
            :func:`load_perceptual_loss`, or a :class:`PerceptualLoss`), or the id/path of the ConvNeXt classifier of
            an :class:`LPIPSConvNeXtLoss` built here (``None``: ``DEFAULT_CONVNEXT_CLASSIFIER``). Only used when
            ``perceptual_weight > 0``.
        input_mean: per-channel mean the inputs were normalised with (the image processor's ``image_mean``).
            ``None`` = inputs already in [0, 1].
        input_std: per-channel std likewise.
        **perceptual_kwargs: forwarded to :class:`LPIPSConvNeXtLoss` (``lpips``, ``lpips_weight``,
            ``convnext_weight``, hub kwargs).
    """

    def __init__(
        self,
        l2_weight: float = 1.0,
        l1_weight: float = 1.0,
        perceptual_weight: float = 0.0,
        perceptual_model: str | os.PathLike | nn.Module | None = None,
        input_mean: Sequence[float] | None = None,
        input_std: Sequence[float] | None = None,
        **perceptual_kwargs,
    ) -> None:
        super().__init__()
        if min(l2_weight, l1_weight, perceptual_weight) < 0:
            raise ValueError("Reconstruction loss weights must be >= 0.")
        self.l2_weight, self.l1_weight, self.perceptual_weight = (
            float(l2_weight),
            float(l1_weight),
            float(perceptual_weight),
        )
        self.perceptual: nn.Module | None = None
        if self.perceptual_weight > 0:
            if isinstance(perceptual_model, nn.Module):
                self.perceptual = perceptual_model
            else:
                self.perceptual = LPIPSConvNeXtLoss(
                    perceptual_model or DEFAULT_CONVNEXT_CLASSIFIER, **perceptual_kwargs
                )
        mean = torch.tensor(input_mean if input_mean is not None else (0.0, 0.0, 0.0), dtype=torch.float32)
        std = torch.tensor(input_std if input_std is not None else (1.0, 1.0, 1.0), dtype=torch.float32)
        self.register_buffer("input_mean", mean.view(1, 3, 1, 1), False)
        self.register_buffer("input_std", std.view(1, 3, 1, 1), False)

    def to_unit_range(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised ``(B, 3, H, W)`` images -> [0, 1] (``x * std + mean``, clamped), in float32.

        Released ``muse_loss.py:139-146`` (there: ImageNet mean/std for inputs, ``(x + 1) / 2`` for the tanh-range
        decoder output; here the decoder predicts the processor's space, so both use its mean/std).
        """
        return (images.float() * self.input_std + self.input_mean).clamp(0.0, 1.0)

    def forward(self, reconstruction: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Computes the loss terms.

        Args:
            reconstruction: ``(B, 3, H, W)`` decoder output, in the same (normalised) pixel space as ``target``.
            target: ``(B, 3, H, W)`` input images.

        Returns:
            ``{"loss": weighted total, "pixel": weighted L2 + L1 (the released probe's "rec_loss"), "l2": MSE,
            "l1": L1, "perceptual": perceptual (0 when off)}``, scalars, all in [0, 1] pixel space.
        """
        if reconstruction.shape != target.shape:
            raise ValueError(
                f"reconstruction {tuple(reconstruction.shape)} and target {tuple(target.shape)} must have the same shape."
            )
        rec, tgt = self.to_unit_range(reconstruction), self.to_unit_range(target)
        l2 = F.mse_loss(rec, tgt)  # released muse_loss.py:151-152
        l1 = F.l1_loss(rec, tgt)  # released muse_loss.py:149-150 (reconstruction_loss: "l1")
        perceptual = rec.new_zeros(())
        if self.perceptual is not None:
            perceptual = self.perceptual(rec, tgt)  # released muse_loss.py:163 (on the clamped [0, 1] images)
        pixel = self.l2_weight * l2 + self.l1_weight * l1
        total = pixel + self.perceptual_weight * perceptual
        return {"loss": total, "pixel": pixel, "l2": l2, "l1": l1, "perceptual": perceptual}


class PatchDiscriminator(nn.Module):
    """PatchGAN discriminator (pix2pix / VQGAN ``NLayerDiscriminator``): one real/fake logit per image patch.

    ``conv4x4/2 -> LeakyReLU -> [conv4x4/2 -> norm -> LeakyReLU] x (num_layers-1) -> conv4x4/1 -> norm ->
    LeakyReLU -> conv4x4/1 -> 1 channel``.

    Args:
        in_channels: image channels.
        base_channels: width of the first conv (doubles per layer, capped at 8x).
        num_layers: number of stride-2 convs (the receptive field grows with it).
        norm: ``"group"`` (GroupNorm, DDP-safe), ``"batch"`` or ``"none"``.
        spectral_norm: wrap every conv in ``torch.nn.utils.parametrizations.spectral_norm``.
    """

    def __init__(
        self,
        in_channels: int = 3,
        base_channels: int = 64,
        num_layers: int = 3,
        norm: str = "group",
        spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        if norm not in ("group", "batch", "none"):
            raise ValueError(f"norm must be 'group', 'batch' or 'none', got {norm!r}.")
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}.")

        def conv(cin: int, cout: int, stride: int, bias: bool) -> nn.Module:
            layer = nn.Conv2d(cin, cout, kernel_size=4, stride=stride, padding=1, bias=bias)
            return _spectral_norm(layer) if spectral_norm else layer

        def normalization(channels: int) -> nn.Module:
            if norm == "group":
                return nn.GroupNorm(min(32, channels // 4) or 1, channels)
            return nn.BatchNorm2d(channels) if norm == "batch" else nn.Identity()

        layers: list[nn.Module] = [conv(in_channels, base_channels, 2, True), nn.LeakyReLU(0.2, inplace=True)]
        channels = base_channels
        for i in range(1, num_layers + 1):
            out = base_channels * min(2**i, 8)
            stride = 2 if i < num_layers else 1
            layers += [
                conv(channels, out, stride, norm == "none"),
                normalization(out),
                nn.LeakyReLU(0.2, True),
            ]
            channels = out
        layers.append(conv(channels, 1, 1, True))
        self.main = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` images -> ``(B, 1, h, w)`` patch logits."""
        return self.main(images)


def hinge_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """Discriminator hinge loss ``0.5 * (mean(relu(1 - D(x))) + mean(relu(1 + D(G(z)))))``."""
    return 0.5 * (F.relu(1.0 - logits_real.float()).mean() + F.relu(1.0 + logits_fake.float()).mean())


def hinge_g_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    """Generator hinge loss ``-mean(D(G(z)))``."""
    return -logits_fake.float().mean()


class LeCamEMA(nn.Module):
    """LeCam regulariser (Tseng et al., CVPR 2021) with exponential moving averages of the logits.

    ``R = mean(relu(D(x) - ema_fake)^2) + mean(relu(ema_real - D(G(z)))^2)`` (the official implementation's
    one-sided form): it is 0 while real logits stay at or below the fake EMA and fake logits at or above
    the real EMA, and grows as the discriminator's outputs drift apart.

    Args:
        decay: EMA decay per update (released ``muse_loss.py:66``: 0.999).
    """

    def __init__(self, decay: float = 0.999) -> None:  # released muse_loss.py:66
        super().__init__()
        if not 0 <= decay < 1:
            raise ValueError(f"decay must be in [0, 1), got {decay}.")
        self.decay = float(decay)
        self.register_buffer("ema_real", torch.zeros(()))
        self.register_buffer("ema_fake", torch.zeros(()))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def update(self, logits_real: torch.Tensor, logits_fake: torch.Tensor) -> None:
        """Moves the EMAs towards the batch means (the first update sets them)."""
        real, fake = logits_real.float().mean(), logits_fake.float().mean()
        if not bool(self.initialized):
            self.ema_real.copy_(real)
            self.ema_fake.copy_(fake)
            self.initialized.fill_(True)
        else:
            self.ema_real.lerp_(real, 1 - self.decay)
            self.ema_fake.lerp_(fake, 1 - self.decay)

    def forward(self, logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
        """The regulariser for the current logits (call :meth:`update` separately, typically first)."""
        return (
            F.relu(logits_real.float() - self.ema_fake).pow(2).mean()
            + F.relu(self.ema_real - logits_fake.float()).pow(2).mean()
        )


def adaptive_adversarial_weight(
    reconstruction_loss: torch.Tensor,
    generator_loss: torch.Tensor,
    last_layer: torch.Tensor,
    max_weight: float = 1e4,
    eps: float = 1e-4,
) -> torch.Tensor:
    """VQGAN's adaptive weight ``||grad_last(rec)|| / (||grad_last(gan)|| + eps)``, clamped, detached.

    Args:
        reconstruction_loss: the reconstruction loss (scalar, with graph).
        generator_loss: the unweighted generator loss (scalar, with graph).
        last_layer: the decoder's last layer weight.
        max_weight: upper clamp.
        eps: stabiliser in the denominator.

    Returns:
        Scalar weight (no gradient).
    """
    rec_grad = torch.autograd.grad(reconstruction_loss, last_layer, retain_graph=True, allow_unused=True)[0]
    gan_grad = torch.autograd.grad(generator_loss, last_layer, retain_graph=True, allow_unused=True)[0]
    if rec_grad is None or gan_grad is None:
        raise ValueError("last_layer is not reached by both losses; pass the decoder's final conv weight.")
    return (rec_grad.norm() / (gan_grad.norm() + eps)).clamp(0.0, max_weight).detach()


@contextlib.contextmanager
def _frozen(module: nn.Module) -> Iterator[None]:
    """Temporarily stops gradient accumulation into ``module``'s parameters."""
    flags = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(module.parameters(), flags):
            p.requires_grad_(flag)


class AdversarialLoss(nn.Module):
    """Hinge GAN objective with LeCam regularisation, switched on at ``start_step``.

    The generator term is ``weight * [adaptive weight] * hinge_g_loss(D(fake))``; the discriminator term is
    ``hinge_d_loss + lecam_weight * LeCam``. Before ``start_step`` both return 0 (a constant, no graph).
    The generator term does not accumulate gradients into the discriminator.

    Args:
        discriminator: the discriminator (default: ``PatchDiscriminator()``).
        start_step: first global step at which the GAN is on (paper Table 9: 5000; authors' code: 0).
        weight: generator loss weight (paper: 0.1; authors' code: 0.5).
        adaptive: multiply by VQGAN's adaptive weight (needs ``reconstruction_loss`` and ``last_layer``).
        lecam_weight: weight of the LeCam regulariser in the discriminator loss (0 = off).
        lecam_decay: EMA decay of the LeCam statistics (released: 0.999).
        max_adaptive_weight: clamp of the adaptive weight.
    """

    def __init__(
        self,
        discriminator: nn.Module | None = None,
        start_step: int = 0,
        weight: float = 0.1,
        adaptive: bool = False,
        lecam_weight: float = 0.0,
        lecam_decay: float = 0.999,  # released muse_loss.py:66
        max_adaptive_weight: float = 1e4,
    ) -> None:
        super().__init__()
        if start_step < 0 or weight < 0 or lecam_weight < 0:
            raise ValueError("start_step, weight and lecam_weight must be >= 0.")
        self.discriminator = discriminator if discriminator is not None else PatchDiscriminator()
        self.start_step = int(start_step)
        self.weight = float(weight)
        self.adaptive = bool(adaptive)
        self.lecam_weight = float(lecam_weight)
        self.lecam = LeCamEMA(lecam_decay)
        self.max_adaptive_weight = float(max_adaptive_weight)

    def is_active(self, step: int) -> bool:
        """Whether the GAN terms are on at global step ``step``."""
        return self.weight > 0 and step >= self.start_step

    def generator_loss(
        self,
        fake_images: torch.Tensor,
        step: int,
        reconstruction_loss: torch.Tensor | None = None,
        last_layer: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Weighted generator loss for the decoder's output.

        Args:
            fake_images: ``(B, 3, H, W)`` reconstructions (with graph).
            step: global step.
            reconstruction_loss: needed when ``adaptive``.
            last_layer: the decoder's last layer weight; needed when ``adaptive``.

        Returns:
            Scalar loss (0 before ``start_step``).
        """
        if not self.is_active(step):
            return fake_images.new_zeros((), dtype=torch.float32)
        with _frozen(self.discriminator):
            g_loss = hinge_g_loss(self.discriminator(fake_images))
        weight = fake_images.new_tensor(self.weight, dtype=torch.float32)
        if self.adaptive:
            if reconstruction_loss is None or last_layer is None:
                raise ValueError("adaptive=True needs reconstruction_loss and last_layer.")
            if torch.is_grad_enabled():
                weight = weight * adaptive_adversarial_weight(
                    reconstruction_loss, g_loss, last_layer, max_weight=self.max_adaptive_weight
                )
        return weight * g_loss

    def discriminator_loss(
        self, real_images: torch.Tensor, fake_images: torch.Tensor, step: int
    ) -> dict[str, torch.Tensor]:
        """Discriminator loss on real images and (detached) reconstructions.

        Args:
            real_images: ``(B, 3, H, W)`` inputs.
            fake_images: ``(B, 3, H, W)`` reconstructions (detached here).
            step: global step.

        Returns:
            ``{"loss": total, "hinge": hinge_d_loss, "lecam": regulariser, "logits_real": mean, "logits_fake":
            mean}`` (all 0 before ``start_step``).
        """
        zero = real_images.new_zeros((), dtype=torch.float32)
        if not self.is_active(step):
            return {"loss": zero, "hinge": zero, "lecam": zero, "logits_real": zero, "logits_fake": zero}
        logits_real = self.discriminator(real_images.detach())
        logits_fake = self.discriminator(fake_images.detach())
        hinge = hinge_d_loss(logits_real, logits_fake)
        lecam = zero
        if self.lecam_weight > 0:
            self.lecam.update(logits_real, logits_fake)
            lecam = self.lecam(logits_real, logits_fake)
        return {
            "loss": hinge + self.lecam_weight * lecam,
            "hinge": hinge,
            "lecam": lecam,
            "logits_real": logits_real.detach().float().mean(),
            "logits_fake": logits_fake.detach().float().mean(),
        }
