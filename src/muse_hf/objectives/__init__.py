"""muse_hf.objectives: the MUSE training objectives (paper §4.2-4.3, appendix E; DESIGN §2).

* teachers - :class:`StructuralTeacher` (DINOv3/DINOv2/CLIP attention), :class:`MaskAffinityTeacher`
* topology - :func:`topology_alignment_loss` (KL(teacher || student), eq. 4)
* semantic - text embedders, :class:`LogitScale`, :func:`semantic_nce_loss` (eq. 5, cross-process negatives)
* reconstruction - :class:`ReconstructionLoss`, :class:`PatchDiscriminator`, hinge/LeCam, :class:`AdversarialLoss`
* gradients - gradient scale / spectral filter (from ``muse_hf.models.grad_ops``), :func:`gradient_conflict`,
  :func:`default_param_groups`, :func:`soft_routing_penalty`

Public names are resolved lazily (PEP 562), so importing one submodule (e.g. ``semantic`` in a worker
process) does not import the model stack.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_SUBMODULES: dict[str, list[str]] = {
    "gradients": [
        "GradientConflictResult",
        "GradientScale",
        "PROBE_PAIRS",
        "SpectralGradientFilter",
        "block_gradient_cosines",
        "default_param_groups",
        "grad_scale",
        "gradient_conflict",
        "objective_pair_cosines",
        "shared_block_parameters",
        "soft_routing_penalty",
        "spectral_grad_filter",
    ],
    "reconstruction": [
        "DEFAULT_CONVNEXT_CLASSIFIER",
        "DEFAULT_PERCEPTUAL_MODEL",
        "AdversarialLoss",
        "LPIPSConvNeXtLoss",
        "LeCamEMA",
        "PatchDiscriminator",
        "PerceptualLoss",
        "ReconstructionLoss",
        "adaptive_adversarial_weight",
        "hinge_d_loss",
        "hinge_g_loss",
        "load_perceptual_loss",
    ],
    "semantic": [
        "CLIPTextEmbedder",
        "LogitScale",
        "SentenceTransformerEmbedder",
        "SiglipTextEmbedder",
        "TextEmbedder",
        "caption_ids",
        "default_text_embedder_path",
        "load_text_embedder",
        "semantic_nce_loss",
    ],
    "teachers": [
        "MaskAffinityTeacher",
        "StructuralTeacher",
        "interpolate_attention",
        "normalize_attention_rows",
    ],
    "topology": [
        "HEAD_REDUCTIONS",
        "topology_alignment_loss",
    ],
}
_LAZY: dict[str, str] = {name: module for module, names in _SUBMODULES.items() for name in names}

if TYPE_CHECKING:  # static analysers and IDEs see the real imports
    from muse_hf.objectives.gradients import *  # noqa: F403
    from muse_hf.objectives.reconstruction import *  # noqa: F403
    from muse_hf.objectives.semantic import *  # noqa: F403
    from muse_hf.objectives.teachers import *  # noqa: F403
    from muse_hf.objectives.topology import *  # noqa: F403


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_LAZY))


__all__ = list(_LAZY)
