"""The unified model's training pieces below the task: the generation/editing batch mixture and the trained module.

* :class:`MixtureStream` - endless batches with a fixed share of editing samples (deterministic, resumes exactly);
* :class:`UMMTrainModule` - connector + DiT as one DDP unit; ``forward`` returns the flow-matching losses.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from muse_hf.pipelines import MuseCondition, flow_matching_loss

__all__ = ["MixtureStream", "UMMTrainModule"]


class MixtureStream:
    """Endless generation/editing batches: ``{"gen": {...}, "edit": {...}}`` (either part may be absent).

    Each part comes from its own resumable :class:`~muse_hf.training.stream.EndlessLoader`; every batch holds a
    fixed number of samples of each, so the mixture is deterministic and resumes exactly.

    Args:
        gen: loader of ``{"pixel_values", "caption"}`` batches, or None.
        edit: loader of ``{"source_pixel_values", "target_pixel_values", "instruction"}`` batches, or None.

    Raises:
        ValueError: when both are None.
    """

    def __init__(self, gen: Any | None, edit: Any | None) -> None:
        if gen is None and edit is None:
            raise ValueError("MixtureStream needs a generation or an editing loader.")
        self.parts = {name: loader for name, loader in (("gen", gen), ("edit", edit)) if loader is not None}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        iters = {name: iter(loader) for name, loader in self.parts.items()}
        while True:
            yield {name: next(it) for name, it in iters.items()}

    def state_dict(self) -> dict[str, Any]:
        """Both loaders' positions."""
        return {name: loader.state_dict() for name, loader in self.parts.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume both loaders.

        Raises:
            ValueError: when the checkpoint's mixture has other parts than this stream.
        """
        if set(state) != set(self.parts):
            raise ValueError(
                f"The checkpoint's data stream has parts {sorted(state)} but this stage streams {sorted(self.parts)}; "
                "resume with the same edit_ratio."
            )
        for name, loader in self.parts.items():
            loader.load_state_dict(state[name])

    @property
    def num_skipped(self) -> int:
        """Samples skipped so far by both loaders (this process)."""
        return sum(int(loader.num_skipped) for loader in self.parts.values())


# ---------------------------------------------------------------------------------------------- model
class UMMTrainModule(nn.Module):
    """Connector + DiT (one DDP unit); ``forward`` encodes the condition and returns the flow-matching losses.

    The frozen condition encoder is held as a plain attribute (not a submodule: it is neither prepared, nor
    checkpointed, nor saved with this module). With a text encoder the prompt is encoded without gradients; with
    an InternVL mllm the learnable queries go through the frozen LLM, so the encoding keeps their gradients.

    Args:
        connector: :class:`~muse_hf.models.connector.MuseConnector`.
        transformer: ``SanaTransformer2DModel`` (or a peft ``PeftModel`` around it).
        condition_encoder: :class:`~muse_hf.pipelines.ConditionEncoder` of the frozen mllm.
        num_train_timesteps: the scheduler's ``num_train_timesteps``.
        condition_dropout: see :func:`~muse_hf.pipelines.flow_matching_loss`.
        logit_mean: see :func:`~muse_hf.pipelines.flow_matching_loss`.
        logit_std: see :func:`~muse_hf.pipelines.flow_matching_loss`.
    """

    def __init__(
        self,
        connector: nn.Module,
        transformer: nn.Module,
        condition_encoder: Any,
        num_train_timesteps: int = 1000,
        condition_dropout: float = 0.1,
        logit_mean: float = 0.0,
        logit_std: float = 1.0,
    ) -> None:
        super().__init__()
        self.connector = connector
        self.transformer = transformer
        self.condition_encoder = condition_encoder
        self.num_train_timesteps = int(num_train_timesteps)
        self.condition_dropout = float(condition_dropout)
        self.logit_mean = float(logit_mean)
        self.logit_std = float(logit_std)
        self._text_uncond: MuseCondition | None = None

    @property
    def queries_in_encoder(self) -> bool:
        """Whether the learnable queries enter inside the mllm (InternVL path)."""
        return bool(self.condition_encoder.supports_images)

    def encode(self, prompts: list[str], images: list[Any] | None) -> tuple[MuseCondition, MuseCondition]:
        """Condition and unconditional condition (empty prompt; the same images for edits) of a batch."""
        enc = self.condition_encoder
        if self.queries_in_encoder:
            queries = self.connector.query_embeds  # (Q, D): trained through the frozen LLM
            cond = enc.encode(prompts, images, query_embeds=queries)
            n = len(prompts) if images is not None else 1
            uncond = enc.encode([""] * n, images, query_embeds=queries)
            return cond, uncond
        with torch.no_grad():
            cond = enc.encode(prompts)
        return cond, self.unconditional()

    def unconditional(self) -> MuseCondition:
        """The empty prompt's condition (text path), encoded once."""
        if self._text_uncond is None:
            with torch.no_grad():
                self._text_uncond = self.condition_encoder.encode([""])
        return self._text_uncond

    def forward(
        self,
        gen: dict[str, Any] | None = None,
        edit: dict[str, Any] | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, Any]:
        """Flow-matching losses of a generation part and/or an editing part of one batch.

        Args:
            gen: ``{"latents": (Bg, c, h, w) normalised target latents, "prompts": list[str]}``, or with
                ``"condition"`` (a ``MuseCondition`` from the cache) instead of encoding ``prompts`` (text path).
            edit: ``{"latents": (Be, c, h, w), "prompts": instructions, "reference_latents": (Be, c, h, w) | None,
                "images": reference PIL images | None (InternVL path)}``, optionally with ``"condition"``.
            generator: RNG for dropout, timesteps and noise.

        Returns:
            ``{"gen": FlowMatchingOutput, "edit": FlowMatchingOutput}`` for the parts given.
        """

        outputs: dict[str, Any] = {}
        for name, part in (("gen", gen), ("edit", edit)):
            if part is None:
                continue
            if part.get("condition") is not None and not self.queries_in_encoder:
                cond, uncond = part["condition"], self.unconditional()  # cached token states
            else:
                images = part.get("images") if self.queries_in_encoder else None
                cond, uncond = self.encode(list(part["prompts"]), images)
            ref = part.get("reference_latents")
            if ref is not None:
                cond = MuseCondition(cond.hidden_states, cond.attention_mask, cond.query_states, ref)
            outputs[name] = flow_matching_loss(
                self.transformer,
                self.connector,
                part["latents"],
                cond,
                uncond=uncond,
                condition_dropout=self.condition_dropout,
                logit_mean=self.logit_mean,
                logit_std=self.logit_std,
                num_train_timesteps=self.num_train_timesteps,
                generator=generator,
            )
        return outputs
