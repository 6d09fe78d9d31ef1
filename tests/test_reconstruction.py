"""Reconstruction objective: pixel losses in [0, 1] space, perceptual terms, PatchGAN, hinge, LeCam, adversarial
schedule (item 5; fidelity to PanqiYang1/MUSE muse/losses/muse_loss.py and muse/models/perceptual_loss.py)."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn
from transformers import ConvNextConfig, ConvNextForImageClassification, ConvNextModel

from muse_hf.objectives import (
    AdversarialLoss,
    LeCamEMA,
    LPIPSConvNeXtLoss,
    PatchDiscriminator,
    PerceptualLoss,
    ReconstructionLoss,
    adaptive_adversarial_weight,
    hinge_d_loss,
    hinge_g_loss,
    load_perceptual_loss,
)


def test_pixel_losses_weighted_sum():
    torch.manual_seed(0)
    a, b = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    out = ReconstructionLoss(l2_weight=2.0, l1_weight=0.5)(a, b)
    mse, l1 = ((a - b) ** 2).mean(), (a - b).abs().mean()
    torch.testing.assert_close(out["l2"], mse)
    torch.testing.assert_close(out["l1"], l1)
    torch.testing.assert_close(out["loss"], 2.0 * mse + 0.5 * l1)
    assert out["perceptual"].item() == 0.0
    assert ReconstructionLoss()(a, a)["loss"].item() == 0.0
    with pytest.raises(ValueError, match="same shape"):
        ReconstructionLoss()(a, b[:, :, :4])


def test_pixel_losses_are_computed_in_unit_range_as_released():
    """muse_loss.py:137-152: inputs un-normalised and clamped to [0, 1] before L2/L1. Known pair, hand values."""
    mean, std = (0.5, 0.4, 0.3), (0.25, 0.2, 0.1)
    m, s = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    target01 = torch.tensor([0.25, 0.3, 0.4]).view(1, 3, 1, 1).expand(2, 3, 4, 4)
    recon01 = torch.tensor([0.75, 0.5, 0.5]).view(1, 3, 1, 1).expand(2, 3, 4, 4)  # differences 0.5, 0.2, 0.1
    loss = ReconstructionLoss(l2_weight=1.0, l1_weight=0.0, input_mean=mean, input_std=std)
    out = loss((recon01 - m) / s, (target01 - m) / s)
    assert out["l2"].item() == pytest.approx((0.5**2 + 0.2**2 + 0.1**2) / 3, rel=1e-6)  # 0.1 (normalised space: 2.0)
    assert out["l1"].item() == pytest.approx((0.5 + 0.2 + 0.1) / 3, rel=1e-6)
    torch.testing.assert_close(out["loss"], out["l2"])
    torch.testing.assert_close(out["pixel"], out["l2"])
    # a reconstruction pushed past 1 is clamped (and gets no gradient there), as released
    over = ((torch.full((1, 3, 2, 2), 1.5) - m) / s).requires_grad_()
    value = loss(over, (torch.ones(1, 3, 2, 2) - m) / s)["l2"]
    assert value.item() == 0.0
    value.backward()
    assert over.grad.abs().sum().item() == 0.0
    torch.testing.assert_close(loss.to_unit_range(over.detach()), torch.ones(1, 3, 2, 2))


def test_perceptual_missing_weights_error_names_them(tmp_path):
    with pytest.raises(OSError) as err:
        ReconstructionLoss(perceptual_weight=1.0, local_files_only=True)
    message = str(err.value)
    assert "facebook/convnext-small-224" in message and "hf download" in message and "LPIPS" in message
    with pytest.raises(OSError, match="could not be loaded"):
        PerceptualLoss(tmp_path / "no-weights-here")


def test_perceptual_term_off_with_one_logged_line_when_networks_are_missing(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="muse_hf.objectives.reconstruction"):
        got = load_perceptual_loss(tmp_path / "missing-convnext", lpips="vgg", local_files_only=True)
    assert got is None
    records = [r for r in caplog.records if "Perceptual term OFF" in r.getMessage()]
    assert len(records) == 1 and "\n" not in records[0].getMessage()
    assert "missing-convnext" in records[0].getMessage()


class _StubLPIPS(nn.Module):
    """Stand-in for LPIPS (torchvision's VGG weights are not on this machine): per-image mean abs difference."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a - b).abs().mean(dim=(1, 2, 3), keepdim=True)  # (B, 1, 1, 1) like LPIPS


@pytest.fixture(scope="module")
def tiny_convnext_classifier(tmp_path_factory) -> str:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("convnext-cls")
    config = ConvNextConfig(hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1], num_labels=10)
    ConvNextForImageClassification(config).save_pretrained(path)
    return str(path)


