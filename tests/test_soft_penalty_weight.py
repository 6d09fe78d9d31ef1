"""``soft_penalty_weight`` (the ``routing: soft`` loss weight) is a training argument, no longer a model config field;
a tokenizer saved while it was one still loads, and its value is used when the argument is not given."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import make_tiny_config

from muse_hf.models import MuseTokenizerConfig
from muse_hf.training.arguments import load_stage_arguments
from muse_hf.training.tokenizer.task import DEFAULT_SOFT_PENALTY_WEIGHT, soft_penalty_weight


def test_weight_is_an_argument_not_a_config_field(tmp_path: Path) -> None:
    config = make_tiny_config(routing="soft")
    config.save_pretrained(tmp_path)
    assert "soft_penalty_weight" not in json.loads((tmp_path / "config.json").read_text())
    args = load_stage_arguments({"task": "tokenizer"}, validate=False)[0]
    assert args.soft_penalty_weight is None
    assert soft_penalty_weight(args, config) == DEFAULT_SOFT_PENALTY_WEIGHT
    args = load_stage_arguments({"task": "tokenizer", "soft_penalty_weight": 0.25}, validate=False)[0]
    assert soft_penalty_weight(args, config) == 0.25


def test_old_saved_config_with_the_field_still_loads_and_is_used(tmp_path: Path) -> None:
    make_tiny_config(routing="soft").save_pretrained(tmp_path)
    raw = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**raw, "soft_penalty_weight": 0.3}))
    old = MuseTokenizerConfig.from_pretrained(tmp_path)
    assert old.routing == "soft"
    args = load_stage_arguments({"task": "tokenizer"}, validate=False)[0]
    assert soft_penalty_weight(args, old) == 0.3  # the old config's value when the argument is not given
    args = load_stage_arguments({"task": "tokenizer", "soft_penalty_weight": 0.05}, validate=False)[0]
    assert soft_penalty_weight(args, old) == 0.05  # the argument wins
