"""Attention segmentation: cluster a tokenizer's attention rows and score them against instance masks.

Method (stated verbatim in every report, :data:`SEGMENTATION_METHOD`):

1. take the last topology block's attention ``(B, heads, N, N)`` and average the heads;
2. cluster the ``N`` attention rows of each image into ``k`` segments, ``k`` = number of regions in
   the ground-truth mask including background (k-means++ on rows, ``n_init=3``, fixed seed; or
   spectral clustering of the symmetrised attention);
3. upsample the ``(h, w)`` token labels to the mask resolution (nearest);
4. match clusters to ground-truth regions one-to-one with the Hungarian algorithm
   (``scipy.optimize.linear_sum_assignment``) maximising IoU;
5. mIoU = mean IoU over the ground-truth regions (an unmatched region scores 0); pixel accuracy =
   fraction of pixels whose matched cluster is their region. Both are averaged over images.
6. token mIoU: the same at the token grid. The ground truth is the mask reduced to the grid by majority
   vote (what the mask-affinity teacher sees), k = number of regions left on the grid, and clusters are
   scored against it cell by cell. Pixel mIoU is capped by objects smaller than a token cell; token mIoU
   measures how well the attention groups the tokens it can resolve.

The trivial floor runs steps 2-5 on per-token mean colour instead of attention rows.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from threadpoolctl import ThreadpoolController

from muse_hf.objectives.teachers import MaskAffinityTeacher

__all__ = [
    "SEGMENTATION_METHOD",
    "attention_segmentation",
    "cluster_rows",
    "colour_segmentation",
    "match_segments",
    "upsample_labels",
]

SEGMENTATION_METHOD = (
    "Attention segmentation: last topology block's attention (B, heads, N, N), heads averaged; the N attention "
    "rows of each image clustered into k segments (k = number of regions in the ground-truth instance mask incl. "
    "background; {method}, seed {seed}); token labels upsampled to the mask resolution (nearest); clusters matched "
    "one-to-one to ground-truth regions by the Hungarian algorithm (scipy linear_sum_assignment) on IoU; mIoU = mean "
    "IoU over ground-truth regions (unmatched regions score 0), pixel accuracy = fraction of pixels whose matched "
    "cluster is their region; both averaged over images. Floor: the same clustering on per-token mean colour. "
    "Ceiling: the structural teacher's own attention, segmented the same way (objects smaller than a token cell "
    "cannot be recovered at this grid, so the ceiling is below 1). Token mIoU: the same at the token grid, against "
    "the mask reduced to the grid by majority vote (k = regions left on the grid)."
)


@functools.cache
def _thread_pools() -> ThreadpoolController:
    """The loaded BLAS / OpenMP pools (scikit-learn's included), found once: ``threadpool_limits`` searches the
    process's libraries again on every call (~6 ms, as much as one clustering), once per image here."""
    import sklearn.cluster  # noqa: F401 - loads scikit-learn's OpenMP runtime before the search

    return ThreadpoolController()


def cluster_rows(features: torch.Tensor | np.ndarray, k: int, method: str = "kmeans", seed: int = 0) -> np.ndarray:
    """Cluster ``N`` row vectors into at most ``k`` segments, deterministically.

    Args:
        features: ``(N, d)`` rows (attention rows, or per-token colours). For ``"spectral"`` this must be
            a square ``(N, N)`` non-negative affinity (e.g. attention); it is symmetrised.
        k: Number of segments (clamped to the number of distinct rows).
        method: ``"kmeans"`` (k-means++ on the rows, best of ``n_init=3`` runs) or ``"spectral"``.
        seed: ``random_state`` of the clustering.

    Returns:
        ``(N,)`` int64 cluster labels in ``[0, k)``.
    """
    from sklearn.cluster import KMeans, SpectralClustering

    x = np.asarray(torch.as_tensor(features, dtype=torch.float64))
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"features must be a non-empty (N, d) array, got shape {x.shape}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    k_eff = min(k, len(np.unique(x.round(12), axis=0)))
    if k_eff == 1:
        return np.zeros(x.shape[0], dtype=np.int64)
    # one thread: for N <= a few thousand rows, BLAS threads only oversubscribe the CPU (6x slower measured)
    with warnings.catch_warnings(), _thread_pools().limit(limits=1):
        warnings.simplefilter("ignore")  # duplicate rows -> sklearn ConvergenceWarning; harmless here
        if method == "kmeans":
            labels = KMeans(n_clusters=k_eff, n_init=3, random_state=seed).fit_predict(x)
        elif method == "spectral":
            if x.shape[0] != x.shape[1] or (x < 0).any():
                raise ValueError("spectral clustering needs a square non-negative (N, N) affinity such as attention")
            affinity = 0.5 * (x + x.T)
            labels = SpectralClustering(
                n_clusters=k_eff, affinity="precomputed", random_state=seed, assign_labels="cluster_qr"
            ).fit_predict(affinity)
        else:
            raise ValueError(f"unknown clustering method {method!r}; use 'kmeans' or 'spectral'")
    return labels.astype(np.int64)


def upsample_labels(labels: np.ndarray | torch.Tensor, grid: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour upsampling of token labels ``(h*w,)`` on ``grid`` to a ``size`` label map.

    Returns:
        ``(H, W)`` int64 label map.
    """
    h, w = grid
    lab = torch.as_tensor(np.asarray(labels), dtype=torch.float32)
    if lab.numel() != h * w:
        raise ValueError(f"got {lab.numel()} token labels for a {h}x{w} grid")
    up = F.interpolate(lab.reshape(1, 1, h, w), size=tuple(size), mode="nearest")  # (1, 1, H, W)
    return up[0, 0].round().long().numpy()


def match_segments(pred: np.ndarray | torch.Tensor, gt: np.ndarray | torch.Tensor) -> dict[str, float]:
    """Hungarian matching of predicted segments to ground-truth regions, then mIoU and pixel accuracy.

    Args:
        pred: ``(H, W)`` integer predicted segment ids (any values).
        gt: ``(H, W)`` integer ground-truth region ids (background included as a region).

    Returns:
        ``{"miou", "pixel_accuracy", "num_regions"}``. mIoU averages over ground-truth regions; a region
        left without a cluster (more regions than clusters) scores IoU 0.
    """
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if pred.shape != gt.shape or pred.ndim != 2:
        raise ValueError(f"pred {pred.shape} and gt {gt.shape} must be (H, W) maps of the same shape")
    gt_ids, gt_idx = np.unique(gt, return_inverse=True)
    pr_ids, pr_idx = np.unique(pred, return_inverse=True)
    gt_idx, pr_idx = gt_idx.reshape(-1), pr_idx.reshape(-1)
    inter = np.zeros((len(gt_ids), len(pr_ids)), dtype=np.float64)  # (G, P)
    np.add.at(inter, (gt_idx, pr_idx), 1.0)
    gt_area = inter.sum(axis=1, keepdims=True)  # (G, 1)
    pr_area = inter.sum(axis=0, keepdims=True)  # (1, P)
    iou = inter / (gt_area + pr_area - inter)  # (G, P); union > 0 for every present id
    rows, cols = linear_sum_assignment(iou, maximize=True)
    miou = float(iou[rows, cols].sum() / len(gt_ids))
    pixel_accuracy = float(inter[rows, cols].sum() / gt.size)
    return {"miou": miou, "pixel_accuracy": pixel_accuracy, "num_regions": int(len(gt_ids))}


def _score_rows(
    rows: torch.Tensor, masks: torch.Tensor, grid: tuple[int, int], method: str, seed: int
) -> dict[str, list[float]]:
    """Cluster each image's token rows ``(B, N, d)`` with k from its mask ``(B, H, W)`` and score."""
    masks = torch.as_tensor(masks)
    if masks.ndim != 3 or masks.shape[0] != rows.shape[0]:
        raise ValueError(f"masks must be (B, H, W) with B = {rows.shape[0]}, got {tuple(masks.shape)}")
    if rows.shape[1] != grid[0] * grid[1]:
        raise ValueError(f"{rows.shape[1]} tokens do not fit grid {grid}")
    grid_gt = MaskAffinityTeacher.grid_labels(masks.long(), grid).numpy()  # (B, N) majority-vote ids
    out: dict[str, list[float]] = {"miou": [], "pixel_accuracy": [], "token_miou": []}
    for i in range(rows.shape[0]):
        gt = masks[i].long().numpy()
        k = len(np.unique(gt))
        labels = cluster_rows(rows[i], k, method=method, seed=seed)  # (N,)
        scores = match_segments(upsample_labels(labels, grid, gt.shape), gt)
        out["miou"].append(scores["miou"])
        out["pixel_accuracy"].append(scores["pixel_accuracy"])
        tok_gt = grid_gt[i].reshape(grid)  # (h, w)
        k_tok = len(np.unique(tok_gt))
        tok_labels = labels if k_tok == k else cluster_rows(rows[i], k_tok, method=method, seed=seed)
        out["token_miou"].append(match_segments(np.asarray(tok_labels).reshape(grid), tok_gt)["miou"])
    return out


def attention_segmentation(
    attention: torch.Tensor, masks: torch.Tensor, grid: tuple[int, int], method: str = "kmeans", seed: int = 0
) -> dict[str, list[float]]:
    """Per-image mIoU and pixel accuracy of clustered attention rows (see module docstring).

    Args:
        attention: ``(B, heads, N, N)`` or ``(B, N, N)`` attention of the last topology block.
        masks: ``(B, H, W)`` integer instance masks (0 = background).
        grid: Token grid ``(h, w)`` with ``h * w = N``.
        method: ``"kmeans"`` or ``"spectral"``.
        seed: Clustering seed.

    Returns:
        ``{"miou": [B floats], "pixel_accuracy": [B floats], "token_miou": [B floats]}``.
    """
    attention = torch.as_tensor(attention).detach().float().cpu()
    if attention.ndim == 4:
        attention = attention.mean(dim=1)  # (B, N, N)
    if attention.ndim != 3 or attention.shape[-1] != attention.shape[-2]:
        raise ValueError(f"attention must be (B, heads, N, N) or (B, N, N), got {tuple(attention.shape)}")
    return _score_rows(attention, masks, grid, method, seed)


def colour_segmentation(
    images: torch.Tensor, masks: torch.Tensor, grid: tuple[int, int], seed: int = 0
) -> dict[str, list[float]]:
    """Trivial floor: k-means on per-token mean colour, scored like :func:`attention_segmentation`.

    Args:
        images: ``(B, 3, H, W)`` in ``[0, 1]``.
        masks: ``(B, H, W)`` integer instance masks.
        grid: Token grid ``(h, w)``.
        seed: Clustering seed.

    Returns:
        ``{"miou": [B floats], "pixel_accuracy": [B floats]}``.
    """
    images = torch.as_tensor(images).detach().float().cpu()
    if images.ndim != 4:
        raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
    colours = F.adaptive_avg_pool2d(images, grid)  # (B, 3, h, w)
    rows = colours.flatten(2).transpose(1, 2)  # (B, N, 3)
    return _score_rows(rows, masks, grid, "kmeans", seed)
