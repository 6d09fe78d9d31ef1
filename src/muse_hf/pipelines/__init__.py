"""muse_hf.pipelines: the MUSE unified model (generation, editing, understanding) and its training pieces."""

from .condition import (
    ConditionEncoder,
    InternVLConditionEncoder,
    MuseCondition,
    TextConditionEncoder,
    build_condition_encoder,
    load_default_text_encoder,
)
from .flow_matching import (
    FlowMatchingOutput,
    LatentScaling,
    compute_latent_scaling,
    flow_matching_loss,
    sample_logit_normal_sigmas,
)
from .pipeline_muse import EditTurn, MuseEditSession, MusePipeline, register_with_diffusers
from .pipeline_output import MusePipelineOutput

register_with_diffusers()  # DiffusionPipeline.from_pretrained(folder) resolves "MusePipeline"

__all__ = [
    "ConditionEncoder",
    "EditTurn",
    "FlowMatchingOutput",
    "InternVLConditionEncoder",
    "LatentScaling",
    "MuseCondition",
    "MuseEditSession",
    "MusePipeline",
    "MusePipelineOutput",
    "TextConditionEncoder",
    "build_condition_encoder",
    "compute_latent_scaling",
    "flow_matching_loss",
    "load_default_text_encoder",
    "register_with_diffusers",
    "sample_logit_normal_sigmas",
]
