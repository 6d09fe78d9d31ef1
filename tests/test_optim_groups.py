"""The one optimizer-group builder both training tasks use (``muse_hf.training.optim.grouped_parameters``)."""

from __future__ import annotations

from torch import nn

from muse_hf.training.optim import build_optimizer, grouped_parameters


def test_groups_by_part_with_no_decay_split_and_lr_scales() -> None:
    model = nn.ModuleDict({"backbone": nn.Linear(3, 4), "head": nn.Sequential(nn.LayerNorm(4), nn.Linear(4, 2))})
    groups = grouped_parameters(model.named_parameters(), lambda n: n.split(".")[0], {"backbone": 0.5})
    by_name = {g["name"]: g for g in groups}
    assert list(by_name) == ["backbone", "backbone.no_decay", "head.no_decay", "head"]  # parameters' order
    assert by_name["backbone"]["params"] == [model["backbone"].weight] and "weight_decay" not in by_name["backbone"]
    assert by_name["backbone.no_decay"]["params"] == [model["backbone"].bias]
    assert by_name["backbone.no_decay"]["weight_decay"] == 0.0 and by_name["backbone.no_decay"]["lr_scale"] == 0.5
    assert len(by_name["head.no_decay"]["params"]) == 3 and by_name["head"]["lr_scale"] == 1.0  # LN w/b + bias
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    custom = grouped_parameters(model.named_parameters(), lambda n: "all", no_decay=lambda n, p: n.endswith("bias"))
    assert [g["name"] for g in custom] == ["all", "all.no_decay"]
    assert len(custom[1]["params"]) == 3  # the three biases; the LayerNorm weight keeps its decay
    optimizer = build_optimizer(groups, 1e-3, (0.9, 0.99), 1e-8, 0.01)
    assert len(optimizer.param_groups) == len(groups)
