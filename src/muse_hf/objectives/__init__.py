"""muse_hf.objectives: the MUSE training objectives (paper §4.2-4.3, appendix E; DESIGN §2).

* teachers - :class:`StructuralTeacher` (DINOv3/DINOv2/CLIP attention), :class:`MaskAffinityTeacher`
* topology - :func:`topology_alignment_loss` (KL(teacher || student), eq. 4)
* semantic - text embedders, :class:`LogitScale`, :func:`semantic_nce_loss` (eq. 5, cross-process negatives)
* reconstruction - :class:`ReconstructionLoss`, :class:`PatchDiscriminator`, hinge/LeCam, :class:`AdversarialLoss`
* gradients - gradient scale / spectral filter (from ``muse_hf.models.grad_ops``), :func:`gradient_conflict`,
  :func:`default_param_groups`, :func:`soft_routing_penalty`
"""

from muse_hf.objectives.gradients import (
    GradientConflictResult,
    GradientScale,
    SpectralGradientFilter,
    default_param_groups,
    grad_scale,
    gradient_conflict,
    shared_block_parameters,
    soft_routing_penalty,
    spectral_grad_filter,
)
from muse_hf.objectives.reconstruction import (
    DEFAULT_PERCEPTUAL_MODEL,
    AdversarialLoss,
    LeCamEMA,
    PatchDiscriminator,
    PerceptualLoss,
    ReconstructionLoss,
    adaptive_adversarial_weight,
    hinge_d_loss,
    hinge_g_loss,
)
from muse_hf.objectives.semantic import (
    CLIPTextEmbedder,
    LogitScale,
    SentenceTransformerEmbedder,
    SiglipTextEmbedder,
    TextEmbedder,
    caption_ids,
    default_text_embedder_path,
    load_text_embedder,
    semantic_nce_loss,
)
from muse_hf.objectives.teachers import (
    MaskAffinityTeacher,
    StructuralTeacher,
    interpolate_attention,
    normalize_attention_rows,
)
from muse_hf.objectives.topology import topology_alignment_loss

__all__ = [
    "StructuralTeacher",
    "MaskAffinityTeacher",
    "interpolate_attention",
    "normalize_attention_rows",
    "topology_alignment_loss",
    "TextEmbedder",
    "CLIPTextEmbedder",
    "SiglipTextEmbedder",
    "SentenceTransformerEmbedder",
    "default_text_embedder_path",
    "load_text_embedder",
    "LogitScale",
    "semantic_nce_loss",
    "caption_ids",
    "ReconstructionLoss",
    "PerceptualLoss",
    "PatchDiscriminator",
    "hinge_d_loss",
    "hinge_g_loss",
    "LeCamEMA",
    "AdversarialLoss",
    "adaptive_adversarial_weight",
    "DEFAULT_PERCEPTUAL_MODEL",
    "GradientScale",
    "SpectralGradientFilter",
    "grad_scale",
    "spectral_grad_filter",
    "GradientConflictResult",
    "gradient_conflict",
    "default_param_groups",
    "shared_block_parameters",
    "soft_routing_penalty",
]
