"""Gradient tools (issue 3, items 6-8): gradient scale, spectral filter, conflict probe, soft-routing penalty."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import muse_hf.models.grad_ops as grad_ops
from muse_hf.objectives import (
    GradientScale,
    MaskAffinityTeacher,
    SpectralGradientFilter,
    default_param_groups,
    gradient_conflict,
    shared_block_parameters,
    soft_routing_penalty,
    topology_alignment_loss,
)
from muse_hf.objectives import gradients as gradients_module


def test_reexports_are_the_model_ops():
    assert GradientScale is grad_ops.GradientScale is gradients_module.GradientScale
    assert SpectralGradientFilter is grad_ops.SpectralGradientFilter


# ------------------------------------------------------------------ gradient scale


@pytest.mark.parametrize("batch", [1, 4])
def test_gradient_scale_halves_exactly(batch):
    x = torch.randn(batch, 8, 4, 4, requires_grad=True)
    upstream = torch.randn(batch, 8, 4, 4)
    y = GradientScale(0.5)(x)
    assert torch.equal(y, x)
    (y * upstream).sum().backward()
    assert torch.equal(x.grad, upstream / 2)


def test_gradient_scale_under_autocast():
    layer = nn.Linear(6, 6)
    x = torch.randn(1, 6)
    grads = {}
    for lam in (1.0, 0.5):
        layer.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            h = GradientScale(lam)(layer(x))
            assert h.dtype == torch.bfloat16
            h.float().pow(2).sum().backward()
        grads[lam] = layer.weight.grad.clone()
    assert torch.equal(grads[0.5], grads[1.0] / 2)  # halving is exact in any binary float format


# ------------------------------------------------------------------ spectral filter


def _high_frequency_mask_full(h: int, w: int, cutoff: float) -> torch.Tensor:
    """Independent construction over the *full* fft2 spectrum: radius in units of the Nyquist frequency."""
    fy, fx = np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij")
    return torch.from_numpy(np.sqrt(fy**2 + fx**2) / 0.5 > cutoff)


def _filtered_grad(x: torch.Tensor, upstream: torch.Tensor, alpha: float, cutoff: float) -> torch.Tensor:
    x = x.clone().requires_grad_()
    y = SpectralGradientFilter(alpha=alpha, cutoff=cutoff)(x)
    assert torch.equal(y, x)  # identity forward
    (y * upstream).sum().backward()
    return x.grad


@pytest.mark.parametrize("shape", [(1, 3, 8, 8), (2, 4, 6, 10), (1, 2, 7, 5)])
def test_spectral_filter_alpha_one_identity_alpha_zero_removes_high_frequencies(shape):
    torch.manual_seed(0)
    x = torch.randn(shape, dtype=torch.float64)
    upstream = torch.randn(shape, dtype=torch.float64)
    assert torch.equal(_filtered_grad(x, upstream, 1.0, 0.5), upstream)
    grad = _filtered_grad(x, upstream, 0.0, 0.5)
    mask = _high_frequency_mask_full(shape[-2], shape[-1], 0.5)
    assert mask.any() and (~mask).any()
    spec, spec_up = torch.fft.fft2(grad), torch.fft.fft2(upstream)
    assert spec[..., mask].abs().max() < 1e-4  # every frequency above the cutoff removed
    torch.testing.assert_close(spec[..., ~mask], spec_up[..., ~mask], atol=1e-4, rtol=1e-4)  # the rest intact
    assert grad.dtype == upstream.dtype


def test_spectral_filter_partial_alpha_scales_energy():
    torch.manual_seed(1)
    x, upstream = torch.randn(1, 2, 8, 8), torch.randn(1, 2, 8, 8)
    grad = _filtered_grad(x, upstream, 0.1, 0.5)
    mask = _high_frequency_mask_full(8, 8, 0.5)
    ratio = torch.fft.fft2(grad)[..., mask].abs() / torch.fft.fft2(upstream)[..., mask].abs()
    torch.testing.assert_close(ratio, torch.full_like(ratio, 0.1), atol=1e-4, rtol=1e-3)


def test_spectral_filter_under_autocast_batch_one():
    torch.manual_seed(2)
    conv = nn.Conv2d(3, 4, 3, padding=1)
    x = torch.randn(1, 3, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv(x)
        assert y.dtype == torch.bfloat16
        y.retain_grad()
        z = SpectralGradientFilter(alpha=0.0, cutoff=0.5)(y)
        z.float().sum().backward()  # constant upstream gradient: pure DC, nothing to remove
    assert y.grad.dtype == torch.bfloat16
    torch.testing.assert_close(y.grad.float(), torch.ones(1, 4, 8, 8), atol=1e-2, rtol=0)
    assert torch.isfinite(conv.weight.grad).all()


# ------------------------------------------------------------------ conflict probe on a toy module


class _Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 4)


def test_gradient_conflict_on_toy_module_matches_manual_cosines():
    torch.manual_seed(3)
    model = _Toy()
    x = torch.randn(5, 4)
    h = model.a(x)
    losses = {"first": h.pow(2).mean(), "second": model.b(h).sin().sum(), "third": (h * 3).sum()}
    groups = {"a": list(model.a.parameters()), "b": list(model.b.parameters())}
    result = gradient_conflict(model, losses, groups)
    assert all(p.grad is None for p in model.parameters())  # nothing accumulated

    def flat(loss, params):
        return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params, retain_graph=True)])

    ga1, ga2 = flat(losses["first"], groups["a"]), flat(losses["second"], groups["a"])
    expected = float(ga1 @ ga2 / (ga1.norm() * ga2.norm()))
    assert result.cosine["a"][("first", "second")] == pytest.approx(expected, rel=1e-5)
    # "first" never reaches b: cosine defined as 0 there, and its share of the group is 0
    assert result.cosine["b"][("first", "second")] == 0.0
    assert result.objective_share["b"]["first"] == 0.0
    assert result.group_share["a"]["first"] == pytest.approx(1.0)
    gb2 = flat(losses["second"], groups["b"])
    share = ga2.norm() ** 2 / (ga2.norm() ** 2 + gb2.norm() ** 2)
    assert result.group_share["a"]["second"] == pytest.approx(float(share), rel=1e-5)
    assert sum(result.objective_share["a"].values()) == pytest.approx(1.0)
    assert set(result.cosine["a"]) == {("first", "second"), ("first", "third"), ("second", "third")}
    assert "| group |" in result.to_markdown() and "first|second" in str(result.to_dict())


def test_gradient_conflict_validates_inputs():
    model = _Toy()
    loss = model.a(torch.randn(2, 4)).sum()
    with pytest.raises(ValueError, match="two losses"):
        gradient_conflict(model, {"only": loss})
    model.b.requires_grad_(False)
    with pytest.raises(ValueError, match=r"\['b'\]"):
        gradient_conflict(
            model, {"x": loss, "y": loss}, {"a": list(model.a.parameters()), "b": list(model.b.parameters())}
        )
    # default for a non-MUSE model: one group with every parameter
    result = gradient_conflict(model, {"x": loss, "y": 2 * loss})
    assert result.cosine["all"][("x", "y")] == pytest.approx(1.0, rel=1e-6)


# ------------------------------------------------------------------ soft routing penalty


def test_soft_routing_penalty_value_and_differentiability():
    torch.manual_seed(4)
    model = _Toy()
    x = torch.randn(8, 4)
    params = list(model.parameters())

    def losses():
        out = model.b(torch.tanh(model.a(x)))
        return out[:, :2].pow(2).mean(), (out[:, 1:] - 1).pow(2).mean()

    la, lb = losses()
    penalty = soft_routing_penalty(params, la, lb, weight=0.3)
    ga = torch.cat([g.reshape(-1) for g in torch.autograd.grad(la, params, retain_graph=True)])
    gb = torch.cat([g.reshape(-1) for g in torch.autograd.grad(lb, params, retain_graph=True)])
    cos = float(ga @ gb / (ga.norm() * gb.norm()))
    assert abs(cos) > 0.05
    assert penalty.item() == pytest.approx(0.3 * cos**2, rel=1e-5)
    penalty.backward()
    assert all(torch.isfinite(p.grad).all() for p in params)
    assert sum(float(p.grad.abs().sum()) for p in params) > 0
    # descending on the penalty alone makes the two gradients more orthogonal
    opt = torch.optim.SGD(params, lr=0.5)
    before = penalty.item()
    for _ in range(20):
        opt.zero_grad()
        soft_routing_penalty(params, *losses(), weight=0.3).backward()
        opt.step()
    assert soft_routing_penalty(params, *losses(), weight=0.3).item() < before
    assert soft_routing_penalty(params, *losses(), weight=0.0).item() == 0.0


def test_soft_routing_penalty_zero_gradient_is_finite():
    model = _Toy()
    la = model.a(torch.randn(2, 4)).tanh().sum()
    lb = model.b(torch.randn(2, 4)).tanh().sum()  # does not reach model.a: a zero gradient there
    penalty = soft_routing_penalty(model.a.parameters(), la, lb)
    assert penalty.item() == 0.0
    (penalty + la + lb).backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())


# ------------------------------------------------------------------ the probe on a tiny MuseTokenizerModel


def _muse_losses(model, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    size = model.config.image_size
    pixels = torch.randn(2, 3, size, size, generator=g)
    masks = torch.randint(0, 3, (2, size, size), generator=g)
    out = model(pixels, output_attentions=True, output_semantic=True)
    grid = out.latents.shape[-2:]
    teacher = MaskAffinityTeacher()(masks, grid)
    text = torch.randn(2, model.config.semantic_dim, generator=g)
    return {
        "topology": topology_alignment_loss(out.attentions, teacher),
        "reconstruction": (out.sample - pixels).pow(2).mean() + (out.sample - pixels).abs().mean(),
        "semantic": -torch.nn.functional.cosine_similarity(out.semantic_embeds, text).mean(),
    }


def test_default_param_groups_by_name(tiny_config):
    from muse_hf.models import MuseTokenizerModel

    model = MuseTokenizerModel(tiny_config(routing="decoupled"))
    groups = default_param_groups(model)
    assert set(groups) == {"topology", "values", "mlp", "adapter"}
    names = {id(p): n for n, p in model.named_parameters()}
    for group, keys in {
        "topology": ("q_topo", "k_topo", "q_norm", "k_norm"),
        "values": ("v_sem", "v_itc", "o_proj"),
        "mlp": (".mlp.",),
        "adapter": ("adapter.",),
    }.items():
        assert groups[group] and all(any(k in names[id(p)] for k in keys) for p in groups[group])
    assert any("v_itc" in names[id(p)] for p in groups["values"])
    block_params = {id(p) for p in shared_block_parameters(model)}
    assert block_params == {id(p) for p in model.blocks.parameters()}


def test_probe_decoupled_zero_and_shared_nonzero(tiny_config):
    from muse_hf.models import MuseTokenizerModel

    results = {}
    for routing, detach in (("decoupled", True), ("decoupled", False), ("shared", False)):
        torch.manual_seed(0)
        model = MuseTokenizerModel(tiny_config(routing=routing, detach_topology_input=detach))
        results[(routing, detach)] = gradient_conflict(model, _muse_losses(model))
    dec, released, shared = results[("decoupled", True)], results[("decoupled", False)], results[("shared", False)]
    # released routing: A is detached where it mixes the values, so reconstruction and semantics never reach the
    # topology projections; but block 1's topology loss reaches block 0's values through its input (per-block zeros)
    assert released.norms["topology"]["reconstruction"] == 0.0 and released.norms["topology"]["semantic"] == 0.0
    assert released.norms["values"]["topology"] > 0
    # stricter variant (detach_topology_input): the topology loss never reaches the values in any block
    assert dec.norms["values"]["topology"] == 0.0
    assert dec.cosine["values"][("topology", "reconstruction")] == 0.0
    assert dec.norms["topology"]["reconstruction"] == 0.0 and dec.norms["topology"]["semantic"] == 0.0
    assert dec.cosine["topology"][("topology", "reconstruction")] == 0.0
    assert dec.norms["values"]["reconstruction"] > 0 and dec.group_share["topology"]["topology"] == pytest.approx(1.0)
    # shared: the same losses interfere on the values
    assert shared.norms["values"]["topology"] > 0
    assert abs(shared.cosine["values"][("topology", "reconstruction")]) > 1e-6
    assert shared.cos("mlp", "semantic", "reconstruction") == shared.cosine["mlp"][("reconstruction", "semantic")]
    assert not math.isnan(shared.cos("mlp", "semantic", "reconstruction"))


def test_soft_penalty_trains_through_a_tiny_soft_model(tiny_config):
    from muse_hf.models import MuseTokenizerModel

    model = MuseTokenizerModel(tiny_config(routing="soft"))
    losses = _muse_losses(model)  # output_attentions=True: eager attention, double backward available
    params = shared_block_parameters(model)
    penalty = soft_routing_penalty(params, losses["semantic"], losses["reconstruction"], weight=0.1)
    cos = gradient_conflict(model, losses, {"blocks": params}).cos("blocks", "semantic", "reconstruction")
    assert penalty.item() == pytest.approx(0.1 * cos**2, rel=1e-4, abs=1e-12)
    (losses["semantic"] + losses["reconstruction"] + penalty).backward()
    assert all(torch.isfinite(p.grad).all() for p in params if p.grad is not None)


# ------------------------------------------------------------------ the three probe pairs (paper + released hook)
def test_block_probe_returns_all_three_pairs_finite(tiny_config):
    """cos(semantic, reconstruction) (Table 4), cos(reconstruction, topology) (released stage-1 hook) and
    cos(semantic, topology) (released stages 2-3 hook), on the synergistic blocks' parameters."""
    from muse_hf.models import MuseTokenizerModel
    from muse_hf.objectives import PROBE_PAIRS, block_gradient_cosines

    torch.manual_seed(0)
    model = MuseTokenizerModel(tiny_config(routing="shared"))
    losses = _muse_losses(model)
    pairs = block_gradient_cosines(model, losses)
    assert (
        list(pairs)
        == [f"{a}|{b}" for a, b in PROBE_PAIRS]
        == [
            "semantic|reconstruction",
            "reconstruction|topology",
            "semantic|topology",
        ]
    )
    assert all(v is not None and math.isfinite(v) and -1.0 <= v <= 1.0 for v in pairs.values())
    params = shared_block_parameters(model)
    manual = gradient_conflict(model, losses, {"b": params}).cos("b", "reconstruction", "topology")
    assert pairs["reconstruction|topology"] == pytest.approx(manual)
    # stage 1 (no semantic loss): the released stage-1 pair only
    stage1 = block_gradient_cosines(model, {k: losses[k] for k in ("reconstruction", "topology")})
    assert stage1["semantic|reconstruction"] is None and stage1["semantic|topology"] is None
    assert math.isfinite(stage1["reconstruction|topology"])


