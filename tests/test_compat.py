"""Old import paths keep working after the layering moves, and the shipped configs match the repository's."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from muse_hf.compat import MOVED_MODULES
from muse_hf.configs import SHIPPED_CONFIGS, config_path, find_config
from muse_hf.hub import template_dir

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("old", "new"), sorted(MOVED_MODULES.items()))
def test_old_module_path_is_the_new_module_with_a_warning(old: str, new: str) -> None:
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} moved to {new}"):
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)
    assert sys.modules[old] is module


@pytest.mark.parametrize(
    ("module", "name", "target"),
    [
        ("muse_hf.hub", "main", "muse_hf.cli:hub_main"),
        ("muse_hf.training", "run_quickstart", "muse_hf.experiments.quickstart:run_quickstart"),
        ("muse_hf.training.umm.task", "main", "muse_hf.cli:umm_task_main"),
        ("muse_hf.experiments.ablation", "main", "muse_hf.cli:ablation_main"),
        ("muse_hf.data.shapes", "main", "muse_hf.cli:build_data_main"),
        ("muse_hf.evaluation.evaluate", "main", "muse_hf.cli:evaluate_main"),
        ("muse_hf.evaluation.geneval", "evaluate_pipeline", "muse_hf.evaluation.geneval_pipeline:evaluate_pipeline"),
        (
            "muse_hf.training.arguments",
            "TokenizerTrainingArguments",
            "muse_hf.training.tokenizer.arguments:TokenizerTrainingArguments",
        ),
    ],
)
def test_moved_names_resolve_with_a_warning(module: str, name: str, target: str) -> None:
    new_module, _, attribute = target.partition(":")
    with pytest.warns(DeprecationWarning, match=f"{module}.{name} moved"):
        value = getattr(importlib.import_module(module), name)
    assert value is getattr(importlib.import_module(new_module), attribute)
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        importlib.import_module(module).not_a_name  # noqa: B018


def test_old_names_from_moved_modules_still_import() -> None:
    from muse_hf.evaluation.saved import evaluate_saved_tokenizer
    from muse_hf.training.umm.arguments import UMMTrainingArguments

    with pytest.warns(DeprecationWarning):
        sys.modules.pop("muse_hf.training.quickstart", None)
        from muse_hf.training.quickstart import evaluate_saved_tokenizer as old_evaluate
    with pytest.warns(DeprecationWarning):
        sys.modules.pop("muse_hf.training.umm_task", None)
        from muse_hf.training.umm_task import UMMTrainingArguments as old_arguments
    assert old_evaluate is evaluate_saved_tokenizer and old_arguments is UMMTrainingArguments


@pytest.mark.parametrize("name", SHIPPED_CONFIGS)
def test_shipped_configs_equal_the_repository_copies(name: str) -> None:
    shipped = config_path(name)
    assert shipped.is_file() and shipped.parent.parent.name == "configs" and "src" in shipped.parts
    assert shipped.read_bytes() == (REPO / "configs" / name).read_bytes(), (
        f"src/muse_hf/configs/{name} and configs/{name} differ; edit both (the package ships the first)"
    )
    assert find_config(f"configs/{name}") == shipped


def test_find_config_names_what_is_shipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="not shipped with muse_hf"):
        find_config("configs/tokenizer/muse-1b/stage1.yaml")
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "mine.yaml").write_text("task: tokenizer\n")
    assert find_config("configs/mine.yaml") == tmp_path / "configs" / "mine.yaml"
    with pytest.raises(ValueError, match="not shipped"):
        config_path("umm/muse-1b.yaml")


@pytest.mark.parametrize("kind", ["tokenizer", "pipeline"])
def test_shipped_card_templates_equal_model_cards(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MUSE_HF_CARD_TEMPLATES", raising=False)
    shipped = template_dir() / f"{kind}.md"
    assert "src" in shipped.parts and shipped.read_bytes() == (REPO / "model_cards" / f"{kind}.md").read_bytes(), (
        f"src/muse_hf/hub/templates/{kind}.md and model_cards/{kind}.md differ; edit both (the package ships the first)"
    )
