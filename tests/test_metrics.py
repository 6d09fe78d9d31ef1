"""Metric functions against hand-computed cases (muse_hf.evaluation.metrics / .segmentation)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from muse_hf.evaluation.metrics import (
    PSNR_CAP_DB,
    RFIDAccumulator,
    bicubic_roundtrip,
    frechet_distance,
    linear_probe_accuracy,
    majority_class_accuracy,
    psnr,
    ssim,
    zero_shot_accuracy,
    zero_shot_predict,
)
from muse_hf.evaluation.segmentation import (
    attention_segmentation,
    cluster_rows,
    colour_segmentation,
    match_segments,
    upsample_labels,
)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def test_psnr_identical_is_capped_and_ssim_is_one() -> None:
    x = torch.rand(3, 3, 32, 32)
    assert torch.equal(psnr(x, x.clone()), torch.full((3,), PSNR_CAP_DB))
    assert torch.allclose(ssim(x, x.clone()), torch.ones(3), atol=1e-6)


def test_psnr_matches_hand_computation() -> None:
    x = torch.full((1, 3, 8, 8), 0.5)
    y = x + 0.1  # MSE = 0.01 -> PSNR = 10 log10(1 / 0.01) = 20 dB
    assert psnr(y, x).item() == pytest.approx(20.0, abs=1e-4)
    z = x.clone()
    z[..., :4, :] += 0.2  # half the pixels off by 0.2 -> MSE 0.02
    assert psnr(z, x).item() == pytest.approx(10 * math.log10(1 / 0.02), abs=1e-4)
    # a perturbed image is strictly below 1 in SSIM
    assert ssim(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)).item() < 0.5


def test_image_validation_errors() -> None:
    x = torch.rand(1, 3, 8, 8)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        psnr(x * 2, x)
    with pytest.raises(ValueError, match="same shape"):
        ssim(x, torch.rand(1, 3, 8, 9))
    with pytest.raises(ValueError, match="NaN"):
        psnr(torch.full_like(x, float("nan")), x)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        psnr(x[0], x[0])


def test_bicubic_roundtrip_is_lossless_on_constant_and_lossy_on_noise() -> None:
    const = torch.full((2, 3, 32, 32), 0.3)
    assert torch.allclose(bicubic_roundtrip(const, (8, 8)), const, atol=1e-5)
    noise = torch.rand(2, 3, 32, 32)
    out = bicubic_roundtrip(noise, (8, 8))
    assert out.shape == noise.shape and out.min() >= 0 and out.max() <= 1
    assert psnr(out, noise).max() < 20.0


def test_rfid_unavailable_without_weights_says_why() -> None:
    acc = RFIDAccumulator(weights_path=None)
    x = torch.rand(4, 3, 16, 16)
    acc.update(x, x)
    res = acc.result()
    assert res["value"] is None and res["status"] == "unavailable"
    assert "weights" in res["reason"] and res["num_samples"] == 4
    missing = RFIDAccumulator(weights_path="/nonexistent/inception.pth").result()
    assert missing["value"] is None and "/nonexistent/inception.pth" in missing["reason"]


def test_fid_with_custom_features_is_zero_on_identical_sets() -> None:
    class MeanColour(nn.Module):
        num_features = 3

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.float().mean(dim=(2, 3))  # (B, 3)

    real = torch.rand(16, 3, 8, 8)
    same = RFIDAccumulator(feature=MeanColour())
    same.update(real, real.clone())
    res = same.result()
    assert res["status"] == "ok" and res["feature"] == "custom:MeanColour"
    assert abs(res["value"]) < 1e-6
    shifted = RFIDAccumulator(feature=MeanColour())
    shifted.update(real, (real * 0.5).clamp(0, 1))
    # mean colour halves: FID >= squared mean shift summed over channels
    shift = ((real.mean(dim=(2, 3)) * 0.5).mean(0) ** 2).sum().item()
    assert shifted.result()["value"] >= shift * 0.99


def test_frechet_distance_matches_the_matrix_square_root_formula() -> None:
    """Both routes (few samples: singular values of A B^T; many: the symmetric root) give the textbook value
    |mu1 - mu2|^2 + tr S1 + tr S2 - 2 tr sqrt(S1 S2), here from scipy's sqrtm on well-conditioned covariances and
    from the eigenvalues of S1^(1/2) S2 S1^(1/2) on rank-deficient ones."""
    import scipy.linalg

    rng = np.random.default_rng(0)

    def reference(f1: np.ndarray, f2: np.ndarray, singular: bool) -> float:
        mu1, mu2, s1, s2 = f1.mean(0), f2.mean(0), np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
        if singular:  # sqrtm is unreliable on singular products; S1^(1/2) S2 S1^(1/2) is symmetric PSD
            w, v = np.linalg.eigh(s1)
            root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
            trace = np.sqrt(np.clip(np.linalg.eigvalsh(root @ s2 @ root), 0, None)).sum()
        else:
            trace = np.trace(scipy.linalg.sqrtm(s1 @ s2)).real
        return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * trace)

    for n, m, singular in ((40, 50, False), (5, 7, True)):  # d = 8 features
        f1 = rng.normal(size=(n, 8))
        f2 = 0.7 * rng.normal(size=(m, 8)) + 0.5
        value = frechet_distance(torch.from_numpy(f1), torch.from_numpy(f2))
        assert value == pytest.approx(reference(f1, f2, singular), rel=1e-7)
        assert frechet_distance(torch.from_numpy(f1), torch.from_numpy(f1)) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="N >= 2"):
        frechet_distance(torch.zeros(1, 8), torch.zeros(4, 8))


def test_zero_shot_on_constructed_embeddings() -> None:
    text = torch.eye(3, 4)  # class k = axis k
    images = torch.tensor([[5.0, 0.1, 0, 0], [0, 2.0, 0.5, 0], [0.2, 0, 0.9, 0], [0, 3.0, 0, 0]])
    assert zero_shot_predict(images, text).tolist() == [0, 1, 2, 1]
    assert zero_shot_accuracy(images, text, [0, 1, 2, 1]) == 1.0
    assert zero_shot_accuracy(images, text, [0, 1, 2, 2]) == 0.75
    with pytest.raises(ValueError, match="semantic_dim"):
        zero_shot_predict(images, torch.eye(3, 5))
    with pytest.raises(ValueError, match="labels must lie"):
        zero_shot_accuracy(images, text, [0, 1, 2, 3])
    assert majority_class_accuracy([0, 1, 1, 1]) == 0.75


def test_linear_probe_separable_toy_set_is_perfect() -> None:
    rng = np.random.default_rng(0)
    centres = np.array([[4.0, 0, 0], [0, 4.0, 0], [0, 0, 4.0]])
    labels = np.repeat(np.arange(3), 20)
    feats = centres[labels] + rng.normal(scale=0.3, size=(60, 3))
    res = linear_probe_accuracy(feats, labels, seed=0)
    assert res["accuracy"] == 1.0 and res["num_train"] + res["num_test"] == 60
    # random labels are not separable: held-out accuracy falls far below 1
    noise = linear_probe_accuracy(rng.normal(size=(60, 3)), rng.integers(0, 3, 60), seed=0)
    assert noise["accuracy"] < 0.8
    with pytest.raises(ValueError, match="labels"):
        linear_probe_accuracy(feats, labels[:10])


def test_linear_probe_fits_on_train_and_scores_the_test_set() -> None:
    """The paper's protocol: fit on every training row, score on a separate set (not a split of the first)."""
    rng = np.random.default_rng(0)
    centres = np.array([[4.0, 0, 0], [0, 4.0, 0], [0, 0, 4.0]])
    train_y = np.repeat(np.arange(3), 20)
    train_x = centres[train_y] + rng.normal(scale=0.3, size=(60, 3))
    test_y = np.repeat(np.arange(3), 5)
    test_x = centres[test_y] + rng.normal(scale=0.3, size=(15, 3))
    res = linear_probe_accuracy(train_x, train_y, test_features=test_x, test_labels=test_y)
    assert res == {"accuracy": 1.0, "train_accuracy": 1.0, "num_train": 60, "num_test": 15}
    # the test set really is what is scored: relabelled test rows (class k -> k+1) score 0, a split of train scores 1
    shifted = linear_probe_accuracy(train_x, train_y, test_features=test_x, test_labels=(test_y + 1) % 3)
    assert shifted["accuracy"] == 0.0 and linear_probe_accuracy(train_x, train_y)["accuracy"] == 1.0
    with pytest.raises(ValueError, match="together"):
        linear_probe_accuracy(train_x, train_y, test_features=test_x)
    with pytest.raises(ValueError, match="4-d but the training features are 3-d"):
        linear_probe_accuracy(train_x, train_y, test_features=np.zeros((2, 4)), test_labels=[0, 1])
    with pytest.raises(ValueError, match="single class"):
        linear_probe_accuracy(train_x[:20], train_y[:20], test_features=test_x, test_labels=test_y)


