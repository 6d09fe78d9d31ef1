"""Arguments of the unified-model (UMM) curriculum (:class:`UMMTrainingArguments`, ``task: umm``).

The task itself is :class:`muse_hf.training.umm.task.UMMTask`; both are found through
:data:`muse_hf.training.arguments.TASK_REGISTRY`.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from diffusers import SanaTransformer2DModel

from muse_hf.models.connector import MuseConnector
from muse_hf.training.arguments import MuseTrainingArguments
from muse_hf.validation import check_known_keys, hub_offline, is_hub_id

__all__ = ["UMMTrainingArguments"]


@dataclass
class UMMTrainingArguments(MuseTrainingArguments):
    """Arguments of the unified-model curriculum (paper §5.1 "MUSE UMM Training", appendix B.2; DESIGN §3).

    Stage 1 builds the pipeline from its components (``tokenizer_name_or_path`` + condition encoder + DiT);
    later stages start from the previous stage's saved pipeline (``init_from``, set by the curriculum).
    """

    task: str = "umm"

    # --- components (used when init_from is None) ---
    tokenizer_name_or_path: str | None = None
    """The trained MUSE tokenizer (``save_pretrained`` folder or Hub id): the ``vae`` of the pipeline."""
    condition_encoder_name_or_path: str | None = None
    """The ``mllm``: an InternVL ``-hf`` checkpoint (e.g. OpenGVLab/InternVL3-1B-hf) or any transformers text
    encoder; None = the packaged all-MiniLM-L6-v2 (offline default)."""
    transformer_name_or_path: str | None = None
    """A diffusers SANA checkpoint (repo with a ``transformer`` subfolder, or a transformer folder) to start the
    DiT from; None builds ``SanaTransformer2DModel(**transformer_config)`` from scratch."""
    transformer_config: dict[str, Any] = field(default_factory=dict)
    """``SanaTransformer2DModel`` kwargs for a DiT built from scratch (ignored with transformer_name_or_path);
    ``in_channels``/``out_channels`` default to the tokenizer's latent channels and ``sample_size`` to its latent
    grid at ``resolution``."""
    connector_config: dict[str, Any] = field(default_factory=dict)
    """``MuseConnector`` kwargs (num_queries, num_layers, hidden_size, num_attention_heads, ...);
    ``condition_dim``/``caption_channels``/``reference_channels`` are filled in from the components."""
    connector_from_llm: bool = True
    """With an InternVL mllm: initialise the connector from the LLM's last ``num_layers`` layers (UniLIP)."""
    connector_reference_latents: bool | None = None
    """Give the connector the reference image's latents as tokens for editing (None: exactly when the mllm
    cannot see images, i.e. the text-encoder path)."""
    scheduler_shift: float = 3.0
    """``FlowMatchEulerDiscreteScheduler(shift=...)`` of a pipeline built from scratch (inference timesteps)."""

    # --- what this stage trains ---
    train_connector: bool = True
    """Train the connector and its learnable queries."""
    train_transformer: Literal["none", "full", "lora"] = "none"
    """The DiT: frozen (stage 1), fully trained (stage 2), or LoRA adapters via peft (stage-3 option)."""
    transformer_lr_multiplier: float = 1.0
    """Learning-rate multiplier of the DiT's parameters (LoRA or full)."""
    gradient_checkpointing: bool = False
    """Recompute the DiT's activations in the backward pass (diffusers ``enable_gradient_checkpointing``)."""
    lora_rank: int = 32
    lora_alpha: float = 32.0
    lora_dropout: float = 0.0
    lora_target_modules: list[str] = field(default_factory=lambda: ["to_q", "to_k", "to_v", "to_out.0"])
    """Module names of the DiT that get LoRA adapters (SANA's self- and cross-attention projections)."""

    # --- objective (paper eq. 6) ---
    condition_dropout: float = 0.1
    """Probability of replacing a sample's condition with the empty prompt's (classifier-free guidance)."""
    logit_mean: float = 0.0
    """Mean of the logit-normal timestep distribution."""
    logit_std: float = 1.0
    """Std of the logit-normal timestep distribution."""

    # --- data mixture ---
    edit_ratio: float = 0.0
    """Fraction of every batch drawn from the editing stream (0: text-to-image only)."""
    edit_data: str | None = None
    """Editing pairs (local folder or Hub id; None: ``train_data``, whose synthetic scenes carry pairs)."""
    edit_split: str | None = None
    """Split of ``edit_data`` (None: ``train_split``)."""
    image_column: str | None = None
    caption_column: str | None = None
    source_column: str | None = None
    target_column: str | None = None
    instruction_column: str | None = None

    # --- cached inputs (diffusers' --cache_latents) ---
    cache_latents: bool = False
    """Encode every training image once with the frozen tokenizer and every caption / instruction once with the
    frozen text encoder, store them beside the data (``<data>/.muse_cache/<key>/``, keyed by both models' configs and
    weights) and train from the stored tensors (:mod:`muse_hf.training.umm.cache`). Text condition encoders only."""
    cache_dir: str | None = None
    """Where the cache keys live instead of ``<data>/.muse_cache`` (needed for data that is not a local folder)."""
    cache_batch_size: int = 64
    """Images per encoding batch while building the cache."""

    # --- final evaluation ---
    evaluate_at_end: bool = False
    """Score the saved pipeline with the GenEval-style check on the synthetic scenes (``metrics.json``)."""
    eval_num_inference_steps: int = 20
    eval_guidance_scale: float = 4.5
    eval_per_category: int = 16
    """Held-out GenEval-style prompts per category (6 categories); image ``i`` uses the noise seed ``seed + i``."""
    eval_num_edits: int = 24

    def validate(self, produced_by_earlier_stage: frozenset[str] = frozenset()) -> None:  # noqa: D102
        # The shared checks expect a tokenizer-style init_from (config.json); a pipeline folder has a
        # model_index.json instead, so init_from is checked here.
        MuseTrainingArguments.validate(dataclasses.replace(self, init_from=None), produced_by_earlier_stage)
        if not 0.0 <= self.edit_ratio <= 1.0:
            raise ValueError(f"edit_ratio must be in [0, 1], got {self.edit_ratio}.")
        if (
            0.0 < self.edit_ratio < 1.0
            and not 1 <= round(self.edit_ratio * self.train_batch_size) < self.train_batch_size
        ):
            raise ValueError(
                f"edit_ratio={self.edit_ratio} with train_batch_size={self.train_batch_size} leaves one of the two "
                "streams without samples; raise train_batch_size or use edit_ratio 0 or 1."
            )
        if not 0.0 <= self.condition_dropout < 1.0:
            raise ValueError(f"condition_dropout must be in [0, 1), got {self.condition_dropout}.")
        if self.logit_std <= 0:
            raise ValueError(f"logit_std must be > 0, got {self.logit_std}.")
        if self.transformer_lr_multiplier <= 0:
            raise ValueError(f"transformer_lr_multiplier must be > 0, got {self.transformer_lr_multiplier}.")
        if self.train_transformer == "lora":
            if self.lora_rank < 1 or self.lora_alpha <= 0 or not 0.0 <= self.lora_dropout < 1.0:
                raise ValueError(
                    f"LoRA needs lora_rank >= 1, lora_alpha > 0 and lora_dropout in [0, 1); got {self.lora_rank}, "
                    f"{self.lora_alpha}, {self.lora_dropout}."
                )
            if not self.lora_target_modules:
                raise ValueError(
                    "train_transformer=lora needs lora_target_modules (e.g. [to_q, to_k, to_v, to_out.0])."
                )
        if not self.train_connector and self.train_transformer == "none":
            raise ValueError(
                "train_connector is false and train_transformer is 'none': nothing to train. Stage 1 trains the "
                "connector, stage 2 adds train_transformer: full, stage 3 may use train_transformer: lora."
            )
        if self.edit_ratio > 0 and self.edit_data is not None:
            _check_data_path(
                self.edit_data, "edit_data", self.build_synthetic_data and self.edit_data == self.train_data
            )
        if self.init_from is None:
            if self.tokenizer_name_or_path is None:
                raise ValueError(
                    "tokenizer_name_or_path is not set: a pipeline built from scratch (no init_from) needs the trained "
                    "MUSE tokenizer folder, e.g. --tokenizer_name_or_path outputs/quickstart/model."
                )
            _check_model_path(
                self.tokenizer_name_or_path,
                "tokenizer_name_or_path",
                "config.json",
                produced_by_earlier_stage,
            )
        elif self.init_from not in produced_by_earlier_stage:
            _check_model_path(self.init_from, "init_from", "model_index.json", produced_by_earlier_stage)
        for name in ("eval_num_inference_steps", "eval_per_category", "cache_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")
        if self.cache_latents and self.cache_dir is None:
            for data, used in ((self.train_data, self.edit_ratio < 1.0),
                               (self.edit_data or self.train_data, self.edit_ratio > 0.0)):  # fmt: skip
                local = data is not None and (Path(data).expanduser().exists() or self.build_synthetic_data)
                if used and not local:
                    raise ValueError(
                        f"cache_latents stores the cache beside the data, but {data!r} is not a local folder. Set "
                        "cache_dir, and download the data first (the cache is built from local shards)."
                    )
        # A misspelt key must not be dropped or reach a constructor as an anonymous TypeError mid-run.
        for name, cls in (("connector_config", MuseConnector), ("transformer_config", SanaTransformer2DModel)):
            params = set(inspect.signature(cls.__init__).parameters) - {"self"}
            check_known_keys(getattr(self, name), params, f"{name} ({cls.__name__})")


def _check_data_path(path: str, name: str, will_be_built: bool) -> None:
    if Path(path).expanduser().exists() or will_be_built:
        return
    if is_hub_id(path) and not hub_offline():
        return
    raise ValueError(f"{name}={path!r} does not exist locally (and cannot be fetched from the Hub while offline).")


def _check_model_path(path: str, name: str, marker: str, produced: frozenset[str]) -> None:
    if path in produced:
        return
    local = Path(path).expanduser()
    if local.exists():
        if not (local / marker).is_file():
            raise ValueError(
                f"{name}={path!r} exists but has no {marker}; it must be a save_pretrained folder"
                + (" of a MusePipeline (a previous UMM stage's output_dir)." if marker == "model_index.json" else ".")
            )
        return
    if not is_hub_id(path) or hub_offline():
        raise ValueError(
            f"{name}={path!r} does not exist locally (and cannot be fetched from the Hub). Train the stage that writes "
            "it first, or point it at a save_pretrained folder."
        )