def test_evaluation_probe_reports_the_three_pairs(tiny_config):
    from muse_hf.evaluation.evaluate import gradient_probe
    from muse_hf.models import MuseImageProcessor, MuseTokenizerModel

    class _Text:
        dim = 16

        def embed(self, captions):
            g = torch.Generator().manual_seed(len(captions))
            return torch.randn(len(captions), self.dim, generator=g)

    torch.manual_seed(0)
    model = MuseTokenizerModel(tiny_config(routing="decoupled"))
    g = torch.Generator().manual_seed(5)
    batch = {
        "pixel_values": torch.randn(3, 3, 32, 32, generator=g),
        "caption": ["a red square", "a blue circle", "two shapes"],
        "mask": torch.randint(0, 3, (3, 32, 32), generator=g),
    }
    full, headline, why = gradient_probe(
        model, batch, _Text(), MaskAffinityTeacher(), MuseImageProcessor(), topology_head_reduction="mean"
    )
    assert why is None and full["headline_group"] == "shared_blocks"
    assert set(full["pairs"]) == {"semantic|reconstruction", "reconstruction|topology", "semantic|topology"}
    assert all(v is not None and math.isfinite(v) for v in full["pairs"].values())
    assert headline == full["pairs"]["semantic|reconstruction"]
    # without a text embedder the stage-1 pair is still measured; the headline is missing with its reason
    full1, headline1, why1 = gradient_probe(model, batch, None, MaskAffinityTeacher(), MuseImageProcessor())
    assert headline1 is None and "no semantic loss" in why1
    assert math.isfinite(full1["pairs"]["reconstruction|topology"]) and full1["pairs"]["semantic|topology"] is None
