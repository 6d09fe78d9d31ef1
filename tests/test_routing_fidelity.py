"""Fidelity to the authors' released code (PanqiYang1/MUSE): topology-stream routing and the gradient scale's place.

* Routing (``muse/models/muse_vit.py:172-196``): q_topo/k_topo read ``norm1(x)`` with gradient; only the attention
  map that mixes the values is detached. ``detach_topology_input=True`` is this project's stricter variant.
* Gradient scale (``muse_vit.py:407-409``): lambda_g multiplies the reconstruction gradient at the synergistic
  stack's output, before the latent head; the semantic (and topology) gradients are not scaled.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from muse_hf.models import MuseTokenizerConfig, MuseTokenizerModel


def _model(tiny_config, **overrides) -> MuseTokenizerModel:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # blocks without topology supervision (released: last only)
        return MuseTokenizerModel(tiny_config(**overrides)).train()


def _grad(model: nn.Module, loss: torch.Tensor, name: str) -> torch.Tensor:
    param = dict(model.named_parameters())[name]
    (g,) = torch.autograd.grad(loss, [param], retain_graph=True, allow_unused=True)
    return torch.zeros_like(param) if g is None else g


def _kl_to_random_target(attention: torch.Tensor) -> torch.Tensor:
    gen = torch.Generator().manual_seed(3)
    target = torch.rand(attention.shape, generator=gen).softmax(-1)
    return (target * (target.log() - attention.clamp_min(1e-8).log())).sum(-1).mean()


@pytest.mark.parametrize("detach", [False, True])
def test_topology_loss_on_the_last_block(tiny_config, detach: bool) -> None:
    """Off (released): zero on the last block's v_sem/v_itc, non-zero on the previous block's v_sem. On: zero on both."""
    model = _model(tiny_config, routing="decoupled", topology_layers=[1], detach_topology_input=detach)
    out = model(torch.randn(2, 3, 32, 32), output_attentions=True, output_semantic=True)
    assert len(out.attentions) == 1  # the last block only, as released
    loss = _kl_to_random_target(out.attentions[0])
    for name in ("blocks.1.v_sem.weight", "blocks.1.v_itc.weight", "blocks.1.o_proj.weight"):
        assert torch.count_nonzero(_grad(model, loss, name)) == 0, name
    assert torch.count_nonzero(_grad(model, loss, "blocks.1.q_topo.weight")) > 0
    previous = _grad(model, loss, "blocks.0.v_sem.weight")
    adapter = _grad(model, loss, "adapter.proj.weight")
    if detach:
        assert torch.count_nonzero(previous) == 0 and torch.count_nonzero(adapter) == 0
    else:
        assert torch.count_nonzero(previous) > 0 and torch.count_nonzero(adapter) > 0


def test_detach_topology_input_is_saved_validated_and_reaches_the_blocks(tiny_config, tmp_path) -> None:
    assert MuseTokenizerConfig().detach_topology_input is False  # released behaviour by default
    model = _model(tiny_config, detach_topology_input=True)
    assert all(block.detach_topology_input for block in model.blocks)
    model.config.save_pretrained(tmp_path)
    assert MuseTokenizerConfig.from_pretrained(tmp_path).detach_topology_input is True
    with pytest.raises((ValueError, TypeError), match="detach_topology_input"):
        tiny_config(detach_topology_input="yes")
    shared = _model(tiny_config, routing="shared", detach_topology_input=True)
    assert not any(block.detach_topology_input for block in shared.blocks)  # decoupled only


@pytest.mark.parametrize("routing", ["decoupled", "shared"])
def test_grad_scale_halves_only_the_reconstruction_gradient_at_the_stack_output(tiny_config, routing: str) -> None:
    torch.manual_seed(0)
    full = _model(tiny_config, routing=routing, grad_scale=1.0)
    half = _model(tiny_config, routing=routing, grad_scale=0.5)
    half.load_state_dict(full.state_dict())
    x = torch.randn(2, 3, 32, 32)
    outs = {k: m(x, output_semantic=True, output_hidden_states=True) for k, m in (("full", full), ("half", half))}
    rec = {k: (o.sample - x).square().mean() for k, o in outs.items()}
    sem = {k: o.semantic_embeds.square().sum() for k, o in outs.items()}

    # the reconstruction gradient reaching the stack's output (to_latent's input side) is exactly halved...
    g_out = {k: torch.autograd.grad(rec[k], [outs[k].hidden_states[-1]], retain_graph=True)[0] for k in outs}
    assert torch.count_nonzero(g_out["full"]) > 0
    torch.testing.assert_close(g_out["half"], 0.5 * g_out["full"], atol=0.0, rtol=0.0)
    # ...and so is everything upstream of it, while the latent head and the decoder see the full gradient
    for name in ("blocks.1.v_sem.weight", "blocks.0.mlp.down_proj.weight", "adapter.proj.weight"):
        g_full, g_half = _grad(full, rec["full"], name), _grad(half, rec["half"], name)
        assert torch.count_nonzero(g_full) > 0, name
        torch.testing.assert_close(g_half, 0.5 * g_full, atol=0.0, rtol=0.0)
    for name in ("to_latent.weight", "norm.weight", "decoder.conv_in.weight"):
        torch.testing.assert_close(_grad(half, rec["half"], name), _grad(full, rec["full"], name), atol=0.0, rtol=0.0)
    # the semantic gradient is left alone everywhere (it leaves the stack before the scale)
    for name in (
        "blocks.1.v_sem.weight",
        "blocks.0.v_sem.weight",
        "adapter.proj.weight",
        "semantic_projector.fc2.weight",
    ):
        g_full, g_half = _grad(full, sem["full"], name), _grad(half, sem["half"], name)
        torch.testing.assert_close(g_half, g_full, atol=0.0, rtol=0.0)
    if routing == "decoupled":
        g_itc = _grad(half, sem["half"], "blocks.1.v_itc.weight")
        assert torch.count_nonzero(g_itc) > 0
        torch.testing.assert_close(g_itc, _grad(full, sem["full"], "blocks.1.v_itc.weight"), atol=0.0, rtol=0.0)