def test_rfid_shares_the_reference_features() -> None:
    """Floors that see the same reference images reuse the model's real-image statistics: same value, one pass."""

    class CountingMeanColour(nn.Module):
        num_features = 3

        def __init__(self) -> None:
            super().__init__()
            self.images_seen = 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.images_seen += x.shape[0]
            return x.float().mean(dim=(2, 3))  # (B, 3)

    real = torch.rand(12, 3, 8, 8)
    fake = (real * 0.5).clamp(0, 1)
    feature = CountingMeanColour()
    model = RFIDAccumulator(feature=feature)
    floor = RFIDAccumulator(real_from=model)
    for start in (0, 6):  # two batches
        model.update(real[start : start + 6], real[start : start + 6])
        floor.update(real[start : start + 6], fake[start : start + 6])
    assert feature.images_seen == 12 + 12 + 12  # reference once, the model's and the floor's reconstructions
    alone = RFIDAccumulator(feature=CountingMeanColour())
    alone.update(real, fake)
    shared = floor.result()
    assert shared["status"] == "ok" and shared["feature"] == "custom:CountingMeanColour"
    assert shared["value"] == pytest.approx(alone.result()["value"], rel=1e-9, abs=1e-12)
    assert abs(model.result()["value"]) < 1e-6  # the source's own result is untouched by the sharing
    # a floor that saw other images than its source is refused with the reason
    short = RFIDAccumulator(real_from=model)
    short.update(real[:4], fake[:4])
    res = short.result()
    assert res["value"] is None and "12 reference images but this accumulator 4" in res["reason"]
    # an unavailable source makes the floor unavailable, saying why
    blind = RFIDAccumulator(real_from=RFIDAccumulator(weights_path=None))
    assert not blind.available and "unavailable accumulator" in blind.result()["reason"]


