"""``MuseConnector``: maps an MLLM's (or text encoder's) condition into the DiT's caption space.

Paper appendix B.1 (the UniLIP dual condition): the connector reads two streams,

* the condition hidden states (prompt tokens, and for editing the reference image's tokens), and
* ``num_queries`` learnable query embeddings (256 in the paper),

concatenates them, runs ``num_layers`` (6) *bidirectional* transformer layers over the sequence and
projects to the DiT's ``caption_channels``. The padding mask is handed on to the DiT as its
``encoder_attention_mask``.

Where the queries enter depends on the condition encoder (see :mod:`muse_hf.pipelines.condition`):
with InternVL they replace placeholder slots inside the LLM's input embeddings, and the LLM's output at
those slots arrives here as ``query_states``; with a plain text encoder nothing was inserted upstream
and the connector appends its own ``query_embeds``.

The layers have the parameter layout of a Qwen2 decoder layer (``self_attn.{q,k,v,o}_proj``,
``mlp.{gate,up,down}_proj``, ``input_layernorm``, ``post_attention_layernorm``) but attend
bidirectionally with a padding mask, so :meth:`MuseConnector.from_llm_layers` can initialise them from
the last layers of the MLLM's LLM as UniLIP does.

Optionally (``reference_channels``) the connector also takes the tokenizer latents of a reference image
as extra tokens, the editing path for condition encoders that cannot see images.

Resolutions: the unified model does not run at the tokenizer's training resolution. The MUSE tokenizer is
trained at 224 px (PanqiYang1/MUSE configs/muse_1b/stage1.yaml:72-73, our configs/tokenizer/muse-1b), but
UniLIP feeds its unified model 448 px images, both the understanding input (nnnth/UniLIP
unilip/train/train_stage2.py:35, unilip/pipeline_edit.py:66) and the generation target (InternVL's image
processor, 448 by default, unilip/train/train_stage2.py:1020), because 448 is the InternViT tower's native
size (256 image tokens, train_stage2.py:351) and its 16x16 latent grid is SANA-512's (UniLIP decodes 512 px and
resizes by 28/32 back to 448, unilip/model/language_model/unilip_internvl.py:291-301). UniLIP's own tokenizer
gets a 448 px fine-tuning stage for this (tokenizer/configs/training/InternVL3_1B_DCAE/internvl3_1B_stage2_448.yaml:51-52
after 224 px stages 1-2); MUSE's released configs stop at 224. Our configs/umm/muse-1b therefore sets
``resolution: 448`` for the tokenizer trained at 224 (its backbone interpolates its position embeddings; the
synergistic blocks use 2D RoPE), and the tiny configs use 64 px throughout.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import get_1d_rotary_pos_embed, get_2d_sincos_pos_embed

# diffusers finds a third-party component's loader by looking up its base-class names in the module
# that defines it (DESIGN §3): this import under this name is what lets
# `MusePipeline.from_pretrained` reload the connector.
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import nn

from ..validation import check_pipeline_component
from .synergistic import SwiGLUMLP, rotate_half

__all__ = ["MuseConnector", "MuseConnectorOutput", "ConnectorLayer"]


@dataclass
class MuseConnectorOutput(BaseOutput):
    """Output of :class:`MuseConnector`.

    Args:
        encoder_hidden_states: ``(B, L + R + Q, caption_channels)`` the DiT's cross-attention context
            (condition tokens, reference-image tokens if any, query tokens).
        encoder_attention_mask: ``(B, L + R + Q)`` 1 for real tokens, 0 for padding.
    """

    encoder_hidden_states: torch.Tensor
    encoder_attention_mask: torch.Tensor


class ConnectorAttention(nn.Module):
    """Bidirectional multi-head attention with 1D RoPE and grouped KV heads (Qwen2 parameter layout)."""

    def __init__(self, hidden_size: int, num_heads: int, num_kv_heads: int) -> None:
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size ({hidden_size}) must be divisible by num_attention_heads ({num_heads}).")
        if num_heads % num_kv_heads:
            raise ValueError(
                f"num_attention_heads ({num_heads}) must be divisible by num_key_value_heads ({num_kv_heads})."
            )
        self.num_heads, self.num_kv_heads = num_heads, num_kv_heads
        self.head_dim = hidden_size // num_heads
        self.q_proj = nn.Linear(hidden_size, num_heads * self.head_dim, bias=True)
        self.k_proj = nn.Linear(hidden_size, num_kv_heads * self.head_dim, bias=True)
        self.v_proj = nn.Linear(hidden_size, num_kv_heads * self.head_dim, bias=True)
        self.o_proj = nn.Linear(num_heads * self.head_dim, hidden_size, bias=False)

    def forward(
        self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], attn_mask: torch.Tensor
    ) -> torch.Tensor:
        """Args: x (B, N, D); rope (cos, sin) each (B, 1, N, head_dim); attn_mask (B, 1, 1, N) bool."""
        b, n, _ = x.shape
        q = self.q_proj(x).view(b, n, self.num_heads, self.head_dim).transpose(1, 2)  # (B, H, N, d)
        k = self.k_proj(x).view(b, n, self.num_kv_heads, self.head_dim).transpose(1, 2)  # (B, Hkv, N, d)
        v = self.v_proj(x).view(b, n, self.num_kv_heads, self.head_dim).transpose(1, 2)
        cos, sin = rope
        q = (q * cos + rotate_half(q) * sin).to(v.dtype)
        k = (k * cos + rotate_half(k) * sin).to(v.dtype)
        if self.num_kv_heads != self.num_heads:
            rep = self.num_heads // self.num_kv_heads
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # (B, H, N, d)
        return self.o_proj(out.transpose(1, 2).reshape(b, n, -1))


class ConnectorLayer(nn.Module):
    """Pre-RMSNorm transformer layer, bidirectional, state-dict compatible with a Qwen2 decoder layer."""

    def __init__(self, hidden_size: int, num_heads: int, num_kv_heads: int, intermediate_size: int, eps: float) -> None:
        super().__init__()
        self.self_attn = ConnectorAttention(hidden_size, num_heads, num_kv_heads)
        self.mlp = SwiGLUMLP(hidden_size, intermediate_size)  # Qwen2MLP layout: gate/up/down, no bias
        self.input_layernorm = nn.RMSNorm(hidden_size, eps=eps)
        self.post_attention_layernorm = nn.RMSNorm(hidden_size, eps=eps)

    def forward(
        self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], attn_mask: torch.Tensor
    ) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), rope, attn_mask)  # (B, N, D)
        return x + self.mlp(self.post_attention_layernorm(x))


class MuseConnector(ModelMixin, ConfigMixin):
    """Dual-condition connector between a condition encoder and the SANA DiT.

    Args:
        condition_dim: width of the condition encoder's hidden states (the LLM's or text encoder's
            hidden size); the learnable queries live in this space.
        caption_channels: the DiT's ``caption_channels`` (output width).
        num_queries: number of learnable query embeddings (paper: 256).
        num_layers: number of bidirectional layers (paper: 6).
        hidden_size: width of the layers. When it differs from ``condition_dim`` a linear
            ``condition_proj`` maps into it; otherwise the condition enters unchanged.
        num_attention_heads: attention heads per layer.
        num_key_value_heads: KV heads (grouped-query attention); ``None`` = ``num_attention_heads``.
        intermediate_size: SwiGLU width; ``None`` = ``4 * hidden_size``.
        rms_norm_eps: RMSNorm epsilon.
        rope_theta: RoPE base.
        reference_channels: if set, the tokenizer's latent channel count: :meth:`forward` then accepts
            ``reference_latents`` (B, c, h, w), adds 2D sin-cos positions and joins them as tokens.
    """

    _supports_gradient_checkpointing = False
    _no_split_modules = ["ConnectorLayer"]

    @register_to_config
    def __init__(
        self,
        condition_dim: int = 896,
        caption_channels: int = 2304,
        num_queries: int = 256,
        num_layers: int = 6,
        hidden_size: int = 896,
        num_attention_heads: int = 14,
        num_key_value_heads: int | None = None,
        intermediate_size: int | None = None,
        rms_norm_eps: float = 1e-6,
        rope_theta: float = 1_000_000.0,
        reference_channels: int | None = None,
    ) -> None:
        super().__init__()
        for name, value in (
            ("condition_dim", condition_dim),
            ("caption_channels", caption_channels),
            ("num_queries", num_queries),
            ("num_layers", num_layers),
            ("hidden_size", hidden_size),
        ):
            if value < 1:
                raise ValueError(f"MuseConnector: `{name}` must be >= 1, got {value}.")
        num_kv = num_key_value_heads or num_attention_heads
        if (hidden_size // num_attention_heads) % 2:
            raise ValueError(
                f"MuseConnector: head dim hidden_size/num_attention_heads = {hidden_size}/{num_attention_heads} "
                "must be even for rotary embeddings."
            )
        # UniLIP initialises its latent queries as standard normal, N(0, 1), in the LLM's width
        # (nnnth/UniLIP unilip/model/unilip_internvl.py:46 and :201, `torch.randn(1, n_query, hidden_size)`).
        self.query_embeds = nn.Parameter(torch.randn(num_queries, condition_dim))  # (Q, Dc)
        self.condition_proj = nn.Identity() if condition_dim == hidden_size else nn.Linear(condition_dim, hidden_size)
        self.reference_proj = nn.Linear(reference_channels, hidden_size) if reference_channels is not None else None
        self.layers = nn.ModuleList(
            [
                ConnectorLayer(
                    hidden_size, num_attention_heads, num_kv, intermediate_size or 4 * hidden_size, rms_norm_eps
                )
                for _ in range(num_layers)
            ]
        )
        self.norm = nn.RMSNorm(hidden_size, eps=rms_norm_eps)  # the LLM's final norm (from_llm_layers copies it)
        self.proj_out = nn.Linear(hidden_size, caption_channels)

    @classmethod
    def from_pretrained(  # type: ignore[override]
        cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any
    ) -> MuseConnector:
        """``ModelMixin.from_pretrained``; a pipeline folder without its ``connector/`` is reported as such
        (diffusers hands this loader the pipeline root then, and the stock error blamed the root)."""
        check_pipeline_component(pretrained_model_name_or_path, cls.__name__, kwargs.get("subfolder"))
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)

    # ------------------------------------------------------------------ init from an LLM
    @classmethod
    def from_llm_layers(
        cls,
        llm: nn.Module,
        num_layers: int = 6,
        *,
        caption_channels: int,
        num_queries: int = 256,
        reference_channels: int | None = None,
    ) -> MuseConnector:
        """Build a connector whose layers are copies of the LLM's last ``num_layers`` decoder layers and final norm.

        UniLIP's choice for InternVL: the connector is "structurally isomorphic to the LLM layers" and
        starts from the LLM's top layers (the copies are then trained; the LLM stays frozen). UniLIP deep-copies
        the whole language model and deletes all but the last ``connect_layer`` layers and the token embeddings
        (nnnth/UniLIP unilip/model/unilip_internvl.py:176-178), so the copy keeps the LLM's final RMSNorm, and
        its output ``hidden_states[-1]`` (transformers' Qwen2Model appends it after that norm;
        unilip/model/language_model/unilip_internvl.py:127-135) goes to the projector: here ``self.norm`` then
        ``proj_out``. The width, heads, KV heads, MLP width, norm epsilon and RoPE base are read from the LLM's
        config; the query embeddings keep their N(0, 1) initialisation (UniLIP's).

        Args:
            llm: a Qwen2-style decoder (``Qwen2Model``, ``Qwen2ForCausalLM``, or an
                ``InternVLForConditionalGeneration`` whose ``language_model`` is one). Its layers must have
                the Qwen2 parameter layout (q/k/v with bias, o without; gate/up/down; two RMSNorms).
            num_layers: how many of the last layers to copy.
            caption_channels: the DiT's caption width.
            num_queries: learnable queries.
            reference_channels: see the class docstring.

        Returns:
            A new ``MuseConnector``.

        Raises:
            ValueError: the LLM has fewer layers than requested, or its layers' parameters do not fit.
        """
        text_model = _find_decoder(llm)
        cfg = text_model.config
        rope = getattr(cfg, "rope_parameters", None) or {}
        connector = cls(
            condition_dim=cfg.hidden_size,
            caption_channels=caption_channels,
            num_queries=num_queries,
            num_layers=num_layers,
            hidden_size=cfg.hidden_size,
            num_attention_heads=cfg.num_attention_heads,
            num_key_value_heads=getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads,
            intermediate_size=cfg.intermediate_size,
            rms_norm_eps=getattr(cfg, "rms_norm_eps", 1e-6),
            rope_theta=float(rope.get("rope_theta", getattr(cfg, "rope_theta", 10000.0))),
            reference_channels=reference_channels,
        )
        connector.load_llm_layers(llm)
        return connector

    def load_llm_layers(self, llm: nn.Module) -> None:
        """Copy the LLM's last ``len(self.layers)`` decoder layers into this connector's layers, and the LLM's
        final norm into ``self.norm`` (as UniLIP's ``deepcopy(language_model)`` keeps it).

        Raises:
            ValueError: too few LLM layers, no final ``norm``, or a parameter name/shape mismatch (the message
                names it).
        """
        text_model = _find_decoder(llm)
        src_layers = text_model.layers
        n = len(self.layers)
        if len(src_layers) < n:
            raise ValueError(f"The LLM has {len(src_layers)} layers; cannot copy the last {n} into the connector.")
        for dst, src in zip(self.layers, list(src_layers)[-n:]):
            src_sd, dst_sd = src.state_dict(), dst.state_dict()
            missing = sorted(set(dst_sd) - set(src_sd))
            if missing:
                raise ValueError(
                    f"LLM layer {type(src).__name__} lacks connector parameters {missing}: only Qwen2-style layers "
                    "can initialise the connector; build it from scratch instead."
                )
            for k, v in dst_sd.items():
                if src_sd[k].shape != v.shape:
                    raise ValueError(
                        f"Shape mismatch for `{k}`: LLM {tuple(src_sd[k].shape)} vs connector {tuple(v.shape)}."
                    )
            dst.load_state_dict({k: src_sd[k] for k in dst_sd})
        final_norm = getattr(text_model, "norm", None)
        if not isinstance(final_norm, nn.Module) or set(final_norm.state_dict()) != set(self.norm.state_dict()):
            raise ValueError(
                f"{type(text_model).__name__} has no final RMSNorm `norm` with a `weight`; only Qwen2-style decoders "
                "can initialise the connector (UniLIP copies the LLM's final norm with its last layers)."
            )
        if final_norm.weight.shape != self.norm.weight.shape:
            raise ValueError(
                f"Shape mismatch for `norm.weight`: LLM {tuple(final_norm.weight.shape)} vs connector "
                f"{tuple(self.norm.weight.shape)}."
            )
        self.norm.load_state_dict(final_norm.state_dict())

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        query_states: torch.Tensor | None = None,
        reference_latents: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> MuseConnectorOutput | tuple[torch.Tensor, torch.Tensor]:
        """Map a condition to the DiT's cross-attention context.

        Args:
            hidden_states: ``(B, L, condition_dim)`` condition hidden states.
            attention_mask: ``(B, L)`` 1 = token, 0 = padding; ``None`` = all tokens valid.
            query_states: ``(B, Q, condition_dim)`` the encoder's outputs at the query slots (InternVL path);
                ``None`` = use this connector's learnable ``query_embeds`` (text-encoder path).
            reference_latents: ``(B, reference_channels, h, w)`` normalised tokenizer latents of a reference
                image (editing without an image-aware encoder). Needs ``reference_channels`` in the config.
            return_dict: return a :class:`MuseConnectorOutput` instead of a tuple.

        Returns:
            ``encoder_hidden_states`` ``(B, L + R + Q, caption_channels)`` and ``encoder_attention_mask``
            ``(B, L + R + Q)`` (R = h*w reference tokens, or 0).
        """
        if hidden_states.ndim != 3 or hidden_states.shape[-1] != self.config.condition_dim:
            raise ValueError(
                f"`hidden_states` must be (B, L, {self.config.condition_dim}); got {tuple(hidden_states.shape)}."
            )
        b, seq, _ = hidden_states.shape
        device, dtype = hidden_states.device, self.proj_out.weight.dtype
        if attention_mask is None:
            attention_mask = torch.ones(b, seq, device=device, dtype=torch.long)
        if attention_mask.shape != (b, seq):
            raise ValueError(f"`attention_mask` must be (B, L) = {(b, seq)}; got {tuple(attention_mask.shape)}.")
        if query_states is None:
            query_states = self.query_embeds.unsqueeze(0).expand(b, -1, -1)  # (B, Q, Dc)
        parts = [self.condition_proj(hidden_states.to(dtype))]  # (B, L, D)
        masks = [attention_mask.to(device=device, dtype=torch.bool)]
        if reference_latents is not None:
            parts.append(self._reference_tokens(reference_latents.to(device=device, dtype=dtype)))  # (B, R, D)
            masks.append(torch.ones(b, parts[-1].shape[1], device=device, dtype=torch.bool))
        parts.append(self.condition_proj(query_states.to(device=device, dtype=dtype)))  # (B, Q, D)
        masks.append(torch.ones(b, query_states.shape[1], device=device, dtype=torch.bool))
        x = torch.cat(parts, dim=1)  # (B, N, D)
        mask = torch.cat(masks, dim=1)  # (B, N)

        # RoPE positions count real tokens only, so padding never shifts the geometry.
        positions = (mask.long().cumsum(-1) - 1).clamp(min=0)  # (B, N)
        head_dim = self.config.hidden_size // self.config.num_attention_heads
        cos, sin = get_1d_rotary_pos_embed(
            head_dim,
            positions.flatten().float(),
            theta=self.config.rope_theta,
            use_real=True,
            repeat_interleave_real=False,
        )  # (B*N, d) each
        rope = (cos.view(b, 1, -1, head_dim).to(dtype), sin.view(b, 1, -1, head_dim).to(dtype))
        attn_mask = mask[:, None, None, :]  # (B, 1, 1, N) bidirectional key-padding mask
        for layer in self.layers:
            x = layer(x, rope, attn_mask)
        out = self.proj_out(self.norm(x))  # (B, N, caption_channels)
        out_mask = mask.long()
        if not return_dict:
            return out, out_mask
        return MuseConnectorOutput(encoder_hidden_states=out, encoder_attention_mask=out_mask)

    def _reference_tokens(self, latents: torch.Tensor) -> torch.Tensor:
        if self.reference_proj is None:
            raise ValueError(
                "This connector was built without `reference_channels`, so it cannot take reference latents. "
                "Build it with reference_channels=<tokenizer latent channels> (text-encoder editing), or edit "
                "through an image-aware mllm (InternVL)."
            )
        if latents.ndim != 4 or latents.shape[1] != self.config.reference_channels:
            raise ValueError(
                f"`reference_latents` must be (B, {self.config.reference_channels}, h, w); got {tuple(latents.shape)}."
            )
        b, c, h, w = latents.shape
        tokens = self.reference_proj(latents.flatten(2).transpose(1, 2))  # (B, h*w, D)
        pos = get_2d_sincos_pos_embed(
            self.config.hidden_size, (h, w), base_size=max(h, w), device=latents.device, output_type="pt"
        )  # (h*w, D)
        return tokens + pos.to(tokens.dtype).unsqueeze(0)


def _find_decoder(llm: nn.Module) -> nn.Module:
    """Return the decoder stack (the module holding ``.layers``) of an LLM or an MLLM wrapper."""
    for path in ("model.language_model", "language_model", "model", ""):
        mod: nn.Module | None = llm
        for part in filter(None, path.split(".")):
            mod = getattr(mod, part, None)
            if mod is None:
                break
        if isinstance(getattr(mod, "layers", None), nn.ModuleList) and hasattr(mod, "config"):
            return mod
    raise ValueError(
        f"Could not find a decoder layer stack (`.layers`) in {type(llm).__name__}; pass a Qwen2-style LLM "
        "(or an InternVLForConditionalGeneration)."
    )