def test_lpips_convnext_term_combines_as_released(tiny_convnext_classifier, tiny_convnext):
    """perceptual_loss.py:41-89: (1.0 * LPIPS + 0.1 * MSE(ConvNeXt logits)) / 1.1, logits at 224 px, ImageNet norm."""
    torch.manual_seed(2)
    term = LPIPSConvNeXtLoss(tiny_convnext_classifier, lpips=_StubLPIPS())
    assert (term.lpips_weight, term.convnext_weight) == (1.0, 0.1) and not term.convnext.training
    target = torch.rand(2, 3, 32, 32)
    pred = (target + 0.2 * torch.randn_like(target)).clamp(0, 1).requires_grad_()
    assert term(target, target).item() == pytest.approx(0.0, abs=1e-7)
    value = term(pred, target)
    net = ConvNextForImageClassification.from_pretrained(tiny_convnext_classifier).eval()

    def norm(x: torch.Tensor) -> torch.Tensor:
        x = torch.nn.functional.interpolate(x, size=224, mode="bilinear", align_corners=False, antialias=True)
        mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
        return (x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)

    with torch.no_grad():
        mse = torch.nn.functional.mse_loss(net(norm(pred)).logits, net(norm(target)).logits)
    expected = (1.0 * (pred - target).abs().mean() + 0.1 * mse) / 1.1
    torch.testing.assert_close(value, expected.detach(), rtol=1e-5, atol=1e-7)
    value.backward()
    assert pred.grad.abs().sum() > 0 and all(p.grad is None for p in term.parameters())
    # inside ReconstructionLoss the term sees the [0, 1] images and is weighted like the released perceptual_weight
    rec = ReconstructionLoss(l2_weight=1.0, l1_weight=0.0, perceptual_weight=1.1, perceptual_model=term)
    out = rec(pred.detach(), target)
    torch.testing.assert_close(out["loss"], out["l2"] + 1.1 * out["perceptual"])
    # a backbone without a trained classification head is refused (the released term compares ImageNet logits)
    with pytest.raises(OSError, match="classification head"):
        LPIPSConvNeXtLoss(tiny_convnext, lpips=None, lpips_weight=0.0)
    with pytest.raises(OSError, match="no LPIPS network"):
        LPIPSConvNeXtLoss(tiny_convnext_classifier, lpips=None)


@pytest.fixture(scope="module")
def tiny_convnext(tmp_path_factory) -> str:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("convnext")
    ConvNextModel(ConvNextConfig(hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1])).save_pretrained(path)
    return str(path)


