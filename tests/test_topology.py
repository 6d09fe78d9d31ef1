"""Topology alignment loss (issue 3, item 2)."""

from __future__ import annotations

import math

import pytest
import torch

from muse_hf.objectives import topology_alignment_loss


def _random_attention(*shape: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g).softmax(-1)


def test_zero_for_identical_inputs_and_positive_otherwise():
    a = _random_attention(2, 4, 16, 16, seed=0)
    b = _random_attention(2, 4, 16, 16, seed=1)
    assert topology_alignment_loss([a, a.clone()], [a, a]).item() == 0.0
    assert topology_alignment_loss(a, a).item() == 0.0
    assert topology_alignment_loss([b], a).item() > 0


def test_matches_hand_computed_kl():
    teacher = torch.tensor([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5], [1.0, 0.0, 0.0]]).view(1, 1, 3, 3)
    student = torch.tensor([[0.25, 0.25, 0.5], [0.2, 0.3, 0.5], [0.5, 0.25, 0.25]]).view(1, 1, 3, 3)
    rows = [0.5 * math.log(0.5 / 0.25) * 2, 0.0, 1.0 * math.log(1.0 / 0.5)]
    expected = sum(rows) / 3
    assert topology_alignment_loss(student, teacher).item() == pytest.approx(expected, rel=1e-6)


def test_zeros_are_safe_and_gradient_reaches_only_student():
    teacher = torch.zeros(1, 2, 4, 4)
    teacher[..., 0] = 1.0  # one-hot rows
    logits = torch.randn(1, 2, 4, 4, requires_grad=True)
    student = logits.softmax(-1)
    student_with_zero = torch.cat([student[..., :1], torch.zeros(1, 2, 4, 3)], -1)
    loss = topology_alignment_loss(student, teacher.requires_grad_())
    loss.backward()
    assert torch.isfinite(loss) and logits.grad.abs().sum() > 0
    assert teacher.grad is None
    assert torch.isfinite(topology_alignment_loss(student_with_zero, teacher.softmax(-1)))


def test_head_and_layer_broadcasting():
    student = _random_attention(2, 8, 9, 9, seed=3)
    teacher_heads = _random_attention(2, 2, 9, 9, seed=4)
    averaged = teacher_heads.mean(1, keepdim=True)
    # a teacher with fewer (not 1) heads is averaged, then broadcast
    assert torch.equal(topology_alignment_loss(student, teacher_heads), topology_alignment_loss(student, averaged))
    # one teacher tensor serves every student layer
    layers = [student, _random_attention(2, 8, 9, 9, seed=5)]
    per_layer = torch.stack([topology_alignment_loss(s, averaged) for s in layers]).mean()
    torch.testing.assert_close(topology_alignment_loss(layers, averaged), per_layer)
    torch.testing.assert_close(topology_alignment_loss(layers, [averaged, averaged]), per_layer)
    # same-head teacher compares head by head
    assert topology_alignment_loss(student, student).item() == 0.0


def test_mean_over_layers_heads_and_queries():
    a = _random_attention(1, 2, 5, 5, seed=6)
    b = _random_attention(1, 2, 5, 5, seed=7)
    kl = (b * (b.log() - a.log())).sum(-1)  # (1, 2, 5)
    torch.testing.assert_close(topology_alignment_loss(a, b), kl.mean())


def test_bad_inputs_raise():
    a = _random_attention(1, 2, 5, 5, seed=8)
    with pytest.raises(ValueError, match="token count"):
        topology_alignment_loss(a, _random_attention(1, 1, 4, 4, seed=9))
    with pytest.raises(ValueError, match="teacher attention layers"):
        topology_alignment_loss([a, a, a], [a, a])
    with pytest.raises(ValueError, match="empty"):
        topology_alignment_loss([], a)
    with pytest.raises(ValueError, match=r"\(B, heads, N, N\)"):
        topology_alignment_loss(a[0], a)


def test_float32_under_autocast():
    a = _random_attention(2, 4, 16, 16, seed=10)
    b = _random_attention(2, 1, 16, 16, seed=11)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = topology_alignment_loss(a.bfloat16(), b)
    assert value.dtype == torch.float32
    torch.testing.assert_close(value, topology_alignment_loss(a.bfloat16().float(), b))


def test_mean_head_reduction_is_the_released_kl_of_the_head_averaged_student():
    """PanqiYang1/MUSE muse/models/muse_vit.py:491-496: F.kl_div(log(mean_h s), t, 'batchmean') / N."""
    # two heads whose mean is a known map: per-head and head-mean KLs differ
    head0 = torch.tensor([[0.5, 0.5, 0.0], [0.0, 1.0, 0.0], [0.2, 0.2, 0.6]])
    head1 = torch.tensor([[0.5, 0.0, 0.5], [0.5, 0.5, 0.0], [0.2, 0.6, 0.2]])
    student = torch.stack([head0, head1]).unsqueeze(0)  # (1, 2, 3, 3); mean over heads below
    mean = torch.tensor([[0.5, 0.25, 0.25], [0.25, 0.75, 0.0], [0.2, 0.4, 0.4]])
    teacher = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.2, 0.4, 0.4]]).view(1, 1, 3, 3)
    rows = [math.log(1.0 / 0.5), 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75), 0.0]
    expected = sum(rows) / 3
    got = topology_alignment_loss(student, teacher, head_reduction="mean")
    assert got.item() == pytest.approx(expected, rel=1e-6)
    torch.testing.assert_close(student.mean(1)[0], mean)
    # the released formula itself, with its own epsilon, agrees
    released = torch.nn.functional.kl_div(torch.log(student.mean(1) + 1e-8), teacher[:, 0], reduction="batchmean") / 3
    assert got.item() == pytest.approx(released.item(), rel=1e-5)
    # per-head compares each head with the teacher: here it is infinite-ish (head1 puts 0 on the teacher's mass)
    assert topology_alignment_loss(student, teacher, head_reduction="per_head").item() > expected + 1.0
    with pytest.raises(ValueError, match="head_reduction"):
        topology_alignment_loss(student, teacher, head_reduction="median")
