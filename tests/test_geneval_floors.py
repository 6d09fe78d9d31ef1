"""The GenEval-style scorer of a pipeline: 16 held-out prompts per category, one noise seed per image, and every score
beside its floors (blank canvas, unconditional DiT) and ceilings (tokenizer round trip, renderer)."""

from __future__ import annotations

import inspect
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from test_pipeline_muse import SIZE, make_text_pipeline

from muse_hf.data.shapes import PLAIN_CATEGORIES, held_out_prompts, is_held_out
from muse_hf.evaluation.geneval import geneval_prompts
from muse_hf.evaluation.geneval_pipeline import (
    FLOOR_KEYS,
    blank_canvas,
    evaluate_pipeline,
    generate_images,
    per_image_generators,
    score_images,
)
from muse_hf.evaluation.roundtrip import roundtrip_geneval
from muse_hf.pipelines import MusePipeline

STEPS = 1


@pytest.fixture(scope="module")
def pipe() -> MusePipeline:
    return make_text_pipeline()


@pytest.fixture(scope="module")
def text_only_pipe() -> MusePipeline:
    return make_text_pipeline(reference_channels=None)  # cannot edit: only generation is scored (fast)


def _kwargs() -> dict[str, int]:
    return {"num_inference_steps": STEPS, "height": SIZE, "width": SIZE}


# ------------------------------------------------------------------------------------------------ the prompt set
def test_default_prompt_set_has_16_held_out_prompts_per_category() -> None:
    from muse_hf.evaluation.saved import evaluate_saved_pipeline, evaluate_saved_tokenizer
    from muse_hf.training.umm.arguments import UMMTrainingArguments

    items = geneval_prompts(SIZE)
    assert Counter(it.category for it in items) == dict.fromkeys(PLAIN_CATEGORIES, 16)
    held = held_out_prompts()
    for it in items:
        assert it.prompt in held, it.prompt
        assert is_held_out([o.name for o in it.scene.objects]), it.prompt
    # every entry point scores 16 per category unless told otherwise
    defaults = {
        "evaluate_pipeline": inspect.signature(evaluate_pipeline).parameters["per_category"].default,
        "geneval_prompts": inspect.signature(geneval_prompts).parameters["per_category"].default,
        "roundtrip_geneval": inspect.signature(roundtrip_geneval).parameters["per_category"].default,
        "evaluate_saved_pipeline": inspect.signature(evaluate_saved_pipeline).parameters["per_category"].default,
        "evaluate_saved_tokenizer": inspect.signature(evaluate_saved_tokenizer)
        .parameters["roundtrip_per_category"]
        .default,
        "UMMTrainingArguments": UMMTrainingArguments.__dataclass_fields__["eval_per_category"].default,
    }
    assert defaults == dict.fromkeys(defaults, 16)


# ------------------------------------------------------------------------------------------------ the blank canvas
@pytest.mark.parametrize("size", [SIZE, 64])
def test_blank_canvas_scores_zero_in_every_category(size: int) -> None:
    items = geneval_prompts(size)
    canvas = blank_canvas(size)
    assert canvas.size == (size, size) and (np.asarray(canvas) == 255).all()
    result = score_images([canvas] * len(items), items)
    assert result["num_images"] == len(items) == 96
    assert result["overall"] == 0.0 and result["categories"] == dict.fromkeys(PLAIN_CATEGORIES, 0.0)
    assert result["colour"] == 0.0 and result["count"] == 0.0 and result["position"] == 0.0
    assert not any(s["correct"] for s in result["scores"])


# ------------------------------------------------------------------------------------------------ one seed per image
def test_per_image_generators_are_seed_plus_index() -> None:
    gens = per_image_generators(5, 3, 2)
    assert [g.initial_seed() for g in gens] == [8, 9]