def test_match_segments_known_iou() -> None:
    gt = np.zeros((4, 4), dtype=int)
    gt[:2, :2] = 1  # object: 4 px
    pred = np.zeros((4, 4), dtype=int)
    pred[:2, :3] = 7  # predicted object: 6 px covering the 4
    # object IoU = 4 / 6; background IoU = 10 / 12; mIoU = (2/3 + 5/6) / 2 = 0.75; pixel acc = 14 / 16
    res = match_segments(pred, gt)
    assert res["miou"] == pytest.approx(0.75)
    assert res["pixel_accuracy"] == pytest.approx(14 / 16)
    # cluster ids are arbitrary: a permutation scores the same; fewer clusters than regions scores 0 for the rest
    assert match_segments(np.where(gt == 1, 0, 3), gt)["miou"] == 1.0
    assert match_segments(np.zeros_like(gt), gt)["miou"] == pytest.approx((12 / 16) / 2)


def _block_masks() -> torch.Tensor:
    masks = torch.zeros(2, 32, 32, dtype=torch.long)
    masks[:, 8:24, 4:16] = 1
    masks[1, 20:28, 20:28] = 2
    return masks


def _mask_attention(masks: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    lab = F.interpolate(masks[:, None].float(), size=grid, mode="nearest")[:, 0].long().flatten(1)  # (B, N)
    attn = (lab[:, :, None] == lab[:, None, :]).float()  # (B, N, N)
    return (attn / attn.sum(-1, keepdim=True))[:, None].repeat(1, 2, 1, 1)  # (B, 2, N, N)


@pytest.mark.parametrize("method", ["kmeans", "spectral"])
def test_attention_segmentation_recovers_mask_affinity(method: str) -> None:
    masks, grid = _block_masks(), (8, 8)
    res = attention_segmentation(_mask_attention(masks, grid), masks, grid, method=method, seed=0)
    assert res["miou"] == [1.0, 1.0] and res["pixel_accuracy"] == [1.0, 1.0]
    uniform = torch.full((2, 1, 64, 64), 1 / 64)  # degenerate attention: one segment only
    flat = attention_segmentation(uniform, masks, grid, method=method)
    assert max(flat["miou"]) < 0.8


def test_colour_floor_and_helpers() -> None:
    masks, grid = _block_masks(), (8, 8)
    images = torch.full((2, 3, 32, 32), 0.2)
    images[:, 0][masks == 1] = 0.9
    images[:, 1][masks == 2] = 0.9
    assert colour_segmentation(images, masks, grid)["miou"] == [1.0, 1.0]
    same_colour = torch.full((2, 3, 32, 32), 0.2)  # colour gives nothing away
    assert max(colour_segmentation(same_colour, masks, grid)["miou"]) < 0.8
    assert upsample_labels(np.arange(4), (2, 2), (4, 4)).tolist()[0] == [0, 0, 1, 1]
    labels = cluster_rows(np.array([[0.0], [0.0], [5.0], [5.1]]), k=2, seed=0)
    assert labels[0] == labels[1] != labels[2] == labels[3]
    with pytest.raises(ValueError, match="unknown clustering"):
        cluster_rows(np.eye(4), 2, method="dbscan")


def test_token_miou_scores_at_the_grid_where_small_objects_vanish() -> None:
    """A 1-pixel object is lost at the token grid: pixel mIoU pays for it, token mIoU does not."""
    masks = torch.zeros(1, 32, 32, dtype=torch.long)
    masks[0, :, 16:] = 1  # right half: object 1
    masks[0, 5, 5] = 2  # a single pixel: smaller than a 4x4 token cell, gone after the majority vote
    grid = (8, 8)
    res = attention_segmentation(_mask_attention(masks, grid), masks, grid, method="kmeans", seed=0)
    assert res["token_miou"] == [1.0]
    assert res["miou"][0] < 0.7  # the 1-pixel region scores IoU 0 among 3 regions
