"""``MusePipeline``: text-to-image, editing and understanding with the MUSE unified model (paper appendix B).

Components (all saved by ``save_pretrained`` and reloaded by ``MusePipeline.from_pretrained``):

* ``mllm``: the condition encoder, frozen. ``InternVLForConditionalGeneration`` (the paper's setting: it can
  also answer questions, :meth:`MusePipeline.chat`) or any plain transformers text encoder (the offline
  default: the BERT inside the packaged all-MiniLM-L6-v2).
* ``processor``: ``InternVLProcessor`` or the text encoder's tokenizer.
* ``connector``: :class:`~muse_hf.models.connector.MuseConnector`.
* ``transformer``: diffusers ``SanaTransformer2DModel``, working in the tokenizer's latent space.
* ``scheduler``: diffusers ``FlowMatchEulerDiscreteScheduler``.
* ``vae``: the MUSE tokenizer (``MuseTokenizerModel``): decodes generated latents, encodes reference images.
* ``image_processor`` (optional): ``MuseImageProcessor``; built from the tokenizer's config when absent.

Editing: with an InternVL ``mllm`` the reference image fills the image-context tokens of the prompt; when
the connector has ``reference_channels`` (always the case for a text-only ``mllm``, which cannot see
images) the reference image's normalised tokenizer latents also enter the connector as extra tokens. The
DiT itself is a stock ``SanaTransformer2DModel`` in both cases.

One vision backbone in memory: when ``mllm`` is InternVL, its vision tower's parameters are replaced by
the *same* ``Parameter`` objects as ``vae.vision_model`` (the MUSE-trained encoder), so understanding
sees the tokenizer's encoder, as the paper evaluates it.

Size: one responsibility, the diffusers pipeline (its components, generation, editing and understanding calls).
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers import DiffusionPipeline, FlowMatchEulerDiscreteScheduler, SanaTransformer2DModel
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.pipelines.flux.pipeline_flux import calculate_shift
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import retrieve_timesteps
from diffusers.utils import logging
from diffusers.utils.torch_utils import randn_tensor
from transformers import PreTrainedModel

from ..models.connector import MuseConnector
from ..models.image_processing_muse import MuseImageProcessor
from .condition import (
    ConditionEncoder,
    InternVLConditionEncoder,
    MuseCondition,
    build_condition_encoder,
    find_vision_tower,
)
from .pipeline_output import MusePipelineOutput

logger = logging.get_logger(__name__)

__all__ = ["MusePipeline", "MuseEditSession", "EditTurn", "register_with_diffusers"]

_OUTPUT_TYPES = ("pil", "np", "pt", "latent")
_IMAGE_READER = MuseImageProcessor()  # reads reference images by the processor's rules (no resizing)

ImageInput = PIL.Image.Image | np.ndarray | torch.Tensor | list[PIL.Image.Image]


class MusePipeline(DiffusionPipeline):
    r"""MUSE unified model: generation, editing and (with InternVL) understanding.

    Example:
        >>> pipe = MusePipeline.from_pretrained("path/to/muse-pipeline")
        >>> image = pipe("a red circle left of a blue square").images[0]
        >>> edited = pipe("make the circle green", image=image).images[0]
        >>> pipe.chat(image, "what is left of the square?")  # InternVL mllm only
    """

    model_cpu_offload_seq = "mllm->connector->transformer->vae"
    _optional_components = ["image_processor"]
    _callback_tensor_inputs = ["latents", "encoder_hidden_states"]

    def __init__(
        self,
        mllm: PreTrainedModel,
        processor: Any,
        connector: MuseConnector,
        transformer: SanaTransformer2DModel,
        scheduler: FlowMatchEulerDiscreteScheduler,
        vae: PreTrainedModel,
        image_processor: MuseImageProcessor | None = None,
    ) -> None:
        super().__init__()
        self.register_modules(
            mllm=mllm,
            processor=processor,
            connector=connector,
            transformer=transformer,
            scheduler=scheduler,
            vae=vae,
            image_processor=image_processor,
        )
        self.vae_scale_factor = int(vae.config.spatial_compression_ratio) if vae is not None else 32
        self._encoder_cache: tuple[int, int, ConditionEncoder] | None = None
        self._default_image_processor: MuseImageProcessor | None = None
        self.shared_vision_parameters = self.tie_vision_weights()

    # ------------------------------------------------------------------ components
    def tie_vision_weights(self) -> int:
        """Make the MLLM's vision tower use the tokenizer backbone's parameters (same ``Parameter`` objects).

        Parameters are matched by name and shape (``InternVLVisionModel`` on both sides); ones that do not
        match (e.g. layers the tokenizer replaced with synergistic blocks) stay the MLLM's own and are
        reported in a warning.

        Returns:
            The number of shared parameters (0 for a text-only ``mllm``).
        """
        tower = find_vision_tower(getattr(self, "mllm", None))
        source = getattr(getattr(self, "vae", None), "vision_model", None)
        if tower is None or source is None:
            return 0
        src = dict(source.named_parameters())
        tied, skipped = 0, []
        for name, param in list(tower.named_parameters()):
            target = src.get(name)
            if target is None or target.shape != param.shape or target.dtype != param.dtype:
                skipped.append(name)
                continue
            if param is not target:
                owner_name, _, leaf = name.rpartition(".")
                setattr(tower.get_submodule(owner_name) if owner_name else tower, leaf, target)
            tied += 1
        if skipped:
            logger.warning(
                f"{len(skipped)} MLLM vision-tower parameters do not match the tokenizer backbone and stay separate "
                f"(first: {skipped[:3]})."
            )
        return tied

    @property
    def muse_image_processor(self) -> MuseImageProcessor:
        """The ``image_processor`` component, or one built from the tokenizer's ``image_size``."""
        if getattr(self, "image_processor", None) is not None:
            return self.image_processor
        if self._default_image_processor is None:
            h, w = self.native_size()
            self._default_image_processor = MuseImageProcessor(size={"height": h, "width": w})
        return self._default_image_processor

    @property
    def condition_encoder(self) -> ConditionEncoder:
        """The condition encoder wrapping ``mllm`` + ``processor`` (rebuilt if either is swapped)."""
        key = (id(self.mllm), id(self.processor))
        if self._encoder_cache is None or self._encoder_cache[:2] != key:
            enc = build_condition_encoder(self.mllm, self.processor, self.muse_image_processor)
            self._encoder_cache = (*key, enc)
        return self._encoder_cache[2]

    @property
    def latent_factor(self) -> int:
        """Pixels per DiT token side: the tokenizer's compression times the DiT's patch size."""
        return self.vae_scale_factor * int(self.transformer.config.patch_size)

    def native_size(self) -> tuple[int, int]:
        """``(height, width)`` generated by default: the tokenizer's image size (else the DiT's sample size in pixels)."""
        cfg = self.vae.config
        hw = getattr(cfg, "image_hw", None)
        if hw is None:
            size = getattr(cfg, "image_size", None)
            if size is None:
                s = int(self.transformer.config.sample_size) * self.vae_scale_factor
                return s, s
            hw = (size, size) if isinstance(size, int) else tuple(size)
        return int(hw[0]), int(hw[1])

    @property
    def guidance_scale(self) -> float:
        return self._guidance_scale

    @property
    def do_classifier_free_guidance(self) -> bool:
        return self._guidance_scale > 1.0

    @property
    def num_timesteps(self) -> int:
        return self._num_timesteps

    @property
    def interrupt(self) -> bool:
        return self._interrupt

    # ------------------------------------------------------------------ inputs
    @staticmethod
    def _to_pil_list(image: ImageInput | None) -> list[PIL.Image.Image] | None:
        """Reference image(s) -> RGB PIL images, by :class:`MuseImageProcessor`'s rules (``to_pil``).

        Accepted: what the processor accepts - PIL images of any mode, NumPy arrays / torch tensors ``(H, W)``,
        ``(H, W, C)`` / ``(C, H, W)`` or batches of them, ``uint8`` / ``uint16`` / ``bool`` / float in [0, 1] or
        [0, 255], and lists of these. Refused with a ``ValueError`` naming ``image``: anything the processor
        refuses (NaN/inf values, out-of-range values, no channel axis, an empty list, a truncated file).
        """
        if image is None:
            return None
        try:
            return _IMAGE_READER.to_pil(image)
        except ValueError as err:
            raise ValueError(f"`image`: {err}") from err

    def check_inputs(
        self,
        prompts: Any,
        images: list[PIL.Image.Image] | None,
        negative_prompt: str | list[str] | None,
        height: int,
        width: int,
        num_images_per_prompt: int,
        latents: torch.Tensor | None,
        output_type: str,
        callback_on_step_end_tensor_inputs: list[str] | None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        sigmas: list[float] | None = None,
    ) -> None:
        """Validate the call; every problem raises ``ValueError`` naming the argument and the fix.

        Reference ``images`` arrive already read by :meth:`_to_pil_list` (the image processor's rules).
        """
        if (
            sigmas is None
            and num_inference_steps is not None
            and (
                isinstance(num_inference_steps, bool)
                or not isinstance(num_inference_steps, numbers.Integral)
                or num_inference_steps < 1
            )
        ):
            raise ValueError(f"`num_inference_steps` must be an int >= 1, got {num_inference_steps!r}.")
        if guidance_scale is not None and (
            isinstance(guidance_scale, bool)
            or not isinstance(guidance_scale, numbers.Real)
            or not math.isfinite(guidance_scale)
        ):
            raise ValueError(
                f"`guidance_scale` must be a finite number (<= 1 runs the conditional branch only), got "
                f"{guidance_scale!r}."
            )
        if not isinstance(prompts, list) or not prompts:
            raise ValueError("`prompt` must be a non-empty string or a non-empty list of strings.")
        bad = [i for i, p in enumerate(prompts) if not isinstance(p, str)]
        if bad:
            raise ValueError(f"`prompt` entries must be strings; entries {bad[:5]} are not.")
        f = self.latent_factor
        for name, value in (("height", height), ("width", width)):
            if not isinstance(value, int) or value <= 0 or value % f:
                raise ValueError(
                    f"`{name}`={value} must be a positive multiple of {f} (the tokenizer's {self.vae_scale_factor}x "
                    f"compression times the DiT patch size {self.transformer.config.patch_size}); "
                    f"try {max(f, round(value / f) * f) if isinstance(value, int) else f}."
                )
        if not isinstance(num_images_per_prompt, int) or num_images_per_prompt < 1:
            raise ValueError(f"`num_images_per_prompt` must be an int >= 1, got {num_images_per_prompt!r}.")
        if isinstance(negative_prompt, list) and len(negative_prompt) != len(prompts):
            raise ValueError(
                f"`negative_prompt` has {len(negative_prompt)} entries but `prompt` has {len(prompts)}; pass one "
                "negative prompt per prompt, or a single string."
            )
        if negative_prompt is not None and not isinstance(negative_prompt, (str, list)):
            raise ValueError(f"`negative_prompt` must be a string or a list of strings, got {type(negative_prompt)}.")
        if images is not None and len(images) not in (1, len(prompts)):
            raise ValueError(f"Got {len(images)} images for {len(prompts)} prompts; pass one image, or one per prompt.")
        if latents is not None:
            expected = (
                len(prompts) * num_images_per_prompt,
                int(self.transformer.config.in_channels),
                height // self.vae_scale_factor,
                width // self.vae_scale_factor,
            )
            if tuple(latents.shape) != expected:
                raise ValueError(f"`latents` must have shape {expected} for this call; got {tuple(latents.shape)}.")
        if output_type not in _OUTPUT_TYPES:
            raise ValueError(f"`output_type` must be one of {_OUTPUT_TYPES}; got {output_type!r}.")
        if callback_on_step_end_tensor_inputs is not None:
            unknown = [k for k in callback_on_step_end_tensor_inputs if k not in self._callback_tensor_inputs]
            if unknown:
                raise ValueError(
                    f"`callback_on_step_end_tensor_inputs` has {unknown}; allowed: {self._callback_tensor_inputs}."
                )

    # ------------------------------------------------------------------ encoding
    def encode_reference(self, images: list[PIL.Image.Image], height: int, width: int) -> torch.Tensor:
        """Reference images -> normalised DiT-space tokenizer latents ``(B, c, height/f, width/f)``."""
        device = self._execution_device
        pixels = self.muse_image_processor(images, size={"height": height, "width": width}, return_tensors="pt")[
            "pixel_values"
        ].to(device=device, dtype=self.vae.dtype)  # (B, 3, H, W)
        return self.vae.normalize_latents(self.vae.encode(pixels).latents.float())

    def encode_prompt(
        self,
        prompt: list[str],
        images: list[PIL.Image.Image] | None = None,
        negative_prompt: str | list[str] | None = None,
        do_classifier_free_guidance: bool = True,
        num_images_per_prompt: int = 1,
        reference_latents: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Condition encoder + connector for a batch (and its unconditional twin under guidance).

        Args:
            prompt: B prompts / edit instructions.
            images: B reference images (editing) or ``None``.
            negative_prompt: the unconditional prompt(s) (default ``""``). For edits the reference image is
                kept in the unconditional branch (only the instruction is dropped).
            do_classifier_free_guidance: also encode the negative prompts.
            num_images_per_prompt: repeats per prompt.
            reference_latents: ``(B, c, h, w)`` normalised latents of ``images`` for a connector with
                ``reference_channels``.

        Returns:
            ``prompt_embeds`` ``(B*n, N, caption_channels)``, ``prompt_attention_mask`` ``(B*n, N)`` and the same
            two for the negative prompts (``None`` without guidance).
        """
        b = len(prompt)
        texts = list(prompt)
        if do_classifier_free_guidance:
            neg = negative_prompt if negative_prompt is not None else ""
            texts += [neg] * b if isinstance(neg, str) else list(neg)
        reps = 2 if do_classifier_free_guidance else 1
        enc = self.condition_encoder
        query = self.connector.query_embeds if isinstance(enc, InternVLConditionEncoder) else None
        cond = enc.encode(texts, None if images is None else images * reps, query_embeds=query)
        if reference_latents is not None:
            cond = MuseCondition(
                cond.hidden_states, cond.attention_mask, cond.query_states, reference_latents.repeat(reps, 1, 1, 1)
            )
        out = self.connector(**cond.connector_kwargs())
        embeds, mask = out.encoder_hidden_states, out.encoder_attention_mask  # (reps*B, N, C), (reps*B, N)
        embeds = embeds.repeat_interleave(num_images_per_prompt, dim=0)
        mask = mask.repeat_interleave(num_images_per_prompt, dim=0)
        n = b * num_images_per_prompt
        if not do_classifier_free_guidance:
            return embeds, mask, None, None
        return embeds[:n], mask[:n], embeds[n:], mask[n:]

    def prepare_latents(
        self,
        batch_size: int,
        num_channels_latents: int,
        height: int,
        width: int,
        dtype: torch.dtype,
        device: torch.device,
        generator: torch.Generator | list[torch.Generator] | None,
        latents: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Initial noise ``(B, c, height/f, width/f)`` (or the given ``latents``)."""
        if latents is not None:
            return latents.to(device=device, dtype=dtype)
        if isinstance(generator, list) and len(generator) != batch_size:
            raise ValueError(
                f"Got a list of {len(generator)} generators for an effective batch of {batch_size}; pass one "
                "generator, or exactly one per image."
            )
        shape = (batch_size, num_channels_latents, height // self.vae_scale_factor, width // self.vae_scale_factor)
        return randn_tensor(shape, generator=generator, device=device, dtype=dtype)

    # ------------------------------------------------------------------ generation
    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        image: ImageInput | None = None,
        negative_prompt: str | list[str] | None = None,
        num_inference_steps: int = 20,
        guidance_scale: float = 4.5,
        height: int | None = None,
        width: int | None = None,
        num_images_per_prompt: int = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        callback_on_step_end: Callable[..., dict[str, Any]] | PipelineCallback | MultiPipelineCallbacks | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
        return_dict: bool = True,
        sigmas: list[float] | None = None,
    ) -> MusePipelineOutput | tuple[Any]:
        """Generate (``image=None``) or edit (``image=...``) images.

        Args:
            prompt: prompt(s) or edit instruction(s).
            image: reference image(s) for editing: one for all prompts or one per prompt; anything
                :class:`MuseImageProcessor` accepts (PIL of any mode, arrays / tensors of any supported dtype and
                layout, batches, lists), read by its rules. The output then has the (first) input image's size
                unless ``height`` / ``width`` are given.
            negative_prompt: unconditional prompt(s) for guidance (default ``""``).
            num_inference_steps: denoising steps.
            guidance_scale: classifier-free guidance weight; ``<= 1`` runs only the conditional branch.
            height: output height, a multiple of :attr:`latent_factor` (default: the tokenizer's image size).
            width: output width, likewise.
            num_images_per_prompt: images per prompt.
            generator: torch generator(s) for the initial noise.
            latents: initial noise ``(B*n, c, h, w)``.
            output_type: ``"pil"``, ``"np"``, ``"pt"`` or ``"latent"`` (see :class:`MusePipelineOutput`).
            callback_on_step_end: called as ``fn(pipe, step, timestep, callback_kwargs)`` after every step; may
                return replacements for the tensors in ``callback_kwargs``.
            callback_on_step_end_tensor_inputs: names passed in ``callback_kwargs`` (from
                ``_callback_tensor_inputs``); default ``["latents"]``.
            return_dict: return a :class:`MusePipelineOutput` rather than a tuple.
            sigmas: custom noise schedule for the scheduler.

        Returns:
            :class:`MusePipelineOutput` (or ``(images,)``).
        """
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs
        if callback_on_step_end_tensor_inputs is None:
            callback_on_step_end_tensor_inputs = ["latents"]

        # 1. Normalise and check inputs
        prompts = [prompt] if isinstance(prompt, str) else prompt
        images = self._to_pil_list(image)
        output_size: tuple[int, int] | None = None
        if images is not None and height is None and width is None:
            f = self.latent_factor
            w0, h0 = images[0].size
            output_size = (h0, w0)
            height, width = max(f, round(h0 / f) * f), max(f, round(w0 / f) * f)
        native_h, native_w = self.native_size()
        height = native_h if height is None else height
        width = native_w if width is None else width
        self.check_inputs(
            prompts,
            images,
            negative_prompt,
            height,
            width,
            num_images_per_prompt,
            latents,
            output_type,
            callback_on_step_end_tensor_inputs,
            num_inference_steps,
            guidance_scale,
            sigmas,
        )
        if images is not None and len(images) == 1 and len(prompts) > 1:
            images = images * len(prompts)
        self._guidance_scale = guidance_scale
        self._interrupt = False
        batch_size = len(prompts)
        device = self._execution_device

        # 2. Encode the condition (prompt, + reference image for edits)
        reference_latents = None
        if images is not None:
            has_ref_tokens = self.connector.config.reference_channels is not None
            if not has_ref_tokens and not self.condition_encoder.supports_images:
                raise ValueError(
                    f"This pipeline cannot edit: its mllm ({type(self.mllm).__name__}) cannot see images and its "
                    "connector has no `reference_channels`. Build the connector with "
                    "reference_channels=<tokenizer latent channels>, or use an InternVL mllm."
                )
            if has_ref_tokens:
                reference_latents = self.encode_reference(images, height, width)
        cond_images = images if images is not None and self.condition_encoder.supports_images else None
        prompt_embeds, prompt_mask, negative_embeds, negative_mask = self.encode_prompt(
            prompts,
            cond_images,
            negative_prompt,
            self.do_classifier_free_guidance,
            num_images_per_prompt,
            reference_latents,
        )
        transformer_dtype = self.transformer.dtype
        if self.do_classifier_free_guidance:
            encoder_hidden_states = torch.cat([negative_embeds, prompt_embeds]).to(transformer_dtype)
            encoder_attention_mask = torch.cat([negative_mask, prompt_mask])
        else:
            encoder_hidden_states, encoder_attention_mask = prompt_embeds.to(transformer_dtype), prompt_mask

        # 3. Timesteps
        scheduler_kwargs: dict[str, Any] = {}
        if getattr(self.scheduler.config, "use_dynamic_shifting", False):
            seq_len = (height // self.latent_factor) * (width // self.latent_factor)
            c = self.scheduler.config
            scheduler_kwargs["mu"] = calculate_shift(
                seq_len,
                c.get("base_image_seq_len", 256),
                c.get("max_image_seq_len", 4096),
                c.get("base_shift", 0.5),
                c.get("max_shift", 1.15),
            )
        timesteps, num_inference_steps = retrieve_timesteps(
            self.scheduler,
            None if sigmas is not None else num_inference_steps,
            device,
            sigmas=sigmas,
            **scheduler_kwargs,
        )

        # 4. Initial latents
        latent_channels = int(self.transformer.config.in_channels)
        latents = self.prepare_latents(
            batch_size * num_images_per_prompt,
            latent_channels,
            height,
            width,
            torch.float32,
            device,
            generator,
            latents,
        )
        step_kwargs = (
            {"generator": generator}
            if "generator" in inspect.signature(self.scheduler.step).parameters and not isinstance(generator, list)
            else {}
        )

        # 5. Denoising loop
        self._num_timesteps = len(timesteps)
        timestep_scale = float(self.transformer.config.timestep_scale)
        learned_sigma = int(self.transformer.config.out_channels or latent_channels) // 2 == latent_channels
        with self.progress_bar(total=num_inference_steps) as progress_bar:
            for i, t in enumerate(timesteps):
                if self.interrupt:
                    continue
                latent_model_input = torch.cat([latents] * 2) if self.do_classifier_free_guidance else latents
                timestep = t.expand(latent_model_input.shape[0]) * timestep_scale
                noise_pred = self.transformer(
                    latent_model_input.to(dtype=transformer_dtype),
                    encoder_hidden_states=encoder_hidden_states,
                    encoder_attention_mask=encoder_attention_mask,
                    timestep=timestep,
                    return_dict=False,
                )[0].float()
                if self.do_classifier_free_guidance:
                    noise_uncond, noise_text = noise_pred.chunk(2)
                    noise_pred = noise_uncond + guidance_scale * (noise_text - noise_uncond)
                if learned_sigma:
                    noise_pred = noise_pred.chunk(2, dim=1)[0]
                latents = self.scheduler.step(noise_pred, t, latents, return_dict=False, **step_kwargs)[0]

                if callback_on_step_end is not None:
                    local = {"latents": latents, "encoder_hidden_states": encoder_hidden_states}
                    callback_kwargs = {k: local[k] for k in callback_on_step_end_tensor_inputs}
                    callback_outputs = callback_on_step_end(self, i, t, callback_kwargs) or {}
                    latents = callback_outputs.pop("latents", latents)
                    encoder_hidden_states = callback_outputs.pop("encoder_hidden_states", encoder_hidden_states)
                progress_bar.update()

        # 6. Decode
        if output_type == "latent":
            result: Any = latents
        else:
            z = self.vae.denormalize_latents(latents).to(self.vae.dtype)
            sample = self.vae.decode(z, output_size=output_size or (height, width)).sample  # (B, 3, H, W)
            result = self.muse_image_processor.postprocess(sample, output_type=output_type)

        self.maybe_free_model_hooks()
        if not return_dict:
            return (result,)
        return MusePipelineOutput(images=result)

    # ------------------------------------------------------------------ understanding / multi-turn editing
    @torch.no_grad()
    def chat(self, image: ImageInput, question: str, **generate_kwargs: Any) -> str:
        """Answer a question about an image with the MLLM (InternVL only).

        Args:
            image: one image (PIL, or array/tensor in [0, 1]).
            question: the question.
            **generate_kwargs: forwarded to ``mllm.generate`` (default greedy, ``max_new_tokens=64``).

        Returns:
            The decoded answer.

        Raises:
            ValueError: the ``mllm`` cannot see images (a text-only encoder), or ``question`` is empty.
        """
        enc = self.condition_encoder
        if not isinstance(enc, InternVLConditionEncoder):
            raise ValueError(
                f"chat() needs an mllm that can see images (e.g. transformers InternVLForConditionalGeneration); "
                f"this pipeline's mllm is {type(self.mllm).__name__}, a text-only encoder."
            )
        if not isinstance(question, str) or not question.strip():
            raise ValueError("`question` must be a non-empty string.")
        images = self._to_pil_list(image)
        if len(images) != 1:
            raise ValueError(f"chat() takes one image; got {len(images)}.")
        answer = enc.chat(images[0], question, **generate_kwargs)
        self.maybe_free_model_hooks()
        return answer

    def edit_session(self, image: ImageInput, **call_kwargs: Any) -> MuseEditSession:
        """Start a multi-turn editing session on ``image`` (``call_kwargs`` are defaults for every turn)."""
        return MuseEditSession(self, image, **call_kwargs)


@dataclass
class EditTurn:
    """One turn of a :class:`MuseEditSession`: the instruction and the image it produced."""

    instruction: str
    image: PIL.Image.Image


class MuseEditSession:
    """Multi-turn editing: each instruction edits the latest image; the conversation is kept.

    Args:
        pipeline: the :class:`MusePipeline`.
        image: the starting image.
        **call_kwargs: defaults for every turn's pipeline call (e.g. ``num_inference_steps``).

    Attributes:
        source: the starting image.
        history: the :class:`EditTurn` list, oldest first.

    Example:
        >>> session = pipe.edit_session(img, num_inference_steps=20)
        >>> session.edit("make the circle green")
        >>> session.edit("move the square to the left")
        >>> session.undo()   # back to the first edit
        >>> session.messages  # chat-style record of the session
    """

    def __init__(self, pipeline: MusePipeline, image: ImageInput, **call_kwargs: Any) -> None:
        images = MusePipeline._to_pil_list(image)
        if images is None or len(images) != 1:
            raise ValueError("An edit session starts from exactly one image.")
        self.pipeline: MusePipeline = pipeline
        self.source: PIL.Image.Image = images[0]
        self.call_kwargs: dict[str, Any] = call_kwargs
        self.history: list[EditTurn] = []

    @property
    def image(self) -> PIL.Image.Image:
        """The current image (the source before any edit)."""
        return self.history[-1].image if self.history else self.source

    def edit(self, instruction: str, **kwargs: Any) -> PIL.Image.Image:
        """Apply ``instruction`` to the current image; returns (and records) the result."""
        if not isinstance(instruction, str) or not instruction.strip():
            raise ValueError("An edit instruction must be a non-empty string.")
        out = self.pipeline(instruction, image=self.image, output_type="pil", **(self.call_kwargs | kwargs))
        self.history.append(EditTurn(instruction, out.images[0]))
        return out.images[0]

    def undo(self) -> PIL.Image.Image:
        """Drop the last turn; returns the image now current."""
        if not self.history:
            raise ValueError("Nothing to undo: no edit has been made in this session.")
        self.history.pop()
        return self.image

    def reset(self, image: ImageInput | None = None) -> None:
        """Clear the history (optionally starting over from a new image)."""
        if image is not None:
            self.source = MuseEditSession(self.pipeline, image).source
        self.history = []

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The session as chat messages: user instruction, assistant image, turn by turn."""
        msgs: list[dict[str, Any]] = [{"role": "user", "content": [{"type": "image", "image": self.source}]}]
        for turn in self.history:
            msgs.append({"role": "user", "content": [{"type": "text", "text": turn.instruction}]})
            msgs.append({"role": "assistant", "content": [{"type": "image", "image": turn.image}]})
        return msgs


def register_with_diffusers() -> bool:
    """Let ``diffusers.DiffusionPipeline.from_pretrained(folder)`` load a saved :class:`MusePipeline`.

    diffusers turns a folder's ``model_index.json`` ``"_class_name"`` into a class by looking the name up on the
    ``diffusers`` module itself (``getattr(diffusers, class_name)`` in
    ``diffusers.pipelines.pipeline_loading_utils._get_pipeline_class``); its only other route, a custom pipeline
    file in the folder, needs ``trust_remote_code=True``. So ``import muse_hf`` calls this function, which puts
    ``MusePipeline`` under that name, as ``AutoModel.register`` does for the tokenizer on the transformers side. The
    components then load as they do for ``MusePipeline.from_pretrained`` (``model_index.json`` names their
    libraries: ``muse_hf.models...``, ``transformers``, ``diffusers``).

    Returns:
        ``True`` when ``diffusers.MusePipeline`` is this class; ``False`` (with a warning) when diffusers already
        has a different class of that name, which is then left alone.
    """
    import diffusers

    name = MusePipeline.__name__
    existing = getattr(diffusers, name, None)  # diffusers' lazy module raises AttributeError -> None
    if existing is None:
        setattr(diffusers, name, MusePipeline)
        return True
    if existing is MusePipeline:
        return True
    logger.warning(
        "diffusers already defines %s (%s.%s); it is left in place, so DiffusionPipeline.from_pretrained would "
        "build that class. Load MUSE pipelines with `from muse_hf import MusePipeline; "
        "MusePipeline.from_pretrained(folder)`.", name, existing.__module__, getattr(existing, "__qualname__", name),
    )  # fmt: skip
    return False