def test_per_image_seeds_do_not_depend_on_the_batch_size(pipe: MusePipeline) -> None:
    prompts = [it.prompt for it in geneval_prompts(SIZE, 1)]  # 6 prompts: batches of 4 + 2 vs 6 x 1
    # the initial noise of image i is bit-identical, alone or in a batch
    c = int(pipe.transformer.config.in_channels)
    batched = pipe.prepare_latents(4, c, SIZE, SIZE, torch.float32, torch.device("cpu"), per_image_generators(0, 0, 4))
    for i in range(4):
        alone = pipe.prepare_latents(
            1, c, SIZE, SIZE, torch.float32, torch.device("cpu"), per_image_generators(0, i, 1)
        )
        assert torch.equal(batched[i], alone[0])
    # so is the image, up to float rounding of batched matrix products (~1e-7; at most one uint8 level)
    one = generate_images(pipe, prompts, seed=0, batch_size=1, output_type="np", **_kwargs())
    four = generate_images(pipe, prompts, seed=0, batch_size=4, output_type="np", **_kwargs())
    assert len(one) == len(four) == 6
    for a, b in zip(one, four):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)
    pil_one = generate_images(pipe, prompts, seed=0, batch_size=1, **_kwargs())
    pil_four = generate_images(pipe, prompts, seed=0, batch_size=4, **_kwargs())
    for a, b in zip(pil_one, pil_four):
        diff = np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16))
        assert diff.max() <= 1 and (diff > 0).mean() < 0.01
    # one generator shared by a batch (the old way) gives image 1 other noise than its own seed: a real difference
    shared = pipe(prompts[:4], generator=torch.Generator().manual_seed(0), output_type="np", **_kwargs()).images
    assert np.abs(shared[1] - one[1]).max() > 1e-2
    # distinct seeds: the same prompt twice gives two different images
    twice = generate_images(pipe, [prompts[0]] * 2, seed=0, batch_size=2, output_type="np", **_kwargs())
    assert np.abs(twice[0] - twice[1]).max() > 1e-2
    np.testing.assert_allclose(twice[0], one[0], atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------------------------ floors and ceilings
def test_evaluate_pipeline_returns_floors_beside_the_score(text_only_pipe: MusePipeline) -> None:
    result = evaluate_pipeline(text_only_pipe, num_inference_steps=STEPS, per_category=1, batch_size=4)
    gen, floors = result["generation"], result["floors"]
    assert result["edits"] is None and result["settings"]["per_category"] == 1
    assert tuple(floors) == FLOOR_KEYS == ("blank_canvas", "unconditional", "roundtrip_ceiling", "renderer_ceiling")
    for name, summary in floors.items():
        assert set(summary) == set(gen), name  # the generation score's summary keys
        assert summary["num_images"] == gen["num_images"] == 6, name
        assert set(summary["categories"]) == set(PLAIN_CATEGORIES), name
        assert 0.0 <= summary["overall"] <= 1.0, name
    assert floors["blank_canvas"]["overall"] == 0.0
    assert floors["renderer_ceiling"]["overall"] == 1.0  # the detector is exact on the reference renders
    items = geneval_prompts(SIZE, 1)
    # unconditional = the same DiT and per-image seeds given the empty prompt, without guidance, scored on the prompts
    empty = generate_images(text_only_pipe, [""] * 6, seed=0, batch_size=4, guidance_scale=1.0, **_kwargs())
    assert floors["unconditional"]["scores"] == score_images(empty, items)["scores"]
    # roundtrip ceiling = the pipeline's own tokenizer, decode(encode(render))
    rt = roundtrip_geneval(text_only_pipe.vae, text_only_pipe.muse_image_processor, size=SIZE, per_category=1)
    assert floors["roundtrip_ceiling"]["scores"] == rt["roundtrip"]["scores"]
    # the model's own images: scored prompt by prompt, seed + i each
    own = generate_images(text_only_pipe, [it.prompt for it in items], seed=0, batch_size=4, **_kwargs())
    assert gen["scores"] == score_images(own, items)["scores"]
    assert evaluate_pipeline(text_only_pipe, num_inference_steps=STEPS, per_category=1, floors=False)["floors"] is None


def test_saved_pipeline_metrics_and_report_carry_the_floors(pipe: MusePipeline, tmp_path: Path) -> None:
    from muse_hf.evaluation.saved import GENEVAL_REFERENCE_FIELDS, evaluate_saved_pipeline, geneval_floor_values
    from muse_hf.experiments.quickstart import UMM_REPORT_HEADER, _umm_report

    folder = tmp_path / "pipeline"
    pipe.save_pretrained(str(folder))
    flat = evaluate_saved_pipeline(
        folder, tmp_path, num_inference_steps=STEPS, per_category=1, num_edits=2, batch_size=6
    )  # fmt: skip
    # the model's own flat scores keep their keys; the floors are not among them
    assert set(flat) <= {"geneval_overall", "geneval_colour", "geneval_count", "geneval_position"} | {
        f"geneval_{c}" for c in PLAIN_CATEGORIES
    } | {"edit_success", "edit_background_psnr"} | {f"edit_success_{k}" for k in ("recolour", "move", "add", "remove")}
    assert "geneval_overall" in flat and "edit_success" in flat
    doc = json.loads((folder / "metrics.json").read_text())
    full = json.loads((tmp_path / "umm_geneval.json").read_text())
    overall = doc["metrics"]["geneval_overall"]
    assert overall["value"] == flat["geneval_overall"] == full["generation"]["overall"]
    assert overall["baseline"] == 0.0 and overall["ceiling"] == 1.0 and overall["baseline_method"] == "blank canvas"
    assert overall["unconditional"] == full["floors"]["unconditional"]["overall"]
    assert overall["roundtrip_ceiling"] == full["floors"]["roundtrip_ceiling"]["overall"]
    for cat in PLAIN_CATEGORIES:
        entry = doc["metrics"][f"geneval_{cat}"]
        assert entry["unconditional"] == full["floors"]["unconditional"]["categories"][cat]
        assert entry["roundtrip_ceiling"] == full["floors"]["roundtrip_ceiling"]["categories"][cat]
    values = geneval_floor_values(doc)
    assert set(values) == set(FLOOR_KEYS) == set(GENEVAL_REFERENCE_FIELDS)
    assert values["unconditional"]["geneval_overall"] == overall["unconditional"]
    assert values["blank_canvas"]["geneval_colour"] == 0.0
    # the markdown section: every GenEval-style score in a row with its four references
    samples = {"generations": [{"prompt": "a red circle"}], "edits": []}
    section = _umm_report(tmp_path, folder / "metrics.json", samples, "test")
    assert section.startswith(UMM_REPORT_HEADER)
    assert "| unconditional DiT (floor) | tokenizer round trip (ceiling) | renderer (ceiling) |" in section
    row = next(line for line in section.splitlines() if line.startswith("| geneval_overall |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    refs = [overall[f] for f in GENEVAL_REFERENCE_FIELDS.values()]
    assert cells == ["geneval_overall", f"{overall['value']:.3f}", *(f"{v:.3f}" for v in refs)]
    assert "| edit_success |" in section