def test_perceptual_term_with_a_saved_convnext(tiny_convnext):
    torch.manual_seed(1)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    loss_fn = ReconstructionLoss(
        perceptual_weight=2.0, perceptual_model=PerceptualLoss(tiny_convnext), input_mean=mean, input_std=std
    )
    assert loss_fn.perceptual is not None and not loss_fn.perceptual.model.training
    target = (torch.rand(2, 3, 32, 32) - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    assert loss_fn(target, target)["perceptual"].item() == pytest.approx(0.0, abs=1e-7)
    pred = (target + 0.5 * torch.randn_like(target)).requires_grad_()
    out = loss_fn(pred, target)
    assert out["perceptual"].item() > 0
    torch.testing.assert_close(out["loss"], out["l2"] + out["l1"] + 2.0 * out["perceptual"])
    out["loss"].backward()
    assert pred.grad.abs().sum() > 0
    assert all(p.grad is None for p in loss_fn.perceptual.parameters())
    # stage choice: only the last stage
    last = PerceptualLoss(tiny_convnext, layers=[-1])
    assert len(last._features(torch.rand(1, 3, 32, 32))) == 1


@pytest.mark.parametrize("spectral", [False, True])
def test_patch_discriminator_shapes_and_spectral_norm(spectral):
    torch.manual_seed(2)
    disc = PatchDiscriminator(base_channels=8, num_layers=2, spectral_norm=spectral)
    logits = disc(torch.randn(2, 3, 32, 32))
    assert logits.shape[:2] == (2, 1) and logits.shape[-1] > 1  # one logit per patch
    has_sn = any("parametrizations" in name for name, _ in disc.named_parameters())
    assert has_sn == spectral
    with pytest.raises(ValueError, match="norm"):
        PatchDiscriminator(norm="layer")


def test_hinge_losses_on_known_logits():
    real = torch.tensor([2.0, 0.5, -1.0])
    fake = torch.tensor([-2.0, 0.0, 1.0])
    # relu(1 - real) = [0, 0.5, 2] -> mean 5/6 ; relu(1 + fake) = [0, 1, 2] -> mean 1
    assert hinge_d_loss(real, fake).item() == pytest.approx(0.5 * (5 / 6 + 1.0))
    assert hinge_g_loss(fake).item() == pytest.approx(1 / 3)
    assert hinge_d_loss(torch.full((4,), 1.0), torch.full((4,), -1.0)).item() == 0.0


def test_lecam_decay_defaults_to_the_released_value():
    assert LeCamEMA().decay == 0.999  # muse_loss.py:66
    assert AdversarialLoss(PatchDiscriminator(base_channels=8, num_layers=1)).lecam.decay == 0.999


def test_lecam_zero_when_emas_match_and_positive_otherwise():
    lecam = LeCamEMA(decay=0.9)
    real, fake = torch.full((4,), 0.3), torch.full((4,), 0.3)
    lecam.update(real, fake)  # first update sets both EMAs to 0.3
    assert lecam.ema_real.item() == pytest.approx(0.3) and lecam.ema_fake.item() == pytest.approx(0.3)
    assert lecam(real, fake).item() == 0.0
    # real logits above the fake EMA and fake logits below the real EMA are penalised
    value = lecam(torch.full((4,), 1.3), torch.full((4,), -0.7)).item()
    assert value == pytest.approx(1.0**2 + 1.0**2)
    lecam.update(torch.full((4,), 1.3), torch.full((4,), -0.7))
    assert lecam.ema_real.item() == pytest.approx(0.9 * 0.3 + 0.1 * 1.3)


def test_adversarial_off_before_start_step_and_on_after():
    torch.manual_seed(3)
    adv = AdversarialLoss(
        PatchDiscriminator(base_channels=8, num_layers=2), start_step=10, weight=0.5, lecam_weight=0.1
    )
    real = torch.randn(2, 3, 32, 32)
    fake = torch.randn(2, 3, 32, 32, requires_grad=True)
    assert not adv.is_active(9) and adv.is_active(10)
    assert adv.generator_loss(fake, step=9).item() == 0.0
    assert adv.discriminator_loss(real, fake, step=9)["loss"].item() == 0.0
    assert not bool(adv.lecam.initialized)

    g = adv.generator_loss(fake, step=10)
    logits = adv.discriminator(fake)
    torch.testing.assert_close(g, 0.5 * hinge_g_loss(logits))
    g.backward()
    assert fake.grad.abs().sum() > 0
    assert all(p.grad is None for p in adv.discriminator.parameters())  # G step leaves D alone
    assert all(p.requires_grad for p in adv.discriminator.parameters())

    d = adv.discriminator_loss(real, fake, step=10)
    torch.testing.assert_close(d["loss"], d["hinge"] + 0.1 * d["lecam"])
    d["loss"].backward()
    assert all(p.grad is not None for p in adv.discriminator.parameters())
    assert bool(adv.lecam.initialized)


def test_adaptive_weight_follows_vqgan_rule():
    torch.manual_seed(4)
    decoder_last = nn.Conv2d(4, 3, 3, padding=1)
    fake = decoder_last(torch.randn(2, 4, 32, 32))
    rec = (fake - torch.rand(2, 3, 32, 32)).abs().mean()
    adv = AdversarialLoss(PatchDiscriminator(base_channels=8, num_layers=2), weight=0.1, adaptive=True)
    g_adaptive = adv.generator_loss(fake, step=0, reconstruction_loss=rec, last_layer=decoder_last.weight)
    g_plain = hinge_g_loss(adv.discriminator(fake))
    w = adaptive_adversarial_weight(rec, g_plain, decoder_last.weight)
    rec_grad = torch.autograd.grad(rec, decoder_last.weight, retain_graph=True)[0]
    gan_grad = torch.autograd.grad(g_plain, decoder_last.weight, retain_graph=True)[0]
    assert w.item() == pytest.approx((rec_grad.norm() / (gan_grad.norm() + 1e-4)).item(), rel=1e-5)
    torch.testing.assert_close(g_adaptive, 0.1 * w * g_plain)
    with pytest.raises(ValueError, match="last_layer"):
        adv.generator_loss(fake, step=0)
